// Tests for wsguard::ConnectionRegistry: capacity, ids, idempotent removal, the idle
// and dead sweeps and the ping schedule on a ManualClock, every query against its
// definition, ownership of the state (a construction/destruction-counting State), a
// random-operation comparison with a naive O(n) model, an operation-count proof that
// the sweeps cost O(expired), and a threaded run of SyncConnectionRegistry.
#include <wsguard/connection_registry.hpp>

#include <catch2/catch.hpp>
#include <support/manual_clock.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;
using wsguard::AddStatus;
using wsguard::ConnectionId;
using wsguard::NullMutex;
using wsguard::RegistryOptions;
using wsguard::RegistryStats;
using wsguard::test::ManualClock;

RegistryOptions with_capacity(std::size_t n) {
    RegistryOptions o;
    o.max_connections = n;
    return o;
}

bool balanced(const RegistryStats& s) {
    return s.added == s.removed + s.swept_idle + s.swept_dead + s.size;
}

template <class Registry>
std::vector<ConnectionId> visited_ids(Registry& r) {
    std::vector<ConnectionId> ids;
    r.for_each([&](ConnectionId id, const auto&, auto&) { ids.push_back(id); });
    return ids;
}

template <class Entries>
std::vector<ConnectionId> ids_of(const Entries& entries) {
    std::vector<ConnectionId> ids;
    for (const auto& e : entries) {
        ids.push_back(e.id);
    }
    return ids;
}

std::vector<ConnectionId> ids_of_due(const std::vector<std::pair<ConnectionId, int>>& due) {
    std::vector<ConnectionId> ids;
    for (const auto& d : due) {
        ids.push_back(d.first);
    }
    return ids;
}

std::vector<ConnectionId> sorted(std::vector<ConnectionId> v) {
    std::sort(v.begin(), v.end());
    return v;
}

// Counts every construction and destruction, so tests can check that the registry
// destroys exactly the states it constructed (no leak, no double destruction).
struct TrackedState {
    static inline std::atomic<std::int64_t> constructed{0};
    static inline std::atomic<std::int64_t> destroyed{0};
    static std::int64_t live() { return constructed.load() - destroyed.load(); }
    static void reset() {
        constructed = 0;
        destroyed = 0;
    }

    TrackedState() noexcept { ++constructed; }
    explicit TrackedState(int v) noexcept : value(v) { ++constructed; }
    TrackedState(const TrackedState& o) noexcept : value(o.value) { ++constructed; }
    TrackedState(TrackedState&& o) noexcept : value(o.value) { ++constructed; }
    TrackedState& operator=(const TrackedState&) = default;
    TrackedState& operator=(TrackedState&&) = default;
    ~TrackedState() { ++destroyed; }

    int value = 0;
};

using Registry = wsguard::ConnectionRegistry<int, int, NullMutex, ManualClock>;

}  // namespace

TEST_CASE("constructor validates the capacity and has the documented default",
          "[connection_registry]") {
    CHECK_THROWS_AS((wsguard::ConnectionRegistry<int, int>(with_capacity(0))),
                    std::invalid_argument);
    CHECK(RegistryOptions{}.max_connections == 10000);
    wsguard::ConnectionRegistry<int, int> r;
    CHECK(r.capacity() == 10000);
    CHECK(r.options().max_connections == 10000);
    CHECK(r.size() == 0);
    const auto s = r.stats();
    CHECK(s.capacity == 10000);
    CHECK(s.size == 0);
    CHECK(s.added == 0);
    CHECK(std::string(wsguard::to_string(AddStatus::added)) == "added");
    CHECK(std::string(wsguard::to_string(AddStatus::at_capacity)) == "at_capacity");
}

TEST_CASE("ids are non-zero, distinct and never reused", "[connection_registry]") {
    ManualClock clock;
    Registry r(with_capacity(3), clock);
    std::set<ConnectionId> seen;
    ConnectionId previous = 0;
    for (int i = 0; i < 50; ++i) {
        const auto added = r.try_add(i, i * 10);
        REQUIRE(added);
        REQUIRE(added.status == AddStatus::added);
        REQUIRE(added.id != 0);
        REQUIRE(added.id > previous);
        REQUIRE(seen.insert(added.id).second);
        previous = added.id;
        REQUIRE(r.contains(added.id));
        REQUIRE(r.handle(added.id) == std::optional<int>(i));
        if (i % 2 == 0) {
            REQUIRE(r.remove(added.id));
        } else {
            REQUIRE(r.take(added.id).has_value());
        }
        REQUIRE_FALSE(r.contains(added.id));
    }
}

TEST_CASE("capacity refusal is a counted result and an add after a remove succeeds",
          "[connection_registry]") {
    ManualClock clock;
    Registry r(with_capacity(2), clock);
    const auto a = r.try_add(1);
    const auto b = r.try_add(2);
    REQUIRE(a);
    REQUIRE(b);
    const auto refused = r.try_add(3);
    CHECK_FALSE(refused);
    CHECK(refused.status == AddStatus::at_capacity);
    CHECK(refused.id == 0);
    CHECK_FALSE(r.try_add(4));
    auto s = r.stats();
    CHECK(s.refused_at_capacity == 2);
    CHECK(s.added == 2);
    CHECK(s.size == 2);

    CHECK(r.remove(a.id));
    const auto c = r.try_add(5);
    REQUIRE(c);
    CHECK(c.id != a.id);
    s = r.stats();
    CHECK(s.added == 3);
    CHECK(s.refused_at_capacity == 2);
    CHECK(s.high_water == 2);
    CHECK(balanced(s));
}

