#!/usr/bin/env bash
# Builds and runs the whole test suite (Debian/Ubuntu; installs what it needs first):
#   1. the normal build (Release): unit, integration, consumer, e2e, browser and Redis tests,
#      and a chosen subset of the integration binaries under valgrind memcheck (label
#      "valgrind", tests/integration/CMakeLists.txt says which and why); then the
#      integration tests three times in a row with a 3 s idle timeout and a 1 s ping interval;
#   2. the same suite under AddressSanitizer+LeakSanitizer+UBSan;
#   3. the multi-threaded tests under ThreadSanitizer;
#   4. the libFuzzer targets (clang, ASan+UBSan), each for a bounded time.
# Prints each ctest summary and a final verdict; exits non-zero if any step failed.
set -uo pipefail
cd "$(dirname "$0")/.."

./scripts/install_deps.sh --tests || { echo "wsguard: installing dependencies failed"; exit 1; }

jobs=${WSGUARD_JOBS:-$(nproc)}
fuzz_seconds=${WSGUARD_FUZZ_SECONDS:-20}
failed=()

# Every dependency the suite needs was installed above, so the tests that need
# a browser, a Redis server, valgrind, promtool or systemd-analyze must run,
# not skip. (The sanitizer builds ignore WSGUARD_REQUIRE_VALGRIND: they have
# no memcheck tests.)
require=(-DWSGUARD_REQUIRE_BROWSER_TEST=ON -DWSGUARD_REQUIRE_REDIS=ON -DWSGUARD_REQUIRE_VALGRIND=ON
         -DWSGUARD_REQUIRE_PROMTOOL=ON -DWSGUARD_REQUIRE_SYSTEMD_ANALYZE=ON)

# The sanitizer builds compile at -Og with line tables only (-g1): every
# report still names file and line, and a test file builds in 40% of the time
# -O2 -g takes (tests/integration/test_limits.cpp under ASan+UBSan: 25 s against
# 66 s of CPU), while the code still runs at an optimised speed.
sanitizer_build=("-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-Og -g1 -DNDEBUG")

