// Tests for wsguard's memory readings: the parsers on fixed strings, the
// cgroup walk on a fake hierarchy in a temporary directory, and the live
// readings of this process (Linux; heap and trim only where glibc's malloc is
// the allocator, i.e. not under ASan/TSan).
#include <wsguard/memory.hpp>

#include <catch2/catch.hpp>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;
using wsguard::MemoryLimitSource;
using wsguard::detail::LimitKind;

constexpr std::size_t MiB = 1024 * 1024;

// A scratch directory removed at scope exit.
class TempDir {
public:
    TempDir() {
        static int counter = 0;
        path_ = fs::temp_directory_path() /
                ("wsguard_test_memory_" + std::to_string(std::random_device{}()) + "_" +
                 std::to_string(counter++));
        fs::remove_all(path_);
        fs::create_directories(path_);
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path_, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;

    std::string str() const { return path_.string(); }

    void write(const std::string& relative, const std::string& text) const {
        const fs::path file = path_ / relative;
        fs::create_directories(file.parent_path());
        std::ofstream(file) << text;
    }

private:
    fs::path path_;
};

// Touches every page through a volatile pointer so the allocation is real
// and cannot be optimised away.
void touch(char* p, std::size_t n) {
    volatile char* v = p;
    for (std::size_t i = 0; i < n; i += 4096) {
        v[i] = static_cast<char>(i);
    }
}

}  // namespace

TEST_CASE("to_string names every limit source", "[memory]") {
    CHECK(std::string(wsguard::to_string(MemoryLimitSource::cgroup_v2)) == "cgroup_v2");
    CHECK(std::string(wsguard::to_string(MemoryLimitSource::cgroup_v1)) == "cgroup_v1");
    CHECK(std::string(wsguard::to_string(MemoryLimitSource::physical)) == "physical");
    CHECK(std::string(wsguard::to_string(MemoryLimitSource::unknown)) == "unknown");
}

TEST_CASE("parse_unsigned accepts decimal numbers with whitespace only", "[memory]") {
    using wsguard::detail::parse_unsigned;
    CHECK(parse_unsigned("0") == std::uint64_t{0});
    CHECK(parse_unsigned("123\n") == std::uint64_t{123});
    CHECK(parse_unsigned("  42 \t") == std::uint64_t{42});
    CHECK(parse_unsigned("18446744073709551615") == UINT64_MAX);
    CHECK_FALSE(parse_unsigned("18446744073709551616"));  // overflow
    CHECK_FALSE(parse_unsigned("99999999999999999999999"));
    CHECK_FALSE(parse_unsigned(""));
    CHECK_FALSE(parse_unsigned(" \n"));
    CHECK_FALSE(parse_unsigned("abc"));
    CHECK_FALSE(parse_unsigned("12a"));
    CHECK_FALSE(parse_unsigned("-1"));
    CHECK_FALSE(parse_unsigned("1 2"));
    CHECK_FALSE(parse_unsigned("+5"));
}

TEST_CASE("parse_statm_resident_pages reads the second field", "[memory]") {
    using wsguard::detail::parse_statm_resident_pages;
    CHECK(parse_statm_resident_pages("12345 678 90 1 0 2 0\n") == std::uint64_t{678});
    CHECK(parse_statm_resident_pages("1 2") == std::uint64_t{2});
    CHECK_FALSE(parse_statm_resident_pages("12345"));
    CHECK_FALSE(parse_statm_resident_pages("12345 x 3"));
    CHECK_FALSE(parse_statm_resident_pages(""));
}

TEST_CASE("cgroup v2 memory.max: max, a number, or garbage", "[memory]") {
    using wsguard::detail::parse_cgroup_v2_memory_max;
    auto r = parse_cgroup_v2_memory_max("max\n");
    CHECK(r.kind == LimitKind::unlimited);
    r = parse_cgroup_v2_memory_max("1073741824\n");
    CHECK(r.kind == LimitKind::limited);
    CHECK(r.bytes == 1073741824u);
    CHECK(parse_cgroup_v2_memory_max("0").kind == LimitKind::invalid);
    CHECK(parse_cgroup_v2_memory_max("").kind == LimitKind::invalid);
    CHECK(parse_cgroup_v2_memory_max("maximum").kind == LimitKind::invalid);
    CHECK(parse_cgroup_v2_memory_max("-1").kind == LimitKind::invalid);
    CHECK(parse_cgroup_v2_memory_max("12 MiB").kind == LimitKind::invalid);
}

