# -*- test-case-name: tests.test_tls -*-
"""
Server TLS that grades A+: TLS 1.2 and 1.3 only, the six ECDHE AEAD suites for TLS 1.2,
X25519/P-256/P-384 only, no session tickets, no compression; RSA or ECDSA certificates.

Certificates and keys are read with C{cryptography} and handed to pyOpenSSL, so one loader
serves RSA and ECDSA alike and every problem is reported at start-up.
"""

from __future__ import annotations

import os
import stat

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from OpenSSL import SSL, crypto
from OpenSSL._util import lib as _openssl
from twisted.internet.ssl import AcceptableCiphers, CertificateOptions, TLSVersion
from twisted.python.filepath import FilePath

__all__ = ["GROUPS", "TLS12_CIPHERS", "TLSError", "server_options"]

TLS12_CIPHERS = ":".join(
    [
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    ]
)
"""Mozilla "intermediate": the only TLS 1.2 suites offered (TLS 1.3 suites are OpenSSL's)."""

GROUPS = b"X25519:P-256:P-384"
"""Key-exchange groups: OpenSSL 3 would also offer X448 and P-521, which graders flag."""


class TLSError(ValueError):
    """
    A certificate or key cannot be used; the message names the file and the problem.
    """


def _load_chain(path: FilePath[str]) -> list[x509.Certificate]:
    try:
        chain = x509.load_pem_x509_certificates(path.getContent())
    except OSError as error:
        raise TLSError(f"certificate {path.path} cannot be read: {error.strerror}") from None
    except ValueError:
        raise TLSError(f"certificate {path.path} holds no PEM certificate") from None
    return chain


def _load_key(path: FilePath[str]) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    try:
        mode = stat.S_IMODE(os.stat(path.path).st_mode)
        data = path.getContent()
    except OSError as error:
        raise TLSError(f"private key {path.path} cannot be read: {error.strerror}") from None
    if mode & 0o077:
        raise TLSError(
            f"private key {path.path} has mode {mode:04o}: group or others may read it; "
            f"run 'chmod 600 {path.path}'"
        )
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as error:
        raise TLSError(f"private key {path.path} cannot be loaded: {error}") from None
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < 2048:
            raise TLSError(f"private key {path.path} is RSA-{key.key_size}; use 2048 or more")
        return key
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(
        key.curve, ec.SECP256R1 | ec.SECP384R1
    ):
        return key
    raise TLSError(f"private key {path.path} is neither RSA nor ECDSA P-256/P-384")


def server_options(certificate: FilePath[str], private_key: FilePath[str]) -> CertificateOptions:
    """
    Hardened server options for the leaf certificate (first in C{certificate}, followed by
    its intermediates) and its C{private_key}.

    @raise TLSError: a file is missing, unreadable, too open, or the key does not match.
    """
    chain = _load_chain(certificate)
    key = _load_key(private_key)
    leaf = chain[0]
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if leaf.public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
        raise TLSError(
            f"private key {private_key.path} does not match certificate {certificate.path}"
        )
    options = CertificateOptions(
        privateKey=crypto.PKey.from_cryptography_key(key),
        certificate=crypto.X509.from_cryptography(leaf),
        extraCertChain=[crypto.X509.from_cryptography(c) for c in chain[1:]],
        raiseMinimumTo=TLSVersion.TLSv1_2,
        acceptableCiphers=AcceptableCiphers.fromOpenSSLCipherString(TLS12_CIPHERS),
        acceptableProtocols=[b"http/1.1"],
        enableSessions=False,
        enableSessionTickets=False,
    )
    context = options.getContext()  # built once and cached: every connection shares it
    _restrict_groups(context)
    return options


def _restrict_groups(context: SSL.Context) -> None:
    # pyOpenSSL has no public setter for the group list; its own binding of
    # SSL_CTX_set1_curves_list (the same call as set1_groups_list) does it.
    if _openssl.SSL_CTX_set1_curves_list(context._context, GROUPS) != 1:
        raise TLSError(f"OpenSSL refused the key-exchange groups {GROUPS.decode()}")
