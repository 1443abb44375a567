"""Shared pieces of the end-to-end delivery tests (test_e2e_exim.py, test_e2e_postfix.py).

A real MTA delivers real messages inside a network namespace the test creates. There the test
world (tests/world/world.py) answers DNS on 127.0.0.1:53 and HTTPS on :443, and runs SMTP sinks
(tests/world/smtp_sinks.py) on port 25 of their own loopback addresses: one MX host per
behaviour (a good certificate, expired, wrong name, untrusted CA, CN only, a certificate for
another listed MX, no STARTTLS, and a host outside the policy). The domains below, each with its
MX records and policy, go into a test-local copy of the bundled manifest; CASES says what must
happen to a message for each, the same for every MTA:

- enforce: delivered only to a good MX the policy lists, over verified TLS; otherwise deferred,
  never bounced (RFC 8461 §4, §5; rfc-checklist STS-32, STS-36, STS-37, STS-39, STS-42, STS-43);
- testing, none, no policy, a published policy that cannot be fetched and is not cached:
  delivered, even to a bad certificate or without TLS (STS-25, STS-40, STS-41).

The sinks log every message and connection to a JSON file (SinkLog reads it).
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import exim_helpers as eh

SENDER = "sender@e2e-sender.example"

# The MX hosts: one sink each, port 25 of its own loopback address (certs.py profiles).
SINKS = {
    "good.mx.test": {"address": "127.0.0.11", "cert": "valid"},
    "expired.mx.test": {"address": "127.0.0.12", "cert": "expired"},
    "wrongname.mx.test": {"address": "127.0.0.13", "cert": "wrong-name"},
    "untrusted.mx.test": {"address": "127.0.0.14", "cert": "untrusted"},
    "notls.mx.test": {"address": "127.0.0.15", "starttls": False},
    # valid for its own name, but no policy below lists it (except after the STS-42 change)
    "outside.mx.test": {"address": "127.0.0.16", "cert": "valid"},
    "cnonly.mx.test": {"address": "127.0.0.17", "cert": "cn-only"},
    # a listed MX presenting a valid certificate for another listed MX only (STS-37)
    "swapped.mx.test": {"address": "127.0.0.18", "cert": "valid", "cert_san": ["good.mx.test"]},
}


@dataclass(frozen=True)
class Case:
    """One recipient domain and what must happen to a message for it."""
    domain: str
    mx: tuple                       # ((preference, host), ...)
    mode: str | None                # enforce / testing / none; None: no _mta-sts record at all
    policy_mx: tuple = ()           # the policy's mx patterns
    https: dict = field(default_factory=dict)   # policy host overrides (fault modes)
    expect: str = "deliver"         # "deliver" or "defer"
    sink: str | None = None         # where it must arrive
    tls: bool | None = None         # must it arrive over TLS (None: either)
    rows: str = ""                  # rfc-checklist rows
    about: str = ""

    @property
    def effective_mode(self) -> str:
        """What the MTA must apply: the policy's mode, or none when there is no policy to be
        had (no record, or a fetch failure with nothing cached: STS-25)."""
        return self.mode if self.mode is not None and not self.https else "none"

    @property
    def id(self) -> str:
        return self.domain.removeprefix("e2e-").removesuffix(".example")


def stop_process(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL if it is still there after 15 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _mx(*hosts):
    return tuple((10 * (i + 1), h) for i, h in enumerate(hosts))


CASES = [
    # -- enforce: only a good, listed MX
    Case("e2e-enforce-good.example", _mx("good.mx.test"), "enforce", ("good.mx.test",),
         sink="good.mx.test", tls=True, rows="STS-32 STS-39",
         about="Enforce; the one MX is listed and has a valid certificate. Delivered over "
               "verified TLS, SNI = the MX name."),
    Case("e2e-enforce-mixed.example", _mx("expired.mx.test", "good.mx.test"), "enforce",
         ("expired.mx.test", "good.mx.test"), sink="good.mx.test", tls=True, rows="STS-43",
         about="Enforce; MX 10 is listed but its certificate expired, MX 20 is good. "
               "Delivered to MX 20 only."),
    Case("e2e-enforce-outside-first.example", _mx("outside.mx.test", "good.mx.test"), "enforce",
         ("good.mx.test",), sink="good.mx.test", tls=True, rows="STS-33 STS-43",
         about="Enforce; the preferred MX is not in the policy (valid certificate for its own "
               "name), MX 20 is good. Delivered to MX 20 only."),
    Case("e2e-enforce-wildcard.example", _mx("good.mx.test"), "enforce", ("*.mx.test",),
         sink="good.mx.test", tls=True, rows="STS-33",
         about="Enforce with the pattern *.mx.test; the MX good.mx.test matches it. Delivered."),
    # -- enforce: every MX bad -> deferred, never bounced
    Case("e2e-enforce-expired.example", _mx("expired.mx.test"), "enforce", ("expired.mx.test",),
         expect="defer", rows="STS-36 STS-39 STS-42",
         about="Enforce; the only MX presents an expired certificate. Deferred."),
    Case("e2e-enforce-wrongname.example", _mx("wrongname.mx.test"), "enforce",
         ("wrongname.mx.test",), expect="defer", rows="STS-36 STS-39 STS-42",
         about="Enforce; the only MX presents a certificate for wrong-name.invalid. Deferred."),
    Case("e2e-enforce-untrusted.example", _mx("untrusted.mx.test"), "enforce",
         ("untrusted.mx.test",), expect="defer", rows="STS-36 STS-39 STS-42",
         about="Enforce; the only MX presents a certificate from an untrusted CA. Deferred."),
    Case("e2e-enforce-notls.example", _mx("notls.mx.test"), "enforce", ("notls.mx.test",),
         expect="defer", rows="STS-39 STS-42",
         about="Enforce; the only MX offers no STARTTLS. Deferred, no clear-text fallback."),
    Case("e2e-enforce-outside.example", _mx("outside.mx.test"), "enforce", ("good.mx.test",),
         expect="defer", rows="STS-33 STS-39 STS-42",
         about="Enforce; the only MX is not in the policy (its certificate is valid for its "
               "own name). Deferred."),
    Case("e2e-enforce-allbad.example",
         _mx("expired.mx.test", "wrongname.mx.test", "untrusted.mx.test", "notls.mx.test",
             "outside.mx.test"), "enforce",
         ("expired.mx.test", "wrongname.mx.test", "untrusted.mx.test", "notls.mx.test"),
         expect="defer", rows="STS-39 STS-42 STS-43",
         about="Enforce; five MX hosts, each failing one way. Deferred."),
    Case("e2e-enforce-cnonly.example", _mx("cnonly.mx.test"), "enforce", ("cnonly.mx.test",),
         expect="defer", rows="STS-36",
         about="Enforce; the only MX presents a certificate with CN = its name and no SAN. "
               "RFC 8461 §4.2 (RFC 6125 DNS-ID): deferred."),
    Case("e2e-enforce-swapped.example", _mx("swapped.mx.test"), "enforce",
         ("good.mx.test", "swapped.mx.test"), expect="defer", rows="STS-37",
         about="Enforce listing good.mx.test and swapped.mx.test; the MX swapped.mx.test "
               "presents a valid certificate for good.mx.test only. The name checked is the "
               "MX host name: deferred."),
    # -- everything else: delivered, whatever the MX's TLS
    Case("e2e-testing-expired.example", _mx("expired.mx.test"), "testing", ("expired.mx.test",),
         sink="expired.mx.test", rows="STS-40",
         about="Testing; the MX presents an expired certificate. Delivered."),
    Case("e2e-testing-notls.example", _mx("notls.mx.test"), "testing", ("notls.mx.test",),
         sink="notls.mx.test", tls=False, rows="STS-40",
         about="Testing; the MX offers no STARTTLS. Delivered in clear text."),
    Case("e2e-none-untrusted.example", _mx("untrusted.mx.test"), "none", (),
         sink="untrusted.mx.test", rows="STS-41",
         about="Mode none; the MX presents a certificate from an untrusted CA. Delivered."),
    Case("e2e-nopolicy-notls.example", _mx("notls.mx.test"), None,
         sink="notls.mx.test", tls=False,
         about="No _mta-sts record; the MX offers no STARTTLS. Delivered in clear text."),
    Case("e2e-nopolicy-wrongname.example", _mx("wrongname.mx.test"), None,
         sink="wrongname.mx.test",
         about="No _mta-sts record; the MX's certificate names another host. Delivered."),
    Case("e2e-fetchfail-wrongname.example", _mx("wrongname.mx.test"), "enforce",
         ("wrongname.mx.test",), https={"status": 404}, sink="wrongname.mx.test", rows="STS-25",
         about="Valid TXT record, the policy host answers 404 (an enforce policy in the body), "
               "nothing cached: delivered as if there were no MTA-STS, even to a bad "
               "certificate."),
    Case("e2e-fetchfail-notls.example", _mx("notls.mx.test"), "enforce", ("notls.mx.test",),
         https={"cert": "expired"}, sink="notls.mx.test", tls=False, rows="STS-25",
         about="Valid TXT record, the policy host's certificate expired, nothing cached: "
               "delivered, even without TLS."),
]
CASES_BY_ID = {c.id: c for c in CASES}

# STS-42: deferred under enforce, then a new policy id that allows the MX; the retry must look
# the TXT record up again, fetch the new policy and deliver.
NEWID = Case("e2e-enforce-newid.example", _mx("outside.mx.test"), "enforce", ("good.mx.test",),
             expect="defer", rows="STS-42",
             about="Enforce allowing good.mx.test only, MX outside.mx.test: deferred. The test "
                   "then publishes a new id and a policy listing outside.mx.test; the retry "
                   "delivers.")
NEWID_POLICY = "version: STSv1\nmode: enforce\nmx: outside.mx.test\nmax_age: 86400\n"


def policy_text(mode: str, patterns) -> str:
    return ("version: STSv1\n" + f"mode: {mode}\n" + "".join(f"mx: {p}\n" for p in patterns)
            + "max_age: 86400\n")


def write_manifest(path: Path) -> Path:
    """The bundled manifest plus the e2e domains and sinks."""
    manifest = copy.deepcopy(eh.load_manifest())
    manifest["smtp"] = copy.deepcopy(SINKS)
    for case in CASES + [NEWID]:
        manifest["dns"][case.domain] = {"MX": [list(m) for m in case.mx]}
        if case.mode is not None:
            # A TTL of a minute: the cache (and mtastsd's cdb export) holds the id that long
            # (RFC 8461 §8.1), and a retry moved two minutes on sees a new one.
            manifest["dns"]["_mta-sts." + case.domain] = {"TXT": [["v=STSv1; id=e2e1;"]],
                                                          "ttl": 60}
            manifest["https"]["mta-sts." + case.domain] = {
                "body": policy_text(case.mode, case.policy_mx), **case.https}
        manifest["domains"][case.domain] = case.about
    manifest["domains"]["e2e-sender.example"] = "The sender domain of the e2e tests (no DNS)."
    path.write_text(json.dumps(manifest, indent=1))
    return path


# --------------------------------------------------------------------------------------------
# The world with sinks, in a namespace


@dataclass
class E2EWorld:
    ns: str
    info: dict
    work: Path
    sinks: "SinkLog"

    @property
    def ca_file(self) -> str:
        return self.info["ca_file"]

    def call(self, name: str, *args) -> object:
        """One tests/world/client.py World method (set_dns, set_https, log...) run inside the
        namespace, where the control API listens; returns its JSON result."""
        script = ("import json, sys; sys.path.insert(0, sys.argv[1]); import client; "
                  "w = client.World.__new__(client.World); w.info = json.loads(sys.argv[2]); "
                  "print(json.dumps(getattr(w, sys.argv[3])(*json.loads(sys.argv[4]))))")
        r = subprocess.run(["ip", "netns", "exec", self.ns, eh.PYTHON, "-c", script,
                            str(eh.source_dir() / "tests" / "world"), json.dumps(self.info),
                            name, json.dumps(list(args))],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, f"world {name}{args}: {r.stderr}"
        return json.loads(r.stdout)


def workdir(prefix: str) -> Path:
    """A scratch directory every MTA user can traverse (pytest's tmp dirs are 0700 root)."""
    d = Path(tempfile.mkdtemp(prefix=prefix))
    d.chmod(0o755)
    return d


@contextlib.contextmanager
def e2e_world(work: Path, prefix: str = "mtasts-e2e",
              manifest: Path | None = None) -> Iterator[E2EWorld]:
    """A namespace with the world (DNS :53, HTTPS :443) and the sinks (:25) running in it;
    `manifest` defaults to the bundled one plus CASES and SINKS (write_manifest)."""
    if manifest is None:
        manifest = write_manifest(work / "manifest.json")
    with eh.network_namespace(prefix) as ns:
        with eh.world(work / "world", manifest=manifest, netns=ns, dns_port=53, https_port=443,
                      smtp_port=25, lifetime=600) as info:
            assert info["dns"] == "127.0.0.1:53" and info["smtp_port"] == 25, info
            (work / "world").chmod(0o755)
            yield E2EWorld(ns, info, work, SinkLog(Path(info["smtp_log"])))


class SinkLog:
    """Reads the sinks' smtp-log.json."""

    def __init__(self, path: Path):
        self.path = path

    def read(self) -> dict:
        return json.loads(self.path.read_text())

    def messages(self, *, subject: str | None = None, sink: str | None = None) -> list[dict]:
        return [m for m in self.read()["messages"]
                if (subject is None or m["subject"] == subject)
                and (sink is None or m["sink"] == sink)]

    def connections(self, *, sink: str | None = None, since: float = 0) -> list[dict]:
        return [c for c in self.read()["connections"]
                if (sink is None or c["sink"] == sink) and c["time"] >= since]


def subject_for(case_id: str) -> str:
    """A subject that tells one test's message from every other."""
    return f"e2e {case_id} {uuid.uuid4().hex[:12]}"


def new_message_id() -> str:
    return f"<{uuid.uuid4().hex}@e2e-sender.example>"


def message_text(subject: str, recipient: str, message_id: str | None = None) -> str:
    return (f"From: {SENDER}\nTo: {recipient}\nSubject: {subject}\n"
            f"Message-ID: {message_id or new_message_id()}\n\n"
            "An end-to-end test message.\n")


def wait_for(predicate, timeout: float, interval: float = 0.1):
    """predicate()'s first true value within timeout, else its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def check_delivered(world: E2EWorld, case: Case, subject: str, recipient: str) -> dict:
    """The one copy that arrived, at the case's sink and nowhere else; returns its log entry."""
    got = world.sinks.messages(subject=subject)
    assert len(got) == 1, f"{case.domain}: expected one message at {case.sink}, got {got}"
    message = got[0]
    assert message["sink"] == case.sink, message
    assert message["rcpt_to"] == [recipient] and message["mail_from"] == SENDER, message
    if case.tls is not None:
        assert message["tls"] is case.tls, message
    if case.effective_mode == "enforce":
        assert message["tls"] and message["sni"] == case.sink, message
    return message


def check_not_delivered(world: E2EWorld, subject: str) -> None:
    got = world.sinks.messages(subject=subject)
    assert got == [], f"a message that must wait was delivered: {got}"


def cleanup(path: Path) -> None:
    """Remove a work directory, unless MTASTS_E2E_KEEP=1 (to read the MTA's logs)."""
    if os.environ.get("MTASTS_E2E_KEEP") == "1":
        print(f"kept {path}")
        return
    shutil.rmtree(path, ignore_errors=True)


def chown_tree(path: Path, user: str) -> None:
    """Hand a directory tree to an MTA user (Exim's spool, Postfix's queue...)."""
    import pwd
    entry = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        for name in [root] + [os.path.join(root, n) for n in dirs + files]:
            os.chown(name, entry.pw_uid, entry.pw_gid)


# --------------------------------------------------------------------------------------------
# mtastsd inside the namespace


def daemon_path() -> Path:
    """mtastsd of the build under test ($MTASTS_MTASTSD overrides it)."""
    env = os.environ.get("MTASTS_MTASTSD")
    return Path(env) if env else eh.build_dir() / "src" / "daemon" / "mtastsd"


@contextlib.contextmanager
def mtastsd(world: E2EWorld, work: Path, *, settings: str = "txt_max_ttl = 60",
            extra: str = "", lifetime: int = 300, env: dict | None = None) -> Iterator[dict]:
    """mtastsd serving the socketmap (and Exim) protocols on Unix sockets in `work`, resolving
    through the world; yields {"socketmap": path, "exim": path, "config": path, "log": path}.
    It runs inside the namespace under `timeout` and dies with the test (parent-death signal);
    `settings` are top-level mtasts.toml lines, `extra` lines of its [daemon] table, `env` adds
    to its environment (e.g. libfaketime).
    """
    binary = daemon_path()
    work.mkdir(parents=True, exist_ok=True)
    work.chmod(0o755)
    paths = {"socketmap": work / "socketmap.sock", "exim": work / "exim.sock",
             "config": work / "mtasts.toml", "log": work / "mtastsd.log"}
    body = f"""{settings}
[daemon]
exim_socket = {eh.toml_string(str(paths['exim']))}
socketmap_socket = {eh.toml_string(str(paths['socketmap']))}
socket_mode = "0666"
shutdown_timeout_ms = 2000
{extra}
"""
    eh.write_mtasts_config(paths["config"], cache=work / "cache.mdb", world=world.info,
                           extra=body)
    # `env` goes to mtastsd alone (through env(1)), not to ip, setpriv and timeout.
    cmd = ["ip", "netns", "exec", world.ns, "setpriv", "--pdeathsig", "TERM", "timeout", "-k",
           "5", str(lifetime), "env", *[f"{k}={v}" for k, v in (env or {}).items()],
           str(binary), "--config", str(paths["config"])]
    log = open(paths["log"], "wb")
    run_env = eh.exim_env()
    run_env.pop("LD_PRELOAD", None)  # a sanitized mtastsd carries its own ASan runtime
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env=run_env)
    try:
        deadline = time.monotonic() + 20
        while "ready:" not in paths["log"].read_text(errors="replace"):
            if proc.poll() is not None:
                raise RuntimeError(f"mtastsd exited with {proc.returncode}:\n"
                                   + paths["log"].read_text(errors="replace"))
            if time.monotonic() > deadline:
                raise RuntimeError("mtastsd not ready within 20 s:\n"
                                   + paths["log"].read_text(errors="replace"))
            time.sleep(0.05)
        yield paths
    finally:
        stop_process(proc)
        log.close()
        text = paths["log"].read_text(errors="replace")
        assert "Sanitizer" not in text, text


