// Tests for wsguard::BoundedMessageQueue: both bounds, both overflow policies, expiry
// on a ManualClock, every counter against its definition, ownership of the items
// (a construction/destruction-counting element), move-only items, a random-operation
// comparison with a std::deque model, and zero allocations in steady state (a
// counting replacement of the global operator new, below).
#include <wsguard/bounded_message_queue.hpp>

#include <catch2/catch.hpp>
#include <support/manual_clock.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <memory>
#include <new>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

// Counting global allocation functions: a test can prove that a stretch of code
// allocated nothing.
#include <support/counting_new.hpp>

using wsguard::test::allocations;

namespace {

using namespace std::chrono_literals;
using wsguard::BoundedMessageQueue;
using wsguard::OverflowPolicy;
using wsguard::PushResult;
using wsguard::QueueOptions;
using wsguard::QueueStats;
using wsguard::test::ManualClock;

QueueOptions make_options(std::size_t max_count, std::size_t max_bytes,
                          OverflowPolicy policy = OverflowPolicy::drop_oldest,
                          std::chrono::steady_clock::duration max_age = {}) {
    QueueOptions o;
    o.max_count = max_count;
    o.max_bytes = max_bytes;
    o.policy = policy;
    o.max_age = max_age;
    return o;
}

// The definition of the counters: every stored item ends in exactly one place.
bool balanced(const QueueStats& s) {
    return s.pushed == s.popped + s.dropped_oldest + s.dropped_expired + s.cleared + s.size;
}

// Pops everything, checking that stats() described exactly what came out.
template <class Queue>
std::vector<typename Queue::value_type> drain(Queue& q) {
    std::vector<typename Queue::value_type> out;
    while (auto v = q.try_pop()) {
        out.push_back(std::move(*v));
    }
    return out;
}

// A message whose weight against max_bytes is chosen by the test.
struct Weighted {
    int id;
    std::size_t weight;
    std::size_t size() const noexcept { return weight; }
};

std::vector<int> ids(const std::vector<Weighted>& items) {
    std::vector<int> out;
    for (const auto& w : items) {
        out.push_back(w.id);
    }
    return out;
}

// Counts every construction (including copies and moves) and every destruction, so a
// test can check that the queue destroys exactly what it constructed.
struct Tracked {
    static inline std::int64_t constructed = 0;
    static inline std::int64_t destroyed = 0;
    static std::int64_t live() { return constructed - destroyed; }
    static void reset() { constructed = destroyed = 0; }

    explicit Tracked(int v, std::size_t w = 1) noexcept : id(v), weight(w) { ++constructed; }
    Tracked(const Tracked& o) noexcept : id(o.id), weight(o.weight) { ++constructed; }
    Tracked(Tracked&& o) noexcept : id(o.id), weight(o.weight) { ++constructed; }
    Tracked& operator=(const Tracked&) = default;
    Tracked& operator=(Tracked&&) = default;
    ~Tracked() { ++destroyed; }
    std::size_t size() const noexcept { return weight; }

    int id;
    std::size_t weight;
};

// Nothrow to move-construct (so it may be queued) but throwing to move-assign.
struct ThrowingAssign {
    int id = 0;
    ThrowingAssign() = default;
    explicit ThrowingAssign(int v) noexcept : id(v) {}
    ThrowingAssign(ThrowingAssign&&) noexcept = default;
    ThrowingAssign& operator=(ThrowingAssign&&) { throw std::runtime_error("assign"); }
    std::size_t size() const noexcept { return 8; }  // weighed again at pop
};

struct ThrowingSizeOf {
    std::size_t operator()(const std::string& s) const {
        if (s == "boom") {
            throw std::runtime_error("size_of");
        }
        return s.size();
    }
};

struct Trivial {
    std::uint32_t seq;
    char payload[28];
};
static_assert(std::is_trivially_copyable_v<Trivial>);

}  // namespace

TEST_CASE("constructor validates its options and keeps them", "[bounded_message_queue]") {
    CHECK_THROWS_AS(BoundedMessageQueue<int>(make_options(0, 100)), std::invalid_argument);
    CHECK_THROWS_AS(BoundedMessageQueue<int>(make_options(10, 0)), std::invalid_argument);
    CHECK_THROWS_AS(
        BoundedMessageQueue<int>(make_options(10, 100, OverflowPolicy::drop_oldest, -1ms)),
        std::invalid_argument);

    const QueueOptions defaults;
    CHECK(defaults.max_count == 1024);
    CHECK(defaults.max_bytes == (1u << 20));
    CHECK(defaults.policy == OverflowPolicy::drop_oldest);
    CHECK(defaults.max_age == std::chrono::steady_clock::duration::zero());

    BoundedMessageQueue<int> q(make_options(7, 99, OverflowPolicy::reject_newest, 5s));
    CHECK(q.options().max_count == 7);
    CHECK(q.options().max_bytes == 99);
    CHECK(q.options().policy == OverflowPolicy::reject_newest);
    CHECK(q.options().max_age == 5s);
    const auto s = q.stats();
    CHECK(s.max_count == 7);
    CHECK(s.max_bytes == 99);
    CHECK(s.size == 0);
    CHECK(s.capacity == 0);  // nothing allocated before the first push
    CHECK(q.empty());
    CHECK(q.front() == nullptr);
}

TEST_CASE("to_string names every value", "[bounded_message_queue]") {
    CHECK(std::string(wsguard::to_string(PushResult::pushed)) == "pushed");
    CHECK(std::string(wsguard::to_string(PushResult::pushed_dropped_oldest)) ==
          "pushed_dropped_oldest");
    CHECK(std::string(wsguard::to_string(PushResult::rejected_full)) == "rejected_full");
    CHECK(std::string(wsguard::to_string(PushResult::rejected_too_large)) == "rejected_too_large");
    CHECK(std::string(wsguard::to_string(OverflowPolicy::drop_oldest)) == "drop_oldest");
    CHECK(std::string(wsguard::to_string(OverflowPolicy::reject_newest)) == "reject_newest");
    CHECK(std::string(wsguard::to_string(static_cast<PushResult>(99))) == "unknown");
}