TEST_CASE("remove is idempotent and take hands the entry back once", "[connection_registry]") {
    ManualClock clock;
    wsguard::ConnectionRegistry<int, std::string, NullMutex, ManualClock> r({}, clock);
    const auto a = r.try_add(7, "seven");
    const auto b = r.try_add(8, "eight");
    CHECK(r.remove(a.id));
    CHECK_FALSE(r.remove(a.id));
    CHECK_FALSE(r.remove(12345));
    CHECK_FALSE(r.remove(0));

    auto taken = r.take(b.id);
    REQUIRE(taken.has_value());
    CHECK(taken->id == b.id);
    CHECK(taken->handle == 8);
    CHECK(taken->state == "eight");
    CHECK_FALSE(r.take(b.id).has_value());
    CHECK_FALSE(r.remove(b.id));

    const auto s = r.stats();
    CHECK(s.removed == 2);  // take counts as a removal
    CHECK(s.size == 0);
    CHECK(balanced(s));
}

TEST_CASE("operations on an absent id report false and change nothing", "[connection_registry]") {
    ManualClock clock;
    Registry r({}, clock);
    const auto a = r.try_add(1);
    r.remove(a.id);
    const auto before = r.stats();
    bool called = false;
    CHECK_FALSE(r.touch(a.id));
    CHECK_FALSE(r.mark_ping_sent(a.id));
    CHECK_FALSE(r.mark_pong(a.id));
    CHECK_FALSE(r.with_state(a.id, [&](int&) { called = true; }));
    CHECK_FALSE(called);
    CHECK_FALSE(r.handle(a.id).has_value());
    CHECK_FALSE(r.contains(a.id));
    const auto after = r.stats();
    CHECK(after.pings_marked == before.pings_marked);
    CHECK(after.pongs_seen == before.pongs_seen);
    CHECK(after.removed == before.removed);
}

TEST_CASE("with_state and for_each reach the stored state", "[connection_registry]") {
    ManualClock clock;
    Registry r({}, clock);
    const auto a = r.try_add(100, 1);
    const auto b = r.try_add(200, 2);
    CHECK(r.with_state(a.id, [](int& s) { s += 40; }));
    int seen = 0;
    CHECK(r.with_state(a.id, [&](int& s) { seen = s; }));
    CHECK(seen == 41);

    std::map<ConnectionId, std::pair<int, int>> all;
    r.for_each([&](ConnectionId id, const int& handle, int& state) {
        all[id] = {handle, state};
        state *= 2;
    });
    CHECK(all.size() == 2);
    CHECK(all[a.id] == std::make_pair(100, 41));
    CHECK(all[b.id] == std::make_pair(200, 2));
    CHECK(r.with_state(b.id, [&](int& s) { seen = s; }));
    CHECK(seen == 4);
}

TEST_CASE("for_each visits least recently active first", "[connection_registry]") {
    ManualClock clock;
    Registry r({}, clock);
    const auto a = r.try_add(1);
    clock.advance(1s);
    const auto b = r.try_add(2);
    clock.advance(1s);
    const auto c = r.try_add(3);
    CHECK(visited_ids(r) == std::vector<ConnectionId>{a.id, b.id, c.id});
    clock.advance(1s);
    r.touch(a.id);
    CHECK(visited_ids(r) == std::vector<ConnectionId>{b.id, c.id, a.id});
}

TEST_CASE("the registry holds only the weak handle it is given", "[connection_registry]") {
    wsguard::ConnectionRegistry<std::weak_ptr<void>, int> r;
    auto connection = std::make_shared<std::string>("socket and buffers");
    const auto a = r.try_add(std::weak_ptr<void>(connection));
    REQUIRE(a);
    CHECK(connection.use_count() == 1);  // no strong reference kept
    auto h = r.handle(a.id);
    REQUIRE(h.has_value());
    CHECK_FALSE(h->expired());
    connection.reset();
    CHECK(r.handle(a.id)->expired());  // the connection is gone; only the entry remains
    CHECK(r.remove(a.id));
}

TEST_CASE("sweep_idle takes what had no touch for idle_timeout: touch postpones it, pong does not",
          "[connection_registry]") {
    ManualClock clock;
    Registry r({}, clock);
    const auto a = r.try_add(1);
    const auto b = r.try_add(2);
    const auto c = r.try_add(3);
    clock.advance(20s);
    r.touch(b.id);           // activity: b's idle clock restarts
    r.mark_ping_sent(c.id);  // c answers pings...
    r.mark_pong(c.id);       // ...but pongs are not activity
    clock.advance(9s);       // a, c: 29s idle; b: 9s
    CHECK(r.sweep_idle(30s).empty());
    clock.advance(1s);  // a, c: exactly 30s idle: swept (>=)
    const auto swept = r.sweep_idle(30s);
    REQUIRE(swept.size() == 2);
    CHECK(ids_of(swept) == std::vector<ConnectionId>{a.id, c.id});  // least recently active first
    CHECK(swept[0].handle == 1);
    CHECK(swept[1].handle == 3);
    CHECK(r.contains(b.id));
    CHECK_FALSE(r.contains(a.id));
    clock.advance(20s);
    CHECK(ids_of(r.sweep_idle(30s)) == std::vector<ConnectionId>{b.id});
    const auto s = r.stats();
    CHECK(s.swept_idle == 3);
    CHECK(s.size == 0);
    CHECK(balanced(s));
}

