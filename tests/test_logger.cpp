// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// GuardLogger and LineRateLimiter: a line websocketpp writes because one peer
// vanished or misbehaved is a debug line, a server fault keeps its level,
// --log-level picks the channels, and a line that repeats within a second is
// held back and counted (the injected clock moves time, no sleeps). Last, a
// real endpoint whose peers vanish mid-write logs nothing at the default level.
#include <wsguard/websocketpp/lean_config.hpp>
#include <wsguard/websocketpp/logger.hpp>

#include "support/manual_clock.hpp"

#include <catch2/catch.hpp>

#include <websocketpp/server.hpp>

#include <asio/io_context.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <sstream>
#include <string>
#include <thread>

namespace {

using namespace std::chrono_literals;
using wsguard::test::ManualClock;
using wsguard::wspp::GuardLogger;
using wsguard::wspp::LineRateLimiter;
using wsguard::wspp::LogLevel;
namespace wlog = websocketpp::log;

using ErrorLog = GuardLogger<websocketpp::concurrency::none, wlog::elevel>;
using AccessLog = GuardLogger<websocketpp::concurrency::none, wlog::alevel>;

std::size_t count_lines(const std::string& s) {
    std::size_t n = 0;
    for (char c : s) {
        n += c == '\n';
    }
    return n;
}

// What websocketpp 0.8.2 writes when a peer resets mid-write, and a server fault.
const std::string abrupt_write =
    "handle_write_frame error: websocketpp.transport:2 (Underlying Transport Error)";
const std::string abrupt_read =
    "handle_read_frame error: asio.system:104 (Connection reset by peer)";
const std::string accept_failed = "handle_accept error: Too many open files";

}  // namespace

TEST_CASE("parse_log_level knows the four levels and nothing else", "[logger]") {
    CHECK(wsguard::wspp::parse_log_level("error") == LogLevel::error);
    CHECK(wsguard::wspp::parse_log_level("warn") == LogLevel::warn);
    CHECK(wsguard::wspp::parse_log_level("info") == LogLevel::info);
    CHECK(wsguard::wspp::parse_log_level("debug") == LogLevel::debug);
    CHECK_FALSE(wsguard::wspp::parse_log_level("fatal"));
    CHECK_FALSE(wsguard::wspp::parse_log_level(""));
    CHECK_FALSE(wsguard::wspp::parse_log_level("WARN"));
}

TEST_CASE("a peer's abrupt disconnect is a debug line, a server fault is an error", "[logger]") {
    CHECK(wsguard::wspp::is_peer_event(abrupt_write));
    CHECK(wsguard::wspp::is_peer_event(abrupt_read));
    CHECK(wsguard::wspp::is_peer_event("Handshake ended with HTTP error: 400"));
    CHECK(wsguard::wspp::is_peer_event("handle_accept error: Operation aborted."));
    CHECK(wsguard::wspp::is_peer_event("handle_accept error: Operation canceled"));
    CHECK_FALSE(wsguard::wspp::is_peer_event(accept_failed));
    CHECK_FALSE(wsguard::wspp::is_peer_event("Internal library error: missing processor"));

    std::ostringstream out;
    ErrorLog log(&out);
    log.set_channels(wsguard::wspp::error_channels(LogLevel::warn));
    log.write(wlog::elevel::fatal, abrupt_write);
    log.write(wlog::elevel::rerror, abrupt_read);
    CHECK(out.str().empty());
    log.write(wlog::elevel::rerror, accept_failed);
    CHECK(out.str().find("[error] handle_accept error: Too many open files") != std::string::npos);
    CHECK(count_lines(out.str()) == 1);

    SECTION("at debug the peer events are written, on the debug channel") {
        std::ostringstream dbg;
        ErrorLog d(&dbg);
        d.set_channels(wsguard::wspp::error_channels(LogLevel::debug));
        d.write(wlog::elevel::fatal, abrupt_write);
        CHECK(dbg.str().find("[devel] handle_write_frame error") != std::string::npos);
        CHECK(dbg.str().find("[fatal]") == std::string::npos);
    }
}

TEST_CASE("each level writes its channels and those above, no others", "[logger]") {
    const std::pair<LogLevel, std::size_t> expected[] = {
        {LogLevel::error, 2}, {LogLevel::warn, 3}, {LogLevel::info, 4}, {LogLevel::debug, 5}};
    for (const auto& [level, lines] : expected) {
        std::ostringstream out;
        ErrorLog log(&out);
        log.set_channels(wsguard::wspp::error_channels(level));
        log.write(wlog::elevel::fatal, "one");
        log.write(wlog::elevel::rerror, "two");
        log.write(wlog::elevel::warn, "three");
        log.write(wlog::elevel::info, "four");
        log.write(wlog::elevel::devel, "five");
        CAPTURE(wsguard::wspp::to_string(level));
        CHECK(count_lines(out.str()) == lines);
    }
    std::ostringstream access;
    AccessLog a(&access);
    a.set_channels(wsguard::wspp::access_channels(LogLevel::info));
    a.write(wlog::alevel::connect, "open");
    CHECK(access.str().empty());
    a.set_channels(wsguard::wspp::access_channels(LogLevel::debug));
    a.write(wlog::alevel::connect, "open");
    CHECK(count_lines(access.str()) == 1);
    a.clear_channels(wlog::alevel::all);
    a.write(wlog::alevel::connect, "open");
    CHECK(count_lines(access.str()) == 1);
}