TEST_CASE("cgroup v1 memory.limit_in_bytes: huge values mean no limit", "[memory]") {
    using wsguard::detail::parse_cgroup_v1_limit_in_bytes;
    CHECK(parse_cgroup_v1_limit_in_bytes("9223372036854771712\n").kind == LimitKind::unlimited);
    CHECK(parse_cgroup_v1_limit_in_bytes("4611686018427387904").kind ==
          LimitKind::unlimited);                                     // 2^62
    auto r = parse_cgroup_v1_limit_in_bytes("4611686018427387903");  // 2^62 - 1
    CHECK(r.kind == LimitKind::limited);
    CHECK(r.bytes == 4611686018427387903u);
    r = parse_cgroup_v1_limit_in_bytes("536870912\n");
    CHECK(r.kind == LimitKind::limited);
    CHECK(r.bytes == 536870912u);
    CHECK(parse_cgroup_v1_limit_in_bytes("max").kind == LimitKind::invalid);
    CHECK(parse_cgroup_v1_limit_in_bytes("0").kind == LimitKind::invalid);
    CHECK(parse_cgroup_v1_limit_in_bytes("").kind == LimitKind::invalid);
}

TEST_CASE("parse_proc_self_cgroup finds the v1 memory and the v2 paths", "[memory]") {
    using wsguard::detail::parse_proc_self_cgroup;

    auto p = parse_proc_self_cgroup("0::/user.slice/user-1000.slice/session-2.scope\n");
    CHECK(p.v2 == std::string("/user.slice/user-1000.slice/session-2.scope"));
    CHECK_FALSE(p.v1_memory);

    // Hybrid: v1 controllers plus an (empty) unified hierarchy.
    p = parse_proc_self_cgroup(
        "9:name=systemd:/\n8:pids:/\n4:memory:/docker/abc123\n1:cpu:/\n0::/\n");
    CHECK(p.v1_memory == std::string("/docker/abc123"));
    CHECK(p.v2 == std::string("/"));

    // Controllers sharing a hierarchy; a name that merely contains "memory" is not it.
    p = parse_proc_self_cgroup("5:memoryx:/no\n4:cpu,memory,pids:/shared\n");
    CHECK(p.v1_memory == std::string("/shared"));
    p = parse_proc_self_cgroup("5:memoryx:/no\n6:xmemory:/no\n");
    CHECK_FALSE(p.v1_memory);

    // Garbage and empty input give nothing, without failing.
    p = parse_proc_self_cgroup("garbage\n1:\n::\n0::relative\n\n");
    CHECK_FALSE(p.v1_memory);
    CHECK_FALSE(p.v2);
    p = parse_proc_self_cgroup("");
    CHECK_FALSE(p.v1_memory);
    CHECK_FALSE(p.v2);

    // No trailing newline, CRLF tolerated.
    p = parse_proc_self_cgroup("0::/a/b\r\n");
    CHECK(p.v2 == std::string("/a/b"));
}

