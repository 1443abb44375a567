"""mtastsd's Prometheus endpoint (metrics_listen; src/daemon/metrics_server.hpp,
src/daemon/metrics.hpp), scraped with urllib like a Prometheus server would.

Lookups by answer, cache hits and misses, fetches by outcome, the latency histogram, refresh
counters and the process gauges; only GET/HEAD /metrics is served; an oversized or silent
request is dropped without disturbing the daemon.
"""

from __future__ import annotations

import re
import socket
import urllib.error
import urllib.request

import pytest

import daemon_helpers as dh
from client import World
from daemon_helpers import Mtastsd, free_port


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    dh.require_daemon()
    work = tmp_path_factory.mktemp("metrics")
    work.chmod(0o755)
    port = free_port()
    with World(lifetime=300) as world:
        # An hour's TTL (the world's default is 0): the second ask below is a hit however slow
        # the machine is.
        for domain in ("enforce.example", "testing.example"):
            world.set_ttl(f"_mta-sts.{domain}", 3600)
        d = Mtastsd(work, world, daemon_keys=f'metrics_listen = "127.0.0.1:{port}"\n')
        try:
            yield {"daemon": d, "url": f"http://127.0.0.1:{port}", "port": port}
        finally:
            assert d.stop() == 0, d.log()


def scrape(env) -> tuple[str, dict[str, float]]:
    with urllib.request.urlopen(env["url"] + "/metrics", timeout=5) as response:
        assert response.status == 200
        content_type = response.headers["Content-Type"]
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        name, value = line.rsplit(" ", 1)
        samples[name] = float(value)
    return content_type, samples


def test_lookups_cache_fetches_and_latency(env):
    d = env["daemon"]
    _, before = scrape(env)
    assert d.ask("getmta enforce.example") == "enforce"      # miss: DNS and a fetch
    assert d.ask("getmta enforce.example") == "enforce"      # hit
    assert d.ask("getmta testing.example") == "testing"      # miss
    assert d.ask("getmta nopolicy.example") == "none"        # miss: no MTA-STS
    assert d.ask("getmta http-404.example") == "none"        # miss: the fetch fails
    content_type, after = scrape(env)
    assert content_type.startswith("text/plain; version=0.0.4"), content_type

    def delta(name):
        return after.get(name, 0) - before.get(name, 0)

    assert delta('mtastsd_lookups_total{answer="enforce"}') == 2
    assert delta('mtastsd_lookups_total{answer="testing"}') == 1
    assert delta('mtastsd_lookups_total{answer="no_policy"}') == 2
    assert delta("mtastsd_cache_hits_total") == 1
    assert delta('mtastsd_cache_misses_total{result="answered"}') == 4
    assert delta('mtastsd_policy_fetches_total{outcome="ok"}') == 2
    assert delta('mtastsd_policy_fetches_total{outcome="fetch_failed"}') == 1
    assert delta("mtastsd_lookup_duration_seconds_count") == 5
    assert after['mtastsd_lookup_duration_seconds_bucket{le="+Inf"}'] == \
        after["mtastsd_lookup_duration_seconds_count"]
    # Buckets are cumulative.
    buckets = [v for k, v in after.items() if k.startswith("mtastsd_lookup_duration_seconds_b")]
    assert buckets == sorted(buckets)
    for name in ('mtastsd_refreshes_total{result="ok"}', 'mtastsd_refreshes_total{result="failed"}',
                 "mtastsd_refresh_dropped_total", "mtastsd_refresh_running",
                 'mtastsd_refresh_tracked_domains{state="known"}', "mtastsd_open_connections",
                 "mtastsd_background_lookups", "process_start_time_seconds",
                 'mtastsd_cdb_exports_total{result="ok"}'):
        assert name in after, name
    assert after['mtastsd_refresh_tracked_domains{state="known"}'] >= 4


def test_open_connections_gauge(env):
    d = env["daemon"]
    held = [socket.socket(socket.AF_UNIX) for _ in range(3)]
    try:
        for s in held:
            s.connect(str(d.exim_path))
        dh.wait_for(lambda: scrape(env)[1]["mtastsd_open_connections"] == 3,
                    what="three open connections")
    finally:
        for s in held:
            s.close()
    dh.wait_for(lambda: scrape(env)[1]["mtastsd_open_connections"] == 0,
                what="no open connection")


def test_only_get_metrics_is_served(env):
    with pytest.raises(urllib.error.HTTPError) as not_found:
        urllib.request.urlopen(env["url"] + "/other", timeout=5)
    assert not_found.value.code == 404
    request = urllib.request.Request(env["url"] + "/metrics", data=b"", method="POST")
    with pytest.raises(urllib.error.HTTPError) as not_allowed:
        urllib.request.urlopen(request, timeout=5)
    assert not_allowed.value.code == 405
    head = urllib.request.Request(env["url"] + "/metrics", method="HEAD")
    with urllib.request.urlopen(head, timeout=5) as response:
        assert response.status == 200 and response.read() == b""


def test_oversized_request_is_dropped(env):
    with socket.create_connection(("127.0.0.1", env["port"]), timeout=10) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Junk: " + b"a" * 20000 + b"\r\n\r\n")
        try:
            data = s.recv(4096)
        except ConnectionResetError:
            data = b""
        assert not data.startswith(b"HTTP/1.1 200"), data[:100]
    _, samples = scrape(env)  # still serving
    assert "mtastsd_open_connections" in samples
    assert re.match(r"\d", str(int(samples["process_start_time_seconds"])))
