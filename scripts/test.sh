#!/usr/bin/env bash
# Sets everything up, builds with warnings as errors, and runs every test:
# the C++ unit and integration tests (ctest), the chaos test (its figures
# printed), the Python tests (pytest); then the whole suite again under
# AddressSanitizer + UndefinedBehaviorSanitizer, the threaded tests under
# ThreadSanitizer (scripts/sanitize.sh), and a short fuzzing run
# (scripts/fuzz.sh). It also builds the Debian packages and tries them
# unpacked (scripts/build-debs.sh, scripts/deb-smoke.sh). Exits non-zero on
# any failure.
#
# KBUS_SANITIZE=0 skips the sanitizer runs, KBUS_FUZZ_SECONDS=0 the fuzzing
# (default 30 s per target), KBUS_DEBS=0 the Debian packages.
set -euo pipefail
cd "$(dirname "$0")/.."
export BUILD_DIR=${BUILD_DIR:-build}
CMAKE_ARGS="-DKBUS_WERROR=ON ${CMAKE_ARGS:-}" bash scripts/setup.sh

status=0
echo "== C++ tests (ctest)"
(cd "$BUILD_DIR" && ctest --output-on-failure -j2 --timeout 300 -LE chaos) || status=1
echo "== Chaos test (docs/reliability.md §1)"
(cd "$BUILD_DIR" && ctest --output-on-failure -V -L chaos --timeout 300 | grep -E "chaos:|tests passed|tests failed") || status=1

if [ -d python/tests ]; then
  echo "== Python tests (pytest)"
  KBUSD="$PWD/$BUILD_DIR/kbusd" PYTHONPATH="$PWD/python" \
    /usr/bin/python3 -m pytest -q python/tests || status=1
fi

if [ "${KBUS_DEBS:-1}" != 0 ]; then
  echo "== Debian packages (scripts/build-debs.sh, lintian, scripts/deb-smoke.sh)"
  { bash scripts/build-debs.sh && bash scripts/deb-smoke.sh; } || status=1
fi

if [ "${KBUS_SANITIZE:-1}" != 0 ]; then
  echo "== AddressSanitizer + UndefinedBehaviorSanitizer"
  bash scripts/sanitize.sh asan || status=1
  echo "== ThreadSanitizer"
  bash scripts/sanitize.sh tsan || status=1
fi

if [ "${KBUS_FUZZ_SECONDS:-30}" != 0 ]; then
  echo "== Fuzzing (${KBUS_FUZZ_SECONDS:-30} s per target)"
  bash scripts/fuzz.sh "${KBUS_FUZZ_SECONDS:-30}" || status=1
fi

if [ $status -ne 0 ]; then echo "test.sh: FAILED"; else echo "test.sh: all tests passed"; fi
exit $status
