"""
Tests for L{linkrouter.sni}: certificates chosen by the client's server name, proven by real
handshakes in memory, and the connection creator that follows a reload.
"""

from __future__ import annotations

import datetime
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from linkrouter.devenv import make_certificate
from linkrouter.sni import CurrentContexts, ServerContexts, load_contexts, server_names
from linkrouter.tls import TLSError

from .test_tls import shake_through_memory


class _Factory:
    wrappedFactory = None


class _TLSProtocol:
    """
    What Twisted's ALPN callback reads from a connection: the TLS protocol's factory.
    """

    factory = _Factory()


def served(
    server: SSL.Context | SSL.Connection,
    name: bytes | None,
    versions: tuple[int, int] = (SSL.TLS1_2_VERSION, SSL.TLS1_3_VERSION),
) -> str | None:
    """
    The common name of the certificate the server presents to a client asking for C{name}
    (no SNI for C{None}); C{None} when the handshake fails.
    """
    client_context = SSL.Context(SSL.TLS_METHOD)
    client_context.set_min_proto_version(versions[0])
    client_context.set_max_proto_version(versions[1])
    client_context.set_alpn_protos([b"http/1.1"])
    client = SSL.Connection(client_context, None)
    client.set_connect_state()
    if name is not None:
        client.set_tlsext_host_name(name)
    service = server if isinstance(server, SSL.Connection) else SSL.Connection(server, None)
    service.set_accept_state()
    service.set_app_data(_TLSProtocol())  # Twisted's ALPN callback reads it
    if not shake_through_memory(client, service):
        return None
    certificate = client.get_peer_certificate(as_cryptography=True)
    assert certificate is not None
    assert client.get_alpn_proto_negotiated() == b"http/1.1"
    common_name = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    return str(common_name)


