// Fuzzer regressions: every input under tests/fuzz_regressions/<what>/ (inputs a
// fuzzer once failed on, kept after the fix) and under fuzz/corpus/<what>/ (the
// seeds), replayed through the fuzzer's own body, fuzz/fuzz_<what>.hpp. The bodies
// check every result against a naive model and throw on a disagreement, so this is
// the fuzzers' oracle run on known inputs, with any compiler and no libFuzzer.
#include <catch2/catch.hpp>

#include "fuzz_queue.hpp"
#include "fuzz_registry.hpp"
#include "fuzz_rooms.hpp"
#include "fuzz_router.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;

struct Input {
    std::string path;
    std::vector<std::uint8_t> bytes;
};

// Every regular file under dir (none if dir does not exist), sorted for a stable order.
std::vector<Input> inputs_in(const fs::path& dir) {
    std::vector<Input> out;
    if (!fs::is_directory(dir)) {
        return out;
    }
    for (const auto& entry : fs::directory_iterator(dir)) {
        if (!entry.is_regular_file()) {
            continue;
        }
        std::ifstream file(entry.path(), std::ios::binary);
        out.push_back(Input{entry.path().string(),
                            std::vector<std::uint8_t>(std::istreambuf_iterator<char>(file),
                                                      std::istreambuf_iterator<char>())});
    }
    std::sort(out.begin(), out.end(),
              [](const Input& a, const Input& b) { return a.path < b.path; });
    return out;
}

using Body = void (*)(const std::uint8_t*, std::size_t);

void replay(const std::string& what, Body body) {
    const auto seeds = inputs_in(fs::path(WSGUARD_FUZZ_CORPUS_DIR) / what);
    // The seed corpus is part of the repository: an empty one means a wrong path,
    // not a passing test.
    REQUIRE(!seeds.empty());
    const auto regressions = inputs_in(fs::path(WSGUARD_FUZZ_REGRESSIONS_DIR) / what);
    for (const auto* set : {&seeds, &regressions}) {
        for (const Input& input : *set) {
            INFO(input.path << " (" << input.bytes.size() << " bytes)");
            REQUIRE_NOTHROW(body(input.bytes.data(), input.bytes.size()));
        }
    }
}

}  // namespace

TEST_CASE("fuzz inputs replay clean: router", "[fuzz_regressions]") {
    replay("router", &wsguard::fuzz::fuzz_router);
}

TEST_CASE("fuzz inputs replay clean: queue", "[fuzz_regressions]") {
    replay("queue", &wsguard::fuzz::fuzz_queue);
}

TEST_CASE("fuzz inputs replay clean: registry", "[fuzz_regressions]") {
    replay("registry", &wsguard::fuzz::fuzz_registry);
}

TEST_CASE("fuzz inputs replay clean: rooms", "[fuzz_regressions]") {
    replay("rooms", &wsguard::fuzz::fuzz_rooms);
}

TEST_CASE("the bodies' machinery: FuzzInput reads, a failed check throws", "[fuzz_regressions]") {
    const std::uint8_t bytes[] = {7, 0x1e, 'a', 'b', 0x1e, 200};
    wsguard::fuzz::FuzzInput in(bytes, sizeof bytes);
    CHECK(in.below(4) == 3);
    CHECK(in.take_until(0x1e).empty());
    CHECK(in.take_until(0x1e) == "ab");
    CHECK(in.remaining() == 1);
    CHECK(in.take_until(0x1e).size() == 1);  // no separator: the rest
    CHECK(in.empty());
    CHECK(in.byte() == 0);  // exhausted input reads as zeros
    CHECK_THROWS_WITH(
        WSGUARD_FUZZ_CHECK(1 + 1 == 3),
        Catch::Contains("1 + 1 == 3") && Catch::Contains("test_fuzz_regressions.cpp"));
    CHECK_NOTHROW(WSGUARD_FUZZ_CHECK(1 + 1 == 2));
}
