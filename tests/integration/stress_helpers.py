"""Shared machinery of the stress tests (test_stress_*.py, issue 5) and of their long runs
(bench/stress.py).

- Trial counts: `counts(ci=, long=, sanitize=)` picks the CI figure, the long-run figure when
  MTASTS_LONG=1, or a small one under MTASTS_SANITIZE=1 (instrumented binaries are slow).
- The world: `start_world(sites)` runs tests/world with the bundled manifest plus generated
  policy domains (`Site`), so hundreds of domains cost nothing at run time.
- Front-ends: `cli()` runs the `mtasts` CLI (optionally as `nobody`, optionally with the clock
  moved by libfaketime); exim_helpers.exim_be() of a `dlfunc_expression()` and `exim_syslog()`
  run the real `exim4 -be` with the module;
  HARNESS is a small Python program that loads the module with ctypes and calls its functions
  the way Exim does (the FORK_PROBE of test_exim_dlfunc.py, grown up).
- The cache: `mdb_dump()` reads every raw key with lmdb-utils' mdb_dump (itself a check that the
  file opens cleanly), `check_cache()` checks the layout of src/adapters/store/lmdb_layout.hpp
  key by key: each domain's seed keys (<d>:mode/mx/expire/id) present together or not at all,
  and consistent with its extras record `_mtasts:<d>` (same policy, expire = fetched_at +
  max_age), so a half-written entry cannot hide.
- Crashes: `syscall_on()` says whether a process sits in a write or sync call on the cache
  (from /proc), KILL_SHIM_C (`build_kill_shim()`) is an LD_PRELOAD shim that kills a process
  at a chosen step of its N-th commit.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import random
import re
import shutil
import socket
import subprocess
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import pytest

import exim_helpers as eh
import sts_helpers as sh
from client import World

CLI = eh.cli_path()
MODULE = eh.module_path()
DAY = 86400
MAX_AGE_CAP = 31557600
NOBODY = eh.NOBODY


# --------------------------------------------------------------------------------------------
# Run sizes


def long_mode() -> bool:
    return os.environ.get("MTASTS_LONG", "0").strip().lower() in ("1", "on", "true", "yes")


def counts(*, ci: int, long: int, sanitize: int) -> int:
    if eh.sanitized():
        return sanitize
    return long if long_mode() else ci


def report(title: str, lines: Iterable[str]) -> str:
    """Prints a figure block (visible with pytest -s and in ctest's output on failure) and
    appends it to $MTASTS_STRESS_REPORT when set (bench/stress.py collects them there)."""
    text = "\n".join([f"== {title}", *(f"   {line}" for line in lines)]) + "\n"
    print("\n" + text, flush=True)
    if target := os.environ.get("MTASTS_STRESS_REPORT"):
        with open(target, "a", encoding="utf-8") as f:
            f.write(text)
    return text


def percentile(values: Sequence[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, int(round(p / 100 * (len(ordered) - 1)))))
    return ordered[index]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


# --------------------------------------------------------------------------------------------
# Policy domains of our own and the world


def policy_text(mode: str, mx: Sequence[str], max_age: int) -> str:
    return sh.policy(mode, mx=list(mx), max_age=max_age)


@dataclass
class Site:
    """A policy domain: _mta-sts TXT id and a policy host serving one valid policy."""
    domain: str
    policy_id: str = "v1"
    mode: str = "enforce"
    mx: tuple[str, ...] = ()
    max_age: int = 7 * DAY

    def __post_init__(self):
        if not self.mx:
            self.mx = (f"mx1.{self.domain}", f"*.mx.{self.domain}")

    @property
    def body(self) -> str:
        return policy_text(self.mode, self.mx, self.max_age)

    def dns(self) -> dict:
        return {f"_mta-sts.{self.domain}": {"TXT": [[f"v=STSv1; id={self.policy_id};"]]}}

    def https(self) -> dict:
        return {f"mta-sts.{self.domain}": {"body": self.body}}

    def answers(self) -> tuple[str, str, str]:
        """(getmta, getmx, ignorelist) as the MTA must see them."""
        ignore = sh.ignorelist_for(self.mx) if self.mode == "enforce" else ""
        return (self.mode, ":".join(self.mx), ignore)

    def publish(self, world: World) -> None:
        for name, data in self.dns().items():
            world.set_dns(name, data)
        for host, spec in self.https().items():
            world.set_https(host, spec)


def write_manifest(path: Path, sites: Iterable[Site]) -> Path:
    """The bundled manifest plus `sites`."""
    manifest = json.loads((eh.source_dir() / "tests" / "world" / "manifest.json").read_text())
    for site in sites:
        manifest["dns"].update(site.dns())
        manifest["https"].update(site.https())
    path.write_text(json.dumps(manifest))
    return path


@contextlib.contextmanager
def start_world(workdir: Path, sites: Iterable[Site] = (), lifetime: int = 3600):
    workdir.mkdir(parents=True, exist_ok=True)
    workdir.chmod(0o755)
    manifest = write_manifest(workdir / "manifest.json", sites)
    with World(manifest=str(manifest), state_dir=str(workdir / "world"), lifetime=lifetime) as w:
        os.chmod(w.state_dir, 0o755)  # nobody must read ca.pem
        os.chmod(w.ca_file, 0o644)
        yield w


# Answers of bundled manifest domains whose behaviour is simple and stable.
BUNDLED_ANSWERS = {
    "enforce.example": ("enforce", "mx1.enforce.example:*.mail.enforce.example",
                        r"<; ! ^mx1\.enforce\.example$ ; ! ^[^.]+\.mail\.enforce\.example$ ; *"),
    "testing.example": ("testing", "mx1.testing.example", ""),
    "none.example": ("none", "mx1.none.example", ""),
    "nopolicy.example": ("none", "", ""),
    "txt-two-valid-records.example": ("none", "", ""),
    "http-404.example": ("none", "", ""),
    "http-500.example": ("none", "", ""),
    "https-cert-wrong-name.example": ("none", "", ""),
    "http-301-to-valid-policy.example": ("none", "", ""),
    "pol-crlf.example": ("enforce", "mx1.pol-crlf.example", r"<; ! ^mx1\.pol-crlf\.example$ ; *"),
    "dns-sts-servfail.example": ("none", "", ""),
}


# --------------------------------------------------------------------------------------------
# Config and front-ends


# The stress tests' mtasts config: exim_helpers.write_mtasts_config with short timeouts.
write_config = functools.partial(eh.write_mtasts_config, dns_timeout_ms=1000,
                                 fetch_timeout_ms=1000, lookup_timeout_ms=4000)


def base_env(at: int = 0, nobody: bool = False) -> dict[str, str]:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", **sh.clock_env(at)}
    if eh.sanitized() and nobody and "ASAN_OPTIONS" not in env:
        env["ASAN_OPTIONS"] = "detect_leaks=0"  # LeakSanitizer's ptrace may be denied
    return env


def preload(env: dict[str, str], library: Path) -> dict[str, str]:
    """Adds a library to LD_PRELOAD, after the ASan runtime when the build is instrumented."""
    libraries = [p for p in env.get("LD_PRELOAD", "").split(":") if p]
    if eh.sanitized() and (runtime := eh.asan_runtime()) and runtime not in libraries:
        libraries.insert(0, runtime)
    libraries.append(str(library))
    env["LD_PRELOAD"] = ":".join(libraries)
    return env


def cli(config: Path | None, *args: str, at: int = 0, nobody: bool = False,
        timeout: float = 60, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess:
    """`mtasts [--config config] args...`; never raises on a non-zero exit."""
    cmd = [str(CLI), *(["--config", str(config)] if config else []), *args]
    if nobody:
        cmd = [*NOBODY, *cmd]
    full_env = base_env(at, nobody)
    if env:
        full_env.update(env)
    p = subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=timeout)
    assert "Sanitizer" not in p.stderr, p.stderr
    return p


def cli_answers(config: Path, domain: str, at: int = 0, **kw) -> tuple[tuple[str, str, str], str]:
    """(getmta, getmx, ignorelist) through the CLI, and the stderr of the first call (-v, which
    does the lookup and logs to stderr)."""
    first = cli(config, "-v", "getmta", "--", domain, at=at, **kw)
    assert first.returncode == 0, first
    rest = []
    for function in ("getmx", "ignorelist"):
        p = cli(config, function, "--", domain, at=at, **kw)
        assert p.returncode == 0, p
        rest.append(p.stdout)
    return (first.stdout, *rest), first.stderr


def dlfunc_expression(calls: Sequence[Sequence[str]], separator: str = sh.SEPARATOR) -> str:
    return separator.join(eh.dlfunc(MODULE, fn, *(eh.exim_escape(a) for a in args))
                          for fn, *args in calls)


def be_arguments(calls: Sequence[Sequence[str]]) -> tuple[list[str], str | None]:
    """exim_helpers.be_arguments() of the calls' expression."""
    return eh.be_arguments(dlfunc_expression(calls))



def exim_syslog(exim_config: Path, config: Path, calls: Sequence[Sequence[str]], scratch: Path,
                *, at: int = 0, timeout: float = 60) -> tuple[str, list[str]]:
    """exim_helpers.exim_be() of the calls, inside a private mount namespace whose /dev/log is
    a socket of ours (sts_helpers.PRIVATE_DEV_LOG): (the expansion, the syslog datagrams the
    module sent)."""
    if shutil.which("unshare") is None:
        pytest.fail("unshare is not installed (apt-get install util-linux): it captures the "
                    "module's syslog")
    scratch.mkdir(parents=True, exist_ok=True)
    path = scratch / "log.sock"
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    with contextlib.closing(socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)) as sink:
        sink.bind(str(path))
        sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        env = eh.exim_env({"MTASTS_CONFIG": str(config), **sh.clock_env(at)})
        if eh.sanitized() and at and (runtime := eh.asan_runtime()):
            env["LD_PRELOAD"] = ":".join([runtime, eh.faketime_library()])
        preload = [f"{k}={env.pop(k)}" for k in ("LD_PRELOAD", "FAKETIME", "ASAN_OPTIONS")
                   if k in env]
        expression, stdin = be_arguments(calls)
        cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
               sh.PRIVATE_DEV_LOG, "sh", str(scratch), str(path), "env", *preload, eh.EXIM,
               "-C", str(exim_config), "-be", *expression]
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout,
                           input=stdin)
        assert "Sanitizer" not in p.stderr, p.stderr
        assert p.returncode == 0, p
        sink.setblocking(False)
        messages = []
        with contextlib.suppress(BlockingIOError):
            while True:
                messages.append(sink.recv(65536).decode("utf-8", "replace"))
    return eh.be_output(p.stdout, stdin), messages


