#!/usr/bin/python3
"""SMTP sinks for the test world: MX hosts that accept every message and write down how it came.

Each sink is one MX host name listening on port 25 (or --port) at its own loopback address
(127.x.y.z: Linux routes all of 127.0.0.0/8 to lo, so no alias is needed). A sink:
  - offers STARTTLS or not ("starttls"), and presents a certificate of one of the world's
    profiles ("cert": valid, expired, wrong-name, self-signed, cn-only, untrusted, ...; certs.py)
    issued for its host name (or for "cert_san") by the world's test CA;
  - accepts any MAIL FROM / RCPT TO / DATA, and records each message: envelope, whether it came
    over TLS, the TLS version, the SNI the client sent, the subject;
  - records each connection: whether STARTTLS was tried, and how the TLS handshake ended (a
    client that refuses the certificate shows up here, with no message).
Everything goes to one JSON file (`smtp-log.json`, rewritten atomically on every event):

    {"messages": [{"sink", "address", "helo", "mail_from", "rcpt_to", "tls", "tls_version",
                   "sni", "subject", "message_id", "size", "data", "time"}, ...],
     "connections": [{"sink", "address", "peer", "helo", "starttls", "tls", "tls_error",
                      "sni", "messages", "time", "end"}, ...]}

Specification (the "smtp" section of a world manifest, or a file of its own):

    {"good.mx.test": {"address": "127.0.0.11", "cert": "valid", "starttls": true},
     "notls.mx.test": {"address": "127.0.0.15", "starttls": false}}

Used two ways:
  - by world.py (`--smtp-port 25` and an "smtp" section in the manifest): the sinks run in the
    world's process, share its CA, and their host names get A records (the sink's address)
    unless the manifest gives the name DNS data of its own;
  - standalone: `smtp_sinks.py --state-dir DIR --sinks FILE [--ca-dir WORLD_STATE_DIR]
    [--port 25] [--lifetime 3600]` writes DIR/sinks.json when listening
    ({"port", "log", "ca_file", "pid", "sinks": {host: address}}); --ca-dir reuses a running
    world's CA (its state directory holds ca.pem and ca-key.pem), otherwise a new CA is made.
    It stops on SIGTERM/SIGINT, after --lifetime seconds, or when its parent goes away.

Only /usr/bin/python3 with Debian's python3-cryptography.
"""

import argparse
import copy
import ipaddress
import json
import os
import signal
import socket
import ssl
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import certs  # noqa: E402  (after the path set-up, for standalone runs)

SMTP_PORT = 25
LINE_LIMIT = 4096               # one command line (RFC 5321 says 512; be lenient)
MESSAGE_LIMIT = 10 * 1024 * 1024
KEPT_DATA = 64 * 1024           # bytes of each message kept in the log
IO_TIMEOUT = 30                 # seconds a client may sit idle
POLL = 0.5
LOG_NAME = "smtp-log.json"

SINK_DEFAULTS = {"address": None, "cert": "valid", "cert_san": None, "starttls": True}


def log_error(message):
    print(f"smtp_sinks: {message}", file=sys.stderr, flush=True)


def with_defaults(section, host, spec, defaults):
    """A copy of a manifest spec (a JSON object) with `defaults` for the keys it leaves out;
    ValueError for a key `defaults` does not have. `section` and `host` name it in errors."""
    if not isinstance(spec, dict):
        raise ValueError(f"{section} {host}: the spec must be a JSON object")
    unknown = set(spec) - set(defaults)
    if unknown:
        raise ValueError(f"{section} {host}: unknown keys {sorted(unknown)}")
    full = copy.deepcopy(defaults)
    full.update(copy.deepcopy(spec))
    return full


