// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// The benchmark binary's replacement of the global allocation functions: the
// suite's counting operators (tests/support/counting_new.hpp), counting per
// thread only, so each call costs one plain increment and the count does not
// distort the timings it sits next to.
#include "alloc_counter.hpp"

#define WSGUARD_COUNTING_NEW_THREAD_ONLY
#include <support/counting_new.hpp>

namespace wsguard::bench {

std::uint64_t allocation_count() noexcept {
    return wsguard::test::thread_allocations();
}

}  // namespace wsguard::bench
