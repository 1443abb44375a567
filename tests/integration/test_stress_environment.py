"""Issue 5 §6 (the cache, CLI and module part), bad configuration and environment: a missing
cache directory, a read-only cache, a full disk (a 1 MiB tmpfs), an unreadable CA file, an
unreadable or missing config file.

Each must give a clear error naming the problem - the CLI with its documented exit code
(docs/cli.md: 74 cache, 78 config) and one line on stderr, the module with a failed expansion
whose message starts "mtasts:" - or, where an answer can still be given correctly, the answer
plus a log line naming the problem. And nothing already cached is lost: the entries stored
before are still answered, from the cache, byte for byte the same (mdb_dump).

Permissions only bind an unprivileged user, so those cases run the CLI, exim4 -be and the
ctypes harness as `nobody` (setpriv). Under MTASTS_SANITIZE=1 the module runs as nobody in the
harness instead of exim4: a setuid exim4 started by nobody ignores LD_PRELOAD (the ASan runtime).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

import exim_helpers as eh
import sts_helpers as sh
import stress_helpers as st

SEEDED = {"enforce.example": st.BUNDLED_ANSWERS["enforce.example"],
          "testing.example": st.BUNDLED_ANSWERS["testing.example"]}
MISS = ("pol-crlf.example", st.BUNDLED_ANSWERS["pol-crlf.example"])
NOBODY_UID = 65534


@pytest.fixture(scope="module")
def env():
    eh.require_built(st.CLI, st.MODULE)
    if os.geteuid() != 0:
        pytest.skip("needs root (permissions, setpriv, tmpfs)")
    # Not under pytest's tmp_path: its 0700 parents would keep `nobody` out of everything.
    work = Path(tempfile.mkdtemp(prefix="mtasts-stress-env-"))
    work.chmod(0o755)
    try:
        with st.start_world(work / "w") as world:
            # The seeded policies' TXT answers are good for an hour (RFC 8461 §8.1): answers
            # from the cache below make no DNS query.
            for domain in SEEDED:
                world.set_ttl(f"_mta-sts.{domain}", 3600)
            yield {"work": work, "world": world, "exim": sh.write_exim_config(work / "exim"),
                   "harness": st.write_harness(work)}
    finally:
        for mount in work.glob("case-*/disk"):
            subprocess.run(["umount", "-l", str(mount)], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def place(env):
    """A fresh directory under the module's workdir, world-readable."""
    d = env["work"] / f"case-{uuid.uuid4().hex[:8]}"
    d.mkdir()
    d.chmod(0o755)
    return d


def seed(config: Path, cache: Path) -> dict[str, str]:
    """Caches SEEDED (as root); returns their raw keys."""
    for domain, answers in SEEDED.items():
        p = st.cli(config, "getmta", "--", domain)
        assert (p.returncode, p.stdout) == (0, answers[0]), p
    return seeded_raw(cache)


def seeded_raw(cache: Path) -> dict[str, str]:
    records, p = st.mdb_dump(cache)
    assert p.returncode == 0, p.stderr
    state = st.check_cache(records)
    assert state.problems == [], state.problems
    raw = {}
    for domain in SEEDED:
        raw.update(state.raw_of(domain))
    assert raw, "nothing seeded"
    return raw


def module_call(env, config: Path, function: str, domain: str, *, nobody: bool = False):
    """(ok, text) of one ${dlfunc} call: exim4 -be (as nobody when asked), or the ctypes
    harness where a setuid exim4 cannot take the ASan runtime."""
    if nobody and eh.sanitized():
        [(rc, text)] = st.harness_calls(env["harness"], config, [(function, domain)],
                                        nobody=True)
        return rc == 0, text
    r = eh.exim_be(env["exim"], st.dlfunc_expression([(function, domain)]),
                   env={"MTASTS_CONFIG": str(config)}, nobody=nobody)
    r.check_clean()
    assert r.rc == 0, r
    if r.out.startswith("Failed: "):
        return False, r.out[len("Failed: "):]
    return True, r.out


