// Tests for wsguard::GrowthRateDetector, all on synthetic time from a
// ManualClock: noise is not growth, steady growth is, a single step is not,
// levels and time to limit, the sliding window, and the refusals.
#include <wsguard/growth_rate_detector.hpp>

#include <catch2/catch.hpp>

#include "support/manual_clock.hpp"

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <new>
#include <random>
#include <stdexcept>
#include <utility>
#include <vector>

// Counts every allocation in this test binary, to show the detector allocates
// once (its window) and never per sample or per verdict.
#include "support/counting_new.hpp"

namespace {

using namespace std::chrono_literals;
using wsguard::GrowthLevel;
using wsguard::GrowthOptions;
using wsguard::GrowthRateDetector;

constexpr double MiB = 1024.0 * 1024.0;
constexpr auto interval = 10s;  // sampling period used throughout

// Feeds `count` samples of f(seconds since start) at `interval`, checking the
// verdict after each one with `check`.
template <class F, class Check>
void feed(GrowthRateDetector& d, wsguard::test::ManualClock& clock, int count, double& elapsed, F f,
          Check check) {
    for (int i = 0; i < count; ++i) {
        REQUIRE(d.add_sample(clock.now(), f(elapsed)));
        check(d.verdict());
        clock.advance(interval);
        elapsed += std::chrono::duration<double>(interval).count();
    }
}

template <class F>
void feed(GrowthRateDetector& d, wsguard::test::ManualClock& clock, int count, double& elapsed,
          F f) {
    feed(d, clock, count, elapsed, f, [](const wsguard::GrowthVerdict&) {});
}

}  // namespace

TEST_CASE("constructor validates every option", "[growth_rate_detector]") {
    auto with = [](auto change) {
        GrowthOptions o;
        change(o);
        return o;
    };
    CHECK_THROWS_AS(GrowthRateDetector(with([](GrowthOptions& o) { o.window = 1; })),
                    std::invalid_argument);
    CHECK_THROWS_AS(GrowthRateDetector(with([](GrowthOptions& o) { o.min_samples = 1; })),
                    std::invalid_argument);
    CHECK_THROWS_AS(GrowthRateDetector(with([](GrowthOptions& o) { o.min_samples = 61; })),
                    std::invalid_argument);
    CHECK_THROWS_AS(GrowthRateDetector(with([](GrowthOptions& o) { o.warning_per_hour = -1; })),
                    std::invalid_argument);
    CHECK_THROWS_AS(GrowthRateDetector(with([](GrowthOptions& o) { o.critical_per_hour = -1; })),
                    std::invalid_argument);
    CHECK_THROWS_AS(GrowthRateDetector(with([](GrowthOptions& o) {
                        o.warning_per_hour = std::numeric_limits<double>::quiet_NaN();
                    })),
                    std::invalid_argument);
    CHECK_THROWS_AS(GrowthRateDetector(with([](GrowthOptions& o) {
                        o.warning_per_hour = 2;
                        o.critical_per_hour = 1;
                    })),
                    std::invalid_argument);
    CHECK_THROWS_AS(GrowthRateDetector(with([](GrowthOptions& o) { o.min_r_squared = -0.1; })),
                    std::invalid_argument);
    CHECK_THROWS_AS(GrowthRateDetector(with([](GrowthOptions& o) { o.min_r_squared = 1.1; })),
                    std::invalid_argument);
    CHECK_THROWS_AS(GrowthRateDetector(with([](GrowthOptions& o) {
                        o.limit = std::numeric_limits<double>::infinity();
                    })),
                    std::invalid_argument);

    // The edges are valid.
    CHECK_NOTHROW(GrowthRateDetector(with([](GrowthOptions& o) {
        o.window = 2;
        o.min_samples = 2;
        o.warning_per_hour = 0;
        o.critical_per_hour = 0;
        o.min_r_squared = 0;
    })));
    CHECK_NOTHROW(GrowthRateDetector(with([](GrowthOptions& o) {
        o.min_samples = o.window;
        o.min_r_squared = 1;
    })));

    const GrowthRateDetector d;
    CHECK(d.options().window == 60);
    CHECK(d.options().min_samples == 10);
    CHECK(d.options().warning_per_hour == 50 * MiB);
    CHECK(d.options().critical_per_hour == 100 * MiB);
    CHECK(d.options().min_r_squared == 0.8);
    CHECK_FALSE(d.options().limit.has_value());
}

