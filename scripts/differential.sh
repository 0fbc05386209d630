#!/usr/bin/env bash
# Differential test of kbusd (docs/architecture.md): builds the kbusd of a
# reference commit (default: KBUS_DIFF_BASE, the commit before the
# daemon/protocol seam was redesigned) from git into WORK (once; later runs
# reuse it) and runs scripts/differential.py against the kbusd under test.
#
#   scripts/differential.sh NEW_KBUSD WORK [differential.py options]
set -euo pipefail
cd "$(dirname "$0")/.."
new=$1
work=$2
shift 2
base=${KBUS_DIFF_BASE:-7c7bc19}
old="$work/build/kbusd"
if [ ! -x "$old" ] || [ "$(cat "$work/base" 2>/dev/null)" != "$base" ]; then
  echo "differential: building the reference kbusd of $base in $work" >&2
  rm -rf "$work"
  mkdir -p "$work/src"
  git archive "$base" | tar -x -C "$work/src"
  launcher=()
  if command -v ccache >/dev/null; then
    launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
  fi
  cmake -S "$work/src" -B "$work/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DKBUS_BUILD_TESTS=OFF -DKBUS_BUILD_BENCH=OFF "${launcher[@]}" >/dev/null
  cmake --build "$work/build" -j2 --target kbusd >/dev/null
  echo "$base" > "$work/base"
fi
exec /usr/bin/python3 scripts/differential.py --old "$old" --new "$new" "$@"
