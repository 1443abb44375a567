#!/usr/bin/env bash
# Installs every Debian 12 package mtasts needs to build, test, fuzz and benchmark.
# Idempotent; run as root (or through sudo).
#   scripts/install-deps.sh           install what is missing
#   scripts/install-deps.sh --list    print the package names, one a line, and install nothing
#                                     (tests/integration/test_install_deps.py checks them
#                                     against what the tests use)
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

build_packages=(
  build-essential cmake ninja-build pkg-config git clang-format
  libboost1.81-dev libssl-dev libunbound-dev liblmdb-dev libidn2-dev
  libtomlplusplus-dev libspdlog-dev libfmt-dev libcli11-dev nlohmann-json3-dev
  libgtest-dev libgmock-dev libbenchmark-dev libsystemd-dev libcdb-dev zlib1g-dev libhiredis-dev
  clang-16 libclang-rt-16-dev libfuzzer-16-dev
)
# Every program, library and Python module the tests use, by the package that ships it (some
# come with the system or with build-essential anyway; they are listed so that the check in
# tests/integration/test_install_deps.py can find them here).
test_packages=(
  python3 python3-minimal python3-pytest python3-dnslib python3-cryptography python3-jsonschema
  faketime libfaketime   # libfaketime: the LD_PRELOAD library that moves clocks
  iproute2 lmdb-utils systemd libunbound8 gcc g++ binutils
  coreutils util-linux mount bash dash dpkg libc-bin
  tinycdb        # cdb -q: test_e2e_exim.py and test_e2e_dane.py read mtastsd's cdb export
  tmux           # test_cli_warm.py reads the progress line from a terminal (capture-pane)
  unbound-host   # a real validating resolver for the world's DNSSEC self-tests
  unbound        # the validating resolver Exim and Postfix use in test_e2e_dane.py (run per test)
  exim4-daemon-heavy liblmdb-file-perl
  redis-server redis-sentinel   # the fleet tests: a real Redis and Sentinel (test_fleet_*.py)
  python3-redis  # the fleet tests write hostile values under mtasts' keys and count them
  # the libraries of Postfix 3.7, which the end-to-end tests run from the unpacked package
  # (scripts/fetch-postfix.sh): Postfix itself conflicts with exim4 and is never installed
  libdb5.3 libicu72 libnsl2 libsasl2-2 libssl3
)

if [ "${1:-}" = "--list" ]; then
  printf '%s\n' "${build_packages[@]}" "${test_packages[@]}"
  exit 0
fi

missing=()
for p in "${build_packages[@]}" "${test_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  $SUDO apt-get update -qq
  # exim4's and unbound's maintainer scripts try to start their daemons; the tests run their
  # own instances, so a policy-rc.d keeps the services from starting (and a container without
  # an init system from failing the install), and is removed again afterwards.
  policy_rc=/usr/sbin/policy-rc.d
  own_policy=""
  if [ ! -e "$policy_rc" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy_rc" >/dev/null
    $SUDO chmod 755 "$policy_rc"
    own_policy=1
  fi
  status=0
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" || status=$?
  if [ -n "$own_policy" ]; then $SUDO rm -f "$policy_rc"; fi
  if [ "$status" -ne 0 ]; then exit "$status"; fi
fi

# Postfix for the end-to-end tests, unpacked beside the system (cached; the tests fetch it too
# when it is missing and fail when that is impossible).
$SUDO bash "$(dirname "$0")/fetch-postfix.sh" >/dev/null || echo "install-deps.sh: Postfix was not fetched; test_e2e_postfix.py will try again and fail if it cannot" >&2
