// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// BoundedMessageQueue: a FIFO bounded by item count AND by bytes, with an explicit
// overflow policy and an optional maximum age. An unbounded per-connection queue is
// how a client that stops reading grows a server's memory forever; this queue makes
// the bound part of the type and counts every item it refuses or drops, so the
// server can see the pressure instead of discovering it as an out-of-memory kill.
// Storage is a ring that grows by doubling up to max_count and is then reused: once
// a queue reaches its working size, pushing and popping allocate nothing.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <utility>

// Keeps the rare paths (expiry, growth, overflow) out of line, so push and pop
// stay small enough to inline into the caller.
#if defined(__GNUC__) || defined(__clang__)
#define WSGUARD_DETAIL_QUEUE_NOINLINE __attribute__((noinline))
#else
#define WSGUARD_DETAIL_QUEUE_NOINLINE
#endif

namespace wsguard {

/// What try_push() does when storing an item would break a bound (spdlog's
/// overrun / discard pair, named as verbs).
enum class OverflowPolicy {
    drop_oldest,   ///< make room by dropping the oldest items (counted in dropped_oldest)
    reject_newest  ///< keep the queue as it is and refuse the new item (counted in rejected_full)
};

/// The outcome of try_push(); every value except `pushed` is also counted in stats().
enum class PushResult {
    pushed,                 ///< stored, nothing dropped
    pushed_dropped_oldest,  ///< stored after dropping one or more oldest items (drop_oldest)
    rejected_full,          ///< not stored: the queue is full (reject_newest)
    rejected_too_large      ///< not stored: this item alone exceeds max_bytes (either policy)
};

/// Effect: the enumerator's name, e.g. "rejected_full"; "unknown" for a value outside the enum.
/// Never fails. Thread safety: Safe. Exceptions: nothrow.
inline const char* to_string(PushResult result) noexcept {
    switch (result) {
        case PushResult::pushed:
            return "pushed";
        case PushResult::pushed_dropped_oldest:
            return "pushed_dropped_oldest";
        case PushResult::rejected_full:
            return "rejected_full";
        case PushResult::rejected_too_large:
            return "rejected_too_large";
    }
    return "unknown";
}

/// Effect: the enumerator's name, e.g. "drop_oldest"; "unknown" for a value outside the enum.
/// Never fails. Thread safety: Safe. Exceptions: nothrow.
inline const char* to_string(OverflowPolicy policy) noexcept {
    switch (policy) {
        case OverflowPolicy::drop_oldest:
            return "drop_oldest";
        case OverflowPolicy::reject_newest:
            return "reject_newest";
    }
    return "unknown";
}

/// Every limit of a BoundedMessageQueue. Both bounds apply at once.
struct QueueOptions {
    /// 1024 messages: far more than a healthy reader ever has in flight, small enough
    /// that a stalled one costs at most 1024 slots; the ring only grows to it if used.
    std::size_t max_count = 1024;
    /// 1 MiB: the reference server's default maximum message size, so any message it
    /// accepts fits. The worst case is max_bytes per stalled reader: lower it when many
    /// connections must fit in little memory.
    std::size_t max_bytes = 1u << 20;
    /// drop_oldest: for live updates (chat, prices) the newest message is the useful
    /// one; use reject_newest when the sender must learn that a message did not go.
    OverflowPolicy policy = OverflowPolicy::drop_oldest;
    /// Zero: items never expire (most messages stay useful until delivered). Set it
    /// when a stale message is worse than none. Must not be negative.
    std::chrono::steady_clock::duration max_age = std::chrono::steady_clock::duration::zero();
};

/// A snapshot of every count a BoundedMessageQueue holds. Balance (the definition
/// of the counters): pushed == popped + dropped_oldest + dropped_expired + cleared + size.
struct QueueStats {
    std::size_t size;              ///< items stored now
    std::size_t bytes;             ///< sum of the stored items' sizes (as measured at push)
    std::size_t max_count;         ///< QueueOptions::max_count
    std::size_t max_bytes;         ///< QueueOptions::max_bytes
    std::size_t high_water_count;  ///< largest size ever reached
    std::size_t high_water_bytes;  ///< largest bytes ever reached
    std::uint64_t pushed;          ///< items stored by try_push (pushed + pushed_dropped_oldest)
    std::uint64_t popped;          ///< items handed out by try_pop
    std::uint64_t dropped_oldest;  ///< items dropped to make room (drop_oldest policy)
    std::uint64_t rejected_full;   ///< try_push refusals because full (reject_newest policy)
    std::uint64_t rejected_too_large;  ///< try_push refusals of an item larger than max_bytes
    std::uint64_t dropped_expired;     ///< items dropped because they reached max_age
    std::uint64_t cleared;             ///< items discarded by clear()
    std::size_t capacity;              ///< slots allocated now (<= max_count)
};

namespace detail {

template <class T, class = void>
struct HasSize : std::false_type {};
template <class T>
struct HasSize<T, std::void_t<decltype(std::declval<const T&>().size())>> : std::true_type {};

template <class T, class = void>
struct HasPointeeSize : std::false_type {};
template <class T>
struct HasPointeeSize<T, std::void_t<decltype(std::declval<const T&>()->size()),
                                     decltype(static_cast<bool>(std::declval<const T&>()))>>
    : std::true_type {};

}  // namespace detail

/// The default size function: t.size() when T has it (std::string, std::vector<char>),
/// else t->size() for a pointer-like to such a thing (std::shared_ptr<const std::string>,
/// the shared payload of a broadcast; a null pointer counts 0), else sizeof(T).
struct DefaultSizeOf {
    template <class T>
    std::size_t operator()(const T& value) const {
        if constexpr (detail::HasSize<T>::value) {
            return static_cast<std::size_t>(value.size());
        } else if constexpr (detail::HasPointeeSize<T>::value) {
            return value ? static_cast<std::size_t>(value->size()) : 0;
        } else {
            return sizeof(T);
        }
    }
};

namespace detail {

/// True when every item weighs the same: the default size function on a T
/// without size(), i.e. sizeof(T). The queue then keeps no byte count per item
/// (bytes are size * sizeof(T)) and the byte bound folds into the count bound.
template <class T, class SizeOf>
inline constexpr bool kFixedItemSize =
    std::is_same_v<SizeOf, DefaultSizeOf> && !HasSize<T>::value && !HasPointeeSize<T>::value;

/// True when the default size function reads a value's own non-throwing size():
/// the queue owns that item outright and hands out only const access to it, so
/// measuring it again at removal gives the weight it had at push, and the slot
/// need not store it (one store less per push: the queue sits on every send).
/// A pointer's pointee or a custom SizeOf may change behind the queue's back, so
/// their weight is stored in the slot.
template <class T, class SizeOf, class = void>
inline constexpr bool kRemeasuredItemSize = false;
template <class T, class SizeOf>
inline constexpr bool kRemeasuredItemSize<T, SizeOf, std::enable_if_t<HasSize<T>::value>> =
    std::is_same_v<SizeOf, DefaultSizeOf>&& noexcept(std::declval<const T&>().size());

/// One ring slot: the item plus, when it cannot be measured again at removal, its
/// byte count as measured at push. Push times live in a separate array that
/// exists only when max_age is set.
template <class T, bool StoresBytes>
struct QueueSlot {
    T value;
    std::size_t bytes;
};

/// The item's weight is sizeof(T) or measured again at removal.
template <class T>
struct QueueSlot<T, false> {
    T value;
};

}  // namespace detail

/// A FIFO of T bounded by count (max_count) and by bytes (max_bytes, measured by
/// SizeOf at push), with an overflow policy and an optional max_age measured on Clock.
/// Storage is a ring buffer that starts empty, doubles as needed up to max_count and
/// then never allocates again (never shrinks either, unless shrink_to_fit() is called).
///
/// @tparam T      the item; must be nothrow move-constructible and nothrow destructible
///                (that is what lets every operation keep the strong guarantee).
/// @tparam SizeOf callable std::size_t(const T&): an item's weight against max_bytes.
/// @tparam Clock  has now() returning a time_point; monotonic (steady_clock by default,
///                a ManualClock in tests).
///
/// Thread safety: Distinct objects: Safe. Shared objects: Unsafe. The queue is not
/// synchronised: it has one owner (e.g. the io thread that serves the connection).
template <class T, class SizeOf = DefaultSizeOf, class Clock = std::chrono::steady_clock>
class BoundedMessageQueue {
    static_assert(std::is_nothrow_move_constructible_v<T>,
                  "BoundedMessageQueue<T>: T must be nothrow move-constructible (items are "
                  "relocated when the ring grows and must not be lost half-way)");
    static_assert(std::is_nothrow_destructible_v<T>,
                  "BoundedMessageQueue<T>: T must be nothrow destructible");

public:
    using value_type = T;
    using clock_type = Clock;
    using time_point = typename Clock::time_point;

