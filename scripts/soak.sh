#!/usr/bin/env bash
# scripts/soak.sh [RUNS] - the whole suite RUNS times in a row (default 10)
# while one busy process per CPU keeps every CPU busy (docs/reliability.md
# §8, issue 13: "passes 10 times in a row while another process keeps both
# CPUs busy"). One run is what scripts/test.sh runs first: every ctest test
# (the chaos test included) and the Python tests. Stops at the first failing
# run and says which; exit 0 only if every run passed.
#
# It builds first if needed (scripts/setup.sh, as the README says). The
# busy processes are `yes >/dev/null`, at the suite's own priority, and are
# stopped however the script ends.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10}
case "$runs" in
  '' | *[!0-9]*) echo "usage: scripts/soak.sh [RUNS]  (RUNS: a number, default 10)" >&2; exit 2 ;;
esac
export BUILD_DIR=${BUILD_DIR:-build}
if [ ! -x "$BUILD_DIR/kbusd" ]; then
  CMAKE_ARGS="-DKBUS_WERROR=ON ${CMAKE_ARGS:-}" bash scripts/setup.sh
fi

busy=()
stop_busy() {
  [ ${#busy[@]} -eq 0 ] || kill "${busy[@]}" 2>/dev/null || true
}
trap stop_busy EXIT
cpus=$(nproc)
for _ in $(seq "$cpus"); do
  yes >/dev/null &
  busy+=($!)
done
echo "soak: $runs runs of the suite, with $cpus busy processes (one per CPU)"

start=$SECONDS
for i in $(seq "$runs"); do
  t0=$SECONDS
  log="$BUILD_DIR/soak-run-$i.log"
  ok=1
  (cd "$BUILD_DIR" && ctest --output-on-failure -j2 --timeout 600) >"$log" 2>&1 || ok=0
  if [ $ok = 1 ] && [ -d python/tests ]; then
    KBUSD="$PWD/$BUILD_DIR/kbusd" PYTHONPATH="$PWD/python" \
      /usr/bin/python3 -m pytest -q python/tests >>"$log" 2>&1 || ok=0
  fi
  if [ $ok = 0 ]; then
    echo "soak: run $i of $runs FAILED after $((SECONDS - t0)) s; its output: $log" >&2
    grep -E "Failed|FAILED|failed|Error" "$log" | head -20 >&2 || true
    exit 1
  fi
  echo "soak: run $i of $runs passed in $((SECONDS - t0)) s (ctest: $(grep -Eo '[0-9]+ tests failed out of [0-9]+' "$log" | head -1 || true); pytest: $(grep -Eo '[0-9]+ passed' "$log" | tail -1 || true))"
  rm -f "$log"
done
echo "soak: all $runs runs passed under load in $((SECONDS - start)) s"
