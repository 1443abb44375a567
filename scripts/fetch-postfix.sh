#!/usr/bin/env bash
# Unpacks Debian's postfix package into a directory of its own, for the end-to-end tests
# (tests/integration/test_e2e_postfix.py). Exim and Postfix conflict as Debian packages, so
# Postfix is never installed: the tests run its programs from this tree with their own
# configuration directory.
#   scripts/fetch-postfix.sh [DIR]
# DIR defaults to $MTASTS_POSTFIX_DIR, else /var/cache/mtasts-test/postfix.
# Prints DIR. Idempotent: an unpacked tree of the candidate version is kept (DIR/.version).
# Needs root (apt-get download, dpkg -x) and Debian's package index.
set -euo pipefail
dest=${1:-${MTASTS_POSTFIX_DIR:-/var/cache/mtasts-test/postfix}}

candidate() { apt-cache policy postfix 2>/dev/null | awk '/Candidate:/ {print $2}'; }
version=$(candidate)
if [ -z "$version" ] || [ "$version" = "(none)" ]; then
  apt-get update -qq >&2
  version=$(candidate)
fi
if [ -z "$version" ] || [ "$version" = "(none)" ]; then
  echo "fetch-postfix.sh: no postfix package in the Debian package index" >&2
  exit 1
fi
if [ -x "$dest/usr/lib/postfix/sbin/master" ] &&
   [ "$(cat "$dest/.version" 2>/dev/null)" = "$version" ]; then
  echo "$dest"
  exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && apt-get download -q -o APT::Sandbox::User=root "postfix=$version" >&2)
mkdir -p "$(dirname "$dest")"
rm -rf "$dest.new"
dpkg -x "$tmp"/postfix_*.deb "$dest.new"
echo "$version" >"$dest.new/.version"
# The shared libraries Postfix links besides its own (libpostfix-*.so): report what is missing.
missing=$(for f in "$dest.new"/usr/lib/postfix/sbin/* "$dest.new"/usr/sbin/*; do
  LD_LIBRARY_PATH="$dest.new/usr/lib/postfix" ldd "$f" 2>/dev/null | awk '/not found/ {print $1}'
done | sort -u)
if [ -n "$missing" ]; then
  echo "fetch-postfix.sh: libraries Postfix needs are not installed: $missing" >&2
  rm -rf "$dest.new"
  exit 1
fi
rm -rf "$dest"
mv "$dest.new" "$dest"
echo "$dest"
