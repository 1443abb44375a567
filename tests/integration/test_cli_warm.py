"""`mtasts warm` (docs/cli.md, issue 13): pre-fetching a list of domains into the cache.

- 1000 domains (policies, domains without MTA-STS, failures mixed in, plus comments, blank
  lines, duplicates and lines that are not domains): the summary counts and the exit code are
  exact, the failures are listed with their reasons, the cache holds every domain, and a second
  run answers from it without asking DNS.
- The progress line as an admin sees it on a terminal: `mtasts warm` runs in a tmux pane and
  the test reads the pane (`tmux capture-pane`), mid-run and at the end.
- Through mtastsd when it runs: every domain reaches the daemon as a `getmta` request and lands
  in the daemon's cache.
- Exim and Postfix logs (tests/data/mta-logs/) give exactly the expected domain list (`--list`).
"""

from __future__ import annotations

import json
import random
import re
import shlex
import subprocess
import time
from pathlib import Path

import pytest

import daemon_helpers as dh
import exim_helpers as eh
import sts_helpers as sh
from client import World

CLI = eh.cli_path()
LOGS = eh.source_dir() / "tests" / "data" / "mta-logs"

# World domains that give a policy, and ones that fail now (DNS error, fetch or certificate
# failure, a policy body that is not one): tests/world/manifest.json.
WORLD_POLICY = [
    "enforce.example", "testing.example", "none.example", "xn--mnchen-3ya.example",
    "txt-no-spaces.example", "txt-no-trailing-semicolon.example",
    "txt-trailing-whitespace.example", "ct-text-plain-charset-utf8.example",
    "https-cert-valid.example", "https-cert-wildcard.example", "redirect-target.example",
]
WORLD_FAILING = [
    "dns-sts-servfail.example", "dns-sts-refused.example", "txt-cname-loop.example",
    "http-404.example", "http-500.example", "http-204-no-content.example",
    "ct-text-html.example", "ct-missing.example", "https-cert-expired.example",
    "https-cert-self-signed.example", "https-cert-wrong-name.example",
    "https-cert-untrusted.example",
]
PUBLISHED = [f"warm-policy-{i}.example" for i in range(39)]  # 11 + 39 = 50 policies
SERVFAIL = [f"warm-fail-{i}.example" for i in range(48)]     # 12 + 48 = 60 failures
SLOW = [f"warm-slow-{i}.example" for i in range(8)]          # _mta-sts never answers

SUMMARY = re.compile(r"^warmed (\d+) domains? in [0-9.]+ s: (\d+) policy, (\d+) no policy, "
                     r"(\d+) failed(?:; (\d+) input lines? not a domain)?$", re.M)
PROGRESS = r"warm: {done}/{total}  {percent}%  [0-9]+\.[0-9]/s  failures {failures}  ETA \S+"


@pytest.fixture(scope="module")
def world():
    eh.require_built(CLI)
    with World(lifetime=900) as running:
        for domain in PUBLISHED:
            sh.publish(running, domain, body=sh.policy("enforce", [f"mx1.{domain}"]))
        for domain in SERVFAIL:
            running.set_dns(f"_mta-sts.{domain}", {"fault": "servfail"})
        for domain in SLOW:
            running.set_dns(f"_mta-sts.{domain}", {"fault": "timeout"})
        yield running


def config(tmp_path: Path, world, **keys) -> Path:
    """A config of its own (an empty cache) whose [daemon] socket nobody listens on."""
    tmp_path.chmod(0o755)
    return eh.write_mtasts_config(
        tmp_path / "mtasts.toml", cache=tmp_path / "cache.mdb", world=world,
        daemon=[f"exim_socket = {eh.toml_string(str(tmp_path / 'none.sock'))}"], **keys)


def mtasts(cfg: Path, *args: str, stdin: str | None = None, timeout: float = 300):
    r = subprocess.run([str(CLI), "--config", str(cfg), *args], capture_output=True, text=True,
                       input=stdin, timeout=timeout, env=eh.exim_env())
    assert "Sanitizer" not in r.stderr, r.stderr
    return r


