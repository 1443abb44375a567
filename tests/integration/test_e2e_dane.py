"""DANE (RFC 7672) end to end: the real Exim 4.96 (exim4-daemon-heavy) with the shipped fragments
(packaging/exim: mtasts_dane -> mtasts_dane_smtp with hosts_require_dane) and mtastsd's Postfix
socketmap, against a DNSSEC-signed test world, each case named after its rfc-checklist row
(shared/rfc-checklist.md §4; docs/dane.md says which stance mtasts takes on the open rows).

The set-up, in one network namespace (e2e_helpers.py):
- the test world (tests/world/world.py) on 127.0.0.1:53/443 with a "dnssec" section: the zone
  dane.example is signed (its trust anchor in world.json's trust_anchor_file),
  insecure.dane.example is an unsigned (insecure) delegation below it, bogus.dane.example is
  signed with a key its DS does not match. `.example`, not `.test`: unbound and libunbound
  answer NXDOMAIN for `.test` themselves (RFC 6761 local zone);
- SMTP sinks on port 25 (tests/world/smtp_sinks.py), the MX hosts, named in dane.example. Every
  sink certificate carries the same key (tests/world/certs.py: one leaf key per world), so the
  DANE-EE record `3 1 1 <SHA-256 of the SubjectPublicKeyInfo>` computed from the world's
  certs/leaf-key.pem matches each of them; a "mismatch" record carries another digest. The
  TLSA records go in through the world's control API once the world (and so its key) exists;
- Debian's unbound daemon on 127.0.0.53 as the namespace's resolver (resolv.conf with
  `options trust-ad edns0`), validating with the world's trust anchor and caching nothing:
  Exim (and Postfix) only read the AD bit, they do not validate (e2e_helpers.validating_resolver);
- mtasts (the Exim module, and mtastsd for the readsocket variant and the socketmap) asks the
  world directly (`resolver = 127.0.0.1:53`) with `trust_anchor` = the world's anchor file:
  libunbound validates in-process and never trusts an AD bit from the network (docs/dane.md),
  so a resolver that sets AD wrongly cannot hide an engine bug. `dane_min_ttl = 0`: the world's
  TTLs are 0 and nothing may be remembered between cases.

Each Exim case, in the three variants (dlfunc; readsocket; cdb, whose export must hold the
domain), submits one message (`exim4 -odi`, a spool of its own, as test_e2e_exim.py does) and
checks the sinks' log and Exim's main log: delivered through the expected router and transport
(the DANE transport logs CV=dane), or held (deferred, never bounced, still queued after a forced
queue run `-qff`). One more Exim test takes the trust-ad option away: mail for a DANE domain
must then wait at routing, not bounce.

Postfix 3.7 (postfix_helpers.py): mtastsd's socketmap answer for every case, and real deliveries
with `smtp_dns_support_level = dnssec` and that socketmap as smtp_tls_policy_maps, Postfix doing
its own DANE through the namespace's resolver.

Run: MTASTS_BUILD_DIR=build MTASTS_SOURCE_DIR=. /usr/bin/python3 -m pytest -q -p no:cacheprovider \
         tests/integration/test_e2e_dane.py          (as root)
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import e2e_helpers as e2e
import exim_helpers as eh
import test_e2e_exim as ee      # the Exim runner of the e2e tests (its fixture stays there)
from test_daemon_protocols import socketmap_ask

ZONES = {"dane.example": "signed", "insecure.dane.example": "unsigned",
         "bogus.dane.example": "bogus"}

# The MX hosts: one sink each (a loopback address of its own, port 25).
SINKS = {
    "mx-good.dane.example": {"address": "127.0.0.31", "cert": "valid"},
    "mx-mismatch.dane.example": {"address": "127.0.0.32", "cert": "valid"},
    "mx-selfsigned.dane.example": {"address": "127.0.0.33", "cert": "self-signed"},
    "mx-notlsa.dane.example": {"address": "127.0.0.34", "cert": "valid"},
    "mx-bogustlsa.dane.example": {"address": "127.0.0.35", "cert": "valid"},
    "mx-slow.dane.example": {"address": "127.0.0.36", "cert": "valid"},
    "mx.insecure.dane.example": {"address": "127.0.0.37", "cert": "valid"},
    "mx.bogus.dane.example": {"address": "127.0.0.38", "cert": "valid"},
}
# What each host's _25._tcp TLSA name holds: "match" (3 1 1 of the sinks' key), "mismatch"
# (3 1 1 of another digest), "bogus" (matching data with corrupt signatures: only a resolver that
# ignored DNSSEC would deliver), "timeout" (never answered), or nothing (a secure denial in the
# signed zone). mx.bogus.dane.example's matching record is bogus by its zone.
TLSA = {
    "mx-good.dane.example": "match",
    "mx-mismatch.dane.example": "mismatch",
    "mx-selfsigned.dane.example": "match",
    "mx-bogustlsa.dane.example": "bogus",
    "mx-slow.dane.example": "timeout",
    # insecure: the record does not match, so a DANE check made anyway would refuse the host
    "mx.insecure.dane.example": "mismatch",
    "mx.bogus.dane.example": "match",
}
MISMATCH_DIGEST = "ab" * 32

DANE_ROUTE = ("mtasts_dane", "mtasts_dane_smtp")
ENFORCE_ROUTE = ("mtasts_enforce", "mtasts_enforce_smtp")
NORMAL_ROUTE = ("normal_dnslookup", "remote_smtp")


@dataclass(frozen=True)
class Case:
    """One recipient domain, its DNS and policy, and what must happen to mail for it."""
    name: str                       # the rfc-checklist row(s) it is named after
    domain: str
    mx: tuple                       # ((preference, host), ...)
    mode: str | None = None         # MTA-STS policy mode; None: no _mta-sts record
    policy_mx: tuple = ()
    https: dict = field(default_factory=dict)   # policy host overrides (fault modes)
    getmta: str = ""                # what getmta must answer (a regex)
    socketmap: str = ""             # what mtastsd's socketmap must answer (a regex)
    route: tuple | None = None      # (router, transport) that delivers; None: held
    sink: str | None = None         # where it must arrive
    cv: str | None = None           # Exim's CV= on the delivery line
    held_by: str = ""               # for held mail: the router/transport of the deferral
    reason: str = ""                # ... and text its message must hold
    about: str = ""

    @property
    def id(self) -> str:
        return self.name


def _mx(*hosts):
    return tuple((10 * (i + 1), h) for i, h in enumerate(hosts))


CASES = [
    Case("DANE-03a-I-1", "i1.dane.example", _mx("mx-good.dane.example"), "enforce",
         ("mx-good.dane.example",), getmta="dane", socketmap="OK dane-only", route=DANE_ROUTE,
         sink="mx-good.dane.example", cv="dane",
         about="Secure MX RRset, usable TLSA matching the MX's key, and an enforce policy "
               "listing it (certificate PKIX-valid too): delivered through the DANE transport, "
               "DANE-authenticated."),
    Case("DANE-03a", "secure.dane.example", _mx("mx-good.dane.example"), None,
         getmta="dane", socketmap="OK dane-only", route=DANE_ROUTE,
         sink="mx-good.dane.example", cv="dane",
         about="Secure MX RRset, usable TLSA matching, no MTA-STS: delivered through the DANE "
               "transport."),
    Case("I-2", "i2.dane.example", _mx("mx-mismatch.dane.example"), "enforce",
         ("mx-mismatch.dane.example",), getmta="dane", socketmap="OK dane-only",
         held_by="R=mtasts_dane T=mtasts_dane_smtp defer",
         reason="TLS session: (certificate verification failed)",
         about="Usable TLSA that does NOT match the MX's key, while an enforce policy would "
               "pass (PKIX-valid certificate for the MX name): held (DANE-01, DANE-11)."),
    Case("I-4", "i4.dane.example", _mx("mx-selfsigned.dane.example"), "enforce",
         ("mx-selfsigned.dane.example",), getmta="dane", socketmap="OK dane-only",
         route=DANE_ROUTE, sink="mx-selfsigned.dane.example", cv="dane",
         about="DANE-EE matches a self-signed certificate (not PKIX-valid), enforce policy: "
               "delivered (DANE-first stance, DANE-09)."),
    Case("I-5-bogus-tlsa", "i5.dane.example", _mx("mx-bogustlsa.dane.example"), "enforce",
         ("mx-bogustlsa.dane.example",), getmta="fail", socketmap="TEMP DANE lookup for .*",
         held_by="R=mtasts_lookup defer", reason="a DANE lookup for it failed",
         about="The MX host's TLSA RRset has corrupt signatures (bogus), enforce policy: held "
               "(DANE-02, DANE-04); MTA-STS cannot override it."),
    Case("DANE-02-bogus-zone", "bogus.dane.example", _mx("mx.bogus.dane.example"), "enforce",
         ("mx.bogus.dane.example",), getmta="fail", socketmap="TEMP DANE lookup for .*",
         held_by="R=mtasts_lookup defer", reason="a DANE lookup for it failed",
         about="The whole domain is in a zone whose DS matches no key (bogus), enforce policy "
               "published there: held."),
    Case("DANE-04-timeout", "slow.dane.example", _mx("mx-slow.dane.example"), "enforce",
         ("mx-slow.dane.example",), getmta="fail", socketmap="TEMP DANE lookup for .*",
         held_by="R=mtasts_lookup defer", reason="a DANE lookup for it failed",
         about="The TLSA lookup of the only MX host never gets an answer, enforce policy: "
               "held (the host must be treated as unreachable)."),
    Case("I-8-insecure", "insecure.dane.example", _mx("mx.insecure.dane.example"), "enforce",
         ("mx.insecure.dane.example",), getmta="enforce",
         socketmap=r"OK secure match=mx\.insecure\.dane\.example servername=hostname",
         route=ENFORCE_ROUTE, sink="mx.insecure.dane.example", cv="yes",
         about="Unsigned child zone (insecure delegation) whose TLSA record would not match, "
               "enforce policy, PKIX-valid certificate: DANE does not apply (DANE-03c, "
               "DANE-07), delivered by the MTA-STS enforce transport (I-8)."),
    Case("I-10", "i10.dane.example", _mx("mx-good.dane.example"), "enforce",
         ("mx-good.dane.example",), https={"status": 404}, getmta="dane",
         socketmap="OK dane-only", route=DANE_ROUTE, sink="mx-good.dane.example", cv="dane",
         about="DANE secure and usable, the policy fetch fails (404) with nothing cached: "
               "delivered, DANE-authenticated (STS-25)."),
    Case("DANE-15-I-11", "required.dane.example", _mx("mx-notlsa.dane.example"), "enforce",
         ("mx-notlsa.dane.example",), getmta="dane|fail", socketmap="OK dane-only",
         about="dane_required lists the domain; its MX host has no TLSA records (secure "
               "denial), enforce policy, PKIX-valid certificate: held (by whichever router; "
               "Postfix gets dane-only and defers: no TLSA records found)."),
    Case("I-9-filtered", "i9.dane.example",
         _mx("mx-selfsigned.dane.example", "mx-good.dane.example"), "enforce",
         ("mx-good.dane.example",), getmta="dane", socketmap="OK dane-only", route=DANE_ROUTE,
         sink="mx-good.dane.example", cv="dane",
         about="Both MX hosts have matching TLSA; the enforce policy lists only MX 20: the "
               "DANE router keeps the policy's mx filter, MX 10 is never contacted."),
    Case("I-9-none-left", "i9none.dane.example", _mx("mx-selfsigned.dane.example"), "enforce",
         ("mx-good.dane.example",), getmta="dane", socketmap="OK dane-only",
         held_by="R=mtasts_enforce_defer defer", reason="no MX host of i9none.dane.example",
         about="The only MX has matching TLSA, but the enforce policy does not list it: held "
               "(docs/dane.md: Exim keeps the policy's mx filter; strict RFC 8461 §5)."),
    Case("DANE-05-partial", "partial.dane.example",
         _mx("mx-notlsa.dane.example", "mx-good.dane.example"), None,
         getmta="none", socketmap="OK dane", route=NORMAL_ROUTE,
         sink="mx-notlsa.dane.example",
         about="MX 10 has no TLSA, MX 20 has usable TLSA, no policy: MTA-STS answers (none); "
               "the better MX wins (DANE-05), Exim's default opportunistic DANE does not skip "
               "it. Postfix gets `dane` (per host)."),
    Case("partial-enforce", "partialenf.dane.example",
         _mx("mx-good.dane.example", "mx-notlsa.dane.example"), "enforce",
         ("mx-good.dane.example", "mx-notlsa.dane.example"), getmta="enforce",
         socketmap="OK dane-only", route=ENFORCE_ROUTE, sink="mx-good.dane.example", cv="dane",
         about="MX 10 has usable TLSA, MX 20 none, enforce policy listing both: Exim's enforce "
               "transport does DANE for MX 10 (hosts_try_dane, CV=dane); Postfix gets "
               "dane-only so that MX 20 cannot fall back to `may`."),
]
CASES_BY_ID = {c.id: c for c in CASES}
DANE_REQUIRED = ["required.dane.example"]


def policy_text(mode: str, patterns) -> str:
    return ("version: STSv1\n" + f"mode: {mode}\n" + "".join(f"mx: {p}\n" for p in patterns)
            + "max_age: 86400\n")


def write_manifest(path):
    manifest = copy.deepcopy(eh.load_manifest())
    manifest["dnssec"] = {"zones": dict(ZONES)}
    manifest["smtp"] = copy.deepcopy(SINKS)
    for host, kind in TLSA.items():
        name = "_25._tcp." + host
        if kind == "timeout":
            manifest["dns"][name] = {"fault": "timeout"}
        elif kind == "mismatch":
            manifest["dns"][name] = {"TLSA": [[3, 1, 1, MISMATCH_DIGEST]]}
        # "match" and "bogus": set once the world has made its key (the env fixture)
    for case in CASES:
        manifest["dns"][case.domain] = {"MX": [list(m) for m in case.mx]}
        if case.mode is not None:
            # A minute's TTL: the cdb export holds the id that long (RFC 8461 §8.1).
            manifest["dns"]["_mta-sts." + case.domain] = {"TXT": [["v=STSv1; id=dane1;"]],
                                                          "ttl": 60}
            manifest["https"]["mta-sts." + case.domain] = {
                "body": policy_text(case.mode, case.policy_mx), **case.https}
        manifest["domains"][case.domain] = f"{case.name}: {case.about}"
    manifest["domains"]["e2e-sender.example"] = "The sender domain of the e2e tests (no DNS)."
    path.write_text(json.dumps(manifest, indent=1))
    return path


def spki_sha256(world: e2e.E2EWorld) -> str:
    """The DANE-EE 3 1 1 digest of the key every sink certificate carries."""
    from cryptography.hazmat.primitives import serialization
    key_file = Path(world.info["ca_file"]).parent / "certs" / "leaf-key.pem"
    key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


def sink_certificate_spki_sha256(world: e2e.E2EWorld, host: str) -> str:
    """The same digest, from the certificate the sink presents after STARTTLS."""
    address = SINKS[host]["address"]
    script = ("import hashlib, smtplib, ssl, sys; from cryptography import x509; "
              "from cryptography.hazmat.primitives import serialization as s; "
              "c = smtplib.SMTP(sys.argv[1], 25, timeout=10); c.ehlo('probe.invalid'); "
              "ctx = ssl.create_default_context(); ctx.check_hostname = False; "
              "ctx.verify_mode = ssl.CERT_NONE; c.starttls(context=ctx); "
              "der = c.sock.getpeercert(binary_form=True); c.quit(); "
              "k = x509.load_der_x509_certificate(der).public_key(); "
              "print(hashlib.sha256(k.public_bytes(s.Encoding.DER, "
              "s.PublicFormat.SubjectPublicKeyInfo)).hexdigest())")
    r = subprocess.run(["ip", "netns", "exec", world.ns, eh.PYTHON, "-c", script, address],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


# --------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def env():
    eh.require_root_and_exim()
    eh.require_built(ee.MODULE)
    if e2e.UNBOUND is None:
        pytest.fail("unbound is not installed (apt-get install unbound): Exim needs a "
                    "validating resolver for DANE")
    work = e2e.workdir("mtasts-e2e-dane-")
    try:
        manifest = write_manifest(work / "manifest.json")
        with e2e.e2e_world(work, prefix="mtasts-dane", manifest=manifest) as world:
            digest = spki_sha256(world)
            for host, kind in TLSA.items():
                if kind in ("match", "bogus"):
                    world.call("set_dns", "_25._tcp." + host,
                               {"TLSA": [[3, 1, 1, digest]], "bogus": kind == "bogus"})
            cache = work / "cache"
            cache.mkdir()
            e2e.chown_tree(cache, ee.EXIM_USER)
            settings = "\n".join([
                "txt_max_ttl = 60",
                f"trust_anchor = {eh.toml_string(world.info['trust_anchor_file'])}",
                "dane = true",
                f"dane_required = {json.dumps(DANE_REQUIRED)}",
                "dane_min_ttl = 0",
            ])
            mtasts = eh.write_mtasts_config(work / "mtasts.toml", cache=cache / "cache.mdb",
                                            world=world.info, extra=settings)
            with contextlib.ExitStack() as stack:
                resolver = stack.enter_context(
                    e2e.validating_resolver(world, work / "unbound"))
                started = {}

                def daemon():
                    if "paths" not in started:
                        if not e2e.daemon_path().exists():
                            pytest.skip(f"mtastsd is not built ({e2e.daemon_path()})")
                        started["paths"] = stack.enter_context(
                            e2e.mtastsd(world, work / "mtastsd", settings=settings))
                    return started["paths"]

                def cdb_daemon():
                    """mtastsd exporting the cdb file. dane_min_ttl = 60 here: an entry whose
                    DANE state has expired is left out of the export (the routers would ask
                    the socket), and nothing in this world changes under a case."""
                    if "cdb" not in started:
                        if not e2e.daemon_path().exists():
                            pytest.skip(f"mtastsd is not built ({e2e.daemon_path()})")
                        cdb = work / "mtastsd-cdb" / "exim.cdb"
                        paths = stack.enter_context(e2e.mtastsd(
                            world, work / "mtastsd-cdb",
                            settings=settings.replace("dane_min_ttl = 0", "dane_min_ttl = 60"),
                            extra=f"cdb_export = {eh.toml_string(str(cdb))}\n"
                                  "cdb_export_interval = 1"))
                        started["cdb"] = {**paths, "cdb": cdb}
                    return started["cdb"]

                yield {"world": world, "work": work, "mtasts": mtasts, "daemon": daemon,
                       "cdb_daemon": cdb_daemon, "digest": digest, "resolver": resolver}
    finally:
        e2e.cleanup(work)


# --------------------------------------------------------------------------------------------
# The set-up itself


def test_sinks_present_the_key_of_the_tlsa_records(env):
    """The 3 1 1 digest computed from the world's leaf key is the one of the certificates the
    sinks really present (the self-signed one included)."""
    for host in ("mx-good.dane.example", "mx-selfsigned.dane.example"):
        assert sink_certificate_spki_sha256(env["world"], host) == env["digest"], host


def test_the_namespace_resolver_validates(env):
    """unbound in the namespace sets AD on secure answers only, and fails bogus ones: what Exim
    and Postfix rely on. resolv.conf carries trust-ad (glibc passes AD on only then)."""
    world = env["world"]
    secure = e2e.resolver_query(world, "_25._tcp.mx-good.dane.example", "TLSA")
    assert secure["rcode"] == "NOERROR" and secure["ad"], secure
    assert secure["answers"] and env["digest"] in secure["answers"][0].lower().replace(" ", ""), \
        secure
    insecure = e2e.resolver_query(world, "mx.insecure.dane.example", "A")
    assert insecure["rcode"] == "NOERROR" and not insecure["ad"], insecure
    bogus = e2e.resolver_query(world, "_25._tcp.mx-bogustlsa.dane.example", "TLSA")
    assert bogus["rcode"] == "SERVFAIL", bogus
    resolv = (Path("/etc/netns") / world.ns / "resolv.conf").read_text()
    assert "nameserver 127.0.0.53" in resolv and "trust-ad" in resolv, resolv


# --------------------------------------------------------------------------------------------
# Exim


def check_held(exim: ee.Exim, world: e2e.E2EWorld, case: Case, subject: str) -> str:
    e2e.check_not_delivered(world, subject)
    message_id = exim.message_id(subject)
    deferred = [line for line in exim.lines(message_id) if " == " in line]
    assert deferred, f"no deferral logged:\n{exim.mainlog()}"
    assert case.held_by in deferred[-1], deferred
    assert case.reason in deferred[-1], deferred
    ee.check_no_bounce(exim, message_id)
    return message_id


VARIANTS = ["dlfunc", "readsocket", "cdb"]

# Where the engine's answer makes Exim do the wrong thing (strict xfail: a fix shows up as XPASS
# and fails the run, so the mark must then go). DANE-15-I-11 was one: getmta answered "dane"
# for a dane_required domain without TLSA and Exim's hosts_require_dane bounced the message;
# getmta now answers "fail" there and mtasts_lookup holds it.
KNOWN: dict[str, str] = {}


def _params(cases):
    return [pytest.param(c, id=c.id, marks=[pytest.mark.xfail(strict=True, reason=KNOWN[c.id])]
                         if c.id in KNOWN else []) for c in cases]


@pytest.mark.parametrize("case", _params(CASES))
@pytest.mark.parametrize("variant", VARIANTS)
def test_exim(env, variant, case):
    world = env["world"]
    exim = ee.Exim(env, case.id, variant)
    if variant == "dlfunc":
        answer = exim.run("-be", eh.dlfunc(ee.MODULE, "getmta", case.domain)).out.strip()
    else:
        daemon = env["daemon"]() if variant == "readsocket" else env["cdb_daemon"]()
        answer = exim.run("-be", "${readsocket{%s}{getmta %s}{30s}{}{error: unreachable}}"
                          % (daemon["exim"], case.domain)).out.strip()
    assert re.fullmatch(case.getmta, answer), \
        f"{case.domain}: getmta {answer!r}, want {case.getmta!r}"
    if variant == "cdb":     # Exim must answer from the file: it holds the domain
        in_file = e2e.wait_for(lambda: subprocess.run(
            ["cdb", "-q", str(daemon["cdb"]), case.domain], capture_output=True,
            text=True).stdout, 5)
        assert in_file == answer, f"{case.domain}: cdb export {in_file!r}, getmta {answer!r}"
    recipient = f"user@{case.domain}"
    subject = e2e.subject_for(case.id)
    started = time.time()
    exim.send(recipient, subject)
    if case.route is None:
        message_id = check_held(exim, world, case, subject)
        for _, host in case.mx:
            if case.mode == "enforce" and host not in case.policy_mx:
                assert world.sinks.connections(sink=host, since=started) == [], host
            if case.held_by.startswith("R=mtasts_lookup"):     # DANE failed: no connection
                assert world.sinks.connections(sink=host, since=started) == [], host
        if case.held_by.startswith("R=mtasts_dane T="):
            # the MX was tried and its certificate refused (no clear-text fallback either)
            host = case.mx[0][1]
            seen = e2e.wait_for(lambda: world.sinks.connections(sink=host, since=started), 5)
            assert seen and all(c["starttls"] and c["messages"] == 0 for c in seen), seen
        # a forced queue run (retry times ignored) must not deliver or bounce it either
        exim.queue_run()
        e2e.check_not_delivered(world, subject)
        ee.check_no_bounce(exim, message_id)
        assert len([line for line in exim.lines(message_id) if " == " in line]) >= 2, \
            exim.mainlog()
        return
    got = e2e.wait_for(lambda: world.sinks.messages(subject=subject), 5)
    assert got, f"not delivered:\n{exim.mainlog()}\n{exim.paniclog()}"
    assert len(got) == 1 and got[0]["sink"] == case.sink and got[0]["tls"], got
    assert got[0]["rcpt_to"] == [recipient], got
    message_id = exim.message_id(subject)
    delivered = [line for line in exim.lines(message_id) if " => " in line]
    assert len(delivered) == 1, exim.mainlog()
    line = delivered[0]
    router, transport = case.route
    assert f"R={router} T={transport} " in line, line
    address = SINKS[case.sink]["address"]
    # Exim logs "DS" after the host name when its address lookup was DNSSEC-secure (AD bit)
    secure = case.sink.endswith(".dane.example") and ".insecure." not in case.sink
    assert f" H={case.sink}{' DS' if secure else ''} [{address}]:25 " in line, line
    if case.cv:
        assert f" CV={case.cv} " in line, line
    if case.cv == "dane":
        assert got[0]["sni"] == case.sink, got      # DANE-13: SNI = the TLSA base domain
    for _, host in case.mx:
        if case.mode == "enforce" and host not in case.policy_mx:
            assert world.sinks.connections(sink=host, since=started) == [], host
    assert f"{message_id} Completed" in exim.mainlog()


@pytest.mark.parametrize("variant", VARIANTS)
def test_exim_without_the_ad_bit_holds(env, variant):
    """Exim's resolver gives no AD bit (resolv.conf without `options trust-ad`: glibc clears it)
    while mtasts, validating itself, answers dane: the DANE router's dnssec_require_domains
    defers the address ("host lookup done insecurely"). Without it the DANE transport's
    hosts_require_dane fails the address permanently ("DANE error: ... lookup not DNSSEC") and
    the message bounces."""
    world = env["world"]
    case = CASES_BY_ID["DANE-03a-I-1"]
    resolv = Path("/etc/netns") / world.ns / "resolv.conf"
    saved = resolv.read_text()
    resolv.write_text(f"nameserver {env['resolver']['address']}\n"
                      "options edns0 timeout:2 attempts:2\n")
    try:
        exim = ee.Exim(env, "no-ad-bit", variant)
        subject = e2e.subject_for("no-ad-bit")
        exim.send(f"user@{case.domain}", subject)
        e2e.check_not_delivered(world, subject)
        message_id = exim.message_id(subject)
        deferred = [line for line in exim.lines(message_id) if " == " in line]
        assert deferred and "R=mtasts_dane defer" in deferred[-1] \
            and "host lookup done insecurely" in deferred[-1], exim.mainlog()
        ee.check_no_bounce(exim, message_id)
    finally:
        resolv.write_text(saved)
    # with AD back, the retry delivers through the DANE transport
    exim.queue_run()
    got = e2e.wait_for(lambda: world.sinks.messages(subject=subject), 5)
    assert got and got[0]["sink"] == case.sink, f"{got}\n{exim.mainlog()}"
    assert any("R=mtasts_dane T=mtasts_dane_smtp" in line and " CV=dane " in line
               for line in exim.lines(message_id) if " => " in line), exim.mainlog()


# --------------------------------------------------------------------------------------------
# Postfix: the socketmap answers, and real deliveries with Postfix's own DANE


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_socketmap(env, case):
    daemon = env["daemon"]()
    [answer] = socketmap_ask(("unix", str(daemon["socketmap"])), [f"postfix {case.domain}"])
    assert re.fullmatch(case.socketmap, answer), f"{case.domain}: {answer!r}"


# Postfix deliveries: the case, and a line its log must show (Postfix 3.7's own DANE, told by the
# socketmap which level applies).
POSTFIX_CASES = {
    "DANE-03a-I-1": "Verified TLS connection established to mx-good.dane.example",
    "I-2": "mx-mismatch.dane.example[127.0.0.32]:25: num=65:no matching DANE TLSA records",
    "I-4": "Verified TLS connection established to mx-selfsigned.dane.example",
    "I-5-bogus-tlsa": "socketmap server temporary error: DANE lookup for i5.dane.example failed",
    "I-8-insecure": "Verified TLS connection established to mx.insecure.dane.example",
    "DANE-15-I-11": "status=deferred (no TLSA records found)",
    # `dane` level, MX 10 without TLSA: PKIX-verified against the CA file (Trusted), not DANE
    "DANE-05-partial": "Trusted TLS connection established to mx-notlsa.dane.example",
}


@pytest.fixture(scope="module")
def postfix(env):
    import postfix_helpers as ph
    ph.require_root()
    ph.tree()
    daemon = env["daemon"]()
    world = env["world"]
    with ph.running(world.work / "postfix", ns=world.ns, ca_file=world.ca_file,
                    policy_maps=f"socketmap:unix:{daemon['socketmap']}:postfix",
                    main_extra="smtp_dns_support_level = dnssec\n") as pf:
        yield pf


@pytest.mark.parametrize("name", list(POSTFIX_CASES))
def test_postfix(env, postfix, name):
    """Postfix 3.7 with smtp_dns_support_level = dnssec, the namespace's validating resolver and
    mtastsd's socketmap: dane-only delivers to a matching MX (a self-signed one too), refuses a
    mismatching one and one without TLSA when DANE is required, holds the mail when mtastsd
    answers TEMP (bogus TLSA); an insecure zone gets `secure` (PKIX); `dane` lets the better MX
    without TLSA take the mail."""
    case = CASES_BY_ID[name]
    world = env["world"]
    recipient = f"user@{case.domain}"
    subject = e2e.subject_for(case.id)
    message_id = e2e.new_message_id()
    postfix.send(e2e.SENDER, recipient, e2e.message_text(subject, recipient, message_id))
    queue_id = postfix.queue_id(message_id)
    status = postfix.wait_status(queue_id)
    lines = postfix.lines(queue_id)
    assert POSTFIX_CASES[name] in postfix.log(), postfix.log()
    if case.route is not None:
        assert " status=sent " in status[0], "\n".join(lines)
        address = SINKS[case.sink]["address"]
        assert f"relay={case.sink}[{address}]:25," in status[0], status[0]
        got = e2e.wait_for(lambda: world.sinks.messages(subject=subject), 5)
        assert got and got[0]["sink"] == case.sink and got[0]["tls"], got
        return
    assert " status=deferred " in status[0], "\n".join(lines)
    assert not any("status=bounced" in line or "status=sent" in line for line in lines), lines
    e2e.check_not_delivered(world, subject)
    assert queue_id in postfix.queue()
