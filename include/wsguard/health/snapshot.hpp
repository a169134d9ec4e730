// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// CriticalSnapshotWriter: the evidence, written when the server turns
// critical; and malloc_info_xml(), the allocator's own view of memory.
//
// Why it is in the library: the evidence of a leak is gone once the process is
// restarted, so every server wants it captured at the critical moment, and
// capturing it safely is bounded operational tooling, not application logic:
// rate-limited, a fixed number of files, atomic writes, errors as values. It
// embeds the report through to_json (json.hpp), so the core still needs no
// JSON library. It is presentation, so it lives apart from the checks.
#pragma once

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <wsguard/health/json.hpp>
#include <wsguard/health/types.hpp>
#include <wsguard/memory.hpp>

#if defined(__GLIBC__)
#include <malloc.h>
#include <stdio.h>  // open_memstream (POSIX 2008)
#endif

namespace wsguard {

// ---------------------------------------------------------------------------
// CriticalSnapshotWriter
// ---------------------------------------------------------------------------

/// Effect: Returns glibc's malloc_info(0, ...) XML: per-arena sizes, free
///         chunks and fragmentation, the allocator's own view of memory.
/// Fails: nullopt without glibc, when a sanitizer replaces malloc (the XML
///        would describe an allocator nobody uses), or if the call fails.
/// Thread safety: Safe (malloc_info takes each arena's lock in turn).
/// Exceptions: nothrow.
inline std::optional<std::string> malloc_info_xml() noexcept {
#if defined(__GLIBC__) && !defined(WSGUARD_DETAIL_MALLOC_REPLACED)
    char* buffer = nullptr;
    std::size_t size = 0;
    // An in-memory stream: no file, no disk needed when the disk is the problem.
    FILE* stream = ::open_memstream(&buffer, &size);
    if (stream == nullptr) {
        return std::nullopt;
    }
    const int rc = ::malloc_info(0, stream);
    const int closed = std::fclose(stream);
    std::optional<std::string> out;
    if (rc == 0 && closed == 0 && buffer != nullptr) {
        try {
            out = std::string(buffer, size);
        } catch (...) {
            out.reset();
        }
    }
    std::free(buffer);
    return out;
#else
    return std::nullopt;
#endif
}

/// Every setting of a CriticalSnapshotWriter.
struct SnapshotOptions {
    /// Where snapshots go. Must exist (it is not created: a typo should be an
    /// error you see, not a directory tree somewhere unexpected). Required.
    std::string directory;
    /// At most one snapshot (or failed attempt) per interval: a process that
    /// stays critical for an hour needs a few snapshots, not 3600. Five
    /// minutes shows the trend across snapshots without filling the disk.
    std::chrono::steady_clock::duration min_interval = std::chrono::minutes(5);
    /// Snapshots kept; the oldest of this writer's files beyond it are
    /// deleted. Ten at the default interval is the last 50 minutes of trouble.
    std::size_t max_files = 10;
    /// File names are <prefix><unix ms>.json (<prefix><unix ms>-<n>.json if
    /// that exists); only names of that shape count and are ever deleted.
    /// Must be non-empty and contain no path separator.
    std::string prefix = "wsguard-snapshot-";
    /// Embed malloc_info() XML (where glibc has it) as the "malloc_info" string.
    bool include_malloc_info = true;
};

/// What CriticalSnapshotWriter::maybe_write did.
enum class SnapshotStatus {
    written,       ///< A snapshot was written to SnapshotResult::path.
    not_critical,  ///< The report is not critical; nothing written.
    rate_limited,  ///< Critical, but the last attempt is younger than min_interval.
    failed         ///< Writing failed; SnapshotResult::error says why. Nothing half-written stays.
};

/// Effect: Returns "written", "not_critical", "rate_limited" or "failed".
/// Fails: Never fails; an out-of-range value yields "unknown".
/// Thread safety: Safe.
/// Exceptions: nothrow.
inline const char* to_string(SnapshotStatus status) noexcept {
    switch (status) {
        case SnapshotStatus::written:
            return "written";
        case SnapshotStatus::not_critical:
            return "not_critical";
        case SnapshotStatus::rate_limited:
            return "rate_limited";
        case SnapshotStatus::failed:
            return "failed";
    }
    return "unknown";
}

/// The outcome of one maybe_write call.
struct SnapshotResult {
    SnapshotStatus status = SnapshotStatus::not_critical;
    std::string path;  ///< written: the snapshot's path.
    /// failed: what went wrong, with the path and the system's reason.
    /// written: empty, or why an old snapshot could not be removed.
    std::string error;
    std::size_t removed = 0;  ///< Old snapshots deleted to keep max_files.
};

/// A snapshot of every count a CriticalSnapshotWriter holds.
struct SnapshotStats {
    std::uint64_t written = 0;       ///< Snapshots written.
    std::uint64_t not_critical = 0;  ///< Calls with a report below critical.
    std::uint64_t rate_limited = 0;  ///< Critical calls within min_interval of the last attempt.
    std::uint64_t failed = 0;        ///< Attempts that failed.
    std::uint64_t removed = 0;       ///< Old snapshots deleted.
};

/// Writes the evidence when the server turns critical: a JSON file with the
/// health report, the caller's census (its stats as JSON: health.hpp stays
/// std-only) and malloc_info(), at most once per min_interval, keeping the
/// newest max_files snapshots.
///
/// File: {"format":"wsguard-snapshot","version":1,"unix_ms":N,
/// "health":<to_json(report)>,"census":<census JSON or null>,
/// "malloc_info":"<xml>" or null}. It is written to a ".tmp" name and renamed,
/// so a crash mid-write never leaves a truncated snapshot under a snapshot name.
///
/// Decisions:
/// - The interval counts from the last attempt, successful or not: a broken
///   disk is retried every interval, not every sample.
/// - Errors (missing directory, permission, full disk) are returned as a
///   SnapshotResult with a message and counted; nothing throws, nothing aborts.
/// - Retention orders this writer's files by the time in their names, not by
///   modification time (which a backup tool may touch).
///
/// Thread safety: Distinct objects: Safe. Shared objects: Unsafe (call it
/// from the sampling thread, after HealthMonitor::report()).
class CriticalSnapshotWriter {
public:
    /// Effect: Creates a writer; touches no file.
    /// Fails: Throws if directory is empty, max_files is 0, min_interval is
    ///        negative, or prefix is empty or contains '/' or '\\'.
    /// Thread safety: n/a (construction).
    /// Exceptions: std::invalid_argument; std::bad_alloc.
    explicit CriticalSnapshotWriter(SnapshotOptions options) : options_(std::move(options)) {
        if (options_.directory.empty()) {
            throw std::invalid_argument("wsguard::CriticalSnapshotWriter: directory is empty");
        }
        if (options_.max_files == 0) {
            throw std::invalid_argument("wsguard::CriticalSnapshotWriter: max_files must be >= 1");
        }
        if (options_.min_interval < std::chrono::steady_clock::duration::zero()) {
            throw std::invalid_argument(
                "wsguard::CriticalSnapshotWriter: min_interval must be >= 0");
        }
        if (options_.prefix.empty() || options_.prefix.find_first_of("/\\") != std::string::npos) {
            throw std::invalid_argument(
                "wsguard::CriticalSnapshotWriter: prefix must be non-empty, without '/' or '\\'");
        }
    }

