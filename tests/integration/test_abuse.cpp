// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// Abuse over loopback: stalled and garbage handshakes, invalid UTF-8, ping and
// fragment floods, a connect storm past max_connections, oversized HTTP
// headers. After each the server still serves, its counts return to zero and
// its memory stays within a stated bound. Every case is bounded in count and
// time and talks to 127.0.0.1 only.
#include "client_harness.hpp"

#include <wsguard/memory.hpp>

#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <vector>

// Sanitizers inflate memory figures (shadow memory, quarantine): there the
// memory bounds are only reported, the behaviour is checked all the same.
#include "support/sanitizers.hpp"

using nlohmann::json;
using wsguard::test::ClientConnection;
using wsguard::test::ClientEndpoint;
using wsguard::test::Millis;
using wsguard::test::prompt_wait;
using wsguard::test::RawWsClient;
using wsguard::test::ServerRunner;
using wsguard::test::since;
using wsguard::test::stat_of;
using wsguard::test::stats_eventually;
using wsguard::test::SteadyClock;

namespace {

constexpr std::uint16_t invalid_payload = 1007;
constexpr std::uint16_t message_too_big = 1009;
constexpr std::uint16_t try_again_later = 1013;

constexpr std::uint8_t op_continuation = 0x0;
constexpr std::uint8_t op_text = 0x1;
constexpr std::uint8_t op_close = 0x8;
constexpr std::uint8_t op_ping = 0x9;
constexpr std::uint8_t op_pong = 0xA;

constexpr std::size_t MiB = std::size_t{1} << 20;

/// The bound on a normal client's round trip while the server is under abuse
/// (stretched by WSGUARD_TIME_SCALE under valgrind).
const double responsive_ms = static_cast<double>(wsguard::test::scaled(Millis{1000}).count());

std::string ping_text() {
    return R"({"type":"ping"})";
}

/// Resident and heap readings of this process (server and clients) at
/// construction; check() reports the growth and asserts it stays below the
/// bounds, except under sanitizers and valgrind.
class MemoryWatch {
public:
    MemoryWatch(const char* what, std::size_t resident_bound, std::size_t heap_bound)
        : what_(what),
          resident_bound_(resident_bound),
          heap_bound_(heap_bound),
          before_(wsguard::read_memory()) {}

