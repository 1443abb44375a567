"""mtastsd's proactive refresh (RFC 8461 §3.3; src/daemon/refresher.hpp, core/refresh_plan.hpp)
against the test world, with the daemon's wall clock moved by libfaketime.

Each test runs its own mtastsd (its own cache and clock) and publishes its own domains in one
shared world; the daemon walks its cache every second (refresh_scan_interval = 1). Proven here:
- a cached policy is re-checked (TXT only) and re-fetched (from half its lifetime) before it
  expires, with no client lookup at all;
- a failing refresh logs a warning, keeps the cached policy in force and is retried after the
  backoff, not in a storm;
- no more than refresh_concurrency refreshes run at once (policy hosts that stall: the GETs in
  the world's log come in waves of at most that many);
- entries nobody uses are dropped (a negative entry at once, a policy once it has expired), a
  used one is kept, and last use survives in "<cache>-usage".
"""

from __future__ import annotations

import time

import pytest

import daemon_helpers as dh
from client import World
from daemon_helpers import DAY, Clock, Mtastsd, gets, txt_queries, wait_for

FETCH_TIMEOUT_MS = 1500


@pytest.fixture(scope="module")
def world():
    dh.require_daemon()
    with World(lifetime=600) as running:
        yield running


def start(tmp_path, world, name, daemon_keys="", top_keys=""):
    # The TXT records here are good for a day (publish() below) and txt_max_ttl lets that
    # stand: the id is re-checked daily, the rhythm these tests move the clock by.
    clock = Clock(tmp_path / f"{name}.faketime")
    keys = "refresh_scan_interval = 1\nrefresh_concurrency = 3\n" + daemon_keys
    return clock, Mtastsd(tmp_path, world, name=name, daemon_keys=keys,
                          top_keys="txt_max_ttl = 86400\n" + top_keys, clock=clock,
                          fetch_timeout_ms=FETCH_TIMEOUT_MS)


def publish(world, domain, **keys):
    dh.publish(world, domain, ttl=DAY, **keys)


def test_policy_is_rechecked_and_refetched_before_expiry_without_lookups(tmp_path, world):
    # max_age 4 d: the TXT id is re-checked daily (its TTL) and the policy fetched again
    # from refresh_from = fetched + 2 d (half its lifetime).
    domain = "r-proactive.example"
    publish(world, domain, max_age=4 * DAY)
    clock, d = start(tmp_path, world, "proactive")
    try:
        assert d.ask(f"getmta {domain}") == "enforce"
        fetched = d.dump()[domain]["policy"]["fetched_at"]
        assert len(gets(world, domain)) == 1

        # Nearly a day later: the re-check runs ahead of next_check (refresh_ahead), TXT only
        # (answered by the resolver's cache: the record's TTL is a day).
        world.clear_log()
        clock.set(DAY - 100)
        entry = wait_for(lambda: (e := d.dump()[domain])["checked_at"] > fetched and e,
                         what="checked_at to move")
        time.sleep(1.5)
        assert gets(world, domain) == [], "a same id before refresh_from is not fetched"
        assert entry["policy"]["fetched_at"] == fetched
        # Fresh again: how long depends on what the resolver's cache has left of the TTL
        # (libunbound keeps an answer a day at most).
        assert entry["next_check"] > clock.now(), entry

        # Past half the policy's lifetime: fetched again, long before it expires.
        world.clear_log()
        clock.set(2 * DAY + 30)
        wait_for(lambda: gets(world, domain), what="the proactive fetch")
        entry = wait_for(lambda: (e := d.dump()[domain])["policy"]["fetched_at"] > fetched and e,
                         what="fetched_at to move")
        assert entry["policy"]["expires_at"] >= entry["policy"]["fetched_at"] + 4 * DAY
        assert entry["policy"]["fetched_at"] < fetched + 4 * DAY
        # Not a single client request but the first one; the next is answered from the cache.
        assert d.log().count(f'exim: "getmta {domain}"') == 1
        assert d.ask(f"getmta {domain}") == "enforce"
        d.wait_log(f'exim: "getmta {domain}" -> "enforce" (cache)')
        # A new id is picked up by the next re-check (TXT first, then the fetch).
        world.clear_log()
        publish(world, domain, policy_id="v2", mode="testing", max_age=4 * DAY)
        clock.set(3 * DAY + 30)
        wait_for(lambda: d.dump()[domain]["policy"]["id"] == "v2", what="the new id")
        assert d.ask(f"getmta {domain}") == "testing"
        assert len(gets(world, domain)) == 1
    finally:
        assert d.stop() == 0, d.log()