TEST_CASE("FIFO order, front, both try_pop forms, empty pops", "[bounded_message_queue]") {
    BoundedMessageQueue<std::string> q(make_options(10, 1000));
    CHECK_FALSE(q.try_pop().has_value());
    std::string out = "untouched";
    CHECK_FALSE(q.try_pop(out));
    CHECK(out == "untouched");

    CHECK(q.try_push("a") == PushResult::pushed);
    CHECK(q.try_push("bb") == PushResult::pushed);
    CHECK(q.try_push("ccc") == PushResult::pushed);
    CHECK(q.size() == 3);
    CHECK(q.bytes() == 6);
    CHECK_FALSE(q.empty());
    REQUIRE(q.front() != nullptr);
    CHECK(*q.front() == "a");
    const auto& cq = q;
    REQUIRE(cq.front() != nullptr);
    CHECK(*cq.front() == "a");

    CHECK(q.try_pop() == std::optional<std::string>("a"));
    CHECK(q.try_pop(out));
    CHECK(out == "bb");
    CHECK(q.bytes() == 3);
    CHECK(q.try_pop() == std::optional<std::string>("ccc"));
    CHECK(q.empty());
    CHECK(q.bytes() == 0);
    CHECK(q.front() == nullptr);

    const auto s = q.stats();
    CHECK(s.pushed == 3);
    CHECK(s.popped == 3);  // failed pops are not counted
    CHECK(balanced(s));
}

TEST_CASE("count bound with drop_oldest keeps the newest items", "[bounded_message_queue]") {
    BoundedMessageQueue<int> q(make_options(3, 1000));
    CHECK(q.try_push(1) == PushResult::pushed);
    CHECK(q.try_push(2) == PushResult::pushed);
    CHECK(q.try_push(3) == PushResult::pushed);
    CHECK(q.try_push(4) == PushResult::pushed_dropped_oldest);
    CHECK(q.try_push(5) == PushResult::pushed_dropped_oldest);
    CHECK(q.size() == 3);
    const auto s = q.stats();
    CHECK(s.pushed == 5);
    CHECK(s.dropped_oldest == 2);
    CHECK(s.rejected_full == 0);
    CHECK(drain(q) == std::vector<int>{3, 4, 5});
    CHECK(balanced(q.stats()));
}

TEST_CASE("count bound with reject_newest keeps the queue unchanged", "[bounded_message_queue]") {
    BoundedMessageQueue<int> q(make_options(3, 1000, OverflowPolicy::reject_newest));
    for (int i = 1; i <= 3; ++i) {
        CHECK(q.try_push(i) == PushResult::pushed);
    }
    CHECK(q.try_push(4) == PushResult::rejected_full);
    CHECK(q.try_push(5) == PushResult::rejected_full);
    const auto s = q.stats();
    CHECK(s.size == 3);
    CHECK(s.pushed == 3);  // refusals are not pushes
    CHECK(s.rejected_full == 2);
    CHECK(s.dropped_oldest == 0);
    CHECK(drain(q) == std::vector<int>{1, 2, 3});
    // Room again after popping.
    CHECK(q.try_push(6) == PushResult::pushed);
    CHECK(balanced(q.stats()));
}

TEST_CASE("byte bound drops as many oldest items as one big item needs",
          "[bounded_message_queue]") {
    BoundedMessageQueue<Weighted> q(make_options(100, 100));
    CHECK(q.try_push({1, 30}) == PushResult::pushed);
    CHECK(q.try_push({2, 30}) == PushResult::pushed);
    CHECK(q.try_push({3, 30}) == PushResult::pushed);
    CHECK(q.try_push({4, 10}) == PushResult::pushed);  // exactly 100: fits
    CHECK(q.bytes() == 100);
    // 70 bytes must fit: 1, 2 and 3 go (100-30-30-30 = 10, 10 + 70 <= 100).
    CHECK(q.try_push({5, 70}) == PushResult::pushed_dropped_oldest);
    CHECK(q.bytes() == 80);
    CHECK(q.stats().dropped_oldest == 3);
    CHECK(ids(drain(q)) == std::vector<int>{4, 5});
    CHECK(balanced(q.stats()));
}

TEST_CASE("byte bound with reject_newest refuses what does not fit", "[bounded_message_queue]") {
    BoundedMessageQueue<Weighted> q(make_options(100, 100, OverflowPolicy::reject_newest));
    CHECK(q.try_push({1, 60}) == PushResult::pushed);
    CHECK(q.try_push({2, 41}) == PushResult::rejected_full);
    CHECK(q.try_push({3, 40}) == PushResult::pushed);  // smaller items still fit
    CHECK(q.try_push({4, 0}) == PushResult::pushed);   // zero-weight items cost only a slot
    const auto s = q.stats();
    CHECK(s.bytes == 100);
    CHECK(s.rejected_full == 1);
    CHECK(ids(drain(q)) == std::vector<int>{1, 3, 4});
}

TEST_CASE("both bounds apply at once", "[bounded_message_queue]") {
    BoundedMessageQueue<Weighted> q(make_options(3, 100));
    // Count is the binding bound here...
    q.try_push({1, 1});
    q.try_push({2, 1});
    q.try_push({3, 1});
    CHECK(q.try_push({4, 1}) == PushResult::pushed_dropped_oldest);
    CHECK(q.size() == 3);
    // ...and bytes here, with room left by count.
    q.try_pop();
    CHECK(q.size() == 2);
    CHECK(q.try_push({5, 99}) == PushResult::pushed_dropped_oldest);
    CHECK(q.size() == 2);
    CHECK(q.bytes() == 100);
    CHECK(ids(drain(q)) == std::vector<int>{4, 5});
}

