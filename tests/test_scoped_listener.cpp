// Tests for wsguard::BasicEmitter / Emitter / SyncEmitter and ScopedListener.
#include <catch2/catch.hpp>

#include <wsguard/scoped_listener.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <memory>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

// Counting global allocator: proves that emit allocates nothing.
#include "support/counting_new.hpp"
#include "support/sanitizers.hpp"

namespace {

using wsguard::BasicEmitter;
using wsguard::Emitter;
using wsguard::ScopedListener;
using wsguard::SyncEmitter;

/// A listener callable that counts its live copies, so tests can see exactly
/// when the emitter destroys what it owns.
struct Probe {
    static inline int live = 0;
    int* calls;
    explicit Probe(int* c) : calls(c) { ++live; }
    Probe(const Probe& other) : calls(other.calls) { ++live; }
    Probe(Probe&& other) noexcept : calls(other.calls) { ++live; }
    Probe& operator=(const Probe&) = delete;
    Probe& operator=(Probe&&) = delete;
    ~Probe() { --live; }
    void operator()(int) const { ++*calls; }
};

/// Aborts the process if a scope is not left in time: a deadlock then fails
/// the test run instead of hanging it. Real time is used only as this guard.
class Watchdog {
public:
    explicit Watchdog(const char* what) : what_(what), thread_([this] { run(); }) {}
    Watchdog(const Watchdog&) = delete;
    Watchdog& operator=(const Watchdog&) = delete;
    ~Watchdog() {
        {
            const std::lock_guard<std::mutex> guard(mutex_);
            done_ = true;
        }
        cv_.notify_one();
        thread_.join();
    }

private:
    void run() {
        std::unique_lock<std::mutex> lock(mutex_);
        if (!cv_.wait_for(lock, std::chrono::seconds(120), [this] { return done_; })) {
            std::fprintf(stderr, "watchdog: '%s' did not finish: deadlock\n", what_);
            std::abort();
        }
    }

    const char* what_;
    std::mutex mutex_;
    std::condition_variable cv_;
    bool done_ = false;
    std::thread thread_;
};

template <class Predicate>
void spin_until(Predicate done) {
    while (!done()) {
        std::this_thread::yield();
    }
}

/// Calls emit once and returns how many listeners it called: the definition
/// listener_count() is checked against. Every listener of these emitters
/// increments `calls`.
template <class E>
std::size_t calls_of_one_emit(E& emitter, int& calls) {
    const int before = calls;
    emitter.emit(0);
    return static_cast<std::size_t>(calls - before);
}

}  // namespace

// ---------------------------------------------------------------------------
// The handle

TEST_CASE("ScopedListener: one move-only handle type for every emitter", "[scoped_listener]") {
    STATIC_REQUIRE_FALSE(std::is_copy_constructible_v<ScopedListener>);
    STATIC_REQUIRE_FALSE(std::is_copy_assignable_v<ScopedListener>);
    STATIC_REQUIRE(std::is_nothrow_move_constructible_v<ScopedListener>);
    STATIC_REQUIRE(std::is_nothrow_move_assignable_v<ScopedListener>);
    STATIC_REQUIRE(std::is_nothrow_default_constructible_v<ScopedListener>);
    STATIC_REQUIRE_FALSE(std::is_convertible_v<ScopedListener, bool>);
    STATIC_REQUIRE_FALSE(std::is_copy_constructible_v<Emitter<int>>);
    STATIC_REQUIRE_FALSE(std::is_move_constructible_v<Emitter<int>>);
    STATIC_REQUIRE_FALSE(std::is_move_assignable_v<SyncEmitter<int>>);

    Emitter<int> a;
    SyncEmitter<std::string, double> b;
    Emitter<> c;
    int calls = 0;
    std::vector<ScopedListener> handles;
    handles.push_back(a.subscribe([&](int) { ++calls; }));
    handles.push_back(b.subscribe([&](const std::string&, double) { ++calls; }));
    handles.push_back(c.subscribe([&] { ++calls; }));
    a.emit(1);
    b.emit("x", 2.0);
    c.emit();
    REQUIRE(calls == 3);
    handles.clear();
    REQUIRE(a.listener_count() == 0);
    REQUIRE(b.listener_count() == 0);
    REQUIRE(c.listener_count() == 0);
}

TEST_CASE("ScopedListener: a default-constructed handle is empty and inert", "[scoped_listener]") {
    ScopedListener h;
    REQUIRE_FALSE(h.connected());
    REQUIRE_FALSE(static_cast<bool>(h));
    h.reset();
    h.reset();
    REQUIRE_FALSE(h.connected());
    ScopedListener moved(std::move(h));
    REQUIRE_FALSE(moved.connected());
}

TEMPLATE_TEST_CASE("Emitter: reset and destruction of the handle unsubscribe and free the callable",
                   "[scoped_listener]", wsguard::NullMutex, std::mutex) {
    BasicEmitter<TestType, int> emitter;
    int calls = 0;
    REQUIRE(Probe::live == 0);
    {
        ScopedListener h = emitter.subscribe(Probe(&calls));
        REQUIRE(Probe::live == 1);
        REQUIRE(h.connected());
        REQUIRE(static_cast<bool>(h));
        REQUIRE(emitter.listener_count() == 1);
        emitter.emit(7);
        REQUIRE(calls == 1);
    }
    // The destructor unsubscribed and the emitter released the callable.
    REQUIRE(Probe::live == 0);
    REQUIRE(emitter.listener_count() == 0);
    emitter.emit(8);
    REQUIRE(calls == 1);

    ScopedListener h = emitter.subscribe(Probe(&calls));
    h.reset();
    REQUIRE(Probe::live == 0);
    REQUIRE_FALSE(h.connected());
    h.reset();  // idempotent
    emitter.emit(9);
    REQUIRE(calls == 1);

    const wsguard::EmitterStats s = emitter.stats();
    REQUIRE(s.listeners == 0);
    REQUIRE(s.subscribed == 2);
    REQUIRE(s.unsubscribed == 2);
    REQUIRE(s.owner_expired == 0);
    REQUIRE(s.emits == 3);
}

TEMPLATE_TEST_CASE("Emitter: stats().emits counts every emit: empty, nested, with work to settle",
                   "[scoped_listener]", wsguard::NullMutex, std::mutex) {
    BasicEmitter<TestType, int> emitter;
    emitter.emit(0);  // no listeners
    int calls = 0;
    ScopedListener a = emitter.subscribe([&](int) { ++calls; });
    ScopedListener b = emitter.subscribe([&](int depth) {
        if (depth > 0) {
            emitter.emit(depth - 1);  // nested
        }
    });
    emitter.emit(0);
    REQUIRE(emitter.stats().emits == 2);
    emitter.emit(3);  // 1 + 3 nested
    REQUIRE(emitter.stats().emits == 6);
    REQUIRE(calls == 1 + 4);
    a.reset();  // a removal, then an emit with work left to settle
    {
        ScopedListener c = emitter.subscribe([&](int) { ++calls; });
        emitter.emit(0);
    }  // and the newest dropped again
    emitter.emit(0);
    b.reset();
    emitter.emit(0);  // empty again
    const wsguard::EmitterStats s = emitter.stats();
    REQUIRE(s.emits == 9);
    REQUIRE(calls == 1 + 4 + 1);
    REQUIRE(s.listeners == 0);
    REQUIRE(s.subscribed == 3);
    REQUIRE(s.unsubscribed == 3);
}

