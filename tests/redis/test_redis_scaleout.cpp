// Rooms across servers: two in-process chat servers and one private
// redis-server on loopback. Without redis-server these cases are skipped
// (CTest shows "Skipped"), or fail when WSGUARD_REQUIRE_REDIS is on (CI).
#include "client_harness.hpp"
#include "redis_harness.hpp"

#include <catch2/catch.hpp>

#include <cstdio>
#include <initializer_list>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace {

using namespace wsguard::test;
using Runner = ServerRunner<>;
using nlohmann::json;

// Skips the case (CTest matches the marker) or fails it when Redis is required.
#define WSGUARD_NEED_REDIS()                                                                     \
    do {                                                                                         \
        if (redis_server_path().empty()) {                                                       \
            if (redis_required()) {                                                              \
                FAIL(                                                                            \
                    "redis-server not found: install it (Debian: apt-get install redis-server) " \
                    "or configure with -DWSGUARD_REQUIRE_REDIS=OFF to skip these tests");        \
            }                                                                                    \
            std::printf("wsguard-skip: redis-server not found, scale-out test skipped\n");       \
            return;                                                                              \
        }                                                                                        \
    } while (false)

chat::ServerOptions node_options(const RedisProcess& redis, const std::string& node_id) {
    chat::ServerOptions o = test_server_options();
    o.redis_url = redis.url();
    o.node_id = node_id;
    o.guard.rooms.max_rooms_per_member = 128;
    return o;
}

/// The "bridge" object of a node's /stats (discarded on error).
json bridge_of(std::uint16_t port) {
    json s = get_stats(port);
    return s.is_object() && s.contains("bridge") ? s["bridge"] : json(json::value_t::discarded);
}

/// Waits until the node's bridge is connected and Redis confirmed `n` rooms.
bool subscribed(std::uint16_t port, long long n, Millis timeout = prompt_wait) {
    json last;
    return stats_eventually(
        port,
        [&](const json& s) {
            const json& b = s["bridge"];
            return b["state"] == "connected" && b["subscriptions"].get<long long>() == n;
        },
        last, timeout);
}

void join(ClientConnection& c, const std::string& room) {
    c.send(json{{"type", "join"}, {"room", room}});
}

void say(ClientConnection& c, const std::string& room, const json& content) {
    c.send(json{{"type", "room-message"}, {"room", room}, {"content", content}});
}

/// Every client joins "lobby" (each join acknowledged), then both nodes'
/// bridges are connected and Redis confirmed the one room.
void join_lobby(std::initializer_list<ClientConnection*> clients, Runner& a, Runner& b) {
    for (auto* c : clients) {
        join(*c, "lobby");
        REQUIRE(c->round_trip());
    }
    REQUIRE(subscribed(a.port(), 1));
    REQUIRE(subscribed(b.port(), 1));
}

/// The next `n` room messages' contents (fewer if `timeout` passes first).
std::vector<json> collect(ClientConnection& c, std::size_t n, Millis timeout) {
    std::vector<json> out;
    const auto deadline = SteadyClock::now() + timeout;
    while (out.size() < n) {
        const auto left = std::chrono::duration_cast<Millis>(deadline - SteadyClock::now());
        if (left.count() <= 0) {
            break;
        }
        auto m = c.next_of_type("message", left);
        if (!m) {
            break;
        }
        out.push_back((*m)["content"]);
    }
    return out;
}

/// The channels of the wsguard prefix Redis knows, as room names.
std::set<std::string> channels(RedisQuery& q) {
    std::set<std::string> rooms;
    if (auto list = q.channels("wsguard:room:*")) {
        for (const auto& ch : *list) {
            rooms.insert(ch.substr(std::string("wsguard:room:").size()));
        }
    }
    return rooms;
}

}  // namespace