# --------------------------------------------------------------------------------------------
# A validating resolver for the MTAs (DANE)

UNBOUND = shutil.which("unbound", path="/usr/sbin:/usr/bin:/sbin:/bin")
RESOLVER_ADDRESS = "127.0.0.53"


@contextlib.contextmanager
def validating_resolver(world: E2EWorld, work: Path, *, address: str = RESOLVER_ADDRESS,
                        lifetime: int = 600) -> Iterator[dict]:
    """Debian's unbound daemon inside the world's namespace, on address:53, as the namespace's
    resolver: Exim and Postfix do not validate DNSSEC themselves, they read the AD bit of their
    resolver's answers (Exim: dnssec_request_domains and hosts_require_dane/hosts_try_dane;
    Postfix: smtp_dns_support_level = dnssec). unbound forwards "." to the world's DNS, validates
    with the world's trust anchors and keeps nothing in its caches (TTL 0: the world changes
    while tests run). /etc/netns/<ns>/resolv.conf names it, with `options trust-ad edns0`:
    glibc 2.36 clears the AD bit of every answer without trust-ad. The original resolv.conf is
    put back on exit. unbound runs under `timeout` with a parent-death signal and is stopped on
    exit, so it never outlives the test. Yields {"address", "config", "log"}.
    (mtasts itself need not use it: libunbound validates in-process with `trust_anchor`.)"""
    if UNBOUND is None:
        import pytest
        pytest.fail("unbound is not installed (apt-get install unbound; scripts/install-deps.sh "
                    "installs it): the MTAs need a validating resolver for DANE")
    work.mkdir(parents=True, exist_ok=True)
    work.chmod(0o755)
    dns_host, dns_port = world.info["dns"].rsplit(":", 1)
    config = work / "unbound.conf"
    log_path = work / "unbound.log"
    config.write_text(f"""# written by tests/integration/e2e_helpers.py
server:
  interface: {address}
  port: 53
  do-ip6: no
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "{work}"
  pidfile: ""
  use-syslog: no
  logfile: ""
  verbosity: 1
  val-log-level: 2
  num-threads: 1
  access-control: 127.0.0.0/8 allow
  do-not-query-localhost: no
  module-config: "validator iterator"
  trust-anchor-file: "{world.info['trust_anchor_file']}"
  # .test is one of unbound's RFC 6761 local zones; the e2e MX hosts outside the DNSSEC
  # zones live there
  local-zone: "test." nodefault
  # nothing cached: the world's TTLs are 0 and tests change it while unbound runs
  cache-max-ttl: 0
  cache-max-negative-ttl: 0
  val-bogus-ttl: 0
  aggressive-nsec: no
  prefetch: no
  serve-expired: no
  # a name that never answers (a "timeout" fault) must not mark the world as down for others
  infra-keep-probing: yes
  infra-host-ttl: 5
remote-control:
  control-enable: no
forward-zone:
  name: "."
  forward-addr: {dns_host}@{dns_port}
""")
    config.chmod(0o644)
    cmd = ["ip", "netns", "exec", world.ns, "setpriv", "--pdeathsig", "TERM", "timeout", "-k",
           "5", str(lifetime), UNBOUND, "-d", "-d", "-c", str(config)]
    log = open(log_path, "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"})
    resolv = Path("/etc/netns") / world.ns / "resolv.conf"
    original = resolv.read_text()
    try:
        deadline = time.monotonic() + 20
        while "start of service" not in log_path.read_text(errors="replace"):
            if proc.poll() is not None:
                raise RuntimeError(f"unbound exited with {proc.returncode}:\n"
                                   + log_path.read_text(errors="replace"))
            if time.monotonic() > deadline:
                raise RuntimeError("unbound not ready within 20 s:\n"
                                   + log_path.read_text(errors="replace"))
            time.sleep(0.05)
        resolv.write_text(f"nameserver {address}\noptions trust-ad edns0 timeout:2 attempts:2\n")
        yield {"address": address, "config": config, "log": log_path}
    finally:
        resolv.write_text(original)
        stop_process(proc)
        log.close()


def resolver_query(world: E2EWorld, name: str, qtype: str, server: str = RESOLVER_ADDRESS,
                   port: int = 53) -> dict:
    """One query with the DO bit to a resolver inside the namespace (python3-dnslib):
    {"rcode", "ad", "answers": [text, ...]}."""
    script = ("import json, sys; from dnslib import DNSRecord, EDNS0, RCODE, QTYPE; "
              "q = DNSRecord.question(sys.argv[1], sys.argv[2]); "
              "q.add_ar(EDNS0(udp_len=1232, flags='do')); "
              "r = DNSRecord.parse(q.send(sys.argv[3], int(sys.argv[4]), tcp=True, timeout=10)); "
              "print(json.dumps({'rcode': RCODE[r.header.rcode], 'ad': bool(r.header.ad), "
              "'answers': [str(rr.rdata) for rr in r.rr if QTYPE[rr.rtype] == sys.argv[2]]}))")
    r = subprocess.run(["ip", "netns", "exec", world.ns, eh.PYTHON, "-c", script, name, qtype,
                        server, str(port)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, f"query {name} {qtype}: {r.stderr}"
    return json.loads(r.stdout)
