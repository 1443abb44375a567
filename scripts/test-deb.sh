#!/bin/bash
# End-to-end test of the Debian package on this machine (run as root, on Debian 12, on a
# machine where mtasts is not installed; it installs, upgrades, removes and purges it):
#
#   scripts/test-deb.sh [PACKAGE.deb]
#
# Builds the package with scripts/build-deb.sh unless a .deb is given; then: lintian (no errors),
# apt install, the files, user, group and permissions, `mtasts --version`, a lookup with the
# installed config, mtastsd from the installed unit (systemd as PID 1) or from the installed
# binary and config (otherwise), an upgrade to a higher version with a cache and a
# changed config in place (both survive), apt-get remove, dpkg --purge, and what is left.
# The upgrade installs the same build repacked with a higher version (dpkg-deb): what an upgrade
# exercises is the package's (maintainer scripts, conffile, cache, units), not the compiler's,
# and a second compile would cost CI ten minutes. UPGRADE_REBUILD=1 compiles it again instead.
# Environment: UPGRADE_VERSION (default: the version built plus "+test1"), UPGRADE_REBUILD,
# OUT_DIR / WORK_DIR / NO_DEPS as for scripts/build-deb.sh.
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d /tmp/mtasts-test-deb.XXXXXX)
daemon_pid=""
world_pid=""
cleanup() {
  if [ -n "$daemon_pid" ]; then kill "$daemon_pid" 2>/dev/null || true; fi
  if [ -n "$world_pid" ]; then kill "$world_pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

step() { printf '\n=== %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
ok() { printf 'ok: %s\n' "$*"; }
check() { # check DESCRIPTION COMMAND...
  local what=$1; shift
  if "$@"; then ok "$what"; else fail "$what"; fi
}

[ "$(id -u)" -eq 0 ] || fail "run as root (it installs and purges the package)"
if dpkg-query -W -f='${Status}' mtasts 2>/dev/null | grep -q "installed\|config-files"; then
  fail "mtasts is already installed here; purge it first (dpkg --purge mtasts)"
fi
export DEBIAN_FRONTEND=noninteractive
out_dir=${OUT_DIR:-$tmp/out}

# What this test runs besides the package: lintian, man, ps/pgrep, and the test world's Python
# modules (scripts/install-deps.sh).
if [ "${NO_DEPS:-}" != 1 ]; then
  bash "$src/scripts/install-deps.sh"
  bash "$src/scripts/install-missing.sh" lintian man-db procps
fi

step "build"
if [ $# -ge 1 ]; then
  deb=$(realpath "$1")
else
  OUT_DIR=$out_dir "$src/scripts/build-deb.sh"
  deb=$(ls -1 "$out_dir"/mtasts_*.deb | head -n 1)
fi
version=$(dpkg-deb -f "$deb" Version)
echo "package: $deb ($version)"

step "lintian"
lintian_out=$tmp/lintian.txt
lintian_status=0
lintian --fail-on error "$deb" >"$lintian_out" 2>&1 || lintian_status=$?
cat "$lintian_out"
[ "$lintian_status" -eq 0 ] || fail "lintian reported errors (exit $lintian_status)"
check "lintian: no errors" true

mtasts_files() { # every file with mtasts in its name, outside scratch and package-manager caches
  find / -xdev \( -path /proc -o -path /sys -o -path /tmp -o -path /var/tmp -o -path /var/cache/apt \
    -o -path /var/lib/apt -o -path /var/log \) -prune -o -name '*mtasts*' -print 2>/dev/null | sort
}
mtasts_files >"$tmp/files-before.txt"

step "install"
apt-get install -y -q "$deb"
check "dpkg status: installed" sh -c 'dpkg-query -W -f="\${Status}" mtasts | grep -qx "install ok installed"'

step "files"
for f in /usr/bin/mtasts /usr/sbin/mtastsd; do check "$f executable" test -x "$f"; done
check "/usr/lib/mtasts/mtasts_exim.so" test -f /usr/lib/mtasts/mtasts_exim.so
check "mtasts_exim.so exports its dlfunc entries" \
  sh -c 'nm -D --defined-only /usr/lib/mtasts/mtasts_exim.so | grep -q " T "'
for u in mtastsd.service mtastsd.socket; do
  unit=$(dpkg -L mtasts | grep "/systemd/system/$u\$" | head -n 1)
  check "unit $u shipped ($unit)" test -f "$unit"
done
check "units run as _mtasts" grep -qx 'User=_mtasts' "$(dpkg -L mtasts | grep '/mtastsd.service$')"
check "socket group _mtasts" grep -qx 'SocketGroup=_mtasts' "$(dpkg -L mtasts | grep '/mtastsd.socket$')"
check "mtastsd.socket enabled" test -L /etc/systemd/system/sockets.target.wants/mtastsd.socket
check "mtastsd.service enabled" test -L /etc/systemd/system/multi-user.target.wants/mtastsd.service
check "/etc/mtasts/mtasts.toml is a conffile" grep -qx /etc/mtasts/mtasts.toml /var/lib/dpkg/info/mtasts.conffiles
check "trust_anchor is dns-root-data's key" grep -q '^trust_anchor = "/usr/share/dns/root.key"' /etc/mtasts/mtasts.toml
check "/usr/share/dns/root.key present (dns-root-data)" test -s /usr/share/dns/root.key
check "Exim examples" test -f /usr/share/doc/mtasts/examples/exim/mtasts-routers.conf
check "Postfix examples" test -f /usr/share/doc/mtasts/examples/postfix/main.cf
for page in "1 mtasts" "8 mtastsd" "5 mtasts.toml" "5 mtastsd.toml"; do
  # shellcheck disable=SC2086
  check "man $page: installed and readable" sh -c "man -w $page >/dev/null && MANWIDTH=80 man $page 2>/dev/null | grep -q NAME"
done
check "man 5 mtasts.toml documents trust_anchor" sh -c 'MANWIDTH=80 man 5 mtasts.toml 2>/dev/null | grep -q trust_anchor'

step "user, group, permissions"
getent passwd _mtasts
check "user _mtasts (system, home /var/lib/mtasts, nologin)" \
  sh -c 'getent passwd _mtasts | awk -F: "\$3 < 1000 && \$6 == \"/var/lib/mtasts\" && \$7 ~ /nologin\$/" | grep -q .'
check "group _mtasts" getent group _mtasts
if getent passwd Debian-exim >/dev/null; then
  check "Debian-exim is in group _mtasts" sh -c 'id -nG Debian-exim | tr " " "\n" | grep -qx _mtasts'
fi
if getent passwd postfix >/dev/null; then
  check "postfix is in group _mtasts" sh -c 'id -nG postfix | tr " " "\n" | grep -qx _mtasts'
fi
stat -c '%U:%G %a %n' /var/lib/mtasts /etc/mtasts/mtasts.toml
check "/var/lib/mtasts _mtasts:_mtasts 770" test "$(stat -c '%U:%G %a' /var/lib/mtasts)" = "_mtasts:_mtasts 770"
check "config 0644 root" test "$(stat -c '%U %a' /etc/mtasts/mtasts.toml)" = "root 644"

step "mtasts with the installed config"
mtasts --version
check "mtasts --version names $version's upstream version" \
  sh -c "mtasts --version | grep -q '${version%%[-+]*}'"
check "mtastsd --check-config /etc/mtasts/mtasts.toml" mtastsd --check-config --config /etc/mtasts/mtasts.toml
# Against nothing: a DNS server that does not answer. DANE is on (trust_anchor), and a failed
# DNSSEC lookup must hold the mail (RFC 7672): `fail`, exit 0. Without the trust anchor it
# would be MTA-STS's `none`. The lookup lands in the shared cache, written as _mtasts.
answer=$(runuser -u _mtasts -- mtasts --resolver 127.0.0.1:9 getmta -- example.com) || fail "getmta exit $?"
echo "getmta example.com (no DNS) -> '$answer'"
check "getmta answers fail without DNS (DANE on: the lookup failed)" test "$answer" = fail
check "query shows DANE was evaluated" sh -c 'runuser -u _mtasts -- mtasts --resolver 127.0.0.1:9 query example.com | grep -q "dane: *failed"'
answer=$(runuser -u _mtasts -- mtasts getmta -- '[192.0.2.1]')
check "getmta of an address literal: none" test "$answer" = none

# Against the test world (tests/world: DNS and HTTPS policy hosts signed by a test CA, on
# loopback): the installed config, pointed at the world's resolver and CA. The world is not
# signed from the real root, so the copy leaves out the DNSSEC trust anchor (DANE is tested by
# the suite); everything else, the cache path included, is the installed file.
/usr/bin/python3 "$src/tests/world/world.py" --state-dir "$tmp/world" --lifetime 600 \
  >"$tmp/world.log" 2>&1 &
world_pid=$!
for _ in $(seq 1 100); do [ -s "$tmp/world/world.json" ] && break; sleep 0.1; done
[ -s "$tmp/world/world.json" ] || { cat "$tmp/world.log"; fail "the test world did not start"; }
read -r world_dns world_https_port world_ca < <(/usr/bin/python3 -c \
  'import json,sys; w=json.load(open(sys.argv[1])); print(w["dns"], w["https_port"], w["ca_file"])' \
  "$tmp/world/world.json")
chmod 0755 "$tmp" "$tmp/world"; chmod 0644 "$world_ca"
world_config=$tmp/mtasts-world.toml
{
  printf 'resolver = "%s"\nca_file = "%s"\nhttps_port = %s\n' "$world_dns" "$world_ca" "$world_https_port"
  grep -v '^trust_anchor' /etc/mtasts/mtasts.toml
} >"$world_config"
chmod 0644 "$world_config"
world_mtasts() { runuser -u _mtasts -- mtasts --config "$world_config" "$@"; }
answer=$(world_mtasts getmta enforce.example)
echo "getmta enforce.example (test world) -> '$answer'"
check "getmta enforce.example: enforce" test "$answer" = enforce
answer=$(world_mtasts getmx enforce.example)
echo "getmx enforce.example -> '$answer'"
check "getmx enforce.example names the policy's MX pattern" sh -c "echo '$answer' | grep -q 'enforce.example'"
answer=$(world_mtasts getmta nopolicy.example)
check "getmta nopolicy.example: none" test "$answer" = none
ls -l /var/lib/mtasts
check "cache created in /var/lib/mtasts" test -f /var/lib/mtasts/cache.mdb
check "the installed config's cache holds enforce.example" \
  sh -c 'runuser -u _mtasts -- mtasts dump | grep -q "^enforce.example"'

step "mtastsd"
exim_request() { # exim_request SOCKET LINE: one ${readsocket} exchange
  python3 - "$1" "$2" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(20)
s.connect(sys.argv[1])
s.sendall(sys.argv[2].encode() + b"\n")
s.shutdown(socket.SHUT_WR)
data = b""
while chunk := s.recv(4096):
    data += chunk
print(data.decode(errors="replace"))
PY
}
if [ "$(ps -p 1 -o comm=)" = systemd ]; then
  echo "systemd is PID 1: starting the installed mtastsd.socket"
  systemctl start mtastsd.socket
  reply=$(exim_request /run/mtasts/exim.sock 'getmta [192.0.2.1]')
  echo "reply: $reply"
  check "mtastsd (socket-activated) answers none" test "$reply" = none
  check "mtastsd.service active" systemctl is-active --quiet mtastsd.service
  check "mtastsd runs as _mtasts" sh -c '[ "$(ps -o user= -p "$(systemctl show -p MainPID --value mtastsd.service)")" = _mtasts ]'
else
  # No systemd as PID 1 (a container, a CI machine): do what the installed units say with
  # systemd-socket-activate. It binds the units' ListenStream sockets and hands them to the
  # units' ExecStart as LISTEN_FDS, run as the units' User= (setpriv execs, so the daemon keeps
  # the PID that LISTEN_PID names).
  service_unit=$(dpkg -L mtasts | grep '/mtastsd.service$')
  socket_unit=$(dpkg -L mtasts | grep '/mtastsd.socket$')
  # The unit's command line with the world's copy of the installed config (the installed one
  # has DANE on and would ask this machine's resolver).
  exec_start=$(sed -n 's/^ExecStart=//p' "$service_unit" | sed "s|/etc/mtasts/mtasts.toml|$world_config|")
  unit_user=$(sed -n 's/^User=//p' "$service_unit")
  listen=()
  while read -r path; do listen+=(-l "$path"); done < <(sed -n 's/^ListenStream=//p' "$socket_unit")
  echo "PID 1 is '$(ps -p 1 -o comm=)', not systemd: systemd-socket-activate ${listen[*]} $exec_start (as $unit_user)"
  install -d -o "$unit_user" -g "$unit_user" -m 0755 /run/mtasts
  # shellcheck disable=SC2086 # ExecStart is a command line
  systemd-socket-activate "${listen[@]}" \
    setpriv --reuid="$unit_user" --regid="$unit_user" --init-groups $exec_start \
    >"$tmp/mtastsd.log" 2>&1 &
  daemon_pid=$!
  for _ in $(seq 1 100); do
    [ -S /run/mtasts/exim.sock ] && [ -S /run/mtasts/socketmap.sock ] && break
    kill -0 "$daemon_pid" 2>/dev/null || { cat "$tmp/mtastsd.log"; fail "systemd-socket-activate exited"; }
    sleep 0.1
  done
  check "the unit's sockets are listening" test -S /run/mtasts/exim.sock -a -S /run/mtasts/socketmap.sock
  # The first connection starts mtastsd (socket activation), which answers on the passed socket.
  reply=$(exim_request /run/mtasts/exim.sock 'getmta [192.0.2.1]')
  echo "reply: $reply"
  check "mtastsd (socket-activated) answers none for an address literal" test "$reply" = none
  reply=$(exim_request /run/mtasts/exim.sock 'getmta enforce.example')
  echo "reply for enforce.example, cached by the CLI above: $reply"
  check "mtastsd answers from the cache the CLI filled (one shared cache)" test "$reply" = enforce
  reply=$(exim_request /run/mtasts/exim.sock 'getmta testing.example')
  echo "reply for testing.example, looked up by mtastsd: $reply"
  check "mtastsd looks a new domain up (DNS and HTTPS as $unit_user)" test "$reply" = testing
  cat "$tmp/mtastsd.log"
  daemon=$(pgrep -u "$unit_user" -x mtastsd || true)
  check "mtastsd runs as $unit_user" test -n "$daemon"
  kill -TERM "$daemon"
  for _ in $(seq 1 100); do kill -0 "$daemon" 2>/dev/null || break; sleep 0.1; done
  check "mtastsd stopped on SIGTERM" sh -c "! kill -0 $daemon 2>/dev/null"
  kill -TERM "$daemon_pid" 2>/dev/null || true
  wait "$daemon_pid" 2>/dev/null || true
  daemon_pid=""
  rm -rf /run/mtasts
fi

step "upgrade to a higher version, with a cache and a changed config in place"
echo '# changed by scripts/test-deb.sh' >>/etc/mtasts/mtasts.toml
config_sum=$(sha256sum </etc/mtasts/mtasts.toml)
runuser -u _mtasts -- mtasts dump >"$tmp/dump-before.txt" || true
cache_sum=$(sha256sum </var/lib/mtasts/cache.mdb)
new_version=${UPGRADE_VERSION:-$version+test1}
if [ "${UPGRADE_REBUILD:-}" = 1 ]; then
  OUT_DIR=$tmp/out-upgrade MTASTS_DEB_VERSION=$new_version NO_DEPS=1 "$src/scripts/build-deb.sh"
  new_deb=$(ls -1 "$tmp"/out-upgrade/mtasts_"$new_version"_*.deb)
else
  repack=$tmp/repack
  dpkg-deb -R "$deb" "$repack"
  sed -i "s/^Version: .*/Version: $new_version/" "$repack/DEBIAN/control"
  mkdir -p "$tmp/out-upgrade"
  new_deb=$tmp/out-upgrade/mtasts_${new_version}_$(dpkg-deb -f "$deb" Architecture).deb
  dpkg-deb --root-owner-group -b "$repack" "$new_deb" >/dev/null
fi
echo "upgrade package: $new_deb"
apt-get install -y -q "$new_deb"
check "installed version is $new_version" test "$(dpkg-query -W -f='${Version}' mtasts)" = "$new_version"
check "changed config kept" test "$(sha256sum </etc/mtasts/mtasts.toml)" = "$config_sum"
check "cache file kept unchanged" test "$(sha256sum </var/lib/mtasts/cache.mdb)" = "$cache_sum"
runuser -u _mtasts -- mtasts dump >"$tmp/dump-after.txt" || true
check "cache contents the same (mtasts dump)" cmp -s "$tmp/dump-before.txt" "$tmp/dump-after.txt"
check "/var/lib/mtasts still _mtasts:_mtasts 770" test "$(stat -c '%U:%G %a' /var/lib/mtasts)" = "_mtasts:_mtasts 770"

step "apt-get remove"
apt-get remove -y -q mtasts
check "status: config-files" test "$(dpkg-query -W -f='${Status}' mtasts)" = "deinstall ok config-files"
check "binaries gone" sh -c '! test -e /usr/bin/mtasts && ! test -e /usr/sbin/mtastsd && ! test -e /usr/lib/mtasts/mtasts_exim.so'
check "config kept" test -f /etc/mtasts/mtasts.toml
check "cache kept" test -f /var/lib/mtasts/cache.mdb

step "dpkg --purge"
dpkg --purge mtasts
check "package gone" sh -c '! dpkg-query -W mtasts >/dev/null 2>&1 || [ -z "$(dpkg-query -W -f="\${Status}" mtasts | grep -v not-installed)" ]'
check "/etc/mtasts gone" test ! -e /etc/mtasts
check "/var/lib/mtasts gone" test ! -e /var/lib/mtasts
check "enable links gone" sh -c '! ls /etc/systemd/system/*/mtastsd.* 2>/dev/null | grep -q .'

step "what is left"
left=$(comm -13 "$tmp/files-before.txt" <(mtasts_files))
echo "files with mtasts in their name that were not there before the install: ${left:-none}"
getent passwd _mtasts || true
getent group _mtasts || true
[ -z "$left" ] || fail "files left after purge"
ok "nothing left but the system user and group _mtasts (policy: system users stay)"
echo
echo "PASS: scripts/test-deb.sh"
