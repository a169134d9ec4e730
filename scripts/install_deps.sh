#!/usr/bin/env bash
# Installs what wsguard's build, tests and reference server need on
# Debian/Ubuntu. Skips apt entirely when everything is already there.
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  libwebsocketpp-dev libasio-dev nlohmann-json3-dev libcli11-dev
  catch2 libbenchmark-dev libboost-dev libssl-dev libhiredis-dev
)
if [[ "${1:-}" == "--tests" ]]; then
  # promtool checks /metrics; clang + its runtime build the fuzzers; node and
  # chromium run the dashboard's browser test; redis-server + hiredis the
  # scale-out tests; valgrind the memcheck run; clang-format the format check;
  # systemd's systemd-analyze verifies the reference server's unit.
  packages+=(prometheus clang clang-format libclang-rt-14-dev nodejs npm chromium redis-server
             valgrind systemd)
fi

# A tool already on PATH counts as installed whatever package brought it (e.g.
# a nodesource nodejs that bundles npm and conflicts with Debian's npm).
provides_command() {
  case $1 in
    nodejs) command -v node >/dev/null ;;
    npm) command -v npm >/dev/null ;;
    chromium) command -v chromium >/dev/null ;;
    *) return 1 ;;
  esac
}

missing=()
for p in "${packages[@]}"; do
  provides_command "$p" && continue
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  exit 0
fi

sudo=""
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "install_deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
echo "install_deps: installing ${missing[*]}"
$sudo apt-get update -q
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
