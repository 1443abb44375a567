"""Helpers for test_sts_rows.py: one front-end interface over the `mtasts` CLI and the Exim
${dlfunc} module, each with its own cache, a movable clock (libfaketime) and readers for the
test world's request log.

Both front-ends read the same kind of TOML config (written per test) and answer the three Exim
questions for a domain:

    fe = FrontEnd("cli" | "exim", world, workdir, exim_config)
    got = fe.answers("enforce.example", at=700)   # at: seconds the front-end's clock is moved on
    got.getmta, got.getmx, got.ignorelist          # what the MTA sees
    got.source                                     # CLI only: "cache" | "network" (query --json)
    fe.entry("enforce.example")                    # the cache entry (`mtasts dump --json`)

The clock is moved with libfaketime (LD_PRELOAD + FAKETIME="+Ns") for the CLI and for exim4
(kept through Exim's environment reset by `keep_environment = MTASTS_CONFIG : FAKETIME`); the
world keeps the real time. Exim's module logs to syslog only, so `FrontEnd.exim_syslog()` runs
exim4 in a private mount namespace whose /dev/log is a datagram socket the test reads.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import exim_helpers as eh

CLI = eh.cli_path()
MODULE = eh.module_path()
DAY = 86400
WELL_KNOWN = "/.well-known/mta-sts.txt"
CONDITIONAL_HEADERS = ("if-none-match", "if-modified-since", "if-match", "if-unmodified-since",
                       "if-range")

# Timeouts of every front-end's config: short, so stalling vectors stay cheap (STS-24).
DNS_TIMEOUT_MS = 2000
FETCH_TIMEOUT_MS = 2000
LOOKUP_TIMEOUT_MS = 5000

SEPARATOR = "@@"  # between the answers of one -be expansion; never in an answer


def clock_env(at: int) -> dict[str, str]:
    """Environment moving a process's clock `at` seconds ahead (nothing when at == 0)."""
    if not at:
        return {}
    library = eh.faketime_library()
    if library is None:
        pytest.fail("libfaketime is not installed (apt-get install libfaketime; "
                    "scripts/install-deps.sh installs it)")
    preload = [library]
    if eh.sanitized() and (runtime := eh.asan_runtime()):
        preload.insert(0, runtime)  # ASan's runtime must come first in the preload list
    return {"LD_PRELOAD": ":".join(preload), "FAKETIME": f"+{int(at)}s",
            "ASAN_OPTIONS": "verify_asan_link_order=0:detect_leaks=0"}


def write_exim_config(workdir: Path) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    workdir.chmod(0o755)
    return eh.write_exim_config(workdir / "exim.conf", workdir, keep_env=False,
                                main="keep_environment = MTASTS_CONFIG : FAKETIME")


@dataclass
class Answers:
    getmta: str
    getmx: str
    ignorelist: str
    source: str | None = None         # CLI: query --json "source"; None for Exim
    query: dict | None = None         # CLI: the whole query --json document
    elapsed: float = 0.0              # seconds taken by the call that did the lookup

    def triple(self) -> tuple[str, str, str]:
        return (self.getmta, self.getmx, self.ignorelist)