def thousand(count_no_policy: int = 890) -> tuple[list[str], dict[str, list[str]]]:
    """The policy, failing and no-policy domains, shuffled the same way every run."""
    groups = {"policy": WORLD_POLICY + PUBLISHED, "failed": WORLD_FAILING + SERVFAIL,
              "no_policy": [f"warm-none-{i}.example" for i in range(count_no_policy)]}
    domains = [d for group in groups.values() for d in group]
    random.Random(13).shuffle(domains)
    return domains, groups


def summary(stdout: str) -> tuple[int, ...]:
    found = SUMMARY.findall(stdout)
    assert len(found) == 1, stdout
    return tuple(int(x) if x else 0 for x in found[0])


def failed_lines(stdout: str) -> dict[str, str]:
    return dict(re.findall(r"^  failed (\S+): (.+)$", stdout, re.M))


def test_thousand_domains_counts_exit_code_and_cache(world, tmp_path):
    domains, groups = thousand()
    assert len(domains) == 1000
    # What an admin's list looks like: comments, blank lines, case and root dots, duplicates,
    # and two lines that are not domains (reported and counted, not fatal).
    lines = ["# domains we send to", ""]
    for i, domain in enumerate(domains):
        lines.append(domain.upper() + "." if i % 97 == 0 else domain)
        if i % 250 == 0:
            lines += ["", f"  {domain}  ", "# a comment"]
    lines[500:500] = ["not a domain!", "a..b"]
    listing = tmp_path / "domains.txt"
    listing.write_text("\n".join(lines) + "\n")
    # A failed lookup is retried after dns_retry: an hour here, so the second run below finds
    # every entry fresh however slow this machine is.
    cfg = config(tmp_path, world, extra="dns_retry = 3600")

    r = mtasts(cfg, "warm", str(listing))
    # 75: some domains could not be warmed now (they are listed); the bad lines alone would be 65.
    assert r.returncode == 75, r
    assert summary(r.stdout) == (1000, 50, 890, 60, 2), r.stdout
    assert "\r" not in r.stderr and "warm: " not in r.stderr  # no progress line off a terminal
    assert 'empty label in hostname "a..b"' in r.stderr, r.stderr
    failed = failed_lines(r.stdout)
    assert len(failed) == 20 and set(failed) <= set(groups["failed"]), r.stdout
    assert "  … and 40 more failed" in r.stdout
    assert failed.get("dns-sts-servfail.example", "dns_temporary").startswith("dns_temporary")
    for domain, reason in failed.items():
        assert reason, domain
    assert "directly: mtastsd is not running" in r.stdout

    # Every domain is in the cache now, under its normalized name.
    dump = json.loads(mtasts(cfg, "dump", "--json").stdout)
    assert set(dump) == set(domains)
    assert all(dump[d]["policy"] for d in groups["policy"])
    assert not any(dump[d]["policy"] for d in groups["no_policy"])

    # A second run answers the no-policy and failing domains from the cache: no TXT query at all
    # for them (negative_ttl and dns_retry have not passed).
    world.clear_log()
    again = mtasts(cfg, "warm", str(listing))
    assert again.returncode == 75, again
    assert summary(again.stdout) == (1000, 50, 890, 60, 2), again.stdout
    asked = {q["name"].lower() for q in world.dns_queries(qtype="TXT")}
    cached = {f"_mta-sts.{d}" for d in groups["no_policy"] + SERVFAIL}
    assert not asked & cached, sorted(asked & cached)[:5]


def test_all_good_is_exit_0_and_stdin_works(world, tmp_path):
    cfg = config(tmp_path, world)
    r = mtasts(cfg, "warm", "-", stdin="enforce.example\n\n# x\nnopolicy.example\n")
    assert r.returncode == 0, r
    assert summary(r.stdout) == (2, 1, 1, 0, 0), r.stdout
    # Only lines that are not domains: 65, and everything else still warmed.
    r = mtasts(cfg, "warm", "-", stdin="testing.example\n[192.0.2.1]\n")
    assert r.returncode == 65, r
    assert summary(r.stdout) == (1, 1, 0, 0, 1), r.stdout
    assert mtasts(cfg, "warm").returncode == 64
    assert mtasts(cfg, "warm", str(tmp_path / "missing.txt")).returncode == 66


def tmux(socket: str, *args: str) -> str:
    return subprocess.run(["tmux", "-L", socket, *args], capture_output=True, text=True,
                          check=True, timeout=30, env=eh.exim_env()).stdout


