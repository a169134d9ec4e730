// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// The checklist: memory usage, memory growth, listeners, connections and
// fragmentation, each ok / warning / critical, and evaluate_health(), which
// runs them and adds the triage's findings.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <utility>

#include <wsguard/growth_rate_detector.hpp>
#include <wsguard/health/detail.hpp>
#include <wsguard/health/triage.hpp>
#include <wsguard/health/types.hpp>

namespace wsguard {

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
}  // namespace detail

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

// `triage`: the triage's options, nullptr without a triage; `v`: its resident verdict.
inline CheckResult memory_growth_check(const HealthSample& s, const TriageOptions* triage,
                                       const GrowthVerdict& v) {
    const GrowthOptions defaults = TriageOptions{}.resident_bytes;
    const GrowthOptions& g = triage ? triage->resident_bytes : defaults;
    const double w = g.warning_per_hour;
    const double c = g.critical_per_hour;
    if (triage == nullptr) {
        return unmeasured("memory_growth", w, c, "no triage to take samples");
    }
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

// evaluate_health's work; `triage` and `verdicts` are both null (no triage)
// or both set.
inline HealthReport evaluate(const HealthSample& sample, const CheckOptions& options,
                             const TriageOptions* triage, const SeriesVerdicts* verdicts) {
    validate(options);
    GrowthVerdict resident{};  // insufficient_data
    if (verdicts != nullptr) {
        for (const SeriesVerdict& sv : *verdicts) {
            if (sv.series == HealthSeries::resident_bytes) {
                resident = sv.verdict;
            }
        }
    }
    HealthReport report;
    report.checks.reserve(5);
    report.checks.push_back(memory_usage_check(sample, options));
    report.checks.push_back(memory_growth_check(sample, triage, resident));
    report.checks.push_back(listeners_check(sample, options));
    report.checks.push_back(connections_check(sample, options));
    report.checks.push_back(fragmentation_check(sample, options));
    if (verdicts != nullptr) {
        report.findings = LeakTriage::findings(*verdicts);
    }
    for (const CheckResult& c : report.checks) {
        report.level = worst(report.level, c.level);
    }
    for (const Finding& f : report.findings) {
        report.level = worst(report.level, f.level);
    }
    return report;
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
    if (triage == nullptr) {
        return detail::evaluate(sample, options, nullptr, nullptr);
    }
    const SeriesVerdicts verdicts = triage->verdicts();
    return detail::evaluate(sample, options, &triage->options(), &verdicts);
}

/// Effect: evaluate_health(sample, options, &triage) for a triage built with
///         `triage_options` whose verdicts() were `verdicts`: the same report,
///         from verdicts taken earlier (e.g. copied under a lock, so the
///         strings are built outside it).
/// Fails: As evaluate_health with a triage.
/// Thread safety: Safe.
/// Exceptions: std::invalid_argument (see evaluate_health); std::bad_alloc.
inline HealthReport evaluate_health(const HealthSample& sample, const CheckOptions& options,
                                    const TriageOptions& triage_options,
                                    const SeriesVerdicts& verdicts) {
    return detail::evaluate(sample, options, &triage_options, &verdicts);
}

}  // namespace wsguard
