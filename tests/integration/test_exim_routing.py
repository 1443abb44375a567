"""The shipped Exim router set (packaging/exim) routing real addresses with `exim4 -bt`.

Everything runs inside a network namespace the test creates, where the test world answers DNS on
127.0.0.1:53 and HTTPS on :443, and /etc/netns/<ns>/resolv.conf sends Exim's own resolver
there, so Exim sees the world's MX records exactly as it would see real ones. The routers,
transports and macros are included verbatim from packaging/exim; the test only defines
MTASTS_MODULE (the built module) and a stand-in for Debian's normal dnslookup router.

The bundled manifest has no domain whose MX set is only partly allowed by its policy, nor one
whose MXs are all outside it, so this test adds two (split-mx.example, no-allowed-mx.example)
to a test-local copy of the manifest (world.py --manifest).
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import textwrap

import pytest

import exim_helpers as eh

MODULE = eh.module_path()

EXTRA_DNS = {
    # enforce policy allows mx1 only; the preferred MX (5) is outside the policy
    "split-mx.example": {"MX": [[5, "rogue.other-mx.example"], [10, "mx1.split-mx.example"]]},
    "mx1.split-mx.example": {"A": ["192.0.2.10"]},
    "rogue.other-mx.example": {"A": ["192.0.2.66"]},
    "_mta-sts.split-mx.example": {"TXT": [["v=STSv1; id=split1;"]]},
    # enforce policy names a host that is not among the MXs
    "no-allowed-mx.example": {"MX": [[10, "mx.elsewhere-mx.example"],
                                     [20, "mx2.elsewhere-mx.example"]]},
    "mx.elsewhere-mx.example": {"A": ["192.0.2.20"]},
    "mx2.elsewhere-mx.example": {"A": ["192.0.2.21"]},
    "_mta-sts.no-allowed-mx.example": {"TXT": [["v=STSv1; id=noallowed1;"]]},
    # Exim drops an MX host whose address it already has; give enforce.example's second MX
    # (127.0.0.1 in the bundled manifest, like the first) an address of its own.
    "mx2.mail.enforce.example": {"A": ["192.0.2.12"]},
}
EXTRA_HTTPS = {
    "mta-sts.split-mx.example": {
        "body": "version: STSv1\nmode: enforce\nmx: mx1.split-mx.example\nmax_age: 86400\n"},
    "mta-sts.no-allowed-mx.example": {
        "body": "version: STSv1\nmode: enforce\nmx: mx.no-allowed-mx.example\n"
                "mx: *.no-allowed-mx.example\nmax_age: 86400\n"},
}
EXTRA_DOMAINS = {
    "split-mx.example": "Enforce policy allowing mx1.split-mx.example only; its preferred MX "
                        "rogue.other-mx.example is outside the policy. Expect routing to mx1 only.",
    "no-allowed-mx.example": "Enforce policy whose mx patterns match none of the domain's MX "
                             "hosts. Expect a deferral, never a delivery.",
}


def router_config(work):
    return eh.write_packaged_exim_config(work / "exim.conf", work, "dlfunc",
                                         macros={"MTASTS_MODULE": MODULE})


@pytest.fixture(scope="module")
def ns_setup(tmp_path_factory):
    eh.require_root_and_exim()
    eh.require_built(MODULE)
    work = tmp_path_factory.mktemp("exim-routing")
    work.chmod(0o755)
    manifest = copy.deepcopy(eh.load_manifest())
    manifest["dns"].update(EXTRA_DNS)
    manifest["https"].update(EXTRA_HTTPS)
    manifest["domains"].update(EXTRA_DOMAINS)
    manifest_file = work / "manifest.json"
    manifest_file.write_text(json.dumps(manifest, indent=1))
    with eh.network_namespace() as ns:
        with eh.world(work / "world", manifest=manifest_file, netns=ns, dns_port=53,
                      https_port=443) as info:
            assert info["dns"] == "127.0.0.1:53", info
            yield {"ns": ns, "env": eh.write_normal_and_strict(work, info),
                   "exim": router_config(work), "work": work}


def route(s, address, config="normal"):
    r = eh.exim(s["exim"], "-bt", address, env=s["env"][config], netns=s["ns"])
    r.check_clean()
    return r


def routed(r):
    """(router, transport, [hosts]) from -bt output for one routed address."""
    m = re.search(r"router = (\S+), transport = (\S+)", r.out)
    assert m, f"not routed: rc={r.rc}\n{r.out}\n{r.err}"
    hosts = re.findall(r"^\s+host (\S+)\s+\[", r.out, re.M)
    return m.group(1), m.group(2), hosts


def test_exim_sees_the_world_mx_records(ns_setup):
    r = eh.exim(ns_setup["exim"], "-be", "${lookup dnsdb{mxh=split-mx.example}}",
                netns=ns_setup["ns"])
    assert sorted(r.out.split()) == ["mx1.split-mx.example", "rogue.other-mx.example"], r


def test_enforce_routes_only_to_allowed_mx(ns_setup):
    r = route(ns_setup, "user@split-mx.example")
    assert r.rc == 0, r
    router, transport, hosts = routed(r)
    assert (router, transport) == ("mtasts_enforce", "mtasts_enforce_smtp")
    assert hosts == ["mx1.split-mx.example"], r.out


def test_enforce_with_every_mx_allowed(ns_setup):
    r = route(ns_setup, "User@ENFORCE.Example")
    assert r.rc == 0, r
    router, transport, hosts = routed(r)
    assert (router, transport) == ("mtasts_enforce", "mtasts_enforce_smtp")
    assert hosts == ["mx1.enforce.example", "mx2.mail.enforce.example"], r.out


def test_enforce_with_no_allowed_mx_defers(ns_setup):
    r = route(ns_setup, "user@no-allowed-mx.example")
    assert r.rc == 1, r  # -bt: 1 = could not be resolved (deferred), 2 = failed
    assert "cannot be resolved at this time" in r.out, r.out
    assert "no MX host of no-allowed-mx.example is allowed" in r.out, r.out
    assert "router = " not in r.out and not re.search(r"^\s+host ", r.out, re.M), r.out


@pytest.mark.parametrize("domain,router,transport,hosts", [
    ("testing.example", "mtasts_testing", "mtasts_testing_smtp", ["mx1.testing.example"]),
    ("nopolicy.example", "normal_dnslookup", "remote_smtp", ["mx1.nopolicy.example"]),
    ("none.example", "normal_dnslookup", "remote_smtp", ["mx1.none.example"]),
    ("http-404.example", "normal_dnslookup", "remote_smtp", ["mx1.http-404.example"]),
])
def test_other_modes_route_normally(ns_setup, domain, router, transport, hosts):
    r = route(ns_setup, f"user@{domain}")
    assert r.rc == 0, r
    assert routed(r) == (router, transport, hosts), r.out


def test_strict_fetch_failure_defers(ns_setup):
    r = route(ns_setup, "user@http-404.example", config="strict")
    assert r.rc == 1, r
    assert "policy of http-404.example is published but unavailable" in r.out, r.out


def test_module_failure_defers(ns_setup):
    # A broken mtasts config: every getmta fails, the router condition fails, the address waits.
    bad = ns_setup["work"] / "bad.toml"
    bad.write_text("no_such_key = 1\n")
    r = eh.exim(ns_setup["exim"], "-bt", "user@nopolicy.example",
                env={"MTASTS_CONFIG": str(bad)}, netns=ns_setup["ns"])
    r.check_clean()
    assert r.rc == 1, r
    assert "cannot be resolved at this time" in r.out and "mtasts: config" in r.out, r.out


# The Exim 4.96 behaviours the router set is built around, checked with a stand-in module whose
# getmta answers "enforce" and whose ignorelist always FAILs (what the real module does when it
# cannot answer). If an Exim update changes one of these, the routers must be revisited.
FAILING_STUB = r"""
int getmta(unsigned char **yield, int argc, unsigned char *argv[]) {
  (void)argc; (void)argv; *yield = (unsigned char *)"enforce"; return 0; }