def syslog_warnings(messages: Iterable[str], needle: str) -> list[str]:
    """Datagrams of severity warning or worse (facility mail: PRI 16..20) containing needle."""
    return [m for m in messages if re.match(r"<(1[6-9]|20)>", m) and needle in m]


def stderr_warnings(stderr: str, needle: str) -> list[str]:
    return [line for line in stderr.splitlines()
            if re.match(r"mtasts: (warning|error|critical): ", line) and needle in line]


# --------------------------------------------------------------------------------------------
# The ctypes harness: the module called as Exim calls it


HARNESS = textwrap.dedent(r'''
    """Loads mtasts_exim.so and calls it like Exim's ${dlfunc}. Modes:
      sequence MODULE DOMAIN...   getmta for each domain in turn; prints "done D RC ANSWER"
                                  after each call returned (so its store was committed)
      worker MODULE PLAN_FILE     the concurrency plan (JSON): waits for start_at, then for each
                                  message calls getmta, getmx, ignorelist (in a forked child per
                                  message when fork_per_message), prints one JSON result
      calls MODULE FN:DOMAIN...   each call in turn, prints "RC<TAB>ANSWER" per call
    """
    import ctypes, json, os, sys, time

    lib = ctypes.CDLL(sys.argv[2])
    FUNCTIONS = {name: getattr(lib, name) for name in ("getmta", "getmx", "ignorelist")}

    def call(name, *args):
        fn = FUNCTIONS[name]
        result = ctypes.c_char_p()
        argv = (ctypes.c_char_p * (len(args) + 1))(*[a.encode() for a in args], None)
        rc = fn(ctypes.byref(result), len(args), argv)
        return rc, (result.value or b"").decode("utf-8", "replace")

    def schedstat():
        # Nanoseconds this thread ran on a CPU and waited on a run queue (Linux schedstat).
        try:
            with open("/proc/thread-self/schedstat") as f:
                ran, waited, _ = f.read().split()
            return int(ran) / 1e9, int(waited) / 1e9
        except (OSError, ValueError):
            return 0.0, 0.0

    def message(domain):
        """The three calls, each [rc, answer, seconds], then [wall, on-CPU, runnable-waiting,
        blocked in the first call] seconds of the whole message: wall - on-CPU - waiting =
        time spent blocked (I/O, network, locks)."""
        out = []
        first_blocked = 0.0
        ran0, waited0 = schedstat()
        began = time.monotonic()
        for name in ("getmta", "getmx", "ignorelist"):
            start = time.monotonic()
            rc, answer = call(name, domain)
            out.append([rc, answer, time.monotonic() - start])
            if name == "getmta":
                ran, waited = schedstat()
                first_blocked = out[0][2] - (ran - ran0) - (waited - waited0)
        wall = time.monotonic() - began
        ran1, waited1 = schedstat()
        out.append([wall, ran1 - ran0, waited1 - waited0, max(0.0, first_blocked)])
        return out

    mode = sys.argv[1]
    if mode == "sequence":
        for domain in sys.argv[3:]:
            rc, answer = call("getmta", domain)
            print("done", domain, rc, answer, flush=True)
    elif mode == "calls":
        for item in sys.argv[3:]:
            name, _, domain = item.partition(":")
            rc, answer = call(name, domain)
            print(f"{rc}\t{answer}", flush=True)
    elif mode == "worker":
        with open(sys.argv[3]) as f:
            plan = json.load(f)
        while time.time() < plan["start_at"]:
            time.sleep(0.002)
        began = time.monotonic()
        results = []
        for domain in plan["messages"]:
            if not plan["fork_per_message"]:
                results.append([domain, message(domain)])
                continue
            # An Exim delivery process: a fresh process whose first call builds the engine.
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(r)
                try:
                    data = json.dumps(message(domain)).encode()
                except BaseException as e:
                    data = json.dumps([[99, f"harness: {e!r}", 0.0]] * 3 + [[0, 0, 0, 0]]).encode()
                os.write(w, data)
                os._exit(0)
            os.close(w)
            chunks = []
            while chunk := os.read(r, 65536):
                chunks.append(chunk)
            os.close(r)
            _, status = os.waitpid(pid, 0)
            if status != 0 or not chunks:
                results.append([domain, [[98, f"child status {status}", 0.0]] * 3 + [[0, 0, 0, 0]]])
            else:
                results.append([domain, json.loads(b"".join(chunks))])
        print(json.dumps({"results": results, "elapsed": time.monotonic() - began}), flush=True)
''')