    /// Effect: an empty queue with these bounds; allocates nothing until the first push.
    /// Fails: std::invalid_argument if max_count == 0, max_bytes == 0 or max_age < 0.
    /// Thread safety: n/a (construction). Exceptions: std::invalid_argument; whatever
    /// copying SizeOf or Clock throws.
    explicit BoundedMessageQueue(QueueOptions options = {}, SizeOf size_of = {}, Clock clock = {})
        : options_(options), size_of_(std::move(size_of)), clock_(std::move(clock)) {
        if (options_.max_count == 0) {
            throw std::invalid_argument("wsguard::BoundedMessageQueue: max_count must be > 0");
        }
        if (options_.max_bytes == 0) {
            throw std::invalid_argument("wsguard::BoundedMessageQueue: max_bytes must be > 0");
        }
        if (options_.max_age < std::chrono::steady_clock::duration::zero()) {
            throw std::invalid_argument(
                "wsguard::BoundedMessageQueue: max_age must not be negative (zero: no expiry)");
        }
    }

    BoundedMessageQueue(const BoundedMessageQueue&) = delete;
    BoundedMessageQueue& operator=(const BoundedMessageQueue&) = delete;

    /// Effect: takes other's items, storage and counters; other is left empty, with no
    /// storage, zeroed counters and its options unchanged.
    /// Never fails. Thread safety: neither queue may be in use elsewhere.
    /// Exceptions: nothrow if moving SizeOf and Clock is.
    BoundedMessageQueue(BoundedMessageQueue&& other) noexcept(
        std::is_nothrow_move_constructible_v<SizeOf>&& std::is_nothrow_move_constructible_v<Clock>)
        : options_(other.options_),
          size_of_(std::move(other.size_of_)),
          clock_(std::move(other.clock_)),
          ring_(std::exchange(other.ring_, Ring{})),
          counters_(std::exchange(other.counters_, Counters{})) {}