TEST_CASE("members on both servers get each room message once, in order, never their own",
          "[redis]") {
    WSGUARD_NEED_REDIS();
    RedisProcess redis;
    REQUIRE(redis.start());
    Runner a(node_options(redis, "node-a")), b(node_options(redis, "node-b"));
    ClientEndpoint ep;
    auto a1 = ep.connect_open(a.port()), a2 = ep.connect_open(a.port());
    auto b1 = ep.connect_open(b.port()), b2 = ep.connect_open(b.port());
    REQUIRE((a1 && a2 && b1 && b2));
    join_lobby({a1.get(), a2.get(), b1.get(), b2.get()}, a, b);

    constexpr int n = 200;
    for (int i = 0; i < n; ++i) {
        say(*a1, "lobby", {{"s", "a1"}, {"i", i}});
        say(*b1, "lobby", {{"s", "b1"}, {"i", i}});
    }
    // a1 and b1 get the other's n; a2 and b2 get both.
    const std::map<ClientConnection*, std::size_t> expected = {
        {a1.get(), n}, {a2.get(), 2 * n}, {b1.get(), n}, {b2.get(), 2 * n}};
    for (const auto& [client, count] : expected) {
        const auto got = collect(*client, count, Millis{15000});
        REQUIRE(got.size() == count);
        std::map<std::string, int> next;  // per publisher: the i expected next
        for (const auto& content : got) {
            const std::string s = content["s"];
            CHECK_FALSE(((client == a1.get() && s == "a1") || (client == b1.get() && s == "b1")));
            CHECK(content["i"].get<int>() == next[s]++);  // in order, once each
        }
    }
    // Nothing more arrives: no copy came both locally and through Redis.
    for (const auto& [client, count] : expected) {
        (void)count;
        CHECK_FALSE(client->next_of_type("message", Millis{300}).has_value());
    }
    for (auto port : {a.port(), b.port()}) {
        const json br = bridge_of(port);
        CHECK(br["published"] == n);
        CHECK(br["delivered"] == n);
        CHECK(br["ignored_own"] == n);
        CHECK(br["failed"] == 0);
        CHECK(br["malformed"] == 0);
    }
    const auto metrics = http_get(a.port(), "/metrics");
    REQUIRE(metrics);
    CHECK(metrics->body.find("wsguard_bridge_published_total 200") != std::string::npos);
    CHECK(metrics->body.find("wsguard_bridge_connected 1") != std::string::npos);
}

TEST_CASE("a broadcast made on the guard itself reaches the room's members on the other node",
          "[redis]") {
    WSGUARD_NEED_REDIS();
    RedisProcess redis;
    REQUIRE(redis.start());
    Runner a(node_options(redis, "node-a")), b(node_options(redis, "node-b"));
    ClientEndpoint ep;
    auto a1 = ep.connect_open(a.port()), b1 = ep.connect_open(b.port());
    REQUIRE((a1 && b1));
    join_lobby({a1.get(), b1.get()}, a, b);

    // Not through the router: any caller of the guard's broadcast reaches every node.
    auto& guard = a.server().guard();
    const auto result = a.on_io_thread([&] {
        return guard.broadcast(
            "lobby", json{{"type", "message"}, {"from", 0}, {"content", "direct"}}.dump());
    });
    CHECK(result.sent == 1);  // a1, on this node
    CHECK(result.bridge == wsguard::wspp::PublishStatus::queued);
    for (auto* c : {a1.get(), b1.get()}) {
        const auto got = collect(*c, 1, Millis{5000});
        REQUIRE(got.size() == 1);
        CHECK(got[0] == "direct");
        CHECK_FALSE(c->next_of_type("message", Millis{300}).has_value());  // once
    }
    // Redis acknowledges the PUBLISH to node a on its own time: wait for it.
    json last;
    CHECK(stats_eventually(
        a.port(), [](const json& s) { return s["bridge"]["published"] == 1; }, last));
    CHECK(bridge_of(b.port())["delivered"] == 1);
}

