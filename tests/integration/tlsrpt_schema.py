"""Strict reading and schema validation of RFC 8460 (TLSRPT) aggregate reports.

- load_strict(text): parses a report as I-JSON (RFC 7493, RPT-13): UTF-8, no duplicate member
  names, no NaN/Infinity, integers within +-(2^53 - 1), no unpaired surrogates. Raises
  ValueError saying what is wrong.
- report_errors(obj): every way `obj` breaks tests/data/tlsrpt/rfc8460-report.schema.json, as
  (path, message) pairs, path like "policies/0/policy/mx-host"; [] when it conforms.
- validate_report(obj): raises AssertionError listing report_errors(obj) unless it is [].

Formats are checked by checkers defined here (date-time per RFC 3339 §5.6, ipv6 by the standard
library), not by whatever optional packages jsonschema finds, so the result is the same on
every machine. "integer" means a JSON integer: 5.0 is not a count.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import re
from pathlib import Path

try:
    import jsonschema
except ImportError as error:  # fail, naming the package, rather than skip
    raise ImportError("the TLSRPT schema tests need jsonschema: apt-get install "
                      "python3-jsonschema (scripts/install-deps.sh installs it)") from error

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "data" / "tlsrpt" / "rfc8460-report.schema.json"
MAX_INTEGER = 2**53 - 1  # I-JSON, RFC 7493 §2.2

_DATE_TIME = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.\d+)?"
                        r"(?:[Zz]|[+-](\d{2}):(\d{2}))$")


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON (I-JSON has no NaN or Infinity)")


def _parse_int(text: str) -> int:
    value = int(text)
    if abs(value) > MAX_INTEGER:
        raise ValueError(f"integer {text} is outside I-JSON's range of +-(2^53 - 1)")
    return value


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    seen: dict = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"duplicate member name {key!r}")
        seen[key] = value
    return seen


def _check_strings(value: object, where: str = "") -> None:
    """I-JSON §2.1: no unpaired surrogates (json.loads lets "\\ud800" through)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as error:
            raise ValueError(f"unpaired surrogate in the string at {where or '/'}") from error
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_strings(key, f"{where}/{key}")
            _check_strings(item, f"{where}/{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_strings(item, f"{where}/{index}")


def load_strict(text: str | bytes) -> object:
    """The JSON value of `text` (bytes must be UTF-8 without a BOM), read as I-JSON."""
    if isinstance(text, bytes):
        if text.startswith(b"\xef\xbb\xbf"):
            raise ValueError("the report starts with a byte order mark (RFC 8259 §8.1)")
        text = text.decode("utf-8")  # UnicodeDecodeError is a ValueError
    value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant,
                       parse_int=_parse_int)
    _check_strings(value)
    return value


def _is_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True  # "format" applies to strings only
    match = _DATE_TIME.match(value)
    if not match:
        return False
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    try:
        datetime.date(year, month, day)
    except ValueError:
        return False
    if hour > 23 or minute > 59 or second > 60:  # 60: a leap second
        return False
    if match.group(7) is not None and (int(match.group(7)) > 23 or int(match.group(8)) > 59):
        return False
    return True


def _is_ipv6(value: object) -> bool:
    if not isinstance(value, str):
        return True
    try:
        ipaddress.IPv6Address(value)
    except ValueError:
        return False
    return True


def _format_checker() -> jsonschema.FormatChecker:
    checker = jsonschema.FormatChecker(formats=())
    checker.checks("date-time")(_is_date_time)
    checker.checks("ipv6")(_is_ipv6)
    return checker


def _validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA_PATH.read_text())
    base = jsonschema.Draft202012Validator
    base.check_schema(schema)
    type_checker = base.TYPE_CHECKER.redefine(
        "integer", lambda _, value: isinstance(value, int) and not isinstance(value, bool))
    strict = jsonschema.validators.extend(base, type_checker=type_checker)
    return strict(schema, format_checker=_format_checker())


_VALIDATOR = _validator()


def report_errors(obj: object) -> list[tuple[str, str]]:
    """(path, message) for each schema violation, sorted by path."""
    errors = []
    for error in _VALIDATOR.iter_errors(obj):
        errors.append(("/".join(str(p) for p in error.absolute_path), error.message))
    return sorted(errors)


def validate_report(obj: object) -> None:
    errors = report_errors(obj)
    assert errors == [], "the report breaks the RFC 8460 schema:\n  " + "\n  ".join(
        f"{path or '/'}: {message}" for path, message in errors)
