// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// Emitter micro-benchmarks. emit() is on the hot path of every message a server
// handles, so it is measured against the cheapest thing that could replace it:
// a plain loop over std::vector<std::function<void(int)>> (no unsubscribe, no
// reentrancy rules). boost::signals2 is the established library with the same
// guarantees. subscribe + unsubscribe happens per connection, so it is measured
// against signals2's connect + scoped_connection.
#include <wsguard/scoped_listener.hpp>

#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <vector>

#if WSGUARD_BENCH_HAVE_SIGNALS2
#include <boost/signals2.hpp>
#endif

#include "alloc_counter.hpp"

namespace {

using Sum = std::uint64_t;

// Every listener does the same real work: add its argument to a counter, which
// is checked after the loop, so no call can be optimised away.
template <class Lock>
class WsguardEmitter {
public:
    void add(Sum& sum) {
        handles_.push_back(emitter_.subscribe([&sum](int v) { sum += static_cast<Sum>(v); }));
    }
    void emit(int v) { emitter_.emit(v); }
    void subscribe_and_drop(Sum& sum) {
        wsguard::ScopedListener handle =
            emitter_.subscribe([&sum](int v) { sum += static_cast<Sum>(v); });
        benchmark::DoNotOptimize(handle);
    }
    std::size_t listeners() const { return emitter_.listener_count(); }

private:
    wsguard::BasicEmitter<Lock, int> emitter_;
    std::vector<wsguard::ScopedListener> handles_;
};

class StdFunctionLoop {
public:
    void add(Sum& sum) {
        listeners_.emplace_back([&sum](int v) { sum += static_cast<Sum>(v); });
    }
    void emit(int v) {
        for (const std::function<void(int)>& f : listeners_) {
            f(v);
        }
    }

private:
    std::vector<std::function<void(int)>> listeners_;
};

#if WSGUARD_BENCH_HAVE_SIGNALS2
template <class Signal>
class Signals2 {
public:
    void add(Sum& sum) {
        connections_.emplace_back(signal_.connect([&sum](int v) { sum += static_cast<Sum>(v); }));
    }
    void emit(int v) { signal_(v); }
    void subscribe_and_drop(Sum& sum) {
        boost::signals2::scoped_connection connection(
            signal_.connect([&sum](int v) { sum += static_cast<Sum>(v); }));
        benchmark::DoNotOptimize(connection);
    }
    std::size_t listeners() const { return signal_.num_slots(); }

private:
    Signal signal_;
    std::vector<boost::signals2::scoped_connection> connections_;
};

using Signals2Default = Signals2<boost::signals2::signal<void(int)>>;
// The single-threaded configuration, the fair match for Emitter (NullMutex).
using Signals2DummyMutex = Signals2<boost::signals2::signal_type<
    void(int), boost::signals2::keywords::mutex_type<boost::signals2::dummy_mutex>>::type>;
#endif

template <class Impl>
void emit_to_listeners(benchmark::State& state) {
    const auto listeners = static_cast<std::size_t>(state.range(0));
    Sum sum = 0;
    Impl impl;
    for (std::size_t i = 0; i < listeners; ++i) {
        impl.add(sum);
    }
    int arg = 1;
    benchmark::DoNotOptimize(arg);
    {
        const wsguard::bench::AllocsPerOp allocs(state);
        for (auto _ : state) {
            impl.emit(arg);
            benchmark::ClobberMemory();
        }
    }
    benchmark::DoNotOptimize(sum);
    if (sum != static_cast<Sum>(state.iterations()) * listeners) {
        state.SkipWithError("a listener was not called once per emit");
    }
    state.SetItemsProcessed(state.iterations() * state.range(0));
}

// One subscribe, then the handle is dropped at once, next to 100 listeners that
// stay: the cost a connection pays to register and remove one handler.
template <class Impl>
void subscribe_unsubscribe(benchmark::State& state) {
    constexpr std::size_t resident = 100;
    Sum sum = 0;
    Impl impl;
    for (std::size_t i = 0; i < resident; ++i) {
        impl.add(sum);
    }
    {
        const wsguard::bench::AllocsPerOp allocs(state);
        for (auto _ : state) {
            impl.subscribe_and_drop(sum);
        }
    }
    if (impl.listeners() != resident) {
        state.SkipWithError("listeners accumulated: a dropped handle did not unsubscribe");
    }
}

}  // namespace

BENCHMARK_TEMPLATE(emit_to_listeners, WsguardEmitter<wsguard::NullMutex>)
    ->Name("BM_Emit/wsguard")
    ->Arg(1)
    ->Arg(10)
    ->Arg(1000);
BENCHMARK_TEMPLATE(emit_to_listeners, StdFunctionLoop)
    ->Name("BM_Emit/std_function")
    ->Arg(1)
    ->Arg(10)
    ->Arg(1000);
#if WSGUARD_BENCH_HAVE_SIGNALS2
BENCHMARK_TEMPLATE(emit_to_listeners, Signals2Default)
    ->Name("BM_Emit/signals2")
    ->Arg(1)
    ->Arg(10)
    ->Arg(1000);
BENCHMARK_TEMPLATE(emit_to_listeners, Signals2DummyMutex)
    ->Name("BM_Emit/signals2_dummy_mutex")
    ->Arg(1)
    ->Arg(10)
    ->Arg(1000);
#endif
BENCHMARK_TEMPLATE(emit_to_listeners, WsguardEmitter<std::mutex>)
    ->Name("BM_Emit/wsguard_sync")
    ->Arg(1)
    ->Arg(10)
    ->Arg(1000);

BENCHMARK_TEMPLATE(subscribe_unsubscribe, WsguardEmitter<wsguard::NullMutex>)
    ->Name("BM_SubscribeUnsubscribe/wsguard");
#if WSGUARD_BENCH_HAVE_SIGNALS2
BENCHMARK_TEMPLATE(subscribe_unsubscribe, Signals2Default)
    ->Name("BM_SubscribeUnsubscribe/signals2");
BENCHMARK_TEMPLATE(subscribe_unsubscribe, Signals2DummyMutex)
    ->Name("BM_SubscribeUnsubscribe/signals2_dummy_mutex");
#endif
BENCHMARK_TEMPLATE(subscribe_unsubscribe, WsguardEmitter<std::mutex>)
    ->Name("BM_SubscribeUnsubscribe/wsguard_sync");
