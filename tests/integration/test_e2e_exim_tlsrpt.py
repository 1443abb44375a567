"""TLSRPT (RFC 8460) from the real Exim 4.96 end to end (issue 11, design §7): the shipped
fragments (packaging/exim) with mtasts-tlsrpt.conf report every outbound SMTP session of the
MTA-STS transports, and of remote_smtp, to mtastsd with one `tlsrpt …` readsocket request;
mtastsd completes each from its cache and counts it; the report mail goes out through the same
Exim and is never itself reported.

The set-up is test_e2e_exim.py's (e2e_helpers.py: the test world in a network namespace, SMTP
sinks on port 25 with good, expired, wrong-name, untrusted, CN-only certificates and one without
STARTTLS), two fault sinks of its own (STARTTLS refused; a handshake answered in clear text),
and test_e2e_dane.py's DNSSEC pieces: the zone dane.example signed, TLSA records for two sinks
(one matching their key, one not) and unbound as the namespace's validating resolver.
Routing is the readsocket variant (mtastsd runs anyway: it collects), with `[tlsrpt] enabled`
and `send = false`. Each case submits one message through Exim (a spool of its own); a deferred
one is run once more with -qff, so each failure counts twice. Then `mtasts tlsrpt show --json`
must hold, per recipient domain, exactly the expected policy, success and failure counts,
result types, reasons, sending IP, MX name and MX IP.

The report mail: `mtasts tlsrpt send` one day on (libfaketime), its sendmail command being
this Exim (`exim4 -C <config> -oi`), mails every domain's report to
reports@e2e-tlsrpt-rua.example, whose MX presents an expired certificate under an enforce
policy (RFC 8460 §3, rfc-checklist RPT-09: report mail is delivered despite TLS failures, so
the MTA-STS routers leave it alone). Each arrives at the sink and parses back to the counts
above, and the report mail's own sessions were not counted (the loop rule, RPT-09); a normal
message to the same domain is counted, so the difference is the report sender.

Run: MTASTS_BUILD_DIR=build MTASTS_SOURCE_DIR=. /usr/bin/python3 -m pytest -q -p no:cacheprovider \
         tests/integration/test_e2e_exim_tlsrpt.py          (as root)
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import json
import re
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pytest

import e2e_helpers as e2e
import exim_helpers as eh
import test_e2e_dane as ed
import test_e2e_exim as ee
import tlsrpt_helpers as th

RUA_DOMAIN = "e2e-tlsrpt-rua.example"
RUA = f"reports@{RUA_DOMAIN}"
REPORT_SENDER = "tlsrpt-noreply@sender.example"   # [tlsrpt] mail_from's default here
SENDING_IP = "127.0.0.1"                          # Exim's source address towards the sinks
REPORT_EXIM = "report"      # the Exim instance `tlsrpt send` hands report mail to

DANE_SINKS = {"mx-good.dane.example": ed.SINKS["mx-good.dane.example"],
              "mx-mismatch.dane.example": ed.SINKS["mx-mismatch.dane.example"]}
# MX hosts the world's sinks cannot play (fault_sinks() runs them): one refuses STARTTLS (5xx),
# one accepts it and then answers the TLS handshake with clear text; both take mail in clear.
FAULT_SINKS = {"refuse.mx.test": {"address": "127.0.0.41", "mode": "refuse"},
               "broken.mx.test": {"address": "127.0.0.42", "mode": "broken"}}
ALL_SINKS = {**e2e.SINKS, **DANE_SINKS, **FAULT_SINKS}

ENFORCE = ("mtasts_enforce", "mtasts_enforce_smtp")
TESTING = ("mtasts_testing", "mtasts_testing_smtp")
DANE = ("mtasts_dane", "mtasts_dane_smtp")
NORMAL = ("normal_dnslookup", "remote_smtp")

# The reasons mtasts-tlsrpt.conf gives (failure-reason-code); mtastsd adds its own.
EXPIRED = ("certificate-expired", "certificate has expired")
MISMATCH = ("certificate-host-mismatch", "no DNS name in the certificate matches the MX host")
UNTRUSTED = ("certificate-not-trusted", "certificate is not issued by a trusted CA")
NO_STARTTLS = ("starttls-not-supported", "the MX did not offer STARTTLS")
NO_TLSA_MATCH = ("tlsa-invalid", "the certificate matches no TLSA record")
MX_NOT_IN_POLICY = ("validation-failure", "mx-not-in-policy")
FETCH_ERROR = ("sts-policy-fetch-error", None)   # mtastsd's own reason text, not checked here
REFUSED = ("starttls-not-supported", "the MX refused STARTTLS")
# Exim's error text (msg:host:defer); the words after the prefix are GnuTLS's, not pinned here.
HANDSHAKE_ERROR = "TLS session: (gnutls_handshake): "
BROKEN = ("validation-failure", HANDSHAKE_ERROR + "...")


@dataclass(frozen=True)
class Case:
    """One recipient domain: where its message goes and what mtastsd must have counted."""
    id: str
    domain: str
    route: tuple                     # (router, transport)
    delivered: bool                  # else deferred (and run once more with -qff)
    policy: str | None               # policy-type counted; None: no session at all
    successful: int = 0
    failures: tuple = ()             # ((result-type, reason), sink, count)
    policy_domain: str | None = None  # default: the domain
    about: str = ""


CASES = [
    Case("enforce-good", "e2e-enforce-good.example", ENFORCE, True, "sts", successful=1,
         about="verified TLS to a listed MX: one success"),
    Case("enforce-expired", "e2e-enforce-expired.example", ENFORCE, False, "sts",
         failures=((EXPIRED, "expired.mx.test", 2),)),
    Case("enforce-wrongname", "e2e-enforce-wrongname.example", ENFORCE, False, "sts",
         failures=((MISMATCH, "wrongname.mx.test", 2),)),
    Case("enforce-untrusted", "e2e-enforce-untrusted.example", ENFORCE, False, "sts",
         failures=((UNTRUSTED, "untrusted.mx.test", 2),)),
    Case("enforce-notls", "e2e-enforce-notls.example", ENFORCE, False, "sts",
         failures=((NO_STARTTLS, "notls.mx.test", 2),)),
    Case("enforce-cnonly", "e2e-enforce-cnonly.example", ENFORCE, False, "sts",
         failures=((MISMATCH, "cnonly.mx.test", 2),),
         about="the tls:cert event refuses the CN-only certificate and TLSRPT still sees it"),
    Case("testing-outside", "e2e-testing-outside.example", TESTING, True, "sts",
         failures=((MX_NOT_IN_POLICY, "outside.mx.test", 1),),
         about="testing policy listing good.mx.test, MX outside.mx.test with a valid "
               "certificate: delivered; mtastsd adds validation-failure mx-not-in-policy"),
    Case("testing-expired", "e2e-testing-expired.example", TESTING, True, "sts",
         failures=((EXPIRED, "expired.mx.test", 1),)),
    Case("testing-notls", "e2e-testing-notls.example", TESTING, True, "sts",
         failures=((NO_STARTTLS, "notls.mx.test", 1),)),
    Case("enforce-refused", "e2e-tlsrpt-refused.example", ENFORCE, False, "sts",
         failures=((REFUSED, "refuse.mx.test", 2),),
         about="STARTTLS offered, then refused with a 5xx: reported at msg:host:defer"),
    Case("enforce-broken", "e2e-tlsrpt-broken.example", ENFORCE, False, "sts",
         failures=((BROKEN, "broken.mx.test", 2),),
         about="the TLS handshake fails before any certificate: msg:host:defer"),
    Case("testing-broken", "e2e-tlsrpt-testing-broken.example", TESTING, True, "sts",
         failures=((BROKEN, "broken.mx.test", 1),),
         about="testing: the failed handshake is reported once, then Exim delivers in clear "
               "on a new connection, which reports nothing more"),
    Case("nopolicy-wrongname", "e2e-nopolicy-wrongname.example", NORMAL, True,
         "no-policy-found", successful=1,
         about="remote_smtp: TLS negotiated, no policy asks for more"),
    Case("fetchfail-wrongname", "e2e-fetchfail-wrongname.example", NORMAL, True, "sts",
         failures=((FETCH_ERROR, "wrongname.mx.test", 1),),
         about="the policy host answers 404, nothing cached: remote_smtp delivers over TLS "
               "and reports ok; mtastsd adds the fetch failure it saw"),
    Case("nopolicy-notls", "e2e-nopolicy-notls.example", NORMAL, True, None,
         about="remote_smtp without TLS: no session reported"),
    Case("dane-good", "tlsrpt-good.dane.example", DANE, True, "tlsa", successful=1,
         policy_domain="mx-good.dane.example"),
    Case("dane-mismatch", "tlsrpt-mismatch.dane.example", DANE, False, "tlsa",
         failures=((NO_TLSA_MATCH, "mx-mismatch.dane.example", 2),),
         policy_domain="mx-mismatch.dane.example"),
]
CASES_BY_ID = {c.id: c for c in CASES}
NEW_DOMAINS = {   # beyond e2e_helpers.CASES: domain -> (MX host, MTA-STS policy or None)
    "e2e-testing-outside.example": ("outside.mx.test", e2e.policy_text("testing",
                                                                       ["good.mx.test"])),
    "tlsrpt-good.dane.example": ("mx-good.dane.example", None),
    "tlsrpt-mismatch.dane.example": ("mx-mismatch.dane.example", None),
    "e2e-tlsrpt-refused.example": ("refuse.mx.test", e2e.policy_text("enforce",
                                                                     ["refuse.mx.test"])),
    "e2e-tlsrpt-broken.example": ("broken.mx.test", e2e.policy_text("enforce",
                                                                    ["broken.mx.test"])),
    "e2e-tlsrpt-testing-broken.example": ("broken.mx.test", e2e.policy_text(
        "testing", ["broken.mx.test"])),
    # RPT-09: the rua's MX presents an expired certificate under an enforce policy
    RUA_DOMAIN: ("expired.mx.test", e2e.policy_text("enforce", ["expired.mx.test"])),
}


def write_manifest(path: Path) -> Path:
    """e2e_helpers' manifest, the DANE zone and sinks, the new domains and a TLSRPT record
    for every domain here."""
    e2e.write_manifest(path)
    manifest = json.loads(path.read_text())
    manifest["dnssec"] = {"zones": {"dane.example": "signed"}}
    manifest["smtp"].update(DANE_SINKS)
    manifest["dns"]["_25._tcp.mx-mismatch.dane.example"] = {
        "TLSA": [[3, 1, 1, ed.MISMATCH_DIGEST]]}
    for host, spec in FAULT_SINKS.items():
        manifest["dns"][host] = {"A": [spec["address"]]}
    for domain, (mx, policy) in NEW_DOMAINS.items():
        manifest["dns"][domain] = {"MX": [[10, mx]]}
        if policy is not None:
            manifest["dns"]["_mta-sts." + domain] = {"TXT": [["v=STSv1; id=rpt1;"]], "ttl": 60}
            manifest["https"]["mta-sts." + domain] = {"body": policy}
        manifest["domains"][domain] = "TLSRPT from Exim (test_e2e_exim_tlsrpt.py)"
    for domain in [c.domain for c in CASES] + [RUA_DOMAIN]:
        manifest["dns"]["_smtp._tls." + domain] = {"TXT": [[f"v=TLSRPTv1; rua=mailto:{RUA}"]]}
    path.write_text(json.dumps(manifest, indent=1))
    return path


class Exim(ee.Exim):
    """test_e2e_exim's Exim runner, its config with TLSRPT added the way packaging/exim/
    README.md says (mtasts-tlsrpt.conf before the macro files, MTASTS_TLSRPT_REMOTE_EVENT on
    remote_smtp). `socket` replaces mtastsd's Exim socket; `macros` adds macros."""

    def __init__(self, env: dict, name: str, variant: str = "readsocket", *,
                 socket_path: str | None = None, macros: dict | None = None):
        if variant == "dlfunc" and eh.sanitized():
            pytest.skip("an ASan-built module cannot load in Exim's re-executed delivery process")
        self.variant = variant
        self.env = env
        self.dir = env["work"] / "exim" / f"{variant}-{name}"
        self.dir.mkdir(parents=True)
        self.dir.chmod(0o755)
        all_macros = {"MTASTS_TLSRPT_SENDER": REPORT_SENDER,
                      "MTASTS_SOCKET": socket_path or env["daemon"]["exim"]}
        if variant == "dlfunc":
            all_macros["MTASTS_MODULE"] = ee.MODULE
        all_macros.update(macros or {})
        self.config = eh.write_packaged_exim_config(
            self.dir / "exim.conf", self.dir, variant, macros=all_macros, keep_env=False,
            tlsrpt=True,
            main="\n".join([f"MTASTS_TLS_VERIFY_CERTIFICATES = {env['world'].ca_file}",
                            "keep_environment = MTASTS_CONFIG : FAKETIME"]))
        e2e.chown_tree(self.dir / "spool", ee.EXIM_USER)
        e2e.chown_tree(self.dir / "log", ee.EXIM_USER)


