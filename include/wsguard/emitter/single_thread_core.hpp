// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// SingleThreadCore: the algorithm behind Emitter (BasicEmitter<NullMutex,
// ...>, scoped_listener.hpp) — one thread, no lock, no atomics on the emit
// path. The listeners sit in a contiguous array that emit walks like a
// std::vector<std::function>.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>
#include <vector>

#include <wsguard/emitter/slot.hpp>

// Keeps rare paths out of Emitter's emit so the hot loop stays small enough
// to inline into the caller.
#if defined(__GNUC__) || defined(__clang__)
#define WSGUARD_DETAIL_COLD __attribute__((noinline, cold))
#define WSGUARD_DETAIL_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define WSGUARD_DETAIL_COLD
#define WSGUARD_DETAIL_UNLIKELY(x) (x)
#endif

namespace wsguard {
namespace detail {

template <class... Args>
class SingleThreadCore;

/// Room for a callable stored in an Emitter entry itself (like
/// std::function's small-object buffer): two pointers.
inline constexpr std::size_t kInlineSize = 2 * sizeof(void*);

/// One listener in the contiguous array that emit walks. slot == nullptr
/// marks a tombstone, whose call does nothing, so emit calls every entry
/// without a test. Trivially copyable, so the array may move entries (only
/// while no emit runs).
template <class... Args>
struct Entry {
    /// Calls the callable held in (or pointed to by) `storage`. For a
    /// tracked listener whose owner has expired it calls nothing and has
    /// the emitter drop the listener instead.
    using Thunk = void (*)(void* storage, const Args&... args);
    Thunk call = nullptr;
    Slot<SingleThreadCore<Args...>, Args...>* slot = nullptr;
    alignas(void*) unsigned char storage[kInlineSize] = {};

    /// A tombstone's call.
    static void skip(void* /*storage*/, const Args&... /*args*/) noexcept {}
};

/// What a slot of a SingleThreadCore keeps of it.
template <class... Args>
struct SlotHook<SingleThreadCore<Args...>> {
    using SlotT = Slot<SingleThreadCore<Args...>, Args...>;
    static constexpr std::size_t kNotInArray = static_cast<std::size_t>(-1);

    std::size_t index = kNotInArray;            // position in the array
    SingleThreadCore<Args...>* core = nullptr;  // valid while not detached_
    /// Makes `entry` call this listener (EntryOf<...>::fill).
    void (*fill)(SlotT& slot, Entry<Args...>& entry) noexcept = nullptr;
};

/// How the listener of a SlotImpl sits in an array entry: fill() puts it
/// there, the thunks call it from there.
template <class Impl, class... Args>
struct EntryOf {
    using F = typename Impl::Callable;
    using SlotT = Slot<SingleThreadCore<Args...>, Args...>;
    using EntryT = Entry<Args...>;

    // Bitwise movable and small: may live in the array entry, so emit
    // reaches it without a pointer hop.
    static constexpr bool kStoredInline =
        sizeof(F) <= kInlineSize && alignof(F) <= alignof(void*) && std::is_trivially_copyable_v<F>;

    /// Makes `entry` call this listener. For a small trivially copyable
    /// callable this moves it into the entry.
    static void fill(SlotT& slot, EntryT& entry) noexcept {
        Impl& self = static_cast<Impl&>(slot);
        entry.slot = &slot;
        if (self.tracked_) {
            entry.call = &EntryOf::call_tracked;
            store_pointer(entry, &self);
        } else if constexpr (kStoredInline) {
            entry.call = &EntryOf::call_inline;
            ::new (static_cast<void*>(entry.storage)) F(std::move(self.callable()));
        } else {
            entry.call = &EntryOf::call_indirect;
            store_pointer(entry, std::addressof(self.callable()));
        }
    }

private:
    static void call_inline(void* storage, const Args&... args) {
        (*std::launder(static_cast<F*>(storage)))(args...);
    }

