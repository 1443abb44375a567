"""Self-tests of the test world (tests/world): DNS, HTTPS, control API and lifetime.

Run: cd /work/main && /usr/bin/python3 -m pytest -q tests/integration/test_world.py
"""

import ctypes
import ctypes.util
import datetime
import http.client
import json
import os
import socket
import ssl
import subprocess
import time

import pytest
from cryptography import x509
from dnslib import EDNS0, QTYPE, RCODE, DNSRecord

from client import PYTHON, WORLD_PY, World, WorldError

MANIFEST_FILE = os.path.join(os.path.dirname(WORLD_PY), "manifest.json")
WELL_KNOWN = "/.well-known/mta-sts.txt"

with open(MANIFEST_FILE, encoding="utf-8") as _f:
    MANIFEST = json.load(_f)


@pytest.fixture(scope="module")
def world():
    with World(lifetime=600) as running:
        yield running


# ---------------------------------------------------------------------------------------------
# helpers

def query(world, name, qtype="A", tcp=False, edns=True, do=False, timeout=2.0, ad=False):
    question = DNSRecord.question(name, qtype)
    if edns:
        question.add_ar(EDNS0(udp_len=1232, flags="do" if do else ""))
    question.header.ad = int(ad)
    host, port = world.dns_address
    return DNSRecord.parse(question.send(host, port, tcp=tcp, timeout=timeout))


def rtypes(records):
    return [QTYPE[rr.rtype] for rr in records]


def txt_strings(reply):
    return [rr.rdata.data for rr in reply.rr if rr.rtype == QTYPE.TXT]


def tls_context(world, cafile=None, check_hostname=True):
    """A client context that checks like RFC 8461 §3.3: SAN DNS-IDs only, never the CN
    (OpenSSL's and Python's default falls back to the CN when there is no SAN)."""
    context = ssl.create_default_context(cafile=cafile or world.ca_file)
    context.check_hostname = check_hostname
    context.hostname_checks_common_name = False
    return context


def connect_tls(world, host, context=None, address=None, timeout=5.0):
    sock = socket.create_connection((address or world.listen, world.https_port), timeout=timeout)
    try:
        return (context or tls_context(world)).wrap_socket(sock, server_hostname=host)
    except BaseException:
        sock.close()
        raise


def send_get(tls, host, path=WELL_KNOWN, method="GET", extra=""):
    tls.sendall(f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: world-test\r\n"
                f"{extra}\r\n".encode())


def fetch(world, host, path=WELL_KNOWN, context=None, method="GET", extra="", sni=True):
    """(response, body bytes, peer certificate dict) of one request to a policy host."""
    with connect_tls(world, host if sni else None, context) as tls:
        send_get(tls, host, path, method, extra)
        response = http.client.HTTPResponse(tls, method=method)
        response.begin()
        body = response.read()
        return response, body, tls.getpeercert()


def verify_code(world, host, context=None):
    """The OpenSSL verification error code of connecting to host, or None if it verifies."""
    try:
        connect_tls(world, host, context).close()
    except ssl.SSLCertVerificationError as e:
        return e.verify_code
    return None


def recv_for(sock, seconds):
    """Everything sock sends within seconds (stops early at EOF)."""
    data, deadline = b"", time.monotonic() + seconds
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except (socket.timeout, ssl.SSLWantReadError):
            continue
        if not chunk:
            break
        data += chunk
    return data


def timedelta_days(delta):
    return round(delta.total_seconds() / 86400)


