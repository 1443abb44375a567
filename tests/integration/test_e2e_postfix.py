"""End-to-end deliveries through the real Postfix 3.7 (Debian 12's, run from the unpacked package:
postfix_helpers.py, scripts/fetch-postfix.sh) asking mtastsd over socketmap, with the shipped
main.cf settings (packaging/postfix/main.cf: smtp_tls_policy_maps = socketmap:...:postfix,
smtp_tls_security_level = may), in a network namespace with the test world and its SMTP sinks
(e2e_helpers.py).

Each case submits one real message (sendmail -C) and checks the result in Postfix's log
(status=sent / deferred, never bounced), its queue (postqueue -p) and the sinks' log. Deferred
messages are flushed (postqueue -f: retried now, whatever the backoff) and must still wait.

A first test proves the Postfix runner itself with a static texthash: policy table (no
mtastsd), so it runs even where the daemon is not built.

Postfix 3.7 checks the certificate of every MX host against the `match=` names of the policy
(TLS level `secure`): the MX host name is not what it checks, and it connects to MX hosts the
policy does not list (they fail the match). Postfix 3.10.5 added
smtp_tls_enforce_sts_mx_patterns for that (rfc-checklist STS-37); the cases where 3.7 differs
from RFC 8461 are marked with the reason.
"""

from __future__ import annotations

import re

import pytest

import e2e_helpers as e2e
import exim_helpers as eh
import postfix_helpers as ph


@pytest.fixture(scope="module")
def world():
    ph.require_root()
    ph.tree()      # fetch (or skip) before anything is started
    work = e2e.workdir("mtasts-e2e-postfix-")
    try:
        with e2e.e2e_world(work) as w:
            yield w
    finally:
        e2e.cleanup(work)


@pytest.fixture(scope="module")
def daemon(world):
    """mtastsd on a Unix socket and on the loopback listener the shipped main.cf names
    (socketmap:inet:127.0.0.1:8461:postfix), inside the namespace."""
    if not e2e.daemon_path().exists():
        pytest.skip(f"mtastsd is not built ({e2e.daemon_path()}; cmake --build BUILD --target "
                    "mtastsd): the socketmap deliveries need it")
    maps = ph.shipped_policy_maps()
    m = re.fullmatch(r"socketmap:inet:([0-9.]+:\d+):(\S+)", maps)
    assert m, f"packaging/postfix/main.cf: unexpected smtp_tls_policy_maps = {maps}"
    with e2e.mtastsd(world, world.work / "mtastsd",
                     extra=f'socketmap_listen = "{m.group(1)}"') as paths:
        yield {**paths, "map_name": m.group(2)}


@pytest.fixture(scope="module")
def postfix(world, daemon):
    """Postfix with the shipped main.cf lines (the TCP socketmap), the test CA as CAfile."""
    with ph.running(world.work / "postfix", ns=world.ns, ca_file=world.ca_file,
                    main_extra=ph.shipped_main_cf(world.ca_file)) as pf:
        yield pf


def submit(pf: ph.Postfix, case: e2e.Case) -> tuple[str, str, str]:
    """(queue id, subject, recipient) of one message for the case's domain."""
    recipient = f"user@{case.domain}"
    subject = e2e.subject_for(case.id)
    message_id = e2e.new_message_id()
    pf.send(e2e.SENDER, recipient, e2e.message_text(subject, recipient, message_id))
    return pf.queue_id(message_id), subject, recipient


def check_sent(pf: ph.Postfix, world, case: e2e.Case, queue_id: str, subject: str,
               recipient: str) -> None:
    status = pf.wait_status(queue_id)
    assert len(status) == 1 and " status=sent " in status[0], "\n".join(pf.lines(queue_id))
    address = e2e.SINKS[case.sink]["address"]
    assert f"relay={case.sink}[{address}]:25," in status[0], status[0]
    message = e2e.wait_for(lambda: world.sinks.messages(subject=subject), 5)
    assert message, pf.log()
    e2e.check_delivered(world, case, subject, recipient)
    if case.effective_mode == "enforce":
        assert f"Verified TLS connection established to {case.sink}[{address}]:25" in pf.log()
    # The queue manager removes the file just after it logs status=sent.
    assert e2e.wait_for(lambda: queue_id not in pf.queue(), 5), pf.queue()