    static void call_indirect(void* storage, const Args&... args) {
        (*static_cast<F*>(load_pointer(storage)))(args...);
    }

    static void call_tracked(void* storage, const Args&... args) {
        Impl& self = *static_cast<Impl*>(load_pointer(storage));
        if (!Impl::call_tracked(&self, args...)) {
            // The core outlives every emit it runs.
            self.hook_.core->expire(self);
        }
    }

    static void* load_pointer(const void* storage) noexcept {
        void* target = nullptr;
        std::memcpy(&target, storage, sizeof target);
        return target;
    }

    static void store_pointer(EntryT& entry, void* target) noexcept {
        std::memcpy(entry.storage, &target, sizeof target);
    }
};

/// Emitter's (NullMutex) state, held in place by the emitter; its slots
/// point at it until it detaches them, so a handle that outlives the
/// emitter finds a detached slot and does nothing.
///
/// Listeners are kept in a contiguous array of entries in subscription
/// order, small callables stored in the entry itself, so emit is a loop
/// like one over std::vector<std::function>. The array never changes size
/// during an emit, so emit holds on to it: a listener subscribed meanwhile
/// waits in an "incoming" list (called by nested emits that start after it,
/// in order) and joins the array when the outermost emit ends. Removal of
/// the last entry outside an emit pops it; any other removal turns the entry
/// into a tombstone in O(1), and the array is compacted, stably, only while
/// no emit runs and once tombstones are a quarter of it, which is O(1)
/// amortised per removal.
template <class... Args>
class SingleThreadCore {
public:
    using SlotT = Slot<SingleThreadCore, Args...>;

    SingleThreadCore() = default;
    SingleThreadCore(const SingleThreadCore&) = delete;
    SingleThreadCore& operator=(const SingleThreadCore&) = delete;

    ~SingleThreadCore() {
        // Normally empty already (the emitter clears on destruction).
        SlotT* chain = nullptr;
        for (const EntryT& e : entries_) {
            if (e.slot != nullptr) {
                detach_onto(*e.slot, chain);
            }
        }
        entries_.clear();
        while (incoming_.head != nullptr) {
            SlotT* s = incoming_.head;
            incoming_.unlink(*s);
            detach_onto(*s, chain);
        }
        // Only if destroyed during its own emit (not allowed): still
        // leave no handle waiting for a detach that never comes.
        while (pending_ != nullptr) {
            SlotT* s = pending_;
            pending_ = s->chain_;
            detach_onto(*s, chain);
        }
        release_chain(chain);
    }

    /// Returns the handle's share of the new slot.
    template <class F>
    std::shared_ptr<SlotBase> subscribe(std::weak_ptr<const void> owner, bool tracked, F&& f) {
        using Impl = SlotImpl<std::decay_t<F>, SingleThreadCore, Args...>;
        std::shared_ptr<SlotT> slot =
            make_slot<Impl>(std::move(owner), tracked, std::forward<F>(f));
        slot->hook_.core = this;
        slot->hook_.fill = &EntryOf<Impl, Args...>::fill;
        std::shared_ptr<SlotBase> handle = slot;
        if (!emitting() && incoming_.head != nullptr) {
            release_chain(merge_incoming());  // no dead ones outside emit
        }
        if (emitting() || incoming_.head != nullptr) {
            // The array stays put during an emit (and order holds).
            incoming_.push_back(*slot);
            set_settle();
        } else {
            if (worth_compacting()) {
                compact();
            }
            // The only step that can throw; nothing has changed yet.
            entries_.emplace_back();
            slot->hook_.index = entries_.size() - 1;
            EntryOf<Impl, Args...>::fill(*slot, entries_.back());
            note_entries();
        }
        counts_.add(*slot);
        SlotT* raw = slot.get();
        raw->self_ = std::move(slot);
        return handle;
    }

