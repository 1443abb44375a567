"""The fleet's shared Redis failing in every way we can make it fail (design §8, docs/fleet.md),
with three mtastsd under load. Redis is never on the critical path: each fault must end with
zero failed or wrong answers, no LMDB entry lost, and the shared tier in use again once Redis
is back, without a restart.

- Redis killed (SIGKILL) during load, then restarted on the same port;
- Redis slow (DEBUG SLEEP) and full of garbage under our keys (not JSON, another domain's
  value, a newer format version, a list, an oversized value): ignored and overwritten;
- Redis refusing our password: each member works alone, and says so at a bounded rate;
- a hostile writer with valid values: it cannot weaken an unexpired policy a member holds
  (mode none under the same id, or under an id DNS does not show), nor make it trust an entry
  from the future;
- a Sentinel failover during load: followed without a failed answer, and the new master used.
"""

from __future__ import annotations

import json
import random
import threading
import time

import pytest

import daemon_helpers as dh
import fleet_helpers as fh
from client import World
from daemon_helpers import exim_ask, gets, txt_queries, wait_for

WARM = fh.domains("warm", 60)
COLD = fh.domains("load", 400)
GARBAGE = fh.domains("garbage", 6)
HOSTILE = fh.domains("hostile", 3)
AFTER = fh.domains("after", 12)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    dh.require_daemon()
    fh.require_redis()
    work = tmp_path_factory.mktemp("fleet-faults-world")
    work.chmod(0o755)
    manifest = fh.write_manifest(work / "manifest.json", WARM + COLD + GARBAGE + AFTER)
    with World(manifest=str(manifest), state_dir=str(work / "world"), lifetime=1800) as running:
        yield running


class Load:
    """Threads asking getmta of random names on random members until stopped; every answer
    must be "enforce". Cold names are taken in order, so lookups keep going to the network
    (and to the shared tier) for the whole run."""

    def __init__(self, members, warm: list[str], cold: list[str], threads: int = 6):
        self.members = members
        self.warm = warm
        self.cold = list(cold)
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.wrong: list[tuple] = []
        self.asked: list[set[str]] = [set() for _ in members]
        self.count = 0
        self.threads = [threading.Thread(target=self.run, args=(i,)) for i in range(threads)]

    def next_name(self, rng: random.Random) -> str:
        with self.lock:
            if self.cold and rng.random() < 0.5:
                return self.cold.pop(0)
        return rng.choice(self.warm)

    def run(self, seed: int) -> None:
        rng = random.Random(seed)
        while not self.stop_event.is_set():
            index = rng.randrange(len(self.members))
            name = self.next_name(rng)
            try:
                answer = exim_ask(self.members[index].exim, f"getmta {name}")
            except OSError as error:
                answer = f"error: {error}"
            with self.lock:
                self.count += 1
                self.asked[index].add(name)
                if answer != "enforce":
                    self.wrong.append((index, name, answer))
            time.sleep(0.005)

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        for thread in self.threads:
            thread.join(timeout=120)

    def check(self) -> None:
        assert self.count > 100, self.count
        assert self.wrong == [], self.wrong[:10]
        for index, member in enumerate(self.members):
            dump = member.dump()
            lost = [name for name in self.asked[index] if name not in dump]
            assert lost == [], f"member {index} lost {lost[:5]}"


def warm_up(members) -> None:
    fh.ask_all(members, WARM, threads_per_member=4)


def shared_in_use(world, members, name: str) -> None:
    """The shared tier works again: a name looked up by member 0 is answered by the others
    without a fetch of their own."""
    assert members[0].ask(f"getmta {name}") == "enforce"
    for member in members[1:]:
        wait_for(lambda m=member: m.ask(f"getmta {name}") == "enforce", what="an answer")
    assert len(gets(world, name)) == 1, gets(world, name)


def test_redis_killed_and_restarted_during_load(tmp_path, world):
    server = fh.RedisServer(tmp_path)
    members = fh.fleet(tmp_path, world, server.url)
    try:
        warm_up(members)
        with Load(members, WARM, COLD[:200]) as load:
            time.sleep(2)
            server.stop(kill=True)
            time.sleep(3)
            server.start()
            time.sleep(3)
        load.check()
        # Back without a restart of the daemons (their reconnect backoff is at most 5 s).
        time.sleep(6)
        shared_in_use(world, members, AFTER[0])
        for member in members:
            assert "shared cache" in member.log()
    finally:
        fh.stop_all(members)
        server.stop()