def test_failing_refresh_warns_keeps_policy_and_backs_off(tmp_path, world):
    domain = "r-failing.example"
    publish(world, domain, max_age=4 * DAY)
    clock, d = start(tmp_path, world, "failing")
    try:
        assert d.ask(f"getmta {domain}") == "enforce"
        world.clear_log()
        publish(world, domain, max_age=4 * DAY, status=500)
        clock.set(2 * DAY + 30)  # the same-id fetch is due: it fails
        d.wait_log(f"refresh: {domain}: failed")
        line = [x for x in d.log().splitlines() if f"refresh: {domain}: failed" in x][-1]
        assert "warning: " in line, line
        assert "the cached enforce policy (id v1) stays in force" in line, line
        assert "HTTP 500" in line, line
        assert d.ask(f"getmta {domain}") == "enforce"
        assert d.dump()[domain]["policy"]["id"] == "v1"
        # Backoff (fetch_backoff_min 300 s): no second GET meanwhile, one after it.
        time.sleep(3)
        assert len(gets(world, domain)) == 1, gets(world, domain)
        publish(world, domain, max_age=4 * DAY)  # the host recovers
        clock.set(2 * DAY + 30 + 320)
        wait_for(lambda: len(gets(world, domain)) == 2, what="the retry after the backoff")
        wait_for(lambda: d.dump()[domain]["last_error"] == "", what="the entry to heal")
        assert len(gets(world, domain)) == 2
    finally:
        assert d.stop() == 0, d.log()


def test_concurrency_is_bounded(tmp_path, world):
    domains = [f"r-conc{i}.example" for i in range(9)]
    for domain in domains:
        publish(world, domain, max_age=4 * DAY)
    clock, d = start(tmp_path, world, "concurrency")
    try:
        for domain in domains:
            assert d.ask(f"getmta {domain}") == "enforce"
        for domain in domains:  # every policy host now reads the request and never answers
            publish(world, domain, max_age=4 * DAY, behaviour="stall")
        world.clear_log()
        clock.set(2 * DAY + 30)
        requests = wait_for(
            lambda: (r := [g for g in world.https_requests()
                           if g["sni"] in {f"mta-sts.{x}" for x in domains}])
            and len(r) >= len(domains) and r, timeout=30, what="a GET for every domain")
        starts = sorted(r["time"] for r in requests)
        # A refresh holds its slot until the stalled fetch times out (1.5 s), so within any
        # window shorter than that at most refresh_concurrency GETs can start.
        window = FETCH_TIMEOUT_MS / 1000 * 0.8
        busiest = max(sum(1 for t in starts if s <= t < s + window) for s in starts)
        assert busiest == 3, starts
        # Each failed (the stalled fetch timed out) and keeps its cached policy.
        d.wait_log("stays in force", count=len(domains), timeout=10)
    finally:
        assert d.stop() == 0, d.log()


def test_unused_entries_are_dropped(tmp_path, world):
    used, short, negative = "r-used.example", "r-short.example", "r-negative.example"
    publish(world, used, max_age=4 * DAY)
    publish(world, short, max_age=7200)
    world.delete_dns(f"_mta-sts.{negative}")
    clock, d = start(tmp_path, world, "unused", daemon_keys="drop_unused_after = 3600\n")
    try:
        assert d.ask(f"getmta {used}") == "enforce"
        assert d.ask(f"getmta {short}") == "enforce"
        assert d.ask(f"getmta {negative}") == "none"
        assert set(d.dump()) == {used, short, negative}

        clock.set(1800)
        assert d.ask(f"getmta {used}") == "enforce"  # a cache hit is a use
        clock.set(3700)
        assert d.ask(f"getmta {used}") == "enforce"
        # Unused for over an hour: the negative entry goes; `short` still holds an unexpired
        # policy (its protection is never thrown away early) but is no longer refreshed.
        d.wait_log(f"unused for 3600 s: {negative}")
        assert set(d.dump()) == {used, short}
        world.clear_log()
        clock.set(7300)  # `short` expired: dropped
        d.wait_log(f"unused for 3600 s: {short}")
        assert txt_queries(world, short) == [], "an unused entry is not refreshed"
        assert set(d.dump()) == {used}
    finally:
        assert d.stop() == 0, d.log()
    # Last use is kept beside the cache for the next start.
    usage = (d.cache.parent / (d.cache.name + "-usage")).read_text().splitlines()
    assert usage[0] == "mtasts-usage 1"
    fields = {line.split()[0]: line.split()[1:] for line in usage[1:]}
    assert set(fields) == {used}, usage
    # The hit at +1800 at least (the one at +3700 may still have seen +1800: libfaketime re-reads
    # its time file once a second), not the first use at +0.
    assert int(fields[used][0]) >= clock.now() - (7300 - 1800) - 60, usage