    void check() const {
        const auto after = wsguard::read_memory();
        const auto grew = [](const std::optional<std::size_t>& a,
                             const std::optional<std::size_t>& b) -> std::optional<double> {
            if (!a || !b) {
                return std::nullopt;
            }
            return (static_cast<double>(*b) - static_cast<double>(*a)) / MiB;
        };
        const auto resident = grew(before_.resident_bytes, after.resident_bytes);
        const auto heap = grew(before_.heap_in_use_bytes, after.heap_in_use_bytes);
        const bool inflated =
            wsguard::test::sanitizer::replaces_malloc || wsguard::test::under_valgrind();
        std::printf(
            "[abuse] %s: resident %+.2f MiB (bound %.0f), heap in use %+.2f MiB (bound %.0f)%s\n",
            what_, resident.value_or(0.0), double(resident_bound_) / MiB, heap.value_or(0.0),
            double(heap_bound_) / MiB, inflated ? " [sanitizer or valgrind: not asserted]" : "");
        if (inflated) {
            return;
        }
        if (resident) {
            CHECK(*resident < double(resident_bound_) / MiB);
        }
        if (heap) {
            CHECK(*heap < double(heap_bound_) / MiB);
        }
    }

private:
    const char* what_;
    std::size_t resident_bound_, heap_bound_;
    wsguard::MemoryReading before_;
};

/// After an abuse: /stats answers 200, a fresh client joins a room and gets
/// its pong, and once it leaves every count is back to `connections`
/// connections and no rooms, memberships or queued bytes.
void require_still_serving(ServerRunner<>& server, ClientEndpoint& clients,
                           long long connections = 0) {
    const auto port = server.port();
    auto r = wsguard::test::http_get(port, "/stats");
    REQUIRE(r);
    CHECK(r->status == 200);
    auto c = clients.connect_open(port);
    REQUIRE(c);
    c->send(json{{"type", "join"}, {"room", "after-abuse"}});
    CHECK(c->round_trip());
    c->close();
    REQUIRE(c->wait_closed());
    json s;
    CHECK(stats_eventually(
        port,
        [connections](const json& j) {
            return stat_of(j, "connections") == connections && stat_of(j, "rooms") == 0 &&
                   stat_of(j, "memberships") == 0 && stat_of(j, "queued_bytes") == 0;
        },
        s));
    INFO(s.dump());
    CHECK(stat_of(s, "connections") == connections);
}

/// A normal client's round trip in milliseconds (REQUIREs that it happened).
double timed_round_trip(ClientConnection& c) {
    const auto t = SteadyClock::now();
    REQUIRE(c.round_trip());
    return since(t).count();
}

/// Reads frames until a close frame arrives; nullopt if none came in time.
/// Data frames before it are counted in `data_frames`.
std::optional<RawWsClient::Frame> read_close(RawWsClient& c, std::size_t& data_frames) {
    const auto deadline = SteadyClock::now() + prompt_wait;
    while (SteadyClock::now() < deadline) {
        auto f = c.read_frame(std::chrono::duration_cast<Millis>(deadline - SteadyClock::now()));
        if (!f) {
            return std::nullopt;
        }
        if (f->opcode == op_close) {
            return f;
        }
        if (f->opcode == op_text || f->opcode == 0x2 || f->opcode == op_continuation) {
            ++data_frames;
        }
    }
    return std::nullopt;
}

/// Answers the server's close and checks that it then ends the TCP connection.
void finish_close(RawWsClient& c, std::uint16_t code) {
    std::string payload{static_cast<char>(code >> 8), static_cast<char>(code & 0xFF)};
    c.send_frame(op_close, payload);  // may fail if the server already reset: fine
    CHECK(c.read_to_end());
}

}  // namespace

