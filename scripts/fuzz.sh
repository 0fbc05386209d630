#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/, docs/reliability.md §2) with clang,
# AddressSanitizer and UndefinedBehaviorSanitizer into $FUZZ_BUILD_DIR
# (default build-fuzz), then runs each target for SECONDS (default 30) on
# its seed corpus (fuzz/corpus/<target>, read only) plus a working corpus
# in the build directory that grows from run to run.
#
#   scripts/fuzz.sh            30 s per target (what CI runs)
#   scripts/fuzz.sh 3600       the long run: an hour per target
#   FUZZ_JOBS=2 scripts/fuzz.sh 3600   two fuzzing processes per target
#
# Prints, per target, the executions, the corpus size and the coverage;
# exits non-zero if a target found a crash or a failed check (the input is
# kept as $FUZZ_BUILD_DIR/artifacts/<target>-crash-...).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
build=${FUZZ_BUILD_DIR:-build-fuzz}
jobs=${FUZZ_JOBS:-1}
targets=(fuzz_frames fuzz_message fuzz_names fuzz_bus fuzz_shm_ring)

# clang and libFuzzer (libclang_rt.fuzzer) from Debian.
packages=(clang libclang-rt-dev)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  echo "fuzz: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# -DKBUS_FUZZ=ON alone instruments every layer and adds ASan+UBSan
# (CMakeLists.txt): no flags needed here, so what a developer configures by
# hand fuzzes just as well.
CC=clang CXX=clang++ cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKBUS_FUZZ=ON \
  -DKBUS_BUILD_TESTS=OFF -DKBUS_BUILD_BENCH=OFF >/dev/null
cmake --build "$build" -j2 --target "${targets[@]}" >/dev/null

mkdir -p "$build/artifacts"
status=0
for t in "${targets[@]}"; do
  work="$build/corpus/$t"
  mkdir -p "$work"
  log="$build/$t.log"
  parallel=""  # -jobs=N makes libFuzzer run N workers, logging to ./fuzz-<i>.log
  [ "$jobs" -gt 1 ] && parallel="-jobs=$jobs -workers=$jobs"
  set +e
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
    "$build/fuzz/$t" -max_total_time="$seconds" -print_final_stats=1 $parallel \
    -max_len=4096 -timeout=10 -rss_limit_mb=2048 -artifact_prefix="$build/artifacts/$t-" \
    "$work" "fuzz/corpus/$t" >"$log" 2>&1
  rc=$?
  set -e
  cat fuzz-[0-9]*.log >>"$log" 2>/dev/null || true
  rm -f fuzz-[0-9]*.log
  execs=$(grep -h "stat::number_of_executed_units" "$log" | awk '{s += $2} END {print s + 0}')
  cov=$(grep -ho "cov: [0-9]*" "$log" | tail -1 | awk '{print $2}')
  corpus=$(ls "$work" | wc -l)
  if [ $rc -eq 0 ] && { [ "${cov:-0}" -eq 0 ] || grep -q "no interesting inputs were found" "$log"; }; then
    # Coverage 0: the code under test was not instrumented (a build that
    # does not fuzz at all). That is a failure, not a clean run.
    status=1
    echo "fuzz: $t FAILED: no coverage (is the build instrumented? see $log)"
  elif [ $rc -ne 0 ]; then
    status=1
    echo "fuzz: $t FAILED (exit $rc) after $execs executions; see $log:"
    grep -E "ERROR|fuzz check failed|SUMMARY|Test unit written" "$log" | head -20
  else
    echo "fuzz: $t: $execs executions in ${seconds} s, coverage ${cov:-?} edges, working corpus $corpus inputs, no failure"
  fi
done
[ $status -eq 0 ] && echo "fuzz: all targets ran clean" || echo "fuzz: FAILED"
exit $status
