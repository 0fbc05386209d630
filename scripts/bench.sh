#!/usr/bin/env bash
# Runs the benchmarks: kbus beside the raw AF_UNIX floor, D-Bus (dbus-daemon
# and dbus-broker), ZeroMQ, MQTT (mosquitto) and POSIX message queues, in
# one run (kbus's Python client also beside pyzmq and python3-dbus), each
# test with default scheduling and with every process pinned to CPU 0.
# Prints one table (also written to bench/results/latest.txt, all figures
# to bench/results/latest.json) and draws the plots.
#
#   scripts/bench.sh            full run (about 15 minutes on 2 cores, more
#                               while other work keeps the machine busy);
#                               plots go to docs/benchmarks/*.png; then the
#                               noisy-neighbours rows (kbus_bench_noisy)
#   scripts/bench.sh --quick    a minute or two; plots go to bench/results/
#   scripts/bench.sh [--quick] --only kbus,zmq --modes default
#                               any other option goes to bench/run.py (and,
#                               as with --quick, the plots to bench/results/)
#
# Installs with apt-get only what is missing (root or sudo), builds Release
# into build-bench, starts every peer's daemon privately (temporary
# directory, Unix sockets) and stops each by its PID. See docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."

partial=0   # a quick or partial run never replaces the plots of docs/
args=()
for a in "$@"; do
  case "$a" in
    -h|--help) sed -n '2,/^[^#]/{/^#/p}' "$0"; exit 0 ;;
    *) partial=1; args+=("$a") ;;
  esac
done

packages=(build-essential cmake g++ pkg-config libcli11-dev libbenchmark-dev python3
          python3-matplotlib util-linux dbus-daemon dbus-bin dbus-broker libdbus-1-dev
          libzmq3-dev mosquitto libmosquitto-dev python3-zmq python3-dbus python3-gi)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  echo "bench: installing ${missing[*]}" >&2
  $SUDO apt-get update -qq
  # policy-rc.d-less containers: never start the system's own daemons.
  DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 $SUDO apt-get install -y -qq \
    --no-install-recommends "${missing[@]}" >&2
fi

BUILD_DIR=${BUILD_DIR:-build-bench}
echo "bench: building Release into $BUILD_DIR" >&2
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DKBUS_BUILD_TESTS=OFF \
  -DKBUS_BUILD_BENCH=ON >/dev/null
cmake --build "$BUILD_DIR" -j2 >/dev/null

echo "bench: load average now $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine makes the numbers noisy)" >&2
/usr/bin/python3 bench/run.py --build "$BUILD_DIR" ${args[@]+"${args[@]}"}

# Noisy neighbours (docs/reliability.md §4): round trips beside a flooder, a
# client that never reads, half frames and 100 000 bindings, against the
# same on a quiet bus, in one run per scheduling mode.
if [ $partial -eq 0 ]; then
  for mode in "" --pin; do
    "$BUILD_DIR"/bench/kbus_bench_noisy $mode | grep -v '^RESULT' | tee -a bench/results/latest.txt
  done
fi

if [ $partial -eq 1 ]; then
  /usr/bin/python3 bench/plot.py --out bench/results >&2
else
  /usr/bin/python3 bench/plot.py --out docs/benchmarks >&2
fi