TEMPLATE_TEST_CASE("Emitter: subscribe and drop again and again, between emits and inside them",
                   "[scoped_listener]", wsguard::NullMutex, std::mutex) {
    // Dropping the newest listener outside an emit removes its entry at once;
    // inside an emit it must still wait for the emit to end.
    BasicEmitter<TestType, int> emitter;
    std::vector<int> order;
    std::vector<ScopedListener> stay;
    for (int i = 0; i < 5; ++i) {
        stay.push_back(emitter.subscribe([&order, i](int) { order.push_back(i); }));
    }
    for (int round = 0; round < 200; ++round) {
        ScopedListener temp = emitter.subscribe([&order](int) { order.push_back(99); });
        if (round % 3 == 0) {
            order.clear();
            emitter.emit(0);
            REQUIRE(order == std::vector<int>{0, 1, 2, 3, 4, 99});
        }
        if (round % 5 == 0) {
            // Dropped by a listener during an emit: not called by that emit
            // if not reached yet, released when it ends.
            ScopedListener dropper = emitter.subscribe([&temp](int) { temp.reset(); });
            order.clear();
            emitter.emit(0);
            REQUIRE(order == std::vector<int>{0, 1, 2, 3, 4, 99});
            order.clear();
            emitter.emit(0);
            REQUIRE(order == std::vector<int>{0, 1, 2, 3, 4});
        }
        REQUIRE(emitter.listener_count() == (temp.connected() ? 6u : 5u));
    }
    order.clear();
    emitter.emit(0);
    REQUIRE(order == std::vector<int>{0, 1, 2, 3, 4});
    // Drop the rest newest first: every removal takes the last entry.
    while (!stay.empty()) {
        stay.pop_back();
        order.clear();
        emitter.emit(0);
        std::vector<int> want;
        for (int i = 0; i < static_cast<int>(stay.size()); ++i) {
            want.push_back(i);
        }
        REQUIRE(order == want);
    }
    REQUIRE(emitter.listener_count() == 0);
}

TEST_CASE("Emitter: subscription blocks are reused and given back when the thread exits",
          "[scoped_listener]") {
    // A thread subscribes and drops listeners on emitters it owns; once it
    // has exited, every block it allocated has been freed again.
    const std::uint64_t allocs_before = wsguard::test::allocations();
    const std::uint64_t frees_before = wsguard::test::frees();
    std::uint64_t allocs_in_loop = 0;
    int calls = 0;
    std::thread worker([&allocs_in_loop, &calls] {
        Emitter<int> emitter;
        {
            ScopedListener warm = emitter.subscribe([&calls](int v) { calls += v; });
        }
        const std::uint64_t start = wsguard::test::thread_allocations();
        for (int i = 0; i < 1000; ++i) {
            ScopedListener h = emitter.subscribe([&calls](int v) { calls += v; });
            emitter.emit(1);
        }
        allocs_in_loop = wsguard::test::thread_allocations() - start;
    });
    worker.join();
    REQUIRE(calls == 1000);
    // Without a sanitizer every block after the warm one comes back from the
    // thread's cache. Under ASan, TSan and MSan the cache is off so that the
    // sanitizer sees every block (scoped_listener.hpp): then each subscription
    // is exactly one heap block, its one allocation, and no more.
    const std::uint64_t expected = wsguard::test::sanitizer::slot_cache_off ? 1000 : 0;
    CHECK(allocs_in_loop == expected);
    CHECK(wsguard::test::allocations() - allocs_before == wsguard::test::frees() - frees_before);
}

TEMPLATE_TEST_CASE("Emitter: move construction and move assignment transfer the subscription",
                   "[scoped_listener]", wsguard::NullMutex, std::mutex) {
    BasicEmitter<TestType, int> emitter;
    int first = 0;
    int second = 0;
    ScopedListener a = emitter.subscribe([&](int) { ++first; });
    ScopedListener b(std::move(a));
    REQUIRE_FALSE(a.connected());  // NOLINT(bugprone-use-after-move): moved-from is empty
    REQUIRE(b.connected());
    a.reset();  // an empty handle does nothing
    emitter.emit(1);
    REQUIRE(first == 1);

    SECTION("move assignment resets the old subscription first") {
        ScopedListener c = emitter.subscribe([&](int) { ++second; });
        REQUIRE(emitter.listener_count() == 2);
        b = std::move(c);
        REQUIRE(emitter.listener_count() == 1);
        emitter.emit(2);
        REQUIRE(first == 1);
        REQUIRE(second == 1);
        REQUIRE(emitter.stats().unsubscribed == 1);
    }
    SECTION("assigning an empty handle unsubscribes") {
        b = ScopedListener();
        REQUIRE(emitter.listener_count() == 0);
        emitter.emit(2);
        REQUIRE(first == 1);
    }
    SECTION("self move assignment keeps the subscription") {
        ScopedListener& alias = b;
        b = std::move(alias);
        REQUIRE(b.connected());
        emitter.emit(2);
        REQUIRE(first == 2);
    }
}

// ---------------------------------------------------------------------------
// emit

TEMPLATE_TEST_CASE("Emitter: emit calls every listener in subscription order with the arguments",
                   "[scoped_listener]", wsguard::NullMutex, std::mutex) {
    BasicEmitter<TestType, int, std::string> emitter;
    std::vector<std::string> seen;
    std::vector<ScopedListener> handles;
    handles.push_back(emitter.subscribe(
        [&](const int& n, const std::string& s) { seen.push_back("a" + std::to_string(n) + s); }));
    // By value is accepted too.
    handles.push_back(emitter.subscribe(
        [&](int n, std::string s) { seen.push_back("b" + std::to_string(n) + s); }));
    handles.push_back(emitter.subscribe(
        [&](int n, const std::string& s) { seen.push_back("c" + std::to_string(n) + s); }));
    emitter.emit(1, "x");
    REQUIRE(seen == std::vector<std::string>{"a1x", "b1x", "c1x"});

    // Removing one in the middle keeps the order of the rest; a new one goes last.
    handles[1].reset();
    handles.push_back(emitter.subscribe(
        [&](int n, const std::string& s) { seen.push_back("d" + std::to_string(n) + s); }));
    seen.clear();
    emitter.emit(2, "y");
    REQUIRE(seen == std::vector<std::string>{"a2y", "c2y", "d2y"});
}

TEMPLATE_TEST_CASE("Emitter: a move-only callable is accepted and destroyed on unsubscribe",
                   "[scoped_listener]", wsguard::NullMutex, std::mutex) {
    BasicEmitter<TestType, int> emitter;
    auto payload = std::make_unique<int>(41);
    int seen = 0;
    ScopedListener h = emitter.subscribe([p = std::move(payload), &seen](int n) { seen = *p + n; });
    emitter.emit(1);
    REQUIRE(seen == 42);
    h.reset();
    REQUIRE(emitter.listener_count() == 0);
}

