"""rfc-checklist §2, rows STS-01..STS-31, STS-33..STS-35 and STS-51, end to end.

Every row drives the real front-ends against the test world (tests/world): the `mtasts` CLI and,
through the parametrized `fe` fixture, the Exim ${dlfunc} module inside `exim4 -be` (root only).
Each test gets its own cache file; the world (one per module, its own ports) keeps a request log
that tests read to check what went on the wire. Vectors the bundled manifest lacks are added at
start-up (EXTRA_VECTORS) or by the test itself under a name of its own (row and front-end in the
name), so front-ends never see each other's changes. Clock-dependent rows move the front-end's
clock with libfaketime (`at=` seconds ahead); the world keeps real time.

Run: MTASTS_BUILD_DIR=$PWD/build-lead MTASTS_SOURCE_DIR=$PWD \
     /usr/bin/python3 -m pytest -q tests/integration/test_sts_rows.py
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor

import pytest

import exim_helpers as eh
import sts_helpers as sh
from client import World
from sts_helpers import DAY, WELL_KNOWN, FrontEnd, assert_no_fetch, gets, policy, publish

NO_POLICY = ("none", "", "")


def enforce(domain: str, *mx: str) -> tuple[str, str, str]:
    """What an enforce policy for domain with these mx patterns looks like to the MTA."""
    patterns = mx or (f"mx1.{domain}",)
    return ("enforce", ":".join(patterns), sh.ignorelist_for(patterns))


# Vectors of the checklist that the bundled manifest does not carry; published once per world.
# domain -> policy body (TXT "v=STSv1; id=v1;", policy host with a valid certificate).
def _body(domain, *lines):
    return "".join(line + "\n" for line in lines).replace("{d}", domain)


EXTRA_POLICIES = {
    # STS-13
    "pol-missing-version.example": ("mode: enforce", "mx: mx1.{d}", "max_age: 86400"),
    "pol-missing-mode.example": ("version: STSv1", "mx: mx1.{d}", "max_age: 86400"),
    "pol-missing-max-age.example": ("version: STSv1", "mode: enforce", "mx: mx1.{d}"),
    "pol-key-capitalised.example": ("version: STSv1", "Mode: enforce", "mx: mx1.{d}",
                                    "max_age: 86400"),
    "pol-version-lowercase.example": ("version: stsv1", "mode: enforce", "mx: mx1.{d}",
                                      "max_age: 86400"),
    "pol-mode-unknown.example": ("version: STSv1", "mode: strict", "mx: mx1.{d}",
                                 "max_age: 86400"),
    "pol-max-age-negative.example": ("version: STSv1", "mode: enforce", "mx: mx1.{d}",
                                     "max_age: -1"),
    "pol-max-age-plus-sign.example": ("version: STSv1", "mode: enforce", "mx: mx1.{d}",
                                      "max_age: +86400"),
    "pol-max-age-10-digits.example": ("version: STSv1", "mode: enforce", "mx: mx1.{d}",
                                      "max_age: 9999999999"),
    # STS-14
    "pol-mx-wildcard.example": ("version: STSv1", "mode: enforce", "mx: *.mx.{d}",
                                "max_age: 86400"),
    "pol-mx-several.example": ("version: STSv1", "mode: enforce", "mx: mx1.{d}", "mx: mx2.{d}",
                               "mx: *.backup.{d}", "max_age: 86400"),
    "pol-mx-upper-case.example": ("version: STSv1", "mode: enforce", "mx: MX1.{d}",
                                  "max_age: 86400"),
    "pol-mx-u-label.example": ("version: STSv1", "mode: enforce", "mx: mx1.münchen.example",
                               "max_age: 86400"),
    "pol-mx-double-wildcard.example": ("version: STSv1", "mode: enforce", "mx: *.*.{d}",
                                       "max_age: 86400"),
    "pol-mx-partial-wildcard.example": ("version: STSv1", "mode: enforce", "mx: mx*.{d}",
                                        "max_age: 86400"),
    "pol-mx-address-literal.example": ("version: STSv1", "mode: enforce", "mx: [192.0.2.1]",
                                       "max_age: 86400"),
    "pol-mx-underscore.example": ("version: STSv1", "mode: enforce", "mx: mx_1.{d}",
                                  "max_age: 86400"),
    "pol-mx-with-port.example": ("version: STSv1", "mode: enforce", "mx: mx1.{d}:25",
                                 "max_age: 86400"),
    # STS-15
    "pol-trailing-space.example": ("version: STSv1 ", "mode: enforce  ", "mx: mx1.{d} ",
                                   "max_age: 86400 "),
    "pol-trailing-tab.example": ("version: STSv1\t", "mode: enforce\t", "mx: mx1.{d}",
                                 "max_age: 86400\t"),
    "pol-no-space-after-colon.example": ("version:STSv1", "mode:enforce", "mx:mx1.{d}",
                                         "max_age:86400"),
    "pol-tab-after-colon.example": ("version:\tSTSv1", "mode:\tenforce", "mx:\tmx1.{d}",
                                    "max_age:\t86400"),
    "pol-blank-line.example": ("version: STSv1", "", "mode: enforce", "mx: mx1.{d}",
                               "max_age: 86400"),
    # STS-16
    "pol-unknown-key-utf8-value.example": ("version: STSv1", "mode: enforce", "mx: mx1.{d}",
                                           "note: grüße aus münchen", "max_age: 86400"),
    "pol-mx-interleaved.example": ("mx: mx1.{d}", "version: STSv1", "mx: mx2.{d}",
                                   "mode: enforce", "mx: *.mx3.{d}", "max_age: 86400",
                                   "mx: mx4.{d}"),
}

# STS-33: mx pattern -> [(MX host as DNS gives it, allowed?)]. Each pattern is the only mx line
# of an enforce policy published for mxmatch-<n>.example.
MX_MATCH = {
    "mx1.example.net": [("mx1.example.net", True), ("MX1.Example.NET", True),
                        ("mx1.example.net.", True), ("mx2.example.net", False),
                        ("xmx1.example.net", False), ("mx1.example.net.evil", False),
                        ("a.mx1.example.net", False), ("example.net", False)],
    "*.example.net": [("mx.example.net", True), ("MX.EXAMPLE.NET", True),
                      ("mx.example.net.", True), ("a-b.example.net", True),
                      ("example.net", False), ("a.b.example.net", False),
                      ("mx.example.org", False), ("mx.xexample.net", False),
                      ("mx.example.net.evil", False)],
    "*.mail.example.net": [("a.mail.example.net", True), ("mail.example.net", False),
                           ("a.b.mail.example.net", False), ("a.example.net", False)],
    "*.xn--mnchen-3ya.example": [("mx.xn--mnchen-3ya.example", True),
                                 ("mx.münchen.example", True), ("mx.MÜNCHEN.example", True),
                                 ("mx.muenchen.example", False)],
}
MX_MATCH_DOMAINS = {pattern: f"mxmatch-{n}.example" for n, pattern in enumerate(MX_MATCH)}


@pytest.fixture(scope="module")
def world():
    with World(lifetime=900) as running:
        for domain, lines in EXTRA_POLICIES.items():
            publish(running, domain, body=_body(domain, *lines))
        for pattern, domain in MX_MATCH_DOMAINS.items():
            publish(running, domain, body=policy(mx=[pattern]))
        yield running


@pytest.fixture(scope="module")
def exim_config(tmp_path_factory):
    path = tmp_path_factory.mktemp("sts-exim")
    return sh.write_exim_config(path)


@pytest.fixture(params=["cli", "exim"])
def fe_kind(request):
    if request.param == "exim":
        eh.require_root_and_exim()
        eh.require_built(sh.MODULE)
    eh.require_built(sh.CLI)
    return request.param


@pytest.fixture
def make_fe(fe_kind, world, exim_config, tmp_path):
    """Builds front-ends of this test's kind, each with its own cache and config."""
    count = iter(range(1000))

    def make(**options):
        return FrontEnd(fe_kind, world, tmp_path / f"fe{next(count)}", exim_config, **options)
    return make


