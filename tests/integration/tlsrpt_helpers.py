"""Helpers for the TLSRPT tests (test_tlsrpt_*.py).

- `datagram()`: the exact bytes sys4's libtlsrpt (>= 0.5, used by Postfix >= 3.10) sends for one
  delivery request, built the way libtlsrpt.c writes them: `{"dpv": "1","d": "…","pr": "…"`,
  then `,"policies":[{"policy-type":N,"policy-domain": "…"` with `,"policy-string":[…]`,
  `,"mx-host":[…]`, `,"failure-details":[{"c":N,"s": "…",…}]` only when non-empty, and
  `,"t":FAILURES,"f":FINAL}` per policy, then `]}`. String attributes have a space after the
  colon, numbers none; its escape table turns control bytes into \\uXXXX (\\b \\t \\n \\f \\r
  named), '"' and '\\' escaped, every other byte (UTF-8 too) verbatim.
- `send_datagrams()`: sends them to a Unix datagram socket, as Postfix does (but blocking, so
  a test never loses one to a full queue).
- A sendmail stand-in that stores each message with its argv, and readers for the report
  files and mails (gzip, MIME).
"""

from __future__ import annotations

import email
import email.policy
import gzip
import json
import re
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import exim_helpers as eh

TLSA, STS, NO_POLICY = 1, 2, 9
RESULT_CODES = {
    "starttls-not-supported": 201, "certificate-host-mismatch": 202,
    "certificate-not-trusted": 203, "certificate-expired": 204, "validation-failure": 205,
    "sts-policy-fetch-error": 301, "sts-policy-invalid": 302, "sts-webpki-invalid": 303,
    "tlsa-invalid": 304, "dnssec-invalid": 305, "dane-required": 306,
}
FILENAME = re.compile(r"^[a-z0-9.-]+![a-z0-9.-]+![0-9]+![0-9]+(![a-z0-9]+)?\.json(\.gz)?$", re.I)


def _escape(text: str) -> str:
    out = []
    for byte in text.encode():
        if byte == 0x22:
            out.append('\\"')
        elif byte == 0x5C:
            out.append("\\\\")
        elif byte in (0x08, 0x09, 0x0A, 0x0C, 0x0D):
            out.append({8: "\\b", 9: "\\t", 10: "\\n", 12: "\\f", 13: "\\r"}[byte])
        elif byte < 0x20:
            out.append(f"\\u{byte:04x}")
        else:
            out.append(chr(byte) if byte < 0x80 else bytes([byte]).decode("latin-1"))
    return "".join(out)


def _string(name: str, value: str) -> str:
    return f'"{name}": "{_escape(value)}"'


@dataclass
class Failure:
    result: str
    sending_ip: str | None = None
    mx_host: str | None = None
    helo: str | None = None
    mx_ip: str | None = None
    info: str | None = None
    reason: str | None = None

    def encode(self) -> str:
        parts = [f'"c":{RESULT_CODES[self.result]}']
        for key, value in (("s", self.sending_ip), ("n", self.mx_host), ("h", self.helo),
                           ("r", self.mx_ip), ("a", self.info), ("f", self.reason)):
            if value is not None:
                parts.append("," + _string(key, value))
        return "{" + "".join(parts) + "}"


@dataclass
class Policy:
    type: int
    domain: str | None = None
    strings: list[str] = field(default_factory=list)
    mx: list[str] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    failed: bool | None = None  # None: failed when there are failure details

    def encode(self) -> str:
        out = f'"policy-type":{self.type}'
        if self.domain is not None:
            out += "," + _string("policy-domain", self.domain)
        if self.strings:
            out += ',"policy-string":[' + ",".join(f'"{_escape(s)}"' for s in self.strings) + "]"
        if self.mx:
            out += ',"mx-host":[' + ",".join(f'"{_escape(s)}"' for s in self.mx) + "]"
        if self.failures:
            out += ',"failure-details":[' + ",".join(f.encode() for f in self.failures) + "]"
        failed = bool(self.failures) if self.failed is None else self.failed
        return "{" + out + f',"t":{len(self.failures)},"f":{1 if failed else 0}' + "}"


def datagram(domain: str, policies: list[Policy], record: str = "v=TLSRPTv1; rua=mailto:r@x",
             dpv: str | None = "1") -> bytes:
    head = "{"
    attributes = []
    if dpv is not None:
        attributes.append(_string("dpv", dpv))
    attributes.append(_string("d", domain))
    attributes.append(_string("pr", record))
    head += ",".join(attributes)
    body = ',"policies":[' + ",".join(p.encode() for p in policies) + "]"
    return (head + body + "}").encode("latin-1")


def send_datagrams(path: Path, datagrams: list[bytes]) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        for data in datagrams:
            s.sendto(data, str(path))


def tlsrpt_table(socket_path: Path | str, *, sendmail: list[str] | None = None,
                 send: bool = True, extra: str = "") -> str:
    lines = ["[tlsrpt]", "enabled = true", f"socket = {eh.toml_string(str(socket_path))}",
             'socket_mode = "0666"', 'organization_name = "mtasts test org"',
             'contact_info = "tlsrpt-admin@sender.example"', "send_window = 0",
             f"send = {'true' if send else 'false'}"]
    if sendmail is not None:
        lines.append("sendmail = [" + ", ".join(eh.toml_string(a) for a in sendmail) + "]")
    if extra:
        lines.append(extra)
    return "\n".join(lines)


CAPTURE_SENDMAIL = """#!/bin/sh
# A sendmail stand-in: each call's argv and message go to a numbered pair of files.
dir="$(dirname "$0")/mail"
mkdir -p "$dir"
n=$(ls "$dir" | grep -c '\\.eml$')
printf '%s\\n' "$@" > "$dir/$n.argv"
cat > "$dir/$n.eml.tmp" && mv "$dir/$n.eml.tmp" "$dir/$n.eml"
exit ${CAPTURE_EXIT:-0}
"""


def capture_sendmail(directory: Path) -> Path:
    path = directory / "sendmail"
    path.write_text(CAPTURE_SENDMAIL)
    path.chmod(0o755)
    return path


def captured_mails(directory: Path) -> list[tuple[list[str], email.message.EmailMessage]]:
    out = []
    mail_dir = directory / "mail"
    if not mail_dir.exists():
        return out
    for eml in sorted(mail_dir.glob("*.eml"), key=lambda p: int(p.stem)):
        argv = eml.with_suffix(".argv").read_text().splitlines()
        message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
        out.append((argv, message))
    return out


def report_of_mail(message) -> tuple[str, dict]:
    """(attachment filename, report JSON) of a TLSRPT report mail (RPT-28)."""
    assert message.get_content_type() == "multipart/report"
    assert message.get_param("report-type") == "tlsrpt"
    parts = list(message.iter_parts())
    assert parts[0].get_content_type() == "text/plain"
    attachment = parts[1]
    assert attachment.get_content_type() == "application/tlsrpt+gzip"
    data = attachment.get_payload(decode=True)
    assert data[:2] == b"\x1f\x8b"
    return attachment.get_filename(), json.loads(gzip.decompress(data))


def cli(config: Path, *args: str, env: dict | None = None, check: bool = True,
        timeout: float = 60) -> subprocess.CompletedProcess:
    p = subprocess.run([str(eh.cli_path()), "--config", str(config), *args], capture_output=True,
                       text=True, env=eh.exim_env(env), timeout=timeout)
    if check:
        assert p.returncode == 0, p
    return p


def show(config: Path, *args: str) -> dict:
    return json.loads(cli(config, "tlsrpt", "show", "--json", *args).stdout)