TEST_CASE("to_string names every level, and growing() means is warning or critical",
          "[growth_rate_detector]") {
    CHECK(std::string(wsguard::to_string(GrowthLevel::insufficient_data)) == "insufficient_data");
    CHECK(std::string(wsguard::to_string(GrowthLevel::ok)) == "ok");
    CHECK(std::string(wsguard::to_string(GrowthLevel::warning)) == "warning");
    CHECK(std::string(wsguard::to_string(GrowthLevel::critical)) == "critical");
    wsguard::GrowthVerdict v{GrowthLevel::ok, 0, 0, 0, 0, std::nullopt};
    CHECK_FALSE(v.growing());
    v.level = GrowthLevel::insufficient_data;
    CHECK_FALSE(v.growing());
    v.level = GrowthLevel::warning;
    CHECK(v.growing());
    v.level = GrowthLevel::critical;
    CHECK(v.growing());
}

TEST_CASE("too few samples give insufficient_data but still report the slope",
          "[growth_rate_detector]") {
    wsguard::test::ManualClock clock;
    GrowthOptions o;
    o.limit = 1024 * MiB;
    GrowthRateDetector d(o);

    auto v = d.verdict();
    CHECK(v.level == GrowthLevel::insufficient_data);
    CHECK(v.samples == 0);
    CHECK(v.latest == 0);
    CHECK(v.growth_per_hour == 0);
    CHECK_FALSE(v.time_to_limit);

    double elapsed = 0;
    const double rate = 200 * MiB / 3600.0;  // far above critical
    feed(
        d, clock, 9, elapsed, [&](double s) { return 100 * MiB + rate * s; },
        [&](const wsguard::GrowthVerdict& vv) {
            CHECK(vv.level == GrowthLevel::insufficient_data);
            CHECK_FALSE(vv.growing());
            CHECK_FALSE(vv.time_to_limit);
        });
    v = d.verdict();
    CHECK(v.samples == 9);
    CHECK(v.growth_per_hour == Approx(200 * MiB).epsilon(1e-9));
    CHECK(v.r_squared == Approx(1.0));

    feed(d, clock, 1, elapsed, [&](double s) { return 100 * MiB + rate * s; });
    CHECK(d.verdict().level == GrowthLevel::critical);  // the 10th sample decides
}

TEST_CASE("every sample at the same instant gives insufficient_data", "[growth_rate_detector]") {
    wsguard::test::ManualClock clock;
    GrowthRateDetector d;
    for (int i = 0; i < 20; ++i) {
        REQUIRE(d.add_sample(clock.now(), i * MiB));  // equal timestamps are accepted
    }
    const auto v = d.verdict();
    CHECK(v.samples == 20);
    CHECK(v.level == GrowthLevel::insufficient_data);
    CHECK(v.latest == 19 * MiB);
}

TEST_CASE("a perfectly flat series is ok with r_squared 1 and zero growth",
          "[growth_rate_detector]") {
    wsguard::test::ManualClock clock;
    GrowthRateDetector d;
    double elapsed = 0;
    // 0.1 does not survive sum/n exactly: the flat case must not rely on the mean.
    for (const double value : {0.1, 300 * MiB}) {
        d.reset();
        feed(d, clock, 60, elapsed, [&](double) { return value; });
        const auto v = d.verdict();
        CHECK(v.level == GrowthLevel::ok);
        CHECK(v.growth_per_hour == 0.0);
        CHECK(v.r_squared == 1.0);
        CHECK(v.latest == value);
    }
}

