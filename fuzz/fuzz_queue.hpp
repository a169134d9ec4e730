// wsguard fuzzing — BoundedMessageQueue against a naive model.
// SPDX-License-Identifier: MIT
//
// The input picks the options (count bound, byte bound, policy, max_age), then a
// sequence of operations: push (of an item whose weight the input picks, from 0 to
// beyond max_bytes), both try_pop forms, expire, clear, shrink_to_fit, moves (move
// construction, move assignment over a queue holding items, self-move), and advancing
// a fake clock. The model is a std::deque that applies the contract comments of
// bounded_message_queue.hpp literally; after every operation the queue and the model
// must agree on every result, every stats() field and the front item, and the items
// the queue holds must be exactly the live ones (no leak, no double destruction).
#pragma once

#include <wsguard/bounded_message_queue.hpp>

#include <support/manual_clock.hpp>

#include "fuzz_support.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <limits>
#include <optional>
#include <utility>

namespace wsguard::fuzz {

namespace queue_detail {

using Clock = wsguard::test::ManualClock;
using TimePoint = Clock::time_point;
// Byte sums in the model cannot overflow, whatever the weights: the queue's
// overflow-safe arithmetic is checked against plain addition.
__extension__ typedef unsigned __int128 Wide;

/// A queued item: a tracked sequence number and the weight the input chose for it.
struct Item {
    Tracked seq;
    std::size_t weight;
};

struct ItemWeight {
    std::size_t operator()(const Item& item) const noexcept { return item.weight; }
};

using Queue = BoundedMessageQueue<Item, ItemWeight, Clock>;

/// The contract of BoundedMessageQueue, written as plainly as possible.
class QueueModel {
public:
    struct Entry {
        std::uint64_t seq;
        std::size_t weight;
        TimePoint pushed_at;
    };

    explicit QueueModel(const QueueOptions& options) : options_(options) {}

    // try_push: first the expired items go, then an item larger than max_bytes is
    // refused, then the bounds are judged.
    PushResult push(std::uint64_t seq, std::size_t weight, TimePoint now) {
        expire(now);
        if (weight > options_.max_bytes) {
            ++stats_.rejected_too_large;
            return PushResult::rejected_too_large;
        }
        bool dropped = false;
        while (items_.size() + 1 > options_.max_count ||
               bytes_ + weight > static_cast<Wide>(options_.max_bytes)) {
            if (options_.policy == OverflowPolicy::reject_newest) {
                ++stats_.rejected_full;
                return PushResult::rejected_full;
            }
            drop_front();
            ++stats_.dropped_oldest;
            dropped = true;
        }
        items_.push_back(Entry{seq, weight, now});
        bytes_ += weight;
        ++stats_.pushed;
        high_water_count_ = std::max(high_water_count_, items_.size());
        high_water_bytes_ = std::max(high_water_bytes_, bytes_);
        return dropped ? PushResult::pushed_dropped_oldest : PushResult::pushed;
    }

    std::optional<std::uint64_t> pop(TimePoint now) {
        expire(now);
        if (items_.empty()) {
            return std::nullopt;
        }
        const std::uint64_t seq = items_.front().seq;
        drop_front();
        ++stats_.popped;
        return seq;
    }

    std::size_t expire(TimePoint now) {
        if (options_.max_age == options_.max_age.zero()) {
            return 0;
        }
        std::size_t n = 0;
        while (!items_.empty() && now - items_.front().pushed_at >= options_.max_age) {
            drop_front();
            ++n;
        }
        stats_.dropped_expired += n;
        return n;
    }

    void clear() {
        stats_.cleared += items_.size();
        items_.clear();
        bytes_ = 0;
    }

    const std::deque<Entry>& items() const noexcept { return items_; }
    Wide bytes() const noexcept { return bytes_; }
    Wide high_water_bytes() const noexcept { return high_water_bytes_; }
    std::size_t high_water_count() const noexcept { return high_water_count_; }
    /// The counters only (size, bytes, high water and capacity are checked apart).
    const QueueStats& counters() const noexcept { return stats_; }

private:
    void drop_front() {
        bytes_ -= items_.front().weight;
        items_.pop_front();
    }

