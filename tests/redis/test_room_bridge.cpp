// The bridge seam without a Redis server: LocalBridge, the guard's room
// events (over the iostream transport), URL parsing, option checks, and a
// RedisBridge whose Redis never answers (local rooms unaffected, queue bounded).
#include <wsguard/redis/redis_bridge.hpp>
#include <wsguard/room_index.hpp>
#include <wsguard/websocketpp/lean_config.hpp>
#include <wsguard/websocketpp/room_bridge.hpp>
#include <wsguard/websocketpp/server_guard.hpp>

#include "redis_harness.hpp"
#include "rooms_only_guard.hpp"
#include "support/iostream_pair.hpp"

#include <catch2/catch.hpp>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>

#include <algorithm>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

using wsguard::ConnectionId;
using wsguard::wspp::BridgeState;
using wsguard::wspp::PublishStatus;
using Config = wsguard::wspp::core_lean;
using Guard = wsguard::wspp::ServerGuard<Config>;
using Pair = wsguard::test::IostreamPair<Config>;

using FakeGuard = wsguard::test::RoomsOnlyGuard;

}  // namespace

TEST_CASE("LocalBridge keeps messages on this node and counts them", "[room_bridge]") {
    wsguard::wspp::LocalBridge bridge;
    CHECK(bridge.stats().state == BridgeState::local);
    CHECK(bridge.publish("lobby", "{}") == PublishStatus::local_only);
    CHECK(bridge.publish("lobby", "{}") == PublishStatus::local_only);
    auto s = bridge.stats();
    CHECK(s.publish_calls == 2);
    CHECK(s.local_only == 2);
    CHECK(s.failed == 0);
    CHECK(s.publish_calls == s.published + s.failed + s.local_only);
    bridge.stop();
    bridge.stop();  // idempotent
    CHECK(bridge.publish("lobby", "{}") == PublishStatus::stopped);
    s = bridge.stats();
    CHECK(s.state == BridgeState::stopped);
    CHECK(s.failed == 1);
    CHECK(s.publish_calls == s.published + s.failed + s.local_only);
    CHECK(std::string(wsguard::wspp::to_string(BridgeState::connected)) == "connected");
    CHECK(std::string(wsguard::wspp::to_string(PublishStatus::queued)) == "queued");
}

TEST_CASE("the guard reports a room's first join and last leave, closes included",
          "[room_bridge]") {
    websocketpp::server<Config> server;
    wsguard::test::MemoryClient client;
    client.clear_access_channels(websocketpp::log::alevel::all);
    client.clear_error_channels(websocketpp::log::elevel::all);
    Guard guard(server);
    std::vector<ConnectionId> ids;
    std::vector<std::string> created, emptied;
    auto o = guard.on_open.subscribe([&](ConnectionId id) { ids.push_back(id); });
    auto c = guard.on_room_created.subscribe([&](const std::string& r) { created.push_back(r); });
    CHECK(guard.stats().listeners == 2);
    {
        auto e =
            guard.on_room_emptied.subscribe([&](const std::string& r) { emptied.push_back(r); });
        Pair a(server, client), b(server, client);
        REQUIRE(ids.size() == 2);
        REQUIRE(guard.join(ids[0], "lobby").value());
        REQUIRE(guard.join(ids[1], "lobby").value());  // not the first: no event
        REQUIRE(guard.join(ids[0], "solo").value());
        REQUIRE(guard.join(ids[1], "games").value());
        CHECK(created == std::vector<std::string>{"lobby", "solo", "games"});
        CHECK_FALSE(guard.join(ids[0], "lobby")->room_created);  // already a member: no event
        CHECK(created.size() == 3);

        guard.leave(ids[1], "lobby");  // lobby still has a
        CHECK(emptied.empty());
        guard.leave(ids[1], "games");
        CHECK(emptied == std::vector<std::string>{"games"});
        CHECK_FALSE(guard.leave(ids[1], "games"));  // not a member: no event
        CHECK(emptied.size() == 1);

        a.close();  // a's close empties lobby and solo
        std::vector<std::string> sorted(emptied.begin() + 1, emptied.end());
        std::sort(sorted.begin(), sorted.end());
        CHECK(sorted == std::vector<std::string>{"lobby", "solo"});
        CHECK(guard.stats().rooms == 0);
        CHECK(guard.stats().room_index.rooms == 0);
        b.close();
    }
    // Nobody follows emptied rooms: the close path is leave_all, and still exact.
    Pair d(server, client);
    REQUIRE(guard.join(ids.back(), "x").value());
    d.close();
    CHECK(guard.stats().rooms == 0);
    CHECK(guard.stats().memberships == 0);
}

