// wsguard fuzzing — ConnectionRegistry against a naive model.
// SPDX-License-Identifier: MIT
//
// The input picks the capacity and the ping interval (one setting per run, as the
// contract of mark_pings_due() asks), then a sequence of operations: add, remove,
// take, touch, ping sent, pong, mark_pings_due, both sweeps (with timeouts the input
// picks), with_state, and advancing a fake clock. Ids are picked among those ever
// issued (so removed ones too), plus 0 and one never issued. The model is a std::map
// with linear scans, written from the contract comments of connection_registry.hpp;
// after every operation every result, every stats() field, every query and the
// number of live states must agree.
#pragma once

#include <wsguard/connection_registry.hpp>

#include <support/manual_clock.hpp>

#include "fuzz_support.hpp"

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <utility>
#include <vector>

namespace wsguard::fuzz {

namespace registry_detail {

using Clock = wsguard::test::ManualClock;
using TimePoint = Clock::time_point;
using Duration = Clock::duration;
using Handle = std::uint64_t;
using Registry = ConnectionRegistry<Handle, Tracked, NullMutex, Clock>;

/// The contract of ConnectionRegistry, with linear scans instead of lists.
class RegistryModel {
public:
    struct Connection {
        Handle handle;
        std::uint64_t state;
        TimePoint last_activity;  // add or last touch
        TimePoint last_ping;      // add or last ping started
        bool awaiting_pong = false;
    };

    explicit RegistryModel(std::size_t capacity) : capacity_(capacity) {}

    bool can_add() const noexcept { return connections_.size() < capacity_; }

    void add(ConnectionId id, Handle handle, std::uint64_t state, TimePoint now) {
        connections_.emplace(id, Connection{handle, state, now, now, false});
        ++stats_.added;
        stats_.high_water = std::max(stats_.high_water, connections_.size());
    }
    void refuse() { ++stats_.refused_at_capacity; }

    std::optional<Connection> remove(ConnectionId id) {
        const auto it = connections_.find(id);
        if (it == connections_.end()) {
            return std::nullopt;
        }
        Connection c = it->second;
        connections_.erase(it);
        ++stats_.removed;
        return c;
    }

    bool touch(ConnectionId id, TimePoint now) {
        Connection* c = find(id);
        if (c != nullptr) {
            c->last_activity = now;
        }
        return c != nullptr;
    }

    bool ping_sent(ConnectionId id, TimePoint now) {
        Connection* c = find(id);
        if (c != nullptr && !c->awaiting_pong) {
            start_ping(*c, now);
        }
        return c != nullptr;
    }

    bool pong(ConnectionId id) {
        Connection* c = find(id);
        if (c != nullptr) {
            ++stats_.pongs_seen;
            c->awaiting_pong = false;
        }
        return c != nullptr;
    }

    /// Every connection not awaiting a pong whose last ping is `interval` ago or more.
    std::set<ConnectionId> pings_due(Duration interval, TimePoint now) {
        std::set<ConnectionId> due;
        for (auto& [id, c] : connections_) {
            if (!c.awaiting_pong && now - c.last_ping >= interval) {
                start_ping(c, now);
                due.insert(id);
            }
        }
        return due;
    }

    /// Removes and returns every connection with no activity for idle_timeout.
    std::map<ConnectionId, Connection> sweep_idle(Duration idle_timeout, TimePoint now) {
        std::map<ConnectionId, Connection> out =
            take_if([&](const Connection& c) { return now - c.last_activity >= idle_timeout; });
        stats_.swept_idle += out.size();
        return out;
    }

    /// Removes and returns every connection whose outstanding ping waited pong_timeout.
    std::map<ConnectionId, Connection> sweep_dead(Duration pong_timeout, TimePoint now) {
        std::map<ConnectionId, Connection> out = take_if([&](const Connection& c) {
            return c.awaiting_pong && now - c.last_ping >= pong_timeout;
        });
        stats_.swept_dead += out.size();
        return out;
    }

    Connection* find(ConnectionId id) {
        const auto it = connections_.find(id);
        return it == connections_.end() ? nullptr : &it->second;
    }
    const std::map<ConnectionId, Connection>& connections() const noexcept { return connections_; }
    std::size_t awaiting() const {
        return static_cast<std::size_t>(
            std::count_if(connections_.begin(), connections_.end(),
                          [](const auto& kv) { return kv.second.awaiting_pong; }));
    }
    /// The counters; size, capacity and awaiting_pong are derived from the map.
    const RegistryStats& counters() const noexcept { return stats_; }

private:
    void start_ping(Connection& c, TimePoint now) {
        c.last_ping = now;
        c.awaiting_pong = true;
        ++stats_.pings_marked;
    }

    template <class Pred>
    std::map<ConnectionId, Connection> take_if(Pred pred) {
        std::map<ConnectionId, Connection> out;
        for (auto it = connections_.begin(); it != connections_.end();) {
            if (pred(it->second)) {
                out.insert(*it);
                it = connections_.erase(it);
            } else {
                ++it;
            }
        }
        return out;
    }

