// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// Floor for the ping-pong comparison: a bare websocketpp asio server that
// echoes every message back unchanged, with no parsing and no state. Default
// websocketpp asio config, logging off. What a round trip costs before any
// application work.
//
// usage: bare_echo_server [--port N] [--bind ADDRESS]   (port 0: any free port)
// Prints `ready port=N` on stdout once listening; SIGINT / SIGTERM stop it.
#include <websocketpp/config/asio_no_tls.hpp>
#include <websocketpp/server.hpp>

#include <asio/signal_set.hpp>

#include <sys/resource.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace {

using Server = websocketpp::server<websocketpp::config::asio>;

}  // namespace

int main(int argc, char** argv) {
    unsigned port = 8080;
    std::string bind = "127.0.0.1";
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string flag = argv[i];
        if (flag == "--port") {
            port = static_cast<unsigned>(std::strtoul(argv[i + 1], nullptr, 10));
        } else if (flag == "--bind") {
            bind = argv[i + 1];
        } else {
            std::fprintf(stderr, "usage: bare_echo_server [--port N] [--bind ADDRESS]\n");
            return 2;
        }
    }
    // Thousands of sockets: take the hard descriptor limit.
    rlimit lim{};
    if (getrlimit(RLIMIT_NOFILE, &lim) == 0) {
        lim.rlim_cur = lim.rlim_max;
        setrlimit(RLIMIT_NOFILE, &lim);
    }
    try {
        Server server;
        server.clear_access_channels(websocketpp::log::alevel::all);
        server.clear_error_channels(websocketpp::log::elevel::all);
        server.init_asio();
        server.set_reuse_addr(true);
        server.set_message_handler(
            [&server](websocketpp::connection_hdl hdl, Server::message_ptr msg) {
                websocketpp::lib::error_code ec;
                server.send(hdl, msg->get_payload(), msg->get_opcode(), ec);
            });
        server.listen(asio::ip::tcp::endpoint(asio::ip::make_address(bind),
                                              static_cast<unsigned short>(port)));
        server.start_accept();
        websocketpp::lib::error_code ec;
        const unsigned bound = server.get_local_endpoint(ec).port();
        asio::signal_set signals(server.get_io_service(), SIGINT, SIGTERM);
        signals.async_wait([&server](const std::error_code&, int) { server.stop(); });
        std::printf("ready port=%u\n", bound);
        std::fflush(stdout);
        server.run();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bare_echo_server: %s\n", e.what());
        return 1;
    }
    return 0;
}
