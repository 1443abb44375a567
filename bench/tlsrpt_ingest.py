#!/usr/bin/python3
"""TLSRPT ingest: how many libtlsrpt datagrams per second mtastsd takes in, and whether it loses
any at a given rate (issue 11; docs/tlsrpt.md).

    /usr/bin/python3 bench/tlsrpt_ingest.py --build-dir build [--count 200000] [--senders 1]

Starts mtastsd with [tlsrpt] enabled (send = false) and a metrics endpoint, in a temporary
directory, then:

  sustained rate  --count datagrams sent with blocking sendto() (a full socket queue makes the
                  sender wait, so nothing is lost); the rate is count / the time until the
                  daemon's mtasts_tlsrpt_sessions_stored_total reached count (received, parsed
                  and committed to LMDB).
  loss at 80 %    the same number sent the way Postfix sends (MSG_DONTWAIT: a full queue drops
                  the datagram at the sender), paced at 80 % of the sustained rate (or
                  --rate); reports datagrams refused by the socket and datagrams not stored.
  Exim request    the round trip of one `tlsrpt …` readsocket request (what an Exim
                  event_action pays per session), median of --requests.

The datagrams are realistic: a rotating mix of no-policy-found successes, sts successes and
sts failures over 1000 recipient domains, in libtlsrpt's byte format
(tests/integration/tlsrpt_helpers.py). Target: >= 50 000 datagrams/s sustained, zero loss at
80 %. Never a timed assertion: it prints figures.
"""

from __future__ import annotations

import argparse
import errno
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(SOURCE / "tests" / "integration"))

import tlsrpt_helpers as th  # noqa: E402
from tlsrpt_helpers import NO_POLICY, STS, Failure, Policy  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_datagrams(kinds: int = 1000) -> list[bytes]:
    out = []
    for i in range(kinds):
        domain = f"d{i}.example"
        lines = ["version: STSv1", "mode: enforce", f"mx: mx.{domain}", "max_age: 604800"]
        if i % 3 == 0:
            policy = Policy(NO_POLICY, domain)
        elif i % 3 == 1:
            policy = Policy(STS, domain, lines, [f"mx.{domain}"])
        else:
            policy = Policy(STS, domain, lines, [f"mx.{domain}"],
                            [Failure("certificate-expired", "192.0.2.1", f"mx.{domain}", None,
                                     "192.0.2.99", reason="certificate has expired")])
        out.append(th.datagram(domain, [policy], record=f"v=TLSRPTv1; rua=mailto:r@{domain}"))
    return out


class Daemon:
    def __init__(self, build: Path, work: Path):
        self.work = work
        self.socket = work / "tlsrpt.sock"
        self.exim = work / "exim.sock"
        self.port = free_port()
        config = work / "mtasts.toml"
        config.write_text(f"""cache = "{work}/cache.mdb"
resolver = ["127.0.0.1:9"]
log_level = "warning"
[tlsrpt]
enabled = true
socket = "{self.socket}"
socket_mode = "0666"
organization_name = "bench"
contact_info = "tlsrpt@bench.example"
send = false
queue_limit = 1000000
max_store_bytes = 1073741824
[daemon]
exim_socket = "{self.exim}"
socketmap_socket = ""
metrics_listen = "127.0.0.1:{self.port}"
""")
        self.log = open(work / "mtastsd.log", "wb")
        self.proc = subprocess.Popen([str(build / "src" / "daemon" / "mtastsd"), "--config",
                                      str(config)], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while not self.socket.exists():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise SystemExit((work / "mtastsd.log").read_text())
            time.sleep(0.05)

    def metric(self, name: str) -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[-1])
        return 0.0

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def wait_stored(self, target: float, timeout: float = 300) -> float:
        deadline = time.monotonic() + timeout
        while (stored := self.metric("mtasts_tlsrpt_sessions_stored_total")) < target:
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
        return stored

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)


def sustained(daemon: Daemon, datagrams: list[bytes], count: int) -> tuple[float, float]:
    base = daemon.metric("mtasts_tlsrpt_sessions_stored_total")
    cpu = daemon.cpu_seconds()
    start = time.perf_counter()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.connect(str(daemon.socket))
        n = len(datagrams)
        for i in range(count):
            s.send(datagrams[i % n])
    daemon.wait_stored(base + count)
    elapsed = time.perf_counter() - start
    return count / elapsed, (daemon.cpu_seconds() - cpu) / count


PACED_BURST = 4


def paced(
    daemon: Daemon, datagrams: list[bytes], count: int, rate: float
) -> tuple[int, int, float]:
    base = daemon.metric("mtasts_tlsrpt_sessions_stored_total")
    refused = 0
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.connect(str(daemon.socket))
        n = len(datagrams)
        # Like many Postfix smtp processes, not one spinning loop: the sender sleeps between
        # small bursts (never more than PACED_BURST at once, well inside the 10-datagram queue)
        # and leaves the CPU to the daemon, as an MTA's own work would.
        start = time.perf_counter()
        i = 0
        while i < count:
            due = start + i / rate
            now = time.perf_counter()
            if now < due:
                time.sleep(due - now)
            for _ in range(min(PACED_BURST, count - i)):
                try:
                    s.send(datagrams[i % n], socket.MSG_DONTWAIT)
                except OSError as error:
                    if error.errno not in (errno.EAGAIN, errno.ENOBUFS):
                        raise
                    refused += 1
                i += 1
        achieved = count / (time.perf_counter() - start)
    stored = daemon.wait_stored(base + count - refused, timeout=60)
    time.sleep(1)
    stored = daemon.metric("mtasts_tlsrpt_sessions_stored_total")
    return refused, int(count - refused - (stored - base)), achieved


def request_cost(daemon: Daemon, requests: int) -> float:
    times = []
    line = b"tlsrpt bench.example mx.bench.example 192.0.2.99 192.0.2.1 ok"
    for _ in range(requests):
        start = time.perf_counter()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(str(daemon.exim))
            s.sendall(line)
            s.shutdown(socket.SHUT_WR)
            answer = s.recv(100)
        times.append(time.perf_counter() - start)
        assert answer == b"ok", answer
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--build-dir", default=str(SOURCE / "build"))
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--rate", type=float, help="paced rate (default: 80 %% of sustained)")
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mtasts-tlsrpt-bench-"))
    daemon = Daemon(Path(args.build_dir), work)
    try:
        datagrams = make_datagrams()
        qlen = Path("/proc/sys/net/unix/max_dgram_qlen").read_text().strip()
        print(f"net.unix.max_dgram_qlen = {qlen} (the socket queue Postfix's sends must fit in)")
        rate, cpu = sustained(daemon, datagrams, args.count)
        print(f"sustained ingest:  {rate:10.0f} datagrams/s  ({cpu * 1e6:.1f} us mtastsd CPU "
              f"per datagram; {args.count} datagrams, blocking sender)")
        pace = args.rate or 0.8 * rate
        refused, lost, achieved = paced(daemon, datagrams, args.count, pace)
        print(f"paced at {pace:8.0f}/s (achieved {achieved:.0f}/s, bursts of {PACED_BURST}):  "
              f"{refused} refused by the socket (MSG_DONTWAIT), {lost} received but not stored")
        cost = request_cost(daemon, args.requests)
        print(f"Exim `tlsrpt` request round trip: {cost * 1e6:.0f} us median "
              f"({args.requests} requests)")
        size = (work / "tlsrpt.mdb").stat().st_size
        print(f"counts file: {size / 1e6:.1f} MB after {2 * args.count + args.requests} "
              "sessions over 1001 domains")
    finally:
        daemon.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
