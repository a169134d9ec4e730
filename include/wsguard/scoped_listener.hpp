// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// Emitter + ScopedListener: an event source whose subscriptions are RAII
// handles. The classic leak in long-lived servers is a handler registered per
// connection on a shared emitter and never removed; here a subscription is a
// move-only ScopedListener whose destructor unsubscribes, so a handler lives
// exactly as long as the object that owns its handle. Modelled on sigslot's
// signal_base / scoped_connection: the lock is a policy (Emitter for one io
// thread, SyncEmitter for several), listeners run outside the lock, and a
// handle that outlives its emitter is inert.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include <wsguard/emitter/slot_allocator.hpp>
#include <wsguard/null_mutex.hpp>

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

/// Snapshot of an emitter's counters (see BasicEmitter::stats()). They
/// balance: subscribed == unsubscribed + owner_expired + listeners, except
/// that `listeners` already leaves out tracked listeners whose owner has
/// expired but which no emit has dropped yet (so it can be smaller until
/// the next emit).
struct EmitterStats {
    /// Callbacks the next emit would call (equals listener_count()).
    std::size_t listeners = 0;
    /// Calls of emit(), nested ones included.
    std::uint64_t emits = 0;
    /// Successful subscribe() calls.
    std::uint64_t subscribed = 0;
    /// Listeners removed by reset(), a handle's destructor or clear().
    std::uint64_t unsubscribed = 0;
    /// Tracked listeners dropped by emit because their owner had expired.
    std::uint64_t owner_expired = 0;
};

namespace detail {

/// What a ScopedListener points at: the type-erased face of one subscription.
class SlotBase {
public:
    SlotBase() = default;
    SlotBase(const SlotBase&) = delete;
    SlotBase& operator=(const SlotBase&) = delete;
    virtual ~SlotBase() = default;

    virtual void disconnect() noexcept = 0;
    virtual bool connected() const noexcept = 0;
};

template <class Lock, class... Args>
class EmitterCore;

}  // namespace detail

/// RAII subscription handle returned by BasicEmitter::subscribe(): while it
/// is connected, emit() calls its listener; destroying or reset()ting it
/// unsubscribes. One type for every emitter signature and lock policy, so a
/// connection object can hold all of its subscriptions in one container.
/// Move-only; a default-constructed or moved-from handle is empty (inert).
///
/// The handle shares a small per-subscription record with the emitter and
/// refers to the emitter itself only weakly: a handle that outlives its
/// emitter (or whose listener was cleared or dropped) does nothing and
/// touches no freed memory. What the callable owns (its captures) is
/// released as soon as the emitter lets go of the listener, not when the
/// handle dies.
///
/// Thread safety: Distinct objects: Safe. Shared objects: Unsafe. A handle
/// of a SyncEmitter may be reset or destroyed on any thread, concurrently
/// with the emitter's members and with other handles.
class ScopedListener final {
public:
    /// Effect: an empty handle; connected() is false.
    /// Never fails.
    /// Thread safety: n/a.
    /// Exceptions: nothrow.
    ScopedListener() noexcept = default;

    /// Effect: takes over other's subscription; other becomes empty.
    /// Never fails.
    /// Thread safety: as the class.
    /// Exceptions: nothrow.
    ScopedListener(ScopedListener&& other) noexcept : slot_(std::move(other.slot_)) {}

    /// Effect: reset()s this handle first, then takes over other's
    /// subscription; other becomes empty. Self-move does nothing.
    /// Never fails.
    /// Thread safety: as the class; may wait like reset().
    /// Exceptions: nothrow.
    ScopedListener& operator=(ScopedListener&& other) noexcept {
        if (this != &other) {
            reset();
            slot_ = std::move(other.slot_);
        }
        return *this;
    }

    ScopedListener(const ScopedListener&) = delete;
    ScopedListener& operator=(const ScopedListener&) = delete;

    /// Effect: reset().
    /// Never fails.
    /// Thread safety: as reset().
    /// Exceptions: nothrow.
    ~ScopedListener() { reset(); }

    /// Effect: unsubscribes now, in O(1), and empties the handle. Idempotent;
    /// does nothing on an empty handle, after clear(), after the listener
    /// was dropped, or once the emitter is gone. After it, the listener is
    /// never called again, also not by an emit in progress on this thread
    /// that has not reached it yet. Its callable is destroyed before reset()
    /// returns, or later if it may be in use: Emitter, reset during an emit:
    /// when the outermost emit ends; SyncEmitter, a call in flight: when the
    /// emit running it ends.
    /// With SyncEmitter: when reset() returns, the listener is not running on
    /// any other thread and never will again, so the caller may destroy what
    /// it uses. Called from inside the listener itself (on the emitting
    /// thread, also from a nested call), it does not wait for that call: the
    /// call finishes and no later one starts.
    /// Never fails.
    /// Thread safety: Safe against every member of the emitter and its other
    /// handles on other threads. May block until calls of this listener on
    /// other threads return, except calls on threads that are themselves
    /// blocked in reset()/clear() of the same emitter (waiting for those
    /// would deadlock; they return right after). Do not hold, while calling
    /// it, a lock that the listener takes.
    /// Exceptions: nothrow.
    void reset() noexcept {
        // Empty the handle first: disconnecting may run user code (callable
        // destructors) that reaches this handle again.
        const std::shared_ptr<detail::SlotBase> slot = std::move(slot_);
        if (slot) {
            slot->disconnect();
        }
    }