TEST_CASE("touch_handle returns the handle and restarts the idle clock in one call",
          "[connection_registry]") {
    ManualClock clock;
    Registry r({}, clock);
    const auto a = r.try_add(10);
    const auto b = r.try_add(20);
    clock.advance(20s);
    const auto h = r.touch_handle(a.id);  // a message goes to a: its idle clock restarts
    REQUIRE(h.has_value());
    CHECK(*h == 10);
    CHECK(visited_ids(r) == std::vector<ConnectionId>{b.id, a.id});
    clock.advance(10s);  // a: 10s idle, b: 30s
    CHECK(ids_of(r.sweep_idle(30s)) == std::vector<ConnectionId>{b.id});
    CHECK(r.contains(a.id));
    // Unknown (or swept) ids: nothing returned, nothing changed.
    const auto before = r.stats();
    CHECK_FALSE(r.touch_handle(b.id).has_value());
    CHECK_FALSE(r.touch_handle(12345).has_value());
    const auto after = r.stats();
    CHECK(after.size == before.size);
    CHECK(after.removed == before.removed);
    CHECK(balanced(after));
    clock.advance(20s);
    CHECK(ids_of(r.sweep_idle(30s)) == std::vector<ConnectionId>{a.id});
}

TEST_CASE("sweep_dead takes an outstanding ping older than pong_timeout: a pong in time saves",
          "[connection_registry]") {
    ManualClock clock;
    Registry r({}, clock);
    const auto a = r.try_add(1);
    const auto b = r.try_add(2);
    const auto never_pinged = r.try_add(3);
    r.mark_ping_sent(a.id);
    clock.advance(1s);
    r.mark_ping_sent(b.id);
    CHECK(r.stats().awaiting_pong == 2);
    clock.advance(8s);  // a's ping: 9s, b's: 8s
    CHECK(r.mark_pong(b.id));
    CHECK(r.sweep_dead(10s).empty());
    clock.advance(1s);  // a's ping is exactly 10s old
    // A second ping while one is outstanding does not restart the deadline.
    CHECK(r.mark_ping_sent(a.id));
    const auto dead = r.sweep_dead(10s);
    REQUIRE(dead.size() == 1);
    CHECK(dead[0].id == a.id);
    CHECK(dead[0].handle == 1);
    clock.advance(1h);  // b answered, never_pinged was never asked: neither is dead
    CHECK(r.sweep_dead(10s).empty());
    CHECK(r.contains(b.id));
    CHECK(r.contains(never_pinged.id));
    const auto s = r.stats();
    CHECK(s.swept_dead == 1);
    CHECK(s.pings_marked == 2);  // the repeated ping to a was not a new wait
    CHECK(s.pongs_seen == 1);
    CHECK(s.awaiting_pong == 0);
    CHECK(balanced(s));
}

TEST_CASE("a pong without an outstanding ping is counted and changes nothing else",
          "[connection_registry]") {
    ManualClock clock;
    Registry r({}, clock);
    const auto a = r.try_add(1);
    CHECK(r.mark_pong(a.id));
    auto s = r.stats();
    CHECK(s.pongs_seen == 1);
    CHECK(s.awaiting_pong == 0);
    clock.advance(1h);
    CHECK(r.sweep_dead(1s).empty());
    CHECK(ids_of(r.sweep_idle(1h)) == std::vector<ConnectionId>{a.id});  // still idle
}

TEST_CASE("mark_pings_due returns each connection once per interval, never one awaiting",
          "[connection_registry]") {
    ManualClock clock;
    Registry r({}, clock);
    const auto a = r.try_add(10);
    clock.advance(10s);
    const auto b = r.try_add(20);
    CHECK(r.mark_pings_due(30s).empty());  // a: 10s since add
    clock.advance(20s);                    // a: 30s, b: 20s
    auto due = r.mark_pings_due(30s);
    REQUIRE(due.size() == 1);
    CHECK(due[0].first == a.id);
    CHECK(due[0].second == 10);            // the handle, to send the ping with
    CHECK(r.mark_pings_due(30s).empty());  // once per interval
    CHECK(r.stats().awaiting_pong == 1);

    clock.advance(10s);  // b: 30s since add; a awaits its pong
    CHECK(ids_of_due(r.mark_pings_due(30s)) == std::vector<ConnectionId>{b.id});
    r.mark_pong(b.id);
    clock.advance(20s);  // a: 30s since its ping, still awaiting: not pinged again
    CHECK(r.mark_pings_due(30s).empty());
    clock.advance(10s);  // b: 30s since its ping and it answered: due
    CHECK(ids_of_due(r.mark_pings_due(30s)) == std::vector<ConnectionId>{b.id});

    // a's pong finally arrives (late but before any dead sweep): due again at once.
    r.mark_pong(a.id);
    CHECK(ids_of_due(r.mark_pings_due(30s)) == std::vector<ConnectionId>{a.id});
    CHECK(r.mark_pings_due(30s).empty());
    const auto s = r.stats();
    CHECK(s.pings_marked == 4);
    CHECK(s.pongs_seen == 2);
    CHECK(s.awaiting_pong == 2);
}

TEST_CASE("explicit mark_ping_sent restarts the ping interval", "[connection_registry]") {
    ManualClock clock;
    Registry r({}, clock);
    const auto a = r.try_add(1);
    clock.advance(20s);
    r.mark_ping_sent(a.id);
    r.mark_pong(a.id);
    clock.advance(20s);  // 40s since add, 20s since the ping
    CHECK(r.mark_pings_due(30s).empty());
    clock.advance(10s);
    CHECK(ids_of_due(r.mark_pings_due(30s)) == std::vector<ConnectionId>{a.id});
}

TEST_CASE("mark_pings_due with a zero interval pings everyone not awaiting, once",
          "[connection_registry]") {
    ManualClock clock;
    Registry r({}, clock);
    const auto a = r.try_add(1);
    const auto b = r.try_add(2);
    const auto c = r.try_add(3);
    r.mark_ping_sent(b.id);
    CHECK(sorted(ids_of_due(r.mark_pings_due(0s))) == std::vector<ConnectionId>{a.id, c.id});
    CHECK(r.mark_pings_due(0s).empty());  // all awaiting now
    r.mark_pong(a.id);
    CHECK(ids_of_due(r.mark_pings_due(0s)) == std::vector<ConnectionId>{a.id});
}