@dataclass
class FrontEnd:
    kind: str                 # "cli" or "exim"
    world: object             # client.World
    workdir: Path
    exim_config: Path | None = None
    strict: bool = False
    extra_config: str = ""
    stderr: list[str] = field(default_factory=list)   # CLI stderr of every call, in order

    def __post_init__(self):
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o755)
        self.cache = self.workdir / "cache.mdb"
        self.config = eh.write_mtasts_config(
            self.workdir / "mtasts.toml", cache=self.cache, world=self.world, strict=self.strict,
            dns_timeout_ms=DNS_TIMEOUT_MS, fetch_timeout_ms=FETCH_TIMEOUT_MS,
            lookup_timeout_ms=LOOKUP_TIMEOUT_MS, extra=self.extra_config)

    def __str__(self):
        return self.kind

    # -- the CLI
    def cli(self, *args: str, at: int = 0, expect_rc: int = 0) -> subprocess.CompletedProcess:
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", **clock_env(at)}
        p = subprocess.run([str(CLI), "--config", str(self.config), *args], capture_output=True,
                           text=True, env=env, timeout=60)
        self.stderr.append(p.stderr)
        assert "Sanitizer" not in p.stderr, p.stderr
        assert p.returncode == expect_rc, f"mtasts {args}: rc={p.returncode} {p.stderr}"
        return p

    # -- the Exim module
    def exim_env(self, at: int = 0) -> dict[str, str]:
        if at and eh.sanitized():
            # Debian's libfaketime deadlocks with the preloaded ASan runtime inside exim4; the
            # release build runs these rows, the sanitizer build runs them through the CLI.
            pytest.skip("libfaketime and the ASan runtime deadlock inside exim4")
        env = {"MTASTS_CONFIG": str(self.config), **clock_env(at)}
        if eh.sanitized() and "LD_PRELOAD" not in env and (runtime := eh.asan_runtime()):
            env["LD_PRELOAD"] = runtime
        return env

    def expression(self, calls) -> str:
        return SEPARATOR.join(eh.dlfunc(MODULE, function, *(eh.exim_escape(a) for a in args))
                              for function, *args in calls)

    def exim(self, calls, at: int = 0) -> list[str]:
        r = eh.exim_be(self.exim_config, self.expression(calls), env=self.exim_env(at))
        r.check_clean()
        assert r.rc == 0 and not r.out.startswith("Failed:"), f"{calls}: {r}"
        return r.out.split(SEPARATOR)

    def exim_syslog(self, calls, at: int = 0) -> tuple[list[str], list[str]]:
        """Like exim(), but inside a private mount namespace whose /dev/log is a socket of
        ours: returns (answers, syslog datagrams the module sent)."""
        if shutil.which("unshare") is None:
            pytest.fail("unshare is not installed (apt-get install util-linux): it captures "
                        "the module's syslog")
        scratch = Path(self.workdir / "syslogns")
        scratch.mkdir(exist_ok=True)
        path = scratch / "log.sock"
        with contextlib.closing(socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)) as sink:
            sink.bind(str(path))
            # The preloads (clock, ASan) go to exim4 only, not to unshare and sh.
            env = eh.exim_env(self.exim_env(at))
            preload = [f"{k}={env.pop(k)}" for k in ("LD_PRELOAD", "FAKETIME", "ASAN_OPTIONS")
                       if k in env]
            cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                   PRIVATE_DEV_LOG, "sh", str(scratch), str(path), "env", *preload, eh.EXIM,
                   "-C", str(self.exim_config), "-be", self.expression(calls)]
            p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
            assert p.returncode == 0 and not p.stdout.startswith("Failed:"), p
            sink.setblocking(False)
            messages = []
            with contextlib.suppress(BlockingIOError):
                while True:
                    messages.append(sink.recv(65536).decode("utf-8", "replace"))
        return p.stdout.rstrip("\n").split(SEPARATOR), messages

    # -- the same questions through either front-end
    def calls(self, calls, at: int = 0) -> list[str]:
        if self.kind == "exim":
            return self.exim(calls, at)
        return [self.cli(*call, at=at).stdout for call in calls]

    def getmta(self, domain: str, host: str | None = None, at: int = 0) -> str:
        return self.calls([("getmta", domain, *([host] if host is not None else []))], at)[0]

    def answers(self, domain: str, at: int = 0) -> Answers:
        """getmta, getmx and ignorelist for domain, as one message would ask them. The first
        call does the lookup; the others are answered from the entry it stored (when fresh).
        The CLI's first call is `query --json` (same lookup, plus where the answer came from)."""
        start = time.monotonic()
        if self.kind == "exim":
            out = self.exim([("getmta", domain), ("getmx", domain), ("ignorelist", domain)], at)
            return Answers(*out, elapsed=time.monotonic() - start)
        query = json.loads(self.cli("query", "--json", domain, at=at).stdout)
        elapsed = time.monotonic() - start
        getmta = self.cli("getmta", domain, at=at).stdout
        assert getmta == query["getmta"], (getmta, query)
        return Answers(getmta, self.cli("getmx", domain, at=at).stdout,
                       self.cli("ignorelist", domain, at=at).stdout, query["source"], query,
                       elapsed)

    def entry(self, domain: str) -> dict | None:
        """What the cache holds for domain (normalized A-label name); reads no network."""
        p = self.cli("dump", "--json")
        self.stderr.pop()
        return json.loads(p.stdout).get(domain)

    def dump(self) -> dict:
        p = self.cli("dump", "--json")
        self.stderr.pop()
        return json.loads(p.stdout)


