#!/usr/bin/env bash
# Sets everything up and runs kbusd in the foreground serving bus 0
# (Ctrl-C stops it). Extra arguments go to kbusd, e.g. --devices 3.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "kbusd: serving in ${KBUS_DIR:-the default directory}; try, in another terminal:"
echo "  build/kbus listen '\$.Hello'      and      build/kbus send '\$.Hello' 'Hi there'"
exec build/kbusd "$@"