TEST_CASE("an item larger than max_bytes is rejected under either policy",
          "[bounded_message_queue]") {
    for (auto policy : {OverflowPolicy::drop_oldest, OverflowPolicy::reject_newest}) {
        CAPTURE(wsguard::to_string(policy));
        BoundedMessageQueue<Weighted> q(make_options(10, 100, policy));
        q.try_push({1, 10});
        CHECK(q.try_push({2, 101}) == PushResult::rejected_too_large);
        const auto s = q.stats();
        CHECK(s.rejected_too_large == 1);
        CHECK(s.dropped_oldest == 0);  // nothing was sacrificed for an item that cannot fit
        CHECK(s.rejected_full == 0);
        CHECK(s.size == 1);
        // Exactly max_bytes is not too large: it fits alone.
        const auto r = q.try_push({3, 100});
        if (policy == OverflowPolicy::drop_oldest) {
            CHECK(r == PushResult::pushed_dropped_oldest);
            CHECK(ids(drain(q)) == std::vector<int>{3});
        } else {
            CHECK(r == PushResult::rejected_full);
            CHECK(ids(drain(q)) == std::vector<int>{1});
            CHECK(q.try_push({3, 100}) == PushResult::pushed);
        }
    }
}

TEST_CASE("expired items are skipped by try_pop and counted", "[bounded_message_queue]") {
    ManualClock clock;
    BoundedMessageQueue<int, wsguard::DefaultSizeOf, ManualClock> q(
        make_options(10, 1000, OverflowPolicy::drop_oldest, 100ms), {}, clock);
    q.try_push(1);  // t = 0
    clock.advance(40ms);
    q.try_push(2);  // t = 40
    clock.advance(40ms);
    q.try_push(3);        // t = 80
    clock.advance(30ms);  // t = 110: item 1 is 110ms old, 2 is 70ms, 3 is 30ms

    // front() does not look at the clock: it may show an expired item.
    REQUIRE(q.front() != nullptr);
    CHECK(*q.front() == 1);
    CHECK(q.try_pop() == std::optional<int>(2));
    auto s = q.stats();
    CHECK(s.dropped_expired == 1);
    CHECK(s.popped == 1);
    CHECK(s.size == 1);
    CHECK(balanced(s));

    // Age exactly max_age counts as expired.
    clock.advance(70ms);  // item 3 is now exactly 100ms old
    CHECK_FALSE(q.try_pop().has_value());
    s = q.stats();
    CHECK(s.dropped_expired == 2);
    CHECK(s.size == 0);
    CHECK(balanced(s));
}

TEST_CASE("expire() drops every expired item and only those", "[bounded_message_queue]") {
    ManualClock clock;
    BoundedMessageQueue<std::string, wsguard::DefaultSizeOf, ManualClock> q(
        make_options(10, 1000, OverflowPolicy::drop_oldest, 1s), {}, clock);
    CHECK(q.expire() == 0);  // empty
    q.try_push("aa");
    q.try_push("bb");
    clock.advance(500ms);
    q.try_push("cc");
    CHECK(q.expire() == 0);
    clock.advance(500ms);
    CHECK(q.expire() == 2);
    CHECK(q.size() == 1);
    CHECK(q.bytes() == 2);
    REQUIRE(q.front() != nullptr);
    CHECK(*q.front() == "cc");
    CHECK(q.stats().dropped_expired == 2);
    CHECK(q.expire() == 0);  // idempotent at the same instant
}

TEST_CASE("max_age zero: nothing ever expires", "[bounded_message_queue]") {
    ManualClock clock;
    BoundedMessageQueue<int, wsguard::DefaultSizeOf, ManualClock> q(make_options(10, 1000), {},
                                                                    clock);
    q.try_push(1);
    clock.advance(std::chrono::hours(24 * 365));
    CHECK(q.expire() == 0);
    CHECK(q.try_pop() == std::optional<int>(1));
    CHECK(q.stats().dropped_expired == 0);
}

TEST_CASE("try_push drops expired items before judging room", "[bounded_message_queue]") {
    ManualClock clock;
    BoundedMessageQueue<int, wsguard::DefaultSizeOf, ManualClock> q(
        make_options(2, 1000, OverflowPolicy::reject_newest, 1s), {}, clock);
    q.try_push(1);
    q.try_push(2);
    CHECK(q.try_push(3) == PushResult::rejected_full);
    clock.advance(1s);
    // Full of expired items is not full: they go (as expired, not as overflow).
    CHECK(q.try_push(4) == PushResult::pushed);
    const auto s = q.stats();
    CHECK(s.dropped_expired == 2);
    CHECK(s.dropped_oldest == 0);
    CHECK(s.rejected_full == 1);
    CHECK(drain(q) == std::vector<int>{4});
    CHECK(balanced(q.stats()));
}

TEST_CASE("high-water marks record the peaks of count and bytes separately",
          "[bounded_message_queue]") {
    BoundedMessageQueue<Weighted> q(make_options(10, 100));
    q.try_push({1, 10});
    q.try_push({2, 10});
    q.try_push({3, 10});
    q.try_pop();
    q.try_pop();
    q.try_pop();
    q.try_push({4, 80});  // bytes peak with a single item
    auto s = q.stats();
    CHECK(s.high_water_count == 3);
    CHECK(s.high_water_bytes == 80);
    CHECK(s.size == 1);
    q.clear();
    s = q.stats();
    CHECK(s.high_water_count == 3);  // peaks survive clear
    CHECK(s.high_water_bytes == 80);
    // Definition: the maximum of size()/bytes() observed after every operation.
    std::size_t max_size = 0;
    std::size_t max_bytes = 0;
    BoundedMessageQueue<Weighted> r(make_options(5, 50));
    std::mt19937 rng(7);
    for (int i = 0; i < 2000; ++i) {
        if (rng() % 3 != 0) {
            r.try_push({i, rng() % 30});
        } else {
            r.try_pop();
        }
        max_size = std::max(max_size, r.size());
        max_bytes = std::max(max_bytes, r.bytes());
        REQUIRE(r.stats().high_water_count == max_size);
        REQUIRE(r.stats().high_water_bytes == max_bytes);
    }
}

