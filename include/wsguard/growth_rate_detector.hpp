// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// GrowthRateDetector: turns periodic samples of a series (resident memory,
// connections, queued bytes...) into a growth rate per hour, a fit quality and
// an estimated time to a limit. A leak on a long-lived server shows as slow,
// steady growth that no single reading reveals; comparing the first and last
// sample calls every spike a leak. This fits a least-squares line over a fixed
// window of recent samples and reports growth only when the line explains the
// samples well (R^2), so noise and one-off steps are not called a leak.
#pragma once

#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <stdexcept>
#include <utility>
#include <vector>

namespace wsguard {

/// How worrying the trend of a series is.
enum class GrowthLevel {
    insufficient_data,  ///< Fewer than min_samples samples (or no time spread): no verdict yet.
    ok,                 ///< No credible growth at or above the warning rate.
    warning,            ///< Credible growth at or above warning_per_hour.
    critical            ///< Credible growth at or above critical_per_hour.
};

/// Effect: Returns the level's name: "insufficient_data", "ok", "warning", "critical".
/// Fails: Never fails; an out-of-range value yields "unknown".
/// Thread safety: Safe.
/// Exceptions: nothrow.
inline const char* to_string(GrowthLevel level) noexcept {
    switch (level) {
        case GrowthLevel::insufficient_data:
            return "insufficient_data";
        case GrowthLevel::ok:
            return "ok";
        case GrowthLevel::warning:
            return "warning";
        case GrowthLevel::critical:
            return "critical";
    }
    return "unknown";
}

/// Every setting of a GrowthRateDetector.
struct GrowthOptions {
    /// Samples kept. At one sample per 10 s, 60 samples is the last 10 minutes:
    /// long enough to average out allocator noise, short enough to notice a
    /// new leak within minutes. Allocated once; the detector never allocates again.
    std::size_t window = 60;
    /// Fewer samples than this give insufficient_data: a line through a handful
    /// of points fits almost anything.
    std::size_t min_samples = 10;
    /// Growth rates in units of the series per hour (bytes for memory): the
    /// checklist's 50 MiB/h warning and 100 MiB/h critical.
    double warning_per_hour = 50.0 * 1024 * 1024;
    double critical_per_hour = 100.0 * 1024 * 1024;
    /// Below this R^2 the series is noise (or a single step), not a trend, and
    /// the level is never warning or critical. 0.8 is above the best fit a
    /// single step can reach (0.75 + O(1/n^2)), so a one-off jump is not a leak.
    double min_r_squared = 0.8;
    /// The value at which the series hits a wall (e.g. the memory limit), for
    /// GrowthVerdict::time_to_limit. Absent: no estimate.
    std::optional<double> limit;
};

/// The detector's reading of its current window.
struct GrowthVerdict {
    GrowthLevel level;       ///< See GrowthLevel.
    double growth_per_hour;  ///< Least-squares slope in units per hour (0 with < 2 samples).
    double r_squared;        ///< Fit quality in [0, 1]; 1 for a perfectly flat series.
    std::size_t samples;     ///< Samples in the window.
    double latest;           ///< The newest sample's value (0 if there is none).
    /// Time from the newest sample until the fitted line reaches options.limit,
    /// rounded down; 0 if the newest value is already at or over the limit.
    /// Absent without a limit, with level insufficient_data, when the fit is
    /// below min_r_squared, when the series is not growing, or when the
    /// estimate does not fit in std::chrono::seconds.
    std::optional<std::chrono::seconds> time_to_limit;