def process_gone(pid):
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def wait_gone(pid, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process_gone(pid):
            return True
        time.sleep(0.1)
    return False


# ---------------------------------------------------------------------------------------------
# manifest

def test_manifest_domains_are_described_and_reserved():
    assert len(MANIFEST["domains"]) >= 60
    for domain, description in MANIFEST["domains"].items():
        assert domain.endswith((".example", ".test")), domain
        assert domain == domain.lower() and len(description) > 20, domain
    names = list(MANIFEST["dns"]) + list(MANIFEST["https"])
    assert all(n.endswith((".example", ".test")) for n in names)


def test_manifest_names_required_vectors():
    required = [
        "enforce.example", "testing.example", "none.example", "nopolicy.example",
        "mail.enforce.example", "xn--mnchen-3ya.example", "txt-two-valid-records.example",
        "txt-multi-string-split-id.example", "txt-cname-delegation.example",
        "txt-cname-chain-two-hops.example", "txt-valid-plus-unrelated-spf.example",
        "txt-valid-plus-stsv2.example", "txt-version-lowercase.example",
        "txt-id-33-chars.example", "http-404.example", "http-500.example",
        "http-301-to-valid-policy.example", "http-204-no-content.example", "ct-text-html.example",
        "ct-missing.example", "ct-text-plain-charset-latin1.example", "https-cert-expired.example",
        "https-cert-wrong-name.example", "https-cert-self-signed.example",
        "https-cert-cn-only.example", "https-cert-wildcard.example",
        "deep.https-cert-wildcard-too-deep.example", "https-cert-untrusted.example",
        "https-timeout.example", "https-trickle.example", "https-huge-body.example",
        "https-endless-chunked.example", "https-refused.example", "https-blackhole.example",
        "pol-crlf.example", "pol-unknown-keys.example", "pol-max-age-over-limit.example",
        "pol-invalid-body.example", "pol-enforce-no-mx.example", "pol-none-no-mx.example",
        "pol-max-age-zero.example", "dns-sts-servfail.example", "dns-sts-timeout.example",
    ]
    missing = [d for d in required if d not in MANIFEST["domains"]]
    assert not missing


def test_every_mx_host_has_a_127_0_0_1(world):
    targets = {mx[1] for entry in MANIFEST["dns"].values() for mx in entry.get("MX", [])}
    assert len(targets) > 50
    for target in sorted(targets):
        reply = query(world, target, "A")
        assert [str(rr.rdata) for rr in reply.rr] == ["127.0.0.1"], target


def test_every_described_domain_has_mx(world):
    for domain in MANIFEST["domains"]:
        if domain == "sts-provider.test":
            continue
        assert set(rtypes(query(world, domain, "MX").rr)) == {"MX"}, domain


# ---------------------------------------------------------------------------------------------
# DNS

def test_dns_flags_like_a_recursive_resolver(world):
    reply = query(world, "_mta-sts.enforce.example", "TXT", ad=True)
    header = reply.header
    assert (header.qr, header.aa, header.ra, header.rd, header.tc, header.ad) == (1, 1, 1, 1, 0, 0)
    assert header.rcode == RCODE.NOERROR
    assert txt_strings(reply) == [[b"v=STSv1; id=20240101000000;"]]


def test_dns_txt_multi_string_exactly_as_given(world):
    reply = query(world, "_mta-sts.txt-multi-string-split-id.example", "TXT")
    assert txt_strings(reply) == [[b"v=STSv1; id=a", b"bc;"]]
    reply = query(world, "_mta-sts.txt-multi-string-empty-parts.example", "TXT")
    assert txt_strings(reply) == [[b"v=STSv1; ", b"", b"id=ab", b"", b"c"]]
    reply = query(world, "_smtp._tls.testing.example", "TXT")
    assert txt_strings(reply) == [[b"v=TLSRPTv1; rua=mailto:tls", b"rpt@testing.example"]]


def test_dns_several_txt_rrs(world):
    reply = query(world, "_mta-sts.txt-two-valid-records.example", "TXT")
    assert sorted(txt_strings(reply)) == [[b"v=STSv1; id=abc123;"], [b"v=STSv1; id=def456;"]]


def test_dns_non_ascii_txt_is_utf8(world):
    reply = query(world, "_mta-sts.txt-non-ascii.example", "TXT")
    assert txt_strings(reply) == [["v=STSv1; id=abc123; foo=bär;".encode()]]


def test_dns_cname_chain_in_answer(world):
    reply = query(world, "_mta-sts.txt-cname-chain-two-hops.example", "TXT")
    assert reply.header.rcode == RCODE.NOERROR
    assert rtypes(reply.rr) == ["CNAME", "CNAME", "TXT"]
    owners = [str(rr.rname) for rr in reply.rr]
    assert owners == ["_mta-sts.txt-cname-chain-two-hops.example.",
                      "_mta-sts.hop1.sts-provider.test.", "_mta-sts.hop2.sts-provider.test."]
    assert str(reply.rr[1].rdata) == "_mta-sts.hop2.sts-provider.test."
    assert txt_strings(reply) == [[b"v=STSv1; id=twohops;"]]


def test_dns_cname_query_and_delegation(world):
    reply = query(world, "_mta-sts.txt-cname-delegation.example", "CNAME")
    assert rtypes(reply.rr) == ["CNAME"]
    reply = query(world, "_mta-sts.txt-cname-delegation.example", "TXT")
    assert rtypes(reply.rr) == ["CNAME", "TXT"]


def test_dns_cname_dangling_and_loop(world):
    reply = query(world, "_mta-sts.txt-cname-dangling.example", "TXT")
    assert reply.header.rcode == RCODE.NXDOMAIN
    assert rtypes(reply.rr) == ["CNAME"] and rtypes(reply.auth) == ["SOA"]
    reply = query(world, "_mta-sts.txt-cname-loop.example", "TXT")
    assert reply.header.rcode == RCODE.SERVFAIL and not reply.rr


def test_dns_nxdomain_vs_nodata(world):
    nxdomain = query(world, "_mta-sts.nopolicy.example", "TXT")
    assert nxdomain.header.rcode == RCODE.NXDOMAIN and not nxdomain.rr
    assert rtypes(nxdomain.auth) == ["SOA"] and str(nxdomain.auth[0].rname) == "example."
    nodata = query(world, "nopolicy.example", "TXT")
    assert nodata.header.rcode == RCODE.NOERROR and not nodata.rr
    assert rtypes(nodata.auth) == ["SOA"]
    # Parents of names with data exist, down to the TLD (empty non-terminals).
    for name in ("_tls.enforce.example", "mail.enforce.example", "example", "sts-provider.test"):
        reply = query(world, name, "TXT")
        assert reply.header.rcode == RCODE.NOERROR, name
    assert query(world, "no-such-domain.example", "MX").header.rcode == RCODE.NXDOMAIN
    assert query(world, "no-such-domain.test", "MX").header.rcode == RCODE.NXDOMAIN


def test_dns_zone_apex_soa(world):
    reply = query(world, "example", "SOA")
    assert rtypes(reply.rr) == ["SOA"]


def test_dns_outside_the_world_is_refused(world):
    for name in ("example.com", "org", "mta-sts.gmail.com"):
        reply = query(world, name, "TXT")
        assert reply.header.rcode == RCODE.REFUSED and not reply.rr, name


def test_dns_faults(world):
    assert query(world, "_mta-sts.dns-sts-servfail.example", "TXT").header.rcode == RCODE.SERVFAIL
    assert query(world, "_mta-sts.dns-sts-refused.example", "TXT").header.rcode == RCODE.REFUSED
    # The fault is only at _mta-sts: the domain's MX still answers.
    assert rtypes(query(world, "dns-sts-timeout.example", "MX").rr) == ["MX"]


def test_dns_timeout_never_answers_udp_or_tcp(world):
    with pytest.raises(socket.timeout):
        query(world, "_mta-sts.dns-sts-timeout.example", "TXT", timeout=1)
    with pytest.raises(socket.timeout):
        query(world, "_mta-sts.dns-sts-timeout.example", "TXT", tcp=True, timeout=1)
    assert len(world.dns_queries("_mta-sts.dns-sts-timeout.example", "TXT")) >= 2


def test_dns_over_tcp(world):
    reply = query(world, "_mta-sts.txt-multi-string-split-version.example", "TXT", tcp=True)
    assert txt_strings(reply) == [[b"v=STS", b"v1; id=abc;"]]
    assert world.dns_queries("_mta-sts.txt-multi-string-split-version.example")[-1]["proto"] \
        == "tcp"


def test_dns_tcp_several_queries_on_one_connection(world):
    host, port = world.dns_address
    with socket.create_connection((host, port), timeout=2) as sock:
        for name in ("enforce.example", "testing.example"):
            packet = DNSRecord.question(name, "MX").pack()
            sock.sendall(len(packet).to_bytes(2, "big") + packet)
            length = int.from_bytes(sock.recv(2), "big")
            data = b""
            while len(data) < length:
                data += sock.recv(length - len(data))
            assert set(rtypes(DNSRecord.parse(data).rr)) == {"MX"}


def test_dns_large_answer_truncated_over_udp(world):
    name = "_mta-sts.txt-large-rrset.example"
    udp = query(world, name, "TXT")
    assert udp.header.tc == 1 and not udp.rr
    tcp = query(world, name, "TXT", tcp=True)
    assert tcp.header.tc == 0 and len(tcp.rr) == 7
    assert len(tcp.pack()) > 1232
    plain = query(world, "_mta-sts.enforce.example", "TXT", edns=False)
    assert plain.header.tc == 0 and not plain.ar


def test_dns_edns_and_do_bit(world):
    reply = query(world, "_mta-sts.enforce.example", "TXT", do=True)
    opts = [rr for rr in reply.ar if rr.rtype == QTYPE.OPT]
    assert len(opts) == 1 and opts[0].rclass == 1232
    assert txt_strings(reply)


def test_dns_case_insensitive_and_case_preserving(world):
    reply = query(world, "_MTA-STS.Enforce.EXAMPLE", "TXT")
    assert txt_strings(reply) == [[b"v=STSv1; id=20240101000000;"]]
    assert str(reply.rr[0].rname) == "_MTA-STS.Enforce.EXAMPLE."
    assert world.dns_queries("_mta-sts.enforce.example", "TXT")


def test_dns_mx_and_policy_host_addresses(world):
    reply = query(world, "enforce.example", "MX")
    assert sorted((rr.rdata.preference, str(rr.rdata.label)) for rr in reply.rr) == [
        (10, "mx1.enforce.example."), (20, "mx2.mail.enforce.example.")]
    expected = {"mta-sts.enforce.example": "127.0.0.1",
                "mta-sts.https-refused.example": "127.0.0.2",
                "mta-sts.https-blackhole.example": "127.0.0.3"}
    for host, address in expected.items():
        assert [str(rr.rdata) for rr in query(world, host, "A").rr] == [address]
    nodata = query(world, "mta-sts.enforce.example", "AAAA")
    assert nodata.header.rcode == RCODE.NOERROR and not nodata.rr
    missing = query(world, "mta-sts.https-host-nxdomain.example", "A")
    assert missing.header.rcode == RCODE.NXDOMAIN


def test_dns_query_log(world):
    world.clear_log()
    query(world, "_MTA-STS.Testing.Example.", "TXT")
    entries = world.dns_queries()
    assert len(entries) == 1
    entry = entries[0]
    assert entry["name"] == "_mta-sts.testing.example" and entry["type"] == "TXT"
    assert entry["proto"] == "udp" and abs(entry["time"] - time.time()) < 5
    assert world.dns_queries("_mta-sts.testing.example.", "txt") == entries
    assert world.dns_queries("_mta-sts.testing.example", "MX") == []


# ---------------------------------------------------------------------------------------------
# libunbound as a forwarder (what mtasts does)

class UbResult(ctypes.Structure):
    _fields_ = [("qname", ctypes.c_char_p), ("qtype", ctypes.c_int), ("qclass", ctypes.c_int),
                ("data", ctypes.POINTER(ctypes.POINTER(ctypes.c_char))),
                ("len", ctypes.POINTER(ctypes.c_int)), ("canonname", ctypes.c_char_p),
                ("rcode", ctypes.c_int), ("answer_packet", ctypes.c_void_p),
                ("answer_len", ctypes.c_int), ("havedata", ctypes.c_int),
                ("nxdomain", ctypes.c_int), ("secure", ctypes.c_int), ("bogus", ctypes.c_int),
                ("why_bogus", ctypes.c_char_p), ("was_ratelimited", ctypes.c_int),
                ("ttl", ctypes.c_int)]


@pytest.fixture(scope="module")
def unbound(world):
    path = ctypes.util.find_library("unbound")
    if not path:
        pytest.fail("libunbound is not installed (apt-get install libunbound8)")
    lib = ctypes.CDLL(path)
    lib.ub_ctx_create.restype = ctypes.c_void_p
    lib.ub_ctx_set_fwd.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.ub_ctx_set_option.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p]
    lib.ub_resolve.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_int,
                               ctypes.POINTER(ctypes.POINTER(UbResult))]
    lib.ub_resolve_free.argtypes = [ctypes.POINTER(UbResult)]
    lib.ub_ctx_delete.argtypes = [ctypes.c_void_p]
    ctx = lib.ub_ctx_create()
    host, port = world.dns_address
    assert lib.ub_ctx_set_option(ctx, b"do-not-query-localhost:", b"no") == 0
    assert lib.ub_ctx_set_fwd(ctx, f"{host}@{port}".encode()) == 0

    def resolve(name, qtype):
        result = ctypes.POINTER(UbResult)()
        assert lib.ub_resolve(ctx, name.encode(), getattr(QTYPE, qtype), 1,
                              ctypes.byref(result)) == 0
        r = result.contents
        rdata = []
        i = 0
        while r.havedata and r.data[i]:
            rdata.append(ctypes.string_at(r.data[i], r.len[i]))
            i += 1
        answer = (r.rcode, bool(r.nxdomain), rdata,
                  r.canonname.decode() if r.canonname else None)
        lib.ub_resolve_free(result)
        return answer

    yield resolve
    lib.ub_ctx_delete(ctx)


