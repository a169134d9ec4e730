// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// HealthMonitor: the checklist and the triage in one object for a server.
#pragma once

#include <chrono>
#include <utility>

#include <wsguard/health/checks.hpp>
#include <wsguard/health/triage.hpp>
#include <wsguard/health/types.hpp>

namespace wsguard {

/// Every setting of a HealthMonitor.
struct HealthOptions {
    CheckOptions checks{};
    TriageOptions triage{};
};

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

}  // namespace wsguard
