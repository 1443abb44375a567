"""TLSRPT from Postfix (>= 3.10 through libtlsrpt) to reports (design §7, issue 11):

byte-exact libtlsrpt datagrams go to mtastsd's datagram socket ([tlsrpt] socket) the way
Postfix sends them; the counts (`mtasts tlsrpt show`), the report files (`tlsrpt report`,
validated against the RFC 8460 schema in tests/data/tlsrpt) and the report mail handed to
sendmail (`tlsrpt send`, then mtastsd itself after midnight UTC) must match them exactly.
Malformed input is counted, dropped and logged at a bounded rate, and the daemon lives on.
"""

from __future__ import annotations

import gzip
import json
import time
import urllib.request
from datetime import datetime, timedelta, timezone

import pytest

import daemon_helpers as dh
import tlsrpt_helpers as th
import tlsrpt_schema
from client import World
from daemon_helpers import Clock, Mtastsd, free_port
from tlsrpt_helpers import NO_POLICY, STS, TLSA, Failure, Policy

SENDER_IP = "192.0.2.25"
STS_LINES = ["version: STSv1", "mode: enforce", "mx: mx1.sts.example", "max_age: 86400"]


def today() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d")


def sts_policy(failures=()):
    return Policy(STS, "sts.example", STS_LINES, ["mx1.sts.example"], list(failures))


# Every kind Postfix sends, with how the report must count it: (datagram, domain, policy type,
# success +, failure +, failure detail result-types).
def datagrams():
    dane = Policy(TLSA, "mx.dane.example", ["3 1 1 1f3a5b", "2 0 1 AbCd"], [],
                  [Failure("tlsa-invalid", SENDER_IP, "mx.dane.example", "mx.dane.example",
                           "192.0.2.60", reason="no TLSA record matched")])
    out = [th.datagram("plain.example", [Policy(NO_POLICY, "plain.example")]) for _ in range(3)]
    out += [th.datagram("sts.example", [sts_policy()]) for _ in range(5)]
    for result in ("starttls-not-supported", "certificate-host-mismatch",
                   "certificate-not-trusted", "certificate-expired", "validation-failure"):
        out.append(th.datagram("sts.example", [sts_policy(
            [Failure(result, SENDER_IP, "mx1.sts.example", None, "192.0.2.50",
                     reason=f"{result} seen")])]))
    out.append(th.datagram("dane.example", [dane]))
    # One delivery request with two policies (DANE first, then STS): both are counted.
    out.append(th.datagram("both.example", [
        Policy(TLSA, "mx.both.example", ["3 1 1 aa"], [], []),
        Policy(STS, "both.example", ["version: STSv1", "mode: testing", "mx: *.both.example",
                                     "max_age: 600"], ["*.both.example"], [])]))
    return out


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    dh.require_daemon()
    work = tmp_path_factory.mktemp("tlsrpt")
    work.chmod(0o755)
    port = free_port()
    socket_path = work / "d" / "tlsrpt.sock"
    with World(lifetime=600) as world:
        for domain, rua in (("sts.example", "mailto:reports@rua.example"),
                            ("dane.example", "mailto:dane-reports@rua.example"),
                            ("both.example", "mailto:a@rua.example,mailto:b@rua.example"),
                            ("plain.example", "https://reports.rua.example/v1/tlsrpt")):
            world.set_dns(f"_smtp._tls.{domain}", {"TXT": [[f"v=TLSRPTv1; rua={rua}"]]})
        # The https: rua endpoint (RFC 8460 §5.4): the world's HTTPS server on that name.
        world.set_https("reports.rua.example", {"cert": "valid", "status": 201,
                                                "path": "/v1/tlsrpt", "body": ""})
        sendmail = th.capture_sendmail(work)
        d = Mtastsd(work, world, daemon_keys=f'metrics_listen = "127.0.0.1:{port}"\n',
                    top_keys=th.tlsrpt_table(socket_path, sendmail=[str(sendmail), "-oi"],
                                             send=False))
        try:
            yield {"daemon": d, "world": world, "socket": socket_path, "work": work,
                   "metrics": f"http://127.0.0.1:{port}/metrics", "sendmail": sendmail}
        finally:
            assert d.stop() == 0, d.log()


def metrics(env) -> dict[str, float]:
    with urllib.request.urlopen(env["metrics"], timeout=5) as response:
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def stored(env) -> float:
    return metrics(env).get("mtasts_tlsrpt_sessions_stored_total", 0)