    /// True for warning and critical.
    bool growing() const noexcept {
        return level == GrowthLevel::warning || level == GrowthLevel::critical;
    }
};

/// A snapshot of every count a GrowthRateDetector holds, with the current verdict's numbers.
struct GrowthStats {
    std::uint64_t samples_total;  ///< Samples accepted since construction (reset() keeps it).
    std::uint64_t ignored_out_of_order;  ///< Samples refused: older than the newest one.
    std::uint64_t ignored_non_finite;    ///< Samples refused: NaN or infinite value.
    std::uint64_t resets;                ///< reset() calls.
    std::size_t size;                    ///< Samples in the window now.
    std::size_t window;                  ///< Capacity of the window.
    GrowthLevel level;                   ///< verdict().level now.
    double growth_per_hour;              ///< verdict().growth_per_hour now.
    double r_squared;                    ///< verdict().r_squared now.
    double latest;                       ///< verdict().latest now.
};

/// Least-squares growth rate of a series over a fixed window of samples.
///
/// add_sample() is O(1) and never allocates (the window is allocated once in
/// the constructor); verdict() is O(window) and recomputes the fit from the
/// samples, with times relative to the oldest sample, in two passes (means,
/// then centred sums), so there is no cancellation from large timestamps or
/// from running sums that drift.
///
/// Decisions:
/// - A sample older than the newest one is ignored and counted, not thrown:
///   the sampler runs for weeks and one misordered reading should not stop it.
///   Equal timestamps are accepted. NaN/infinite values are ignored and counted.
/// - A perfectly flat series has r_squared = 1 and growth 0: the horizontal
///   line passes through every sample, so the fit is exact; calling it 0
///   ("noise") would misdescribe the cleanest series there is. The level is ok.
/// - A single step (flat, jump, flat) is not growth: while the step is in the
///   window a line fits it with R^2 <= 3p(1-p) * n^2/(n^2-1) (p = share of
///   samples after the step), at most ~0.76 for n >= 10, below the default
///   min_r_squared, so the level stays ok; once the step leaves the window the
///   series is flat again. A one-off allocation (a cache warming, a pool
///   growing) is not a leak; repeated steps (a staircase) are a trend and are
///   reported.
/// - Levels need a credible trend: r_squared >= min_r_squared and positive
///   growth. Shrinking series are ok.
///
/// Thread safety: Distinct objects: Safe. Shared objects: Unsafe (one
/// sampling thread owns it; publish its verdicts, not the detector).
class GrowthRateDetector {
public:
    /// Effect: Creates an empty detector and allocates its window.
    /// Fails: Throws if window < 2, min_samples < 2 or > window, a threshold is
    ///        negative or not finite, warning_per_hour > critical_per_hour,
    ///        min_r_squared is outside [0, 1], or limit is set but not finite.
    /// Thread safety: n/a (construction).
    /// Exceptions: std::invalid_argument naming the bad option; std::bad_alloc.
    explicit GrowthRateDetector(GrowthOptions options = {}) : options_(std::move(options)) {
        if (options_.window < 2) {
            throw std::invalid_argument("wsguard::GrowthRateDetector: window must be >= 2");
        }
        if (options_.min_samples < 2 || options_.min_samples > options_.window) {
            throw std::invalid_argument(
                "wsguard::GrowthRateDetector: min_samples must be >= 2 and <= window");
        }
        if (!(std::isfinite(options_.warning_per_hour) && options_.warning_per_hour >= 0.0) ||
            !(std::isfinite(options_.critical_per_hour) && options_.critical_per_hour >= 0.0)) {
            throw std::invalid_argument(
                "wsguard::GrowthRateDetector: thresholds must be finite and >= 0");
        }
        if (options_.warning_per_hour > options_.critical_per_hour) {
            throw std::invalid_argument(
                "wsguard::GrowthRateDetector: warning_per_hour must be <= critical_per_hour");
        }
        if (!(options_.min_r_squared >= 0.0 && options_.min_r_squared <= 1.0)) {
            throw std::invalid_argument(
                "wsguard::GrowthRateDetector: min_r_squared must be in [0, 1]");
        }
        if (options_.limit && !std::isfinite(*options_.limit)) {
            throw std::invalid_argument("wsguard::GrowthRateDetector: limit must be finite");
        }
        samples_.resize(options_.window);
    }

    /// Effect: Appends (t, value) to the window, forgetting the oldest sample
    ///         when the window is full. O(1), no allocation.
    /// Fails: Ignores (and counts in stats()) a sample older than the newest
    ///        one, or a NaN/infinite value; returns false for an ignored sample.
    /// Thread safety: Unsafe on a shared object.
    /// Exceptions: nothrow.
    bool add_sample(std::chrono::steady_clock::time_point t, double value) noexcept {
        if (!std::isfinite(value)) {
            ++ignored_non_finite_;
            return false;
        }
        if (size_ != 0 && t < samples_[index(size_ - 1)].time) {
            ++ignored_out_of_order_;
            return false;
        }
        if (size_ < samples_.size()) {
            samples_[index(size_)] = Sample{t, value};
            ++size_;
        } else {
            samples_[head_] = Sample{t, value};
            head_ = (head_ + 1) % samples_.size();
        }
        ++samples_total_;
        return true;
    }