configure_and_build() { # <build dir> <cmake args...> [-- <build args...>]
  local dir=$1; shift
  local cmake_args=()
  while [[ $# -gt 0 && $1 != -- ]]; do cmake_args+=("$1"); shift; done
  [[ $# -gt 0 ]] && shift
  echo "=== wsguard [${SECONDS} s]: configuring $dir (${cmake_args[*]})"
  if ! cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "${cmake_args[@]}" \
    >"$dir.configure.log" 2>&1; then
    cat "$dir.configure.log"
    return 1
  fi
  echo "=== wsguard [${SECONDS} s]: building $dir"
  cmake --build "$dir" -j"$jobs" "$@"
}

# start_build <build dir> <configure_and_build args...>: configures and builds
# in the background at the lowest CPU priority (nice 19), while the foreground
# runs a suite: the tests wait on sockets and timers most of the time, and the
# build takes only the CPU they leave (a runnable test preempts it at once).
# finish_build <build dir> waits for it, prints its output, returns its status.
declare -A build_pids=()
start_build() {
  local dir=$1
  echo "=== wsguard [${SECONDS} s]: building $dir in the background (nice 19)"
  (renice -n 19 -p "$BASHPID" >/dev/null && configure_and_build "$@") >"$dir.background.log" 2>&1 &
  build_pids[$dir]=$!
}
finish_build() {
  local dir=$1 rc=0
  wait "${build_pids[$dir]}" || rc=$?
  cat "$dir.background.log"
  echo "=== wsguard [${SECONDS} s]: $dir built (status $rc)"
  return $rc
}

run_ctest() { # <build dir> <ctest args...>
  local dir=$1; shift
  echo "=== wsguard [${SECONDS} s]: testing $dir"
  local rc=0
  (cd "$dir" && ctest --output-on-failure --timeout 600 -j"$jobs" "$@") 2>&1 | tee "$dir.ctest.log" ||
    rc=$?
  # "N tests failed out of M": summed over every suite for the closing line.
  local line
  line=$(grep -E "tests passed, [0-9]+ tests? failed out of [0-9]+" "$dir.ctest.log" | tail -n1 || true)
  if [[ $line =~ ([0-9]+)\ tests?\ failed\ out\ of\ ([0-9]+) ]]; then
    total_failed=$((total_failed + BASH_REMATCH[1]))
    total_passed=$((total_passed + BASH_REMATCH[2] - BASH_REMATCH[1]))
  fi
  return $rc
}
total_passed=0
total_failed=0

# The normal build is Release (-O3): one configuration of the suite compiles
# with the optimizer's full warnings (gcc's maybe-uninitialized shows only
# there), tests and benchmarks included, so a Release build cannot break unseen.
# The stages overlap: each sanitizer build runs in the background (start_build)
# while the previous suite's tests run, so CI's two cores are busy throughout.
tsan_targets=(test_scoped_listener test_connection_registry test_room_index test_health test_room_bridge
              test_churn test_threads)
release_built=false
configure_and_build build -DCMAKE_BUILD_TYPE=Release "${require[@]}" && release_built=true
start_build build-asan -DWSGUARD_SANITIZE=address,undefined "${sanitizer_build[@]}" \
  -DWSGUARD_BUILD_BENCHMARKS=OFF "${require[@]}"
if $release_built; then
  run_ctest build || failed+=("normal suite")
  # The acceptance runs: every loopback integration test three times in a row
  # with a 3 s idle timeout and a 1 s ping interval, where a test sets neither.
  WSGUARD_TEST_IDLE_TIMEOUT_MS=3000 WSGUARD_TEST_PING_INTERVAL_MS=1000 \
    run_ctest build -L integration -LE "valgrind|browser|consumers" --repeat until-fail:3 ||
    failed+=("integration suite, 3 s idle and 1 s ping, three times")
else
  failed+=("normal build")
fi

asan_built=false
finish_build build-asan && asan_built=true
# ThreadSanitizer on the code that runs on several threads: the lock-policy
# components, the Redis bridge driven by two io threads, and the reference
# server with two and four io threads under room traffic and churn.
start_build build-tsan -DWSGUARD_SANITIZE=thread "${sanitizer_build[@]}" \
  -DWSGUARD_BUILD_BENCHMARKS=OFF "${require[@]}" -- --target "${tsan_targets[@]}"
have_fuzzers=false
if [[ -x fuzz/run_fuzzers.sh ]]; then
  have_fuzzers=true
  CC=clang CXX=clang++ start_build build-fuzz -DWSGUARD_BUILD_FUZZERS=ON \
    -DWSGUARD_SANITIZE=address,undefined "${sanitizer_build[@]}" -DWSGUARD_BUILD_TESTS=OFF \
    -DWSGUARD_BUILD_EXAMPLES=OFF -DWSGUARD_BUILD_BENCHMARKS=OFF
fi
if $asan_built; then
  # The browser test drives the server binary from node; its sanitizer run adds nothing.
  run_ctest build-asan -LE "browser|consumers" || failed+=("ASan+UBSan suite")
else
  failed+=("ASan+UBSan build")
fi

if finish_build build-tsan; then
  # Selected by name: the tests of targets not built here are *_NOT_BUILT.
  tsan_regex="^($(IFS='|'; echo "${tsan_targets[*]}")):"
  run_ctest build-tsan -R "$tsan_regex" || failed+=("TSan suite")
else
  failed+=("TSan build")
fi

if $have_fuzzers; then
  if finish_build build-fuzz; then
    echo "=== wsguard [${SECONDS} s]: fuzzing, ${fuzz_seconds} s per fuzzer"
    ./fuzz/run_fuzzers.sh build-fuzz "$fuzz_seconds" || failed+=("fuzzers")
  else
    failed+=("fuzzer build")
  fi
fi

if ((${#failed[@]} == 0)); then
  echo "=== wsguard [${SECONDS} s]: every suite passed"
else
  echo "=== wsguard [${SECONDS} s]: FAILED: ${failed[*]}"
fi
echo "wsguard: ${total_passed} passed, ${total_failed} failed"
((${#failed[@]} == 0))
