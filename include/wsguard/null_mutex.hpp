// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// NullMutex: the lock policy for objects used from one thread only (one io
// thread). It satisfies Lockable and compiles away entirely.
#pragma once

namespace wsguard {

/// Lock policy that does nothing: for components owned by a single thread.
/// Pair with std::mutex for components shared between threads.
struct NullMutex {
    constexpr void lock() noexcept {}
    constexpr bool try_lock() noexcept { return true; }
    constexpr void unlock() noexcept {}
};

}  // namespace wsguard
