"""`mtasts check DOMAIN` (docs/cli.md) against the test world: each fault domain gives its own
FAIL line and exit status 2, a good domain is all OK with exit status 0, warnings alone give 1,
`--json` follows the documented schema, the cache is never written, and `--smtp` probes
STARTTLS sinks with a good certificate, an expired one, a wrong name and no STARTTLS.
"""

from __future__ import annotations

import json
import os
import pty
import subprocess
from pathlib import Path

import pytest

import exim_helpers as eh

CLI = eh.cli_path()
EXIT_OK, EXIT_WARNINGS, EXIT_ERRORS = 0, 1, 2
STEP_IDS = {"txt", "policy-fetch", "policy", "mx", "tlsrpt", "dane", "smtp"}
STATUSES = {"ok", "warning", "error"}

# MX hosts played by SMTP sinks (tests/world/smtp_sinks.py), each the one MX of its own domain.
SINKS = {
    "mx.smtp-good.example": {"address": "127.0.0.61", "cert": "valid"},
    "mx.smtp-expired.example": {"address": "127.0.0.62", "cert": "expired"},
    "mx.smtp-wrong-name.example": {"address": "127.0.0.63", "cert_san": ["other.example"]},
    "mx.smtp-notls.example": {"address": "127.0.0.64", "starttls": False},
}


# A DNSSEC-signed zone (tests/world/README.md, "DNSSEC") for the dane step.
DANE_ZONE = "dane-check.example"
TLSA_SHA256 = "a1" * 32


def check_manifest(path: Path) -> Path:
    """The bundled manifest plus the sinks and, for each, a domain with a full good setup, and a
    signed zone whose domains have usable TLSA records or a failing TLSA lookup."""
    manifest = json.loads((Path(eh.source_dir()) / "tests" / "world" / "manifest.json").read_text())
    manifest["dnssec"] = {"zones": {DANE_ZONE: "signed"}}
    for name, tlsa in (("usable", {"TLSA": [[3, 1, 1, TLSA_SHA256]]}),
                       ("servfail", {"fault": "servfail"})):
        domain = f"{name}.{DANE_ZONE}"
        manifest["dns"][domain] = {"MX": [[10, f"mx.{domain}"]]}
        manifest["dns"][f"mx.{domain}"] = {"A": ["192.0.2.25"]}
        manifest["dns"][f"_25._tcp.mx.{domain}"] = tlsa
        manifest["domains"][domain] = "mtasts check: the dane step"
    manifest["smtp"] = SINKS
    for host in SINKS:
        domain = host.removeprefix("mx.")
        manifest["dns"][domain] = {"MX": [[10, host]]}
        manifest["dns"][f"_mta-sts.{domain}"] = {"TXT": [["v=STSv1; id=1;"]]}
        manifest["dns"][f"_smtp._tls.{domain}"] = {"TXT": [[f"v=TLSRPTv1; rua=mailto:tls@{domain}"]]}
        manifest["https"][f"mta-sts.{domain}"] = {
            "body": f"version: STSv1\nmode: enforce\nmx: {host}\nmax_age: 604800\n"}
        manifest["domains"][domain] = f"mtasts check --smtp: its MX {host} is a sink"
    path.write_text(json.dumps(manifest))
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    eh.require_built(CLI)
    work = tmp_path_factory.mktemp("check")
    work.chmod(0o755)
    manifest = check_manifest(work / "manifest.json")
    with eh.world(work / "world", manifest=manifest, smtp_port=0) as info:
        yield info


@pytest.fixture()
def env(world, tmp_path):
    tmp_path.chmod(0o755)
    cache = tmp_path / "cache.mdb"
    cfg = eh.write_mtasts_config(tmp_path / "mtasts.toml", cache=cache, world=world,
                                 log_level="warning")
    return {"config": cfg, "cache": cache, "world": world}


@pytest.fixture()
def dane_env(world, tmp_path):
    """A config with the world's DNSSEC trust anchor: the dane step validates."""
    tmp_path.chmod(0o755)
    cache = tmp_path / "cache.mdb"
    extra = f"trust_anchor = {eh.toml_string(world['trust_anchor_file'])}"
    cfg = eh.write_mtasts_config(tmp_path / "mtasts.toml", cache=cache, world=world,
                                 log_level="warning", extra=extra)
    return {"config": cfg, "cache": cache, "world": world}