    void emit(const Args&... args) {
        const std::uint64_t before = state_;
        if (WSGUARD_DETAIL_UNLIKELY((before & kStartMask) != 0)) {
            emit_slow(args...);  // nested, work left to settle, or empty
            return;
        }
        // Not emitting, nothing to settle (in particular no incoming
        // listeners: they set kSettle) and at least one entry.
        state_ = before + (kOneEmit + kEmitting);
        try {
            EntryT* e = entries_.data();
            EntryT* const end = e + entries_.size();
            do {
                e->call(e->storage, args...);  // a tombstone's does nothing
            } while (++e != end);
        } catch (...) {
            end_outermost_emit();
            throw;
        }
        // Nested emits only added to the count; a change made during this
        // emit that needs settling set kSettle. Nothing is kept in a
        // register across the calls.
        state_ -= kEmitting;
        if (WSGUARD_DETAIL_UNLIKELY((state_ & kSettleHigh) != 0)) {
            after_outermost_emit();
        }
    }

    /// A handle's disconnect(), the slot not detached: one thread, so the
    /// emitter detaches every slot before its state goes, and while not
    /// detached the state is alive. No weak_ptr::lock (an atomic
    /// compare-exchange once the process has threads). remove() touches
    /// nothing of the emitter after the release that may run user code (a
    /// callable's destructor, which may even destroy the emitter).
    static void disconnect_slot(SlotT& slot) noexcept { slot.hook_.core->remove(slot); }

    /// A handle's connected(), the slot not detached (alive: see
    /// disconnect_slot()).
    static bool slot_connected(const SlotT& slot) noexcept { return SlotCounts::connected(slot); }

    void remove(SlotT& slot) noexcept {
        if (slot.dead_) {
            return;
        }
        counts_.mark_dead(slot);
        ++counts_.unsubscribed;
        if (slot.hook_.index == Hook::kNotInArray) {
            if (emitting()) {
                return;  // the outermost emit's end releases it
            }
            incoming_.unlink(slot);
        } else if (emitting()) {
            tombstone(slot);
            // The running emit may be inside this very callback.
            defer(slot);
            return;
        } else if (slot.hook_.index == entries_.size() - 1) {
            // The newest listener (subscribe, then drop): no tombstone, so
            // this pattern never needs a compaction.
            entries_.pop_back();
            slot.hook_.index = Hook::kNotInArray;
            note_entries();
            give_back_memory();
        } else {
            tombstone(slot);
        }
        // Nothing below touches the emitter: release() may run user code
        // that destroys it (see disconnect_slot()).
        detach(slot);
        release(slot);
    }

    void clear() noexcept {
        if (emitting()) {
            for (EntryT& e : entries_) {
                if (e.slot != nullptr) {
                    SlotT& s = *e.slot;
                    counts_.mark_dead(s);
                    ++counts_.unsubscribed;
                    tombstone(s);
                    defer(s);
                }
            }
            for (SlotT* s = incoming_.head; s != nullptr; s = s->next_) {
                if (!s->dead_) {
                    counts_.mark_dead(*s);
                    ++counts_.unsubscribed;
                }
            }
            return;
        }
        // Detach everything first: releasing a callable may re-enter.
        SlotT* victims = nullptr;
        SlotT** last = &victims;
        for (const EntryT& e : entries_) {
            if (e.slot != nullptr) {
                counts_.mark_dead(*e.slot);
                ++counts_.unsubscribed;
                detach(*e.slot);
                *last = e.slot;  // keeps subscription order for the releases
                last = &e.slot->chain_;
            }
        }
        std::vector<EntryT>().swap(entries_);  // frees the array too
        tombstones_ = 0;
        note_entries();
        while (incoming_.head != nullptr) {
            SlotT* s = incoming_.head;
            incoming_.unlink(*s);
            counts_.mark_dead(*s);
            ++counts_.unsubscribed;
            detach(*s);
            *last = s;
            last = &s->chain_;
        }
        *last = nullptr;
        release_chain(victims);
    }

