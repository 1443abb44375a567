"""mtastsd's cdb export for Exim light (design §2.5; src/daemon/cdb_export.hpp,
core/exim_cdb.hpp) read by the real exim4 with its own cdb lookup.

- The file appears, holds every domain mtastsd looked up, and Exim's
  `${lookup{D}cdb{FILE}}` / `${lookup{D:ignorelist}cdb{FILE}}` / `${lookup{D:mx}cdb{FILE}}` give
  exactly what getmta / ignorelist / getmx give over the socket; a domain never looked up is not
  in the file.
- The shipped fragments (packaging/exim/mtasts-cdb-*.conf) parse, and their expressions answer
  from the file, or through ${readsocket} for a domain the file does not hold (which mtastsd then
  looks up, so the next export has it), or when the file is missing.
- The file is replaced atomically while Exim reads it: many Exim processes reading while
  mtastsd rewrites it again and again never see anything but complete files.
"""

from __future__ import annotations

import struct
import threading
import time

import pytest

import daemon_helpers as dh
import exim_helpers as eh
from client import World
from daemon_helpers import Mtastsd, wait_for

DOMAINS = ("enforce.example", "testing.example", "none.example", "nopolicy.example",
           "http-404.example", "xn--mnchen-3ya.example")


def cdb_read(path) -> dict[bytes, bytes]:
    """Every record of a cdb file (D. J. Bernstein's format, as tinycdb writes it), checking
    that each one is also found through the hash tables; raises on a damaged file."""
    data = path.read_bytes()
    assert len(data) >= 2048, len(data)
    end = min(struct.unpack_from("<I", data, 8 * i)[0] for i in range(256))
    records, pos = {}, 2048
    while pos < end:
        klen, vlen = struct.unpack_from("<II", data, pos)
        key = data[pos + 8:pos + 8 + klen]
        records[key] = data[pos + 8 + klen:pos + 8 + klen + vlen]
        pos += 8 + klen + vlen
    assert pos == end, (pos, end)
    for key, value in records.items():
        h = 5381
        for byte in key:
            h = ((h << 5) + h ^ byte) & 0xFFFFFFFF
        tpos, slots = struct.unpack_from("<II", data, 8 * (h & 255))
        assert slots, key
        slot = (h >> 8) % slots
        for _ in range(slots):
            sh, rpos = struct.unpack_from("<II", data, tpos + 8 * slot)
            assert rpos, key
            if sh == h and data[rpos + 8:rpos + 8 + len(key)] == key:
                break
            slot = (slot + 1) % slots
        else:
            raise AssertionError(f"{key!r} not reachable through the hash table")
    return records


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    dh.require_daemon()
    work = tmp_path_factory.mktemp("cdb")
    work.chmod(0o755)
    with World(lifetime=600) as world:
        # An hour's TTL, as zones usually have: the export holds only entries whose TXT id is
        # current (RFC 8461 §8.1), and the world's default TTL of 0 would drop them a second
        # after each lookup.
        for domain in DOMAINS:
            world.set_ttl(f"_mta-sts.{domain}", 3600)
        cdb = work / "exim.cdb"
        d = Mtastsd(work, world, daemon_keys=(
            f"cdb_export = {eh.toml_string(str(cdb))}\ncdb_export_interval = 1\n"
            "refresh_scan_interval = 2\n"))
        try:
            for domain in DOMAINS:
                assert d.ask(f"getmta {domain}") != ""
            wait_for(lambda: cdb.exists() and all(k.encode() in cdb_read(cdb) for k in DOMAINS),
                     what="every domain in the cdb file")
            yield {"work": work, "world": world, "daemon": d, "cdb": cdb}
        finally:
            assert d.stop() == 0, d.log()


def exim_config(env, tmp_path, **macros):
    eh.require_root_and_exim()
    tmp_path.mkdir(parents=True, exist_ok=True)
    tmp_path.chmod(0o755)
    defaults = {"MTASTS_SOCKET": str(env["daemon"].exim_path),
                "MTASTS_CDB_FILE": str(env["cdb"])}
    return eh.write_packaged_exim_config(tmp_path / "exim.conf", tmp_path, "cdb",
                                         macros={**defaults, **macros}, keep_env=False)


def test_cdb_holds_the_answers_of_getmta_getmx_and_ignorelist(env, tmp_path):
    cfg = exim_config(env, tmp_path)
    d, cdb = env["daemon"], env["cdb"]
    records = cdb_read(cdb)
    assert oct(cdb.stat().st_mode & 0o777) == "0o644"
    assert int(records[b"_mtasts:exported"]) > 1_600_000_000
    for domain in DOMAINS:
        for key, request in ((domain, f"getmta {domain}"),
                             (f"{domain}:ignorelist", f"ignorelist {domain}"),
                             (f"{domain}:mx", f"getmx {domain}")):
            expected = d.ask(request)
            assert records[key.encode()].decode() == expected, key
            r = eh.exim_be(cfg, "${lookup{%s}cdb{%s}}" % (key, cdb))
            assert r.rc == 0 and r.out == expected, (key, r)
    # The answers that matter, spelled out.
    assert records[b"enforce.example"] == b"enforce"
    assert records[b"enforce.example:ignorelist"].startswith(b"<; ! ^mx1\\.enforce\\.example$")
    assert records[b"testing.example"] == b"testing"
    assert records[b"nopolicy.example"] == b"none"
    # Never looked up: not in the file (not known, which is not "none").
    r = eh.exim_be(cfg, "${lookup{never-asked.example}cdb{%s}{$value}{MISSING}}" % cdb)
    assert r.out == "MISSING", r