    /// Effect: destroys this queue's items, then as the move constructor.
    /// Never fails. Thread safety: neither queue may be in use elsewhere.
    /// Exceptions: nothrow if move-assigning SizeOf and Clock is.
    BoundedMessageQueue& operator=(BoundedMessageQueue&& other) noexcept(
        std::is_nothrow_move_assignable_v<SizeOf>&& std::is_nothrow_move_assignable_v<Clock>) {
        if (this != &other) {
            size_of_ = std::move(other.size_of_);
            clock_ = std::move(other.clock_);
            release();
            options_ = other.options_;
            ring_ = std::exchange(other.ring_, Ring{});
            counters_ = std::exchange(other.counters_, Counters{});
        }
        return *this;
    }

    /// Effect: destroys every stored item and frees the ring.
    ~BoundedMessageQueue() { release(); }

    /// Effect: first drops the items that reached max_age (counted in dropped_expired);
    /// then stores value at the back (moved from), stamped with the clock's now() for
    /// max_age, unless a bound is in the way: an item larger than max_bytes is refused
    /// (rejected_too_large); otherwise, if count or bytes would exceed their bound,
    /// drop_oldest drops as many oldest items as needed to fit (pushed_dropped_oldest,
    /// each counted in dropped_oldest) and reject_newest refuses it (rejected_full).
    /// A refused value is left as it was (not moved from).
    /// Fails: by returning a value other than pushed/pushed_dropped_oldest; never blocks.
    /// Thread safety: Unsafe (one owner). Exceptions: strong: if SizeOf, the clock or
    /// the growth allocation throws, nothing has changed; nothing after those can throw.
    PushResult try_push(T&& value) { return push(std::move(value)); }

