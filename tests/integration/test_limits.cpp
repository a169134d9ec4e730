// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// The close codes of ServerGuard's limits as a real client sees them over
// loopback: max connections (1013), max message size (1009), idle timeout
// (1000 "Idle timeout"; pongs do not count as activity), dead peers
// (terminated), graceful shutdown (1001). The time-based cases scale every
// timeout and bound by WSGUARD_TIME_SCALE (1 in the normal run, larger under
// valgrind), so they test the same thing on a slower clock.
#include "client_harness.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using nlohmann::json;
using wsguard::test::ClientEndpoint;
using wsguard::test::ConnectOptions;
using wsguard::test::Millis;
using wsguard::test::scaled;
using wsguard::test::ServerRunner;
using wsguard::test::stat_of;
using wsguard::test::stats_eventually;

namespace {

// A lower bound on how long a connection lived, measured from the client's
// open: `d` stretched by WSGUARD_TIME_SCALE, less one second under valgrind,
// where the first open's path is translated on first use and so reaches the
// client up to that much after the server started its timers.
long long lived_at_least(Millis d) {
    return scaled(d).count() - (wsguard::test::time_scale() > 1.0 ? 1000 : 0);
}

constexpr std::uint16_t going_away = 1001;
constexpr std::uint16_t normal = 1000;
constexpr std::uint16_t abnormal = 1006;
constexpr std::uint16_t message_too_big = 1009;
constexpr std::uint16_t try_again_later = 1013;

}  // namespace

TEST_CASE("a connection over max_connections is closed with 1013 and counted", "[limits]") {
    auto options = wsguard::test::test_server_options();
    options.guard.max_connections = 2;
    ServerRunner<> server(options);
    ClientEndpoint clients;
    auto a = clients.connect_open(server.port());
    auto b = clients.connect_open(server.port());
    REQUIRE((a && b));

    auto third = clients.connect(server.port());
    REQUIRE(third->wait_closed());
    CHECK(third->remote_close_code() == try_again_later);
    CHECK_FALSE(third->remote_close_reason().empty());

    // The admitted ones are untouched.
    CHECK(a->round_trip());
    CHECK(b->round_trip());
    json s;
    REQUIRE(stats_eventually(
        server.port(), [](const json& j) { return stat_of(j, "rejected_connections") == 1; }, s));
    CHECK(stat_of(s, "connections") == 2);

    // A slot freed by a close is available again.
    a->close();
    REQUIRE(a->wait_closed());
    REQUIRE(stats_eventually(
        server.port(), [](const json& j) { return stat_of(j, "connections") == 1; }, s));
    auto again = clients.connect_open(server.port());
    REQUIRE(again);
    CHECK(again->round_trip());
    CHECK(stat_of(wsguard::test::get_stats(server.port()), "rejected_connections") == 1);
    CHECK(server.stop());
}

TEST_CASE("a message over max_message_bytes closes the connection with 1009", "[limits]") {
    auto options = wsguard::test::test_server_options();
    options.guard.max_message_bytes = 1024;
    ServerRunner<> server(options);
    ClientEndpoint clients;
    auto c = clients.connect_open(server.port());
    REQUIRE(c);

    // Exactly at the limit is accepted (echoed: an unknown type).
    json at_limit = {{"type", "big"}, {"pad", ""}};
    at_limit["pad"] = std::string(1024 - at_limit.dump().size(), 'p');
    REQUIRE(at_limit.dump().size() == 1024);
    c->send(at_limit);
    auto echo = c->next_json();
    REQUIRE(echo);
    CHECK(*echo == json{{"type", "echo"}, {"data", at_limit}});

    c->send(std::string(2000, 'x'));
    REQUIRE(c->wait_closed());
    CHECK(c->remote_close_code() == message_too_big);

    json s;
    CHECK(stats_eventually(
        server.port(),
        [](const json& j) {
            return stat_of(j, "connections") == 0 && stat_of(j, "closes", "oversized") == 1;
        },
        s));
    CHECK(server.stop());
}

