#!/usr/bin/env bash
# Builds the reference chat server and starts it (Debian/Ubuntu: installs what
# it needs first). Arguments go to the server: ./scripts/run_server.sh --help
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install_deps.sh
cmake -S . -B build-server -DCMAKE_BUILD_TYPE=Release -DWSGUARD_BUILD_TESTS=OFF \
  -DWSGUARD_BUILD_BENCHMARKS=OFF -DWSGUARD_BUILD_EXAMPLES=ON >build-server.configure.log 2>&1 ||
  { cat build-server.configure.log; exit 1; }
cmake --build build-server --target chat_server -j"$(nproc)"
exec ./build-server/examples/chat_server/chat_server "$@"