TEST_CASE("a noisy series without a trend is never warning or critical", "[growth_rate_detector]") {
    // Small noise (+-5 MiB) and large noise (+-50 MiB): with the large noise
    // the slope of many windows alone exceeds the warning rate, and only the
    // fit quality keeps them from being called a leak.
    for (const double amplitude : {5 * MiB, 50 * MiB}) {
        INFO("noise amplitude " << amplitude / MiB << " MiB");
        wsguard::test::ManualClock clock;
        GrowthRateDetector d;
        std::mt19937 rng(7);
        std::uniform_real_distribution<double> noise(-amplitude, amplitude);
        double elapsed = 0;
        int fast_slopes = 0;
        int verdicts = 0;
        feed(
            d, clock, 3000, elapsed, [&](double) { return 500 * MiB + noise(rng); },
            [&](const wsguard::GrowthVerdict& v) {
                if (v.level == GrowthLevel::insufficient_data) {
                    return;
                }
                ++verdicts;
                REQUIRE(v.level == GrowthLevel::ok);
                REQUIRE_FALSE(v.growing());
                REQUIRE_FALSE(v.time_to_limit);
                CHECK(v.r_squared < 0.8);
                fast_slopes += v.growth_per_hour >= 50 * MiB ? 1 : 0;
            });
        CHECK(verdicts == 3000 - 9);
        if (amplitude > 10 * MiB) {
            CHECK(fast_slopes > 100);
        }
    }
}

TEST_CASE("steady growth of 120 MiB/h with noise is critical, rate within 5%",
          "[growth_rate_detector]") {
    wsguard::test::ManualClock clock;
    GrowthRateDetector d;
    std::mt19937 rng(11);
    std::uniform_real_distribution<double> noise(-1 * MiB, 1 * MiB);
    const double rate = 120 * MiB / 3600.0;
    double elapsed = 0;
    feed(
        d, clock, 200, elapsed, [&](double s) { return 200 * MiB + rate * s + noise(rng); },
        [&](const wsguard::GrowthVerdict& v) {
            // Once the window is full the verdict holds on every sample.
            if (v.samples == 60) {
                REQUIRE(v.level == GrowthLevel::critical);
            }
        });
    const auto v = d.verdict();
    CHECK(v.level == GrowthLevel::critical);
    CHECK(v.growing());
    CHECK(v.samples == 60);
    CHECK(v.growth_per_hour == Approx(120 * MiB).epsilon(0.05));
    CHECK(v.r_squared > 0.95);
}

TEST_CASE("steady growth of 60 MiB/h is a warning", "[growth_rate_detector]") {
    wsguard::test::ManualClock clock;
    GrowthRateDetector d;
    std::mt19937 rng(13);
    std::uniform_real_distribution<double> noise(-0.5 * MiB, 0.5 * MiB);
    const double rate = 60 * MiB / 3600.0;
    double elapsed = 0;
    feed(d, clock, 120, elapsed, [&](double s) { return 200 * MiB + rate * s + noise(rng); });
    const auto v = d.verdict();
    CHECK(v.level == GrowthLevel::warning);
    CHECK(v.growing());
    CHECK(v.growth_per_hour == Approx(60 * MiB).epsilon(0.05));
}

TEST_CASE("slow growth with a good fit is ok, and thresholds are inclusive",
          "[growth_rate_detector]") {
    wsguard::test::ManualClock clock;
    GrowthRateDetector d;
    double elapsed = 0;
    feed(d, clock, 60, elapsed, [&](double s) { return 100 * MiB + (10 * MiB / 3600.0) * s; });
    auto v = d.verdict();
    CHECK(v.level == GrowthLevel::ok);
    CHECK(v.r_squared == Approx(1.0));
    CHECK(v.growth_per_hour == Approx(10 * MiB));

    // A rate exactly at both thresholds (warning == critical) is critical.
    GrowthOptions o;
    o.warning_per_hour = 3600;
    o.critical_per_hour = 3600;
    GrowthRateDetector exact(o);
    for (int i = 0; i < 10; ++i) {
        exact.add_sample(clock.now(), 1000.0 + 10.0 * i);  // 10 units per 10 s
        clock.advance(interval);
    }
    v = exact.verdict();
    CHECK(v.growth_per_hour == Approx(3600.0));
    CHECK(v.level == GrowthLevel::critical);
}