    /// Effect: true while the listener is subscribed; false once reset,
    /// cleared or dropped, once the emitter is gone, and as soon as a tracked
    /// owner has expired (even before an emit drops the listener).
    /// Never fails.
    /// Thread safety: as the class; with other threads at work the answer
    /// may be stale by the time it is used.
    /// Exceptions: nothrow.
    bool connected() const noexcept { return slot_ != nullptr && slot_->connected(); }

    /// Effect: connected().
    /// Never fails.
    /// Thread safety: as connected().
    /// Exceptions: nothrow.
    explicit operator bool() const noexcept { return connected(); }

private:
    template <class, class...>
    friend class detail::EmitterCore;

    explicit ScopedListener(std::shared_ptr<detail::SlotBase> slot) noexcept
        : slot_(std::move(slot)) {}

    std::shared_ptr<detail::SlotBase> slot_;
};

namespace detail {

template <class Lock, class... Args>
class Slot;

/// Room for a callable stored in an Emitter entry itself (like
/// std::function's small-object buffer): two pointers.
inline constexpr std::size_t kInlineSize = 2 * sizeof(void*);

/// Emitter (NullMutex): one listener in the contiguous array that emit
/// walks. slot == nullptr marks a tombstone, whose call does nothing, so
/// emit calls every entry without a test. Trivially copyable, so the array
/// may move entries (only while no emit runs).
template <class Lock, class... Args>
struct Entry {
    /// Calls the callable held in (or pointed to by) `storage`. For a
    /// tracked listener whose owner has expired it calls nothing and has
    /// the emitter drop the listener instead.
    using Thunk = void (*)(void* storage, const Args&... args);
    Thunk call = nullptr;
    Slot<Lock, Args...>* slot = nullptr;
    alignas(void*) unsigned char storage[kInlineSize] = {};

    /// A tombstone's call.
    static void skip(void* /*storage*/, const Args&... /*args*/) noexcept {}
};

/// One subscription: the record the emitter and the handle share. Fields
/// are guarded by the emitter's lock, except the ones set before the slot is
/// published (call_, target_, tracked_, owner_, core_) and detached_.
template <class Lock, class... Args>
class Slot : public SlotBase {
public:
    using Core = EmitterCore<Lock, Args...>;
    /// Calls the callable at `target`; false when a tracked owner has
    /// expired (then nothing was called).
    using Thunk = bool (*)(void* target, const Args&... args);
    static constexpr std::size_t kNotInArray = static_cast<std::size_t>(-1);

    /// Emitter: makes `entry` call this listener. For a small trivially
    /// copyable callable this moves it into the entry.
    virtual void fill_entry(Entry<Lock, Args...>& entry) noexcept = 0;
    virtual void destroy_callable() noexcept = 0;

    void disconnect() noexcept final {
        // Acquire pairs with the release in detach(): everything the slot's
        // last call did happens before the caller's next step. (A failed
        // weak_ptr::lock is only a relaxed read and would not give that.)
        if (detached_.load(std::memory_order_acquire)) {
            return;
        }
        if constexpr (Core::single_thread) {
            // One thread: the emitter detaches every slot before its state goes,
            // so while not detached the state is alive. No weak_ptr::lock (an
            // atomic compare-exchange once the process has threads). remove()
            // touches nothing of the emitter after the release that may run
            // user code (a callable's destructor, which may even destroy the
            // emitter).
            core_raw_->remove(*this);
            return;
        }
        if (const std::shared_ptr<Core> core = core_.lock()) {
            core->remove(*this);
            return;
        }
        // The emitter is gone: it detached every slot before letting go of
        // its state, so this ends at once; it only makes the store visible.
        while (!detached_.load(std::memory_order_acquire)) {
            std::this_thread::yield();
        }
    }

    bool connected() const noexcept final {
        if (detached_.load(std::memory_order_acquire)) {
            return false;
        }
        if constexpr (Core::single_thread) {
            return core_raw_->is_connected(*this);  // alive: see disconnect()
        }
        const std::shared_ptr<Core> core = core_.lock();
        return core != nullptr && core->is_connected(*this);
    }