TEMPLATE_TEST_CASE("Emitter: unsubscribe is O(1) (no scan of the listener list)",
                   "[scoped_listener]", wsguard::NullMutex, std::mutex) {
    // Reset handles from the middle outwards: any scan from either end of the
    // list pays about n/2 per reset, so per-reset time would grow ~64x from
    // the small list to the big one. O(1) removal keeps it flat.
    auto per_reset_ns = [](std::size_t n, int repetitions) {
        double best = 1e300;
        for (int r = 0; r < repetitions; ++r) {
            BasicEmitter<TestType, int> emitter;
            std::vector<ScopedListener> handles;
            handles.reserve(n);
            for (std::size_t i = 0; i < n; ++i) {
                handles.push_back(emitter.subscribe([](int) {}));
            }
            std::vector<std::size_t> order;
            order.reserve(n);
            for (std::size_t d = 0; d < n / 2; ++d) {
                order.push_back(n / 2 - 1 - d);
                order.push_back(n / 2 + d);
            }
            const auto start = std::chrono::steady_clock::now();
            for (std::size_t i : order) {
                handles[i].reset();
            }
            const auto elapsed = std::chrono::steady_clock::now() - start;
            REQUIRE(emitter.listener_count() == 0);
            best = std::min(
                best, static_cast<double>(
                          std::chrono::duration_cast<std::chrono::nanoseconds>(elapsed).count()) /
                          static_cast<double>(n));
        }
        return best;
    };
    const double small = per_reset_ns(1024, 15);
    const double big = per_reset_ns(65536, 3);
    INFO("ns per reset: 1024 listeners " << small << ", 65536 listeners " << big);
    REQUIRE(big < small * 16);
}

TEMPLATE_TEST_CASE("Emitter: no heap allocation per emit in steady state", "[scoped_listener]",
                   wsguard::NullMutex, std::mutex) {
    BasicEmitter<TestType, int> emitter;
    std::uint64_t sum = 0;
    auto owner = std::make_shared<int>(3);
    std::vector<ScopedListener> handles;
    const std::uint64_t before_subscribe = wsguard::test::allocations();
    // Every kind of listener: small (stored inline by Emitter), large and
    // not trivially copyable (stored apart), and tracked.
    for (int i = 0; i < 8; ++i) {
        handles.push_back(
            emitter.subscribe([&sum](int n) { sum += static_cast<std::uint64_t>(n); }));
    }
    const std::string label(40, 'L');
    handles.push_back(emitter.subscribe(
        [&sum, label](int n) { sum += static_cast<std::uint64_t>(n) * (label.size() / 40); }));
    handles.push_back(emitter.subscribe(
        std::weak_ptr<int>(owner),
        [&sum, raw = owner.get()](int n) { sum += static_cast<std::uint64_t>(n * *raw); }));
    // The counter is live: subscribing does allocate.
    REQUIRE(wsguard::test::allocations() > before_subscribe);

    emitter.emit(1);  // warm-up
    constexpr int kEmits = 10000;
    const std::uint64_t before = wsguard::test::allocations();
    for (int i = 0; i < kEmits; ++i) {
        emitter.emit(1);
    }
    const std::uint64_t allocations = wsguard::test::allocations() - before;
    REQUIRE(allocations == 0);
    REQUIRE(sum == static_cast<std::uint64_t>(kEmits + 1) * (8 + 1 + 3));
}

// ---------------------------------------------------------------------------
// Re-entrancy during emit

TEMPLATE_TEST_CASE("Emitter: a listener may reset its own handle during emit", "[scoped_listener]",
                   wsguard::NullMutex, std::mutex) {
    BasicEmitter<TestType, int> emitter;
    std::vector<std::string> seen;
    ScopedListener self;
    const std::string tag = "captured state that must outlive the call";
    self = emitter.subscribe([&, tag](int) {
        self.reset();
        REQUIRE_FALSE(self.connected());
        // The callable (and its captures) must still be alive here.
        seen.push_back(tag);
    });
    ScopedListener after = emitter.subscribe([&](int) { seen.emplace_back("after"); });
    emitter.emit(1);
    REQUIRE(seen == std::vector<std::string>{tag, "after"});
    REQUIRE(emitter.listener_count() == 1);
    emitter.emit(2);
    REQUIRE(seen == std::vector<std::string>{tag, "after", "after"});
    REQUIRE(emitter.stats().unsubscribed == 1);
}

TEMPLATE_TEST_CASE("Emitter: callables removed during emit are released by the time it returns",
                   "[scoped_listener]", wsguard::NullMutex, std::mutex) {
    BasicEmitter<TestType, int> emitter;
    int calls = 0;
    ScopedListener self;
    self = emitter.subscribe([&, probe = Probe(&calls)](int n) {
        self.reset();
        probe(n);  // its own callable is still alive after the reset
    });
    ScopedListener probe = emitter.subscribe(Probe(&calls));
    ScopedListener killer = emitter.subscribe([&](int) { probe.reset(); });
    ScopedListener last = emitter.subscribe([](int) {});
    REQUIRE(Probe::live == 2);
    emitter.emit(1);
    REQUIRE(calls == 2);
    REQUIRE(Probe::live == 0);
    REQUIRE(emitter.listener_count() == 2);
    REQUIRE(emitter.stats().unsubscribed == 2);
}

TEMPLATE_TEST_CASE("Emitter: a listener may reset other handles during emit", "[scoped_listener]",
                   wsguard::NullMutex, std::mutex) {
    BasicEmitter<TestType, int> emitter;
    std::vector<std::string> seen;
    ScopedListener a;
    ScopedListener b;
    ScopedListener c;
    a = emitter.subscribe([&](int) { seen.emplace_back("a"); });
    b = emitter.subscribe([&](int) {
        seen.emplace_back("b");
        a.reset();  // already called in this emit
        c.reset();  // not yet called: must not be called in this emit
    });
    c = emitter.subscribe([&](int) { seen.emplace_back("c"); });
    ScopedListener d = emitter.subscribe([&](int) { seen.emplace_back("d"); });
    emitter.emit(1);
    REQUIRE(seen == std::vector<std::string>{"a", "b", "d"});
    REQUIRE(emitter.listener_count() == 2);
    seen.clear();
    emitter.emit(2);
    REQUIRE(seen == std::vector<std::string>{"b", "d"});
}

TEMPLATE_TEST_CASE("Emitter: a listener subscribed during emit is first called by the next emit",
                   "[scoped_listener]", wsguard::NullMutex, std::mutex) {
    BasicEmitter<TestType, int> emitter;
    std::vector<std::string> seen;
    std::vector<ScopedListener> added;
    ScopedListener adder = emitter.subscribe([&](int n) {
        seen.push_back("adder" + std::to_string(n));
        if (added.empty()) {
            added.push_back(
                emitter.subscribe([&](int m) { seen.push_back("new" + std::to_string(m)); }));
        }
    });
    ScopedListener tail =
        emitter.subscribe([&](int n) { seen.push_back("tail" + std::to_string(n)); });
    emitter.emit(1);
    REQUIRE(seen == std::vector<std::string>{"adder1", "tail1"});
    REQUIRE(emitter.listener_count() == 3);
    seen.clear();
    emitter.emit(2);
    REQUIRE(seen == std::vector<std::string>{"adder2", "tail2", "new2"});
}