def test_datagrams_are_counted_exactly(env):
    d = env["daemon"]
    before = stored(env)
    sent = datagrams()
    th.send_datagrams(env["socket"], sent)
    dh.wait_for(lambda: stored(env) >= before + len(sent), what="sessions stored")
    counts = th.show(d.config, "--day", today())[today()]
    plain = counts["plain.example"]
    assert [(p["policy-type"], p["successful"], p["failed"]) for p in plain] == \
        [("no-policy-found", 3, 0)]
    (sts,) = counts["sts.example"]
    assert (sts["policy-type"], sts["successful"], sts["failed"]) == ("sts", 5, 5)
    assert sts["policy-string"] == STS_LINES and sts["mx-host"] == ["mx1.sts.example"]
    results = sorted(f["result-type"] for f in sts["failure-details"])
    assert results == sorted(["starttls-not-supported", "certificate-host-mismatch",
                              "certificate-not-trusted", "certificate-expired",
                              "validation-failure"])
    for detail in sts["failure-details"]:
        assert detail["failed-session-count"] == 1
        assert detail["sending-mta-ip"] == SENDER_IP and detail["receiving-ip"] == "192.0.2.50"
        assert detail["failure-reason-code"] == detail["result-type"] + " seen"
    (dane,) = counts["dane.example"]
    assert (dane["policy-type"], dane["policy-domain"], dane["failed"]) == \
        ("tlsa", "mx.dane.example", 1)
    assert dane["policy-string"] == ["3 1 1 1f3a5b", "2 0 1 AbCd"]
    assert [p["policy-type"] for p in counts["both.example"]] == ["tlsa", "sts"]


def test_report_files_follow_rfc_8460(env, tmp_path):
    d = env["daemon"]
    out = tmp_path / "reports"
    out.mkdir()
    p = th.cli(d.config, "tlsrpt", "report", "--day", today(), "--out", str(out))
    files = sorted(out.iterdir())
    assert len(files) == 4, p.stdout  # plain, sts, dane, both
    for path in files:
        assert th.FILENAME.match(path.name), path.name
        data = path.read_bytes()
        assert data[:2] == b"\x1f\x8b"
        report = tlsrpt_schema.load_strict(gzip.decompress(data).decode())
        tlsrpt_schema.validate_report(report)
        submitter, domain, begin, end, _ = path.name[:-len(".json.gz")].split("!")
        assert submitter == "sender.example"
        start = datetime.fromtimestamp(int(begin), timezone.utc)
        assert report["date-range"]["start-datetime"] == start.strftime("%Y-%m-%dT%H:%M:%SZ")
        assert int(end) - int(begin) == 86399
        assert report["organization-name"] == "mtasts test org"
        assert report["contact-info"] == "tlsrpt-admin@sender.example"
        if domain == "sts.example":
            (policy,) = report["policies"]
            assert policy["summary"] == {"total-successful-session-count": 5,
                                         "total-failure-session-count": 5}
            assert len(policy["failure-details"]) == 5
    # The same day built twice is the same bytes (stable report-id, deterministic gzip).
    again = tmp_path / "again"
    again.mkdir()
    th.cli(d.config, "tlsrpt", "report", "--day", today(), "--out", str(again))
    for path in files:
        assert (again / path.name).read_bytes() == path.read_bytes()


def test_malformed_datagrams_are_dropped_and_counted(env):
    d = env["daemon"]
    before = metrics(env)
    bad = [b"not json at all", b"[1,2,3]",
           th.datagram("sts.example", [sts_policy()], dpv="2"),
           b'{"dpv": "1","d": "x.example","d": "y.example","pr": "","policies":[]}',
           th.datagram("sts.example", [sts_policy()]).replace(b'"t":0', b'"t":3'),
           b'{"dpv": "1","d": "x.example","pr": "","policies":[{"policy-type":7,"t":0,"f":0}]}',
           b"{" + b" " * 70000 + b"}"] * 20
    th.send_datagrams(env["socket"], bad)
    good = th.datagram("after.example", [Policy(NO_POLICY, "after.example")])
    th.send_datagrams(env["socket"], [good])
    dh.wait_for(lambda: "after.example" in th.show(d.config, "--day", today()).get(today(), {}),
                what="the good datagram after the bad ones")
    after = metrics(env)
    dropped = lambda m, reason: m.get(f'mtasts_tlsrpt_dropped_total{{reason="{reason}"}}', 0)
    assert dropped(after, "malformed") - dropped(before, "malformed") == 120
    assert dropped(after, "oversized") - dropped(before, "oversized") == 20
    log = d.log()
    assert log.count("datagram dropped") <= 10, "malformed datagrams must be logged at a bound"
    assert "datagram protocol version" in log or "dpv" in log
    assert d.proc.poll() is None