TEST_CASE("cgroup_memory_limit takes the tightest limit up the hierarchy", "[memory]") {
    using wsguard::detail::cgroup_memory_limit;
    TempDir dir;
    const std::string v2 = dir.str() + "/unified";
    const std::string v1 = dir.str() + "/memory";

    SECTION("v2: a child without a limit lives under its parent's") {
        dir.write("unified/a/b/memory.max", "max\n");
        dir.write("unified/a/memory.max", "2147483648\n");
        auto source = MemoryLimitSource::unknown;
        CHECK(cgroup_memory_limit("0::/a/b\n", v2, v1, &source) == std::uint64_t{2147483648u});
        CHECK(source == MemoryLimitSource::cgroup_v2);

        // A tighter limit at the leaf wins.
        dir.write("unified/a/b/memory.max", "1073741824\n");
        CHECK(cgroup_memory_limit("0::/a/b\n", v2, v1, &source) == std::uint64_t{1073741824u});

        // A trailing slash in the path is the same cgroup.
        CHECK(cgroup_memory_limit("0::/a/b/\n", v2, v1, nullptr) == std::uint64_t{1073741824u});
    }
    SECTION("v2: no limit anywhere") {
        dir.write("unified/memory.max", "max\n");
        dir.write("unified/a/memory.max", "max\n");
        auto source = MemoryLimitSource::physical;
        CHECK_FALSE(cgroup_memory_limit("0::/a\n", v2, v1, &source));
        CHECK(source == MemoryLimitSource::physical);  // untouched
    }
    SECTION("v2: a host path absent from the mount falls back to the mount root") {
        // A container without a cgroup namespace: /proc shows the host path,
        // the mount root is the container's own cgroup.
        dir.write("unified/memory.max", "536870912\n");
        auto source = MemoryLimitSource::unknown;
        CHECK(cgroup_memory_limit("0::/kubepods/pod1/ctr\n", v2, v1, &source) ==
              std::uint64_t{536870912u});
        CHECK(source == MemoryLimitSource::cgroup_v2);
    }
    SECTION("v2: garbage files are skipped") {
        dir.write("unified/a/memory.max", "garbage\n");
        dir.write("unified/memory.max", "1048576\n");
        CHECK(cgroup_memory_limit("0::/a\n", v2, v1, nullptr) == std::uint64_t{1048576u});
    }
    SECTION("v1: huge values are no limit, a parent's limit applies") {
        dir.write("memory/x/y/memory.limit_in_bytes", "9223372036854771712\n");
        dir.write("memory/x/memory.limit_in_bytes", "9223372036854771712\n");
        dir.write("memory/memory.limit_in_bytes", "805306368\n");
        auto source = MemoryLimitSource::unknown;
        CHECK(cgroup_memory_limit("4:memory:/x/y\n", v2, v1, &source) == std::uint64_t{805306368u});
        CHECK(source == MemoryLimitSource::cgroup_v1);
    }
    SECTION("hybrid: the memory controller on v1 wins") {
        dir.write("memory/x/memory.limit_in_bytes", "268435456\n");
        dir.write("unified/memory.max", "134217728\n");
        auto source = MemoryLimitSource::unknown;
        CHECK(cgroup_memory_limit("4:memory:/x\n0::/\n", v2, v1, &source) ==
              std::uint64_t{268435456u});
        CHECK(source == MemoryLimitSource::cgroup_v1);

        // With no v1 limit, a v2 limit still counts.
        dir.write("memory/x/memory.limit_in_bytes", "9223372036854771712\n");
        CHECK(cgroup_memory_limit("4:memory:/x\n0::/\n", v2, v1, &source) ==
              std::uint64_t{134217728u});
        CHECK(source == MemoryLimitSource::cgroup_v2);
    }
    SECTION("nothing mounted") {
        CHECK_FALSE(cgroup_memory_limit("0::/a\n4:memory:/b\n", v2, v1, nullptr));
        CHECK_FALSE(cgroup_memory_limit("", v2, v1, nullptr));
    }
}

TEST_CASE("read_small_file reads a whole file or reports it missing", "[memory]") {
    TempDir dir;
    dir.write("f", "hello\nworld\n");
    CHECK(wsguard::detail::read_small_file(dir.str() + "/f") == std::string("hello\nworld\n"));
    CHECK_FALSE(wsguard::detail::read_small_file(dir.str() + "/missing"));
}

#if defined(__linux__)

TEST_CASE("live readings are present and sane on Linux", "[memory]") {
    auto source = MemoryLimitSource::unknown;
    const auto limit = wsguard::memory_limit_bytes(&source);
    REQUIRE(limit);
    CHECK(*limit > 0);
    CHECK(source != MemoryLimitSource::unknown);
    CHECK(std::string(wsguard::to_string(source)) != "unknown");
    const auto physical = wsguard::detail::physical_memory_bytes();
    REQUIRE(physical);
    CHECK(*limit <= *physical);                     // a cgroup limit above RAM does not bind
    CHECK(wsguard::memory_limit_bytes() == limit);  // the source pointer is optional

    const auto rss = wsguard::resident_set_bytes();
    REQUIRE(rss);
    CHECK(*rss > 1 * MiB);
    CHECK(*rss < *limit);

    const auto reading = wsguard::read_memory();
    CHECK(reading.resident_bytes.has_value());
    CHECK(reading.limit_bytes == limit);
    CHECK(reading.limit_source == source);
    CHECK(reading.heap_in_use_bytes.has_value() == wsguard::detail::glibc_malloc);
}