TEMPLATE_TEST_CASE("Emitter: a listener may emit recursively", "[scoped_listener]",
                   wsguard::NullMutex, std::mutex) {
    BasicEmitter<TestType, int> emitter;
    std::vector<std::string> seen;
    ScopedListener late;
    ScopedListener a = emitter.subscribe([&](int depth) {
        seen.push_back("a" + std::to_string(depth));
        if (depth == 0) {
            if (!late) {
                late =
                    emitter.subscribe([&](int d) { seen.push_back("late" + std::to_string(d)); });
            }
            emitter.emit(1);
        }
    });
    ScopedListener b =
        emitter.subscribe([&](int depth) { seen.push_back("b" + std::to_string(depth)); });
    emitter.emit(0);
    // The nested emit started after `late` subscribed, so it calls it; the outer one does not.
    REQUIRE(seen == std::vector<std::string>{"a0", "a1", "b1", "late1", "b0"});
    seen.clear();
    emitter.emit(0);
    REQUIRE(seen == std::vector<std::string>{"a0", "a1", "b1", "late1", "b0", "late0"});
    REQUIRE(emitter.stats().emits == 4);
}

TEMPLATE_TEST_CASE(
    "Emitter: a listener nested emit may unsubscribe a listener the outer emit is in",
    "[scoped_listener]", wsguard::NullMutex, std::mutex) {
    BasicEmitter<TestType, int> emitter;
    std::vector<std::string> seen;
    ScopedListener a;
    ScopedListener b;
    a = emitter.subscribe([&](int depth) {
        seen.push_back("a" + std::to_string(depth));
        if (depth == 0) {
            emitter.emit(1);
            // b reset `a` inside the nested emit while this call was running.
            REQUIRE_FALSE(a.connected());
        }
    });
    b = emitter.subscribe([&](int depth) {
        seen.push_back("b" + std::to_string(depth));
        a.reset();
    });
    emitter.emit(0);
    REQUIRE(seen == std::vector<std::string>{"a0", "a1", "b1", "b0"});
    REQUIRE(emitter.listener_count() == 1);
}

TEMPLATE_TEST_CASE("Emitter: clear during emit stops the listeners not yet called",
                   "[scoped_listener]", wsguard::NullMutex, std::mutex) {
    BasicEmitter<TestType, int> emitter;
    int calls = 0;
    ScopedListener before = emitter.subscribe(Probe(&calls));
    ScopedListener clearer = emitter.subscribe([&](int) { emitter.clear(); });
    ScopedListener after = emitter.subscribe(Probe(&calls));
    REQUIRE(Probe::live == 2);
    emitter.emit(1);
    REQUIRE(calls == 1);
    REQUIRE(Probe::live == 0);
    REQUIRE_FALSE(before.connected());
    REQUIRE_FALSE(clearer.connected());
    REQUIRE_FALSE(after.connected());
    REQUIRE(emitter.listener_count() == 0);
    REQUIRE(emitter.stats().unsubscribed == 3);
    // Handles of cleared listeners are inert: resetting them counts nothing.
    before.reset();
    after.reset();
    REQUIRE(emitter.stats().unsubscribed == 3);
    emitter.emit(2);
    REQUIRE(calls == 1);
}

TEMPLATE_TEST_CASE("Emitter: clear outside emit frees every callable", "[scoped_listener]",
                   wsguard::NullMutex, std::mutex) {
    BasicEmitter<TestType, int> emitter;
    int calls = 0;
    std::vector<ScopedListener> handles;
    for (int i = 0; i < 5; ++i) {
        handles.push_back(emitter.subscribe(Probe(&calls)));
    }
    REQUIRE(Probe::live == 5);
    emitter.clear();
    REQUIRE(Probe::live == 0);
    REQUIRE(emitter.listener_count() == 0);
    REQUIRE(std::none_of(handles.begin(), handles.end(),
                         [](const ScopedListener& h) { return h.connected(); }));
    emitter.emit(1);
    REQUIRE(calls == 0);
    // The emitter stays usable.
    handles.push_back(emitter.subscribe(Probe(&calls)));
    emitter.emit(2);
    REQUIRE(calls == 1);
}

TEMPLATE_TEST_CASE("Emitter: a callable that owns another handle releases it on unsubscribe",
                   "[scoped_listener]", wsguard::NullMutex, std::mutex) {
    // Destroying a callable runs user code that re-enters the emitter.
    BasicEmitter<TestType, int> emitter;
    int calls = 0;
    ScopedListener inner = emitter.subscribe(Probe(&calls));
    ScopedListener outer = emitter.subscribe([owned = std::move(inner)](int) {});
    REQUIRE(emitter.listener_count() == 2);

    SECTION("reset outside emit") {
        outer.reset();
    }
    SECTION("reset during emit: released when the emit ends") {
        ScopedListener killer = emitter.subscribe([&](int) { outer.reset(); });
        emitter.emit(1);
        REQUIRE(calls == 1);
        killer.reset();
    }
    SECTION("clear") {
        emitter.clear();
    }
    REQUIRE(Probe::live == 0);
    REQUIRE(emitter.listener_count() == 0);
    emitter.emit(2);
}

TEMPLATE_TEST_CASE("Emitter: many listeners subscribed during emit join in order",
                   "[scoped_listener]", wsguard::NullMutex, std::mutex) {
    BasicEmitter<TestType, int> emitter;
    std::vector<int> seen;
    std::vector<ScopedListener> added;
    ScopedListener dropped;
    bool nested_seen_all = false;
    ScopedListener adder = emitter.subscribe([&](int n) {
        if (n != 0) {
            return;
        }
        for (int i = 1; i <= 100; ++i) {
            added.push_back(emitter.subscribe([&seen, i](int) { seen.push_back(i); }));
        }
        dropped = emitter.subscribe([&seen](int) { seen.push_back(-1); });
        dropped.reset();  // unsubscribed before any emit could call it
        // A nested emit that starts now calls the new ones, in order.
        emitter.emit(1);
        nested_seen_all = seen.size() == 100 && seen.front() == 1 && seen.back() == 100;
        seen.clear();
    });
    emitter.emit(0);
    REQUIRE(nested_seen_all);
    REQUIRE(seen.empty());  // the outer emit did not call them
    REQUIRE(emitter.listener_count() == 101);
    emitter.emit(2);
    REQUIRE(seen.size() == 100);
    REQUIRE(std::is_sorted(seen.begin(), seen.end()));
    REQUIRE(std::find(seen.begin(), seen.end(), -1) == seen.end());
}

