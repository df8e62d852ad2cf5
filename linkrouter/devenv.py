# -*- test-case-name: tests.test_devenv -*-
"""
Development material for a router and a collector on loopback: a local CA, a C{localhost}
certificate, a keyring, the collector's tokens and both configs, made once under a directory
(C{var/dev/} for C{make run}).

Nothing here is for production: the CA key sits next to what it signs.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets

from attrs import frozen
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from twisted.python.filepath import FilePath

from .keyfile import save_keyring
from .keys import Keyring, new_key

__all__ = ["DevPorts", "make_certificate", "make_devenv"]

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


_ROUTER_CONFIG = """\
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

[sync]
url = "https://localhost:{collector_port}/v1/events"
token_file = "router-token"
ca_file = "ca.pem"
interval = 2

[admin]
host = "127.0.0.1"
port = {admin_port}
"""

_COLLECTOR_CONFIG = """\
# Development collector: made by 'linkrouter devenv'. See conf/linkcollector.toml for production.
[listen]
host = "127.0.0.1"
port = {collector_port}
certificate = "localhost.pem"
private_key = "localhost-key.pem"

[auth]
tokens_file = "collector-tokens.toml"

[store]
database = "collector/collector.sqlite3"
"""


def _token() -> str:
    return secrets.token_hex(24)


@frozen
class DevPorts:
    router: int = 8443
    admin: int = 9110
    collector: int = 8444


def make_devenv(directory: FilePath[str], ports: DevPorts = DevPorts()) -> bool:
    """
    Make the development material in C{directory}, each piece unless it is there already:
    the CA and certificate, the keyring, the collector's tokens (and the router's copy of
    its own, the reader's in C{reader-token}), and both configurations.

    @return: whether anything was made.
    """
    os.makedirs(directory.path, mode=0o700, exist_ok=True)
    made = False
    if not directory.child("localhost.pem").exists():
        make_certificate(directory)
        made = True
    if not directory.child("keyring.json").exists():
        save_keyring(Keyring((new_key(),)), directory.child("keyring.json"))
        made = True
    tokens = directory.child("collector-tokens.toml")
    if not tokens.exists():
        router, issuer, reader = _token(), _token(), _token()
        _write(
            tokens,
            f'[routers]\ndev = "{router}"\n[issuers]\ndev = "{issuer}"\n'
            f'[readers]\ndev = "{reader}"\n'.encode(),
            0o600,
        )
        _write(directory.child("router-token"), f"{router}\n".encode(), 0o600)
        _write(directory.child("issuer-token"), f"{issuer}\n".encode(), 0o600)
        _write(directory.child("reader-token"), f"{reader}\n".encode(), 0o600)
        made = True
    os.makedirs(directory.child("collector").path, mode=0o700, exist_ok=True)
    values = {"port": ports.router, "admin_port": ports.admin, "collector_port": ports.collector}
    router_config = directory.child("linkrouter.toml")
    if not router_config.exists() or b"[sync]" not in router_config.getContent():
        _write(router_config, _ROUTER_CONFIG.format(**values).encode(), 0o644)
        made = True
    collector_config = directory.child("linkcollector.toml")
    if not collector_config.exists():
        _write(collector_config, _COLLECTOR_CONFIG.format(**values).encode(), 0o644)
        made = True
    return made
