#!/usr/bin/env bash
# wsguard — leak-safe primitives for long-lived WebSocket servers.
# SPDX-License-Identifier: MIT
#
# Builds the micro-benchmarks (Release, in build-bench/ under the repository),
# runs them with 5 repetitions and prints each wsguard-vs-baseline comparison
# with its target. Extra arguments go to the benchmark binary (for example
# --benchmark_filter=BM_Emit). Exit status 1 if a target fails.
# Run it on a quiet machine: other load shows up as noise in every row.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${WSGUARD_BENCH_BUILD_DIR:-$repo/build-bench}"
json="$build/micro_results.json"

"$repo/scripts/install_deps.sh"
cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=Release \
  -DWSGUARD_BUILD_TESTS=OFF -DWSGUARD_BUILD_EXAMPLES=OFF -DWSGUARD_BUILD_BENCHMARKS=ON >/dev/null
cmake --build "$build" -j2 --target wsguard_micro_bench

echo "load before the run: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)"
# 0.25 s per repetition keeps the whole run near 2 minutes of CPU time; the
# medians of 5 repetitions are what compare.py reads.
"$build/benchmarks/wsguard_micro_bench" \
  --benchmark_min_time=0.25 \
  --benchmark_repetitions=5 \
  --benchmark_report_aggregates_only=true \
  --benchmark_out="$json" \
  --benchmark_out_format=json \
  "$@"
echo "load after the run: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)"
echo
python3 "$repo/benchmarks/micro/compare.py" "$json"
