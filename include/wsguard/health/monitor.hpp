// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// HealthMonitor: the checklist and the triage in one object for a server,
// with a bounded history of samples for dashboards. One template with a lock
// policy, two aliases: HealthMonitor (NullMutex, one sampling thread or the
// caller's own mutex) and SyncHealthMonitor (std::mutex, any thread).
#pragma once

#include <chrono>
#include <cstddef>
#include <mutex>
#include <type_traits>
#include <utility>
#include <vector>

#include <wsguard/health/checks.hpp>
#include <wsguard/health/triage.hpp>
#include <wsguard/health/types.hpp>
#include <wsguard/null_mutex.hpp>

namespace wsguard {

/// Every setting of a HealthMonitor.
struct HealthOptions {
    CheckOptions checks{};
    TriageOptions triage{};
    /// Samples kept for history(): the newest ones, oldest dropped first, in a
    /// ring allocated once at construction (about 100 bytes each). 0, the
    /// default, keeps none: the checks and the triage need only the latest
    /// sample and the detectors' windows, so a monitor nobody graphs should
    /// not carry memory it never reads. A dashboard sets it to the span it
    /// draws over the sample interval, e.g. 600 for 10 minutes at 1 s.
    std::size_t history_samples = 0;
};

/// A monitor's report and the verdicts it rests on, taken together (view()).
struct HealthView {
    HealthReport report{};
    SeriesVerdicts verdicts{};
};

/// One sample of a monitor's history and the time it was taken at.
struct HealthHistoryEntry {
    std::chrono::steady_clock::time_point time{};
    HealthSample sample{};
};

/// Every count a monitor holds: its triage's, and its history's fill.
struct HealthMonitorStats : TriageStats {
    std::size_t history_size = 0;      ///< Entries history() returns now (<= capacity).
    std::size_t history_capacity = 0;  ///< HealthOptions::history_samples.
};

namespace detail {

template <class Lock>
inline constexpr bool nothrow_lock = noexcept(std::declval<Lock&>().lock());

}  // namespace detail

// ---------------------------------------------------------------------------
// BasicHealthMonitor
// ---------------------------------------------------------------------------

/// The checklist and the triage in one object, for a server: call sample()
/// every sample interval and report() when /stats or /metrics is asked.
///
/// Keeps the latest sample for the checks (usage, ratios), feeds every
/// sample to a LeakTriage (trends) and keeps the last
/// HealthOptions::history_samples samples for history(). Before the first
/// sample, report() has nothing measured and level ok.
///
/// @tparam Lock NullMutex (HealthMonitor) or std::mutex (SyncHealthMonitor).
///              With std::mutex a member may also throw std::system_error
///              from lock(); "nothrow" below means the monitor's own work:
///              sample(), verdicts(), latest() and stats() are noexcept
///              only with a lock whose lock() is (NullMutex).
///
/// Thread safety: Distinct objects: Safe. Shared objects: with NullMutex,
/// Unsafe (guard sample() and the readers with one mutex, e.g. the
/// sampler's); with std::mutex, Safe for every member but triage(), which
/// hands out a reference to state sample() writes: use verdicts(), report()
/// and stats() instead.
template <class Lock>
class BasicHealthMonitor {
public:
    using lock_type = Lock;
    /// What latest() returns: a reference without a lock (HealthMonitor's
    /// API), a copy taken under the lock otherwise.
    using latest_type =
        std::conditional_t<std::is_same_v<Lock, NullMutex>, const HealthSample&, HealthSample>;

    /// Effect: Creates a monitor with an empty triage and an empty history
    ///         (allocating its ring of history_samples entries).
    /// Fails: Throws on an invalid threshold (see evaluate_health) or invalid
    ///        triage options (see LeakTriage).
    /// Thread safety: n/a (construction).
    /// Exceptions: std::invalid_argument; std::bad_alloc; std::length_error
    ///             (history_samples beyond what a vector can hold).
    explicit BasicHealthMonitor(HealthOptions options = {})
        : options_((detail::validate(options.checks), std::move(options))),
          triage_(options_.triage),
          history_(options_.history_samples) {}

    /// Effect: Records `s` as the latest sample, feeds it to the triage and,
    ///         with a history, stores (t, s) over the oldest entry once the
    ///         ring is full. O(1) per series, no allocation.
    /// Fails: See LeakTriage::sample (out-of-order samples are ignored by the
    ///        detectors; the latest sample is still replaced, and the history
    ///        keeps the call's order and `t` as given).
    /// Thread safety: Takes the lock (Unsafe on a shared HealthMonitor).
    /// Exceptions: nothrow.
    void sample(std::chrono::steady_clock::time_point t,
                const HealthSample& s) noexcept(detail::nothrow_lock<Lock>) {
        std::lock_guard<Lock> guard(lock_);
        latest_ = s;
        triage_.sample(t, s);
        if (!history_.empty()) {
            history_[next_] = HealthHistoryEntry{t, s};
            next_ = next_ + 1 == history_.size() ? 0 : next_ + 1;
            if (size_ < history_.size()) {
                ++size_;
            }
        }
    }

