"""mtastsd (src/daemon) against the test world: both wire protocols, golden answers.

- Exim ${readsocket} protocol (design §2.1, docs/protocol-readsocket.md): one line in, one
  answer without a newline out, then close; with and without the client's half-close.
- Postfix socketmap (design §2.3, docs/protocol-socketmap.md): netstrings, pipelined requests
  answered in order, per-map options.

Every golden check runs over the Unix socket and over loopback TCP, with client read buffers of
4096, 16 and 1 bytes. Malformed input (bad netstring length, oversized requests, binary junk,
early disconnects, an idle client hitting the read deadline) must leave the daemon serving.
SIGHUP reloads the config, SIGTERM stops gracefully, systemd socket activation and sd_notify
work, and the real exim4 reads the answers with ${readsocket}.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

import exim_helpers as eh

DAEMON = eh.build_dir() / "src" / "daemon" / "mtastsd"

ENFORCE_MX = "mx1.enforce.example:*.mail.enforce.example"
ENFORCE_IGNORE = r"<; ! ^mx1\.enforce\.example$ ; ! ^[^.]+\.mail\.enforce\.example$ ; *"
# Postfix has no one-label wildcard in match=: the policy's *.mail.enforce.example becomes the MX
# host it matches (mx2.mail.enforce.example, from the domain's MX RRset), sorted.
ENFORCE_MATCH = "match=mx1.enforce.example:mx2.mail.enforce.example"

# request line -> answer (design §2.1; the same strings as the dlfunc module)
EXIM_GOLDEN = {
    "getmta enforce.example": "enforce",
    "getmx enforce.example": ENFORCE_MX,
    "ignorelist enforce.example": ENFORCE_IGNORE,
    "getmta ENFORCE.Example.": "enforce",                               # STS-51
    "getmta enforce.example mx1.enforce.example": "",
    "getmta enforce.example a.mail.enforce.example": "",
    "getmta enforce.example a.b.mail.enforce.example": "0",            # STS-33: one label
    "getmta enforce.example xmx1.enforce.example": "0",                # anchored
    "getmta enforce.example mx_1.mail.enforce.example": "",            # any H is matched
    "getmta enforce.example -mx1.enforce.example": "0",
    "getmta testing.example": "testing",
    "getmx testing.example": "mx1.testing.example",
    "ignorelist testing.example": "",
    "getmta none.example": "none",
    "getmta nopolicy.example": "none",
    "getmta http-404.example": "none",                                  # no cache, not strict
    "getmta [192.0.2.1]": "none",                                       # STS-30, no lookup
    "getmta m\u00fcnchen.example": "enforce",                           # U-label in, STS-51
    "getmta a..b": 'error: invalid domain "a..b": empty label in hostname "a..b"',
    "getpolicy enforce.example": 'error: unknown command "getpolicy"; expected getmta, getmx or '
                                 "ignorelist",
    "getmx enforce.example extra": 'error: getmx takes 1 argument (domain), got 2 in "getmx '
                                   'enforce.example extra"',
}

# The common table (exim_helpers.WEIRD_MX_HOSTS) and a control character, which the line
# protocol refuses in the command and the domain but carries in H as just an octet.
WEIRD_HOSTS = eh.WEIRD_MX_HOSTS + [("mx\x01.mail.enforce.example", "")]

# socketmap request -> reply (design §2.3)
SOCKETMAP_GOLDEN = {
    "postfix enforce.example": f"OK secure {ENFORCE_MATCH} servername=hostname",
    "postfix ENFORCE.example": f"OK secure {ENFORCE_MATCH} servername=hostname",
    "postfix testing.example": "NOTFOUND ",
    "postfix none.example": "NOTFOUND ",
    "postfix nopolicy.example": "NOTFOUND ",
    "postfix http-404.example": "NOTFOUND ",
    "postfix .enforce.example": "NOTFOUND ",                  # parent-domain probe, no lookup
    "postfix [192.0.2.1]": "NOTFOUND ",                       # address literal, no lookup
    "postfix [mx1.enforce.example]:25": "NOTFOUND ",          # explicit next hop
    "strict testing.example": "OK secure match=mx1.testing.example servername=hostname",
    "strict enforce.example": f"OK secure {ENFORCE_MATCH} servername=hostname",
    "nosni enforce.example": f"OK secure {ENFORCE_MATCH}",
    "tlsrpt enforce.example": (
        f"OK secure {ENFORCE_MATCH} servername=hostname policy_type=sts "
        "policy_domain=enforce.example mx_host_pattern=mx1.enforce.example "
        "mx_host_pattern=*.mail.enforce.example { policy_string = version: STSv1 } "
        "{ policy_string = mode: enforce } { policy_string = mx: mx1.enforce.example } "
        "{ policy_string = mx: *.mail.enforce.example } { policy_string = max_age: 86400 }"),
    "tlsrpt testing.example": "NOTFOUND ",
    "nomap enforce.example": "PERM unknown socketmap name \"nomap\"; mtastsd serves: nosni, "
                             "postfix, strict, tlsrpt (configure [socketmap.NAME])",
}

BUFFER_SIZES = [4096, 16, 1]
READ_TIMEOUT_MS = 700
IDLE_TIMEOUT_MS = 1500


# --------------------------------------------------------------------------------------------
# Clients


def connect(address, timeout: float = 10.0) -> socket.socket:
    kind, where = address
    s = socket.socket(socket.AF_UNIX if kind == "unix" else socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(where)
    return s


def read_to_eof(s: socket.socket, bufsize: int) -> bytes:
    out = bytearray()
    while True:
        data = s.recv(bufsize)
        if not data:
            return bytes(out)
        assert len(data) <= bufsize
        out += data


def exim_ask(address, request: str | bytes, *, bufsize: int = 4096, half_close: bool = True,
             newline: bool = False) -> str:
    """One ${readsocket}-style exchange; the answer as text."""
    data = request.encode() if isinstance(request, str) else request
    if newline:
        data += b"\n"
    with contextlib.closing(connect(address)) as s:
        s.sendall(data)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        return read_to_eof(s, bufsize).decode()


def netstring(payload: str | bytes) -> bytes:
    data = payload.encode() if isinstance(payload, str) else payload
    return b"%d:%s," % (len(data), data)


class NetstringReader:
    """Reads netstring replies from a socket with a given recv size."""

    def __init__(self, s: socket.socket, bufsize: int):
        self.s, self.bufsize, self.buffer = s, bufsize, b""

    def read(self) -> str | None:
        while True:
            colon = self.buffer.find(b":")
            if colon > 0:
                length = int(self.buffer[:colon])
                end = colon + 1 + length
                if len(self.buffer) > end:
                    assert self.buffer[end:end + 1] == b",", self.buffer
                    payload = self.buffer[colon + 1:end]
                    self.buffer = self.buffer[end + 1:]
                    return payload.decode()
            data = self.s.recv(self.bufsize)
            if not data:
                assert self.buffer == b"", self.buffer
                return None
            self.buffer += data


def socketmap_ask(address, requests: list[str], *, bufsize: int = 4096,
                  pipelined: bool = True) -> list[str]:
    with contextlib.closing(connect(address)) as s:
        reader = NetstringReader(s, bufsize)
        replies = []
        if pipelined:
            s.sendall(b"".join(netstring(r) for r in requests))
            for _ in requests:
                replies.append(reader.read())
        else:
            for r in requests:
                s.sendall(netstring(r))
                replies.append(reader.read())
        return replies


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------------
# The daemon


class Daemon:
    """An mtastsd process on a temporary directory's sockets and free loopback ports."""

    def __init__(self, work: Path, world: dict, *, name: str = "d", extra: str = "",
                 strict: bool = False, tcp: bool = True, command_prefix: list[str] | None = None,
                 env: dict | None = None, shutdown_ms: int = 3000):
        self.dir = work / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.exim_path = self.dir / "exim.sock"
        self.socketmap_path = self.dir / "socketmap.sock"
        self.exim_port = free_port() if tcp else None
        self.socketmap_port = free_port() if tcp else None
        self.config = self.dir / "mtasts.toml"
        self.log_path = self.dir / "mtastsd.log"
        self.world = world
        self.shutdown_ms = shutdown_ms
        self.write_config(strict=strict, extra=extra)
        cmd = [str(DAEMON), "--config", str(self.config)]
        self.proc = subprocess.Popen((command_prefix or []) + cmd,
                                     stdout=open(self.log_path, "wb"),
                                     stderr=subprocess.STDOUT,
                                     env={**eh.exim_env(), **(env or {})})

    def write_config(self, *, strict: bool = False, extra: str = "") -> None:
        tcp = ""
        if self.exim_port:
            tcp = (f'exim_listen = "127.0.0.1:{self.exim_port}"\n'
                   f'socketmap_listen = ["127.0.0.1:{self.socketmap_port}"]\n')
        body = f"""
[daemon]
exim_socket = {eh.toml_string(str(self.exim_path))}
socketmap_socket = {eh.toml_string(str(self.socketmap_path))}
{tcp}socket_mode = "0666"
read_timeout_ms = {READ_TIMEOUT_MS}
idle_timeout_ms = {IDLE_TIMEOUT_MS}
write_timeout_ms = 2000
shutdown_timeout_ms = {self.shutdown_ms}
max_request_line = 1024
max_netstring = 1024

[socketmap.postfix]
[socketmap.strict]
enforce_testing = true
[socketmap.nosni]
servername = false
[socketmap.tlsrpt]
tlsrpt = true
"""
        eh.write_mtasts_config(self.config, cache=self.dir / "cache.mdb", world=self.world,
                               strict=strict, extra=extra + body)

    @property
    def unix_exim(self):
        return ("unix", str(self.exim_path))

    @property
    def unix_socketmap(self):
        return ("unix", str(self.socketmap_path))

    @property
    def tcp_exim(self):
        return ("tcp", ("127.0.0.1", self.exim_port))

    @property
    def tcp_socketmap(self):
        return ("tcp", ("127.0.0.1", self.socketmap_port))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while "ready:" not in self.log():
            if self.proc.poll() is not None:
                raise RuntimeError(f"mtastsd exited with {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"mtastsd not ready within {timeout} s:\n{self.log()}")
            time.sleep(0.02)

    def wait_log(self, text: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not logged within {timeout} s:\n{self.log()}")
            time.sleep(0.02)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int:
        eh.terminate(self.proc, 20)
        assert "Sanitizer" not in self.log(), self.log()
        return self.proc.returncode


def require_daemon() -> None:
    if not DAEMON.exists():
        pytest.fail(f"{DAEMON} is not built (cmake --build {eh.build_dir()} --target mtastsd)")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    require_daemon()
    work = tmp_path_factory.mktemp("daemon")
    work.chmod(0o755)
    with eh.world(work / "world") as info:
        daemon = Daemon(work, info)
        try:
            daemon.wait_ready()
            # Warm the cache (network lookups) so the golden runs are quick.
            for domain in ("enforce.example", "testing.example", "none.example",
                           "nopolicy.example", "http-404.example", "xn--mnchen-3ya.example"):
                assert exim_ask(daemon.unix_exim, f"getmta {domain}") != ""
            yield {"work": work, "world": info, "daemon": daemon}
        finally:
            code = daemon.stop()
            assert code == 0, daemon.log()


def assert_serving(daemon: Daemon) -> None:
    """The daemon is alive and still answers both protocols correctly."""
    assert daemon.alive(), daemon.log()
    assert exim_ask(daemon.unix_exim, "getmta enforce.example") == "enforce"
    assert socketmap_ask(daemon.unix_socketmap, ["postfix enforce.example"]) == \
        [SOCKETMAP_GOLDEN["postfix enforce.example"]]


def transports(daemon: Daemon, protocol: str):
    if protocol == "exim":
        return {"unix": daemon.unix_exim, "tcp": daemon.tcp_exim}
    return {"unix": daemon.unix_socketmap, "tcp": daemon.tcp_socketmap}


# --------------------------------------------------------------------------------------------
# Golden answers


@pytest.mark.parametrize("transport", ["unix", "tcp"])
@pytest.mark.parametrize("bufsize", BUFFER_SIZES)
@pytest.mark.parametrize("half_close", [True, False], ids=["half-close", "no-half-close"])
def test_exim_golden(env, transport, bufsize, half_close):
    address = transports(env["daemon"], "exim")[transport]
    for request, expected in EXIM_GOLDEN.items():
        # Without a half-close the line end is what tells the daemon the request is complete.
        got = exim_ask(address, request, bufsize=bufsize, half_close=half_close,
                       newline=not half_close)
        assert got == expected, (request, got)


@pytest.mark.parametrize("host,expected", WEIRD_HOSTS)
def test_exim_getmta_answers_for_every_host(env, host, expected):
    d = env["daemon"]
    for address in (d.unix_exim, d.tcp_exim):
        assert exim_ask(address, f"getmta enforce.example {host}") == expected, address
        for domain in ("testing.example", "none.example", "nopolicy.example", "[192.0.2.1]"):
            assert exim_ask(address, f"getmta {domain} {host}") == "", (address, domain)
    # A bad domain is still refused, whatever the host.
    assert exim_ask(d.unix_exim, f"getmta a..b {host}").startswith("error: invalid domain")
    assert_serving(d)


@pytest.mark.parametrize("line_end", [b"\n", b"\r\n"], ids=["lf", "crlf"])
def test_exim_line_ends_and_extra_bytes(env, line_end):
    address = env["daemon"].unix_exim
    assert exim_ask(address, b"getmta enforce.example" + line_end, half_close=False) == "enforce"
    # A line end and then the half-close; bytes after the line are ignored.
    assert exim_ask(address, b"getmx enforce.example" + line_end + b"junk") == ENFORCE_MX


@pytest.mark.parametrize("transport", ["unix", "tcp"])
@pytest.mark.parametrize("bufsize", BUFFER_SIZES)
def test_socketmap_golden_pipelined(env, transport, bufsize):
    address = transports(env["daemon"], "socketmap")[transport]
    requests = list(SOCKETMAP_GOLDEN)
    # All requests at once on one connection: answered in order.
    assert socketmap_ask(address, requests, bufsize=bufsize) == list(SOCKETMAP_GOLDEN.values())


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_socketmap_one_at_a_time_on_one_connection(env, transport):
    address = transports(env["daemon"], "socketmap")[transport]
    requests = list(SOCKETMAP_GOLDEN) * 2
    expected = list(SOCKETMAP_GOLDEN.values()) * 2
    assert socketmap_ask(address, requests, pipelined=False) == expected


def test_socketmap_request_split_into_single_bytes(env):
    with contextlib.closing(connect(env["daemon"].unix_socketmap)) as s:
        for byte in netstring("postfix enforce.example") + netstring("postfix testing.example"):
            s.sendall(bytes([byte]))
        reader = NetstringReader(s, 1)
        assert reader.read() == SOCKETMAP_GOLDEN["postfix enforce.example"]
        assert reader.read() == "NOTFOUND "


def world_log(env) -> dict:
    host, port = env["world"]["control"].rsplit(":", 1)
    return json.load(urllib.request.urlopen(f"http://{host}:{port}/log", timeout=5))


def clear_world_log(env) -> None:
    host, port = env["world"]["control"].rsplit(":", 1)
    urllib.request.urlopen(urllib.request.Request(f"http://{host}:{port}/log/clear",
                                                  method="POST"), timeout=5).read()


def test_probes_and_literals_make_no_lookup(env):
    clear_world_log(env)
    d = env["daemon"]
    assert socketmap_ask(d.unix_socketmap, ["postfix .parent-probe.example",
                                            "postfix [198.51.100.7]",
                                            "postfix 198.51.100.7"]) == ["NOTFOUND "] * 3
    assert exim_ask(d.unix_exim, "getmta [198.51.100.7]") == "none"
    log = world_log(env)
    assert not [q for q in log["dns"] if "parent-probe" in q["name"] or "198" in q["name"]], log
    assert log["https"] == []


# --------------------------------------------------------------------------------------------
# Malformed input: answered clearly or dropped, never a hang, and the daemon keeps serving


def test_exim_oversized_line(env):
    d = env["daemon"]
    for half_close in (True, False):
        got = exim_ask(d.unix_exim, b"getmta " + b"x" * 5000, half_close=half_close)
        assert got == "error: request line longer than 1024 octets", got
    assert_serving(d)


def test_exim_binary_junk(env):
    d = env["daemon"]
    got = exim_ask(d.unix_exim, bytes(range(256)))
    assert got.startswith("error: "), got
    got = exim_ask(d.tcp_exim, b"\x00\xff\xfe getmta\x00enforce.example\n", half_close=False)
    assert got.startswith("error: control character in request"), got
    assert_serving(d)


def test_exim_idle_client_gets_deadline_error(env):
    d = env["daemon"]
    for partial in (b"", b"getmta enf"):
        with contextlib.closing(connect(d.unix_exim)) as s:
            s.sendall(partial)
            start = time.monotonic()
            got = read_to_eof(s, 4096).decode()
            waited = time.monotonic() - start
        assert got == f"error: no complete request line within {READ_TIMEOUT_MS} ms", got
        assert READ_TIMEOUT_MS / 1000 - 0.2 < waited < READ_TIMEOUT_MS / 1000 + 2, waited
    assert_serving(d)


def test_early_disconnects(env):
    d = env["daemon"]
    for address, exim in ((d.unix_exim, True), (d.tcp_exim, True), (d.unix_socketmap, False),
                          (d.tcp_socketmap, False)):
        connect(address).close()                                    # connect and leave
        with contextlib.closing(connect(address)) as s:              # half a request, leave
            s.sendall(b"getmta enf" if exim else b"23:postfix enf")
        with contextlib.closing(connect(address)) as s:              # ask and leave unanswered
            s.sendall(b"getmta enforce.example\n" if exim
                      else netstring("postfix enforce.example") * 50)
        # A reset instead of a close.
        s = connect(address)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.sendall(b"1")
        s.close()
    time.sleep(0.2)
    assert_serving(d)


@pytest.mark.parametrize("junk,reason", [
    (b"abc:xyz,", "expected a netstring length"),
    (b"5:hello;", "expected ',' after the 5-octet netstring payload"),
    (b"05:hello,", "leading zero"),
    (b"99999999999:", "exceeds the limit of 1024 octets"),
    (b"2000:" + b"x" * 2000 + b",", "exceeds the limit of 1024 octets"),
    (b"\x00\xff\x01\x02", "expected a netstring length"),
])
def test_socketmap_bad_netstrings(env, junk, reason):
    d = env["daemon"]
    for address in (d.unix_socketmap, d.tcp_socketmap):
        with contextlib.closing(connect(address)) as s:
            # A good request first: answered, then the junk: one PERM and the connection closes.
            s.sendall(netstring("postfix enforce.example") + junk)
            reader = NetstringReader(s, 7)
            assert reader.read() == SOCKETMAP_GOLDEN["postfix enforce.example"]
            reply = reader.read()
            assert reply.startswith("PERM protocol error: ") and reason in reply, reply
            assert reader.read() is None
    assert_serving(d)


@pytest.mark.parametrize("payload,reason", [
    ("postfix", 'expected "<map-name> <key>"'),
    ("postfix ", 'expected "<map-name> <key>"'),
    ("postfix exa\x01mple.com", "control character"),
])
def test_socketmap_malformed_requests_are_perm_and_the_connection_goes_on(env, payload, reason):
    d = env["daemon"]
    replies = socketmap_ask(d.unix_socketmap, [payload, "postfix enforce.example"])
    assert replies[0].startswith("PERM ") and reason in replies[0], replies
    assert replies[1] == SOCKETMAP_GOLDEN["postfix enforce.example"]


def test_socketmap_idle_and_stalled_clients_are_closed(env):
    d = env["daemon"]
    with contextlib.closing(connect(d.unix_socketmap)) as s:
        start = time.monotonic()
        assert s.recv(100) == b""                                   # idle: closed, no reply
        assert IDLE_TIMEOUT_MS / 1000 - 0.2 < time.monotonic() - start < IDLE_TIMEOUT_MS / 1000 + 2
    with contextlib.closing(connect(d.unix_socketmap)) as s:
        s.sendall(b"23:postfix enf")                                # stalled mid-request
        start = time.monotonic()
        assert s.recv(100) == b""
        assert time.monotonic() - start < READ_TIMEOUT_MS / 1000 + 2
    assert_serving(d)


def test_many_concurrent_clients(env):
    d = env["daemon"]
    sockets = []
    for i in range(200):
        s = connect(d.unix_exim if i % 2 else d.unix_socketmap)
        sockets.append(s)
    for i, s in enumerate(sockets):
        s.sendall(b"getmta testing.example\n" if i % 2 else netstring("postfix testing.example"))
    for i, s in enumerate(sockets):
        got = read_to_eof(s, 4096) if i % 2 else NetstringReader(s, 4096).read().encode()
        assert got == (b"testing" if i % 2 else b"NOTFOUND "), (i, got)
        s.close()
    assert_serving(d)


# --------------------------------------------------------------------------------------------
# The real Exim reads the answers with ${readsocket}


def test_exim_readsocket(env, tmp_path):
    eh.require_root_and_exim()
    d = env["daemon"]
    tmp_path.chmod(0o755)
    cfg = eh.write_exim_config(tmp_path / "exim.conf", tmp_path, keep_env=False)
    unix, port = d.exim_path, d.exim_port
    for server in (str(unix), f"inet:127.0.0.1:{port}"):
        for request, expected in (("getmta enforce.example", "enforce"),
                                  ("getmx enforce.example", ENFORCE_MX),
                                  ("ignorelist enforce.example", ENFORCE_IGNORE),
                                  ("getmta enforce.example evil.example", "0"),
                                  # issue 10: any host is matched, never an error
                                  ("getmta enforce.example -mx.mail.enforce.example", ""),
                                  ("getmta enforce.example mx_1.enforce.example", "0"),
                                  ("getmta enforce.example *.mail.enforce.example", ""),
                                  ("getmta enforce.example mx1.enforce.example..", "0"),
                                  ("getmta testing.example mx_1.enforce.example", ""),
                                  ("getmta testing.example", "testing"),
                                  ("getmta a..b", None)):
            expression = "${readsocket{%s}{%s}{3s}{}{error: mtastsd unreachable}}" % (
                server, eh.exim_escape(request))
            r = eh.exim_be(cfg, expression)
            assert r.rc == 0, r
            if expected is None:
                assert r.out.startswith("error: invalid domain"), r
            else:
                assert r.out == expected, (request, r)
        # The shipped router's test for "cannot tell": answers starting "error:".
        check = ("${if match{${readsocket{%s}{getmta a..b}{3s}{}{error: unreachable}}}"
                 "{\\N^error:\\N}{defer}{route}}" % server)
        assert eh.exim_be(cfg, check).out == "defer"
    # A socket nobody listens on: the fail string.
    r = eh.exim_be(cfg, "${readsocket{%s}{getmta enforce.example}{1s}{}{error: mtastsd "
                        "unreachable}}" % (tmp_path / "none.sock"))
    assert r.out == "error: mtastsd unreachable", r


def test_exim_readsocket_fragments_parse(env, tmp_path):
    """packaging/exim's readsocket router set is a valid Exim configuration."""
    eh.require_root_and_exim()
    tmp_path.chmod(0o755)
    cfg = eh.write_packaged_exim_config(tmp_path / "exim.conf", tmp_path, "readsocket",
                                        macros={"MTASTS_SOCKET": env["daemon"].exim_path},
                                        keep_env=False)
    r = eh.exim(cfg, "-bV")
    assert r.rc == 0, r
    r = eh.exim_be(cfg, "${readsocket{MTASTS_SOCKET}{getmta enforce.example}"
                        "{MTASTS_READSOCKET_TIMEOUT}{}{MTASTS_UNREACHABLE}}")
    assert r.out == "enforce", r


# --------------------------------------------------------------------------------------------
# Reload, stop, socket activation, readiness


def test_sighup_reload(env):
    work, world = env["work"], env["world"]
    d = Daemon(work, world, name="reload", tcp=False)
    try:
        d.wait_ready()
        assert exim_ask(d.unix_exim, "getmta http-404.example") == "none"
        assert socketmap_ask(d.unix_socketmap, ["postfix http-404.example"]) == ["NOTFOUND "]

        # An invalid file: logged, the running configuration stays.
        d.config.write_text(d.config.read_text() + "\nno_such_key = 1\n")
        d.proc.send_signal(signal.SIGHUP)
        d.wait_log("keeping the running configuration")
        assert "no_such_key: unknown key" in d.log()
        assert_serving(d)
        assert exim_ask(d.unix_exim, "getmta http-404.example") == "none"

        # A valid one: strict mode now answers fail / TEMP for the published-but-unavailable
        # policy, and a new socketmap name is served.
        d.write_config(strict=True, extra="")
        d.config.write_text(d.config.read_text() + "\n[socketmap.added]\n")
        d.proc.send_signal(signal.SIGHUP)
        d.wait_log(f"reloaded {d.config}")
        assert exim_ask(d.unix_exim, "getmta http-404.example") == "fail"
        temp = socketmap_ask(d.unix_socketmap, ["postfix http-404.example"])[0]
        assert temp.startswith("TEMP MTA-STS policy of http-404.example is published but "
                               "unavailable"), temp
        assert socketmap_ask(d.unix_socketmap, ["tlsrpt http-404.example"]) == [
            "OK secure servername=hostname policy_type=sts policy_domain=http-404.example "
            "policy_failure=sts-policy-fetch-error"]
        assert socketmap_ask(d.unix_socketmap, ["added enforce.example"]) == [
            SOCKETMAP_GOLDEN["postfix enforce.example"]]
        assert_serving(d)
    finally:
        assert d.stop() == 0, d.log()


def test_sigterm_graceful_stop(env):
    work, world = env["work"], env["world"]
    d = Daemon(work, world, name="stop")
    try:
        d.wait_ready()
        assert_serving(d)
        idle = connect(d.unix_socketmap)                      # an idle Postfix connection
        # A request whose lookup takes a while (the _mta-sts query is never answered).
        slow = connect(d.unix_exim)
        slow.sendall(b"getmta dns-sts-timeout.example\n")
        time.sleep(0.3)
        start = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)
        # The idle connection is closed at once, the busy one still gets its answer.
        assert idle.recv(100) == b""
        assert time.monotonic() - start < 1.0
        assert read_to_eof(slow, 4096) == b"none"
        d.proc.wait(timeout=10)
        assert d.proc.returncode == 0, d.log()
        assert time.monotonic() - start < 5
        assert "SIGTERM received: stopping" in d.log() and "stopped" in d.log()
        # Listeners are gone: no new connections, the socket files are removed.
        assert not d.exim_path.exists() and not d.socketmap_path.exists()
        with pytest.raises(OSError):
            connect(d.tcp_exim, timeout=1)
    finally:
        d.stop()


def test_sigterm_closes_a_stuck_busy_connection_after_the_grace_period(env):
    work, world = env["work"], env["world"]
    d = Daemon(work, world, name="grace", shutdown_ms=300)
    try:
        d.wait_ready()
        # The reply waits for a lookup (about 2 s: the _mta-sts query is never answered) that
        # outlasts shutdown_timeout_ms = 300: the connection is closed without a reply, the
        # lookup finishes in the background, the daemon exits.
        s = connect(d.unix_socketmap)
        s.sendall(netstring("postfix dns-sts-timeout.example"))
        time.sleep(0.2)
        start = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)
        assert s.recv(100) == b""
        assert time.monotonic() - start < 1.5
        d.proc.wait(timeout=15)
        assert time.monotonic() - start < 8, d.log()
        assert d.proc.returncode == 0, d.log()
        assert "still busy after 300 ms; closing them" in d.log()
        s.close()
    finally:
        d.stop()