TEST_CASE("clear() destroys the items, counts them as cleared, keeps the ring",
          "[bounded_message_queue]") {
    BoundedMessageQueue<std::string> q(make_options(10, 1000));
    q.try_push("x");
    q.try_push("y");
    q.try_pop();
    q.try_push("z");
    const std::size_t cap = q.capacity();
    q.clear();
    auto s = q.stats();
    CHECK(s.size == 0);
    CHECK(s.bytes == 0);
    CHECK(s.cleared == 2);
    CHECK(s.dropped_oldest == 0);
    CHECK(s.dropped_expired == 0);
    CHECK(s.capacity == cap);
    CHECK(balanced(s));
    q.clear();  // clearing an empty queue counts nothing
    CHECK(q.stats().cleared == 2);
    CHECK(q.try_push("after") == PushResult::pushed);
    CHECK(q.try_pop() == std::optional<std::string>("after"));
}

TEST_CASE("counters balance: pushed == popped + dropped_oldest + dropped_expired + size",
          "[bounded_message_queue]") {
    ManualClock clock;
    for (auto policy : {OverflowPolicy::drop_oldest, OverflowPolicy::reject_newest}) {
        CAPTURE(wsguard::to_string(policy));
        BoundedMessageQueue<Weighted, wsguard::DefaultSizeOf, ManualClock> q(
            make_options(8, 64, policy, 50ms), {}, clock);
        std::mt19937 rng(42);
        std::uint64_t pushes_seen = 0;
        std::uint64_t pops_seen = 0;
        std::uint64_t rejected_seen = 0;
        std::uint64_t too_large_seen = 0;
        for (int i = 0; i < 5000; ++i) {
            switch (rng() % 4) {
                case 0:
                case 1: {
                    const auto r = q.try_push({i, rng() % 70});
                    if (r == PushResult::pushed || r == PushResult::pushed_dropped_oldest) {
                        ++pushes_seen;
                    } else if (r == PushResult::rejected_full) {
                        ++rejected_seen;
                    } else {
                        ++too_large_seen;
                    }
                    break;
                }
                case 2:
                    pops_seen += q.try_pop().has_value() ? 1 : 0;
                    break;
                default:
                    clock.advance(std::chrono::milliseconds(rng() % 20));
                    break;
            }
            const auto s = q.stats();
            // The exact identity of the brief (no clear() in this run)...
            REQUIRE(s.cleared == 0);
            REQUIRE(s.pushed == s.popped + s.dropped_oldest + s.dropped_expired + s.size);
            // ...and each counter against what the calls returned.
            REQUIRE(s.pushed == pushes_seen);
            REQUIRE(s.popped == pops_seen);
            REQUIRE(s.rejected_full == rejected_seen);
            REQUIRE(s.rejected_too_large == too_large_seen);
            REQUIRE(s.size == q.size());
            REQUIRE(s.bytes == q.bytes());
            REQUIRE(s.size <= s.max_count);
            REQUIRE(s.bytes <= s.max_bytes);
        }
        CHECK(rejected_seen + q.stats().dropped_oldest > 0);  // the bounds were exercised
        CHECK(q.stats().dropped_expired > 0);
        CHECK(too_large_seen > 0);
        // stats().size and bytes are exactly what can still be popped (nothing expires
        // while draining: the clock stands still).
        const auto before = q.stats();
        std::size_t n = 0;
        std::size_t bytes = 0;
        q.expire();
        const auto live = q.stats();
        while (auto v = q.try_pop()) {
            ++n;
            bytes += v->weight;
        }
        CHECK(n == live.size);
        CHECK(bytes == live.bytes);
        CHECK(live.dropped_expired - before.dropped_expired == before.size - live.size);
    }
}

TEST_CASE("items are destroyed exactly once: overflow, expiry, pop, clear, queue destruction",
          "[bounded_message_queue]") {
    Tracked::reset();
    {
        ManualClock clock;
        BoundedMessageQueue<Tracked, wsguard::DefaultSizeOf, ManualClock> q(
            make_options(4, 100, OverflowPolicy::drop_oldest, 1s), {}, clock);
        for (int i = 0; i < 10; ++i) {
            q.try_push(Tracked(i));  // grows 4 (relocation moves included in the counts)
        }
        CHECK(q.stats().dropped_oldest == 6);
        CHECK(Tracked::live() == 4);  // the six dropped ones are gone, not leaked

        CHECK(q.try_push(Tracked(99, 500)) == PushResult::rejected_too_large);
        CHECK(Tracked::live() == 4);  // the refused argument was destroyed

        clock.advance(1s);
        CHECK(q.expire() == 4);
        CHECK(Tracked::live() == 0);

        q.try_push(Tracked(20));
        q.try_push(Tracked(21));
        q.try_push(Tracked(22));
        {
            auto popped = q.try_pop();
            REQUIRE(popped.has_value());
            CHECK(popped->id == 20);
            CHECK(Tracked::live() == 3);  // two queued + the one handed out
        }
        CHECK(Tracked::live() == 2);
        q.clear();
        CHECK(Tracked::live() == 0);

        for (int i = 0; i < 3; ++i) {
            q.try_push(Tracked(30 + i));
        }
        CHECK(Tracked::live() == 3);
    }  // the queue's destructor owns the last three
    CHECK(Tracked::live() == 0);
    CHECK(Tracked::constructed == Tracked::destroyed);
    CHECK(Tracked::constructed > 0);
}

