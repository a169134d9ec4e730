// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// Cheap process memory readings for the growth detector and the health checks:
// resident set size, heap in use, and the memory limit that actually applies
// (a container's cgroup limit, else physical memory). A server compares them
// over time to see a leak before the OOM killer does. Every reading may be
// unavailable on a platform, so each is an optional; nothing here throws.
// Linux (and glibc for the heap) first; elsewhere the readings are absent.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif
#if defined(__GLIBC__)
#include <malloc.h>
#endif

// Sanitizers (ASan, TSan, MSan, HWASan) replace malloc, so glibc's own heap
// statistics and trimming describe an allocator nobody is using.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define WSGUARD_DETAIL_MALLOC_REPLACED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer) || __has_feature(hwaddress_sanitizer)
#define WSGUARD_DETAIL_MALLOC_REPLACED 1
#endif
#endif

namespace wsguard {

/// Where memory_limit_bytes() found the limit.
enum class MemoryLimitSource {
    cgroup_v2,  ///< memory.max of this process's cgroup (or the tightest ancestor).
    cgroup_v1,  ///< memory.limit_in_bytes of this process's memory cgroup (or an ancestor).
    physical,   ///< No cgroup limit below physical memory: the machine's RAM.
    unknown     ///< No reading available on this platform.
};

/// Effect: Returns "cgroup_v2", "cgroup_v1", "physical" or "unknown".
/// Fails: Never fails; an out-of-range value yields "unknown".
/// Thread safety: Safe.
/// Exceptions: nothrow.
inline const char* to_string(MemoryLimitSource source) noexcept {
    switch (source) {
        case MemoryLimitSource::cgroup_v2:
            return "cgroup_v2";
        case MemoryLimitSource::cgroup_v1:
            return "cgroup_v1";
        case MemoryLimitSource::physical:
            return "physical";
        case MemoryLimitSource::unknown:
            return "unknown";
    }
    return "unknown";
}

/// Every reading at once; each is absent where the platform cannot provide it.
struct MemoryReading {
    std::optional<std::size_t> resident_bytes;                    ///< resident_set_bytes()
    std::optional<std::size_t> heap_in_use_bytes;                 ///< heap_in_use_bytes()
    std::optional<std::size_t> limit_bytes;                       ///< memory_limit_bytes()
    MemoryLimitSource limit_source = MemoryLimitSource::unknown;  ///< where limit_bytes came from
};

namespace detail {

/// True when glibc's malloc is (as far as the compiler can tell) the one in
/// use, so mallinfo2() and malloc_trim() mean something. A replacement linked
/// at run time (jemalloc, tcmalloc, a LeakSanitizer-only build) cannot be seen
/// here: the heap reading then describes glibc's idle heap.
#if defined(__GLIBC__) && !defined(WSGUARD_DETAIL_MALLOC_REPLACED)
inline constexpr bool glibc_malloc = true;
#else
inline constexpr bool glibc_malloc = false;
#endif

/// Cgroup v1 reports "no limit" as a huge number (0x7FFFFFFFFFFFF000 with 4 KiB
/// pages); any value at or above 2^62 bytes is taken to mean none.
inline constexpr std::uint64_t cgroup_v1_unlimited_threshold = std::uint64_t{1} << 62;

inline std::string_view trim(std::string_view s) noexcept {
    const auto is_space = [](char c) {
        return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
    };
    while (!s.empty() && is_space(s.front())) {
        s.remove_prefix(1);
    }
    while (!s.empty() && is_space(s.back())) {
        s.remove_suffix(1);
    }
    return s;
}

/// Effect: Parses a decimal unsigned integer, ignoring surrounding whitespace.
/// Fails: nullopt for an empty string, any other character, or overflow.
/// Exceptions: nothrow.
inline std::optional<std::uint64_t> parse_unsigned(std::string_view text) noexcept {
    text = trim(text);
    if (text.empty()) {
        return std::nullopt;
    }
    std::uint64_t value = 0;
    for (char c : text) {
        if (c < '0' || c > '9') {
            return std::nullopt;
        }
        const auto digit = static_cast<std::uint64_t>(c - '0');
        if (value > (std::numeric_limits<std::uint64_t>::max() - digit) / 10) {
            return std::nullopt;
        }
        value = value * 10 + digit;
    }
    return value;
}

/// Effect: Returns the resident page count: the second field of /proc/self/statm.
/// Fails: nullopt if there are fewer than two fields or the field is not a number.
/// Exceptions: nothrow.
inline std::optional<std::uint64_t> parse_statm_resident_pages(std::string_view statm) noexcept {
    statm = trim(statm);
    const auto first_end = statm.find(' ');
    if (first_end == std::string_view::npos) {
        return std::nullopt;
    }
    std::string_view rest = trim(statm.substr(first_end));
    return parse_unsigned(rest.substr(0, rest.find(' ')));
}

/// How a cgroup memory limit file reads.
enum class LimitKind {
    limited,    ///< A limit of `bytes`.
    unlimited,  ///< Explicitly no limit.
    invalid     ///< Unreadable: garbage, empty, or 0 (no running process can live under 0).
};

struct ParsedLimit {
    LimitKind kind;
    std::uint64_t bytes;  ///< Meaningful for `limited` only.
};

/// Effect: Parses cgroup v2 memory.max: "max" (no limit) or a byte count.
/// Fails: kind invalid for anything else.
/// Exceptions: nothrow.
inline ParsedLimit parse_cgroup_v2_memory_max(std::string_view text) noexcept {
    text = trim(text);
    if (text == "max") {
        return {LimitKind::unlimited, 0};
    }
    const auto bytes = parse_unsigned(text);
    if (!bytes || *bytes == 0) {
        return {LimitKind::invalid, 0};
    }
    return {LimitKind::limited, *bytes};
}

/// Effect: Parses cgroup v1 memory.limit_in_bytes: a byte count, where values
///         at or above cgroup_v1_unlimited_threshold mean no limit.
/// Fails: kind invalid for anything that is not a positive number.
/// Exceptions: nothrow.
inline ParsedLimit parse_cgroup_v1_limit_in_bytes(std::string_view text) noexcept {
    const auto bytes = parse_unsigned(text);
    if (!bytes || *bytes == 0) {
        return {LimitKind::invalid, 0};
    }
    if (*bytes >= cgroup_v1_unlimited_threshold) {
        return {LimitKind::unlimited, 0};
    }
    return {LimitKind::limited, *bytes};
}

/// This process's cgroup paths, from /proc/self/cgroup.
struct CgroupPaths {
    /// Path in the v1 memory hierarchy ("N:...memory...:path").
    std::optional<std::string> v1_memory;
    /// Path in the unified hierarchy ("0::path").
    std::optional<std::string> v2;
};

/// Effect: Parses /proc/self/cgroup ("id:controllers:path" per line).
/// Fails: Lines that do not have that shape are skipped; absent paths stay nullopt.
/// Exceptions: nothrow (a failed allocation yields what was parsed so far).
inline CgroupPaths parse_proc_self_cgroup(std::string_view text) noexcept {
    CgroupPaths paths;
    try {
        while (!text.empty()) {
            const auto eol = text.find('\n');
            std::string_view line = text.substr(0, eol);
            text = eol == std::string_view::npos ? std::string_view{} : text.substr(eol + 1);
            line = trim(line);
            const auto c1 = line.find(':');
            if (c1 == std::string_view::npos) {
                continue;
            }
            const auto c2 = line.find(':', c1 + 1);
            if (c2 == std::string_view::npos) {
                continue;
            }
            const std::string_view id = line.substr(0, c1);
            std::string_view controllers = line.substr(c1 + 1, c2 - c1 - 1);
            const std::string_view path = line.substr(c2 + 1);
            if (path.empty() || path.front() != '/') {
                continue;
            }
            if (id == "0" && controllers.empty()) {
                paths.v2 = std::string(path);
                continue;
            }
            // The memory controller may share a hierarchy: "4:cpu,memory:/x".
            while (!controllers.empty()) {
                const auto comma = controllers.find(',');
                if (controllers.substr(0, comma) == "memory") {
                    paths.v1_memory = std::string(path);
                    break;
                }
                controllers = comma == std::string_view::npos ? std::string_view{}
                                                              : controllers.substr(comma + 1);
            }
        }
    } catch (...) {
        // Only std::string allocation can throw; keep what we have.
    }
    return paths;
}

/// Effect: Reads a small file (at most 64 KiB) whole.
/// Fails: nullopt if it cannot be opened or read.
/// Exceptions: nothrow.
inline std::optional<std::string> read_small_file(const std::string& path) noexcept {
    std::FILE* file = std::fopen(path.c_str(), "r");
    if (file == nullptr) {
        return std::nullopt;
    }
    std::optional<std::string> out;
    try {
        std::string text;
        char buffer[4096];
        std::size_t got = 0;
        while ((got = std::fread(buffer, 1, sizeof buffer, file)) > 0 && text.size() < 65536) {
            text.append(buffer, got);
        }
        if (!std::ferror(file)) {
            out = std::move(text);
        }
    } catch (...) {
        out.reset();
    }
    std::fclose(file);
    return out;
}

/// Effect: The tightest limit in `file_name` from `root + path` up to `root`
///         (a child cgroup without a limit still lives under its parent's).
///         Unreadable levels are skipped: in a container without a cgroup
///         namespace the host path is absent but the mount root is its cgroup.
/// Fails: nullopt if no level has a limit.
/// Exceptions: nothrow.
template <class Parse>
std::optional<std::uint64_t> tightest_cgroup_limit(const std::string& root, std::string_view path,
                                                   const char* file_name, Parse parse) noexcept {
    std::optional<std::uint64_t> tightest;
    try {
        std::string dir(path);
        while (!dir.empty() && dir.back() == '/') {
            dir.pop_back();
        }
        for (;;) {
            if (const auto text = read_small_file(root + dir + "/" + file_name)) {
                const ParsedLimit limit = parse(*text);
                if (limit.kind == LimitKind::limited && (!tightest || limit.bytes < *tightest)) {
                    tightest = limit.bytes;
                }
            }
            if (dir.empty()) {
                break;
            }
            const auto slash = dir.rfind('/');
            dir.erase(slash == std::string::npos ? 0 : slash);
        }
    } catch (...) {
        // Allocation failure while building paths: report what was found.
    }
    return tightest;
}

/// Effect: The cgroup memory limit of the process whose /proc/self/cgroup
///         reads `proc_self_cgroup`, with the v2 hierarchy mounted at
///         `v2_root` and the v1 memory hierarchy at `v1_memory_root`. A v1
///         memory controller wins (in hybrid setups memory is not on v2).
/// Fails: nullopt if no cgroup sets a limit; *source is then untouched.
/// Exceptions: nothrow.
inline std::optional<std::uint64_t> cgroup_memory_limit(std::string_view proc_self_cgroup,
                                                        const std::string& v2_root,
                                                        const std::string& v1_memory_root,
                                                        MemoryLimitSource* source) noexcept {
    const CgroupPaths paths = parse_proc_self_cgroup(proc_self_cgroup);
    if (paths.v1_memory) {
        if (const auto limit =
                tightest_cgroup_limit(v1_memory_root, *paths.v1_memory, "memory.limit_in_bytes",
                                      parse_cgroup_v1_limit_in_bytes)) {
            if (source != nullptr) {
                *source = MemoryLimitSource::cgroup_v1;
            }
            return limit;
        }
    }
    if (paths.v2) {
        if (const auto limit = tightest_cgroup_limit(v2_root, *paths.v2, "memory.max",
                                                     parse_cgroup_v2_memory_max)) {
            if (source != nullptr) {
                *source = MemoryLimitSource::cgroup_v2;
            }
            return limit;
        }
    }
    return std::nullopt;
}

inline std::size_t clamp_to_size(std::uint64_t value) noexcept {
    return value > std::numeric_limits<std::size_t>::max() ? std::numeric_limits<std::size_t>::max()
                                                           : static_cast<std::size_t>(value);
}

inline std::optional<std::uint64_t> page_size() noexcept {
#if defined(_SC_PAGESIZE)
    const long size = ::sysconf(_SC_PAGESIZE);
    if (size > 0) {
        return static_cast<std::uint64_t>(size);
    }
#endif
    return std::nullopt;
}

inline std::optional<std::uint64_t> physical_memory_bytes() noexcept {
#if defined(_SC_PHYS_PAGES) && defined(_SC_PAGESIZE)
    const long pages = ::sysconf(_SC_PHYS_PAGES);
    const auto page = page_size();
    if (pages > 0 && page) {
        const auto count = static_cast<std::uint64_t>(pages);
        if (count > std::numeric_limits<std::uint64_t>::max() / *page) {
            return std::numeric_limits<std::uint64_t>::max();
        }
        return count * *page;
    }
#endif
    return std::nullopt;
}

}  // namespace detail

/// Effect: Returns this process's resident set size in bytes: the resident
///         page count of /proc/self/statm times the page size.
/// Fails: nullopt where /proc is unavailable (non-Linux) or unreadable.
/// Thread safety: Safe.
/// Exceptions: nothrow.
inline std::optional<std::size_t> resident_set_bytes() noexcept {
#if defined(__linux__)
    const auto text = detail::read_small_file("/proc/self/statm");
    if (!text) {
        return std::nullopt;
    }
    const auto pages = detail::parse_statm_resident_pages(*text);
    const auto page = detail::page_size();
    if (!pages || !page) {
        return std::nullopt;
    }
    return detail::clamp_to_size(*pages * *page);
#else
    return std::nullopt;
#endif
}

/// Effect: Returns the bytes of heap in use (allocated and not freed): glibc's
///         mallinfo2() uordblks (arena chunks in use) + hblkhd (chunks large
///         enough to be mmapped directly, which uordblks does not count).
///         Unlike RSS it falls as soon as memory is freed, so it separates "the
///         program holds more" from "the allocator kept freed pages".
/// Fails: nullopt without glibc >= 2.33 (mallinfo2), or when a sanitizer
///        replaces malloc (see detail::glibc_malloc).
/// Thread safety: Safe (mallinfo2 takes the arena locks).
/// Exceptions: nothrow.
inline std::optional<std::size_t> heap_in_use_bytes() noexcept {
#if defined(__GLIBC__) && !defined(WSGUARD_DETAIL_MALLOC_REPLACED) && \
    (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
    const struct mallinfo2 info = ::mallinfo2();
    return info.uordblks + info.hblkhd;
#else
    return std::nullopt;
#endif
}

/// Effect: Returns the memory limit that applies to this process: the
///         tightest cgroup limit on the path from its cgroup to the root (v1
///         memory.limit_in_bytes if the memory controller is on v1, else v2
///         memory.max; "max" and huge v1 values mean none), or physical memory
///         when that is smaller or there is no cgroup limit. Sets *source (if
///         not null) to where the limit came from. Cgroup hierarchies are read
///         at their usual mounts (/sys/fs/cgroup, /sys/fs/cgroup/memory).
/// Fails: nullopt with *source = unknown where nothing can be read.
/// Thread safety: Safe.
/// Exceptions: nothrow.
inline std::optional<std::size_t> memory_limit_bytes(MemoryLimitSource* source = nullptr) noexcept {
    MemoryLimitSource found = MemoryLimitSource::unknown;
    std::optional<std::uint64_t> limit;
#if defined(__linux__)
    try {
        if (const auto cgroup = detail::read_small_file("/proc/self/cgroup")) {
            limit = detail::cgroup_memory_limit(*cgroup, "/sys/fs/cgroup", "/sys/fs/cgroup/memory",
                                                &found);
        }
    } catch (...) {
        // Building the root strings failed: fall back to physical memory.
        limit.reset();
        found = MemoryLimitSource::unknown;
    }
#endif
    // A cgroup limit above the machine's RAM does not bind: RAM does.
    const auto physical = detail::physical_memory_bytes();
    if (physical && (!limit || *physical < *limit)) {
        limit = physical;
        found = MemoryLimitSource::physical;
    }
    if (source != nullptr) {
        *source = limit ? found : MemoryLimitSource::unknown;
    }
    if (!limit) {
        return std::nullopt;
    }
    return detail::clamp_to_size(*limit);
}

/// Effect: Takes every reading (see the functions above).
/// Fails: Each field is absent where its reading is.
/// Thread safety: Safe.
/// Exceptions: nothrow.
inline MemoryReading read_memory() noexcept {
    MemoryReading reading{};
    reading.resident_bytes = resident_set_bytes();
    reading.heap_in_use_bytes = heap_in_use_bytes();
    reading.limit_source = MemoryLimitSource::unknown;
    reading.limit_bytes = memory_limit_bytes(&reading.limit_source);
    return reading;
}

/// Effect: Hands freed heap memory back to the operating system
///         (malloc_trim(0) on glibc), so resident memory falls after a wave
///         of connections closes instead of staying at the peak. Returns true
///         if the call was made, whether or not any page could be released.
/// Fails: false where unavailable (no glibc, or a sanitizer replaces malloc).
/// Thread safety: Safe (takes the arena locks; costs a pass over free memory,
///               so call it after a wave of closes, not per connection).
/// Exceptions: nothrow.
inline bool release_free_memory() noexcept {
#if defined(__GLIBC__) && !defined(WSGUARD_DETAIL_MALLOC_REPLACED)
    ::malloc_trim(0);
    return true;
#else
    return false;
#endif
}

}  // namespace wsguard
