"""Helpers for the fleet tests (test_fleet.py, test_fleet_faults.py): a real redis-server and
redis-sentinel (Debian's packages, installed by scripts/install-deps.sh) on loopback, each in its
own temporary directory, stopped by the test (and by their own `--shutdown-on-sigterm` default
when the test process dies, since they are children of it).

- `RedisServer`: one redis-server on a free TCP port; stop(), start() again on the same port,
  `client()` (python3-redis) to look at and write our keys like a hostile writer would.
- `Sentinels`: a master, a replica and three sentinels watching them as "mymaster".
- `fleet(...)`: three mtastsd (daemon_helpers.Mtastsd), each with its own LMDB cache, sharing
  one Redis.
- `manifest_sites(...)`: a test world manifest with N enforce domains whose TXT TTL is long.
"""

from __future__ import annotations

import json
import random
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

import exim_helpers as eh
from daemon_helpers import Mtastsd, exim_ask

REDIS_SERVER = "/usr/bin/redis-server"
REDIS_SENTINEL = "/usr/bin/redis-sentinel"


def require_redis() -> None:
    for program in (REDIS_SERVER, REDIS_SENTINEL):
        if not Path(program).exists():
            pytest.fail(f"{program} is missing (apt-get install redis-server redis-sentinel; "
                        "scripts/install-deps.sh installs them)")
    try:
        import redis  # noqa: F401
    except ImportError:
        pytest.fail("python3-redis is missing (scripts/install-deps.sh installs it)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


class RedisServer:
    """redis-server on 127.0.0.1:`port` (free by default), no persistence."""

    def __init__(self, work: Path, *, name: str = "redis", port: int | None = None,
                 password: str | None = None, extra: list[str] | None = None):
        self.dir = work / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.password = password
        self.extra = extra or []
        self.proc: subprocess.Popen | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", str(self.dir),
                "--daemonize", "no", "--enable-debug-command", "yes", *self.extra]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdout=open(self.dir / "redis.log", "ab"),
                                     stderr=subprocess.STDOUT)
        wait_port(self.port)

    def stop(self, kill: bool = False) -> None:
        if self.proc and self.proc.poll() is None:
            (self.proc.kill if kill else self.proc.terminate)()
            self.proc.wait(timeout=20)
        self.proc = None

    def client(self):
        import redis
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password,
                           socket_timeout=10)


class Sentinels:
    """A master and a replica (redis-server) and three sentinels monitoring them as
    `mymaster` (quorum 2), all on loopback."""

    def __init__(self, work: Path, name: str = "mymaster"):
        self.name = name
        self.master = RedisServer(work, name="master")
        self.replica = RedisServer(work, name="replica",
                                   extra=["--replicaof", "127.0.0.1", str(self.master.port)])
        self.ports = [free_port() for _ in range(3)]
        self.procs = []
        for i, port in enumerate(self.ports):
            d = work / f"sentinel{i}"
            d.mkdir(parents=True, exist_ok=True)
            conf = d / "sentinel.conf"  # sentinel rewrites its own file: it must be writable
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndaemonize no\ndir {d}\n"
                f"sentinel monitor {name} 127.0.0.1 {self.master.port} 2\n"
                f"sentinel down-after-milliseconds {name} 1000\n"
                f"sentinel failover-timeout {name} 10000\n"
                f"sentinel parallel-syncs {name} 1\n")
            self.procs.append(subprocess.Popen([REDIS_SENTINEL, str(conf)],
                                               stdout=open(d / "sentinel.log", "ab"),
                                               stderr=subprocess.STDOUT))
        for port in self.ports:
            wait_port(port)
        # The replica has synced and every sentinel knows the replica and the other sentinels.
        wait_until(lambda: self.master.client().info("replication").get("connected_slaves") == 1,
                   "the replica to sync")
        for port in self.ports:
            wait_until(lambda p=port: self._sentinel(p).sentinel_master(name).get(
                "num-other-sentinels") == 2 and self._sentinel(p).sentinel_master(name).get(
                "num-slaves") == 1, "the sentinels to find each other and the replica", 60)

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.ports)
        return f"sentinel://{hosts}/{self.name}"

    def _sentinel(self, port: int):
        import redis
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=10, decode_responses=True)

    def master_port(self) -> int:
        host, port = self._sentinel(self.ports[0]).sentinel_get_master_addr_by_name(self.name)
        return int(port)

    def failover(self) -> int:
        """Forces a failover (the replica becomes master); returns the new master's port."""
        old = self.master_port()
        self._sentinel(self.ports[0]).execute_command("SENTINEL", "FAILOVER", self.name)
        wait_until(lambda: self.master_port() != old, "the failover", 60)
        return self.master_port()

    def client(self):
        """A client on the current master."""
        import redis
        return redis.Redis(host="127.0.0.1", port=self.master_port(), socket_timeout=10)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=20)
        self.replica.stop()
        self.master.stop()


