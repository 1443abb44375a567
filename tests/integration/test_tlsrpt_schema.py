"""The RFC 8460 report schema (tests/data/tlsrpt/rfc8460-report.schema.json) against the RFC's
own example and against mtasts's report builder (RPT-13, RPT-14, RPT-17, RPT-21, RPT-22).

- rfc8460-appendix-b.json is RFC 8460 Appendix B as published, with one change: the RFC's text
  rendering breaks the additional-information string over two lines, which is not JSON; the two
  halves are joined, the value otherwise kept as printed (spaces included). As published the
  example breaks the schema in one place only: mx-host is a string where §4.4 says array
  (rfc-checklist §6 item 13).
- report-two-policies.json is byte for byte what build_report makes of the tallies in
  tests/unit/core/test-tlsrpt_report_cc.cpp, which reads this same file.
- Cases that must fail show the schema is not vacuous.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from tlsrpt_schema import load_strict, report_errors, validate_report

DATA = Path(__file__).resolve().parents[1] / "data" / "tlsrpt"


def appendix_b() -> dict:
    return load_strict((DATA / "rfc8460-appendix-b.json").read_bytes())


def our_report() -> dict:
    return load_strict((DATA / "report-two-policies.json").read_bytes())


def test_appendix_b_as_published_fails_only_on_the_mx_host_string():
    errors = report_errors(appendix_b())
    assert [path for path, _ in errors] == ["policies/0/policy/mx-host"], errors
    assert "is not of type 'array'" in errors[0][1]


def test_appendix_b_with_mx_host_as_an_array_conforms():
    report = appendix_b()
    policy = report["policies"][0]["policy"]
    policy["mx-host"] = [policy["mx-host"]]
    validate_report(report)


def test_the_report_mtasts_builds_conforms():
    report = our_report()
    validate_report(report)
    # What the C++ test pins is the shape the task asks for: two policies, sorted tlsa first.
    assert [p["policy"]["policy-type"] for p in report["policies"]] == ["tlsa", "sts"]
    assert report["policies"][0]["failure-details"] == []
    assert "mx-host" not in report["policies"][0]["policy"]


def test_the_report_file_is_utf8_json_with_a_final_newline_only():
    raw = (DATA / "report-two-policies.json").read_bytes()
    assert raw.endswith(b"}\n") and not raw.endswith(b"\n\n")
    raw.decode("utf-8")


def _mutated(change) -> dict:
    report = copy.deepcopy(our_report())
    change(report)
    return report


def _set(path: list, value):
    def change(report: dict):
        target = report
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return change


def _delete(path: list):
    def change(report: dict):
        target = report
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
    return change


BAD = [
    ("unknown result-type", _set(["policies", 1, "failure-details", 0, "result-type"],
                                 "certificate-revoked"), "policies/1/failure-details/0/result-type"),
    ("result-type as libtlsrpt's number", _set(["policies", 1, "failure-details", 0,
                                                "result-type"], 204),
     "policies/1/failure-details/0/result-type"),
    ("count as a float", _set(["policies", 1, "summary", "total-successful-session-count"], 5.0),
     "policies/1/summary/total-successful-session-count"),
    ("count as a string", _set(["policies", 1, "failure-details", 0, "failed-session-count"], "1"),
     "policies/1/failure-details/0/failed-session-count"),
    ("negative count", _set(["policies", 0, "summary", "total-failure-session-count"], -1),
     "policies/0/summary/total-failure-session-count"),
    ("count as a boolean", _set(["policies", 0, "summary", "total-failure-session-count"], True),
     "policies/0/summary/total-failure-session-count"),
    ("no report-id", _delete(["report-id"]), ""),
    ("no summary", _delete(["policies", 0, "summary"]), "policies/0"),
    ("no failed-session-count", _delete(["policies", 1, "failure-details", 1,
                                         "failed-session-count"]), "policies/1/failure-details/1"),
    ("policies not an array", _set(["policies"], {"policy": {}}), "policies"),
    ("unknown policy-type", _set(["policies", 0, "policy", "policy-type"], "dane"),
     "policies/0/policy/policy-type"),
    ("U-label policy-domain (RPT-22)", _set(["policies", 1, "policy", "policy-domain"],
                                            "münchen.example"), "policies/1/policy/policy-domain"),
    ("U-label mx-host", _set(["policies", 1, "policy", "mx-host"], ["mx.münchen.example"]),
     "policies/1/policy/mx-host/0"),
    ("mx-host on a tlsa policy", _set(["policies", 0, "policy", "mx-host"], ["mx1.example.com"]),
     "policies/0/policy"),
    ("policy-string not an array", _set(["policies", 1, "policy", "policy-string"],
                                        "version: STSv1"), "policies/1/policy/policy-string"),
    ("date without a time", _set(["date-range", "start-datetime"], "2026-12-07"),
     "date-range/start-datetime"),
    ("date with a space", _set(["date-range", "start-datetime"], "2026-12-07 00:00:00Z"),
     "date-range/start-datetime"),
    ("no such day", _set(["date-range", "end-datetime"], "2026-02-30T23:59:59Z"),
     "date-range/end-datetime"),
    ("hour 24", _set(["date-range", "end-datetime"], "2026-12-07T24:00:00Z"),
     "date-range/end-datetime"),
    ("no time zone", _set(["date-range", "end-datetime"], "2026-12-07T23:59:59"),
     "date-range/end-datetime"),
    ("IPv4 with a leading zero", _set(["policies", 1, "failure-details", 0, "sending-mta-ip"],
                                      "192.0.2.010"), "policies/1/failure-details/0/sending-mta-ip"),
    ("IPv4 out of range", _set(["policies", 1, "failure-details", 0, "receiving-ip"],
                               "198.51.100.256"), "policies/1/failure-details/0/receiving-ip"),
    ("IPv6 that is not one", _set(["policies", 1, "failure-details", 1, "receiving-ip"],
                                  "2001:db8::1::2"), "policies/1/failure-details/1/receiving-ip"),
    ("hostname as sending-mta-ip", _set(["policies", 1, "failure-details", 1, "sending-mta-ip"],
                                        "mail.example.net"),
     "policies/1/failure-details/1/sending-mta-ip"),
    ("MX name with a trailing dot", _set(["policies", 1, "failure-details", 0,
                                          "receiving-mx-hostname"], "mx1.example.com."),
     "policies/1/failure-details/0/receiving-mx-hostname"),
    ("additional-info-uri instead of additional-information",
     _set(["policies", 1, "failure-details", 0, "additional-info-uri"], "https://x.example/"),
     "policies/1/failure-details/0"),
    ("additional-information not a URI", _set(["policies", 1, "failure-details", 1,
                                               "additional-information"], "see the logs"),
     "policies/1/failure-details/1/additional-information"),
    ("unknown top-level member", _set(["version"], 1), ""),
    ("contact-info without @", _set(["contact-info"], "tlsrpt admin"), "contact-info"),
]


@pytest.mark.parametrize("name,change,path", BAD, ids=[row[0] for row in BAD])
def test_the_schema_refuses(name, change, path):
    errors = report_errors(_mutated(change))
    assert errors, f"{name}: accepted"
    assert path in [p for p, _ in errors], f"{name}: errors elsewhere: {errors}"
    with pytest.raises(AssertionError):
        validate_report(_mutated(change))


def test_optional_members_may_be_left_out():
    report = our_report()
    detail = report["policies"][1]["failure-details"][1]
    for key in ("sending-mta-ip", "receiving-mx-hostname", "receiving-mx-helo", "receiving-ip",
                "additional-information", "failure-reason-code"):
        del detail[key]
    del report["policies"][0]["failure-details"]
    del report["policies"][0]["policy"]["policy-string"]
    validate_report(report)


def test_rfc3339_forms_the_rfc_allows():
    for value in ("2026-12-07T00:00:00+01:00", "2026-12-07t00:00:00z",
                  "2016-12-31T23:59:60Z", "2026-12-07T00:00:00.250Z"):
        report = our_report()
        report["date-range"]["start-datetime"] = value
        validate_report(report)


BAD_JSON = [
    ("duplicate member", b'{"report-id": "a", "report-id": "b"}', "duplicate member name"),
    ("nested duplicate", b'{"a": {"x": 1, "x": 1}}', "duplicate member name"),
    ("NaN", b'{"a": NaN}', "NaN"),
    ("Infinity", b'{"a": -Infinity}', "Infinity"),
    ("integer beyond 2^53 - 1", b'{"a": 9007199254740992}', "I-JSON"),
    ("unpaired surrogate", b'{"a": "\\ud800"}', "surrogate"),
    ("byte order mark", b'\xef\xbb\xbf{"a": 1}', "byte order mark"),
    ("not UTF-8", b'{"a": "\xff"}', "utf-8"),
    ("truncated", b'{"a": ', "Expecting value"),
]


@pytest.mark.parametrize("name,text,message", BAD_JSON, ids=[row[0] for row in BAD_JSON])
def test_load_strict_refuses(name, text, message):
    with pytest.raises(ValueError, match=message):
        load_strict(text)


def test_load_strict_reads_what_ijson_allows():
    assert load_strict(b'{"a": [9007199254740991, -9007199254740991, "\\ud83d\\ude00"]}') == {
        "a": [9007199254740991, -9007199254740991, "\U0001F600"]}
    assert load_strict('{"n": "M\u00fcnchen"}') == {"n": "München"}
