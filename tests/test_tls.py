"""
Tests for L{linkrouter.tls}: the hardened server options, proven by real handshakes in memory
against clients offering only what a grader probes.
"""

from __future__ import annotations

import contextlib
import os

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from OpenSSL import SSL
from OpenSSL._util import lib as _openssl
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from linkrouter.devenv import make_certificate
from linkrouter.tls import TLSError, server_options


def handshake(
    server: SSL.Context,
    *,
    versions: tuple[int, int] = (SSL.TLS1_2_VERSION, SSL.TLS1_3_VERSION),
    ciphers: bytes | None = None,
    groups: bytes | None = None,
) -> SSL.Connection | None:
    """
    A client with the given offer, shaking hands with C{server} through memory; the client
    connection when the handshake succeeds, C{None} when it fails.
    """
    client_context = SSL.Context(SSL.TLS_METHOD)
    client_context.set_min_proto_version(versions[0])
    client_context.set_max_proto_version(versions[1])
    client_context.set_cipher_list(b"ALL:@SECLEVEL=0" if ciphers is None else ciphers)
    if groups is not None:
        assert _openssl.SSL_CTX_set1_curves_list(client_context._context, groups) == 1
    client = SSL.Connection(client_context, None)
    client.set_connect_state()
    service = SSL.Connection(server, None)
    service.set_accept_state()
    return client if shake_through_memory(client, service) else None


def shake_through_memory(client: SSL.Connection, server: SSL.Connection) -> bool:
    """
    Run the handshake of C{client} and C{server}, moving their bytes through memory; whether
    it succeeded.
    """
    for _ in range(10):
        for connection in (client, server):
            try:
                connection.do_handshake()
            except SSL.WantReadError:
                pass
            except SSL.Error:
                return False
        for source, sink in ((client, server), (server, client)):
            with contextlib.suppress(SSL.WantReadError):
                sink.bio_write(source.bio_read(65536))
    try:
        client.do_handshake()
    except SSL.Error:
        return False
    return True


class ServerOptionsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = FilePath(self.mktemp())
        self.directory.makedirs()

    def context(self, kind: str = "ecdsa") -> SSL.Context:
        _, chain, key = make_certificate(self.directory, kind=kind)
        return server_options(chain, key).getContext()

    def test_modernClientsConnect(self) -> None:
        """
        TLS 1.3 and TLS 1.2 clients connect, with ECDSA and with RSA certificates; TLS 1.2
        negotiates an ECDHE AEAD suite.
        """
        for kind in ["ecdsa", "rsa"]:
            server = self.context(kind)
            tls13 = handshake(server)
            assert tls13 is not None
            self.assertEqual(tls13.get_protocol_version_name(), "TLSv1.3")
            tls12 = handshake(server, versions=(SSL.TLS1_2_VERSION, SSL.TLS1_2_VERSION))
            assert tls12 is not None
            cipher = tls12.get_cipher_name()
            assert cipher is not None
            self.assertTrue(cipher.startswith("ECDHE-"), cipher)
            self.assertTrue("GCM" in cipher or "CHACHA20" in cipher, cipher)

    def test_oldProtocolsRefused(self) -> None:
        """
        TLS 1.0 and 1.1 clients are refused.
        """
        server = self.context()
        for version in [SSL.TLS1_VERSION, SSL.TLS1_1_VERSION]:
            self.assertIsNone(handshake(server, versions=(version, version)))

    def test_weakSuitesRefused(self) -> None:
        """
        TLS 1.2 clients offering only CBC, static RSA or DHE suites are refused.
        """
        server = self.context("rsa")
        tls12 = (SSL.TLS1_2_VERSION, SSL.TLS1_2_VERSION)
        for offer in [
            b"ECDHE-RSA-AES128-SHA256:ECDHE-RSA-AES256-SHA",
            b"AES128-GCM-SHA256:AES256-SHA",
            b"DHE-RSA-AES128-GCM-SHA256",
        ]:
            self.assertIsNone(handshake(server, versions=tls12, ciphers=offer + b":@SECLEVEL=0"))

    def test_onlyModernGroups(self) -> None:
        """
        X25519, P-256 and P-384 are accepted; a client offering only X448 or P-521 is refused.
        """
        server = self.context()
        for group in [b"X25519", b"P-256", b"P-384"]:
            self.assertIsNotNone(handshake(server, groups=group), group)
        for group in [b"X448", b"P-521"]:
            self.assertIsNone(handshake(server, groups=group), group)

    def test_chainIsServed(self) -> None:
        """
        The intermediate certificates after the leaf are sent to the client.
        """
        client = handshake(self.context())
        assert client is not None
        chain = client.get_peer_cert_chain()
        assert chain is not None
        self.assertEqual(len(chain), 2)

    def test_keyOpenToOthersRefused(self) -> None:
        """
        A private key that group or others may read is refused, naming chmod 600.
        """
        _, chain, key = make_certificate(self.directory)
        os.chmod(key.path, 0o640)
        self.assertIn("chmod 600", str(self.assertRaises(TLSError, server_options, chain, key)))

    def test_badMaterialRefused(self) -> None:
        """
        A missing file, a file without a certificate, a weak RSA key and a key that does not
        match the certificate are each refused with a clear message.
        """
        _, chain, key = make_certificate(self.directory)
        missing = self.directory.child("nope.pem")
        self.assertIn(
            "cannot be read", str(self.assertRaises(TLSError, server_options, missing, key))
        )
        self.assertIn("no PEM", str(self.assertRaises(TLSError, server_options, key, key)))
        weak = self.directory.child("weak.pem")
        small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
        weak.setContent(
            small.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        os.chmod(weak.path, 0o600)
        self.assertIn("2048", str(self.assertRaises(TLSError, server_options, chain, weak)))
        other = FilePath(self.mktemp())
        other.makedirs()
        _, _, other_key = make_certificate(other)
        self.assertIn(
            "does not match", str(self.assertRaises(TLSError, server_options, chain, other_key))
        )