    /// Effect: as try_push(T&&), storing a copy of value.
    /// Fails: as try_push(T&&). Thread safety: Unsafe (one owner).
    /// Exceptions: strong: as try_push(T&&), and if copying T throws, nothing has changed.
    PushResult try_push(const T& value) {
        if constexpr (std::is_nothrow_copy_constructible_v<T>) {
            return push(value);
        } else {
            // Copy before anything changes: a throwing copy after an overflow drop
            // would lose the dropped items. The fast path constructs in place, first.
            const std::size_t item_bytes = item_size(value);
            if (fits_without_work(item_bytes)) {
                store_back(value, item_bytes);
                return PushResult::pushed;
            }
            T copy(value);
            return push_slow(std::move(copy), item_bytes);
        }
    }

    /// Effect: drops the expired items at the front (counted in dropped_expired), then
    /// removes the oldest item and returns it (counted in popped).
    /// Fails: std::nullopt when no unexpired item is left. Thread safety: Unsafe (one
    /// owner). Exceptions: strong: only the clock can throw, before anything changes.
    std::optional<T> try_pop() {
        if (expiring()) {
            expire_now();
        }
        if (empty()) {
            return std::nullopt;
        }
        const std::size_t item_bytes = weight(*ring_.head);  // before the move empties it
        std::optional<T> out(std::move(ring_.head->value));
        remove_front(item_bytes);
        return out;
    }

    /// Effect: as try_pop(), but move-assigns the item to out.
    /// Fails: returns false (out untouched) when no unexpired item is left.
    /// Thread safety: Unsafe (one owner). Exceptions: if T's move assignment throws, the
    /// item stays in the queue (expired items already dropped stay dropped and counted).
    bool try_pop(T& out) {
        if (expiring()) {
            expire_now();
        }
        if (empty()) {
            return false;
        }
        const std::size_t item_bytes = weight(*ring_.head);  // before the move empties it
        out = std::move(ring_.head->value);                  // may throw: nothing changed yet
        remove_front(item_bytes);
        return true;
    }

    /// Effect: the oldest stored item, which may already be expired (call expire()
    /// first to be sure it is not). Read-only: an item's weight must not change
    /// while it is queued (pop it to edit it). Valid until the next non-const call.
    /// Fails: nullptr when empty. Thread safety: Unsafe (one owner). Exceptions: nothrow.
    const T* front() const noexcept { return empty() ? nullptr : &ring_.head->value; }

    /// Effect: drops every item whose age (now - push time) has reached max_age, oldest
    /// first; counted in dropped_expired. O(dropped): items are in push order, so the
    /// walk stops at the first live one. Does nothing when max_age is zero.
    /// Fails: returns 0 when nothing expired. Thread safety: Unsafe (one owner).
    /// Exceptions: strong (only the clock can throw, before anything changes).
    std::size_t expire() {
        if (!expiring()) {
            return 0;
        }
        return expire_now();
    }

    /// Effect: destroys every item. They are not "dropped" (no bound was hit, the owner
    /// chose to discard them, e.g. the connection closed): they are counted in `cleared`
    /// so the balance stays exact. The ring is kept for reuse (see shrink_to_fit()).
    /// Never fails. Thread safety: Unsafe (one owner). Exceptions: nothrow.
    void clear() noexcept {
        counters_.cleared += size();
        while (!empty()) {
            destroy_front();
        }
        ring_.head = ring_.tail = ring_.slots;
    }

    /// Effect: reallocates the ring to exactly size() slots (frees it when empty), e.g.
    /// after a burst on a long-lived connection; later pushes grow it again by doubling.
    /// Fails: never. Thread safety: Unsafe (one owner). Exceptions: strong (only the
    /// allocation can throw, before anything changes).
    void shrink_to_fit() {
        if (size() == ring_.capacity) {
            return;
        }
        if (empty()) {
            deallocate();
            return;
        }
        relocate(size());
    }

    /// Effect: the number of stored items (expired ones included until dropped).
    /// Never fails. Thread safety: Unsafe (one owner). Exceptions: nothrow.
    std::size_t size() const noexcept {
        return static_cast<std::size_t>(ring_.stored - ring_.removed);
    }
    /// Effect: the sum of the stored items' sizes as measured by SizeOf at push.
    /// Never fails. Thread safety: Unsafe (one owner). Exceptions: nothrow.
    std::size_t bytes() const noexcept {
        if constexpr (kFixedSize) {
            return size() * sizeof(T);
        } else {
            return ring_.bytes_in - ring_.bytes_out;  // modulo 2^N: exact
        }
    }
    /// Effect: size() == 0. Never fails. Thread safety: Unsafe (one owner). Exceptions: nothrow.
    bool empty() const noexcept { return ring_.stored == ring_.removed; }
    /// Effect: the number of slots allocated now (0 before the first push, <= max_count).
    /// Never fails. Thread safety: Unsafe (one owner). Exceptions: nothrow.
    std::size_t capacity() const noexcept { return ring_.capacity; }
    /// Effect: the options given at construction. Never fails. Thread safety: Unsafe
    /// (one owner). Exceptions: nothrow.
    const QueueOptions& options() const noexcept { return options_; }

