#!/usr/bin/env bash
# Runs every wsguard libFuzzer target for a bounded time and fails if any of them
# finds a crash, a failed check, a leak, a timeout or an out-of-memory.
#
#   fuzz/run_fuzzers.sh <build-dir> [seconds-per-fuzzer, default 60] [fuzzer names...]
#
# <build-dir> is a build configured with CC=clang CXX=clang++
# -DWSGUARD_BUILD_FUZZERS=ON -DWSGUARD_SANITIZE=address,undefined and built (the
# fuzz_* targets). Each fuzzer starts from a temporary copy of its seeds
# (fuzz/corpus/<what>/) and saved regressions (tests/fuzz_regressions/<what>/), so the
# source tree is never written to. A failing input is kept in
# <build-dir>/fuzz-artifacts/<what>/; to keep it as a regression, copy it to
# tests/fuzz_regressions/<what>/. Each fuzzer's log is <build-dir>/fuzz-logs/<what>.log.
set -euo pipefail

if [[ $# -lt 1 || $1 == -h || $1 == --help ]]; then
  sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi

build=$(cd "$1" && pwd)
seconds=${2:-60}
shift $(($# < 2 ? $# : 2))
fuzzers=("$@")
if [[ ${#fuzzers[@]} -eq 0 ]]; then
  fuzzers=(router queue registry rooms)
fi
if ! [[ $seconds =~ ^[0-9]+$ ]] || [[ $seconds -eq 0 ]]; then
  echo "run_fuzzers: seconds must be a positive integer, got '$seconds'" >&2
  exit 2
fi

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
work=$(mktemp -d -t wsguard-fuzz.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$build/fuzz-artifacts" "$build/fuzz-logs"

status=0
for what in "${fuzzers[@]}"; do
  exe="$build/fuzz/fuzz_$what"
  if [[ ! -x $exe ]]; then
    echo "run_fuzzers: $exe not found; build it with -DWSGUARD_BUILD_FUZZERS=ON" >&2
    status=1
    continue
  fi
  corpus="$work/$what"
  artifacts="$build/fuzz-artifacts/$what"
  log="$build/fuzz-logs/$what.log"
  rm -rf "$artifacts"  # what is listed after a failure is this run's
  mkdir -p "$corpus" "$artifacts"
  cp "$root/fuzz/corpus/$what/"* "$corpus/"
  if [[ -d $root/tests/fuzz_regressions/$what ]]; then
    cp "$root/tests/fuzz_regressions/$what/"* "$corpus/" 2>/dev/null || true
  fi
  args=(-max_total_time="$seconds" -timeout=5 -rss_limit_mb=2048 -print_final_stats=1
        -artifact_prefix="$artifacts/")
  if [[ -f $here/fuzz_$what.dict ]]; then
    args+=(-dict="$here/fuzz_$what.dict")
  fi

  echo "=== fuzz_$what: ${seconds}s"
  if "$exe" "${args[@]}" "$corpus" >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n1 || true)
    echo "    ok: ${runs:-?} runs, ${rate:-?} exec/s, ${cov:-cov: ?}, corpus $(find "$corpus" -type f | wc -l) inputs"
  else
    status=1
    echo "    FAILED (log: $log)"
    grep -E '^(==[0-9]+==ERROR|fuzz check failed|SUMMARY|.*runtime error)' "$log" | head -n 5 | sed 's/^/    /' || true
    find "$artifacts" -type f | sed 's|^|    artifact: |'
  fi
done

if [[ $status -eq 0 ]]; then
  echo "=== fuzzers: no failure in ${seconds}s each"
else
  echo "=== fuzzers: FAILED"
fi
exit $status