TEST_CASE("the sweeps and removal keep the lists consistent with each other",
          "[connection_registry]") {
    ManualClock clock;
    Registry r({}, clock);
    const auto a = r.try_add(1);
    const auto b = r.try_add(2);
    const auto c = r.try_add(3);
    r.mark_pings_due(0s);  // all three await a pong
    clock.advance(5s);
    r.touch(b.id);
    clock.advance(5s);
    // a: idle 10s and dead; an idle sweep takes it first, the dead sweep must not see it.
    CHECK(ids_of(r.sweep_idle(10s)) == std::vector<ConnectionId>{a.id, c.id});
    CHECK(r.remove(b.id) == true);
    CHECK(r.sweep_dead(1s).empty());
    CHECK(r.mark_pings_due(0s).empty());
    const auto s = r.stats();
    CHECK(s.awaiting_pong == 0);
    CHECK(s.size == 0);
    CHECK(balanced(s));
}

TEST_CASE("queries match their definitions", "[connection_registry]") {
    ManualClock clock;
    Registry r(with_capacity(40), clock);
    std::mt19937 rng(99);
    std::vector<ConnectionId> live;
    std::size_t max_size = 0;
    for (int i = 0; i < 3000; ++i) {
        const unsigned pick = rng() % 10;
        if (pick < 4) {
            const auto added = r.try_add(i);
            if (added) {
                live.push_back(added.id);
            }
        } else if (pick < 5 && !live.empty()) {
            const std::size_t k = rng() % live.size();
            r.remove(live[k]);
            live.erase(live.begin() + static_cast<std::ptrdiff_t>(k));
        } else if (pick < 7 && !live.empty()) {
            r.touch(live[rng() % live.size()]);
        } else if (pick < 8) {
            r.mark_pings_due(3s);
            if (!live.empty()) {
                r.mark_pong(live[rng() % live.size()]);
            }
        } else {
            clock.advance(std::chrono::milliseconds(rng() % 1500));
            for (const auto& e : r.sweep_idle(8s)) {
                live.erase(std::find(live.begin(), live.end(), e.id));
            }
            for (const auto& e : r.sweep_dead(4s)) {
                live.erase(std::find(live.begin(), live.end(), e.id));
            }
        }
        max_size = std::max(max_size, live.size());
        const auto s = r.stats();
        const auto visited = visited_ids(r);
        REQUIRE(s.size == r.size());
        REQUIRE(s.size == visited.size());  // size is what for_each visits
        REQUIRE(sorted(visited) == sorted(live));
        for (ConnectionId id : visited) {
            REQUIRE(r.contains(id));
        }
        REQUIRE(s.size <= s.capacity);
        REQUIRE(s.high_water == max_size);
        REQUIRE(balanced(s));
    }
    const auto s = r.stats();
    CHECK(s.refused_at_capacity > 0);
    CHECK(s.swept_idle > 0);
    CHECK(s.swept_dead > 0);
    CHECK(s.removed > 0);
}

TEST_CASE("states are destroyed exactly once: remove, take, sweeps, registry destruction",
          "[connection_registry]") {
    TrackedState::reset();
    {
        ManualClock clock;
        wsguard::ConnectionRegistry<int, TrackedState, NullMutex, ManualClock> r(with_capacity(5),
                                                                                 clock);
        std::vector<ConnectionId> ids;
        for (int i = 0; i < 5; ++i) {
            ids.push_back(r.try_add(i, TrackedState(i)).id);
        }
        CHECK(TrackedState::live() == 5);
        CHECK_FALSE(r.try_add(9, TrackedState(9)));
        CHECK(TrackedState::live() == 5);  // the refused state did not linger

        CHECK(r.remove(ids[0]));
        CHECK(TrackedState::live() == 4);
        {
            auto taken = r.take(ids[1]);
            REQUIRE(taken.has_value());
            CHECK(taken->state.value == 1);
            CHECK(TrackedState::live() == 4);  // three stored + the one handed out
        }
        CHECK(TrackedState::live() == 3);

        r.mark_ping_sent(ids[2]);
        clock.advance(10s);
        r.touch(ids[3]);
        {
            const auto dead = r.sweep_dead(5s);
            CHECK(dead.size() == 1);
            const auto idle = r.sweep_idle(10s);
            CHECK(idle.size() == 1);
            CHECK(TrackedState::live() == 3);  // handed back, owned by the vectors
        }
        CHECK(TrackedState::live() == 1);
        r.try_add(20, TrackedState(20));
        CHECK(TrackedState::live() == 2);
    }  // the registry's destructor owns the last two
    CHECK(TrackedState::live() == 0);
    CHECK(TrackedState::constructed.load() == TrackedState::destroyed.load());
}

TEST_CASE("remove destroys the state outside the lock", "[connection_registry]") {
    // A state whose destructor queries the registry: with std::mutex this would
    // deadlock if the destructor ran under the lock.
    struct Probe;
    using Sync = wsguard::SyncConnectionRegistry<int, std::shared_ptr<Probe>>;
    struct Probe {
        Sync* registry = nullptr;
        std::size_t* out = nullptr;
        ~Probe() {
            if (registry != nullptr) {
                *out = registry->size();
            }
        }
    };
    Sync r;
    std::size_t size_seen_from_destructor = 99;
    auto probe = std::make_shared<Probe>();
    probe->registry = &r;
    probe->out = &size_seen_from_destructor;
    const auto a = r.try_add(1, std::move(probe));
    CHECK(r.remove(a.id));
    CHECK(size_seen_from_destructor == 0);
}