    Thunk call_ = nullptr;  // calls the callable kept in the slot
    void* target_ = nullptr;
    bool dead_ = false;  // unsubscribed; may still be referenced while in use
    bool tracked_ = false;
    std::size_t index_ = kNotInArray;  // Emitter: position in the array
    Slot* prev_ = nullptr;             // SyncEmitter's list / Emitter's incoming list
    Slot* next_ = nullptr;
    std::uint64_t seq_ = 0;  // subscription order
    std::size_t pins_ = 0;   // SyncEmitter: emit frames positioned here
    Slot* chain_ = nullptr;  // pending-release or release chain
    std::weak_ptr<const void> owner_;
    std::weak_ptr<Core> core_;           // SyncEmitter only
    Core* core_raw_ = nullptr;           // Emitter: valid while not detached_
    std::shared_ptr<Slot> self_;         // the emitter's share; dropped on release
    std::atomic<bool> detached_{false};  // the emitter let go of it for good
};

template <class F, class Lock, class... Args>
class SlotImpl final : public Slot<Lock, Args...> {
    // Bitwise movable and small: may live in the array entry, so emit
    // reaches it without a pointer hop.
    static constexpr bool kStoredInline =
        sizeof(F) <= kInlineSize && alignof(F) <= alignof(void*) && std::is_trivially_copyable_v<F>;

public:
    template <class G>
    SlotImpl(bool tracked, G&& f) : f_(std::in_place, std::forward<G>(f)) {
        this->tracked_ = tracked;
        if (tracked) {
            this->call_ = &SlotImpl::call_tracked;
            this->target_ = static_cast<void*>(this);
        } else {
            this->call_ = &SlotImpl::call_plain;
            this->target_ = static_cast<void*>(std::addressof(*f_));
        }
    }

    void fill_entry(Entry<Lock, Args...>& entry) noexcept override {
        entry.slot = this;
        if (this->tracked_) {
            entry.call = &SlotImpl::entry_tracked;
            store_pointer(entry, this);
        } else if constexpr (kStoredInline) {
            entry.call = &SlotImpl::entry_inline;
            ::new (static_cast<void*>(entry.storage)) F(std::move(*f_));
        } else {
            entry.call = &SlotImpl::entry_indirect;
            store_pointer(entry, std::addressof(*f_));
        }
    }

    // The handle may keep this record alive for long; what the callable
    // owns (its captures) goes as soon as the emitter lets go of it.
    void destroy_callable() noexcept override { f_.reset(); }

private:
    static bool call_plain(void* target, const Args&... args) {
        (*static_cast<F*>(target))(args...);
        return true;
    }

    static bool call_tracked(void* target, const Args&... args) {
        SlotImpl& self = *static_cast<SlotImpl*>(target);
        // Held for the duration of the call: the owner cannot die mid-call.
        if (const std::shared_ptr<const void> keep = self.owner_.lock()) {
            (*self.f_)(args...);
            return true;
        }
        return false;
    }

    static void entry_inline(void* storage, const Args&... args) {
        (*std::launder(static_cast<F*>(storage)))(args...);
    }

    static void entry_indirect(void* storage, const Args&... args) {
        (*static_cast<F*>(load_pointer(storage)))(args...);
    }

    static void entry_tracked(void* storage, const Args&... args) {
        SlotImpl& self = *static_cast<SlotImpl*>(load_pointer(storage));
        if (!call_tracked(&self, args...)) {
            // Emitter only: the core outlives every emit it runs.
            self.core_raw_->expire(self);
        }
    }

    static void* load_pointer(const void* storage) noexcept {
        void* target = nullptr;
        std::memcpy(&target, storage, sizeof target);
        return target;
    }

    static void store_pointer(Entry<Lock, Args...>& entry, void* target) noexcept {
        std::memcpy(entry.storage, &target, sizeof target);
    }

    std::optional<F> f_;
};

/// Stands in for a condition variable under NullMutex: nothing ever waits.
struct NoCondition {};

/// The emitter's state. Emitter (NullMutex) holds it in place and its slots
/// point at it until it detaches them; SyncEmitter shares it with its slots
/// through weak_ptrs. Either way a handle that outlives the emitter finds a
/// detached slot and does nothing.
///
/// Emitter (NullMutex) keeps listeners in a contiguous array of entries in
/// subscription order, small callables stored in the entry itself, so emit
/// is a loop like one over std::vector<std::function>. The array never
/// changes size during an emit, so emit holds on to it: a listener
/// subscribed meanwhile waits in an "incoming" list (called by nested emits
/// that start after it, in order) and joins the array when the outermost
/// emit ends. Removal of the last entry outside an emit pops it; any other
/// removal turns the entry into a tombstone in O(1), and the array is
/// compacted, stably, only while no emit runs and once tombstones are a
/// quarter of it, which is O(1) amortised per removal.
///
/// SyncEmitter keeps an intrusive doubly-linked list in subscription order:
/// unlinking is O(1) and never reorders, and concurrent emits never need a
/// quiescent moment to compact anything (with emits always running on some
/// thread, that moment might never come and tombstones would pile up).
template <class Lock, class... Args>
class EmitterCore : public std::enable_shared_from_this<EmitterCore<Lock, Args...>> {
public:
    using SlotT = Slot<Lock, Args...>;
    static constexpr bool single_thread = std::is_same_v<Lock, NullMutex>;

    EmitterCore() = default;
    EmitterCore(const EmitterCore&) = delete;
    EmitterCore& operator=(const EmitterCore&) = delete;