TEST_CASE(
    "parse_redis_url accepts redis://[[user]:password@]host[:port] and says why it refuses the "
    "rest",
    "[room_bridge]") {
    using wsguard::wspp::parse_redis_url;
    auto a = parse_redis_url("redis://127.0.0.1:6380");
    REQUIRE(a);
    CHECK(a->host == "127.0.0.1");
    CHECK(a->port == 6380);
    a = parse_redis_url("redis://cache.internal");
    REQUIRE(a);
    CHECK(a->host == "cache.internal");
    CHECK(a->port == 6379);
    a = parse_redis_url("redis://[::1]:7000/");
    REQUIRE(a);
    CHECK(a->host == "::1");
    CHECK(a->port == 7000);
    for (const char* bad :
         {"", "127.0.0.1:6379", "http://h:1", "redis://", "redis://h:", "redis://h:0",
          "redis://h:65536", "redis://h:12x", "redis://u@h:1", "redis://:@h:1", "redis://:%zz@h",
          "redis://:%4@h", "redis://h:1/2", "redis://h?db=1", "redis://[::1", "rediss://h:1",
          // An '@' after the authority is not a credentials separator.
          "redis://a:b@host#x:y@evil", "redis://a:b@host/?q=1@x:y@evil", "redis://ho st",
          "redis://host\n", "redis://[host]", "redis://[127.0.0.1]"}) {
        INFO(bad);
        std::string why;
        CHECK_FALSE(parse_redis_url(bad, &why));
        CHECK_FALSE(why.empty());
    }
    std::string why;
    CHECK_FALSE(parse_redis_url("rediss://cache:6380", &why));
    CHECK(why.find("TLS") != std::string::npos);
    // Credentials: AUTH password, or an ACL user and password; percent-decoded.
    a = parse_redis_url("redis://:s%40cret@127.0.0.1:6380");
    REQUIRE(a);
    CHECK(a->host == "127.0.0.1");
    CHECK(a->port == 6380);
    CHECK(a->username.empty());
    CHECK(a->password == "s@cret");
    a = parse_redis_url("REDIS://Cache-1.internal_x:7001/");
    REQUIRE(a);
    CHECK(a->host == "Cache-1.internal_x");
    CHECK(a->port == 7001);
    a = parse_redis_url("redis://app:pw:x@[::1]");
    REQUIRE(a);
    CHECK(a->host == "::1");
    CHECK(a->username == "app");
    CHECK(a->password == "pw:x");
    const std::string id = wsguard::wspp::default_node_id();
    CHECK(id.find('\n') == std::string::npos);
    CHECK(id.find('-') != std::string::npos);
}

TEST_CASE("RedisBridge refuses unusable options", "[room_bridge]") {
    asio::io_context io;
    FakeGuard guard;
    using Options = wsguard::wspp::RedisBridgeOptions;
    // Each case starts from fresh defaults (no `o = {}`: gcc 12 -O3 then
    // reports a moved-from string as maybe-uninitialized).
    auto make = [&](void (*change)(Options&)) {
        Options o;
        change(o);
        wsguard::wspp::RedisBridge<FakeGuard> bridge(io, guard, std::move(o));
    };
    CHECK_THROWS_AS(make([](Options& o) { o.node_id = "a\nb"; }), std::invalid_argument);
    CHECK_THROWS_AS(make([](Options& o) { o.address.host.clear(); }), std::invalid_argument);
    CHECK_THROWS_AS(make([](Options& o) { o.max_in_flight = 0; }), std::invalid_argument);
    CHECK_THROWS_AS(make([](Options& o) { o.reconnect_max = std::chrono::milliseconds(1); }),
                    std::invalid_argument);
    CHECK_THROWS_AS(make([](Options& o) { o.queue.max_count = 0; }), std::invalid_argument);
}

