#!/usr/bin/python3
"""The test world: a fake Internet for mtasts tests (see README.md next to this file).

One process serves, on loopback:
  - DNS over UDP and TCP, answering like a recursive resolver from the manifest's data;
  - HTTPS policy hosts (certificate per SNI, status/body/behaviour per host);
  - a black hole on 127.0.0.3:<https port>;
  - a JSON control API to change the world and read the request log;
  - with --smtp-port, the SMTP sinks of the manifest's "smtp" section (smtp_sinks.py).
It writes <state-dir>/world.json when ready and stops on SIGTERM/SIGINT, after --lifetime
seconds, or when its parent process goes away, so it can never outlive a test run.

Only /usr/bin/python3 with Debian's python3-dnslib and python3-cryptography.
"""

import argparse
import copy
import http.server
import ipaddress
import json
import os
import select
import signal
import socket
import ssl
import sys
import threading
import time
import urllib.parse
from http import HTTPStatus

from dnslib import (AAAA, CNAME, EDNS0, MX, QTYPE, RCODE, RD, RR, SOA, TLSA, TXT, A,
                    DNSLabel, DNSRecord)

import certs
import dnssec
import smtp_sinks

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_MANIFEST = os.path.join(HERE, "manifest.json")
WELL_KNOWN_PATH = "/.well-known/mta-sts.txt"

MAX_CNAME_HOPS = 8
UDP_LIMIT_EDNS = 1232          # the DNS flag day 2020 size: larger answers go over TCP
UDP_LIMIT_PLAIN = 512          # RFC 1035, for clients that send no EDNS0 OPT record
DEFAULT_TTL = 0                # tests change the world while it runs: nothing may be cached

HUGE_BODY_SIZE = 1024 * 1024
REQUEST_HEAD_LIMIT = 64 * 1024
REQUEST_BODY_LIMIT = 16 * 1024 * 1024
UDP_RECEIVE_BUFFER = 8 * 1024 * 1024   # asked for; the kernel caps it at net.core.rmem_max
LISTEN_BACKLOG = 4096          # a client opening a thousand connections at once (capped at
                               # net.core.somaxconn); with 128 the rest wait for SYN retries
IO_TIMEOUT = 30                # seconds a normal connection may sit idle
POLL = 0.5                     # seconds between checks of the stop flag in blocking loops

ADDRESSES = {"refused": "127.0.0.2", "blackhole": "127.0.0.3"}   # "local" = the listen address
FAULTS = ("servfail", "timeout", "refused")
BEHAVIOURS = ("normal", "trickle", "stall", "huge", "endless-chunked", "endless-headers",
              "handshake-stall")