// ----------------------------------------------------------------------------------
// Model test: random operations against a naive O(n) implementation of the documented
// rules (scan everything, sort by event order).
namespace {

struct ModelRegistry {
    struct Conn {
        int handle;
        int state;
        ManualClock::time_point activity;
        std::uint64_t activity_seq;
        ManualClock::time_point ping;
        std::uint64_t ping_seq;
        bool awaiting;
    };
    std::size_t capacity;
    std::map<ConnectionId, Conn> conns;
    ConnectionId next_id = 1;
    std::uint64_t seq = 0;
    RegistryStats s{};

    ConnectionId add(int handle, int state, ManualClock::time_point now) {
        if (conns.size() >= capacity) {
            ++s.refused_at_capacity;
            return 0;
        }
        const ConnectionId id = next_id++;
        ++seq;
        conns[id] = Conn{handle, state, now, seq, now, seq, false};
        ++s.added;
        s.high_water = std::max(s.high_water, conns.size());
        return id;
    }
    bool remove(ConnectionId id) {
        if (conns.erase(id) == 0) {
            return false;
        }
        ++s.removed;
        return true;
    }
    bool touch(ConnectionId id, ManualClock::time_point now) {
        auto it = conns.find(id);
        if (it == conns.end()) {
            return false;
        }
        it->second.activity = now;
        it->second.activity_seq = ++seq;
        return true;
    }
    void start_ping(Conn& c, ManualClock::time_point now) {
        c.ping = now;
        c.ping_seq = ++seq;
        c.awaiting = true;
        ++s.pings_marked;
    }
    bool ping(ConnectionId id, ManualClock::time_point now) {
        auto it = conns.find(id);
        if (it == conns.end()) {
            return false;
        }
        if (!it->second.awaiting) {
            start_ping(it->second, now);
        }
        return true;
    }
    bool pong(ConnectionId id) {
        auto it = conns.find(id);
        if (it == conns.end()) {
            return false;
        }
        ++s.pongs_seen;
        it->second.awaiting = false;
        return true;
    }
    std::set<ConnectionId> pings_due(ManualClock::duration interval, ManualClock::time_point now) {
        std::set<ConnectionId> due;
        for (auto& [id, c] : conns) {
            if (!c.awaiting && now - c.ping >= interval) {
                due.insert(id);
            }
        }
        for (ConnectionId id : due) {
            start_ping(conns[id], now);
        }
        return due;
    }
    std::vector<ConnectionId> sweep_idle(ManualClock::duration timeout,
                                         ManualClock::time_point now) {
        std::vector<std::pair<std::uint64_t, ConnectionId>> hit;
        for (auto& [id, c] : conns) {
            if (now - c.activity >= timeout) {
                hit.emplace_back(c.activity_seq, id);
            }
        }
        std::sort(hit.begin(), hit.end());
        std::vector<ConnectionId> out;
        for (auto& h : hit) {
            out.push_back(h.second);
            conns.erase(h.second);
            ++s.swept_idle;
        }
        return out;
    }
    std::vector<ConnectionId> sweep_dead(ManualClock::duration timeout,
                                         ManualClock::time_point now) {
        std::vector<std::pair<std::uint64_t, ConnectionId>> hit;
        for (auto& [id, c] : conns) {
            if (c.awaiting && now - c.ping >= timeout) {
                hit.emplace_back(c.ping_seq, id);
            }
        }
        std::sort(hit.begin(), hit.end());
        std::vector<ConnectionId> out;
        for (auto& h : hit) {
            out.push_back(h.second);
            conns.erase(h.second);
            ++s.swept_dead;
        }
        return out;
    }
    std::size_t awaiting() const {
        return static_cast<std::size_t>(std::count_if(
            conns.begin(), conns.end(), [](const auto& kv) { return kv.second.awaiting; }));
    }
};

}  // namespace

