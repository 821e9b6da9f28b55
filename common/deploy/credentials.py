"""TLS certificates and SuperNode authentication keys for a real deployment.

Two kinds of credential protect a federation:

* **TLS** (``fedsynth certs``): a private certificate authority and a server certificate
  for the coordinator, with subject alternative names for every address institutions use to
  reach it. Institutions get ``ca.pem`` only and verify the coordinator with it.
* **SuperNode authentication** (``fedsynth keys``): each institution holds an EC P-384 key
  pair in OpenSSH format (what Flower's SuperNode loads). The coordinator registers the
  *public* halves; a SuperNode whose key was not registered is refused.

Private keys are written atomically with mode 0600 and never printed: a half-written or
world-readable key would be worse than none. Key generation uses ``cryptography``, which
draws from the operating system's CSPRNG.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    load_ssh_private_key,
    load_ssh_public_key,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from fedsynth.common.atomic import atomic_write_bytes
from fedsynth.common.errors import FedsynthError
from fedsynth.common.outputs import (
    CERTIFICATE_FOLDER,
    KEY_FOLDER,
    Existing,
    claim_dir,
    find_existing,
    replace_dir,
)

PRIVATE_MODE = 0o600
CA_CERT, CA_KEY = "ca.pem", "ca.key"
SERVER_CERT, SERVER_KEY = "server.pem", "server.key"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class CertificateRequest:
    """What ``fedsynth certs`` issues: a CA and one server certificate signed by it."""

    out_dir: Path
    sans: tuple[str, ...] = ("localhost", "127.0.0.1")  # names the coordinator is reached by
    days: int = 365
    common_name: str = "fedsynth coordinator"
    overwrite: bool = False  # replace the CA of an earlier `fedsynth certs` in out_dir


@dataclass(frozen=True)
class IssuedCertificates:
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    sans: tuple[str, ...] = field(default_factory=tuple)


def _now() -> dt.datetime:
    """Aware UTC now, for certificate validity (not the string stamps of fedsynth.common.timestamps)."""
    return dt.datetime.now(dt.UTC)


def _san_entries(sans: tuple[str, ...]) -> list[x509.GeneralName]:
    entries = []
    for raw in sans:
        name = raw.strip()
        if not name:
            raise FedsynthError("--san: empty name")
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            if not re.fullmatch(r"[A-Za-z0-9*]([A-Za-z0-9.*-]{0,252})", name):
                raise FedsynthError(f"--san {raw!r}: not an IP address or DNS name") from None
            entries.append(x509.DNSName(name))
    return entries


def _private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def issue_certificates(req: CertificateRequest) -> IssuedCertificates:
    """Create ``ca.pem``/``ca.key`` and ``server.pem``/``server.key`` in ``req.out_dir``.

    The folder is written whole (see :func:`fedsynth.common.outputs.replace_dir`). An earlier
    one is replaced only with ``overwrite``: a new CA silently would lock every institution
    out (their copy of ``ca.pem`` would no longer verify the coordinator).
    """
    if req.days < 1:
        raise FedsynthError(f"--days {req.days}: must be at least 1")
    if not req.sans:
        raise FedsynthError("give at least one --san (the name or address clients use to reach the coordinator)")
    out = Path(req.out_dir)
    if not req.overwrite and find_existing(out, CERTIFICATE_FOLDER, "--out") is Existing.PREVIOUS:
        raise FedsynthError(f"--out {out}: already holds a CA; refusing to replace a CA (institutions' ca.pem would "
                            "no longer verify the coordinator); choose a new --out, or pass --overwrite to replace it")
    paths = IssuedCertificates(out / CA_CERT, out / CA_KEY, out / SERVER_CERT, out / SERVER_KEY, tuple(req.sans))
    sans = _san_entries(tuple(req.sans))
    start, end = _now() - dt.timedelta(minutes=5), _now() + dt.timedelta(days=req.days)

    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fedsynth federation CA")])
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA384())
    )
    srv_key = ec.generate_private_key(ec.SECP384R1())
    srv_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, req.common_name)]))
        .issuer_name(ca_name).public_key(srv_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA384())
    )
    with replace_dir(out, CERTIFICATE_FOLDER, overwrite=req.overwrite, option="--out") as new:
        atomic_write_bytes(new / CA_KEY, _private_pem(ca_key), mode=PRIVATE_MODE)
        atomic_write_bytes(new / SERVER_KEY, _private_pem(srv_key), mode=PRIVATE_MODE)
        atomic_write_bytes(new / CA_CERT, ca_cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
        atomic_write_bytes(new / SERVER_CERT, srv_cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    return paths


@dataclass(frozen=True)
class NodeKeyPair:
    name: str
    private_key: Path
    public_key: Path
    fingerprint: str  # SHA-256 of the public key: safe to print, lets people compare keys by eye


def _fingerprint(public_ssh: bytes) -> str:
    blob = base64.b64decode(public_ssh.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def generate_node_keys(out_dir: Path, name: str, *, overwrite: bool = False) -> NodeKeyPair:
    """An EC P-384 key pair for one SuperNode: ``<name>`` (private, 0600) and ``<name>.pub``.

    ``out_dir`` is a key folder fedsynth made (or a new or empty one); further pairs are added
    to it, and an existing pair of the same name is replaced only with ``overwrite``.
    """
    if not _NAME_RE.match(name):
        raise FedsynthError(f"--name {name!r}: use letters, digits, '.', '_' or '-' (at most 64)")
    out = Path(out_dir)
    priv, pub = out / name, out / f"{name}.pub"
    claim_dir(out, KEY_FOLDER, "--out")
    for p in (priv, pub):
        if p.exists() and not overwrite:
            raise FedsynthError(f"{p}: already exists; refusing to replace a key (choose another --name or --out, "
                                "or pass --overwrite to replace it)")
    key = ec.generate_private_key(ec.SECP384R1())
    private_bytes = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                      serialization.NoEncryption())
    public_bytes = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                 serialization.PublicFormat.OpenSSH) + f" {name}\n".encode()
    atomic_write_bytes(priv, private_bytes, mode=PRIVATE_MODE)
    atomic_write_bytes(pub, public_bytes, mode=0o644)
    return NodeKeyPair(name, priv, pub, _fingerprint(public_bytes))


def check_private_file(path: Path, option: str) -> Path:
    """A private key must exist and be readable by its owner only (like ssh insists)."""
    p = Path(path)
    if not p.is_file():
        raise FedsynthError(f"{option} {p}: no such file")
    mode = stat.S_IMODE(p.stat().st_mode)
    if mode & 0o077:
        raise FedsynthError(f"{option} {p}: permissions {oct(mode)} are too open; run `chmod 600 {p}`")
    if not os.access(p, os.R_OK):
        raise FedsynthError(f"{option} {p}: not readable by this user")
    return p


def check_node_private_key(path: Path, option: str = "--auth-key") -> Path:
    """The SuperNode key must be an OpenSSH EC private key (what flower-supernode accepts)."""
    p = check_private_file(path, option)
    try:
        key = load_ssh_private_key(p.read_bytes(), None)
    except (ValueError, TypeError) as exc:
        raise FedsynthError(f"{option} {p}: not an unencrypted OpenSSH private key ({type(exc).__name__}); "
                            "create one with `fedsynth keys`") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise FedsynthError(f"{option} {p}: not an EC key; create one with `fedsynth keys`")
    return p


def check_node_public_key(path: Path, option: str = "--authorized-key") -> str:
    """Validate a registered public key; returns its fingerprint."""
    p = Path(path)
    if not p.is_file():
        raise FedsynthError(f"{option} {p}: no such file")
    data = p.read_bytes()
    if b"PRIVATE KEY" in data:
        raise FedsynthError(f"{option} {p}: this is a private key; register the .pub file")
    try:
        key = load_ssh_public_key(data.strip())
    except (ValueError, TypeError):
        raise FedsynthError(f"{option} {p}: not an OpenSSH public key; create one with `fedsynth keys`") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise FedsynthError(f"{option} {p}: not an EC public key; create one with `fedsynth keys`")
    return _fingerprint(data)


def check_certificate(path: Path, option: str) -> Path:
    """A PEM certificate that parses (catches swapped or truncated files before Flower does)."""
    p = Path(path)
    if not p.is_file():
        raise FedsynthError(f"{option} {p}: no such file")
    try:
        x509.load_pem_x509_certificate(p.read_bytes())
    except ValueError:
        raise FedsynthError(f"{option} {p}: not a PEM certificate") from None
    return p