def test_slow_redis_and_garbage_values(tmp_path, world):
    server = fh.RedisServer(tmp_path)
    client = server.client()
    # Garbage under our keys, before any member looks: each kind must be ignored, and
    # overwritten by the first member's own lookup.
    other = json.dumps({"format": "mtasts-entry", "v": 1, "domain": "elsewhere.example",
                        "mode": "none", "extras": "{}"})
    client.set(f"mtasts:v1:{GARBAGE[0]}", b"\xff\xfe not json at all")
    client.set(f"mtasts:v1:lock:{GARBAGE[0]}", "held for ever")  # no member sets such a lock
    client.set(f"mtasts:v1:{GARBAGE[1]}", other)
    client.set(f"mtasts:v1:{GARBAGE[2]}", json.dumps({"format": "mtasts-entry", "v": 2,
                                                     "domain": GARBAGE[2]}))
    client.rpush(f"mtasts:v1:{GARBAGE[3]}", "a", "b")
    client.set(f"mtasts:v1:{GARBAGE[4]}", "x" * (300 * 1024))
    client.set(f"mtasts:v1:{GARBAGE[5]}", json.dumps({"format": "mtasts-entry", "v": 1,
                                                     "domain": GARBAGE[5], "mode": "none",
                                                     "mx": "", "expire": "99999999999",
                                                     "id": "x", "extras": "{\"v\":1}"}))
    # A short deadline, so that DEBUG SLEEP below makes calls pass it.
    members = fh.fleet(tmp_path, world, server.url, timeout_ms=300)
    try:
        for name in GARBAGE:
            for member in members:
                assert member.ask(f"getmta {name}") == "enforce", name
        for name in GARBAGE:
            entry = json.loads(client.get(f"mtasts:v1:{name}"))
            assert entry["domain"] == name and entry["mode"] == "enforce", entry
        assert "shared cache value ignored" in members[0].log()
        assert "its lock never expires (not set by mtasts)" in members[0].log()

        warm_up(members)
        # Slow: Redis stops answering for a second at a time, over and over, during load.
        with Load(members, WARM, COLD[200:]) as load:
            for _ in range(4):
                threading.Thread(target=lambda: server.client().execute_command(
                    "DEBUG", "SLEEP", "1"), daemon=True).start()
                time.sleep(1.5)
        load.check()
        time.sleep(1)
        shared_in_use(world, members, AFTER[1])
    finally:
        fh.stop_all(members)
        server.stop()


def test_redis_refusing_auth(tmp_path, world):
    server = fh.RedisServer(tmp_path, password="the-right-one")
    wrong = tmp_path / "wrong.pass"
    wrong.write_text("not-the-password\n")
    right = tmp_path / "right.pass"
    right.write_text("the-right-one\n")
    members = fh.fleet(tmp_path, world, server.url, password_file=wrong)
    try:
        names = AFTER[2:6]
        for name in names:
            for member in members:
                assert member.ask(f"getmta {name}") == "enforce"
        # Alone: each member looked the names up itself.
        assert all(len(gets(world, name)) == 3 for name in names)
        time.sleep(3)
        for member in members:
            log = member.log()
            assert "WRONGPASS" in log or "invalid password" in log, log[-3000:]
            # Reconnect attempts go on, but their failure lines are bounded.
            assert log.count("WRONGPASS") + log.count("invalid password") <= 12, log[-3000:]
        assert server.client().keys("mtasts:*") == []
    finally:
        fh.stop_all(members)
    members = fh.fleet(tmp_path / "right", world, server.url, password_file=right)
    try:
        shared_in_use(world, members, AFTER[6])
    finally:
        fh.stop_all(members)
        server.stop()