# In a private mount namespace: a tmpfs over /dev with the few devices a process needs bound
# back, and /dev/log a symlink to the test's datagram socket. Nothing outside the namespace sees
# any of it. $1 scratch dir, $2 socket, then the command.
PRIVATE_DEV_LOG = r"""
set -e
scratch="$1"; sock="$2"; shift 2
mkdir -p "$scratch/olddev"
mount --bind /dev "$scratch/olddev"
mount -t tmpfs -o mode=755 tmpfs /dev
for n in null zero random urandom full tty; do
  if [ -e "$scratch/olddev/$n" ]; then : > "/dev/$n"; mount --bind "$scratch/olddev/$n" "/dev/$n"; fi
done
if [ -d "$scratch/olddev/shm" ]; then mkdir /dev/shm; mount --bind "$scratch/olddev/shm" /dev/shm; fi
ln -s "$sock" /dev/log
exec "$@"
"""


# --------------------------------------------------------------------------------------------
# Policies and the world


def policy(mode: str = "enforce", mx=(), max_age: int = 7 * DAY, eol: str = "\n") -> str:
    lines = ["version: STSv1", f"mode: {mode}", *(f"mx: {m}" for m in mx), f"max_age: {max_age}"]
    return eol.join(lines) + eol


def publish(world, domain: str, *, txt=None, policy_id: str = "v1", body: str | None = None,
            ttl: int | None = None, **https) -> None:
    """_mta-sts.<domain> TXT (one RR per string in `txt`, else "v=STSv1; id=<policy_id>;"; with
    `ttl`, else the world's 0) and the policy host mta-sts.<domain> (spec keys as in the
    world's manifest)."""
    records = txt if txt is not None else [f"v=STSv1; id={policy_id};"]
    data = {"TXT": [[r] for r in records]}
    if ttl is not None:
        data["ttl"] = ttl
    world.set_dns(f"_mta-sts.{domain}", data)
    spec = {"body": body if body is not None else policy(mx=[f"mx1.{domain}"])}
    spec.update(https)
    world.set_https(f"mta-sts.{domain}", spec)


def gets(world, domain: str) -> list[dict]:
    """HTTPS requests for the policy of domain (by SNI or Host)."""
    return world.https_requests(f"mta-sts.{domain}")


def sts_txt_queries(world, domain: str) -> list[dict]:
    return world.dns_queries(f"_mta-sts.{domain}", "TXT")


def assert_no_fetch(world, domain: str) -> None:
    """Not a single step towards the policy host: no address lookup, no TLS, no request."""
    host = f"mta-sts.{domain}"
    assert world.dns_queries(host) == [], world.dns_queries(host)
    assert world.connections(host) == [], world.connections(host)
    assert gets(world, domain) == [], gets(world, domain)


def ignorelist_for(patterns) -> str:
    parts = []
    for p in patterns:
        prefix, rest = ("[^.]+\\.", p[2:]) if p.startswith("*.") else ("", p)
        parts.append("! ^" + prefix + rest.replace(".", "\\.") + "$")
    return "<; " + " ; ".join(parts) + " ; *"