TEST_CASE("random operations match a naive O(n) model", "[connection_registry]") {
    std::mt19937 rng(31337);
    for (int run = 0; run < 12; ++run) {
        const std::size_t capacity = 1 + rng() % 40;
        const auto interval = std::chrono::milliseconds(100 + rng() % 400);
        const auto pong_timeout = std::chrono::milliseconds(50 + rng() % 400);
        const auto idle_timeout = std::chrono::milliseconds(200 + rng() % 1500);
        CAPTURE(run, capacity, interval.count(), pong_timeout.count(), idle_timeout.count());
        ManualClock clock;
        Registry r(with_capacity(capacity), clock);
        ModelRegistry m{capacity, {}, 1, 0, {}};
        std::vector<ConnectionId> known;  // every id ever handed out, plus misses
        const auto pick_id = [&]() -> ConnectionId {
            if (known.empty() || rng() % 20 == 0) {
                return 1000000 + rng() % 10;  // never registered
            }
            return known[rng() % known.size()];
        };
        for (int op = 0; op < 3000; ++op) {
            const auto now = clock.now();
            switch (rng() % 11) {
                case 0:
                case 1: {
                    const int h = static_cast<int>(rng() % 1000);
                    const auto got = r.try_add(h, h + 1);
                    const auto want = m.add(h, h + 1, now);
                    REQUIRE(got.id == want);
                    REQUIRE(static_cast<bool>(got) == (want != 0));
                    if (got) {
                        known.push_back(got.id);
                    }
                    break;
                }
                case 2: {
                    const auto id = pick_id();
                    if (rng() % 2 == 0) {
                        REQUIRE(r.remove(id) == m.remove(id));
                    } else {
                        const auto it = m.conns.find(id);
                        const auto taken = r.take(id);
                        REQUIRE(taken.has_value() == (it != m.conns.end()));
                        if (taken) {
                            REQUIRE(taken->handle == it->second.handle);
                            REQUIRE(taken->state == it->second.state);
                        }
                        m.remove(id);
                    }
                    break;
                }
                case 3: {
                    const auto id = pick_id();
                    REQUIRE(r.touch(id) == m.touch(id, now));
                    break;
                }
                case 4: {
                    const auto id = pick_id();
                    REQUIRE(r.mark_ping_sent(id) == m.ping(id, now));
                    break;
                }
                case 5:
                case 6: {
                    const auto id = pick_id();
                    REQUIRE(r.mark_pong(id) == m.pong(id));
                    break;
                }
                case 7: {
                    const auto due = r.mark_pings_due(interval);
                    std::set<ConnectionId> got;
                    for (const auto& d : due) {
                        REQUIRE(d.second == m.conns.at(d.first).handle);
                        got.insert(d.first);
                    }
                    REQUIRE(got.size() == due.size());  // no duplicates
                    REQUIRE(got == m.pings_due(interval, now));
                    break;
                }
                case 8: {
                    const auto swept = r.sweep_idle(idle_timeout);
                    for (const auto& e : swept) {
                        REQUIRE(e.handle == m.conns.at(e.id).handle);
                        REQUIRE(e.state == m.conns.at(e.id).state);
                    }
                    REQUIRE(ids_of(swept) == m.sweep_idle(idle_timeout, now));
                    break;
                }
                case 9: {
                    const auto swept = r.sweep_dead(pong_timeout);
                    // Oldest ping first; pings sent by one mark_pings_due() share a time
                    // and may come in any order among themselves.
                    ManualClock::time_point previous{};
                    for (const auto& e : swept) {
                        const auto& c = m.conns.at(e.id);
                        REQUIRE(e.handle == c.handle);
                        REQUIRE(c.ping >= previous);
                        previous = c.ping;
                    }
                    REQUIRE(sorted(ids_of(swept)) == sorted(m.sweep_dead(pong_timeout, now)));
                    break;
                }
                default:
                    clock.advance(std::chrono::milliseconds(rng() % 120));
                    break;
            }
            const auto s = r.stats();
            REQUIRE(s.size == m.conns.size());
            REQUIRE(s.awaiting_pong == m.awaiting());
            REQUIRE(s.added == m.s.added);
            REQUIRE(s.removed == m.s.removed);
            REQUIRE(s.refused_at_capacity == m.s.refused_at_capacity);
            REQUIRE(s.swept_idle == m.s.swept_idle);
            REQUIRE(s.swept_dead == m.s.swept_dead);
            REQUIRE(s.pings_marked == m.s.pings_marked);
            REQUIRE(s.pongs_seen == m.s.pongs_seen);
            REQUIRE(s.high_water == m.s.high_water);
            REQUIRE(balanced(s));
        }
        // Same members, and for_each walks them in activity order.
        std::vector<std::pair<std::uint64_t, ConnectionId>> order;
        for (const auto& [id, c] : m.conns) {
            order.emplace_back(c.activity_seq, id);
        }
        std::sort(order.begin(), order.end());
        std::vector<ConnectionId> want;
        for (const auto& o : order) {
            want.push_back(o.second);
        }
        CHECK(visited_ids(r) == want);
    }
}

// ----------------------------------------------------------------------------------
// O(expired) proof. CountingClock's duration has a representation that counts every
// comparison; the registry can only tell an expired connection from a live one by
// comparing durations, so the number of comparisons bounds the connections a call
// looked at. A sweep that scanned everything would make ~100k.
// (A named namespace: the operators <chrono> does not happen to use would otherwise be
// reported as unused internal functions.)
namespace counting {

struct CountingRep {
    static inline std::uint64_t comparisons = 0;
    std::int64_t v = 0;

    constexpr CountingRep() = default;
    // Implicit, like an arithmetic type: <chrono> builds reps from integer literals.
    constexpr CountingRep(std::int64_t x) noexcept : v(x) {}  // NOLINT(google-explicit-constructor)

    static bool counted(bool result) noexcept {
        ++comparisons;
        return result;
    }
    friend bool operator<(CountingRep a, CountingRep b) noexcept { return counted(a.v < b.v); }
    friend bool operator>(CountingRep a, CountingRep b) noexcept { return counted(a.v > b.v); }
    friend bool operator<=(CountingRep a, CountingRep b) noexcept { return counted(a.v <= b.v); }
    friend bool operator>=(CountingRep a, CountingRep b) noexcept { return counted(a.v >= b.v); }
    friend bool operator==(CountingRep a, CountingRep b) noexcept { return counted(a.v == b.v); }
    friend bool operator!=(CountingRep a, CountingRep b) noexcept { return counted(a.v != b.v); }
    friend CountingRep operator+(CountingRep a, CountingRep b) noexcept { return a.v + b.v; }
    friend CountingRep operator-(CountingRep a, CountingRep b) noexcept { return a.v - b.v; }
    friend CountingRep operator*(CountingRep a, CountingRep b) noexcept { return a.v * b.v; }
    friend CountingRep operator/(CountingRep a, CountingRep b) noexcept { return a.v / b.v; }
    friend CountingRep operator%(CountingRep a, CountingRep b) noexcept { return a.v % b.v; }
    CountingRep operator-() const noexcept { return -v; }
    CountingRep& operator+=(CountingRep b) noexcept {
        v += b.v;
        return *this;
    }
    CountingRep& operator-=(CountingRep b) noexcept {
        v -= b.v;
        return *this;
    }
};

struct CountingClock {
    using rep = CountingRep;
    using period = std::nano;
    using duration = std::chrono::duration<rep, period>;
    using time_point = std::chrono::time_point<CountingClock, duration>;
    static constexpr bool is_steady = true;

