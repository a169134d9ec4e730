// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// Handshake admission over loopback: hostile raw TCP clients (hand-made HTTP
// bytes on asio sockets) against the reference server in-process. An upgrade
// carrying a body, a Hixie-76 or hybi handshake, an over-long URI, a foreign
// Origin, one address past its connection limit and a request the user's hook
// refuses are each answered with their HTTP status before a WebSocket
// connection exists, counted by reason in /stats and /metrics, and leave
// nothing behind: resident memory stays flat and the per-address table
// returns to empty. A hook that throws or answers a non-error status still
// refuses, and the server keeps running; a hook's refusal is counted once;
// allowed_origins entries are matched as browsers send them; IPv4 peers on a
// dual-stack socket are counted per IPv4 address.
#include "client_harness.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <cstddef>
#include <cstdio>
#include <fstream>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <unistd.h>

#include "support/sanitizers.hpp"

using nlohmann::json;
using wsguard::test::connect_within;
using wsguard::test::HttpResponse;
using wsguard::test::Millis;
using wsguard::test::prompt_wait;
using wsguard::test::run_until;
using wsguard::test::ServerRunner;
using wsguard::test::stat_of;
using wsguard::test::stats_eventually;

namespace {

constexpr double MiB = 1024.0 * 1024.0;

/// An RFC 6455 upgrade request head for `path`, with `extra` header lines
/// (each ending in \r\n) before the blank line.
std::string upgrade(const std::string& path = "/", const std::string& extra = "") {
    return "GET " + path +
           " HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" +
           extra + "\r\n";
}

/// A Hixie-76 (draft-00) handshake: two number keys and 8 key bytes after the head.
const std::string hixie76 =
    "GET /demo HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key2: 12998 5 Y3 1  .P00\r\nUpgrade: WebSocket\r\n"
    "Sec-WebSocket-Key1: 4 @1  46546xW%0l 1 5\r\nOrigin: http://example.com\r\n\r\n^n:ds[4U";

/// A hybi draft handshake of `version` (7 and 8 are what websocketpp speaks besides 13).
std::string hybi(int version) {
    return "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: " +
           std::to_string(version) + "\r\n\r\n";
}

/// Resident set size from /proc/self/statm; nullopt where there is none.
std::optional<double> resident_mib() {
    std::ifstream statm("/proc/self/statm");
    long long size = 0, resident = 0;
    if (!(statm >> size >> resident)) {
        return std::nullopt;
    }
    return double(resident) * double(::sysconf(_SC_PAGESIZE)) / MiB;
}

/// A raw TCP client from a chosen loopback source address: writes hand-made
/// bytes, reads the response head, stays connected until destroyed or
/// close(). Synchronous, test thread only; only ever connects to 127.0.0.1.
class RawPeer {
public:
    explicit RawPeer(const char* source = "127.0.0.1") : sock_(io_), source_(source) {}

    bool connect(std::uint16_t port) {
        std::error_code ec;
        sock_.open(asio::ip::tcp::v4(), ec);
        // 127.0.0.0/8 is loopback on Linux: another source address, same host.
        sock_.bind({asio::ip::make_address(source_), 0}, ec);
        if (ec) {
            return false;
        }
        return connect_within(io_, sock_, asio::ip::make_address("127.0.0.1"), port, prompt_wait);
    }

    /// Writes `head` then `body` while reading the response head, which a
    /// server may send before the body is all written (and then stop
    /// reading). Status 0: the connection ended, or nothing came in `timeout`.
    HttpResponse exchange(const std::string& head, const std::string* body = nullptr,
                          Millis timeout = prompt_wait) {
        bool read_done = false;
        std::error_code read_result;
        asio::async_write(sock_, asio::buffer(head), [&](const std::error_code& e, std::size_t) {
            if (!e && body != nullptr) {
                asio::async_write(sock_, asio::buffer(*body),
                                  [](const std::error_code&, std::size_t) {});
            }
        });
        asio::async_read_until(sock_, asio::dynamic_buffer(inbox_), "\r\n\r\n",
                               [&](const std::error_code& e, std::size_t) {
                                   read_result = e;
                                   read_done = true;
                               });
        run_until(io_, sock_, read_done, timeout);
        HttpResponse r;
        const auto end = inbox_.find("\r\n\r\n");
        if (read_result || end == std::string::npos || inbox_.rfind("HTTP/1.1 ", 0) != 0) {
            return r;
        }
        r.head = inbox_.substr(0, end);
        r.body = inbox_.substr(end + 4);
        r.status = std::atoi(inbox_.c_str() + 9);
        inbox_.clear();
        return r;
    }

