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
import time
from collections.abc import Callable

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509 import ocsp
from OpenSSL import SSL, crypto
from OpenSSL._util import lib as _openssl
from twisted.internet.ssl import AcceptableCiphers, CertificateOptions, TLSVersion
from twisted.python.filepath import FilePath

__all__ = ["GROUPS", "TLS12_CIPHERS", "OCSPStaple", "TLSError", "server_options", "staple_ocsp"]

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


class OCSPStaple:
    """
    The OCSP response stapled to handshakes that ask for one: read from a DER file that a
    tool outside the router fetches from the CA's responder and refreshes (C{openssl ocsp
    -respout}, or an ACME client's), and read again by L{load} (on reload).

    A response is checked when it is read, so a wrong file fails loudly there and not in a
    browser: it must be successful, for the configured certificate, say "good", and not be
    past its next update. Once past it, nothing is stapled: a client treats an expired
    staple as a failure, but a missing one only as a missed optimisation.

    @param path: the DER-encoded OCSP response.
    @param certificate: the chain file; its first certificate is the one stapled for.
    @param now: seconds since the epoch, checked at every handshake that asks.
    """

    def __init__(
        self,
        path: FilePath[str],
        certificate: FilePath[str],
        now: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self._leaf = _load_chain(certificate)[0]
        self._now = now
        self._response = b""
        self._next_update = 0.0

    def load(self) -> None:
        """
        Read and check the response file; on any problem the previous response stays.

        @raise TLSError: the file cannot be read, is not a usable OCSP response, is for
            another certificate, says the certificate is not good, or is out of date.
        """
        where = f"OCSP response {self.path.path}"
        try:
            data = self.path.getContent()
        except OSError as error:
            raise TLSError(f"{where} cannot be read: {error.strerror}") from None
        try:
            response = ocsp.load_der_ocsp_response(data)
        except ValueError:
            raise TLSError(f"{where} is not a DER-encoded OCSP response") from None
        if response.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
            raise TLSError(f"{where} is not successful: {response.response_status.name}")
        try:
            serial, status = response.serial_number, response.certificate_status
            next_update = response.next_update_utc
        except ValueError:
            raise TLSError(f"{where} holds several responses; fetch one for the leaf") from None
        if serial != self._leaf.serial_number:
            raise TLSError(f"{where} is for another certificate (serial {serial:x})")
        if status != ocsp.OCSPCertStatus.GOOD:
            raise TLSError(f"{where} says the certificate is {status.name}")
        if next_update is None or next_update.timestamp() <= self._now():
            raise TLSError(f"{where} is out of date; fetch a new one from the CA")
        self._response, self._next_update = data, next_update.timestamp()

    def __call__(self, connection: SSL.Connection, data: object) -> bytes:
        """
        The server callback of C{SSL.Context.set_ocsp_server_callback}: the response while
        it is current, else nothing.
        """
        return self._response if self._now() < self._next_update else b""


def staple_ocsp(context: SSL.Context, staple: OCSPStaple) -> None:
    """
    Staple C{staple}'s response to every handshake of C{context} that asks for one; call
    before the context serves a connection (pyOpenSSL refuses to change a used context).
    """
    context.set_ocsp_server_callback(staple)
