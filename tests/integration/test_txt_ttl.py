"""A changed policy id is seen once the `_mta-sts` TXT record's TTL has passed (RFC 8461 §8.1,
§3.1, §5.1 step 3), through every face: the CLI, the Exim ${dlfunc} module in the real Exim,
mtastsd's ${readsocket} protocol and its Postfix socketmap, and the cdb export.

Each domain's `_mta-sts` record is published with a TTL of a few seconds, in real time (no
faketime): the test world serves the TTL, libunbound counts it down, and mtasts re-checks the
id when it has run out. The CLI and the module re-check inline; mtastsd answers at once from the
cached policy and re-checks in the background (stale-while-revalidate), so its answer moves to
the new policy within a request or two after the TTL.
"""

from __future__ import annotations

import subprocess
import time

import pytest

import daemon_helpers as dh
import exim_helpers as eh
import sts_helpers as sh
from client import World
from test_daemon_cdb import cdb_read
from test_daemon_protocols import socketmap_ask

TTL = 5  # seconds: short enough for a test, long enough that answers within it are cached
MODULE = eh.module_path()


def publish(world, domain: str, *, policy_id: str, mode: str = "enforce", mx=("mx1",),
            ttl: int = TTL, max_age: int = 7 * dh.DAY) -> list[str]:
    """_mta-sts.<domain> (with `ttl`), the domain's MX and its policy; returns the mx names."""
    names = [f"{m}.{domain}" for m in mx]
    world.set_dns(f"_mta-sts.{domain}", {"TXT": [[f"v=STSv1; id={policy_id};"]], "ttl": ttl})
    world.set_dns(domain, {"MX": [[10 * (i + 1), n] for i, n in enumerate(names)]})
    world.set_https(f"mta-sts.{domain}", {"body": sh.policy(mode, names, max_age)})
    return names


def after_ttl() -> None:
    time.sleep(TTL + 1.2)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    dh.require_daemon()
    eh.require_built(eh.cli_path())
    work = tmp_path_factory.mktemp("txt-ttl")
    work.chmod(0o755)
    with World(lifetime=900) as world:
        info = {"dns": world.dns, "ca_file": world.ca_file, "https_port": world.https_port}
        cli_config = eh.write_mtasts_config(work / "cli.toml", cache=work / "cli.mdb", world=info)
        module_config = eh.write_mtasts_config(work / "module.toml", cache=work / "module.mdb",
                                               world=info)
        cdb = work / "exim.cdb"
        daemon = dh.Mtastsd(work, world, daemon_keys=(
            f"cdb_export = {eh.toml_string(str(cdb))}\ncdb_export_interval = 1\n"
            f"socketmap_listen = [\"127.0.0.1:{dh.free_port()}\"]\n[socketmap.postfix]\n"))
        try:
            yield {"work": work, "world": world, "cli": cli_config, "module": module_config,
                   "daemon": daemon, "cdb": cdb}
        finally:
            assert daemon.stop() == 0, daemon.log()


def cli(env, *args: str) -> str:
    p = subprocess.run([str(eh.cli_path()), "--config", str(env["cli"]), *args],
                       capture_output=True, text=True, env=eh.exim_env(), timeout=60)
    assert p.returncode == 0, p
    return p.stdout.strip()


def module(env, function: str, *args: str) -> str:
    eh.require_root_and_exim()
    eh.require_built(MODULE)
    exim_cfg = env["work"] / "exim.conf"
    if not exim_cfg.exists():
        eh.write_exim_config(exim_cfg, env["work"])
    r = eh.exim_be(exim_cfg, eh.dlfunc(MODULE, function, *args),
                   env={"MTASTS_CONFIG": str(env["module"])})
    r.check_clean()
    assert r.rc == 0 and not r.out.startswith("Failed:"), r
    return r.out


def socketmap_address(env):
    for line in env["daemon"].config.read_text().splitlines():
        if line.startswith("socketmap_listen"):
            host, port = line.split('"')[1].rsplit(":", 1)
            return ("tcp", (host, int(port)))
    raise AssertionError("no socketmap_listen in the daemon's config")


def settles(ask, expected, what: str, timeout: float = 8):
    """mtastsd answers from the cached policy while it re-checks in the background: the answer
    moves to `expected` within a few requests."""
    return dh.wait_for(lambda: ask() == expected, timeout=timeout, interval=0.2, what=what)