    /// Reads until the server ends the connection; the bytes after the head.
    std::string read_rest(Millis timeout = prompt_wait) {
        bool done = false;
        std::string more;
        asio::async_read(sock_, asio::dynamic_buffer(more),
                         [&](const std::error_code&, std::size_t) { done = true; });
        run_until(io_, sock_, done, timeout);
        return more;
    }

    /// Ends the connection: a FIN, or a reset with `reset`.
    void close(bool reset = false) {
        std::error_code ec;
        if (reset) {
            sock_.set_option(asio::socket_base::linger(true, 0), ec);
        }
        sock_.close(ec);
    }

private:
    asio::io_context io_;
    asio::ip::tcp::socket sock_;
    const char* source_;
    std::string inbox_;
};

/// One request on a fresh connection from 127.0.0.1; the response head.
HttpResponse ask(std::uint16_t port, const std::string& request) {
    RawPeer p;
    REQUIRE(p.connect(port));
    return p.exchange(request);
}

long long refused_of(const json& s, const char* reason) {
    return stat_of(s, "refused", reason);
}

}  // namespace

TEST_CASE("an upgrade carrying a body is refused and keeps no memory", "[admission]") {
    ServerRunner<> server;
    const auto port = server.port();

    SECTION("10 upgrades declaring a 32 MB body: 413 before the body is read, RSS flat") {
        const std::string body(32000000, 'b');
        const std::string head = upgrade("/", "Content-Length: 32000000\r\n");
        // Warm up: the first refusal's allocations are not per connection.
        CHECK(ask(port, upgrade("/", "Content-Length: 5\r\n") + "hello").status == 400);
        const auto before = resident_mib();
        std::vector<std::unique_ptr<RawPeer>> peers;
        int upgraded = 0, refused = 0, ended = 0;
        for (int i = 0; i < 10; ++i) {
            auto p = std::make_unique<RawPeer>();
            REQUIRE(p->connect(port));
            const auto r = p->exchange(head, &body, wsguard::test::scaled(Millis{20000}));
            upgraded += r.status == 101 ? 1 : 0;
            refused += r.status == 413 ? 1 : 0;
            ended += r.status == 0 ? 1 : 0;  // reset before the 413 was read: refused too
            peers.push_back(std::move(p));   // held open while memory is read
        }
        const auto after = resident_mib();
        std::printf("[admission] 10 x 32 MB-body upgrades: 101 x%d, 413 x%d, reset x%d\n", upgraded,
                    refused, ended);
        CHECK(upgraded == 0);
        CHECK(refused + ended == 10);
        json s;
        CHECK(stats_eventually(
            port, [](const json& j) { return refused_of(j, "body") == 11; }, s));
        CHECK(stat_of(s, "connections") == 0);
        if (before && after) {
            const bool inflated =
                wsguard::test::sanitizer::replaces_malloc || wsguard::test::under_valgrind();
            std::printf(
                "[admission] resident %+.2f MiB over 10 body-carrying upgrades (bound 4)%s\n",
                *after - *before, inflated ? " [sanitizer or valgrind: not asserted]" : "");
            if (!inflated) {
                CHECK(*after - *before < 4.0);
            }
        }
    }

    SECTION("a small body or chunked encoding on an upgrade is 400; plain HTTP over 64 KiB 413") {
        auto r = ask(port, upgrade("/", "Content-Length: 1000\r\n") + std::string(1000, 'x'));
        CHECK(r.status == 400);
        r = ask(port, upgrade("/", "Transfer-Encoding: chunked\r\n") + "5\r\nhello\r\n0\r\n\r\n");
        CHECK(r.status == 400);
        r = ask(port, upgrade("/", "Content-Length: 0\r\n"));
        CHECK(r.status == 101);
        // Plain HTTP: websocketpp's own limit, set from max_http_body_bytes.
        RawPeer post;
        REQUIRE(post.connect(port));
        const std::string big(100000, 'p');
        r = post.exchange(
            "POST /stats HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n\r\n", &big);
        CHECK((r.status == 413 || r.status == 0));
        r = ask(port,
                "POST /stats HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10\r\n\r\n0123456789");
        CHECK(r.status == 405);  // within the limit: the HTTP handler answers
        json s;
        CHECK(stats_eventually(
            port, [](const json& j) { return refused_of(j, "body") == 3; }, s));
    }
    CHECK(server.stop());
}

