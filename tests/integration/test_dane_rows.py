"""rfc-checklist §4: DANE discovery rows (DANE-02..07, DANE-10, DANE-15) and the interplay
matrix with MTA-STS (I-1..I-11), through the real front-ends against a DNSSEC-signed test world.

The world (tests/world, section DNSSEC of its README) signs `dane.example` online and delegates
`insecure.dane.example` (unsigned) and `bogus.dane.example` (a DS for the wrong key); it writes a
test trust anchor that the configs below name. libunbound inside mtasts validates every answer
itself against that anchor (docs/dane.md: the trust model). Each test asks the `mtasts` CLI
(getmta, ignorelist, `query --json` for the DANE state per MX host) and mtastsd's Postfix
socketmap, each with its own cache.

What the MTA then does with the certificates (match, mismatch, self-signed) is the business of
its own DANE: test_e2e_dane.py delivers through the real Exim. Here the answers are checked: the
stance for every row is in docs/dane.md.

Run: MTASTS_BUILD_DIR=$PWD/build-lead MTASTS_SOURCE_DIR=$PWD \
     /usr/bin/python3 -m pytest -q tests/integration/test_dane_rows.py
"""

from __future__ import annotations

import contextlib
import json
import socket

import pytest

import daemon_helpers as dh
import exim_helpers as eh
import sts_helpers as sh
from client import World

ZONE = "dane.example"
HASH = "a1" * 32          # a SHA2-256 digest: 32 octets
OTHER_HASH = "b2" * 32


def host(name: str, *, tlsa=None, address="192.0.2.25", **extra) -> dict:
    """DNS data of one MX host and its _25._tcp TLSA name."""
    data = {name: {"A": [address], **extra}}
    if tlsa is not None:
        data[f"_25._tcp.{name}"] = tlsa
    return data


def domain(name: str, *mx: str | tuple[int, str]) -> dict:
    records = [m if isinstance(m, tuple) else (10 * (i + 1), m) for i, m in enumerate(mx)]
    return {name: {"MX": [[pref, target] for pref, target in records]}}


def manifest() -> dict:
    dns = {}
    usable = {"TLSA": [[3, 1, 1, HASH]]}
    for part in [
        # DANE-03a: every MX host with a usable DANE-EE record
        domain(f"usable.{ZONE}", f"mx.usable.{ZONE}"),
        host(f"mx.usable.{ZONE}", tlsa=usable),
        # DANE-03b / DANE-10: only PKIX-EE(1) records
        domain(f"unusable.{ZONE}", f"mx.unusable.{ZONE}"),
        host(f"mx.unusable.{ZONE}", tlsa={"TLSA": [[1, 1, 1, HASH], [0, 0, 1, OTHER_HASH]]}),
        # DANE-03c: secure denial of TLSA
        domain(f"notlsa.{ZONE}", f"mx.notlsa.{ZONE}"),
        host(f"mx.notlsa.{ZONE}"),
        # DANE-03d / DANE-04: TLSA lookup SERVFAIL, timeout; bogus TLSA signature (DANE-02)
        domain(f"servfail.{ZONE}", f"mx.servfail.{ZONE}"),
        host(f"mx.servfail.{ZONE}", tlsa={"fault": "servfail"}),
        domain(f"timeout.{ZONE}", f"mx.timeout.{ZONE}"),
        host(f"mx.timeout.{ZONE}", tlsa={"fault": "timeout"}),
        domain(f"bogustlsa.{ZONE}", f"mx.bogustlsa.{ZONE}"),
        host(f"mx.bogustlsa.{ZONE}", tlsa={"TLSA": [[3, 1, 1, HASH]], "bogus": True}),
        # DANE-05: MX 10 without TLSA, MX 20 with usable TLSA
        domain(f"pref.{ZONE}", f"mx10.pref.{ZONE}", f"mx20.pref.{ZONE}"),
        host(f"mx10.pref.{ZONE}"),
        host(f"mx20.pref.{ZONE}", tlsa=usable),
        # DANE-04 with a second MX: one host's TLSA fails, the other is fine
        domain(f"onefails.{ZONE}", f"mx1.onefails.{ZONE}", f"mx2.onefails.{ZONE}"),
        host(f"mx1.onefails.{ZONE}", tlsa={"fault": "servfail"}),
        host(f"mx2.onefails.{ZONE}", tlsa=usable),
        # DANE-06: an unsigned MX RRset naming a signed host that has usable TLSA
        domain(f"d6.insecure.{ZONE}", f"mx.usable.{ZONE}"),
        # DANE-07: a signed MX RRset naming a host in an unsigned zone whose TLSA times out
        domain(f"a7.{ZONE}", f"mx7.insecure.{ZONE}"),
        host(f"mx7.insecure.{ZONE}", tlsa={"fault": "timeout"}),
        # insecure: the whole domain unsigned, with TLSA records that must be ignored
        domain(f"plain.insecure.{ZONE}", f"mx.plain.insecure.{ZONE}"),
        host(f"mx.plain.insecure.{ZONE}", tlsa=usable),
        # bogus: the MX RRset itself fails validation
        domain(f"bogus.{ZONE}", f"mx.bogus.{ZONE}"),
        host(f"mx.bogus.{ZONE}", tlsa=usable),
        # the implicit MX (no MX RRset, secure denial): the domain itself is the host
        host(f"implicit.{ZONE}", tlsa=usable),
    ]:
        dns.update(part)
    return {"dnssec": {"zones": {ZONE: "signed", f"insecure.{ZONE}": "unsigned",
                                 f"bogus.{ZONE}": "bogus"}},
            "dns": dns}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    path = tmp_path_factory.mktemp("dane-world") / "manifest.json"
    path.write_text(json.dumps(manifest()))
    with World(manifest=str(path)) as w:
        assert w.info.get("trust_anchor_file"), w.info
        yield w


