// wsguard reference chat server — what the server knows about itself: the
// sampled series, their growth (the leak triage), the health checklist, the
// history the dashboard plots and the census written when health turns
// critical. The HTTP endpoints only render what this gathers.
// SPDX-License-Identifier: MIT
#pragma once

#include "chat_router.hpp"

#include <wsguard/growth_rate_detector.hpp>
#include <wsguard/health.hpp>
#include <wsguard/memory.hpp>
#include <wsguard/websocketpp/guard_types.hpp>
#include <wsguard/websocketpp/room_bridge.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <functional>
#include <limits>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace chat {

/// One series the guard counts: sampled into the health monitor and shown by
/// /stats (top level), /metrics (a gauge) and /history. The one list of them.
struct GuardSeries {
    wsguard::HealthSeries series;  ///< its name is wsguard::to_string(series)
    const char* help;              ///< the /metrics HELP text
    std::size_t wsguard::wspp::GuardStats::*in_stats;
    std::size_t wsguard::HealthSample::*in_sample;
};

inline constexpr std::array<GuardSeries, 5> guard_series = {{
    {wsguard::HealthSeries::connections, "Open, admitted WebSocket connections.",
     &wsguard::wspp::GuardStats::connections, &wsguard::HealthSample::connections},
    {wsguard::HealthSeries::rooms, "Rooms with at least one member.",
     &wsguard::wspp::GuardStats::rooms, &wsguard::HealthSample::rooms},
    {wsguard::HealthSeries::memberships, "Room memberships over all connections.",
     &wsguard::wspp::GuardStats::memberships, &wsguard::HealthSample::memberships},
    {wsguard::HealthSeries::listeners, "Listeners attached to the server's events.",
     &wsguard::wspp::GuardStats::listeners, &wsguard::HealthSample::listeners},
    {wsguard::HealthSeries::queued_bytes, "Bytes waiting in every connection's send queue.",
     &wsguard::wspp::GuardStats::queued_bytes, &wsguard::HealthSample::queued_bytes},
}};

/// Effect: the health sample of `guard`'s counts and a memory reading.
inline wsguard::HealthSample health_sample(const wsguard::wspp::GuardStats& guard,
                                           const wsguard::MemoryReading& memory) {
    wsguard::HealthSample s;
    s.memory = memory;
    for (const GuardSeries& g : guard_series) {
        s.*g.in_sample = guard.*g.in_stats;
    }
    return s;
}

/// Everything the HTTP endpoints report, gathered once per request.
struct ServerSnapshot {
    wsguard::wspp::GuardStats guard;
    RouterStats router;
    wsguard::wspp::BridgeStats bridge;  ///< rooms across servers (state "local": none)
    wsguard::MemoryReading memory;
    wsguard::HealthReport health;
    /// The verdict of every series the triage watches, in all_health_series order.
    std::vector<std::pair<wsguard::HealthSeries, wsguard::GrowthVerdict>> growth;
    double uptime_seconds = 0;
    /// The samples the growth verdict rests on: their span, and the span a
    /// verdict needs (the detectors' full window), in seconds. "No growth"
    /// from a minute of samples would be a guess.
    double growth_history_seconds = 0;
    double growth_needed_seconds = 0;
};