TEST_CASE("10,000 messages across 100 rooms and two servers: none lost", "[redis]") {
    WSGUARD_NEED_REDIS();
    RedisProcess redis;
    REQUIRE(redis.start());
    Runner a(node_options(redis, "node-a")), b(node_options(redis, "node-b"));
    ClientEndpoint ep;
    auto pa = ep.connect_open(a.port()), pb = ep.connect_open(b.port());
    REQUIRE((pa && pb));
    constexpr int rooms = 100, per_node = 5000;
    for (int r = 0; r < rooms; ++r) {
        join(*pa, "room-" + std::to_string(r));
        join(*pb, "room-" + std::to_string(r));
    }
    REQUIRE(pa->round_trip());
    REQUIRE(pb->round_trip());
    REQUIRE(subscribed(a.port(), rooms, Millis{10000}));
    REQUIRE(subscribed(b.port(), rooms, Millis{10000}));

    for (int i = 0; i < per_node; ++i) {
        say(*pa, "room-" + std::to_string(i % rooms), {{"s", "pa"}, {"i", i}});
        say(*pb, "room-" + std::to_string(i % rooms), {{"s", "pb"}, {"i", i}});
    }
    for (auto* c : {pa.get(), pb.get()}) {
        const auto got = collect(*c, per_node, Millis{60000});
        CHECK(got.size() == per_node);
        std::set<int> seen;
        for (const auto& content : got) {
            seen.insert(content["i"].get<int>());
        }
        CHECK(seen.size() == per_node);  // each exactly once
    }
    for (auto port : {a.port(), b.port()}) {
        const json br = bridge_of(port);
        CHECK(br["published"] == per_node);
        CHECK(br["delivered"] == per_node);
        CHECK(br["failed"] == 0);
        CHECK(br["dropped"] == 0);
    }
}

TEST_CASE("Redis follows membership: a node's rooms leave PUBSUB CHANNELS with their last member",
          "[redis]") {
    WSGUARD_NEED_REDIS();
    RedisProcess redis;
    REQUIRE(redis.start());
    RedisQuery q(redis.port());
    REQUIRE(q.ok());
    Runner a(node_options(redis, "node-a")), b(node_options(redis, "node-b"));
    ClientEndpoint ep;
    auto a1 = ep.connect_open(a.port()), a2 = ep.connect_open(a.port());
    auto b1 = ep.connect_open(b.port()), b2 = ep.connect_open(b.port());
    REQUIRE((a1 && a2 && b1 && b2));
    for (const char* r : {"x1", "x2", "x3", "shared"}) {
        join(*a1, r);
    }
    join(*a2, "x1");
    join(*a2, "shared");
    join(*b1, "shared");
    join(*b1, "y1");
    for (auto* c : {a1.get(), a2.get(), b1.get()}) {
        REQUIRE(c->round_trip());
    }
    REQUIRE(subscribed(a.port(), 4));
    REQUIRE(subscribed(b.port(), 2));
    CHECK(channels(q) == std::set<std::string>{"x1", "x2", "x3", "shared", "y1"});
    CHECK(q.numsub("wsguard:room:shared") == 2);

    // By leave: x2 had a1 only.
    a1->send(json{{"type", "leave"}, {"room", "x2"}});
    CHECK(eventually([&] { return channels(q).count("x2") == 0; }));
    // By close: x3 goes, x1 stays (a2 is still in it).
    a1->close();
    REQUIRE(a1->wait_closed());
    CHECK(eventually([&] { return channels(q).count("x3") == 0; }));
    CHECK(channels(q).count("x1") == 1);
    a2->send(json{{"type", "leave"}, {"room", "x1"}});
    a2->close();
    REQUIRE(a2->wait_closed());
    // Every member of node A left: none of its rooms is left on Redis.
    CHECK(eventually([&] {
        return channels(q) == std::set<std::string>{"shared", "y1"} &&
               q.numsub("wsguard:room:shared") == 1;
    }));
    CHECK(subscribed(a.port(), 0));
    CHECK(bridge_of(a.port())["rooms"] == 0);

    // Join/leave churn on one room converges to the final membership ...
    for (int i = 0; i < 50; ++i) {
        join(*b2, "flip");
        b2->send(json{{"type", "leave"}, {"room", "flip"}});
    }
    REQUIRE(b2->round_trip());
    CHECK(eventually([&] { return channels(q).count("flip") == 0; }));
    CHECK(subscribed(b.port(), 2));
    // ... and a room joined after the churn carries messages again.
    join(*b2, "flip");
    REQUIRE(b2->round_trip());
    auto a3 = ep.connect_open(a.port());
    REQUIRE(a3);
    join(*a3, "flip");
    REQUIRE(a3->round_trip());
    REQUIRE(subscribed(a.port(), 1));
    REQUIRE(subscribed(b.port(), 3));
    say(*a3, "flip", "after churn");
    const auto got = collect(*b2, 1, prompt_wait);
    REQUIRE(got.size() == 1);
    CHECK(got[0] == "after churn");

    for (auto* c : {b1.get(), b2.get(), a3.get()}) {
        c->close();
        REQUIRE(c->wait_closed());
    }
    CHECK(eventually([&] { return channels(q).empty(); }));
}