TEMPLATE_TEST_CASE("Emitter: a tracked listener subscribed during emit is dropped by a nested emit",
                   "[scoped_listener]", wsguard::NullMutex, std::mutex) {
    BasicEmitter<TestType, int> emitter;
    int calls = 0;
    ScopedListener tracked;
    auto owner = std::make_shared<int>(1);
    ScopedListener outer = emitter.subscribe([&](int depth) {
        if (depth != 0) {
            return;
        }
        tracked = emitter.subscribe(std::weak_ptr<int>(owner), Probe(&calls));
        emitter.emit(1);  // calls it
        owner.reset();
        emitter.emit(1);  // drops it
    });
    emitter.emit(0);
    REQUIRE(calls == 1);
    REQUIRE_FALSE(tracked.connected());
    REQUIRE(emitter.stats().owner_expired == 1);
    REQUIRE(emitter.listener_count() == 1);
    REQUIRE(Probe::live == 0);  // released when the outermost emit ended
}

TEMPLATE_TEST_CASE("Emitter: subscription order survives removals and compaction",
                   "[scoped_listener]", wsguard::NullMutex, std::mutex) {
    BasicEmitter<TestType, int> emitter;
    std::vector<int> seen;
    std::vector<ScopedListener> handles(300);
    std::vector<int> expected;
    for (int i = 0; i < 300; ++i) {
        handles[static_cast<std::size_t>(i)] =
            emitter.subscribe([&seen, i](int) { seen.push_back(i); });
    }
    // Remove two thirds, spread out, with emits in between.
    for (int i = 0; i < 300; ++i) {
        if (i % 3 != 0) {
            handles[static_cast<std::size_t>(i)].reset();
        }
        if (i % 50 == 0) {
            emitter.emit(0);
        }
    }
    for (int i = 0; i < 300; i += 3) {
        expected.push_back(i);
    }
    for (int i = 300; i < 320; ++i) {
        handles.push_back(emitter.subscribe([&seen, i](int) { seen.push_back(i); }));
        expected.push_back(i);
    }
    seen.clear();
    emitter.emit(0);
    REQUIRE(seen == expected);
    REQUIRE(emitter.listener_count() == expected.size());
    // Handles still reach their own listener after the array was compacted.
    handles[150].reset();
    expected.erase(std::find(expected.begin(), expected.end(), 150));
    seen.clear();
    emitter.emit(0);
    REQUIRE(seen == expected);
}

TEMPLATE_TEST_CASE("Emitter: a stateful listener keeps its state across churn", "[scoped_listener]",
                   wsguard::NullMutex, std::mutex) {
    // Small mutable lambdas may be stored inline and moved when the
    // emitter reorganises itself; their state must move with them.
    BasicEmitter<TestType, int> emitter;
    std::vector<int> small_counts;
    std::vector<std::string> big_log;
    std::vector<ScopedListener> churn;
    ScopedListener small = emitter.subscribe(
        [count = 0, &small_counts](int) mutable { small_counts.push_back(++count); });
    const std::string prefix(64, 'x');  // too big to store inline
    ScopedListener big = emitter.subscribe([text = prefix, &big_log](int) mutable {
        text += "!";
        big_log.push_back(text);
    });
    ScopedListener churner = emitter.subscribe([&](int n) {
        // Subscribes during emit (joins later) and removes older ones
        // (tombstones, then compaction).
        churn.push_back(emitter.subscribe([](int) {}));
        if (n % 2 == 0 && churn.size() > 2) {
            churn.erase(churn.begin(), churn.begin() + 2);
        }
    });
    for (int i = 0; i < 40; ++i) {
        emitter.emit(i);
        if (i % 7 == 0) {
            churn.clear();
        }
    }
    REQUIRE(small_counts.size() == 40);
    for (std::size_t i = 0; i < small_counts.size(); ++i) {
        REQUIRE(small_counts[i] == static_cast<int>(i) + 1);
    }
    REQUIRE(big_log.size() == 40);
    REQUIRE(big_log.back() == prefix + std::string(40, '!'));
}

// ---------------------------------------------------------------------------
// Exceptions

TEMPLATE_TEST_CASE("Emitter: a listener's exception propagates and leaves the emitter consistent",
                   "[scoped_listener]", wsguard::NullMutex, std::mutex) {
    BasicEmitter<TestType, int> emitter;
    std::vector<std::string> seen;
    bool fail = true;
    ScopedListener a = emitter.subscribe([&](int) { seen.emplace_back("a"); });
    ScopedListener thrower;
    thrower = emitter.subscribe([&](int) {
        seen.emplace_back("throw");
        if (fail) {
            throw std::runtime_error("listener failed");
        }
    });
    ScopedListener c = emitter.subscribe([&](int) { seen.emplace_back("c"); });
    REQUIRE_THROWS_AS(emitter.emit(1), std::runtime_error);
    REQUIRE(seen == std::vector<std::string>{"a", "throw"});
    REQUIRE(emitter.listener_count() == 3);

    fail = false;
    seen.clear();
    emitter.emit(2);
    REQUIRE(seen == std::vector<std::string>{"a", "throw", "c"});

    SECTION("a listener that resets itself and then throws is released") {
        int calls = 0;
        ScopedListener self;
        self = emitter.subscribe([&, probe = Probe(&calls)](int) {
            probe(0);
            self.reset();
            throw std::logic_error("after reset");
        });
        REQUIRE(Probe::live == 1);
        REQUIRE_THROWS_AS(emitter.emit(3), std::logic_error);
        REQUIRE(calls == 1);
        REQUIRE(Probe::live == 0);
        REQUIRE(emitter.listener_count() == 3);
        seen.clear();
        emitter.emit(4);
        REQUIRE(seen == std::vector<std::string>{"a", "throw", "c"});
        REQUIRE(calls == 1);
    }
    SECTION("the thrower's handle can be reset from another thread afterwards") {
        fail = true;
        REQUIRE_THROWS_AS(emitter.emit(3), std::runtime_error);
        if constexpr (std::is_same_v<TestType, std::mutex>) {
            // A pin leaked by the exception would make this reset wait forever.
            const Watchdog watchdog("reset after a listener threw");
            std::thread other([&] { thrower.reset(); });
            other.join();
        } else {
            thrower.reset();
        }
        REQUIRE(emitter.listener_count() == 2);
        seen.clear();
        emitter.emit(4);
        REQUIRE(seen == std::vector<std::string>{"a", "c"});
    }
}

// ---------------------------------------------------------------------------
// Lifetime: emitter destroyed before its handles

TEMPLATE_TEST_CASE("Emitter: handles that outlive their emitter are inert", "[scoped_listener]",
                   wsguard::NullMutex, std::mutex) {
    int calls = 0;
    ScopedListener a;
    ScopedListener b;
    ScopedListener tracked;
    auto owner = std::make_shared<int>(1);
    {
        BasicEmitter<TestType, int> emitter;
        a = emitter.subscribe(Probe(&calls));
        b = emitter.subscribe(Probe(&calls));
        tracked = emitter.subscribe(std::weak_ptr<int>(owner), Probe(&calls));
        emitter.emit(1);
        REQUIRE(calls == 3);
        REQUIRE(a.connected());
    }
    // The emitter released every callable with itself.
    REQUIRE(Probe::live == 0);
    REQUIRE_FALSE(a.connected());
    REQUIRE_FALSE(b.connected());
    REQUIRE_FALSE(tracked.connected());
    REQUIRE_FALSE(static_cast<bool>(a));
    a.reset();  // no-op, touches no freed memory (ASan)
    a.reset();
    ScopedListener moved(std::move(b));
    REQUIRE_FALSE(moved.connected());
    moved = std::move(tracked);
    // `moved` and the rest are destroyed here: also no-ops.
}

