#!/usr/bin/env bash
# wsguard — leak-safe primitives for long-lived WebSocket servers.
# SPDX-License-Identifier: MIT
#
# One command for the load comparison on a fresh Debian/Ubuntu machine:
# installs the build dependencies, builds the reference server, the naive room
# server, the bare echo server and the load client (Release, in build-load/
# under the repository), then runs benchmarks/load/compare.py, which prints
# the table of medians and each target's verdict. Extra arguments go to
# compare.py (e.g. --quick for a smoke run under a minute, --scenarios fanout,
# --out table.md). The verdicts are printed, not turned into an exit status.
# Needs 2 cores: the server and the client are pinned to different ones.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${WSGUARD_LOAD_BUILD_DIR:-$repo/build-load}"

"$repo/scripts/install_deps.sh"
cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=Release \
  -DWSGUARD_BUILD_TESTS=OFF -DWSGUARD_BUILD_EXAMPLES=ON -DWSGUARD_BUILD_BENCHMARKS=ON >/dev/null
cmake --build "$build" -j"$(nproc)" --target chat_server naive_room_server bare_echo_server load_client
python3 "$repo/benchmarks/load/compare.py" --build-dir "$build" "$@"
