#!/usr/bin/python3
"""The fleet tier (several mtastsd sharing one Redis, `shared_cache`): a fleet's cold run and
warm throughput with Redis against the same fleet without it, in one run.

    /usr/bin/python3 bench/fleet_bench.py --build-dir build [--domains 2000]
        [--cold-concurrency 128] [--connections 16,64] [--duration 5] [--warmup 1]
        [--repeat 3] [--redis-timeout-ms 100] [--nice -19] [--json FILE] [--keep]

Needs root (a network namespace), iproute2, redis-server, python3-redis and, in --build-dir,
mtastsd and bench/socketmap_load (cmake --build DIR --target mtastsd socketmap_load).

What it does (the world, its manifest and the namespace are bench/daemon_bench.py's, imported):
  1. Makes a network namespace whose resolv.conf names 127.0.0.1, runs itself inside it, starts
     tests/world/world.py on 127.0.0.1:53 and :443 with --domains enforce domains and fetches
     every policy host once, so that no cold run pays for the world's certificates.
  2. Fleet "without Redis": three mtastsd (MEMBERS), each with its own new LMDB cache, socketmap
     listener and metrics_listen, `resolver` unset (libunbound reads /etc/resolv.conf).
     Fleet "with Redis": a new redis-server (no persistence) and three more mtastsd with
     `shared_cache = "redis://127.0.0.1:PORT/0"` and `shared_cache_timeout_ms`.
  3. Cold, one fleet after the other: the world's log is cleared, then three socketmap_load
     processes start together, one per member, each asking every bench domain once with
     --cold-concurrency connections. Wall time: from the first start to the last exit of the
     three (so a few ms of process start-up are in it); every reply must be
     `OK secure match=mx1.<d>:*.mail.<d>`. Afterwards the world's log gives the policy GETs and
     DNS queries, in total and per domain; /proc the CPU time of the members, redis-server and
     the world; each member's /metrics the fleet tier's counters (deltas over the phase).
  4. Warm: against member 1 of each fleet (its cache now warm; all six daemons stay up),
     socketmap_load closed-loop at each --connections level for --warmup + --duration s, the
     two fleets alternating run by run (--repeat runs each, the median by rate is shown):
     lookups/s, p50/p99, server CPU per lookup, and what Redis did meanwhile (CPU, commands,
     shared-cache reads: warm answers come from the member's own cache and should not touch it).
  5. Prints the tables (without Redis | with Redis | ratio), and with --json the raw figures.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime
import http.client
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
import daemon_bench as db  # noqa: E402  (the world, the namespace, the daemon class)

PYTHON = "/usr/bin/python3"
REDIS_SERVER = "/usr/bin/redis-server"
MEMBERS = 3
SOCKETMAP_BASE = 18470   # fleet f, member i: socketmap on BASE + 10 f + i, metrics on +100
METRICS_OFFSET = 100
POLICY_PATH = "/.well-known/mta-sts.txt"
FLEET_FAMILIES = ("mtasts_fleet_lookups_total", "mtasts_shared_cache_reads_total",
                  "mtasts_shared_cache_writes_total", "mtasts_shared_cache_locks_total",
                  "mtasts_shared_cache_connection_events_total", "mtasts_shared_cache_up")


def die(message: str) -> None:
    print(f"fleet_bench: {message}", file=sys.stderr)
    sys.exit(2)


log = db.log


# --------------------------------------------------------------------------------------------
# Processes


class Member(db.Mtastsd):
    """One mtastsd of a fleet: own work dir, LMDB cache, socketmap port and metrics port."""

    def __init__(self, work: Path, world: dict, binary: Path, name: str, port: int,
                 metrics_port: int, shared: dict | None):
        super().__init__(work, world, "tcp", binary, name=name)
        self.port = port
        self.metrics_port = metrics_port
        self.shared = shared  # {"url": ..., "timeout_ms": ...} or None

    def connect_spec(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        if self.work.exists():
            shutil.rmtree(self.work)
        self.work.mkdir(parents=True)
        config = self.work / "mtasts.toml"
        lines = [
            f"cache = {json.dumps(str(self.work / 'cache.mdb'))}",
            f"ca_file = {json.dumps(self.world['ca_file'])}",
            "https_port = 443",
            'log_level = "info"',
            'log_target = "stderr"',
        ]
        if self.shared:
            lines += [f"shared_cache = {json.dumps(self.shared['url'])}",
                      f"shared_cache_timeout_ms = {int(self.shared['timeout_ms'])}"]
        lines += [
            "",
            "[daemon]",
            'exim_socket = ""',
            f"socketmap_socket = {json.dumps(str(self.work / 'socketmap.sock'))}",
            f'socketmap_listen = "127.0.0.1:{self.port}"',
            f'metrics_listen = "127.0.0.1:{self.metrics_port}"',
            "",
        ]
        config.write_text("\n".join(lines))
        self.proc = subprocess.Popen([str(self.binary), "--config", str(config)],
                                     stdin=subprocess.DEVNULL,
                                     stdout=open(self.work / "daemon.log", "wb"),
                                     stderr=subprocess.STDOUT)
        self.wait_ready()

    def metrics_text(self) -> str:
        conn = http.client.HTTPConnection("127.0.0.1", self.metrics_port, timeout=10)
        try:
            conn.request("GET", "/metrics")
            response = conn.getresponse()
            body = response.read().decode(errors="replace")
            if response.status != 200:
                raise RuntimeError(f"{self.label} /metrics: {response.status} {body[:200]}")
            return body
        finally:
            conn.close()

    def metrics(self) -> dict[str, float]:
        """The fleet tier's samples, keyed 'family{label="value"}'."""
        out = {}
        for line in self.metrics_text().splitlines():
            if not line or line.startswith("#"):
                continue
            key, _, value = line.rpartition(" ")
            if key.split("{", 1)[0] in FLEET_FAMILIES:
                with contextlib.suppress(ValueError):
                    out[key] = float(value)
        return out