/// Effect: the checklist's "bridge" row for `b`: ok while the bridge is
/// ready (local: no broker, or connected); warning once the broker has been
/// unusable for longer than `warn_after`, ok before that (a reconnect in
/// progress). measured is false for LocalBridge; else value is down_for in
/// seconds, warning_at `warn_after` in seconds and there is no critical level
/// (critical_at is infinite: null in JSON). The message names the state and,
/// when not ready, the last error.
inline wsguard::CheckResult bridge_check(const wsguard::wspp::BridgeStats& b,
                                         std::chrono::milliseconds warn_after) {
    wsguard::CheckResult c;
    c.name = "bridge";
    c.level = wsguard::HealthLevel::ok;
    c.critical_at = std::numeric_limits<double>::infinity();
    c.warning_at = std::chrono::duration<double>(warn_after).count();
    const std::string state = wsguard::wspp::to_string(b.state);
    if (b.state == wsguard::wspp::BridgeState::local) {
        c.message = "local: no broker, rooms stay on this server";
        return c;
    }
    c.measured = true;
    c.value = std::chrono::duration<double>(b.down_for).count();
    if (wsguard::wspp::bridge_ready(b)) {
        c.message = state + ": room messages reach the other servers";
        return c;
    }
    char down[64];
    std::snprintf(down, sizeof down, "%.1f s (warning after %.1f s)", c.value, c.warning_at);
    c.message = state + ", down for " + down;
    if (!b.last_error.empty()) {
        c.message += "; last error: " + b.last_error;
    }
    if (b.down_for > warn_after) {
        c.level = wsguard::HealthLevel::warning;
        c.message +=
            "; room messages do not reach the other servers: check the broker (--redis) and "
            "the network to it";
    }
    return c;
}

/// Effect: `report` with the "bridge" row appended and its level raised to
/// the row's when worse.
inline void add_bridge_check(wsguard::HealthReport& report, const wsguard::wspp::BridgeStats& b,
                             std::chrono::milliseconds warn_after) {
    report.checks.push_back(bridge_check(b, warn_after));
    report.level = wsguard::worst(report.level, report.checks.back().level);
}

/// What Telemetry needs to know, from the command line.
struct TelemetryOptions {
    std::size_t max_connections = 10000;  ///< the connections check's 100%
    /// Samples each growth detector keeps: the verdict covers that many
    /// sample intervals.
    std::size_t growth_window = 120;
    /// The sample interval: with growth_window, the history a growth verdict
    /// needs; and how many samples the drop-ratio window keeps.
    std::chrono::milliseconds sample_interval{1000};
    /// Samples GET /history returns (10 minutes at the default 1 s).
    std::size_t history_samples = 600;
    /// Where a census is written when health turns critical (empty: never).
    std::string snapshot_dir;
    std::size_t snapshot_max_files = 10;
    bool quiet = false;  ///< no line on stdout when a census is written
};

/// The sampled series, the triage, the checklist and the history.
///
/// Thread safety: Distinct objects: Safe. Shared objects: with Lock =
/// std::mutex, sample() from one timer (never two at once) and every other
/// call from any thread: the monitor is the one place that synchronizes.
template <class Lock>
class Telemetry {
public:
    using Monitor = wsguard::BasicHealthMonitor<Lock>;
    using Clock = std::chrono::steady_clock;

    explicit Telemetry(const TelemetryOptions& options)
        : options_(options),
          monitor_(health_options(options)),
          drops_(drop_window_samples(options, monitor_.options().checks)),
          started_(Clock::now()) {
        if (!options_.snapshot_dir.empty()) {
            wsguard::SnapshotOptions so;
            so.directory = options_.snapshot_dir;
            so.max_files = options_.snapshot_max_files;
            snapshots_.emplace(so);
        }
    }

    /// Effect: the monitor's options for these settings: the checklist's
    /// connection limit and every detector's window.
    static wsguard::HealthOptions health_options(const TelemetryOptions& o) {
        wsguard::HealthOptions h;
        h.checks.max_connections = o.max_connections;
        h.history_samples = o.history_samples;
        for (auto series : wsguard::all_health_series) {
            auto& g = h.triage.of(series);
            g.window = o.growth_window;
            g.min_samples =
                std::max<std::size_t>(2, std::min<std::size_t>(20, o.growth_window / 3));
        }
        return h;
    }

    /// Effect: the samples the drop-ratio window keeps: its span at the
    /// sample interval, and two more (bounded: 4096 entries, 96 KiB).
    static std::size_t drop_window_samples(const TelemetryOptions& o,
                                           const wsguard::CheckOptions& checks) {
        const double interval =
            std::max(1.0, static_cast<double>(o.sample_interval.count())) / 1000.0;
        const double n = checks.drop_ratio_window_seconds / interval + 2.0;
        return static_cast<std::size_t>(std::min(4096.0, std::max(2.0, n)));
    }

