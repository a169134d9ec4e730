// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// Health types: the levels, a check's result, a finding, the report, the
// sample the checks and the triage read, and the series the triage tracks.
#pragma once

#include <array>
#include <cstddef>
#include <string>
#include <vector>

#include <wsguard/growth_rate_detector.hpp>
#include <wsguard/memory.hpp>

namespace wsguard {

// ---------------------------------------------------------------------------
// Levels and results
// ---------------------------------------------------------------------------

/// How bad a check or a finding is. Ordered: ok < warning < critical.
enum class HealthLevel {
    ok,       ///< Nothing to do.
    warning,  ///< Look at it today.
    critical  ///< Look at it now: the process is near a wall or leaking fast.
};

/// Effect: Returns "ok", "warning" or "critical".
/// Fails: Never fails; an out-of-range value yields "unknown".
/// Thread safety: Safe.
/// Exceptions: nothrow.
inline const char* to_string(HealthLevel level) noexcept {
    switch (level) {
        case HealthLevel::ok:
            return "ok";
        case HealthLevel::warning:
            return "warning";
        case HealthLevel::critical:
            return "critical";
    }
    return "unknown";
}

/// Effect: Returns the worse of two levels (critical > warning > ok).
/// Fails: Never fails.
/// Thread safety: Safe.
/// Exceptions: nothrow.
constexpr HealthLevel worst(HealthLevel a, HealthLevel b) noexcept {
    return static_cast<int>(a) >= static_cast<int>(b) ? a : b;
}

/// Effect: Maps a detector's level: warning and critical keep their meaning;
///         ok and insufficient_data (no verdict yet) are ok.
/// Fails: Never fails.
/// Thread safety: Safe.
/// Exceptions: nothrow.
constexpr HealthLevel to_health_level(GrowthLevel level) noexcept {
    return level == GrowthLevel::critical  ? HealthLevel::critical
           : level == GrowthLevel::warning ? HealthLevel::warning
                                           : HealthLevel::ok;
}

/// One row of the checklist.
struct CheckResult {
    /// "memory_usage", "memory_growth", "listeners", "connections" or
    /// "fragmentation"; "drop_ratio" from drop_ratio_check().
    std::string name;
    HealthLevel level = HealthLevel::ok;
    /// False when an input is missing (no resident or heap reading on this
    /// platform, no memory limit, no max_connections, too few samples): the
    /// level is then ok, value is 0 and message says what is missing.
    bool measured = false;
    /// The measured quantity, in the unit of warning_at / critical_at:
    /// memory_usage and connections: fraction of the limit (0.7 = 70%);
    /// memory_growth: bytes per hour; listeners: listeners per connection
    /// (connections counted as at least 1); fragmentation: resident / heap;
    /// drop_ratio: dropped / (delivered + dropped) messages over its window.
    double value = 0.0;
    double warning_at = 0.0;   ///< value >= warning_at is warning (when the check applies).
    double critical_at = 0.0;  ///< value >= critical_at is critical (when the check applies).
    std::string message;       ///< What was measured and, when not ok, what to do.
};

/// A series the triage names: what grows and why it probably does.
struct Finding {
    /// The series' name (see to_string(HealthSeries)), e.g. "connections";
    /// "resident_bytes" or "heap_bytes" when memory grows and nothing tracked
    /// grows with it.
    std::string series;
    HealthLevel level = HealthLevel::ok;  ///< Never ok in a report.
    double growth_per_hour = 0.0;         ///< The series' least-squares slope, units per hour.
    double r_squared = 0.0;               ///< Fit quality of that slope, in [0, 1].
    std::string message;                  ///< Likely cause and fix, for a server engineer.
};

/// The checklist and the triage at one moment.
struct HealthReport {
    HealthLevel level = HealthLevel::ok;  ///< The worst level of checks and findings.
    std::vector<CheckResult> checks;      ///< Always all five, in the order listed above.
    std::vector<Finding> findings;        ///< Empty when nothing grows.
};

// ---------------------------------------------------------------------------
// Inputs and options
// ---------------------------------------------------------------------------

/// One reading of everything the checks and the triage look at, taken once
/// per sample interval (e.g. read_memory() and ServerGuard::stats()).
struct HealthSample {
    MemoryReading memory{};        ///< Absent readings are skipped, never read as 0.
    std::size_t connections = 0;   ///< Open connections.
    std::size_t listeners = 0;     ///< Listeners attached to the server's events.
    std::size_t queued_bytes = 0;  ///< Bytes waiting in every connection's send queue.
    std::size_t rooms = 0;         ///< Rooms with at least one member.
    std::size_t memberships = 0;   ///< (member, room) pairs.
};

/// The series LeakTriage tracks, one GrowthRateDetector each.
enum class HealthSeries {
    resident_bytes,  ///< HealthSample::memory.resident_bytes
    heap_bytes,      ///< HealthSample::memory.heap_in_use_bytes
    connections,
    listeners,
    queued_bytes,
    rooms,
    memberships
};

/// Number of HealthSeries values.
inline constexpr std::size_t health_series_count = 7;

/// Every HealthSeries, in declaration order (for /stats and /metrics loops).
inline constexpr std::array<HealthSeries, health_series_count> all_health_series = {
    HealthSeries::resident_bytes, HealthSeries::heap_bytes,   HealthSeries::connections,
    HealthSeries::listeners,      HealthSeries::queued_bytes, HealthSeries::rooms,
    HealthSeries::memberships};

/// Effect: Returns the series' name, as the reference server's /stats and
///         /history keys spell it: "resident_bytes", "heap_bytes",
///         "connections", "listeners", "queued_bytes", "rooms", "memberships".
/// Fails: Never fails; an out-of-range value yields "unknown".
/// Thread safety: Safe.
/// Exceptions: nothrow.
inline const char* to_string(HealthSeries series) noexcept {
    switch (series) {
        case HealthSeries::resident_bytes:
            return "resident_bytes";
        case HealthSeries::heap_bytes:
            return "heap_bytes";
        case HealthSeries::connections:
            return "connections";
        case HealthSeries::listeners:
            return "listeners";
        case HealthSeries::queued_bytes:
            return "queued_bytes";
        case HealthSeries::rooms:
            return "rooms";
        case HealthSeries::memberships:
            return "memberships";
    }
    return "unknown";
}

}  // namespace wsguard