def check_waits(pf: ph.Postfix, world, queue_id: str, subject: str, attempts: int) -> None:
    """Deferred `attempts` times, still queued, never bounced, never at a sink."""
    status = pf.wait_status(queue_id, count=attempts)
    assert all(" status=deferred " in line for line in status), "\n".join(status)
    lines = pf.lines(queue_id)
    assert not any("status=bounced" in line or "status=sent" in line for line in lines), lines
    assert "sender non-delivery notification" not in pf.log(), pf.log()
    assert not any(line.endswith(": removed") for line in lines), lines
    e2e.check_not_delivered(world, subject)
    queue = pf.queue()
    assert re.search(rf"^{queue_id}\b", queue, re.M), queue


# --------------------------------------------------------------------------------------------
# The runner itself, with a static policy table


def test_postfix_runner_with_a_static_policy_table(world):
    """Postfix from the unpacked package delivers and holds mail as a texthash: table says:
    `secure match=...` for two enforce domains, nothing for a domain without a policy."""
    table = world.work / "tls_policy"
    table.write_text(
        "e2e-enforce-good.example secure match=good.mx.test servername=hostname\n"
        "e2e-enforce-expired.example secure match=expired.mx.test servername=hostname\n")
    with ph.running(world.work / "postfix-static", ns=world.ns, ca_file=world.ca_file,
                    policy_maps=f"texthash:{table}") as pf:
        good = e2e.CASES_BY_ID["enforce-good"]
        check_sent(pf, world, good, *submit(pf, good))
        plain = e2e.CASES_BY_ID["nopolicy-notls"]
        check_sent(pf, world, plain, *submit(pf, plain))
        expired = e2e.CASES_BY_ID["enforce-expired"]
        queue_id, subject, _ = submit(pf, expired)
        check_waits(pf, world, queue_id, subject, attempts=1)
        assert "Server certificate not verified" in pf.statuses(queue_id)[0]


# --------------------------------------------------------------------------------------------
# The matrix, with mtastsd over socketmap

# Where Postfix 3.7 with this socketmap answer differs from RFC 8461 (strict xfail: a fix shows up
# as XPASS and fails the run, so the mark must then go).
KNOWN = {
    # STS-37: Postfix <= 3.10.4 checks the certificate against every name of match=, not
    # against the MX host name (Postfix 3.10.5: smtp_tls_enforce_sts_mx_patterns).
    "enforce-swapped": "Postfix 3.7 accepts a certificate for any name in match=: "
                       "swapped.mx.test presenting a certificate for good.mx.test is delivered to "
                       "(STS-37)",
    # STS-36: Postfix falls back to the subject CN when the certificate has no DNS SAN.
    "enforce-cnonly": "Postfix 3.7 accepts a CN-only certificate (no DNS SAN) for the MX name "
                      "(STS-36)",
}


def _params(cases):
    return [pytest.param(c, id=c.id, marks=[pytest.mark.xfail(strict=True, reason=KNOWN[c.id])]
                         if c.id in KNOWN else []) for c in cases]


DELIVER = [c for c in e2e.CASES if c.expect == "deliver"]
DEFER = [c for c in e2e.CASES if c.expect == "defer"]


@pytest.mark.parametrize("case", _params(DELIVER))
def test_delivered(world, postfix, case):
    check_sent(postfix, world, case, *submit(postfix, case))


@pytest.mark.parametrize("case", _params(DEFER))
def test_enforce_defers_never_bounces(world, postfix, case):
    queue_id, subject, _ = submit(postfix, case)
    check_waits(postfix, world, queue_id, subject, attempts=1)
    # Retried at once (postqueue -f ignores the backoff): still waiting, still no bounce.
    postfix.flush()
    check_waits(postfix, world, queue_id, subject, attempts=2)