@pytest.fixture
def fe(make_fe, world):
    world.clear_log()
    return make_fe()


def name(row: str, fe: FrontEnd, variant: str = "") -> str:
    """A domain of this test's own, so front-ends never see each other's world changes."""
    return f"{row}{'-' + variant if variant else ''}-{fe.kind}.example"


def check_policy(fe, world, domain, expected, *, policy_id=None, gets_expected=1):
    got = fe.answers(domain)
    assert got.triple() == expected, got
    assert len(gets(world, domain)) == gets_expected, gets(world, domain)
    entry = fe.entry(domain)
    assert entry["policy"] is not None, entry
    if got.query:  # the CLI's `query --json` says the same
        answer = got.query["answer"]
        assert (answer["kind"], answer["mode"], ":".join(answer["mx"])) == (
            "policy", expected[0], expected[1]), answer
    if policy_id is not None:
        assert entry["policy"]["id"] == policy_id, entry
        if got.query:
            assert got.query["answer"]["id"] == policy_id, got.query
    return got, entry


def check_no_policy_no_fetch(fe, world, domain, category):
    """A TXT record that is not a usable STSv1 record: no policy, nothing fetched. `category`
    is why (no_record: no record begins with v=STSv1, which is no error worth keeping)."""
    got = fe.answers(domain)
    assert got.triple() == NO_POLICY, got
    assert sh.sts_txt_queries(world, domain), "the TXT record was never looked at"
    assert_no_fetch(world, domain)
    entry = fe.entry(domain)
    assert entry["policy"] is None and entry["unavailable"] is False, entry
    if category == "no_record":
        assert entry["last_error"] == "", entry
    else:
        assert entry["last_error"].startswith(category + ":"), entry["last_error"]
    if got.query:
        answer = got.query["answer"]
        assert answer["kind"] == "no_policy", answer
        assert answer["reason"].startswith(category + ":"), answer
    return entry


def check_fetch_fails(fe, world, domain, category, *, requests=1):
    """A valid TXT record, but no valid policy could be had: deliver as without MTA-STS."""
    got = fe.answers(domain)
    assert got.triple() == NO_POLICY, got
    assert len(gets(world, domain)) == requests, gets(world, domain)
    entry = fe.entry(domain)
    assert entry["policy"] is None and entry["unavailable"] is True, entry
    assert entry["last_error"].startswith(category + ":"), entry["last_error"]
    if got.query:
        answer = got.query["answer"]
        assert answer["kind"] == "no_policy" and "could not be fetched" in answer["reason"], answer
    return entry


# --------------------------------------------------------------------------------------------
# STS-01 .. STS-11: discovery


def test_sts_01_discovery_queries_txt_at_policy_domain(fe, world):
    # Exim hands the domain over as the sender typed it.
    assert fe.answers("Enforce.Example.").triple() == enforce(
        "enforce.example", "mx1.enforce.example", "*.mail.enforce.example")
    sts_names = {q["name"] for q in world.dns_queries(qtype="TXT")
                 if q["name"].startswith("_mta-sts.")}
    assert sts_names == {"_mta-sts.enforce.example"}
    assert [r["path"] for r in gets(world, "enforce.example")] == [WELL_KNOWN]


@pytest.mark.parametrize("vector", ["txt-id-before-version", "txt-leading-space",
                                    "txt-version-lowercase", "txt-version-key-uppercase"])
def test_sts_02_record_must_start_with_v_stsv1(fe, world, vector):
    check_no_policy_no_fetch(fe, world, f"{vector}.example", "no_record")


def test_sts_03_id_of_32_characters_is_accepted(fe, world):
    domain = "txt-id-32-chars.example"
    check_policy(fe, world, domain, enforce(domain), policy_id="aaaaaaaaaaaaaaaa0123456789ABCDEF")


@pytest.mark.parametrize("vector", ["txt-id-33-chars", "txt-id-with-hyphen",
                                    "txt-id-with-underscore", "txt-empty-id", "txt-missing-id",
                                    "txt-id-key-uppercase"])
def test_sts_03_bad_id_gives_no_policy(fe, world, vector):
    check_no_policy_no_fetch(fe, world, f"{vector}.example", "record_syntax")


@pytest.mark.parametrize("vector", ["txt-extension-field", "txt-fields-reordered",
                                    "txt-no-spaces", "txt-no-trailing-semicolon",
                                    "txt-trailing-whitespace"])
def test_sts_04_extensions_order_and_delimiters_accepted(fe, world, vector):
    domain = f"{vector}.example"
    check_policy(fe, world, domain, enforce(domain), policy_id="abc123")


