// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// The checklist: memory usage, memory growth, listeners, connections and
// fragmentation, each ok / warning / critical, and evaluate_health(), which
// runs them and adds the triage's findings. Besides them, the drop-ratio row
// (drop_ratio_check(), over a DropRatioWindow of message counters), which a
// server appends: it needs counters over time, not one sample.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

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
    /// Messages dropped (slow consumers) / (delivered + dropped) over the
    /// last drop_ratio_window_seconds. A chat drops a stalled reader's
    /// messages by design, but at 1% readers miss messages routinely, and at
    /// 10% a room's traffic outruns its readers: a dashboard that only
    /// watches memory shows such a server as healthy.
    double drop_ratio_warning = 0.01;
    double drop_ratio_critical = 0.10;
    double drop_ratio_window_seconds = 60.0;
    /// The ratio is not judged (ok) below this many messages in the window:
    /// one drop in ten messages is not a trend.
    std::uint64_t drop_ratio_min_messages = 100;
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
    require_thresholds("drop_ratio", o.drop_ratio_warning, o.drop_ratio_critical);
    if (!(std::isfinite(o.drop_ratio_window_seconds) && o.drop_ratio_window_seconds > 0.0)) {
        throw std::invalid_argument(
            "wsguard::CheckOptions: drop_ratio_window_seconds must be finite and > 0");
    }
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

// ---------------------------------------------------------------------------
// The drop-ratio row
// ---------------------------------------------------------------------------

/// Message counts over a recent span (DropRatioWindow::window()).
struct DeliveryWindow {
    double seconds = 0.0;         ///< the span covered; 0 with fewer than two samples
    std::uint64_t delivered = 0;  ///< messages queued for sending in it
    std::uint64_t dropped = 0;    ///< messages not queued (slow consumers) in it
};

/// The message counters at the last few samples, to tell how many were
/// delivered and dropped over a recent window. A ring allocated once
/// (`capacity` entries of 24 bytes); the times come from the caller, so a
/// test injects them.
///
/// Thread safety: Distinct objects: Safe. Shared objects: Unsafe (guard it
/// with the sampler's lock).
class DropRatioWindow {
public:
    using time_point = std::chrono::steady_clock::time_point;

    /// Effect: an empty window keeping the last `capacity` samples (at
    ///         least 2).
    /// Exceptions: std::bad_alloc.
    explicit DropRatioWindow(std::size_t capacity) : ring_(std::max<std::size_t>(capacity, 2)) {}

    /// Effect: records the cumulative counters `delivered` and `dropped` at
    ///         `t` (the guard's messages_out and dropped_messages), over the
    ///         oldest entry once full. O(1), no allocation.
    /// Exceptions: nothrow.
    void sample(time_point t, std::uint64_t delivered, std::uint64_t dropped) noexcept {
        ring_[next_] = Entry{t, delivered, dropped};
        next_ = next_ + 1 == ring_.size() ? 0 : next_ + 1;
        size_ = std::min(size_ + 1, ring_.size());
    }

    /// Effect: the counts between the newest sample and the oldest one kept
    ///         that is at most `seconds` older: the window is shorter when
    ///         the ring or the history is. A counter that went backwards
    ///         counts 0. O(capacity).
    /// Exceptions: nothrow.
    DeliveryWindow window(double seconds) const noexcept {
        DeliveryWindow w;
        if (size_ < 2) {
            return w;
        }
        const Entry& newest = at(size_ - 1);
        const Entry* oldest = &newest;
        for (std::size_t i = size_ - 1; i-- > 0;) {
            const Entry& e = at(i);
            if (std::chrono::duration<double>(newest.t - e.t).count() > seconds) {
                break;
            }
            oldest = &e;
        }
        w.seconds = std::chrono::duration<double>(newest.t - oldest->t).count();
        w.delivered =
            newest.delivered >= oldest->delivered ? newest.delivered - oldest->delivered : 0;
        w.dropped = newest.dropped >= oldest->dropped ? newest.dropped - oldest->dropped : 0;
        return w;
    }

private:
    struct Entry {
        time_point t{};
        std::uint64_t delivered = 0;
        std::uint64_t dropped = 0;
    };
    // The i-th kept entry, oldest first.
    const Entry& at(std::size_t i) const noexcept {
        const std::size_t j = next_ + ring_.size() - size_ + i;
        return ring_[j % ring_.size()];
    }

    std::vector<Entry> ring_;
    std::size_t next_ = 0;
    std::size_t size_ = 0;
};

/// Effect: the checklist's "drop_ratio" row for `w`: value is dropped /
///         (delivered + dropped), warning and critical at
///         options.drop_ratio_warning / _critical. Not measured before two
///         samples; measured but ok below options.drop_ratio_min_messages
///         messages. The message says the counts, the span and, when not
///         ok, what to do.
/// Exceptions: std::invalid_argument (an invalid threshold, see
///             evaluate_health); std::bad_alloc.
inline CheckResult drop_ratio_check(const DeliveryWindow& w, const CheckOptions& options) {
    detail::validate(options);
    const double warn = options.drop_ratio_warning;
    const double crit = options.drop_ratio_critical;
    if (w.seconds <= 0.0) {
        return detail::unmeasured("drop_ratio", warn, crit,
                                  "collecting message counts (fewer than two samples)");
    }
    const std::uint64_t total = w.delivered + w.dropped;
    const double value = total ? static_cast<double>(w.dropped) / static_cast<double>(total) : 0.0;
    const bool applies = total >= options.drop_ratio_min_messages;
    CheckResult r =
        detail::measured("drop_ratio", value, warn, crit,
                         applies ? detail::classify(value, warn, crit) : HealthLevel::ok);
    r.message = std::to_string(w.dropped) + " of " + std::to_string(total) + " messages dropped (" +
                detail::percent(value) + ") over the last " + detail::fixed(w.seconds, 0) +
                " s; warning at " + detail::percent(warn) + ", critical at " +
                detail::percent(crit);
    if (!applies) {
        r.message += "; fewer than " + std::to_string(options.drop_ratio_min_messages) +
                     " messages, too few to judge";
    } else if (r.level != HealthLevel::ok) {
        r.message +=
            ": readers too slow for their rooms' traffic miss messages; find them (queued "
            "bytes, closes with 1008), raise max_buffered_bytes if bursts are short, or close "
            "slow consumers (--slow-consumer close) so they reconnect and resync";
    }
    return r;
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