// ---------------------------------------------------------------------------
// Tracked owners

TEMPLATE_TEST_CASE("Emitter: a tracked listener is dropped once its owner expires",
                   "[scoped_listener]", wsguard::NullMutex, std::mutex) {
    BasicEmitter<TestType, int> emitter;
    int calls = 0;
    auto owner = std::make_shared<std::string>("session");
    ScopedListener h = emitter.subscribe(std::weak_ptr<std::string>(owner), Probe(&calls));
    ScopedListener plain = emitter.subscribe([](int) {});
    emitter.emit(1);
    REQUIRE(calls == 1);
    REQUIRE(h.connected());
    REQUIRE(emitter.listener_count() == 2);

    owner.reset();
    // Not called any more from this moment; the next emit drops it.
    REQUIRE_FALSE(h.connected());
    REQUIRE(emitter.listener_count() == 1);
    REQUIRE(emitter.stats().listeners == 1);
    REQUIRE(emitter.stats().owner_expired == 0);
    REQUIRE(Probe::live == 1);

    emitter.emit(2);
    REQUIRE(calls == 1);
    REQUIRE(Probe::live == 0);
    wsguard::EmitterStats s = emitter.stats();
    REQUIRE(s.owner_expired == 1);
    REQUIRE(s.listeners == 1);
    REQUIRE(s.subscribed == s.unsubscribed + s.owner_expired + s.listeners);

    // Resetting the handle of a dropped listener does nothing.
    h.reset();
    REQUIRE(emitter.stats().unsubscribed == 0);
}

TEMPLATE_TEST_CASE("Emitter: the owner is kept alive for the duration of the call",
                   "[scoped_listener]", wsguard::NullMutex, std::mutex) {
    struct Owner {
        bool* destroyed;
        explicit Owner(bool* d) : destroyed(d) {}
        Owner(const Owner&) = delete;
        Owner& operator=(const Owner&) = delete;
        ~Owner() { *destroyed = true; }
    };
    BasicEmitter<TestType, int> emitter;
    bool destroyed = false;
    bool destroyed_during_call = true;
    auto owner = std::make_shared<Owner>(&destroyed);
    ScopedListener h = emitter.subscribe(std::weak_ptr<Owner>(owner), [&](int) {
        owner.reset();  // the last strong reference outside the emitter
        destroyed_during_call = destroyed;
    });
    emitter.emit(1);
    REQUIRE_FALSE(destroyed_during_call);
    REQUIRE(destroyed);
    REQUIRE_FALSE(h.connected());
    emitter.emit(2);
    REQUIRE(emitter.stats().owner_expired == 1);
}

TEMPLATE_TEST_CASE("Emitter: an owner that expires during emit stops later listeners",
                   "[scoped_listener]", wsguard::NullMutex, std::mutex) {
    BasicEmitter<TestType, int> emitter;
    int calls = 0;
    auto owner = std::make_shared<const int>(5);
    ScopedListener killer = emitter.subscribe([&](int) { owner.reset(); });
    ScopedListener tracked =
        emitter.subscribe(std::weak_ptr<const int>(owner), [&](int) { ++calls; });
    emitter.emit(1);
    REQUIRE(calls == 0);
    REQUIRE(emitter.stats().owner_expired == 1);
    REQUIRE(emitter.listener_count() == 1);
}

TEMPLATE_TEST_CASE("Emitter: an owner already expired at subscribe is never called",
                   "[scoped_listener]", wsguard::NullMutex, std::mutex) {
    BasicEmitter<TestType, int> emitter;
    int calls = 0;
    std::weak_ptr<int> gone;
    {
        auto owner = std::make_shared<int>(1);
        gone = owner;
    }
    ScopedListener h = emitter.subscribe(gone, [&](int) { ++calls; });
    ScopedListener empty = emitter.subscribe(std::weak_ptr<int>(), [&](int) { ++calls; });
    REQUIRE_FALSE(h.connected());
    REQUIRE_FALSE(empty.connected());
    REQUIRE(emitter.listener_count() == 0);
    emitter.emit(1);
    REQUIRE(calls == 0);
    REQUIRE(emitter.stats().owner_expired == 2);
}

// ---------------------------------------------------------------------------
// Queries against their definitions

TEMPLATE_TEST_CASE("Emitter: listener_count() equals the callbacks the next emit calls",
                   "[scoped_listener]", wsguard::NullMutex, std::mutex) {
    BasicEmitter<TestType, int> emitter;
    int calls = 0;
    std::vector<ScopedListener> handles;
    std::vector<std::shared_ptr<int>> owners(6);
    std::mt19937 rng(20240611);
    auto pick = [&rng](std::size_t n) {
        return std::uniform_int_distribution<std::size_t>(0, n - 1)(rng);
    };
    for (int step = 0; step < 400; ++step) {
        switch (pick(9)) {
            case 0:
            case 1:
            case 2:
                handles.push_back(emitter.subscribe([&calls](int) { ++calls; }));
                break;
            case 3: {
                auto& owner = owners[pick(owners.size())];
                if (!owner) {
                    owner = std::make_shared<int>(step);
                }
                handles.push_back(
                    emitter.subscribe(std::weak_ptr<int>(owner), [&calls](int) { ++calls; }));
                break;
            }
            case 4:
                owners[pick(owners.size())].reset();
                break;
            case 5:
            case 6:
                if (!handles.empty()) {
                    handles[pick(handles.size())].reset();
                }
                break;
            case 7:
                if (handles.size() >= 2) {
                    handles[pick(handles.size())] = std::move(handles[pick(handles.size())]);
                }
                break;
            default:
                if (pick(10) == 0) {
                    emitter.clear();
                }
                break;
        }
        const std::size_t count = emitter.listener_count();
        const auto connected = static_cast<std::size_t>(std::count_if(
            handles.begin(), handles.end(), [](const ScopedListener& h) { return h.connected(); }));
        REQUIRE(emitter.stats().listeners == count);
        REQUIRE(connected == count);
        REQUIRE(calls_of_one_emit(emitter, calls) == count);
        // The emit dropped every expired listener: the counters now balance.
        const wsguard::EmitterStats s = emitter.stats();
        REQUIRE(s.subscribed == s.unsubscribed + s.owner_expired + s.listeners);
    }
    handles.clear();
    REQUIRE(emitter.listener_count() == 0);
}

