"""Test CA and policy-host certificates for the test world (python3-cryptography only).

Every certificate profile a policy host can present (README, "cert") is made here. Keys are
ECDSA P-256 and every leaf shares one key: issuing a certificate is then a signature, not a key
generation, so hosts added at run time get their certificate in about a millisecond.
"""

import datetime
import ipaddress
import os
import secrets
import threading

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PROFILES = ("valid", "expired", "wrong-name", "self-signed", "cn-only", "wildcard",
            "wildcard-too-deep", "untrusted")

# Names that no test ever connects to, so a certificate for them never matches by accident.
DEFAULT_HOST = "unknown.invalid"
WRONG_NAME = "wrong-name.invalid"

_DAY = datetime.timedelta(days=1)


def _now():
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def _new_key():
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mtasts test world"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


class Authority:
    """A self-signed CA that issues leaf certificates."""

    def __init__(self, common_name, existing=None):
        """A new CA, or with existing=(certificate PEM, key PEM) one loaded from files."""
        if existing is not None:
            cert_pem, key_pem = existing
            self.cert = x509.load_pem_x509_certificate(cert_pem)
            self.key = serialization.load_pem_private_key(key_pem, password=None)
            return
        self.key = _new_key()
        now = _now()
        ski = x509.SubjectKeyIdentifier.from_public_key(self.key.public_key())
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(_name(common_name))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            # Valid from before the expired profile's notBefore, so only the leaf is at fault.
            .not_valid_before(now - 3 * 365 * _DAY)
            .not_valid_after(now + 20 * 365 * _DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=True, crl_sign=True,
                                         encipher_only=False, decipher_only=False),
                           critical=True)
            .add_extension(ski, critical=False)
            .sign(self.key, hashes.SHA256())
        )

    def pem(self):
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self):
        return _key_pem(self.key)


def _key_pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _san(names):
    entries = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def make_leaf(key, common_name, san_names, issuer, not_before, not_after):
    """One server certificate. issuer None means self-signed by key; san_names None means no
    SAN extension at all (the cn-only profile)."""
    subject = _name(common_name)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=False, crl_sign=False,
                                     encipher_only=False, decipher_only=False),
                       critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
    )
    if issuer:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False)
    if san_names is not None:
        builder = builder.add_extension(_san(san_names), critical=False)
    return builder.sign(issuer.key if issuer else key, hashes.SHA256())


def _parent(host, levels):
    labels = host.split(".")
    return ".".join(labels[levels:]) if len(labels) > levels else host


def profile_parameters(host, profile, san=None):
    """(common name, SAN list or None, issuer kind, validity kind) for a host's profile.

    issuer kind: "ca", "untrusted" or "self"; validity kind: "current" or "expired".
    san overrides the SAN names of every profile except cn-only (e.g. a certificate valid
    for the provider's host under CNAME delegation).
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown certificate profile {profile!r}")
    names = {
        "valid": [host],
        "expired": [host],
        "wrong-name": [WRONG_NAME],
        "self-signed": [host],
        "cn-only": None,
        # *.enforce.example for mta-sts.enforce.example: one label, allowed (RFC 8461 §3.3).
        "wildcard": ["*." + _parent(host, 1)],
        # *.example.net for mta-sts.a.example.net: the * would have to cover two labels.
        "wildcard-too-deep": ["*." + _parent(host, 2)],
        "untrusted": [host],
    }[profile]
    if san is not None and profile != "cn-only":
        names = list(san)
    common_name = names[0] if names else host
    issuer = {"self-signed": "self", "untrusted": "untrusted"}.get(profile, "ca")
    validity = "expired" if profile == "expired" else "current"
    return common_name, names, issuer, validity


class CertStore:
    """Writes ca.pem (and untrusted-ca.pem) into a directory and issues certificate files for
    (host, profile, san) on demand, once each.

    The CA keys are written beside them (ca-key.pem, untrusted-ca-key.pem, mode 0600) so that
    another process can issue certificates from the same CAs: CertStore(dir, ca_dir=world_dir)
    loads ca.pem, untrusted-ca.pem and their keys from ca_dir (e.g. a running world's state
    directory; tests/world/smtp_sinks.py does this) instead of making new ones, and ca_file
    then names ca_dir's ca.pem, the file clients must trust."""

    CA_FILES = ("ca.pem", "ca-key.pem", "untrusted-ca.pem", "untrusted-ca-key.pem")

    def __init__(self, directory, ca_dir=None):
        self.directory = directory
        os.makedirs(os.path.join(directory, "certs"), exist_ok=True)
        if ca_dir is None:
            self.ca = Authority("mtasts test world CA")
            self.untrusted_ca = Authority("mtasts test world untrusted CA")
            self.ca_file = self._write("ca.pem", self.ca.pem())
            self.untrusted_ca_file = self._write("untrusted-ca.pem", self.untrusted_ca.pem())
            self._write("ca-key.pem", self.ca.key_pem(), private=True)
            self._write("untrusted-ca-key.pem", self.untrusted_ca.key_pem(), private=True)
        else:
            def read(name):
                with open(os.path.join(ca_dir, name), "rb") as f:
                    return f.read()
            self.ca = Authority(None, (read("ca.pem"), read("ca-key.pem")))
            self.untrusted_ca = Authority(None, (read("untrusted-ca.pem"),
                                                 read("untrusted-ca-key.pem")))
            self.ca_file = os.path.join(os.path.abspath(ca_dir), "ca.pem")
            self.untrusted_ca_file = os.path.join(os.path.abspath(ca_dir), "untrusted-ca.pem")
        self.leaf_key = _new_key()
        self.key_file = self._write("certs/leaf-key.pem", _key_pem(self.leaf_key), private=True)
        self._issued = {}
        self._lock = threading.Lock()

    def _write(self, relative, data, private=False):
        path = os.path.join(self.directory, relative)
        fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                     0o600 if private else 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(path + ".tmp", path)
        return path

    def cert_file(self, host, profile="valid", san=None):
        """Path of a PEM certificate for host under profile; the key is self.key_file."""
        cache_key = (host, profile, tuple(san) if san is not None else None)
        with self._lock:
            path = self._issued.get(cache_key)
            if path is None:
                path = self._write(f"certs/{secrets.token_hex(8)}.pem",
                                   self._issue(host, profile, san))
                self._issued[cache_key] = path
            return path

    def _issue(self, host, profile, san):
        common_name, names, issuer_kind, validity = profile_parameters(host, profile, san)
        issuer = {"ca": self.ca, "untrusted": self.untrusted_ca, "self": None}[issuer_kind]
        now = _now()
        if validity == "expired":
            not_before, not_after = now - 2 * 365 * _DAY, now - _DAY
        else:
            not_before, not_after = now - _DAY, now + 3650 * _DAY
        cert = make_leaf(self.leaf_key, common_name, names, issuer, not_before, not_after)
        return cert.public_bytes(serialization.Encoding.PEM)