TEST_CASE("negative growth is ok and has no time to limit", "[growth_rate_detector]") {
    wsguard::test::ManualClock clock;
    GrowthOptions o;
    o.limit = 1024 * MiB;
    GrowthRateDetector d(o);
    double elapsed = 0;
    feed(d, clock, 60, elapsed, [&](double s) { return 800 * MiB - (500 * MiB / 3600.0) * s; });
    const auto v = d.verdict();
    CHECK(v.level == GrowthLevel::ok);
    CHECK_FALSE(v.growing());
    CHECK(v.growth_per_hour == Approx(-500 * MiB));
    CHECK(v.r_squared == Approx(1.0));
    CHECK_FALSE(v.time_to_limit);
}

TEST_CASE("a single step is not growth, but a staircase is", "[growth_rate_detector]") {
    SECTION("flat, jump, flat: ok while the step is in the window, flat after") {
        wsguard::test::ManualClock clock;
        GrowthRateDetector d;
        const std::size_t n = 60;
        int index = 0;
        const int step_at = 90;
        double elapsed = 0;
        feed(
            d, clock, 300, elapsed,
            [&](double) { return index++ < step_at ? 200 * MiB : 400 * MiB; },
            [&](const wsguard::GrowthVerdict& v) {
                if (v.level == GrowthLevel::insufficient_data) {
                    return;
                }
                REQUIRE(v.level == GrowthLevel::ok);
                REQUIRE_FALSE(v.time_to_limit);
                // R^2 of a line through a step is exactly 3p(1-p) n^2/(n^2-1),
                // p = share of the window after the step; at most ~0.75.
                const int newest = index - 1;
                const int oldest = newest - static_cast<int>(v.samples) + 1;
                const int after = std::max(0, newest - std::max(oldest, step_at) + 1);
                if (after == 0 || after == static_cast<int>(v.samples)) {
                    REQUIRE(v.r_squared == 1.0);
                    REQUIRE(v.growth_per_hour == 0.0);
                } else {
                    const double m = static_cast<double>(v.samples);
                    const double p = after / m;
                    const double bound = 3 * p * (1 - p) * m * m / (m * m - 1);
                    REQUIRE(v.r_squared == Approx(bound).epsilon(1e-9));
                    REQUIRE(v.r_squared < 0.76);
                }
            });
        CHECK(d.size() == n);
        CHECK(d.verdict().latest == 400 * MiB);
    }
    SECTION("repeated steps (10 MiB every 50 s) are a trend") {
        wsguard::test::ManualClock clock;
        GrowthRateDetector d;
        int index = 0;
        double elapsed = 0;
        feed(d, clock, 120, elapsed, [&](double) { return 100 * MiB + (index++ / 5) * 10 * MiB; });
        const auto v = d.verdict();
        CHECK(v.r_squared > 0.95);
        CHECK(v.growth_per_hour == Approx(720 * MiB).epsilon(0.05));
        CHECK(v.level == GrowthLevel::critical);
    }
}

