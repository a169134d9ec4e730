// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// GrowthRateDetector micro-benchmarks: the sampler calls add_sample() and then
// verdict() once per sampling interval (1 s by default) for each series, so
// these only need to be far below a microsecond-scale budget; they are measured
// to keep them there. There is no baseline: the cost is O(window).
#include <wsguard/growth_rate_detector.hpp>

#include <benchmark/benchmark.h>

#include <chrono>
#include <cstddef>
#include <cstdint>

#include "alloc_counter.hpp"

namespace {

// A slowly growing series with deterministic jitter, so the fit has work to do.
double series_value(std::uint64_t i) {
    return 512.0 * 1024 * 1024 + static_cast<double>(i) * 4096.0 +
           static_cast<double>((i * 7919) % 13) * 1024.0;
}

wsguard::GrowthRateDetector full_detector(std::size_t window, std::uint64_t& i,
                                          std::chrono::steady_clock::time_point& t) {
    wsguard::GrowthOptions options;
    options.window = window;
    options.limit = 2.0 * 1024 * 1024 * 1024;
    wsguard::GrowthRateDetector detector(options);
    for (; i < window; ++i) {
        t += std::chrono::seconds(1);
        detector.add_sample(t, series_value(i));
    }
    return detector;
}

// add_sample + verdict() on a full window: one sampling tick.
void detector_sample_and_verdict(benchmark::State& state) {
    const auto window = static_cast<std::size_t>(state.range(0));
    std::uint64_t i = 0;
    std::chrono::steady_clock::time_point t{};
    wsguard::GrowthRateDetector detector = full_detector(window, i, t);
    {
        const wsguard::bench::AllocsPerOp allocs(state);
        for (auto _ : state) {
            t += std::chrono::seconds(1);
            benchmark::DoNotOptimize(detector.add_sample(t, series_value(i++)));
            wsguard::GrowthVerdict verdict = detector.verdict();
            benchmark::DoNotOptimize(verdict);
        }
    }
}

// add_sample alone: the part that runs even when nobody reads the verdict.
void detector_sample(benchmark::State& state) {
    const auto window = static_cast<std::size_t>(state.range(0));
    std::uint64_t i = 0;
    std::chrono::steady_clock::time_point t{};
    wsguard::GrowthRateDetector detector = full_detector(window, i, t);
    {
        const wsguard::bench::AllocsPerOp allocs(state);
        for (auto _ : state) {
            t += std::chrono::seconds(1);
            benchmark::DoNotOptimize(detector.add_sample(t, series_value(i++)));
        }
    }
}

}  // namespace

BENCHMARK(detector_sample_and_verdict)->Name("BM_Detector/add_sample_verdict")->Arg(60);
BENCHMARK(detector_sample)->Name("BM_Detector/add_sample")->Arg(60);
