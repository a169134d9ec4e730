// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// LingeringSocket over loopback, on the lean config's server: a client that
// is still writing an oversized message when the server closes with 1009 sees
// the 1009. With websocketpp's stock socket policy the server reset the
// connection with the message unread: a client that ends the connection on a
// failed write (browsers do) saw 1006 every time (0/20), a websocketpp client
// now and then. A peer that never closes its side is dropped once the
// socket-shutdown timeout passes, one that keeps writing once the discard
// bound is reached, and the guard's counts return to zero.
#include "support/loopback_server.hpp"

#include <wsguard/websocketpp/lean_config.hpp>
#include <wsguard/websocketpp/lingering_socket.hpp>
#include <wsguard/websocketpp/server_guard.hpp>

#include <websocketpp/client.hpp>
#include <websocketpp/config/asio_no_tls_client.hpp>

#include <catch2/catch.hpp>

#include <asio/connect.hpp>
#include <asio/read_until.hpp>
#include <asio/write.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

namespace {

using namespace std::chrono_literals;
using Config = wsguard::wspp::asio_lean_single_thread;
using Loopback = wsguard::test::LoopbackServer<Config>;
using SteadyClock = std::chrono::steady_clock;
using wsguard::test::eventually;
using Client = websocketpp::client<websocketpp::config::asio_client>;

constexpr std::size_t limit = 64 * 1024;
constexpr std::size_t oversized = 4 * 1024 * 1024;

wsguard::wspp::GuardOptions options() {
    wsguard::wspp::GuardOptions o;
    o.max_message_bytes = limit;
    o.ping_interval = 0ms;
    o.idle_timeout = 0ms;
    return o;
}

/// A websocketpp client on its own io thread that opens one connection,
/// sends one message as soon as it opens (the write goes on while the server
/// closes) and reports the close code the server sent (1006: none arrived).
class OversizeClient {
public:
    OversizeClient() {
        client_.clear_access_channels(websocketpp::log::alevel::all);
        client_.clear_error_channels(websocketpp::log::elevel::all);
        client_.init_asio();
        client_.start_perpetual();
        thread_ = std::thread([this] { client_.run(); });
    }
    ~OversizeClient() {
        client_.stop_perpetual();
        client_.stop();
        thread_.join();
    }

    /// The remote close code of one connection that sent `message`; 0 on timeout.
    std::uint16_t send_and_close_code(std::uint16_t port, const std::string& message) {
        struct State {
            std::mutex m;
            std::condition_variable cv;
            bool done = false;
            std::uint16_t code = 0;
        };
        auto st = std::make_shared<State>();
        std::error_code ec;
        auto con = client_.get_connection("ws://127.0.0.1:" + std::to_string(port) + "/", ec);
        REQUIRE_FALSE(ec);
        con->set_open_handler([this, &message](websocketpp::connection_hdl h) {
            std::error_code e;
            client_.send(h, message, websocketpp::frame::opcode::binary, e);
        });
        const auto end = [this, st](websocketpp::connection_hdl h) {
            std::error_code e;
            auto c = client_.get_con_from_hdl(h, e);
            std::lock_guard<std::mutex> lock(st->m);
            st->code = c ? c->get_remote_close_code() : 0;
            st->done = true;
            st->cv.notify_all();
        };
        con->set_close_handler(end);
        con->set_fail_handler(end);
        client_.connect(con);
        std::unique_lock<std::mutex> lock(st->m);
        st->cv.wait_for(lock, 10s, [&] { return st->done; });
        return st->code;
    }

private:
    Client client_;
    std::thread thread_;
};

/// A raw TCP client: handshake, then the header and first bytes of an
/// oversized frame; it reads the server's close frame and then neither
/// reads nor closes.
struct SilentPeer {
    asio::io_context io;
    asio::ip::tcp::socket sock{io};
    std::string inbox;

    std::uint16_t provoke_close(std::uint16_t port) {
        sock.connect({asio::ip::make_address("127.0.0.1"), port});
        asio::write(sock, asio::buffer(wsguard::test::upgrade_request(port)));
        const std::size_t head = asio::read_until(sock, asio::dynamic_buffer(inbox), "\r\n\r\n");
        REQUIRE(inbox.rfind("HTTP/1.1 101", 0) == 0);
        inbox.erase(0, head);
        const char mask[4] = {0, 0, 0, 0};
        asio::write(sock, asio::buffer(wsguard::test::client_frame_header(0x2, oversized, mask) +
                                       std::string(1000, 'x')));
        for (;;) {
            if (auto f = wsguard::test::take_server_frame(inbox)) {
                return f->opcode == 0x8 ? f->close_code() : 0;
            }
            char chunk[1024];
            std::error_code ec;
            const std::size_t n = sock.read_some(asio::buffer(chunk), ec);
            if (ec) {
                return 0;
            }
            inbox.append(chunk, n);
        }
    }
};

}  // namespace

