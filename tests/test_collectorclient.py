"""
Tests for L{linkrouter.collectorclient}: the bearer token file, and building the verified TLS
client for the collector.
"""

from __future__ import annotations

import os

from treq.client import HTTPClient
from twisted.internet.testing import MemoryReactorClock
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from linkrouter.collectorclient import TokenError, collector_client, load_token
from linkrouter.devenv import make_certificate


class LoadTokenTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = FilePath(self.mktemp())
        self.directory.makedirs()

    def token_file(self, content: bytes, mode: int = 0o600) -> FilePath[str]:
        path = self.directory.child("token")
        path.setContent(content)
        os.chmod(path.path, mode)
        return path

    def test_reads(self) -> None:
        """
        A 0600 file of one visible-ASCII token gives the token, surrounding whitespace and
        the final newline stripped.
        """
        self.assertEqual(load_token(self.token_file(b"abc-DEF_123.~\n")), b"abc-DEF_123.~")
        self.assertEqual(load_token(self.token_file(b"  tok \r\n\n")), b"tok")

    def test_strictModes(self) -> None:
        """
        0600 and modes giving group and others nothing (0400, 0700) are accepted.
        """
        for mode in [0o600, 0o400, 0o700]:
            self.assertEqual(load_token(self.token_file(b"tok", mode)), b"tok", oct(mode))

    def test_openModes(self) -> None:
        """
        Any permission for group or others is refused, naming the mode and the fix.
        """
        for mode in [0o640, 0o604, 0o644, 0o660, 0o606, 0o610, 0o601, 0o777]:
            path = self.token_file(b"tok", mode)
            error = self.assertRaises(TokenError, load_token, path)
            self.assertIn(f"{mode:04o}", str(error))
            self.assertIn("chmod 600", str(error))

    def test_empty(self) -> None:
        """
        An empty file, or one of whitespace only, is refused.
        """
        for content in [b"", b"\n", b"   \n\t\n"]:
            self.assertRaises(TokenError, load_token, self.token_file(content))

    def test_nonASCII(self) -> None:
        """
        Non-ASCII bytes (UTF-8 or not), control characters, inner spaces and a second line
        are refused: the token goes into an HTTP header as it is.
        """
        for content in [
            "tökén".encode(),
            b"tok\xff",
            b"tok\x00en",
            b"tok\x7f",
            b"tok en",
            b"tok\ten",
            b"one\ntwo\n",
            b"tok\r\nInjected: header",
        ]:
            self.assertRaises(TokenError, load_token, self.token_file(content))

    def test_missing(self) -> None:
        """
        A missing file is a L{TokenError} naming the file, not an C{OSError}.
        """
        path = self.directory.child("absent")
        error = self.assertRaises(TokenError, load_token, path)
        self.assertIn(path.path, str(error))

    def test_isATokenErrorValueError(self) -> None:
        """
        L{TokenError} is a C{ValueError}, as configuration errors are.
        """
        self.assertTrue(issubclass(TokenError, ValueError))


class CollectorClientTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = FilePath(self.mktemp())
        self.directory.makedirs()
        self.ca, self.chain, self.key = make_certificate(self.directory)
        self.reactor = MemoryReactorClock()

    def test_systemRoots(self) -> None:
        """
        Without a CA file the client is built on the platform's trust roots.
        """
        client = collector_client(self.reactor)
        self.assertIsInstance(client, HTTPClient)

    def test_caFile(self) -> None:
        """
        With a CA file the client is built trusting it.
        """
        self.assertIsInstance(collector_client(self.reactor, self.ca), HTTPClient)

    def test_caBundle(self) -> None:
        """
        A CA file of several certificates (here the chain file: leaf then CA) is accepted.
        """
        self.assertIsInstance(collector_client(self.reactor, self.chain), HTTPClient)

    def test_clientCertificate(self) -> None:
        """
        A client certificate and key (mutual TLS) are loaded with the CA file.
        """
        client = collector_client(self.reactor, self.ca, self.chain, self.key)
        self.assertIsInstance(client, HTTPClient)

    def test_policyMakesClientOptions(self) -> None:
        """
        The TLS policy gives connection options for the collector's host name, with and
        without a client certificate.
        """
        from twisted.internet import ssl

        from linkrouter.collectorclient import _CollectorPolicy, _trust_root

        client = ssl.PrivateCertificate.loadPEM(
            self.chain.getContent() + b"\n" + self.key.getContent()
        )
        for certificate in [None, client]:
            policy = _CollectorPolicy(_trust_root(self.ca), certificate)
            self.assertIsNotNone(policy.creatorForNetloc(b"collector.example", 443))

    def test_caFileWithoutCertificates(self) -> None:
        """
        A CA file holding no certificate fails at once, not at the first sync.
        """
        empty = self.directory.child("empty.pem")
        empty.setContent(b"no certificates here\n")
        self.assertRaises(ValueError, collector_client, self.reactor, empty)