@pytest.mark.parametrize("vector", ["txt-extension-value-with-space", "txt-double-semicolon"])
def test_sts_04_bad_extension_syntax_gives_no_policy(fe, world, vector):
    check_no_policy_no_fetch(fe, world, f"{vector}.example", "record_syntax")


def test_sts_05_non_ascii_record_gives_no_policy(fe, world):
    check_no_policy_no_fetch(fe, world, "txt-non-ascii.example", "record_syntax")


def test_sts_06_two_sts_records_give_no_policy_and_no_fetch(fe, world):
    check_no_policy_no_fetch(fe, world, "txt-two-valid-records.example", "multiple_records")


@pytest.mark.parametrize("vector,policy_id", [
    ("txt-valid-plus-unrelated-spf", "abc123"), ("txt-valid-plus-stsv2", "abc123")])
def test_sts_06_records_not_starting_v_stsv1_are_dropped(fe, world, vector, policy_id):
    domain = f"{vector}.example"
    check_policy(fe, world, domain, enforce(domain), policy_id=policy_id)


def test_sts_06_space_before_semicolon_stance(fe, world):
    # rfc-checklist §6.1 (erratum 6285), docs/rfc-stances.md: "v=STSv1 ;" is a valid record
    # when it is the only TXT record; when several are returned the §3.1 filter is literal
    # ("v=STSv1;"), so it is dropped and the other record's id (def456) is used.
    domain = "txt-space-before-semicolon.example"
    check_policy(fe, world, domain, enforce(domain), policy_id="abc123")
    domain = "txt-space-before-semicolon-plus-valid.example"
    check_policy(fe, world, domain, enforce(domain), policy_id="def456")


@pytest.mark.parametrize("variant", ["txt-disappears", "txt-now-ambiguous", "txt-now-unrelated",
                                     "txt-servfail"])
def test_sts_07_unusable_txt_keeps_cached_policy(fe, world, variant):
    domain = name("sts07", fe, variant)
    publish(world, domain, policy_id="v1", body=policy(mx=[f"mx1.{domain}"], max_age=7 * DAY))
    assert fe.answers(domain).triple() == enforce(domain)
    # The record goes (or becomes unusable); the policy host now serves another policy, so any
    # fetch would show in the answer.
    if variant == "txt-disappears":
        world.delete_dns(f"_mta-sts.{domain}")
    elif variant == "txt-now-ambiguous":
        world.set_dns(f"_mta-sts.{domain}",
                      {"TXT": [["v=STSv1; id=v2;"], ["v=STSv1; id=v3;"]]})
    elif variant == "txt-now-unrelated":
        world.set_dns(f"_mta-sts.{domain}", {"TXT": [["v=spf1 -all"]]})
    else:  # cannot tell now (rfc-checklist §6.9): the cached policy stays too
        world.set_dns(f"_mta-sts.{domain}", {"TXT": [["v=STSv1; id=v1;"]], "fault": "servfail"})
    world.set_https(f"mta-sts.{domain}", {"body": policy(mx=[f"mx2.{domain}"])})
    world.clear_log()

    # A day later the id is re-checked (its TTL has long passed): the cached policy stays.
    got = fe.answers(domain, at=DAY + 600)
    assert got.triple() == enforce(domain), got
    assert sh.sts_txt_queries(world, domain), "the record was not re-checked"
    assert gets(world, domain) == []
    entry = fe.entry(domain)
    assert entry["policy"]["id"] == "v1", entry
    expected = {"txt-disappears": "no_record", "txt-now-ambiguous": "multiple_records",
                "txt-now-unrelated": "no_record", "txt-servfail": "dns_temporary"}[variant]
    assert entry["last_error"].startswith(expected + ":"), entry["last_error"]
    assert fe.getmta(domain, f"mx2.{domain}", at=DAY + 600) == "0"

    # ... but only until it expires (max_age 7 days): then the domain has no MTA-STS.
    if variant == "txt-disappears":
        assert fe.answers(domain, at=8 * DAY).triple() == NO_POLICY


@pytest.mark.parametrize("vector", ["txt-multi-string-split-id", "txt-multi-string-split-version",
                                    "txt-multi-string-no-space-between",
                                    "txt-multi-string-empty-parts"])
def test_sts_08_multi_string_txt_concatenated_without_spaces(fe, world, vector):
    domain = f"{vector}.example"
    check_policy(fe, world, domain, enforce(domain), policy_id="abc")


@pytest.mark.parametrize("vector,policy_id", [("txt-cname-delegation", "provider1"),
                                              ("txt-cname-chain-two-hops", "twohops")])
def test_sts_09_txt_cname_followed(fe, world, vector, policy_id):
    domain = f"{vector}.example"
    check_policy(fe, world, domain, enforce(domain), policy_id=policy_id)


def test_sts_09_dangling_cname_gives_no_policy(fe, world):
    check_no_policy_no_fetch(fe, world, "txt-cname-dangling.example", "no_record")


def test_sts_10_duplicate_txt_id_first_wins(fe, world):
    domain = "txt-duplicate-id-first-wins.example"
    check_policy(fe, world, domain, enforce(domain), policy_id="abc")


def test_sts_10_duplicate_policy_mode_first_wins(fe, world):
    domain = "pol-duplicate-mode-first-wins.example"
    _, entry = check_policy(fe, world, domain, ("testing", f"mx1.{domain}", ""))
    assert entry["policy"]["mode"] == "testing"


def test_sts_10_duplicate_policy_max_age_first_wins(fe, world):
    domain = "pol-duplicate-max-age-first-wins.example"
    _, entry = check_policy(fe, world, domain, enforce(domain))
    p = entry["policy"]
    assert p["max_age"] == 86400 and p["expires_at"] - p["fetched_at"] == 86400, p


def test_sts_11_policy_url_method_host_and_path(fe, world):
    assert fe.answers("enforce.example").getmta == "enforce"
    requests = gets(world, "enforce.example")
    assert len(requests) == 1, requests
    r = requests[0]
    assert (r["method"], r["path"], r["sni"]) == ("GET", WELL_KNOWN, "mta-sts.enforce.example")
    # A non-default port belongs in Host (RFC 9110 §7.2); the world's port is not 443.
    assert r["host"] in ("mta-sts.enforce.example",
                         f"mta-sts.enforce.example:{world.https_port}"), r
    assert [c["sni"] for c in world.connections()] == ["mta-sts.enforce.example"]