    std::size_t listener_count() const noexcept {
        std::size_t count = counts_.live;
        if (counts_.tracked_live != 0) {
            for (const EntryT& e : entries_) {
                if (e.slot != nullptr && SlotCounts::expired(*e.slot)) {
                    --count;
                }
            }
            count -= SlotCounts::expired_in(incoming_);
        }
        return count;
    }

    template <class Stats>
    Stats stats() const noexcept {
        return counts_.template snapshot<Stats>(listener_count(), emit_count());
    }

    /// Drops a tracked listener whose owner has expired (it was not called),
    /// from inside the emit that found it.
    WSGUARD_DETAIL_COLD void expire(SlotT& slot) noexcept {
        counts_.mark_dead(slot);
        ++counts_.owner_expired;
        tombstone(slot);
        defer(slot);
    }

private:
    using EntryT = Entry<Args...>;
    using Hook = SlotHook<SingleThreadCore>;

    // state_: the flags and the emit count in one word. An emit with
    // nothing special to do loads, tests and stores it before the loop, and
    // subtracts kEmitting and tests the sign after it; every other case
    // takes emit_slow(). (Measured: a flag byte plus a counter, or a
    // load/store/test after the loop, cost up to 1.7x as much per emit.)
    static constexpr std::uint64_t kEmitting = 1;   // an emit is running
    static constexpr std::uint64_t kNoEntries = 2;  // the array is empty
    static constexpr std::uint64_t kSettleLow = 4;
    static constexpr std::uint64_t kSettleHigh = std::uint64_t{1} << 63;
    // The outermost emit's end has work: two bits set and cleared together,
    // the low one for the test before the loop, the sign bit for the one
    // after it.
    static constexpr std::uint64_t kSettle = kSettleLow | kSettleHigh;
    static constexpr std::uint64_t kStartMask = kEmitting | kNoEntries | kSettleLow;
    static constexpr unsigned kStateBits = 3;  // the count: bits 3 to 62
    static constexpr std::uint64_t kOneEmit = std::uint64_t{1} << kStateBits;

    bool emitting() const noexcept { return (state_ & kEmitting) != 0; }
    void set_settle() noexcept { state_ |= kSettle; }
    std::uint64_t emit_count() const noexcept { return (state_ & ~kSettleHigh) >> kStateBits; }
    /// After any change of the array's size (no emit running).
    void note_entries() noexcept {
        if (entries_.empty()) {
            state_ |= kNoEntries;
        } else {
            state_ &= ~kNoEntries;
        }
    }

    void call_entries(const Args&... args) {
        // Fixed while emitting: nothing is appended, moved or compacted.
        EntryT* const end = entries_.data() + entries_.size();
        for (EntryT* e = entries_.data(); e != end; ++e) {
            e->call(e->storage, args...);  // a tombstone's does nothing
        }
    }

    WSGUARD_DETAIL_COLD void emit_slow(const Args&... args) {
        const bool outermost = !emitting();
        state_ = (state_ + kOneEmit) | kEmitting;
        // Incoming listeners subscribed from here on are not called.
        const std::uint64_t limit = counts_.next_seq;
        try {
            call_entries(args...);
            if (incoming_.head != nullptr) {
                call_incoming(limit, args...);
            }
        } catch (...) {
            if (outermost) {
                end_outermost_emit();
            }
            throw;
        }
        if (outermost) {
            end_outermost_emit();
        }
    }

    WSGUARD_DETAIL_COLD void call_incoming(std::uint64_t limit, const Args&... args) {
        // Only the outermost emit's end unlinks from this list, so next_
        // stays valid; new listeners are appended past `limit`.
        for (SlotT* s = incoming_.head; s != nullptr && s->seq_ < limit; s = s->next_) {
            if (!s->dead_ && !s->call_(s->target_, args...)) {
                counts_.mark_dead(*s);
                ++counts_.owner_expired;
            }
        }
    }

    void end_outermost_emit() noexcept {
        state_ &= ~kEmitting;
        if ((state_ & kSettle) != 0) {
            after_outermost_emit();
        }
    }

