# -*- test-case-name: tests.test_devenv -*-
"""
Development material for a router on loopback: a local CA, a C{localhost} certificate, a
keyring and a config, made once under a directory (C{var/dev/} for C{make run}).

Nothing here is for production: the CA key sits next to what it signs.
"""

from __future__ import annotations

import datetime
import ipaddress
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from twisted.python.filepath import FilePath

from .keyfile import save_keyring
from .keys import Keyring, new_key

__all__ = ["make_certificate", "make_devenv"]

_PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def _new_key(kind: str) -> _PrivateKey:
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def _write(path: FilePath[str], data: bytes, mode: int) -> None:
    fd = os.open(path.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    with os.fdopen(fd, "wb") as file:
        os.fchmod(file.fileno(), mode)
        file.write(data)


def _pem_key(key: _PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_certificate(
    directory: FilePath[str], name: str = "localhost", kind: str = "ecdsa"
) -> tuple[FilePath[str], FilePath[str], FilePath[str]]:
    """
    A CA (C{ca.pem}, C{ca-key.pem}) and a 365-day certificate for C{name}, C{127.0.0.1}
    and C{::1} signed by it (C{NAME.pem} holding leaf then CA, C{NAME-key.pem}); C{kind} is
    C{ecdsa} (P-256) or C{rsa} (2048). The CA is reused if present.

    @return: the CA certificate, the chain and the private key.
    """
    now = datetime.datetime.now(datetime.UTC)
    ca_path, ca_key_path = directory.child("ca.pem"), directory.child("ca-key.pem")
    if ca_path.exists() and ca_key_path.exists():
        ca_cert = x509.load_pem_x509_certificate(ca_path.getContent())
        loaded = serialization.load_pem_private_key(ca_key_path.getContent(), None)
        assert isinstance(loaded, ec.EllipticCurvePrivateKey)
        ca_key: ec.EllipticCurvePrivateKey = loaded
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "linkrouter dev CA")])
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )
        _write(ca_key_path, _pem_key(ca_key), 0o600)
        _write(ca_path, ca_cert.public_bytes(serialization.Encoding.PEM), 0o644)
    key = _new_key(kind)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName(name),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    chain, key_path = directory.child(f"{name}.pem"), directory.child(f"{name}-key.pem")
    _write(key_path, _pem_key(key), 0o600)
    _write(
        chain,
        leaf.public_bytes(serialization.Encoding.PEM)
        + ca_cert.public_bytes(serialization.Encoding.PEM),
        0o644,
    )
    return ca_path, chain, key_path


_CONFIG = """\
# Development router: made by 'linkrouter devenv'. See conf/linkrouter.toml for production.
router_id = "dev"
keyring = "keyring.json"

[listen]
host = "127.0.0.1"
port = {port}
certificate = "localhost.pem"
private_key = "localhost-key.pem"

[journal]
directory = "journal"

[admin]
host = "127.0.0.1"
port = {admin_port}
"""


def make_devenv(directory: FilePath[str], port: int = 8443, admin_port: int = 9110) -> bool:
    """
    Make the development material in C{directory} unless it is there already.

    @return: whether anything was made.
    """
    config = directory.child("linkrouter.toml")
    if config.exists():
        return False
    os.makedirs(directory.path, mode=0o700, exist_ok=True)
    make_certificate(directory)
    save_keyring(Keyring((new_key(),)), directory.child("keyring.json"))
    _write(config, _CONFIG.format(port=port, admin_port=admin_port).encode(), 0o644)
    return True