TEST_CASE("move-only items (std::unique_ptr)", "[bounded_message_queue]") {
    BoundedMessageQueue<std::unique_ptr<int>> q(make_options(2, 1000));
    // sizeof the pointer: unique_ptr<int> has neither size() nor ->size().
    CHECK(q.try_push(std::make_unique<int>(1)) == PushResult::pushed);
    CHECK(q.bytes() == sizeof(std::unique_ptr<int>));
    CHECK(q.try_push(std::make_unique<int>(2)) == PushResult::pushed);
    CHECK(q.try_push(std::make_unique<int>(3)) == PushResult::pushed_dropped_oldest);
    REQUIRE(q.front() != nullptr);
    CHECK(**q.front() == 2);
    auto a = q.try_pop();
    REQUIRE(a.has_value());
    CHECK(**a == 2);
    std::unique_ptr<int> b;
    CHECK(q.try_pop(b));
    CHECK(*b == 3);
    CHECK(q.empty());
}

TEST_CASE("DefaultSizeOf measures size(), ->size(), else sizeof", "[bounded_message_queue]") {
    const wsguard::DefaultSizeOf size_of;
    CHECK(size_of(std::string(37, 'x')) == 37);
    CHECK(size_of(std::vector<char>(12)) == 12);
    CHECK(size_of(std::make_shared<const std::string>(5, 'y')) == 5);
    CHECK(size_of(std::shared_ptr<const std::string>()) == 0);
    CHECK(size_of(std::optional<std::string>("abc")) == 3);
    CHECK(size_of(Trivial{}) == sizeof(Trivial));
    CHECK(size_of(42) == sizeof(int));

    // The shared payload of a broadcast is weighed by its content.
    BoundedMessageQueue<std::shared_ptr<const std::string>> q(make_options(10, 10));
    auto payload = std::make_shared<const std::string>(6, 'p');
    CHECK(q.try_push(payload) == PushResult::pushed);
    CHECK(q.try_push(payload) == PushResult::pushed_dropped_oldest);  // 12 > 10
    CHECK(q.bytes() == 6);
}

TEST_CASE("a custom SizeOf is used, once per push", "[bounded_message_queue]") {
    struct CountingSizeOf {
        int* calls;
        std::size_t operator()(const int& v) const {
            ++*calls;
            return static_cast<std::size_t>(v);
        }
    };
    int calls = 0;
    BoundedMessageQueue<int, CountingSizeOf> q(make_options(10, 10), CountingSizeOf{&calls});
    q.try_push(4);
    q.try_push(6);
    CHECK(q.bytes() == 10);
    CHECK(q.try_push(11) == PushResult::rejected_too_large);
    CHECK(calls == 3);
    q.try_pop();
    CHECK(q.bytes() == 6);
    CHECK(calls == 3);  // the weight recorded at push is reused at pop
}

TEST_CASE("front() is read-only and a pointee edited behind the queue keeps its pushed weight",
          "[bounded_message_queue]") {
    BoundedMessageQueue<std::string> values(make_options(10, 100));
    static_assert(std::is_same_v<decltype(values.front()), const std::string*>,
                  "a value's weight is measured again at pop, so it must not be editable");
    values.try_push("abc");
    values.try_push(std::string(40, 'x'));
    CHECK(values.bytes() == 43);
    CHECK(values.try_pop() == std::optional<std::string>("abc"));
    CHECK(values.bytes() == 40);
    std::string out;
    CHECK(values.try_pop(out));
    CHECK(values.bytes() == 0);

    BoundedMessageQueue<std::shared_ptr<std::string>> pointers(make_options(10, 100));
    auto shared = std::make_shared<std::string>("abc");
    pointers.try_push(shared);
    *shared += std::string(50, 'z');  // another owner edits the pointee
    CHECK(pointers.bytes() == 3);     // as measured at push
    CHECK(pointers.try_pop() != nullptr);
    CHECK(pointers.bytes() == 0);
    CHECK(pointers.stats().high_water_bytes == 3);
}

TEST_CASE("a throwing SizeOf leaves the queue unchanged", "[bounded_message_queue]") {
    BoundedMessageQueue<std::string, ThrowingSizeOf> q(make_options(1, 100));
    q.try_push("keep");
    const auto before = q.stats();
    CHECK_THROWS_AS(q.try_push("boom"), std::runtime_error);
    const auto after = q.stats();
    CHECK(after.size == before.size);
    CHECK(after.pushed == before.pushed);
    CHECK(after.dropped_oldest == 0);
    CHECK(q.try_pop() == std::optional<std::string>("keep"));
}

TEST_CASE("try_pop(T&) keeps the item when the assignment throws", "[bounded_message_queue]") {
    BoundedMessageQueue<ThrowingAssign> q(make_options(4, 1000));
    q.try_push(ThrowingAssign(7));
    ThrowingAssign out;
    CHECK_THROWS_AS(q.try_pop(out), std::runtime_error);
    CHECK(q.size() == 1);
    CHECK(q.bytes() == 8);
    CHECK(q.stats().popped == 0);
    auto v = q.try_pop();  // the optional form needs only the (nothrow) move constructor
    REQUIRE(v.has_value());
    CHECK(v->id == 7);
    CHECK(q.bytes() == 0);
}

TEST_CASE("the ring grows by doubling up to max_count and shrinks only on request",
          "[bounded_message_queue]") {
    BoundedMessageQueue<int> q(make_options(10, 1000));
    std::vector<std::size_t> seen{q.capacity()};
    for (int i = 0; i < 25; ++i) {
        q.try_push(i);
        if (q.capacity() != seen.back()) {
            seen.push_back(q.capacity());
        }
    }
    CHECK(seen == std::vector<std::size_t>{0, 4, 8, 10});
    CHECK(drain(q) == std::vector<int>{15, 16, 17, 18, 19, 20, 21, 22, 23, 24});
    CHECK(q.capacity() == 10);  // popping never shrinks
    q.try_push(1);
    q.try_push(2);
    q.shrink_to_fit();
    CHECK(q.capacity() == 2);
    CHECK(drain(q) == std::vector<int>{1, 2});
    q.shrink_to_fit();
    CHECK(q.capacity() == 0);
    CHECK(q.try_push(3) == PushResult::pushed);
    CHECK(q.capacity() == 4);

    // A huge max_count costs nothing until used.
    BoundedMessageQueue<int> big(make_options(std::size_t(1) << 40, std::size_t(1) << 40));
    big.try_push(1);
    CHECK(big.capacity() == 4);
}