    /// Effect: If report.level is critical and no attempt was made in the last
    ///         min_interval (by `now`), writes a snapshot named after `wall`
    ///         (unix milliseconds) and then deletes this writer's oldest
    ///         snapshots beyond max_files. `census_json` must be a JSON value;
    ///         it is embedded verbatim (empty or blank: null).
    /// Fails: Returns not_critical or rate_limited without touching the disk;
    ///        failed with an error message when the directory is missing or
    ///        not writable, the disk is full, or memory runs out. All counted.
    /// Thread safety: Unsafe on a shared object.
    /// Exceptions: nothrow.
    SnapshotResult maybe_write(
        const HealthReport& report, std::string_view census_json,
        std::chrono::steady_clock::time_point now,
        std::chrono::system_clock::time_point wall = std::chrono::system_clock::now()) noexcept {
        SnapshotResult result;
        if (report.level != HealthLevel::critical) {
            ++stats_.not_critical;
            result.status = SnapshotStatus::not_critical;
            return result;
        }
        if (last_attempt_ && now - *last_attempt_ < options_.min_interval) {
            ++stats_.rate_limited;
            result.status = SnapshotStatus::rate_limited;
            return result;
        }
        last_attempt_ = now;
        try {
            write(report, census_json, wall, result);
        } catch (...) {
            result.status = SnapshotStatus::failed;
            result.path.clear();
            try {
                result.error = "cannot write a snapshot: out of memory";
            } catch (...) {
                // Not even the message fits; the status says enough.
            }
        }
        if (result.status == SnapshotStatus::written) {
            ++stats_.written;
        } else {
            ++stats_.failed;
        }
        stats_.removed += result.removed;
        return result;
    }

