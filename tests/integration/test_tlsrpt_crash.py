"""Issue 11, crash safety of TLSRPT: kill -9 during ingest and during sending.

test_sigkill_during_ingest_loses_no_committed_count: mtastsd with [tlsrpt] (send = false) takes
libtlsrpt datagrams from a sender thread at full speed and is killed with SIGKILL at a random
moment; a scraper thread reads mtasts_tlsrpt_sessions_stored_total meanwhile (it counts sessions
whose LMDB transaction committed). After each kill, before anything else touches the file,
`mtasts tlsrpt show --json` opens the counts file by itself, and:
  - each kind of datagram is counted no less than after the previous trial plus what the killed
    daemon reported committed (a committed count is never lost), and no more than was sent;
  - every policy's rows agree (a batch's transaction is all or nothing): a datagram kind that
    always carries one failure detail has that detail's count equal to its policy's failed count,
    one with two details has both equal to it, and the two policies of a two-policy datagram are
    counted equally.
mtastsd then restarts on the same files: the stale datagram socket refuses datagrams, the new
daemon re-binds it (a new file) and counts a probe datagram.

test_sigkill_during_send_sends_each_report_at_most_once: `mtasts tlsrpt send` on the next day's
clock (libfaketime FAKETIME=+1d) hands reports for several domains (8 mailto: deliveries) to a
sendmail stand-in that records each call and then takes a random short while; it is killed with
SIGKILL at a random moment of its run, then `tlsrpt send` runs to completion, then once more.
Each trial starts from a fresh copy of one counts file, so each has deliveries to cut off. Per
trial, each (domain, rua) is handed to sendmail at most once in all; after the completed run
each was either handed over exactly once or is reported as interrupted (never both sent by the
completed run and interrupted, and one that never reached sendmail is reported interrupted); the
last run sends nothing.

The kill moments of the send are drawn up to the run time of an undisturbed run, measured (x1.2)
in a first calibration trial, as in test_stress_crash.py.

CI: 5 trials each; MTASTS_LONG=1: 100 each; MTASTS_SANITIZE=1: 2. MTASTS_STRESS_SEED fixes the
random choices.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import random
import re
import shutil
import signal
import socket
import stat
import subprocess
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import daemon_helpers as dh
import exim_helpers as eh
import stress_helpers as st
import tlsrpt_helpers as th
from client import World
from daemon_helpers import Mtastsd, free_port
from tlsrpt_helpers import NO_POLICY, STS, TLSA, Failure, Policy

INGEST_TRIALS = st.counts(ci=5, long=100, sanitize=2)
SEND_TRIALS = st.counts(ci=5, long=100, sanitize=2)
SEED = int(os.environ.get("MTASTS_STRESS_SEED", "0")) or int(time.time())
SENDER_IP = "192.0.2.25"


# -- ingest ---------------------------------------------------------------------------------------

def sts(domain: str, failures=()) -> Policy:
    return Policy(STS, domain, ["version: STSv1", "mode: enforce", f"mx: mx1.{domain}",
                                "max_age: 86400"], [f"mx1.{domain}"], list(failures))


def failure(result: str, domain: str) -> Failure:
    return Failure(result, SENDER_IP, f"mx1.{domain}", None, "192.0.2.50", reason=f"{result} seen")


# Each kind of datagram, one delivery request (session) each, with its domain.
KINDS = {
    "sts-ok": ("ok.ingest.example", [sts("ok.ingest.example")]),
    "sts-fail": ("fail.ingest.example",
                 [sts("fail.ingest.example", [failure("certificate-expired",
                                                      "fail.ingest.example")])]),
    "tlsa-two-failures": ("dane.ingest.example", [Policy(
        TLSA, "mx.dane.ingest.example", ["3 1 1 1f3a5b"], [],
        [failure("tlsa-invalid", "dane.ingest.example"),
         failure("dnssec-invalid", "dane.ingest.example")])]),
    "no-policy": ("plain.ingest.example", [Policy(NO_POLICY, "plain.ingest.example")]),
    "mixed-ok": ("mixed.ingest.example", [sts("mixed.ingest.example")]),
    "mixed-fail": ("mixed.ingest.example",
                   [sts("mixed.ingest.example", [failure("validation-failure",
                                                         "mixed.ingest.example")])]),
    "two-policies": ("both.ingest.example", [Policy(TLSA, "mx.both.ingest.example", ["3 1 1 aa"]),
                                             sts("both.ingest.example")]),
}
DATAGRAMS = {kind: th.datagram(domain, policies) for kind, (domain, policies) in KINDS.items()}


def counted_per_kind(shown: dict) -> Counter:
    """Sessions of each kind in `tlsrpt show --json` (all days), after checking that every
    policy's rows agree with each other."""
    rows: dict[str, list[dict]] = {}
    for domains in shown.values():
        for domain, policies in domains.items():
            rows.setdefault(domain, []).extend(policies)
    known = {domain for domain, _ in KINDS.values()}
    assert set(rows) <= known, f"domains never sent: {set(rows) - known}"
    out = Counter()

    def merged(domain: str) -> dict[str, dict]:
        # One policy per type per domain; a day change during the run splits it over two days.
        by_type: dict[str, dict] = {}
        for policy in rows.get(domain, []):
            total = by_type.setdefault(policy["policy-type"], {
                "successful": 0, "failed": 0, "details": Counter()})
            total["successful"] += policy["successful"]
            total["failed"] += policy["failed"]
            for detail in policy["failure-details"]:
                total["details"][detail["result-type"]] += detail["failed-session-count"]
        return by_type

    ok = merged("ok.ingest.example")
    assert set(ok) <= {"sts"} and all(p["failed"] == 0 and not p["details"] for p in ok.values())
    out["sts-ok"] = sum(p["successful"] for p in ok.values())

    fail = merged("fail.ingest.example")
    for p in fail.values():
        assert p["successful"] == 0, p
        assert p["details"] == Counter({"certificate-expired": p["failed"]}), \
            f"fail.ingest.example: failure details {p['details']} for {p['failed']} failed"
    out["sts-fail"] = sum(p["failed"] for p in fail.values())

    dane = merged("dane.ingest.example")
    assert set(dane) <= {"tlsa"}
    for p in dane.values():
        assert p["successful"] == 0, p
        assert p["details"] == Counter({"tlsa-invalid": p["failed"],
                                        "dnssec-invalid": p["failed"]}), \
            f"dane.ingest.example: failure details {p['details']} for {p['failed']} failed"
    out["tlsa-two-failures"] = sum(p["failed"] for p in dane.values())

    plain = merged("plain.ingest.example")
    assert set(plain) <= {"no-policy-found"}
    assert all(p["failed"] == 0 and not p["details"] for p in plain.values())
    out["no-policy"] = sum(p["successful"] for p in plain.values())

    mixed = merged("mixed.ingest.example")
    assert set(mixed) <= {"sts"}
    for p in mixed.values():
        expected = Counter({"validation-failure": p["failed"]}) if p["failed"] else Counter()
        assert p["details"] == expected, \
            f"mixed.ingest.example: failure details {p['details']} for {p['failed']} failed"
    out["mixed-ok"] = sum(p["successful"] for p in mixed.values())
    out["mixed-fail"] = sum(p["failed"] for p in mixed.values())

    both = merged("both.ingest.example")
    if both:
        assert set(both) == {"tlsa", "sts"}, both
        assert both["tlsa"]["successful"] == both["sts"]["successful"], \
            f"both.ingest.example: the two policies of one datagram counted apart: {both}"
        assert both["tlsa"]["failed"] == both["sts"]["failed"] == 0
    out["two-policies"] = both["tlsa"]["successful"] if both else 0
    return out


