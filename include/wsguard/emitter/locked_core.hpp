// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// LockedCore: the algorithm behind SyncEmitter (BasicEmitter<std::mutex,
// ...>, scoped_listener.hpp) and any other emitter with a real lock — every
// member and every handle may be used from any thread; listeners run
// outside the lock, and reset()/clear() wait for calls in flight on other
// threads.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>
#include <utility>

#include <wsguard/emitter/slot.hpp>

namespace wsguard {
namespace detail {

template <class Lock, class... Args>
class LockedCore;

/// What a slot of a LockedCore keeps of it.
template <class Lock, class... Args>
struct SlotHook<LockedCore<Lock, Args...>> {
    std::size_t pins = 0;                           // emit frames positioned here
    std::weak_ptr<LockedCore<Lock, Args...>> core;  // expires with the emitter
};

/// SyncEmitter's state (and that of any emitter with a real lock). The
/// emitter owns it through a shared_ptr and its slots refer to it through
/// weak_ptrs, so a handle that outlives the emitter finds a detached slot
/// and does nothing.
///
/// Listeners are kept in an intrusive doubly-linked list in subscription
/// order: unlinking is O(1) and never reorders, and concurrent emits never
/// need a quiescent moment to compact anything (with emits always running
/// on some thread, that moment might never come and tombstones would pile
/// up).
template <class Lock, class... Args>
class LockedCore : public std::enable_shared_from_this<LockedCore<Lock, Args...>> {
public:
    using SlotT = Slot<LockedCore, Args...>;

    LockedCore() = default;
    LockedCore(const LockedCore&) = delete;
    LockedCore& operator=(const LockedCore&) = delete;

    ~LockedCore() {
        // Normally empty already (the emitter clears on destruction); this
        // covers a core whose last owner was an in-flight disconnect.
        SlotT* chain = nullptr;
        while (list_.head != nullptr) {
            SlotT* s = list_.head;
            list_.unlink(*s);
            detach_onto(*s, chain);
        }
        release_chain(chain);
    }

    /// Returns the handle's share of the new slot.
    template <class F>
    std::shared_ptr<SlotBase> subscribe(std::weak_ptr<const void> owner, bool tracked, F&& f) {
        using Impl = SlotImpl<std::decay_t<F>, LockedCore, Args...>;
        std::shared_ptr<SlotT> slot =
            make_slot<Impl>(std::move(owner), tracked, std::forward<F>(f));
        slot->hook_.core = this->weak_from_this();
        std::shared_ptr<SlotBase> handle = slot;
        {
            const std::lock_guard<Lock> guard(mutex_);
            counts_.add(*slot);
            list_.push_back(*slot);
            SlotT* raw = slot.get();
            raw->self_ = std::move(slot);
        }
        return handle;
    }

    void emit(const Args&... args) {
        std::unique_lock<Lock> lock(mutex_);
        emits_ += 1;
        const std::uint64_t limit = counts_.next_seq;
        Frame frame(*this, lock);
        position(frame, first_live(list_.head, limit));
        lock.unlock();
        // frame.slot is pinned: it stays linked (and its next_ valid) until
        // this frame moves on, whoever unsubscribes it meanwhile.
        while (SlotT* s = frame.slot) {
            const bool called = s->call_(s->target_, args...);
            lock.lock();
            if (!called && !s->dead_) {
                counts_.mark_dead(*s);
                ++counts_.owner_expired;
            }
            position(frame, first_live(s->next_, limit));
            lock.unlock();
        }
    }

    /// A handle's disconnect(), the slot not detached.
    static void disconnect_slot(SlotT& slot) noexcept {
        if (const std::shared_ptr<LockedCore> core = slot.hook_.core.lock()) {
            core->remove(slot);
            return;
        }
        // The emitter is gone: it detached every slot before letting go of
        // its state, so this ends at once; it only makes the store visible.
        while (!slot.detached_.load(std::memory_order_acquire)) {
            std::this_thread::yield();
        }
    }

