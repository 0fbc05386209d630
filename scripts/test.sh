#!/usr/bin/env bash
# Sets everything up, builds with warnings as errors, and runs every test:
# the C++ unit and integration tests (ctest) and the Python tests (pytest).
# Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
export BUILD_DIR=${BUILD_DIR:-build}
CMAKE_ARGS="-DKBUS_WERROR=ON ${CMAKE_ARGS:-}" bash scripts/setup.sh

status=0
echo "== C++ tests (ctest)"
(cd "$BUILD_DIR" && ctest --output-on-failure -j2 --timeout 300) || status=1

if [ -d python/tests ]; then
  echo "== Python tests (pytest)"
  KBUSD="$PWD/$BUILD_DIR/kbusd" PYTHONPATH="$PWD/python" \
    /usr/bin/python3 -m pytest -q python/tests || status=1
fi

if [ $status -ne 0 ]; then echo "test.sh: FAILED"; else echo "test.sh: all tests passed"; fi
exit $status
