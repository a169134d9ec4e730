#!/usr/bin/env bash
# Builds and runs the whole test suite: the normal build, then the same suite
# under AddressSanitizer+LeakSanitizer+UBSan, then the threaded tests under
# ThreadSanitizer. Installs what it needs first (Debian/Ubuntu).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install_deps.sh --tests

jobs=${WSGUARD_JOBS:-$(nproc)}
status=0

run_suite() { # <build dir> <ctest args...> -- <cmake args...>
  local dir=$1; shift
  local ctest_args=()
  while [[ $# -gt 0 && $1 != -- ]]; do ctest_args+=("$1"); shift; done
  shift
  echo "=== wsguard: configuring $dir ($*)"
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >"$dir.configure.log" 2>&1 ||
    { cat "$dir.configure.log"; return 1; }
  echo "=== wsguard: building $dir"
  cmake --build "$dir" -j"$jobs"
  echo "=== wsguard: testing $dir"
  (cd "$dir" && ctest --output-on-failure -j"$jobs" "${ctest_args[@]}")
}

run_suite build -- || status=1
run_suite build-asan -- -DWSGUARD_SANITIZE=address,undefined -DWSGUARD_BUILD_BENCHMARKS=OFF || status=1
run_suite build-tsan -L threaded -- -DWSGUARD_SANITIZE=thread -DWSGUARD_BUILD_BENCHMARKS=OFF \
  -DWSGUARD_BUILD_EXAMPLES=OFF || status=1

if [[ $status -eq 0 ]]; then echo "=== wsguard: all suites passed"; else echo "=== wsguard: FAILED"; fi
exit $status