def assert_nothing_lost(env, config: Path, cache: Path, before: dict[str, str], *,
                        exact: bool = True) -> None:
    """The seeded entries are intact (byte for byte, or when lookups had to update their
    bookkeeping since, their policy keys) and answered from the cache (no DNS, no fetch)."""
    now = seeded_raw(cache)
    if exact:
        assert now == before
    else:
        policy_keys = [k for k in before if k.rpartition(":")[2] in st.SEED_FIELDS]
        assert {k: now.get(k) for k in policy_keys} == {k: before[k] for k in policy_keys}
    assert st.corrupt_leftovers(cache) == []
    world = env["world"]
    world.clear_log()
    for domain, answers in SEEDED.items():
        p = st.cli(config, "getmta", "--", domain)
        assert (p.returncode, p.stdout) == (0, answers[0]), p
        assert module_call(env, config, "getmx", domain) == (True, answers[1])
    queried = {q["name"] for q in world.dns_queries()}
    assert not queried & {f"_mta-sts.{d}" for d in SEEDED}, queried


def one_error_line(stderr: str, *, after_warnings: bool = False) -> str:
    """The one line on stderr (with after_warnings, the one line besides "mtasts: warning: "
    lines logged before it)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    if after_warnings:
        lines = [line for line in lines if not line.startswith("mtasts: warning: ")]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("mtasts: "), stderr
    return lines[0]


# --------------------------------------------------------------------------------------------
# The cache file's place


def test_missing_cache_directory(env, place):
    missing = place / "no-such-dir"
    cache = missing / "cache.mdb"
    config = st.write_config(place / "mtasts.toml", cache=cache, world=env["world"])
    for args in (("getmta", "--", "enforce.example"), ("dump", "--json"),
                 ("purge", "enforce.example"), ("refresh", "enforce.example")):
        p = st.cli(config, *args)
        assert p.returncode == 74, (args, p)
        line = one_error_line(p.stderr)
        assert str(missing) in line and "does not exist" in line, line
    ok, text = module_call(env, config, "getmta", "enforce.example")
    assert not ok and text.startswith(f"mtasts: cache {cache}: "), text
    assert str(missing) in text and "does not exist" in text, text
    assert not missing.exists(), "the directory was created"


# --------------------------------------------------------------------------------------------
# A read-only cache


def make_read_only(cache: Path, *, lock_writable: bool) -> None:
    cache.chmod(0o444)
    lock = Path(str(cache) + "-lock")
    lock.chmod(0o666 if lock_writable else 0o640)


def test_read_only_cache_answers_hits_and_reports_writes(env, place):
    """The data file is read-only for the reader, the lock file (LMDB's reader table) is
    writable, as for Exim processes sharing a cache another user writes: hits are answered
    from the read-only mapping, a miss is answered from the network with the failed write
    logged, and a command that has to write fails with exit code 74 naming the cache."""
    cache = place / "cache.mdb"
    config = st.write_config(place / "mtasts.toml", cache=cache, world=env["world"])
    before = seed(config, cache)
    make_read_only(cache, lock_writable=True)
    try:
        for domain, answers in SEEDED.items():
            triple, _ = st.cli_answers(config, domain, nobody=True)
            assert triple == answers
            assert module_call(env, config, "getmta", domain, nobody=True) == (True, answers[0])

        domain, answers = MISS
        triple, stderr = st.cli_answers(config, domain, nobody=True)
        assert triple == answers
        errors = st.stderr_warnings(stderr, "cache write")
        assert errors and str(cache) in errors[0] and "Permission denied" in errors[0], stderr
        assert module_call(env, config, "ignorelist", domain, nobody=True) == (True, answers[2])

        p = st.cli(config, "purge", "enforce.example", nobody=True)
        assert p.returncode == 74, p
        line = one_error_line(p.stderr)
        assert str(cache) in line and "Permission denied" in line, line
    finally:
        cache.chmod(0o640)
    assert_nothing_lost(env, config, cache, before)
    assert "pol-crlf.example" not in st.dump_json(config), "a read-only cache was written"


def test_read_only_cache_with_a_lock_file_the_reader_cannot_write(env, place):
    """The reader may read the cache but not write its lock file (LMDB's reader table), so LMDB
    gives it no reader slot. Hits are answered from a private copy of the file, checked to hold
    one commit whole (never from the shared file without a slot: docs/reliability.md §4), with a
    warning naming the lock file; a miss is answered from the network with the failed write
    logged naming the lock file; a command that has to write fails with exit code 74 naming it."""
    cache = place / "cache.mdb"
    config = st.write_config(place / "mtasts.toml", cache=cache, world=env["world"])
    before = seed(config, cache)
    make_read_only(cache, lock_writable=False)   # the lock file as created: 0640 root
    lock = f"{cache}-lock"
    try:
        for domain, answers in SEEDED.items():
            triple, stderr = st.cli_answers(config, domain, nobody=True)
            assert triple == answers
            warnings = st.stderr_warnings(stderr, lock)
            assert warnings and "read-write access" in warnings[0], stderr
            assert module_call(env, config, "getmta", domain, nobody=True) == (True, answers[0])

        domain, answers = MISS
        triple, stderr = st.cli_answers(config, domain, nobody=True)
        assert triple == answers
        errors = st.stderr_warnings(stderr, "cache write")
        assert errors and lock in errors[0] and "Permission denied" in errors[0], stderr
        assert module_call(env, config, "getmx", domain, nobody=True) == (True, answers[1])

        p = st.cli(config, "purge", "enforce.example", nobody=True)
        assert p.returncode == 74, p
        line = one_error_line(p.stderr, after_warnings=True)
        assert lock in line and "Permission denied" in line, line
    finally:
        cache.chmod(0o640)
    assert_nothing_lost(env, config, cache, before)
    assert "pol-crlf.example" not in st.dump_json(config), "a read-only cache was written"


# --------------------------------------------------------------------------------------------
# A full disk


@contextlib.contextmanager
def small_tmpfs(directory: Path, size: str = "1m"):
    directory.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                        str(directory)], capture_output=True, text=True)
    if r.returncode != 0:
        directory.rmdir()
        pytest.skip(f"cannot mount a tmpfs: {r.stderr.strip()}")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], capture_output=True)
        with contextlib.suppress(OSError):
            directory.rmdir()


def fill(directory: Path) -> Path:
    """Takes every free block of the file system; returns the filler file."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        for size in (65536, 4096, 1):
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * size) > 0:
                    pass
    finally:
        os.close(fd)
    assert os.statvfs(directory).f_bavail == 0, "the file system still has room"
    return filler


def test_full_disk_keeps_answering_and_loses_nothing(env, place):
    with small_tmpfs(place / "disk") as disk:
        cache = disk / "cache.mdb"
        config = st.write_config(place / "mtasts.toml", cache=cache, world=env["world"])
        before = seed(config, cache)
        filler = fill(disk)

        for domain, answers in SEEDED.items():   # hits
            triple, _ = st.cli_answers(config, domain)
            assert triple == answers
            assert module_call(env, config, "getmta", domain) == (True, answers[0])
        domain, answers = MISS                   # a miss: answered, the failed write logged
        triple, stderr = st.cli_answers(config, domain)
        assert triple == answers
        errors = st.stderr_warnings(stderr, "cache write")
        assert errors and "No space left on device" in errors[0], stderr
        assert module_call(env, config, "getmx", "none.example") == \
            (True, st.BUNDLED_ANSWERS["none.example"][1])
        p = st.cli(config, "refresh", "--json", "enforce.example")   # answered, not stored
        assert p.returncode == 0 and '"getmta": "enforce"' in p.stdout, p
        p = st.cli(config, "purge", "testing.example")               # must write: 74
        assert p.returncode == 74, p
        line = one_error_line(p.stderr)
        assert str(cache) in line and "No space left on device" in line, line

        state = st.check_cache_file(cache, config)                   # still clean
        assert state.problems == []
        filler.unlink()
        assert_nothing_lost(env, config, cache, before)
        # With room again, writes work.
        assert st.cli(config, "purge", "testing.example").returncode == 0
        assert st.cli(config, "getmta", "--", MISS[0]).stdout == MISS[1][0]
        assert "pol-crlf.example" in st.dump_json(config)


def test_new_cache_on_a_full_disk_is_a_clear_error(env, place):
    """Creating the cache where there is no room: a clear error, not SIGBUS (LMDB would extend
    the new lock file with ftruncate and fault writing its reader table into the hole; mtasts
    allocates the lock file's blocks first). Again on the next call, with what the first one
    left behind, and once there is room the cache is created as usual."""
    with small_tmpfs(place / "disk") as disk:
        cache = disk / "cache.mdb"
        config = st.write_config(place / "mtasts.toml", cache=cache, world=env["world"])
        filler = fill(disk)
        for _ in range(2):
            p = st.cli(config, "getmta", "--", "enforce.example")
            assert p.returncode == 74, f"rc {p.returncode}: {p.stderr}"
            line = one_error_line(p.stderr)
            assert str(cache) in line and "No space left on device" in line, line
            ok, text = module_call(env, config, "getmta", "enforce.example")
            assert not ok and text.startswith(f"mtasts: cache {cache}: "), text
            assert "No space left on device" in text, text
        filler.unlink()
        p = st.cli(config, "getmta", "--", "enforce.example")
        assert (p.returncode, p.stdout) == (0, "enforce"), p
        assert st.corrupt_leftovers(cache) == []
        assert "enforce.example" in st.dump_json(config)


# --------------------------------------------------------------------------------------------
# Unreadable CA file, unreadable or missing config


@pytest.mark.parametrize("how", ["missing", "mode-000-as-nobody"])
def test_unreadable_ca_file(env, place, how):
    """The CA file is only needed to fetch: cached policies keep being answered (and kept when
    a refetch fails), a miss is answered as the RFC says for an unfetchable policy (none), and
    the warning names the CA file."""
    nobody = how != "missing"
    ca = place / "ca.pem"
    cache = place / "cache.mdb"
    # txt_max_ttl of a day: a policy of a day or less is then fetched again on every refresh.
    good = st.write_config(place / "good.toml", cache=cache, world=env["world"],
                           extra="txt_max_ttl = 86400")
    config = st.write_config(place / "mtasts.toml", cache=cache, world=env["world"],
                             ca_file=str(ca), extra="txt_max_ttl = 86400")
    before = seed(good, cache)
    if nobody:
        shutil.copy(env["world"].ca_file, ca)
        ca.chmod(0o000)
        os.chown(place, NOBODY_UID, -1)
        for path in place.glob("cache.mdb*"):
            os.chown(path, NOBODY_UID, -1)
    for domain, answers in SEEDED.items():
        triple, _ = st.cli_answers(config, domain, nobody=nobody)
        assert triple == answers
    # enforce.example's policy (max_age one day) is fetched again on refresh: that fails, the
    # cached policy stays.
    p = st.cli(config, "-v", "refresh", "--json", "enforce.example", nobody=nobody)
    assert p.returncode == 0 and '"getmta": "enforce"' in p.stdout, p
    warnings = st.stderr_warnings(p.stderr, "enforce.example")
    assert any(f"cannot load CA file {ca}" in w and "keeping the cached enforce policy" in w
               for w in warnings), p.stderr
    # A miss: the policy cannot be fetched, delivery goes on without MTA-STS, said loudly.
    domain = MISS[0]
    triple, stderr = st.cli_answers(config, domain, nobody=nobody)
    assert triple == ("none", "", "")
    assert any(f"cannot load CA file {ca}" in w for w in st.stderr_warnings(stderr, domain)), \
        stderr
    if not nobody:   # the module, syslog captured
        out, messages = st.exim_syslog(env["exim"], config, [("getmta", "none.example")],
                                       place / "syslog")
        assert out == "none", out
        assert any(f"cannot load CA file {ca}" in m
                   for m in st.syslog_warnings(messages, "none.example")), messages
    if nobody:
        os.chown(place, 0, -1)
    assert_nothing_lost(env, good, cache, before, exact=False)


def test_unreadable_config_file(env, place):
    cache = place / "cache.mdb"
    config = st.write_config(place / "mtasts.toml", cache=cache, world=env["world"])
    before = seed(config, cache)
    config.chmod(0o000)
    try:
        for how in ("--config", "MTASTS_CONFIG"):
            if how == "--config":
                p = st.cli(config, "getmta", "--", "enforce.example", nobody=True)
            else:
                p = st.cli(None, "getmta", "--", "enforce.example", nobody=True,
                           env={"MTASTS_CONFIG": str(config)})
            assert p.returncode == 78, (how, p)
            line = one_error_line(p.stderr)
            assert str(config) in line and "Permission denied" in line, line
        ok, text = module_call(env, config, "getmta", "enforce.example", nobody=True)
        assert not ok and text.startswith(f"mtasts: config {config}: "), text
        assert "Permission denied" in text, text
    finally:
        config.chmod(0o644)
    assert_nothing_lost(env, config, cache, before)


def test_missing_config_named_by_mtasts_config(env, place):
    missing = place / "no-such.toml"
    p = st.cli(None, "getmta", "--", "enforce.example", env={"MTASTS_CONFIG": str(missing)})
    assert p.returncode == 78, p
    assert str(missing) in one_error_line(p.stderr)
    ok, text = module_call(env, missing, "getmta", "enforce.example")
    assert not ok and text.startswith(f"mtasts: config {missing}: "), text