def write_harness(directory: Path) -> Path:
    path = directory / "harness.py"
    path.write_text(HARNESS)
    path.chmod(0o644)
    return path


def harness_env(config: Path, at: int = 0) -> dict[str, str]:
    env = eh.exim_env({"MTASTS_CONFIG": str(config), **sh.clock_env(at)})
    if eh.sanitized() and at and (runtime := eh.asan_runtime()):
        env["LD_PRELOAD"] = ":".join([runtime, eh.faketime_library()])
    return env


def harness_calls(harness: Path, config: Path, calls: Sequence[tuple[str, str]], *,
                  nobody: bool = False, at: int = 0) -> list[tuple[int, str]]:
    """The module's (rc, yield) for each (function, domain), in one process."""
    cmd = [eh.PYTHON, str(harness), "calls", str(MODULE), *(f"{fn}:{d}" for fn, d in calls)]
    if nobody:
        cmd = [*NOBODY, *cmd]
    p = subprocess.run(cmd, capture_output=True, text=True, env=harness_env(config, at),
                       timeout=60)
    assert "Sanitizer" not in p.stderr, p.stderr
    assert p.returncode == 0, p
    out = []
    for line in p.stdout.splitlines():
        rc, _, answer = line.partition("\t")
        out.append((int(rc), answer))
    assert len(out) == len(calls), p
    return out


