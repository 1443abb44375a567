#!/usr/bin/python3
"""What DANE discovery costs mtastsd: cold and warm socketmap lookups of DANE domains, with DANE
on (a trust anchor) and off, and the `mtasts getmta` CLI, on a DNSSEC-signed test world.

    /usr/bin/python3 bench/dane_bench.py --build-dir build-stress [--domains 2000]
        [--cold-concurrency 128] [--cold-repeat 3] [--connections 1,16] [--duration 5]
        [--warmup 1] [--repeat 5] [--cli-cached 20] [--cli-fresh 5] [--nice -19]
        [--timeout 3600] [--json FILE] [--keep]

Needs root (a network namespace), iproute2, python3-dnslib and python3-cryptography (the test
world) and, in --build-dir, mtastsd, mtasts and bench/socketmap_load (cmake --build DIR
--target mtastsd mtasts socketmap_load).

It reuses bench/daemon_bench.py (imported as a module): its network namespace (resolv.conf
naming 127.0.0.1, so mtastsd's libunbound forwards to the world on port 53), its world start,
its mtastsd wrapper and its warm runs. What it does:
  1. Writes a manifest whose zone bench.example is DNSSEC-signed (tests/world/README.md,
     "DNSSEC"), with --domains DANE domains dNNNN.bench.example (MX 10 mx.<d>; mx.<d> A
     192.0.2.25; _25._tcp.mx.<d> TLSA 3 1 1 <sha256>; no _mta-sts TXT), --cli-fresh more of
     the same kind for the cold CLI figure, and two check domains (chk-notlsa: a host without
     TLSA; chk-bogus: a TLSA RRset with a broken signature). Every record has TTL 3600 (the
     world's default is 0), so a DANE state is kept dane_max_ttl = 3600 s. The world's DNSKEY,
     SOA and NSEC TTLs stay 0 (not configurable): libunbound may ask the DNSKEY again during
     the cold run; the figures count the queries the world saw.
  2. Starts mtastsd with DANE on (trust_anchor = the world's trust-anchors.key, dane = true),
     then a second one with DANE off (no trust_anchor), each with a new LMDB cache and its own
     port, and for each in turn:
       - check: asks the check domains (DANE on: NOTFOUND and TEMP; off: NOTFOUND both);
       - cold: asks every DANE domain once with --cold-concurrency connections; wall time from
         first request to last reply, p50/p99, the CPU time of the daemon and of the world, the
         world's DNS queries by type. Every reply must be `OK dane-only` (on) / `NOTFOUND` (off).
     --cold-repeat rounds of this (order flipping, each daemon restarted with a new cache and a
     new libunbound each round), the median by wall time shown.
     Then, both daemons up:
       - warm: per --connections level, closed-loop clients ask the cached domains round robin
         (bench/socketmap_load); --repeat rounds, the two daemons' runs interleaved (the order
         flips every round) so that other work on the machine weighs on both alike; the median
         by rate is shown. The world must see no DNS query during the warm runs.
     Then, daemons stopped, through the CLI with each daemon's config and cache (interleaved):
       - `mtasts getmta -- <cached domain>` wall time, median of --cli-cached runs;
       - a cold `getmta` of each --cli-fresh domain (a new process: a new libunbound, nothing
         cached; it writes the LMDB file), the median shown.
  3. Prints a table (DANE on | DANE off | what DANE adds), with --json the raw figures.

The world is one Python thread that signs every answer online (ECDSA P-256), so the cold
figures are bounded by it on a small machine: read the daemon's CPU per lookup for mtastsd's own
cost. postfix-mta-sts-resolver ignores DANE: there is nothing to compare it with here.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import daemon_bench as db  # noqa: E402

PYTHON = db.PYTHON
ZONE = db.BENCH_ZONE                   # bench.example, signed
TLSA_HASH = "a1" * 32                  # a SHA2-256 digest (3 1 1: DANE-EE, SPKI, SHA2-256)
RECORD_TTL = 3600
OFF_PORT = db.MTASTSD_PORT + 3         # the DANE-off daemon's socketmap port
CHECKS = {f"chk-notlsa.{ZONE}": {"on": "NOTFOUND", "off": "NOTFOUND"},
          f"chk-bogus.{ZONE}": {"on": "TEMP", "off": "NOTFOUND"}}
EXPECT_COLD = {"on": "OK dane-only", "off": "NOTFOUND"}
EXPECT_CLI = {"on": "dane", "off": "none"}


def die(message: str) -> None:
    print(f"dane_bench: {message}", file=sys.stderr)
    sys.exit(2)


db.die = die        # daemon_bench's helpers report through it
log = db.log


def fresh_domains(n: int) -> list[str]:
    return [f"cli{i:02d}.{ZONE}" for i in range(n)]


# --------------------------------------------------------------------------------------------
# The world


def dane_domain(name: str, *, tlsa: dict | None) -> dict:
    host = f"mx.{name}"
    dns = {name: {"MX": [[10, host]], "ttl": RECORD_TTL},
           host: {"A": ["192.0.2.25"], "ttl": RECORD_TTL}}
    if tlsa is not None:
        dns[f"_25._tcp.{host}"] = {"ttl": RECORD_TTL, **tlsa}
    return dns


def write_manifest(path: Path, domains: list[str], fresh: list[str]) -> None:
    dns: dict = {}
    notes: dict = {}
    usable = {"TLSA": [[3, 1, 1, TLSA_HASH]]}
    for d in domains + fresh:
        dns.update(dane_domain(d, tlsa=usable))
        notes[d] = "dane_bench: every MX host has usable TLSA: OK dane-only / getmta dane"
    dns.update(dane_domain(f"chk-notlsa.{ZONE}", tlsa=None))
    notes[f"chk-notlsa.{ZONE}"] = "dane_bench check: no TLSA (secure denial): NOTFOUND"
    dns.update(dane_domain(f"chk-bogus.{ZONE}", tlsa={**usable, "bogus": True}))
    notes[f"chk-bogus.{ZONE}"] = "dane_bench check: bogus TLSA signature: TEMP"
    path.write_text(json.dumps({"dnssec": {"zones": {ZONE: "signed"}}, "dns": dns,
                                "domains": notes}))


def control(world: dict, method: str, path: str) -> dict:
    request = urllib.request.Request(f"http://{world['control']}{path}", method=method)
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read() or b"null")


def dns_queries(world: dict) -> Counter:
    """The world's DNS queries since the last clear, by type; then clears the log."""
    counts = Counter(e["type"] for e in control(world, "GET", "/log")["dns"])
    control(world, "POST", "/log/clear")
    return counts