def test_unbound_forwarder_gets_normal_answers(unbound):
    rcode, nx, rdata, _ = unbound("_mta-sts.txt-multi-string-split-id.example", "TXT")
    assert (rcode, nx, rdata) == (0, False, [b"\x0dv=STSv1; id=a\x03bc;"])
    rcode, nx, rdata, canon = unbound("_mta-sts.txt-cname-chain-two-hops.example", "TXT")
    assert (rcode, rdata, canon) == (0, [b"\x14v=STSv1; id=twohops;"],
                                     "_mta-sts.hop2.sts-provider.test.")
    assert unbound("_mta-sts.nopolicy.example", "TXT")[:3] == (3, True, [])
    assert unbound("nopolicy.example", "TXT")[:3] == (0, False, [])
    assert unbound("_mta-sts.dns-sts-servfail.example", "TXT")[0] == 2
    _, _, rdata, _ = unbound("_mta-sts.txt-large-rrset.example", "TXT")   # TC, then TCP
    assert len(rdata) == 7


# ---------------------------------------------------------------------------------------------
# HTTPS: certificates

def test_https_valid_policy_host(world):
    world.clear_log()
    response, body, cert = fetch(world, "mta-sts.enforce.example",
                                 extra="If-None-Match: \"x\"\r\n")
    assert response.status == 200 and response.version == 11
    assert response.getheader("Content-Type") == "text/plain"
    assert int(response.getheader("Content-Length")) == len(body)
    assert response.getheader("Connection") == "close"
    assert body == MANIFEST["https"]["mta-sts.enforce.example"]["body"].encode()
    assert cert["subjectAltName"] == (("DNS", "mta-sts.enforce.example"),)
    [entry] = world.https_requests("mta-sts.enforce.example")
    assert entry["sni"] == "mta-sts.enforce.example"
    assert entry["host"] == "mta-sts.enforce.example"
    assert (entry["method"], entry["path"]) == ("GET", WELL_KNOWN)
    assert entry["headers"]["if-none-match"] == '"x"'
    assert ["User-Agent", "world-test"] in entry["raw_headers"]
    assert abs(entry["time"] - time.time()) < 5