def check(env, *args):
    cmd = [str(CLI), "--config", str(env["config"]), "check", *args]
    run_env = eh.exim_env(None)
    run_env.pop("MTASTS_CONFIG", None)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=run_env)
    assert "Sanitizer" not in r.stderr, r.stderr
    return r


def smtp_args(env):
    return ["--smtp", "--smtp-port", str(env["world"]["smtp_port"])]


def lines(r):
    return r.stdout.splitlines()


def has_line(r, prefix: str, *parts: str) -> bool:
    """A finding line "    <prefix> ..." holding every part."""
    for line in lines(r):
        text = line.strip()
        if text.startswith(prefix + " ") and all(part in text for part in parts):
            return True
    return False


def test_good_domain_is_all_ok(env):
    r = check(env, "enforce.example")
    assert r.returncode == EXIT_OK, r.stdout + r.stderr
    assert lines(r)[0] == "enforce.example"
    assert lines(r)[-1] == "result: ok"
    marks = {line.strip().split(" ", 1)[0] for line in lines(r)[1:-1]}
    assert marks == {"OK"}, r.stdout
    assert has_line(r, "OK", "_mta-sts.enforce.example TXT record", "RFC 8461 §3.1")
    assert has_line(r, "OK", "policy id 20240101000000")
    assert has_line(r, "OK", "HTTP status 200")
    assert has_line(r, "OK", "certificate names mta-sts.enforce.example")
    assert has_line(r, "OK", "TLS version TLSv1.")
    assert has_line(r, "OK", "days left")
    assert has_line(r, "OK", "mx 10 mx1.enforce.example: covered by pattern mx1.enforce.example")
    assert has_line(r, "OK", "mx 20 mx2.mail.enforce.example: covered by pattern "
                    "*.mail.enforce.example")
    assert has_line(r, "OK", "reports go to mailto:tlsrpt@enforce.example")
    assert "\x1b" not in r.stdout and "✓" not in r.stdout


def test_check_writes_nothing_to_the_cache(env):
    r = check(env, "enforce.example")
    assert r.returncode == EXIT_OK, r.stdout + r.stderr
    assert not env["cache"].exists(), "check created the cache file"
    # A cache that exists is left byte for byte as it was.
    run_env = eh.exim_env(None)
    run_env.pop("MTASTS_CONFIG", None)
    subprocess.run([str(CLI), "--config", str(env["config"]), "refresh", "testing.example"],
                   check=True, capture_output=True, timeout=60, env=run_env)
    before = {p.name: p.read_bytes() for p in env["cache"].parent.glob("cache.mdb*")}
    assert before
    assert check(env, "enforce.example").returncode == EXIT_OK
    after = {p.name: p.read_bytes() for p in env["cache"].parent.glob("cache.mdb*")}
    assert after == before


# Each fault domain of the world: the step that fails and the words of its FAIL line.
FAULTS = [
    ("nopolicy.example", "txt", ["no TXT record at _mta-sts.nopolicy.example"]),
    ("txt-no-sts-record.example", "txt", ["no record begins with \"v=STSv1\""]),
    ("txt-version-lowercase.example", "txt", ["\"v=stsv1; id=abc123;\"", "is filtered out"]),
    ("txt-leading-space.example", "txt", ["is filtered out"]),
    ("txt-id-33-chars.example", "txt", ["is invalid"]),
    ("txt-two-valid-records.example", "txt", ["2 records begin with v=STSv1"]),
    ("dns-sts-servfail.example", "txt", ["no answer for _mta-sts.dns-sts-servfail.example"]),
    ("http-404.example", "policy-fetch", ["HTTP status 404: only 200 gives a policy"]),
    ("http-301-to-valid-policy.example", "policy-fetch",
     ["HTTP status 301: redirect to",
      "https://mta-sts.redirect-target.example/.well-known/mta-sts.txt", "refused"]),
    ("ct-text-html.example", "policy-fetch", ["Content-Type \"text/html\" is not text/plain"]),
    ("ct-missing.example", "policy-fetch", ["no Content-Type header"]),
    ("https-cert-expired.example", "policy-fetch", ["certificate: subject", "expired on"]),
    ("https-cert-wrong-name.example", "policy-fetch",
     ["certificate does not name mta-sts.https-cert-wrong-name.example", "wrong-name.invalid"]),
    ("https-cert-untrusted.example", "policy-fetch", ["certificate not valid:"]),
    ("https-cert-self-signed.example", "policy-fetch", ["certificate not valid:"]),
    ("https-cert-cn-only.example", "policy-fetch",
     ["certificate does not name mta-sts.https-cert-cn-only.example"]),
    ("https-refused.example", "policy-fetch", ["cannot connect to mta-sts.https-refused.example"]),
    ("https-host-nxdomain.example", "policy-fetch", ["has no A or AAAA record"]),
    ("pol-space-before-colon.example", "policy", ["invalid policy:", "line 2"]),
    ("pol-enforce-no-mx.example", "policy", ["invalid policy:"]),
    ("pol-mx-one-invalid-one-valid.example", "policy", ["invalid policy:", "bad..host"]),
    ("tlsrpt-two-records.example", "tlsrpt", ["2 records begin with v=TLSRPTv1"]),
]


