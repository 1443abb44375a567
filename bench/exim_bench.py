#!/usr/bin/python3
"""What an MTA-STS answer costs inside Exim: the mtasts ${dlfunc} module next to the Perl tool's
approach (${perl{getmta}} over the same LMDB cache through LMDB_File, as "MTASTS-EXIM-PERL"'s
mta-lmdb.pl does; bench/perl/mta_lmdb.pl) and next to the CLI through ${run}.

    /usr/bin/python3 bench/exim_bench.py --build-dir build [--runs 200] [--calls 20000]

Needs root (exim4 -C keeps root only for root), exim4-daemon-heavy (dlfunc and perl),
liblmdb-file-perl, and a built mtasts_exim.so and mtasts CLI. It starts the test world
(tests/world/world.py) on free ports, seeds the cache by running the CLI once, then measures
for one cached domain:

  first call   median wall time of `exim4 -C cfg -be '<one call>'` minus the median of the same
               with a constant expansion, over --runs fresh processes each (interleaved). This
               is what a delivery process pays: loading the module (or starting Perl), reading
               the config, opening the cache, one lookup.
  later call   (time of one expansion making --calls calls - time of one making 1 call) /
               (--calls - 1), each a median of 5 processes; also shown net of Exim's own loop
               cost (${reduce} over a constant).
  CLI call     median of `mtasts getmta D` minus the median of `true`: the cost of ${run}.
  TTL lapsed   the first call in a fresh process when the cached entry's `_mta-sts` TXT TTL
               has passed (RFC 8461 §8.1): the module re-checks the id inline (TXT and
               _smtp._tls queries to the world, same id: no fetch) and stores the entry. Each
               run starts from a copy of a cache whose entry is stale.

The world serves DOMAIN's TXT record with an hour's TTL (a cached entry stays fresh throughout)
and LAPSED_DOMAIN's with one second.

Targets for the module (design §2.1): first call <= 0.5 ms, later calls <= 2 us.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

EXIM = "/usr/sbin/exim4"
PYTHON = "/usr/bin/python3"
DOMAIN = "enforce.example"
LAPSED_DOMAIN = "testing.example"
TARGET_FIRST_MS = 0.5
TARGET_LATER_US = 2.0


def die(message: str) -> None:
    print(f"exim_bench: {message}", file=sys.stderr)
    sys.exit(2)


def start_world(source: Path, state: Path) -> tuple[subprocess.Popen, dict]:
    state.mkdir(parents=True, exist_ok=True)
    log = open(state / "world.log", "wb")
    proc = subprocess.Popen([PYTHON, str(source / "tests" / "world" / "world.py"),
                             "--state-dir", str(state), "--lifetime", "1800"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 30
    while not (state / "world.json").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            die(f"the test world did not start: {(state / 'world.log').read_text()}")
        time.sleep(0.05)
    return proc, json.loads((state / "world.json").read_text())


def stop_world(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass


def set_txt_ttl(world: dict, name: str, ttl: int) -> None:
    """Serves `name`'s data with `ttl` (the world's control API)."""
    host, port = world["control"].rsplit(":", 1)
    path = "/dns/" + urllib.parse.quote(name, safe="")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        data = json.loads(response.read())
        if response.status != 200:
            die(f"GET {path}: {response.status} {data}")
        connection.request("PUT", path, body=json.dumps({**data, "ttl": ttl}),
                           headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        answer = response.read()
        if response.status != 200:
            die(f"PUT {path}: {response.status} {answer!r}")
    finally:
        connection.close()


def sanitized_build(build: Path) -> bool:
    cache = build / "CMakeCache.txt"
    return cache.exists() and any(line.startswith("MTASTS_SANITIZE:BOOL=ON")
                                  for line in cache.read_text().splitlines())


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path, world: dict):
        self.args = args
        self.work = work
        self.module = args.build_dir / "src" / "exim" / "mtasts_exim.so"
        self.cli = args.build_dir / "src" / "cli" / "mtasts"
        self.cache = work / "cache.mdb"
        self.mtasts_config = work / "mtasts.toml"
        self.mtasts_config.write_text("\n".join([
            f"cache = {json.dumps(str(self.cache))}",
            f"resolver = [{json.dumps(world['dns'])}]",
            f"ca_file = {json.dumps(world['ca_file'])}",
            f"https_port = {int(world['https_port'])}",
            'log_level = "warning"',
        ]) + "\n")
        self.env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C",
                    "MTASTS_CONFIG": str(self.mtasts_config)}
        if sanitized_build(args.build_dir):
            print("warning: this is a sanitizer build; figures are not representative",
                  file=sys.stderr)
            asan = subprocess.run(["g++", "-print-file-name=libasan.so"], capture_output=True,
                                  text=True).stdout.strip()
            self.env.update(LD_PRELOAD=os.path.realpath(asan), ASAN_OPTIONS="detect_leaks=0")
        perl_script = args.source_dir / "bench" / "perl" / "mta_lmdb.pl"
        (work / "spool").mkdir()
        (work / "log").mkdir()
        self.list_1 = work / "list-1"
        self.list_1.write_text("1")
        self.list_n = work / "list-n"
        self.list_n.write_text(":".join(["1"] * args.calls))
        self.exim_config = work / "exim.conf"
        self.exim_config.write_text("\n".join([
            "primary_hostname = bench.invalid",
            f"spool_directory = {work / 'spool'}",
            f"log_file_path = {work / 'log'}/%slog",
            "keep_environment = MTASTS_CONFIG",
            # Exim does not expand perl_startup; it is Perl code run when Perl starts (at the
            # first ${perl} in a process, perl_at_start being false).
            f"perl_startup = our $MTA_LMDB_CACHE = '{self.cache}'; "
            f"do '{perl_script}' or die \"mta_lmdb.pl: $@ $!\"",
            "",
        ]))
        for p in (self.exim_config, self.mtasts_config, self.list_1, self.list_n):
            p.chmod(0o644)

    # -- expansions
    def dlfunc(self) -> str:
        return "${dlfunc{%s}{getmta}{%s}}" % (self.module, DOMAIN)

    @staticmethod
    def perl(function: str = "getmta") -> str:
        return "${perl{%s}{%s}}" % (function, DOMAIN)

    @staticmethod
    def loop(list_file: Path, body: str) -> str:
        return "${reduce{${readfile{%s}}}{}{%s}}" % (list_file, body)

    # -- running
    def exim(self, expression: str) -> str:
        r = subprocess.run([EXIM, "-C", str(self.exim_config), "-be", expression],
                           capture_output=True, text=True, env=self.env)
        if r.returncode != 0:
            die(f"exim -be {expression[:120]!r} failed ({r.returncode}): {r.stdout}{r.stderr}")
        return r.stdout.strip()

    def timed(self, argv: list[str]) -> float:
        start = time.perf_counter()
        r = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           env=self.env)
        elapsed = time.perf_counter() - start
        if r.returncode != 0:
            die(f"{argv[:4]} failed with {r.returncode}")
        return elapsed

    def timed_exim(self, expression: str) -> float:
        return self.timed([EXIM, "-C", str(self.exim_config), "-be", expression])

    def medians(self, variants: dict[str, list[str]], runs: int) -> dict[str, float]:
        """Median wall time per variant, runs interleaved so drift hits all alike."""
        times: dict[str, list[float]] = {k: [] for k in variants}
        for name, argv in variants.items():  # warm the page cache
            self.timed(argv)
        for _ in range(runs):
            for name, argv in variants.items():
                times[name].append(self.timed(argv))
        return {k: statistics.median(v) for k, v in times.items()}

    # -- the figures
    def check_answers(self) -> None:
        answers = {
            "dlfunc": self.exim(self.dlfunc()),
            "perl": self.exim(self.perl()),
            "perl-keep": self.exim(self.perl("getmta_keep")),
        }
        if set(answers.values()) != {"enforce"}:
            die(f"the cache does not answer enforce for {DOMAIN} everywhere: {answers}")

    def first_call(self) -> dict[str, float]:
        exim = [EXIM, "-C", str(self.exim_config), "-be"]
        m = self.medians({
            "baseline": exim + ["enforce"],
            "dlfunc": exim + [self.dlfunc()],
            "perl": exim + [self.perl()],
            "perl-keep": exim + [self.perl("getmta_keep")],
        }, self.args.runs)
        return {k: m[k] - m["baseline"] for k in ("dlfunc", "perl", "perl-keep")} | {
            "baseline": m["baseline"]}

    def later_call(self) -> dict[str, float]:
        n = self.args.calls
        bodies = {"loop": "enforce", "dlfunc": self.dlfunc(), "perl": self.perl(),
                  "perl-keep": self.perl("getmta_keep")}
        result = {}
        for name, body in bodies.items():
            one = statistics.median(self.timed_exim(self.loop(self.list_1, body))
                                    for _ in range(5))
            many = statistics.median(self.timed_exim(self.loop(self.list_n, body))
                                     for _ in range(5))
            result[name] = (many - one) / (n - 1)
        return result

    def lapsed_call(self, runs: int) -> dict[str, float]:
        """First call in a fresh process whose cached entry's TXT TTL has passed."""
        stale = self.work / "stale.mdb"
        seed = subprocess.run([str(self.cli), "getmta", LAPSED_DOMAIN], capture_output=True,
                              text=True, env=self.env)
        if seed.returncode != 0 or seed.stdout.strip() != "testing":
            die(f"seeding {LAPSED_DOMAIN} failed: {seed.stdout}{seed.stderr}")
        time.sleep(2.5)  # its one-second TTL has passed: the entry is stale from now on
        shutil.copy(self.cache, stale)
        expression = "${dlfunc{%s}{getmta}{%s}}" % (self.module, LAPSED_DOMAIN)
        exim = [EXIM, "-C", str(self.exim_config), "-be"]
        times: dict[str, list[float]] = {"baseline": [], "lapsed": []}
        for _ in range(runs):
            times["baseline"].append(self.timed(exim + ["testing"]))
            shutil.copy(stale, self.cache)
            for suffix in ("-lock",):
                Path(str(self.cache) + suffix).unlink(missing_ok=True)
            times["lapsed"].append(self.timed(exim + [expression]))
        if self.exim(expression) != "testing":
            die(f"{LAPSED_DOMAIN} does not answer testing after its re-check")
        m = {k: statistics.median(v) for k, v in times.items()}
        return {"lapsed": m["lapsed"] - m["baseline"]}

    def cli_call(self) -> dict[str, float]:
        m = self.medians({"true": ["/bin/true"], "cli": [str(self.cli), "getmta", DOMAIN]},
                         self.args.runs)
        return {"cli": m["cli"] - m["true"], "true": m["true"]}