TEST_CASE("slope, R^2 and time_to_limit match the least-squares definition",
          "[growth_rate_detector]") {
    // A textbook fit in long double over the same samples, on a noisy rising
    // series whose last sample is a spike, so the newest value and the fitted
    // line disagree: time_to_limit must follow the line.
    wsguard::test::ManualClock clock;
    GrowthOptions o;
    o.window = 30;
    o.limit = 2048 * MiB;
    o.min_r_squared = 0.5;
    GrowthRateDetector d(o);
    std::mt19937 rng(3);
    std::uniform_real_distribution<double> noise(-4 * MiB, 4 * MiB);
    std::uniform_int_distribution<int> gap_ms(5000, 15000);   // uneven sampling
    std::vector<std::pair<long double, long double>> window;  // (seconds, value)
    long double t = 0;
    for (int i = 0; i < 80; ++i) {
        double value = 300 * MiB + (150 * MiB / 3600.0) * static_cast<double>(t) + noise(rng);
        if (i == 79) {
            value += 20 * MiB;
        }
        REQUIRE(d.add_sample(clock.now(), value));
        window.emplace_back(t, value);
        if (window.size() > o.window) {
            window.erase(window.begin());
        }
        const auto gap = std::chrono::milliseconds(gap_ms(rng));
        clock.advance(gap);
        t += static_cast<long double>(gap.count()) / 1000;
    }
    long double mx = 0, my = 0;
    for (const auto& [x, y] : window) {
        mx += x;
        my += y;
    }
    mx /= window.size();
    my /= window.size();
    long double sxx = 0, sxy = 0, syy = 0;
    for (const auto& [x, y] : window) {
        sxx += (x - mx) * (x - mx);
        sxy += (x - mx) * (y - my);
        syy += (y - my) * (y - my);
    }
    const long double slope = sxy / sxx;
    const long double r2 = sxy * sxy / (sxx * syy);
    const long double fitted_newest = my + slope * (window.back().first - mx);
    const long double eta = (static_cast<long double>(*o.limit) - fitted_newest) / slope;

    const auto v = d.verdict();
    CHECK(v.samples == o.window);
    CHECK(v.latest == static_cast<double>(window.back().second));
    CHECK(v.growth_per_hour == Approx(static_cast<double>(slope * 3600)).epsilon(1e-9));
    CHECK(v.r_squared == Approx(static_cast<double>(r2)).epsilon(1e-9));
    REQUIRE(v.time_to_limit);
    CHECK(static_cast<double>(v.time_to_limit->count()) ==
          Approx(static_cast<double>(eta)).margin(1.0));
    // The spike puts the newest value well above the line: from the newest
    // value the estimate would be far shorter.
    const long double eta_from_latest =
        (static_cast<long double>(*o.limit) - window.back().second) / slope;
    CHECK(static_cast<double>(v.time_to_limit->count()) >
          static_cast<double>(eta_from_latest) + 60);
}

TEST_CASE("time_to_limit follows the fitted line to the limit", "[growth_rate_detector]") {
    wsguard::test::ManualClock clock;
    GrowthOptions o;
    o.limit = 1024 * MiB;
    GrowthRateDetector d(o);
    const double rate = 120 * MiB / 3600.0;
    double elapsed = 0;
    feed(d, clock, 60, elapsed, [&](double s) { return 100 * MiB + rate * s; });

    auto v = d.verdict();
    REQUIRE(v.time_to_limit);
    const double newest_at = 59 * 10.0;  // seconds since the first sample
    const double expected = (1024 * MiB - (100 * MiB + rate * newest_at)) / rate;
    CHECK(static_cast<double>(v.time_to_limit->count()) == Approx(expected).margin(1.0));
    CHECK(v.time_to_limit->count() <= expected);  // rounded down: never later than the fit says

    // Approaching the limit, the estimate shrinks by the time that passed.
    const auto before = *v.time_to_limit;
    feed(d, clock, 6, elapsed, [&](double s) { return 100 * MiB + rate * s; });
    v = d.verdict();
    REQUIRE(v.time_to_limit);
    CHECK((before - *v.time_to_limit).count() == Approx(60).margin(1));

    // At or over the limit: zero.
    GrowthOptions low = o;
    low.limit = 110 * MiB;
    GrowthRateDetector over(low);
    double e2 = 0;
    wsguard::test::ManualClock c2;
    feed(over, c2, 60, e2, [&](double s) { return 100 * MiB + rate * s; });
    REQUIRE(over.verdict().latest >= 110 * MiB);
    CHECK(over.verdict().time_to_limit == std::chrono::seconds(0));

    // No limit configured: no estimate.
    GrowthRateDetector none;
    double e3 = 0;
    wsguard::test::ManualClock c3;
    feed(none, c3, 60, e3, [&](double s) { return 100 * MiB + rate * s; });
    CHECK(none.verdict().level == GrowthLevel::critical);
    CHECK_FALSE(none.verdict().time_to_limit);

    // A growth too slow to ever reach the limit within the seconds range: no estimate.
    GrowthRateDetector slow(o);
    double e4 = 0;
    wsguard::test::ManualClock c4;
    feed(slow, c4, 60, e4, [&](double s) { return 1e-10 * s; });
    CHECK(slow.verdict().growth_per_hour > 0.0);
    CHECK(slow.verdict().r_squared == Approx(1.0));
    CHECK_FALSE(slow.verdict().time_to_limit);
}