def dane_keys(world, required=()) -> str:
    return "\n".join([
        f"trust_anchor = {eh.toml_string(world.info['trust_anchor_file'])}",
        "dane_min_ttl = 0",
        f"dane_required = [{', '.join(json.dumps(d) for d in required)}]",
    ])


REQUIRED = (f"notlsa.{ZONE}", f"i11.{ZONE}")


@pytest.fixture
def cli(world, tmp_path):
    return sh.FrontEnd("cli", world, tmp_path / "cli", extra_config=dane_keys(world, REQUIRED))


@pytest.fixture(scope="module")
def daemon(world, tmp_path_factory):
    port = dh_free_port()
    d = dh.Mtastsd(tmp_path_factory.mktemp("dane-daemon"), world,
                   top_keys=dane_keys(world, REQUIRED),
                   daemon_keys=f'socketmap_listen = ["127.0.0.1:{port}"]')
    d.socketmap_port = port
    yield d
    d.stop()


def dh_free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def socketmap(daemon, key: str) -> str:
    """mtastsd's reply to Postfix's `postfix <key>` request."""
    payload = f"postfix {key}".encode()
    with contextlib.closing(socket.create_connection(("127.0.0.1", daemon.socketmap_port),
                                                     timeout=30)) as s:
        s.sendall(b"%d:%s," % (len(payload), payload))
        data = b""
        while not data.endswith(b","):
            chunk = s.recv(65536)
            assert chunk, data
            data += chunk
    length, _, rest = data.partition(b":")
    assert int(length) == len(rest) - 1, data
    return rest[:-1].decode()


def dane_of(cli, name: str) -> tuple[str, dict]:
    """getmta and the cached DANE state (query --json) of a domain."""
    answers = cli.answers(name)
    dane = answers.query["entry"]["dane"]
    assert dane is not None, answers.query
    return answers.getmta, dane


def host_states(dane: dict) -> dict[str, str]:
    return {h["host"]: h["state"] for h in dane["hosts"]}


def publish_policy(world, name: str, mode: str = "enforce", mx=None, **https) -> None:
    sh.publish(world, name, body=sh.policy(mode, mx=mx or [f"mx.{name}"]), **https)


# ---------------------------------------------------------------------------------------------
# DANE discovery


def test_DANE_03a_every_mx_host_usable_dane_governs(cli, daemon):
    getmta, dane = dane_of(cli, f"usable.{ZONE}")
    assert getmta == "dane"
    assert dane["verdict"] == "all-usable", dane
    assert host_states(dane) == {f"mx.usable.{ZONE}": "usable"}
    assert socketmap(daemon, f"usable.{ZONE}") == "OK dane-only"