def test_sts_11_cname_delegation_still_fetches_from_the_policy_domain(fe, world):
    domain = "txt-cname-delegation.example"
    assert fe.answers(domain).triple() == enforce(domain)
    assert len(gets(world, domain)) == 1
    assert gets(world, "sts-provider.test") == []
    assert world.dns_queries("mta-sts.sts-provider.test") == []
    assert world.connections("mta-sts.sts-provider.test") == []
    assert {c["sni"] for c in world.connections()} == {f"mta-sts.{domain}"}


# --------------------------------------------------------------------------------------------
# STS-12 .. STS-16: the policy file


@pytest.mark.parametrize("vector", ["ct-text-html", "ct-missing", "ct-application-octet-stream"])
def test_sts_12_media_type_must_be_text_plain(fe, world, vector):
    entry = check_fetch_fails(fe, world, f"{vector}.example", "policy_syntax")
    assert "Content-Type" in entry["last_error"], entry


@pytest.mark.parametrize("vector", ["ct-text-plain-charset-utf8", "ct-text-plain-charset-us-ascii",
                                    "ct-text-plain-charset-latin1", "ct-text-plain-mixed-case",
                                    "ct-text-plain-extra-params"])
def test_sts_12_text_plain_with_parameters_accepted(fe, world, vector):
    domain = f"{vector}.example"
    check_policy(fe, world, domain, enforce(domain))


@pytest.mark.parametrize("vector", [
    "pol-version-stsv2", "pol-mode-capitalised", "pol-max-age-11-digits", "pol-invalid-body",
    "pol-missing-version", "pol-missing-mode", "pol-missing-max-age", "pol-key-capitalised",
    "pol-version-lowercase", "pol-mode-unknown", "pol-max-age-negative",
    "pol-max-age-plus-sign"])
def test_sts_13_required_fields_and_values(fe, world, vector):
    check_fetch_fails(fe, world, f"{vector}.example", "policy_syntax")


@pytest.mark.parametrize("vector,max_age", [("pol-max-age-over-limit", 31557600),
                                            ("pol-max-age-10-digits", 31557600)])
def test_sts_13_max_age_clamped_to_the_rfc_cap(fe, world, vector, max_age):
    domain = f"{vector}.example"
    _, entry = check_policy(fe, world, domain, enforce(domain))
    p = entry["policy"]
    assert p["max_age"] == max_age and p["expires_at"] - p["fetched_at"] == max_age, p


def test_sts_13_max_age_zero_applies_to_one_delivery_only(fe, world):
    domain = "pol-max-age-zero.example"
    assert fe.getmta(domain) == "enforce"
    assert fe.getmta(domain) == "enforce"
    assert len(gets(world, domain)) == 2, "a max_age 0 policy was served from the cache"
    assert fe.entry(domain)["policy"]["max_age"] == 0


def test_sts_13_modes(fe, world):
    assert fe.answers("testing.example").triple() == ("testing", "mx1.testing.example", "")
    # Mode none is a policy (it keeps its mx list for getmx) but nothing is enforced.
    assert fe.answers("none.example").triple() == ("none", "mx1.none.example", "")
    assert fe.getmta("none.example", "elsewhere.example") == ""
    assert fe.entry("none.example")["policy"]["mode"] == "none"


@pytest.mark.parametrize("vector", [
    "pol-enforce-no-mx", "pol-testing-no-mx", "pol-mx-one-invalid-one-valid", "pol-mx-u-label",
    "pol-mx-double-wildcard", "pol-mx-partial-wildcard", "pol-mx-address-literal",
    "pol-mx-underscore", "pol-mx-with-port"])
def test_sts_14_mx_required_and_ldh(fe, world, vector):
    check_fetch_fails(fe, world, f"{vector}.example", "policy_syntax")


def test_sts_14_mode_none_needs_no_mx(fe, world):
    domain = "pol-none-no-mx.example"
    _, entry = check_policy(fe, world, domain, ("none", "", ""))
    assert entry["policy"]["mode"] == "none" and entry["policy"]["mx"] == [], entry


@pytest.mark.parametrize("vector,patterns", [
    ("pol-mx-wildcard", ["*.mx.{d}"]),
    ("pol-mx-several", ["mx1.{d}", "mx2.{d}", "*.backup.{d}"]),
    ("pol-mx-upper-case", ["mx1.{d}"]),  # DNS names compare case-insensitively
])
def test_sts_14_mx_lines(fe, world, vector, patterns):
    domain = f"{vector}.example"
    check_policy(fe, world, domain, enforce(domain, *(p.format(d=domain) for p in patterns)))
    assert fe.getmta(domain, patterns[0].format(d=domain).replace("*", "a")) == ""
    assert fe.getmta(domain, f"other.{domain}") == "0"


@pytest.mark.parametrize("vector", ["pol-lf-only", "pol-crlf", "pol-mixed-crlf-lf",
                                    "pol-no-final-newline", "pol-trailing-space",
                                    "pol-trailing-tab", "pol-no-space-after-colon",
                                    "pol-tab-after-colon"])
def test_sts_15_line_ends_and_whitespace_accepted(fe, world, vector):
    domain = f"{vector}.example"
    check_policy(fe, world, domain, enforce(domain))


@pytest.mark.parametrize("vector", ["pol-cr-only", "pol-space-before-colon",
                                    "pol-leading-whitespace", "pol-comment-line",
                                    "pol-blank-line"])  # blank line: "either", we are strict
def test_sts_15_bad_line_syntax_rejected(fe, world, vector):
    check_fetch_fails(fe, world, f"{vector}.example", "policy_syntax")


@pytest.mark.parametrize("vector,patterns", [
    ("pol-unknown-keys", ["mx1.{d}"]), ("pol-fields-any-order", ["mx1.{d}"]),
    ("pol-unknown-key-utf8-value", ["mx1.{d}"]),
    ("pol-mx-interleaved", ["mx1.{d}", "mx2.{d}", "*.mx3.{d}", "mx4.{d}"])])
def test_sts_16_unknown_keys_and_any_order(fe, world, vector, patterns):
    domain = f"{vector}.example"
    check_policy(fe, world, domain, enforce(domain, *(p.format(d=domain) for p in patterns)))


# --------------------------------------------------------------------------------------------
# STS-17, STS-34, STS-35: caching by max_age and id


