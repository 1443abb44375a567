"""The Exim ${dlfunc} module (src/exim/mtasts_exim.cpp) inside the real Exim 4.96.

Each check runs `exim4 -C <test config> -be '<expansion>'`, a fresh Exim process, against the
test world (tests/world) with the bundled manifest. The module finds the test's mtasts config
through MTASTS_CONFIG, which Exim keeps only because the test config says
`keep_environment = MTASTS_CONFIG` (see exim_helpers.py for what Exim does with -C and the
environment when run as root).

Under MTASTS_SANITIZE=1 the module is built with ASan/UBSan; exim4 (not instrumented) then runs
with the ASan runtime in LD_PRELOAD and ASAN_OPTIONS=detect_leaks=0, which works because the
tests run as root (a setuid binary honours LD_PRELOAD when real and effective uid agree).
"""

from __future__ import annotations

import json
import subprocess
import textwrap
import urllib.request

import pytest

import exim_helpers as eh

MODULE = eh.module_path()

ENFORCE_MX = "mx1.enforce.example:*.mail.enforce.example"
ENFORCE_IGNORE = r"<; ! ^mx1\.enforce\.example$ ; ! ^[^.]+\.mail\.enforce\.example$ ; *"

# domain as Exim passes it -> (getmta, getmx, ignorelist)
ANSWERS = {
    "enforce.example": ("enforce", ENFORCE_MX, ENFORCE_IGNORE),
    "ENFORCE.Example.": ("enforce", ENFORCE_MX, ENFORCE_IGNORE),  # STS-51: case, root dot
    "testing.example": ("testing", "mx1.testing.example", ""),
    "none.example": ("none", "mx1.none.example", ""),             # mode none still has its mx
    "nopolicy.example": ("none", "", ""),                         # no _mta-sts record
    "http-404.example": ("none", "", ""),                         # fetch fails, nothing cached
    "[192.0.2.1]": ("none", "", ""),                              # address literal: no lookup
    "[IPv6:2001:db8::1]": ("none", "", ""),
}

# getmta(D, H)
HOST_ANSWERS = [
    ("enforce.example", "mx1.enforce.example", ""),
    ("enforce.example", "MX1.Enforce.Example.", ""),
    ("enforce.example", "a.mail.enforce.example", ""),
    ("enforce.example", "a.b.mail.enforce.example", "0"),   # STS-33: * is one label
    ("enforce.example", "mail.enforce.example", "0"),       # never the bare domain
    ("enforce.example", "xmx1.enforce.example", "0"),       # anchored (design §6)
    ("enforce.example", "mx1.enforce.example.evil", "0"),
    ("enforce.example", "not a host", "0"),
    ("testing.example", "elsewhere.example", ""),
    ("nopolicy.example", "elsewhere.example", ""),
    ("[192.0.2.1]", "elsewhere.example", ""),
]

# The common table (exim_helpers.WEIRD_MX_HOSTS) and an empty $host, which ${dlfunc} passes as
# an empty argument: it matches nothing.
WEIRD_HOSTS = eh.WEIRD_MX_HOSTS + [("", "0")]


@pytest.mark.parametrize("host,expected", WEIRD_HOSTS)
def test_getmta_answers_for_every_host(setup, host, expected):
    assert answer(setup, "getmta", "enforce.example", host) == expected
    for domain in ("testing.example", "none.example", "nopolicy.example", "[192.0.2.1]"):
        assert answer(setup, "getmta", domain, host) == "", domain
    # Never a failure: nothing in Exim's panic log.
    panic = setup["work"] / "log" / "paniclog"
    assert not panic.exists() or panic.read_text() == "", panic.read_text()


def test_weird_host_never_excuses_a_bad_domain(setup):
    message = failure(call(setup, "getmta", "a..b", "mx_1.mail.enforce.example"))
    assert message.startswith("mtasts: invalid domain"), message