    /// Effect: a snapshot of every count (see QueueStats for the definitions).
    /// Never fails. Thread safety: Unsafe (one owner). Exceptions: nothrow.
    QueueStats stats() const noexcept {
        QueueStats s{};
        s.size = size();
        s.bytes = bytes();
        s.max_count = options_.max_count;
        s.max_bytes = options_.max_bytes;
        s.high_water_count = counters_.high_water_count;
        if constexpr (kFixedSize) {
            s.high_water_bytes = counters_.high_water_count * sizeof(T);
        } else {
            s.high_water_bytes = counters_.high_water_bytes;
        }
        s.pushed = ring_.stored;
        s.popped = ring_.removed - counters_.dropped_oldest - counters_.dropped_expired -
                   counters_.cleared;
        s.dropped_oldest = counters_.dropped_oldest;
        s.rejected_full = counters_.rejected_full;
        s.rejected_too_large = counters_.rejected_too_large;
        s.dropped_expired = counters_.dropped_expired;
        s.cleared = counters_.cleared;
        s.capacity = ring_.capacity;
        return s;
    }

private:
    static constexpr bool kFixedSize = detail::kFixedItemSize<T, SizeOf>;
    static constexpr bool kStoresBytes = !kFixedSize && !detail::kRemeasuredItemSize<T, SizeOf>;
    using Slot = detail::QueueSlot<T, kStoresBytes>;
    using Allocator = std::allocator<Slot>;
    using AllocTraits = std::allocator_traits<Allocator>;
    using StampAllocator = std::allocator<time_point>;
    using StampTraits = std::allocator_traits<StampAllocator>;

    // First allocation: small, because most per-connection queues hold a message or
    // two; doubling reaches any working size in a few steps.
    static constexpr std::size_t initial_capacity = 4;

    // Push changes only tail, stored and bytes_in; pop changes only head, removed and
    // bytes_out. No field is written by both, so a push followed by a pop is not one
    // chain of read-modify-writes on the same memory (size and bytes are differences).
    struct Ring {
        Slot* slots = nullptr;         // raw storage for `capacity` slots
        Slot* end = nullptr;           // slots + capacity
        Slot* head = nullptr;          // the oldest item, when not empty
        Slot* tail = nullptr;          // where the next item goes
        time_point* stamps = nullptr;  // push time of slots[i] at stamps[i]; max_age only
        std::size_t capacity = 0;
        std::uint64_t stored = 0;   // items ever stored (stats().pushed)
        std::uint64_t removed = 0;  // items ever removed: popped, dropped or cleared
        std::size_t bytes_in = 0;   // bytes ever stored (variable-size items only)
        std::size_t bytes_out = 0;  // bytes ever removed (variable-size items only)
        // The fast path of a push: while size() < fast_count and the item fits in
        // fast_bytes - bytes(), storing it needs no growth, expiry, overflow or
        // high-water update (both are at most the high water marks). Recomputed by
        // every other path (refresh_fast_path()); 0 while max_age is set.
        std::size_t fast_count = 0;
        std::size_t fast_bytes = 0;
    };

    // `popped` is not kept: it is removed minus the other ways out.
    struct Counters {
        std::size_t high_water_count = 0;
        std::size_t high_water_bytes = 0;  // variable-size items only
        std::uint64_t dropped_oldest = 0;
        std::uint64_t rejected_full = 0;
        std::uint64_t rejected_too_large = 0;
        std::uint64_t dropped_expired = 0;
        std::uint64_t cleared = 0;
    };

    bool expiring() const noexcept { return options_.max_age != options_.max_age.zero(); }

    std::size_t item_size(const T& value) const {
        if constexpr (kFixedSize) {
            return sizeof(T);
        } else {
            return size_of_(value);
        }
    }