    /// Effect: Returns evaluate_health(latest sample, options().checks, &triage()).
    ///         Copies the latest sample and the verdicts under the lock
    ///         (O(series x window), no allocation) and builds the report's
    ///         strings outside it, so a slow report never holds up sample().
    /// Fails: Never fails.
    /// Thread safety: Takes the lock (Unsafe on a shared HealthMonitor being
    ///                written).
    /// Exceptions: std::bad_alloc; the monitor is unchanged.
    HealthReport report() const { return view().report; }

    /// Effect: Returns report() and verdicts() of one and the same moment
    ///         (one lock), e.g. for a /stats that shows both: a sample()
    ///         between two separate calls would make them disagree.
    /// Fails: Never fails.
    /// Thread safety: Takes the lock once (Unsafe on a shared HealthMonitor
    ///                being written).
    /// Exceptions: std::bad_alloc; the monitor is unchanged.
    HealthView view() const {
        HealthSample latest;
        HealthView out;
        {
            std::lock_guard<Lock> guard(lock_);
            latest = latest_;
            out.verdicts = triage_.verdicts();
        }
        out.report = evaluate_health(latest, options_.checks, options_.triage, out.verdicts);
        return out;
    }

    /// Effect: Returns the triage's verdict of every series, as
    ///         triage().verdicts() (element i is all_health_series[i]'s
    ///         verdict), taken under the lock. O(series x window).
    /// Fails: Never fails; a series with too little data has level
    ///        insufficient_data.
    /// Thread safety: Takes the lock (Unsafe on a shared HealthMonitor being
    ///                written).
    /// Exceptions: nothrow.
    SeriesVerdicts verdicts() const noexcept(detail::nothrow_lock<Lock>) {
        std::lock_guard<Lock> guard(lock_);
        return triage_.verdicts();
    }

    /// Effect: Returns the latest sample (all zero / absent before the first):
    ///         a reference with NullMutex, a copy taken under the lock
    ///         otherwise (see latest_type).
    /// Fails: Never fails.
    /// Thread safety: Takes the lock; with NullMutex, Unsafe on a shared
    ///                object being written, and the reference sees later
    ///                samples.
    /// Exceptions: nothrow.
    latest_type latest() const noexcept(detail::nothrow_lock<Lock>) {
        std::lock_guard<Lock> guard(lock_);
        return latest_;
    }

    /// Effect: Returns the history, oldest first: the last min(samples,
    ///         history_samples) (time, sample) pairs given to sample(), in
    ///         call order. Empty without a history.
    /// Fails: Never fails.
    /// Thread safety: Takes the lock, and allocates the copy before it
    ///                (Unsafe on a shared HealthMonitor being written).
    /// Exceptions: std::bad_alloc; the monitor is unchanged.
    std::vector<HealthHistoryEntry> history() const {
        std::vector<HealthHistoryEntry> out;
        out.reserve(history_.size());  // the ring's size never changes
        std::lock_guard<Lock> guard(lock_);
        const std::size_t capacity = history_.size();
        std::size_t i = next_ + capacity - size_;  // the oldest, unwrapped
        for (std::size_t n = 0; n < size_; ++n, ++i) {
            out.push_back(history_[i >= capacity ? i - capacity : i]);
        }
        return out;
    }

    /// Effect: Returns the triage, e.g. for each series' verdict on a dashboard.
    /// Fails: Never fails.
    /// Thread safety: Unsafe on a shared object being written, with either
    ///                lock: the reference is read without it. Kept for
    ///                HealthMonitor's callers; with several threads use
    ///                verdicts(), report() and stats().
    /// Exceptions: nothrow.
    const LeakTriage& triage() const noexcept { return triage_; }

    /// Effect: Returns the options given at construction.
    /// Fails: Never fails.
    /// Thread safety: Safe (immutable after construction).
    /// Exceptions: nothrow.
    const HealthOptions& options() const noexcept { return options_; }

    /// Effect: Returns every count the monitor holds: its triage's (samples
    ///         is the number of sample() calls) and its history's size and
    ///         capacity.
    /// Fails: Never fails.
    /// Thread safety: Takes the lock (Unsafe on a shared HealthMonitor being
    ///                written).
    /// Exceptions: nothrow.
    HealthMonitorStats stats() const noexcept(detail::nothrow_lock<Lock>) {
        HealthMonitorStats s;
        std::lock_guard<Lock> guard(lock_);
        static_cast<TriageStats&>(s) = triage_.stats();
        s.history_size = size_;
        s.history_capacity = history_.size();
        return s;
    }

private:
    HealthOptions options_;
    mutable Lock lock_;
    LeakTriage triage_;
    HealthSample latest_{};
    std::vector<HealthHistoryEntry> history_;  // the ring; its size is the capacity
    std::size_t next_ = 0;                     // where the next sample goes
    std::size_t size_ = 0;                     // entries in use, <= history_.size()
};

/// For one sampling thread (or a caller that guards it with its own mutex):
/// no lock.
using HealthMonitor = BasicHealthMonitor<NullMutex>;

/// For several threads: sample() on one, report(), verdicts(), latest(),
/// history() and stats() on any other.
using SyncHealthMonitor = BasicHealthMonitor<std::mutex>;

}  // namespace wsguard
