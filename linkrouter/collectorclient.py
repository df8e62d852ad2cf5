# -*- test-case-name: tests.test_collectorclient -*-
"""
The HTTPS client sync uses to reach the collector: treq over an Agent whose TLS verifies the
collector's name (C{service-identity}) against the system roots or a configured CA file, with
an optional client certificate for mutual TLS; and the bearer token, read from a 0600 file.
"""

from __future__ import annotations

from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from treq.client import HTTPClient
from twisted.internet import ssl
from twisted.python.filepath import FilePath
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer  # type: ignore[import-untyped]

from .privatefile import PrivateFileError, read_private_file

__all__ = ["TokenError", "collector_client", "load_token"]


class TokenError(ValueError):
    """
    The token file cannot be used; the message names it and the fix.
    """


def load_token(path: FilePath[str]) -> bytes:
    """
    The bearer token in C{path}: mode 0600 (or stricter), one line of visible ASCII.
    """
    try:
        token = read_private_file(path, "token file", 4096).strip()
    except PrivateFileError as error:
        raise TokenError(str(error)) from None
    if not token or not all(0x21 <= byte <= 0x7E for byte in token):
        raise TokenError(f"token file {path.path} must hold one token of visible ASCII")
    return token


@implementer(IPolicyForHTTPS)
class _CollectorPolicy:
    """
    Verify the collector against C{trust}; present C{client} if given.
    """

    def __init__(self, trust: Any, client: ssl.PrivateCertificate | None) -> None:
        self._trust = trust
        self._client = client

    def creatorForNetloc(self, hostname: bytes, port: int) -> Any:
        return ssl.optionsForClientTLS(
            hostname.decode("ascii"), trustRoot=self._trust, clientCertificate=self._client
        )


def _trust_root(ca_file: FilePath[str] | None) -> Any:
    if ca_file is None:
        return ssl.platformTrust()
    certificates = x509.load_pem_x509_certificates(ca_file.getContent())
    return ssl.trustRootFromCertificates(
        [ssl.Certificate.loadPEM(c.public_bytes(serialization.Encoding.PEM)) for c in certificates]
    )


def collector_client(
    reactor: Any,
    ca_file: FilePath[str] | None = None,
    client_certificate: FilePath[str] | None = None,
    client_key: FilePath[str] | None = None,
) -> HTTPClient:
    """
    A treq client for the collector with persistent connections and verified TLS.
    """
    client = None
    if client_certificate is not None and client_key is not None:
        client = ssl.PrivateCertificate.loadPEM(
            client_certificate.getContent() + b"\n" + client_key.getContent()
        )
    policy = _CollectorPolicy(_trust_root(ca_file), client)
    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = 2
    return HTTPClient(Agent(reactor, contextFactory=policy, pool=pool))  # type: ignore[arg-type]