TEST_CASE("stalled and garbage handshakes neither starve a client nor stay", "[abuse]") {
    auto options = wsguard::test::test_server_options();
    // Short so the test sees the drop within a second (the default is 5 s).
    const Millis handshake_timeout{1000};
    options.guard.open_handshake_timeout = handshake_timeout;
    ServerRunner<> server(options);
    const auto port = server.port();
    ClientEndpoint clients;
    auto normal = clients.connect_open(port);
    REQUIRE(normal);
    REQUIRE(normal->round_trip());
    // 400 sockets and connection objects come and go: 8 MiB resident, 4 MiB heap.
    const MemoryWatch memory("stalled/garbage handshakes", 8 * MiB, 4 * MiB);

    constexpr int stalled_count = 200, garbage_count = 200;
    {
        // Slowloris: a request head that never ends.
        const std::string partial = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n";
        std::vector<std::unique_ptr<RawWsClient>> stalled;
        std::vector<SteadyClock::time_point> stalled_at;
        for (int i = 0; i < stalled_count; ++i) {
            stalled_at.push_back(SteadyClock::now());
            auto c = std::make_unique<RawWsClient>();
            REQUIRE(c->connect_tcp(port));
            REQUIRE(c->send_bytes(partial));
            stalled.push_back(std::move(c));
        }
        // Garbage: no request line at all (no spaces), then an end of head.
        std::minstd_rand rng(2024);
        std::vector<std::unique_ptr<RawWsClient>> garbage;
        for (int i = 0; i < garbage_count; ++i) {
            std::string junk(300, '\0');
            for (auto& ch : junk) {
                ch = static_cast<char>(0x80 | (rng() & 0x7F));
            }
            junk += "\r\n\r\n";
            auto c = std::make_unique<RawWsClient>();
            REQUIRE(c->connect_tcp(port));
            REQUIRE(c->send_bytes(junk));
            garbage.push_back(std::move(c));
        }

        // With all of them in flight, a connected client and a new one are served.
        const double pong_ms = timed_round_trip(*normal);
        const auto t = SteadyClock::now();
        auto fresh = clients.connect_open(port);
        REQUIRE(fresh);
        REQUIRE(fresh->round_trip());
        const double fresh_ms = since(t).count();
        std::printf(
            "[abuse] under %d stalled + %d garbage handshakes: pong %.2f ms, "
            "new connection + pong %.2f ms\n",
            stalled_count, garbage_count, pong_ms, fresh_ms);
        CHECK(pong_ms < responsive_ms);
        CHECK(fresh_ms < responsive_ms);
        fresh->close();
        REQUIRE(fresh->wait_closed());

        // Garbage gets 400 Bad Request and the connection ends, at once.
        int bad_request = 0;
        for (auto& g : garbage) {
            auto rest = g->read_to_end();
            REQUIRE(rest);
            bad_request += rest->rfind("HTTP/1.1 400", 0) == 0 ? 1 : 0;
        }
        CHECK(bad_request == garbage_count);

        // The stalled ones are dropped by the handshake timeout, not before.
        double first_drop_ms = -1;
        for (std::size_t i = 0; i < stalled.size(); ++i) {
            auto rest = stalled[i]->read_to_end(handshake_timeout + prompt_wait);
            REQUIRE(rest);
            if (i == 0) {
                first_drop_ms = since(stalled_at[0]).count();
            }
        }
        std::printf("[abuse] first stalled handshake dropped after %.0f ms (timeout %lld ms)\n",
                    first_drop_ms, static_cast<long long>(handshake_timeout.count()));
        CHECK(first_drop_ms >= handshake_timeout.count() - 50.0);
        // Well before websocketpp's 5 s default: the option is what bounds them.
        CHECK(
            first_drop_ms <
            static_cast<double>((handshake_timeout + wsguard::test::scaled(Millis{2000})).count()));
    }

    json s;
    CHECK(stats_eventually(
        port,
        [&](const json& j) {
            return stat_of(j, "traffic", "failed_handshakes") == stalled_count + garbage_count;
        },
        s));
    INFO(s.dump());
    CHECK(stat_of(s, "connections") == 1);
    CHECK(normal->round_trip());
    normal->close();
    REQUIRE(normal->wait_closed());
    require_still_serving(server, clients);
    memory.check();
    CHECK(server.stop());
}

TEST_CASE("invalid UTF-8 in a text message is closed with 1007, also across fragments", "[abuse]") {
    ServerRunner<> server;
    const auto port = server.port();
    ClientEndpoint clients;
    require_still_serving(server, clients);
    // A dozen connections: 2 MiB resident, 1 MiB heap.
    const MemoryWatch memory("invalid UTF-8", 2 * MiB, 1 * MiB);

    struct Variant {
        const char* name;
        std::vector<std::string> fragments;  // the first is a text frame
    };
    const std::vector<Variant> variants = {
        {"bad continuation byte", {"{\"type\":\"x\",\"v\":\"\xC3\x28\"}"}},
        {"overlong encoding", {"{\"type\":\"x\",\"v\":\"\xC0\xAF\"}"}},
        {"UTF-16 surrogate", {"{\"type\":\"x\",\"v\":\"\xED\xA0\x80\"}"}},
        {"byte 0xFF", {"{\"type\":\"x\",\"v\":\"\xFF\"}"}},
        {"ends inside a sequence", {"{\"type\":\"x\"}\xE2\x82"}},
        {"lead byte and bad continuation in two fragments",
         {"{\"type\":\"x\",\"v\":\"\xE2", "\x28\xA1\"}"}},
        {"sequence split over three fragments, then a bad byte",
         {"{\"type\":\"x\",\"v\":\"\xF0", "\x9F", "\x98\x80\xC3", "\x28\"}"}},
        {"fragmented message ends inside a sequence", {"{\"type\":\"x\"}", "\xE2\x82"}},
    };
    for (const auto& v : variants) {
        INFO(v.name);
        RawWsClient c;
        REQUIRE(c.connect(port));
        for (std::size_t i = 0; i < v.fragments.size(); ++i) {
            const bool last = i + 1 == v.fragments.size();
            REQUIRE(c.send_frame(i == 0 ? op_text : op_continuation, v.fragments[i], last));
        }
        std::size_t delivered = 0;
        auto close = read_close(c, delivered);
        REQUIRE(close);
        CHECK(close->close_code() == invalid_payload);
        CHECK(delivered == 0);  // the message never reached the router
        finish_close(c, invalid_payload);
    }

    // A valid multi-byte message split inside its sequences is fine.
    RawWsClient ok;
    REQUIRE(ok.connect(port));
    REQUIRE(ok.send_frame(op_text, "{\"type\":\"utf8\",\"v\":\"\xE2", false));
    REQUIRE(ok.send_frame(op_continuation, "\x82\xAC \xF0\x9F", false));
    REQUIRE(ok.send_frame(op_continuation, "\x98\x80\"}", true));
    auto echo = ok.read_frame();
    REQUIRE(echo);
    REQUIRE(echo->opcode == op_text);
    const auto j = json::parse(echo->payload, nullptr, false);
    CHECK(j.value("type", "") == "echo");
    CHECK(j["data"].value("v", "") == "\xE2\x82\xAC \xF0\x9F\x98\x80");
    ok.close();

    require_still_serving(server, clients);
    memory.check();
    CHECK(server.stop());
}

