// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// One subscription of an emitter: the record that the emitter's core and the
// ScopedListener handle share (scoped_listener.hpp), and what both cores
// (emitter/single_thread_core.hpp, emitter/locked_core.hpp) do with it alike:
// keep it in a subscription-order list, count it, and let go of it.
#pragma once

#include <wsguard/emitter/slot_allocator.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <utility>

namespace wsguard {
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

/// What a slot keeps for its core's algorithm only (how it reaches the core,
/// where it sits). Each core specialises it in its own header.
template <class Core>
struct SlotHook;

/// One subscription: the record the emitter and the handle share. Fields
/// are guarded by the emitter's lock, except the ones set before the slot is
/// published (call_, target_, tracked_, owner_, the hook's way to the core)
/// and detached_. Core is the algorithm (SingleThreadCore or LockedCore): it
/// says how a handle reaches the emitter (Core::disconnect_slot,
/// Core::slot_connected), once the slot is known not to be detached.
template <class Core, class... Args>
class Slot : public SlotBase {
public:
    /// Calls the callable at `target`; false when a tracked owner has
    /// expired (then nothing was called).
    using Thunk = bool (*)(void* target, const Args&... args);

    virtual void destroy_callable() noexcept = 0;

    void disconnect() noexcept final {
        // Acquire pairs with the release in detach(): everything the slot's
        // last call did happens before the caller's next step. (A failed
        // weak_ptr::lock is only a relaxed read and would not give that.)
        if (detached_.load(std::memory_order_acquire)) {
            return;
        }
        Core::disconnect_slot(*this);
    }

    bool connected() const noexcept final {
        if (detached_.load(std::memory_order_acquire)) {
            return false;
        }
        return Core::slot_connected(*this);
    }

    Thunk call_ = nullptr;  // calls the callable kept in the slot
    void* target_ = nullptr;
    bool dead_ = false;  // unsubscribed; may still be referenced while in use
    bool tracked_ = false;
    Slot* prev_ = nullptr;  // the core's SlotList
    Slot* next_ = nullptr;
    std::uint64_t seq_ = 0;  // subscription order
    SlotHook<Core> hook_;
    Slot* chain_ = nullptr;  // pending-release or release chain
    std::weak_ptr<const void> owner_;
    std::shared_ptr<Slot> self_;         // the emitter's share; dropped on release
    std::atomic<bool> detached_{false};  // the emitter let go of it for good
};

/// A slot holding a callable of type F. The callable lives in the slot (in
/// an optional, so that it can go before the record does); a core may also
/// keep its own copy elsewhere (SingleThreadCore's array entries).
template <class F, class Core, class... Args>
class SlotImpl final : public Slot<Core, Args...> {
public:
    using Callable = F;

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

    /// The callable; only while not destroyed.
    F& callable() noexcept { return *f_; }

    // The handle may keep this record alive for long; what the callable
    // owns (its captures) goes as soon as the emitter lets go of it.
    void destroy_callable() noexcept override { f_.reset(); }

    static bool call_plain(void* target, const Args&... args) {
        (*static_cast<F*>(target))(args...);
        return true;
    }

