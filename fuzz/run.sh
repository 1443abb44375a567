#!/usr/bin/env bash
# Builds the libFuzzer targets with clang-16 and runs each one for RUNS executions (default
# 10000) on a scratch copy of its seed corpus (fuzz/corpus/<target>/ is never modified).
# Exits non-zero on a build failure or on any crash, sanitizer report, leak or timeout; the
# offending inputs are kept in build-fuzz/fuzz-artifacts/<target>/. CI calls `fuzz/run.sh 20000`.
#
#   fuzz/run.sh [RUNS]        environment: MTASTS_FUZZ_BUILD_DIR (default <repo>/build-fuzz)
set -euo pipefail

runs="${1:-10000}"
if [[ ! "$runs" =~ ^[0-9]+$ ]]; then
  echo "usage: $0 [RUNS]" >&2
  exit 2
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${MTASTS_FUZZ_BUILD_DIR:-$root/build-fuzz}"
targets=(fuzz_sts_record fuzz_policy fuzz_tlsrpt_record fuzz_domain fuzz_netstring fuzz_exim_line
  fuzz_config fuzz_dns_wire fuzz_lmdb_layout fuzz_tlsrpt_datagram fuzz_tlsrpt_request
  fuzz_shared_entry)

cmake -S "$root" -B "$build" -G Ninja -DMTASTS_FUZZ=ON -DCMAKE_CXX_COMPILER=clang++-16
cmake --build "$build" --target "${targets[@]}"

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

status=0
for target in "${targets[@]}"; do
  corpus="$scratch/$target"
  artifacts="$build/fuzz-artifacts/$target"
  mkdir -p "$corpus" "$artifacts"
  cp "$root/fuzz/corpus/$target/"* "$corpus/"
  log="$scratch/$target.log"
  echo "== $target: $runs runs"
  if "$build/fuzz/$target" -runs="$runs" -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix="$artifacts/" -print_final_stats=1 "$corpus" >"$log" 2>&1; then
    grep -E '^(Done|stat::number_of_executed_units)' "$log" || tail -n 1 "$log"
  else
    tail -n 60 "$log"
    echo "== $target FAILED; inputs kept in $artifacts" >&2
    status=1
  fi
done
exit "$status"
