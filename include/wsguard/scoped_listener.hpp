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
//
// This header is the public face; the machinery lives in emitter/:
// single_thread_core.hpp (Emitter's algorithm), locked_core.hpp (SyncEmitter's
// and any other real lock's), slot.hpp (the subscription record both share)
// and slot_allocator.hpp (the per-thread cache of subscription blocks).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <type_traits>
#include <utility>

#include <wsguard/emitter/locked_core.hpp>
#include <wsguard/emitter/single_thread_core.hpp>
#include <wsguard/emitter/slot.hpp>
#include <wsguard/null_mutex.hpp>

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

template <class Lock, class... Args>
class BasicEmitter;

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
    friend class BasicEmitter;

    explicit ScopedListener(std::shared_ptr<detail::SlotBase> slot) noexcept
        : slot_(std::move(slot)) {}

    std::shared_ptr<detail::SlotBase> slot_;
};

namespace detail {

/// Which algorithm an emitter runs, by its lock, and how the emitter holds
/// it. Any real lock: LockedCore, in a block of its own that the slots
/// refer to through weak_ptrs, which a reset() racing the emitter's
/// destruction may keep alive for a moment.
template <class Lock, class... Args>
struct EmitterCoreFor {
    using Core = LockedCore<Lock, Args...>;
    struct Holder {
        Core& get() noexcept { return *core; }
        const Core& get() const noexcept { return *core; }
        std::shared_ptr<Core> core{new Core};
    };
};

/// NullMutex: SingleThreadCore, held in place. Its slots reach it through a
/// raw pointer that is valid until the emitter detaches them (on clear and
/// destruction), so nothing needs to outlive it, and emit reaches the state
/// without a pointer hop.
template <class... Args>
struct EmitterCoreFor<NullMutex, Args...> {
    using Core = SingleThreadCore<Args...>;
    struct Holder {
        Core& get() noexcept { return core; }
        const Core& get() const noexcept { return core; }
        Core core;
    };
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
    // NullMutex: SingleThreadCore, any other lock: LockedCore.
    using CoreFor = detail::EmitterCoreFor<Lock, Args...>;

public:
    /// Effect: an emitter with no listeners.
    /// Fails: only if memory is exhausted.
    /// Thread safety: n/a.
    /// Exceptions: std::bad_alloc.
    BasicEmitter() = default;

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
        return ScopedListener(
            core().subscribe(std::weak_ptr<const void>(), false, std::forward<F>(f)));
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
        return ScopedListener(core().subscribe(std::weak_ptr<const void>(std::move(owner)), true,
                                               std::forward<F>(f)));
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
    EmitterStats stats() const { return core().template stats<EmitterStats>(); }

private:
    typename CoreFor::Core& core() noexcept { return core_.get(); }
    const typename CoreFor::Core& core() const noexcept { return core_.get(); }

    typename CoreFor::Holder core_;
};

/// For one thread (one io thread): no lock, no atomics on the emit path.
template <class... Args>
using Emitter = BasicEmitter<NullMutex, Args...>;

/// For several threads: every member and every handle may be used from any
/// thread.
template <class... Args>
using SyncEmitter = BasicEmitter<std::mutex, Args...>;

}  // namespace wsguard