GARBAGE = ["not a domain!", "a..b", "-bad-.example", "x" * 300 + ".example", "single"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    eh.require_root_and_exim()
    eh.require_built(MODULE)
    work = tmp_path_factory.mktemp("exim-dlfunc")
    work.chmod(0o755)
    with eh.world(work / "world") as info:
        exim_cfg = eh.write_exim_config(work / "exim.conf", work)
        yield {"work": work, "world": info, "env": eh.write_normal_and_strict(work, info),
               "exim": exim_cfg}


def call(setup, function, *args, config="normal"):
    expr = eh.dlfunc(MODULE, function, *(eh.exim_escape(a) for a in args))
    r = eh.exim_be(setup["exim"], expr, env=setup["env"][config])
    r.check_clean()
    return r


def answer(setup, function, *args, config="normal"):
    r = call(setup, function, *args, config=config)
    assert r.rc == 0 and not r.out.startswith("Failed:"), \
        f"{function}{args}: rc={r.rc} out={r.out!r} err={r.err!r}"
    return r.out


def failure(r):
    """The message of a failed -be expansion. Exim 4.96 prints "Failed: <message>" on stdout
    and still exits 0 in -be mode."""
    assert r.out.startswith("Failed: "), f"expected a failed expansion: {r}"
    return r.out[len("Failed: "):]


def test_exports_only_the_three_functions():
    eh.require_built(MODULE)
    out = subprocess.run(["nm", "-D", "--defined-only", str(MODULE)], capture_output=True,
                         text=True, check=True).stdout
    defined = {line.split()[-1] for line in out.splitlines()
               if len(line.split()) >= 3 and line.split()[1] in "TtWwiBbDdRrVv"}
    functions = {line.split()[-1] for line in out.splitlines()
                 if len(line.split()) >= 3 and line.split()[1] in "Tti"}
    assert functions == {"getmta", "getmx", "ignorelist"}, sorted(defined)


@pytest.mark.parametrize("domain", list(ANSWERS))
def test_answers(setup, domain):
    getmta, getmx, ignorelist = ANSWERS[domain]
    assert answer(setup, "getmta", domain) == getmta
    assert answer(setup, "getmx", domain) == getmx
    assert answer(setup, "ignorelist", domain) == ignorelist


@pytest.mark.parametrize("domain,host,expected", HOST_ANSWERS)
def test_getmta_with_host(setup, domain, host, expected):
    assert answer(setup, "getmta", domain, host) == expected


def test_strict_fetch_failure_answers_fail(setup):
    # RFC 8461 §5 lets a sender hold mail when a published policy cannot be had; strict opts in.
    assert answer(setup, "getmta", "http-404.example", config="strict") == "fail"
    # ... and from the cache entry (fetch backoff) in the next process too.
    assert answer(setup, "getmta", "http-404.example", config="strict") == "fail"
    assert answer(setup, "getmta", "enforce.example", config="strict") == "enforce"


@pytest.mark.parametrize("garbage", GARBAGE)
def test_invalid_domain_fails_cleanly(setup, garbage):
    for function in ("getmta", "getmx", "ignorelist"):
        message = failure(call(setup, function, garbage))
        assert message.startswith("mtasts: invalid domain"), message
        assert "\n" not in message, message  # one line
    # FAIL is not a panic: nothing in Exim's panic log.
    panic = setup["work"] / "log" / "paniclog"
    assert not panic.exists() or panic.read_text() == "", panic.read_text()


def test_failure_in_router_condition_style_expansion(setup):
    # ${if} around a failing dlfunc: the whole expansion fails (a router would defer).
    expr = "${if eq{%s}{enforce}{yes}{no}}" % eh.dlfunc(MODULE, "getmta", "bad..domain")
    r = eh.exim_be(setup["exim"], expr, env=setup["env"]["normal"])
    r.check_clean()
    assert failure(r).startswith("mtasts: invalid domain"), r


@pytest.mark.parametrize("function,args", [
    ("getmta", []), ("getmta", ["enforce.example", "h.example", "x"]),
    ("getmx", []), ("getmx", ["enforce.example", "x"]),
    ("ignorelist", ["enforce.example", "x"]),
])
def test_wrong_argument_count(setup, function, args):
    assert failure(call(setup, function, *args)).startswith(f"mtasts: {function} takes")


def test_several_calls_in_one_expansion(setup):
    # Exim copies each yield into the expansion (expand.c string_cat) before the next call
    # reuses the module's buffer.
    parts = [eh.dlfunc(MODULE, "getmta", "enforce.example"),
             eh.dlfunc(MODULE, "getmta", "testing.example"),
             eh.dlfunc(MODULE, "getmta", "nopolicy.example"),
             eh.dlfunc(MODULE, "getmx", "enforce.example"),
             eh.dlfunc(MODULE, "getmx", "testing.example")]
    r = eh.exim_be(setup["exim"], "|".join(parts), env=setup["env"]["normal"])
    r.check_clean()
    assert r.out == f"enforce|testing|none|{ENFORCE_MX}|mx1.testing.example"


def test_address_literal_makes_no_lookup(setup):
    host, port = setup["world"]["control"].rsplit(":", 1)
    urllib.request.urlopen(urllib.request.Request(f"http://{host}:{port}/log/clear",
                                                  method="POST"), timeout=5).read()
    assert answer(setup, "getmta", "[198.51.100.7]") == "none"
    log = json.load(urllib.request.urlopen(f"http://{host}:{port}/log", timeout=5))
    names = [q["name"] for q in log["dns"]]
    assert not [n for n in names if "198" in n or "100" in n], names
    assert log["https"] == []


def test_bad_config_fails_with_reason(setup):
    bad = setup["work"] / "bad.toml"
    bad.write_text("no_such_key = 1\n")
    r = eh.exim_be(setup["exim"], eh.dlfunc(MODULE, "getmta", "enforce.example"),
                   env={"MTASTS_CONFIG": str(bad)})
    r.check_clean()
    assert failure(r).startswith(f"mtasts: config {bad}: "), r


def test_add_environment_instead_of_keep_environment(setup):
    # Exim clears its environment; add_environment sets the variable from the config instead.
    cfg_dir = setup["work"] / "addenv"
    cfg_dir.mkdir(exist_ok=True)
    cfg = eh.write_exim_config(
        cfg_dir / "exim.conf", cfg_dir, keep_env=False,
        main=f"add_environment = MTASTS_CONFIG={setup['env']['normal']['MTASTS_CONFIG']}")
    r = eh.exim_be(cfg, eh.dlfunc(MODULE, "getmta", "enforce.example"))
    r.check_clean()
    assert (r.rc, r.out) == (0, "enforce"), r


FORK_PROBE = textwrap.dedent("""
    import ctypes, os, sys
    lib = ctypes.CDLL(sys.argv[1])
    cache = os.path.realpath(sys.argv[2])

    def call(name, *args):
        fn = getattr(lib, name)
        yield_ = ctypes.c_char_p()
        argv = (ctypes.c_char_p * (len(args) + 1))(*[a.encode() for a in args], None)
        rc = fn(ctypes.byref(yield_), len(args), argv)
        return rc, (yield_.value or b"").decode()

    def mappings():
        with open("/proc/self/maps") as f:
            return sum(1 for line in f if line.rstrip("\\n").endswith(cache))

    print("parent", *call("getmta", "enforce.example"), mappings(), flush=True)
    pid = os.fork()
    if pid == 0:
        first = call("getmta", "enforce.example")
        after_first = mappings()
        second = call("getmx", "testing.example")
        print("child", *first, after_first, *second, mappings(), flush=True)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    print("status", status, flush=True)
    print("parent-again", *call("getmta", "testing.example"), mappings(), flush=True)
""")


def test_fork_rebuilds_the_engine_in_the_child(setup):
    """The module remembers getpid(): a forked child opens its own LMDB environment (a second
    mapping of the cache file) instead of using the parent's, and keeps it for later calls."""
    env = eh.exim_env(setup["env"]["normal"])
    cache = setup["work"] / "cache-normal.mdb"
    answer(setup, "getmta", "enforce.example")  # make sure the cache holds both domains
    answer(setup, "getmx", "testing.example")
    r = subprocess.run([eh.PYTHON, "-c", FORK_PROBE, str(MODULE), str(cache)],
                       capture_output=True, text=True, env=env, timeout=60)
    assert "Sanitizer" not in r.stderr, r.stderr
    assert r.returncode == 0, r.stderr
    lines = {line.split()[0]: line.split()[1:] for line in r.stdout.splitlines()}
    assert lines["parent"][:2] == ["0", "enforce"], r.stdout
    parent_maps = int(lines["parent"][2])
    assert parent_maps >= 1, r.stdout
    child = lines["child"]
    assert child[:2] == ["0", "enforce"], r.stdout
    assert int(child[2]) == 2 * parent_maps, r.stdout  # inherited (leaked) + its own
    assert child[3:5] == ["0", "mx1.testing.example"], r.stdout
    assert int(child[5]) == int(child[2]), r.stdout  # no second rebuild
    assert lines["status"] == ["0"], r.stdout
    assert lines["parent-again"] == ["0", "testing", str(parent_maps)], r.stdout