TEST_CASE("resident memory grows when pages are touched", "[memory]") {
    const std::size_t size = 64 * MiB;
    const auto before = wsguard::resident_set_bytes();
    REQUIRE(before);
    std::unique_ptr<char[]> block(new char[size]);
    touch(block.get(), size);
    const auto after = wsguard::resident_set_bytes();
    REQUIRE(after);
    CHECK(*after >= *before + size / 2);
}

TEST_CASE("heap in use follows allocations and frees", "[memory]") {
    if (!wsguard::detail::glibc_malloc) {
        // A sanitizer serves malloc: glibc's statistics would describe an idle heap.
        CHECK_FALSE(wsguard::heap_in_use_bytes());
        return;
    }
    const auto base = wsguard::heap_in_use_bytes();
    REQUIRE(base);

    SECTION("one large (mmapped) block") {
        const std::size_t size = 64 * MiB;
        std::unique_ptr<char[]> block(new char[size]);
        touch(block.get(), size);
        const auto with_block = wsguard::heap_in_use_bytes();
        REQUIRE(with_block);
        CHECK(*with_block >= *base + size);
        block.reset();
        const auto freed = wsguard::heap_in_use_bytes();
        REQUIRE(freed);
        CHECK(*freed + size <= *with_block);
    }
    SECTION("many small (arena) blocks") {
        const std::size_t count = 4096;
        const std::size_t size = 1024;
        std::vector<std::unique_ptr<char[]>> blocks;
        blocks.reserve(count);
        const auto reserved = wsguard::heap_in_use_bytes();
        REQUIRE(reserved);
        for (std::size_t i = 0; i < count; ++i) {
            blocks.emplace_back(new char[size]);
            touch(blocks.back().get(), size);
        }
        const auto with_blocks = wsguard::heap_in_use_bytes();
        REQUIRE(with_blocks);
        CHECK(*with_blocks >= *reserved + count * size);
        blocks.clear();
        const auto freed = wsguard::heap_in_use_bytes();
        REQUIRE(freed);
        CHECK(*freed + count * size <= *with_blocks);
    }
}

TEST_CASE("release_free_memory hands freed heap back so RSS falls", "[memory]") {
    CHECK(wsguard::release_free_memory() == wsguard::detail::glibc_malloc);
    if (!wsguard::detail::glibc_malloc) {
        return;
    }
    // A wave of small per-connection allocations (below the mmap threshold,
    // so they live in the arena), freed while one later block pins the top of
    // the heap: free() alone cannot shrink the heap past the pin.
    const std::size_t count = 16384;
    const std::size_t size = 4096;
    std::vector<std::unique_ptr<char[]>> blocks;
    blocks.reserve(count);
    for (std::size_t i = 0; i < count; ++i) {
        blocks.emplace_back(new char[size]);
        touch(blocks.back().get(), size);
    }
    std::unique_ptr<char[]> pin(new char[64]);
    touch(pin.get(), 64);
    const auto peak = wsguard::resident_set_bytes();
    REQUIRE(peak);
    blocks.clear();
    const auto after_free = wsguard::resident_set_bytes();
    REQUIRE(after_free);
    CHECK(wsguard::release_free_memory());
    const auto after_trim = wsguard::resident_set_bytes();
    REQUIRE(after_trim);
    INFO("peak " << *peak / MiB << " MiB, after free " << *after_free / MiB << " MiB, after trim "
                 << *after_trim / MiB << " MiB");
    CHECK(*after_trim + (count * size) / 2 <= *peak);
    // Usually the pin lands at the top of the heap and free() leaves the
    // pages resident; then the release is what brought RSS down. (Where the
    // pin reused an older free chunk, free() could already trim the top.)
    if (*after_free + (count * size) / 2 > *peak) {
        CHECK(*after_trim + (count * size) / 2 <= *after_free);
    }
}

#endif  // __linux__
