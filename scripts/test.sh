#!/usr/bin/env bash
# Builds mtasts and runs the whole test suite (unit, integration with the test world, real Exim).
#   scripts/test.sh                 release build in build/
#   scripts/test.sh --sanitize      ASan+UBSan build in build-asan/
# Needs root for the network-namespace tests (Exim routing); installs missing Debian packages.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build_dir="$root/build"
sanitize=OFF
while [ $# -gt 0 ]; do
  case "$1" in
    --sanitize) sanitize=ON; build_dir="$root/build-asan" ;;
    --build-dir) build_dir="$2"; shift ;;
    *) echo "usage: scripts/test.sh [--sanitize] [--build-dir DIR]" >&2; exit 64 ;;
  esac
  shift
done

bash "$root/scripts/install-deps.sh"
cmake -S "$root" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DMTASTS_WERROR=ON -DMTASTS_SANITIZE="$sanitize" \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG" >/dev/null
cmake --build "$build_dir"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
ctest --test-dir "$build_dir" --output-on-failure --timeout 900 -j 2