    /// Effect: Fits a least-squares line to the window and classifies it (see
    ///         the class comment for the rules). O(window), no allocation.
    /// Fails: Never fails; too little data gives level insufficient_data.
    /// Thread safety: Unsafe on a shared object being written.
    /// Exceptions: nothrow.
    GrowthVerdict verdict() const noexcept {
        GrowthVerdict v{GrowthLevel::insufficient_data, 0.0, 0.0, size_, 0.0, std::nullopt};
        if (size_ == 0) {
            return v;
        }
        v.latest = samples_[index(size_ - 1)].value;
        if (size_ < 2) {
            return v;
        }

        // Pass 1: means, with time in seconds since the oldest sample so the
        // absolute clock value never enters the arithmetic.
        const auto t0 = samples_[head_].time;
        double sum_x = 0.0;
        double sum_y = 0.0;
        double min_y = samples_[head_].value;
        double max_y = min_y;
        for (std::size_t i = 0; i < size_; ++i) {
            const Sample& s = samples_[index(i)];
            sum_x += seconds_since(t0, s.time);
            sum_y += s.value;
            min_y = s.value < min_y ? s.value : min_y;
            max_y = s.value > max_y ? s.value : max_y;
        }
        const double n = static_cast<double>(size_);
        const double mean_x = sum_x / n;
        const double mean_y = sum_y / n;

        // Pass 2: centred sums (no catastrophic cancellation, unlike
        // sum(x^2) - n*mean^2). R^2 is scale-free, so it is computed on values
        // divided by their range: squares of tiny or huge values would
        // underflow or overflow, ratios of them do not.
        const double range = max_y - min_y;
        double sxx = 0.0;
        double sxy = 0.0;
        double sxy_scaled = 0.0;
        double syy_scaled = 0.0;
        for (std::size_t i = 0; i < size_; ++i) {
            const Sample& s = samples_[index(i)];
            const double dx = seconds_since(t0, s.time) - mean_x;
            const double dy = s.value - mean_y;
            const double dy_scaled = range > 0.0 ? dy / range : dy;
            sxx += dx * dx;
            sxy += dx * dy;
            sxy_scaled += dx * dy_scaled;
            syy_scaled += dy_scaled * dy_scaled;
        }
        if (!(sxx > 0.0)) {
            // Every sample at the same instant: no slope can be measured.
            return v;
        }

        double slope = 0.0;  // units per second
        if (range == 0.0) {
            // Exactly flat: rounding in mean_y must not invent a slope or an R^2.
            v.r_squared = 1.0;
        } else {
            slope = sxy / sxx;
            const double r2 = (sxy_scaled / sxx) * (sxy_scaled / syy_scaled);
            v.r_squared = r2 < 0.0 ? 0.0 : (r2 > 1.0 ? 1.0 : r2);
        }
        v.growth_per_hour = slope * 3600.0;
        if (size_ < options_.min_samples) {
            return v;
        }

        const bool credible = v.r_squared >= options_.min_r_squared && slope > 0.0;
        v.level = GrowthLevel::ok;
        if (credible && v.growth_per_hour >= options_.critical_per_hour) {
            v.level = GrowthLevel::critical;
        } else if (credible && v.growth_per_hour >= options_.warning_per_hour) {
            v.level = GrowthLevel::warning;
        }

        if (credible && options_.limit) {
            const double limit = *options_.limit;
            if (v.latest >= limit) {
                v.time_to_limit = std::chrono::seconds(0);
            } else {
                const double x_last = seconds_since(t0, samples_[index(size_ - 1)].time);
                const double fitted_now = mean_y + slope * (x_last - mean_x);
                const double remaining = limit - fitted_now;
                const double eta = remaining <= 0.0 ? 0.0 : std::floor(remaining / slope);
                // Beyond ~2.9e11 years the answer is "never" in practice and
                // would overflow the conversion.
                constexpr double max_seconds =
                    static_cast<double>(std::numeric_limits<std::int64_t>::max() / 2);
                if (eta < max_seconds) {
                    v.time_to_limit =
                        std::chrono::seconds(static_cast<std::chrono::seconds::rep>(eta));
                }
            }
        }
        return v;
    }

    /// Effect: Forgets every sample (the window keeps its allocation). The
    ///         counters in stats() are kept; resets is incremented.
    /// Fails: Never fails.
    /// Thread safety: Unsafe on a shared object.
    /// Exceptions: nothrow.
    void reset() noexcept {
        head_ = 0;
        size_ = 0;
        ++resets_;
    }

    /// Effect: Returns the number of samples in the window (<= options().window).
    /// Fails: Never fails.
    /// Thread safety: Unsafe on a shared object being written.
    /// Exceptions: nothrow.
    std::size_t size() const noexcept { return size_; }

    /// Effect: Returns the options given at construction.
    /// Fails: Never fails.
    /// Thread safety: Safe (immutable after construction).
    /// Exceptions: nothrow.
    const GrowthOptions& options() const noexcept { return options_; }

    /// Effect: Returns every counter and the current verdict's numbers. O(window).
    /// Fails: Never fails.
    /// Thread safety: Unsafe on a shared object being written.
    /// Exceptions: nothrow.
    GrowthStats stats() const noexcept {
        const GrowthVerdict v = verdict();
        GrowthStats s{};
        s.samples_total = samples_total_;
        s.ignored_out_of_order = ignored_out_of_order_;
        s.ignored_non_finite = ignored_non_finite_;
        s.resets = resets_;
        s.size = size_;
        s.window = samples_.size();
        s.level = v.level;
        s.growth_per_hour = v.growth_per_hour;
        s.r_squared = v.r_squared;
        s.latest = v.latest;
        return s;
    }

private:
    struct Sample {
        std::chrono::steady_clock::time_point time;
        double value;
    };

    // Position of the i-th oldest sample in the ring.
    std::size_t index(std::size_t i) const noexcept { return (head_ + i) % samples_.size(); }

    static double seconds_since(std::chrono::steady_clock::time_point from,
                                std::chrono::steady_clock::time_point to) noexcept {
        return std::chrono::duration<double>(to - from).count();
    }

    GrowthOptions options_;
    std::vector<Sample> samples_;
    std::size_t head_ = 0;
    std::size_t size_ = 0;
    std::uint64_t samples_total_ = 0;
    std::uint64_t ignored_out_of_order_ = 0;
    std::uint64_t ignored_non_finite_ = 0;
    std::uint64_t resets_ = 0;
};

}  // namespace wsguard