    /// A handle's connected(), the slot not detached.
    static bool slot_connected(const SlotT& slot) noexcept {
        const std::shared_ptr<LockedCore> core = slot.hook_.core.lock();
        return core != nullptr && core->is_connected(slot);
    }

    void remove(SlotT& slot) noexcept {
        bool detached = false;
        std::unique_lock<Lock> lock(mutex_);
        if (!slot.dead_) {
            counts_.mark_dead(slot);
            ++counts_.unsubscribed;
            if (slot.hook_.pins == 0) {
                list_.unlink(slot);
                detach(slot);
                detached = true;
            }
        }
        if (slot.hook_.pins != 0) {
            wait_for_others(lock, [&slot](const Frame& f) { return f.slot == &slot; });
        }
        lock.unlock();
        if (detached) {
            release(slot);
        }
    }

    void clear() noexcept {
        SlotT* victims = nullptr;
        std::unique_lock<Lock> lock(mutex_);
        for (SlotT* s = list_.head; s != nullptr;) {
            SlotT* next = s->next_;
            if (!s->dead_) {
                counts_.mark_dead(*s);
                ++counts_.unsubscribed;
            }
            if (s->hook_.pins == 0) {
                list_.unlink(*s);
                detach(*s);
                s->chain_ = victims;
                victims = s;
            }
            s = next;
        }
        wait_for_others(lock, [](const Frame& f) { return f.slot != nullptr && f.slot->dead_; });
        lock.unlock();
        release_chain(victims);
    }

    bool is_connected(const SlotT& slot) const noexcept {
        const std::lock_guard<Lock> guard(mutex_);
        return SlotCounts::connected(slot);
    }

    std::size_t listener_count() const {
        const std::lock_guard<Lock> guard(mutex_);
        return listener_count_locked();
    }

    template <class Stats>
    Stats stats() const {
        const std::lock_guard<Lock> guard(mutex_);
        return counts_.template snapshot<Stats>(listener_count_locked(), emits_);
    }

private:
    /// One emit in progress on some thread. Lives on that thread's stack and
    /// is linked into frames_ (lock held) for as long as the emit runs;
    /// leaving it (normally or by a listener's exception) unpins the current
    /// slot, unlinks the frame, then releases what the frame detached.
    class Frame {
    public:
// GCC 12+ flags storing a local's address in a longer-lived object even
// though the destructor unlinks it before the local dies.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdangling-pointer"
#endif
        Frame(LockedCore& core, std::unique_lock<Lock>& lock) noexcept
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
        LockedCore& core_;
        std::unique_lock<Lock>& lock_;

    public:
        const std::thread::id thread;
        SlotT* slot = nullptr;  // positioned here (pinned), or none
        SlotT* released = nullptr;
        Frame* prev = nullptr;
        Frame* next = nullptr;
    };

    /// A thread blocked in reset()/clear(); others do not wait for it.
    struct Waiter {
        std::thread::id thread;
        Waiter* next = nullptr;
    };

    using Condition = std::conditional_t<std::is_same_v<Lock, std::mutex>, std::condition_variable,
                                         std::condition_variable_any>;

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
            --old->hook_.pins;
            if (old->dead_) {
                if (old->hook_.pins == 0) {
                    list_.unlink(*old);
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
            ++next->hook_.pins;
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

    std::size_t listener_count_locked() const noexcept {
        std::size_t count = counts_.live;
        if (counts_.tracked_live != 0) {
            count -= SlotCounts::expired_in(list_);
        }
        return count;
    }

    mutable Lock mutex_;
    Condition cv_;
    SlotList<SlotT> list_;  // the listeners, in subscription order
    Frame* frames_ = nullptr;
    Waiter* waiters_ = nullptr;
    std::uint64_t emits_ = 0;
    SlotCounts counts_;
};

}  // namespace detail
}  // namespace wsguard