def test_sts_17_policy_cached_for_max_age(fe, world):
    domain = name("sts17", fe)
    # The TXT answer is good for a day (RFC 8461 §8.1): only max_age bounds the cache here.
    publish(world, domain, body=policy(mx=[f"mx1.{domain}"], max_age=600), ttl=DAY)
    first = fe.answers(domain)
    assert first.triple() == enforce(domain)
    fetched_at = fe.entry(domain)["policy"]["fetched_at"]
    assert fe.entry(domain)["policy"]["expires_at"] == fetched_at + 600
    world.clear_log()

    mid = fe.answers(domain, at=300)
    assert mid.triple() == enforce(domain)
    assert mid.source in (None, "cache"), mid
    assert world.dns_queries() == [] and gets(world, domain) == [], "not served from the cache"

    late = fe.answers(domain, at=700)
    assert late.triple() == enforce(domain)
    assert late.source in (None, "network"), late
    assert len(gets(world, domain)) == 1, "an expired policy (same id) was not fetched again"
    assert fe.entry(domain)["policy"]["fetched_at"] >= fetched_at + 700


def test_sts_34_expired_policy_with_same_id_is_fetched_again(fe, world):
    domain = name("sts34", fe)
    publish(world, domain, policy_id="same1", body=policy(mx=[f"mx1.{domain}"], max_age=1200),
            ttl=DAY)
    assert fe.answers(domain).triple() == enforce(domain)
    # Same TXT id, new policy text: only a fetch can see it.
    world.set_https(f"mta-sts.{domain}", {"body": policy(mx=[f"mx2.{domain}"], max_age=1200)})
    world.clear_log()
    assert fe.answers(domain, at=1100).triple() == enforce(domain)  # still fresh
    assert gets(world, domain) == []
    got = fe.answers(domain, at=1300)
    assert got.triple() == enforce(domain, f"mx2.{domain}"), got
    assert len(gets(world, domain)) == 1
    assert fe.entry(domain)["policy"]["id"] == "same1"


@pytest.mark.parametrize("variant", ["same-id", "id-changed-new-mx"])
def test_sts_35_same_id_no_fetch_new_id_fetch(fe, world, variant):
    domain = name("sts35", fe, variant)
    # The TXT answer is good for a day (RFC 8461 §8.1): cached until then, however slow the
    # machine is between two calls.
    publish(world, domain, policy_id="v1", body=policy(mx=[f"mx1.{domain}"], max_age=7 * DAY),
            ttl=DAY)
    assert fe.answers(domain).triple() == enforce(domain)
    # The served body changes either way, so a fetch would be visible in the answer.
    world.set_https(f"mta-sts.{domain}", {"body": policy(mx=[f"mx2.{domain}"], max_age=7 * DAY)})
    if variant == "id-changed-new-mx":
        world.set_dns(f"_mta-sts.{domain}", {"TXT": [["v=STSv1; id=v2;"]]})
    world.clear_log()

    # Immediately: the entry is fresh, nothing is asked at all.
    assert fe.answers(domain).triple() == enforce(domain)
    assert world.dns_queries() == []

    # After the TTL the TXT id is compared.
    got = fe.answers(domain, at=DAY + 600)
    assert sh.sts_txt_queries(world, domain), "the TXT id was not re-checked"
    entry = fe.entry(domain)
    if variant == "same-id":
        assert got.triple() == enforce(domain), got
        assert gets(world, domain) == []
        assert entry["policy"]["id"] == "v1"
    else:
        assert got.triple() == enforce(domain, f"mx2.{domain}"), got
        assert len(gets(world, domain)) == 1
        assert entry["policy"]["id"] == "v2"
        if got.query:
            assert got.query["answer"]["id"] == "v2" and got.source == "network", got.query


# --------------------------------------------------------------------------------------------
# STS-18 .. STS-24: fetching


@pytest.mark.parametrize("vector", ["https-cert-expired", "https-cert-wrong-name",
                                    "https-cert-self-signed", "https-cert-cn-only",
                                    "https-cert-untrusted", "deep.https-cert-wildcard-too-deep",
                                    "https-cert-for-provider-under-delegation"])
def test_sts_18_bad_policy_host_certificate(fe, world, vector):
    domain = f"{vector}.example"
    check_fetch_fails(fe, world, domain, "webpki_invalid", requests=0)
    # The TLS handshake was tried (with SNI = the policy host) and abandoned before any request.
    assert world.connections(f"mta-sts.{domain}"), world.connections()


@pytest.mark.parametrize("vector", ["https-cert-valid", "https-cert-wildcard"])
def test_sts_18_valid_and_wildcard_certificates(fe, world, vector):
    domain = f"{vector}.example"
    check_policy(fe, world, domain, enforce(domain))


def test_sts_19_no_revocation_traffic(fe, world):
    # Revocation checking (a MAY) is not implemented: a fetch talks to the policy host only,
    # with no OCSP or CRL lookups; the answer does not depend on any.
    domain = "https-cert-valid.example"
    assert fe.answers(domain).triple() == enforce(domain)
    assert {q["name"] for q in world.dns_queries()} <= {
        f"_mta-sts.{domain}", f"_smtp._tls.{domain}", f"mta-sts.{domain}"}
    assert {c["sni"] for c in world.connections()} == {f"mta-sts.{domain}"}
    assert [(r["method"], r["path"]) for r in world.https_requests()] == [("GET", WELL_KNOWN)]


@pytest.mark.parametrize("vector,status", [("http-404", 404), ("http-500", 500),
                                           ("http-201-with-valid-body", 201),
                                           ("http-203-with-valid-body", 203),
                                           ("http-204-no-content", 204)])
def test_sts_20_only_status_200_gives_a_policy(fe, world, vector, status):
    entry = check_fetch_fails(fe, world, f"{vector}.example", "fetch_failed")
    assert f"HTTP {status} " in entry["last_error"], entry


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_sts_21_redirects_not_followed(fe, world, status):
    entry = check_fetch_fails(fe, world, f"http-{status}-to-valid-policy.example", "fetch_failed")
    assert f"HTTP {status} " in entry["last_error"] and "redirect" in entry["last_error"]
    target = "mta-sts.redirect-target.example"
    assert world.dns_queries(target) == []
    assert world.connections(target) == []
    assert world.https_requests(target) == []