TEST_CASE("Hixie-76 and hybi drafts are answered 426 with Sec-WebSocket-Version: 13",
          "[admission]") {
    ServerRunner<> server;
    const auto port = server.port();
    for (const auto& [name, request] : std::vector<std::pair<std::string, std::string>>{
             {"Hixie-76", hixie76}, {"version 7", hybi(7)}, {"version 8", hybi(8)}}) {
        INFO(name);
        const auto r = ask(port, request);
        CHECK(r.status == 426);
        CHECK(r.header("Sec-WebSocket-Version") == "13");
    }
    // A version websocketpp has no processor for: its own 400, never 101, counted.
    const auto r = ask(port, hybi(9));
    CHECK(r.status == 400);
    CHECK(ask(port, upgrade()).status == 101);
    json s;
    CHECK(stats_eventually(
        port, [](const json& j) { return refused_of(j, "version") == 4; }, s));
    CHECK(stat_of(s, "traffic", "opened") == 1);
    CHECK(server.stop());
}

TEST_CASE("a request URI past max_uri_bytes is 414", "[admission]") {
    ServerRunner<> server;
    const auto port = server.port();
    const std::string at_bound = "/" + std::string(8 * 1024 - 1, 'a');
    const std::string long_uri = "/" + std::string(15 * 1024, 'a');
    CHECK(ask(port, upgrade(long_uri)).status == 414);
    CHECK(ask(port, upgrade(at_bound + "b")).status == 414);
    CHECK(ask(port, upgrade(at_bound)).status == 101);
    json s;
    CHECK(stats_eventually(
        port, [](const json& j) { return refused_of(j, "uri_too_long") == 2; }, s));
    CHECK(server.stop());
}

TEST_CASE("with an Origin allow-list, another Origin is 403; none or a listed one is admitted",
          "[admission]") {
    auto options = wsguard::test::test_server_options();
    options.guard.allowed_origins = {"https://chat.example", "http://localhost:8080"};
    ServerRunner<> server(options);
    const auto port = server.port();
    CHECK(ask(port, upgrade("/", "Origin: https://evil.example\r\n")).status == 403);
    CHECK(ask(port, upgrade("/", "Origin: https://chat.example.evil.example\r\n")).status == 403);
    CHECK(ask(port, upgrade("/", "Origin: null\r\n")).status == 403);
    CHECK(ask(port, upgrade()).status == 101);  // no Origin: not a browser
    CHECK(ask(port, upgrade("/", "Origin: https://chat.example\r\n")).status == 101);
    CHECK(ask(port, upgrade("/", "Origin: HTTP://LOCALHOST:8080\r\n")).status == 101);

    json s;
    CHECK(stats_eventually(
        port, [](const json& j) { return refused_of(j, "origin") == 3; }, s));
    CHECK(stat_of(s, "refused", "total") == 3);
    const auto m = wsguard::test::http_get(port, "/metrics");
    REQUIRE(m);
    CHECK(m->body.find("wsguard_refused_total{reason=\"origin\"} 3\n") != std::string::npos);
    CHECK(m->body.find("wsguard_refused_total{reason=\"version\"} 0\n") != std::string::npos);
    CHECK(server.stop());
}

