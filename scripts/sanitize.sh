#!/usr/bin/env bash
# Runs the test suite again under sanitizers (docs/reliability.md §3):
#
#   scripts/sanitize.sh asan   AddressSanitizer + UndefinedBehaviorSanitizer:
#                              every C++ test (ctest) and the Python tests
#                              against the sanitized kbusd, in build-asan
#   scripts/sanitize.sh tsan   ThreadSanitizer where threads exist: the
#                              integration tests that drive Ksocks from
#                              several threads (one Ksock shared by threads:
#                              threads_test.cpp), and the C program that does
#                              so through the C API (capi_threads.c, run by
#                              CApiTest.ThreadsShareOneKsock). kbusd has no
#                              threads; the client libraries start none.
#
# Warnings are not errors here: the normal build (scripts/test.sh) enforces
# them, and GCC 12 warns falsely (-Wmaybe-uninitialized in <regex>) when
# sanitizers are on.
#
# A sanitizer report fails the test that caused it: kbusd's report makes it
# exit non-zero, which every fixture checks. Build directories:
# $ASAN_BUILD_DIR (build-asan), $TSAN_BUILD_DIR (build-tsan).
set -euo pipefail
cd "$(dirname "$0")/.."
kind=${1:-asan}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}
status=0
case "$kind" in
  asan)
    build=${ASAN_BUILD_DIR:-build-asan}
    # -O1 -g1: what the sanitizers want (line numbers in reports), and much
    # quicker to build than -O2 -g.
    cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Sanitize -DCMAKE_C_FLAGS="-O1 -g1" \
      -DCMAKE_CXX_FLAGS="-O1 -g1" -DKBUS_SANITIZE=ON -DKBUS_WERROR=OFF -DKBUS_BUILD_BENCH=OFF >/dev/null
    cmake --build "$build" -j2
    echo "== ASan+UBSan: C++ tests (ctest)"
    (cd "$build" && ctest --output-on-failure -j2 --timeout 600) || status=1
    if [ -d python/tests ]; then
      echo "== ASan+UBSan: Python tests against the sanitized kbusd"
      KBUSD="$PWD/$build/kbusd" PYTHONPATH="$PWD/python" /usr/bin/python3 -m pytest -q python/tests || status=1
    fi
    ;;
  tsan)
    build=${TSAN_BUILD_DIR:-build-tsan}
    flags="-fsanitize=thread -fno-omit-frame-pointer -O1 -g1"
    cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Sanitize -DKBUS_WERROR=OFF -DKBUS_BUILD_BENCH=OFF \
      -DCMAKE_C_FLAGS="$flags" -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS=-fsanitize=thread \
      -DCMAKE_SHARED_LINKER_FLAGS=-fsanitize=thread >/dev/null
    cmake --build "$build" -j2 --target integration_tests kbusd kbus_cli capi_tests
    # The tests whose processes run threads (grep std::thread in tests/).
    files=$(grep -l "std::thread" tests/integration/*.cpp || true)
    suites=$(sed -n 's/^TEST_F(\([A-Za-z0-9_]*\),.*/\1/p; s/^TEST(\([A-Za-z0-9_]*\),.*/\1/p' $files | sort -u | paste -sd: -)
    echo "== TSan: ${suites//:/, }"
    filter=$(echo "$suites" | sed 's/\([^:]*\)/\1.*/g')
    "$build/integration_tests" --gtest_filter="$filter" --gtest_brief=1 || status=1
    # The C programs that run threads (capi_threads.c, capi_functions.c),
    # each run by one CApiTest: a TSan report makes the program fail.
    echo "== TSan: C API programs with threads: CApiTest.ThreadsShareOneKsock, CApiTest.EveryFunctionOfTheApi"
    "$build/tests/capi/capi_tests" --gtest_filter='CApiTest.ThreadsShareOneKsock:CApiTest.EveryFunctionOfTheApi' \
      --gtest_brief=1 || status=1
    ;;
  *)
    echo "usage: scripts/sanitize.sh asan|tsan" >&2
    exit 2
    ;;
esac
exit $status