def ip_only_certificate() -> bytes:
    """
    A self-signed certificate whose subjectAltName holds only an IP address.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM)


class Material:
    """
    A dev CA, a default certificate for C{localhost}, and a directory of named pairs.
    """

    def __init__(self, test: SynchronousTestCase) -> None:
        self.directory = FilePath(test.mktemp())
        self.directory.makedirs()
        self.ca, self.chain, self.key = make_certificate(self.directory)
        self.domains = self.directory.child("domains")
        self.domains.makedirs()

    def add(self, name: str, stem: str | None = None) -> FilePath[str]:
        """
        A certificate for C{name} in the domains directory as C{STEM.pem} and
        C{STEM-key.pem}.
        """
        _, chain, key = make_certificate(self.directory, name)
        stem = stem or name
        chain.moveTo(self.domains.child(f"{stem}.pem"))
        key.moveTo(self.domains.child(f"{stem}-key.pem"))
        return self.domains.child(f"{stem}.pem")

    def load(self) -> ServerContexts:
        return load_contexts(self.chain, self.key, self.domains)


class ContextsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.material = Material(self)

    def test_byName(self) -> None:
        """
        Each configured name gets its certificate, whatever its case or a final dot; a
        client without SNI, or asking for a name nobody serves, gets the default.
        """
        self.material.add("click.customer.example")
        self.material.add("links.other.example")
        contexts = self.material.load()
        cases = [
            (b"click.customer.example", "click.customer.example"),
            (b"LINKS.Other.example.", "links.other.example"),
            (b"unknown.example", "localhost"),
            (None, "localhost"),
            (b"localhost", "localhost"),
        ]
        for name, expected in cases:
            self.assertEqual(served(contexts.default, name), expected, name)

    def test_wildcard(self) -> None:
        """
        A wildcard certificate serves every name one label under its domain: not the
        domain itself, nor names two labels under it; an exact certificate wins over it.
        """
        self.material.add("*.brand.example", "_wildcard.brand.example")
        self.material.add("vip.brand.example")
        contexts = self.material.load()
        for name, expected in [
            (b"click.brand.example", "*.brand.example"),
            (b"vip.brand.example", "vip.brand.example"),
            (b"brand.example", "localhost"),
            (b"a.click.brand.example", "localhost"),
        ]:
            self.assertEqual(served(contexts.default, name), expected, name)

    def test_namedContextsHardened(self) -> None:
        """
        A named certificate is served only over TLS 1.2 and 1.3, like the default.
        """
        self.material.add("click.customer.example")
        contexts = self.material.load()
        tls12 = (SSL.TLS1_2_VERSION, SSL.TLS1_2_VERSION)
        tls11 = (SSL.TLS1_1_VERSION, SSL.TLS1_1_VERSION)
        self.assertEqual(
            served(contexts.default, b"click.customer.example", tls12), "click.customer.example"
        )
        self.assertIsNone(served(contexts.default, b"click.customer.example", tls11))
        named = contexts.names["click.customer.example"]
        self.assertIsNone(served(named, None, tls11))

    def test_namesFromTheCertificate(self) -> None:
        """
        The names served come from the certificate's subjectAltName, not the file name;
        files that are not C{.pem}, dot files and subdirectories are ignored.
        """
        self.material.add("click.customer.example", "anything")
        self.material.domains.child("README").setContent(b"certificates live here\n")
        self.material.domains.child(".tmp.pem").setContent(b"half-written")
        self.material.domains.child("archive.pem").makedirs()
        contexts = self.material.load()
        self.assertEqual(sorted(contexts.names), ["click.customer.example"])
        self.assertEqual(
            server_names(self.material.domains.child("anything.pem")), ["click.customer.example"]
        )

    def test_noDirectory(self) -> None:
        """
        Without a directory, every client gets the default certificate.
        """
        contexts = load_contexts(self.material.chain, self.material.key)
        self.assertEqual(contexts.names, {})
        self.assertEqual(served(contexts.default, b"click.customer.example"), "localhost")

    def test_refused(self) -> None:
        """
        A certificate without its key, a key without its certificate, two certificates for
        one name, a certificate naming no DNS name and a missing directory are each refused,
        naming the file.
        """
        domains = self.material.domains
        first = self.material.add("click.customer.example")
        first.sibling("click.customer.example-key.pem").moveTo(domains.child("moved"))
        error = str(self.assertRaises(TLSError, self.material.load))
        self.assertIn(f"certificate {first.path} has no private key", error)
        domains.child("moved").moveTo(domains.child("other-key.pem"))
        first.remove()
        error = str(self.assertRaises(TLSError, self.material.load))
        self.assertIn(
            f"private key {domains.child('other-key.pem').path} has no certificate", error
        )
        domains.child("other-key.pem").remove()
        self.material.add("click.customer.example", "a")
        self.material.add("click.customer.example", "b")
        error = str(self.assertRaises(TLSError, self.material.load))
        self.assertIn("both serve click.customer.example", error)
        for stem in "ab":
            domains.child(f"{stem}.pem").remove()
            domains.child(f"{stem}-key.pem").remove()
        bare = self.material.domains.child("bare.pem")
        bare.setContent(b"")
        self.assertIn("holds no PEM", str(self.assertRaises(TLSError, server_names, bare)))
        bare.setContent(ip_only_certificate())
        self.assertIn("names no DNS name", str(self.assertRaises(TLSError, server_names, bare)))
        bare.remove()
        domains.remove()
        error = str(self.assertRaises(TLSError, self.material.load))
        self.assertIn(f"certificates directory {domains.path} cannot be read", error)


class CurrentContextsTests(SynchronousTestCase):
    def test_followsTheCurrentContexts(self) -> None:
        """
        Each new connection uses the contexts current when it is made; a connection made
        before a swap keeps the certificate it started with.
        """
        old = Material(self)
        new = Material(self)
        new_contexts = load_contexts(*make_certificate(new.directory, "renewed")[1:])
        current = [old.load()]
        creator = CurrentContexts(lambda: current[0])
        before = creator.serverConnectionForTLS(object())
        current[0] = new_contexts
        after = creator.serverConnectionForTLS(object())
        self.assertEqual(served(before, None), "localhost")
        self.assertEqual(served(after, None), "renewed")
