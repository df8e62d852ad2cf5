"""
Tests for L{linkrouter.tls.OCSPStaple}: a checked OCSP response stapled to the handshakes
that ask for one, and nothing once it is out of date.
"""

from __future__ import annotations

import contextlib
import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from OpenSSL import SSL
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from linkrouter.devenv import make_certificate
from linkrouter.tls import OCSPStaple, TLSError, server_options, staple_ocsp

NOW = datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC)


def ocsp_response(
    directory: FilePath[str],
    chain: FilePath[str],
    status: ocsp.OCSPCertStatus = ocsp.OCSPCertStatus.GOOD,
    now: datetime.datetime = NOW,
    valid: datetime.timedelta = datetime.timedelta(days=7),
) -> bytes:
    """
    A DER OCSP response for the leaf of C{chain}, signed by the CA in C{directory} (as
    made by C{make_certificate}), made an hour before C{now} and current for C{valid}
    after it.
    """
    leaf = x509.load_pem_x509_certificates(chain.getContent())[0]
    ca = x509.load_pem_x509_certificate(directory.child("ca.pem").getContent())
    ca_key = serialization.load_pem_private_key(directory.child("ca-key.pem").getContent(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    revoked = status == ocsp.OCSPCertStatus.REVOKED
    builder = ocsp.OCSPResponseBuilder().add_response(
        cert=leaf,
        issuer=ca,
        algorithm=hashes.SHA256(),
        cert_status=status,
        this_update=now - datetime.timedelta(hours=1),
        next_update=now + valid,
        revocation_time=now - datetime.timedelta(days=1) if revoked else None,
        revocation_reason=x509.ReasonFlags.key_compromise if revoked else None,
    )
    response = builder.responder_id(ocsp.OCSPResponderEncoding.HASH, ca).sign(
        ca_key, hashes.SHA256()
    )
    return response.public_bytes(serialization.Encoding.DER)


def stapled(server: SSL.Context, ask: bool = True) -> bytes | None:
    """
    What a client that asks for (or, with C{ask=False}, does not ask for) an OCSP response
    receives from C{server}: the DER bytes, C{b""} for nothing, C{None} if not asked.
    """
    received: list[bytes] = []

    def client_callback(connection: SSL.Connection, data: bytes, extra: object) -> bool:
        received.append(data)
        return True

    client_context = SSL.Context(SSL.TLS_METHOD)
    client_context.set_ocsp_client_callback(client_callback)
    client = SSL.Connection(client_context, None)
    if ask:
        client.request_ocsp()
    client.set_connect_state()
    service = SSL.Connection(server, None)
    service.set_accept_state()
    for _ in range(10):
        for connection in (client, service):
            with contextlib.suppress(SSL.WantReadError):
                connection.do_handshake()
        for source, sink in ((client, service), (service, client)):
            with contextlib.suppress(SSL.WantReadError):
                sink.bio_write(source.bio_read(65536))
    client.do_handshake()
    return received[0] if received else None


class OCSPStapleTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = FilePath(self.mktemp())
        self.directory.makedirs()
        _, self.chain, self.key = make_certificate(self.directory)
        self.response = self.directory.child("ocsp.der")
        self.now = NOW.timestamp()

    def staple(self, data: bytes) -> OCSPStaple:
        self.response.setContent(data)
        staple = OCSPStaple(self.response, self.chain, lambda: self.now)
        staple.load()
        return staple

    def test_stapledWhenAsked(self) -> None:
        """
        A client that asks receives the response byte for byte; one that does not ask gets
        none; once the response is past its next update, nothing is stapled.
        """
        data = ocsp_response(self.directory, self.chain)
        options = server_options(self.chain, self.key)
        staple_ocsp(options.getContext(), self.staple(data))
        self.assertEqual(stapled(options.getContext()), data)
        self.assertIsNone(stapled(options.getContext(), ask=False))
        self.now += 8 * 86400
        self.assertEqual(stapled(options.getContext()), b"")

    def test_badResponsesRefused(self) -> None:
        """
        A file that is missing, not OCSP, for another certificate, not "good" or out of
        date is refused, naming the file; a refused reload keeps the previous response.
        """
        good = ocsp_response(self.directory, self.chain)
        other = FilePath(self.mktemp())
        other.makedirs()
        _, other_chain, _ = make_certificate(other)
        for data, words in [
            (b"not der", "not a DER-encoded OCSP response"),
            (ocsp_response(other, other_chain), "another certificate"),
            (
                ocsp_response(self.directory, self.chain, ocsp.OCSPCertStatus.REVOKED),
                "REVOKED",
            ),
            (
                ocsp_response(self.directory, self.chain, valid=datetime.timedelta(0)),
                "out of date",
            ),
            (
                ocsp.OCSPResponseBuilder.build_unsuccessful(
                    ocsp.OCSPResponseStatus.TRY_LATER
                ).public_bytes(serialization.Encoding.DER),
                "TRY_LATER",
            ),
        ]:
            error = self.assertRaises(TLSError, self.staple, data)
            self.assertIn(words, str(error))
            self.assertIn(self.response.path, str(error))
        staple = self.staple(good)
        self.response.setContent(b"broken")
        self.assertRaises(TLSError, staple.load)
        self.assertEqual(staple(None, None), good)  # type: ignore[arg-type]
        self.response.remove()
        self.assertIn("cannot be read", str(self.assertRaises(TLSError, staple.load)))