TEST_CASE("moving a queue moves its items and counters", "[bounded_message_queue]") {
    BoundedMessageQueue<std::string> a(make_options(3, 100, OverflowPolicy::reject_newest));
    a.try_push("1");
    a.try_push("2");
    a.try_pop();
    BoundedMessageQueue<std::string> b(std::move(a));
    CHECK(b.size() == 1);
    CHECK(b.stats().pushed == 2);
    CHECK(b.stats().popped == 1);
    CHECK(b.options().policy == OverflowPolicy::reject_newest);
    // The moved-from queue is empty, usable, with its options.
    CHECK(a.size() == 0);          // NOLINT(bugprone-use-after-move)
    CHECK(a.stats().pushed == 0);  // NOLINT(bugprone-use-after-move)
    CHECK(a.capacity() == 0);      // NOLINT(bugprone-use-after-move)
    CHECK(a.options().max_count == 3);
    CHECK(a.try_push("3") == PushResult::pushed);

    BoundedMessageQueue<std::string> c(make_options(50, 500));
    c.try_push("old");
    c = std::move(b);
    CHECK(c.options().max_count == 3);
    CHECK(drain(c) == std::vector<std::string>{"2"});
    CHECK(b.empty());  // NOLINT(bugprone-use-after-move)
}

// ----------------------------------------------------------------------------------
// Model test: thousands of random operations against a std::deque that implements
// the documented rules in the most direct way.
namespace {

struct ModelQueue {
    struct Item {
        int id;
        std::size_t weight;
        ManualClock::time_point at;
    };
    QueueOptions o;
    std::deque<Item> items;
    std::size_t bytes = 0;
    QueueStats s{};

    void expire(ManualClock::time_point now) {
        if (o.max_age == o.max_age.zero()) {
            return;
        }
        while (!items.empty() && now - items.front().at >= o.max_age) {
            bytes -= items.front().weight;
            items.pop_front();
            ++s.dropped_expired;
        }
    }
    PushResult push(int id, std::size_t w, ManualClock::time_point now) {
        if (w > o.max_bytes) {
            ++s.rejected_too_large;
            return PushResult::rejected_too_large;
        }
        expire(now);
        const auto fits = [&] { return items.size() < o.max_count && bytes + w <= o.max_bytes; };
        bool dropped = false;
        if (!fits() && o.policy == OverflowPolicy::reject_newest) {
            ++s.rejected_full;
            return PushResult::rejected_full;
        }
        while (!fits()) {
            bytes -= items.front().weight;
            items.pop_front();
            ++s.dropped_oldest;
            dropped = true;
        }
        items.push_back({id, w, now});
        bytes += w;
        ++s.pushed;
        s.high_water_count = std::max(s.high_water_count, items.size());
        s.high_water_bytes = std::max(s.high_water_bytes, bytes);
        return dropped ? PushResult::pushed_dropped_oldest : PushResult::pushed;
    }
    std::optional<int> pop(ManualClock::time_point now) {
        expire(now);
        if (items.empty()) {
            return std::nullopt;
        }
        const int id = items.front().id;
        bytes -= items.front().weight;
        items.pop_front();
        ++s.popped;
        return id;
    }
    void clear() {
        s.cleared += items.size();
        items.clear();
        bytes = 0;
    }
};

}  // namespace

TEST_CASE("random operations match a std::deque model (wrap-around, both policies, expiry)",
          "[bounded_message_queue]") {
    std::mt19937 rng(20240601);
    int configs = 0;
    for (auto policy : {OverflowPolicy::drop_oldest, OverflowPolicy::reject_newest}) {
        for (auto max_age : {std::chrono::steady_clock::duration::zero(),
                             std::chrono::steady_clock::duration(30ms)}) {
            for (std::size_t max_count : {1u, 2u, 3u, 5u, 8u, 13u, 64u}) {
                ++configs;
                const std::size_t max_bytes = 1 + rng() % 200;
                CAPTURE(wsguard::to_string(policy), max_age.count(), max_count, max_bytes);
                ManualClock clock;
                const auto o = make_options(max_count, max_bytes, policy, max_age);
                BoundedMessageQueue<Weighted, wsguard::DefaultSizeOf, ManualClock> q(o, {}, clock);
                ModelQueue m{o, {}, 0, {}};
                for (int op = 0; op < 4000; ++op) {
                    const unsigned pick = rng() % 100;
                    if (pick < 50) {
                        const std::size_t w = rng() % (max_bytes / 2 + 2);
                        REQUIRE(q.try_push({op, w}) == m.push(op, w, clock.now()));
                    } else if (pick < 85) {
                        const auto got = q.try_pop();
                        const auto want = m.pop(clock.now());
                        REQUIRE(got.has_value() == want.has_value());
                        if (got) {
                            REQUIRE(got->id == *want);
                        }
                    } else if (pick < 95) {
                        clock.advance(std::chrono::milliseconds(rng() % 12));
                    } else if (pick < 99) {
                        const auto before = m.s.dropped_expired;
                        m.expire(clock.now());
                        REQUIRE(q.expire() == m.s.dropped_expired - before);
                    } else {
                        q.clear();
                        m.clear();
                    }
                    REQUIRE(q.size() == m.items.size());
                    REQUIRE(q.bytes() == m.bytes);
                    REQUIRE((q.front() == nullptr) == m.items.empty());
                    if (!m.items.empty()) {
                        REQUIRE(q.front()->id == m.items.front().id);
                    }
                    const auto s = q.stats();
                    REQUIRE(s.pushed == m.s.pushed);
                    REQUIRE(s.popped == m.s.popped);
                    REQUIRE(s.dropped_oldest == m.s.dropped_oldest);
                    REQUIRE(s.rejected_full == m.s.rejected_full);
                    REQUIRE(s.rejected_too_large == m.s.rejected_too_large);
                    REQUIRE(s.dropped_expired == m.s.dropped_expired);
                    REQUIRE(s.cleared == m.s.cleared);
                    REQUIRE(s.high_water_count == m.s.high_water_count);
                    REQUIRE(s.high_water_bytes == m.s.high_water_bytes);
                    REQUIRE(s.capacity <= max_count);
                    REQUIRE(balanced(s));
                }
                // Full content check: the whole sequence, not just the front.
                std::vector<int> want;
                for (const auto& it : m.items) {
                    want.push_back(it.id);
                }
                std::vector<int> got;
                while (q.size() != 0) {
                    got.push_back(q.front()->id);
                    q.try_pop();  // the clock stands still: nothing expires while draining
                }
                CHECK(got == want);
            }
        }
    }
    CHECK(configs == 28);
}