def validate_sink_spec(host, spec):
    """The spec with defaults filled in; ValueError says what is wrong."""
    full = with_defaults("smtp", host, spec, SINK_DEFAULTS)
    try:
        address = ipaddress.IPv4Address(full["address"])
    except (ValueError, TypeError):
        raise ValueError(f"smtp {host}: address must be an IPv4 address") from None
    if not address.is_loopback:
        raise ValueError(f"smtp {host}: address must be a loopback address (127.0.0.0/8), "
                         "so nothing listens outside the machine or namespace")
    full["address"] = str(address)
    if full["cert"] not in certs.PROFILES:
        raise ValueError(f"smtp {host}: cert must be one of {certs.PROFILES}")
    if full["cert_san"] is not None and not (isinstance(full["cert_san"], list) and all(
            isinstance(n, str) for n in full["cert_san"])):
        raise ValueError(f"smtp {host}: cert_san must be a list of names")
    if not isinstance(full["starttls"], bool):
        raise ValueError(f"smtp {host}: starttls must be true or false")
    return full


def validate_sinks(section):
    """{host: full spec} from a manifest's "smtp" section; addresses must be distinct."""
    if not isinstance(section, dict):
        raise ValueError("smtp: the section must map host names to sink specs")
    sinks = {}
    for host, spec in section.items():
        name = host.strip().lower().rstrip(".")
        if not name or " " in name:
            raise ValueError(f"smtp: not a host name: {host!r}")
        sinks[name] = validate_sink_spec(name, spec)
    addresses = [s["address"] for s in sinks.values()]
    duplicates = sorted({a for a in addresses if addresses.count(a) > 1})
    if duplicates:
        raise ValueError(f"smtp: several sinks share the addresses {duplicates}")
    return sinks