TEST_CASE("ping and fragment floods leave the server responsive and bounded", "[abuse]") {
    ServerRunner<> server;
    const auto port = server.port();
    ClientEndpoint clients;
    auto normal = clients.connect_open(port);
    REQUIRE(normal);
    REQUIRE(normal->round_trip());
    // One connection's worth of frames (about 200 KB on the wire, 10 KB of
    // message): 8 MiB resident, 4 MiB heap.
    const MemoryWatch memory("ping and fragment floods", 8 * MiB, 4 * MiB);

    RawWsClient flood;
    REQUIRE(flood.connect(port));
    std::uint32_t mask = 1;

    {
        // 10,000 pings in one write; websocketpp answers each with a pong.
        constexpr int pings = 10000;
        std::string bytes;
        for (int i = 0; i < pings; ++i) {
            wsguard::test::append_client_frame(bytes, op_ping, std::to_string(i % 1000), ++mask);
        }
        REQUIRE(flood.send_bytes(bytes));
        const double pong_ms = timed_round_trip(*normal);
        int pongs = 0;
        while (pongs < pings) {
            auto f = flood.read_frame();
            REQUIRE(f);
            REQUIRE(f->opcode == op_pong);
            ++pongs;
        }
        REQUIRE(flood.send_text(ping_text()));
        auto reply = flood.read_frame();
        REQUIRE(reply);
        CHECK(reply->payload == R"({"type":"pong"})");
        std::printf("[abuse] %d pings: all answered; a client's pong meanwhile %.2f ms\n", pings,
                    pong_ms);
        CHECK(pong_ms < responsive_ms);
    }
    {
        // One 10,000-byte message in 1-byte fragments, a ping between every 1,000.
        json message = {{"type", "fragments"}, {"pad", ""}};
        message["pad"] = std::string(10000 - message.dump().size(), 'f');
        const std::string text = message.dump();
        REQUIRE(text.size() == 10000);
        std::string bytes;
        for (std::size_t i = 0; i < text.size(); ++i) {
            wsguard::test::append_client_frame(bytes, i == 0 ? op_text : op_continuation,
                                               text.substr(i, 1), ++mask, i + 1 == text.size());
            if (i % 1000 == 500) {
                wsguard::test::append_client_frame(bytes, op_ping, "mid", ++mask);
            }
        }
        REQUIRE(flood.send_bytes(bytes));
        const double pong_ms = timed_round_trip(*normal);
        int pongs = 0;
        std::optional<RawWsClient::Frame> echo;
        while (!echo) {
            auto f = flood.read_frame();
            REQUIRE(f);
            if (f->opcode == op_pong) {
                ++pongs;
            } else {
                echo = f;
            }
        }
        CHECK(pongs == 10);
        REQUIRE(echo->opcode == op_text);
        CHECK(json::parse(echo->payload, nullptr, false) ==
              json{{"type", "echo"}, {"data", message}});
        std::printf(
            "[abuse] 10,000 one-byte fragments: echoed; a client's pong meanwhile %.2f ms\n",
            pong_ms);
        CHECK(pong_ms < responsive_ms);
    }
    {
        // 2,000 small messages, each in three fragments.
        constexpr int messages = 2000;
        const std::string text = ping_text();
        std::string bytes;
        for (int i = 0; i < messages; ++i) {
            wsguard::test::append_client_frame(bytes, op_text, text.substr(0, 5), ++mask, false);
            wsguard::test::append_client_frame(bytes, op_continuation, text.substr(5, 5), ++mask,
                                               false);
            wsguard::test::append_client_frame(bytes, op_continuation, text.substr(10), ++mask,
                                               true);
        }
        REQUIRE(flood.send_bytes(bytes));
        const double pong_ms = timed_round_trip(*normal);
        for (int i = 0; i < messages; ++i) {
            auto f = flood.read_frame();
            REQUIRE(f);
            REQUIRE(f->payload == R"({"type":"pong"})");
        }
        std::printf(
            "[abuse] %d messages of 3 fragments: all answered; a client's pong meanwhile "
            "%.2f ms\n",
            messages, pong_ms);
        CHECK(pong_ms < responsive_ms);
    }
    flood.close();

    json s;
    CHECK(stats_eventually(
        port, [](const json& j) { return stat_of(j, "connections") == 1; }, s));
    CHECK(normal->round_trip());
    normal->close();
    REQUIRE(normal->wait_closed());
    require_still_serving(server, clients);
    memory.check();
    CHECK(server.stop());
}