// Fixed-size items (the default SizeOf on a type without size()): the queue keeps no
// byte count per item, so bytes, the byte bound and its high water follow from the
// count. The same model checks it, every item weighing sizeof(T).
TEST_CASE("fixed-size items: bytes and the byte bound follow the count (model)",
          "[bounded_message_queue]") {
    struct Fixed {
        int id;
        std::uint32_t pad;
    };
    static_assert(sizeof(Fixed) == 8);
    std::mt19937 rng(99);
    for (auto policy : {OverflowPolicy::drop_oldest, OverflowPolicy::reject_newest}) {
        for (auto max_age : {std::chrono::steady_clock::duration::zero(),
                             std::chrono::steady_clock::duration(20ms)}) {
            // The byte bound binds below, at, and above max_count (and 4: no room at all).
            for (std::size_t max_bytes : {4u, 8u, 24u, 40u, 64u, 800u}) {
                const std::size_t max_count = 6;
                CAPTURE(wsguard::to_string(policy), max_age.count(), max_bytes);
                ManualClock clock;
                const auto o = make_options(max_count, max_bytes, policy, max_age);
                BoundedMessageQueue<Fixed, wsguard::DefaultSizeOf, ManualClock> q(o, {}, clock);
                ModelQueue m{o, {}, 0, {}};
                for (int op = 0; op < 3000; ++op) {
                    const unsigned pick = rng() % 100;
                    if (pick < 55) {
                        const Fixed item{op, 0};
                        const PushResult got =
                            op % 2 == 0 ? q.try_push(item) : q.try_push(Fixed{op, 0});
                        REQUIRE(got == m.push(op, sizeof(Fixed), clock.now()));
                    } else if (pick < 90) {
                        Fixed out{-1, 0};
                        const auto want = m.pop(clock.now());
                        REQUIRE(q.try_pop(out) == want.has_value());
                        REQUIRE(out.id == (want ? *want : -1));
                    } else if (pick < 98) {
                        clock.advance(std::chrono::milliseconds(rng() % 8));
                    } else {
                        q.clear();
                        m.clear();
                    }
                    REQUIRE(q.size() == m.items.size());
                    REQUIRE(q.bytes() == m.bytes);
                    const auto s = q.stats();
                    REQUIRE(s.pushed == m.s.pushed);
                    REQUIRE(s.popped == m.s.popped);
                    REQUIRE(s.dropped_oldest == m.s.dropped_oldest);
                    REQUIRE(s.rejected_full == m.s.rejected_full);
                    REQUIRE(s.rejected_too_large == m.s.rejected_too_large);
                    REQUIRE(s.dropped_expired == m.s.dropped_expired);
                    REQUIRE(s.high_water_count == m.s.high_water_count);
                    REQUIRE(s.high_water_bytes == m.s.high_water_bytes);
                    // The ring never grows past what both bounds allow at once.
                    REQUIRE(s.capacity <= std::min(max_count, max_bytes / sizeof(Fixed)));
                    REQUIRE(balanced(s));
                }
            }
        }
    }
}

TEST_CASE("try_push(const T&) stores a copy; try_push(T&&) moves only what it stores",
          "[bounded_message_queue]") {
    BoundedMessageQueue<std::string> q(make_options(2, 100, OverflowPolicy::reject_newest));
    const std::string a(40, 'a');
    CHECK(q.try_push(a) == PushResult::pushed);
    CHECK(a == std::string(40, 'a'));  // the argument is untouched
    std::string b(40, 'b');
    CHECK(q.try_push(std::move(b)) == PushResult::pushed);
    // Refused (full, then too large): the caller keeps its value.
    std::string c(10, 'c');
    CHECK(q.try_push(std::move(c)) == PushResult::rejected_full);
    CHECK(c == std::string(10, 'c'));  // NOLINT(bugprone-use-after-move)
    q.try_pop();
    std::string big(200, 'x');
    CHECK(q.try_push(std::move(big)) == PushResult::rejected_too_large);
    CHECK(big.size() == 200);                      // NOLINT(bugprone-use-after-move)
    CHECK(q.try_push("d") == PushResult::pushed);  // converts, then moves
    CHECK(drain(q) == std::vector<std::string>{std::string(40, 'b'), "d"});
    CHECK(balanced(q.stats()));
}

