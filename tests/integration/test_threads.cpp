// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// The reference server with four io threads (one asio io_context run by four
// threads, SyncServerGuard's tables under std::mutex) under concurrent room
// traffic, joins, leaves and connection churn. Every room message reaches
// every listener exactly once, and afterwards every count is zero. The suite
// runs this binary under ThreadSanitizer, where a data race fails it.
#include "client_harness.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

using nlohmann::json;
using wsguard::test::ClientEndpoint;
using wsguard::test::ConnectOptions;
using wsguard::test::Millis;
using wsguard::test::ServerRunner;
using wsguard::test::stat_of;
using wsguard::test::stats_eventually;

namespace {

constexpr unsigned io_threads = 4;
constexpr int room_count = 4;
constexpr int listener_count = 3;
constexpr int publisher_count = 4;
constexpr int messages_per_publisher = 300;
constexpr int round_trip_every = 25;  // bounds what each publisher has in flight
constexpr int churn_workers = 2;
constexpr int cycles_per_churn_worker = 60;

std::string room_name(int i) {
    return "room-" + std::to_string(i % room_count);
}

}  // namespace

TEST_CASE("four io threads deliver every room message once under joins, leaves and churn",
          "[threads]") {
    auto options = wsguard::test::test_server_options();
    options.threads = io_threads;
    // Nothing may be dropped: exact delivery counts are the point here.
    options.guard.max_buffered_bytes = 64u << 20;
    ServerRunner<std::mutex> server(options);
    const auto port = server.port();
    json s = wsguard::test::get_stats(port);
    const auto listeners_at_rest = stat_of(s, "listeners");

    ClientEndpoint clients;
    ConnectOptions counting;
    counting.keep_messages = false;

    // Listeners in every room; their only other traffic is one pong.
    std::vector<std::shared_ptr<wsguard::test::ClientConnection>> listeners;
    for (int i = 0; i < listener_count; ++i) {
        auto c = clients.connect_open(port, counting);
        REQUIRE(c);
        for (int r = 0; r < room_count; ++r) {
            c->send(json{{"type", "join"}, {"room", room_name(r)}});
        }
        c->send(json{{"type", "ping"}});
        REQUIRE(c->wait_received(1, wsguard::test::prompt_wait));
        listeners.push_back(std::move(c));
    }

    std::atomic<int> failures{0};
    std::atomic<int> room_messages{0};
    std::vector<std::thread> pool;

    // Publishers (members of every room, as the protocol requires) spread
    // their messages over the rooms, and join and leave a room of their own
    // between batches.
    for (int p = 0; p < publisher_count; ++p) {
        pool.emplace_back([&, p] {
            auto c = clients.connect_open(port);
            if (!c) {
                ++failures;
                return;
            }
            for (int r = 0; r < room_count; ++r) {
                c->send(json{{"type", "join"}, {"room", room_name(r)}});
            }
            const std::string own = "own-" + std::to_string(p);
            for (int i = 0; i < messages_per_publisher; ++i) {
                c->send(json{{"type", "room-message"}, {"room", room_name(p + i)}, {"content", i}});
                ++room_messages;
                if (i % round_trip_every == 0) {
                    c->send(json{{"type", i % 2 == 0 ? "join" : "leave"}, {"room", own}});
                    if (!c->round_trip()) {
                        ++failures;
                        return;
                    }
                }
            }
            c->close();
            if (!c->wait_closed()) {
                ++failures;
            }
        });
    }

    // Churn: connect, join a shared room, publish once, then close or vanish.
    for (int w = 0; w < churn_workers; ++w) {
        pool.emplace_back([&, w] {
            for (int i = 0; i < cycles_per_churn_worker; ++i) {
                auto c = clients.connect_open(port);
                if (!c) {
                    ++failures;
                    continue;
                }
                const std::string room = room_name(w + i);
                c->send(json{{"type", "join"}, {"room", room}});
                c->send(json{{"type", "join"}, {"room", "churn-" + std::to_string(i % 3)}});
                c->send(json{{"type", "room-message"}, {"room", room}, {"content", "churn"}});
                ++room_messages;
                if (!c->round_trip()) {
                    ++failures;
                }
                if (i % 2 == 0) {
                    c->close();
                } else {
                    c->abort();
                }
                if (!c->wait_closed()) {
                    ++failures;
                }
            }
        });
    }
    for (auto& t : pool) {
        t.join();
    }
    REQUIRE(failures == 0);

    // Every room message went to every listener (each is in every room), once.
    const auto expected = static_cast<std::size_t>(room_messages.load()) + 1;
    for (auto& c : listeners) {
        CHECK(c->wait_received(expected, Millis{20000}));
        CHECK(c->received() == expected);
    }
    for (auto& c : listeners) {
        c->close();
        CHECK(c->wait_closed());
    }

    CHECK(stats_eventually(
        port,
        [](const json& j) {
            return stat_of(j, "connections") == 0 && stat_of(j, "rooms") == 0 &&
                   stat_of(j, "memberships") == 0 && stat_of(j, "queued_bytes") == 0;
        },
        s, Millis{10000}));
    INFO(s.dump(2));
    CHECK(stat_of(s, "dropped_messages") == 0);
    CHECK(stat_of(s, "listeners") == listeners_at_rest);
    REQUIRE(server.stop());

    const auto g = server.server().guard().stats();
    const auto opened = static_cast<std::uint64_t>(listener_count + publisher_count +
                                                   churn_workers * cycles_per_churn_worker);
    CHECK(g.registry.size == 0);
    CHECK(g.registry.added == opened);
    CHECK(g.registry.removed == opened);
    CHECK(g.room_index.memberships == 0);
    CHECK(g.room_index.joins == g.room_index.leaves);
    CHECK(g.room_index.rooms_created == g.room_index.rooms_erased);
}