TEST_CASE("connections per IP address: past the limit 503, per address, counted until close",
          "[admission]") {
    auto options = wsguard::test::test_server_options();
    options.guard.max_connections_per_ip = 3;
    ServerRunner<> server(options);
    const auto port = server.port();
    std::vector<std::unique_ptr<RawPeer>> first, second;
    for (int i = 0; i < 3; ++i) {
        first.push_back(std::make_unique<RawPeer>("127.0.0.1"));
        REQUIRE(first.back()->connect(port));
        CHECK(first.back()->exchange(upgrade()).status == 101);
    }
    RawPeer over("127.0.0.1");
    REQUIRE(over.connect(port));
    const auto refused = over.exchange(upgrade());
    CHECK(refused.status == 503);
    // Another address has its own count.
    for (int i = 0; i < 3; ++i) {
        second.push_back(std::make_unique<RawPeer>("127.0.0.2"));
        REQUIRE(second.back()->connect(port));
        CHECK(second.back()->exchange(upgrade()).status == 101);
    }
    RawPeer over2("127.0.0.2");
    REQUIRE(over2.connect(port));
    CHECK(over2.exchange(upgrade()).status == 503);
    json s;
    CHECK(stats_eventually(
        port, [](const json& j) { return stat_of(j, "connections") == 6; }, s));
    CHECK(stat_of(s, "peer_addresses") == 2);
    CHECK(refused_of(s, "per_ip") == 2);

    // A closed connection gives its address a slot back.
    first.front()->close();
    first.erase(first.begin());
    CHECK(stats_eventually(
        port, [](const json& j) { return stat_of(j, "connections") == 5; }, s));
    first.push_back(std::make_unique<RawPeer>("127.0.0.1"));
    REQUIRE(first.back()->connect(port));
    CHECK(first.back()->exchange(upgrade()).status == 101);

    first.clear();
    second.clear();
    CHECK(stats_eventually(
        port,
        [](const json& j) {
            return stat_of(j, "connections") == 0 && stat_of(j, "peer_addresses") == 0;
        },
        s));
    CHECK(server.stop());
}

// With std::mutex the server runs two io threads: the table is shared by both.
TEMPLATE_TEST_CASE("the per-address table returns to empty under churn", "[admission]",
                   wsguard::NullMutex, std::mutex) {
    auto options = wsguard::test::test_server_options();
    options.guard.max_connections_per_ip = 2;
    options.threads = std::is_same_v<TestType, std::mutex> ? 2 : 1;
    ServerRunner<TestType> server(options);
    const auto port = server.port();
    const int rounds = wsguard::test::scaled_count(150, 20);
    int refused = 0;
    for (int round = 0; round < rounds; ++round) {
        const char* source = round % 2 == 0 ? "127.0.0.1" : "127.0.0.3";
        std::vector<std::unique_ptr<RawPeer>> peers;
        for (int i = 0; i < 3; ++i) {
            peers.push_back(std::make_unique<RawPeer>(source));
            REQUIRE(peers.back()->connect(port));
        }
        // Every way a counted connection ends: a request abandoned before its
        // response, a FIN after the upgrade, a reset after it.
        const int mode = round % 3;
        for (auto& p : peers) {
            if (mode == 0) {
                p->exchange(upgrade(), nullptr, Millis{0});
            } else {
                const int status = p->exchange(upgrade()).status;
                refused += status == 503 ? 1 : 0;
                REQUIRE((status == 101 || status == 503));
            }
        }
        for (auto& p : peers) {
            p->close(mode == 2);
        }
        // The next round's first connections need this round's slots back.
        json s;
        REQUIRE(stats_eventually(
            port, [](const json& j) { return stat_of(j, "peer_addresses") == 0; }, s));
    }
    json s;
    CHECK(stats_eventually(
        port,
        [](const json& j) {
            return stat_of(j, "connections") == 0 && stat_of(j, "peer_addresses") == 0;
        },
        s));
    CHECK(refused_of(s, "per_ip") >= refused);
    CHECK(refused == (rounds - (rounds + 2) / 3));  // one per round that read its answers
    std::printf("[admission] churn on %u io thread(s): %d rounds, %lld refused per address\n",
                options.threads, rounds, refused_of(s, "per_ip"));
    CHECK(server.stop());
}

