// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// Health: the monitoring checklist as code, the triage walk, and a snapshot on
// critical. A leak on a long-lived server is found in three steps, and this
// header does each one so an engineer paged at 3 a.m. does not have to:
//
// 1. The checklist, each check with levels ok / warning / critical:
//    - memory_usage:  resident memory at 70% / 85% of the limit that applies
//                     (cgroup, else physical memory; see memory.hpp);
//    - memory_growth: resident memory growing at 50 / 100 MiB per hour, only
//                     when the least-squares fit is good (GrowthRateDetector);
//    - listeners:     listeners at 2x / 5x the connection count, once there are
//                     more listeners than a floor of a server's own global ones;
//    - connections:   connections at 80% / 95% of the maximum;
//    - fragmentation: resident memory at 1.5x / 2x the heap in use, above a
//                     64 MiB floor. The usual checklist's last row is
//                     garbage-collection frequency, which C++ does not have;
//                     what it warns of (the memory manager working ever harder
//                     to hand out memory) shows in C++ as fragmentation: the
//                     allocator holding far more resident memory than the
//                     program has allocated.
// 2. The triage walk (LeakTriage): one GrowthRateDetector per series (resident
//    memory, heap, connections, listeners, queued bytes, rooms, memberships).
//    When memory grows, every series that grows with it is named with its
//    likely cause and fix; when nothing grows with it, that is said too, since
//    it points away from wsguard's components.
// 3. Evidence (CriticalSnapshotWriter): on critical, at most once per interval,
//    a JSON file with the report, the caller's census and malloc_info().
//
// HealthMonitor puts 1 and 2 together: sample() every sample interval,
// report() when /stats is asked. Standard library only: the caller supplies
// the counts (e.g. from ServerGuard::stats()) and the memory reading.
#pragma once

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <wsguard/growth_rate_detector.hpp>
#include <wsguard/memory.hpp>

#if defined(__GLIBC__)
#include <malloc.h>
#include <stdio.h>  // open_memstream (POSIX 2008)
#endif

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
    /// "memory_usage", "memory_growth", "listeners", "connections" or "fragmentation".
    std::string name;
    HealthLevel level = HealthLevel::ok;
    /// False when an input is missing (no resident or heap reading on this
    /// platform, no memory limit, no max_connections, too few samples): the
    /// level is then ok, value is 0 and message says what is missing.
    bool measured = false;
    /// The measured quantity, in the unit of warning_at / critical_at:
    /// memory_usage and connections: fraction of the limit (0.7 = 70%);
    /// memory_growth: bytes per hour; listeners: listeners per connection
    /// (connections counted as at least 1); fragmentation: resident / heap.
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

namespace detail {

/// GrowthOptions with the detector's defaults (window, min_samples, R^2 >= 0.8)
/// and the given thresholds, in units of the series per hour.
inline GrowthOptions growth_per_hour(double warning, double critical) {
    GrowthOptions o;
    o.warning_per_hour = warning;
    o.critical_per_hour = critical;
    return o;
}

}  // namespace detail

/// One GrowthOptions per series. Thresholds are in units of the series per
/// hour; a series "grows" when its detector says warning or critical, which
/// needs the fit's R^2 >= min_r_squared (0.8 by default), so churn and noise
/// are not growth. The window is the detector's default (60 samples): set it
/// so that it spans several minutes at your sample interval (e.g. 600 at 1 s).
struct TriageOptions {
    /// 50 / 100 MiB per hour: the checklist's memory growth levels (also the
    /// memory_growth check's thresholds). Set `limit` to the memory limit to
    /// get a time to limit in the verdict.
    GrowthOptions resident_bytes = detail::growth_per_hour(50.0 * 1024 * 1024, 100.0 * 1024 * 1024);
    /// Same levels for the heap in use: a heap growing is memory growing.
    GrowthOptions heap_bytes = detail::growth_per_hour(50.0 * 1024 * 1024, 100.0 * 1024 * 1024);
    /// 60 / 600 per hour: one connection a minute that is never removed is a
    /// leak worth naming; ten a minute is one that fills a server in a day.
    GrowthOptions connections = detail::growth_per_hour(60.0, 600.0);
    /// Same as connections: listeners leak one (or a few) per connection.
    GrowthOptions listeners = detail::growth_per_hour(60.0, 600.0);
    /// 10 / 50 MiB per hour: a fifth of the memory warning rate is a visible
    /// share of memory growth; half the critical rate is most of it.
    GrowthOptions queued_bytes = detail::growth_per_hour(10.0 * 1024 * 1024, 50.0 * 1024 * 1024);
    /// 60 / 600 per hour, as connections: rooms leak one per abandoned room.
    GrowthOptions rooms = detail::growth_per_hour(60.0, 600.0);
    /// 60 / 600 per hour, as connections: memberships leak per closed member.
    GrowthOptions memberships = detail::growth_per_hour(60.0, 600.0);

