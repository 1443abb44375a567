#!/bin/bash
# Builds the Debian package of mtasts with Debian's own tooling (dpkg-buildpackage and the
# debian/ directory) and puts the .deb into build/deb/ (or OUT_DIR).
#
#   scripts/build-deb.sh                 # then: apt install ./build/deb/mtasts_*.deb
#
# Environment:
#   OUT_DIR          where the .deb goes (default: build/deb in the source tree)
#   WORK_DIR         where the tree is copied and built (default: /tmp/mtasts-deb-build; a fixed
#                    path lets ccache reuse an earlier build's objects)
#   MTASTS_DEB_VERSION  build this package version instead of debian/changelog's (adds a
#                    changelog entry in the copy only; used by scripts/test-deb.sh for upgrades)
#   NO_DEPS=1        do not install the build dependencies
# Run as root, or with sudo available for apt-get.
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
out_dir=${OUT_DIR:-$src/build/deb}
work_dir=${WORK_DIR:-/tmp/mtasts-deb-build}
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi

if [ "${NO_DEPS:-}" != 1 ]; then
  # The tools, and dch (devscripts) only to build another version.
  tools=(dpkg-dev debhelper)
  if [ -n "${MTASTS_DEB_VERSION:-}" ]; then tools+=(devscripts); fi
  bash "$src/scripts/install-missing.sh" "${tools[@]}"
  if ! (cd "$src" && dpkg-checkbuilddeps >/dev/null 2>&1); then
    # apt reads the Build-Depends of debian/control from the source directory.
    $SUDO apt-get update -qq
    (cd "$src" && $SUDO apt-get build-dep -y -qq --no-install-recommends ./)
  fi
fi

# Build in a copy: dpkg-buildpackage writes next to debian/ and into the parent directory.
mkdir -p "$work_dir"
rm -rf "$work_dir/src" "$work_dir"/mtasts_*
mkdir -p "$work_dir/src"
tar -C "$src" --exclude=./.git --exclude='./build*' --exclude='./obj-*' -cf - . |
  tar -C "$work_dir/src" -xf -
cd "$work_dir/src"
if [ -n "${MTASTS_DEB_VERSION:-}" ]; then
  DEBFULLNAME="mtasts build-deb.sh" DEBEMAIL="build-deb@localhost" \
    dch --newversion "$MTASTS_DEB_VERSION" --distribution bookworm --force-distribution \
    "Rebuild as $MTASTS_DEB_VERSION."
fi

# ccache, when installed, makes a rebuild of the same tree at the same path fast.
if [ -d /usr/lib/ccache ]; then export PATH="/usr/lib/ccache:$PATH"; fi
nice -n 19 dpkg-buildpackage -us -uc -b

mkdir -p "$out_dir"
cp "$work_dir"/mtasts_*.deb "$out_dir/"
ls -1 "$out_dir"/mtasts_*.deb
