#!/usr/bin/env bash
# Sets everything up, builds kbusd and the kbus tool (only those), and runs
# kbusd in the foreground serving bus 0 until Ctrl-C (or the terminal
# closes). Extra arguments go to kbusd, e.g. --devices 3 or --dir /tmp/bus.
# Once kbusd serves (it says so on --ready-fd) this prints how to try it.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_TARGETS="kbusd kbus_cli" bash scripts/setup.sh

# The directory the clients must be pointed at, if kbusd is given one.
dir_hint=""
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case ${args[i]} in
    -d|--dir) dir_hint="KBUS_DIR=${args[i + 1]:-} " ;;
    --dir=*) dir_hint="KBUS_DIR=${args[i]#--dir=} " ;;
  esac
done

# Reads kbusd's readiness byte on fd 3: one byte once it serves, nothing
# (EOF) if it could not start; kbusd itself prints where it serves, or why
# it did not start (e.g. another kbusd already serves that directory).
after_ready() {
  if IFS= read -r -n 1 -d '' _; then
    echo "run.sh: kbusd is ready (Ctrl-C stops it); try, in another terminal:"
    echo "  ${dir_hint}build/kbus listen '\$.Hello'      and      ${dir_hint}build/kbus send '\$.Hello' 'Hi there'"
  else
    echo "run.sh: kbusd did not start (its message above says why)."
  fi
}
exec build/kbusd "$@" --ready-fd 3 3> >(after_ready >&2)