    ~EmitterCore() {
        // Normally empty already (the emitter clears on destruction); this
        // covers a SyncEmitter core whose last owner was an in-flight
        // disconnect.
        SlotT* chain = nullptr;
        if constexpr (single_thread) {
            for (const EntryT& e : entries_) {
                if (e.slot != nullptr) {
                    detach(*e.slot);
                    e.slot->chain_ = chain;
                    chain = e.slot;
                }
            }
            entries_.clear();
            while (head_ != nullptr) {
                SlotT* s = head_;
                unlink(*s);
                detach(*s);
                s->chain_ = chain;
                chain = s;
            }
            // Only if destroyed during its own emit (not allowed): still
            // leave no handle waiting for a detach that never comes.
            while (pending_ != nullptr) {
                SlotT* s = pending_;
                pending_ = s->chain_;
                detach(*s);
                s->chain_ = chain;
                chain = s;
            }
        } else {
            while (head_ != nullptr) {
                SlotT* s = head_;
                unlink(*s);
                detach(*s);
                s->chain_ = chain;
                chain = s;
            }
        }
        release_chain(chain);
    }

    template <class F>
    ScopedListener subscribe(std::weak_ptr<const void> owner, bool tracked, F&& f) {
        using Impl = SlotImpl<std::decay_t<F>, Lock, Args...>;
        std::shared_ptr<SlotT> slot =
            std::allocate_shared<Impl>(SlotAllocator<Impl>(), tracked, std::forward<F>(f));
        slot->owner_ = std::move(owner);
        if constexpr (!single_thread) {
            slot->core_ = this->weak_from_this();
        }
        slot->core_raw_ = this;
        std::shared_ptr<SlotBase> handle = slot;
        {
            const std::lock_guard<Lock> guard(mutex_);
            if constexpr (single_thread) {
                if (!emitting() && head_ != nullptr) {
                    release_chain(merge_incoming());  // no dead ones outside emit
                }
                if (emitting() || head_ != nullptr) {
                    // The array stays put during an emit (and order holds).
                    slot->seq_ = next_seq_++;
                    link_at_tail(*slot);
                    set_settle();
                } else {
                    if (worth_compacting()) {
                        compact();
                    }
                    // The only step that can throw; nothing has changed yet.
                    entries_.emplace_back();
                    slot->seq_ = next_seq_++;
                    slot->index_ = entries_.size() - 1;
                    slot->fill_entry(entries_.back());
                    note_entries();
                }
            } else {
                slot->seq_ = next_seq_++;
                link_at_tail(*slot);
            }
            ++live_;
            if (tracked) {
                ++tracked_live_;
            }
            ++subscribed_;
            SlotT* raw = slot.get();
            raw->self_ = std::move(slot);
        }
        return ScopedListener(std::move(handle));
    }

    void emit(const Args&... args) {
        if constexpr (single_thread) {
            emit_single(args...);
        } else {
            emit_sync(args...);
        }
    }

    void remove(SlotT& slot) noexcept {
        if constexpr (single_thread) {
            if (slot.dead_) {
                return;
            }
            mark_dead(slot);
            ++unsubscribed_;
            if (slot.index_ == SlotT::kNotInArray) {
                if (emitting()) {
                    return;  // the outermost emit's end releases it
                }
                unlink(slot);
            } else if (emitting()) {
                tombstone(slot);
                // The running emit may be inside this very callback.
                defer(slot);
                return;
            } else if (slot.index_ == entries_.size() - 1) {
                // The newest listener (subscribe, then drop): no tombstone, so
                // this pattern never needs a compaction.
                entries_.pop_back();
                slot.index_ = SlotT::kNotInArray;
                note_entries();
                give_back_memory();
            } else {
                tombstone(slot);
            }
            // Nothing below touches the emitter: release() may run user code
            // that destroys it (see Slot::disconnect()).
            detach(slot);
            release(slot);
        } else {
            bool detached = false;
            std::unique_lock<Lock> lock(mutex_);
            if (!slot.dead_) {
                mark_dead(slot);
                ++unsubscribed_;
                if (slot.pins_ == 0) {
                    unlink(slot);
                    detach(slot);
                    detached = true;
                }
            }
            if (slot.pins_ != 0) {
                wait_for_others(lock, [&slot](const Frame& f) { return f.slot == &slot; });
            }
            lock.unlock();
            if (detached) {
                release(slot);
            }
        }
    }

    void clear() noexcept {
        SlotT* victims = nullptr;
        if constexpr (single_thread) {
            if (emitting()) {
                for (EntryT& e : entries_) {
                    if (e.slot != nullptr) {
                        SlotT& s = *e.slot;
                        mark_dead(s);
                        ++unsubscribed_;
                        tombstone(s);
                        defer(s);
                    }
                }
                for (SlotT* s = head_; s != nullptr; s = s->next_) {
                    if (!s->dead_) {
                        mark_dead(*s);
                        ++unsubscribed_;
                    }
                }
                return;
            }
            // Detach everything first: releasing a callable may re-enter.
            SlotT** last = &victims;
            for (const EntryT& e : entries_) {
                if (e.slot != nullptr) {
                    mark_dead(*e.slot);
                    ++unsubscribed_;
                    detach(*e.slot);
                    *last = e.slot;  // keeps subscription order for the releases
                    last = &e.slot->chain_;
                }
            }
            std::vector<EntryT>().swap(entries_);  // frees the array too
            tombstones_ = 0;
            note_entries();
            while (head_ != nullptr) {
                SlotT* s = head_;
                unlink(*s);
                mark_dead(*s);
                ++unsubscribed_;
                detach(*s);
                *last = s;
                last = &s->chain_;
            }
            *last = nullptr;
        } else {
            std::unique_lock<Lock> lock(mutex_);
            for (SlotT* s = head_; s != nullptr;) {
                SlotT* next = s->next_;
                if (!s->dead_) {
                    mark_dead(*s);
                    ++unsubscribed_;
                }
                if (s->pins_ == 0) {
                    unlink(*s);
                    detach(*s);
                    s->chain_ = victims;
                    victims = s;
                }
                s = next;
            }
            wait_for_others(lock,
                            [](const Frame& f) { return f.slot != nullptr && f.slot->dead_; });
            lock.unlock();
        }
        release_chain(victims);
    }

