#!/usr/bin/env bash
# Installs what kbus needs on Debian 12 (apt-get; root or sudo) and builds it
# into ./build. Safe to run again: it installs only what is missing.
# BUILD_TARGETS="kbusd kbus_cli" builds only those targets (and what they
# need) instead of everything.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(build-essential cmake g++ pkg-config libgtest-dev libgmock-dev libbenchmark-dev
          libcli11-dev libssl-dev libsystemd-dev openssl python3 python3-pytest python3-setuptools zsh)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

BUILD_DIR=${BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=${BUILD_TYPE:-RelWithDebInfo} ${CMAKE_ARGS:-} >/dev/null
cmake --build "$BUILD_DIR" -j"$(nproc)" ${BUILD_TARGETS:+--target $BUILD_TARGETS}