def log_error(message):
    print(f"world: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Names and the data model

def normalize_name(name):
    """Lower-case, without the root dot; raise ValueError for something that is not a name."""
    if not isinstance(name, str):
        raise ValueError(f"name must be a string, not {name!r}")
    name = name.strip().lower()
    if name.endswith("."):
        name = name[:-1]
    labels = name.split(".")
    if not name or any(not label or len(label) > 63 for label in labels) or len(name) > 253:
        raise ValueError(f"not a domain name: {name!r}")
    return name


def ancestors(name):
    """'a.b.example' -> ['a.b.example', 'b.example', 'example']"""
    labels = name.split(".")
    return [".".join(labels[i:]) for i in range(len(labels))]


def _txt_rdata(rr):
    if not isinstance(rr, list) or not rr or not all(isinstance(s, str) for s in rr):
        raise ValueError("a TXT RR is a non-empty list of strings (its character-strings)")
    parts = [s.encode("utf-8") for s in rr]
    if any(len(p) > 255 for p in parts):
        raise ValueError("a TXT character-string holds at most 255 bytes")
    return TXT(parts)


def _mx_rdata(rr):
    if (not isinstance(rr, list) or len(rr) != 2 or not isinstance(rr[0], int)
            or not 0 <= rr[0] <= 65535):
        raise ValueError("an MX RR is [preference, host]")
    return MX(normalize_name(rr[1]) + ".", rr[0])


def _a_rdata(rr):
    return A(str(ipaddress.IPv4Address(rr)))


def _aaaa_rdata(rr):
    return AAAA(str(ipaddress.IPv6Address(rr)))


def _tlsa_rdata(rr):
    if not isinstance(rr, list) or len(rr) != 4 or not all(isinstance(v, int) for v in rr[:3]):
        raise ValueError('a TLSA RR is [usage, selector, matching type, "hex"]')
    return TLSA(rr[0], rr[1], rr[2], bytes.fromhex(rr[3]))


# type name -> (dnslib type code, function from one manifest RR to dnslib rdata)
RDATA = {
    "TXT": (QTYPE.TXT, _txt_rdata),
    "MX": (QTYPE.MX, _mx_rdata),
    "A": (QTYPE.A, _a_rdata),
    "AAAA": (QTYPE.AAAA, _aaaa_rdata),
    "TLSA": (QTYPE.TLSA, _tlsa_rdata),
}
DNS_KEYS = set(RDATA) | {"CNAME", "fault", "ttl", "bogus"}


def validate_dns_entry(name, entry):
    """A checked deep copy of one manifest "dns" entry; ValueError says what is wrong."""
    if not isinstance(entry, dict):
        raise ValueError(f"dns {name}: the entry must be a JSON object")
    unknown = set(entry) - DNS_KEYS
    if unknown:
        raise ValueError(f"dns {name}: unknown keys {sorted(unknown)}")
    entry = copy.deepcopy(entry)
    for rtype, (_, make) in RDATA.items():
        if rtype in entry:
            if not isinstance(entry[rtype], list):
                raise ValueError(f"dns {name}: {rtype} must be a list of RRs")
            try:
                for rr in entry[rtype]:
                    make(rr)
            except (ValueError, TypeError) as e:
                raise ValueError(f"dns {name}: bad {rtype} RR: {e}") from None
    if "CNAME" in entry:
        entry["CNAME"] = normalize_name(entry["CNAME"])
        if set(entry) & set(RDATA):
            raise ValueError(f"dns {name}: a CNAME cannot have other data beside it")
    if "fault" in entry and entry["fault"] not in FAULTS:
        raise ValueError(f"dns {name}: fault must be one of {FAULTS}")
    if "ttl" in entry and (not isinstance(entry["ttl"], int) or entry["ttl"] < 0):
        raise ValueError(f"dns {name}: ttl must be a non-negative integer")
    if "bogus" in entry and not isinstance(entry["bogus"], bool):
        raise ValueError(f"dns {name}: bogus must be true or false")
    return entry


HTTPS_DEFAULTS = {
    "cert": "valid", "cert_san": None, "status": 200, "content_type": "text/plain",
    "body": "", "headers": {}, "location": None, "behaviour": "normal", "address": "local",
    "size": None, "path": WELL_KNOWN_PATH,
}


def validate_https_spec(host, spec):
    """The spec with defaults filled in; ValueError says what is wrong."""
    full = smtp_sinks.with_defaults("https", host, spec, HTTPS_DEFAULTS)
    checks = [
        (full["cert"] in certs.PROFILES, f"cert must be one of {certs.PROFILES}"),
        (full["cert_san"] is None or (isinstance(full["cert_san"], list) and all(
            isinstance(n, str) for n in full["cert_san"])), "cert_san must be a list of names"),
        (isinstance(full["status"], int) and 100 <= full["status"] <= 999,
         "status must be an integer 100..999"),
        (full["content_type"] is None or isinstance(full["content_type"], str),
         "content_type must be a string or null (no header)"),
        (isinstance(full["body"], str), "body must be a string"),
        (isinstance(full["headers"], dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in full["headers"].items()),
         "headers must map names to strings"),
        (full["location"] is None or isinstance(full["location"], str),
         "location must be a string"),
        (full["behaviour"] in BEHAVIOURS, f"behaviour must be one of {BEHAVIOURS}"),
        (full["address"] in ("local",) + tuple(ADDRESSES), "address must be local, refused "
         "or blackhole"),
        (full["size"] is None or (isinstance(full["size"], int) and full["size"] >= 0),
         "size must be a non-negative integer"),
        (isinstance(full["path"], str) and full["path"].startswith("/"),
         "path must be a string starting with /"),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(f"https {host}: {message}")
    return full


def load_manifest(path):
    with open(path, encoding="utf-8") as f:
        manifest = json.load(f)
    unknown = set(manifest) - {"dns", "https", "smtp", "domains", "dnssec"}
    if unknown:
        raise ValueError(f"manifest: unknown top-level keys {sorted(unknown)}")
    return manifest


# ---------------------------------------------------------------------------------------------
# World state: the data and the request log, shared by every server thread

class WorldState:
    def __init__(self, manifest, local_address):
        self.lock = threading.RLock()
        self.local_address = local_address
        self.dns = {}
        self.https = {}
        # SMTP sinks (smtp_sinks.py): their names get A records; world.py starts them on demand.
        self.smtp = smtp_sinks.validate_sinks(manifest.get("smtp", {}))
        # DNSSEC zone cuts (dnssec.py): fixed at start, their apexes exist and have an SOA.
        self.zones = dnssec.Zones(manifest.get("dnssec", {}), normalize_name)
        self.log = {"dns": [], "https": [], "connections": []}
        for name, entry in manifest.get("dns", {}).items():
            self.dns[normalize_name(name)] = validate_dns_entry(name, entry)
        for host, spec in manifest.get("https", {}).items():
            self.https[normalize_name(host)] = validate_https_spec(host, spec)
        self._reindex()

    def _reindex(self):
        """Every name with data, and each of its parents down to the TLD, exists (NODATA if it
        has no data of the asked type); other names under those TLDs are NXDOMAIN."""
        existing = set()
        for name in list(self.dns) + list(self.https) + list(self.smtp) + self.zones.names():
            existing.update(ancestors(name))
        self._existing = existing
        self._tlds = {name.rsplit(".", 1)[-1] for name in existing}

    # -- changes (control API)
    def set_dns(self, name, entry):
        name = normalize_name(name)
        entry = validate_dns_entry(name, entry)
        with self.lock:
            self.dns[name] = entry
            self._reindex()

    def delete_dns(self, name):
        with self.lock:
            found = self.dns.pop(normalize_name(name), None) is not None
            self._reindex()
            return found

    def set_https(self, host, spec):
        host = normalize_name(host)
        spec = validate_https_spec(host, spec)
        with self.lock:
            self.https[host] = spec
            self._reindex()

    def delete_https(self, host):
        with self.lock:
            found = self.https.pop(normalize_name(host), None) is not None
            self._reindex()
            return found

    # -- reads
    def in_world(self, name):
        with self.lock:
            return name.rsplit(".", 1)[-1] in self._tlds

    def dns_entry(self, name):
        """The data at name as the DNS serves it (with the implicit A of a policy host and the
        SOA of a zone apex), {} for an empty non-terminal, None if the name does not exist."""
        with self.lock:
            if name not in self._existing:
                return None
            entry = copy.deepcopy(self.dns.get(name, {}))
            spec = self.https.get(name)
            if spec and "A" not in entry and "CNAME" not in entry:
                entry["A"] = [ADDRESSES.get(spec["address"], self.local_address)]
            sink = self.smtp.get(name)
            if sink and "A" not in entry and "CNAME" not in entry:
                entry["A"] = [sink["address"]]
            if name in self._tlds or name in self.zones.zones:
                entry["SOA"] = True
            return entry

    def is_bogus(self, name):
        """The entry at name asks for corrupted signatures."""
        with self.lock:
            return bool(self.dns.get(name, {}).get("bogus"))

    def https_spec(self, host):
        if not host:
            return None
        with self.lock:
            spec = self.https.get(host.lower().rstrip("."))
            return copy.deepcopy(spec) if spec else None

    # -- log
    def record(self, kind, entry):
        entry["time"] = time.time()
        with self.lock:
            self.log[kind].append(entry)

    def log_snapshot(self):
        with self.lock:
            return copy.deepcopy(self.log)

    def clear_log(self):
        with self.lock:
            for entries in self.log.values():
                entries.clear()


# ---------------------------------------------------------------------------------------------
# DNS: answers

TIMEOUT = object()      # resolve() result: stay silent


def soa_rr(zone):
    times = (1, 3600, 600, 86400, DEFAULT_TTL)   # serial refresh retry expire minimum
    return RR(zone + ".", QTYPE.SOA, ttl=DEFAULT_TTL,
              rdata=SOA(f"ns.{zone}.", f"hostmaster.{zone}.", times))


def rrs_at(entry, name, owner, qtype):
    """The RRs of type qtype (a name such as "TXT", or "ANY") in one dns_entry()."""
    ttl = entry.get("ttl", DEFAULT_TTL)
    rrs = []
    for rtype, (code, make) in RDATA.items():
        if qtype in (rtype, "ANY"):
            rrs += [RR(owner, code, ttl=ttl, rdata=make(rr)) for rr in entry.get(rtype, [])]
    if "CNAME" in entry and qtype in ("CNAME", "ANY"):
        rrs.append(RR(owner, QTYPE.CNAME, ttl=ttl, rdata=CNAME(entry["CNAME"] + ".")))
    if entry.get("SOA") and qtype in ("SOA", "ANY"):
        rrs.append(soa_rr(name))
    return rrs


def fault_result(fault, first_name):
    if fault == "timeout":
        return TIMEOUT
    if fault == "refused" and first_name:
        return RCODE.REFUSED, [], []
    # servfail, or a REFUSED met while following a CNAME, which a resolver reports as SERVFAIL
    return RCODE.SERVFAIL, [], []


def answer_zone(state, name, qtype):
    """The dnssec zone (dnssec.Zone) that answers qtype at name, or None: the nearest listed
    zone, but a DS at a zone apex comes from the zone it is delegated from."""
    zone = state.zones.find(name)
    if zone and qtype == "DS" and zone.name == name:
        return state.zones.parent(zone)
    return zone


def dnssec_rrs(state, name, owner, qtype):
    """DNSKEY at a signed zone apex; DS at a signed child apex, served by its signed parent."""
    zone = state.zones.zones.get(name)
    if not zone or not zone.signed:
        return []
    if qtype in ("DNSKEY", "ANY"):
        return [zone.dnskey_rr(owner, DEFAULT_TTL)]
    parent = state.zones.parent(zone)
    if qtype == "DS" and parent and parent.signed:
        return [RR(owner, dnssec.TYPE_DS, ttl=DEFAULT_TTL, rdata=RD(zone.ds()))]
    return []


def signed(state, zone, rrs):
    """rrs, each RRset followed by its RRSIG when zone is signed (corrupted for "bogus")."""
    if not zone or not zone.signed:
        return rrs
    rrsets = {}
    for rr in rrs:
        rrsets.setdefault((str(rr.rname).lower().rstrip("."), rr.rtype), []).append(rr)
    out = []
    for (owner, _), rrset in rrsets.items():
        out += rrset + [zone.sign(rrset, corrupt=state.is_bogus(owner))]
    return out


def present_types(state, entry, name, zone):
    """The types at name for the bitmap of a black-lie NSEC from zone."""
    if entry is None:
        return set()
    if state.zones.find(name) is not zone:        # a delegation, seen from the parent
        return {dnssec.TYPE_NS}
    types = {code for rtype, (code, _) in RDATA.items() if entry.get(rtype)}
    if "CNAME" in entry:
        types.add(QTYPE.CNAME)
    if entry.get("SOA"):
        types.add(QTYPE.SOA)
    if name == zone.name:
        types.add(dnssec.TYPE_DNSKEY)
    return types


def negative(state, zone, entry, name, owner):
    """Authority of a NODATA or NXDOMAIN: the SOA of the listed zone (of the TLD outside any);
    in a signed zone with its RRSIG and a black-lie NSEC at the name."""
    soa = [soa_rr(zone.name if zone else name.rsplit(".", 1)[-1])]
    if not zone or not zone.signed:
        return soa
    nsec = dnssec.nsec_rr(owner, name, present_types(state, entry, name, zone), DEFAULT_TTL)
    return signed(state, zone, soa) + signed(state, zone, [nsec])


def resolve(state, qname, qtype):
    """(rcode, answer RRs, authority RRs) as a recursive resolver would give, or TIMEOUT.

    CNAMEs are followed inside the world, up to MAX_CNAME_HOPS, the whole chain in the answer.
    Inside a signed dnssec zone every RRset comes with its RRSIG, and a missing name or type is
    NODATA with a black-lie NSEC (README.md, "DNSSEC").
    """
    try:
        name = normalize_name(qname)
    except ValueError:
        return RCODE.REFUSED, [], []
    if not state.in_world(name):
        return RCODE.REFUSED, [], []
    owner = DNSLabel(qname)     # as asked: keeps the 0x20 case randomisation of the client
    answers = []
    for hop in range(MAX_CNAME_HOPS + 1):
        entry = state.dns_entry(name)
        if entry and entry.get("fault"):
            return fault_result(entry["fault"], first_name=hop == 0)
        zone = answer_zone(state, name, qtype)
        if entry is None:
            if not state.in_world(name):          # the chain left the world
                return RCODE.SERVFAIL, [], []
            rcode = RCODE.NOERROR if zone and zone.signed else RCODE.NXDOMAIN
            return rcode, answers, negative(state, zone, entry, name, owner)
        if "CNAME" in entry and qtype not in ("CNAME", "ANY"):
            answers += signed(state, zone, rrs_at(entry, name, owner, "CNAME"))
            name = entry["CNAME"]
            owner = DNSLabel(name + ".")
            continue
        found = rrs_at(entry, name, owner, qtype) + dnssec_rrs(state, name, owner, qtype)
        if found:
            return RCODE.NOERROR, answers + signed(state, zone, found), []
        return RCODE.NOERROR, answers, negative(state, zone, entry, name, owner)
    return RCODE.SERVFAIL, [], []                 # CNAME loop or a chain that is too long


def edns_payload(request):
    """The client's advertised UDP payload size, or None without EDNS0."""
    for rr in request.ar:
        if rr.rtype == QTYPE.OPT:
            return rr.rclass
    return None


def build_reply(state, request, proto):
    """Packed reply to one parsed query, or None to stay silent."""
    question = request.q
    qtype = QTYPE.get(question.qtype, f"TYPE{question.qtype}")
    qname = str(question.qname)
    state.record("dns", {"name": qname.lower().rstrip("."), "type": qtype, "proto": proto})
    reply = request.reply(ra=1, aa=1)
    reply.header.ad = 0       # nothing here is DNSSEC-validated; never claim it is
    payload = edns_payload(request)
    if payload is not None:
        reply.add_ar(EDNS0(udp_len=UDP_LIMIT_EDNS))
    if request.header.opcode != 0 or len(request.questions) != 1:
        reply.header.rcode = RCODE.NOTIMP
        return reply.pack()
    result = resolve(state, qname, qtype)
    if result is TIMEOUT:
        return None
    reply.header.rcode, reply.rr, reply.auth = result
    packed = reply.pack()
    limit = UDP_LIMIT_PLAIN if payload is None else min(UDP_LIMIT_EDNS,
                                                        max(UDP_LIMIT_PLAIN, payload))
    if proto == "udp" and len(packed) > limit:
        # TC with empty sections: the client retries over TCP.
        reply.rr, reply.auth = [], []
        reply.header.tc = 1
        packed = reply.pack()
    return packed


def answer_packet(state, data, proto):
    try:
        request = DNSRecord.parse(data)
    except Exception:                 # dnslib raises assorted errors on junk; junk gets nothing
        return None
    if request.header.qr or not request.questions:
        return None
    return build_reply(state, request, proto)


# ---------------------------------------------------------------------------------------------
# DNS: transports

def bind_pair(host, port, second):
    """Bind a TCP listener and second(port) on the same port; with port 0 retry until a port
    is free for both. Returns (listener, second's result)."""
    for _ in range(50):
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((host, port))
            listener.listen(LISTEN_BACKLOG)
            return listener, second(listener.getsockname()[1])
        except OSError:
            listener.close()
            if port != 0:
                raise
    raise OSError("no free port pair found")


def start_thread(target, *args):
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


def accept_loop(listener, stop, handle):
    """Call handle(conn, local address) in a new thread for every connection until stop."""
    listener.settimeout(POLL)
    while not stop.is_set():
        try:
            conn, _ = listener.accept()
        except socket.timeout:
            continue
        except OSError:
            return
        conn.settimeout(None)
        start_thread(handle, conn, conn.getsockname()[0])


def recv_exact(conn, size):
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


class DnsServer:
    def __init__(self, state, stop, host, port):
        self.state, self.stop = state, stop
        self.tcp, self.udp = bind_pair(host, port, lambda p: self._bind_udp(host, p))
        self.port = self.tcp.getsockname()[1]

    @staticmethod
    def _bind_udp(host, port):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        # A resolver with a thousand lookups at once sends its queries in one burst; with the
        # default buffer (~200 KiB: about 200 queries) most would be dropped before this single
        # thread reads them. Up to net.core.rmem_max is granted.
        udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER)
        try:
            udp.bind((host, port))
        except OSError:
            udp.close()
            raise
        return udp

    def start(self):
        start_thread(self._serve_udp)
        start_thread(accept_loop, self.tcp, self.stop, self._serve_tcp)

    def _serve_udp(self):
        self.udp.settimeout(POLL)
        while not self.stop.is_set():
            try:
                data, peer = self.udp.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                return
            reply = answer_packet(self.state, data, "udp")
            if reply is not None:
                try:
                    self.udp.sendto(reply, peer)
                except OSError:
                    pass

    def _serve_tcp(self, conn, _local):
        """Length-prefixed queries until the client closes (RFC 7766 allows several)."""
        conn.settimeout(IO_TIMEOUT)
        with conn:
            try:
                while not self.stop.is_set():
                    prefix = recv_exact(conn, 2)
                    data = prefix and recv_exact(conn, int.from_bytes(prefix, "big"))
                    if not data:
                        return
                    reply = answer_packet(self.state, data, "tcp")
                    if reply is not None:
                        conn.sendall(len(reply).to_bytes(2, "big") + reply)
            except OSError:
                return


# ---------------------------------------------------------------------------------------------
# HTTPS

def wait_until_closed(sock, stop):
    """Say nothing, discard what the peer sends, return when it closes or the world stops.

    Works on a duplicate of the descriptor so it can be used mid-handshake, under TLS. poll(),
    not select(): with a thousand connections held, descriptors pass FD_SETSIZE (1024)."""
    dup = socket.socket(fileno=os.dup(sock.fileno()))
    poller = select.poll()
    poller.register(dup, select.POLLIN)
    try:
        while not stop.is_set():
            if poller.poll(POLL * 1000) and not dup.recv(65536, socket.MSG_DONTWAIT):
                return
    except OSError:
        return
    finally:
        dup.close()


class Request:
    def __init__(self, head):
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            raise ValueError("bad request line")
        self.method, self.target, self.version = parts
        self.headers = []
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise ValueError("bad header line")
            self.headers.append((name.strip(), value.strip()))

    def header(self, name):
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return ", ".join(values) if values else None

    @property
    def path(self):
        return urllib.parse.urlsplit(self.target).path

    @property
    def host(self):
        """The Host header without a port."""
        host = self.header("host")
        if not host:
            return None
        return host.rsplit(":", 1)[0] if not host.endswith("]") else host


def read_request(conn):
    """Read one request head and its Content-Length body; None if the client gives up."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk or len(data) > REQUEST_HEAD_LIMIT:
            return None
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    request = Request(head)
    length = int(request.header("content-length") or 0)
    if 0 < length <= REQUEST_BODY_LIMIT and len(rest) < length:
        rest += recv_exact(conn, length - len(rest)) or b""
    request.body = rest[:length] if 0 < length <= REQUEST_BODY_LIMIT else b""
    return request


def reason_phrase(status):
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Status"


def response_head(status, headers):
    lines = [f"HTTP/1.1 {status} {reason_phrase(status)}"] + [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def padded_body(body, size):
    """body followed by extension-key lines ("pad: xxx"), cut to exactly size bytes: still a
    syntactically valid policy, so only a size limit can reject it."""
    data = body.encode("utf-8")
    line = b"pad: " + b"x" * 58 + b"\n"
    repeats = max(0, size - len(data)) // len(line) + 1
    return (data + line * repeats)[:size]


def response_headers(spec, length=None, chunked=False):
    headers = []
    if spec["content_type"] is not None:
        headers.append(("Content-Type", spec["content_type"]))
    if spec["location"]:
        headers.append(("Location", spec["location"]))
    if chunked:
        headers.append(("Transfer-Encoding", "chunked"))
    elif length is not None:
        headers.append(("Content-Length", str(length)))
    headers.append(("Connection", "close"))
    for name, value in spec["headers"].items():     # the spec's own headers win
        headers = [(k, v) for k, v in headers if k.lower() != name.lower()]
        headers.append((name, value))
    return headers


NOT_FOUND = validate_https_spec("-", {"status": 404, "body": "no policy here\n"})


class HttpsServer:
    def __init__(self, state, certstore, stop, host, port):
        self.state, self.certstore, self.stop = state, certstore, stop
        self.listener, self.blackhole = bind_pair(host, port, self._bind_blackhole)
        self.port = self.listener.getsockname()[1]
        self._contexts = {}
        self._contexts_lock = threading.Lock()
        self._handshakes = {}      # id(SSLSocket) -> per-connection dict, during the handshake
        self.default_context = self._context(
            certstore.cert_file(certs.DEFAULT_HOST), sni_callback=self._on_sni)

    @staticmethod
    def _bind_blackhole(port):
        """127.0.0.3:port accepts and never speaks; 127.0.0.2:port must stay free (refused)."""
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        blackhole = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        blackhole.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((ADDRESSES["refused"], port))
            blackhole.bind((ADDRESSES["blackhole"], port))
            blackhole.listen(LISTEN_BACKLOG)
        except OSError:
            blackhole.close()
            raise
        finally:
            probe.close()
        return blackhole

    def start(self):
        start_thread(accept_loop, self.listener, self.stop, self._serve)
        start_thread(accept_loop, self.blackhole, self.stop, self._swallow)

    def _context(self, cert_file, sni_callback=None):
        with self._contexts_lock:
            context = self._contexts.get(cert_file)
            if context is None:
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                context.load_cert_chain(cert_file, self.certstore.key_file)
                if sni_callback:
                    context.sni_callback = sni_callback
                self._contexts[cert_file] = context
            return context

    def _swallow(self, conn, local):
        self.state.record("connections", {"address": local, "sni": None})
        with conn:
            wait_until_closed(conn, self.stop)

    def _on_sni(self, tls, server_name, _context):
        """Pick the certificate for the SNI; hold the handshake of a handshake-stall host."""
        info = self._handshakes.get(id(tls), {})
        sni = info["sni"] = server_name.lower().rstrip(".") if server_name else None
        self.state.record("connections", {"address": info.get("address"), "sni": sni})
        spec = self.state.https_spec(sni)
        if spec is None:
            return None                  # keep the default certificate (unknown.invalid)
        if spec["behaviour"] == "handshake-stall":
            wait_until_closed(tls, self.stop)
            return ssl.ALERT_DESCRIPTION_HANDSHAKE_FAILURE
        try:
            tls.context = self._context(
                self.certstore.cert_file(sni, spec["cert"], spec["cert_san"]))
        except Exception as e:          # a callback exception would only be printed
            log_error(f"certificate for {sni}: {e}")
            return ssl.ALERT_DESCRIPTION_INTERNAL_ERROR
        return None

    def _serve(self, raw, local):
        raw.settimeout(IO_TIMEOUT)
        tls = self.default_context.wrap_socket(raw, server_side=True,
                                               do_handshake_on_connect=False)
        info = {"address": local, "sni": None}
        self._handshakes[id(tls)] = info
        try:
            tls.do_handshake()
        except (OSError, ValueError):
            tls.close()
            return
        finally:
            self._handshakes.pop(id(tls), None)
        try:
            self._answer(tls, info)
        except (OSError, ValueError):
            pass
        finally:
            self._close(tls)

    def _answer(self, tls, info):
        request = read_request(tls)
        if request is None:
            return
        self.state.record("https", {
            "sni": info["sni"], "host": request.header("host"), "method": request.method,
            "path": request.target, "headers": {k.lower(): request.header(k)
                                                for k, _ in request.headers},
            "raw_headers": [list(h) for h in request.headers], "address": info["address"],
            "body": request.body.decode("latin-1")})
        # The SNI picks the host (as it picked the certificate); the Host header only when the
        # SNI names no policy host (none sent, or unknown).
        spec = self.state.https_spec(info["sni"]) or self.state.https_spec(request.host)
        if spec is None or request.path != spec["path"]:
            spec = NOT_FOUND
        behave = getattr(self, "_behave_" + spec["behaviour"].replace("-", "_"))
        behave(tls, request, spec)

    def _close(self, tls):
        """Send close_notify (so a client reading to EOF sees a clean end) without waiting
        long for the client's."""
        try:
            tls.settimeout(1)
            tls.unwrap()
        except (OSError, ValueError):
            pass
        finally:
            tls.close()

    # -- behaviours: each writes the whole exchange for one request
    def _behave_normal(self, tls, request, spec):
        tls.sendall(self._normal_response(request, spec))

    def _normal_response(self, request, spec):
        body = spec["body"].encode("utf-8")
        if spec["size"] is not None:
            body = padded_body(spec["body"], spec["size"])
        if spec["status"] in (204, 304) or spec["status"] < 200:
            # No body and no Content-Length for these (RFC 9110 §8.6, §15.3.5).
            return response_head(spec["status"], response_headers(spec))
        head = response_head(spec["status"], response_headers(spec, len(body)))
        return head if request.method == "HEAD" else head + body

    def _behave_trickle(self, tls, request, spec):
        for byte in self._normal_response(request, spec):
            tls.sendall(bytes([byte]))
            if self.stop.wait(1):
                return

    def _behave_stall(self, tls, request, spec):
        wait_until_closed(tls, self.stop)

    # Reached only when the SNI did not name this host (so the handshake was not held).
    _behave_handshake_stall = _behave_stall

    def _behave_huge(self, tls, request, spec):
        if spec["size"] is None:
            spec["size"] = HUGE_BODY_SIZE
        tls.sendall(self._normal_response(request, spec))

    def _behave_endless_chunked(self, tls, request, spec):
        tls.sendall(response_head(spec["status"], response_headers(spec, chunked=True)))
        chunk = spec["body"].encode("utf-8")
        while True:
            if chunk:
                tls.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            if self.stop.wait(0.05):
                return
            chunk = b"pad: " + b"x" * 58 + b"\n"

    def _behave_endless_headers(self, tls, request, spec):
        tls.sendall(f"HTTP/1.1 {spec['status']} {reason_phrase(spec['status'])}\r\n".encode())
        number = 0
        while not self.stop.wait(0.05):
            lines = [f"X-Endless-{number + i}: {'x' * 48}\r\n" for i in range(10)]
            tls.sendall("".join(lines).encode())
            number += 10


# ---------------------------------------------------------------------------------------------
# Control API

class ControlHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "mtasts-test-world"

    def log_message(self, *args):
        pass                           # the request log is the world's, not the control API's

    @property
    def state(self):
        return self.server.world_state

    def _reply(self, status, document):
        body = json.dumps(document).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"null")

    def _route(self):
        """(collection, name) from /dns/<name>, /https/<host>, /log, /log/clear."""
        parts = urllib.parse.urlsplit(self.path).path.strip("/").split("/", 1)
        name = urllib.parse.unquote(parts[1]) if len(parts) > 1 else None
        return parts[0], name

    def _dispatch(self, method):
        try:
            collection, name = self._route()
            handler = getattr(self, f"_{method}_{collection}", None)
            if handler is None or (collection in ("dns", "https") and not name):
                return self._reply(404, {"error": f"no such resource: {method} {self.path}"})
            return handler(name)
        except (ValueError, KeyError, TypeError) as e:     # json errors are ValueErrors
            return self._reply(400, {"error": str(e)})

    def do_GET(self):
        self._dispatch("get")

    def do_PUT(self):
        self._dispatch("put")

    def do_DELETE(self):
        self._dispatch("delete")

    def do_POST(self):
        self._dispatch("post")

    def _get_log(self, name):
        if name:
            return self._reply(404, {"error": "no such resource"})
        self._reply(200, self.state.log_snapshot())

    def _post_log(self, name):
        if name != "clear":
            return self._reply(404, {"error": "no such resource"})
        self.state.clear_log()
        self._reply(200, {"ok": True})

    def _found(self, document, what):
        if document is None:
            return self._reply(404, {"error": f"no such {what}"})
        return self._reply(200, document)

    def _put_dns(self, name):
        self.state.set_dns(name, self._body())
        self._reply(200, {"ok": True})

    def _delete_dns(self, name):
        self._found({"ok": True} if self.state.delete_dns(name) else None, "name")

    def _get_dns(self, name):
        with self.state.lock:
            entry = copy.deepcopy(self.state.dns.get(normalize_name(name)))
        self._found(entry, "name")

    def _put_https(self, name):
        self.state.set_https(name, self._body())
        self._reply(200, {"ok": True})

    def _delete_https(self, name):
        self._found({"ok": True} if self.state.delete_https(name) else None, "host")

    def _get_https(self, name):
        self._found(self.state.https_spec(normalize_name(name)), "host")


class ControlServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state, host, port):
        super().__init__((host, port), ControlHandler)
        self.world_state = state

    def start(self):
        start_thread(self.serve_forever, POLL)


# ---------------------------------------------------------------------------------------------
# Process: start, announce, live until told or orphaned

def parse_args(argv):
    parser = argparse.ArgumentParser(description="mtasts test world (see README.md)")
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--listen", default="127.0.0.1", help="an IPv4 address, not 0.0.0.0")
    parser.add_argument("--dns-port", type=int, default=0)
    parser.add_argument("--https-port", type=int, default=0)
    parser.add_argument("--control-port", type=int, default=0)
    parser.add_argument("--manifest", default=DEFAULT_MANIFEST)
    parser.add_argument("--lifetime", type=float, default=3600)
    parser.add_argument("--smtp-port", type=int, default=None,
                        help="start the manifest's SMTP sinks on this port (25 in a namespace)")
    return parser.parse_args(argv)


def write_json_atomically(path, document):
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(document, f, indent=2)
        f.write("\n")
    os.replace(path + ".tmp", path)


def wait_for_end(stop, lifetime, parent):
    """Block until a reason to stop; return it."""
    deadline = time.monotonic() + lifetime
    while not stop.wait(POLL):
        if time.monotonic() >= deadline:
            return "lifetime over"
        if os.getppid() != parent:
            return "parent process gone"
    return "signal"