def start_workers(harness: Path, config: Path, plans: Path, *, count: int, messages: int,
                  start_at: float, hit: Sequence[str], purged: Sequence[str],
                  rng: random.Random) -> list[subprocess.Popen]:
    """`count` harness workers, each waiting for `start_at` and then asking about `messages`
    domains drawn by `rng` (three in ten from `purged`, the others from `hit`); every other one
    forks per message. Their plans are written to plans/plan-<n>.json."""
    workers = []
    for n in range(count):
        domains = [rng.choice(purged) if rng.random() < 0.3 else rng.choice(hit)
                   for _ in range(messages)]
        plan = plans / f"plan-{n}.json"
        plan.write_text(json.dumps({"start_at": start_at, "messages": domains,
                                    "fork_per_message": n % 2 == 1}))
        workers.append(subprocess.Popen(
            [eh.PYTHON, str(harness), "worker", str(MODULE), str(plan)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=harness_env(config)))
    return workers


def worker_outputs(workers: Iterable[subprocess.Popen]) -> list[dict]:
    """What each worker of start_workers() printed (JSON); fails on a worker's sanitizer
    report or non-zero exit."""
    outputs = []
    for w in workers:
        out, err = w.communicate(timeout=600)
        assert "Sanitizer" not in err, err
        assert w.returncode == 0, err
        outputs.append(json.loads(out))
    return outputs


# --------------------------------------------------------------------------------------------
# The cache, key by key


def mdb_dump(cache: Path) -> tuple[dict[str, str], subprocess.CompletedProcess]:
    """Every key and value of the unnamed database (`mdb_dump -n`, hex format: the print
    format of lmdb-utils 0.9.24 does not escape backslashes, so it cannot be read back
    unambiguously), decoded as UTF-8 text."""
    p = subprocess.run(["mdb_dump", "-n", str(cache)], capture_output=True, timeout=60)
    records: dict[str, str] = {}
    if p.returncode != 0:
        return records, p
    lines = p.stdout.split(b"\n")
    try:
        start = lines.index(b"HEADER=END") + 1
        end = lines.index(b"DATA=END")
    except ValueError:
        raise AssertionError(f"mdb_dump output has no HEADER=END/DATA=END: {p.stdout[:500]!r}")
    body = lines[start:end]
    assert len(body) % 2 == 0, "mdb_dump printed an odd number of data lines"
    for key, value in zip(body[0::2], body[1::2]):
        records[bytes.fromhex(key.strip().decode()).decode("utf-8", "replace")] = \
            bytes.fromhex(value.strip().decode()).decode("utf-8", "replace")
    return records, p


SEED_FIELDS = ("mode", "mx", "expire", "id")
FIELDS = (*SEED_FIELDS, "report")
ID_RE = re.compile(r"^[A-Za-z0-9]{1,32}$")


def parse_policy_text(text: str) -> dict:
    """mode, mx (list, lower-case), max_age of a policy body (only what the checks need)."""
    out: dict = {"mx": []}
    for line in text.replace("\r\n", "\n").split("\n"):
        key, sep, value = line.partition(":")
        if not sep:
            continue
        value = value.strip()
        if key == "mx":
            out["mx"].append(value.lower())
        elif key in ("mode", "max_age") and key not in out:
            out[key] = value
    return out


@dataclass
class CacheState:
    """What check_cache found: per domain, None (no policy) or (id, mode, mx string), plus the
    decoded extras; and every problem (half-written or inconsistent entries)."""
    records: dict[str, str]
    policies: dict[str, tuple[str, str, str] | None] = field(default_factory=dict)
    extras: dict[str, dict] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def raw_of(self, domain: str) -> dict[str, str]:
        keys = [f"{domain}:{f}" for f in FIELDS] + [f"_mtasts:{domain}"]
        return {k: self.records[k] for k in keys if k in self.records}


def check_cache(records: Mapping[str, str]) -> CacheState:
    state = CacheState(dict(records))
    by_domain: dict[str, dict[str, str]] = {}
    for key, value in records.items():
        if key == "_mtasts:schema":
            if value != "1":
                state.problems.append(f"schema key is {value!r}")
            continue
        if key.startswith("_mtasts:"):
            by_domain.setdefault(key[len("_mtasts:"):], {})["extras"] = value
            continue
        domain, _, name = key.rpartition(":")
        if not domain or name not in FIELDS:
            state.problems.append(f"foreign key {key!r}")
            continue
        by_domain.setdefault(domain, {})[name] = value
    if records and "_mtasts:schema" not in records:
        state.problems.append("the schema key is missing")

    for domain, raw in sorted(by_domain.items()):
        bad = lambda why: state.problems.append(f"{domain}: {why}; raw {raw}")  # noqa: E731
        if "extras" not in raw:
            bad("no extras record (every save writes one)")
            continue
        try:
            extras = json.loads(raw["extras"])
        except ValueError as e:
            bad(f"extras is not JSON: {e}")
            continue
        state.extras[domain] = extras
        if extras.get("v") != 1:
            bad("extras version is not 1")
        present = [f for f in SEED_FIELDS if f in raw]
        has_policy_extras = any(k in extras for k in ("fetched_at", "max_age", "text"))
        if not present:
            state.policies[domain] = None
            if has_policy_extras:
                bad("extras describe a policy but the seed keys are missing")
            continue
        if len(present) != len(SEED_FIELDS):
            bad(f"half-written: only seed keys {present}")
            continue
        if not all(k in extras for k in ("fetched_at", "max_age", "text")):
            bad("seed keys without the policy part of the extras")
            continue
        parsed = parse_policy_text(extras["text"])
        mx = ":".join(parsed["mx"])
        if raw["mode"] != parsed.get("mode"):
            bad(f"mode {raw['mode']!r} is not the policy text's {parsed.get('mode')!r}")
        if raw["mx"] != mx:
            bad(f"mx {raw['mx']!r} is not the policy text's {mx!r}")
        if str(extras["max_age"]) != str(min(int(parsed.get("max_age", -1)), MAX_AGE_CAP)):
            bad("max_age differs from the policy text")
        if not raw["expire"].isdigit() or \
                int(raw["expire"]) != int(extras["fetched_at"]) + int(extras["max_age"]):
            bad("expire is not fetched_at + max_age")
        if not ID_RE.match(raw["id"]):
            bad(f"id {raw['id']!r} is not 1-32 letters and digits")
        state.policies[domain] = (raw["id"], raw["mode"], raw["mx"])
    return state


def dump_json(config: Path, **kw) -> dict:
    p = cli(config, "dump", "--json", **kw)
    assert p.returncode == 0, p
    return json.loads(p.stdout)


def corrupt_leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.parent.glob(cache.name + ".corrupt-*"))


