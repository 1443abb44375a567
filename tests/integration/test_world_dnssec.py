"""DNSSEC in the test world (tests/world/dnssec.py), proven with a real validator: Debian's
unbound-host (libunbound) forwarding "." to the world, with the world's trust anchor file.

Run: cd /work/main && /usr/bin/python3 -m pytest -q -p no:cacheprovider \
         tests/integration/test_world_dnssec.py
"""

import json
import re
import shutil
import subprocess

import pytest
from dnslib import EDNS0, QTYPE, RCODE, DNSRecord

import dnssec                  # tests/world (conftest.py puts it on the path)
from client import PYTHON, WORLD_PY, World

UNBOUND_HOST = shutil.which("unbound-host")
TLSA_HEX = "0123456789abcdef" * 4
TLSA = [[3, 1, 1, TLSA_HEX]]

MANIFEST = {
    "dnssec": {"zones": {
        "dane.test": "signed",
        "insecure.dane.test": "unsigned",
        "bogus.dane.test": "bogus",
        "island.plain.test": "unsigned",
        "signed.island.plain.test": "signed",      # signed, but under an unsigned parent
        "badanchor.test": "bogus",                 # a top zone whose trust anchor is wrong
    }},
    "dns": {
        "mx.dane.test": {"A": ["127.0.0.1"]},
        "_25._tcp.mx.dane.test": {"TLSA": TLSA},
        "secure.dane.test": {"MX": [[10, "mx.dane.test"]]},
        "big.dane.test": {"TXT": [["x" * 200] for _ in range(8)]},    # > 1232 bytes: TC, TCP
        "broken.dane.test": {"A": ["127.0.0.1"], "bogus": True},
        "_25._tcp.slow.dane.test": {"fault": "timeout"},
        "_25._tcp.fail.dane.test": {"fault": "servfail"},
        "alias.dane.test": {"CNAME": "mx.insecure.dane.test"},
        "inside.dane.test": {"CNAME": "mx.dane.test"},
        "tobogus.dane.test": {"CNAME": "_25._tcp.mx.bogus.dane.test"},
        "insecure.dane.test": {"MX": [[10, "mx.insecure.dane.test"]]},
        "mx.insecure.dane.test": {"A": ["127.0.0.1"]},
        "_25._tcp.mx.insecure.dane.test": {"TLSA": TLSA},
        "_25._tcp.mx.bogus.dane.test": {"TLSA": TLSA},
        "mx.bogus.dane.test": {"A": ["127.0.0.1"]},
        "mx.signed.island.plain.test": {"A": ["127.0.0.1"]},
        "mx.badanchor.test": {"A": ["127.0.0.1"]},
        "mx.plain.test": {"A": ["127.0.0.1"]},
        "_25._tcp.mx.plain.test": {"TLSA": TLSA},
        "plain.example": {"MX": [[10, "mx.plain.test"]]},
    },
}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    directory = tmp_path_factory.mktemp("dnssec-world")
    manifest = directory / "manifest.json"
    manifest.write_text(json.dumps(MANIFEST))
    with World(manifest=str(manifest), lifetime=600) as running:
        yield running


@pytest.fixture(scope="module")
def unbound_conf(world, tmp_path_factory):
    if not UNBOUND_HOST:
        pytest.fail("unbound-host is not installed (apt-get install unbound-host)")
    host, port = world.dns_address
    conf = tmp_path_factory.mktemp("unbound") / "unbound.conf"
    conf.write_text(
        "server:\n"
        "  do-not-query-localhost: no\n"
        # .test is one of unbound's default local zones (RFC 6761): NXDOMAIN without this
        '  local-zone: "test." nodefault\n'
        "  use-caps-for-id: yes\n"             # 0x20: the world keeps the case, signs lower case
        "  infra-cache-max-rtt: 1000\n"        # a silent server: SERVFAIL in ~2 s, not ~30 s
        "forward-zone:\n"
        '  name: "."\n'
        f"  forward-addr: {host}@{port}\n")
    return str(conf)


def unbound_host(world, conf, name, qtype):
    """unbound-host -v output (stdout and stderr) for one question, validated with the world's
    trust anchors."""
    result = subprocess.run(
        [UNBOUND_HOST, "-C", conf, "-f", world.info["trust_anchor_file"], "-v", "-t", qtype,
         name], capture_output=True, text=True, timeout=60)
    return result.stdout + result.stderr


def security(output):
    """The security verdicts unbound-host printed, e.g. {"secure"} or {"BOGUS"}."""
    return set(re.findall(r"\((secure|insecure|BOGUS|error)\b[^()]*(?:\([^()]*\))?\)$",
                          output, re.MULTILINE))


