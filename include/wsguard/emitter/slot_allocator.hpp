// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// The allocator of the emitters' subscription blocks: a small per-thread
// cache of freed blocks of one size, so that subscribe + unsubscribe does not
// pay a malloc and a free each time. Used by both emitter cores
// (emitter/single_thread_core.hpp, emitter/locked_core.hpp) through
// std::allocate_shared.
#pragma once

#include <cstddef>
#include <memory>
#include <new>

namespace wsguard {
namespace detail {

// Sanitizers should see every slot allocation and free (use-after-free of a
// recycled block would go unnoticed), so the cache below is off under them.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define WSGUARD_DETAIL_SLOT_CACHE 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer)
#define WSGUARD_DETAIL_SLOT_CACHE 0
#endif
#endif
#ifndef WSGUARD_DETAIL_SLOT_CACHE
#define WSGUARD_DETAIL_SLOT_CACHE 1
#endif

/// Freed subscription blocks of one size kept for reuse by the same thread,
/// at most kSlotCacheBlocks of them, so that a connection's subscribe and
/// unsubscribe do not pay a malloc and a free each time (they were about
/// 40% of the instructions of the pair). Per thread, so it needs no lock
/// and a block may be freed on any thread; bounded, and emptied when the
/// thread exits, so it holds memory, but never grows with the number of
/// subscriptions.
inline constexpr unsigned kSlotCacheBlocks = 16;

template <std::size_t Size>
class SlotBlockCache {
public:
    static void* allocate() {
        FreeList& list = free_list();
        if (Node* node = list.head) {
            list.head = node->next;
            --list.count;
            node->~Node();
            return node;
        }
        return ::operator new(Size);
    }

    static void deallocate(void* block) noexcept {
        FreeList& list = free_list();
        if (list.count < kSlotCacheBlocks && !list.closed) {
            if (!list.registered) {
                list.registered = true;
                drain_at_thread_exit();
            }
            list.head = ::new (block) Node{list.head};
            ++list.count;
            return;
        }
        ::operator delete(block);
    }

private:
    struct Node {
        Node* next;
    };
    // Trivially destructible and constant-initialised: no guard on access,
    // and still usable by destructors that run after the drain.
    struct FreeList {
        Node* head;
        unsigned count;
        bool registered;
        bool closed;
    };
    struct Drain {
        Drain() noexcept {}  // NOLINT(modernize-use-equals-default): odr-use
        Drain(const Drain&) = delete;
        Drain& operator=(const Drain&) = delete;
        ~Drain() {
            FreeList& list = free_list();
            list.closed = true;  // later frees on this thread go to the heap
            while (Node* node = list.head) {
                list.head = node->next;
                node->~Node();
                ::operator delete(static_cast<void*>(node));
            }
            list.count = 0;
        }
    };

    static FreeList& free_list() noexcept {
        static thread_local FreeList list{nullptr, 0, false, false};
        return list;
    }
    static void drain_at_thread_exit() noexcept {
        static thread_local Drain drain;
        static_cast<void>(drain);
    }
};

/// The allocator of subscription blocks (allocate_shared): single blocks
/// go through SlotBlockCache.
template <class T>
struct SlotAllocator {
    using value_type = T;
    static constexpr bool kCached = WSGUARD_DETAIL_SLOT_CACHE != 0 && sizeof(T) >= sizeof(void*) &&
                                    alignof(T) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__;

    SlotAllocator() noexcept = default;
    template <class U>
    SlotAllocator(const SlotAllocator<U>& /*other*/) noexcept {
    }  // NOLINT(google-explicit-constructor)

    T* allocate(std::size_t n) {
        if constexpr (kCached) {
            if (n == 1) {
                return static_cast<T*>(SlotBlockCache<sizeof(T)>::allocate());
            }
        }
        return std::allocator<T>().allocate(n);
    }
    void deallocate(T* p, std::size_t n) noexcept {
        if constexpr (kCached) {
            if (n == 1) {
                SlotBlockCache<sizeof(T)>::deallocate(p);
                return;
            }
        }
        std::allocator<T>().deallocate(p, n);
    }
};

template <class T, class U>
bool operator==(const SlotAllocator<T>& /*a*/, const SlotAllocator<U>& /*b*/) noexcept {
    return true;  // stateless: any one frees what another allocated
}
template <class T, class U>
bool operator!=(const SlotAllocator<T>& /*a*/, const SlotAllocator<U>& /*b*/) noexcept {
    return false;
}

#undef WSGUARD_DETAIL_SLOT_CACHE

}  // namespace detail
}  // namespace wsguard