def check_cache_file(cache: Path, config: Path) -> CacheState:
    """The whole "opens with no recovery step" check: nothing moved aside, mdb_dump clean, every
    entry consistent, and `mtasts dump --json` agrees with the raw keys."""
    assert corrupt_leftovers(cache) == [], corrupt_leftovers(cache)
    records, p = mdb_dump(cache)
    assert p.returncode == 0 and p.stderr == b"", f"mdb_dump failed: {p.stderr!r}"
    state = check_cache(records)
    dump = cli(config, "dump", "--json")
    assert dump.returncode == 0, dump
    assert "moved it aside" not in dump.stderr and "not a sound" not in dump.stderr, dump.stderr
    assert corrupt_leftovers(cache) == [], "mtasts dump moved the file aside"
    entries = json.loads(dump.stdout)
    assert set(entries) == set(state.extras), (set(entries) ^ set(state.extras))
    for domain, entry in entries.items():
        want = state.policies.get(domain)
        got = None
        if entry["policy"] is not None:
            p_ = entry["policy"]
            got = (p_["id"], p_["mode"], ":".join(p_["mx"]))
        if want is not None or got is not None:
            if want != got:
                state.problems.append(f"{domain}: dump --json says {got}, raw keys say {want}")
    return state


# --------------------------------------------------------------------------------------------
# Processes


