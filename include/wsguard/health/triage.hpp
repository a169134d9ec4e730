// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// LeakTriage: one GrowthRateDetector per HealthSeries, and the rules that
// name which series grows with memory, with its likely cause and fix.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <wsguard/growth_rate_detector.hpp>
#include <wsguard/health/detail.hpp>
#include <wsguard/health/types.hpp>

namespace wsguard {

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

/// One series' verdict, named (see LeakTriage::verdicts()).
struct SeriesVerdict {
    HealthSeries series = HealthSeries::resident_bytes;
    GrowthVerdict verdict{};
};

/// The verdict of every series, in the order of all_health_series:
/// element i is the verdict of all_health_series[i].
using SeriesVerdicts = std::array<SeriesVerdict, health_series_count>;

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

    /// Effect: Returns verdict(s) for every s in all_health_series, in that
    ///         order. O(series x window), no allocation.
    /// Fails: Never fails.
    /// Thread safety: Unsafe on a shared object being written.
    /// Exceptions: nothrow.
    SeriesVerdicts verdicts() const noexcept {
        SeriesVerdicts out{};
        for (std::size_t i = 0; i < health_series_count; ++i) {
            out[i].series = all_health_series[i];
            out[i].verdict = verdict(all_health_series[i]);
        }
        return out;
    }

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
    std::vector<Finding> findings() const { return findings(verdicts()); }

    /// Effect: Applies the rules in the class comment to `verdicts` (taken
    ///         earlier, e.g. under a lock by BasicHealthMonitor) and returns the
    ///         findings in HealthSeries order: findings(verdicts()) is
    ///         findings(). A series listed twice counts with its last verdict;
    ///         a series not listed counts as insufficient_data (never grows).
    /// Fails: Never fails.
    /// Thread safety: Safe.
    /// Exceptions: std::bad_alloc (strings).
    static std::vector<Finding> findings(const SeriesVerdicts& verdicts) {
        std::array<GrowthVerdict, health_series_count> v{};  // insufficient_data
        for (const SeriesVerdict& sv : verdicts) {
            v[index(sv.series)] = sv.verdict;
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

}  // namespace wsguard