    /// Effect: Returns the options given at construction.
    /// Fails: Never fails.
    /// Thread safety: Safe (immutable after construction).
    /// Exceptions: nothrow.
    const SnapshotOptions& options() const noexcept { return options_; }

    /// Effect: Returns every count (see SnapshotStats).
    /// Fails: Never fails.
    /// Thread safety: Unsafe on a shared object being written.
    /// Exceptions: nothrow.
    SnapshotStats stats() const noexcept { return stats_; }

private:
    struct OwnFile {
        std::uint64_t unix_ms;
        std::uint64_t sequence;
        std::filesystem::path path;
    };

    // Parses "<prefix><ms>.json" or "<prefix><ms>-<n>.json"; anything else is
    // not ours.
    std::optional<OwnFile> parse_name(const std::filesystem::path& path) const {
        const std::string name = path.filename().string();
        const std::string_view suffix = ".json";
        if (name.size() <= options_.prefix.size() + suffix.size() ||
            name.compare(0, options_.prefix.size(), options_.prefix) != 0 ||
            name.compare(name.size() - suffix.size(), suffix.size(), suffix.data()) != 0) {
            return std::nullopt;
        }
        std::string_view stem(name);
        stem = stem.substr(options_.prefix.size(),
                           name.size() - options_.prefix.size() - suffix.size());
        const auto dash = stem.find('-');
        const auto ms = detail::parse_unsigned(stem.substr(0, dash));
        std::optional<std::uint64_t> sequence = std::uint64_t{0};
        if (dash != std::string_view::npos) {
            sequence = detail::parse_unsigned(stem.substr(dash + 1));
        }
        // parse_unsigned trims whitespace; a name with spaces is not ours.
        if (!ms || !sequence || stem.find_first_of(" \t\r\n\v\f") != std::string_view::npos) {
            return std::nullopt;
        }
        return OwnFile{*ms, *sequence, path};
    }

    static std::string reason(const std::error_code& ec) { return ec.message(); }