TEST_CASE("the user's admission hook runs after the guard's checks and may refuse", "[admission]") {
    ServerRunner<> server;
    const auto port = server.port();
    auto calls = std::make_shared<std::atomic<int>>(0);
    server.on_io_thread([&] {
        auto& endpoint = server.server().endpoint();
        server.server().guard().set_admission_hook(
            [calls, &endpoint](websocketpp::connection_hdl h) {
                ++*calls;
                const auto con = endpoint.get_con_from_hdl(h);
                if (con->get_request_header("Authorization") != "Bearer good") {
                    return wsguard::wspp::AdmissionVerdict::refuse(401, "Missing or bad token");
                }
                return wsguard::wspp::AdmissionVerdict::admit();
            });
        return 0;
    });
    auto r = ask(port, upgrade());
    CHECK(r.status == 401);
    CHECK(r.head.rfind("HTTP/1.1 401 Missing or bad token\r\n", 0) == 0);
    CHECK(ask(port, upgrade("/", "Authorization: Bearer good\r\n")).status == 101);
    CHECK(ask(port, hybi(8)).status == 426);  // the guard refused first: the hook never ran
    CHECK(calls->load() == 2);
    json s;
    CHECK(stats_eventually(
        port, [](const json& j) { return refused_of(j, "user_hook") == 1; }, s));
    CHECK(refused_of(s, "version") == 1);
    server.on_io_thread([&] {
        server.server().guard().set_admission_hook(nullptr);
        return 0;
    });
    CHECK(server.stop());
}

TEST_CASE("a throwing admission hook refuses with 500 and the server keeps running",
          "[admission]") {
    ServerRunner<> server;
    const auto port = server.port();
    server.on_io_thread([&] {
        server.server().guard().set_admission_hook(
            [](websocketpp::connection_hdl) -> wsguard::wspp::AdmissionVerdict {
                throw std::runtime_error("token service down");
            });
        return 0;
    });
    const auto r = ask(port, upgrade());
    CHECK(r.status == 500);
    CHECK(r.head.rfind("HTTP/1.1 500 Internal Server Error\r\n", 0) == 0);
    // websocketpp does not catch: a throw would have left io_context::run().
    CHECK_FALSE(server.wait_stopped(Millis{100}));
    server.on_io_thread([&] {
        server.server().guard().set_admission_hook(nullptr);
        return 0;
    });
    CHECK(ask(port, upgrade()).status == 101);
    json s;
    CHECK(stats_eventually(
        port, [](const json& j) { return refused_of(j, "user_hook") == 1; }, s));
    CHECK(stat_of(s, "refused", "total") == 1);
    CHECK(server.stop());
}

TEST_CASE("a hook's refusal status outside 400..599 is 403 and never opens the connection",
          "[admission]") {
    ServerRunner<> server;
    const auto port = server.port();
    auto status = std::make_shared<std::atomic<int>>(101);
    server.on_io_thread([&] {
        server.server().guard().set_admission_hook([status](websocketpp::connection_hdl) {
            return wsguard::wspp::AdmissionVerdict::refuse(
                static_cast<std::uint16_t>(status->load()), "Not you");
        });
        return 0;
    });
    for (const int s : {101, 200, 302}) {
        INFO(s);
        status->store(s);
        RawPeer p;
        REQUIRE(p.connect(port));
        const auto r = p.exchange(upgrade());
        CHECK(r.status == 403);
        CHECK(r.header("Sec-WebSocket-Accept").empty());
    }
    json s;
    CHECK(stats_eventually(
        port, [](const json& j) { return refused_of(j, "user_hook") == 3; }, s));
    CHECK(stat_of(s, "traffic", "opened") == 0);
    CHECK(stat_of(s, "connections") == 0);
    server.on_io_thread([&] {
        server.server().guard().set_admission_hook(nullptr);
        return 0;
    });
    CHECK(server.stop());
}