    bool is_connected(const SlotT& slot) const noexcept {
        const std::lock_guard<Lock> guard(mutex_);
        return !slot.dead_ && !(slot.tracked_ && slot.owner_.expired());
    }

    std::size_t listener_count() const {
        const std::lock_guard<Lock> guard(mutex_);
        return listener_count_locked();
    }

    EmitterStats stats() const {
        const std::lock_guard<Lock> guard(mutex_);
        EmitterStats s;
        s.listeners = listener_count_locked();
        s.emits = emit_count();
        s.subscribed = subscribed_;
        s.unsubscribed = unsubscribed_;
        s.owner_expired = owner_expired_;
        return s;
    }

private:
    using EntryT = Entry<Lock, Args...>;

    /// SyncEmitter: one emit in progress on some thread. Lives on that
    /// thread's stack and is linked into frames_ (lock held) for as long as
    /// the emit runs; leaving it (normally or by a listener's exception)
    /// unpins the current slot, unlinks the frame, then releases what the
    /// frame detached.
    class Frame {
    public:
// GCC 12+ flags storing a local's address in a longer-lived object even
// though the destructor unlinks it before the local dies.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdangling-pointer"
#endif
        Frame(EmitterCore& core, std::unique_lock<Lock>& lock) noexcept
            : core_(core), lock_(lock), thread(std::this_thread::get_id()) {
            next = core_.frames_;
            if (next != nullptr) {
                next->prev = this;
            }
            core_.frames_ = this;
        }
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#pragma GCC diagnostic pop
#endif
        Frame(const Frame&) = delete;
        Frame& operator=(const Frame&) = delete;
        ~Frame() {
            if (!lock_.owns_lock()) {
                lock_.lock();
            }
            core_.position(*this, nullptr);
            if (prev != nullptr) {
                prev->next = next;
            } else {
                core_.frames_ = next;
            }
            if (next != nullptr) {
                next->prev = prev;
            }
            SlotT* chain = released;
            lock_.unlock();
            release_chain(chain);
        }

    private:
        EmitterCore& core_;
        std::unique_lock<Lock>& lock_;

    public:
        const std::thread::id thread;
        SlotT* slot = nullptr;  // positioned here (pinned), or none
        SlotT* released = nullptr;
        Frame* prev = nullptr;
        Frame* next = nullptr;
    };

    /// SyncEmitter: a thread blocked in reset()/clear(); others do not wait
    /// for it.
    struct Waiter {
        std::thread::id thread;
        Waiter* next = nullptr;
    };

    using Condition = std::conditional_t<
        single_thread, NoCondition,
        std::conditional_t<std::is_same_v<Lock, std::mutex>, std::condition_variable,
                           std::condition_variable_any>>;

    // --- one thread (NullMutex) -------------------------------------------

    // state_: Emitter's flags and the emit count in one word. An emit with
    // nothing special to do loads, tests and stores it before the loop, and
    // subtracts kEmitting and tests the sign after it; every other case
    // takes emit_single_slow(). (Measured: a flag byte plus a counter, or a
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

    bool emitting() const noexcept {
        return (state_ & kEmitting) != 0;
    }
    void set_settle() noexcept {
        state_ |= kSettle;
    }
    std::uint64_t emit_count() const noexcept {
        return (state_ & ~kSettleHigh) >> kStateBits;
    }
    /// After any change of the array's size (no emit running).
    void note_entries() noexcept {
        if (entries_.empty()) {
            state_ |= kNoEntries;
        } else {
            state_ &= ~kNoEntries;
        }
    }