TEST_CASE("the window slides: old samples are forgotten", "[growth_rate_detector]") {
    wsguard::test::ManualClock clock;
    GrowthOptions o;
    o.window = 10;
    o.min_samples = 5;
    GrowthRateDetector d(o);
    double elapsed = 0;
    feed(d, clock, 10, elapsed, [&](double s) { return 1000 * MiB * s; });  // very steep
    CHECK(d.verdict().level == GrowthLevel::critical);
    CHECK(d.size() == 10);

    int flat_samples = 0;
    feed(
        d, clock, 10, elapsed, [&](double) { return 7 * MiB; },
        [&](const wsguard::GrowthVerdict& v) {
            ++flat_samples;
            CHECK(v.samples == 10);  // never more than the window
            if (flat_samples == 10) {
                // Every steep sample has left the window.
                CHECK(v.level == GrowthLevel::ok);
                CHECK(v.growth_per_hour == 0.0);
                CHECK(v.r_squared == 1.0);
            }
        });
    CHECK(d.size() == 10);
    const auto s = d.stats();
    CHECK(s.samples_total == 20);
    CHECK(s.size == 10);
    CHECK(s.window == 10);
}

TEST_CASE("large timestamps and values keep the fit exact", "[growth_rate_detector]") {
    // Ten years of uptime and a series around 1 TiB: relative times and
    // centred sums keep the slope accurate.
    wsguard::test::ManualClock clock;
    clock.set(std::chrono::steady_clock::time_point{} + std::chrono::hours(24 * 365 * 10));
    GrowthRateDetector d;
    double elapsed = 0;
    const double rate = 64 * MiB / 3600.0;
    feed(d, clock, 60, elapsed, [&](double s) { return 1024.0 * 1024 * MiB + rate * s; });
    const auto v = d.verdict();
    CHECK(v.growth_per_hour == Approx(64 * MiB).epsilon(1e-6));
    CHECK(v.r_squared == Approx(1.0).epsilon(1e-9));
    CHECK(v.level == GrowthLevel::warning);

    // Tiny values: their squares underflow, the fit quality must not.
    GrowthRateDetector tiny;
    double e2 = 0;
    feed(tiny, clock, 60, e2, [&](double s) { return 1e-300 * (1 + s); });
    const auto t = tiny.verdict();
    CHECK(t.r_squared == Approx(1.0).epsilon(1e-9));
    CHECK(t.growth_per_hour == Approx(3600e-300).epsilon(1e-9));
    CHECK(t.level == GrowthLevel::ok);
}

TEST_CASE("out-of-order and non-finite samples are ignored and counted", "[growth_rate_detector]") {
    wsguard::test::ManualClock clock;
    GrowthRateDetector d;
    REQUIRE(d.add_sample(clock.now(), 1.0));
    clock.advance(10s);
    REQUIRE(d.add_sample(clock.now(), 2.0));
    CHECK_FALSE(d.add_sample(clock.now() - 1s, 3.0));
    CHECK(d.add_sample(clock.now(), 4.0));  // same instant as the newest: accepted
    CHECK_FALSE(d.add_sample(clock.now(), std::numeric_limits<double>::quiet_NaN()));
    CHECK_FALSE(d.add_sample(clock.now(), std::numeric_limits<double>::infinity()));
    CHECK_FALSE(d.add_sample(clock.now(), -std::numeric_limits<double>::infinity()));

    CHECK(d.size() == 3);
    CHECK(d.verdict().latest == 4.0);
    const auto s = d.stats();
    CHECK(s.samples_total == 3);
    CHECK(s.ignored_out_of_order == 1);
    CHECK(s.ignored_non_finite == 3);
}