def ratio(other: float, ours: float) -> str:
    if ours <= 0:
        return "n/a"
    return f"{other / ours:.1f}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build-dir", type=Path, default=Path("build"))
    parser.add_argument("--source-dir", type=Path,
                        default=Path(__file__).resolve().parents[1])
    parser.add_argument("--runs", type=int, default=200, help="fresh processes per variant")
    parser.add_argument("--calls", type=int, default=20000, help="calls in the long expansion")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args()
    args.build_dir = args.build_dir.resolve()
    args.source_dir = args.source_dir.resolve()

    if os.geteuid() != 0:
        die("run as root: exim4 -C keeps its privileges (and loads the config) only for root")
    for need in (EXIM, args.build_dir / "src" / "exim" / "mtasts_exim.so",
                 args.build_dir / "src" / "cli" / "mtasts"):
        if not Path(need).exists():
            die(f"{need} is missing")
    if subprocess.run(["perl", "-MLMDB_File", "-e1"]).returncode != 0:
        die("perl cannot load LMDB_File (apt install liblmdb-file-perl)")

    work = Path(tempfile.mkdtemp(prefix="mtasts-exim-bench-"))
    work.chmod(0o755)
    world_proc = None
    try:
        world_proc, world = start_world(args.source_dir, work / "world")
        set_txt_ttl(world, f"_mta-sts.{DOMAIN}", 3600)
        set_txt_ttl(world, f"_mta-sts.{LAPSED_DOMAIN}", 1)
        bench = Bench(args, work, world)
        seed = subprocess.run([str(bench.cli), "getmta", DOMAIN], capture_output=True,
                              text=True, env=bench.env)
        if seed.returncode != 0 or seed.stdout.strip() != "enforce":
            die(f"seeding the cache failed: rc={seed.returncode} {seed.stdout}{seed.stderr}")
        bench.check_answers()

        first = bench.first_call()
        later = bench.later_call()
        cli = bench.cli_call()
        lapsed = bench.lapsed_call(min(args.runs, 100))
    finally:
        if world_proc is not None:
            stop_world(world_proc)
        if args.keep:
            print(f"scratch directory kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)

    ms = 1e3
    us = 1e6
    net = {k: later[k] - later["loop"] for k in ("dlfunc", "perl", "perl-keep")}
    print(f"Exim {DOMAIN!r} (cached enforce policy): {args.runs} fresh processes per variant, "
          f"{args.calls} calls per long expansion")
    print(f"exim -be with a constant expansion: {first['baseline'] * ms:.2f} ms per process; "
          f"Exim's ${{reduce}} loop: {later['loop'] * us:.2f} us per item")
    print()
    header = f"{'':34}{'mtasts dlfunc':>16}{'perl (open/call)':>22}{'perl (env kept)':>22}" \
             f"{'target':>12}"
    print(header)
    print("-" * len(header))

    def row(label, ours, perl_open, perl_keep, unit, scale, target):
        verdict = ("ok" if ours * scale <= target else "MISSED") if target else ""
        tgt = f"<= {target:g} {unit} {verdict}" if target else ""
        print(f"{label:34}{ours * scale:>13.2f} {unit:<2}"
              f"{perl_open * scale:>12.2f} {unit:<2}({ratio(perl_open, ours):>6})"
              f"{perl_keep * scale:>12.2f} {unit:<2}({ratio(perl_keep, ours):>6})  {tgt}")

    row("first call in a fresh process", first["dlfunc"], first["perl"], first["perl-keep"],
        "ms", ms, TARGET_FIRST_MS)
    row("later call (N vs 1, raw)", later["dlfunc"], later["perl"], later["perl-keep"], "us",
        us, TARGET_LATER_US)
    row("later call (net of Exim's loop)", net["dlfunc"], net["perl"], net["perl-keep"], "us",
        us, 0)
    print(f"{'CLI per call (mtasts getmta - true)':34}{cli['cli'] * ms:>13.2f} ms"
          f"   ({ratio(cli['cli'], first['dlfunc'])} the dlfunc first call, "
          f"{ratio(cli['cli'], later['dlfunc'])} a later dlfunc call)")
    print(f"{'first call, TXT TTL lapsed':34}{lapsed['lapsed'] * ms:>13.2f} ms"
          f"   (re-checks the id inline: {LAPSED_DOMAIN}, same id, no fetch)")
    print()
    print("Ratios are the other approach's cost over the dlfunc module's (higher: dlfunc "
          "cheaper). Perl 'open/call' opens the LMDB environment per call as mta-lmdb.pl did; "
          "its network lookups are left out.")


if __name__ == "__main__":
    main()