    WSGUARD_DETAIL_COLD void after_outermost_emit() noexcept {
        // Settle the structure before releasing any callable: a callable's
        // destructor may re-enter (subscribe, reset, clear, emit).
        state_ &= ~kSettle;
        SlotT* chain = pending_;
        pending_ = nullptr;
        for (SlotT* s = chain; s != nullptr; s = s->chain_) {
            detach(*s);
        }
        if (worth_compacting()) {
            compact();
        }
        SlotT* dead_incoming = merge_incoming();
        if (incoming_.head != nullptr) {
            set_settle();  // could not take them in (out of memory): retry
        }
        release_chain(chain);
        release_chain(dead_incoming);
    }

    /// Moves the incoming listeners into the array (no emit running).
    /// Returns the dead ones, detached, for release. Live ones stay in the
    /// list if the array cannot grow (out of memory): emit still calls them.
    SlotT* merge_incoming() noexcept {
        SlotT* dead = nullptr;
        std::size_t alive = 0;
        for (SlotT* s = incoming_.head; s != nullptr;) {
            SlotT* next = s->next_;
            if (s->dead_) {
                incoming_.unlink(*s);
                detach(*s);
                s->chain_ = dead;
                dead = s;
            } else {
                ++alive;
            }
            s = next;
        }
        if (alive != 0) {
            try {
                entries_.reserve(entries_.size() + alive);
            } catch (...) {
                return dead;
            }
            while (incoming_.head != nullptr) {
                SlotT* s = incoming_.head;
                incoming_.unlink(*s);
                entries_.emplace_back();  // within capacity: cannot throw
                s->hook_.index = entries_.size() - 1;
                s->hook_.fill(*s, entries_.back());
            }
            note_entries();
        }
        return dead;
    }

    void tombstone(SlotT& slot) noexcept {
        EntryT& entry = entries_[slot.hook_.index];
        entry.call = &EntryT::skip;
        entry.slot = nullptr;
        ++tombstones_;
        set_settle();
    }

    void defer(SlotT& slot) noexcept {
        slot.chain_ = pending_;
        pending_ = &slot;
        set_settle();
    }

    bool worth_compacting() const noexcept {
        return tombstones_ != 0 && tombstones_ * 4 >= entries_.size();
    }

    /// Drops the tombstones, keeping order (no emit running), then
    /// give_back_memory().
    void compact() noexcept {
        std::size_t out = 0;
        for (std::size_t i = 0, n = entries_.size(); i < n; ++i) {
            if (entries_[i].slot != nullptr) {
                entries_[i].slot->hook_.index = out;
                if (out != i) {
                    // Bytewise: an inline callable moves with its entry.
                    std::memcpy(static_cast<void*>(&entries_[out]), &entries_[i], sizeof(EntryT));
                }
                ++out;
            }
        }
        entries_.erase(entries_.begin() + static_cast<std::ptrdiff_t>(out), entries_.end());
        tombstones_ = 0;
        note_entries();
        give_back_memory();
    }

    /// Shrinks the array once it is mostly empty (no emit running), so a wave
    /// of listeners that came and went does not pin its peak. Amortised O(1):
    /// each shrink follows at least 3/4 of the capacity's worth of removals.
    void give_back_memory() noexcept {
        if (entries_.capacity() > 64 && entries_.size() < entries_.capacity() / 4) {
            try {
                entries_.shrink_to_fit();
            } catch (...) {
                // Keeping the larger array is fine.
            }
        }
    }

    // What emit reads, together.
    std::uint64_t state_ = kNoEntries;  // emit count and flags (see kStateBits)
    std::vector<EntryT> entries_;
    SlotList<SlotT> incoming_;  // subscribed during an emit; join the array after it
    std::size_t tombstones_ = 0;
    SlotT* pending_ = nullptr;  // removed during emit; released after it
    SlotCounts counts_;
};

}  // namespace detail
}  // namespace wsguard

#undef WSGUARD_DETAIL_COLD
#undef WSGUARD_DETAIL_UNLIKELY