def shipped_expression(name: str, domain: str) -> str:
    """The definition of macro `name` in mtasts-cdb-macros.conf with $domain filled in."""
    text = (eh.source_dir() / "packaging" / "exim" / "mtasts-cdb-macros.conf").read_text()
    line = next(x for x in text.splitlines() if x.startswith(f"{name} = "))
    return line.split(" = ", 1)[1].replace("$domain", domain)


def test_shipped_fragments_answer_from_the_file_or_the_socket(env, tmp_path):
    cfg = exim_config(env, tmp_path)
    r = eh.exim(cfg, "-bV")
    assert r.rc == 0, r
    d, world = env["daemon"], env["world"]
    for domain in ("enforce.example", "testing.example"):
        assert eh.exim_be(cfg, shipped_expression("MTASTS_CDB_GETMTA", domain)).out == \
            d.ask(f"getmta {domain}")
        assert eh.exim_be(cfg, shipped_expression("MTASTS_CDB_IGNORELIST", domain)).out == \
            d.ask(f"ignorelist {domain}")
    # A domain the file does not hold yet: answered over the socket, then exported.
    # An hour's TTL, as for the others: the export holds entries whose id is current.
    dh.publish(world, "cdb-late.example", mode="enforce", ttl=3600)
    assert b"cdb-late.example" not in cdb_read(env["cdb"])
    r = eh.exim_be(cfg, shipped_expression("MTASTS_CDB_GETMTA", "cdb-late.example"))
    assert r.out == "enforce", r
    r = eh.exim_be(cfg, shipped_expression("MTASTS_CDB_IGNORELIST", "cdb-late.example"))
    assert r.out == "<; ! ^mx1\\.cdb-late\\.example$ ; *", r
    wait_for(lambda: cdb_read(env["cdb"]).get(b"cdb-late.example") == b"enforce",
             what="the late domain in the file")
    # No file (mtastsd not started yet, or cdb_export not set): the socket answers.
    missing = exim_config(env, tmp_path / "missing", MTASTS_CDB_FILE=str(tmp_path / "none.cdb"))
    assert eh.exim_be(missing, shipped_expression("MTASTS_CDB_GETMTA", "testing.example")).out \
        == "testing"
    # Neither file nor daemon: "error: ...", which the routers defer on.
    gone = exim_config(env, tmp_path / "gone", MTASTS_CDB_FILE=str(tmp_path / "none.cdb"),
                       MTASTS_SOCKET=str(tmp_path / "none.sock"))
    r = eh.exim_be(gone, shipped_expression("MTASTS_CDB_GETMTA", "testing.example"))
    assert r.out.startswith("error:"), r


def test_replaced_atomically_while_exim_reads(env, tmp_path):
    cfg = exim_config(env, tmp_path)
    d, cdb = env["daemon"], env["cdb"]
    # Each new domain changes the answers, so the file is rewritten (at most once a second).
    stop = threading.Event()
    inodes = {cdb.stat().st_ino}
    errors = []

    def churn():
        i = 0
        while not stop.is_set():
            try:
                d.ask(f"getmta churn{i}.example")
                inodes.add(cdb.stat().st_ino)
                cdb_read(cdb)  # complete and consistent every time
            except Exception as e:  # noqa: BLE001 - reported by the main thread
                errors.append(repr(e))
            i += 1
            time.sleep(0.1)

    thread = threading.Thread(target=churn)
    thread.start()
    answers = []
    try:
        deadline = time.monotonic() + 6
        # Many lookups per Exim process (one per line of standard input), many processes.
        expression = "${lookup{enforce.example}cdb{%s}{$value}{MISSING}}" % cdb
        while time.monotonic() < deadline:
            r = eh.exim(cfg, "-be", stdin="\n".join([expression] * 20) + "\n")
            assert r.rc == 0, r
            answers += [x.removeprefix("> ").strip() for x in r.out.splitlines()
                        if x.strip() not in ("", ">")]
    finally:
        stop.set()
        thread.join()
    assert not errors, errors
    assert len(inodes) >= 3, "the file was not rewritten while Exim read it"
    assert len(answers) >= 100, answers[:5]
    assert set(answers) == {"enforce"}, {a for a in answers if a != "enforce"}
    # No temporary files left behind.
    assert [p.name for p in cdb.parent.iterdir() if ".tmp." in p.name] == []
