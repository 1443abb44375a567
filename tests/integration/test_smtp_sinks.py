"""Self-tests of the test world's SMTP sinks (tests/world/smtp_sinks.py), on free loopback ports
(no namespace, no root): started by world.py --smtp-port and standalone with the world's CA."""

from __future__ import annotations

import json
import os
import smtplib
import ssl
import subprocess
import sys
import time

import pytest

from client import World

WORLD_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "world")
SINKS_PY = os.path.join(WORLD_DIR, "smtp_sinks.py")

SINKS = {
    "good.sink.test": {"address": "127.0.0.41", "cert": "valid"},
    "expired.sink.test": {"address": "127.0.0.42", "cert": "expired"},
    "notls.sink.test": {"address": "127.0.0.43", "starttls": False},
    "other.sink.test": {"address": "127.0.0.44", "cert_san": ["good.sink.test"]},
}


def manifest(tmp_path, sinks=SINKS):
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"dns": {}, "https": {}, "smtp": sinks, "domains": {}}))
    return str(path)


class SinkWorld(World):
    def __init__(self, manifest_file):
        super().__init__(manifest=manifest_file)
        self.command += ["--smtp-port", "0"]

    def sink_log(self):
        with open(self.info["smtp_log"], encoding="utf-8") as f:
            return json.load(f)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with SinkWorld(manifest(tmp_path_factory.mktemp("sinks"))) as w:
        yield w


def connect(world, host, port=None):
    return smtplib.SMTP(SINKS[host]["address"], port or world.info["smtp_port"], timeout=10)


def verifying_context(world):
    return ssl.create_default_context(cafile=world.ca_file)


def starttls(client, host, context):
    """STARTTLS with SNI and name check for host (smtplib uses the connect address)."""
    client._host = host
    client.starttls(context=context)


def wait_for_connections(world, sink, count=1):
    deadline = time.monotonic() + 5
    while True:
        seen = [c for c in world.sink_log()["connections"] if c["sink"] == sink]
        if len(seen) >= count or time.monotonic() > deadline:
            return seen
        time.sleep(0.05)


def test_world_json_names_the_sinks(world):
    assert world.info["smtp"] == {h: s["address"] for h, s in SINKS.items()}
    assert os.path.exists(world.info["smtp_log"])


def test_sink_names_resolve_to_their_addresses(world):
    assert world.request("GET", "/dns/good.sink.test")[0] == 404     # no explicit data...
    import dnslib
    host, port = world.dns_address
    query = dnslib.DNSRecord.question("good.sink.test", "A")
    reply = dnslib.DNSRecord.parse(query.send(host, port, timeout=5))
    assert [str(rr.rdata) for rr in reply.rr] == ["127.0.0.41"]      # ...but an A record


def test_verified_tls_delivery_is_recorded(world):
    with connect(world, "good.sink.test") as client:
        client.ehlo("client.test")
        assert client.has_extn("starttls")
        starttls(client, "good.sink.test", verifying_context(world))
        client.ehlo("client.test")
        client.sendmail("a@from.test", ["b@to.test", "c@to.test"],
                        "Subject: hello sink\r\nMessage-ID: <1@from.test>\r\n\r\n.dot\r\nbody\r\n")
    messages = [m for m in world.sink_log()["messages"] if m["subject"] == "hello sink"]
    assert len(messages) == 1
    m = messages[0]
    assert (m["sink"], m["mail_from"], m["rcpt_to"]) == ("good.sink.test", "a@from.test",
                                                        ["b@to.test", "c@to.test"])
    assert m["tls"] and m["tls_version"].startswith("TLSv1") and m["sni"] == "good.sink.test"
    assert m["message_id"] == "<1@from.test>"
    assert m["data"].endswith("\r\n\r\n.dot\r\nbody\r\n")   # smtplib's "..dot" unstuffed


def test_expired_certificate_is_refused_and_logged(world):
    with connect(world, "expired.sink.test") as client:
        client.ehlo("client.test")
        with pytest.raises(ssl.SSLCertVerificationError, match="expired"):
            starttls(client, "expired.sink.test", verifying_context(world))
    seen = wait_for_connections(world, "expired.sink.test")
    assert seen and seen[-1]["starttls"] and not seen[-1]["tls"] and seen[-1]["tls_error"]
    assert seen[-1]["messages"] == 0 and seen[-1]["sni"] == "expired.sink.test"


def test_certificate_for_another_name(world):
    with connect(world, "other.sink.test") as client:
        client.ehlo("client.test")
        with pytest.raises(ssl.SSLCertVerificationError, match="mismatch|match"):
            starttls(client, "other.sink.test", verifying_context(world))
    with connect(world, "other.sink.test") as client:
        client.ehlo("client.test")
        starttls(client, "good.sink.test", verifying_context(world))   # valid for that name


def test_no_starttls_offered(world):
    with connect(world, "notls.sink.test") as client:
        client.ehlo("client.test")
        assert not client.has_extn("starttls")
        code, _ = client.docmd("STARTTLS")
        assert code == 502
        client.sendmail("a@from.test", ["b@to.test"], "Subject: clear\r\n\r\nbody\r\n")
    m = [m for m in world.sink_log()["messages"] if m["subject"] == "clear"]
    assert len(m) == 1 and m[0]["tls"] is False and m[0]["sni"] is None


def test_standalone_with_the_worlds_ca(world, tmp_path):
    sinks_file = tmp_path / "sinks.json"
    sinks_file.write_text(json.dumps({"solo.sink.test": {"address": "127.0.0.45"}}))
    state = tmp_path / "state"
    proc = subprocess.Popen([sys.executable, SINKS_PY, "--state-dir", str(state), "--sinks",
                             str(sinks_file), "--port", "0", "--ca-dir", world.state_dir,
                             "--lifetime", "30"], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 15
        while not (state / "sinks.json").exists():
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        info = json.loads((state / "sinks.json").read_text())
        assert info["ca_file"] == os.path.join(world.state_dir, "ca.pem")
        with smtplib.SMTP("127.0.0.45", info["port"], timeout=10) as client:
            client.ehlo("client.test")
            starttls(client, "solo.sink.test", verifying_context(world))
            client.sendmail("a@from.test", ["b@to.test"], "Subject: solo\r\n\r\nbody\r\n")
        log = json.loads((state / "smtp-log.json").read_text())
        assert [m["subject"] for m in log["messages"]] == ["solo"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.parametrize("spec,reason", [
    ({"x.test": {"address": "192.0.2.1"}}, "loopback"),
    ({"x.test": {"address": "127.0.0.50", "cert": "bogus"}}, "cert must be one of"),
    ({"x.test": {"address": "127.0.0.50", "tls": True}}, "unknown keys"),
    ({"x.test": {"address": "127.0.0.50"}, "y.test": {"address": "127.0.0.50"}}, "share"),
])
def test_bad_sink_specs_are_refused(tmp_path, spec, reason):
    r = subprocess.run([sys.executable, os.path.join(WORLD_DIR, "world.py"), "--state-dir",
                        str(tmp_path / "w"), "--manifest", manifest(tmp_path, spec),
                        "--smtp-port", "0"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and reason in r.stderr, r.stderr
    assert not (tmp_path / "w" / "world.json").exists()