def test_sts_22_no_http_caching(fe, world):
    domain = name("sts22", fe)
    caching = {"Cache-Control": "max-age=86400", "ETag": '"policy-a"',
               "Last-Modified": "Mon, 01 Jan 2024 00:00:00 GMT", "Expires":
               "Thu, 01 Jan 2099 00:00:00 GMT"}
    publish(world, domain, policy_id="a1", headers=caching,
            body=policy(mx=[f"mx1.{domain}"], max_age=7 * DAY))
    assert fe.answers(domain).triple() == enforce(domain)
    world.set_dns(f"_mta-sts.{domain}", {"TXT": [["v=STSv1; id=b2;"]]})
    world.set_https(f"mta-sts.{domain}", {"body": policy(mx=[f"mx2.{domain}"], max_age=7 * DAY),
                                          "headers": {**caching, "ETag": '"policy-b"'}})
    got = fe.answers(domain, at=DAY + 600)
    assert got.triple() == enforce(domain, f"mx2.{domain}"), got
    requests = gets(world, domain)
    assert len(requests) == 2, "the second policy did not come from the server"
    for r in requests:
        sent = set(r["headers"])
        assert not sent & set(sh.CONDITIONAL_HEADERS), r["raw_headers"]
    entry = fe.entry(domain)
    assert entry["policy"]["id"] == "b2" and f"mx2.{domain}" in entry["policy"]["text"]


def test_sts_23_failed_fetch_backs_off_five_minutes(fe, world):
    domain = name("sts23", fe)
    publish(world, domain, policy_id="bad1", status=500)
    assert fe.getmta(domain) == "none"
    first = fe.entry(domain)
    assert first["failed_id"] == "bad1" and first["retry_fetch_at"] >= first["checked_at"] + 300
    # Ten messages within four minutes: one GET for that id.
    for at in range(20, 200, 20):
        assert fe.getmta(domain, at=at) == "none"
    assert len(gets(world, domain)) == 1, gets(world, domain)
    entry = fe.entry(domain)
    assert entry["failed_id"] == "bad1" and entry["failures"] == 1, entry
    assert entry["retry_fetch_at"] == first["retry_fetch_at"], entry
    assert len(sh.sts_txt_queries(world, domain)) >= 2, "the TXT id was never re-checked"

    # A new id may be fetched at once, inside the old id's backoff.
    world.set_dns(f"_mta-sts.{domain}", {"TXT": [["v=STSv1; id=bad2;"]]})
    assert fe.getmta(domain, at=260) == "none"
    assert len(gets(world, domain)) == 2
    assert fe.entry(domain)["failed_id"] == "bad2"


def test_sts_23_backoff_survives_a_flapping_record(make_fe, world):
    # The record of the failed id is missing for a while (a half-updated zone) and comes back
    # within five minutes; negative_ttl = 60 lets DNS be asked again after a minute.
    fe = make_fe(extra_config="negative_ttl = 60")
    domain = name("sts23", fe, "flap")
    publish(world, domain, policy_id="bad1", status=500)
    assert fe.getmta(domain) == "none"
    world.delete_dns(f"_mta-sts.{domain}")
    assert fe.getmta(domain, at=70) == "none"
    world.set_dns(f"_mta-sts.{domain}", {"TXT": [["v=STSv1; id=bad1;"]]})
    assert fe.getmta(domain, at=140) == "none"
    assert len(sh.sts_txt_queries(world, domain)) == 3, "DNS was not asked each time"
    assert len(gets(world, domain)) == 1, "the failed id was fetched again inside its backoff"
    assert fe.getmta(domain, at=320) == "none"
    assert len(gets(world, domain)) == 2


def test_sts_23_backoff_with_a_cached_policy(fe, world):
    # A new id whose fetch fails while the old policy is cached (STS-26): the cached policy
    # answers, and the new id is tried once per backoff period, not per message.
    domain = name("sts23", fe, "cached")
    publish(world, domain, policy_id="good1", body=policy(mx=[f"mx1.{domain}"], max_age=7 * DAY))
    assert fe.getmta(domain) == "enforce"
    world.set_dns(f"_mta-sts.{domain}", {"TXT": [["v=STSv1; id=bad2;"]]})
    world.set_https(f"mta-sts.{domain}", {"status": 500})
    world.clear_log()
    for at in range(DAY, DAY + 200, 20):
        assert fe.getmta(domain, at=at) == "enforce"
    assert len(gets(world, domain)) == 1, gets(world, domain)
    assert len(sh.sts_txt_queries(world, domain)) >= 2
    entry = fe.entry(domain)
    assert (entry["policy"]["id"], entry["failed_id"], entry["failures"]) == ("good1", "bad2", 1)
    # Once the backoff has run out, the id is tried again.
    assert fe.getmta(domain, at=DAY + 400) == "enforce"
    assert len(gets(world, domain)) == 2
    entry = fe.entry(domain)
    assert entry["failures"] == 2 and entry["retry_fetch_at"] >= entry["checked_at"] + 600, entry


# (vector, expected answer) of the fetch bounds; run in parallel, each with its own cache.
BOUNDED = [("https-timeout", None), ("https-trickle", None), ("https-endless-chunked", None),
           ("https-endless-headers", None), ("https-handshake-stall", None),
           ("https-blackhole", None), ("https-huge-body", None),
           ("body-just-under-64000-bytes", "enforce")]


def test_sts_24_fetch_is_bounded_in_time_and_size(make_fe, world):
    def one(vector):
        front = make_fe()
        return vector, front, front.answers(f"{vector}.example")

    with ThreadPoolExecutor(len(BOUNDED)) as pool:
        results = list(pool.map(one, [v for v, _ in BOUNDED]))
    bound = sh.FETCH_TIMEOUT_MS / 1000 + 3  # the fetch deadline plus start-up and DNS slack
    for (vector, expected), (_, front, got) in zip(BOUNDED, results):
        domain = f"{vector}.example"
        assert got.elapsed < bound, f"{vector}: {got.elapsed:.1f} s"
        if expected == "enforce":  # 63999 bytes is under max_policy_bytes (65536)
            assert got.triple() == enforce(domain), (vector, got)
            continue
        assert got.triple() == NO_POLICY, (vector, got)
        entry = front.entry(domain)
        assert entry["unavailable"] and entry["last_error"].startswith("fetch_failed:"), entry
    errors = {v: f.entry(f"{v}.example")["last_error"] for (v, _), (_, f, _) in
              zip(BOUNDED, results) if v in ("https-timeout", "https-huge-body")}
    assert "did not answer within" in errors["https-timeout"], errors
    assert "exceeds" in errors["https-huge-body"], errors


