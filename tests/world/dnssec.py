"""DNSSEC for the test world: keys, DS, RRSIG, NSEC ("black lies"), signed online.

The manifest's "dnssec" section lists zone cuts and how each is signed (see README.md):

    {"zones": {"dane.test": "signed", "insecure.dane.test": "unsigned",
               "bogus.dane.test": "bogus"}}

Every signed zone has one ECDSA P-256 key (algorithm 13, flags 257, a KSK used as CSK),
generated when the world starts. A "bogus" zone signs with one key while its parent's DS (or,
for a top zone, the trust anchor) is computed from another, so validation of it fails.

Pure functions (RFC 4034 key tag, DS digest, canonical form, type bitmaps) and the Zone / Zones
classes; world.py asks Zones which zone a name belongs to and lets that Zone sign the RRsets.
Only python3-dnslib and python3-cryptography.
"""

import hashlib
import struct
import time

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from dnslib import RD, RR, DNSLabel
from dnslib.label import DNSBuffer

# Type codes (dnslib's QTYPE knows them; kept numeric here so the wire format is explicit).
TYPE_NS, TYPE_SOA, TYPE_DS, TYPE_RRSIG, TYPE_NSEC, TYPE_DNSKEY = 2, 6, 43, 46, 47, 48
ALGORITHM = 13                  # ECDSAP256SHA256 (RFC 6605)
DIGEST_SHA256 = 2               # DS digest type (RFC 4509)
FLAGS_SEP_ZONE = 257            # Zone Key + Secure Entry Point
PROTOCOL = 3
CLASS_IN = 1
YEAR = 365 * 86400
INCEPTION_BEFORE = 10 * YEAR    # tests move clocks by days with faketime: stay valid anyway
EXPIRATION_AFTER = 50 * YEAR    # serial arithmetic (RFC 1982) allows less than 68 years

MODES = ("signed", "unsigned", "bogus")


# ---------------------------------------------------------------------------------------------
# Names and canonical form (RFC 4034 §6)

def _labels(name):
    """Lower-cased byte labels of a name (str without or with the root dot, or a DNSLabel)."""
    if not isinstance(name, DNSLabel):
        name = DNSLabel(name if name not in ("", ".") else [])
    return [label.lower() for label in name.label]


def name_wire(name):
    """Canonical wire form: lower case, uncompressed."""
    return b"".join(bytes([len(label)]) + label for label in _labels(name)) + b"\x00"


def label_count(name):
    return len(_labels(name))


class _CanonicalBuffer(DNSBuffer):
    """dnslib's buffer, but names in RDATA are written uncompressed and lower-cased (the
    RFC 4034 §6.2 rule for NS, CNAME, SOA, MX, ...; the world's own names are lower case
    already)."""

    def encode_name(self, name):
        self.encode_name_nocompress(DNSLabel(_labels(name)))


def canonical_rdata(rr):
    buffer = _CanonicalBuffer()
    rr.rdata.pack(buffer)
    return bytes(buffer.data)


# ---------------------------------------------------------------------------------------------
# Keys, key tag, DS, type bitmaps

def key_tag(dnskey_rdata):
    """RFC 4034 Appendix B (for every algorithm but RSA/MD5)."""
    total = 0
    for i, byte in enumerate(dnskey_rdata):
        total += byte if i & 1 else byte << 8
    total += (total >> 16) & 0xFFFF
    return total & 0xFFFF


def dnskey_rdata(private_key):
    """Flags 257, protocol 3, algorithm 13, public key = x || y (RFC 6605 §4)."""
    numbers = private_key.public_key().public_numbers()
    public = numbers.x.to_bytes(32, "big") + numbers.y.to_bytes(32, "big")
    return struct.pack("!HBB", FLAGS_SEP_ZONE, PROTOCOL, ALGORITHM) + public


def ds_rdata(owner, dnskey):
    """DS digest type 2: SHA-256 over the canonical owner name and the DNSKEY RDATA."""
    digest = hashlib.sha256(name_wire(owner) + dnskey).digest()
    return struct.pack("!HBB", key_tag(dnskey), ALGORITHM, DIGEST_SHA256) + digest


