// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// Counting replacements of the global allocation functions, so a test can
// prove that a stretch of code allocated nothing. Include it in exactly one
// translation unit of a test program (it defines the replaceable operators).
// Every unaligned form is replaced, so each new pairs with a delete of the
// same family (AddressSanitizer checks that pairing).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <new>

namespace wsguard::test {

inline std::atomic<std::size_t> g_allocations{0};

/// Every operator new of the program so far.
inline std::size_t allocations() {
    return g_allocations.load(std::memory_order_relaxed);
}

inline void* counted_alloc(std::size_t n) {
    g_allocations.fetch_add(1, std::memory_order_relaxed);
    if (void* p = std::malloc(n == 0 ? 1 : n)) {
        return p;
    }
    throw std::bad_alloc();
}

inline void* counted_alloc_nothrow(std::size_t n) noexcept {
    try {
        return counted_alloc(n);
    } catch (...) {
        return nullptr;
    }
}

}  // namespace wsguard::test

void* operator new(std::size_t n) {
    return wsguard::test::counted_alloc(n);
}
void* operator new[](std::size_t n) {
    return wsguard::test::counted_alloc(n);
}
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
    return wsguard::test::counted_alloc_nothrow(n);
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
    return wsguard::test::counted_alloc_nothrow(n);
}
void operator delete(void* p) noexcept {
    std::free(p);
}
void operator delete[](void* p) noexcept {
    std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
    std::free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
    std::free(p);
}
void operator delete(void* p, const std::nothrow_t&) noexcept {
    std::free(p);
}
void operator delete[](void* p, const std::nothrow_t&) noexcept {
    std::free(p);
}
