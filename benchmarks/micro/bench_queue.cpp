// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// BoundedMessageQueue micro-benchmarks against what a server would otherwise
// write: a std::deque with a count bound checked by hand (full: pop_front, then
// push_back). The queue sits on every connection's send path, so it must cost
// no more than the deque while also bounding bytes and counting drops, and it
// must not allocate in steady state (the deque allocates and frees a block
// every few hundred bytes pushed). Payloads: a 64-byte std::string, moved in and
// out so that neither side copies it (the allocation counter then sees only
// the container), and a small trivially copyable struct.
#include <wsguard/bounded_message_queue.hpp>

#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "alloc_counter.hpp"

namespace {

constexpr std::size_t max_count = 1024;
constexpr std::size_t steady_fill = 512;
constexpr std::size_t burst = 1000;

/// A small trivially copyable message: what a server queues when the payload
/// lives elsewhere (an id and a size).
struct Event {
    std::uint64_t connection;
    std::uint32_t kind;
    std::uint32_t bytes;
};
static_assert(std::is_trivially_copyable_v<Event>);

template <class T>
T make_message(std::size_t i);

template <>
std::string make_message<std::string>(std::size_t i) {
    // 64 bytes: past the small-string buffer, so each message owns a heap block.
    return std::string(64, static_cast<char>('a' + i % 26));
}

template <>
Event make_message<Event>(std::size_t i) {
    return Event{i, 1, 64};
}

wsguard::QueueOptions queue_options() {
    wsguard::QueueOptions o;
    o.max_count = max_count;
    o.max_bytes = std::size_t{1} << 20;  // never the binding bound here
    o.policy = wsguard::OverflowPolicy::drop_oldest;
    return o;
}

template <class T>
class WsguardQueue {
public:
    WsguardQueue() : queue_(queue_options()) {}
    bool push(T&& v) { return queue_.try_push(std::move(v)) == wsguard::PushResult::pushed; }
    bool pop(T& out) { return queue_.try_pop(out); }

private:
    wsguard::BoundedMessageQueue<T> queue_;
};

// The same queue, popped through the std::optional<T> overload.
template <class T>
class WsguardQueueOptional {
public:
    WsguardQueueOptional() : queue_(queue_options()) {}
    bool push(T&& v) { return queue_.try_push(std::move(v)) == wsguard::PushResult::pushed; }
    bool pop(T& out) {
        std::optional<T> v = queue_.try_pop();
        if (!v) {
            return false;
        }
        out = std::move(*v);
        return true;
    }

private:
    wsguard::BoundedMessageQueue<T> queue_;
};

template <class T>
class BoundedDeque {
public:
    bool push(T&& v) {
        const bool full = deque_.size() == max_count;
        if (full) {
            deque_.pop_front();
        }
        deque_.push_back(std::move(v));
        return !full;
    }
    bool pop(T& out) {
        if (deque_.empty()) {
            return false;
        }
        out = std::move(deque_.front());
        deque_.pop_front();
        return true;
    }

private:
    std::deque<T> deque_;
};

// Push one, pop one, at a fill of 512: a connection whose reader keeps up but
// lags by a steady backlog.
template <class Queue, class T>
void queue_steady(benchmark::State& state) {
    Queue queue;
    for (std::size_t i = 0; i < steady_fill; ++i) {
        queue.push(make_message<T>(i));
    }
    T message{};
    // Outcomes are counted, not passed to DoNotOptimize: its memory clobber
    // inside one side's adapter would handicap that side only.
    std::size_t failures = 0;
    {
        const wsguard::bench::AllocsPerOp allocs(state);
        for (auto _ : state) {
            failures += queue.pop(message) ? 0 : 1;
            failures += queue.push(std::move(message)) ? 0 : 1;
            benchmark::ClobberMemory();
        }
    }
    if (failures != 0) {
        state.SkipWithError("a pop found the queue empty or a push dropped or was refused");
    }
    state.SetItemsProcessed(state.iterations());
}

// Push 1000, then pop 1000: a broadcast burst drained by the writer. One op is
// one message (one push and one pop), so allocs_per_op is per message.
template <class Queue, class T>
void queue_burst(benchmark::State& state) {
    Queue queue;
    std::vector<T> messages;
    messages.reserve(burst);
    for (std::size_t i = 0; i < burst; ++i) {
        messages.push_back(make_message<T>(i));
    }
    std::size_t failures = 0;
    const auto run_burst = [&] {
        for (T& m : messages) {
            failures += queue.push(std::move(m)) ? 0 : 1;
        }
        // FIFO: each message lands back in the slot it came from.
        for (T& m : messages) {
            failures += queue.pop(m) ? 0 : 1;
        }
    };
    run_burst();  // warm up: the ring reaches its working size here
    {
        const wsguard::bench::AllocsPerOp allocs(state, static_cast<double>(burst));
        for (auto _ : state) {
            run_burst();
            benchmark::ClobberMemory();
        }
    }
    if (failures != 0) {
        state.SkipWithError("a pop found the queue empty or a push dropped or was refused");
    }
    state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(burst));
}

}  // namespace

BENCHMARK_TEMPLATE(queue_steady, WsguardQueue<std::string>, std::string)
    ->Name("BM_QueueSteady/string64/wsguard");
BENCHMARK_TEMPLATE(queue_steady, WsguardQueueOptional<std::string>, std::string)
    ->Name("BM_QueueSteady/string64/wsguard_optional");
BENCHMARK_TEMPLATE(queue_steady, BoundedDeque<std::string>, std::string)
    ->Name("BM_QueueSteady/string64/deque");
BENCHMARK_TEMPLATE(queue_steady, WsguardQueue<Event>, Event)
    ->Name("BM_QueueSteady/event16/wsguard");
BENCHMARK_TEMPLATE(queue_steady, WsguardQueueOptional<Event>, Event)
    ->Name("BM_QueueSteady/event16/wsguard_optional");
BENCHMARK_TEMPLATE(queue_steady, BoundedDeque<Event>, Event)->Name("BM_QueueSteady/event16/deque");

BENCHMARK_TEMPLATE(queue_burst, WsguardQueue<std::string>, std::string)
    ->Name("BM_QueueBurst1000/string64/wsguard");
BENCHMARK_TEMPLATE(queue_burst, BoundedDeque<std::string>, std::string)
    ->Name("BM_QueueBurst1000/string64/deque");
BENCHMARK_TEMPLATE(queue_burst, WsguardQueue<Event>, Event)
    ->Name("BM_QueueBurst1000/event16/wsguard");
BENCHMARK_TEMPLATE(queue_burst, BoundedDeque<Event>, Event)
    ->Name("BM_QueueBurst1000/event16/deque");