def test_progress_line_in_a_terminal(world, tmp_path):
    # 992 domains that answer at once, then 8 whose DNS never answers: the run stays at
    # 992/1000 until the lookup deadline (6 s), long enough to read the line mid-run.
    domains, groups = thousand(count_no_policy=882)
    domains += SLOW
    listing = tmp_path / "domains.txt"
    listing.write_text("\n".join(domains) + "\n")
    cfg = config(tmp_path, world, lookup_timeout_ms=6000, dns_timeout_ms=8000)
    socket = f"mtasts-warm-{tmp_path.name}"
    command = (f"{shlex.quote(str(CLI))} --config {shlex.quote(str(cfg))} warm "
               f"{shlex.quote(str(listing))}; echo EXIT=$?; sleep 600")
    tmux(socket, "new-session", "-d", "-s", "warm", "-x", "120", "-y", "10", command)
    try:
        def pane() -> str:
            return tmux(socket, "capture-pane", "-p", "-J", "-S", "-200", "-t", "warm")

        midway = re.compile(PROGRESS.format(done=992, total=1000, percent=99, failures=60))

        def midway_or_end():
            text = pane()
            return midway.search(text) or ("EXIT=" in text and text)

        seen = dh.wait_for(midway_or_end, timeout=120, interval=0.05,
                           what="the progress line at 992/1000")
        assert isinstance(seen, re.Match), seen  # the pane showed the run mid-way
        text = dh.wait_for(lambda: "EXIT=" in (p := pane()) and p, timeout=120,
                           what="the summary")
    finally:
        subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True, timeout=30)
    final = re.compile(PROGRESS.format(done=1000, total=1000, percent=100, failures=68))
    assert final.search(text), text
    assert "ETA 0s" in text, text
    assert summary(text) == (1000, 50, 882, 68, 0), text
    assert "EXIT=75" in text, text
    assert "Sanitizer" not in text, text


def test_through_the_daemon(world, tmp_path):
    dh.require_daemon()
    daemon = dh.Mtastsd(tmp_path, world)
    try:
        domains = (WORLD_POLICY[:5] + WORLD_FAILING[:5] +
                   [f"warm-daemon-{i}.example" for i in range(40)])
        random.Random(7).shuffle(domains)
        listing = tmp_path / "domains.txt"
        listing.write_text("\n".join(domains) + "\n")
        r = mtasts(daemon.config, "warm", "--concurrency", "4", str(listing))
        assert r.returncode == 75, r
        assert summary(r.stdout) == (50, 5, 40, 5, 0), r.stdout
        assert f"through mtastsd at {daemon.exim_path}" in r.stdout, r.stdout
        assert set(failed_lines(r.stdout)) == set(WORLD_FAILING[:5]), r.stdout
        # Each domain reached the daemon as a getmta request, and its cache holds them all.
        log = daemon.log()
        for domain in domains:
            assert f'exim: "getmta {domain}"' in log, (domain, log[-3000:])
        assert set(domains) <= set(daemon.dump())
        # --direct looks up in this process: the daemon hears nothing more.
        before = daemon.log().count('exim: "getmta ')
        direct = mtasts(daemon.config, "warm", "--direct", str(listing))
        assert direct.returncode == 75 and "directly (--direct)" in direct.stdout, direct
        time.sleep(0.5)
        assert daemon.log().count('exim: "getmta ') == before
    finally:
        assert daemon.stop() == 0


@pytest.mark.parametrize("option,log", [("--from-exim-log", "exim-mainlog"),
                                        ("--from-postfix-log", "postfix-maillog")])
def test_domains_from_mta_logs(option, log, tmp_path):
    eh.require_built(CLI)
    # --list reads no config and looks nothing up.
    r = subprocess.run([str(CLI), "--config", str(tmp_path / "absent.toml"), "warm", option,
                        str(LOGS / log), "--list"], capture_output=True, text=True, timeout=30,
                       env=eh.exim_env())
    assert r.returncode == 0, r
    assert r.stdout.splitlines() == (LOGS / f"{log}.expected").read_text().splitlines()
    # The admin hears what was skipped.
    assert re.search(r"skipped \d+ local, 2 bounce, 2 address literal, 1 invalid", r.stderr), r
    assert not (tmp_path / "cache.mdb").exists()