    void write(const HealthReport& report, std::string_view census_json,
               std::chrono::system_clock::time_point wall, SnapshotResult& result) {
        namespace fs = std::filesystem;
        result.status = SnapshotStatus::failed;
        const fs::path dir(options_.directory);
        std::error_code ec;
        const fs::file_status status = fs::status(dir, ec);
        if (status.type() != fs::file_type::directory) {
            const std::string why = status.type() == fs::file_type::not_found ? "does not exist"
                                    : ec ? "cannot be read: " + reason(ec)
                                         : "is not a directory";
            result.error = "snapshot directory '" + options_.directory + "' " + why;
            return;
        }

        const auto since_epoch =
            std::chrono::duration_cast<std::chrono::milliseconds>(wall.time_since_epoch()).count();
        const std::uint64_t unix_ms = since_epoch < 0 ? 0 : static_cast<std::uint64_t>(since_epoch);
        fs::path target;
        for (std::uint64_t n = 0;; ++n) {
            std::string name = options_.prefix + std::to_string(unix_ms);
            if (n > 0) {
                name += "-" + std::to_string(n);
            }
            target = dir / (name + ".json");
            ec.clear();
            if (!fs::exists(target, ec) && !ec) {
                break;
            }
            if (ec || n == 1000) {
                result.error = "cannot find a free snapshot name in '" + options_.directory + "'" +
                               (ec ? ": " + reason(ec) : std::string());
                return;
            }
        }

        const std::string body = render(report, census_json, unix_ms);
        const fs::path temporary = fs::path(target.string() + ".tmp");
        if (std::FILE* file = std::fopen(temporary.string().c_str(), "wb")) {
            const bool wrote = std::fwrite(body.data(), 1, body.size(), file) == body.size();
            const int write_errno = errno;
            const bool closed = std::fclose(file) == 0;
            if (!wrote || !closed) {
                const int code = !wrote ? write_errno : errno;
                fs::remove(temporary, ec);
                result.error = "cannot write snapshot '" + temporary.string() +
                               "': " + reason(std::error_code(code, std::generic_category()));
                return;
            }
        } else {
            result.error = "cannot create snapshot '" + temporary.string() +
                           "': " + reason(std::error_code(errno, std::generic_category()));
            return;
        }
        fs::rename(temporary, target, ec);
        if (ec) {
            result.error = "cannot rename '" + temporary.string() + "' to '" + target.string() +
                           "': " + reason(ec);
            std::error_code ignored;
            fs::remove(temporary, ignored);
            return;
        }
        result.status = SnapshotStatus::written;
        result.path = target.string();
        prune(dir, result);
    }

    // Deletes this writer's oldest snapshots beyond max_files. A failure is
    // reported in result.error but does not undo the snapshot just written.
    void prune(const std::filesystem::path& dir, SnapshotResult& result) {
        namespace fs = std::filesystem;
        std::vector<OwnFile> own;
        std::error_code ec;
        fs::directory_iterator it(dir, ec);
        for (; !ec && it != fs::directory_iterator(); it.increment(ec)) {
            std::error_code type_ec;
            if (!it->is_regular_file(type_ec)) {
                continue;
            }
            if (auto f = parse_name(it->path())) {
                own.push_back(std::move(*f));
            }
        }
        if (ec) {
            result.error =
                "cannot list '" + options_.directory + "' to remove old snapshots: " + reason(ec);
            return;
        }
        if (own.size() <= options_.max_files) {
            return;
        }
        std::sort(own.begin(), own.end(), [](const OwnFile& a, const OwnFile& b) {
            return a.unix_ms != b.unix_ms ? a.unix_ms < b.unix_ms : a.sequence < b.sequence;
        });
        const std::size_t excess = own.size() - options_.max_files;
        for (std::size_t i = 0; i < excess; ++i) {
            std::error_code remove_ec;
            if (fs::remove(own[i].path, remove_ec)) {
                ++result.removed;
            } else if (remove_ec && result.error.empty()) {
                result.error = "cannot remove old snapshot '" + own[i].path.string() +
                               "': " + reason(remove_ec);
            }
        }
    }

    std::string render(const HealthReport& report, std::string_view census_json,
                       std::uint64_t unix_ms) const {
        std::string out = "{\"format\":\"wsguard-snapshot\",\"version\":1,\"unix_ms\":";
        out += std::to_string(unix_ms);
        out += ",\"health\":";
        out += to_json(report);
        out += ",\"census\":";
        const std::string_view census = detail::trim(census_json);
        out += census.empty() ? std::string_view("null") : census;
        out += ",\"malloc_info\":";
        std::optional<std::string> xml;
        if (options_.include_malloc_info) {
            xml = malloc_info_xml();
        }
        if (xml) {
            detail::append_json_string(out, *xml);
        } else {
            out += "null";
        }
        out += "}\n";
        return out;
    }

    SnapshotOptions options_;
    std::optional<std::chrono::steady_clock::time_point> last_attempt_;
    SnapshotStats stats_;
};

}  // namespace wsguard