def test_socket_activation_and_notify(env, tmp_path):
    activate = shutil.which("systemd-socket-activate")
    if activate is None:
        pytest.fail("systemd-socket-activate is not installed (apt-get install systemd)")
    work, world = env["work"], env["world"]
    notify_path = tmp_path / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.settimeout(15)
    sock_dir = tmp_path / "act"
    sock_dir.mkdir()
    exim_path, map_path = sock_dir / "e.sock", sock_dir / "m.sock"
    # The exim socket is named by FileDescriptorName, the socketmap one only by its address.
    prefix = [activate, "-l", str(exim_path), "-l", str(map_path), "--fdname=exim:other",
              "-E", f"NOTIFY_SOCKET={notify_path}"]
    d = Daemon(work, world, name="activated", tcp=False, command_prefix=prefix)
    try:
        d.write_config()
        text = d.config.read_text().replace(str(d.socketmap_path), str(map_path))
        d.config.write_text(text)
        deadline = time.monotonic() + 10
        while not (exim_path.exists() and map_path.exists()):
            assert time.monotonic() < deadline and d.proc.poll() is None, d.log()
            time.sleep(0.02)
        # systemd-socket-activate starts mtastsd at the first connection.
        assert exim_ask(("unix", str(exim_path)), "getmta enforce.example") == "enforce"
        assert socketmap_ask(("unix", str(map_path)), ["postfix enforce.example"]) == \
            [SOCKETMAP_GOLDEN["postfix enforce.example"]]
        assert "(systemd)" in d.log()
        messages = []
        while not any("READY=1" in m for m in messages):
            messages.append(notify.recv(4096).decode())
        d.proc.send_signal(signal.SIGHUP)
        while not any("RELOADING=1" in m for m in messages):
            messages.append(notify.recv(4096).decode())
        d.proc.send_signal(signal.SIGTERM)
        while not any("STOPPING=1" in m for m in messages):
            messages.append(notify.recv(4096).decode())
        d.proc.wait(timeout=15)
        assert d.proc.returncode == 0, d.log()
        # Sockets systemd owns are left in place.
        assert exim_path.exists()
    finally:
        d.stop()
        notify.close()


def test_bad_config_and_busy_socket_fail_at_start(env, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[daemon]\nexim_listen = \"localhost:25\"\n")
    r = subprocess.run([str(DAEMON), "--config", str(bad)], capture_output=True, text=True,
                       timeout=20)
    assert r.returncode == 78 and f"{bad}:2: exim_listen:" in r.stderr, r
    r = subprocess.run([str(DAEMON), "--config", str(bad), "--check-config"],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 78, r
    # A second daemon on the same socket refuses to start and leaves the first one serving.
    d = env["daemon"]
    clash = tmp_path / "clash.toml"
    clash.write_text(d.config.read_text())
    r = subprocess.run([str(DAEMON), "--config", str(clash)], capture_output=True, text=True,
                       timeout=20)
    assert r.returncode == 71 and "another process is listening on it" in r.stderr, r
    assert_serving(d)