def test_https_connection_closed_after_response(world):
    with connect_tls(world, "mta-sts.enforce.example") as tls:
        send_get(tls, "mta-sts.enforce.example")
        data = recv_for(tls, 3)     # returns at EOF (close_notify), long before 3 s
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(b"max_age: 86400\n")


@pytest.mark.parametrize("domain, code", [
    ("https-cert-valid.example", None),
    ("https-cert-wildcard.example", None),
    ("https-cert-expired.example", 10),                       # X509_V_ERR_CERT_HAS_EXPIRED
    ("https-cert-wrong-name.example", 62),                    # X509_V_ERR_HOSTNAME_MISMATCH
    ("https-cert-cn-only.example", 62),
    ("deep.https-cert-wildcard-too-deep.example", 62),
    ("https-cert-for-provider-under-delegation.example", 62),
    ("https-cert-self-signed.example", 18),                   # DEPTH_ZERO_SELF_SIGNED_CERT
    ("https-cert-untrusted.example", 20),                     # UNABLE_TO_GET_ISSUER_CERT_LOCALLY
])
def test_https_certificate_profiles(world, domain, code):
    assert verify_code(world, "mta-sts." + domain) == code


def test_https_certificate_contents(world):
    no_names = tls_context(world, check_hostname=False)

    def peer(host, context=no_names):
        with connect_tls(world, host, context) as tls:
            return tls.getpeercert()

    cn_only = peer("mta-sts.https-cert-cn-only.example")
    assert "subjectAltName" not in cn_only
    # Only a client that falls back to the CN accepts it: the mistake this profile catches.
    lenient = ssl.create_default_context(cafile=world.ca_file)
    lenient.hostname_checks_common_name = True
    assert verify_code(world, "mta-sts.https-cert-cn-only.example", lenient) is None
    assert (("commonName", "mta-sts.https-cert-cn-only.example"),) in cn_only["subject"]
    assert peer("mta-sts.https-cert-wildcard.example")["subjectAltName"] == (
        ("DNS", "*.https-cert-wildcard.example"),)
    assert peer("mta-sts.deep.https-cert-wildcard-too-deep.example")["subjectAltName"] == (
        ("DNS", "*.https-cert-wildcard-too-deep.example"),)
    assert peer("mta-sts.https-cert-wrong-name.example")["subjectAltName"] == (
        ("DNS", "wrong-name.invalid"),)
    # The untrusted profile is a proper chain, just to a CA that ca.pem does not hold.
    untrusted = tls_context(world, cafile=world.untrusted_ca_file)
    assert peer("mta-sts.https-cert-untrusted.example", untrusted)["subjectAltName"] == (
        ("DNS", "mta-sts.https-cert-untrusted.example"),)