class Redis:
    def __init__(self, work: Path):
        self.work = work
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.client = None
        self.infos = 0

    def start(self) -> None:
        import redis  # python3-redis
        self.work.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "no", "--dir", str(self.work),
             "--logfile", str(self.work / "redis.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        self.client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5,
                                  socket_connect_timeout=1)
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                die(f"redis-server exited with {self.proc.returncode}: {self.log()[-2000:]}")
            try:
                if self.client.ping():
                    break
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                die(f"redis-server not answering within 20 s: {self.log()[-2000:]}")
            time.sleep(0.05)
        self.version = self.client.info("server").get("redis_version", "?")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def log(self) -> str:
        p = self.work / "redis.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def cpu(self) -> float:
        return db.cpu_seconds(self.proc.pid) if self.proc else 0.0

    def commands(self) -> int:
        """Commands processed so far, less the INFO calls of this bench (each is counted once
        it has run): the difference of two readings is what the members sent in between."""
        self.infos += 1
        info = self.client.info("stats")
        return int(info.get("total_commands_processed", 0)) - (self.infos - 1)

    def keys(self) -> int:
        self.infos += 1  # DBSIZE counts as well
        return int(self.client.dbsize())

    def stop(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.close()
        if self.proc is not None:
            db.stop_process(self.proc)
            self.proc = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------------
# Fleets


class Fleet:
    def __init__(self, key: str, label: str, members: list[Member], redis: Redis | None):
        self.key = key
        self.label = label
        self.members = members
        self.redis = redis

    def start(self) -> None:
        if self.redis:
            self.redis.start()
            for m in self.members:
                m.shared = {"url": self.redis.url, "timeout_ms": m.shared["timeout_ms"]}
        for m in self.members:
            m.start()
        if self.redis:
            # The shared cache connects in the background: the cold run should not start with a
            # member still alone.
            deadline = time.monotonic() + 20
            for m in self.members:
                while m.metrics().get("mtasts_shared_cache_up", 0) != 1:
                    if time.monotonic() > deadline:
                        die(f"{m.label}: shared cache not up within 20 s:\n{m.log()[-3000:]}")
                    time.sleep(0.05)

    def cpu(self) -> list[float]:
        return [m.cpu() for m in self.members]

    def metrics(self) -> list[dict[str, float]]:
        return [m.metrics() for m in self.members]

    def stop(self) -> None:
        for m in self.members:
            with contextlib.suppress(Exception):
                m.stop()
        if self.redis:
            with contextlib.suppress(Exception):
                self.redis.stop()


def metric_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: after.get(k, 0.0) - before.get(k, 0.0) for k in sorted(set(before) | set(after))
            if not k.startswith("mtasts_shared_cache_up")}


def sum_metrics(parts: list[dict[str, float]]) -> dict[str, float]:
    out: dict[str, float] = collections.Counter()
    for p in parts:
        for k, v in p.items():
            out[k] += v
    return dict(out)


def sample(metrics: dict[str, float], family: str, label: str, value: str) -> int:
    return int(metrics.get(f'{family}{{{label}="{value}"}}', 0))


