"""A fleet of three mtastsd sharing one real redis-server (design §8, docs/fleet.md): each
member keeps its own LMDB cache, and the shared tier gives one fetch per domain for the whole
fleet. Everything is counted in the test world's log (DNS queries and HTTPS requests per name).

Proven here:
- a cold lookup of 500 domains asked of all three members at once causes exactly one policy
  fetch and one _mta-sts TXT query per domain; asked again, no member makes a DNS query or a
  fetch for any of them, and every answer is right;
- a new policy id is seen by all three after one member re-checks it, fetched once: a stronger
  policy is taken from Redis without any DNS query, one with other MX patterns only after each
  member's own TXT lookup shows the new id (never a fetch);
- a failing policy host is fetched once per backoff period by the whole fleet, not once per
  member, and once more after the backoff;
- the keys are PREFIX "v1:" DOMAIN with an mtasts-entry JSON value and an expiry.
"""

from __future__ import annotations

import json
import time

import pytest

import daemon_helpers as dh
import fleet_helpers as fh
from client import World
from daemon_helpers import Clock, gets, txt_queries, wait_for


COLD = fh.domains("cold", 500)
IDS = fh.domains("ids", 4)
FAILING = fh.domains("failing", 2)
NEGATIVE = fh.domains("nosts", 20)  # not in the world: no _mta-sts record (NXDOMAIN)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    dh.require_daemon()
    fh.require_redis()
    work = tmp_path_factory.mktemp("fleet-world")
    work.chmod(0o755)
    manifest = fh.write_manifest(work / "manifest.json", COLD)
    with World(manifest=str(manifest), state_dir=str(work / "world"), lifetime=1800) as running:
        yield running


@pytest.fixture
def redis_server(tmp_path):
    server = fh.RedisServer(tmp_path)
    yield server
    server.stop()


def test_cold_fleet_fetches_each_domain_once(tmp_path, world, redis_server):
    world.clear_log()
    members = fh.fleet(tmp_path, world, redis_server.url)
    try:
        results = fh.ask_all(members, COLD, threads_per_member=16)
        wrong = [r for r in results if r[2] != "enforce"]
        assert wrong == [], wrong[:10]

        fetched = {name: len(gets(world, name)) for name in COLD}
        assert [n for n, c in fetched.items() if c != 1] == [], \
            {n: c for n, c in fetched.items() if c != 1}
        queried = {name: len(txt_queries(world, name)) for name in COLD}
        assert [n for n, c in queried.items() if c != 1] == [], \
            {n: c for n, c in queried.items() if c != 1}

        # Asked again of every member: all answers from the local caches, no network at all.
        world.clear_log()
        results = fh.ask_all(members, COLD, threads_per_member=16, seed=7)
        assert [r for r in results if r[2] != "enforce"] == []
        asked = [q for q in world.dns_queries() if ".fleet.example" in q.get("name", "").lower()]
        assert asked == [], asked[:10]
        assert not any(gets(world, name) for name in COLD)

        # The members' own caches hold every domain (the shared tier copied them in).
        for member in members:
            dump = member.dump()
            assert all(dump[name]["policy"]["mode"] == "enforce" for name in COLD)
        metrics = [member.log() for member in members]
        assert all("Sanitizer" not in text for text in metrics)

        # The key layout of docs/fleet.md.
        client = redis_server.client()
        value = client.get(f"mtasts:v1:{COLD[0]}")
        entry = json.loads(value)
        assert entry["format"] == "mtasts-entry" and entry["v"] == 1
        assert entry["domain"] == COLD[0] and entry["mode"] == "enforce"
        assert 0 < client.pttl(f"mtasts:v1:{COLD[0]}") <= 7 * 86400 * 1000
        assert client.get(f"mtasts:v1:lock:{COLD[0]}") is None, "locks are released"
    finally:
        fh.stop_all(members)


def publish_ids(world, name: str, policy_id: str, mode: str, mx: list[str], ttl: int) -> None:
    world.set_dns(name, {"MX": [[10, m] for m in mx], "ttl": ttl})
    world.set_dns(f"_mta-sts.{name}", {"TXT": [[f"v=STSv1; id={policy_id};"]], "ttl": ttl})
    world.set_https(f"mta-sts.{name}", {"body": fh.policy_body(mode, mx)})


def getmx(member, name: str) -> str:
    return member.ask(f"getmx {name}")