    /// Effect: Returns the options of `series`.
    /// Fails: Never fails; an out-of-range value yields memberships.
    /// Thread safety: Safe on a const object.
    /// Exceptions: nothrow.
    const GrowthOptions& of(HealthSeries series) const noexcept {
        switch (series) {
            case HealthSeries::resident_bytes:
                return resident_bytes;
            case HealthSeries::heap_bytes:
                return heap_bytes;
            case HealthSeries::connections:
                return connections;
            case HealthSeries::listeners:
                return listeners;
            case HealthSeries::queued_bytes:
                return queued_bytes;
            case HealthSeries::rooms:
                return rooms;
            case HealthSeries::memberships:
                break;
        }
        return memberships;
    }

    /// Effect: the options of one series, to change them in place.
    GrowthOptions& of(HealthSeries series) noexcept {
        return const_cast<GrowthOptions&>(static_cast<const TriageOptions&>(*this).of(series));
    }
};

/// Thresholds of the checklist. A level applies at or above its threshold
/// (value >= warning_at is warning). Memory growth thresholds live in
/// TriageOptions::resident_bytes, so the check and the triage agree.
struct CheckOptions {
    /// Resident memory as a fraction of the limit: 70% leaves time to act,
    /// 85% is where the OOM killer is one traffic spike away.
    double memory_usage_warning = 0.70;
    double memory_usage_critical = 0.85;
    /// Listeners per connection. One or two per connection is a normal design;
    /// 5x means listeners outlive their connections.
    double listeners_warning = 2.0;
    double listeners_critical = 5.0;
    /// The listeners check is ok while listeners <= this floor, whatever the
    /// ratio: a server registers a handful of global listeners (router,
    /// metrics, logging) that do not scale with connections, so 3 listeners
    /// and 0 connections is not a leak. 16 leaves room for them; a
    /// per-connection leak crosses it after a few dozen connections of churn.
    /// Set it above the number of listeners your server holds at startup.
    std::size_t listener_floor = 16;
    /// The connection limit (e.g. GuardOptions::max_connections); 0: no
    /// limit, and the connections check is not measured.
    std::size_t max_connections = 0;
    /// Connections as a fraction of max_connections: at 80% the next surge is
    /// refused with 1013; at 95% it already is.
    double connections_warning = 0.80;
    double connections_critical = 0.95;
    /// Resident memory / heap in use. A healthy glibc heap keeps resident
    /// within ~1.2x of the heap; 1.5x means a third of resident memory is free
    /// memory the allocator cannot return, 2x means half is.
    double fragmentation_warning = 1.5;
    double fragmentation_critical = 2.0;
    /// The fragmentation check is ok while resident memory <= this floor: in a
    /// small process resident memory is mostly code, shared libraries, thread
    /// stacks and allocator arenas (typically 10-40 MiB), not heap, so the
    /// ratio measures that fixed part, not fragmentation. Above 64 MiB the
    /// heap dominates on a server holding connections.
    std::size_t fragmentation_floor_bytes = std::size_t{64} * 1024 * 1024;
};

/// Every setting of a HealthMonitor.
struct HealthOptions {
    CheckOptions checks{};
    TriageOptions triage{};
};

namespace detail {

inline void require_thresholds(const char* what, double warning, double critical) {
    if (!(std::isfinite(warning) && std::isfinite(critical) && warning > 0.0 &&
          warning <= critical)) {
        throw std::invalid_argument(std::string("wsguard::CheckOptions: ") + what +
                                    " thresholds must be finite, > 0 and warning <= critical");
    }
}

inline void validate(const CheckOptions& o) {
    require_thresholds("memory_usage", o.memory_usage_warning, o.memory_usage_critical);
    require_thresholds("listeners", o.listeners_warning, o.listeners_critical);
    require_thresholds("connections", o.connections_warning, o.connections_critical);
    require_thresholds("fragmentation", o.fragmentation_warning, o.fragmentation_critical);
}

inline HealthLevel classify(double value, double warning, double critical) noexcept {
    return value >= critical  ? HealthLevel::critical
           : value >= warning ? HealthLevel::warning
                              : HealthLevel::ok;
}

/// printf's %f and %g follow the C locale's decimal point; a server that
/// called setlocale() must still write "0.7", not "0,7".
inline std::string c_locale_number(const char* buffer) {
    std::string s(buffer);
    std::replace(s.begin(), s.end(), ',', '.');
    return s;
}

inline std::string fixed(double value, int decimals) {
    char buffer[64];
    std::snprintf(buffer, sizeof buffer, "%.*f", decimals, value);
    return c_locale_number(buffer);
}

/// "512 B", "1.5 KiB", "80.0 MiB", "1.2 GiB".
inline std::string bytes(double value) {
    static constexpr const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = value;
    std::size_t unit = 0;
    while ((v >= 1024.0 || v <= -1024.0) && unit + 1 < sizeof units / sizeof units[0]) {
        v /= 1024.0;
        ++unit;
    }
    return fixed(v, unit == 0 ? 0 : 1) + " " + units[unit];
}

/// A count: no decimals from 10 up, one below ("0.5", "12").
inline std::string count(double value) {
    return fixed(value, std::fabs(value) >= 10.0 ? 0 : 1);
}

inline bool is_bytes(HealthSeries s) noexcept {
    return s == HealthSeries::resident_bytes || s == HealthSeries::heap_bytes ||
           s == HealthSeries::queued_bytes;
}

/// A signed rate per hour in the series' unit: "+80.0 MiB/h", "+720/h".
inline std::string rate(HealthSeries s, double per_hour) {
    const std::string sign = per_hour >= 0.0 ? "+" : "";
    return sign + (is_bytes(s) ? bytes(per_hour) : count(per_hour)) + "/h";
}

inline std::string percent(double fraction) {
    return fixed(fraction * 100.0, 1) + "%";
}

inline std::string hours(double h) {
    return h >= 48.0 ? fixed(h / 24.0, 1) + " days" : fixed(h, 1) + " h";
}

}  // namespace detail