class Blaster:
    """A thread sending random kinds of datagrams as fast as the socket takes them, counting
    the ones the kernel accepted, and a thread reading the daemon's stored-sessions metric."""

    def __init__(self, path: Path, metrics_url: str, rng: random.Random):
        self.path = str(path)
        self.metrics_url = metrics_url
        self.sent = Counter()
        self.stored_seen = 0  # the latest mtasts_tlsrpt_sessions_stored_total read
        self.stop = threading.Event()
        self.kinds = [rng.choice(list(KINDS)) for _ in range(4096)]
        self.threads = [threading.Thread(target=self.send, daemon=True),
                        threading.Thread(target=self.scrape, daemon=True)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=10)
            assert not thread.is_alive(), "the datagram sender or metrics reader hangs"

    def send(self) -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.settimeout(0.2)  # a full receive queue blocks; a dead daemon must not hang us
            n = 0
            while not self.stop.is_set():
                kind = self.kinds[n % len(self.kinds)]
                n += 1
                try:
                    s.sendto(DATAGRAMS[kind], self.path)
                except (ConnectionRefusedError, FileNotFoundError, TimeoutError):
                    time.sleep(0.005)  # the daemon is gone: not sent
                    continue
                self.sent[kind] += 1

    def scrape(self) -> None:
        while not self.stop.is_set():
            try:
                with urllib.request.urlopen(self.metrics_url, timeout=1) as response:
                    text = response.read().decode()
            except OSError:
                time.sleep(0.01)
                continue
            for line in text.splitlines():
                if line.startswith("mtasts_tlsrpt_sessions_stored_total "):
                    self.stored_seen = max(self.stored_seen, int(float(line.split()[1])))
            time.sleep(0.01)