# --------------------------------------------------------------------------------------------
# mtastsd with and without DANE


class DaneMtastsd(db.Mtastsd):
    def __init__(self, work: Path, world: dict, binary: Path, dane: bool):
        super().__init__(work, world, "tcp", binary)
        self.dane = dane
        self.port = db.MTASTSD_PORT if dane else OFF_PORT   # both run at once
        self.name = "on" if dane else "off"
        self.label = f"mtastsd, DANE {self.name}"
        self.config = work / "mtasts.toml"

    def connect_spec(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        if self.work.exists():
            shutil.rmtree(self.work)
        self.work.mkdir(parents=True)
        # resolver unset: libunbound reads /etc/resolv.conf (the namespace's: 127.0.0.1).
        lines = [f"cache = {json.dumps(str(self.work / 'cache.mdb'))}",
                 f"ca_file = {json.dumps(self.world['ca_file'])}",
                 "https_port = 443",
                 'log_level = "info"',
                 'log_target = "stderr"']
        if self.dane:
            lines += [f"trust_anchor = {json.dumps(self.world['trust_anchor_file'])}",
                      "dane = true"]
        lines += ["", "[daemon]", 'exim_socket = ""',
                  f"socketmap_socket = {json.dumps(str(self.work / 'socketmap.sock'))}",
                  f'socketmap_listen = "127.0.0.1:{self.port}"', ""]
        self.config.write_text("\n".join(lines))
        self.proc = subprocess.Popen([str(self.binary), "--config", str(self.config)],
                                     stdout=open(self.work / "daemon.log", "wb"),
                                     stderr=subprocess.STDOUT)
        self.wait_ready()


# --------------------------------------------------------------------------------------------
# Runs


class Bench(db.Bench):
    """daemon_bench's Bench (its warm runs), with timeouts and DANE's checks."""

    def socketmap_load(self, daemon: db.Daemon, extra: list[str], timeout: float | None = None,
                       domains_file: Path | None = None) -> dict:
        cmd = [str(self.load), "--connect", daemon.connect_spec(), "--map", "postfix",
               "--domains-file", str(domains_file or self.domains_file), *extra]
        if timeout is None:   # a warm run
            timeout = self.args.warmup + self.args.duration + 120
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            die(f"socketmap_load against {daemon.label} took over {timeout:.0f} s\n"
                f"daemon log tail:\n{daemon.log()[-3000:]}")
        if r.returncode != 0:
            die(f"socketmap_load against {daemon.label} failed ({r.returncode}): {r.stderr}\n"
                f"daemon log tail:\n{daemon.log()[-3000:]}")
        return json.loads(r.stdout)

    def check(self, daemon: DaneMtastsd) -> None:
        listing = self.work / f"check-{daemon.name}.txt"
        listing.write_text("\n".join(CHECKS) + "\n")
        replies_file = self.work / f"check-{daemon.name}.replies"
        self.socketmap_load(daemon, ["--replies", str(replies_file)], timeout=120,
                            domains_file=listing)
        replies = db.read_replies(replies_file)
        bad = [f"{d}: {replies.get(d)!r}, expected {e[daemon.name]}…" for d, e in CHECKS.items()
               if not replies.get(d, "").startswith(e[daemon.name])]
        if bad:
            die(f"{daemon.label} answers check domains wrongly:\n  " + "\n  ".join(bad))

    def cold(self, daemon: DaneMtastsd) -> dict:
        replies_file = self.work / f"cold-{daemon.name}.replies"
        dns_queries(self.world)
        cpu0, wcpu0 = daemon.cpu(), db.cpu_seconds(self.world_pid)
        result = self.socketmap_load(daemon, ["--connections", str(self.args.cold_concurrency),
                                              "--threads", "1", "--replies", str(replies_file)],
                                     timeout=self.args.cold_timeout)
        result["daemon_cpu_s"] = daemon.cpu() - cpu0
        result["world_cpu_s"] = db.cpu_seconds(self.world_pid) - wcpu0
        result["dns_queries"] = dict(dns_queries(self.world))
        replies = db.read_replies(replies_file)
        want = EXPECT_COLD[daemon.name]
        bad = [f"{d}: {replies.get(d)!r}" for d in self.domains
               if replies.get(d, "").rstrip() != want]
        if bad:
            die(f"{daemon.label}: {len(bad)} of {len(self.domains)} cold answers are not "
                f"{want!r}, e.g.\n  " + "\n  ".join(bad[:10]) +
                f"\ndaemon log tail:\n{daemon.log()[-3000:]}")
        return result

    def warm_once(self, daemon: DaneMtastsd, connections: int) -> dict:
        cpu0 = daemon.cpu()
        r = self.socketmap_load(daemon, [
            "--connections", str(connections), "--threads", "1",
            "--duration", str(self.args.duration), "--warmup", str(self.args.warmup)])
        r["daemon_cpu_s"] = daemon.cpu() - cpu0
        if r["errors"] or r["mismatches"]:
            die(f"{daemon.label}: warm run at {connections} connections had "
                f"{r['errors']} errors and {r['mismatches']} changed replies")
        return r

    def run(self, daemons: list[DaneMtastsd]) -> dict:
        results = {d.name: {"warm": {}} for d in daemons}
        try:
            # Cold: --cold-repeat rounds, each daemon started afresh (new cache, new libunbound)
            # every round, the order flipping; the median by wall time is shown. The world is
            # the bottleneck here and other work on the machine moves it a lot.
            colds: dict[str, list[dict]] = {d.name: [] for d in daemons}
            for i in range(self.args.cold_repeat):
                for daemon in (daemons if i % 2 == 0 else daemons[::-1]):
                    daemon.stop()
                    log(f"{daemon.label}: start, check answers")
                    daemon.start()
                    self.check(daemon)
                    log(f"{daemon.label}: cold, {len(self.domains)} domains at concurrency "
                        f"{self.args.cold_concurrency}")
                    cold = self.cold(daemon)
                    colds[daemon.name].append(cold)
                    log(f"{daemon.label}: cold {cold['seconds']:.2f} s, p50 {cold['p50_us']:.0f} "
                        f"us, p99 {cold['p99_us']:.0f} us, DNS queries {cold['dns_queries']}")
            for daemon in daemons:
                rs = sorted(colds[daemon.name], key=lambda r: r["seconds"])
                results[daemon.name]["cold"] = dict(rs[len(rs) // 2])
                results[daemon.name]["cold"]["all_seconds"] = [r["seconds"] for r in rs]
                results[daemon.name]["version"] = self.version(daemon)
            # Warm: both daemons up (the idle one costs nothing), their runs interleaved, so
            # that other work on the machine weighs on both alike.
            runs = {(d.name, c): [] for d in daemons for c in self.args.connections}
            for i in range(self.args.repeat):
                for c in self.args.connections:
                    for daemon in (daemons if i % 2 == 0 else daemons[::-1]):
                        runs[daemon.name, c].append(self.warm_once(daemon, c))
                log(f"warm round {i + 1} of {self.args.repeat}: " + ", ".join(
                    f"DANE {n} {c} conn. {rs[-1]['rate']:.0f}/s" for (n, c), rs in runs.items()))
            for (name, c), rs in runs.items():
                rs.sort(key=lambda r: r["rate"])
                chosen = dict(rs[len(rs) // 2])
                chosen["rates"] = [r["rate"] for r in rs]
                results[name]["warm"][c] = chosen
                log(f"DANE {name}, warm {c} connections: {chosen['rate']:.0f}/s "
                    f"p50 {chosen['p50_us']:.1f} us p99 {chosen['p99_us']:.1f} us")
            warm_queries = dict(dns_queries(self.world))
            if warm_queries:
                log(f"WARNING: the world saw DNS queries during the warm runs: {warm_queries}")
            for daemon in daemons:
                results[daemon.name]["warm_dns_queries"] = warm_queries
        finally:
            for daemon in daemons:
                daemon.stop()
        log("CLI getmta (daemons stopped)")
        results.update({name: {**results[name], "cli": cli}
                        for name, cli in self.cli(daemons).items()})
        dns_queries(self.world)
        return results

    def cli(self, daemons: list[DaneMtastsd]) -> dict:
        """getmta through the CLI with each daemon's config and cache, interleaved."""
        mtasts = str(self.args.build_dir / "src" / "cli" / "mtasts")

        def getmta(daemon: DaneMtastsd, domain: str) -> float:
            want = EXPECT_CLI[daemon.name]
            cmd = [mtasts, "--config", str(daemon.config), "getmta", "--", domain]
            t0 = time.perf_counter()
            try:
                r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
            except subprocess.TimeoutExpired:
                die(f"{' '.join(cmd)} took over 60 s")
            seconds = time.perf_counter() - t0
            if r.returncode != 0 or r.stdout != want:
                die(f"{' '.join(cmd)}: exit {r.returncode}, {r.stdout!r} (expected {want!r}), "
                    f"{r.stderr.strip()}")
            return seconds

        cached = self.domains[len(self.domains) // 2]
        out = {d.name: {"cached_domain": cached, "cached_s": [], "fresh_s": []} for d in daemons}
        for daemon in daemons:
            getmta(daemon, cached)   # page cache, binary loaded
        for _ in range(self.args.cli_cached):
            for daemon in daemons:
                out[daemon.name]["cached_s"].append(getmta(daemon, cached))
        # The same fresh domains for both: each cache has never seen them, and every CLI run is
        # a new process with a new libunbound (nothing cached in between but the LMDB file).
        for domain in fresh_domains(self.args.cli_fresh):
            for daemon in daemons:
                out[daemon.name]["fresh_s"].append(getmta(daemon, domain))
        for daemon in daemons:
            o = out[daemon.name]
            o["cached_median_s"] = statistics.median(o["cached_s"])
            o["fresh_median_s"] = statistics.median(o["fresh_s"])
            r = subprocess.run([mtasts, "--config", str(daemon.config), "query", "--json", "--",
                                cached], capture_output=True, text=True, timeout=60)
            with contextlib.suppress(ValueError, AttributeError):
                o["query_dane"] = json.loads(r.stdout).get("entry", {}).get("dane") or {}
            log(f"{daemon.label}: CLI cached {o['cached_median_s'] * 1000:.1f} ms, fresh "
                f"{o['fresh_median_s'] * 1000:.1f} ms; DANE state of {cached}: "
                f"{o.get('query_dane')}")
        return out


# --------------------------------------------------------------------------------------------
# The table


def table(args: argparse.Namespace, results: dict) -> str:
    on, off = results["on"], results["off"]
    fmt_us, fmt_rate = db.fmt_us, db.fmt_rate
    rows = ["| mtastsd, socketmap | DANE on | DANE off | DANE adds |", "|---|---|---|---|"]

    def row(*cells: str) -> None:
        rows.append("| " + " | ".join(cells) + " |")

    n = args.domains
    o, f = on["cold"], off["cold"]
    def spread(c: dict) -> str:
        return (f"{c['seconds']:.2f} s ({min(c['all_seconds']):.2f}–"
                f"{max(c['all_seconds']):.2f})")

    row(f"cold: {n} distinct domains, concurrency {args.cold_concurrency}, wall "
        f"(median, range of {args.cold_repeat})", spread(o), spread(f),
        f"{o['seconds'] - f['seconds']:+.2f} s")
    row("cold: p50 / p99 per lookup", f"{fmt_us(o['p50_us'])} / {fmt_us(o['p99_us'])}",
        f"{fmt_us(f['p50_us'])} / {fmt_us(f['p99_us'])}", "")
    row("cold: CPU per lookup, daemon + world",
        f"{o['daemon_cpu_s'] / n * 1000:.2f} + {o['world_cpu_s'] / n * 1000:.2f} ms",
        f"{f['daemon_cpu_s'] / n * 1000:.2f} + {f['world_cpu_s'] / n * 1000:.2f} ms",
        f"{(o['daemon_cpu_s'] - f['daemon_cpu_s']) / n * 1000:+.2f} ms (daemon)")

    def queries(c: dict) -> str:
        total = sum(c["dns_queries"].values())
        kinds = ", ".join(f"{k} {v / n:.2f}" for k, v in sorted(c["dns_queries"].items(),
                                                                key=lambda kv: -kv[1]))
        return f"{total / n:.2f} ({kinds})"

    row("cold: DNS queries the world saw, per lookup", queries(o), queries(f), "")
    for c in args.connections:
        wo, wf = on["warm"][c], off["warm"][c]
        conn = "connection" if c == 1 else "connections"
        row(f"warm, {c} {conn}: lookups/s", fmt_rate(wo["rate"]), fmt_rate(wf["rate"]),
            f"{wo['rate'] / wf['rate']:.2f}× the rate" if wf["rate"] else "")
        row(f"warm, {c} {conn}: p50 / p99", f"{fmt_us(wo['p50_us'])} / {fmt_us(wo['p99_us'])}",
            f"{fmt_us(wf['p50_us'])} / {fmt_us(wf['p99_us'])}", "")
    cpu = [lambda d, c=c: d["warm"][c]["daemon_cpu_s"] / max(d["warm"][c]["all_requests"], 1) * 1e6
           for c in args.connections]
    row(f"warm: server CPU per lookup ({' / '.join(map(str, args.connections))} conn.)",
        " / ".join(f"{g(on):.1f}" for g in cpu) + " µs",
        " / ".join(f"{g(off):.1f}" for g in cpu) + " µs", "")
    row(f"CLI `mtasts getmta`, cached domain (median of {args.cli_cached})",
        f"{on['cli']['cached_median_s'] * 1000:.1f} ms",
        f"{off['cli']['cached_median_s'] * 1000:.1f} ms",
        f"{(on['cli']['cached_median_s'] - off['cli']['cached_median_s']) * 1000:+.1f} ms")
    row(f"CLI `mtasts getmta`, fresh domain (median of {args.cli_fresh})",
        f"{on['cli']['fresh_median_s'] * 1000:.1f} ms",
        f"{off['cli']['fresh_median_s'] * 1000:.1f} ms",
        f"{(on['cli']['fresh_median_s'] - off['cli']['fresh_median_s']) * 1000:+.1f} ms")
    return "\n".join(rows)


# --------------------------------------------------------------------------------------------
# Main


def on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


def inside(args: argparse.Namespace) -> int:
    signal.signal(signal.SIGTERM, on_sigterm)
    if args.nice:
        os.setpriority(os.PRIO_PROCESS, 0, args.nice)
    for path in (args.build_dir / "src" / "daemon" / "mtastsd",
                 args.build_dir / "src" / "cli" / "mtasts",
                 args.build_dir / "bench" / "socketmap_load"):
        if not path.exists():
            die(f"{path} is not built (cmake --build {args.build_dir} --target mtastsd mtasts "
                "socketmap_load)")
    work = Path(tempfile.mkdtemp(prefix="mtasts-dane-bench-"))
    work.chmod(0o755)
    world_proc = None
    daemons: list[DaneMtastsd] = []
    try:
        domains = db.bench_domains(args.domains)
        manifest = work / "manifest.json"
        write_manifest(manifest, domains, fresh_domains(args.cli_fresh))
        log(f"world: {len(domains)} DANE domains + {args.cli_fresh} fresh + "
            f"{len(CHECKS)} check domains, {ZONE} signed")
        world_proc, world = db.start_world(args.source_dir, work / "world", manifest)
        if not world.get("trust_anchor_file") or \
                not Path(world["trust_anchor_file"]).read_text().strip():
            die(f"the world wrote no trust anchor: {world}")
        bench = Bench(args, work, world, world_proc.pid)
        binary = args.build_dir / "src" / "daemon" / "mtastsd"
        daemons = [DaneMtastsd(work / ("dane-on" if dane else "dane-off"), world, binary, dane)
                   for dane in (True, False)]
        results = bench.run(daemons)
        load = os.getloadavg()
        header = (f"{datetime.date.today().isoformat()}, {os.cpu_count()} vCPU, transport tcp, "
                  f"warm {args.duration:g} s per run (median of {args.repeat}), "
                  f"mtastsd {results['on']['version']}, load average {load[0]:.2f}")
        print(header)
        print()
        print(table(args, results))
        if results["on"]["warm_dns_queries"]:
            print("\nnote: the world saw DNS queries during the warm runs (not warm): "
                  f"{results['on']['warm_dns_queries']}")
        if args.json:
            Path(args.json).write_text(json.dumps(
                {"header": header, "args": {k: str(v) for k, v in vars(args).items()},
                 "results": results}, indent=2, default=str))
        return 0
    finally:
        for daemon in daemons:
            daemon.stop()
        if world_proc is not None:
            db.stop_process(world_proc, group=True)
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    source = Path(__file__).resolve().parent.parent
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build-dir", type=Path, default=source / "build")
    p.add_argument("--source-dir", type=Path, default=source)
    p.add_argument("--domains", type=int, default=2000)
    p.add_argument("--cold-concurrency", type=int, default=128)
    p.add_argument("--connections", default="1,16",
                   type=lambda s: [int(x) for x in s.split(",")])
    p.add_argument("--duration", type=float, default=5.0, help="seconds measured per warm run")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds before each warm run")
    p.add_argument("--repeat", type=int, default=5, help="warm runs per level (median shown)")
    p.add_argument("--cli-cached", type=int, default=20, help="getmta runs on a cached domain")
    p.add_argument("--cli-fresh", type=int, default=5, help="cold getmta runs, one per domain")
    p.add_argument("--cold-repeat", type=int, default=3,
                   help="cold runs per daemon, each with a new cache (median shown)")
    p.add_argument("--cold-timeout", type=float, default=900,
                   help="seconds the cold run may take at most")
    p.add_argument("--timeout", type=float, default=3600,
                   help="seconds the whole bench may take; then everything is killed")
    p.add_argument("--nice", type=int, default=-19,
                   help="scheduling priority of everything the bench starts (root only)")
    p.add_argument("--json", help="also write the raw figures here")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.build_dir = args.build_dir.resolve()
    if min(args.domains, args.cli_cached, args.cli_fresh, args.repeat, args.cold_repeat) < 1:
        p.error("--domains, --cli-cached, --cli-fresh, --repeat and --cold-repeat must be at "
                "least 1")
    if args.json:
        args.json = str(Path(args.json).resolve())
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.inside:
        return inside(args)
    if os.geteuid() != 0:
        die("needs root (a network namespace, DNS on port 53)")
    if shutil.which("ip") is None:
        die("needs iproute2 (ip)")
    signal.signal(signal.SIGTERM, on_sigterm)
    # The namespace's teardown kills whatever still runs in it (world, daemon, load generator).
    with db.network_namespace() as ns:
        proc = subprocess.Popen(["ip", "netns", "exec", ns, PYTHON, str(Path(__file__).resolve()),
                                 "--inside", *argv])
        try:
            return proc.wait(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            log(f"the bench took over {args.timeout:.0f} s: stopping it")
            return 124
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