def test_socketmap_answers_postfix_used(world, postfix, daemon):
    """What Postfix was told: the enforce domains got `secure match=...` from mtastsd."""
    r = postfix.command("postmap", "-c", str(postfix.config_dir), "-q", "e2e-enforce-good.example",
                        f"socketmap:unix:{daemon['socketmap']}:postfix")
    assert r.returncode == 0 and r.stdout.strip() == \
        "secure match=good.mx.test servername=hostname", r
    r = postfix.command("postmap", "-c", str(postfix.config_dir), "-q",
                        "e2e-testing-expired.example",
                        f"socketmap:unix:{daemon['socketmap']}:postfix")
    assert r.returncode == 1 and r.stdout == "", r     # NOTFOUND


def test_new_policy_id_is_picked_up_on_retry(world):
    """STS-42: deferred under enforce; a new TXT id and a policy allowing the MX are published;
    mtastsd looks the TXT record up again and fetches the new policy, and Postfix's retry
    (postqueue -f) delivers. mtastsd re-checks a cached policy's id once its TXT TTL (60 s here)
    has passed, so its wall clock is moved 120 s on while it runs (libfaketime reading a
    timestamp file; its monotonic clock is left alone). The first request after the TTL is
    answered from the cached policy while the id is re-checked in the background
    (stale-while-revalidate); the retry after that sees the new policy."""
    if not e2e.daemon_path().exists():
        pytest.skip(f"mtastsd is not built ({e2e.daemon_path()})")
    library = eh.faketime_library()
    if library is None:
        pytest.fail("libfaketime is not installed (apt-get install libfaketime)")
    clock = world.work / "sts42-clock"
    clock.write_text("+0s\n")
    clock.chmod(0o644)
    fake = eh.faketime_env(library, {"FAKETIME_TIMESTAMP_FILE": str(clock),
                                     "FAKETIME_NO_CACHE": "1",
                                     "FAKETIME_DONT_FAKE_MONOTONIC": "1"})
    case = e2e.NEWID
    with e2e.mtastsd(world, world.work / "mtastsd-sts42", env=fake) as daemon, \
            ph.running(world.work / "postfix-sts42", ns=world.ns, ca_file=world.ca_file,
                       policy_maps=f"socketmap:unix:{daemon['socketmap']}:postfix") as pf:
        queue_id, subject, recipient = submit(pf, case)
        check_waits(pf, world, queue_id, subject, attempts=1)
        world.call("set_dns", f"_mta-sts.{case.domain}", {"TXT": [["v=STSv1; id=e2e2;"]]})
        world.call("set_https", f"mta-sts.{case.domain}", {"body": e2e.NEWID_POLICY})
        world.call("clear_log")
        clock.write_text("+120s\n")
        policy_gets = lambda: [r for r in world.call("log")["https"]  # noqa: E731
                               if r["sni"] == f"mta-sts.{case.domain}"]
        # A lookup after the TTL (Postfix's own, or this one): the re-check runs in the
        # background and fetches the new policy.
        def answer() -> str:
            return pf.command("postmap", "-c", str(pf.config_dir), "-q", case.domain,
                              f"socketmap:unix:{daemon['socketmap']}:postfix").stdout

        answer()
        assert e2e.wait_for(policy_gets, 10), "the new policy was not fetched"
        # The GET being logged does not mean the new policy is stored yet (a slow ASan build
        # answered the retry from the old one): wait until mtastsd answers with it.
        assert e2e.wait_for(lambda: "outside.mx.test" in answer(), 10), answer()
        pf.flush()
        status = pf.wait_status(queue_id, count=2)
        assert " status=sent " in status[-1] and "relay=outside.mx.test[" in status[-1], status
        log = world.call("log")
        assert any(q["name"] == f"_mta-sts.{case.domain}" and q["type"] == "TXT"
                   for q in log["dns"]), log["dns"]
        assert any(r["sni"] == f"mta-sts.{case.domain}" for r in log["https"]), log["https"]
        got = world.sinks.messages(subject=subject)
        assert len(got) == 1 and got[0]["sink"] == "outside.mx.test" and got[0]["tls"], got