def main(argv=None):
    parent = os.getppid()          # first thing: a parent that dies later must be noticed
    args = parse_args(argv)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    state_dir = os.path.abspath(args.state_dir)
    try:
        os.makedirs(state_dir, exist_ok=True)
        state = WorldState(load_manifest(args.manifest), args.listen)
        certstore = certs.CertStore(state_dir)
        # The trust anchors of the signed top zones of "dnssec" (an empty file without any).
        trust_anchor_file = os.path.join(state_dir, "trust-anchors.key")
        with open(trust_anchor_file, "w", encoding="utf-8") as f:
            f.writelines(line + "\n" for line in state.zones.trust_anchors())
        dns = DnsServer(state, stop, args.listen, args.dns_port)
        https = HttpsServer(state, certstore, stop, args.listen, args.https_port)
        control = ControlServer(state, args.listen, args.control_port)
        sinks = None
        if args.smtp_port is not None:
            sinks = smtp_sinks.Sinks(state.smtp, certstore, stop,
                                     os.path.join(state_dir, smtp_sinks.LOG_NAME), args.smtp_port)
    except (OSError, ValueError) as e:
        log_error(f"cannot start: {e}")
        return 1
    for server in (dns, https, control) + ((sinks,) if sinks else ()):
        server.start()
    smtp_info = {}
    if sinks:
        smtp_info = {"smtp_port": sinks.port, "smtp_log": sinks.log.path,
                     "smtp": sinks.addresses()}
    write_json_atomically(os.path.join(state_dir, "world.json"), {
        "dns": f"{args.listen}:{dns.port}",
        "https_port": https.port,
        "control": f"{args.listen}:{control.server_address[1]}",
        "ca_file": certstore.ca_file,
        "untrusted_ca_file": certstore.untrusted_ca_file,
        "pid": os.getpid(),
        "listen": args.listen,
        "trust_anchor_file": trust_anchor_file,
        **smtp_info,
    })
    reason = wait_for_end(stop, args.lifetime, parent)
    log_error(f"stopping: {reason}")
    stop.set()
    sys.stdout.flush()
    # Connection threads may sit in blocking calls; they are daemons and must not delay exit.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
