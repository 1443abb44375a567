#!/usr/bin/env bash
# The layers' include direction (design §3): core <- adapters <- service <- front-ends (cli,
# daemon, exim). Each layer includes only its own headers and those of the layers below it; a
# front-end includes no adapter (it gets them through the service) and no other front-end.
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

status=0
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
    echo "check-layers: src/$rel includes $header: $layer may include only $(allowed "$layer" | sed 's/ /, /g')"
    status=1
  fi
done < <(grep -rn --include='*.hpp' --include='*.cpp' -E '^[[:space:]]*#[[:space:]]*include "' "$src" |
         sed -E 's/^([^:]+):[0-9]+:/\1:/')

[ "$status" -eq 0 ] && echo "check-layers: every include points inward"
exit "$status"