def start_ingest_daemon(work: Path, world) -> tuple[Mtastsd, str]:
    port = free_port()
    d = Mtastsd(work, world, name="ingest", daemon_keys=f'metrics_listen = "127.0.0.1:{port}"\n',
                top_keys=th.tlsrpt_table(work / "ingest" / "tlsrpt.sock", send=False))
    return d, f"http://127.0.0.1:{port}/metrics"


def stored_metric(url: str) -> int:
    with urllib.request.urlopen(url, timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("mtasts_tlsrpt_sessions_stored_total "):
                return int(float(line.split()[1]))
    return 0


@pytest.fixture(scope="module")
def world():
    dh.require_daemon()
    eh.require_built(eh.cli_path())
    with World(lifetime=7200) as w:
        yield w


def test_sigkill_during_ingest_loses_no_committed_count(world, tmp_path):
    tmp_path.chmod(0o755)
    rng = random.Random(SEED)
    sock = tmp_path / "ingest" / "tlsrpt.sock"
    store = tmp_path / "ingest" / "tlsrpt.mdb"
    sent = Counter()
    previous = Counter()
    figures = Counter()
    blast_times = []
    d, metrics_url = start_ingest_daemon(tmp_path, world)
    try:
        for trial in range(INGEST_TRIALS):
            blaster = Blaster(sock, metrics_url, rng)
            blaster.start()
            blast_for = rng.uniform(0.02, 0.6)
            time.sleep(blast_for)
            in_write = st.syscall_on(d.proc.pid, [str(store)])
            d.proc.send_signal(signal.SIGKILL)
            d.proc.wait(timeout=30)
            assert d.proc.returncode == -signal.SIGKILL, d.log()
            blaster.finish()
            sent += blaster.sent
            blast_times.append(blast_for)
            figures["in write on tlsrpt.mdb"] += in_write is not None
            figures["datagrams sent"] += sum(blaster.sent.values())
            figures["committed before the kill (metric)"] += blaster.stored_seen

            # The counts file as the CLI opens it, before the daemon touches it again.
            shown = th.cli(d.config, "tlsrpt", "show", "--json")
            assert shown.stderr == "", f"trial {trial}: opening the counts file: {shown.stderr}"
            counted = counted_per_kind(json.loads(shown.stdout))
            for kind in KINDS:
                assert counted[kind] <= sent[kind], \
                    f"trial {trial}: {counted[kind]} {kind} counted, only {sent[kind]} sent"
                assert counted[kind] >= previous[kind], \
                    f"trial {trial}: {kind} went from {previous[kind]} to {counted[kind]} (lost)"
            gained = sum(counted.values()) - sum(previous.values())
            assert gained >= blaster.stored_seen, \
                (f"trial {trial}: the daemon reported {blaster.stored_seen} sessions committed, "
                 f"the file gained only {gained}")
            previous = counted

            # Restart on the same files: the stale socket is replaced.
            stale = os.lstat(sock)
            assert stat.S_ISSOCK(stale.st_mode), "the killed daemon's socket file is gone"
            with pytest.raises(ConnectionRefusedError):
                th.send_datagrams(sock, [DATAGRAMS["no-policy"]])
            d, metrics_url = start_ingest_daemon(tmp_path, world)
            bound = os.lstat(sock)  # a new file (its inode number may be the freed one again)
            assert (bound.st_ino, bound.st_ctime_ns) != (stale.st_ino, stale.st_ctime_ns), \
                "the socket was not re-bound"
            th.send_datagrams(sock, [DATAGRAMS["no-policy"]])
            sent["no-policy"] += 1
            dh.wait_for(lambda: stored_metric(metrics_url) >= 1, timeout=15,
                        what="the probe datagram stored after the restart")
            complaints = [line for line in d.log().splitlines()
                          if ": error:" in line or ": critical:" in line or ": warning:" in line]
            assert complaints == [], f"trial {trial}: the restart on the same files: {complaints}"

        assert d.stop() == 0, d.log()
    finally:
        if d.proc.poll() is None:  # a failed check: do not leave the daemon behind
            eh.terminate(d.proc, 30)
    final = counted_per_kind(th.show(d.config))
    for kind in KINDS:
        assert previous[kind] <= final[kind] <= sent[kind], (kind, previous, final, sent)
    assert final["no-policy"] >= INGEST_TRIALS  # the probes after each restart
    st.report(f"tlsrpt ingest under SIGKILL (seed {SEED})", [
        f"trials: {INGEST_TRIALS}, kill after {st.ms(min(blast_times))}.."
        f"{st.ms(max(blast_times))} of sending",
        f"datagrams sent: {figures['datagrams sent']}, counted in the end: {sum(final.values())}",
        f"committed before a kill, as the metric said: "
        f"{figures['committed before the kill (metric)']}",
        f"kills while a thread wrote or synced tlsrpt.mdb: {figures['in write on tlsrpt.mdb']}",
    ])


# -- send -----------------------------------------------------------------------------------------

# Report domains and their rua (mailto: addresses unique to a domain), and one without a record.
RUA = {
    "r0.send.example": ["r0@rua.example"],
    "r1.send.example": ["r1-a@rua.example", "r1-b@rua.example"],
    "r2.send.example": ["r2@rua.example"],
    "r3.send.example": ["r3-a@rua.example", "r3-b@rua.example", "r3-c@rua.example"],
    "r4.send.example": ["r4@rua.example"],
}
NO_RECORD = "norecord.send.example"
DOMAIN_OF = {address: domain for domain, addresses in RUA.items() for address in addresses}
LINE = re.compile(r"^\d{4}-\d\d-\d\d (\S+) -> mailto:(\S+): (.*)$")
INTERRUPTED = "an attempt was interrupted; not repeated (at most once)"

# Records each call (argv first, so a call counts even when its caller is killed right after),
# keeps the message, then takes 0-250 ms like a real sendmail queueing it.
SLOW_SENDMAIL = """#!/bin/sh
calls="${CRASH_CALLS:?CRASH_CALLS is not set}"
printf '%s\\n' "$@" > "$calls/$$.argv.tmp" && mv "$calls/$$.argv.tmp" "$calls/$$.argv"
cat > "$calls/$$.eml"
r=$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')
sleep "0.$(printf '%03d' $((r % 250)))"
exit 0
"""


def running(script: Path) -> list[int]:
    """Processes running `script` (orphaned stand-ins of a killed `tlsrpt send`)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if str(script).encode() in argv[:2]:
            out.append(int(entry))
    return out


def calls_in(directory: Path) -> list[tuple[str, Path]]:
    """(recipient, message file) of each recorded sendmail call."""
    out = []
    for argv_file in directory.glob("*.argv"):
        argv = argv_file.read_text().splitlines()
        assert argv[:4] == ["-oi", "-f", "tlsrpt-noreply@sender.example", "--"], argv
        out.append((argv[4], argv_file.with_suffix(".eml")))
    return out


@dataclass
class SendFigures:
    trials: int = 0
    killed: int = 0
    in_write: int = 0
    outcomes: Counter = field(default_factory=Counter)


class SendRun:
    def __init__(self, world, work: Path):
        self.work = work
        for domain, addresses in RUA.items():
            rua = ",".join(f"mailto:{a}" for a in addresses)
            world.set_dns(f"_smtp._tls.{domain}", {"TXT": [[f"v=TLSRPTv1; rua={rua}"]]})
        self.sendmail = work / "slow-sendmail"
        self.sendmail.write_text(SLOW_SENDMAIL)
        self.sendmail.chmod(0o755)
        self.daemon = Mtastsd(work, world, name="send", top_keys=th.tlsrpt_table(
            work / "send" / "tlsrpt.sock", sendmail=[str(self.sendmail), "-oi"], send=False))
        try:
            datagrams = [th.datagram(domain, [sts(domain)]) for domain in [*RUA, NO_RECORD]]
            th.send_datagrams(self.daemon.dir / "tlsrpt.sock", datagrams * 3)
            dh.wait_for(lambda: sum(len(domains) for domains in
                                    th.show(self.daemon.config).values()) == len(datagrams),
                        what="the report domains' sessions stored")
        finally:
            assert self.daemon.stop() == 0, self.daemon.log()
        self.config = self.daemon.config
        self.store = self.daemon.dir / "tlsrpt.mdb"
        self.pristine = work / "tlsrpt.mdb.pristine"
        shutil.copyfile(self.store, self.pristine)
        self.counts = th.show(self.config)
        self.rng = random.Random(SEED + 1)
        self.bound: float | None = None  # run time of an undisturbed send, x1.2
        self.figures = SendFigures()
        self.env = eh.faketime_env(
            dh.faketime_library(), {"FAKETIME": "+1d", "FAKETIME_DONT_FAKE_MONOTONIC": "1"},
            starts_programs=True)

    def trial(self, n: int) -> None:
        calls = self.work / f"calls-{n:04d}"
        calls.mkdir()
        env = {**self.env, "CRASH_CALLS": str(calls)}
        for name in ("tlsrpt.mdb", "tlsrpt.mdb-lock"):
            (self.daemon.dir / name).unlink(missing_ok=True)
        shutil.copyfile(self.pristine, self.store)

        started = time.monotonic()
        process = subprocess.Popen([str(eh.cli_path()), "--config", str(self.config), "tlsrpt",
                                    "send"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, env=eh.exim_env(env))
        killed = False
        if self.bound is not None:
            delay = started + self.rng.uniform(0, self.bound) - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if process.poll() is None:
                self.figures.in_write += st.syscall_on(process.pid, [str(self.store)]) is not None
                process.send_signal(signal.SIGKILL)
                killed = True
        out, err = process.communicate(timeout=120)
        assert "Sanitizer" not in err, err
        if killed and process.returncode != -signal.SIGKILL:
            killed = False  # it finished just before the signal
        if not killed:
            assert process.returncode == 0, (out, err)
            if self.bound is None:
                self.bound = (time.monotonic() - started) * 1.2
        self.figures.killed += killed
        dh.wait_for(lambda: not running(self.sendmail), timeout=30,
                    what="the killed run's sendmail stand-ins finished")
        before_completion = Counter(to for to, _ in calls_in(calls))

        # The counts are untouched by sending, and the file opens.
        assert th.show(self.config) == self.counts
        completed = th.cli(self.config, "tlsrpt", "send", env=env)
        dh.wait_for(lambda: not running(self.sendmail), timeout=30, what="sendmail stand-ins")
        outcome: dict[str, str] = {}
        for line in completed.stdout.splitlines():
            if m := LINE.match(line):
                domain, address, text = m.groups()
                assert DOMAIN_OF.get(address) == domain, line
                assert address not in outcome, f"{address} reported twice:\n{completed.stdout}"
                assert text in ("sent", INTERRUPTED), line
                outcome[address] = text
        sent_now = sum(1 for text in outcome.values() if text == "sent")
        assert f"\n{sent_now} sent, 0 failed, 0 given up" in "\n" + completed.stdout, \
            completed.stdout

        calls_made = calls_in(calls)
        handed = Counter(to for to, _ in calls_made)
        assert set(handed) <= set(DOMAIN_OF), handed
        for address, domain in DOMAIN_OF.items():
            assert handed[address] <= 1, \
                f"trial {n}: the report for {domain} went to {address} {handed[address]} times"
            state = outcome.get(address)
            if state == "sent":
                assert before_completion[address] == 0 and handed[address] == 1, \
                    f"trial {n}: {address} sent by the completed run, but was handed over before"
            elif state == INTERRUPTED:
                assert killed, f"trial {n}: {address} interrupted, but no run was killed"
            else:
                assert handed[address] == 1, \
                    (f"trial {n}: {address} was never handed to sendmail and the completed run "
                     f"does not report it interrupted:\n{completed.stdout}")
            self.figures.outcomes[
                "sent by the first run" if state is None else
                "sent by the completed run" if state == "sent" else
                "interrupted, had reached sendmail" if handed[address] else
                "interrupted, before sendmail"] += 1
        if not killed:
            assert outcome == {}, completed.stdout
        for to, message in calls_made:
            if outcome.get(to) == "sent" or not killed:
                parsed = email.message_from_bytes(message.read_bytes(),
                                                  policy=email.policy.default)
                assert parsed["TLS-Report-Domain"] == DOMAIN_OF[to]
                _, report = th.report_of_mail(parsed)
                assert report["policies"][0]["summary"]["total-successful-session-count"] == 3

        again = th.cli(self.config, "tlsrpt", "send", env=env)
        assert "\n0 sent, 0 failed" in "\n" + again.stdout, again.stdout
        assert Counter(to for to, _ in calls_in(calls)) == handed, "a report was sent again"
        self.figures.trials += 1


def test_sigkill_during_send_sends_each_report_at_most_once(world, tmp_path):
    tmp_path.chmod(0o755)
    run = SendRun(world, tmp_path)
    run.trial(0)  # undisturbed: measures the run time the kill moments are drawn from
    assert run.bound is not None
    for n in range(1, SEND_TRIALS + 1):
        run.trial(n)
    f = run.figures
    st.report(f"tlsrpt send under SIGKILL (seed {SEED})", [
        f"trials: {f.trials - 1} with a random SIGKILL (+1 calibration), "
        f"{f.killed} killed mid-run, kill moments up to {st.ms(run.bound)}",
        f"deliveries ({len(DOMAIN_OF)} per trial): "
        + ", ".join(f"{k} {v}" for k, v in sorted(f.outcomes.items())),
        f"kills while tlsrpt.mdb was being written or synced: {f.in_write}",
    ])