    QueueOptions options_;
    std::deque<Entry> items_;
    Wide bytes_ = 0;
    Wide high_water_bytes_ = 0;
    std::size_t high_water_count_ = 0;
    QueueStats stats_{};
};

/// Weights cluster where the bounds are: small ones, a few large ones, and the
/// values just under, at and over max_bytes.
inline std::size_t weight_from(std::uint8_t b, std::size_t max_bytes) {
    if (b < 192) {
        return b % 64;
    }
    if (b < 240) {
        return static_cast<std::size_t>(b - 191) * 64;
    }
    if (b < 255) {
        const std::size_t below = static_cast<std::size_t>(254 - b);
        return max_bytes > below ? max_bytes - below : 0;
    }
    return max_bytes == std::numeric_limits<std::size_t>::max() ? max_bytes : max_bytes + 1;
}

inline void check_same(const Queue& q, const QueueModel& m, const QueueOptions& o,
                       const LiveCounter& live) {
    const QueueStats s = q.stats();
    const QueueStats& c = m.counters();
    WSGUARD_FUZZ_CHECK(q.size() == m.items().size());
    WSGUARD_FUZZ_CHECK(s.size == q.size());
    WSGUARD_FUZZ_CHECK(q.empty() == m.items().empty());
    WSGUARD_FUZZ_CHECK(static_cast<Wide>(q.bytes()) == m.bytes());
    WSGUARD_FUZZ_CHECK(s.bytes == q.bytes());
    WSGUARD_FUZZ_CHECK(s.max_count == o.max_count);
    WSGUARD_FUZZ_CHECK(s.max_bytes == o.max_bytes);
    WSGUARD_FUZZ_CHECK(s.high_water_count == m.high_water_count());
    WSGUARD_FUZZ_CHECK(static_cast<Wide>(s.high_water_bytes) == m.high_water_bytes());
    WSGUARD_FUZZ_CHECK(s.pushed == c.pushed);
    WSGUARD_FUZZ_CHECK(s.popped == c.popped);
    WSGUARD_FUZZ_CHECK(s.dropped_oldest == c.dropped_oldest);
    WSGUARD_FUZZ_CHECK(s.rejected_full == c.rejected_full);
    WSGUARD_FUZZ_CHECK(s.rejected_too_large == c.rejected_too_large);
    WSGUARD_FUZZ_CHECK(s.dropped_expired == c.dropped_expired);
    WSGUARD_FUZZ_CHECK(s.cleared == c.cleared);
    // QueueStats' balance, by its definition.
    WSGUARD_FUZZ_CHECK(s.pushed ==
                       s.popped + s.dropped_oldest + s.dropped_expired + s.cleared + s.size);
    WSGUARD_FUZZ_CHECK(s.size <= s.max_count);
    WSGUARD_FUZZ_CHECK(s.bytes <= s.max_bytes);
    WSGUARD_FUZZ_CHECK(s.capacity == q.capacity());
    WSGUARD_FUZZ_CHECK(s.size <= s.capacity && s.capacity <= s.max_count);
    if (m.items().empty()) {
        WSGUARD_FUZZ_CHECK(q.front() == nullptr);
    } else {
        WSGUARD_FUZZ_CHECK(q.front() != nullptr);
        WSGUARD_FUZZ_CHECK(q.front()->seq.value() == m.items().front().seq);
        WSGUARD_FUZZ_CHECK(q.front()->weight == m.items().front().weight);
    }
    // Exactly the stored items are alive: nothing leaked, nothing destroyed twice.
    WSGUARD_FUZZ_CHECK(live.live == static_cast<long>(q.size()));
}

// A moved-from queue is empty, has no storage and zeroed counters, and keeps its options.
inline void check_moved_from(const Queue& q, const QueueOptions& o) {
    const QueueStats s = q.stats();
    WSGUARD_FUZZ_CHECK(q.empty() && q.front() == nullptr && q.bytes() == 0);
    WSGUARD_FUZZ_CHECK(q.capacity() == 0);
    WSGUARD_FUZZ_CHECK(s.pushed == 0 && s.popped == 0 && s.dropped_oldest == 0 &&
                       s.rejected_full == 0 && s.rejected_too_large == 0 &&
                       s.dropped_expired == 0 && s.cleared == 0 && s.high_water_count == 0 &&
                       s.high_water_bytes == 0);
    WSGUARD_FUZZ_CHECK(q.options().max_count == o.max_count &&
                       q.options().max_bytes == o.max_bytes && q.options().policy == o.policy &&
                       q.options().max_age == o.max_age);
}

}  // namespace queue_detail

/// The fuzzer body: see the file comment. Throws CheckFailure on any disagreement.
inline void fuzz_queue(const std::uint8_t* data, std::size_t size) {
    using namespace queue_detail;
    using std::chrono::milliseconds;
    FuzzInput in(data, size);

    QueueOptions options;
    options.max_count = 1 + in.below(24);
    switch (in.below(4)) {
        case 0:
            options.max_bytes = 1 + in.below(64);
            break;
        case 1:
            options.max_bytes = 1 + static_cast<std::size_t>(in.byte()) * 16;
            break;
        case 2:
            options.max_bytes = std::numeric_limits<std::size_t>::max();
            break;
        default:
            options.max_bytes = std::numeric_limits<std::size_t>::max() / 2 + 1;
            break;
    }
    options.policy = in.flag() ? OverflowPolicy::reject_newest : OverflowPolicy::drop_oldest;
    const std::uint8_t age = in.byte();
    options.max_age = (age & 3) == 0 ? Clock::duration::zero() : milliseconds(1 + (age >> 2));

    LiveCounter live;
    Clock clock;
    {
        Queue q(options, ItemWeight{}, clock);
        QueueModel model(options);
        std::uint64_t next_seq = 1;
        std::size_t last_capacity = 0;

        while (!in.empty()) {
            bool capacity_may_fall = false;
            switch (in.below(10)) {
                case 0:
                case 1:
                case 2: {
                    const std::size_t weight = weight_from(in.byte(), options.max_bytes);
                    const std::uint64_t seq = next_seq++;
                    const PushResult expected = model.push(seq, weight, clock.now());
                    const PushResult got = q.try_push(Item{Tracked(live, seq), weight});
                    WSGUARD_FUZZ_CHECK(got == expected);
                    break;
                }
                case 3: {
                    const std::optional<std::uint64_t> expected = model.pop(clock.now());
                    const std::optional<Item> got = q.try_pop();
                    WSGUARD_FUZZ_CHECK(got.has_value() == expected.has_value());
                    if (got) {
                        WSGUARD_FUZZ_CHECK(got->seq.value() == *expected);
                    }
                    break;
                }
                case 4: {
                    constexpr std::uint64_t untouched = 0;  // never a seq
                    Item out{Tracked(live, untouched), 7};
                    const std::optional<std::uint64_t> expected = model.pop(clock.now());
                    const bool got = q.try_pop(out);
                    WSGUARD_FUZZ_CHECK(got == expected.has_value());
                    WSGUARD_FUZZ_CHECK(out.seq.value() == (got ? *expected : untouched));
                    break;
                }
                case 5:
                    WSGUARD_FUZZ_CHECK(q.expire() == model.expire(clock.now()));
                    break;
                case 6:
                    clock.advance(milliseconds(in.byte()));
                    break;
                case 7:
                    clock.advance(milliseconds(1));
                    break;
                case 8:
                    if (in.flag()) {
                        q.clear();
                        model.clear();
                    } else {
                        q.shrink_to_fit();
                        WSGUARD_FUZZ_CHECK(q.capacity() == q.size());
                        capacity_may_fall = true;
                    }
                    break;
                default: {
                    const std::size_t how = in.below(3);
                    if (how == 0) {
                        Queue& alias = q;  // self-move: must change nothing
                        q = std::move(alias);
                        break;
                    }
                    if (how == 1) {
                        Queue moved(std::move(q));
                        check_moved_from(q, options);
                        check_same(moved, model, options, live);
                        q = std::move(moved);
                        check_moved_from(moved, options);
                        break;
                    }
                    // Move-assigning over a queue that holds items destroys them.
                    Queue other(options, ItemWeight{}, clock);
                    for (std::size_t i = in.below(4); i != 0; --i) {
                        other.try_push(Item{Tracked(live, 0), 0});
                    }
                    other = std::move(q);
                    check_moved_from(q, options);
                    check_same(other, model, options, live);
                    q = std::move(other);
                    check_moved_from(other, options);
                    break;
                }
            }
            check_same(q, model, options, live);
            // The ring is reused, never shrunk, unless shrink_to_fit() is called.
            WSGUARD_FUZZ_CHECK(capacity_may_fall || q.capacity() >= last_capacity);
            last_capacity = q.capacity();
        }

        // Half the inputs (by length) drain what is left, in order (try_pop expires
        // first, like the model); the others leave it to the destructor.
        if (size % 2 == 0) {
            while (std::optional<std::uint64_t> expected = model.pop(clock.now())) {
                const std::optional<Item> got = q.try_pop();
                WSGUARD_FUZZ_CHECK(got.has_value() && got->seq.value() == *expected);
            }
            WSGUARD_FUZZ_CHECK(!q.try_pop().has_value());
            check_same(q, model, options, live);
        }
    }
    // Every item the queue held is destroyed, once.
    WSGUARD_FUZZ_CHECK(live.live == 0);
}

}  // namespace wsguard::fuzz