// ---------------------------------------------------------------------------
// LeakTriage
// ---------------------------------------------------------------------------

/// A snapshot of every count a LeakTriage holds.
struct TriageStats {
    std::uint64_t samples = 0;           ///< sample() calls.
    std::uint64_t resident_missing = 0;  ///< Samples without a resident reading (not fed).
    std::uint64_t heap_missing = 0;      ///< Samples without a heap reading (not fed).
    /// Each detector's stats, indexed by HealthSeries (see all_health_series).
    std::array<GrowthStats, health_series_count> series{};
};

/// Which series grows with memory: the triage walk of a leak hunt, automated.
///
/// Owns one GrowthRateDetector per HealthSeries and feeds all of them from
/// each sample. findings() then applies these rules (levels are HealthLevel):
/// - Memory grows when the resident or the heap detector says warning or
///   critical (a credible trend: R^2 >= min_r_squared and the rate at or above
///   the threshold). The memory level is the worse of the two.
/// - While memory grows, each count series whose own detector says growing is
///   a finding at the worse of the memory level and its own, with its likely
///   cause and fix. Listeners are compared with connections: listeners that
///   grow more than 1.5x as fast as connections (or while connections do not
///   grow) are added per connection and never removed; listeners that grow at
///   about the connections' pace leak with their connections.
/// - While memory grows and no tracked series grows with it, one finding for
///   the memory series ("resident_bytes", else "heap_bytes") says so: the
///   growth is outside wsguard's components (or, resident growing with a flat
///   heap, in the allocator: fragmentation).
/// - A count series that grows steadily while memory does not is a finding
///   at warning, never critical: a steady climb is a leak in the making whose
///   memory cost is still below the memory thresholds (or load rising; the
///   message says both). Nothing is about to run out yet.
/// - No credible growth, no finding: a noisy flat series and connections
///   churning around a mean have a low R^2 and are not leaks.
///
/// Thread safety: Distinct objects: Safe. Shared objects: Unsafe (one
/// sampling thread owns it; guard it with the sampler's mutex).
class LeakTriage {
public:
    /// Effect: Creates one empty detector per series (allocating each window).
    /// Fails: Throws if any series' GrowthOptions is invalid (see
    ///        GrowthRateDetector's constructor); the message names the series.
    /// Thread safety: n/a (construction).
    /// Exceptions: std::invalid_argument; std::bad_alloc.
    explicit LeakTriage(TriageOptions options = {})
        : options_(std::move(options)), detectors_{make(HealthSeries::resident_bytes),
                                                   make(HealthSeries::heap_bytes),
                                                   make(HealthSeries::connections),
                                                   make(HealthSeries::listeners),
                                                   make(HealthSeries::queued_bytes),
                                                   make(HealthSeries::rooms),
                                                   make(HealthSeries::memberships)} {}

    /// Effect: Adds (t, value) to every series' detector; a missing memory
    ///         reading is skipped for that series (and counted in stats()),
    ///         never read as 0. O(1) per series, no allocation.
    /// Fails: A sample older than a detector's newest one is ignored by that
    ///        detector and counted in its stats (see GrowthRateDetector).
    /// Thread safety: Unsafe on a shared object.
    /// Exceptions: nothrow.
    void sample(std::chrono::steady_clock::time_point t, const HealthSample& s) noexcept {
        ++samples_;
        if (s.memory.resident_bytes) {
            at(HealthSeries::resident_bytes)
                .add_sample(t, static_cast<double>(*s.memory.resident_bytes));
        } else {
            ++resident_missing_;
        }
        if (s.memory.heap_in_use_bytes) {
            at(HealthSeries::heap_bytes)
                .add_sample(t, static_cast<double>(*s.memory.heap_in_use_bytes));
        } else {
            ++heap_missing_;
        }
        at(HealthSeries::connections).add_sample(t, static_cast<double>(s.connections));
        at(HealthSeries::listeners).add_sample(t, static_cast<double>(s.listeners));
        at(HealthSeries::queued_bytes).add_sample(t, static_cast<double>(s.queued_bytes));
        at(HealthSeries::rooms).add_sample(t, static_cast<double>(s.rooms));
        at(HealthSeries::memberships).add_sample(t, static_cast<double>(s.memberships));
    }

