// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// ConnectionRegistry micro-benchmarks against the map a server starts with:
// std::unordered_map<id, {handle, state, last_activity}>. touch() runs on every
// message and add/remove on every connection, so they should cost about what
// the map costs; the idle sweep is where the registry's activity-ordered list
// pays off (O(expired) instead of a scan of every connection). Time comes from
// a clock the benchmark sets, so no benchmark measures steady_clock::now().
#include <wsguard/connection_registry.hpp>

#include <benchmark/benchmark.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "alloc_counter.hpp"

namespace {

using Handle = std::weak_ptr<void>;  // what websocketpp's connection_hdl is

struct State {
    std::uint64_t messages = 0;
    std::uint32_t rooms = 0;
};

constexpr std::size_t connections = 10000;
constexpr std::size_t expiring_per_sweep = 10;

/// A clock that reads a time point owned by the benchmark.
struct BenchClock {
    using duration = std::chrono::steady_clock::duration;
    using time_point = std::chrono::steady_clock::time_point;
    const time_point* now_ = nullptr;
    time_point now() const noexcept { return *now_; }
};

using Registry = wsguard::ConnectionRegistry<Handle, State, wsguard::NullMutex, BenchClock>;

wsguard::RegistryOptions registry_options() {
    wsguard::RegistryOptions o;
    o.max_connections = 2 * connections;  // never the binding limit here
    return o;
}

class WsguardRegistry {
public:
    explicit WsguardRegistry(const BenchClock::time_point* now)
        : registry_(registry_options(), BenchClock{now}) {}
    wsguard::ConnectionId add() { return registry_.try_add(Handle{}, State{}).id; }
    bool remove(wsguard::ConnectionId id) { return registry_.remove(id); }
    bool touch(wsguard::ConnectionId id) { return registry_.touch(id); }
    std::size_t sweep_idle(BenchClock::duration timeout) {
        return registry_.sweep_idle(timeout).size();
    }
    std::size_t size() const { return registry_.size(); }

private:
    Registry registry_;
};

/// The one-map version: the same entry, stamped on touch; sweeping must scan.
class NaiveMap {
public:
    explicit NaiveMap(const BenchClock::time_point* now) : clock_{now} {}
    wsguard::ConnectionId add() {
        const wsguard::ConnectionId id = next_id_++;
        map_.emplace(id, Entry{Handle{}, State{}, clock_.now()});
        return id;
    }
    bool remove(wsguard::ConnectionId id) { return map_.erase(id) != 0; }
    bool touch(wsguard::ConnectionId id) {
        const auto it = map_.find(id);
        if (it == map_.end()) {
            return false;
        }
        it->second.last_activity = clock_.now();
        return true;
    }
    std::size_t sweep_idle(BenchClock::duration timeout) {
        struct Swept {
            wsguard::ConnectionId id;
            Handle handle;
            State state;
        };
        const BenchClock::time_point now = clock_.now();
        std::vector<Swept> out;
        for (auto it = map_.begin(); it != map_.end();) {
            if (now - it->second.last_activity >= timeout) {
                out.push_back(Swept{it->first, std::move(it->second.handle), it->second.state});
                it = map_.erase(it);
            } else {
                ++it;
            }
        }
        return out.size();
    }
    std::size_t size() const { return map_.size(); }

private:
    struct Entry {
        Handle handle;
        State state;
        BenchClock::time_point last_activity;
    };
    BenchClock clock_;
    std::unordered_map<wsguard::ConnectionId, Entry> map_;
    wsguard::ConnectionId next_id_ = 1;
};

// A message arrives on one of 10000 connections.
template <class Impl>
void registry_touch(benchmark::State& state) {
    BenchClock::time_point now{};
    Impl impl(&now);
    std::vector<wsguard::ConnectionId> ids;
    for (std::size_t i = 0; i < connections; ++i) {
        ids.push_back(impl.add());
    }
    std::size_t next = 0;
    {
        const wsguard::bench::AllocsPerOp allocs(state);
        for (auto _ : state) {
            now += std::chrono::nanoseconds(1);
            // A stride through the ids so consecutive touches hit different nodes.
            next = (next + 7919) % connections;
            benchmark::DoNotOptimize(impl.touch(ids[next]));
        }
    }
}

// A connection opens and closes next to 10000 others.
template <class Impl>
void registry_add_remove(benchmark::State& state) {
    BenchClock::time_point now{};
    Impl impl(&now);
    for (std::size_t i = 0; i < connections; ++i) {
        impl.add();
    }
    {
        const wsguard::bench::AllocsPerOp allocs(state);
        for (auto _ : state) {
            now += std::chrono::nanoseconds(1);
            benchmark::DoNotOptimize(impl.remove(impl.add()));
        }
    }
    if (impl.size() != connections) {
        state.SkipWithError("add/remove did not balance");
    }
}

// Each sweep finds the 10 idle connections among 10000; 10 new ones replace them.
template <class Impl>
void registry_sweep_idle(benchmark::State& state) {
    const BenchClock::duration tick = std::chrono::nanoseconds(1);
    const BenchClock::duration timeout = tick * connections;
    BenchClock::time_point now{};
    Impl impl(&now);
    for (std::size_t i = 0; i < connections; ++i) {
        now += tick;
        impl.add();
    }
    {
        const wsguard::bench::AllocsPerOp allocs(state);
        for (auto _ : state) {
            now += tick * expiring_per_sweep;
            if (impl.sweep_idle(timeout) != expiring_per_sweep) {
                state.SkipWithError("sweep did not find exactly the idle connections");
                break;
            }
            for (std::size_t i = 0; i < expiring_per_sweep; ++i) {
                impl.add();
            }
        }
    }
}

}  // namespace

BENCHMARK_TEMPLATE(registry_touch, WsguardRegistry)->Name("BM_RegistryTouch/wsguard");
BENCHMARK_TEMPLATE(registry_touch, NaiveMap)->Name("BM_RegistryTouch/naive_map");
BENCHMARK_TEMPLATE(registry_add_remove, WsguardRegistry)->Name("BM_RegistryAddRemove/wsguard");
BENCHMARK_TEMPLATE(registry_add_remove, NaiveMap)->Name("BM_RegistryAddRemove/naive_map");
BENCHMARK_TEMPLATE(registry_sweep_idle, WsguardRegistry)->Name("BM_RegistrySweepIdle/wsguard");
BENCHMARK_TEMPLATE(registry_sweep_idle, NaiveMap)->Name("BM_RegistrySweepIdle/naive_scan");