    // The most items the bounds allow at once. With fixed-size items the byte bound
    // is a count bound, so the ring never grows past what bytes allow.
    std::size_t count_limit() const noexcept {
        if constexpr (kFixedSize) {
            return std::min(options_.max_count, options_.max_bytes / sizeof(T));
        } else {
            return options_.max_count;
        }
    }

    // The common case, checked in one go: nothing can expire, a free slot is already
    // allocated (capacity <= count_limit() <= max_count), the item fits the byte
    // bound, and neither high water mark moves. Storing needs no other step.
    bool fits_without_work(std::size_t item_bytes) const noexcept {
        if constexpr (kFixedSize) {
            return size() < ring_.fast_count;  // the byte bound is in count_limit()
        } else {
            return size() < ring_.fast_count && item_bytes <= ring_.fast_bytes - bytes();
        }
    }

    // Called wherever capacity, a high water mark or the options may have changed.
    void refresh_fast_path() noexcept {
        ring_.fast_count = expiring() ? 0 : std::min(ring_.capacity, counters_.high_water_count);
        ring_.fast_bytes = std::min(options_.max_bytes, counters_.high_water_bytes);
    }

    template <class U>
    PushResult push(U&& value) {
        const std::size_t item_bytes = item_size(value);
        if (fits_without_work(item_bytes)) {
            store_back(std::forward<U>(value), item_bytes);
            return PushResult::pushed;
        }
        return push_slow(std::forward<U>(value), item_bytes);
    }

    // Every other case: expiry, growth, a bound in the way. U's construction of T
    // must not throw here (an rvalue T, or a nothrow copy).
    template <class U>
    WSGUARD_DETAIL_QUEUE_NOINLINE PushResult push_slow(U&& value, std::size_t item_bytes) {
        // Stamp only when ages matter: steady_clock::now() is not free.
        const time_point now = expiring() ? clock_.now() : time_point{};
        const bool front_expired = expiring() && !empty() && is_expired(ring_.head, now);
        // Grow (the only allocation) before changing anything, and only if no slot is
        // about to be freed by expiry or by an overflow drop / rejection.
        // At capacity == count_limit() the count bound below drops or rejects instead.
        if (size() == ring_.capacity && ring_.capacity < count_limit() && !front_expired &&
            item_bytes <= options_.max_bytes - bytes()) {
            grow();
        }
        // From here on nothing throws.
        expire_at(now);
        // After expiry, as the contract says: both refusals leave the queue equally
        // up to date. Too large an item never grows the ring (checked above).
        if (item_bytes > options_.max_bytes) {
            ++counters_.rejected_too_large;
            return PushResult::rejected_too_large;
        }
        bool dropped = false;
        if (size() == options_.max_count || item_bytes > options_.max_bytes - bytes()) {
            if (options_.policy == OverflowPolicy::reject_newest) {
                ++counters_.rejected_full;
                return PushResult::rejected_full;
            }
            // Terminates: item_bytes <= max_bytes, so an empty queue always fits it.
            while (size() == options_.max_count || item_bytes > options_.max_bytes - bytes()) {
                destroy_front();
                ++counters_.dropped_oldest;
                dropped = true;
            }
        }
        if (ring_.stamps != nullptr) {
            ring_.stamps[ring_.tail - ring_.slots] = now;
        }
        store_back(std::forward<U>(value), item_bytes);
        const std::size_t n = size();
        if (n > counters_.high_water_count) {
            counters_.high_water_count = n;
        }
        if constexpr (!kFixedSize) {
            counters_.high_water_bytes = std::max(counters_.high_water_bytes, bytes());
        }
        refresh_fast_path();
        return dropped ? PushResult::pushed_dropped_oldest : PushResult::pushed;
    }

    // Constructs the item in the free slot at tail (the only step that may throw, a
    // copy in try_push(const T&)'s fast path), then counts it. The caller updates
    // the high water marks when they may move.
    template <class U>
    void store_back(U&& value, std::size_t item_bytes) {
        Slot* const slot = ring_.tail;
        if constexpr (kStoresBytes) {
            ::new (static_cast<void*>(slot)) Slot{std::forward<U>(value), item_bytes};
        } else {
            ::new (static_cast<void*>(slot)) Slot{std::forward<U>(value)};
        }
        if constexpr (!kFixedSize) {
            ring_.bytes_in += item_bytes;
        }
        ring_.tail = slot + 1 == ring_.end ? ring_.slots : slot + 1;
        ++ring_.stored;
    }