    /// Effect: Returns the current verdict of `series`' detector. O(window).
    /// Fails: Never fails; too little data gives level insufficient_data.
    /// Thread safety: Unsafe on a shared object being written.
    /// Exceptions: nothrow.
    GrowthVerdict verdict(HealthSeries series) const noexcept { return at(series).verdict(); }

    /// Effect: Returns the worse level of the resident and heap detectors
    ///         (ok while either has no verdict yet and the other is ok).
    /// Fails: Never fails.
    /// Thread safety: Unsafe on a shared object being written.
    /// Exceptions: nothrow.
    HealthLevel memory_level() const noexcept {
        return worst(to_health_level(verdict(HealthSeries::resident_bytes).level),
                     to_health_level(verdict(HealthSeries::heap_bytes).level));
    }

    /// Effect: Applies the rules in the class comment to the current verdicts
    ///         and returns the findings in HealthSeries order (empty when
    ///         nothing grows). O(series x window).
    /// Fails: Never fails.
    /// Thread safety: Unsafe on a shared object being written.
    /// Exceptions: std::bad_alloc (strings); the triage is unchanged.
    std::vector<Finding> findings() const {
        std::array<GrowthVerdict, health_series_count> v{};
        for (HealthSeries s : all_health_series) {
            v[index(s)] = verdict(s);
        }
        const GrowthVerdict& resident = v[index(HealthSeries::resident_bytes)];
        const GrowthVerdict& heap = v[index(HealthSeries::heap_bytes)];
        const GrowthVerdict& connections = v[index(HealthSeries::connections)];
        const HealthLevel memory =
            worst(to_health_level(resident.level), to_health_level(heap.level));
        const bool memory_grows = memory != HealthLevel::ok;
        const bool memory_measured = resident.level != GrowthLevel::insufficient_data ||
                                     heap.level != GrowthLevel::insufficient_data;
        // The memory series that grows, for the "with memory" context.
        const HealthSeries memory_series =
            resident.growing() ? HealthSeries::resident_bytes : HealthSeries::heap_bytes;
        const GrowthVerdict& mv = v[index(memory_series)];

        std::vector<Finding> out;
        for (HealthSeries s : all_health_series) {
            const GrowthVerdict& sv = v[index(s)];
            if (s == HealthSeries::resident_bytes || s == HealthSeries::heap_bytes ||
                !sv.growing()) {
                continue;
            }
            std::string what = std::string(to_string(s)) + " grow";
            std::string numbers =
                detail::rate(s, sv.growth_per_hour) + ", r^2 " + detail::fixed(sv.r_squared, 2);
            const char* cause = cause_of(s);
            if (s == HealthSeries::listeners) {
                const bool faster = !connections.growing() ||
                                    sv.growth_per_hour > 1.5 * connections.growth_per_hour;
                if (faster) {
                    what = "listeners grow faster than connections,";
                    numbers += "; connections " +
                               detail::rate(HealthSeries::connections, connections.growth_per_hour);
                } else {
                    cause =
                        "each connection that is never removed keeps its listeners; fix the "
                        "connections finding first, and hold each ScopedListener in the "
                        "connection's state";
                }
            }
            Finding f;
            f.series = to_string(s);
            f.growth_per_hour = sv.growth_per_hour;
            f.r_squared = sv.r_squared;
            if (memory_grows) {
                f.level = worst(memory, to_health_level(sv.level));
                f.message = what + " with memory (" + numbers + "; " + to_string(memory_series) +
                            " " + detail::rate(memory_series, mv.growth_per_hour) + "): " + cause;
            } else {
                f.level = HealthLevel::warning;
                f.message = what + " steadily while memory " +
                            (memory_measured ? "does not (yet)" : "is not measured") + " (" +
                            numbers + "): a leak in the making, or load rising: " + cause;
            }
            out.push_back(std::move(f));
        }

        if (memory_grows && out.empty()) {
            Finding f;
            f.series = to_string(memory_series);
            f.level = memory;
            f.growth_per_hour = mv.growth_per_hour;
            f.r_squared = mv.r_squared;
            f.message = "no tracked series grows with memory (" + std::string(f.series) + " " +
                        detail::rate(memory_series, mv.growth_per_hour) + ", r^2 " +
                        detail::fixed(mv.r_squared, 2) + "): ";
            if (resident.growing() && heap.level == GrowthLevel::ok) {
                // The heap has a verdict and does not grow: the growth is not
                // live allocations.
                f.message +=
                    "resident memory grows but the heap in use does not, so it is freed memory "
                    "the allocator keeps (fragmentation: call release_free_memory() after waves "
                    "of closes, try MALLOC_ARENA_MAX=2) or memory mapped outside malloc (thread "
                    "stacks, mmap); otherwise look at caches / allocations outside wsguard's "
                    "components";
            } else {
                f.message +=
                    "connections, listeners, queued bytes, rooms and memberships are steady, so "
                    "look at caches / allocations outside wsguard's components: per-session maps "
                    "keyed by something other than the connection id, closures capturing large "
                    "objects or a connection_ptr, third-party libraries; a heap profile "
                    "(heaptrack, jemalloc prof) names the call site";
            }
            out.push_back(std::move(f));
        }
        return out;
    }