def test_hostile_writer_cannot_weaken_a_held_policy(tmp_path, world):
    name = HOSTILE[0]
    world.set_dns(name, {"MX": [[10, f"mx1.{name}"]], "ttl": 3})
    world.set_dns(f"_mta-sts.{name}", {"TXT": [["v=STSv1; id=h1;"]], "ttl": 3})
    world.set_https(f"mta-sts.{name}", {"body": fh.policy_body("enforce", [f"mx1.{name}"])})
    server = fh.RedisServer(tmp_path)
    client = server.client()
    members = fh.fleet(tmp_path, world, server.url, count=1)
    member = members[0]
    try:
        assert member.ask(f"getmta {name}") == "enforce"
        genuine = json.loads(client.get(f"mtasts:v1:{name}"))
        extras = json.loads(genuine["extras"])

        def forge(policy_id: str, mode: str, mx: list[str], checked_offset: int = 2) -> str:
            # Checked "just now" (a little ahead, within the tolerated clock skew), so the
            # value is newer than anything the member holds and only the rules can stop it.
            now = int(time.time()) + checked_offset
            forged_extras = dict(extras)
            forged_extras.update({"text": fh.policy_body(mode, mx), "fetched_at": now,
                                  "checked_at": now, "next_check": now + 3600,
                                  "txt_expires_at": now + 3600})
            value = dict(genuine)
            value.update({"mode": mode, "mx": ":".join(mx), "id": policy_id,
                          "expire": str(now + 7 * 86400),
                          "extras": json.dumps(forged_extras)})
            return json.dumps(value)

        cases = [
            ("mode none under the same id", lambda: forge("h1", "none", []),
             "shared cache entry refused: it would weaken the unexpired policy id h1"),
            ("other MX under an id DNS does not show",
             lambda: forge("h9", "enforce", ["evil.example"]),
             "shared cache offers policy id h9 would replace the unexpired policy id h1"),
            ("an entry from the future", lambda: forge("h1", "none", [], checked_offset=86400),
             "is in the future"),
        ]
        world.clear_log()
        for what, value, marker in cases:
            before = member.log().count(marker)
            client.set(f"mtasts:v1:{name}", value())
            # Within the TXT TTL (3 s) the member looks at the shared tier again: its
            # refresher re-checks the domain in use, or a stale answer is re-checked.
            wait_for(lambda: member.ask(f"getmta {name}") and member.log().count(marker) > before,
                     timeout=30, what=f"{what}: the member to look at the forged value")
            time.sleep(0.5)
            assert member.ask(f"getmta {name}") == "enforce", what
            assert member.ask(f"getmx {name}") == f"mx1.{name}", what
            assert member.dump()[name]["policy"]["id"] == "h1", what
        assert gets(world, name) == [], "no fetch: the id never changed"
        assert txt_queries(world, name), "the member asked DNS itself"
    finally:
        fh.stop_all(members)
        server.stop()


def test_sentinel_failover_during_load(tmp_path, world):
    sentinels = fh.Sentinels(tmp_path)
    members = fh.fleet(tmp_path, world, sentinels.url)
    try:
        shared_in_use(world, members, AFTER[7])
        with Load(members, WARM, COLD[:100] + COLD[300:]) as load:
            time.sleep(2)
            new_port = sentinels.failover()
            time.sleep(4)
        load.check()
        assert new_port == sentinels.replica.port
        time.sleep(2)
        shared_in_use(world, members, AFTER[8])
        assert sentinels.client().get(f"mtasts:v1:{AFTER[8]}") is not None, \
            "written to the new master"
    finally:
        fh.stop_all(members)
        sentinels.stop()


def test_acl_user_with_the_rights_docs_fleet_md_names(tmp_path, world):
    # The ACL line of docs/fleet.md, word for word: enough for reads, locks, writes, releases.
    rights = ["+get", "+set", "+del", "+pttl", "+eval", "+ping", "+select", "+role", "+auth"]
    server = fh.RedisServer(tmp_path, extra=["--user", "mtasts", "on", ">acl-secret",
                                             "~mtasts:*", *rights])
    password = tmp_path / "acl.pass"
    password.write_text("acl-secret\n")
    members = fh.fleet(tmp_path, world, server.url, count=2, password_file=password,
                       top_keys='shared_cache_user = "mtasts"\n')
    try:
        shared_in_use(world, members, AFTER[9])
        assert server.client().get(f"mtasts:v1:lock:{AFTER[9]}") is None, "the lock was released"
        for member in members:
            assert "shared cache write failed" not in member.log()
            assert "NOPERM" not in member.log() and "can't run this command" not in member.log()
    finally:
        fh.stop_all(members)
        server.stop()