# --------------------------------------------------------------------------------------------
# The bench


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path, world: dict, world_pid: int):
        self.args = args
        self.work = work
        self.world = world
        self.world_pid = world_pid
        self.load = args.build_dir / "bench" / "socketmap_load"
        self.domains = db.bench_domains(args.domains)
        self.domain_set = set(self.domains)
        self.domains_file = work / "domains.txt"
        self.domains_file.write_text("\n".join(self.domains) + "\n")
        sys.path.insert(0, str(args.source_dir / "tests" / "world"))
        from client import World  # tests/world/client.py
        self.control = World.attach(world)

    # -- socketmap_load

    def run_load(self, member: Member, extra: list[str], timeout: float,
                 domains_file: Path | None = None) -> dict:
        cmd = [str(self.load), "--connect", member.connect_spec(), "--map", "postfix",
               "--domains-file", str(domains_file or self.domains_file), *extra]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            die(f"socketmap_load against {member.label} took more than {timeout:.0f} s\n"
                f"daemon log tail:\n{member.log()[-3000:]}")
        if r.returncode != 0:
            die(f"socketmap_load against {member.label} failed ({r.returncode}): {r.stderr}\n"
                f"daemon log tail:\n{member.log()[-3000:]}")
        return json.loads(r.stdout)

    def check(self, member: Member) -> list[str]:
        """The check domains of daemon_bench (enforce, testing, none, no record, 404): the
        wrong answers. Asked after the measured runs: their TXT records have TTL 0, so the
        members re-check them in the background, which would add to the counted queries."""
        expected = {d: e for d, (_, _, e) in db.check_domains().items()}
        listing = self.work / f"check-{member.name}.txt"
        listing.write_text("\n".join(expected) + "\n")
        replies_file = self.work / f"check-{member.name}.replies"
        self.run_load(member, ["--replies", str(replies_file)], 120, domains_file=listing)
        replies = db.read_replies(replies_file)
        return [f"{member.label}: {d}: {replies.get(d)!r}, expected {db.show(e)}"
                for d, e in expected.items() if db.normalize(replies.get(d, "")) != e]

    # -- cold

    def cold(self, fleet: Fleet) -> dict:
        members = fleet.members
        self.control.clear_log()
        m0 = fleet.metrics()
        cpu0 = fleet.cpu()
        rcpu0 = fleet.redis.cpu() if fleet.redis else 0.0
        rcmd0 = fleet.redis.commands() if fleet.redis else 0
        wcpu0 = db.cpu_seconds(self.world_pid)
        timeout = max(300.0, self.args.domains * 0.3)
        results: list[dict | None] = [None] * len(members)
        ends = [0.0] * len(members)
        errors: list[str] = []

        def wait(i: int, proc: subprocess.Popen) -> None:
            try:
                out, err = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                errors.append(f"{members[i].label}: socketmap_load took more than {timeout:.0f} s")
                return
            ends[i] = time.monotonic()
            if proc.returncode != 0:
                errors.append(f"{members[i].label}: socketmap_load failed ({proc.returncode}): "
                              f"{err}")
                return
            results[i] = json.loads(out)

        procs = []
        threads = []
        starts = []
        for i, m in enumerate(members):
            cmd = [str(self.load), "--connect", m.connect_spec(), "--map", "postfix",
                   "--domains-file", str(self.domains_file),
                   "--connections", str(self.args.cold_concurrency), "--threads", "1",
                   "--replies", str(self.work / f"cold-{m.name}.replies")]
            starts.append(time.monotonic())
            procs.append(subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True))
        for i, p in enumerate(procs):
            t = threading.Thread(target=wait, args=(i, p), daemon=True)
            t.start()
            threads.append(t)
        for t in threads:
            t.join(timeout + 30)
        if errors or any(r is None for r in results):
            die("cold run of " + fleet.label + ":\n  " + "\n  ".join(errors or ["no result"]) +
                "".join(f"\n{m.label} log tail:\n{m.log()[-2000:]}" for m in members))
        wall = max(ends) - min(starts)
        cpu = [b - a for a, b in zip(cpu0, fleet.cpu())]
        rcpu = (fleet.redis.cpu() - rcpu0) if fleet.redis else 0.0
        wcpu = db.cpu_seconds(self.world_pid) - wcpu0
        rcmd = (fleet.redis.commands() - rcmd0) if fleet.redis else 0
        deltas = [metric_delta(a, b) for a, b in zip(m0, fleet.metrics())]

        # Every answer of every member must be the domain's enforce policy.
        bad = []
        for m in members:
            replies = db.read_replies(self.work / f"cold-{m.name}.replies")
            for d in self.domains:
                want = ("secure", frozenset(db.bench_mx(d)), "hostname")
                if db.normalize(replies.get(d, "")) != want:
                    bad.append(f"{m.label}: {d}: {replies.get(d)!r}")
        if bad:
            die(f"{fleet.label}: {len(bad)} of {len(self.domains) * len(members)} cold answers "
                "are wrong, e.g.\n  " + "\n  ".join(bad[:10]))

        world = self.world_log_figures()
        return {
            "seconds": wall,
            "member_seconds": [r["seconds"] for r in results],
            "p50_us": statistics.median(r["p50_us"] for r in results),
            "p99_us": max(r["p99_us"] for r in results),
            "members": results,
            "daemon_cpu_s": sum(cpu),
            "daemon_cpu_each_s": cpu,
            "redis_cpu_s": rcpu,
            "redis_commands": rcmd,
            "redis_keys": fleet.redis.keys() if fleet.redis else 0,
            "world_cpu_s": wcpu,
            "metrics": sum_metrics(deltas),
            "metrics_each": deltas,
            **world,
        }

    def world_log_figures(self) -> dict:
        entries = self.control.log()
        gets = collections.Counter()
        other_https = 0
        for e in entries["https"]:
            host = (e.get("sni") or e.get("host") or "").lower().rsplit(":", 1)[0]
            domain = host[len("mta-sts."):] if host.startswith("mta-sts.") else None
            if domain in self.domain_set and e.get("path") == POLICY_PATH:
                gets[domain] += 1
            else:
                other_https += 1
        dns = collections.Counter()
        dns_types = collections.Counter()
        other_dns = collections.Counter()
        for e in entries["dns"]:
            name = e["name"]
            domain = ".".join(name.split(".")[-3:])
            if domain in self.domain_set:
                dns[domain] += 1
                # "TXT _mta-sts", "MX @", "A mta-sts": the type and the name below the domain.
                below = name[:-len(domain)].rstrip(".") or "@"
                dns_types[f"{e['type']} {below}"] += 1
            else:
                other_dns[f"{e['type']} {name}"] += 1
        per_domain_gets = [gets.get(d, 0) for d in self.domains]
        per_domain_dns = [dns.get(d, 0) for d in self.domains]
        return {
            "policy_gets": sum(per_domain_gets),
            "gets_not_one": sum(1 for g in per_domain_gets if g != 1),
            "gets_histogram": dict(sorted(collections.Counter(per_domain_gets).items())),
            "gets_not_one_domains": [d for d, g in zip(self.domains, per_domain_gets)
                                     if g != 1][:50],
            "gets_not_one_ranges": index_ranges(
                [i for i, g in enumerate(per_domain_gets) if g != 1]),
            "other_https": other_https,
            "dns_queries": len(entries["dns"]),
            "dns_bench": sum(per_domain_dns),
            "dns_per_domain_mean": statistics.fmean(per_domain_dns) if per_domain_dns else 0,
            "dns_per_domain_min": min(per_domain_dns, default=0),
            "dns_per_domain_max": max(per_domain_dns, default=0),
            "dns_by_type": dict(sorted(dns_types.items())),
            "dns_other": sum(other_dns.values()),
            "dns_other_names": dict(other_dns.most_common(20)),
            "tls_connections": len(entries["connections"]),
        }

    # -- warm

    def warm_once(self, fleet: Fleet, connections: int) -> dict:
        member = fleet.members[0]
        m0 = member.metrics()
        cpu0 = member.cpu()
        rcpu0 = fleet.redis.cpu() if fleet.redis else 0.0
        rcmd0 = fleet.redis.commands() if fleet.redis else 0
        r = self.run_load(member, ["--connections", str(connections), "--threads", "1",
                                   "--duration", str(self.args.duration),
                                   "--warmup", str(self.args.warmup)],
                          timeout=self.args.duration + self.args.warmup + 120)
        r["daemon_cpu_s"] = member.cpu() - cpu0
        r["redis_cpu_s"] = (fleet.redis.cpu() - rcpu0) if fleet.redis else 0.0
        r["redis_commands"] = (fleet.redis.commands() - rcmd0) if fleet.redis else 0
        r["metrics"] = metric_delta(m0, member.metrics())
        if r["errors"] or r["mismatches"]:
            die(f"{member.label}: warm run at {connections} connections had {r['errors']} "
                f"errors and {r['mismatches']} changed replies")
        return r

    def warm(self, fleets: list[Fleet]) -> dict:
        out: dict = {f.key: {} for f in fleets}
        for c in self.args.connections:
            runs: dict = {f.key: [] for f in fleets}
            for i in range(self.args.repeat):
                # Alternate which fleet goes first, so that drift on the machine spreads evenly.
                order = fleets if i % 2 == 0 else list(reversed(fleets))
                for f in order:
                    runs[f.key].append(self.warm_once(f, c))
            for f in fleets:
                rs = sorted(runs[f.key], key=lambda r: r["rate"])
                chosen = dict(rs[len(rs) // 2])
                chosen["rates"] = [r["rate"] for r in runs[f.key]]
                chosen["cpu_us_per_lookup"] = (sum(r["daemon_cpu_s"] for r in rs) /
                                               max(sum(r["all_requests"] for r in rs), 1) * 1e6)
                chosen["redis_cpu_s_all"] = sum(r["redis_cpu_s"] for r in rs)
                chosen["redis_commands_all"] = sum(r["redis_commands"] for r in rs)
                chosen["shared_reads_all"] = sum(
                    v for r in rs for k, v in r["metrics"].items()
                    if k.startswith("mtasts_shared_cache_reads_total"))
                out[f.key][c] = chosen
                log(f"{f.label}: warm {c} connections: {chosen['rate']:.0f}/s "
                    f"p50 {chosen['p50_us']:.1f} us p99 {chosen['p99_us']:.1f} us, "
                    f"{chosen['cpu_us_per_lookup']:.1f} us CPU per lookup")
        return out


def index_ranges(indexes: list[int]) -> list[str]:
    """[3, 4, 5, 9] -> ["d0003-d0005", "d0009"]: where in the domain list (the order in which
    the load generators ask) the domains are."""
    out: list[str] = []
    start = prev = None
    for i in indexes + [None]:
        if start is not None and (i is None or i != prev + 1):
            out.append(f"d{start:04d}" + (f"-d{prev:04d}" if prev != start else ""))
            start = None
        if i is not None and start is None:
            start = i
        prev = i
    return out


def version(args: argparse.Namespace, binary: Path) -> str:
    try:
        r = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=10)
        text = (r.stdout or r.stderr).strip()
        v = text.split()[-1] if text else "?"
    except (OSError, subprocess.TimeoutExpired):
        v = "?"
    git = ["git", "-C", str(args.source_dir)]
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        head = subprocess.run(git + ["rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
        if head:
            dirty = subprocess.run(git + ["status", "--porcelain", "--", "src"],
                                   capture_output=True, text=True, timeout=30).stdout.strip()
            v += f" ({head}{'+changes' if dirty else ''})"
    return v


def shared_cache_log_lines(members: list[Member]) -> dict:
    """Lines of the members' logs about the shared cache that say something went wrong."""
    out = {}
    for m in members:
        lines = [line for line in m.log().splitlines()
                 if re.search(r"shared cache", line, re.I)
                 and re.search(r"time|fail|error|ignored|refused|unavailable|not shared", line,
                               re.I)]
        out[m.name] = {"count": len(lines), "timeouts": sum(
            1 for line in lines if re.search(r"timed? ?out", line, re.I)), "first": lines[:5]}
    return out


# --------------------------------------------------------------------------------------------
# The tables


def cold_table(args: argparse.Namespace, results: dict) -> str:
    a, b = results["alone"]["cold"], results["redis"]["cold"]
    ratio = db.ratio
    rows = [f"| fleet cold run: {MEMBERS} mtastsd × {args.domains} domains, concurrency "
            f"{args.cold_concurrency} each | without Redis | with Redis | Redis / without |",
            "|---|---|---|---|"]

    def row(label: str, x: str, y: str, r: str = "") -> None:
        rows.append(f"| {label} | {x} | {y} | {r} |")

    row("wall time, first request to last reply (all three)", f"{a['seconds']:.2f} s",
        f"{b['seconds']:.2f} s", f"{ratio(b['seconds'], a['seconds']):.2f}×")
    row("per member (socketmap_load)",
        " / ".join(f"{s:.2f}" for s in a["member_seconds"]) + " s",
        " / ".join(f"{s:.2f}" for s in b["member_seconds"]) + " s")
    row("lookup p50 (median member) / p99 (worst member)",
        f"{db.fmt_us(a['p50_us'])} / {db.fmt_us(a['p99_us'])}",
        f"{db.fmt_us(b['p50_us'])} / {db.fmt_us(b['p99_us'])}")
    row("policy fetches (GETs), total", f"{a['policy_gets']}", f"{b['policy_gets']}",
        f"{ratio(b['policy_gets'], a['policy_gets']):.2f}×")
    row("domains with GETs ≠ 1", f"{a['gets_not_one']}", f"{b['gets_not_one']}")
    def dns(c: dict) -> str:
        return f"{c['dns_bench']}" + (f" (+{c['dns_other']} other²)" if c["dns_other"] else "")

    row("DNS queries for the bench domains, total", dns(a), dns(b),
        f"{ratio(b['dns_bench'], a['dns_bench']):.2f}×")
    row("DNS queries per domain: mean (min–max)",
        f"{a['dns_per_domain_mean']:.2f} ({a['dns_per_domain_min']}–{a['dns_per_domain_max']})",
        f"{b['dns_per_domain_mean']:.2f} ({b['dns_per_domain_min']}–{b['dns_per_domain_max']})")
    row("DNS queries by type and name (@: the domain)",
        ", ".join(f"{k} {v}" for k, v in a["dns_by_type"].items()),
        ", ".join(f"{k} {v}" for k, v in b["dns_by_type"].items()))
    row("CPU: mtastsd (sum of three)", f"{a['daemon_cpu_s']:.2f} s", f"{b['daemon_cpu_s']:.2f} s",
        f"{ratio(b['daemon_cpu_s'], a['daemon_cpu_s']):.2f}×")
    row("CPU: redis-server", "–", f"{b['redis_cpu_s']:.2f} s ({b['redis_commands']} commands)")
    row("CPU: test world (DNS + HTTPS)", f"{a['world_cpu_s']:.2f} s", f"{b['world_cpu_s']:.2f} s",
        f"{ratio(b['world_cpu_s'], a['world_cpu_s']):.2f}×")
    m = b["metrics"]
    fl = "mtasts_fleet_lookups_total"
    row("fleet lookups¹: adopted / alone / waited (sum)", "–",
        " / ".join(str(sample(m, fl, "outcome", o)) for o in ("adopted", "alone", "waited")))
    row("fleet lookups: published / confirmed / refused / invalid", "–",
        " / ".join(str(sample(m, fl, "outcome", o))
                   for o in ("published", "confirmed", "refused", "invalid")))
    row("shared-cache reads: found / absent / invalid / unavailable", "–",
        " / ".join(str(sample(m, "mtasts_shared_cache_reads_total", "result", r))
                   for r in ("found", "absent", "invalid", "unavailable")))
    row("shared-cache locks acquired / busy; timeouts", "–",
        f"{sample(m, 'mtasts_shared_cache_locks_total', 'result', 'acquired')} / "
        f"{sample(m, 'mtasts_shared_cache_locks_total', 'result', 'busy')}; "
        f"{sample(m, 'mtasts_shared_cache_connection_events_total', 'event', 'timeout')}")
    per = [" / ".join(str(sample(d, fl, "outcome", o)) for o in ("adopted", "alone", "waited"))
           for d in b["metrics_each"]]
    row("… per member (adopted / alone / waited)", "–", "; ".join(per))
    text = "\n".join(rows)
    text += ("\n\n¹ fleet counters: deltas of mtasts_fleet_lookups_total{outcome} and "
             "mtasts_shared_cache_*_total over the cold run, summed over the three members' "
             "/metrics.")
    if a["dns_other"] or b["dns_other"]:
        other = collections.Counter(a["dns_other_names"]) + collections.Counter(
            b["dns_other_names"])
        text += ("\n² other: queries for names outside the bench domains during the cold run: "
                 + ", ".join(f"{k} ×{v}" for k, v in other.most_common(6)) + ".")
    return text


def warm_table(args: argparse.Namespace, results: dict) -> str:
    rows = ["| warm, one member of each fleet | without Redis | with Redis | Redis / without |",
            "|---|---|---|---|"]
    for c in args.connections:
        a, b = results["alone"]["warm"][c], results["redis"]["warm"][c]
        conn = "connection" if c == 1 else "connections"
        rows.append(f"| {c} {conn}: lookups/s (runs: "
                    f"{' '.join(f'{r:.0f}' for r in a['rates'])} ; "
                    f"{' '.join(f'{r:.0f}' for r in b['rates'])}) | {db.fmt_rate(a['rate'])} | "
                    f"{db.fmt_rate(b['rate'])} | {db.ratio(b['rate'], a['rate']):.2f}× |")
        rows.append(f"| {c} {conn}: p50 / p99 | {db.fmt_us(a['p50_us'])} / "
                    f"{db.fmt_us(a['p99_us'])} | {db.fmt_us(b['p50_us'])} / "
                    f"{db.fmt_us(b['p99_us'])} | |")
        rows.append(f"| {c} {conn}: server CPU per lookup | {a['cpu_us_per_lookup']:.1f} µs | "
                    f"{b['cpu_us_per_lookup']:.1f} µs | "
                    f"{db.ratio(b['cpu_us_per_lookup'], a['cpu_us_per_lookup']):.2f}× |")
        rows.append(f"| {c} {conn}: Redis meanwhile: CPU / commands / shared-cache reads | – | "
                    f"{b['redis_cpu_s_all']:.2f} s / {b['redis_commands_all']} / "
                    f"{b['shared_reads_all']:.0f} | |")
    return "\n".join(rows)


# --------------------------------------------------------------------------------------------
# Main


def inside(args: argparse.Namespace) -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(3))
    if args.nice:
        os.setpriority(os.PRIO_PROCESS, 0, args.nice)
    binary = args.build_dir / "src" / "daemon" / "mtastsd"
    for path in (binary, args.build_dir / "bench" / "socketmap_load"):
        if not path.exists():
            die(f"{path} is not built (cmake --build {args.build_dir} --target mtastsd "
                "socketmap_load)")
    if not Path(REDIS_SERVER).exists():
        die(f"{REDIS_SERVER} is missing (apt-get install redis-server)")
    if importlib.util.find_spec("redis") is None:
        die("python3-redis is missing (apt-get install python3-redis)")
    work = Path(tempfile.mkdtemp(prefix="mtasts-fleet-bench-"))
    work.chmod(0o755)
    world_proc = None
    fleets: list[Fleet] = []
    try:
        domains = db.bench_domains(args.domains)
        manifest = work / "manifest.json"
        db.write_manifest(manifest, domains)
        log(f"world: {len(domains)} bench domains + {len(db.check_domains())} check domains")
        world_proc, world = db.start_world(args.source_dir, work / "world", manifest)
        t0 = time.monotonic()
        db.prefetch_policies(world, domains + [d for d, (_, s, e) in db.check_domains().items()
                                               if s is not None and e[0] == "secure"])
        log(f"world: every policy host fetched once ({time.monotonic() - t0:.1f} s)")
        bench = Bench(args, work, world, world_proc.pid)

        def members(f: int, key: str, shared: dict | None) -> list[Member]:
            port = SOCKETMAP_BASE + 10 * f
            return [Member(work / f"{key}-{i + 1}", world, binary, f"{key}-{i + 1}", port + i,
                           port + METRICS_OFFSET + i, shared) for i in range(MEMBERS)]

        alone = Fleet("alone", "fleet without Redis", members(0, "alone", None), None)
        fleets.append(alone)
        redis_fleet = Fleet("redis", "fleet with Redis",
                            members(1, "redis", {"url": "", "timeout_ms": args.redis_timeout_ms}),
                            Redis(work / "redis"))
        fleets.append(redis_fleet)

        results: dict = {}
        for fleet in fleets:
            log(f"{fleet.label}: start {MEMBERS} mtastsd" + (", redis-server" if fleet.redis
                                                              else ""))
            fleet.start()
            log(f"{fleet.label}: cold, {MEMBERS} × {len(domains)} domains at concurrency "
                f"{args.cold_concurrency} each")
            cold = bench.cold(fleet)
            log(f"{fleet.label}: cold {cold['seconds']:.2f} s, {cold['policy_gets']} GETs "
                f"({cold['gets_not_one']} domains ≠ 1), {cold['dns_queries']} DNS queries")
            results[fleet.key] = {"cold": cold}
        for key, figures in bench.warm(fleets).items():
            results[key]["warm"] = figures
        # The check domains, one member after the other (in the fleet with Redis the later
        # ones take what the first shared): answers as daemon_bench expects them.
        log("check domains on every member")
        wrong = [line for fleet in fleets for m in fleet.members for line in bench.check(m)]
        results["check_wrong"] = wrong
        results["redis"]["log_lines"] = shared_cache_log_lines(redis_fleet.members)
        results["redis"]["redis_keys_end"] = redis_fleet.redis.keys()
        results["redis"]["redis_version"] = redis_fleet.redis.version

        load = os.getloadavg()
        header = (f"{datetime.date.today().isoformat()}, {os.cpu_count()} vCPU, "
                  f"{MEMBERS} mtastsd per fleet, shared_cache_timeout_ms "
                  f"{args.redis_timeout_ms}, warm {args.duration:g} s per run (median of "
                  f"{args.repeat}), mtastsd {version(args, binary)}, redis-server "
                  f"{redis_fleet.redis.version}, load average {load[0]:.2f}")
        text = cold_table(args, results) + "\n\n" + warm_table(args, results)
        notes = []
        b = results["redis"]["cold"]
        if b["gets_not_one"]:
            notes.append(f"with Redis, {b['gets_not_one']} domain(s) fetched other than once "
                         f"(GETs per domain: {b['gets_histogram']}): "
                         f"{', '.join(b['gets_not_one_ranges'][:12])}"
                         + (" …" if len(b["gets_not_one_ranges"]) > 12 else ""))
        if wrong:
            notes.append(f"{len(wrong)} wrong answers for the check domains:\n  "
                         + "\n  ".join(wrong))
        else:
            notes.append(f"the check domains (enforce, testing, none, no record, 404) answered "
                         f"as expected by all {2 * MEMBERS} members")
        ll = results["redis"]["log_lines"]
        m = b["metrics"]
        timeouts = sample(m, "mtasts_shared_cache_connection_events_total", "event", "timeout")
        alone = sample(m, "mtasts_fleet_lookups_total", "outcome", "alone")
        if timeouts or alone or any(v["count"] for v in ll.values()):
            notes.append(
                f"with Redis, cold: {timeouts} shared-cache call(s) timed out (no reply within "
                f"shared_cache_timeout_ms {args.redis_timeout_ms}), {alone} lookup(s) went "
                f"alone, {b['policy_gets'] - args.domains} policy GET(s) more than domains; "
                "the members' "
                "logs (info) have " + ", ".join(
                    f"{k}: {v['count']} shared-cache trouble lines ({v['timeouts']} about "
                    "timeouts)" for k, v in ll.items()))
        print(header)
        print()
        print(text)
        for n in notes:
            print(f"\nnote: {n}")
        if args.json:
            Path(args.json).write_text(json.dumps(
                {"header": header, "args": {k: str(v) for k, v in vars(args).items()},
                 "results": results}, indent=2, default=str))
        return 0
    finally:
        for fleet in fleets:
            fleet.stop()
        if world_proc is not None:
            db.stop_process(world_proc, group=True)
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    source = BENCH_DIR.parent
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build-dir", type=Path, required=True)
    p.add_argument("--source-dir", type=Path, default=source, help=argparse.SUPPRESS)
    p.add_argument("--domains", type=int, default=2000)
    p.add_argument("--cold-concurrency", type=int, default=128,
                   help="connections of each member's cold load generator")
    p.add_argument("--connections", default="16,64",
                   type=lambda s: [int(x) for x in s.split(",")])
    p.add_argument("--duration", type=float, default=5.0, help="seconds measured per warm run")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds before each warm run")
    p.add_argument("--repeat", type=int, default=3, help="warm runs per level (median shown)")
    p.add_argument("--redis-timeout-ms", type=int, default=100,
                   help="shared_cache_timeout_ms of the fleet with Redis")
    p.add_argument("--nice", type=int, default=-19,
                   help="scheduling priority of everything the bench starts (root only)")
    p.add_argument("--json", help="also write the raw figures here")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.build_dir = args.build_dir.resolve()
    if args.json:
        args.json = str(Path(args.json).resolve())
    if args.domains < 1 or args.repeat < 1 or args.cold_concurrency < 1:
        p.error("--domains, --repeat and --cold-concurrency must be >= 1")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.inside:
        return inside(args)
    if os.geteuid() != 0:
        die("needs root (a network namespace, DNS on port 53, HTTPS on port 443)")
    if shutil.which("ip") is None:
        die("needs iproute2 (ip)")
    # Relative paths (--build-dir, --json) are resolved here, so the child gets absolute ones.
    child_argv = ["--build-dir", str(args.build_dir)]
    for flag in ("domains", "cold_concurrency", "duration", "warmup", "repeat",
                 "redis_timeout_ms", "nice"):
        child_argv += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    child_argv += ["--connections", ",".join(map(str, args.connections)),
                   "--source-dir", str(args.source_dir)]
    if args.json:
        child_argv += ["--json", args.json]
    if args.keep:
        child_argv.append("--keep")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(3))
    with db.network_namespace() as ns:
        child = subprocess.Popen(["ip", "netns", "exec", ns, PYTHON, str(Path(__file__).resolve()),
                                  "--inside", *child_argv])
        try:
            return child.wait()
        finally:
            if child.poll() is None:
                # Let it stop its daemons and remove its work dir; the namespace's teardown
                # kills whatever is left.
                with contextlib.suppress(ProcessLookupError):
                    child.send_signal(signal.SIGTERM)
                try:
                    child.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
