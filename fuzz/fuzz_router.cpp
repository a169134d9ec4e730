// wsguard fuzzing — libFuzzer entry point for the chat router; the body is fuzz_router.hpp.
// SPDX-License-Identifier: MIT
#include "fuzz_router.hpp"

#include <cstddef>
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    return wsguard::fuzz::run_or_abort(wsguard::fuzz::fuzz_router, data, size);
}