TEST_CASE("a fragmented message over max_message_bytes is closed with 1009", "[abuse]") {
    auto options = wsguard::test::test_server_options();
    options.guard.max_message_bytes = 1024;
    ServerRunner<> server(options);
    const auto port = server.port();
    ClientEndpoint clients;
    require_still_serving(server, clients);
    // Two connections, each stopped at 1 KiB: 2 MiB resident, 1 MiB heap.
    const MemoryWatch memory("oversized fragmented messages", 2 * MiB, 1 * MiB);

    struct Variant {
        const char* name;
        std::size_t fragment;  // bytes per fragment
        std::size_t count;
    };
    for (const Variant v :
         {Variant{"100-byte fragments", 100, 20}, Variant{"1-byte fragments", 1, 5000}}) {
        INFO(v.name);
        RawWsClient c;
        REQUIRE(c.connect(port));
        std::string bytes;
        std::uint32_t mask = 7;
        for (std::size_t i = 0; i < v.count; ++i) {
            wsguard::test::append_client_frame(bytes, i == 0 ? op_text : op_continuation,
                                               std::string(v.fragment, 'a'), ++mask,
                                               i + 1 == v.count);
        }
        c.send_bytes(bytes);  // the server may stop reading part-way: fine
        std::size_t delivered = 0;
        auto close = read_close(c, delivered);
        REQUIRE(close);
        CHECK(close->close_code() == message_too_big);
        CHECK(delivered == 0);
        finish_close(c, message_too_big);
    }

    json s;
    CHECK(stats_eventually(
        port, [](const json& j) { return stat_of(j, "closes", "oversized") == 2; }, s));
    require_still_serving(server, clients);
    memory.check();
    CHECK(server.stop());
}

