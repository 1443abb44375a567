"""The `mtasts` CLI as an admin and Exim's ${run} use it (docs/cli.md), against the test world.

Covers what the STS-row tests do not: output framing for ${run}, every documented exit code,
that bad input never reaches the cache or the network, query/dump/purge, command-line options
overriding the config, and the cache file being readable by Exim's own lmdb lookup.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

import exim_helpers as eh
from client import World

CLI = eh.cli_path()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    eh.require_built(CLI)
    work = tmp_path_factory.mktemp("cli")
    work.chmod(0o755)
    with eh.world(work / "world") as info:
        # enforce.example's TXT answer is good for an hour (the world's default TTL is 0): a
        # second lookup is a cache hit however slow the machine is between the two.
        World.attach(info).set_ttl("_mta-sts.enforce.example", 3600)
        yield {"work": work, "info": info}


@pytest.fixture()
def env(world, tmp_path):
    """A config of its own (and so an empty cache) for every test."""
    tmp_path.chmod(0o755)
    cache = tmp_path / "cache.mdb"
    cfg = eh.write_mtasts_config(tmp_path / "mtasts.toml", cache=cache, world=world["info"])
    return {"config": cfg, "cache": cache, "dir": tmp_path, "world": world["info"]}


def mtasts(env, *args, config=True, extra_env=None):
    cmd = [str(CLI)]
    if config:
        cmd += ["--config", str(env["config"])]
    run_env = eh.exim_env(extra_env)
    run_env.pop("MTASTS_CONFIG", None)
    r = subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=60, env=run_env)
    assert "Sanitizer" not in r.stderr, r.stderr
    return r


def cache_records(path: Path) -> dict[str, str]:
    """Every key and value of the LMDB file, read with lmdb-utils (not with our code)."""
    if not path.exists():
        return {}
    out = subprocess.run(["mdb_dump", "-n", "-p", str(path)], capture_output=True, text=True,
                         check=True, timeout=30).stdout.splitlines()
    body = out[out.index("HEADER=END") + 1:out.index("DATA=END")]
    return {body[i][1:]: body[i + 1][1:] for i in range(0, len(body), 2)}


def test_answers_have_no_trailing_newline_for_run(env):
    r = mtasts(env, "getmta", "enforce.example")
    assert (r.returncode, r.stdout) == (0, "enforce"), r
    r = mtasts(env, "getmx", "enforce.example")
    assert (r.returncode, r.stdout) == (0, "mx1.enforce.example:*.mail.enforce.example"), r
    r = mtasts(env, "ignorelist", "enforce.example")
    assert r.stdout == r"<; ! ^mx1\.enforce\.example$ ; ! ^[^.]+\.mail\.enforce\.example$ ; *"
    r = mtasts(env, "getmta", "enforce.example", "rogue.example")
    assert (r.returncode, r.stdout) == (0, "0"), r
    r = mtasts(env, "getmta", "enforce.example", "MX1.Enforce.Example.")
    assert (r.returncode, r.stdout) == (0, ""), r
    for domain, mode in (("testing.example", "testing"), ("none.example", "none"),
                         ("nopolicy.example", "none")):
        r = mtasts(env, "getmta", domain)
        assert (r.returncode, r.stdout) == (0, mode), (domain, r)
        assert mtasts(env, "ignorelist", domain).stdout == ""


@pytest.mark.parametrize("garbage", ["not a domain!", "a..b", "-bad-.example",
                                     "x" * 64 + ".example", "single", "\x01.example", ""])
def test_bad_domain_is_exit_65_and_touches_nothing(env, garbage):
    r = mtasts(env, "getmta", "--", garbage)
    assert r.returncode == 65, r
    assert r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr  # one line, for the admin's log
    assert not env["cache"].exists()  # not even created


def test_option_lookalike_domain_never_becomes_an_option(env):
    # ${run} passes $domain as one argument; "--" keeps it from being read as an option.
    r = mtasts(env, "getmta", "--", "--cache=/tmp/elsewhere.mdb")
    assert r.returncode == 65 and r.stdout == "", r
    r = mtasts(env, "getmta", "--cache=/tmp/elsewhere.mdb")  # without "--": a usage error
    assert r.returncode == 64, r
    assert not env["cache"].exists() and not Path("/tmp/elsewhere.mdb").exists()


# getmta D H for every H (issue 10; RFC 8461 §4.1 and Appendix B): H comes from an MX record
# someone else published, so it is matched, never refused. enforce.example allows
# mx1.enforce.example and *.mail.enforce.example. -> (answer for enforce.example, a row name)
WEIRD_HOSTS = [
    ("mx1.enforce.example", "", "exact pattern"),
    (".mail.enforce.example", "0", "leading dot: the wildcard label is never empty"),
    ("mx1.enforce.example..", "0", "only one root dot is stripped"),
    ("MX1.Enforce.Example.", "", "case and one root dot"),
    ("mx_1.mail.enforce.example", "", "underscore label, one label under *."),
    ("mx_1.enforce.example", "0", "underscore label, no pattern"),
    ("-mx.mail.enforce.example", "", "leading hyphen, one label under *."),
    ("-mx1.enforce.example", "0", "leading hyphen, no pattern"),
    ("mx-.mail.enforce.example", "", "trailing hyphen, one label under *."),
    ("x" * 64 + ".mail.enforce.example", "", "64-octet label under *."),
    ("x" * 64 + ".enforce.example", "0", "64-octet label, no pattern"),
    ("com", "0", "one label"),
    ("*.mail.enforce.example", "", "App. B: equal to a pattern"),
    ("*.enforce.example", "0", "star label, no pattern"),
    ("a.b.mail.enforce.example", "0", "two labels under *."),
    ("[192.0.2.1]", "0", "address literal"),
    ("not a host!", "0", "not a name at all"),
    ("", "0", "empty HOST given as an argument"),
]


@pytest.mark.parametrize("host,expected,why", WEIRD_HOSTS, ids=[w for _, _, w in WEIRD_HOSTS])
def test_getmta_answers_for_every_host(env, host, expected, why):
    # "--" before DOMAIN: HOST may start with "-" too (it comes from DNS).
    r = mtasts(env, "getmta", "--", "enforce.example", host)
    assert (r.returncode, r.stdout, r.stderr) == (0, expected, ""), (why, r)
    # Without an enforce policy every host gets the empty answer.
    for domain in ("testing.example", "none.example", "nopolicy.example", "[192.0.2.1]"):
        r = mtasts(env, "getmta", "--", domain, host)
        assert (r.returncode, r.stdout) == (0, ""), (why, domain, r)


def test_weird_host_never_excuses_a_bad_domain(env):
    # DOMAIN names what is looked up: still refused (exit 65), whatever HOST is.
    for host in ("mx1.enforce.example", "mx_1.enforce.example", "-mx.example", ""):
        r = mtasts(env, "getmta", "--", "a..b", host)
        assert r.returncode == 65 and r.stdout == "", r
    assert not env["cache"].exists()


def test_address_literal_answers_without_cache_or_network(env):
    for literal in ("[192.0.2.1]", "[IPv6:2001:db8::1]"):
        r = mtasts(env, "getmta", literal)
        assert (r.returncode, r.stdout) == (0, "none"), r
        assert mtasts(env, "getmx", literal).stdout == ""
    assert not env["cache"].exists()


def test_usage_errors_are_exit_64(env):
    assert mtasts(env, "frobnicate", "enforce.example").returncode == 64
    assert mtasts(env, "getmta").returncode == 64
    r = mtasts(env, "--resolver", "not-an-address", "getmta", "enforce.example")
    assert r.returncode == 64 and "not-an-address" in r.stderr, r
    assert not env["cache"].exists()


def test_config_errors_are_exit_78_with_file_and_line(env):
    bad = env["dir"] / "bad.toml"
    bad.write_text('cache = "/tmp/x.mdb"\nfetch_backoff_min = 10\n')
    r = subprocess.run([str(CLI), "--config", str(bad), "getmta", "enforce.example"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 78, r
    assert f"{bad}:2" in r.stderr and "fetch_backoff_min" in r.stderr, r.stderr
    unknown = env["dir"] / "unknown.toml"
    unknown.write_text('cache = "/tmp/x.mdb"\ncahce = "/tmp/y.mdb"\n')
    r = subprocess.run([str(CLI), "--config", str(unknown), "getmta", "enforce.example"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 78 and "cahce" in r.stderr and "unknown key" in r.stderr, r
    missing = env["dir"] / "missing.toml"
    r = subprocess.run([str(CLI), "--config", str(missing), "getmta", "enforce.example"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 78 and str(missing) in r.stderr, r


def test_unopenable_cache_is_exit_74(env):
    r = mtasts(env, "--cache", str(env["dir"] / "no-such-dir" / "cache.mdb"),
               "getmta", "enforce.example")
    assert r.returncode == 74, r
    assert "no-such-dir" in r.stderr and "does not exist" in r.stderr, r.stderr


def test_strict_option_turns_unfetchable_into_fail(env):
    assert mtasts(env, "getmta", "http-404.example").stdout == "none"
    strict_cache = env["dir"] / "strict.mdb"
    r = mtasts(env, "--strict", "--cache", str(strict_cache), "getmta", "http-404.example")
    assert (r.returncode, r.stdout) == (0, "fail"), r


def test_query_json_shows_everything_known(env):
    r = mtasts(env, "query", "ENFORCE.example.", "--json")
    assert r.returncode == 0, r
    q = json.loads(r.stdout)
    text = json.dumps(q)
    assert q["domain"] == "enforce.example"
    assert "enforce" in text and "mx1.enforce.example" in text and "*.mail.enforce.example" in text
    assert "20240101000000" in text  # the TXT id
    assert "mailto:tlsrpt@enforce.example" in text  # TLSRPT rua
    assert "network" in text  # where the answer came from
    again = json.loads(mtasts(env, "query", "enforce.example", "--json").stdout)
    assert "cache" in json.dumps(again)
    human = mtasts(env, "query", "enforce.example")
    assert human.returncode == 0 and "enforce" in human.stdout and "mx1.enforce.example" in \
        human.stdout


def test_dump_and_purge(env):
    for domain in ("enforce.example", "testing.example", "nopolicy.example"):
        assert mtasts(env, "getmta", domain).returncode == 0
    dumped = json.loads(mtasts(env, "dump", "--json").stdout)
    assert {"enforce.example", "testing.example", "nopolicy.example"} <= set(dumped)
    r = mtasts(env, "purge", "testing.example")
    assert r.returncode == 0 and "purged" in r.stderr, r
    dumped = json.loads(mtasts(env, "dump", "--json").stdout)
    assert "testing.example" not in dumped and "enforce.example" in dumped
    assert not any(k.startswith("testing.example:") for k in cache_records(env["cache"]))
    r = mtasts(env, "purge", "testing.example")
    assert r.returncode == 0 and "was not cached" in r.stderr, r


def test_cache_holds_the_perl_tools_keys(env):
    assert mtasts(env, "getmta", "enforce.example").stdout == "enforce"
    records = cache_records(env["cache"])
    assert records["enforce.example:mode"] == "enforce"
    assert records["enforce.example:mx"] == "mx1.enforce.example:*.mail.enforce.example"
    assert records["enforce.example:id"] == "20240101000000"
    assert records["enforce.example:report"] == "mailto:tlsrpt@enforce.example"
    assert int(records["enforce.example:expire"]) > 0


def test_command_line_overrides_the_config(env, tmp_path):
    # No config file at all: everything from options.
    cache = tmp_path / "direct.mdb"
    w = env["world"]
    r = subprocess.run([str(CLI), "--config", "/dev/null", "--cache", str(cache),
                        "--resolver", w["dns"], "--ca-file", w["ca_file"],
                        "--https-port", str(w["https_port"]), "getmta", "enforce.example"],
                       capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout) == (0, "enforce"), r
    assert cache.exists()


def test_answers_for_a_program_keep_stderr_clean(env):
    # The test config logs at debug level; a fetch (and for http-404 a failure) would log.
    for domain, answer in (("enforce.example", "enforce"), ("http-404.example", "none")):
        r = mtasts(env, "getmta", domain)
        assert (r.returncode, r.stdout, r.stderr) == (0, answer, ""), r
    r = mtasts(env, "-v", "getmta", "https-cert-expired.example")
    assert r.returncode == 0 and r.stdout == "none" and r.stderr != "", r


def test_lookup_deadline_answers_from_the_cache_and_exits_cleanly(env, tmp_path):
    # The _mta-sts query never gets an answer; the lookup deadline (300 ms) comes long before
    # the DNS timeout (3 s). The half-done lookup is abandoned and torn down (under ASan this
    # catches any use of the service after it is gone), and the answer is "no policy".
    cfg = eh.write_mtasts_config(tmp_path / "deadline.toml", cache=tmp_path / "deadline.mdb",
                                 world=env["world"],
                                 extra="lookup_timeout_ms = 300\ndns_timeout_ms = 3000")
    text = cfg.read_text().replace("lookup_timeout_ms = 6000\n", "")
    cfg.write_text(text.replace("dns_timeout_ms = 2000\n", ""))
    r = subprocess.run([str(CLI), "--config", str(cfg), "-v", "getmta", "dns-sts-timeout.example"],
                       capture_output=True, text=True, timeout=30, env=eh.exim_env())
    assert "Sanitizer" not in r.stderr, r.stderr
    assert (r.returncode, r.stdout) == (0, "none"), r
    assert "did not finish within 300 ms" in r.stderr, r.stderr


# ${run} without a shell: HOST as the MX record has it, after "--" (a leading "-" is an argument,
# not an option). The command text is Exim expansion text (see exim_helpers.exim_escape).
RUN_HOSTS = [
    ("-mx.mail.enforce.example", "<>"),
    ("-mx1.enforce.example", "<0>"),
    ("--cache=/tmp/elsewhere.mdb", "<0>"),
    ("mx_1.mail.enforce.example", "<>"),
    ("mx1.enforce.example..", "<0>"),
    ("*.mail.enforce.example", "<>"),
    ("com", "<0>"),
    ('""', "<0>"),  # Exim's quoting: an empty argument
]


@pytest.mark.parametrize("host,expected", RUN_HOSTS)
def test_exim_run_with_a_weird_host(env, host, expected):
    eh.require_root_and_exim()
    work = env["dir"] / "exim"
    work.mkdir()
    work.chmod(0o755)
    cfg = eh.write_exim_config(work / "exim.conf", work)
    expr = (f"${{run{{{CLI} --config {env['config']} getmta -- enforce.example "
            f"{eh.exim_escape(host)}}}{{<$value>}}{{failed}}}}")
    r = eh.exim_be(cfg, expr)
    assert (r.rc, r.out) == (0, expected), r
    assert not Path("/tmp/elsewhere.mdb").exists()


def test_exim_run_uses_the_cli(env):
    """The ${run} front-end: Exim runs the CLI without a shell and takes stdout verbatim."""
    eh.require_root_and_exim()
    work = env["dir"] / "exim"
    work.mkdir()
    work.chmod(0o755)
    cfg = eh.write_exim_config(work / "exim.conf", work)
    expr = (f"${{run{{{CLI} --config {env['config']} getmta -- enforce.example}}"
            "{<$value>}{failed}}")
    r = eh.exim_be(cfg, expr)
    assert (r.rc, r.out) == (0, "<enforce>"), r