    WSGUARD_DETAIL_QUEUE_NOINLINE std::size_t expire_now() { return expire_at(clock_.now()); }

    bool is_expired(const Slot* slot, time_point now) const noexcept {
        return now - ring_.stamps[slot - ring_.slots] >= options_.max_age;
    }

    std::size_t expire_at(time_point now) noexcept {
        if (!expiring()) {
            return 0;
        }
        std::size_t n = 0;
        while (!empty() && is_expired(ring_.head, now)) {
            destroy_front();
            ++n;
        }
        counters_.dropped_expired += n;
        return n;
    }

    // A stored item's weight as it was measured at push.
    std::size_t weight(const Slot& slot) const noexcept {
        if constexpr (kStoresBytes) {
            return slot.bytes;
        } else if constexpr (kFixedSize) {
            return sizeof(T);
        } else {
            return size_of_(slot.value);  // DefaultSizeOf on a noexcept size()
        }
    }

    void destroy_front() noexcept { remove_front(weight(*ring_.head)); }

    // Destroys the item at head, which weighed item_bytes, and advances.
    void remove_front(std::size_t item_bytes) noexcept {
        Slot* const slot = ring_.head;
        if constexpr (!kFixedSize) {
            ring_.bytes_out += item_bytes;
        }
        slot->~Slot();
        ring_.head = slot + 1 == ring_.end ? ring_.slots : slot + 1;
        ++ring_.removed;
    }

    void grow() {
        const std::size_t max = count_limit();
        std::size_t next = initial_capacity;
        if (ring_.capacity != 0) {
            next = ring_.capacity > max / 2 ? max : ring_.capacity * 2;  // no overflow
        }
        relocate(std::min(next, max));
    }

    // Moves the live items, oldest first, into a fresh ring of new_capacity slots
    // (new_capacity >= size() > 0 or new_capacity > 0).
    void relocate(std::size_t new_capacity) {
        Allocator alloc;
        StampAllocator stamp_alloc;
        Slot* fresh = AllocTraits::allocate(alloc, new_capacity);  // a throw point
        time_point* stamps = nullptr;
        if (expiring()) {
            try {
                stamps = StampTraits::allocate(stamp_alloc, new_capacity);  // the other one
            } catch (...) {
                AllocTraits::deallocate(alloc, fresh, new_capacity);
                throw;
            }
        }
        const std::size_t n = size();
        Slot* from = ring_.head;
        for (std::size_t i = 0; i < n; ++i) {
            ::new (static_cast<void*>(fresh + i)) Slot(std::move(*from));
            if (stamps != nullptr) {
                ::new (static_cast<void*>(stamps + i)) time_point(ring_.stamps[from - ring_.slots]);
            }
            from->~Slot();
            from = from + 1 == ring_.end ? ring_.slots : from + 1;
        }
        deallocate();
        ring_.slots = fresh;
        ring_.end = fresh + new_capacity;
        ring_.stamps = stamps;
        ring_.capacity = new_capacity;
        ring_.head = fresh;
        ring_.tail = n == new_capacity ? fresh : fresh + n;
        refresh_fast_path();
    }

    // Frees the storage (the items must be gone or relocated already).
    void deallocate() noexcept {
        if (ring_.slots != nullptr) {
            Allocator alloc;
            AllocTraits::deallocate(alloc, ring_.slots, ring_.capacity);
        }
        if (ring_.stamps != nullptr) {
            StampAllocator stamp_alloc;
            StampTraits::deallocate(stamp_alloc, ring_.stamps, ring_.capacity);
        }
        ring_.slots = ring_.end = ring_.head = ring_.tail = nullptr;
        ring_.stamps = nullptr;
        ring_.capacity = 0;
        refresh_fast_path();
    }

    void release() noexcept {
        while (!empty()) {
            destroy_front();
        }
        deallocate();
    }

    QueueOptions options_;
    SizeOf size_of_;
    Clock clock_;
    Ring ring_;
    Counters counters_;
};

}  // namespace wsguard

#undef WSGUARD_DETAIL_QUEUE_NOINLINE