    /// Effect: Returns `series`' detector (its options, size and stats).
    /// Fails: Never fails.
    /// Thread safety: Unsafe on a shared object being written.
    /// Exceptions: nothrow.
    const GrowthRateDetector& detector(HealthSeries series) const noexcept { return at(series); }

    /// Effect: Forgets every sample of every detector (e.g. after a deploy or
    ///         a configuration change that moves every baseline). The counters
    ///         in stats() are kept.
    /// Fails: Never fails.
    /// Thread safety: Unsafe on a shared object.
    /// Exceptions: nothrow.
    void reset() noexcept {
        for (GrowthRateDetector& d : detectors_) {
            d.reset();
        }
    }

    /// Effect: Returns the options given at construction.
    /// Fails: Never fails.
    /// Thread safety: Safe (immutable after construction).
    /// Exceptions: nothrow.
    const TriageOptions& options() const noexcept { return options_; }

    /// Effect: Returns every count and each detector's stats. O(series x window).
    /// Fails: Never fails.
    /// Thread safety: Unsafe on a shared object being written.
    /// Exceptions: nothrow.
    TriageStats stats() const noexcept {
        TriageStats s;
        s.samples = samples_;
        s.resident_missing = resident_missing_;
        s.heap_missing = heap_missing_;
        for (HealthSeries series : all_health_series) {
            s.series[index(series)] = at(series).stats();
        }
        return s;
    }

private:
    static constexpr std::size_t index(HealthSeries s) noexcept {
        return static_cast<std::size_t>(s) < health_series_count ? static_cast<std::size_t>(s)
                                                                 : health_series_count - 1;
    }

    GrowthRateDetector& at(HealthSeries s) noexcept { return detectors_[index(s)]; }
    const GrowthRateDetector& at(HealthSeries s) const noexcept { return detectors_[index(s)]; }

    GrowthRateDetector make(HealthSeries s) const {
        try {
            return GrowthRateDetector(options_.of(s));
        } catch (const std::invalid_argument& e) {
            throw std::invalid_argument(std::string("wsguard::LeakTriage: ") + to_string(s) + ": " +
                                        e.what());
        }
    }

    static const char* cause_of(HealthSeries s) noexcept {
        switch (s) {
            case HealthSeries::connections:
                return "connections are not being removed on close; check the close/fail "
                       "handlers and the idle timeout (if traffic is rising, compare connections "
                       "opened and closed first)";
            case HealthSeries::listeners:
                return "listeners are added per connection and never removed; hold the "
                       "ScopedListener in the connection's state so closing the connection "
                       "unsubscribes it";
            case HealthSeries::queued_bytes:
                return "slow consumers' send queues fill; lower --max-buffered-bytes (the "
                       "per-connection bound on buffered bytes) or use --slow-consumer close";
            case HealthSeries::rooms:
                return "empty rooms are not erased / members not removed on close: call "
                       "leave_all(member) on close";
            case HealthSeries::memberships:
                return "members are not removed from rooms on close: call leave_all(member) in "
                       "the close and fail handlers";
            case HealthSeries::resident_bytes:
            case HealthSeries::heap_bytes:
                break;
        }
        return "memory grows";
    }

    TriageOptions options_;
    std::array<GrowthRateDetector, health_series_count> detectors_;
    std::uint64_t samples_ = 0;
    std::uint64_t resident_missing_ = 0;
    std::uint64_t heap_missing_ = 0;
};

// ---------------------------------------------------------------------------
// The checklist
// ---------------------------------------------------------------------------