def syscall_on(pid: int, paths: Sequence[str]) -> str | None:
    """When a thread of pid sits in a write or sync system call on one of `paths`: its name
    ("pwrite64 cache.mdb"); else None. Reads /proc/<pid>/task/*/syscall (root)."""
    names = {1: "write", 18: "pwrite64", 20: "writev", 74: "fsync", 75: "fdatasync",
             296: "pwritev", 26: "msync"}
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/syscall") as f:
                fields = f.read().split()
        except OSError:
            continue
        if not fields or not fields[0].isdigit() or int(fields[0]) not in names:
            continue
        fd = int(fields[1], 16)
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        for path in paths:
            if target == path or target == path + "-lock":
                return f"{names[int(fields[0])]} {os.path.basename(target)}"
    return None


# A kill switch inside a process: an LD_PRELOAD shim over liblmdb's write system calls that
# sends the process SIGKILL at one step of its N-th commit to the cache file. liblmdb 0.9.24
# (no MDB_WRITEMAP) commits in three steps, as strace shows: the dirty data pages are written
# (writev, or pwrite for one page), fdatasync makes them durable, then the meta page naming the
# new root is written (pwrite64 at an offset within the first two pages, through an O_DSYNC
# descriptor): that write is the commit.
KILL_SHIM_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