def test_DANE_03a_implicit_mx_on_secure_denial(cli, daemon):
    getmta, dane = dane_of(cli, f"implicit.{ZONE}")
    assert getmta == "dane", dane
    assert host_states(dane) == {f"implicit.{ZONE}": "usable"}
    assert socketmap(daemon, f"implicit.{ZONE}") == "OK dane-only"


def test_DANE_03b_DANE_10_only_pkix_usages_tls_required_not_dane_authenticated(cli, daemon):
    getmta, dane = dane_of(cli, f"unusable.{ZONE}")
    # Exim: no policy, so the normal router; its TLS-required handling is Exim's own
    # hosts_try_dane. Postfix: "dane" level, which requires TLS for an all-unusable RRset.
    assert getmta == "none"
    assert dane["verdict"] == "partial", dane
    assert host_states(dane) == {f"mx.unusable.{ZONE}": "unusable"}
    assert socketmap(daemon, f"unusable.{ZONE}") == "OK dane"


def test_DANE_03c_secure_denial_of_tlsa_is_no_dane(cli, daemon):
    _, dane = dane_of(cli, f"notlsa.{ZONE}")
    # notlsa is in dane_required (DANE-15 below): look at its hosts only here.
    assert host_states(dane) == {f"mx.notlsa.{ZONE}": "no-tlsa"}
    assert dane["verdict"] == "not-applicable"
    publish_policy(cli.world, f"plainsts.{ZONE}", mx=[f"mx.notlsa.{ZONE}"])
    cli.world.set_dns(f"plainsts.{ZONE}", {"MX": [[10, f"mx.notlsa.{ZONE}"]]})
    getmta, dane = dane_of(cli, f"plainsts.{ZONE}")
    assert (getmta, dane["verdict"]) == ("enforce", "not-applicable")
    assert socketmap(daemon, f"plainsts.{ZONE}").startswith("OK secure match=")


@pytest.mark.parametrize("name", ["servfail", "timeout", "bogustlsa"])
def test_DANE_03d_DANE_04_DANE_02_failed_tlsa_lookup_holds_the_mail(cli, daemon, name):
    getmta, dane = dane_of(cli, f"{name}.{ZONE}")
    assert getmta == "fail"
    assert dane["verdict"] == "failed", dane
    assert host_states(dane) == {f"mx.{name}.{ZONE}": "failed"}
    # Never remembered as "no DANE": re-checked after dns_retry, the failure stays a failure.
    assert dane["expires_at"] - dane["checked_at"] == 60
    reply = socketmap(daemon, f"{name}.{ZONE}")
    assert reply.startswith("TEMP DANE lookup for"), reply


def test_DANE_04_one_failing_host_holds_the_domain(cli, daemon):
    getmta, dane = dane_of(cli, f"onefails.{ZONE}")
    assert getmta == "fail"
    assert host_states(dane) == {f"mx1.onefails.{ZONE}": "failed",
                                 f"mx2.onefails.{ZONE}": "usable"}
    assert socketmap(daemon, f"onefails.{ZONE}").startswith("TEMP ")


def test_DANE_05_preference_wins_over_security(cli, daemon):
    getmta, dane = dane_of(cli, f"pref.{ZONE}")
    # Not "dane": that would send Exim to the DANE transport, which skips MX 10. The MTA's
    # per-host DANE (Exim hosts_try_dane, Postfix "dane") keeps the MX order.
    assert getmta == "none"
    assert dane["verdict"] == "partial"
    assert [h["host"] for h in dane["hosts"]] == [f"mx10.pref.{ZONE}", f"mx20.pref.{ZONE}"]
    assert host_states(dane) == {f"mx10.pref.{ZONE}": "no-tlsa", f"mx20.pref.{ZONE}": "usable"}
    assert socketmap(daemon, f"pref.{ZONE}") == "OK dane"


def test_DANE_06_insecure_mx_rrset_dane_does_not_apply(cli, daemon):
    getmta, dane = dane_of(cli, f"d6.insecure.{ZONE}")
    assert getmta == "none"
    assert dane["verdict"] == "not-applicable"
    assert "not DNSSEC-signed" in dane["reason"], dane
    assert dane["hosts"] == []
    assert socketmap(daemon, f"d6.insecure.{ZONE}") == "NOTFOUND "


