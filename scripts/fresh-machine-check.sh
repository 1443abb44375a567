#!/usr/bin/env bash
# Runs CI (.ci/run, with CI=true) on a fresh Debian 12: a minimal bookworm made by debootstrap,
# entered with chroot, holding nothing but what .ci/run installs itself. It proves that the
# README's commands need no package installed by hand.
#   scripts/fresh-machine-check.sh [--keep-system] [DIR]
# DIR (default /var/tmp/mtasts-fresh) gets the system; the committed HEAD of this checkout is
# cloned into DIR/src. Needs root, debootstrap (installed if missing) and Debian's package
# archive. The system is made anew on every run; --keep-system reuses the one in DIR (then it
# is no longer fresh: for a second try of the same commit only).
# Prints .ci/run's output and its time; exits with its status.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
keep=""
if [ "${1:-}" = "--keep-system" ]; then keep=1; shift; fi
dir=${1:-/var/tmp/mtasts-fresh}
[ "$(id -u)" -eq 0 ] || { echo "fresh-machine-check.sh: run as root" >&2; exit 64; }

mounted=()
cleanup() {
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[$i]}" 2>/dev/null || true; done
}
trap cleanup EXIT

if [ -z "$keep" ] || [ ! -x "$dir/usr/bin/apt-get" ]; then
  command -v debootstrap >/dev/null || apt-get install -y -qq debootstrap >/dev/null
  rm -rf "$dir"
  mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  debootstrap --variant=minbase bookworm "$dir" "${mirror:-http://deb.debian.org/debian}" >&2
  # The security archive too, as on an installed machine.
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    cp /etc/apt/sources.list.d/debian.sources "$dir/etc/apt/sources.list.d/"
    rm -f "$dir/etc/apt/sources.list"
  fi
fi
cp /etc/resolv.conf "$dir/etc/resolv.conf"

for fs in proc sys dev dev/pts run tmp; do mkdir -p "$dir/$fs"; done
# The system's root must be a mount point of its own: `ip netns exec` and `unshare
# --propagation` change the propagation of "/", which fails (EINVAL) on a plain directory.
mount --bind "$dir" "$dir" && mounted+=("$dir")
mount --make-private "$dir"
mount -t proc proc "$dir/proc" && mounted+=("$dir/proc")
mount --rbind /sys "$dir/sys" && mount --make-rslave "$dir/sys" && mounted+=("$dir/sys")
mount --rbind /dev "$dir/dev" && mount --make-rslave "$dir/dev" && mounted+=("$dir/dev")
mount -t tmpfs -o mode=755 tmpfs "$dir/run" && mounted+=("$dir/run")
mount -t tmpfs -o mode=1777 tmpfs "$dir/tmp" && mounted+=("$dir/tmp")

rm -rf "$dir/src"
git clone -q "$root" "$dir/src"
git -C "$dir/src" log -1 --format='fresh-machine-check: testing %h %s' >&2

start=$(date +%s)
status=0
chroot "$dir" /usr/bin/env -i CI=true HOME=/root LANG=C.UTF-8 \
  PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  bash -c 'cd /src && bash .ci/run' || status=$?
echo "fresh-machine-check: .ci/run exited $status after $(( $(date +%s) - start )) s" >&2
exit "$status"