# --------------------------------------------------------------------------------------------
# STS-25 .. STS-28: when no policy can be had


@pytest.mark.parametrize("vector,category", [
    ("http-404", "fetch_failed"), ("https-cert-expired", "webpki_invalid"),
    ("ct-text-html", "policy_syntax"), ("pol-invalid-body", "policy_syntax"),
    ("pol-enforce-no-mx", "policy_syntax"), ("https-refused", "fetch_failed"),
    ("https-host-nxdomain", "fetch_failed")])
def test_sts_25_fetch_failure_without_cache_delivers_as_no_sts(fe, world, vector, category):
    domain = f"{vector}.example"
    requests = 0 if category == "webpki_invalid" or vector.startswith("https-") else 1
    check_fetch_fails(fe, world, domain, category, requests=requests)
    assert fe.getmta(domain, f"mx1.{domain}") == ""
    assert fe.getmta(domain, "anything.invalid") == ""  # no MX filtering either


def test_sts_25_strict_opt_in_answers_fail(make_fe, world):
    # The opt-in of design §2.4, for contrast: the same vector held back instead of delivered.
    strict = make_fe(strict=True)
    assert strict.answers("http-404.example").triple() == ("fail", "", "")


@pytest.mark.parametrize("variant", ["id-changed-fetch-404", "id-changed-new-invalid"])
def test_sts_26_cached_policy_applies_when_no_live_policy(fe, world, variant):
    domain = name("sts26", fe, variant)
    publish(world, domain, policy_id="v1", body=policy(mx=[f"mx1.{domain}"], max_age=7 * DAY))
    assert fe.answers(domain).triple() == enforce(domain)
    world.set_dns(f"_mta-sts.{domain}", {"TXT": [["v=STSv1; id=v2;"]]})
    if variant == "id-changed-fetch-404":
        world.set_https(f"mta-sts.{domain}", {"status": 404, "body": "not found"})
    else:  # the new policy lacks max_age
        world.set_https(f"mta-sts.{domain}",
                        {"body": f"version: STSv1\nmode: enforce\nmx: mx2.{domain}\n"})
    world.clear_log()
    got = fe.answers(domain, at=DAY + 600)
    assert got.triple() == enforce(domain), got  # the cached mx list, not mx2
    assert fe.getmta(domain, f"mx2.{domain}", at=DAY + 600) == "0"
    assert len(gets(world, domain)) == 1, "the new id was not tried"
    entry = fe.entry(domain)
    assert entry["policy"]["id"] == "v1" and entry["failed_id"] == "v2", entry
    assert entry["unavailable"] is False
    assert entry["last_error"].startswith(
        "fetch_failed:" if variant == "id-changed-fetch-404" else "policy_syntax:"), entry


def test_sts_27_policy_refreshed_before_expiry(fe, world):
    domain = name("sts27", fe)
    # The TXT record's TTL is two hours: the id is re-checked when it has passed (RFC 8461 §8.1).
    publish(world, domain, policy_id="w1", body=policy(mx=[f"mx1.{domain}"], max_age=7 * DAY),
            ttl=7200)
    assert fe.answers(domain).triple() == enforce(domain)
    entry = fe.entry(domain)
    fetched = entry["policy"]["fetched_at"]
    assert entry["policy"]["expires_at"] == fetched + 7 * DAY
    # txt_max_ttl (1 h by default) caps the two hours.
    assert entry["next_check"] == fetched + 3600, "the re-check is not scheduled an hour ahead"
    assert entry["txt_expires_at"] == fetched + 3600, entry
    world.clear_log()

    # Hourly, the TXT id is re-checked (no traffic before: the first lookup after the TTL).
    assert fe.answers(domain, at=3500).triple() == enforce(domain)
    assert world.dns_queries() == [], "re-checked before the TTL"
    assert fe.answers(domain, at=25 * 3600).triple() == enforce(domain)
    assert sh.sts_txt_queries(world, domain), "no TXT re-check a day later (6 days before expiry)"
    assert gets(world, domain) == []  # same id, policy young: nothing to fetch (STS-35)
    entry = fe.entry(domain)
    assert entry["checked_at"] >= fetched + 25 * 3600
    assert entry["next_check"] == entry["checked_at"] + 3600
    assert entry["policy"]["expires_at"] == fetched + 7 * DAY

    # From half its lifetime on, the policy is fetched again although its id is unchanged, and
    # the fetch renews it.
    got = fe.answers(domain, at=4 * DAY)
    assert got.triple() == enforce(domain)
    assert len(gets(world, domain)) == 1, "no proactive policy refresh before expiry"
    renewed = fe.entry(domain)["policy"]
    assert renewed["id"] == "w1" and renewed["fetched_at"] >= fetched + 4 * DAY
    assert renewed["expires_at"] == renewed["fetched_at"] + 7 * DAY

    # So a policy host that is unreachable around the original expiry changes nothing.
    world.set_https(f"mta-sts.{domain}", {"status": 500})
    assert fe.answers(domain, at=7 * DAY + 3600).triple() == enforce(domain)
    assert fe.entry(domain)["policy"]["expires_at"] == renewed["expires_at"]


def _warnings_cli(fe, domain):
    return [line for line in fe.stderr[-1].splitlines()
            if line.startswith("mtasts: warning:") and domain in line]


def _warnings_syslog(messages, domain):
    # <PRI> = facility mail (2) * 8 + severity; warning is 4, anything below is more severe.
    return [m for m in messages if re.match(r"<(1[6-9]|20)>", m) and domain in m]


def _getmta_and_warnings(fe, domain, at):
    call = [("getmta", domain)]
    if fe.kind == "cli":
        # `query` is the admin's command and logs to stderr; getmta/getmx/ignorelist send their
        # log lines to syslog when stdout is not a terminal (Exim's ${run} reads stderr too).
        answer = json.loads(fe.cli("query", "--json", domain, at=at).stdout)["getmta"]
        return answer, _warnings_cli(fe, domain)
    answers, messages = fe.exim_syslog(call, at=at)
    assert messages, "the module logged nothing to syslog"
    return answers[0], _warnings_syslog(messages, domain)


