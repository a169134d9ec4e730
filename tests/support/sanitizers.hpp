// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// Which sanitizer this translation unit is compiled under: the one place the
// tests and benchmarks ask. gcc says it with __SANITIZE_ADDRESS__ and
// __SANITIZE_THREAD__, clang with __has_feature(...). UBSan changes no
// allocation or layout and has no such macro, so it is not detected.
//
// The macros (always defined, 0 or 1) are for what only the preprocessor can
// do (define a sanitizer hook function); code uses the constexpr bools.
#pragma once

#if defined(__has_feature)
#define WSGUARD_TEST_HAS_FEATURE(x) __has_feature(x)
#else
#define WSGUARD_TEST_HAS_FEATURE(x) 0
#endif

#if defined(__SANITIZE_ADDRESS__) || WSGUARD_TEST_HAS_FEATURE(address_sanitizer)
#define WSGUARD_TEST_ASAN 1
#else
#define WSGUARD_TEST_ASAN 0
#endif

#if defined(__SANITIZE_THREAD__) || WSGUARD_TEST_HAS_FEATURE(thread_sanitizer)
#define WSGUARD_TEST_TSAN 1
#else
#define WSGUARD_TEST_TSAN 0
#endif

#if WSGUARD_TEST_HAS_FEATURE(memory_sanitizer)
#define WSGUARD_TEST_MSAN 1
#else
#define WSGUARD_TEST_MSAN 0
#endif

#if defined(__SANITIZE_HWADDRESS__) || WSGUARD_TEST_HAS_FEATURE(hwaddress_sanitizer)
#define WSGUARD_TEST_HWASAN 1
#else
#define WSGUARD_TEST_HWASAN 0
#endif

namespace wsguard::test::sanitizer {

inline constexpr bool address = WSGUARD_TEST_ASAN == 1;
inline constexpr bool thread = WSGUARD_TEST_TSAN == 1;
inline constexpr bool memory = WSGUARD_TEST_MSAN == 1;
inline constexpr bool hwaddress = WSGUARD_TEST_HWASAN == 1;

/// A sanitizer serves malloc with its own allocator: glibc's heap statistics
/// describe nothing, and resident memory carries shadow memory and quarantine.
inline constexpr bool replaces_malloc = address || thread || memory || hwaddress;

/// The sanitizers under which wsguard's subscription-block cache is off, so
/// that every block is a heap allocation the sanitizer sees
/// (include/wsguard/scoped_listener.hpp, WSGUARD_DETAIL_SLOT_CACHE).
inline constexpr bool slot_cache_off = address || thread || memory;

}  // namespace wsguard::test::sanitizer