namespace {
// Copying may throw (every third copy); moving never does.
struct ThrowingCopy {
    static inline int copies = 0;
    int id = 0;
    explicit ThrowingCopy(int v) noexcept : id(v) {}
    ThrowingCopy(const ThrowingCopy& o) : id(o.id) {
        if (++copies % 3 == 0) {
            throw std::runtime_error("copy");
        }
    }
    ThrowingCopy(ThrowingCopy&&) noexcept = default;
    ThrowingCopy& operator=(const ThrowingCopy&) = default;
    ThrowingCopy& operator=(ThrowingCopy&&) noexcept = default;
};
}  // namespace

TEST_CASE("a throwing copy in try_push(const T&) changes nothing, also at overflow",
          "[bounded_message_queue]") {
    for (auto policy : {OverflowPolicy::drop_oldest, OverflowPolicy::reject_newest}) {
        CAPTURE(wsguard::to_string(policy));
        BoundedMessageQueue<ThrowingCopy> q(make_options(3, 1 << 20, policy));
        ThrowingCopy::copies = 0;
        int thrown = 0;
        std::deque<int> want;
        for (int i = 0; i < 60; ++i) {
            const ThrowingCopy item(i);
            const auto before = q.stats();
            try {
                const PushResult r = q.try_push(item);
                if (r == PushResult::rejected_full) {
                    continue;
                }
                if (want.size() == 3) {
                    want.pop_front();
                }
                want.push_back(i);
            } catch (const std::runtime_error&) {
                ++thrown;
                const auto after = q.stats();
                REQUIRE(after.size == before.size);  // nothing dropped, nothing stored
                REQUIRE(after.pushed == before.pushed);
                REQUIRE(after.dropped_oldest == before.dropped_oldest);
            }
            REQUIRE(q.size() == want.size());
            REQUIRE(q.front()->id == want.front());
        }
        CHECK(thrown > 0);
        CHECK(balanced(q.stats()));
    }
}

// ----------------------------------------------------------------------------------
// Zero allocations in steady state.

TEST_CASE("the allocation counter sees the ring's growth (the instrument works)",
          "[bounded_message_queue]") {
    BoundedMessageQueue<Trivial> q(make_options(64, 1 << 20));
    const std::size_t before = allocations();
    for (std::uint32_t i = 0; i < 64; ++i) {
        q.try_push(Trivial{i, {}});
    }
    const std::size_t after = allocations();
    CHECK(after - before == 5);  // capacities 4, 8, 16, 32, 64
}

TEST_CASE("steady state allocates nothing: trivially copyable items", "[bounded_message_queue]") {
    for (auto policy : {OverflowPolicy::drop_oldest, OverflowPolicy::reject_newest}) {
        CAPTURE(wsguard::to_string(policy));
        ManualClock clock;
        BoundedMessageQueue<Trivial, wsguard::DefaultSizeOf, ManualClock> q(
            make_options(64, 1 << 20, policy, 10ms), {}, clock);
        for (std::uint32_t i = 0; i < 64; ++i) {  // warm up to the steady size
            q.try_push(Trivial{i, {}});
        }
        while (q.try_pop()) {
        }
        std::uint64_t popped = 0;
        const std::size_t before = allocations();
        for (std::uint32_t round = 0; round < 2000; ++round) {
            for (std::uint32_t i = 0; i < 100; ++i) {  // past max_count: overflow path
                q.try_push(Trivial{i, {}});
            }
            for (int i = 0; i < 30; ++i) {
                popped += q.try_pop().has_value() ? 1 : 0;
            }
            clock.advance(round % 7 == 0 ? 10ms : 1ms);  // sometimes everything expires
            q.expire();
        }
        const std::size_t after = allocations();
        CHECK(after == before);
        const auto s = q.stats();
        CHECK(popped > 0);
        CHECK(s.dropped_expired > 0);
        CHECK(s.dropped_oldest + s.rejected_full > 0);
        CHECK(s.capacity == 64);
    }
}

TEST_CASE("steady state allocates nothing: items whose moves do not allocate",
          "[bounded_message_queue]") {
    SECTION("std::string payloads beyond the small-string buffer, moved in and out") {
        BoundedMessageQueue<std::string> q(make_options(32, 1 << 20));
        std::vector<std::string> pool(32, std::string(200, 'm'));
        // Warm-up round reaches the steady ring size.
        for (auto& s : pool) {
            q.try_push(std::move(s));
        }
        for (auto& s : pool) {
            REQUIRE(q.try_pop(s));
        }
        const std::size_t before = allocations();
        bool all_ok = true;
        for (int round = 0; round < 2000; ++round) {
            for (auto& s : pool) {
                all_ok = all_ok && q.try_push(std::move(s)) == PushResult::pushed;
            }
            for (std::size_t i = 0; i < pool.size(); ++i) {
                if (i % 2 == 0) {
                    all_ok = all_ok && q.try_pop(pool[i]);
                } else {
                    auto v = q.try_pop();
                    all_ok = all_ok && v.has_value();
                    pool[i] = std::move(*v);
                }
            }
        }
        const std::size_t after = allocations();
        CHECK(all_ok);
        CHECK(after == before);
        for (const auto& s : pool) {
            CHECK(s.size() == 200);  // the payloads made the round trips intact
        }
    }
    SECTION("std::unique_ptr items cycled through the queue") {
        BoundedMessageQueue<std::unique_ptr<int>> q(make_options(16, 1 << 20));
        std::vector<std::unique_ptr<int>> pool;
        for (int i = 0; i < 16; ++i) {
            pool.push_back(std::make_unique<int>(i));
        }
        for (auto& p : pool) {
            q.try_push(std::move(p));
        }
        for (auto& p : pool) {
            REQUIRE(q.try_pop(p));
        }
        const std::size_t before = allocations();
        long sum = 0;
        for (int round = 0; round < 2000; ++round) {
            for (auto& p : pool) {
                q.try_push(std::move(p));
            }
            for (auto& p : pool) {
                q.try_pop(p);
                sum += *p;
            }
        }
        const std::size_t after = allocations();
        CHECK(after == before);
        CHECK(sum == 2000L * (15 * 16 / 2));
    }
}