@pytest.fixture(scope="module")
def check(world, unbound_conf):
    def run(name, qtype, verdict, expect=None):
        output = unbound_host(world, unbound_conf, name, qtype)
        assert security(output) == {verdict}, output
        if expect is not None:
            assert expect in output, output
        return output
    return run


def query(world, name, qtype, tcp=False):
    question = DNSRecord.question(name, qtype)
    question.add_ar(EDNS0(udp_len=1232))
    host, port = world.dns_address
    return DNSRecord.parse(question.send(host, port, tcp=tcp, timeout=5))


# ---------------------------------------------------------------------------------------------
# The wire format, without a validator

def test_key_tag_and_ds_digest_rfc4509_vector():
    """RFC 4509 §2.3: dskey.example.com DNSKEY (key id 60485) and its SHA-256 DS digest."""
    import base64
    import struct
    public = base64.b64decode(
        "AQOeiiR0GOMYkDshWoSKz9XzfwJr1AYtsmx3TGkJaNXVbfi/2pHm822aJ5iI9BMzNXxeYCmZDRD99WYwYqUSdjM"
        "mmAphXdvxegXd/M5+X7OrzKBaMbCVdFLUUh6DhweJBjEVv5f2wwjM9XzcnOf+EPbtG9DMBmADjFDc2w/rljwvFw==")
    dnskey = struct.pack("!HBB", 256, 3, 5) + public
    assert dnssec.key_tag(dnskey) == 60485
    assert dnssec.ds_rdata("dskey.example.com", dnskey)[4:].hex().upper() == (
        "D4B7D520E7BB5F0F67674A0CCEB1E3E0614B93C4F9E99B8383F6A1E4469DA50A")


def test_type_bitmap_rfc4034_example():
    """RFC 4034 §4.3: A MX RRSIG NSEC TYPE1234."""
    assert dnssec.type_bitmap([1, 15, 46, 47, 1234]) == bytes.fromhex(
        "0006400100000003" + "041b" + "00" * 26 + "20")


def test_trust_anchor_file(world):
    with open(world.info["trust_anchor_file"], encoding="utf-8") as f:
        lines = f.read().splitlines()
    assert sorted(line.split()[0] for line in lines) == ["badanchor.test.", "dane.test."]
    assert all(line.split()[1:3] == ["IN", "DS"] and line.split()[4:6] == ["13", "2"]
               for line in lines)


def test_trust_anchor_file_is_empty_without_dnssec():
    with World(lifetime=60) as plain:
        with open(plain.info["trust_anchor_file"], encoding="utf-8") as f:
            assert f.read() == ""


def test_signed_answers_carry_rrsigs(world):
    reply = query(world, "Mx.Dane.Test", "A")
    assert [QTYPE[rr.rtype] for rr in reply.rr] == ["A", "RRSIG"]
    assert str(reply.rr[1].rname) == "Mx.Dane.Test."          # the case as asked
    assert reply.header.ad == 0
    reply = query(world, "dane.test", "DNSKEY")
    assert [QTYPE[rr.rtype] for rr in reply.rr] == ["DNSKEY", "RRSIG"]
    reply = query(world, "nothing.dane.test", "A")             # black lie: NODATA, not NXDOMAIN
    assert reply.header.rcode == RCODE.NOERROR and not reply.rr
    assert [QTYPE[rr.rtype] for rr in reply.auth] == ["SOA", "RRSIG", "NSEC", "RRSIG"]
    assert str(reply.auth[0].rname) == "dane.test."
    reply = query(world, "insecure.dane.test", "DS")           # from the parent: NS, no DS
    nsec = [rr for rr in reply.auth if rr.rtype == QTYPE.NSEC][0]
    assert str(nsec.rdata) == "\\000.insecure.dane.test. NS RRSIG NSEC"
    assert query(world, "bogus.dane.test", "DS").rr[0].rtype == QTYPE.DS


def test_unsigned_zones_and_names_outside_have_no_dnssec_records(world):
    reply = query(world, "nothing.insecure.dane.test", "A")
    assert reply.header.rcode == RCODE.NXDOMAIN
    assert [(QTYPE[rr.rtype], str(rr.rname)) for rr in reply.auth] == [
        ("SOA", "insecure.dane.test.")]
    reply = query(world, "mx.plain.test", "A")
    assert [QTYPE[rr.rtype] for rr in reply.rr] == ["A"]
    reply = query(world, "nothing.plain.test", "A")
    assert reply.header.rcode == RCODE.NXDOMAIN
    assert [(QTYPE[rr.rtype], str(rr.rname)) for rr in reply.auth] == [("SOA", "test.")]


