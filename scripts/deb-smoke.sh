#!/usr/bin/env bash
# Tries the Debian packages that scripts/build-debs.sh built, unpacked
# (dpkg -x) into a fresh directory - nothing is installed on this machine:
#  * the packages hold what they should, and nothing is missing;
#  * the installed kbusd serves a temporary directory; it is waited for on
#    --ready-fd, never on its sockets appearing;
#  * the installed kbus sends (to a Python listener from python3-kbus),
#    listens, requests and replies;
#  * a C program and a C++ program (no -std flag) compiled against
#    libkbus-dev through pkg-config (kbus, kbus++) run against it;
#  * `import kbus` works from the python3-kbus tree;
#  * the installed unit passes `systemd-analyze verify`, and
#    `systemd-analyze security --offline=true` rates its exposure at most 2.0.
#
# deb-smoke.sh [DIR]   (default build-deb, where build-debs.sh puts them)
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
debs=${1:-${KBUS_DEB_DIR:-$top/build-deb}}
ls "$debs"/*.deb >/dev/null 2>&1 || { echo "deb-smoke: no packages in $debs (run scripts/build-debs.sh)"; exit 1; }

tmp=$(mktemp -d /tmp/kbus-smoke.XXXXXX)
kbusd_pid=""
cleanup() {
  if [ -n "$kbusd_pid" ] && kill -0 "$kbusd_pid" 2>/dev/null; then kill -TERM "$kbusd_pid"; wait "$kbusd_pid" || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "deb-smoke: FAILED: $*"; exit 1; }
ok() { echo "deb-smoke: ok: $*"; }

root=$tmp/root
mkdir "$root"
for p in kbusd libkbus0 libkbus-dev kbus-tools python3-kbus; do
  deb=$(ls "$debs"/${p}_*.deb 2>/dev/null | head -n1)
  [ -n "$deb" ] || fail "no package $p in $debs"
  dpkg -x "$deb" "$root"
done
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
lib=$root/usr/lib/$multiarch
bin=$root/usr/bin
for f in usr/bin/kbusd usr/bin/kbus usr/bin/kbus-limpet lib/systemd/system/kbusd.service \
         usr/lib/sysusers.d/kbus.conf etc/default/kbusd usr/share/man/man8/kbusd.8.gz \
         usr/share/man/man1/kbus.1.gz usr/share/man/man1/kbus-limpet.1.gz \
         "usr/lib/$multiarch/libkbus.so.0" "usr/lib/$multiarch/libkbus.so" "usr/lib/$multiarch/libkbus.a" \
         "usr/lib/$multiarch/pkgconfig/kbus.pc" "usr/lib/$multiarch/pkgconfig/kbus++.pc" \
         "usr/lib/$multiarch/cmake/kbus/kbusConfig.cmake" usr/include/libkbus/kbus.h \
         usr/include/kbus/ksock.hpp usr/lib/python3/dist-packages/kbus/__init__.py \
         usr/share/bash-completion/completions/kbus usr/share/bash-completion/completions/kbusd \
         usr/share/zsh/vendor-completions/_kbus usr/include/cppkbus/cppkbus.h \
         usr/include/libkbus/limpet.h usr/include/libkbus/linux/kbus_defns.h \
         "usr/lib/$multiarch/libkbus-dev.so" usr/share/doc/kbus/KBUS-SPEC.md; do
  [ -e "$root/$f" ] || fail "$f is in no package"
done
ok "the packages hold every file"

export LD_LIBRARY_PATH=$lib
dir=$tmp/bus
# kbusd, waited for on --ready-fd: one byte once it serves, EOF if it fails.
mkfifo "$tmp/ready"
"$bin/kbusd" --devices 2 --dir "$dir" --ready-fd 3 3>"$tmp/ready" 2>"$tmp/kbusd.log" &
kbusd_pid=$!
if ! IFS= read -r -n 1 -d '' -t 60 _ <"$tmp/ready"; then
  cat "$tmp/kbusd.log"
  fail "the installed kbusd did not become ready"
fi
grep -q "kbusd: serving buses 0..1 at $dir/kbus0" "$tmp/kbusd.log" || fail "kbusd did not say where it serves"
ok "installed kbusd serves $dir (ready on --ready-fd)"
export KBUS_DIR=$dir

# Python from python3-kbus, and the installed kbus sending to it.
export PYTHONPATH=$root/usr/lib/python3/dist-packages
out=$(/usr/bin/python3 - "$bin/kbus" <<'PY'
import os, subprocess, sys
import kbus
assert kbus.__file__.startswith(os.environ['PYTHONPATH'] + '/'), kbus.__file__
k = kbus.Ksock(0, 'rw')
k.bind('$.Smoke.Send')
subprocess.run([sys.argv[1], 'send', '$.Smoke.Send', 'hello from kbus'], check=True,
               stdout=subprocess.DEVNULL)
m = k.read_next_msg()
assert m is not None and m.data == b'hello from kbus', m
print('python got', m.data.decode())
PY
) || fail "import kbus / kbus send"
[ "$out" = "python got hello from kbus" ] || fail "kbus send: $out"
ok "import kbus from python3-kbus; installed kbus sends"

# Waits until bus 0's bindings report shows $1 (bounded; the report is the
# bus's own state).
wait_binding() {
  for _ in $(seq 1 600); do
    "$bin/kbus" bindings 2>/dev/null | grep -qF -- "$1" && return 0
    sleep 0.05
  done
  return 1
}
"$bin/kbus" listen --count 1 '$.Smoke.Listen' >"$tmp/listen.out" &
listen_pid=$!
wait_binding '$.Smoke.Listen' || fail "kbus listen did not bind"
"$bin/kbus" send '$.Smoke.Listen' 'to the listener' >/dev/null
wait "$listen_pid" || fail "kbus listen failed"
grep -q "data=b'to the listener'" "$tmp/listen.out" || fail "kbus listen printed: $(cat "$tmp/listen.out")"
ok "installed kbus listens"

"$bin/kbus" reply --count 1 '$.Smoke.Ask' 'the answer' >/dev/null &
reply_pid=$!
wait_binding '$.Smoke.Ask' || fail "kbus reply did not bind"
answer=$("$bin/kbus" request --timeout 30 '$.Smoke.Ask' 'question')
wait "$reply_pid" || fail "kbus reply failed"
case $answer in *"the answer"*) ;; *) fail "kbus request got: $answer" ;; esac
ok "installed kbus requests and replies"

# Programs built against libkbus-dev with its pkg-config files.
export PKG_CONFIG_PATH=$lib/pkgconfig
pcflags() { pkg-config "$@"; }
cc "$top/tests/install/outside.c" $(pcflags --cflags --libs kbus) -o "$tmp/outside_c" ||
  fail "C program against libkbus-dev (pkg-config kbus)"
"$tmp/outside_c" | grep -q "outside C: ok" || fail "the C program did not work"
c++ "$top/tests/install/outside.cpp" $(pcflags --cflags --libs kbus++) -o "$tmp/outside_cxx" ||
  fail "C++ program against libkbus-dev (pkg-config kbus++, no -std flag)"
"$tmp/outside_cxx" | grep -q "outside C++: ok" || fail "the C++ program did not work"
ok "C and C++ programs built with pkg-config kbus / kbus++ run"

kill -TERM "$kbusd_pid"
wait "$kbusd_pid" || fail "kbusd did not stop cleanly on SIGTERM"
kbusd_pid=""
[ ! -e "$dir/kbus0" ] || fail "kbusd left its socket behind"
grep -q "SIGTERM: stopped" "$tmp/kbusd.log" || fail "kbusd did not say it stopped"
ok "kbusd stops cleanly"

# The unit as packaged, checked by systemd-analyze. `verify` wants the
# program of ExecStart= and the man page of Documentation= to exist, so it
# checks a copy whose ExecStart names the unpacked kbusd, with MANPATH on
# the unpacked man pages.
unit=$root/lib/systemd/system/kbusd.service
grep -q "^ExecStart=/usr/bin/kbusd " "$unit" || fail "the unit does not run /usr/bin/kbusd"
sed "s|^ExecStart=/usr/bin/kbusd |ExecStart=$bin/kbusd |" "$unit" >"$tmp/kbusd.service"
verify=$(MANPATH=$root/usr/share/man systemd-analyze verify "$tmp/kbusd.service" 2>&1) ||
  fail "systemd-analyze verify: $verify"
[ -z "$verify" ] || fail "systemd-analyze verify says: $verify"
ok "systemd-analyze verify"
security=$(systemd-analyze security --offline=true --threshold=20 "$unit" 2>&1) ||
  { echo "$security"; fail "exposure above 2.0"; }
level=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' <<<"$security")
[ -n "$level" ] || fail "no exposure level in: $security"
awk -v l="$level" 'BEGIN { exit !(l <= 2.0) }' || fail "exposure $level > 2.0"
ok "systemd-analyze security --offline=true: exposure $level (at most 2.0)"
echo "deb-smoke: all passed"
