// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// Every adapter header in one C++20 translation unit, and a guard with its
// ticker on a real endpoint: the clang C++20 build the README promises.

#include <wsguard/websocketpp/acceptor.hpp>
#include <wsguard/websocketpp/admission.hpp>
#include <wsguard/websocketpp/asio_ticker.hpp>
#include <wsguard/websocketpp/connection_memory.hpp>
#include <wsguard/websocketpp/guard_types.hpp>
#include <wsguard/websocketpp/lean_config.hpp>
#include <wsguard/websocketpp/lingering_socket.hpp>
#include <wsguard/websocketpp/logger.hpp>
#include <wsguard/websocketpp/room_bridge.hpp>
#include <wsguard/websocketpp/server_guard.hpp>
#include <wsguard/websocketpp/socket_pool.hpp>
#include <wsguard/websocketpp/utf8.hpp>

#include <chrono>

static_assert(__cplusplus >= 202002L, "built as C++20");

int main() {
    using Guard = wsguard::wspp::ServerGuard<wsguard::wspp::asio_lean>;
    websocketpp::server<wsguard::wspp::asio_lean> server;
    server.clear_access_channels(websocketpp::log::alevel::all);
    server.init_asio();
    Guard guard(server, {});
    wsguard::wspp::AsioTicker<Guard> ticker(guard, std::chrono::milliseconds(250));
    return guard.registry().size() == 0 ? 0 : 1;
}