TEST_CASE("Redis killed and restarted: local delivery never stops, remote resumes within 2 s",
          "[redis]") {
    WSGUARD_NEED_REDIS();
    RedisProcess redis;
    REQUIRE(redis.start());
    auto options_for = [&](const char* node) {
        chat::ServerOptions o = node_options(redis, node);
        // Small, so the outage overflows it: the bound and its drop counter show.
        o.redis_queue = wsguard::QueueOptions{64, 1u << 20, wsguard::OverflowPolicy::drop_oldest,
                                              std::chrono::seconds(5)};
        return o;
    };
    Runner a(options_for("node-a")), b(options_for("node-b"));
    ClientEndpoint ep;
    auto pub = ep.connect_open(a.port()), local = ep.connect_open(a.port());
    auto remote = ep.connect_open(b.port());
    REQUIRE((pub && local && remote));
    for (auto* c : {pub.get(), local.get(), remote.get()}) {
        join(*c, "r");
        REQUIRE(c->round_trip());
    }
    REQUIRE(subscribed(a.port(), 1));
    REQUIRE(subscribed(b.port(), 1));

    int next = 0;
    std::size_t remote_seen = 0;
    int remote_max = -1;
    auto send_for = [&](Millis how_long, auto until) {
        const auto end = SteadyClock::now() + how_long;
        while (SteadyClock::now() < end) {
            say(*pub, "r", next++);
            std::this_thread::sleep_for(Millis{5});
            while (remote->pending() > 0) {
                const auto m = remote->next_json(Millis{0});
                if (m && m->is_object() && m->value("type", "") == "message") {
                    ++remote_seen;
                    remote_max = std::max(remote_max, (*m)["content"].get<int>());
                }
            }
            if (until()) {
                return true;
            }
        }
        return false;
    };
    send_for(Millis{500}, [] { return false; });
    CHECK(remote_seen > 0);

    redis.kill();
    send_for(Millis{1500}, [] { return false; });
    const json during = bridge_of(a.port());
    CHECK(during["state"] != "connected");
    CHECK(during["queue"]["size"].get<long long>() <= 64);

    REQUIRE(redis.start());
    const auto back = SteadyClock::now();
    const int first_after = next;
    const bool resumed = send_for(Millis{5000}, [&] { return remote_max >= first_after; });
    const auto resume_ms = since(back).count();
    INFO("remote delivery resumed " << resume_ms << " ms after Redis returned");
    CHECK(resumed);
    CHECK(resume_ms <= 2000.0);
    send_for(Millis{200}, [] { return false; });

    // The local member got every message, in order, outage or not.
    const auto got = collect(*local, static_cast<std::size_t>(next), Millis{10000});
    REQUIRE(got.size() == static_cast<std::size_t>(next));
    for (int i = 0; i < next; ++i) {
        CHECK(got[static_cast<std::size_t>(i)] == i);
    }
    const json br = bridge_of(a.port());
    CHECK(br["state"] == "connected");
    CHECK(br["subscriptions"] == 1);
    CHECK(br["failed"].get<long long>() > 0);
    CHECK(br["dropped"].get<long long>() > 0);
    CHECK(br["disconnects"].get<long long>() >= 1);
    CHECK(br["queue"]["high_water_count"].get<long long>() <= 64);
    const json bb = bridge_of(b.port());
    CHECK(bb["state"] == "connected");
    CHECK(bb["subscriptions"] == 1);
    CHECK(a.stop());
    CHECK(b.stop());
}