TEST_CASE("reset forgets the samples and keeps the counters", "[growth_rate_detector]") {
    wsguard::test::ManualClock clock;
    GrowthRateDetector d;
    double elapsed = 0;
    feed(d, clock, 30, elapsed, [&](double s) { return 1000 * MiB * s; });
    CHECK(d.verdict().level == GrowthLevel::critical);

    d.reset();
    CHECK(d.size() == 0);
    auto v = d.verdict();
    CHECK(v.level == GrowthLevel::insufficient_data);
    CHECK(v.samples == 0);
    auto s = d.stats();
    CHECK(s.resets == 1);
    CHECK(s.samples_total == 30);
    CHECK(s.size == 0);

    // Older samples are fine again after a reset (nothing to be older than).
    clock.advance(-1h);
    feed(d, clock, 30, elapsed, [&](double) { return 5.0; });
    CHECK(d.verdict().level == GrowthLevel::ok);
    s = d.stats();
    CHECK(s.samples_total == 60);
    CHECK(s.ignored_out_of_order == 0);
}

TEST_CASE("stats() reports the counters and the current verdict", "[growth_rate_detector]") {
    wsguard::test::ManualClock clock;
    GrowthRateDetector d;
    double elapsed = 0;
    const double rate = 60 * MiB / 3600.0;
    feed(d, clock, 75, elapsed, [&](double s) { return rate * s; });
    const auto v = d.verdict();
    const auto s = d.stats();
    CHECK(s.samples_total == 75);
    CHECK(s.size == d.size());
    CHECK(s.size == v.samples);
    CHECK(s.window == d.options().window);
    CHECK(s.level == v.level);
    CHECK(s.growth_per_hour == v.growth_per_hour);
    CHECK(s.r_squared == v.r_squared);
    CHECK(s.latest == v.latest);
    CHECK(s.ignored_out_of_order == 0);
    CHECK(s.ignored_non_finite == 0);
    CHECK(s.resets == 0);
}

TEST_CASE("min_r_squared = 0 trusts any slope", "[growth_rate_detector]") {
    // The same noisy flat series that is ok by default becomes a warning when
    // the caller opts out of the fit-quality gate, on some windows at least.
    wsguard::test::ManualClock clock;
    GrowthOptions o;
    o.min_r_squared = 0.0;
    GrowthRateDetector d(o);
    std::mt19937 rng(7);
    std::uniform_real_distribution<double> noise(-50 * MiB, 50 * MiB);
    double elapsed = 0;
    int growing = 0;
    feed(
        d, clock, 1000, elapsed, [&](double) { return 500 * MiB + noise(rng); },
        [&](const wsguard::GrowthVerdict& v) { growing += v.growing() ? 1 : 0; });
    CHECK(growing > 0);
}

TEST_CASE("the window is allocated once: no allocation per sample or verdict",
          "[growth_rate_detector]") {
    wsguard::test::ManualClock clock;
    GrowthOptions o;
    o.limit = 1024 * MiB;
    const std::uint64_t at_start = wsguard::test::allocations();
    GrowthRateDetector d(o);
    const std::uint64_t before = wsguard::test::allocations();
    CHECK(before > at_start);  // the window itself: the counter works
    for (int i = 0; i < 500; ++i) {
        d.add_sample(clock.now(), i * MiB);
        clock.advance(interval);
        const auto v = d.verdict();
        const auto s = d.stats();
        (void)v;
        (void)s;
    }
    d.reset();
    d.add_sample(clock.now(), 1.0);
    CHECK(wsguard::test::allocations() == before);
}
