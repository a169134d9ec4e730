#!/usr/bin/env bash
# wsguard — leak-safe primitives for long-lived WebSocket servers.
# SPDX-License-Identifier: MIT
#
# What the reference server's read buffer costs: builds chat_server with each
# read buffer size (WSGUARD_CHAT_READ_BUFFER_BYTES, Release, in build-rb<N>/
# under the repository) and, for each, runs compare.py's pingpong with pings
# padded to large messages (100 connections, depth 2), its idle scenario and
# its fanout scenario. Prints server CPU per message for each size next to the
# naive server's from the same compare.py run (websocketpp's default 16 KiB
# buffer), idle RSS per connection, and server CPU per fan-out delivery. Run
# benchmarks/run_load.sh once first (it installs and builds the naive server
# and the load client). Needs 2 cores; about 20 minutes.
# Environment: SIZES (default "256 512 1024 16384"), PADS (default "4096 65536").
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
load_build="${WSGUARD_LOAD_BUILD_DIR:-$repo/build-load}"
sizes="${SIZES:-256 512 1024 16384}"
pads="${PADS:-4096 65536}"

if [[ ! -x "$load_build/benchmarks/load/load_client" ]]; then
  echo "read_buffer.sh: no load client in $load_build; run benchmarks/run_load.sh first" >&2
  exit 2
fi

for n in $sizes; do
  cmake -S "$repo" -B "$repo/build-rb$n" -DCMAKE_BUILD_TYPE=Release -DWSGUARD_BUILD_TESTS=OFF \
    -DWSGUARD_BUILD_BENCHMARKS=OFF -DWSGUARD_CHAT_READ_BUFFER_BYTES="$n" >/dev/null
  cmake --build "$repo/build-rb$n" -j"$(nproc)" --target chat_server >/dev/null
done

# Column N of the compare.py table row that names WHO (| name | rate | cpu | ...:
# the CPU per message or delivery is column 4, idle KiB per connection column 5).
column_of() { awk -F'|' -v who="$1" -v n="$2" '$2 ~ who { gsub(/ /, "", $n); print $n; exit }'; }
# "| ours | naive | ours/naive |" from one compare.py output, CPU column.
cpu_cells() {
  local ours naive ratio
  ours="$(column_of "wsguard chat_server" 4 <<<"$1")"
  naive="$(column_of "naive room server" 4 <<<"$1")"
  ratio="$(python3 -c "print(f'{float(\"$ours\") / float(\"$naive\"):.2f}x')" 2>/dev/null || echo -)"
  echo "$ours | $naive | $ratio"
}

echo "| read buffer | pings padded by | chat_server CPU µs/msg | naive (16 KiB) µs/msg | ratio |"
echo "|---:|---:|---:|---:|---:|"
for pad in $pads; do
  for n in $sizes; do
    out="$(python3 "$repo/benchmarks/load/compare.py" --build-dir "$load_build" \
      --chat-server "$repo/build-rb$n/examples/chat_server/chat_server" --scenarios pingpong \
      --pingpong-connections 100 --depth 2 --ping-pad-bytes "$pad" --reps 3 --duration-s 4)"
    echo "| $n | $pad | $(cpu_cells "$out") |"
  done
done

# Fan-out's small room messages fit any of these buffers, yet its cost depends
# on the size: one read call takes in as many of the publisher's pipelined
# messages as fit, and every member's write then carries that many.
echo
echo "| read buffer | idle KiB per connection (5000) | fanout CPU µs/delivery (1000 members) | naive µs/delivery | ratio |"
echo "|---:|---:|---:|---:|---:|"
for n in $sizes; do
  server="$repo/build-rb$n/examples/chat_server/chat_server"
  out="$(python3 "$repo/benchmarks/load/compare.py" --build-dir "$load_build" \
    --chat-server "$server" --scenarios idle --reps 2)"
  kib="$(column_of "wsguard chat_server" 5 <<<"$out")"
  out="$(python3 "$repo/benchmarks/load/compare.py" --build-dir "$load_build" \
    --chat-server "$server" --scenarios fanout --reps 3 --duration-s 5)"
  echo "| $n | $kib | $(cpu_cells "$out") |"
done