def test_DANE_07_addresses_before_tlsa_and_no_tlsa_for_insecure_host(cli):
    world = cli.world
    world.clear_log()
    getmta, dane = dane_of(cli, f"a7.{ZONE}")
    assert getmta == "none", "a TLSA timeout under an insecure host must not defer"
    assert host_states(dane) == {f"mx7.insecure.{ZONE}": "insecure"}
    assert world.dns_queries(f"mx7.insecure.{ZONE}", "A"), world.log()["dns"]
    assert world.dns_queries(f"_25._tcp.mx7.insecure.{ZONE}") == []
    # And for a secure host the A/AAAA queries come before the TLSA query.
    world.clear_log()
    dane_of(cli, f"usable.{ZONE}")
    queries = [(q["name"], q["type"]) for q in world.log()["dns"]]
    first_tlsa = queries.index((f"_25._tcp.mx.usable.{ZONE}", "TLSA"))
    assert (f"mx.usable.{ZONE}", "A") in queries[:first_tlsa], queries


def test_insecure_domain_ignores_unsigned_tlsa(cli, daemon):
    getmta, dane = dane_of(cli, f"plain.insecure.{ZONE}")
    assert (getmta, dane["verdict"]) == ("none", "not-applicable")
    assert socketmap(daemon, f"plain.insecure.{ZONE}") == "NOTFOUND "


def test_bogus_mx_rrset_holds_the_mail(cli, daemon):
    getmta, dane = dane_of(cli, f"bogus.{ZONE}")
    assert getmta == "fail"
    assert dane["verdict"] == "failed"
    assert "MX RRset" in dane["reason"], dane
    assert socketmap(daemon, f"bogus.{ZONE}").startswith("TEMP ")


def test_DANE_15_mandatory_dane_without_tlsa_defers(cli, daemon):
    getmta, dane = dane_of(cli, f"notlsa.{ZONE}")
    assert dane["required"] is True
    # Held: Exim's hosts_require_dane would bounce a host without TLSA, so not "dane".
    assert getmta == "fail"
    assert socketmap(daemon, f"notlsa.{ZONE}") == "OK dane-only"


def test_dane_state_is_cached_and_shown_per_mx(cli):
    cli.answers(f"usable.{ZONE}")
    cli.world.clear_log()
    # dane_min_ttl 0 and TTL 0 in the world: a second front-end with the default bounds keeps
    # the state for 60 s and answers from the cache alone.
    cached = sh.FrontEnd("cli", cli.world, cli.workdir.parent / "cached",
                         extra_config=dane_keys(cli.world).replace("dane_min_ttl = 0", ""))
    first = cached.answers(f"usable.{ZONE}")
    cli.world.clear_log()
    second = cached.answers(f"usable.{ZONE}")
    assert (first.getmta, second.getmta) == ("dane", "dane")
    assert second.source == "cache"
    # No query about this domain (a slow world may still log a late one of an earlier test).
    asked = [q for q in cli.world.dns_queries() if q["name"].endswith(f"usable.{ZONE}")]
    assert asked == [], asked
    dane = second.query["entry"]["dane"]
    assert dane["expires_at"] - dane["checked_at"] == 60
    text = cached.cli("query", f"usable.{ZONE}").stdout
    assert "dane:        all-usable" in text, text
    assert f"mx 10 mx.usable.{ZONE}: usable" in text, text


def test_no_trust_anchor_no_dane(world, tmp_path):
    plain = sh.FrontEnd("cli", world, tmp_path / "plain")
    answers = plain.answers(f"bogus.{ZONE}")
    assert answers.getmta == "none"
    assert answers.query["entry"]["dane"] is None
    assert "needs trust_anchor" in plain.cli("query", f"bogus.{ZONE}").stdout


# ---------------------------------------------------------------------------------------------
# Interplay with MTA-STS (rfc-checklist §4.2); certificates are the MTA's business