    std::shared_ptr<time_point> now_ = std::make_shared<time_point>();
    time_point now() const noexcept { return *now_; }
    void advance(duration d) noexcept { *now_ += d; }
};

}  // namespace counting

namespace {

using counting::CountingClock;
using counting::CountingRep;

CountingClock::duration counted(std::chrono::nanoseconds d) {
    return CountingClock::duration(CountingRep(d.count()));
}

using CountedRegistry = wsguard::ConnectionRegistry<int, int, NullMutex, CountingClock>;
constexpr std::size_t big = 100000;
constexpr std::uint64_t budget = 2 * (3 + 1);  // two passes over 3 expired + the first live one

}  // namespace

TEST_CASE("sweep_idle costs O(expired): 3 idle among 100k", "[connection_registry]") {
    CountingClock clock;
    CountedRegistry r(with_capacity(big), clock);
    std::vector<ConnectionId> old_ones;
    for (int i = 0; i < 3; ++i) {
        old_ones.push_back(r.try_add(i).id);
    }
    clock.advance(counted(10s));
    for (std::size_t i = 3; i < big; ++i) {
        REQUIRE(r.try_add(static_cast<int>(i)));
    }
    // touch() and mark_pong() are O(1): no comparison at all, even in the middle.
    CountingRep::comparisons = 0;
    r.touch(big / 2);
    r.mark_pong(big / 3);
    CHECK(CountingRep::comparisons == 0);

    clock.advance(counted(25s));  // the first three: 35s idle; the rest: 25s or less
    CountingRep::comparisons = 0;
    const auto swept = r.sweep_idle(counted(30s));
    CHECK(CountingRep::comparisons <= budget);
    CHECK(ids_of(swept) == old_ones);
    CHECK(r.size() == big - 3);

    // The instrument does see a full walk: sweeping everyone costs ~100k comparisons.
    clock.advance(counted(1h));
    CountingRep::comparisons = 0;
    CHECK(r.sweep_idle(counted(30s)).size() == big - 3);
    CHECK(CountingRep::comparisons >= big - 3);
}

TEST_CASE("sweep_dead costs O(expired): 3 unanswered pings among 100k", "[connection_registry]") {
    CountingClock clock;
    CountedRegistry r(with_capacity(big), clock);
    for (std::size_t i = 0; i < big; ++i) {
        REQUIRE(r.try_add(static_cast<int>(i)));
    }
    // Three connections are pinged first and never answer.
    const std::vector<ConnectionId> silent{5, 500, 50000};
    for (ConnectionId id : silent) {
        r.mark_ping_sent(id);
    }
    clock.advance(counted(5s));
    // Everyone else is pinged 5s later; half of them answer, half are still waiting.
    for (ConnectionId id = 1; id <= big; ++id) {
        r.mark_ping_sent(id);  // no change for the three already waiting
        if (id % 2 == 0 && std::find(silent.begin(), silent.end(), id) == silent.end()) {
            r.mark_pong(id);
        }
    }
    const std::size_t waiting = r.stats().awaiting_pong;
    CHECK(waiting > big / 2 - 10);
    clock.advance(counted(5s));  // the three: 10s; the others: 5s
    CountingRep::comparisons = 0;
    const auto dead = r.sweep_dead(counted(10s));
    CHECK(CountingRep::comparisons <= budget);
    CHECK(ids_of(dead) == silent);
    CHECK(r.stats().awaiting_pong == waiting - 3);

    // The instrument sees a full walk: once all of them are overdue.
    clock.advance(counted(1h));
    CountingRep::comparisons = 0;
    CHECK(r.sweep_dead(counted(10s)).size() == waiting - 3);
    CHECK(CountingRep::comparisons >= waiting - 3);
}

TEST_CASE(
    "mark_pings_due costs O(due): 3 due among 100k, and a connection awaiting its pong "
    "is looked at once",
    "[connection_registry]") {
    CountingClock clock;
    CountedRegistry r(with_capacity(big), clock);
    std::vector<ConnectionId> early;
    for (int i = 0; i < 3; ++i) {
        early.push_back(r.try_add(i).id);
    }
    clock.advance(counted(10s));
    for (std::size_t i = 3; i < big; ++i) {
        REQUIRE(r.try_add(static_cast<int>(i)));
    }
    clock.advance(counted(25s));
    CountingRep::comparisons = 0;
    const auto due = r.mark_pings_due(counted(30s));
    CHECK(CountingRep::comparisons <= budget);
    CHECK(sorted(ids_of_due(due)) == early);

    // Everyone is pinged; nobody answers. The first call after they fall due sets them
    // aside (one look each); later calls do not walk over them again.
    clock.advance(counted(1h));
    CHECK(r.mark_pings_due(counted(30s)).size() == big - 3);
    clock.advance(counted(1h));
    CountingRep::comparisons = 0;
    CHECK(r.mark_pings_due(counted(30s)).empty());  // all awaiting, parked here
    CHECK(CountingRep::comparisons >= big);
    CountingRep::comparisons = 0;
    CHECK(r.mark_pings_due(counted(30s)).empty());
    CHECK(CountingRep::comparisons <= 1);
    // Their pongs bring them back, due at once.
    for (ConnectionId id : early) {
        r.mark_pong(id);
    }
    CountingRep::comparisons = 0;
    CHECK(sorted(ids_of_due(r.mark_pings_due(counted(30s)))) == early);
    CHECK(CountingRep::comparisons <= budget);
}