def test_https_certificate_validity_periods(world):
    def validity(host):
        unverified = ssl.create_default_context()
        unverified.check_hostname = False
        unverified.verify_mode = ssl.CERT_NONE
        with connect_tls(world, host, unverified) as tls:
            cert = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))
        return cert.not_valid_before, cert.not_valid_after

    now = datetime.datetime.utcnow()
    not_before, not_after = validity("mta-sts.enforce.example")
    assert timedelta_days(now - not_before) == 1 and timedelta_days(not_after - now) in (3649, 3650)
    not_before, not_after = validity("mta-sts.https-cert-expired.example")
    assert not_after < now and timedelta_days(now - not_after) == 1


def test_https_unknown_sni_gets_default_certificate(world):
    no_names = tls_context(world, check_hostname=False)
    response, body, cert = fetch(world, "mta-sts.nowhere.example", context=no_names)
    assert cert["subjectAltName"] == (("DNS", "unknown.invalid"),)
    assert response.status == 404


def test_https_without_sni_uses_host_header(world):
    no_names = tls_context(world, check_hostname=False)
    response, body, cert = fetch(world, "mta-sts.testing.example", context=no_names, sni=False)
    assert cert["subjectAltName"] == (("DNS", "unknown.invalid"),)
    assert response.status == 200 and b"mode: testing" in body
    assert world.https_requests("mta-sts.testing.example")[-1]["sni"] is None


