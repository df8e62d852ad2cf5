"""
Tests for L{linkrouter.limits}: 414 and 431 with HSTS, the connection closed, nothing served.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from linkrouter.event import Hit
from linkrouter.keys import Key, KeyState
from linkrouter.limits import MAX_HEADERS, MAX_REQUEST_LINE
from linkrouter.resource import LinkResource
from linkrouter.site import QuietSite

KEY = Key("k1", b"\x01" * 32, KeyState.ACTIVE)


class LimitTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.hits: list[Hit] = []
        resource = LinkResource(lambda: {KEY.key_id: KEY}, self.hits.append)
        self.site = QuietSite(resource, reactor=Clock())

    def send(self, *chunks: bytes) -> StringTransport:
        peer = IPv4Address("TCP", "192.0.2.7", 40000)
        protocol = self.site.buildProtocol(peer)
        transport = StringTransport(peerAddress=peer)
        protocol.makeConnection(transport)
        for chunk in chunks:
            protocol.dataReceived(chunk)
        return transport

    def assertRefused(self, transport: StringTransport, status: bytes) -> None:
        answer = transport.value()
        self.assertTrue(answer.startswith(b"HTTP/1.1 " + status), answer[:80])
        self.assertIn(b"Strict-Transport-Security: max-age=63072000", answer)
        self.assertEqual(answer.count(b"HTTP/1.1 "), 1)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.hits, [])

    def test_longRequestLine(self) -> None:
        """
        A request line over the limit gets 414, whether it fits the line buffer or not.
        """
        for size in [MAX_REQUEST_LINE + 1, 20_000, 100_000]:
            line = b"GET /" + b"a" * size + b" HTTP/1.1\r\n"
            self.assertRefused(self.send(line, b"Host: x\r\n\r\n"), b"414")

    def test_requestLineAtTheLimitServed(self) -> None:
        """
        A request line just under the limit is parsed and answered (here: 404).
        """
        path = b"/" + b"a" * (MAX_REQUEST_LINE - len(b"GET / HTTP/1.1"))
        transport = self.send(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 404"))

    def test_headerSectionTooLarge(self) -> None:
        """
        A header section over the byte limit, or one huge header line, gets 431.
        """
        many = b"".join(b"X-%d: %s\r\n" % (i, b"v" * 900) for i in range(20))
        self.assertRefused(self.send(b"GET / HTTP/1.1\r\n" + many + b"\r\n"), b"431")
        huge = b"User-Agent: " + b"u" * 40_000 + b"\r\n"
        self.assertRefused(self.send(b"GET / HTTP/1.1\r\n", huge, b"\r\n"), b"431")

    def test_tooManyHeaders(self) -> None:
        """
        More header lines than the limit get 431.
        """
        many = b"".join(b"X-%d: 1\r\n" % i for i in range(MAX_HEADERS + 1))
        self.assertRefused(self.send(b"GET / HTTP/1.1\r\n" + many + b"\r\n"), b"431")

    def test_headersAtTheLimitServed(self) -> None:
        """
        Exactly the limit of header lines is served.
        """
        many = b"".join(b"X-%d: 1\r\n" % i for i in range(MAX_HEADERS))
        transport = self.send(b"GET /healthz HTTP/1.1\r\n" + many + b"\r\n")
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 200"))

    def test_limitsOfEveryRequestOnAConnection(self) -> None:
        """
        After a served request, the next one on the connection is checked again, whether it
        arrives with the first (pipelined) or after it.
        """
        served = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        long = b"GET /" + b"a" * MAX_REQUEST_LINE + b" HTTP/1.1\r\nHost: x\r\n\r\n"
        many = b"".join(b"X-%d: 1\r\n" % i for i in range(MAX_HEADERS + 1))
        for refused, status in [(long, b"414"), (b"GET / HTTP/1.1\r\n" + many + b"\r\n", b"431")]:
            for chunks in [(served + refused,), (served, refused)]:
                answer = self.send(*chunks).value()
                self.assertTrue(answer.startswith(b"HTTP/1.1 200"), answer[:80])
                second = answer[answer.index(b"HTTP/1.1 ", 1) :]
                self.assertTrue(second.startswith(b"HTTP/1.1 " + status), second[:80])
                self.assertEqual(answer.count(b"HTTP/1.1 "), 2)

    def test_badRequestCarriesHsts(self) -> None:
        """
        Twisted's own 400 for a malformed request line carries HSTS too.
        """
        self.assertRefused(self.send(b"GARBAGE\r\n\r\n"), b"400")

    def test_keepAliveRequestsAfterEachOther(self) -> None:
        """
        The limit applies per request: many requests on one connection are all served.
        """
        request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        transport = self.send(request * 5)
        self.assertEqual(transport.value().count(b"HTTP/1.1 200"), 5)