TEST_CASE("a connect storm past max_connections is refused one by one with 1013", "[abuse]") {
    auto options = wsguard::test::test_server_options();
    constexpr std::size_t max_connections = 50, attempts = 500;
    options.guard.max_connections = max_connections;
    ServerRunner<> server(options);
    const auto port = server.port();
    ClientEndpoint clients;
    require_still_serving(server, clients);
    // 500 connections come and go: 16 MiB resident, 4 MiB heap (clients included).
    const MemoryWatch memory("connect storm", 16 * MiB, 4 * MiB);

    std::vector<std::shared_ptr<ClientConnection>> all;
    const auto t = SteadyClock::now();
    for (std::size_t i = 0; i < attempts; ++i) {
        all.push_back(clients.connect(port));
    }
    // Every attempt completes its handshake; the extra ones are then closed.
    for (auto& c : all) {
        REQUIRE(c->wait_open());
    }
    json s;
    CHECK(stats_eventually(
        port,
        [&](const json& j) {
            return stat_of(j, "rejected_connections") == long(attempts - max_connections);
        },
        s));
    std::vector<std::shared_ptr<ClientConnection>> admitted;
    std::size_t refused = 0;
    REQUIRE(wsguard::test::eventually([&] {
        std::size_t closed = 0;
        for (auto& c : all) {
            closed += c->is_closed() ? 1 : 0;
        }
        return closed >= attempts - max_connections;
    }));
    for (auto& c : all) {
        if (c->is_closed()) {
            CHECK(c->remote_close_code() == try_again_later);
            ++refused;
        } else {
            admitted.push_back(c);
        }
    }
    std::printf("[abuse] %zu attempts at max %zu: %zu admitted, %zu refused with 1013 in %.0f ms\n",
                attempts, max_connections, admitted.size(), refused, since(t).count());
    CHECK(refused == attempts - max_connections);
    REQUIRE(admitted.size() == max_connections);
    CHECK(stat_of(s, "connections") == long(max_connections));

    // The admitted ones are served; counts return to them, then to zero.
    for (auto& c : admitted) {
        CHECK(c->round_trip());
    }
    s = wsguard::test::get_stats(port);
    CHECK(stat_of(s, "connections") == long(max_connections));
    CHECK(stat_of(s, "rejected_connections") == long(attempts - max_connections));
    for (auto& c : admitted) {
        c->close();
    }
    for (auto& c : admitted) {
        REQUIRE(c->wait_closed());
    }
    all.clear();
    admitted.clear();
    require_still_serving(server, clients);
    memory.check();
    CHECK(server.stop());
}

TEST_CASE("oversized HTTP headers are refused and the server carries on", "[abuse]") {
    ServerRunner<> server;
    const auto port = server.port();
    ClientEndpoint clients;
    require_still_serving(server, clients);
    // Four requests of up to 64 KiB: 4 MiB resident, 2 MiB heap.
    const MemoryWatch memory("oversized headers", 4 * MiB, 2 * MiB);

    const std::string upgrade =
        "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";
    const std::string stats = "GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\n";
    const std::string long_line = "X-Long: " + std::string(64 * 1024, 'a') + "\r\n";
    std::string many_lines;
    for (int i = 0; i < 1000; ++i) {
        char line[64];
        std::snprintf(line, sizeof line, "X-Abuse-%04d: aaaaaaaaaaaaaaaaaaaaaaaa\r\n", i);
        many_lines += line;
    }
    struct Variant {
        const char* name;
        std::string request;
    };
    const std::vector<Variant> variants = {
        {"upgrade with a 64 KiB header line", upgrade + long_line + "\r\n"},
        {"upgrade with 1000 header lines", upgrade + many_lines + "\r\n"},
        {"GET /stats with a 64 KiB header line", stats + long_line + "\r\n"},
        {"GET /stats with 1000 header lines", stats + many_lines + "\r\n"},
    };
    for (const auto& v : variants) {
        INFO(v.name);
        RawWsClient c;
        REQUIRE(c.connect_tcp(port));
        c.send_bytes(v.request);  // the server may stop reading part-way: fine
        // Refused at once: a status or a closed connection, never a success.
        auto answer = c.read_to_end();
        REQUIRE(answer);
        const int status = answer->rfind("HTTP/1.1 ", 0) == 0 ? std::atoi(answer->c_str() + 9) : 0;
        std::printf(
            "[abuse] %s: %s\n", v.name,
            status ? ("HTTP " + std::to_string(status)).c_str() : "closed without a status");
        CHECK((status == 0 || status == 431 || status == 400));
        CHECK(stat_of(wsguard::test::get_stats(port), "connections") == 0);
    }

    require_still_serving(server, clients);
    memory.check();
    CHECK(server.stop());
}