@pytest.mark.parametrize("domain,step,words", FAULTS, ids=[f[0] for f in FAULTS])
def test_fault_domain_gives_its_fail_line(env, domain, step, words):
    r = check(env, domain)
    assert r.returncode == EXIT_ERRORS, r.stdout + r.stderr
    assert has_line(r, "FAIL", *words), r.stdout
    assert lines(r)[-1] == "result: error"
    report = json.loads(check(env, domain, "--json").stdout)
    failed = [s for s in report["steps"] if s["status"] == "error"]
    assert step in {s["step"] for s in failed}, report
    texts = [f["text"] for s in failed if s["step"] == step for f in s["findings"]
             if f["status"] == "error"]
    assert any(all(w in t for w in words) for t in texts), texts
    assert not env["cache"].exists()


def test_warnings_alone_exit_1(env):
    # A valid testing policy, TLSRPT record present: only the mode is worth a warning.
    r = check(env, "testing.example")
    assert r.returncode == EXIT_WARNINGS, r.stdout + r.stderr
    assert has_line(r, "WARN", "mode testing")
    assert lines(r)[-1] == "result: warning"
    assert not any(line.strip().startswith("FAIL") for line in lines(r))
    r = check(env, "pol-max-age-over-limit.example")
    assert has_line(r, "WARN", "max_age 31557601 is over the limit 31557600")
    r = check(env, "pol-unknown-keys.example")
    assert has_line(r, "WARN", "unknown key \"foo\" is ignored")
    r = check(env, "pol-duplicate-mode-first-wins.example")
    assert has_line(r, "WARN", "mode again; only the first")
    r = check(env, "pol-max-age-zero.example")
    assert has_line(r, "WARN", "max_age 0 is very short")


def test_json_schema(env):
    r = check(env, "http-404.example", "--json")
    assert r.returncode == EXIT_ERRORS
    report = json.loads(r.stdout)
    assert set(report) == {"domain", "status", "steps"}
    assert report["domain"] == "http-404.example"
    assert report["status"] == "error"
    assert [s["step"] for s in report["steps"]] == ["txt", "policy-fetch", "tlsrpt", "dane"]
    for step in report["steps"]:
        assert set(step) == {"step", "status", "title", "rfc", "findings"}
        assert step["step"] in STEP_IDS and step["status"] in STATUSES
        assert isinstance(step["title"], str) and step["title"]
        assert step["rfc"].startswith("RFC ")
        worst = "ok"
        for finding in step["findings"]:
            assert set(finding) == {"status", "text"} and finding["status"] in STATUSES
            if finding["status"] == "error" or (finding["status"] == "warning" and worst == "ok"):
                worst = finding["status"]
        assert step["status"] == worst
    good = json.loads(check(env, "enforce.example", "--json").stdout)
    assert good["status"] == "ok"
    assert [s["step"] for s in good["steps"]] == ["txt", "policy-fetch", "policy", "mx", "tlsrpt",
                                                  "dane"]