int ignorelist(unsigned char **yield, int argc, unsigned char *argv[]) {
  (void)argc; (void)argv; *yield = (unsigned char *)"mtasts: stand-in failure"; return 2; }
"""


@pytest.fixture(scope="module")
def failing_stub(ns_setup):
    if shutil.which("gcc") is None:
        pytest.fail("gcc is not installed (apt-get install gcc): it builds the stand-in module")
    src = ns_setup["work"] / "stub.c"
    src.write_text(FAILING_STUB)
    so = ns_setup["work"] / "stub.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(so), str(src)], check=True)
    return so


def stub_route(ns_setup, stub, name, router):
    work = ns_setup["work"] / f"fact-{name}"
    work.mkdir(exist_ok=True)
    work.chmod(0o755)
    routers = router.replace("STUB", str(stub)) + textwrap.dedent("""
        fallback:
          driver = dnslookup
          transport = t
          no_more
        """)
    cfg = eh.write_exim_config(work / "exim.conf", work, routers=routers,
                               transports="t:\n  driver = smtp\n")
    # no sanitizer runtime needed: the stand-in is not instrumented, but harmless if preloaded
    r = eh.exim(cfg, "-bt", "user@nopolicy.example", netns=ns_setup["ns"])
    r.check_clean()
    return r


@pytest.mark.parametrize("name,router,expect", [
    # a failed `condition` skips the router (spec says defer): never put the lookup there
    ("condition", "r:\n  driver = redirect\n  condition = ${dlfunc{STUB}{ignorelist}{x}}\n"
                  "  data = :defer: reached\n  allow_defer\n", "router = fallback"),
    # a failed ignore_target_hosts ignores nothing: every MX stays
    ("ignore_target_hosts", "r:\n  driver = dnslookup\n  transport = t\n"
                            "  ignore_target_hosts = ${dlfunc{STUB}{ignorelist}{$domain}}\n",
     "router = r,"),
    # a failed `set` discards the message
    ("set", "r:\n  driver = dnslookup\n  transport = t\n"
            "  set = r_x = ${dlfunc{STUB}{ignorelist}{$domain}}\n", "is discarded"),
    # a failed address_data defers: what mtasts_lookup and mtasts_enforce use
    ("address_data", "r:\n  driver = dnslookup\n  transport = t\n"
                     "  address_data = ${dlfunc{STUB}{ignorelist}{$domain}}\n",
     "cannot be resolved at this time"),
    # so does a failed redirect `data`
    ("redirect_data", "r:\n  driver = redirect\n  allow_defer\n"
                      "  data = ${dlfunc{STUB}{ignorelist}{$domain}}\n",
     "cannot be resolved at this time"),
])
def test_exim_facts_the_routers_rely_on(ns_setup, failing_stub, name, router, expect):
    r = stub_route(ns_setup, failing_stub, name, router)
    assert expect in r.out, f"{name}: rc={r.rc}\n{r.out}\n{r.err}"
