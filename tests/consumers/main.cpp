// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// The consumer program that every packaging test (add_subdirectory,
// FetchContent, find_package) builds with strict warnings and runs. It includes
// the umbrella header and uses the core for real, so a package that exports the
// wrong include directory, standard or headers fails here, not in a user's
// project. Exit code 0 means every check held.

#include <wsguard/wsguard.hpp>

#include <optional>
#include <string>

// The consumer asks for C++14; wsguard::wsguard's cxx_std_17 must raise it.
static_assert(__cplusplus >= 201703L, "wsguard::wsguard did not give its consumer C++17");

namespace {

bool emitter_unsubscribes_on_scope_exit() {
    wsguard::Emitter<int> emitter;
    int sum = 0;
    {
        auto listener = emitter.subscribe([&sum](int value) { sum += value; });
        emitter.emit(2);
    }
    // The handle is gone, so this emit must reach nobody.
    emitter.emit(3);
    return sum == 2 && emitter.listener_count() == 0;
}

bool queue_keeps_its_bound() {
    wsguard::QueueOptions options;
    options.max_count = 2;
    options.policy = wsguard::OverflowPolicy::reject_newest;
    wsguard::BoundedMessageQueue<std::string> queue{options};
    const bool stored = queue.try_push("first") == wsguard::PushResult::pushed &&
                        queue.try_push("second") == wsguard::PushResult::pushed;
    const bool refused = queue.try_push("third") == wsguard::PushResult::rejected_full;
    const std::optional<std::string> first = queue.try_pop();
    const std::optional<std::string> second = queue.try_pop();
    return stored && refused && first == "first" && second == "second" && !queue.try_pop() &&
           queue.stats().rejected_full == 1;
}

}  // namespace

int main() {
    const bool ok = emitter_unsubscribes_on_scope_exit() && queue_keeps_its_bound();
    return ok ? 0 : 1;
}
