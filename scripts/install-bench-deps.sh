#!/usr/bin/env bash
# Installs the Debian 12 packages that bench/daemon_bench.py needs besides those of
# scripts/install-deps.sh: the peer it compares mtastsd with, Debian's postfix-mta-sts-resolver
# (mta-sts-daemon, Python; with python3-uvloop, which the package recommends), and perf for
# profiling. Not run by CI. Idempotent; run as root (or through sudo).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

packages=(postfix-mta-sts-resolver python3-uvloop iproute2 linux-perf)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  $SUDO apt-get update -qq
  # Where systemd runs, the package's own service may listen on 127.0.0.1:8461; the bench
  # starts its own instances inside a network namespace, so the two never meet.
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