    /// `target` is the SlotImpl.
    static bool call_tracked(void* target, const Args&... args) {
        SlotImpl& self = *static_cast<SlotImpl*>(target);
        // Held for the duration of the call: the owner cannot die mid-call.
        if (const std::shared_ptr<const void> keep = self.owner_.lock()) {
            (*self.f_)(args...);
            return true;
        }
        return false;
    }

private:
    std::optional<F> f_;
};

/// The emitter lets go of a slot for good, after its last call returned
/// (lock held). The release store is what a handle's reset() acquires.
template <class SlotT>
void detach(SlotT& slot) noexcept {
    slot.detached_.store(true, std::memory_order_release);
}

/// Destroys a detached slot's callable and drops the emitter's share of
/// it, with no lock held: a callable's destructor may re-enter.
template <class SlotT>
void release(SlotT& slot) noexcept {
    slot.destroy_callable();
    const std::shared_ptr<SlotT> victim = std::move(slot.self_);
}

/// Detaches `slot` (lock held) and puts it on `chain`, the slots a core
/// releases together with release_chain() once its lock is dropped.
template <class SlotT>
void detach_onto(SlotT& slot, SlotT*& chain) noexcept {
    detach(slot);
    slot.chain_ = chain;
    chain = &slot;
}

/// A new slot of type Impl holding `f`, from the slot allocator, owned by
/// `owner` (tracked: it drops itself when the owner dies); the core sets its hook.
template <class Impl, class F>
std::shared_ptr<Impl> make_slot(std::weak_ptr<const void> owner, bool tracked, F&& f) {
    std::shared_ptr<Impl> slot =
        std::allocate_shared<Impl>(SlotAllocator<Impl>(), tracked, std::forward<F>(f));
    slot->owner_ = std::move(owner);
    return slot;
}

template <class SlotT>
void release_chain(SlotT* chain) noexcept {
    while (chain != nullptr) {
        SlotT* next = chain->chain_;
        chain->chain_ = nullptr;
        release(*chain);
        chain = next;
    }
}

/// An intrusive doubly-linked list of slots in subscription order, through
/// their prev_/next_: LockedCore's listeners, SingleThreadCore's incoming
/// ones.
template <class SlotT>
struct SlotList {
    SlotT* head = nullptr;
    SlotT* tail = nullptr;

    void push_back(SlotT& slot) noexcept {
        slot.prev_ = tail;
        slot.next_ = nullptr;
        if (tail != nullptr) {
            tail->next_ = &slot;
        } else {
            head = &slot;
        }
        tail = &slot;
    }

    void unlink(SlotT& slot) noexcept {
        if (slot.prev_ != nullptr) {
            slot.prev_->next_ = slot.next_;
        } else {
            head = slot.next_;
        }
        if (slot.next_ != nullptr) {
            slot.next_->prev_ = slot.prev_;
        } else {
            tail = slot.prev_;
        }
        slot.prev_ = slot.next_ = nullptr;
    }
};

/// The counts both cores keep (guarded by the core's lock), and the slot
/// state changes that move them.
struct SlotCounts {
    std::uint64_t next_seq = 0;
    std::size_t live = 0;
    std::size_t tracked_live = 0;
    std::uint64_t subscribed = 0;
    std::uint64_t unsubscribed = 0;
    std::uint64_t owner_expired = 0;

    /// A new subscription: gives it its place in subscription order.
    template <class SlotT>
    void add(SlotT& slot) noexcept {
        slot.seq_ = next_seq++;
        ++live;
        if (slot.tracked_) {
            ++tracked_live;
        }
        ++subscribed;
    }

    template <class SlotT>
    void mark_dead(SlotT& slot) noexcept {
        slot.dead_ = true;
        --live;
        if (slot.tracked_) {
            --tracked_live;
        }
    }

    /// A tracked listener whose owner is gone will not be called.
    template <class SlotT>
    static bool expired(const SlotT& slot) noexcept {
        return !slot.dead_ && slot.tracked_ && slot.owner_.expired();
    }

    template <class SlotT>
    static bool connected(const SlotT& slot) noexcept {
        return !slot.dead_ && !(slot.tracked_ && slot.owner_.expired());
    }

    /// How many listeners of `list` are tracked ones whose owner is gone.
    template <class SlotT>
    static std::size_t expired_in(const SlotList<SlotT>& list) noexcept {
        std::size_t n = 0;
        for (const SlotT* s = list.head; s != nullptr; s = s->next_) {
            if (expired(*s)) {
                ++n;
            }
        }
        return n;
    }

    /// A snapshot of the counts as Stats (EmitterStats: scoped_listener.hpp).
    template <class Stats>
    Stats snapshot(std::size_t listeners, std::uint64_t emits) const noexcept {
        Stats s;
        s.listeners = listeners;
        s.emits = emits;
        s.subscribed = subscribed;
        s.unsubscribed = unsubscribed;
        s.owner_expired = owner_expired;
        return s;
    }
};

}  // namespace detail
}  // namespace wsguard