class SinkLog:
    """The messages and connections of every sink, written to one JSON file."""

    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()
        self.document = {"messages": [], "connections": []}
        self._write()

    def add(self, kind, entry):
        with self.lock:
            self.document[kind].append(entry)
            self._write()

    def _write(self):
        with open(self.path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(self.document, f, indent=1)
            f.write("\n")
        os.replace(self.path + ".tmp", self.path)


class LineReader:
    """CRLF lines from a (possibly TLS) socket; forgets buffered input on demand."""

    def __init__(self, conn):
        self.conn = conn
        self.buffer = b""

    def replace(self, conn):
        """After STARTTLS: read from the TLS socket and drop any clear-text left over (a client
        must not pipeline past STARTTLS; what it did send is not trusted, RFC 3207 §4.2)."""
        self.conn = conn
        self.buffer = b""

    def readline(self, limit=LINE_LIMIT):
        while b"\n" not in self.buffer:
            if len(self.buffer) > limit:
                raise ValueError("line too long")
            chunk = self.conn.recv(65536)
            if not chunk:
                return None
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.rstrip(b"\r")


class Sink:
    """One MX host: a listener on address:port and an SMTP dialogue per connection."""

    def __init__(self, host, spec, certstore, log, stop, port):
        self.host, self.spec, self.log, self.stop = host, spec, log, stop
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.listener.bind((spec["address"], port))
            self.listener.listen(64)
        except OSError as e:
            self.listener.close()
            raise OSError(f"sink {host}: cannot listen on {spec['address']}:{port}: {e}") from e
        self.port = self.listener.getsockname()[1]
        self.context = None
        if spec["starttls"]:
            self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.context.load_cert_chain(certstore.cert_file(host, spec["cert"], spec["cert_san"]),
                                         certstore.key_file)
            self.context.sni_callback = self._on_sni
        self._sni = {}            # id(SSLSocket) -> SNI, filled during the handshake

    def _on_sni(self, tls, server_name, _context):
        self._sni[id(tls)] = server_name.lower().rstrip(".") if server_name else None
        return None

    def start(self):
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def _accept_loop(self):
        self.listener.settimeout(POLL)
        while not self.stop.is_set():
            try:
                conn, peer = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn, peer), daemon=True).start()

    # -- one connection
    def _serve(self, conn, peer):
        conn.settimeout(IO_TIMEOUT)
        session = {"sink": self.host, "address": self.spec["address"], "peer": peer[0],
                   "helo": None, "starttls": False, "tls": False, "tls_version": None,
                   "tls_error": None, "sni": None, "messages": 0, "time": time.time()}
        current = [conn]          # the socket in use: the TLS one after STARTTLS
        try:
            self._dialogue(current, session)
        except (OSError, ValueError, ssl.SSLError) as e:
            if session["tls"] and session["tls_error"] is None and session["messages"] == 0:
                # TLS 1.3: the client checks the certificate after the server's handshake is
                # done, and its refusal (an alert) arrives with the next read.
                session["tls_error"] = f"{type(e).__name__}: {e}"
        finally:
            session["end"] = time.time()
            self.log.add("connections", session)
            try:
                current[0].close()
            except OSError:
                pass

    def _dialogue(self, current, session):
        conn = current[0]
        reader = LineReader(conn)

        def reply(text):
            current[0].sendall(text.encode("ascii") + b"\r\n")

        reply(f"220 {self.host} ESMTP mtasts test sink")
        envelope = None
        while not self.stop.is_set():
            line = reader.readline()
            if line is None:
                return
            text = line.decode("utf-8", "replace")
            verb, _, argument = text.partition(" ")
            verb = verb.upper()
            if verb in ("EHLO", "HELO"):
                session["helo"] = argument.strip()
                envelope = None
                if verb == "HELO":
                    reply(f"250 {self.host}")
                    continue
                lines = [self.host, "PIPELINING", f"SIZE {MESSAGE_LIMIT}", "8BITMIME"]
                if self.context is not None and not session["tls"]:
                    lines.append("STARTTLS")
                reply("\r\n".join(f"250-{item}" for item in lines[:-1]) + f"\r\n250 {lines[-1]}")
            elif verb == "STARTTLS":
                if self.context is None or session["tls"]:
                    reply("502 5.5.1 STARTTLS not offered")
                    continue
                session["starttls"] = True
                reply("220 2.0.0 Ready to start TLS")
                tls = self.context.wrap_socket(conn, server_side=True,
                                               do_handshake_on_connect=False)
                current[0] = conn = tls
                try:
                    tls.do_handshake()
                except (OSError, ssl.SSLError) as e:
                    session["tls_error"] = f"{type(e).__name__}: {e}"
                    session["sni"] = self._sni.pop(id(tls), None)
                    return
                session["sni"] = self._sni.pop(id(tls), None)
                session["tls"] = True
                session["tls_version"] = tls.version()
                reader.replace(tls)
                envelope = None          # RFC 3207 §4.2: forget everything said before
                session["helo"] = None
            elif verb == "MAIL":
                envelope = {"mail_from": _path(argument, "FROM:"), "rcpt_to": []}
                reply("250 2.1.0 Ok")
            elif verb == "RCPT":
                if envelope is None:
                    reply("503 5.5.1 MAIL first")
                    continue
                envelope["rcpt_to"].append(_path(argument, "TO:"))
                reply("250 2.1.5 Ok")
            elif verb == "DATA":
                if envelope is None or not envelope["rcpt_to"]:
                    reply("503 5.5.1 RCPT first")
                    continue
                reply("354 End data with <CR><LF>.<CR><LF>")
                data = self._read_data(reader)
                if data is None:
                    return
                session["messages"] += 1
                self.log.add("messages", self._message(session, envelope, data))
                envelope = None
                reply(f"250 2.0.0 Ok: queued as {self.host}-{session['messages']}")
            elif verb == "RSET":
                envelope = None
                reply("250 2.0.0 Ok")
            elif verb == "NOOP":
                reply("250 2.0.0 Ok")
            elif verb == "QUIT":
                reply("221 2.0.0 Bye")
                if session["tls"]:
                    try:                 # close_notify, as a real MTA sends it
                        current[0].settimeout(1)
                        current[0] = current[0].unwrap()
                    except (OSError, ValueError, ssl.SSLError):
                        pass
                return
            else:
                reply("502 5.5.2 Command not recognized")

    @staticmethod
    def _read_data(reader):
        lines, size = [], 0
        while True:
            line = reader.readline(limit=MESSAGE_LIMIT)
            if line is None:
                return None
            if line == b".":
                return b"\r\n".join(lines) + b"\r\n"
            if line.startswith(b"."):
                line = line[1:]
            size += len(line) + 2
            if size > MESSAGE_LIMIT:
                raise ValueError("message too large")
            lines.append(line)

    def _message(self, session, envelope, data):
        headers = data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
        return {"sink": self.host, "address": self.spec["address"], "helo": session["helo"],
                "mail_from": envelope["mail_from"], "rcpt_to": envelope["rcpt_to"],
                "tls": session["tls"], "tls_version": session["tls_version"],
                "sni": session["sni"], "subject": _header(headers, "subject"),
                "message_id": _header(headers, "message-id"), "size": len(data),
                "data": data[:KEPT_DATA].decode("utf-8", "replace"), "time": time.time()}