FAULT_SINK_SCRIPT = r"""
import socket, sys, threading

def session(conn, mode, name):
    reader = conn.makefile("rb")
    send = lambda text: conn.sendall(text.encode() + b"\r\n")
    send(f"220 {name} ESMTP fault sink")
    in_data = False
    for raw in reader:
        line = raw.decode(errors="replace").strip()
        if in_data:
            if line == ".":
                in_data = False
                send("250 2.0.0 Ok")
            continue
        verb = line.split(" ", 1)[0].upper()
        if verb == "EHLO":
            send(f"250-{name}\r\n250 STARTTLS")
        elif verb == "STARTTLS" and mode == "refuse":
            send("502 5.5.1 STARTTLS not available")
        elif verb == "STARTTLS":
            send("220 2.0.0 Ready to start TLS")
            conn.sendall(b"this is not a TLS record\r\n" * 4)
            reader.read()   # until the client gives up
            break
        elif verb in ("HELO", "MAIL", "RCPT", "RSET", "NOOP"):
            send("250 2.0.0 Ok")
        elif verb == "DATA":
            send("354 End data with <CR><LF>.<CR><LF>")
            in_data = True
        elif verb == "QUIT":
            send("221 2.0.0 Bye")
            break
        else:
            send("502 5.5.2 Command not recognised")
    conn.close()

def serve(server, mode, name):
    while True:
        conn, _ = server.accept()
        threading.Thread(target=session, args=(conn, mode, name), daemon=True).start()

for spec in sys.argv[1:]:
    name, address, mode = spec.split(",")
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((address, 25))
    server.listen(16)
    threading.Thread(target=serve, args=(server, mode, name), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"""


