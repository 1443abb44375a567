#!/usr/bin/env bash
# The main job on the embedded default: build mtasts, start the bundled test world (DNS + HTTPS
# policy hosts on loopback, no Internet needed), resolve a few of its domains into an LMDB cache
# and show the answers Exim would get, then what the cache holds.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build_dir="$root/build"
bash "$root/scripts/install-deps.sh"
cmake -S "$root" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build_dir" --target mtasts mtasts_exim

work=$(mktemp -d /tmp/mtasts-demo.XXXXXX)
/usr/bin/python3 "$root/tests/world/world.py" --state-dir "$work/world" --lifetime 300 &
world_pid=$!
trap 'kill $world_pid 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 100); do [ -s "$work/world/world.json" ] && break; sleep 0.1; done
read -r dns https_port ca_file < <(/usr/bin/python3 -c 'import json,sys; w=json.load(open(sys.argv[1])); print(w["dns"], w["https_port"], w["ca_file"])' "$work/world/world.json")

cat > "$work/mtasts.toml" <<TOML
cache = "$work/cache.mdb"
resolver = "$dns"
ca_file = "$ca_file"
https_port = $https_port
TOML
mtasts() { "$build_dir/src/cli/mtasts" --config "$work/mtasts.toml" "$@"; }

printf '%-28s %-9s %s\n' DOMAIN GETMTA "GETMX / IGNORELIST"
for domain in enforce.example testing.example none.example nopolicy.example http-404.example \
              https-cert-expired.example münchen.example; do
  printf '%-28s %-9s %s\n' "$domain" "$(mtasts getmta "$domain")" "$(mtasts getmx "$domain")"
  list=$(mtasts ignorelist "$domain"); [ -n "$list" ] && printf '%-38s %s\n' "" "$list"
done
echo
echo "getmta enforce.example mx1.enforce.example -> '$(mtasts getmta enforce.example mx1.enforce.example)'"
echo "getmta enforce.example evil.example.org    -> '$(mtasts getmta enforce.example evil.example.org)'"
echo
echo "== mtasts query enforce.example (second lookup: from the cache, no network)"
mtasts query enforce.example
echo
echo "== the LMDB cache as Exim's own lmdb lookup sees it (mdb_dump)"
mdb_dump -n -p "$work/cache.mdb" | grep -A1 '^ enforce.example:' || true