TEST_CASE("a websocketpp client still writing an oversized message sees 1009, 20 in a row",
          "[lingering_socket]") {
    Loopback server(options());
    OversizeClient client;
    const std::string message(oversized, 'x');
    int saw_1009 = 0;
    for (int i = 0; i < 20; ++i) {
        const std::uint16_t code = client.send_and_close_code(server.port(), message);
        INFO("connection " << i << " saw close code " << code);
        CHECK(code == 1009);
        saw_1009 += code == 1009 ? 1 : 0;
    }
    WARN(saw_1009 << "/20 websocketpp clients saw 1009");
    CHECK(eventually([&] { return server.stats().connections == 0; }, 5s));
    const auto s = server.stats();
    CHECK(s.closed_oversized == 20);
    CHECK(s.opened == 20);
    CHECK(s.closed == 20);
}

TEST_CASE("a peer that never closes its side is dropped after the socket-shutdown timeout",
          "[lingering_socket]") {
    Loopback server(options());
    SilentPeer peer;
    REQUIRE(peer.provoke_close(server.port()) == 1009);
    const auto closed_frame_at = SteadyClock::now();
    // Lingering: the connection is still the guard's until the linger ends.
    CHECK(server.stats().connections == 1);
    REQUIRE(eventually([&] { return server.stats().connections == 0; }, 5s));
    const auto held =
        std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - closed_frame_at);
    WARN("a peer that never closed was dropped after " << held.count() << " ms");
    CHECK(held >= std::chrono::milliseconds(wsguard::wspp::default_lean_socket_shutdown_ms - 100));
    CHECK(held < std::chrono::milliseconds(wsguard::wspp::default_lean_socket_shutdown_ms + 1000));
    const auto s = server.stats();
    CHECK(s.closed_oversized == 1);
    CHECK(s.closed == 1);
    // The server shut its side down right after the close frame: EOF here.
    char chunk[64];
    std::error_code ec;
    peer.sock.read_some(asio::buffer(chunk), ec);
    CHECK(ec);
}

TEST_CASE("a peer that writes past the discard bound is cut off without waiting out the timer",
          "[lingering_socket]") {
    // 256 KiB of discard, 5 s of timer: the byte bound must end the linger.
    struct SmallBound : wsguard::wspp::with_lingering_close<websocketpp::config::asio, 5000,
                                                            std::size_t{256} << 10> {};
    wsguard::test::LoopbackServer<SmallBound> server(options());
    SilentPeer peer;
    REQUIRE(peer.provoke_close(server.port()) == 1009);
    const auto start = SteadyClock::now();
    // The rest of the 4 MiB message: well past the bound. The write fails
    // once the server resets, which is the point.
    std::error_code ec;
    asio::write(peer.sock, asio::buffer(std::string(oversized, 'x')), ec);
    REQUIRE(eventually([&] { return server.stats().connections == 0; }, 10s));
    const auto took =
        std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - start);
    WARN("a peer writing past the discard bound was cut off after " << took.count() << " ms");
    CHECK(took < 2500ms);
}

TEST_CASE("a client that fails on a write error sees 1009 for its oversized message, 20 in a row",
          "[lingering_socket]") {
    // Browsers and most client libraries end the connection (1006) when a
    // write fails: a reset while the client still writes its message hides
    // the close frame from them, even though it arrived first.
    Loopback server(options());
    int saw_1009 = 0;
    for (int i = 0; i < 20; ++i) {
        asio::io_context io;
        asio::ip::tcp::socket sock(io);
        sock.connect({asio::ip::make_address("127.0.0.1"), server.port()});
        asio::write(sock, asio::buffer(wsguard::test::upgrade_request(server.port())));
        std::string inbox;
        const std::size_t head = asio::read_until(sock, asio::dynamic_buffer(inbox), "\r\n\r\n");
        REQUIRE(inbox.rfind("HTTP/1.1 101", 0) == 0);
        inbox.erase(0, head);
        const char mask[4] = {0, 0, 0, 0};
        std::error_code ec;
        asio::write(sock,
                    asio::buffer(wsguard::test::client_frame_header(0x2, oversized, mask) +
                                 std::string(oversized, 'x')),
                    ec);
        std::uint16_t code = ec ? 1006 : 0;
        while (!ec) {
            if (auto f = wsguard::test::take_server_frame(inbox)) {
                code = f->opcode == 0x8 ? f->close_code() : 0;
                break;
            }
            char chunk[4096];
            const std::size_t n = sock.read_some(asio::buffer(chunk), ec);
            if (ec) {
                break;
            }
            inbox.append(chunk, n);
        }
        INFO("connection " << i << " saw close code " << code << " (" << ec.message() << ")");
        CHECK(code == 1009);
        saw_1009 += code == 1009 ? 1 : 0;
    }
    WARN(saw_1009 << "/20 clients failing on write errors saw 1009");
    CHECK(eventually([&] { return server.stats().connections == 0; }, 5s));
    CHECK(server.stats().closed_oversized == 20);
}
