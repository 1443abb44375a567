#!/usr/bin/env bash
# The layers' include direction (design §3): core <- adapters <- service <- front-ends (cli,
# daemon, exim). Each layer includes only its own headers and those of the layers below it; a
# front-end includes no adapter (it gets them through the service) and no other front-end.
# The front-end includes of adapters still to be moved behind the service are listed in
# PENDING: the list may only shrink (a new one fails, and so does a listed one that is gone).
# Exits 1 with one line per violation.
set -euo pipefail
src="$(cd "$(dirname "$0")/.." && pwd)/src"

allowed() {  # layer -> the include prefixes it may use
  case "$1" in
    core) echo "core" ;;
    adapters) echo "core adapters" ;;
    service) echo "core adapters service" ;;
    cli | daemon | exim) echo "core service $1" ;;
    *) echo "" ;;
  esac
}

# file:included-header pairs still to go (issue 15: the daemon's backend wires adapters).
PENDING=(
  "daemon/backend.hpp:adapters/dns/unbound_resolver.hpp"
  "daemon/backend.hpp:adapters/https/beast_policy_fetcher.hpp"
  "daemon/backend.hpp:adapters/store/write_behind_store.hpp"
  "daemon/counting_fetcher.hpp:adapters/https/policy_fetcher.hpp"
)

status=0
seen=()
while IFS= read -r line; do
  file=${line%%:*}
  rest=${line#*:}
  header=$(sed -E 's/.*#include "([^"]+)".*/\1/' <<<"$rest")
  rel=${file#"$src"/}
  layer=${rel%%/*}
  prefix=${header%%/*}
  [ "$prefix" = "$header" ] && continue  # not a project header
  ok=""
  for p in $(allowed "$layer"); do [ "$p" = "$prefix" ] && ok=1; done
  if [ -z "$ok" ]; then
    pair="$rel:$header"
    pending=""
    for p in "${PENDING[@]}"; do [ "$p" = "$pair" ] && pending=1; done
    if [ -n "$pending" ]; then
      seen+=("$pair")
    else
      echo "check-layers: src/$rel includes $header: $layer may include only $(allowed "$layer" | sed 's/ /, /g')"
      status=1
    fi
  fi
done < <(grep -rn --include='*.hpp' --include='*.cpp' -E '^[[:space:]]*#[[:space:]]*include "' "$src" |
         sed -E 's/^([^:]+):[0-9]+:/\1:/')

for p in "${PENDING[@]}"; do
  found=""
  for s in "${seen[@]}"; do [ "$s" = "$p" ] && found=1; done
  if [ -z "$found" ]; then
    echo "check-layers: $p is gone: remove it from PENDING in scripts/check-layers.sh"
    status=1
  fi
done
[ "$status" -eq 0 ] && echo "check-layers: every include points inward"
exit "$status"