TEMPLATE_TEST_CASE("Emitter: listener_count() stays exact when listeners change it during emit",
                   "[scoped_listener]", wsguard::NullMutex, std::mutex) {
    // Random subscribe / reset / nested emit / owner expiry from inside a
    // listener, then the query is checked against its definition.
    BasicEmitter<TestType, int> emitter;
    int calls = 0;
    std::vector<ScopedListener> handles;
    std::vector<std::shared_ptr<int>> owners(4);
    std::mt19937 rng(77);
    auto pick = [&rng](std::size_t n) {
        return std::uniform_int_distribution<std::size_t>(0, n - 1)(rng);
    };
    auto counter = [&calls](int) { ++calls; };
    ScopedListener chaos = emitter.subscribe([&](int depth) {
        if (depth != 0) {
            return;
        }
        for (int k = 0; k < 4; ++k) {
            switch (pick(6)) {
                case 0:
                    handles.push_back(emitter.subscribe(counter));
                    break;
                case 1: {
                    auto& owner = owners[pick(owners.size())];
                    if (!owner) {
                        owner = std::make_shared<int>(k);
                    }
                    handles.push_back(emitter.subscribe(std::weak_ptr<int>(owner), counter));
                    break;
                }
                case 2:
                    owners[pick(owners.size())].reset();
                    break;
                case 3:
                    if (!handles.empty()) {
                        handles[pick(handles.size())].reset();
                    }
                    break;
                case 4:
                    emitter.emit(1);
                    break;
                default:
                    if (!handles.empty()) {
                        handles.erase(handles.begin() +
                                      static_cast<std::ptrdiff_t>(pick(handles.size())));
                    }
                    break;
            }
        }
    });
    for (int round = 0; round < 300; ++round) {
        emitter.emit(0);  // chaos runs
        const std::size_t count = emitter.listener_count();
        const auto connected = static_cast<std::size_t>(std::count_if(
            handles.begin(), handles.end(), [](const ScopedListener& h) { return h.connected(); }));
        REQUIRE(connected + 1 == count);  // + chaos itself
        // The definition, with chaos quiet: emit(2) calls everyone.
        const int before = calls;
        emitter.emit(2);
        REQUIRE(static_cast<std::size_t>(calls - before) + 1 == count);
        const wsguard::EmitterStats s = emitter.stats();
        REQUIRE(s.subscribed == s.unsubscribed + s.owner_expired + s.listeners);
    }
    handles.clear();
    chaos.reset();
    REQUIRE(emitter.listener_count() == 0);
}

// ---------------------------------------------------------------------------
// Several threads (SyncEmitter)

TEST_CASE("SyncEmitter: listeners are called outside the lock", "[scoped_listener][threaded]") {
    const Watchdog watchdog("listeners outside the lock");
    SyncEmitter<int> emitter;

    SECTION("a listener may call every member on its own thread") {
        std::vector<ScopedListener> added;
        std::size_t count_inside = 0;
        int nested = 0;
        ScopedListener h = emitter.subscribe([&](int depth) {
            count_inside = emitter.listener_count();
            (void)emitter.stats();
            if (depth == 0) {
                added.push_back(emitter.subscribe([&](int) { ++nested; }));
                emitter.emit(1);
            }
        });
        emitter.emit(0);
        REQUIRE(count_inside == 2);
        REQUIRE(nested == 1);
    }

    SECTION("other threads use the emitter while a listener is running") {
        std::atomic<int> calls{0};
        std::atomic<bool> inside{false};
        std::atomic<bool> release{false};
        ScopedListener blocker = emitter.subscribe([&](int n) {
            calls.fetch_add(1);
            if (n == 0) {
                inside.store(true);
                // If the lock were held here, the main thread could not
                // finish its calls and would never release us.
                spin_until([&] { return release.load(); });
            }
        });
        std::thread emitting([&] { emitter.emit(0); });
        spin_until([&] { return inside.load(); });
        REQUIRE(emitter.listener_count() == 1);
        std::atomic<int> other_calls{0};
        ScopedListener other = emitter.subscribe([&](int) { other_calls.fetch_add(1); });
        emitter.emit(1);  // a second emit, concurrent with the first
        const wsguard::EmitterStats s = emitter.stats();
        other.reset();
        release.store(true);
        emitting.join();
        REQUIRE(calls.load() == 2);
        REQUIRE(other_calls.load() == 1);
        REQUIRE(s.emits == 2);
        REQUIRE(s.listeners == 2);
    }
}

TEST_CASE("SyncEmitter: once reset returns on another thread, the callback never runs again",
          "[scoped_listener][threaded]") {
    // The callback writes to an object the resetting thread destroys right
    // after reset() returns: a call still running or starting afterwards is
    // a use after free (ASan) or a race with delete (TSan), and is counted.
    struct Victim {
        std::atomic<bool> claimed{false};
        std::promise<void> inside;
        std::atomic<int> data[16] = {};
    };
    const Watchdog watchdog("reset vs emit");
    SyncEmitter<int> emitter;
    std::atomic<bool> stop{false};
    std::atomic<std::uint64_t> dead_generation{0};
    std::atomic<int> late_calls{0};
    std::vector<std::thread> emitting;
    for (int t = 0; t < 2; ++t) {
        emitting.emplace_back([&] {
            int i = 0;
            while (!stop.load(std::memory_order_relaxed)) {
                emitter.emit(i++);
                // Leave the lock to the other threads now and then (std::mutex is not fair).
                std::this_thread::yield();
            }
        });
    }
    const std::uint64_t iterations = 600;
    for (std::uint64_t gen = 1; gen <= iterations; ++gen) {
        auto victim = std::make_unique<Victim>();
        Victim* v = victim.get();
        std::future<void> inside = v->inside.get_future();
        ScopedListener h =
            emitter.subscribe([v, gen, &emitter, &dead_generation, &late_calls](int x) {
                if (dead_generation.load() >= gen) {
                    late_calls.fetch_add(1);
                }
                if (!v->claimed.exchange(true)) {
                    v->inside.set_value();
                    // Stay in this call until the main thread's reset has
                    // unsubscribed it (and is now waiting for this call).
                    spin_until([&emitter] { return emitter.listener_count() == 0; });
                }
                for (auto& d : v->data) {
                    d.store(x, std::memory_order_relaxed);
                }
            });
        inside.wait();
        switch (gen % 4) {
            case 0:
                h.reset();
                break;
            case 1: {
                const ScopedListener dying(std::move(h));
                break;
            }
            case 2:
                h = ScopedListener();
                break;
            default:
                emitter.clear();
                break;
        }
        dead_generation.store(gen);
        victim.reset();
    }
    stop.store(true);
    for (auto& t : emitting) {
        t.join();
    }
    REQUIRE(late_calls.load() == 0);
    const wsguard::EmitterStats s = emitter.stats();
    REQUIRE(s.listeners == 0);
    REQUIRE(s.subscribed == iterations);
    REQUIRE(s.unsubscribed == iterations);
}