    void emit_single(const Args&... args) {
        const std::uint64_t before = state_;
        if (WSGUARD_DETAIL_UNLIKELY((before & kStartMask) != 0)) {
            emit_single_slow(args...);  // nested, work left to settle, or empty
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

    void call_entries(const Args&... args) {
        // Fixed while emitting: nothing is appended, moved or compacted.
        EntryT* const end = entries_.data() + entries_.size();
        for (EntryT* e = entries_.data(); e != end; ++e) {
            e->call(e->storage, args...);  // a tombstone's does nothing
        }
    }

    WSGUARD_DETAIL_COLD void emit_single_slow(const Args&... args) {
        const bool outermost = !emitting();
        state_ = (state_ + kOneEmit) | kEmitting;
        // Incoming listeners subscribed from here on are not called.
        const std::uint64_t limit = next_seq_;
        try {
            call_entries(args...);
            if (head_ != nullptr) {
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

public:
    /// Emitter: drops a tracked listener whose owner has expired (it was
    /// not called), from inside the emit that found it.
    WSGUARD_DETAIL_COLD void expire(SlotT& slot) noexcept {
        mark_dead(slot);
        ++owner_expired_;
        tombstone(slot);
        defer(slot);
    }

private:
    WSGUARD_DETAIL_COLD void call_incoming(std::uint64_t limit, const Args&... args) {
        // Only the outermost emit's end unlinks from this list, so next_
        // stays valid; new listeners are appended past `limit`.
        for (SlotT* s = head_; s != nullptr && s->seq_ < limit; s = s->next_) {
            if (!s->dead_ && !s->call_(s->target_, args...)) {
                mark_dead(*s);
                ++owner_expired_;
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
        if (head_ != nullptr) {
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
        for (SlotT* s = head_; s != nullptr;) {
            SlotT* next = s->next_;
            if (s->dead_) {
                unlink(*s);
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
            while (head_ != nullptr) {
                SlotT* s = head_;
                unlink(*s);
                entries_.emplace_back();  // within capacity: cannot throw
                s->index_ = entries_.size() - 1;
                s->fill_entry(entries_.back());
            }
            note_entries();
        }
        return dead;
    }

    void tombstone(SlotT& slot) noexcept {
        EntryT& entry = entries_[slot.index_];
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
                entries_[i].slot->index_ = out;
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

    // --- several threads ----------------------------------------------------

    void emit_sync(const Args&... args) {
        std::unique_lock<Lock> lock(mutex_);
        state_ += kOneEmit;
        const std::uint64_t limit = next_seq_;
        Frame frame(*this, lock);
        position(frame, first_live(head_, limit));
        lock.unlock();
        // frame.slot is pinned: it stays linked (and its next_ valid) until
        // this frame moves on, whoever unsubscribes it meanwhile.
        while (SlotT* s = frame.slot) {
            const bool called = s->call_(s->target_, args...);
            lock.lock();
            if (!called && !s->dead_) {
                mark_dead(*s);
                ++owner_expired_;
            }
            position(frame, first_live(s->next_, limit));
            lock.unlock();
        }
    }

    static SlotT* first_live(SlotT* s, std::uint64_t limit) noexcept {
        while (s != nullptr && s->seq_ < limit && s->dead_) {
            s = s->next_;
        }
        return s != nullptr && s->seq_ < limit ? s : nullptr;
    }

    /// Moves a frame to `next` (lock held). A dead slot nobody is positioned
    /// on any more is detached and queued for release by this frame.
    void position(Frame& frame, SlotT* next) noexcept {
        if (SlotT* old = frame.slot) {
            --old->pins_;
            if (old->dead_) {
                if (old->pins_ == 0) {
                    unlink(*old);
                    detach(*old);
                    old->chain_ = frame.released;
                    frame.released = old;
                }
                if (waiters_ != nullptr) {
                    cv_.notify_all();
                }
            }
        }
        frame.slot = next;
        if (next != nullptr) {
            ++next->pins_;
        }
    }

    bool is_waiting(std::thread::id thread) const noexcept {
        for (const Waiter* w = waiters_; w != nullptr; w = w->next) {
            if (w->thread == thread) {
                return true;
            }
        }
        return false;
    }

    /// Blocks (lock held) until no frame of another thread matches
    /// `blocking`. Frames of this thread are our own callers: waiting for
    /// them would deadlock. Frames of threads themselves waiting here are
    /// skipped too, which breaks wait cycles between threads.
    template <class Blocking>
    void wait_for_others(std::unique_lock<Lock>& lock, Blocking blocking) noexcept {
        const std::thread::id me = std::this_thread::get_id();
        auto busy = [&] {
            for (const Frame* f = frames_; f != nullptr; f = f->next) {
                if (f->thread != me && blocking(*f) && !is_waiting(f->thread)) {
                    return true;
                }
            }
            return false;
        };
        if (!busy()) {
            return;
        }
        Waiter self;
        self.thread = me;
        self.next = waiters_;
        const bool others_waiting = waiters_ != nullptr;
        waiters_ = &self;
        if (others_waiting) {
            // They may be waiting for us: let them re-check.
            cv_.notify_all();
        }
        while (busy()) {
            cv_.wait(lock);
        }
        Waiter** link = &waiters_;
        while (*link != &self) {
            link = &(*link)->next;
        }
        *link = self.next;
    }

    // --- shared -------------------------------------------------------------

    void mark_dead(SlotT& slot) noexcept {
        slot.dead_ = true;
        --live_;
        if (slot.tracked_) {
            --tracked_live_;
        }
    }

    /// Appends to the list: SyncEmitter's listeners, Emitter's incoming.
    void link_at_tail(SlotT& slot) noexcept {
        slot.prev_ = tail_;
        slot.next_ = nullptr;
        if (tail_ != nullptr) {
            tail_->next_ = &slot;
        } else {
            head_ = &slot;
        }
        tail_ = &slot;
    }

    void unlink(SlotT& slot) noexcept {
        if (slot.prev_ != nullptr) {
            slot.prev_->next_ = slot.next_;
        } else {
            head_ = slot.next_;
        }
        if (slot.next_ != nullptr) {
            slot.next_->prev_ = slot.prev_;
        } else {
            tail_ = slot.prev_;
        }
        slot.prev_ = slot.next_ = nullptr;
    }

    /// The emitter lets go of a slot for good, after its last call returned
    /// (lock held). The release store is what a handle's reset() acquires.
    static void detach(SlotT& slot) noexcept {
        slot.detached_.store(true, std::memory_order_release);
    }

    /// Destroys a detached slot's callable and drops the emitter's share of
    /// it, with no lock held: a callable's destructor may re-enter.
    static void release(SlotT& slot) noexcept {
        slot.destroy_callable();
        const std::shared_ptr<SlotT> victim = std::move(slot.self_);
    }

    static void release_chain(SlotT* chain) noexcept {
        while (chain != nullptr) {
            SlotT* next = chain->chain_;
            chain->chain_ = nullptr;
            release(*chain);
            chain = next;
        }
    }

    std::size_t listener_count_locked() const noexcept {
        std::size_t count = live_;
        if (tracked_live_ != 0) {
            // A tracked listener whose owner is gone will not be called.
            auto expired = [](const SlotT& s) {
                return !s.dead_ && s.tracked_ && s.owner_.expired();
            };
            if constexpr (single_thread) {
                for (const EntryT& e : entries_) {
                    if (e.slot != nullptr && expired(*e.slot)) {
                        --count;
                    }
                }
            }
            for (const SlotT* s = head_; s != nullptr; s = s->next_) {
                if (expired(*s)) {
                    --count;
                }
            }
        }
        return count;
    }

    // What Emitter's emit reads, together.
    std::uint64_t state_ = kNoEntries;  // emit count and flags (see kStateBits)
    std::vector<EntryT> entries_;       // Emitter (NullMutex)
    mutable Lock mutex_;
    Condition cv_;
    // The list: SyncEmitter's listeners; Emitter's incoming ones.
    SlotT* head_ = nullptr;
    SlotT* tail_ = nullptr;
    // Emitter (NullMutex)
    std::size_t tombstones_ = 0;
    SlotT* pending_ = nullptr;  // removed during emit; released after it
    // SyncEmitter
    Frame* frames_ = nullptr;
    Waiter* waiters_ = nullptr;
    // both
    std::uint64_t next_seq_ = 0;
    std::size_t live_ = 0;
    std::size_t tracked_live_ = 0;
    std::uint64_t subscribed_ = 0;
    std::uint64_t unsubscribed_ = 0;
    std::uint64_t owner_expired_ = 0;
};

}  // namespace detail

/// An event source: emit(args...) calls every subscribed listener in
/// subscription order. A subscription is a ScopedListener handle; dropping
/// the handle unsubscribes in O(1). Emitting allocates nothing in steady
/// state. While being called, a listener may reset its own or other handles,
/// subscribe new listeners, clear() and emit recursively. A listener may
/// track a weak_ptr owner: it is kept alive during each call, and the
/// listener is dropped once the owner has expired.
///
/// Lock is the policy: NullMutex (alias Emitter) for one thread such as one
/// io thread, std::mutex (alias SyncEmitter) or another Lockable for several.
/// Listeners are always called outside the lock. Emitter's emit is a loop
/// over a contiguous array with one indirect call per listener (small,
/// trivially copyable callables are stored in the array itself, as
/// std::function does), with no atomics and no locks. SyncEmitter takes its
/// lock once per listener per emit and may call one listener from several
/// emitting threads at once.
///
/// Non-copyable and non-movable, because handles refer to it. Destroying it
/// clears it: every handle becomes inert. It must not be destroyed from
/// inside one of its own listeners, nor while another thread is inside one
/// of its members.
///
/// Thread safety: Distinct objects: Safe. Shared objects: Unsafe with
/// NullMutex (Emitter); Safe with std::mutex (SyncEmitter) or another real
/// lock, for every member and every handle.
template <class Lock, class... Args>
class BasicEmitter {
    using Core = detail::EmitterCore<Lock, Args...>;
    // Emitter keeps its state in place: its slots reach it through a raw
    // pointer that is valid until the emitter detaches them (on clear and
    // destruction), so nothing needs to outlive it, and emit reaches the
    // state without a pointer hop. SyncEmitter's slots hold weak_ptrs to a
    // separately owned state instead, which a reset() racing the emitter's
    // destruction may keep alive for a moment.
    using CoreHolder = std::conditional_t<Core::single_thread, Core, std::shared_ptr<Core>>;

public:
    /// Effect: an emitter with no listeners.
    /// Fails: only if memory is exhausted.
    /// Thread safety: n/a.
    /// Exceptions: std::bad_alloc.
    BasicEmitter() {
        if constexpr (!Core::single_thread) {
            core_.reset(new Core);
        }
    }

    /// Effect: clear(); the handles become inert.
    /// Never fails.
    /// Thread safety: no other thread may be using the emitter.
    /// Exceptions: nothrow.
    ~BasicEmitter() { core().clear(); }

    BasicEmitter(const BasicEmitter&) = delete;
    BasicEmitter& operator=(const BasicEmitter&) = delete;
    BasicEmitter(BasicEmitter&&) = delete;
    BasicEmitter& operator=(BasicEmitter&&) = delete;

    /// Effect: appends f (decay-copied; move-only callables are fine) to the
    /// listeners and returns the handle that owns the subscription. f must be
    /// callable with (const Args&...) or (Args...); its result is ignored.
    /// A listener subscribed during an emit is not called by that emit; it
    /// is called by every emit that starts after subscribe() returns, nested
    /// ones included.
    /// Fails: only if memory is exhausted (one allocation, plus amortised
    /// growth of the listener array).
    /// Thread safety: as the class; may be called from inside a listener.
    /// Exceptions: strong; std::bad_alloc, or whatever copying/moving f
    /// throws.
    template <class F>
    [[nodiscard]] ScopedListener subscribe(F&& f) {
        static_assert(std::is_invocable_v<std::decay_t<F>&, const Args&...>,
                      "wsguard::BasicEmitter::subscribe: the listener must be callable with the "
                      "emitter's arguments (const Args&...)");
        return core().subscribe(std::weak_ptr<const void>(), false, std::forward<F>(f));
    }

    /// Effect: as subscribe(f), tracking owner: each call of f holds a
    /// shared_ptr to owner for its duration (owner cannot die mid-call); once
    /// owner has expired, f is never called again and the next emit drops
    /// the listener (counted in stats().owner_expired). From the moment owner
    /// expires, the handle reports !connected() and listener_count() leaves
    /// the listener out. An owner already expired (or empty) at subscribe
    /// yields a listener that is never called.
    /// Fails: only if memory is exhausted.
    /// Thread safety: as the class; may be called from inside a listener.
    /// Exceptions: strong; std::bad_alloc, or whatever copying/moving f
    /// throws.
    template <class Owner, class F>
    [[nodiscard]] ScopedListener subscribe(std::weak_ptr<Owner> owner, F&& f) {
        static_assert(std::is_invocable_v<std::decay_t<F>&, const Args&...>,
                      "wsguard::BasicEmitter::subscribe: the listener must be callable with the "
                      "emitter's arguments (const Args&...)");
        return core().subscribe(std::weak_ptr<const void>(std::move(owner)), true,
                                std::forward<F>(f));
    }

    /// Effect: calls, in subscription order and with args (by const
    /// reference), every listener that was subscribed when this emit started
    /// and is still subscribed when its turn comes. Tracked listeners whose
    /// owner has expired are dropped instead of called. Allocates nothing
    /// (once at its end if listeners subscribed during it, to take them in).
    /// Fails: never by itself.
    /// Thread safety: as the class; listeners run outside the lock and may
    /// call any member of this emitter, emit() included.
    /// Exceptions: whatever a listener throws propagates at once and the
    /// rest of this emit's listeners are not called; the emitter stays
    /// consistent and usable (basic guarantee).
    void emit(const Args&... args) { core().emit(args...); }

    /// Effect: the number of listeners the next emit would call if nothing
    /// changed meanwhile: those subscribed, minus tracked ones whose owner
    /// has expired. O(1) while no tracked listener is subscribed, else
    /// O(listeners).
    /// Never fails.
    /// Thread safety: as the class.
    /// Exceptions: nothrow.
    std::size_t listener_count() const { return core().listener_count(); }

    /// Effect: unsubscribes every listener (counted in stats().unsubscribed)
    /// and releases their callables as reset() does; their handles become
    /// inert. Called during an emit, the listeners that emit has not reached
    /// yet are not called.
    /// Never fails.
    /// Thread safety: as the class; with a real lock it may block like
    /// reset() until running calls on other threads return.
    /// Exceptions: nothrow.
    void clear() { core().clear(); }

    /// Effect: a snapshot of every count (see EmitterStats).
    /// Never fails.
    /// Thread safety: as the class.
    /// Exceptions: nothrow.
    EmitterStats stats() const { return core().stats(); }

private:
    Core& core() noexcept {
        if constexpr (Core::single_thread) {
            return core_;
        } else {
            return *core_;
        }
    }
    const Core& core() const noexcept {
        if constexpr (Core::single_thread) {
            return core_;
        } else {
            return *core_;
        }
    }

    CoreHolder core_;
};

/// For one thread (one io thread): no lock, no atomics on the emit path.
template <class... Args>
using Emitter = BasicEmitter<NullMutex, Args...>;

/// For several threads: every member and every handle may be used from any
/// thread.
template <class... Args>
using SyncEmitter = BasicEmitter<std::mutex, Args...>;

}  // namespace wsguard

#undef WSGUARD_DETAIL_COLD
#undef WSGUARD_DETAIL_UNLIKELY