def test_exim_request_is_counted(env):
    d = env["daemon"]
    before = stored(env)
    assert d.ask("tlsrpt exim.example mx1.exim.example 192.0.2.70 192.0.2.25 ok") == "ok"
    assert d.ask("tlsrpt exim.example mx1.exim.example 192.0.2.70 192.0.2.25 "
                 "certificate-expired certificate has expired") == "ok"
    assert d.ask("tlsrpt exim.example").startswith("error:")
    dh.wait_for(lambda: stored(env) >= before + 2, what="Exim sessions stored")
    (policy,) = th.show(d.config, "--day", today(), "--domain", "exim.example")[today()][
        "exim.example"]
    assert (policy["policy-type"], policy["successful"], policy["failed"]) == \
        ("no-policy-found", 1, 1)
    (detail,) = policy["failure-details"]
    assert detail["result-type"] == "certificate-expired"
    assert detail["receiving-mx-hostname"] == "mx1.exim.example"
    assert detail["failure-reason-code"] == "certificate has expired"


def test_send_mails_each_report_once(env):
    """`tlsrpt send` on the next day's clock: one mail per rua with a TLSRPT record; a second
    send sends nothing (at most once per day, domain and rua)."""
    d, work = env["daemon"], env["work"]
    tomorrow = th.eh.faketime_env(
        dh.faketime_library(), {"FAKETIME": "+1d", "FAKETIME_DONT_FAKE_MONOTONIC": "1"},
        starts_programs=True)
    p = th.cli(d.config, "tlsrpt", "send", env=tomorrow)
    mails = th.captured_mails(work)
    recipients = sorted(argv[-1] for argv, _ in mails)
    assert recipients == ["a@rua.example", "b@rua.example", "dane-reports@rua.example",
                          "reports@rua.example"], p.stdout
    for argv, message in mails:
        assert argv[:3] == ["-oi", "-f", "tlsrpt-noreply@sender.example"] and argv[3] == "--"
        assert message["TLS-Required"] == "No"
        assert message["TLS-Report-Submitter"] == "sender.example"
        domain = message["TLS-Report-Domain"]
        assert message["Subject"].startswith(f"Report Domain: {domain} Submitter: sender.example")
        filename, report = th.report_of_mail(message)
        assert th.FILENAME.match(filename)
        tlsrpt_schema.validate_report(report)
        assert f"Report-ID: <{report['report-id']}>" in message["Subject"]
    # plain.example's report went by HTTPS POST, gzip, under PKIX (the world's CA).
    (post,) = [r for r in env["world"].https_requests("reports.rua.example")
               if r["method"] == "POST"]
    assert post["path"] == "/v1/tlsrpt"
    assert post["headers"]["content-type"] == "application/tlsrpt+gzip"
    report = json.loads(gzip.decompress(post["body"].encode("latin-1")))
    tlsrpt_schema.validate_report(report)
    assert report["policies"][0]["policy"]["policy-domain"] == "plain.example"
    assert report["policies"][0]["summary"]["total-successful-session-count"] == 3
    again = th.cli(d.config, "tlsrpt", "send", env=tomorrow)
    assert len(th.captured_mails(work)) == len(mails), again.stdout
    assert "0 sent" in again.stdout
    assert len([r for r in env["world"].https_requests("reports.rua.example")
                if r["method"] == "POST"]) == 1


def test_daemon_sends_after_midnight(tmp_path):
    """mtastsd itself sends a closed day's reports (send_window = 0: right after midnight)."""
    dh.require_daemon()
    tmp_path.chmod(0o755)
    clock = Clock(tmp_path / "clock", starts_programs=True)
    with World(lifetime=300) as world:
        world.set_dns("_smtp._tls.late.example",
                      {"TXT": [["v=TLSRPTv1; rua=mailto:late@rua.example"]]})
        sendmail = th.capture_sendmail(tmp_path)
        table = th.tlsrpt_table(tmp_path / "d" / "tlsrpt.sock", sendmail=[str(sendmail)])
        d = Mtastsd(tmp_path, world, top_keys=table, clock=clock)
        try:
            th.send_datagrams(d.dir / "tlsrpt.sock",
                              [th.datagram("late.example", [sts_policy()])] * 4)
            dh.wait_for(lambda: "late.example" in json.dumps(th.show(d.config)),
                        what="sessions stored")
        finally:
            assert d.stop() == 0, d.log()
        midnight = (datetime.now(timezone.utc) + timedelta(days=1)).replace(
            hour=0, minute=0, second=5, microsecond=0)
        clock.set(int(midnight.timestamp() - time.time()) + 1)
        d = Mtastsd(tmp_path, world, top_keys=table, clock=clock)
        try:
            d.wait_log("sent to mailto:late@rua.example", timeout=30)
        finally:
            assert d.stop() == 0, d.log()
    ((argv, message),) = th.captured_mails(tmp_path)
    assert argv[-1] == "late@rua.example"
    _, report = th.report_of_mail(message)
    assert report["policies"][0]["summary"]["total-successful-session-count"] == 4
