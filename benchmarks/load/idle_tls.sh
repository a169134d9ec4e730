#!/usr/bin/env bash
# wsguard — leak-safe primitives for long-lived WebSocket servers.
# SPDX-License-Identifier: MIT
#
# Idle memory per connection of chat_server over ws and over wss, measured as
# compare.py's idle scenario does (server RSS before, and 1 s after N
# connections are open; rise / N), with the same server flags. load_client
# speaks no TLS, so both sides here use node's `ws` package as the client
# (installed into a temporary directory; the same client for ws and wss, so
# the two figures compare). The certificate is made for the run and deleted.
#
# usage: benchmarks/load/idle_tls.sh <build-dir> [connections=5000] [runs=2]
set -euo pipefail

build="${1:?usage: idle_tls.sh <build-dir> [connections] [runs]}"
n="${2:-5000}"
runs="${3:-2}"
server="$build/examples/chat_server/chat_server"
[ -x "$server" ] || { echo "no chat_server in $build (build the chat_server target)" >&2; exit 1; }
build="$(cd "$build" && pwd)"
server="$build/examples/chat_server/chat_server"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
npm install --silent --no-audit --no-fund ws >/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
  -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" -keyout key.pem -out cert.pem 2>/dev/null

cat >client.js <<'EOF'
// node client.js URL N HOLD_S: opens N connections (200 handshakes in flight),
// prints "open N errors E" once all are open, holds them, closes them.
const WebSocket = require('ws');
const [url, n, hold] = [process.argv[2], +process.argv[3], +process.argv[4]];
let opened = 0, started = 0, errors = 0;
const conns = [];
function next() {
  if (started >= n) return;
  started++;
  const ws = new WebSocket(url, {rejectUnauthorized: false, perMessageDeflate: false});
  conns.push(ws);
  ws.on('open', () => {
    if (++opened === n) {
      console.log('open ' + n + ' errors ' + errors);
      setTimeout(() => { conns.forEach(c => c.close()); setTimeout(() => process.exit(0), 2000); },
                 hold * 1000);
    } else {
      next();
    }
  });
  ws.on('error', () => { errors++; });
}
for (let i = 0; i < 200; i++) next();
EOF

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

one_run() {
  local scheme="$1" args=(--port 0 --bind 127.0.0.1 --max-connections 19000 --idle-timeout-ms 0
                          --ping-interval-ms 0 --max-buffered-bytes 16777216)
  [ "$scheme" = wss ] && args+=(--tls-cert cert.pem --tls-key key.pem)
  "$server" "${args[@]}" >server.log 2>&1 &
  local pid=$! port=""
  for _ in $(seq 50); do
    port="$(sed -n 's/.*listening on .* port \([0-9]*\)$/\1/p' server.log)"
    [ -n "$port" ] && break
    sleep 0.1
  done
  local before open
  before="$(rss_kib $pid)"
  node client.js "$scheme://127.0.0.1:$port/" "$n" 4 >client.log 2>&1 &
  local client=$!
  for _ in $(seq 1200); do grep -q '^open' client.log && break; sleep 0.1; done
  sleep 1
  open="$(rss_kib $pid)"
  wait $client
  kill -INT $pid
  wait $pid || true
  python3 -c "import sys; b,o,n=map(int,sys.argv[1:4]); print(f'{sys.argv[4]:>3} n={n} rss_before_kib={b} rss_open_kib={o} kib_per_conn={(o-b)/n:.2f} client: {sys.argv[5]}')" \
    "$before" "$open" "$n" "$scheme" "$(head -1 client.log)"
}

echo "$(date -u '+%F %H:%M UTC'); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) CPUs; load $(cut -d' ' -f1 /proc/loadavg)"
for _ in $(seq "$runs"); do
  one_run ws
  one_run wss
done