TEST_CASE("a silent connection is closed with 1000 Idle timeout, but an active one is not",
          "[limits]") {
    auto options = wsguard::test::test_server_options();
    options.guard.idle_timeout = scaled(Millis{300});
    options.guard.ping_interval = scaled(Millis{60000});
    ServerRunner<> server(options);
    ClientEndpoint clients;
    auto silent = clients.connect_open(server.port());
    auto active = clients.connect_open(server.port());
    REQUIRE((silent && active));

    // Active: a message every 100 ms for a second (over three idle timeouts).
    for (int i = 0; i < 10; ++i) {
        REQUIRE(active->round_trip());
        REQUIRE_FALSE(active->wait_closed(scaled(Millis{100})));
    }
    CHECK(active->is_open());

    REQUIRE(silent->wait_closed(scaled(Millis{2000})));
    CHECK(silent->remote_close_code() == normal);
    CHECK(silent->remote_close_reason() == "Idle timeout");
    const auto lived = silent->open_duration().count();
    CHECK(lived >= lived_at_least(Millis{250}));
    CHECK(lived <= scaled(Millis{1000}).count());

    json s;
    CHECK(stats_eventually(
        server.port(), [](const json& j) { return stat_of(j, "closes", "idle") == 1; }, s));
    CHECK(active->round_trip());
    CHECK(server.stop());
}

TEST_CASE("a member that only reads a busy room is not idle, unless sends do not count",
          "[limits]") {
    for (const bool sends_count : {true, false}) {
        INFO("sends_count_as_activity " << sends_count);
        auto options = wsguard::test::test_server_options();
        options.guard.idle_timeout = scaled(Millis{300});
        options.guard.ping_interval = scaled(Millis{60000});
        options.guard.sends_count_as_activity = sends_count;
        ServerRunner<> server(options);
        ClientEndpoint clients;
        auto reader = clients.connect_open(server.port());
        auto talker = clients.connect_open(server.port());
        REQUIRE((reader && talker));
        for (auto* c : {reader.get(), talker.get()}) {
            c->send(json{{"type", "join"}, {"room", "busy"}});
            REQUIRE(c->round_trip());
        }
        const std::size_t before = reader->received();

        // Room traffic every 50 ms for 1.2 s (four idle timeouts); the reader
        // sends nothing.
        std::size_t sent = 0;
        for (int i = 0; i < 24; ++i) {
            talker->send(json{{"type", "room-message"}, {"room", "busy"}, {"content", "m"}});
            ++sent;
            if (reader->wait_closed(scaled(Millis{50}))) {
                break;
            }
        }
        json s;
        if (sends_count) {
            CHECK(reader->wait_received(before + sent, wsguard::test::prompt_wait));
            CHECK(reader->is_open());
            CHECK(stat_of(wsguard::test::get_stats(server.port()), "closes", "idle") == 0);
        } else {
            REQUIRE(reader->wait_closed(scaled(Millis{2000})));
            CHECK(reader->remote_close_code() == normal);
            CHECK(reader->remote_close_reason() == "Idle timeout");
            CHECK(reader->received() > before);  // closed while room traffic reached it
            CHECK(stats_eventually(
                server.port(), [](const json& j) { return stat_of(j, "closes", "idle") == 1; }, s));
        }
        CHECK(talker->round_trip());
        CHECK(server.stop());
    }
}

TEST_CASE("answering pings does not keep an otherwise silent connection from idling", "[limits]") {
    auto options = wsguard::test::test_server_options();
    options.guard.idle_timeout = scaled(Millis{500});
    options.guard.ping_interval = scaled(Millis{100});
    ServerRunner<> server(options);
    ClientEndpoint clients;
    auto c = clients.connect_open(server.port());  // websocketpp answers pings itself
    REQUIRE(c);

    REQUIRE(c->wait_closed(scaled(Millis{3000})));
    CHECK(c->remote_close_code() == normal);
    CHECK(c->remote_close_reason() == "Idle timeout");
    CHECK(c->pings_seen() >= 2);
    const auto lived = c->open_duration().count();
    CHECK(lived >= lived_at_least(Millis{450}));
    CHECK(lived <= scaled(Millis{1500}).count());

    json s;
    CHECK(stats_eventually(
        server.port(), [](const json& j) { return stat_of(j, "closes", "idle") == 1; }, s));
    CHECK(stat_of(s, "traffic", "pongs_received") >= 2);
    CHECK(stat_of(s, "closes", "dead_peer") == 0);
    CHECK(server.stop());
}