namespace detail {

inline CheckResult unmeasured(const char* name, double warning, double critical, std::string why) {
    CheckResult c;
    c.name = name;
    c.warning_at = warning;
    c.critical_at = critical;
    c.message = "not measured: " + std::move(why);
    return c;
}

inline CheckResult measured(const char* name, double value, double warning, double critical,
                            HealthLevel level) {
    CheckResult c;
    c.name = name;
    c.measured = true;
    c.value = value;
    c.warning_at = warning;
    c.critical_at = critical;
    c.level = level;
    return c;
}

inline CheckResult memory_usage_check(const HealthSample& s, const CheckOptions& o) {
    const double w = o.memory_usage_warning;
    const double c = o.memory_usage_critical;
    if (!s.memory.resident_bytes) {
        return unmeasured("memory_usage", w, c,
                          "no resident memory reading (none on this platform, or no sample yet)");
    }
    if (!s.memory.limit_bytes || *s.memory.limit_bytes == 0) {
        return unmeasured("memory_usage", w, c, "no memory limit reading on this platform");
    }
    const double resident = static_cast<double>(*s.memory.resident_bytes);
    const double limit = static_cast<double>(*s.memory.limit_bytes);
    const double value = resident / limit;
    CheckResult r = measured("memory_usage", value, w, c, classify(value, w, c));
    r.message = "resident " + bytes(resident) + " is " + percent(value) + " of the " +
                bytes(limit) + " limit (" + to_string(s.memory.limit_source) + "); warning at " +
                percent(w) + ", critical at " + percent(c);
    if (r.level != HealthLevel::ok) {
        r.message +=
            ": see the memory_growth check and the findings for what grows; raise the limit "
            "only once nothing does";
    }
    return r;
}

inline CheckResult memory_growth_check(const HealthSample& s, const LeakTriage* triage) {
    const GrowthOptions defaults = TriageOptions{}.resident_bytes;
    const GrowthOptions& g = triage ? triage->options().resident_bytes : defaults;
    const double w = g.warning_per_hour;
    const double c = g.critical_per_hour;
    if (triage == nullptr) {
        return unmeasured("memory_growth", w, c, "no triage to take samples");
    }
    const GrowthVerdict v = triage->verdict(HealthSeries::resident_bytes);
    if (v.level == GrowthLevel::insufficient_data) {
        return unmeasured("memory_growth", w, c,
                          "collecting resident memory samples (" + std::to_string(v.samples) +
                              " of " + std::to_string(g.min_samples) + ")");
    }
    CheckResult r = measured("memory_growth", v.growth_per_hour, w, c, to_health_level(v.level));
    const std::string thresholds = "warning at " + bytes(w) + "/h, critical at " + bytes(c) + "/h";
    if (v.r_squared < g.min_r_squared) {
        r.message = "no credible trend: " + rate(HealthSeries::resident_bytes, v.growth_per_hour) +
                    " with r^2 " + fixed(v.r_squared, 2) +
                    " (a trend needs r^2 >= " + fixed(g.min_r_squared, 2) + "); " + thresholds;
        return r;
    }
    r.message = "resident memory " + rate(HealthSeries::resident_bytes, v.growth_per_hour) +
                " (r^2 " + fixed(v.r_squared, 2) + ", " + std::to_string(v.samples) +
                " samples); " + thresholds;
    if (r.level != HealthLevel::ok && s.memory.limit_bytes && s.memory.resident_bytes &&
        v.growth_per_hour > 0.0) {
        const double left = static_cast<double>(*s.memory.limit_bytes) -
                            static_cast<double>(*s.memory.resident_bytes);
        r.message += left <= 0.0 ? "; the limit is reached"
                                 : "; at this rate the limit is reached in about " +
                                       hours(left / v.growth_per_hour);
    }
    if (r.level != HealthLevel::ok) {
        r.message += "; the findings name what grows with it";
    }
    return r;
}

inline CheckResult listeners_check(const HealthSample& s, const CheckOptions& o) {
    const double w = o.listeners_warning;
    const double c = o.listeners_critical;
    const double per_connection = static_cast<double>(s.listeners) /
                                  static_cast<double>(std::max<std::size_t>(s.connections, 1));
    const bool applies = s.listeners > o.listener_floor;
    CheckResult r = measured("listeners", per_connection, w, c,
                             applies ? classify(per_connection, w, c) : HealthLevel::ok);
    r.message = std::to_string(s.listeners) + " listeners for " + std::to_string(s.connections) +
                " connections (" + fixed(per_connection, 2) + " per connection); warning at " +
                fixed(w, 1) + "x, critical at " + fixed(c, 1) + "x";
    if (!applies) {
        r.message += "; at or below the floor of " + std::to_string(o.listener_floor) +
                     " (a server's own global listeners), so not a leak";
    } else if (r.level != HealthLevel::ok) {
        r.message +=
            ": listeners outlive their connections; hold each ScopedListener in the "
            "connection's state so closing the connection unsubscribes it";
    }
    return r;
}

inline CheckResult connections_check(const HealthSample& s, const CheckOptions& o) {
    const double w = o.connections_warning;
    const double c = o.connections_critical;
    if (o.max_connections == 0) {
        return unmeasured("connections", w, c, "no max_connections set");
    }
    const double value =
        static_cast<double>(s.connections) / static_cast<double>(o.max_connections);
    CheckResult r = measured("connections", value, w, c, classify(value, w, c));
    r.message = std::to_string(s.connections) + " of " + std::to_string(o.max_connections) +
                " connections (" + percent(value) + "); warning at " + percent(w) +
                ", critical at " + percent(c);
    if (r.level != HealthLevel::ok) {
        r.message +=
            ": new connections will be refused with 1013; if the listeners or the findings "
            "show connections leaking, fix that, else add capacity";
    }
    return r;
}

inline CheckResult fragmentation_check(const HealthSample& s, const CheckOptions& o) {
    const double w = o.fragmentation_warning;
    const double c = o.fragmentation_critical;
    if (!s.memory.resident_bytes) {
        return unmeasured("fragmentation", w, c,
                          "no resident memory reading (none on this platform, or no sample yet)");
    }
    if (!s.memory.heap_in_use_bytes || *s.memory.heap_in_use_bytes == 0) {
        return unmeasured("fragmentation", w, c,
                          "no heap reading (needs glibc >= 2.33 and no sanitizer)");
    }
    const double resident = static_cast<double>(*s.memory.resident_bytes);
    const double heap = static_cast<double>(*s.memory.heap_in_use_bytes);
    const double value = resident / heap;
    const bool applies = *s.memory.resident_bytes > o.fragmentation_floor_bytes;
    CheckResult r =
        measured("fragmentation", value, w, c, applies ? classify(value, w, c) : HealthLevel::ok);
    r.message = "resident " + bytes(resident) + " is " + fixed(value, 2) + "x the " + bytes(heap) +
                " heap in use; warning at " + fixed(w, 1) + "x, critical at " + fixed(c, 1) + "x";
    if (!applies) {
        r.message += "; at or below the " +
                     bytes(static_cast<double>(o.fragmentation_floor_bytes)) +
                     " floor, where code, libraries and stacks dominate, so not checked";
    } else if (r.level != HealthLevel::ok) {
        r.message +=
            ": the allocator keeps freed memory it cannot return (fragmentation); call "
            "release_free_memory() after waves of closes, try MALLOC_ARENA_MAX=2, and avoid "
            "long-lived small allocations interleaved with short-lived large ones";
    }
    return r;
}

}  // namespace detail