    /// Effect: samples the guard's counts and the process's memory; when
    /// health is critical and a snapshot directory is set, writes
    /// `census()` there (rate-limited by the writer).
    void sample(const wsguard::wspp::GuardStats& guard,
                const std::function<std::string()>& census) {
        const auto now = Clock::now();
        monitor_.sample(now, health_sample(guard, wsguard::read_memory()));
        {
            std::lock_guard<Lock> hold(lock_);
            drops_.sample(now, guard.messages_out, guard.dropped_messages);
            if (!first_sample_) {
                first_sample_ = now;
            }
            last_sample_ = now;
        }
        if (!snapshots_) {
            return;
        }
        const wsguard::HealthReport report = monitor_.report();
        if (report.level != wsguard::HealthLevel::critical) {
            return;
        }
        const auto result = snapshots_->maybe_write(report, census(), now);
        if (result.status == wsguard::SnapshotStatus::written && !options_.quiet) {
            std::printf("chat_server: health critical, census written to %s\n",
                        result.path.c_str());
        } else if (result.status == wsguard::SnapshotStatus::failed) {
            std::fprintf(stderr, "chat_server: cannot write health snapshot: %s\n",
                         result.error.c_str());
        }
    }

    /// Effect: the snapshot's telemetry part: the memory reading of the last
    /// sample, the health report, every series' verdict and the uptime.
    void fill(ServerSnapshot& s) const {
        // Not read_memory() per request: mallinfo2() walks every free chunk of
        // every arena under the arena locks, a cost that grows with the heap.
        s.memory = monitor_.latest().memory;
        // The report and the verdicts of one sample, under one lock.
        wsguard::HealthView view = monitor_.view();
        s.health = std::move(view.report);
        for (const auto& v : view.verdicts) {
            s.growth.emplace_back(v.series, v.verdict);
        }
        const wsguard::CheckOptions& checks = monitor_.options().checks;
        wsguard::DeliveryWindow window;
        double span = 0;
        {
            std::lock_guard<Lock> hold(lock_);
            window = drops_.window(checks.drop_ratio_window_seconds);
            if (first_sample_) {
                span = std::chrono::duration<double>(last_sample_ - *first_sample_).count();
            }
        }
        // The drop-ratio row needs counters over time, which the monitor's
        // samples do not carry: appended here, as the bridge row is.
        s.health.checks.push_back(wsguard::drop_ratio_check(window, checks));
        s.health.level = wsguard::worst(s.health.level, s.health.checks.back().level);
        // A detector's window of growth_window samples spans growth_window - 1 intervals.
        s.growth_needed_seconds =
            std::chrono::duration<double>(options_.sample_interval).count() *
            static_cast<double>(std::max<std::size_t>(options_.growth_window, 2) - 1);
        s.growth_history_seconds = std::min(span, s.growth_needed_seconds);
        s.uptime_seconds = seconds_since_start(Clock::now());
    }

    /// Effect: the kept samples, oldest first, each with its time in seconds
    /// since the server started.
    std::vector<std::pair<double, wsguard::HealthSample>> history() const {
        std::vector<std::pair<double, wsguard::HealthSample>> out;
        for (const auto& h : monitor_.history()) {
            out.emplace_back(seconds_since_start(h.time), h.sample);
        }
        return out;
    }

private:
    double seconds_since_start(Clock::time_point t) const {
        return std::chrono::duration<double>(t - started_).count();
    }

    const TelemetryOptions options_;
    Monitor monitor_;
    // sample() writes them from one timer; fill() reads them from any thread.
    mutable Lock lock_;
    wsguard::DropRatioWindow drops_;
    std::optional<Clock::time_point> first_sample_;
    Clock::time_point last_sample_{};
    // Written by sample() only, which one timer calls: never two at once.
    std::optional<wsguard::CriticalSnapshotWriter> snapshots_;
    const Clock::time_point started_;
};

}  // namespace chat