TEST_CASE("SyncEmitter: a callback may reset its own handle while other threads emit",
          "[scoped_listener][threaded]") {
    struct Subscription {
        ScopedListener handle;
        std::atomic<bool> armed{false};
        std::atomic<bool> claimed{false};
        std::atomic<bool> reset_returned{false};
        std::atomic<int> late_calls{0};
        std::atomic<int> calls{0};
        std::atomic<int> running{0};
    };
    const Watchdog watchdog("self reset");
    SyncEmitter<int> emitter;
    std::atomic<bool> stop{false};
    std::vector<std::thread> emitting;
    for (int t = 0; t < 2; ++t) {
        emitting.emplace_back([&] {
            while (!stop.load(std::memory_order_relaxed)) {
                emitter.emit(0);
                std::this_thread::yield();
            }
        });
    }
    const int iterations = 300;
    std::vector<std::unique_ptr<Subscription>> subs;
    for (int i = 0; i < iterations; ++i) {
        subs.push_back(std::make_unique<Subscription>());
        Subscription* sub = subs.back().get();
        sub->handle = emitter.subscribe([sub, &emitter](int) {
            sub->running.fetch_add(1);
            if (sub->reset_returned.load()) {
                sub->late_calls.fetch_add(1);
            }
            if (sub->armed.load()) {
                if (sub->calls.fetch_add(1) >= 2 && !sub->claimed.exchange(true)) {
                    // Wait until the other emitting thread is inside this
                    // callback too: reset() must wait for that call but not
                    // for this one.
                    spin_until([sub] { return sub->running.load() >= 2; });
                    sub->handle.reset();
                    sub->reset_returned.store(true);
                } else if (sub->claimed.load()) {
                    // The other thread: hold this call open until the reset
                    // has unsubscribed the listener and is waiting for us.
                    spin_until([&emitter] { return emitter.listener_count() == 0; });
                }
            }
            sub->running.fetch_sub(1);
        });
        sub->armed.store(true);
        spin_until([&] { return sub->reset_returned.load(); });
    }
    stop.store(true);
    for (auto& t : emitting) {
        t.join();
    }
    int late = 0;
    for (const auto& sub : subs) {
        late += sub->late_calls.load();
        REQUIRE_FALSE(sub->handle.connected());
    }
    REQUIRE(late == 0);
    REQUIRE(emitter.listener_count() == 0);
    REQUIRE(emitter.stats().unsubscribed == static_cast<std::uint64_t>(iterations));
}

TEST_CASE("SyncEmitter: threads clearing from inside the same callback do not deadlock",
          "[scoped_listener][threaded]") {
    // Each thread's clear() would wait for the other's running call, which
    // is itself waiting in clear(): reset/clear do not wait for a waiter.
    const Watchdog watchdog("clear from two callbacks");
    const int iterations = 200;
    for (int i = 0; i < iterations; ++i) {
        SyncEmitter<int> emitter;
        std::atomic<int> inside{0};
        std::atomic<int> calls{0};
        ScopedListener h = emitter.subscribe([&](int) {
            calls.fetch_add(1);
            inside.fetch_add(1);
            spin_until([&] { return inside.load() >= 2; });
            emitter.clear();
        });
        std::thread a([&] { emitter.emit(1); });
        std::thread b([&] { emitter.emit(2); });
        a.join();
        b.join();
        REQUIRE(calls.load() == 2);
        REQUIRE_FALSE(h.connected());
        REQUIRE(emitter.listener_count() == 0);
        emitter.emit(3);
        REQUIRE(calls.load() == 2);
    }
}

TEST_CASE("SyncEmitter: a tracked owner destroyed on another thread is never used after free",
          "[scoped_listener][threaded]") {
    struct Owner {
        std::atomic<int> data[16] = {};
    };
    const Watchdog watchdog("owner expiry vs emit");
    SyncEmitter<int> emitter;
    std::atomic<bool> stop{false};
    std::vector<std::thread> emitting;
    for (int t = 0; t < 2; ++t) {
        emitting.emplace_back([&] {
            int i = 0;
            while (!stop.load(std::memory_order_relaxed)) {
                emitter.emit(i++);
                std::this_thread::yield();
            }
        });
    }
    const std::uint64_t iterations = 400;
    for (std::uint64_t i = 1; i <= iterations; ++i) {
        auto owner = std::make_shared<Owner>();
        Owner* raw = owner.get();
        std::atomic<bool> claimed{false};
        std::atomic<bool> released{false};
        std::promise<void> inside;
        std::future<void> inside_future = inside.get_future();
        ScopedListener h = emitter.subscribe(std::weak_ptr<Owner>(owner), [&, raw](int x) {
            if (!claimed.exchange(true)) {
                inside.set_value();
                // The main thread drops the only other reference meanwhile.
                spin_until([&] { return released.load(); });
            }
            // Safe only because emit keeps the owner alive during the call
            // and never calls once it has expired.
            for (auto& d : raw->data) {
                d.store(x, std::memory_order_relaxed);
            }
        });
        inside_future.wait();
        owner.reset();
        released.store(true);
        // The emitting threads drop the listener on their next emit.
        spin_until([&] { return emitter.stats().owner_expired == i; });
        REQUIRE_FALSE(h.connected());
    }
    stop.store(true);
    for (auto& t : emitting) {
        t.join();
    }
    const wsguard::EmitterStats s = emitter.stats();
    REQUIRE(s.owner_expired == iterations);
    REQUIRE(s.unsubscribed == 0);
    REQUIRE(s.listeners == 0);
}

TEST_CASE("SyncEmitter: concurrent subscribe, emit and reset are race-free",
          "[scoped_listener][threaded]") {
    const Watchdog watchdog("concurrent churn");
    SyncEmitter<int> emitter;
    constexpr int kThreads = 4;
    const int steps = 10000;
    std::atomic<int> missed_calls{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            std::mt19937 rng(static_cast<unsigned>(t) + 1U);
            auto pick = [&rng](int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng); };
            // Declared first: the listeners in `mine` refer to it until cleared.
            std::atomic<int> own_calls{0};
            std::vector<ScopedListener> mine;
            std::vector<std::shared_ptr<int>> owners;
            for (int step = 0; step < steps; ++step) {
                switch (pick(8)) {
                    case 0:
                        mine.push_back(
                            emitter.subscribe([&own_calls](int) { own_calls.fetch_add(1); }));
                        break;
                    case 1: {
                        owners.push_back(std::make_shared<int>(step));
                        mine.push_back(
                            emitter.subscribe(std::weak_ptr<int>(owners.back()),
                                              [&own_calls](int) { own_calls.fetch_add(1); }));
                        break;
                    }
                    case 2:
                        if (!owners.empty()) {
                            owners.erase(owners.begin() + pick(static_cast<int>(owners.size())));
                        }
                        break;
                    case 3:
                        if (!mine.empty()) {
                            mine.erase(mine.begin() + pick(static_cast<int>(mine.size())));
                        }
                        break;
                    case 4:
                        (void)emitter.listener_count();
                        (void)emitter.stats();
                        break;
                    case 5: {
                        // A listener subscribed before an emit starts is called by
                        // it (and maybe by other threads' emits too).
                        std::atomic<int> probe{0};
                        ScopedListener h = emitter.subscribe([&probe](int) { probe.fetch_add(1); });
                        emitter.emit(step);
                        if (probe.load() < 1) {
                            missed_calls.fetch_add(1);
                        }
                        break;
                    }
                    default:
                        emitter.emit(step);
                        break;
                }
                if (mine.size() > 16) {
                    mine.erase(mine.begin());
                }
            }
            mine.clear();
        });
    }
    for (auto& t : threads) {
        t.join();
    }
    REQUIRE(missed_calls.load() == 0);
    const wsguard::EmitterStats s = emitter.stats();
    REQUIRE(s.listeners == 0);
    REQUIRE(emitter.listener_count() == 0);
    REQUIRE(s.subscribed == s.unsubscribed + s.owner_expired);
    REQUIRE(s.subscribed > 0);
}
