// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// Leak proof over loopback: thousands of connect / join / room-message /
// close-or-abort cycles from several clients in parallel, after which every
// count the server holds is back to zero and the guard's registry and room
// index are empty.
#include "client_harness.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

using nlohmann::json;
using wsguard::test::ClientEndpoint;
using wsguard::test::Millis;
using wsguard::test::ServerRunner;
using wsguard::test::stat_of;
using wsguard::test::stats_eventually;

namespace {

// 2000 cycles; fewer (at least 100) when WSGUARD_TEST_SCALE divides them (valgrind: 500).
const int total_cycles = wsguard::test::scaled_count(2000, 100);
constexpr int workers = 4;
constexpr int rooms = 8;

struct Tally {
    std::atomic<int> done{0};
    std::atomic<int> failures{0};
    std::atomic<int> clean{0};
    std::atomic<int> aborted{0};
};

// One cycle: connect, join, publish, then end in one of three ways.
bool cycle(ClientEndpoint& clients, std::uint16_t port, int n, Tally& tally) {
    auto c = clients.connect_open(port);
    if (!c) {
        return false;
    }
    const std::string room = "room-" + std::to_string(n % rooms);
    c->send(json{{"type", "join"}, {"room", room}});
    if (n % 5 == 0) {
        c->send(json{{"type", "join"}, {"room", "everyone"}});
    }
    if (!c->round_trip()) {
        return false;
    }
    c->send(json{{"type", "room-message"}, {"room", room}, {"content", n}});
    switch (n % 3) {
        case 0:  // clean close after our message was handled
            if (!c->round_trip()) {
                return false;
            }
            c->close();
            ++tally.clean;
            break;
        case 1:  // vanish right after sending: a TCP reset, no close frame
            c->abort();
            ++tally.aborted;
            break;
        default:  // leave, then close without waiting for anything
            c->send(json{{"type", "leave"}, {"room", room}});
            c->close();
            ++tally.clean;
            break;
    }
    return c->wait_closed();
}

template <class Lock>
void churn(unsigned threads) {
    auto options = wsguard::test::test_server_options();
    options.threads = threads;
    ServerRunner<Lock> server(options);
    const auto port = server.port();
    json s = wsguard::test::get_stats(port);
    const auto listeners_at_rest = stat_of(s, "listeners");

    Tally tally;
    {
        ClientEndpoint clients;
        std::vector<std::thread> pool;
        for (int w = 0; w < workers; ++w) {
            pool.emplace_back([&, w] {
                for (int i = w; i < total_cycles; i += workers) {
                    if (!cycle(clients, port, i, tally)) {
                        ++tally.failures;
                    }
                    ++tally.done;
                }
            });
        }
        for (auto& t : pool) {
            t.join();
        }
    }
    REQUIRE(tally.done == total_cycles);
    CHECK(tally.failures == 0);
    CHECK(tally.aborted > 0);
    CHECK(tally.clean > 0);

    CHECK(stats_eventually(
        port,
        [](const json& j) {
            return stat_of(j, "connections") == 0 && stat_of(j, "rooms") == 0 &&
                   stat_of(j, "memberships") == 0 && stat_of(j, "queued_bytes") == 0;
        },
        s, Millis{10000}));
    INFO(s.dump(2));
    CHECK(stat_of(s, "traffic", "opened") == total_cycles);
    CHECK(stat_of(s, "traffic", "closed") == total_cycles);
    CHECK(stat_of(s, "listeners") == listeners_at_rest);
    CHECK(stat_of(s, "rejected_connections") == 0);
    REQUIRE(server.stop());

    // The io threads are joined: the guard's own tables can be read directly.
    const auto& guard = server.server().guard();
    const auto g = guard.stats();
    CHECK(g.connections == 0);
    CHECK(g.rooms == 0);
    CHECK(g.memberships == 0);
    CHECK(g.queued_bytes == 0);
    CHECK(g.registry.size == 0);
    CHECK(g.registry.awaiting_pong == 0);
    CHECK(g.registry.added == static_cast<std::uint64_t>(total_cycles));
    CHECK(g.registry.removed == g.registry.added);
    CHECK(g.room_index.rooms == 0);
    CHECK(g.room_index.members == 0);
    CHECK(g.room_index.memberships == 0);
    CHECK(g.room_index.joins == g.room_index.leaves);
    CHECK(g.room_index.rooms_created == g.room_index.rooms_erased);
    CHECK(g.room_index.joins >= static_cast<std::uint64_t>(total_cycles));
}

}  // namespace

TEST_CASE("connect/join/message/close cycles leave every server count at zero", "[churn]") {
    churn<wsguard::NullMutex>(1);
}

TEST_CASE("the same churn with two io threads and the std::mutex guard", "[churn][threaded]") {
    churn<std::mutex>(2);
}