/// Effect: Runs the five checks on `sample` (memory_usage, memory_growth,
///         listeners, connections, fragmentation, in that order) and adds the
///         triage's findings; the report's level is the worst of them all.
///         memory_growth uses the triage's resident verdict and thresholds.
/// Fails: Without a triage (nullptr), memory_growth is not measured and
///        there are no findings. A check whose input is absent is not
///        measured (CheckResult::measured false, level ok).
/// Thread safety: Safe for distinct triages; the triage must not be written
///                during the call.
/// Exceptions: std::invalid_argument if `options` has a threshold that is not
///             finite, not > 0, or a warning above its critical;
///             std::bad_alloc.
inline HealthReport evaluate_health(const HealthSample& sample, const CheckOptions& options,
                                    const LeakTriage* triage) {
    detail::validate(options);
    HealthReport report;
    report.checks.reserve(5);
    report.checks.push_back(detail::memory_usage_check(sample, options));
    report.checks.push_back(detail::memory_growth_check(sample, triage));
    report.checks.push_back(detail::listeners_check(sample, options));
    report.checks.push_back(detail::connections_check(sample, options));
    report.checks.push_back(detail::fragmentation_check(sample, options));
    if (triage != nullptr) {
        report.findings = triage->findings();
    }
    for (const CheckResult& c : report.checks) {
        report.level = worst(report.level, c.level);
    }
    for (const Finding& f : report.findings) {
        report.level = worst(report.level, f.level);
    }
    return report;
}

// ---------------------------------------------------------------------------
// HealthMonitor
// ---------------------------------------------------------------------------

/// The checklist and the triage in one object, for a server: call sample()
/// every sample interval and report() when /stats or /metrics is asked.
///
/// Keeps the latest sample for the checks (usage, ratios) and feeds every
/// sample to a LeakTriage (trends). Before the first sample, report() has
/// nothing measured and level ok.
///
/// Thread safety: Distinct objects: Safe. Shared objects: Unsafe (guard
/// sample() and report() with one mutex, e.g. the sampler's).
class HealthMonitor {
public:
    /// Effect: Creates a monitor with an empty triage.
    /// Fails: Throws on an invalid threshold (see evaluate_health) or invalid
    ///        triage options (see LeakTriage).
    /// Thread safety: n/a (construction).
    /// Exceptions: std::invalid_argument; std::bad_alloc.
    explicit HealthMonitor(HealthOptions options = {})
        : options_((detail::validate(options.checks), std::move(options))),
          triage_(options_.triage) {}

    /// Effect: Records `s` as the latest sample and feeds it to the triage.
    ///         O(1) per series, no allocation.
    /// Fails: See LeakTriage::sample (out-of-order samples are ignored by the
    ///        detectors; the latest sample is still replaced).
    /// Thread safety: Unsafe on a shared object.
    /// Exceptions: nothrow.
    void sample(std::chrono::steady_clock::time_point t, const HealthSample& s) noexcept {
        latest_ = s;
        triage_.sample(t, s);
    }

    /// Effect: Returns evaluate_health(latest sample, options().checks, &triage()).
    /// Fails: Never fails.
    /// Thread safety: Unsafe on a shared object being written.
    /// Exceptions: std::bad_alloc; the monitor is unchanged.
    HealthReport report() const { return evaluate_health(latest_, options_.checks, &triage_); }

