// wsguard fuzzing — libFuzzer entry point for ConnectionRegistry; the body is fuzz_registry.hpp.
// SPDX-License-Identifier: MIT
#include "fuzz_registry.hpp"

#include <cstddef>
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    return wsguard::fuzz::run_or_abort(wsguard::fuzz::fuzz_registry, data, size);
}
