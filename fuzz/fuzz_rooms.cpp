// wsguard fuzzing — libFuzzer entry point for RoomIndex; the body is fuzz_rooms.hpp.
// SPDX-License-Identifier: MIT
#include "fuzz_rooms.hpp"

#include <cstddef>
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    return wsguard::fuzz::run_or_abort(wsguard::fuzz::fuzz_rooms, data, size);
}