def test_https_only_the_well_known_path(world):
    response, _, _ = fetch(world, "mta-sts.enforce.example", path="/mta-sts.txt")
    assert response.status == 404


def test_https_every_normal_host_serves_its_spec(world):
    for host, spec in MANIFEST["https"].items():
        if spec.get("behaviour", "normal") != "normal" or spec.get("address", "local") != \
                "local" or spec.get("cert", "valid") not in ("valid", "wildcard"):
            continue
        response, body, _ = fetch(world, host)
        assert response.status == spec.get("status", 200), host
        if "size" in spec:
            assert len(body) == spec["size"], host
        elif response.status not in (204, 304):
            assert body == spec.get("body", "").encode(), host


# ---------------------------------------------------------------------------------------------
# HTTPS: status, headers, behaviours

def test_https_status_location_and_headers(world):
    response, _, _ = fetch(world, "mta-sts.http-404.example")
    assert response.status == 404
    response, _, _ = fetch(world, "mta-sts.http-301-to-valid-policy.example")
    assert response.status == 301
    assert response.getheader("Location") == \
        "https://mta-sts.redirect-target.example/.well-known/mta-sts.txt"
    response, body, _ = fetch(world, "mta-sts.http-204-no-content.example")
    assert response.status == 204 and body == b""
    assert response.getheader("Content-Length") is None
    response, _, _ = fetch(world, "mta-sts.ct-missing.example")
    assert response.status == 200 and response.getheader("Content-Type") is None
    response, _, _ = fetch(world, "mta-sts.ct-text-plain-charset-latin1.example")
    assert response.getheader("Content-Type") == "text/plain; charset=latin1"
    response, _, _ = fetch(world, "mta-sts.http-cache-headers.example")
    assert response.getheader("Cache-Control") == "max-age=86400"
    assert response.getheader("ETag") == '"policy-v1"'
    response, body, _ = fetch(world, "mta-sts.pol-crlf.example")
    assert body.count(b"\r\n") == 4
    response, body, _ = fetch(world, "mta-sts.enforce.example", method="HEAD")
    assert response.status == 200 and body == b""


