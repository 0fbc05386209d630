#!/usr/bin/env bash
# Builds kbus's Debian packages from this tree: kbusd, libkbus0,
# libkbus-dev, kbus-tools and python3-kbus (debian/). Installs the build
# dependencies (apt-get; root or sudo), copies the tree (what git tracks or
# would track, as it is now) to build-deb/src, runs `dpkg-buildpackage -b
# -us -uc` there (no tests: scripts/test.sh runs them; -j2; ccache when
# present), so the packages land in build-deb/ (gitignored), and checks
# them with lintian: any error fails; warnings are listed.
#
# KBUS_DEB_DIR=DIR puts everything in DIR instead of build-deb.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
out=${KBUS_DEB_DIR:-$top/build-deb}

packages=(build-essential debhelper dh-python lintian cmake g++ pkg-config libcli11-dev
          libsystemd-dev python3 dpkg-dev systemd)  # systemd: systemd-analyze, for deb-smoke.sh
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  echo "build-debs: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# A clean copy of the tree: the packages are built from the sources only,
# never from a build directory lying in the tree.
mkdir -p "$out"
rm -rf "$out/src"
mkdir "$out/src"
if git -C "$top" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  git -C "$top" ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
    tar -C "$top" --null -T - -cf - | tar -C "$out/src" -xf -
else
  tar -C "$top" --exclude='./build*' --exclude=__pycache__ -cf - . | tar -C "$out/src" -xf -
fi
rm -f "$out"/*.deb "$out"/*.ddeb "$out"/*.changes "$out"/*.buildinfo

export CCACHE_DIR=${CCACHE_DIR:-$HOME/.ccache} CCACHE_BASEDIR=$out/src
export DEB_BUILD_OPTIONS="${DEB_BUILD_OPTIONS:-} nocheck noddebs parallel=${KBUS_DEB_JOBS:-2}"
echo "build-debs: dpkg-buildpackage -b -us -uc in $out/src"
(cd "$out/src" && dpkg-buildpackage -b -us -uc -j"${KBUS_DEB_JOBS:-2}" >"$out/build.log" 2>&1) || {
  tail -n 60 "$out/build.log"
  echo "build-debs: dpkg-buildpackage failed (whole log: $out/build.log)"
  exit 1
}
ls -1 "$out"/*.deb

changes=$(ls "$out"/kbus_*.changes)
echo "build-debs: lintian $changes"
set +e
lintian --fail-on error --tag-display-limit 0 "$changes" | tee "$out/lintian.txt"
rc=${PIPESTATUS[0]}
set -e
if [ "$rc" -ne 0 ]; then
  echo "build-debs: lintian found errors (above)"
  exit 1
fi
echo "build-debs: $(grep -c '^W:' "$out/lintian.txt" || true) lintian warnings, no errors; packages in $out"