def test_bad_dnssec_section_is_refused(tmp_path):
    manifest = tmp_path / "bad.json"
    manifest.write_text(json.dumps({"dnssec": {"zones": {"x.test": "maybe"}}}))
    result = subprocess.run([PYTHON, WORLD_PY, "--state-dir", str(tmp_path / "state"),
                             "--manifest", str(manifest)], capture_output=True, text=True,
                            timeout=20)
    assert result.returncode == 1 and "x.test" in result.stderr


# ---------------------------------------------------------------------------------------------
# A real validator: unbound-host -v

def test_secure_answers(check):
    check("mx.dane.test", "A", "secure", "has address 127.0.0.1")
    check("_25._tcp.mx.dane.test", "TLSA", "secure", "has TLSA record 3 1 1 " + TLSA_HEX.upper())
    check("secure.dane.test", "MX", "secure", "mail is handled by 10 mx.dane.test.")
    check("dane.test", "SOA", "secure")
    check("dane.test", "DNSKEY", "secure")
    check("inside.dane.test", "A", "secure", "is an alias for mx.dane.test.")
    check("big.dane.test", "TXT", "secure")                    # truncated over UDP, then TCP


def test_secure_denials(check):
    check("_25._tcp.secure.dane.test", "TLSA", "secure", "has no TLSA record")
    check("mx.dane.test", "TLSA", "secure", "has no TLSA record")
    check("nothing.dane.test", "A", "secure", "has no address")
    check("a.b.c.dane.test", "TLSA", "secure", "has no TLSA record")
    check("_tcp.mx.dane.test", "A", "secure", "has no address")          # empty non-terminal
    check("dane.test", "MX", "secure", "has no mail handler record")
    check("insecure.dane.test", "DS", "secure", "has no DS record")      # insecure delegation
    check("bogus.dane.test", "DS", "secure", "has DS record")


def test_insecure_delegation(check):
    check("insecure.dane.test", "MX", "insecure", "mail is handled by 10 mx.insecure.dane.test.")
    check("mx.insecure.dane.test", "A", "insecure", "has address 127.0.0.1")
    check("_25._tcp.mx.insecure.dane.test", "TLSA", "insecure", "has TLSA record")
    check("nothing.insecure.dane.test", "A", "insecure", "NXDOMAIN")
    check("alias.dane.test", "A", "insecure", "is an alias for mx.insecure.dane.test.")


def test_bogus_zone_and_bogus_entry(check):
    check("_25._tcp.mx.bogus.dane.test", "TLSA", "BOGUS", "validation failure")
    check("mx.bogus.dane.test", "A", "BOGUS")
    check("nothing.bogus.dane.test", "A", "BOGUS")
    check("tobogus.dane.test", "TLSA", "BOGUS")
    check("broken.dane.test", "A", "BOGUS", "signature verification failed")
    check("mx.badanchor.test", "A", "BOGUS")


def test_faults_inside_a_signed_zone(check):
    check("_25._tcp.slow.dane.test", "TLSA", "error", "SERVFAIL")
    check("_25._tcp.fail.dane.test", "TLSA", "error", "SERVFAIL")


def test_names_outside_dnssec_zones_are_insecure(check):
    check("mx.plain.test", "A", "insecure", "has address 127.0.0.1")
    check("_25._tcp.mx.plain.test", "TLSA", "insecure", "has TLSA record")
    check("plain.example", "MX", "insecure", "mail is handled by 10 mx.plain.test.")
    check("mx.signed.island.plain.test", "A", "insecure", "has address 127.0.0.1")


def test_changes_through_the_control_api_are_signed(world, check):
    world.set_dns("new.dane.test", {"TLSA": TLSA})
    check("new.dane.test", "TLSA", "secure", "has TLSA record")
    world.set_dns("new.dane.test", {"TLSA": TLSA, "bogus": True})
    check("new.dane.test", "TLSA", "BOGUS")
    world.delete_dns("new.dane.test")
    check("new.dane.test", "TLSA", "secure", "has no TLSA record")


def test_validator_queries(world, check):
    """What libunbound asks in forward mode: the DNSKEY of the anchored zone, the DS of each
    zone cut below it (answered by the parent), the DNSKEY of a signed child."""
    world.clear_log()
    check("_25._tcp.mx.bogus.dane.test", "TLSA", "BOGUS")
    check("mx.insecure.dane.test", "A", "insecure")
    asked = {(e["name"], e["type"]) for e in world.dns_queries()}
    assert {("dane.test", "DNSKEY"), ("bogus.dane.test", "DS"), ("bogus.dane.test", "DNSKEY"),
            ("insecure.dane.test", "DS")} <= asked