def type_bitmap(types):
    """The NSEC type bit maps field (RFC 4034 §4.1.2)."""
    windows = {}
    for t in sorted(set(types)):
        windows.setdefault(t >> 8, []).append(t & 0xFF)
    out = b""
    for window, lows in sorted(windows.items()):
        bitmap = bytearray(max(lows) // 8 + 1)
        for low in lows:
            bitmap[low // 8] |= 0x80 >> (low % 8)
        out += bytes([window, len(bitmap)]) + bytes(bitmap)
    return out


def nsec_rdata(next_name, types):
    return name_wire(next_name) + type_bitmap(types)


def black_lie_next(name):
    """The next name of a minimally covering NSEC at name: '\\000.name' (RFC 4470 spirit)."""
    return DNSLabel([b"\x00"] + _labels(name))


def sign_rrset(rrs, signer, private_key, tag, corrupt=False, now=None):
    """The RRSIG RR (RFC 4034 §3) over one RRset (dnslib RRs of one owner, type and class).

    The RRSIG's owner is the RRset's as written (0x20 case kept); the signature covers the
    canonical form: lower-case owner, original TTL, RRs sorted by canonical RDATA, duplicates
    dropped. corrupt flips a byte of the signature (a bogus answer from a sound zone)."""
    first = rrs[0]
    now = int(time.time() if now is None else now)
    ttl = first.ttl
    header = struct.pack("!HBBIIIH", first.rtype, ALGORITHM, label_count(first.rname), ttl,
                         (now + EXPIRATION_AFTER) % 2**32, (now - INCEPTION_BEFORE) % 2**32,
                         tag) + name_wire(signer)
    owner = name_wire(first.rname)
    rdatas = sorted({canonical_rdata(rr) for rr in rrs})
    data = header + b"".join(
        owner + struct.pack("!HHIH", first.rtype, first.rclass, ttl, len(rdata)) + rdata
        for rdata in rdatas)
    r, s = decode_dss_signature(private_key.sign(data, ec.ECDSA(hashes.SHA256())))
    signature = bytearray(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
    if corrupt:
        signature[7] ^= 0xFF
    return RR(first.rname, TYPE_RRSIG, rclass=first.rclass, ttl=ttl,
              rdata=RD(header + bytes(signature)))


# ---------------------------------------------------------------------------------------------
# Zones

class Zone:
    """One zone cut of the manifest: its name (lower case, no root dot) and mode."""

    def __init__(self, name, mode):
        self.name = name
        self.mode = mode
        self.signed = mode in ("signed", "bogus")
        self.key = self.dnskey = self.tag = None
        self.ds_dnskey = None               # the DNSKEY the parent's DS (or the anchor) is of
        if self.signed:
            self.key = ec.generate_private_key(ec.SECP256R1())
            self.dnskey = dnskey_rdata(self.key)
            self.tag = key_tag(self.dnskey)
            self.ds_dnskey = self.dnskey
            if mode == "bogus":
                other = dnskey_rdata(ec.generate_private_key(ec.SECP256R1()))
                while key_tag(other) == self.tag:       # a different tag, for clear logs
                    other = dnskey_rdata(ec.generate_private_key(ec.SECP256R1()))
                self.ds_dnskey = other

    def ds(self):
        """The DS RDATA the parent publishes (of the wrong key for a bogus zone)."""
        return ds_rdata(self.name, self.ds_dnskey)

    def trust_anchor(self):
        """Zone-file text of the DS, as libunbound's ub_ctx_add_ta / unbound-host -f read it."""
        ds = self.ds()
        return f"{self.name}. IN DS {ds[0] << 8 | ds[1]} {ds[2]} {ds[3]} {ds[4:].hex().upper()}"

    def dnskey_rr(self, owner, ttl):
        return RR(owner, TYPE_DNSKEY, ttl=ttl, rdata=RD(self.dnskey))

    def sign(self, rrs, corrupt=False):
        return sign_rrset(rrs, self.name, self.key, self.tag, corrupt)


def nsec_rr(owner, name, types, ttl):
    """A black-lie NSEC at owner (kept as asked) for the lower-case name."""
    return RR(owner, TYPE_NSEC, ttl=ttl,
              rdata=RD(nsec_rdata(black_lie_next(name), set(types) | {TYPE_RRSIG, TYPE_NSEC})))


class Zones:
    """The manifest's "dnssec" section: zone cuts, who delegates to whom, trust anchors."""

    def __init__(self, section, normalize):
        if not isinstance(section, dict) or set(section) - {"zones"}:
            raise ValueError('dnssec: the section is {"zones": {"<zone>": "signed" | '
                             '"unsigned" | "bogus"}}')
        zones = section.get("zones", {})
        if not isinstance(zones, dict):
            raise ValueError("dnssec: zones must map zone names to a mode")
        self.zones = {}
        for name, mode in zones.items():
            if mode not in MODES:
                raise ValueError(f"dnssec: zone {name}: the mode must be one of {MODES}")
            name = normalize(name)
            if "." not in name:
                raise ValueError(f"dnssec: zone {name}: a TLD cannot be a DNSSEC zone")
            self.zones[name] = Zone(name, mode)

    def names(self):
        return list(self.zones)

    def find(self, name):
        """The nearest listed zone at or above name, or None."""
        labels = name.split(".")
        for i in range(len(labels)):
            zone = self.zones.get(".".join(labels[i:]))
            if zone:
                return zone
        return None

    def parent(self, zone):
        """The listed zone zone is delegated from (its nearest listed ancestor), or None."""
        _, _, above = zone.name.partition(".")
        return self.find(above) if above else None

    def top_zones(self):
        return [z for z in self.zones.values() if self.parent(z) is None]

    def trust_anchors(self):
        """One DS line per signed (or bogus) top zone."""
        return [z.trust_anchor() for z in sorted(self.top_zones(), key=lambda z: z.name)
                if z.signed]