TEST_CASE("a hook refusing with 413, or 400 with Sec-WebSocket-Version, is counted once",
          "[admission]") {
    ServerRunner<> server;
    const auto port = server.port();
    server.on_io_thread([&] {
        auto& endpoint = server.server().endpoint();
        server.server().guard().set_admission_hook([&endpoint](websocketpp::connection_hdl h) {
            const auto con = endpoint.get_con_from_hdl(h);
            if (con->get_request_header("X-Case") == "version") {
                con->replace_header("Sec-WebSocket-Version", "13");
                return wsguard::wspp::AdmissionVerdict::refuse(400, "Bad Request");
            }
            return wsguard::wspp::AdmissionVerdict::refuse(413, "Payload Too Large");
        });
        return 0;
    });
    CHECK(ask(port, upgrade()).status == 413);
    const auto r = ask(port, upgrade("/", "X-Case: version\r\n"));
    CHECK(r.status == 400);
    CHECK(r.header("Sec-WebSocket-Version") == "13");
    json s;
    CHECK(stats_eventually(
        port,
        [](const json& j) {
            return refused_of(j, "user_hook") == 2 &&
                   stat_of(j, "traffic", "failed_handshakes") == 2;
        },
        s));
    CHECK(refused_of(s, "body") == 0);
    CHECK(refused_of(s, "version") == 0);
    CHECK(stat_of(s, "refused", "total") == 2);
    server.on_io_thread([&] {
        server.server().guard().set_admission_hook(nullptr);
        return 0;
    });
    CHECK(server.stop());
}

TEST_CASE("allowed_origins entries match as browsers send them; a malformed one is refused",
          "[admission]") {
    auto options = wsguard::test::test_server_options();
    // As an operator might write them: "--allowed-origins 'https://a.example/, ...'".
    options.guard.allowed_origins = {"https://a.example/", " https://b.example",
                                     "https://c.example:443", "http://localhost:8080/"};
    ServerRunner<> server(options);
    const auto port = server.port();
    for (const char* origin :
         {"https://a.example", "https://b.example", "https://c.example", "http://localhost:8080"}) {
        INFO(origin);
        CHECK(ask(port, upgrade("/", std::string("Origin: ") + origin + "\r\n")).status == 101);
    }
    CHECK(ask(port, upgrade("/", "Origin: https://d.example\r\n")).status == 403);
    CHECK(server.stop());

    for (const char* bad : {"https://a.example/app", "https://*.example", "a.example"}) {
        INFO(bad);
        auto o = wsguard::test::test_server_options();
        o.guard.allowed_origins = {bad};
        CHECK_THROWS_AS(chat::ChatServer<>(o), std::invalid_argument);
    }
}

TEST_CASE("on a dual-stack socket IPv4 peers are counted per IPv4 address, not as one /64",
          "[admission]") {
    auto options = wsguard::test::test_server_options();
    // An IPv6 socket on the IPv4-mapped loopback: peers arrive as ::ffff:127.0.0.x.
    options.bind_address = "::ffff:127.0.0.1";
    options.guard.max_connections_per_ip = 1;
    std::optional<ServerRunner<>> server;
    try {
        server.emplace(options);
    } catch (const std::exception& e) {
        WARN("no IPv4-mapped listener here: " << e.what());
        return;
    }
    const auto port = server->port();
    RawPeer a("127.0.0.1"), b("127.0.0.2"), a2("127.0.0.1");
    REQUIRE(a.connect(port));
    REQUIRE(b.connect(port));
    REQUIRE(a2.connect(port));
    CHECK(a.exchange(upgrade()).status == 101);
    CHECK(b.exchange(upgrade()).status == 101);  // another IPv4 address: its own count
    CHECK(a2.exchange(upgrade()).status == 503);
    json s;
    CHECK(stats_eventually(
        port, [](const json& j) { return stat_of(j, "connections") == 2; }, s));
    CHECK(stat_of(s, "peer_addresses") == 2);
    CHECK(refused_of(s, "per_ip") == 1);
    CHECK(server->stop());
}