TEST_CASE("a repeated line is written about once a second, with the count held back", "[logger]") {
    ManualClock clock;
    LineRateLimiter<ManualClock> limiter(1s, clock);
    const std::string a = "handle_accept error: Too many open files";
    const std::string b = "socket cancel failed error: asio.system:9 (Bad file descriptor)";
    REQUIRE(limiter.admit(a) == std::optional<std::uint64_t>(0));
    for (int i = 0; i < 500; ++i) {
        clock.advance(1ms);
        CHECK_FALSE(limiter.admit(a));
    }
    // Another site is not held back by the first.
    CHECK(limiter.admit(b) == std::optional<std::uint64_t>(0));
    clock.advance(600ms);  // 1.1 s after the first line was written
    CHECK(limiter.admit(a) == std::optional<std::uint64_t>(500));
    CHECK_FALSE(limiter.admit(a));
    clock.advance(1s);
    CHECK(limiter.admit(a) == std::optional<std::uint64_t>(1));

    SECTION("the same site with another error detail is the same line") {
        CHECK_FALSE(limiter.admit("handle_accept error: Too many open files in system"));
    }
    SECTION("a flood of distinct lines forgets the oldest site, never grows") {
        for (int i = 0; i < 1000; ++i) {
            clock.advance(1ms);
            CHECK(limiter.admit("site " + std::to_string(i) + " error: x"));
        }
        // `a` was pushed out of the 16 slots: written again at once, count lost.
        CHECK(limiter.admit(a) == std::optional<std::uint64_t>(0));
    }
}

TEST_CASE("GuardLogger holds back a flood and then says how many it held", "[logger]") {
    std::ostringstream out;
    ErrorLog log(&out);
    log.set_channels(wsguard::wspp::error_channels(LogLevel::warn));
    for (int i = 0; i < 10000; ++i) {
        log.write(wlog::elevel::rerror, accept_failed);
    }
    // Within one second of the first: one line. (The suite's own speed makes
    // this a second at most on any machine that runs it.)
    CHECK(count_lines(out.str()) <= 2);
    CHECK(out.str().find("Too many open files") != std::string::npos);
}

TEST_CASE("a lean endpoint whose peers vanish mid-write logs nothing at the default level",
          "[logger][integration]") {
    using Server = websocketpp::server<wsguard::wspp::asio_lean_single_thread>;
    std::ostringstream server_log;
    Server server;
    server.get_elog().set_ostream(&server_log);
    server.init_asio();
    server.set_reuse_addr(true);
    int opened = 0, closed = 0;
    server.set_open_handler([&](websocketpp::connection_hdl h) {
        ++opened;
        // A stream of writes the peer will never read.
        auto con = server.get_con_from_hdl(h);
        const std::string chunk(16 * 1024, 'x');
        for (int i = 0; i < 64; ++i) {
            con->send(chunk, websocketpp::frame::opcode::text);
        }
    });
    server.set_close_handler([&](websocketpp::connection_hdl) { ++closed; });
    server.set_fail_handler([&](websocketpp::connection_hdl) { ++closed; });
    websocketpp::lib::error_code ec;
    server.listen(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0), ec);
    REQUIRE_FALSE(ec);
    server.start_accept();
    const auto port = server.get_local_endpoint(ec).port();

    // Raw sockets that complete the handshake, then reset (SO_LINGER 0).
    constexpr int peers = 20;
    asio::io_context io;
    std::thread server_thread([&] { server.run(); });
    for (int i = 0; i < peers; ++i) {
        asio::ip::tcp::socket s(io);
        s.connect(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port), ec);
        REQUIRE_FALSE(ec);
        const std::string request =
            "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        asio::write(s, asio::buffer(request), ec);
        REQUIRE_FALSE(ec);
        char head[256];
        s.read_some(asio::buffer(head), ec);  // the 101 and the first bytes of the stream
        REQUIRE_FALSE(ec);
        s.set_option(asio::socket_base::linger(true, 0));
        s.close();
    }
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (std::chrono::steady_clock::now() < deadline) {
        std::atomic<bool> done{false};
        asio::post(server.get_io_service(), [&] { done = closed == peers; });
        std::this_thread::sleep_for(20ms);
        if (done) {
            break;
        }
    }
    server.stop_listening(ec);
    server.stop();
    server_thread.join();
    CHECK(opened == peers);
    CHECK(closed == peers);
    INFO(server_log.str());
    CHECK(server_log.str().empty());
    // The same endpoint's logger does write what is not a peer's doing.
    server.get_elog().write(wlog::elevel::rerror, accept_failed);
    CHECK(server_log.str().find(accept_failed) != std::string::npos);
    // And builds no line for a channel that is off (websocketpp asks first).
    CHECK_FALSE(server.get_alog().static_test(wlog::alevel::devel));
    CHECK_FALSE(server.get_elog().static_test(wlog::elevel::devel));
    CHECK(server.get_elog().static_test(wlog::elevel::rerror));
}