def test_https_huge_body(world):
    response, body, _ = fetch(world, "mta-sts.https-huge-body.example")
    assert response.status == 200 and response.getheader("Content-Type") == "text/plain"
    assert len(body) == 1024 * 1024 == int(response.getheader("Content-Length"))
    assert body.startswith(b"version: STSv1\n")
    response, body, _ = fetch(world, "mta-sts.body-just-under-64000-bytes.example")
    assert len(body) == 63999


def test_https_trickle(world):
    with connect_tls(world, "mta-sts.https-trickle.example") as tls:
        send_get(tls, "mta-sts.https-trickle.example")
        start = time.monotonic()
        data = recv_for(tls, 2.5)
    assert time.monotonic() - start >= 2.4
    assert 2 <= len(data) <= 4 and b"HTTP/1.1 200".startswith(data)


def test_https_stall(world):
    world.clear_log()
    with connect_tls(world, "mta-sts.https-timeout.example") as tls:
        send_get(tls, "mta-sts.https-timeout.example")
        assert recv_for(tls, 1.5) == b""
    assert world.https_requests("mta-sts.https-timeout.example")


def test_https_endless_chunked(world):
    with connect_tls(world, "mta-sts.https-endless-chunked.example") as tls:
        send_get(tls, "mta-sts.https-endless-chunked.example")
        data = recv_for(tls, 1.0)
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in head and b"Content-Length" not in head
    assert body.count(b"\r\n") >= 2 * 10 and b"\r\n0\r\n" not in body


def test_https_endless_headers(world):
    with connect_tls(world, "mta-sts.https-endless-headers.example") as tls:
        send_get(tls, "mta-sts.https-endless-headers.example")
        data = recv_for(tls, 1.0)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert data.count(b"\r\n") > 100 and b"\r\n\r\n" not in data


def test_https_handshake_stall(world):
    world.clear_log()
    with pytest.raises((socket.timeout, TimeoutError)):
        connect_tls(world, "mta-sts.https-handshake-stall.example", timeout=1.5)
    assert world.connections("mta-sts.https-handshake-stall.example")


def test_https_refused_and_blackhole(world):
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.2", world.https_port), timeout=2).close()
    with socket.create_connection(("127.0.0.3", world.https_port), timeout=2) as sock:
        sock.sendall(b"hello?")
        assert recv_for(sock, 1.0) == b""
    with pytest.raises((socket.timeout, TimeoutError)):
        connect_tls(world, "mta-sts.https-blackhole.example", address="127.0.0.3", timeout=1)
    assert any(c["address"] == "127.0.0.3" for c in world.connections())


# ---------------------------------------------------------------------------------------------
# control API

def test_control_dns_changes(world):
    name = "_mta-sts.runtime.example"
    assert query(world, name, "TXT").header.rcode == RCODE.NXDOMAIN
    world.set_dns(name, {"TXT": [["v=STSv1; ", "id=live1;"]]})
    assert txt_strings(query(world, name, "TXT")) == [[b"v=STSv1; ", b"id=live1;"]]
    world.set_dns(name, {"fault": "servfail"})
    assert query(world, name, "TXT").header.rcode == RCODE.SERVFAIL
    world.delete_dns(name)
    assert query(world, name, "TXT").header.rcode == RCODE.NXDOMAIN
    # A name under a new TLD brings that TLD into the world.
    assert query(world, "host.newtld", "A").header.rcode == RCODE.REFUSED
    world.set_dns("Host.NewTLD.", {"A": ["127.0.0.1"], "ttl": 30})
    reply = query(world, "host.newtld", "A")
    assert [str(rr.rdata) for rr in reply.rr] == ["127.0.0.1"] and reply.rr[0].ttl == 30
    assert query(world, "other.newtld", "A").header.rcode == RCODE.NXDOMAIN
    world.delete_dns("host.newtld")