@contextlib.contextmanager
def fault_sinks(world: e2e.E2EWorld):
    """FAULT_SINKS on port 25 inside the namespace, for as long as the context lasts."""
    specs = [f"{host},{spec['address']},{spec['mode']}" for host, spec in FAULT_SINKS.items()]
    proc = subprocess.Popen(["ip", "netns", "exec", world.ns, "setpriv", "--pdeathsig", "TERM",
                             "timeout", "900", eh.PYTHON, "-c", FAULT_SINK_SCRIPT, *specs],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        ready = proc.stdout.readline()
        assert ready.strip() == "ready", ready + proc.stdout.read()
        yield
    finally:
        e2e.stop_process(proc)


# --------------------------------------------------------------------------------------------
# Fixtures


def today() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d")


def settings(world: e2e.E2EWorld) -> str:
    """mtasts.toml's top-level keys: DANE with the world's trust anchor. dane_min_ttl keeps a
    domain's DANE state (the world's TTLs are 0) so that mtastsd still knows which policy
    applied when Exim reports the session."""
    return "\n".join(["txt_max_ttl = 60",
                      f"trust_anchor = {eh.toml_string(world.info['trust_anchor_file'])}",
                      "dane = true", "dane_min_ttl = 600"])


@pytest.fixture(scope="module")
def env():
    eh.require_root_and_exim()
    if not e2e.daemon_path().exists():
        pytest.fail(f"mtastsd is not built ({e2e.daemon_path()})")
    eh.require_built(eh.cli_path())
    if e2e.UNBOUND is None:
        pytest.fail("unbound is not installed (apt-get install unbound): Exim needs a "
                    "validating resolver for DANE")
    if eh.faketime_library() is None:
        pytest.fail("libfaketime is not installed (apt-get install libfaketime)")
    work = e2e.workdir("mtasts-e2e-tlsrpt-")
    try:
        manifest = write_manifest(work / "manifest.json")
        with e2e.e2e_world(work, prefix="mtasts-rpt", manifest=manifest) as world:
            world.call("set_dns", "_25._tcp.mx-good.dane.example",
                       {"TLSA": [[3, 1, 1, ed.spki_sha256(world)]]})
            # mtasts.toml for the module (the dlfunc variant of the unreachable-daemon case)
            cache = work / "cache"
            cache.mkdir()
            e2e.chown_tree(cache, ee.EXIM_USER)
            module_config = eh.write_mtasts_config(work / "mtasts.toml", cache=cache / "c.mdb",
                                                   world=world.info, extra=settings(world))
            # The Exim that mtastsd's `tlsrpt send` hands report mail to (its own spool: no
            # retry record of the cases below delays the report).
            report_dir = work / "exim" / f"readsocket-{REPORT_EXIM}"
            sendmail = [eh.EXIM, "-C", str(report_dir / "exim.conf"), "-oi"]
            table = th.tlsrpt_table(work / "mtastsd" / "tlsrpt.sock", sendmail=sendmail,
                                    send=False)
            with contextlib.ExitStack() as stack:
                stack.enter_context(e2e.validating_resolver(world, work / "unbound"))
                stack.enter_context(fault_sinks(world))
                daemon = stack.enter_context(e2e.mtastsd(
                    world, work / "mtastsd", settings=settings(world), extra="\n" + table,
                    lifetime=900))
                yield {"world": world, "work": work, "mtasts": module_config,
                       "daemon": daemon}
    finally:
        e2e.cleanup(work)


def counts(env, *args: str) -> dict:
    """`mtasts tlsrpt show --json` for every day: {day: {domain: [policy, ...]}}."""
    return th.show(env["daemon"]["config"], *args)


def domain_counts(env, domain: str) -> list[dict] | None:
    days = [d for d in counts(env).values() if domain in d]
    assert len(days) <= 1, f"{domain}: sessions on several days (the run crossed midnight UTC?)"
    return days[0][domain] if days else None


def session_total(env) -> int:
    return sum(p["successful"] + p["failed"] for day in counts(env).values()
               for policies in day.values() for p in policies)


def expected_total(cases) -> int:
    return sum(c.successful + sum(n for _, _, n in c.failures) for c in cases)


@pytest.fixture(scope="module")
def delivered(env):
    """Every case's message, submitted once (deferred ones run once more with -qff), and the
    counts settled: {case id: (Exim, message id, subject)}."""
    out = {}
    for case in CASES:
        exim = Exim(env, case.id)
        subject = e2e.subject_for(case.id)
        exim.send(f"user@{case.domain}", subject)
        if not case.delivered:
            exim.queue_run()
        out[case.id] = (exim, exim.message_id(subject), subject)
    want = expected_total(CASES)
    settled = e2e.wait_for(lambda: session_total(env) >= want, 15)
    assert settled, f"{session_total(env)} sessions counted, want {want}:\n{counts(env)}"
    time.sleep(0.5)    # a stray extra session would arrive by now
    return out


def panics(exim: Exim) -> list[str]:
    """The panic log's lines but the one every -C delivery writes there (a failed expansion
    of event_action would show up here, and only here)."""
    return [line for line in exim.paniclog().splitlines()
            if "exim user lost privilege for using -C option" not in line]


# --------------------------------------------------------------------------------------------
# The sessions


def check_exim_outcome(env, case: Case, exim: Exim, message_id: str, subject: str) -> None:
    """Reporting changed nothing in the delivery: delivered through the expected router and
    transport, or deferred twice and never bounced; no expansion failure (paniclog)."""
    world = env["world"]
    router, transport = case.route
    if case.delivered:
        if not any(sink in FAULT_SINKS for _, sink, _ in case.failures):
            got = e2e.wait_for(lambda: world.sinks.messages(subject=subject), 5)
            assert len(got) == 1, f"not delivered:\n{exim.mainlog()}"
        line = [x for x in exim.lines(message_id) if " => " in x]
        assert line and f"R={router} T={transport} " in line[0], exim.mainlog()
    else:
        e2e.check_not_delivered(world, subject)
        deferred = [x for x in exim.lines(message_id) if " == " in x]
        assert len(deferred) == 2, exim.mainlog()
        assert all(f"R={router} T={transport} defer" in x for x in deferred), deferred
        ee.check_no_bounce(exim, message_id)
    assert panics(exim) == [], exim.paniclog()


def reason_class(result: str, reason: str) -> str | None:
    """The failure-reason-code as the cases give it: GnuTLS's words after HANDSHAKE_ERROR and
    mtastsd's own fetch error text are not pinned."""
    if result == FETCH_ERROR[0]:
        return None
    return HANDSHAKE_ERROR + "..." if reason.startswith(HANDSHAKE_ERROR) else reason


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_session_counts(env, delivered, case):
    exim, message_id, subject = delivered[case.id]
    check_exim_outcome(env, case, exim, message_id, subject)
    policies = domain_counts(env, case.domain)
    if case.policy is None:
        assert policies is None, f"{case.domain}: no session expected, got {policies}"
        return
    assert policies is not None, f"{case.domain}: nothing counted:\n{counts(env)}"
    (policy,) = policies
    assert policy["policy-type"] == case.policy, policy
    assert policy["policy-domain"] == (case.policy_domain or case.domain), policy
    failed = sum(n for _, _, n in case.failures)
    assert (policy["successful"], policy["failed"]) == (case.successful, failed), policy
    if case.policy == "sts" and all(f != FETCH_ERROR for f, _, _ in case.failures):
        assert policy["mx-host"] and policy["policy-string"][0] == "version: STSv1", policy
    elif case.policy == "sts":    # no policy could be had: none to quote
        assert policy["mx-host"] == [] and policy["policy-string"] == [], policy
    elif case.policy == "tlsa":   # RFC 8460 §4.5: the host's TLSA RRset, "u s m hex"
        assert policy["policy-string"], policy
        assert all(re.fullmatch(r"3 1 1 [0-9a-f]{64}", s) for s in policy["policy-string"]), policy
    details = sorted((d["result-type"], reason_class(d["result-type"], d["failure-reason-code"]),
                      d["receiving-mx-hostname"], d["receiving-ip"], d["sending-mta-ip"],
                      d["failed-session-count"]) for d in policy["failure-details"])
    want = sorted((result, reason, sink, ALL_SINKS[sink]["address"], SENDING_IP, n)
                  for (result, reason), sink, n in case.failures)
    assert details == want, policy


def test_no_session_is_counted_twice(env, delivered):
    """Exactly one report per SMTP session: the total is the sum of the cases (an event that
    reported twice, e.g. tcp:close and msg:host:defer for one failure, would show here)."""
    assert session_total(env) == expected_total(CASES), counts(env)


# --------------------------------------------------------------------------------------------
# The report mail, through the real Exim


def run_tlsrpt_send(env) -> subprocess.CompletedProcess:
    """`mtasts tlsrpt send` inside the namespace (it looks _smtp._tls up in the world) with the
    clock one day on, so that today is a closed day."""
    environment = eh.exim_env(eh.faketime_env(
        eh.faketime_library(), {"FAKETIME": "+1d", "FAKETIME_DONT_FAKE_MONOTONIC": "1"},
        starts_programs=True))
    return subprocess.run(["ip", "netns", "exec", env["world"].ns, str(eh.cli_path()),
                           "--config", str(env["daemon"]["config"]), "tlsrpt", "send"],
                          capture_output=True, text=True, env=environment, timeout=120)


def test_report_mail_round_trip_and_no_loop(env, delivered):
    world = env["world"]
    before = counts(env)
    reported = [c for c in CASES if c.policy is not None]
    exim = Exim(env, REPORT_EXIM)
    started = time.time()
    p = run_tlsrpt_send(env)
    assert p.returncode == 0, f"{p.stdout}\n{p.stderr}"
    assert re.search(rf"^{len(reported)} sent, 0 failed", p.stdout, re.M), p.stdout

    def arrived():
        got = [m for m in world.sinks.messages(sink="expired.mx.test")
               if m["time"] >= started and m["rcpt_to"] == [RUA]]
        return got if len(got) >= len(reported) else None

    mails = e2e.wait_for(arrived, 30)
    assert mails, f"{p.stdout}\n{exim.mainlog()}\n{exim.paniclog()}"
    assert len(mails) == len(reported), mails
    by_domain = {}
    for entry in mails:
        # RPT-09: delivered to the expired MX under the rua's enforce policy, over TLS, by the
        # normal router: the MTA-STS routers left the report sender alone.
        assert entry["mail_from"] == REPORT_SENDER and entry["tls"], entry
        message = email.message_from_string(entry["data"], policy=email.policy.default)
        assert message["TLS-Required"] == "No", entry["data"][:2000]
        filename, report = th.report_of_mail(message)
        assert th.FILENAME.match(filename), filename
        by_domain[message["TLS-Report-Domain"]] = report
    assert sorted(by_domain) == sorted(c.domain for c in reported)
    for case in reported:
        (policy,) = by_domain[case.domain]["policies"]
        failed = sum(n for _, _, n in case.failures)
        assert policy["policy"]["policy-type"] == case.policy, policy
        assert policy["summary"] == {"total-successful-session-count": case.successful,
                                     "total-failure-session-count": failed}, policy
        got = sorted((d["result-type"], d["receiving-mx-hostname"], d["failed-session-count"])
                     for d in policy.get("failure-details", []))
        assert got == sorted((r, sink, n) for (r, _), sink, n in case.failures), policy
    for line in [x for x in exim.mainlog().splitlines() if " => " + RUA in x]:
        assert "R=normal_dnslookup T=remote_smtp " in line, line
    assert panics(exim) == [], exim.paniclog()
    # The loop rule: the report mail's sessions were not counted, nothing else changed.
    time.sleep(1)
    after = counts(env)
    assert after == before, f"the report mail was counted:\n{json.dumps(after, indent=1)}"
    assert domain_counts(env, RUA_DOMAIN) is None
    # Control: a normal message to the same domain goes through the enforce transport, fails
    # on the expired certificate and is counted, so only the report sender made the difference.
    subject = e2e.subject_for("rua-control")
    exim.send(f"someone@{RUA_DOMAIN}", subject)
    e2e.check_not_delivered(world, subject)
    control = e2e.wait_for(lambda: domain_counts(env, RUA_DOMAIN), 10)
    assert control and control[0]["policy-type"] == "sts" and control[0]["failed"] == 1, control
    assert control[0]["failure-details"][0]["result-type"] == "certificate-expired", control


# --------------------------------------------------------------------------------------------
# Reporting never delays or fails a delivery


@contextlib.contextmanager
def silent_socket(path: Path):
    """A Unix socket that accepts connections and never answers (a hung mtastsd); yields the
    list of connections it accepted."""
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    path.chmod(0o666)
    server.listen(64)
    held, stop = [], threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                held.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield held
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        server.close()


@pytest.mark.parametrize("daemon_state", ["missing", "hung"])
def test_delivery_without_mtastsd(env, daemon_state):
    """The dlfunc router set with mtastsd's socket missing, or accepting and never answering
    (readsocket times out after MTASTS_TLSRPT_TIMEOUT): mail is delivered or deferred exactly
    as without TLSRPT, nothing bounces, nothing reaches the panic log."""
    world = env["world"]
    path = env["work"] / f"tlsrpt-{daemon_state}.sock"
    with contextlib.ExitStack() as stack:
        held = stack.enter_context(silent_socket(path)) if daemon_state == "hung" else None
        for case_id in ("enforce-good", "testing-notls", "enforce-expired"):
            case = CASES_BY_ID[case_id]
            exim = Exim(env, f"{daemon_state}-{case_id}", "dlfunc", socket_path=str(path),
                        macros={"MTASTS_TLSRPT_TIMEOUT": "1s"})
            subject = e2e.subject_for(f"{daemon_state} {case_id}")
            started = time.monotonic()
            exim.send(f"user@{case.domain}", subject)
            elapsed = time.monotonic() - started
            message_id = exim.message_id(subject)
            router, transport = case.route
            if case.delivered:
                got = e2e.wait_for(lambda: world.sinks.messages(subject=subject), 5)
                assert len(got) == 1, exim.mainlog()
                assert any(f"R={router} T={transport} " in x for x in exim.lines(message_id)
                           if " => " in x), exim.mainlog()
            else:
                e2e.check_not_delivered(world, subject)
                ee.check_no_bounce(exim, message_id)
            assert panics(exim) == [], exim.paniclog()
            # One request per session: a hung daemon costs a session one timeout, no more.
            assert elapsed < 20, f"{case_id}: {elapsed:.1f} s"
            if held is not None:
                assert elapsed >= 1, f"{case_id}: the request did not wait for mtastsd"
        if held is not None:
            assert len(held) == 3, f"one request per session, got {len(held)}"