enum { NONE, DATA, SYNC, META, COMMITTED };
static char target[4096];
static int step = NONE;
static long nth = 0;
static long commits = 0; /* meta pages written so far */

__attribute__((constructor)) static void init(void) {
  const char *spec = getenv("MTASTS_KILL_AT"); /* step:N:path */
  if (!spec) return;
  char name[32];
  int used = 0;
  if (sscanf(spec, "%31[a-z]:%ld:%n", name, &nth, &used) != 2 || used == 0) return;
  snprintf(target, sizeof target, "%s", spec + used);
  step = !strcmp(name, "data") ? DATA : !strcmp(name, "sync") ? SYNC
       : !strcmp(name, "meta") ? META : !strcmp(name, "committed") ? COMMITTED : NONE;
}

static int on_target(int fd) {
  char link[64], path[4096];
  if (step == NONE) return 0;
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, path, sizeof path - 1);
  if (n < 0) return 0;
  path[n] = 0;
  return strcmp(path, target) == 0;
}

static void maybe_die(int which) {
  long commit = which == COMMITTED ? commits : commits + 1;
  if (which == step && commit == nth) {
    kill(getpid(), SIGKILL);
    for (;;) pause();
  }
}

#define REAL(name) ((__typeof__(&name))dlsym(RTLD_NEXT, #name))

static ssize_t positional(int fd, const void *buf, size_t n, off_t off, int is64) {
  int mine = on_target(fd);
  int meta = mine && off < 2 * 4096;
  if (mine) maybe_die(meta ? META : DATA);
  ssize_t r = is64 ? REAL(pwrite64)(fd, buf, n, off) : REAL(pwrite)(fd, buf, n, off);
  if (meta && r == (ssize_t)n) {
    ++commits;
    maybe_die(COMMITTED);
  }
  return r;
}
ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) {
  return positional(fd, buf, n, off, 0);
}
ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off) {
  return positional(fd, buf, n, off, 1);
}
ssize_t writev(int fd, const struct iovec *iov, int count) {
  if (on_target(fd)) maybe_die(DATA);
  return REAL(writev)(fd, iov, count);
}
int fdatasync(int fd) {
  if (on_target(fd)) maybe_die(SYNC);
  return REAL(fdatasync)(fd);
}
int fsync(int fd) {
  if (on_target(fd)) maybe_die(SYNC);
  return REAL(fsync)(fd);
}
"""


def build_kill_shim(directory: Path) -> Path | None:
    """Compiles KILL_SHIM_C with gcc (scripts/install-deps.sh installs it); None without."""
    compiler = shutil.which("gcc")
    if compiler is None:
        return None
    source = directory / "killshim.c"
    source.write_text(KILL_SHIM_C)
    library = directory / "killshim.so"
    subprocess.run([compiler, "-shared", "-fPIC", "-O1", "-o", str(library), str(source),
                    "-ldl"], check=True, capture_output=True)
    library.chmod(0o755)
    return library