    std::size_t capacity_;
    std::map<ConnectionId, Connection> connections_;
    RegistryStats stats_{};
};

using Model = RegistryModel;

// A sweep hands back exactly the model's set, each entry intact, oldest first by the
// sweep's own clock (ties, same stamp, may come in any order).
template <class Stamp>
void check_swept(const std::vector<Registry::Entry>& got,
                 const std::map<ConnectionId, Model::Connection>& expected, Stamp stamp) {
    WSGUARD_FUZZ_CHECK(got.size() == expected.size());
    std::set<ConnectionId> seen;
    for (std::size_t i = 0; i < got.size(); ++i) {
        const auto it = expected.find(got[i].id);
        WSGUARD_FUZZ_CHECK(it != expected.end());
        WSGUARD_FUZZ_CHECK(seen.insert(got[i].id).second);
        WSGUARD_FUZZ_CHECK(got[i].handle == it->second.handle);
        WSGUARD_FUZZ_CHECK(got[i].state.value() == it->second.state);
        if (i > 0) {
            WSGUARD_FUZZ_CHECK(stamp(expected.at(got[i - 1].id)) <= stamp(it->second));
        }
    }
}

inline void check_same(Registry& r, const Model& m, const std::vector<ConnectionId>& issued,
                       const LiveCounter& live) {
    const RegistryStats s = r.stats();
    const RegistryStats& c = m.counters();
    WSGUARD_FUZZ_CHECK(r.size() == m.connections().size());
    WSGUARD_FUZZ_CHECK(s.size == r.size());
    WSGUARD_FUZZ_CHECK(s.capacity == r.capacity());
    WSGUARD_FUZZ_CHECK(s.high_water == c.high_water);
    WSGUARD_FUZZ_CHECK(s.awaiting_pong == m.awaiting());
    WSGUARD_FUZZ_CHECK(s.added == c.added);
    WSGUARD_FUZZ_CHECK(s.removed == c.removed);
    WSGUARD_FUZZ_CHECK(s.refused_at_capacity == c.refused_at_capacity);
    WSGUARD_FUZZ_CHECK(s.swept_idle == c.swept_idle);
    WSGUARD_FUZZ_CHECK(s.swept_dead == c.swept_dead);
    WSGUARD_FUZZ_CHECK(s.pings_marked == c.pings_marked);
    WSGUARD_FUZZ_CHECK(s.pongs_seen == c.pongs_seen);
    // RegistryStats' balance, by its definition.
    WSGUARD_FUZZ_CHECK(s.added == s.removed + s.swept_idle + s.swept_dead + s.size);
    WSGUARD_FUZZ_CHECK(s.size <= s.capacity && s.high_water <= s.capacity);

    for (const ConnectionId id : issued) {
        const auto it = m.connections().find(id);
        const bool present = it != m.connections().end();
        WSGUARD_FUZZ_CHECK(r.contains(id) == present);
        const std::optional<Handle> handle = r.handle(id);
        WSGUARD_FUZZ_CHECK(handle.has_value() == present);
        if (present) {
            WSGUARD_FUZZ_CHECK(*handle == it->second.handle);
        }
    }
    WSGUARD_FUZZ_CHECK(!r.contains(0));

    // for_each: every connection once, with its handle and state, least recently
    // active first.
    std::set<ConnectionId> visited;
    const Model::Connection* previous = nullptr;
    const Registry& cr = r;
    cr.for_each([&](ConnectionId id, const Handle& handle, const Tracked& state) {
        const auto it = m.connections().find(id);
        WSGUARD_FUZZ_CHECK(it != m.connections().end());
        WSGUARD_FUZZ_CHECK(visited.insert(id).second);
        WSGUARD_FUZZ_CHECK(handle == it->second.handle);
        WSGUARD_FUZZ_CHECK(state.value() == it->second.state);
        WSGUARD_FUZZ_CHECK(previous == nullptr ||
                           previous->last_activity <= it->second.last_activity);
        previous = &it->second;
    });
    WSGUARD_FUZZ_CHECK(visited.size() == m.connections().size());
    // The registry owns exactly one state per connection.
    WSGUARD_FUZZ_CHECK(live.live == static_cast<long>(m.connections().size()));
}

}  // namespace registry_detail

/// The fuzzer body: see the file comment. Throws CheckFailure on any disagreement.
inline void fuzz_registry(const std::uint8_t* data, std::size_t size) {
    using namespace registry_detail;
    using std::chrono::milliseconds;
    FuzzInput in(data, size);

    RegistryOptions options;
    options.max_connections = 1 + in.below(12);
    const Duration ping_interval = milliseconds(in.byte());

    LiveCounter live;
    Clock clock;
    {
        Registry r(options, clock);
        Model model(options.max_connections);
        std::vector<ConnectionId> issued;  // in issue order
        std::uint64_t next_tag = 1000;

        // An id the registry knows or knew, or one it never issued (0 included).
        auto pick = [&]() -> ConnectionId {
            const std::uint8_t b = in.byte();
            if (b == 255) {
                return 0;
            }
            if (b >= 240 || issued.empty()) {
                return (issued.empty() ? 0 : *std::max_element(issued.begin(), issued.end())) + 1 +
                       (b & 3);
            }
            return issued[b % issued.size()];
        };

        while (!in.empty()) {
            const TimePoint now = clock.now();
            switch (in.below(12)) {
                case 0:
                case 1: {
                    const Handle handle = next_tag++;
                    const std::uint64_t state = in.byte();
                    const bool can_add = model.can_add();
                    const AddResult result = r.try_add(handle, Tracked(live, state));
                    WSGUARD_FUZZ_CHECK(static_cast<bool>(result) == can_add);
                    if (can_add) {
                        WSGUARD_FUZZ_CHECK(result.status == AddStatus::added);
                        // Never 0, never reused.
                        WSGUARD_FUZZ_CHECK(result.id != 0);
                        WSGUARD_FUZZ_CHECK(std::find(issued.begin(), issued.end(), result.id) ==
                                           issued.end());
                        issued.push_back(result.id);
                        model.add(result.id, handle, state, now);
                    } else {
                        WSGUARD_FUZZ_CHECK(result.status == AddStatus::at_capacity);
                        WSGUARD_FUZZ_CHECK(result.id == 0);
                        model.refuse();
                    }
                    break;
                }
                case 2: {
                    const ConnectionId id = pick();
                    WSGUARD_FUZZ_CHECK(r.remove(id) == model.remove(id).has_value());
                    break;
                }
                case 3: {
                    const ConnectionId id = pick();
                    const std::optional<Model::Connection> expected = model.remove(id);
                    std::optional<Registry::Entry> got = r.take(id);
                    WSGUARD_FUZZ_CHECK(got.has_value() == expected.has_value());
                    if (got) {
                        WSGUARD_FUZZ_CHECK(got->id == id);
                        WSGUARD_FUZZ_CHECK(got->handle == expected->handle);
                        WSGUARD_FUZZ_CHECK(got->state.value() == expected->state);
                    }
                    break;
                }
                case 4: {
                    const ConnectionId id = pick();
                    WSGUARD_FUZZ_CHECK(r.touch(id) == model.touch(id, now));
                    break;
                }
                case 5: {
                    const ConnectionId id = pick();
                    WSGUARD_FUZZ_CHECK(r.mark_ping_sent(id) == model.ping_sent(id, now));
                    break;
                }
                case 6: {
                    const ConnectionId id = pick();
                    WSGUARD_FUZZ_CHECK(r.mark_pong(id) == model.pong(id));
                    break;
                }
                case 7: {
                    const std::set<ConnectionId> expected = model.pings_due(ping_interval, now);
                    const auto got = r.mark_pings_due(ping_interval);
                    std::set<ConnectionId> got_ids;
                    for (const auto& [id, handle] : got) {
                        WSGUARD_FUZZ_CHECK(got_ids.insert(id).second);  // each once
                        const Model::Connection* c = model.find(id);
                        WSGUARD_FUZZ_CHECK(c != nullptr && handle == c->handle);
                    }
                    WSGUARD_FUZZ_CHECK(got_ids == expected);
                    break;
                }
                case 8: {
                    const Duration timeout = milliseconds(in.byte());
                    const auto expected = model.sweep_idle(timeout, now);
                    const auto got = r.sweep_idle(timeout);
                    check_swept(got, expected,
                                [](const Model::Connection& c) { return c.last_activity; });
                    break;
                }
                case 9: {
                    const Duration timeout = milliseconds(in.byte());
                    const auto expected = model.sweep_dead(timeout, now);
                    const auto got = r.sweep_dead(timeout);
                    check_swept(got, expected,
                                [](const Model::Connection& c) { return c.last_ping; });
                    break;
                }
                case 10: {
                    const ConnectionId id = pick();
                    const std::uint64_t value = in.byte();
                    Model::Connection* c = model.find(id);
                    bool called = false;
                    const bool found = r.with_state(id, [&](Tracked& state) {
                        called = true;
                        WSGUARD_FUZZ_CHECK(c != nullptr && state.value() == c->state);
                        state.set_value(value);
                    });
                    WSGUARD_FUZZ_CHECK(found == (c != nullptr) && called == found);
                    if (c != nullptr) {
                        c->state = value;
                    }
                    break;
                }
                default:
                    clock.advance(milliseconds(in.byte()));
                    break;
            }
            check_same(r, model, issued, live);
        }
    }
    WSGUARD_FUZZ_CHECK(live.live == 0);
}

}  // namespace wsguard::fuzz