def test_new_id_with_a_new_mx_is_seen_after_the_ttl_by_every_face(env):
    world, d = env["world"], env["daemon"]
    domain = "ttl-newmx.example"
    old = publish(world, domain, policy_id="v1", mx=("mx1",))
    sm = socketmap_address(env)
    assert cli(env, "getmx", domain) == ":".join(old)
    assert module(env, "getmx", domain) == ":".join(old)
    assert d.ask(f"getmx {domain}") == ":".join(old)
    assert socketmap_ask(sm, [f"postfix {domain}"]) == [f"OK secure match={old[0]} "
                                                        "servername=hostname"]

    new = publish(world, domain, policy_id="v2", mx=("mx9",))
    # Within the TTL every face keeps the cached policy: no DNS query yet.
    world.clear_log()
    assert cli(env, "getmx", domain) == ":".join(old)
    assert module(env, "getmx", domain) == ":".join(old)
    assert d.ask(f"getmx {domain}") == ":".join(old)
    assert dh.txt_queries(world, domain) == []

    after_ttl()
    # The CLI and the module re-check inline: the very next call has the new mx list.
    assert cli(env, "getmx", domain) == ":".join(new)
    assert cli(env, "getmta", domain, new[0]) == ""
    assert cli(env, "getmta", domain, old[0]) == "0"
    assert module(env, "getmx", domain) == ":".join(new)
    assert module(env, "getmta", domain, old[0]) == "0"
    # mtastsd: at once from the cache, the new policy a request later.
    settles(lambda: d.ask(f"getmx {domain}"), ":".join(new), "readsocket to see the new mx")
    assert d.ask(f"getmta {domain} {new[0]}") == ""
    assert socketmap_ask(sm, [f"postfix {domain}"]) == [f"OK secure match={new[0]} "
                                                        "servername=hostname"]
    assert len(dh.gets(world, domain)) >= 1
    # cdb export: the file follows within one export interval (1 s) of the daemon's change.
    dh.wait_for(lambda: cdb_read(env["cdb"]).get(f"{domain}:mx".encode()) == new[0].encode(),
                timeout=5, what="the cdb export to hold the new mx")


@pytest.mark.parametrize("old_mode,new_mode", [("enforce", "none"), ("testing", "enforce")])
def test_new_id_changes_the_mode_after_the_ttl(env, old_mode, new_mode):
    world, d = env["world"], env["daemon"]
    domain = f"ttl-{old_mode}-{new_mode}.example"
    publish(world, domain, policy_id="a1", mode=old_mode)
    assert cli(env, "getmta", domain) == old_mode
    assert d.ask(f"getmta {domain}") == old_mode
    publish(world, domain, policy_id="a2", mode=new_mode, mx=() if new_mode == "none" else ("mx1",))
    assert cli(env, "getmta", domain) == old_mode
    after_ttl()
    assert cli(env, "getmta", domain) == new_mode
    settles(lambda: d.ask(f"getmta {domain}"), new_mode, f"readsocket to answer {new_mode}")


def test_same_id_after_the_ttl_checks_dns_but_fetches_nothing(env):
    world, d = env["world"], env["daemon"]
    domain = "ttl-same.example"
    publish(world, domain, policy_id="s1")
    assert cli(env, "getmta", domain) == "enforce"
    assert d.ask(f"getmta {domain}") == "enforce"
    world.clear_log()
    after_ttl()
    assert cli(env, "getmta", domain) == "enforce"
    assert d.ask(f"getmta {domain}") == "enforce"
    dh.wait_for(lambda: len(dh.txt_queries(world, domain)) >= 2, what="both re-checks")
    time.sleep(0.5)
    assert dh.gets(world, domain) == [], "a same id is never fetched again"
    assert d.ask(f"getmta {domain}") == "enforce"


def _txt_removed(world, domain):
    world.delete_dns(f"_mta-sts.{domain}")


def _txt_ambiguous(world, domain):
    world.set_dns(f"_mta-sts.{domain}", {"TXT": [["v=STSv1; id=x1;"], ["v=STSv1; id=x2;"]],
                                         "ttl": TTL})


def _txt_servfail(world, domain):
    world.set_dns(f"_mta-sts.{domain}", {"fault": "servfail"})


@pytest.mark.parametrize("fault", [_txt_removed, _txt_ambiguous, _txt_servfail],
                         ids=["removed", "ambiguous", "servfail"])
def test_txt_gone_or_failing_after_the_ttl_keeps_the_cached_enforce_policy(env, fault):
    world, d = env["world"], env["daemon"]
    domain = f"ttl-keep-{fault.__name__.split('_')[-1]}.example"
    names = publish(world, domain, policy_id="k1")
    assert cli(env, "getmx", domain) == names[0]
    assert d.ask(f"getmx {domain}") == names[0]
    fault(world, domain)
    world.set_https(f"mta-sts.{domain}", {"status": 404})  # nothing new to be had either
    after_ttl()
    world.clear_log()
    for _ in range(3):
        assert cli(env, "getmta", domain) == "enforce"
        assert cli(env, "getmx", domain) == names[0]
        assert d.ask(f"getmta {domain}") == "enforce"
        assert d.ask(f"getmx {domain}") == names[0]
        time.sleep(0.5)
    assert dh.txt_queries(world, domain), "the id was looked at again"
    # Retried after dns_retry (60 s), not on every delivery: one re-check per cache (the
    # resolver may resend a query that failed, hence some slack).
    assert len(dh.txt_queries(world, domain)) <= 12, dh.txt_queries(world, domain)


def test_ttl_zero_costs_at_most_one_query_a_second(env):
    world, d = env["world"], env["daemon"]
    domain = "ttl-zero.example"
    publish(world, domain, policy_id="z1", ttl=0)
    assert d.ask(f"getmta {domain}") == "enforce"
    assert cli(env, "getmta", domain) == "enforce"
    world.clear_log()
    start = time.monotonic()
    asked = 0
    while time.monotonic() - start < 4:
        assert d.ask(f"getmta {domain}") == "enforce"
        assert cli(env, "getmta", domain) == "enforce"
        asked += 2
    elapsed = time.monotonic() - start
    queries = [q for q in dh.txt_queries(world, domain)]
    # Two independent caches (the daemon's and the CLI's): each at most one query a second.
    assert asked > 20
    assert len(queries) <= 2 * (int(elapsed) + 2), (len(queries), elapsed)
    assert dh.gets(world, domain) == []