@pytest.mark.parametrize("row,mode", [("i1", "enforce"), ("i3", "testing")])
def test_I_1_I_2_I_3_I_4_usable_tlsa_governs_whatever_the_sts_mode(cli, daemon, row, mode):
    name = f"{row}.{ZONE}"
    cli.world.set_dns(name, {"MX": [[10, f"mx.usable.{ZONE}"]]})
    publish_policy(cli.world, name, mode=mode, mx=[f"mx.usable.{ZONE}"])
    answers = cli.answers(name)
    # I-2/I-3: a mismatching certificate fails Exim's DANE transport whatever STS says; I-4: a
    # self-signed DANE-EE match passes it (DANE first). Delivered in test_e2e_dane.py.
    assert answers.getmta == "dane"
    assert answers.query["answer"]["mode"] == mode
    if mode == "enforce":
        assert answers.ignorelist == sh.ignorelist_for([f"mx.usable.{ZONE}"])
    assert socketmap(daemon, name) == "OK dane-only"


@pytest.mark.parametrize("fault", ["servfail", "bogustlsa"])
def test_I_5_failed_tlsa_lookup_is_not_rescued_by_enforce(cli, daemon, fault):
    name = f"i5-{fault}.{ZONE}"
    cli.world.set_dns(name, {"MX": [[10, f"mx.{fault}.{ZONE}"]]})
    publish_policy(cli.world, name, mx=[f"mx.{fault}.{ZONE}"])
    answers = cli.answers(name)
    assert answers.query["answer"]["mode"] == "enforce"
    assert answers.getmta == "fail"
    assert socketmap(daemon, name).startswith("TEMP DANE lookup for")


def test_I_6_I_7_all_unusable_with_enforce_keeps_enforce(cli, daemon):
    name = f"i6.{ZONE}"
    cli.world.set_dns(name, {"MX": [[10, f"mx.unusable.{ZONE}"]]})
    publish_policy(cli.world, name, mx=[f"mx.unusable.{ZONE}"])
    answers = cli.answers(name)
    # Exim: the enforce transport (TLS + PKIX + name); Postfix: dane-only ("encrypt" for an
    # all-unusable RRset would lose the PKIX check, so dane-only never downgrades enforce).
    assert answers.getmta == "enforce"
    assert socketmap(daemon, name) == "OK dane-only"


def test_I_8_insecure_with_enforce_is_pure_sts(cli, daemon):
    name = f"i8.insecure.{ZONE}"
    cli.world.set_dns(name, {"MX": [[10, f"mx.plain.insecure.{ZONE}"]]})
    publish_policy(cli.world, name, mx=[f"mx.plain.insecure.{ZONE}"])
    answers = cli.answers(name)
    assert answers.getmta == "enforce"
    assert answers.query["entry"]["dane"]["verdict"] == "not-applicable"
    assert socketmap(daemon, name) == f"OK secure match=mx.plain.insecure.{ZONE} servername=hostname"


def test_I_9_usable_tlsa_but_mx_outside_the_policy(cli, daemon):
    name = f"i9.{ZONE}"
    cli.world.set_dns(name, {"MX": [[10, f"mx.usable.{ZONE}"]]})
    publish_policy(cli.world, name, mx=[f"mx.elsewhere.{ZONE}"])
    answers = cli.answers(name)
    # Exim keeps the policy's mx filter on the DANE router too (no delivery: the strict reading);
    # Postfix cannot filter under a DANE level and follows DANE first.
    assert answers.getmta == "dane"
    assert answers.ignorelist == sh.ignorelist_for([f"mx.elsewhere.{ZONE}"])
    assert socketmap(daemon, name) == "OK dane-only"


def test_I_10_dane_with_policy_fetch_failing(cli, daemon):
    name = f"i10.{ZONE}"
    cli.world.set_dns(name, {"MX": [[10, f"mx.usable.{ZONE}"]]})
    publish_policy(cli.world, name, mx=[f"mx.usable.{ZONE}"], status=500)
    answers = cli.answers(name)
    assert answers.query["answer"]["kind"] == "no_policy"
    assert answers.getmta == "dane"
    assert socketmap(daemon, name) == "OK dane-only"


def test_I_11_mandatory_dane_without_tlsa_wins_over_enforce(cli, daemon):
    name = f"i11.{ZONE}"
    cli.world.set_dns(name, {"MX": [[10, f"mx.notlsa.{ZONE}"]]})
    publish_policy(cli.world, name, mx=[f"mx.notlsa.{ZONE}"])
    answers = cli.answers(name)
    assert answers.query["answer"]["mode"] == "enforce"
    assert answers.getmta == "fail"
    assert socketmap(daemon, name) == "OK dane-only"