TEST_CASE("a peer that stops answering pings is terminated within two ping intervals", "[limits]") {
    auto options = wsguard::test::test_server_options();
    options.guard.ping_interval = scaled(Millis{200});
    options.guard.idle_timeout = scaled(Millis{60000});
    ServerRunner<> server(options);
    ClientEndpoint clients;
    ConnectOptions deaf;
    deaf.answer_pings = false;
    auto dead = clients.connect_open(server.port(), deaf);
    auto alive = clients.connect_open(server.port());
    REQUIRE((dead && alive));

    REQUIRE(dead->wait_closed(scaled(Millis{3000})));
    CHECK(dead->pings_seen() >= 1);
    // Terminated, not closed: no close frame came.
    CHECK(dead->remote_close_code() == abnormal);
    const auto lived = dead->open_duration().count();
    CHECK(lived >= lived_at_least(Millis{350}));
    CHECK(lived <= scaled(Millis{600}).count());

    json s;
    CHECK(stats_eventually(
        server.port(),
        [](const json& j) {
            return stat_of(j, "closes", "dead_peer") == 1 && stat_of(j, "connections") == 1;
        },
        s));
    // The peer that answers lives on, pinged and not idle-closed.
    CHECK_FALSE(alive->wait_closed(scaled(Millis{300})));
    CHECK(alive->pings_seen() >= 2);
    CHECK(alive->round_trip());
    CHECK(stat_of(wsguard::test::get_stats(server.port()), "closes", "dead_peer") == 1);
    CHECK(server.stop());
}

TEST_CASE("graceful shutdown closes every client with 1001 and run() returns", "[limits]") {
    ServerRunner<> server;
    ClientEndpoint clients;
    std::vector<std::shared_ptr<wsguard::test::ClientConnection>> all;
    for (int i = 0; i < 4; ++i) {
        auto c = clients.connect_open(server.port());
        REQUIRE(c);
        c->send(json{{"type", "join"}, {"room", i % 2 ? "odd" : "even"}});
        REQUIRE(c->round_trip());
        all.push_back(c);
    }

    const auto asked = wsguard::test::SteadyClock::now();
    server.request_shutdown();
    for (auto& c : all) {
        REQUIRE(c->wait_closed());
        CHECK(c->remote_close_code() == going_away);
        CHECK(c->remote_close_reason() == "Server shutting down");
    }
    // Every peer answered the close, so run() ends well before the 5 s grace period.
    REQUIRE(server.wait_stopped(scaled(Millis{3000})));
    CHECK(wsguard::test::since(asked).count() < scaled(Millis{3000}).count());
    REQUIRE(server.stop());

    // run() returned and the thread is joined: the guard can be read here.
    const auto st = server.server().guard().stats();
    CHECK(st.closed_shutdown == 4);
    CHECK(st.connections == 0);
    CHECK(st.rooms == 0);
    CHECK(st.memberships == 0);
    CHECK(st.registry.size == 0);
    CHECK(st.shutting_down);

    // Nobody listens any more.
    auto late = clients.connect(server.port());
    REQUIRE(late->wait_closed());
    CHECK(late->failed());
}

TEST_CASE("graceful shutdown does not wait forever for a peer that never answers the close",
          "[limits]") {
    ServerRunner<> server;
    wsguard::test::RawWsClient mute;  // never reads, so never answers the close frame
    REQUIRE(mute.connect(server.port()));
    json s;
    REQUIRE(stats_eventually(
        server.port(), [](const json& j) { return stat_of(j, "connections") == 1; }, s));

    const auto asked = wsguard::test::SteadyClock::now();
    server.request_shutdown();
    // websocketpp's close handshake timeout and the server's grace period are 5 s each.
    REQUIRE(server.wait_stopped(scaled(Millis{9000})));
    CHECK(wsguard::test::since(asked).count() >= 1000);
    REQUIRE(server.stop());
    CHECK(server.server().guard().stats().closed_shutdown == 1);
    mute.close();
}