def test_symbols_only_on_a_terminal(env):
    run_env = eh.exim_env(None)
    run_env.pop("MTASTS_CONFIG", None)
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(str(CLI), [str(CLI), "--config", str(env["config"]), "check",
                             "http-404.example"], run_env)
    out = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    _, status = os.waitpid(pid, 0)
    text = out.decode()
    assert os.waitstatus_to_exitcode(status) == EXIT_ERRORS
    assert "✗" in text and "✓" in text and "\x1b[" in text
    assert "FAIL" not in text


def test_bad_domain_is_a_usage_error(env):
    r = check(env, "not a domain")
    assert r.returncode == 65, r
    assert r.stdout == ""


def test_smtp_good_certificate(env):
    r = check(env, "smtp-good.example", *smtp_args(env))
    assert r.returncode == EXIT_OK, r.stdout + r.stderr
    assert has_line(r, "OK", "mx.smtp-good.example: offers STARTTLS")
    assert has_line(r, "OK", "mx.smtp-good.example: certificate names mx.smtp-good.example")
    assert has_line(r, "OK", "mx.smtp-good.example: TLS version TLSv1.")
    report = json.loads(check(env, "smtp-good.example", "--json", *smtp_args(env)).stdout)
    assert report["steps"][-1]["step"] == "smtp" and report["steps"][-1]["status"] == "ok"


def test_smtp_probe_never_sends_mail(env, world):
    assert check(env, "smtp-good.example", *smtp_args(env)).returncode == EXIT_OK
    log = json.loads(Path(world["smtp_log"]).read_text())
    mine = [c for c in log["connections"] if c["sink"] == "mx.smtp-good.example"]
    assert mine and all(c["starttls"] and c["tls"] and c["messages"] == 0 for c in mine), mine
    assert mine[-1]["sni"] == "mx.smtp-good.example"
    assert not [m for m in log["messages"] if m["sink"] == "mx.smtp-good.example"]


@pytest.mark.parametrize("domain,words", [
    ("smtp-expired.example", ["mx.smtp-expired.example: certificate:", "expired on"]),
    ("smtp-wrong-name.example",
     ["mx.smtp-wrong-name.example: certificate does not name mx.smtp-wrong-name.example",
      "other.example"]),
    ("smtp-notls.example", ["mx.smtp-notls.example: does not offer STARTTLS"]),
])
def test_smtp_faults(env, domain, words):
    r = check(env, domain, *smtp_args(env))
    assert r.returncode == EXIT_ERRORS, r.stdout + r.stderr
    assert has_line(r, "FAIL", *words), r.stdout
    # Without --smtp the same domain is fine: the fault is in its MX host alone.
    assert check(env, domain).returncode == EXIT_OK


def dane_step(env, domain):
    report = json.loads(check(env, domain, "--json").stdout)
    assert not env["cache"].exists()
    return next(s for s in report["steps"] if s["step"] == "dane")


def test_dane_governs_when_every_mx_has_usable_tlsa(dane_env):
    step = dane_step(dane_env, f"usable.{DANE_ZONE}")
    assert step["status"] == "ok", step
    texts = [f["text"] for f in step["findings"]]
    assert any(t.startswith(f"mx 10 mx.usable.{DANE_ZONE}: usable") for t in texts), texts
    assert any(t.startswith("DANE governs delivery") for t in texts), texts
    # No MTA-STS is then no fault, and the domain is all OK.
    r = check(dane_env, f"usable.{DANE_ZONE}")
    assert r.returncode == EXIT_WARNINGS, r.stdout  # only: no TLSRPT record
    assert has_line(r, "OK", f"no TXT record at _mta-sts.usable.{DANE_ZONE}", "DANE governs"), \
        r.stdout


def test_dane_lookup_failure_is_an_error(dane_env):
    r = check(dane_env, f"servfail.{DANE_ZONE}")
    assert r.returncode == EXIT_ERRORS
    assert has_line(r, "FAIL", f"mx 10 mx.servfail.{DANE_ZONE}: failed"), r.stdout
    assert has_line(r, "FAIL", "DANE lookup failed"), r.stdout


def test_dane_does_not_apply_outside_dnssec(dane_env):
    step = dane_step(dane_env, "enforce.example")
    assert step["status"] == "ok", step
    assert any("DANE does not apply" in f["text"] and "MTA-STS governs delivery" in f["text"]
               for f in step["findings"]), step
