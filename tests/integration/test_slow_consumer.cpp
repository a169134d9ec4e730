// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// A reader that stops reading cannot grow the server's memory beyond the
// configured bound. A raw TCP client with a tiny receive buffer joins a room
// and never reads again; a publisher floods the room; a normal member reads.
// /stats (served on the io thread, so no race with it) is polled throughout.
#include "client_harness.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <string>

using nlohmann::json;
using wsguard::test::ClientEndpoint;
using wsguard::test::ConnectOptions;
using wsguard::test::Millis;
using wsguard::test::ServerRunner;
using wsguard::test::stat_of;
using wsguard::test::stats_eventually;

namespace {

constexpr std::size_t bound = 64 * 1024;
// Far more than the kernel's socket buffers take in before the server's own
// queue for the stalled reader starts to fill (a few MiB on Linux loopback).
constexpr std::size_t big_flood = 20000;
constexpr std::size_t content_bytes = 1000;
// A broadcast frame: {"content":"<content>","from":N,"type":"message"} plus the header.
constexpr std::size_t frame_bytes = content_bytes + 64;

struct Flood {
    std::size_t max_queued = 0;
    long long dropped = 0;
    long long closed_slow = 0;
    std::size_t polls = 0;
    bool normal_got_all = false;
};

chat::ServerOptions slow_consumer_options(wsguard::wspp::SlowConsumerPolicy policy) {
    auto o = wsguard::test::test_server_options();
    o.guard.max_buffered_bytes = bound;
    o.guard.slow_consumer = policy;
    o.guard.idle_timeout = Millis{0};
    o.guard.ping_interval = Millis{0};
    return o;
}

// Joins the stalled reader, a normal reader and a publisher to room R, floods
// R, and polls /stats until the normal reader has every message (or the
// deadline). Checks the bound at every poll.
Flood run_flood(ServerRunner<>& server, wsguard::test::RawWsClient& stalled,
                ClientEndpoint& clients, std::size_t flood) {
    const auto port = server.port();
    REQUIRE(stalled.connect(port, 4096));
    REQUIRE(stalled.send_text(R"({"type":"join","room":"R"})"));

    ConnectOptions counting;
    counting.keep_messages = false;
    auto normal = clients.connect_open(port, counting);
    auto publisher = clients.connect_open(port);
    REQUIRE((normal && publisher));
    normal->send(std::string(R"({"type":"join","room":"R"})"));
    publisher->send(std::string(R"({"type":"join","room":"R"})"));
    REQUIRE(publisher->round_trip());
    json s;
    REQUIRE(stats_eventually(
        port, [](const json& j) { return stat_of(j, "memberships") == 3; }, s));

    const std::string content(content_bytes, 'm');
    for (std::size_t i = 0; i < flood; ++i) {
        publisher->send(json{{"type", "room-message"}, {"room", "R"}, {"content", content}});
    }

    // Two members of R read nothing the publisher does not send; each is bounded
    // by `bound` (a lone message may exceed an empty queue's bound, not ours).
    const std::size_t server_bound = 2 * (bound + frame_bytes);
    Flood f;
    std::size_t last_received = 0;
    auto last_progress = wsguard::test::SteadyClock::now();
    const auto deadline = wsguard::test::SteadyClock::now() + wsguard::test::scaled(Millis{45000});
    while (wsguard::test::SteadyClock::now() < deadline) {
        s = wsguard::test::get_stats(port);
        REQUIRE_FALSE(s.is_discarded());
        ++f.polls;
        const auto queued = static_cast<std::size_t>(stat_of(s, "queued_bytes"));
        f.max_queued = std::max(f.max_queued, queued);
        INFO("poll " << f.polls << ": queued_bytes " << queued);
        REQUIRE(queued <= server_bound);
        const auto got = normal->received();
        if (got >= flood) {
            f.normal_got_all = true;
            break;
        }
        if (got > last_received) {
            last_received = got;
            last_progress = wsguard::test::SteadyClock::now();
        }
        // The normal reader keeps receiving while the other one is stalled.
        INFO("normal reader received " << got << " of " << flood);
        REQUIRE(wsguard::test::since(last_progress).count() <
                wsguard::test::scaled(Millis{5000}).count());
        normal->wait_received(got + 1, Millis{20});
    }
    s = wsguard::test::get_stats(port);
    f.dropped = stat_of(s, "dropped_messages");
    f.closed_slow = stat_of(s, "closes", "slow_consumer");
    INFO("max queued_bytes " << f.max_queued << " over " << f.polls << " polls, dropped "
                             << f.dropped << ", normal reader got " << normal->received());
    CHECK(normal->received() == flood);
    CHECK(normal->is_open());
    CHECK(publisher->is_open());
    return f;
}

}  // namespace

TEST_CASE("drop policy: a stalled reader's queue stays bounded and others get everything",
          "[slow_consumer]") {
    ServerRunner<> server(slow_consumer_options(wsguard::wspp::SlowConsumerPolicy::drop));
    wsguard::test::RawWsClient stalled;
    ClientEndpoint clients;
    const Flood f = run_flood(server, stalled, clients, big_flood);
    CHECK(f.normal_got_all);
    CHECK(f.polls >= 2);
    // Once the kernel buffers were full, messages for the stalled reader were dropped.
    CHECK(f.dropped > 0);
    CHECK(f.dropped <= static_cast<long long>(big_flood));
    CHECK(f.closed_slow == 0);

    // The stalled reader is still connected (drop never closes), its queue full
    // to the bound and no further.
    // queued_bytes is the sample's (a scan per sample interval): wait for one.
    json s;
    CHECK(stats_eventually(
        server.port(), [](const json& j) { return stat_of(j, "queued_bytes") > 0; }, s));
    CHECK(stat_of(s, "connections") == 3);
    CHECK(stat_of(s, "queued_bytes") <= static_cast<long long>(bound + frame_bytes));

    // Once it goes away, nothing of it stays queued.
    stalled.close();
    CHECK(stats_eventually(
        server.port(),
        [](const json& j) {
            return stat_of(j, "connections") == 2 && stat_of(j, "queued_bytes") == 0 &&
                   stat_of(j, "memberships") == 2;
        },
        s));
    CHECK(server.stop());
}

TEST_CASE("close policy: a stalled reader is closed as a slow consumer", "[slow_consumer]") {
    ServerRunner<> server(slow_consumer_options(wsguard::wspp::SlowConsumerPolicy::close));
    wsguard::test::RawWsClient stalled;
    ClientEndpoint clients;
    // Closing needs only the stalled reader's buffers filled once.
    const Flood f = run_flood(server, stalled, clients, big_flood / 2);
    CHECK(f.normal_got_all);
    CHECK(f.closed_slow >= 1);
    CHECK(f.dropped == 0);

    // The raw socket never reads its close frame; dropping it ends the
    // connection on the server at once.
    stalled.close();
    json s;
    CHECK(stats_eventually(
        server.port(),
        [](const json& j) {
            return stat_of(j, "connections") == 2 && stat_of(j, "queued_bytes") == 0 &&
                   stat_of(j, "memberships") == 2;
        },
        s));
    CHECK(server.stop());
}