TEST_CASE("without Redis the bridge retries with backoff, bounds its queue and never blocks",
          "[room_bridge]") {
    asio::io_context io;
    FakeGuard guard;
    wsguard::wspp::RedisBridgeOptions o;
    o.address.port = wsguard::test::free_loopback_port();  // nothing listens there
    o.node_id = "lonely";
    o.queue = wsguard::QueueOptions{8, 1024, wsguard::OverflowPolicy::drop_oldest,
                                    std::chrono::seconds(60)};
    o.reconnect_min = std::chrono::milliseconds(5);
    o.reconnect_max = std::chrono::milliseconds(20);
    wsguard::wspp::RedisBridge<FakeGuard> bridge(io, guard, o);
    CHECK(bridge.options().node_id == "lonely");

    guard.join(1, "lobby");
    guard.join(2, "lobby");
    guard.join(2, "games");
    const auto start = std::chrono::steady_clock::now();
    int queued = 0;
    for (int i = 0; i < 20; ++i) {
        const auto st = bridge.publish("lobby", "{\"i\":" + std::to_string(i) + "}");
        queued += st == PublishStatus::queued || st == PublishStatus::queued_dropped_oldest;
    }
    CHECK(queued == 20);
    CHECK(bridge.publish("lobby", std::string(2000, 'x')) == PublishStatus::rejected_too_large);
    // Publishing did not wait for Redis.
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::milliseconds(500));
    io.run_for(std::chrono::milliseconds(200));

    auto s = bridge.stats();
    CHECK(s.state != BridgeState::connected);
    CHECK(s.connect_failures >= 3);  // kept retrying, with backoff capped at 20 ms
    CHECK(s.connects == 0);
    CHECK(s.rooms == 2);
    CHECK(s.subscriptions == 0);
    CHECK(s.queue.size == 8);
    CHECK(s.queue.high_water_count == 8);
    CHECK(s.dropped == 12);
    CHECK(s.failed == 12 + 1);  // dropped + too large
    CHECK(s.publish_calls == 21);
    guard.leave(1, "lobby");
    guard.leave(2, "lobby");
    CHECK(bridge.stats().rooms == 1);
    CHECK(guard.delivered.empty());

    bridge.stop();
    s = bridge.stats();
    CHECK(s.state == BridgeState::stopped);
    CHECK(s.queue.size == 0);
    CHECK(s.failed == 21);  // every message that did not go out
    CHECK(s.publish_calls == s.published + s.failed);
    CHECK(bridge.publish("games", "{}") == PublishStatus::stopped);
    // Nothing is left to run (the cancelled timer completes): the loop returns at once.
    io.restart();
    const auto before = std::chrono::steady_clock::now();
    io.run_for(std::chrono::seconds(5));
    CHECK(io.stopped());
    CHECK(std::chrono::steady_clock::now() - before < std::chrono::seconds(1));
}

TEST_CASE("with std::mutex the bridge may be used while several threads run its io_context",
          "[room_bridge]") {
    asio::io_context io;
    FakeGuard guard;
    wsguard::wspp::RedisBridgeOptions o;
    o.address.port = wsguard::test::free_loopback_port();  // nothing listens there
    o.queue = wsguard::QueueOptions{32, 1 << 16, wsguard::OverflowPolicy::drop_oldest,
                                    std::chrono::milliseconds(50)};
    o.reconnect_min = std::chrono::milliseconds(1);
    o.reconnect_max = std::chrono::milliseconds(2);
    wsguard::wspp::RedisBridge<FakeGuard, std::mutex> bridge(io, guard, o);
    auto work = asio::make_work_guard(io);
    std::thread t1([&] { io.run(); }), t2([&] { io.run(); });
    for (int i = 0; i < 2000; ++i) {
        bridge.publish("lobby", "{}");
        if (i % 100 == 0) {
            (void)bridge.stats();
        }
    }
    bridge.stop();
    work.reset();
    t1.join();
    t2.join();
    const auto s = bridge.stats();
    CHECK(s.publish_calls == 2000);
    CHECK(s.failed == 2000);  // nothing ever reached a Redis
    CHECK(s.queue.high_water_count <= 32);
    CHECK(s.state == BridgeState::stopped);
}