def test_control_rejects_bad_data(world):
    with pytest.raises(WorldError, match="400"):
        world.set_dns("bad.example", {"TXT": ["not a list of strings"]})
    with pytest.raises(WorldError, match="400"):
        world.set_dns("bad.example", {"CNAME": "x.example", "A": ["127.0.0.1"]})
    with pytest.raises(WorldError, match="400"):
        world.set_https("mta-sts.bad.example", {"cert": "no-such-profile"})
    with pytest.raises(WorldError, match="400"):
        world.set_dns("bad.example", {"TXT": [["x" * 256]]})
    status, _ = world.request("GET", "/nothing")
    assert status == 404


def test_control_https_changes(world):
    host = "mta-sts.runtime-https.example"
    world.set_https(host, {"body": "version: STSv1\nmode: none\nmax_age: 60\n",
                           "headers": {"X-Test": "1"}})
    assert [str(rr.rdata) for rr in query(world, host, "A").rr] == ["127.0.0.1"]
    response, body, _ = fetch(world, host)
    assert response.status == 200 and body.endswith(b"max_age: 60\n")
    assert response.getheader("X-Test") == "1"
    status, spec = world.request("GET", f"/https/{host}")
    assert status == 200 and spec["status"] == 200
    world.set_https(host, {"cert": "expired", "status": 500})
    assert verify_code(world, host) == 10
    world.delete_https(host)
    assert query(world, host, "A").header.rcode == RCODE.NXDOMAIN
    assert verify_code(world, host) == 62           # the default unknown.invalid certificate


def test_control_log_and_clear(world):
    query(world, "enforce.example", "MX")
    fetch(world, "mta-sts.enforce.example")
    log = world.log()
    assert log["dns"] and log["https"] and log["connections"]
    world.clear_log()
    assert world.log() == {"dns": [], "https": [], "connections": []}
    fetch(world, "mta-sts.testing.example")
    assert len(world.https_requests("mta-sts.testing.example")) == 1
    assert world.https_requests("mta-sts.enforce.example") == []


# ---------------------------------------------------------------------------------------------
# lifetime: the world never outlives its test run

def test_world_stops_after_lifetime():
    started = time.monotonic()
    world = World(lifetime=2).start()
    try:
        assert world.process.wait(timeout=10) == 0
        assert time.monotonic() - started < 8
        assert "lifetime" in world.output()
    finally:
        world.stop()


def test_world_stops_on_sigterm():
    with World() as world:
        pid = world.pid
    assert world.process.returncode == 0 and process_gone(pid)


def test_world_stops_when_parent_dies(tmp_path):
    # An intermediate parent starts the world, then is killed; the orphan must notice.
    command = [PYTHON, WORLD_PY, "--state-dir", str(tmp_path)]
    script = f"import subprocess, time\nsubprocess.Popen({command!r})\ntime.sleep(60)\n"
    parent = subprocess.Popen([PYTHON, "-c", script])
    try:
        deadline = time.monotonic() + 20
        while not (tmp_path / "world.json").exists():
            assert time.monotonic() < deadline and parent.poll() is None
            time.sleep(0.05)
        pid = json.loads((tmp_path / "world.json").read_text())["pid"]
        assert not process_gone(pid)
    finally:
        parent.kill()
        parent.wait()
    assert wait_gone(pid, 5)


def test_world_refuses_a_bad_manifest(tmp_path):
    manifest = tmp_path / "bad.json"
    manifest.write_text(json.dumps({"dns": {"x.example": {"TXT": "not a list"}}}))
    result = subprocess.run([PYTHON, WORLD_PY, "--state-dir", str(tmp_path / "state"),
                             "--manifest", str(manifest)], capture_output=True, text=True,
                            timeout=20)
    assert result.returncode == 1 and "x.example" in result.stderr
    assert not (tmp_path / "state" / "world.json").exists()