    /// Effect: Returns the latest sample (all zero / absent before the first).
    /// Fails: Never fails.
    /// Thread safety: Unsafe on a shared object being written.
    /// Exceptions: nothrow.
    const HealthSample& latest() const noexcept { return latest_; }

    /// Effect: Returns the triage, e.g. for each series' verdict on a dashboard.
    /// Fails: Never fails.
    /// Thread safety: Unsafe on a shared object being written.
    /// Exceptions: nothrow.
    const LeakTriage& triage() const noexcept { return triage_; }

    /// Effect: Returns the options given at construction.
    /// Fails: Never fails.
    /// Thread safety: Safe (immutable after construction).
    /// Exceptions: nothrow.
    const HealthOptions& options() const noexcept { return options_; }

    /// Effect: Returns every count the monitor holds: its triage's (samples
    ///         is the number of sample() calls).
    /// Fails: Never fails.
    /// Thread safety: Unsafe on a shared object being written.
    /// Exceptions: nothrow.
    TriageStats stats() const noexcept { return triage_.stats(); }

private:
    HealthOptions options_;
    LeakTriage triage_;
    HealthSample latest_{};
};

// ---------------------------------------------------------------------------
// JSON
// ---------------------------------------------------------------------------

namespace detail {

/// Appends `s` as a JSON string: quotes, backslashes and control characters
/// escaped; other bytes (UTF-8) copied as they are.
inline void append_json_string(std::string& out, std::string_view s) {
    out += '"';
    for (const char ch : s) {
        const auto c = static_cast<unsigned char>(ch);
        switch (c) {
            case '"':
                out += "\\\"";
                break;
            case '\\':
                out += "\\\\";
                break;
            case '\b':
                out += "\\b";
                break;
            case '\f':
                out += "\\f";
                break;
            case '\n':
                out += "\\n";
                break;
            case '\r':
                out += "\\r";
                break;
            case '\t':
                out += "\\t";
                break;
            default:
                if (c < 0x20) {
                    static constexpr char hex[] = "0123456789abcdef";
                    out += "\\u00";
                    out += hex[c >> 4];
                    out += hex[c & 0xF];
                } else {
                    out += ch;
                }
        }
    }
    out += '"';
}

/// Appends a JSON number; NaN and infinities (not JSON) become null.
inline void append_json_number(std::string& out, double value) {
    if (!std::isfinite(value)) {
        out += "null";
        return;
    }
    char buffer[64];
    std::snprintf(buffer, sizeof buffer, "%.15g", value);
    out += c_locale_number(buffer);
}

inline void append_json_key(std::string& out, const char* key) {
    append_json_string(out, key);
    out += ':';
}

}  // namespace detail

/// Effect: Returns the report as compact JSON:
///         {"level":"...","checks":[{"name","level","measured","value",
///         "warning_at","critical_at","message"}...],"findings":[{"series",
///         "level","growth_per_hour","r_squared","message"}...]}, keys in that
///         order; strings escaped; non-finite numbers as null.
/// Fails: Never fails.
/// Thread safety: Safe.
/// Exceptions: std::bad_alloc.
inline std::string to_json(const HealthReport& report) {
    std::string out;
    out += '{';
    detail::append_json_key(out, "level");
    detail::append_json_string(out, to_string(report.level));
    out += ',';
    detail::append_json_key(out, "checks");
    out += '[';
    for (std::size_t i = 0; i < report.checks.size(); ++i) {
        const CheckResult& c = report.checks[i];
        out += i == 0 ? "{" : ",{";
        detail::append_json_key(out, "name");
        detail::append_json_string(out, c.name);
        out += ',';
        detail::append_json_key(out, "level");
        detail::append_json_string(out, to_string(c.level));
        out += ',';
        detail::append_json_key(out, "measured");
        out += c.measured ? "true" : "false";
        out += ',';
        detail::append_json_key(out, "value");
        detail::append_json_number(out, c.value);
        out += ',';
        detail::append_json_key(out, "warning_at");
        detail::append_json_number(out, c.warning_at);
        out += ',';
        detail::append_json_key(out, "critical_at");
        detail::append_json_number(out, c.critical_at);
        out += ',';
        detail::append_json_key(out, "message");
        detail::append_json_string(out, c.message);
        out += '}';
    }
    out += "],";
    detail::append_json_key(out, "findings");
    out += '[';
    for (std::size_t i = 0; i < report.findings.size(); ++i) {
        const Finding& f = report.findings[i];
        out += i == 0 ? "{" : ",{";
        detail::append_json_key(out, "series");
        detail::append_json_string(out, f.series);
        out += ',';
        detail::append_json_key(out, "level");
        detail::append_json_string(out, to_string(f.level));
        out += ',';
        detail::append_json_key(out, "growth_per_hour");
        detail::append_json_number(out, f.growth_per_hour);
        out += ',';
        detail::append_json_key(out, "r_squared");
        detail::append_json_number(out, f.r_squared);
        out += ',';
        detail::append_json_key(out, "message");
        detail::append_json_string(out, f.message);
        out += '}';
    }
    out += "]}";
    return out;
}

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