def wait_until(predicate, what: str, timeout: float = 30, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as error:  # a server still starting
            last_error = error
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout} s (last error: {last_error})")


def shared_keys(url: str, *, password_file: Path | None = None, timeout_ms: int = 2000,
                extra: str = "") -> str:
    """The config's shared_cache keys. The read deadline is generous here (the default is 100 ms)
    because the suite also runs under ASan on two cores, beside another test, with three
    daemons, a world and Redis competing for them; a read past its deadline only costs a member
    an extra fetch, which these tests count. test_fleet_faults.py's slow Redis uses a short one."""
    lines = [f"shared_cache = {eh.toml_string(url)}", f"shared_cache_timeout_ms = {timeout_ms}"]
    if password_file:
        lines.append(f"shared_cache_password_file = {eh.toml_string(str(password_file))}")
    return "\n".join(lines) + "\n" + extra


def fleet(work: Path, world, url: str, *, count: int = 3, daemon_keys: str = "",
          top_keys: str = "", clock=None, password_file: Path | None = None,
          fetch_timeout_ms: int = 3000, timeout_ms: int = 2000) -> list[Mtastsd]:
    members = []
    for i in range(count):
        keys = shared_keys(url, password_file=password_file, timeout_ms=timeout_ms)
        members.append(Mtastsd(work, world, name=f"m{i}", daemon_keys=daemon_keys,
                               top_keys=keys + top_keys,
                               clock=clock, fetch_timeout_ms=fetch_timeout_ms))
    return members


def stop_all(members) -> None:
    for member in members:
        member.stop()


def domains(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{i:04d}.fleet.example" for i in range(count)]


def write_manifest(path: Path, names: list[str], *, ttl: int = 86400, mode: str = "enforce",
                   policy_id: str = "v1", https: dict | None = None) -> Path:
    """The bundled manifest plus one enforce site per name: TXT (TTL `ttl`), MX, a policy host."""
    manifest = json.loads((eh.source_dir() / "tests" / "world" / "manifest.json").read_text())
    for name in names:
        manifest["dns"][f"_mta-sts.{name}"] = {"TXT": [[f"v=STSv1; id={policy_id};"]], "ttl": ttl}
        manifest["dns"][name] = {"MX": [[10, f"mx1.{name}"]], "ttl": ttl}
        spec = {"body": policy_body(mode, [f"mx1.{name}"])}
        spec.update(https or {})
        manifest["https"][f"mta-sts.{name}"] = spec
    path.write_text(json.dumps(manifest))
    return path


def policy_body(mode: str, mx: list[str], max_age: int = 7 * 86400) -> str:
    return "".join(["version: STSv1\n", f"mode: {mode}\n", *(f"mx: {m}\n" for m in mx),
                    f"max_age: {max_age}\n"])


def ask_all(members, names: list[str], *, threads_per_member: int = 8,
            seed: int = 1) -> list[tuple[int, str, str]]:
    """Every member asks getmta for every name at once (each in its own shuffled order, with
    `threads_per_member` connections); returns (member, name, answer) for every request."""
    results: list[tuple[int, str, str]] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work(index: int, chunk: list[str]) -> None:
        try:
            for name in chunk:
                answer = exim_ask(members[index].exim, f"getmta {name}")
                with lock:
                    results.append((index, name, answer))
        except BaseException as error:  # noqa: BLE001 (reported below)
            errors.append(error)

    workers = []
    for index in range(len(members)):
        order = list(names)
        random.Random(seed + index).shuffle(order)
        for t in range(threads_per_member):
            workers.append(threading.Thread(target=work, args=(index, order[t::threads_per_member])))
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=600)
    assert not errors, errors
    assert len(results) == len(members) * len(names)
    return results


def cleanup(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
