// wsguard fuzzing — libFuzzer entry point for BoundedMessageQueue; the body is fuzz_queue.hpp.
// SPDX-License-Identifier: MIT
#include "fuzz_queue.hpp"

#include <cstddef>
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    return wsguard::fuzz::run_or_abort(wsguard::fuzz::fuzz_queue, data, size);
}
