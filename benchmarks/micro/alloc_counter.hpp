// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// Heap-allocation counting for the micro-benchmarks. alloc_counter.cpp replaces
// the global operator new/delete of the benchmark binary, so each benchmark can
// report how many allocations its timed loop made per operation: "no allocation
// in steady state" is a claim of several components, and a counter proves it
// where a timing only hints at it.
#pragma once

#include <benchmark/benchmark.h>

#include <cstdint>

namespace wsguard::bench {

/// Effect: the number of global operator new calls (every form) made so far on
/// the calling thread.
/// Never fails. Thread safety: Safe (a thread-local count). Exceptions: nothrow.
std::uint64_t allocation_count() noexcept;

/// Counts the allocations between its construction and its destruction and
/// reports them as the benchmark counter "allocs_per_op": allocations divided
/// by (iterations x ops_per_iteration). Construct it just before the timed loop
/// so that setup is not counted.
///
/// Thread safety: Distinct objects: Safe. Shared objects: Unsafe.
class AllocsPerOp {
public:
    /// Effect: starts counting; one iteration of the timed loop is
    /// ops_per_iteration operations.
    /// Never fails. Thread safety: as the class. Exceptions: nothrow.
    explicit AllocsPerOp(benchmark::State& state, double ops_per_iteration = 1.0) noexcept
        : state_(state), ops_per_iteration_(ops_per_iteration), start_(allocation_count()) {}

    AllocsPerOp(const AllocsPerOp&) = delete;
    AllocsPerOp& operator=(const AllocsPerOp&) = delete;

    /// Effect: sets the "allocs_per_op" counter of the benchmark.
    ~AllocsPerOp() {
        const std::uint64_t allocations = allocation_count() - start_;
        const double ops = static_cast<double>(state_.iterations()) * ops_per_iteration_;
        state_.counters["allocs_per_op"] =
            benchmark::Counter(ops > 0 ? static_cast<double>(allocations) / ops : 0.0);
    }

private:
    benchmark::State& state_;
    double ops_per_iteration_;
    std::uint64_t start_;
};

}  // namespace wsguard::bench