def test_new_id_is_seen_by_all_after_one_member_rechecks(tmp_path, world, redis_server):
    # TXT TTL 3 s: each member's entry is due for a re-check 3 s after its lookup.
    stronger, other_mx = IDS[0], IDS[1]
    publish_ids(world, stronger, "v1", "testing", [f"mx1.{stronger}"], 3)
    publish_ids(world, other_mx, "v1", "enforce", [f"mx1.{other_mx}"], 3)
    members = fh.fleet(tmp_path, world, redis_server.url)
    try:
        for member in members:
            assert member.ask(f"getmta {stronger}") == "testing"
            assert getmx(member, other_mx) == f"mx1.{other_mx}"
        assert len(gets(world, stronger)) == 1 and len(gets(world, other_mx)) == 1

        # The new ids come with a TTL of an hour: each member re-checks once (its refresher
        # re-checks a domain in use right after the TTL, or a lookup does), so the counts below
        # do not grow with how long this test takes.
        publish_ids(world, stronger, "v2", "enforce", [f"mx1.{stronger}"], 3600)
        publish_ids(world, other_mx, "v2", "enforce", [f"mx2.{other_mx}"], 3600)
        world.clear_log()
        time.sleep(3.5)  # every member's entry is past its TXT TTL now
        # One member re-checks (a stale entry answers at once and is re-checked behind it).
        first = members[0]
        first.ask(f"getmta {stronger}")
        first.ask(f"getmx {other_mx}")
        wait_for(lambda: first.ask(f"getmta {stronger}") == "enforce", what="member 0: v2")
        wait_for(lambda: getmx(first, other_mx) == f"mx2.{other_mx}", what="member 0: new mx")
        # The others: their entries are stale too; each answers from the shared cache.
        for i, member in enumerate(members[1:], start=1):
            member.ask(f"getmta {stronger}")
            member.ask(f"getmx {other_mx}")
            wait_for(lambda m=member: m.ask(f"getmta {stronger}") == "enforce",
                     what=f"member {i}: v2 of {stronger}")
            wait_for(lambda m=member: getmx(m, other_mx) == f"mx2.{other_mx}",
                     what=f"member {i}: new mx of {other_mx}")
        # One fetch of each new policy for the fleet. The stronger one came to the others with
        # no DNS query (only member 0 asked); the one with other MX patterns, which would
        # weaken the policy they held, only after their own TXT lookup showed id v2.
        assert len(gets(world, stronger)) == 1, gets(world, stronger)
        assert len(gets(world, other_mx)) == 1, gets(world, other_mx)
        assert len(txt_queries(world, stronger)) == 1, txt_queries(world, stronger)
        assert len(txt_queries(world, other_mx)) == 3, txt_queries(world, other_mx)
        # Two of the three took it that way (which one fetched depends on whose refresher or
        # lookup came first).
        confirmed = [m for m in members
                     if "taken from the shared cache: our TXT lookup shows it" in m.log()]
        assert len(confirmed) == 2, [m.log()[-2000:] for m in members]
    finally:
        fh.stop_all(members)


def test_failing_policy_host_is_fetched_once_per_backoff_fleet_wide(tmp_path, world,
                                                                    redis_server):
    name = FAILING[0]
    world.set_dns(name, {"MX": [[10, f"mx1.{name}"]], "ttl": 60})
    world.set_dns(f"_mta-sts.{name}", {"TXT": [["v=STSv1; id=f1;"]], "ttl": 60})
    world.set_https(f"mta-sts.{name}", {"status": 500, "body": "broken\n"})
    # One clock for the whole fleet, moved past dns_retry and then past the backoff.
    clock = Clock(tmp_path / "fleet.faketime")
    members = fh.fleet(tmp_path, world, redis_server.url, clock=clock,
                       top_keys="dns_retry = 10\n")
    try:
        world.clear_log()
        for _ in range(3):
            for member in members:
                assert member.ask(f"getmta {name}") == "none"
        assert len(gets(world, name)) == 1, gets(world, name)
        # Past dns_retry (the TXT is looked at again) but inside the 300 s backoff: no fetch.
        clock.set(30)
        for _ in range(3):
            for member in members:
                assert member.ask(f"getmta {name}") == "none"
        assert len(gets(world, name)) == 1, gets(world, name)
        # Past the backoff: one more fetch for the fleet, not three. (Asked until it comes: a
        # daemon sees the moved clock within libfaketime's cache time, later under ASan.)
        clock.set(320)

        def ask_all_members():
            for member in members:
                assert member.ask(f"getmta {name}") == "none"
            return len(gets(world, name)) >= 2

        wait_for(ask_all_members, timeout=30, interval=0.3, what="the fetch after the backoff")
        time.sleep(1.5)
        for _ in range(3):
            ask_all_members()
        assert len(gets(world, name)) == 2, gets(world, name)
    finally:
        fh.stop_all(members)


def test_negative_answers_are_shared(tmp_path, world, redis_server):
    members = fh.fleet(tmp_path, world, redis_server.url)
    try:
        world.clear_log()
        for name in NEGATIVE:
            assert members[0].ask(f"getmta {name}") == "none"
        for member in members[1:]:
            for name in NEGATIVE:
                assert member.ask(f"getmta {name}") == "none"
        # Only the first member asked DNS; the others took "no MTA-STS here" from Redis.
        assert all(len(txt_queries(world, name)) == 1 for name in NEGATIVE), \
            {name: len(txt_queries(world, name)) for name in NEGATIVE}
        entry = json.loads(redis_server.client().get(f"mtasts:v1:{NEGATIVE[0]}"))
        assert "mode" not in entry and entry["domain"] == NEGATIVE[0], entry
    finally:
        fh.stop_all(members)


def test_a_reload_builds_a_new_client_and_keeps_sharing(tmp_path, world, redis_server):
    import signal
    members = fh.fleet(tmp_path, world, redis_server.url, count=2)
    try:
        names = fh.domains("reload", 2)
        for name in names:
            publish_ids(world, name, "v1", "enforce", [f"mx1.{name}"], 3600)
        members[1].proc.send_signal(signal.SIGHUP)
        members[1].wait_log("reloaded")
        members[1].wait_log("shared cache: connected", count=2)
        for name in names:
            assert members[0].ask(f"getmta {name}") == "enforce"
            assert members[1].ask(f"getmta {name}") == "enforce"
            assert len(gets(world, name)) == 1, gets(world, name)
    finally:
        fh.stop_all(members)
