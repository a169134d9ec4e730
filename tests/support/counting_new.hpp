// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// Counting replacements of the global allocation functions, so a test can
// prove that a stretch of code allocated nothing, or freed all it allocated,
// and a benchmark can report its allocations per operation. Include it in
// exactly one translation unit of a program (it defines the replaceable
// operators).
//
// Every form is replaced, the aligned ones too, and every one is served by
// malloc or aligned_alloc and given back with free: each new pairs with a
// delete of the same family, so the count also holds under AddressSanitizer
// and ThreadSanitizer (which would otherwise report a replaced new freed by
// their delete).
//
// Counts kept:
//   allocations(), frees()      the whole program (relaxed atomics);
//   live_allocations()          their difference: blocks not yet freed;
//   thread_allocations(),
//   thread_frees()              the calling thread only (plain increments).
// A program whose timings the count sits next to (the micro-benchmarks)
// defines WSGUARD_COUNTING_NEW_THREAD_ONLY before including it: the operators
// then cost one plain increment each, and the whole-program counts are absent.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>

namespace wsguard::test {

namespace detail {

struct ThreadCounts {
    std::uint64_t allocations;
    std::uint64_t frees;
};
// Constant-initialised: no guard on access.
inline thread_local ThreadCounts thread_counts{0, 0};

#ifndef WSGUARD_COUNTING_NEW_THREAD_ONLY
inline std::atomic<std::uint64_t> allocations{0};
inline std::atomic<std::uint64_t> frees{0};
#endif

inline void count_allocation() noexcept {
    ++thread_counts.allocations;
#ifndef WSGUARD_COUNTING_NEW_THREAD_ONLY
    allocations.fetch_add(1, std::memory_order_relaxed);
#endif
}

inline void* counted_alloc(std::size_t size) noexcept {
    count_allocation();
    return std::malloc(size == 0 ? 1 : size);
}

inline void* counted_aligned_alloc(std::size_t size, std::align_val_t alignment) noexcept {
    count_allocation();
    const auto align = static_cast<std::size_t>(alignment);
    // aligned_alloc wants a size that is a multiple of the alignment.
    const std::size_t rounded = (size + align - 1) / align * align;
    return std::aligned_alloc(align, rounded == 0 ? align : rounded);
}

inline void* counted_alloc_or_throw(void* p) {
    if (p == nullptr) {
        throw std::bad_alloc();
    }
    return p;
}

// Out of line so that gcc does not see malloc and free pair up with new and
// delete across inlining (a -Wmismatched-new-delete false positive).
[[gnu::noinline]] inline void counted_free(void* p) noexcept {
    if (p != nullptr) {
        ++thread_counts.frees;
#ifndef WSGUARD_COUNTING_NEW_THREAD_ONLY
        frees.fetch_add(1, std::memory_order_relaxed);
#endif
    }
    std::free(p);
}

}  // namespace detail

/// Every operator new (any form) the calling thread has made so far.
inline std::uint64_t thread_allocations() noexcept {
    return detail::thread_counts.allocations;
}

/// Every operator delete of a non-null pointer the calling thread has made so far.
inline std::uint64_t thread_frees() noexcept {
    return detail::thread_counts.frees;
}

#ifndef WSGUARD_COUNTING_NEW_THREAD_ONLY
/// Every operator new (any form) of the program so far.
inline std::uint64_t allocations() noexcept {
    return detail::allocations.load(std::memory_order_relaxed);
}

/// Every operator delete of a non-null pointer of the program so far.
inline std::uint64_t frees() noexcept {
    return detail::frees.load(std::memory_order_relaxed);
}

/// Blocks from operator new not given back yet (read while no other thread
/// allocates, or the two loads may straddle a pair).
inline std::int64_t live_allocations() noexcept {
    const std::uint64_t freed = frees();
    return static_cast<std::int64_t>(allocations() - freed);
}
#endif

}  // namespace wsguard::test

void* operator new(std::size_t size) {
    using namespace wsguard::test::detail;
    return counted_alloc_or_throw(counted_alloc(size));
}
void* operator new[](std::size_t size) {
    using namespace wsguard::test::detail;
    return counted_alloc_or_throw(counted_alloc(size));
}
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
    return wsguard::test::detail::counted_alloc(size);
}
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept {
    return wsguard::test::detail::counted_alloc(size);
}
void* operator new(std::size_t size, std::align_val_t alignment) {
    using namespace wsguard::test::detail;
    return counted_alloc_or_throw(counted_aligned_alloc(size, alignment));
}
void* operator new[](std::size_t size, std::align_val_t alignment) {
    using namespace wsguard::test::detail;
    return counted_alloc_or_throw(counted_aligned_alloc(size, alignment));
}
void* operator new(std::size_t size, std::align_val_t alignment, const std::nothrow_t&) noexcept {
    return wsguard::test::detail::counted_aligned_alloc(size, alignment);
}
void* operator new[](std::size_t size, std::align_val_t alignment, const std::nothrow_t&) noexcept {
    return wsguard::test::detail::counted_aligned_alloc(size, alignment);
}
void operator delete(void* p) noexcept {
    wsguard::test::detail::counted_free(p);
}
void operator delete[](void* p) noexcept {
    wsguard::test::detail::counted_free(p);
}
void operator delete(void* p, std::size_t) noexcept {
    wsguard::test::detail::counted_free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
    wsguard::test::detail::counted_free(p);
}
void operator delete(void* p, const std::nothrow_t&) noexcept {
    wsguard::test::detail::counted_free(p);
}
void operator delete[](void* p, const std::nothrow_t&) noexcept {
    wsguard::test::detail::counted_free(p);
}
void operator delete(void* p, std::align_val_t) noexcept {
    wsguard::test::detail::counted_free(p);
}
void operator delete[](void* p, std::align_val_t) noexcept {
    wsguard::test::detail::counted_free(p);
}
void operator delete(void* p, std::size_t, std::align_val_t) noexcept {
    wsguard::test::detail::counted_free(p);
}
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept {
    wsguard::test::detail::counted_free(p);
}
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept {
    wsguard::test::detail::counted_free(p);
}
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept {
    wsguard::test::detail::counted_free(p);
}