def _path(argument, keyword):
    """The address inside MAIL FROM:<a> / RCPT TO:<a> (parameters dropped)."""
    text = argument.strip()
    if text.upper().startswith(keyword):
        text = text[len(keyword):].strip()
    if text.startswith("<"):
        return text[1:text.find(">")] if ">" in text else text[1:]
    return text.split(" ", 1)[0]


def _header(headers, name):
    """The first header of that name, unfolded; None if absent."""
    value = None
    for line in headers.split("\r\n"):
        if value is not None:
            if line[:1] in (" ", "\t"):
                value += " " + line.strip()
                continue
            return value
        key, sep, rest = line.partition(":")
        if sep and key.strip().lower() == name:
            value = rest.strip()
    return value


class Sinks:
    """Every sink of one specification, sharing a log file and a stop flag."""

    def __init__(self, section, certstore, stop, log_path, port=SMTP_PORT):
        self.specs = validate_sinks(section)
        self.log = SinkLog(log_path)
        self.sinks = []
        try:
            for host, spec in self.specs.items():
                sink = Sink(host, spec, certstore, self.log, stop, port)
                self.sinks.append(sink)
                port = sink.port      # port 0: the first sink's free port, for all of them
        except OSError:
            for sink in self.sinks:
                sink.listener.close()
            raise
        self.port = self.sinks[0].port if self.sinks else port

    def start(self):
        for sink in self.sinks:
            sink.start()

    def addresses(self):
        return {host: spec["address"] for host, spec in self.specs.items()}


# ---------------------------------------------------------------------------------------------
# Standalone

def parse_args(argv):
    parser = argparse.ArgumentParser(description="SMTP sinks of the mtasts test world")
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--sinks", required=True,
                        help='JSON: {"host": {"address": ..., ...}}, or a manifest with "smtp"')
    parser.add_argument("--port", type=int, default=SMTP_PORT)
    parser.add_argument("--ca-dir", help="a world's state directory whose CA to use")
    parser.add_argument("--lifetime", type=float, default=3600)
    return parser.parse_args(argv)


def main(argv=None):
    parent = os.getppid()
    args = parse_args(argv)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    state_dir = os.path.abspath(args.state_dir)
    try:
        os.makedirs(state_dir, exist_ok=True)
        with open(args.sinks, encoding="utf-8") as f:
            section = json.load(f)
        if isinstance(section, dict) and "smtp" in section:
            section = section["smtp"]
        certstore = certs.CertStore(state_dir, ca_dir=args.ca_dir)
        sinks = Sinks(section, certstore, stop, os.path.join(state_dir, LOG_NAME), args.port)
    except (OSError, ValueError) as e:
        log_error(f"cannot start: {e}")
        return 1
    sinks.start()
    info = {"port": sinks.port, "log": sinks.log.path, "ca_file": certstore.ca_file,
            "pid": os.getpid(), "sinks": sinks.addresses()}
    path = os.path.join(state_dir, "sinks.json")
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(info, f, indent=2)
        f.write("\n")
    os.replace(path + ".tmp", path)
    deadline = time.monotonic() + args.lifetime
    reason = "signal"
    while not stop.wait(POLL):
        if time.monotonic() >= deadline:
            reason = "lifetime over"
            break
        if os.getppid() != parent:
            reason = "parent process gone"
            break
    log_error(f"stopping: {reason}")
    stop.set()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