TEST_CASE("four threads join, publish and leave one room at once: no router lock, exact counts",
          "[threads]") {
    auto options = wsguard::test::test_server_options();
    options.threads = io_threads;
    options.guard.max_buffered_bytes = 64u << 20;
    ServerRunner<std::mutex> server(options);
    const auto port = server.port();
    json s = wsguard::test::get_stats(port);
    const auto listeners_at_rest = stat_of(s, "listeners");
    const auto handled_at_rest = s["router"]["handled"].get<long long>();

    ClientEndpoint clients;
    ConnectOptions counting;
    counting.keep_messages = false;
    // One reader in the room for the whole run: it gets every message once.
    auto reader = clients.connect_open(port, counting);
    REQUIRE(reader);
    reader->send(json{{"type", "join"}, {"room", "shared"}});
    reader->send(json{{"type", "ping"}});
    REQUIRE(reader->wait_received(1, wsguard::test::prompt_wait));

    constexpr int workers = 4;
    constexpr int rounds = 40;
    constexpr int per_round = 5;
    std::atomic<int> failures{0};
    std::vector<std::thread> pool;
    for (int w = 0; w < workers; ++w) {
        pool.emplace_back([&] {
            auto c = clients.connect_open(port);
            if (!c) {
                ++failures;
                return;
            }
            for (int r = 0; r < rounds; ++r) {
                c->send(json{{"type", "join"}, {"room", "shared"}});
                for (int i = 0; i < per_round; ++i) {
                    c->send(json{{"type", "room-message"}, {"room", "shared"}, {"content", i}});
                }
                c->send(json{{"type", "leave"}, {"room", "shared"}});
            }
            if (!c->round_trip()) {  // everything before it was handled
                ++failures;
            }
            c->close();
            if (!c->wait_closed()) {
                ++failures;
            }
        });
    }
    for (auto& t : pool) {
        t.join();
    }
    REQUIRE(failures == 0);

    const auto sent = static_cast<std::size_t>(workers * rounds * per_round);
    CHECK(reader->wait_received(sent + 1, Millis{20000}));
    CHECK(reader->received() == sent + 1);
    reader->close();
    CHECK(reader->wait_closed());
    CHECK(stats_eventually(
        port,
        [](const json& j) {
            return stat_of(j, "connections") == 0 && stat_of(j, "rooms") == 0 &&
                   stat_of(j, "memberships") == 0;
        },
        s, Millis{10000}));
    INFO(s.dump(2));
    // Every message was counted once, with no lock around the router: joins,
    // leaves, room messages, the round trips' pings and the reader's ping and join.
    const auto handled = s["router"]["handled"].get<long long>() - handled_at_rest;
    CHECK(handled == workers * rounds * (per_round + 2) + workers + 2);
    CHECK(s["router"]["room_messages"] == workers * rounds * per_round);
    CHECK(s["router"]["deliveries"].get<long long>() >= static_cast<long long>(sent));
    CHECK(stat_of(s, "listeners") == listeners_at_rest);
    REQUIRE(server.stop());
    const auto g = server.server().guard().stats();
    CHECK(g.room_index.joins == g.room_index.leaves);
    CHECK(g.room_index.rooms_created == g.room_index.rooms_erased);
}