// ----------------------------------------------------------------------------------
// Threads. The clock is an atomic counter the threads advance: the registry reads it
// under its lock, so the stamps stay ordered.
namespace {

struct AtomicClock {
    using duration = std::chrono::steady_clock::duration;
    using rep = duration::rep;
    using period = duration::period;
    using time_point = std::chrono::steady_clock::time_point;
    static constexpr bool is_steady = true;

    std::shared_ptr<std::atomic<rep>> ticks = std::make_shared<std::atomic<rep>>(0);
    time_point now() const noexcept { return time_point(duration(ticks->load())); }
    void advance(duration d) noexcept { ticks->fetch_add(d.count()); }
};
static_assert(AtomicClock::is_steady, "the registry needs a monotonic clock");

}  // namespace

TEST_CASE("SyncConnectionRegistry under 4 threads adding, touching, removing, sweeping",
          "[connection_registry][threaded]") {
    TrackedState::reset();
    {
        AtomicClock clock;
        using Sync = wsguard::SyncConnectionRegistry<std::weak_ptr<int>, TrackedState, AtomicClock>;
        Sync r(with_capacity(64), clock);
        auto target = std::make_shared<int>(0);

        struct Tally {
            std::uint64_t added = 0, refused = 0, removed = 0, swept = 0, anomalies = 0;
            std::vector<ConnectionId> gone;  // removed, taken or swept by this thread
            std::vector<ConnectionId> mine;  // added by this thread
        };
        constexpr int threads = 4;
        // A start gate, so the threads really overlap instead of running one by one.
        std::atomic<int> ready{0};
        std::vector<Tally> tallies(threads);
        std::vector<std::thread> pool;
        for (int t = 0; t < threads; ++t) {
            pool.emplace_back([&, t] {
                Tally& tally = tallies[static_cast<std::size_t>(t)];
                std::mt19937 rng(static_cast<unsigned>(1000 + t));
                std::vector<ConnectionId> live;
                ready.fetch_add(1);
                while (ready.load() < threads) {
                    std::this_thread::yield();
                }
                for (int op = 0; op < 20000; ++op) {
                    switch (rng() % 9) {
                        case 0:
                        case 1: {
                            const auto a = r.try_add(target, TrackedState(op));
                            if (a) {
                                ++tally.added;
                                tally.mine.push_back(a.id);
                                live.push_back(a.id);
                            } else {
                                ++tally.refused;
                            }
                            break;
                        }
                        case 2:
                            if (!live.empty()) {
                                const ConnectionId id = live[rng() % live.size()];
                                if (rng() % 2 == 0 ? r.remove(id) : r.take(id).has_value()) {
                                    ++tally.removed;
                                    tally.gone.push_back(id);
                                }
                            }
                            break;
                        case 3:
                            if (!live.empty()) {
                                r.touch(live[rng() % live.size()]);
                                r.with_state(live[rng() % live.size()],
                                             [](TrackedState& s) { ++s.value; });
                            }
                            break;
                        case 4:
                            for (const auto& d : r.mark_pings_due(3ms)) {
                                if (rng() % 3 != 0) {
                                    r.mark_pong(d.first);
                                }
                            }
                            break;
                        case 5:
                            for (const auto& e : r.sweep_idle(20ms)) {
                                ++tally.swept;
                                tally.gone.push_back(e.id);
                            }
                            for (const auto& e : r.sweep_dead(5ms)) {
                                ++tally.swept;
                                tally.gone.push_back(e.id);
                            }
                            break;
                        case 6: {
                            std::size_t n = 0;
                            r.for_each([&](ConnectionId, const std::weak_ptr<int>& h,
                                           TrackedState&) { n += h.expired() ? 0 : 1; });
                            // A snapshot is taken under the lock: always consistent.
                            const auto s = r.stats();
                            if (n > s.capacity || s.size > s.capacity || !balanced(s)) {
                                ++tally.anomalies;
                            }
                            break;
                        }
                        case 7:
                            if (!live.empty()) {
                                r.mark_ping_sent(live[rng() % live.size()]);
                                (void)r.handle(live[rng() % live.size()]);
                                (void)r.contains(live[rng() % live.size()]);
                            }
                            break;
                        default:
                            clock.advance(std::chrono::microseconds(rng() % 1000));
                            break;
                    }
                    if (live.size() > 32) {
                        live.erase(live.begin(), live.begin() + 16);  // forget some ids
                    }
                }
            });
        }
        for (auto& th : pool) {
            th.join();
        }

        Tally total;
        std::vector<ConnectionId> gone;
        std::vector<ConnectionId> added;
        for (const auto& t : tallies) {
            total.added += t.added;
            total.refused += t.refused;
            total.removed += t.removed;
            total.swept += t.swept;
            total.anomalies += t.anomalies;
            gone.insert(gone.end(), t.gone.begin(), t.gone.end());
            added.insert(added.end(), t.mine.begin(), t.mine.end());
        }
        const auto s = r.stats();
        CHECK(balanced(s));
        CHECK(s.added == total.added);
        CHECK(s.refused_at_capacity == total.refused);
        CHECK(s.removed == total.removed);
        CHECK(s.swept_idle + s.swept_dead == total.swept);
        CHECK(s.size <= s.capacity);
        CHECK(s.high_water <= s.capacity);
        // Every added id ends exactly once: gone (to one thread) or still registered.
        auto remaining = visited_ids(r);
        CHECK(remaining.size() == s.size);
        std::vector<ConnectionId> ends = gone;
        ends.insert(ends.end(), remaining.begin(), remaining.end());
        CHECK(sorted(ends) == sorted(added));
        CHECK(TrackedState::live() == static_cast<std::int64_t>(s.size));
        CHECK(total.anomalies == 0);
        CHECK(total.added > 0);
        CHECK(total.swept > 0);
        CHECK(total.removed > 0);
    }
    CHECK(TrackedState::live() == 0);
}