@pytest.mark.parametrize("trigger", ["same-id-refresh", "new-id"])
@pytest.mark.parametrize("cached_mode", ["enforce", "testing", "none"])
def test_sts_28_failed_refresh_is_surfaced(fe, world, cached_mode, trigger):
    domain = name("sts28", fe, f"{cached_mode}-{trigger}")
    publish(world, domain, policy_id="v1",
            body=policy(cached_mode, mx=[f"mx1.{domain}"], max_age=7 * DAY))
    assert fe.getmta(domain) == cached_mode
    # The policy host fails from now on; with trigger new-id the TXT id changes as well.
    world.set_https(f"mta-sts.{domain}", {"status": 500, "body": "oops"})
    failing_id = "v1"
    if trigger == "new-id":
        world.set_dns(f"_mta-sts.{domain}", {"TXT": [["v=STSv1; id=v2;"]]})
        failing_id = "v2"
    world.clear_log()
    # Same id: the first refresh that fetches is at half the lifetime (3.5 days before expiry).
    at = 4 * DAY if trigger == "same-id-refresh" else DAY + 600
    answer, warnings = _getmta_and_warnings(fe, domain, at)
    assert answer == cached_mode
    assert len(gets(world, domain)) == 1
    assert fe.entry(domain)["policy"]["id"] == "v1"
    if cached_mode == "none":
        assert warnings == [], warnings
    else:
        assert len(warnings) == 1, warnings
        assert f"policy id {failing_id} could not be fetched" in warnings[0], warnings
        assert f"keeping the cached {cached_mode} policy (id v1)" in warnings[0], warnings


# --------------------------------------------------------------------------------------------
# STS-29 .. STS-31: which domain is the policy domain


def test_sts_29_smart_host_domain_is_the_policy_domain(fe, world):
    # Routing through relay.smarthost.example: the admin's router asks about smarthost.example
    # (not the recipient domain), and the relay host must be allowed by that policy.
    domain = "smarthost.example"
    assert fe.answers(domain).triple() == enforce(domain, "mx1.smarthost.example",
                                                  "relay.smarthost.example")
    assert fe.getmta(domain, "relay.smarthost.example") == ""
    assert fe.getmta(domain, "relay.elsewhere.example") == "0"
    sts = {q["name"] for q in world.dns_queries(qtype="TXT") if q["name"].startswith("_mta-sts")}
    assert sts == {"_mta-sts.smarthost.example"}
    # The relay's host name is not a policy domain of its own, and no parent is tried.
    world.clear_log()
    assert fe.answers("relay.smarthost.example").triple() == NO_POLICY
    sts = {q["name"] for q in world.dns_queries(qtype="TXT") if q["name"].startswith("_mta-sts")}
    assert sts == {"_mta-sts.relay.smarthost.example"}


@pytest.mark.parametrize("literal", ["[192.0.2.1]", "[IPv6:2001:db8::1]"])
def test_sts_30_address_literal_has_no_policy_and_no_lookup(fe, world, literal):
    assert fe.calls([("getmta", literal), ("getmx", literal), ("ignorelist", literal)]) == \
        list(NO_POLICY)
    assert fe.getmta(literal, "mx1.enforce.example") == ""
    log = world.log()
    assert (log["dns"], log["https"], log["connections"]) == ([], [], [])
    assert fe.dump() == {}


def test_sts_31_subdomain_never_uses_the_parent_policy(fe, world):
    assert fe.answers("enforce.example").getmta == "enforce"  # the parent's policy is cached
    world.clear_log()
    assert fe.answers("mail.enforce.example").triple() == NO_POLICY
    assert sh.sts_txt_queries(world, "mail.enforce.example")
    assert sh.sts_txt_queries(world, "enforce.example") == []
    assert gets(world, "enforce.example") == []
    assert fe.getmta("mail.enforce.example", "evil.example") == ""

    # ... and without the parent cached: not even a query for _mta-sts.enforce.example.
    fresh = FrontEnd(fe.kind, world, fe.workdir.parent / "fresh", fe.exim_config)
    world.clear_log()
    assert fresh.answers("a.mail.enforce.example").triple() == NO_POLICY
    names = {q["name"] for q in world.dns_queries(qtype="TXT")}
    assert "_mta-sts.a.mail.enforce.example" in names
    assert not names & {"_mta-sts.mail.enforce.example", "_mta-sts.enforce.example"}, names


# --------------------------------------------------------------------------------------------
# STS-33: MX matching; STS-51: internationalized domains


@pytest.mark.parametrize("pattern", list(MX_MATCH))
def test_sts_33_mx_host_matching(fe, world, pattern):
    domain = MX_MATCH_DOMAINS[pattern]
    got = fe.answers(domain)
    assert got.triple() == enforce(domain, pattern), got
    cases = MX_MATCH[pattern]
    answers = fe.calls([("getmta", domain, host) for host, _ in cases])
    assert answers == ["" if allowed else "0" for _, allowed in cases], list(zip(cases, answers))
    # The ignorelist regexes agree for the hosts Exim would see (A-labels, lower case, no dot).
    keep = [r.strip()[2:] for r in got.ignorelist[2:].split(";") if r.strip().startswith("!")]
    for host, allowed in cases:
        if host.isascii() and not host.endswith("."):
            kept = any(re.search(r, host.lower()) for r in keep)
            assert kept == allowed, (host, got.ignorelist)


def test_sts_51_idn_domain_in_a_label_form(fe, world):
    a_label = "xn--mnchen-3ya.example"
    expected = enforce(a_label)
    assert fe.answers("münchen.example").triple() == expected
    assert fe.answers("MÜNCHEN.Example.").triple() == expected
    assert fe.answers(a_label).triple() == expected
    assert fe.getmta("münchen.example", "mx1.münchen.example") == ""
    assert fe.getmta("münchen.example", "MX1.XN--MNCHEN-3YA.EXAMPLE") == ""
    assert fe.getmta("münchen.example", "mx2.münchen.example") == "0"
    names = {q["name"] for q in world.dns_queries()}
    assert f"_mta-sts.{a_label}" in names and all(n.isascii() for n in names), names
    requests = gets(world, a_label)
    assert len(requests) == 1 and requests[0]["sni"] == f"mta-sts.{a_label}", requests
    assert requests[0]["host"].split(":")[0] == f"mta-sts.{a_label}"
    assert list(fe.dump()) == [a_label]
