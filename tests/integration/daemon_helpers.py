"""Helpers for the mtastsd tests of proactive refresh, cdb export and metrics
(test_daemon_refresh.py, test_daemon_cdb.py, test_daemon_metrics.py).

- `Mtastsd`: an mtastsd process on a temporary directory's Exim socket, against a running test
  world (tests/world/client.py `World`), with extra [daemon] keys, optionally on a movable
  clock.
- `Clock`: libfaketime driven through a timestamp file (FAKETIME_TIMESTAMP_FILE), so a test
  moves the daemon's wall clock while it runs. Only CLOCK_REALTIME is faked
  (FAKETIME_DONT_FAKE_MONOTONIC=1): the daemon's timers keep real time, its Unix seconds jump.
- Policies: `publish` (a policy for the domain's one MX), `gets` and `txt_queries` (from
  sts_helpers), and a cache reader through `mtasts dump --json`.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

import exim_helpers as eh
import sts_helpers as sh
from sts_helpers import gets, sts_txt_queries as txt_queries  # noqa: F401  (re-exported)
from test_daemon_protocols import exim_ask, free_port  # noqa: F401  (re-exported for tests)

DAEMON = eh.build_dir() / "src" / "daemon" / "mtastsd"
DAY = 86400


def require_daemon() -> None:
    if not DAEMON.exists():
        pytest.fail(f"{DAEMON} is not built (cmake --build {eh.build_dir()} --target mtastsd)")


def faketime_library() -> str:
    """libfaketimeMT (mtastsd has threads); fails when libfaketime is not installed."""
    library = eh.faketime_library("libfaketimeMT.so.1")
    if library is None:
        pytest.fail("libfaketime is not installed (apt-get install libfaketime; "
                    "scripts/install-deps.sh installs it)")
    return library


class Clock:
    """The daemon's wall clock, `offset` seconds ahead of the real one. `starts_programs`: the
    daemon runs other programs (a TLSRPT report's sendmail), see eh.faketime_env."""

    def __init__(self, path: Path, *, starts_programs: bool = False):
        self.path = path
        self.starts_programs = starts_programs
        self.offset = 0
        self.set(0)

    def set(self, offset: int) -> None:
        # Written whole and renamed: libfaketime must never read half a line.
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(f"+{int(offset)}\n")
        tmp.rename(self.path)
        self.offset = int(offset)
        # libfaketime re-reads the file once its cache (FAKETIME_CACHE_DURATION) runs out.
        time.sleep(1.2)

    def now(self) -> int:
        return int(time.time()) + self.offset

    def env(self) -> dict[str, str]:
        return eh.faketime_env(faketime_library(), {
            "FAKETIME_TIMESTAMP_FILE": str(self.path), "FAKETIME_CACHE_DURATION": "1",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1"}, starts_programs=self.starts_programs)


class Mtastsd:
    """mtastsd with its Exim socket in `work/name`, the cache beside it, and `daemon_keys`
    added to its [daemon] table; `clock` puts it on a movable clock."""

    def __init__(self, work: Path, world, *, name: str = "d", daemon_keys: str = "",
                 top_keys: str = "", clock: Clock | None = None, fetch_timeout_ms: int = 3000):
        self.dir = work / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o755)
        self.exim_path = self.dir / "exim.sock"
        self.cache = self.dir / "cache.mdb"
        self.config = self.dir / "mtasts.toml"
        self.log_path = self.dir / "mtastsd.log"
        daemon = [f"exim_socket = {eh.toml_string(str(self.exim_path))}",
                  'socketmap_socket = ""', 'socket_mode = "0666"', daemon_keys]
        eh.write_mtasts_config(self.config, cache=self.cache, world=world, strict=None,
                               fetch_timeout_ms=fetch_timeout_ms, log_target=None,
                               extra=top_keys, daemon=daemon)
        env = eh.exim_env(clock.env() if clock else None)
        self.proc = subprocess.Popen([str(DAEMON), "--config", str(self.config)],
                                     stdout=open(self.log_path, "wb"), stderr=subprocess.STDOUT,
                                     env=env)
        self.wait_log("ready:", timeout=20)

    @property
    def exim(self):
        return ("unix", str(self.exim_path))

    def ask(self, request: str) -> str:
        return exim_ask(self.exim, request)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, text: str, timeout: float = 15, count: int = 1) -> None:
        deadline = time.monotonic() + timeout
        while self.log().count(text) < count:
            if self.proc.poll() is not None:
                raise AssertionError(f"mtastsd exited with {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not logged {count} time(s) within {timeout} s:\n"
                                     f"{self.log()[-6000:]}")
            time.sleep(0.05)

    def dump(self) -> dict:
        """The cache as `mtasts dump --json` shows it (read-only; no network)."""
        p = subprocess.run([str(eh.cli_path()), "--config", str(self.config), "dump", "--json"],
                           capture_output=True, text=True, env=eh.exim_env(), timeout=30)
        assert p.returncode == 0, p
        return json.loads(p.stdout)

    def stop(self) -> int:
        eh.terminate(self.proc, 30)
        assert "Sanitizer" not in self.log(), self.log()
        return self.proc.returncode


def wait_for(predicate, timeout: float = 15, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        time.sleep(interval)


def publish(world, domain: str, *, policy_id: str = "v1", mode: str = "enforce",
            max_age: int = 4 * DAY, ttl: int | None = None, **https) -> None:
    """sts_helpers.publish() of a policy allowing mx1.<domain>, the domain's one MX."""
    world.set_dns(domain, {"MX": [[10, f"mx1.{domain}"]]})
    sh.publish(world, domain, policy_id=policy_id, ttl=ttl,
               body=sh.policy(mode, [f"mx1.{domain}"], max_age), **https)
