#!/usr/bin/python3
"""mtastsd next to Debian's postfix-mta-sts-resolver (mta-sts-daemon) as a Postfix socketmap
server, on the same test world, in one run.

    /usr/bin/python3 bench/daemon_bench.py --build-dir build-bench [--domains 2000]
        [--cold-concurrency 128] [--connections 1,16,64] [--duration 5] [--warmup 1]
        [--repeat 3] [--transport tcp|unix] [--nice -19] [--no-floor] [--json FILE] [--keep]
        [--baseline-build-dir DIR]

Needs root (a network namespace), iproute2, the packages of scripts/install-bench-deps.sh
(postfix-mta-sts-resolver, python3-uvloop) and, in --build-dir, mtastsd and
bench/socketmap_load (cmake --build DIR --target mtastsd socketmap_load).

What it does:
  1. Makes a network namespace whose /etc/netns/<ns>/resolv.conf names 127.0.0.1 and runs
     itself inside it (`ip netns exec`), so both daemons resolve through their usual system
     path: mtastsd with `resolver` unset (libunbound reads /etc/resolv.conf), the peer through
     aiodns / c-ares and getaddrinfo. Both fetch policies from port 443.
  2. Writes a manifest of --domains distinct enforce domains (dNNNN.bench.example: TXT
     _mta-sts, a policy host with a valid certificate, policy "mx1.<d>" and "*.mail.<d>") plus a
     few check domains (enforce, testing, none, no record, HTTP 404), and starts
     tests/world/world.py on 127.0.0.1:53 and :443 with it. Every policy host is fetched once
     before any daemon runs, so the world has issued all its certificates (one per host,
     ~1 ms each) and neither daemon's cold run pays for that.
  3. For each daemon in turn (mtastsd with a new LMDB cache; mta-sts-daemon with the internal
     cache, cache_grace 10^9 so a cached policy is never re-fetched during the run), each
     started afresh:
       - check: asks the check domains and compares each answer with the expected one;
       - cold: asks every bench domain once with --cold-concurrency connections (each has one
         request in flight) and takes the wall time from the first request to the last reply;
         every reply must be `OK secure match=...` with the domain's two patterns;
       - warm: for each --connections level, closed-loop clients ask the (now cached) bench
         domains round robin for --warmup + --duration seconds; lookups/s and p50/p99 latency
         (--repeat runs, the median by rate is shown).
     Answers of the two daemons are compared domain by domain: policy level (OK secure /
     NOTFOUND), the match list as a set (the peer writes `*.mail.d` as `.mail.d` and lists the
     patterns in set order) and servername=hostname.
  4. The same warm runs against `socketmap_load --serve` (a constant reply from one epoll
     thread, no lookup): the "floor" column, what the transport and the machine allow at all.
  5. Prints the table (mtastsd | peer | ratio | target | floor), and with --json the raw
     figures.

The load generator is bench/socketmap_load (C++, epoll, netstring requests, latency per
request with steady_clock); it runs on the same machine, so on 2 vCPUs it shares the CPUs with
the daemon under test. The daemons' CPU time per phase is read from /proc. Everything the
bench starts runs at --nice (default -19), so that other work on the machine disturbs less;
the figures are still those of a shared machine; read p99 with that in mind.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

PYTHON = "/usr/bin/python3"
PEER = "/usr/bin/mta-sts-daemon"
MTASTSD_PORT = 18461
PEER_PORT = 18462
FLOOR_PORT = 18463
BENCH_ZONE = "bench.example"
TARGET_WARM_RATIO = 10.0
TARGET_P99_US = 50.0
TARGET_COLD_RATIO = 5.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


def die(message: str) -> None:
    print(f"daemon_bench: {message}", file=sys.stderr)
    sys.exit(2)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# The world


def bench_domains(n: int) -> list[str]:
    return [f"d{i:04d}.{BENCH_ZONE}" for i in range(n)]


def policy_body(mode: str, mx: list[str]) -> str:
    return "version: STSv1\nmode: %s\n%smax_age: 604800\n" % (
        mode, "".join(f"mx: {m}\n" for m in mx))


# check domains: name -> (TXT record or None, https spec or None, expected normalized answer)
def check_domains() -> dict[str, tuple]:
    z = BENCH_ZONE
    enforce_mx = [f"mx1.chk-enforce.{z}", f"*.mail.chk-enforce.{z}"]
    multi_mx = [f"mx2.chk-multi.{z}", f"mx1.chk-multi.{z}", f"*.a.chk-multi.{z}",
                f"mx1.chk-multi.{z}"]
    return {
        f"chk-enforce.{z}": ("v=STSv1; id=chk1;", {"body": policy_body("enforce", enforce_mx)},
                             ("secure", frozenset(enforce_mx), "hostname")),
        f"chk-multi.{z}": ("v=STSv1; id=chk2;", {"body": policy_body("enforce", multi_mx)},
                           ("secure", frozenset(multi_mx), "hostname")),
        f"chk-testing.{z}": ("v=STSv1; id=chk3;",
                             {"body": policy_body("testing", [f"mx1.chk-testing.{z}"])},
                             ("notfound",)),
        f"chk-none.{z}": ("v=STSv1; id=chk4;", {"body": policy_body("none", [])},
                          ("notfound",)),
        f"chk-nopolicy.{z}": (None, None, ("notfound",)),
        f"chk-404.{z}": ("v=STSv1; id=chk5;", {"status": 404, "body": "not here\n"},
                         ("notfound",)),
    }


def bench_mx(domain: str) -> list[str]:
    return [f"mx1.{domain}", f"*.mail.{domain}"]


def write_manifest(path: Path, domains: list[str]) -> None:
    dns: dict = {}
    https: dict = {}
    notes: dict = {}
    for d in domains:
        # A usual TXT TTL: mtastsd re-checks the id once it has passed (RFC 8461 §8.1); the
        # warm runs measure answers from the cache, not re-checks.
        dns[f"_mta-sts.{d}"] = {"TXT": [["v=STSv1; id=bench1;"]], "ttl": 3600}
        # A usual MX TTL (the world's default is 0, for tests that change it while it runs):
        # mtastsd looks the MX up to expand "*." patterns for Postfix's match= and keeps the
        # answer for its TTL.
        dns[d] = {"MX": [[10, f"mx1.{d}"]], "ttl": 3600}
        https[f"mta-sts.{d}"] = {"body": policy_body("enforce", bench_mx(d))}
        notes[d] = "daemon_bench: enforce, mx1.<d> and *.mail.<d>"
    for d, (txt, spec, _) in check_domains().items():
        dns[d] = {"MX": [[10, f"mx1.{d}"]]}
        if txt is not None:
            dns[f"_mta-sts.{d}"] = {"TXT": [[txt]]}
        if spec is not None:
            https[f"mta-sts.{d}"] = spec
        notes[d] = "daemon_bench check domain"
    path.write_text(json.dumps({"dns": dns, "https": https, "domains": notes}))


def start_world(source: Path, state: Path, manifest: Path) -> tuple[subprocess.Popen, dict]:
    state.mkdir(parents=True, exist_ok=True)
    out = open(state / "world.log", "wb")
    proc = subprocess.Popen([PYTHON, str(source / "tests" / "world" / "world.py"),
                             "--state-dir", str(state), "--listen", "127.0.0.1",
                             "--dns-port", "53", "--https-port", "443",
                             "--manifest", str(manifest), "--lifetime", "7200"],
                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while not (state / "world.json").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            die(f"the test world did not start: {(state / 'world.log').read_text()}")
        time.sleep(0.05)
    return proc, json.loads((state / "world.json").read_text())


def stop_process(proc: subprocess.Popen, group: bool = False) -> None:
    with contextlib.suppress(ProcessLookupError):
        if group:
            os.killpg(proc.pid, signal.SIGTERM)
        else:
            proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL) if group else proc.kill()
        proc.wait(timeout=10)


def prefetch_policies(world: dict, domains: list[str]) -> None:
    """GET every policy host once, so the world issues each certificate before the runs."""
    context = ssl.create_default_context(cafile=world["ca_file"])

    def fetch(domain: str) -> None:
        host = f"mta-sts.{domain}"
        with socket.create_connection(("127.0.0.1", world["https_port"]), timeout=30) as raw:
            with context.wrap_socket(raw, server_hostname=host) as tls:
                tls.sendall(f"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: {host}\r\n"
                            "Connection: close\r\n\r\n".encode())
                data = b""
                while chunk := tls.recv(65536):
                    data += chunk
        if not data.startswith(b"HTTP/1.1 200") or b"mode: enforce" not in data:
            raise RuntimeError(f"the world serves no enforce policy for {domain}: {data[:200]!r}")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(fetch, domains))


# --------------------------------------------------------------------------------------------
# Answers


def normalize(reply: str) -> tuple:
    """(level, match patterns, servername) of a socketmap reply, comparable across daemons."""
    if reply.startswith("NOTFOUND"):
        return ("notfound",)
    if reply.startswith("OK "):
        fields = reply[3:].split()
        attrs = dict(f.split("=", 1) for f in fields[1:] if "=" in f)
        patterns = frozenset(("*" + p) if p.startswith(".") else p
                             for p in attrs.get("match", "").split(":") if p)
        return (fields[0], patterns, attrs.get("servername"))
    return ("other", reply)


def show(answer: tuple) -> str:
    if len(answer) == 3:
        return f"{answer[0]} match={sorted(answer[1])} servername={answer[2]}"
    return " ".join(map(str, answer))


# --------------------------------------------------------------------------------------------
# Daemons


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its threads so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class Daemon:
    name = ""
    label = ""

    def __init__(self, work: Path, world: dict, transport: str):
        self.work = work
        self.world = world
        self.transport = transport
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        raise NotImplementedError

    def connect_spec(self) -> str:
        raise NotImplementedError

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        spec = self.connect_spec()
        while True:
            if self.proc.poll() is not None:
                die(f"{self.label} exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if spec.startswith("unix:"):
                    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    s.connect(spec[5:])
                else:
                    host, port = spec.rsplit(":", 1)
                    s = socket.create_connection((host, int(port)), timeout=1)
                s.close()
                if self.ready():
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                die(f"{self.label} not ready within 30 s:\n{self.log()}")
            time.sleep(0.05)

    def ready(self) -> bool:
        return True

    def log(self) -> str:
        p = self.work / "daemon.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None


class Mtastsd(Daemon):
    name = "mtastsd"
    label = "mtastsd"

    def __init__(self, work: Path, world: dict, transport: str, binary: Path,
                 name: str = "mtastsd"):
        super().__init__(work, world, transport)
        self.binary = binary
        self.name = self.label = name

    def connect_spec(self) -> str:
        if self.transport == "unix":
            return f"unix:{self.work / 'socketmap.sock'}"
        return f"127.0.0.1:{MTASTSD_PORT}"

    def start(self) -> None:
        if self.work.exists():
            shutil.rmtree(self.work)
        self.work.mkdir(parents=True)
        config = self.work / "mtasts.toml"
        # resolver unset: libunbound reads /etc/resolv.conf, as the peer's c-ares does.
        config.write_text("\n".join([
            f"cache = {json.dumps(str(self.work / 'cache.mdb'))}",
            f"ca_file = {json.dumps(self.world['ca_file'])}",
            "https_port = 443",
            'log_level = "info"',
            'log_target = "stderr"',
            "",
            "[daemon]",
            'exim_socket = ""',
            f"socketmap_socket = {json.dumps(str(self.work / 'socketmap.sock'))}",
            f'socketmap_listen = "127.0.0.1:{MTASTSD_PORT}"',
            "",
        ]))
        self.proc = subprocess.Popen([str(self.binary), "--config", str(config)],
                                     stdout=open(self.work / "daemon.log", "wb"),
                                     stderr=subprocess.STDOUT)
        self.wait_ready()

    def ready(self) -> bool:
        return "ready:" in self.log()


class Peer(Daemon):
    name = "peer"
    label = "postfix-mta-sts-resolver"

    def connect_spec(self) -> str:
        if self.transport == "unix":
            return f"unix:{self.work / 'socketmap.sock'}"
        return f"127.0.0.1:{PEER_PORT}"

    def start(self) -> None:
        if self.work.exists():
            shutil.rmtree(self.work)
        self.work.mkdir(parents=True)
        config = self.work / "mta-sts-daemon.yml"
        listen = (f"path: {json.dumps(str(self.work / 'socketmap.sock'))}\nmode: 0666\n"
                  if self.transport == "unix" else f"host: 127.0.0.1\nport: {PEER_PORT}\n")
        config.write_text(listen + "\n".join([
            "reuse_port: true",
            "shutdown_timeout: 2",
            # Never re-check a cached policy during the run (the default is 60 s).
            "cache_grace: 1000000000",
            "cache:",
            "  type: internal",
            "  options:",
            "    cache_size: 100000",
            "default_zone:",
            "  strict_testing: false",
            "  timeout: 4",
            "",
        ]))
        # aiohttp verifies with the system store: SSL_CERT_FILE makes it the world's test CA.
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
               "SSL_CERT_FILE": self.world["ca_file"]}
        self.proc = subprocess.Popen([PEER, "-c", str(config), "-v", "info"],
                                     stdout=open(self.work / "daemon.log", "wb"),
                                     stderr=subprocess.STDOUT, env=env)
        self.wait_ready()
        # mta-sts-daemon runs on uvloop when python3-uvloop is installed (Recommends).
        maps = Path(f"/proc/{self.proc.pid}/maps").read_text()
        self.event_loop = "uvloop" if "uvloop" in maps else "asyncio"


# --------------------------------------------------------------------------------------------
# Running the load generator


class Floor(Daemon):
    """socketmap_load --serve: a constant reply from one epoll thread, no lookup at all. Not a
    competitor: the most any single-threaded socketmap server can do on this machine."""
    name = "floor"
    label = "floor (constant-reply server)"

    def __init__(self, work: Path, world: dict, transport: str, binary: Path):
        super().__init__(work, world, transport)
        self.binary = binary

    def connect_spec(self) -> str:
        if self.transport == "unix":
            return f"unix:{self.work / 'socketmap.sock'}"
        return f"127.0.0.1:{FLOOR_PORT}"

    def start(self) -> None:
        if self.work.exists():
            shutil.rmtree(self.work)
        self.work.mkdir(parents=True)
        self.proc = subprocess.Popen([str(self.binary), "--serve", self.connect_spec()],
                                     stdout=open(self.work / "daemon.log", "wb"),
                                     stderr=subprocess.STDOUT)
        self.wait_ready()


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path, world: dict, world_pid: int):
        self.args = args
        self.work = work
        self.world = world
        self.world_pid = world_pid
        self.load = args.build_dir / "bench" / "socketmap_load"
        self.domains = bench_domains(args.domains)
        self.domains_file = work / "domains.txt"
        self.domains_file.write_text("\n".join(self.domains) + "\n")
        self.answers: dict[str, dict[str, tuple]] = {}

    def socketmap_load(self, daemon: Daemon, extra: list[str]) -> dict:
        cmd = [str(self.load), "--connect", daemon.connect_spec(), "--map", "postfix",
               "--domains-file", str(self.domains_file), *extra]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            die(f"socketmap_load against {daemon.label} failed ({r.returncode}): {r.stderr}\n"
                f"daemon log tail:\n{daemon.log()[-3000:]}")
        return json.loads(r.stdout)

    def ask(self, daemon: Daemon, domains: list[str]) -> dict[str, str]:
        """One request per domain on one connection, through socketmap_load."""
        listing = self.work / f"ask-{daemon.name}.txt"
        listing.write_text("\n".join(domains) + "\n")
        replies = self.work / f"ask-{daemon.name}.replies"
        cmd = [str(self.load), "--connect", daemon.connect_spec(), "--map", "postfix",
               "--domains-file", str(listing), "--replies", str(replies)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            die(f"asking {daemon.label} failed: {r.stderr}\n{daemon.log()[-3000:]}")
        return read_replies(replies)

    def check(self, daemon: Daemon) -> None:
        expected = {d: e for d, (_, _, e) in check_domains().items()}
        replies = self.ask(daemon, list(expected))
        bad = [f"{d}: {replies[d]!r}, expected {show(e)}" for d, e in expected.items()
               if normalize(replies[d]) != e]
        if bad:
            die(f"{daemon.label} answers check domains wrongly:\n  " + "\n  ".join(bad))
        self.answers.setdefault(daemon.name, {}).update(
            {d: normalize(r) for d, r in replies.items()})

    def cold(self, daemon: Daemon) -> dict:
        replies_file = self.work / f"cold-{daemon.name}.replies"
        cpu0, wcpu0 = daemon.cpu(), cpu_seconds(self.world_pid)
        result = self.socketmap_load(daemon, ["--connections", str(self.args.cold_concurrency),
                                              "--threads", "1", "--replies", str(replies_file)])
        result["daemon_cpu_s"] = daemon.cpu() - cpu0
        result["world_cpu_s"] = cpu_seconds(self.world_pid) - wcpu0
        replies = read_replies(replies_file)
        bad = []
        for d in self.domains:
            want = ("secure", frozenset(bench_mx(d)), "hostname")
            got = normalize(replies.get(d, ""))
            if got != want:
                bad.append(f"{d}: {replies.get(d)!r}")
        if bad:
            die(f"{daemon.label}: {len(bad)} of {len(self.domains)} cold answers are wrong, e.g.\n"
                "  " + "\n  ".join(bad[:10]) + f"\ndaemon log tail:\n{daemon.log()[-3000:]}")
        self.answers.setdefault(daemon.name, {}).update(
            {d: normalize(r) for d, r in replies.items()})
        return result

    def warm(self, daemon: Daemon, connections: int) -> dict:
        runs = []
        for _ in range(self.args.repeat):
            cpu0 = daemon.cpu()
            r = self.socketmap_load(daemon, [
                "--connections", str(connections), "--threads", "1",
                "--duration", str(self.args.duration), "--warmup", str(self.args.warmup)])
            r["daemon_cpu_s"] = daemon.cpu() - cpu0
            if r["errors"] or r["mismatches"]:
                die(f"{daemon.label}: warm run at {connections} connections had "
                    f"{r['errors']} error and {r['mismatches']} changed replies")
            runs.append(r)
        runs.sort(key=lambda r: r["rate"])
        chosen = dict(runs[len(runs) // 2])
        chosen["rates"] = [r["rate"] for r in runs]
        return chosen

    def run_daemon(self, daemon: Daemon) -> dict:
        log(f"{daemon.label}: start, check answers")
        daemon.start()
        try:
            self.check(daemon)
            log(f"{daemon.label}: cold, {len(self.domains)} domains at concurrency "
                f"{self.args.cold_concurrency}")
            cold = self.cold(daemon)
            log(f"{daemon.label}: cold {cold['seconds']:.2f} s")
            warm = {}
            for c in self.args.connections:
                warm[c] = self.warm(daemon, c)
                w = warm[c]
                log(f"{daemon.label}: warm {c} connections: {w['rate']:.0f}/s "
                    f"p50 {w['p50_us']:.1f} us p99 {w['p99_us']:.1f} us")
            return {"cold": cold, "warm": warm, "version": self.version(daemon)}
        finally:
            daemon.stop()

    def run_floor(self, floor: Floor) -> dict:
        log(f"{floor.label}: warm runs")
        floor.start()
        try:
            warm = {}
            for c in self.args.connections:
                warm[c] = self.warm(floor, c)
                w = warm[c]
                log(f"{floor.label}: warm {c} connections: {w['rate']:.0f}/s "
                    f"p50 {w['p50_us']:.1f} us p99 {w['p99_us']:.1f} us")
            return {"warm": warm}
        finally:
            floor.stop()

    def version(self, daemon: Daemon) -> str:
        if isinstance(daemon, Peer):
            r = subprocess.run(["dpkg-query", "-W", "-f", "${Version}",
                                "postfix-mta-sts-resolver"], capture_output=True, text=True)
            return f"{r.stdout.strip()} ({daemon.event_loop})"
        r = subprocess.run([str(daemon.binary), "--version"], capture_output=True, text=True)
        version = (r.stdout or r.stderr).strip().split()[-1] if (r.stdout or r.stderr) else "?"
        git = ["git", "-C", str(self.args.source_dir)]
        head = subprocess.run(git + ["rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True).stdout.strip()
        if head:
            dirty = subprocess.run(git + ["status", "--porcelain", "--", "src"],
                                   capture_output=True, text=True).stdout.strip()
            version += f" ({head}{'+changes' if dirty else ''})"
        return version

    def compare(self) -> None:
        ours = self.answers.get("mtastsd", {})
        for other in [n for n in self.answers if n != "mtastsd"]:
            theirs = self.answers[other]
            differ = [d for d in ours if d in theirs and ours[d] != theirs[d]]
            if differ:
                die("the daemons answer differently:\n  " + "\n  ".join(
                    f"{d}: mtastsd {show(ours[d])} | {other} {show(theirs[d])}"
                    for d in differ[:10]))
            log(f"mtastsd and {other}: answers agree on {len(ours)} domains")


def read_replies(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        domain, _, reply = line.partition("\t")
        out[domain] = reply
    return out


# --------------------------------------------------------------------------------------------
# The table


def ratio(a: float, b: float) -> float:
    return a / b if b else float("inf")


def fmt_rate(r: float) -> str:
    return f"{r:,.0f}/s".replace(",", " ")


def fmt_us(us: float) -> str:
    if us >= 1e6:
        return f"{us / 1e6:.2f} s"
    if us >= 10000:
        return f"{us / 1000:.0f} ms"
    if us >= 1000:
        return f"{us / 1000:.1f} ms"
    return f"{us:.0f} µs" if us >= 100 else f"{us:.1f} µs"


def table(args: argparse.Namespace, results: dict) -> str:
    ours, peer = results["mtastsd"], results["peer"]
    floor = results.get("floor")
    rows = ["| socketmap lookups | mtastsd | postfix-mta-sts-resolver | ratio | target |"
            + (" floor¹ |" if floor else ""),
            "|---|---|---|---|---|" + ("---|" if floor else "")]

    def row(cells: list[str], floor_cell: str = "") -> None:
        rows.append("| " + " | ".join(cells) + " |" + (f" {floor_cell} |" if floor else ""))

    for c in args.connections:
        o, p = ours["warm"][c], peer["warm"][c]
        f = floor["warm"][c] if floor else None
        r = ratio(o["rate"], p["rate"])
        met = "met" if r >= TARGET_WARM_RATIO else "missed"
        conn = "connection" if c == 1 else "connections"
        row([f"warm, {c} {conn}: lookups/s", fmt_rate(o["rate"]), fmt_rate(p["rate"]),
             f"{r:.1f}×", f"≥ {TARGET_WARM_RATIO:.0f}× ({met})"],
            f"{fmt_rate(f['rate'])} ({ratio(f['rate'], p['rate']):.1f}×)" if f else "")
        target = ""
        if c == 1:
            met = "met" if o["p99_us"] <= TARGET_P99_US else "missed"
            target = f"p99 ≤ {TARGET_P99_US:.0f} µs ({met})"
        row([f"warm, {c} {conn}: p50 / p99", f"{fmt_us(o['p50_us'])} / {fmt_us(o['p99_us'])}",
             f"{fmt_us(p['p50_us'])} / {fmt_us(p['p99_us'])}",
             f"{ratio(p['p50_us'], o['p50_us']):.1f}× / {ratio(p['p99_us'], o['p99_us']):.1f}×",
             target],
            f"{fmt_us(f['p50_us'])} / {fmt_us(f['p99_us'])}" if f else "")
    # CPU time over everything the run asked (reference pass, warm-up and measured part).
    cpu = [lambda d, c=c: d["warm"][c]["daemon_cpu_s"] / max(d["warm"][c]["all_requests"], 1) * 1e6
           for c in args.connections]
    row([f"warm: server CPU per lookup ({' / '.join(map(str, args.connections))} conn.)",
         " / ".join(f"{f(ours):.1f}" for f in cpu) + " µs",
         " / ".join(f"{f(peer):.1f}" for f in cpu) + " µs", "", ""],
        (" / ".join(f"{f(floor):.1f}" for f in cpu) + " µs") if floor else "")
    o, p = ours["cold"], peer["cold"]
    r = ratio(p["seconds"], o["seconds"])
    met = "met" if r >= TARGET_COLD_RATIO else "missed"
    row([f"cold: {args.domains} distinct domains, concurrency {args.cold_concurrency}",
         f"{o['seconds']:.2f} s", f"{p['seconds']:.2f} s", f"{r:.1f}×",
         f"≥ {TARGET_COLD_RATIO:.0f}× ({met})"])
    row(["cold: p50 / p99 per lookup", f"{fmt_us(o['p50_us'])} / {fmt_us(o['p99_us'])}",
         f"{fmt_us(p['p50_us'])} / {fmt_us(p['p99_us'])}", "", ""])
    row(["cold: CPU per lookup, daemon + world",
         f"{o['daemon_cpu_s'] / args.domains * 1000:.2f} + "
         f"{o['world_cpu_s'] / args.domains * 1000:.2f} ms",
         f"{p['daemon_cpu_s'] / args.domains * 1000:.2f} + "
         f"{p['world_cpu_s'] / args.domains * 1000:.2f} ms", "", ""])
    text = "\n".join(rows)
    if "baseline" in results:
        text += "\n\n" + baseline_table(args, results)
    if floor:
        text += ("\n\n¹ floor: bench/socketmap_load --serve, one epoll thread answering every "
                 "request with a constant-shaped reply and no lookup (in brackets: its ratio to "
                 "the peer): the most any single-threaded server can do over this transport "
                 "on this machine, with the load generator on the same CPUs.")
    return text


def baseline_table(args: argparse.Namespace, results: dict) -> str:
    """mtastsd of this tree against mtastsd of --baseline-build-dir, from the same run."""
    ours, base = results["mtastsd"], results["baseline"]
    rows = ["| mtastsd, this tree vs --baseline-build-dir | this tree | baseline | ratio |",
            "|---|---|---|---|"]
    for c in args.connections:
        o, b = ours["warm"][c], base["warm"][c]
        conn = "connection" if c == 1 else "connections"
        rows.append(f"| warm, {c} {conn}: lookups/s | {fmt_rate(o['rate'])} | "
                    f"{fmt_rate(b['rate'])} | {ratio(o['rate'], b['rate']):.2f}× |")
        rows.append(f"| warm, {c} {conn}: p50 / p99 | {fmt_us(o['p50_us'])} / "
                    f"{fmt_us(o['p99_us'])} | {fmt_us(b['p50_us'])} / {fmt_us(b['p99_us'])} | |")
        cpu = [d["warm"][c]["daemon_cpu_s"] / max(d["warm"][c]["all_requests"], 1) * 1e6
               for d in (ours, base)]
        rows.append(f"| warm, {c} {conn}: server CPU per lookup | {cpu[0]:.1f} µs | "
                    f"{cpu[1]:.1f} µs | {ratio(cpu[0], cpu[1]):.2f}× |")
    o, b = ours["cold"], base["cold"]
    rows.append(f"| cold: {args.domains} domains | {o['seconds']:.2f} s | {b['seconds']:.2f} s | "
                f"{ratio(o['seconds'], b['seconds']):.2f}× |")
    return "\n".join(rows)


# --------------------------------------------------------------------------------------------
# Main


def inside(args: argparse.Namespace) -> int:
    if args.nice:
        # Children (world, daemons, load generator) inherit it: background work on the machine
        # then disturbs the figures less.
        os.setpriority(os.PRIO_PROCESS, 0, args.nice)
    for path in (args.build_dir / "src" / "daemon" / "mtastsd",
                 args.build_dir / "bench" / "socketmap_load"):
        if not path.exists():
            die(f"{path} is not built (cmake --build {args.build_dir} --target mtastsd "
                "socketmap_load)")
    if not Path(PEER).exists():
        die(f"{PEER} is missing: run scripts/install-bench-deps.sh")
    work = Path(tempfile.mkdtemp(prefix="mtasts-daemon-bench-"))
    work.chmod(0o755)
    world_proc = None
    try:
        domains = bench_domains(args.domains)
        manifest = work / "manifest.json"
        write_manifest(manifest, domains)
        log(f"world: {len(domains)} bench domains + {len(check_domains())} check domains")
        world_proc, world = start_world(args.source_dir, work / "world", manifest)
        t0 = time.monotonic()
        prefetch_policies(world, domains + [d for d, (_, s, e) in check_domains().items()
                                            if s is not None and e[0] == "secure"])
        log(f"world: every policy host fetched once ({time.monotonic() - t0:.1f} s)")
        bench = Bench(args, work, world, world_proc.pid)
        daemons = {
            "mtastsd": Mtastsd(work / "mtastsd", world, args.transport,
                               args.build_dir / "src" / "daemon" / "mtastsd"),
            "peer": Peer(work / "peer", world, args.transport),
        }
        order = list(args.order)
        if args.baseline_build_dir:
            # Another build of mtastsd (e.g. the commit before a change) in the same run, on the
            # same world: its figures sit beside this tree's.
            daemons["baseline"] = Mtastsd(work / "baseline", world, args.transport,
                                          args.baseline_build_dir / "src" / "daemon" / "mtastsd",
                                          name="baseline")
            order.insert(0, "baseline")
        results = {}
        for name in order:
            results[name] = bench.run_daemon(daemons[name])
        bench.compare()
        if not args.no_floor:
            results["floor"] = bench.run_floor(Floor(work / "floor", world, args.transport,
                                                     args.build_dir / "bench" / "socketmap_load"))
        load = os.getloadavg()
        text = table(args, results)
        header = (f"{datetime.date.today().isoformat()}, {os.cpu_count()} vCPU, "
                  f"transport {args.transport}, warm {args.duration:g} s per run "
                  f"(median of {args.repeat}), mtastsd {results['mtastsd']['version']}, "
                  f"postfix-mta-sts-resolver {results['peer']['version']}, "
                  f"load average {load[0]:.2f}")
        print(header)
        print()
        print(text)
        if args.json:
            Path(args.json).write_text(json.dumps(
                {"header": header, "args": {k: str(v) for k, v in vars(args).items()},
                 "results": results}, indent=2, default=str))
        return 0
    finally:
        if world_proc is not None:
            stop_process(world_proc, group=True)
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


@contextlib.contextmanager
def network_namespace():
    name = f"mtasts-bench-{uuid.uuid4().hex[:8]}"
    etc = Path("/etc/netns") / name
    created = False
    try:
        r = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
        if r.returncode != 0:
            die(f"cannot create a network namespace: {r.stderr.strip()}")
        created = True
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"],
                       check=True)
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:2 attempts:2\n")
        yield name
    finally:
        if created:
            pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True,
                                  text=True).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        shutil.rmtree(etc, ignore_errors=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    source = Path(__file__).resolve().parent.parent
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build-dir", type=Path, default=source / "build")
    p.add_argument("--source-dir", type=Path, default=source)
    p.add_argument("--baseline-build-dir", type=Path,
                   help="also run the mtastsd built there (e.g. before a change) and compare")
    p.add_argument("--domains", type=int, default=2000)
    p.add_argument("--cold-concurrency", type=int, default=128)
    p.add_argument("--connections", default="1,16,64",
                   type=lambda s: [int(x) for x in s.split(",")])
    p.add_argument("--duration", type=float, default=5.0, help="seconds measured per warm run")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds before each warm run")
    p.add_argument("--repeat", type=int, default=3, help="warm runs per level (median shown)")
    p.add_argument("--transport", choices=("tcp", "unix"), default="tcp")
    p.add_argument("--order", default="mtastsd,peer", type=lambda s: s.split(","),
                   help="which daemon runs first")
    p.add_argument("--nice", type=int, default=-19,
                   help="scheduling priority of everything the bench starts (root only)")
    p.add_argument("--no-floor", action="store_true",
                   help="skip the constant-reply server that shows the transport's limit")
    p.add_argument("--json", help="also write the raw figures here")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.build_dir = args.build_dir.resolve()
    if sorted(args.order) != ["mtastsd", "peer"]:
        p.error("--order must name mtastsd and peer")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.inside:
        return inside(args)
    if os.geteuid() != 0:
        die("needs root (a network namespace, DNS on port 53, HTTPS on port 443)")
    if shutil.which("ip") is None:
        die("needs iproute2 (ip)")
    with network_namespace() as ns:
        return subprocess.run(["ip", "netns", "exec", ns, PYTHON, str(Path(__file__).resolve()),
                               "--inside", *argv]).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
