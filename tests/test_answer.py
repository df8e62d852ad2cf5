"""
Tests for L{linkrouter.answer}: a fixed answer written in one piece is the answer
C{twisted.web} would have written, for every method, protocol version and connection
header, and the request ends as C{Request.finish} ends it.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from twisted.web.test.requesthelper import DummyChannel

from linkrouter.answer import Answer, answer, respond
from linkrouter.headers import set_headers

PEER = IPv4Address("TCP", "192.0.2.7", 40000)
ANSWERS = [
    answer(302, [(b"cache-control", b"no-store"), (b"server", b"linkrouter")]),
    answer(404, [(b"content-type", b"text/html; charset=utf-8")], b"<p>not found</p>\n"),
    answer(200, [(b"content-type", b"image/gif")], b"GIF89a\x01\x00"),
    answer(503, [(b"content-type", b"text/plain")], b"draining\n"),
]


class _Answering(Resource):
    """
    Answers every request with C{fixed}, by L{respond} or by C{twisted.web}'s own writing
    (which adds C{Content-Type: text/html} to a body without one: every answer with a body
    names its type).
    """

    isLeaf = True

    def __init__(self, fixed: Answer, location: bytes | None, fast: bool) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.fixed, self.location, self.fast = fixed, location, fast
        self.finished: list[object] = []

    def render(self, request: Request) -> bytes | int:
        request.notifyFinish().addBoth(self.finished.append)
        if self.fast:
            self.written = respond(request, self.fixed, self.location)
            return NOT_DONE_YET
        request.setResponseCode(self.fixed.code)
        set_headers(request, self.fixed.headers)
        if self.location is not None:
            request.setHeader(b"location", self.location)
        return self.fixed.body


class _Unlogged(Site):
    """
    A site without an access log; give it a L{Clock} as its reactor, or its channels' idle
    timers run on the global reactor and fire in some later test.
    """

    def log(self, request: object) -> None:
        pass


def _exchange(resource: Resource, data: bytes) -> tuple[bytes, bool]:
    """
    What the site answers C{data} with over an in-memory transport, and whether the
    connection is left open.
    """
    protocol = _Unlogged(resource, reactor=Clock()).buildProtocol(PEER)
    assert protocol is not None
    transport = StringTransport(peerAddress=PEER)
    protocol.makeConnection(transport)
    protocol.dataReceived(data)
    return transport.value(), not transport.disconnecting


def _parts(raw: bytes) -> tuple[bytes, list[bytes], bytes]:
    """
    The status line, the header lines sorted (names lower-cased; C{Date} left out; a header
    written twice is there twice) and the body.
    """
    head, _, body = raw.partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    headers = []
    for line in lines:
        name, _, value = line.partition(b": ")
        if name.lower() != b"date":
            headers.append(name.lower() + b": " + value)
    return status, sorted(headers), body


class RespondTests(SynchronousTestCase):
    @given(
        fixed=st.sampled_from(ANSWERS),
        location=st.sampled_from([None, b"https://example.com/a?b=c&d"]),
        method=st.sampled_from([b"GET", b"HEAD"]),
        version=st.sampled_from([b"HTTP/1.1", b"HTTP/1.0"]),
        connection=st.sampled_from([b"", b"Connection: close\r\n", b"Connection: keep-alive\r\n"]),
    )
    def test_sameAsTwisted(
        self,
        fixed: Answer,
        location: bytes | None,
        method: bytes,
        version: bytes,
        connection: bytes,
    ) -> None:
        """
        Status line, headers (but C{Date}, which Twisted formats anew), body and whether the
        connection stays open are those of C{twisted.web} writing the same answer; the
        request finishes; this fails if Twisted changes what L{respond} relies on.
        """
        data = method + b" /x HTTP/1.1\r\nHost: a\r\n".replace(b"HTTP/1.1", version)
        data += connection + b"\r\n"
        fast = _Answering(fixed, location, fast=True)
        slow = _Answering(fixed, location, fast=False)
        (fast_raw, fast_open), (slow_raw, slow_open) = _exchange(fast, data), _exchange(slow, data)
        fast_parts, slow_parts = _parts(fast_raw), _parts(slow_raw)
        self.assertEqual(fast_parts[0], slow_parts[0])
        self.assertEqual(fast_parts[2], slow_parts[2])
        self.assertEqual(fast_parts[1], slow_parts[1])
        self.assertEqual(fast_open, slow_open)
        self.assertEqual(fast_raw.count(b"\r\nDate: "), 1)
        self.assertTrue(fast.written)
        self.assertEqual(fast.finished, [None])

    def test_answerHeaders(self) -> None:
        """
        An answer carries its C{Content-Length} (the body's, also for C{HEAD}) and its
        headers serialized once, checked as C{setHeader} checks them.
        """
        fixed = answer(404, [(b"content-type", b"text/plain"), (b"x-a", b"1\r\n2")], b"gone\n")
        self.assertEqual(fixed.status, b"404 Not Found")
        self.assertEqual(
            fixed.head, b"Content-Type: text/plain\r\nX-A: 1 2\r\nContent-Length: 5\r\n"
        )
        raw, _ = _exchange(_Answering(fixed, None, fast=True), b"HEAD / HTTP/1.1\r\n\r\n")
        self.assertIn(b"\r\nContent-Length: 5\r\n", raw)
        self.assertTrue(raw.endswith(b"\r\n\r\n"))

    def test_oneWrite(self) -> None:
        """
        The whole answer reaches the transport in one C{writeSequence}: one TLS record.
        """
        writes: list[list[bytes]] = []
        resource = _Answering(ANSWERS[1], None, fast=True)
        protocol = _Unlogged(resource, reactor=Clock()).buildProtocol(PEER)
        assert protocol is not None
        transport = StringTransport(peerAddress=PEER)
        transport.writeSequence = writes.append  # type: ignore[method-assign]
        protocol.makeConnection(transport)
        protocol.dataReceived(b"GET / HTTP/1.1\r\n\r\n")
        self.assertEqual(len(writes), 1)
        self.assertTrue(b"".join(writes[0]).endswith(b"\r\n\r\n<p>not found</p>\n"))

    def test_clientGone(self) -> None:
        """
        A request whose connection is lost is not written to: L{respond} says so.
        """
        channel = DummyChannel()  # type: ignore[no-untyped-call]
        request = Request(channel)  # type: ignore[no-untyped-call]
        request.connectionLost(Exception("gone"))  # type: ignore[no-untyped-call]
        self.assertFalse(respond(request, ANSWERS[0]))
        self.assertEqual(channel.transport.written.getvalue(), b"")

    def test_otherChannels(self) -> None:
        """
        On a channel that is not HTTP/1.x (an HTTP/2 stream, a test's dummy), the answer is
        written by C{twisted.web}: same status, headers and body.
        """
        channel = DummyChannel()  # type: ignore[no-untyped-call]
        request = Request(channel)  # type: ignore[no-untyped-call]
        request.method = b"GET"
        request.clientproto = b"HTTP/1.1"
        bodies: list[bytes] = []
        write = request.write
        request.write = lambda data: bodies.append(data) or write(data)  # type: ignore[method-assign, func-returns-value]
        self.assertTrue(respond(request, ANSWERS[1], b"https://example.com/"))
        self.assertEqual(bodies, [b"<p>not found</p>\n"])
        written = channel.transport.written.getvalue()
        self.assertTrue(written.startswith(b"HTTP/1.1 404 Not Found\r\n"), written)
        self.assertIn(b"\r\nLocation: https://example.com/\r\n", written)
        self.assertIn(b"\r\nContent-Length: 17\r\n", written)
        self.assertTrue(written.endswith(b"\r\n\r\n<p>not found</p>\n"))
        self.assertTrue(request.finished)

    def test_locationReplaced(self) -> None:
        """
        A C{Location} already set on the request is replaced by the one given, not repeated.
        """

        class Relocated(_Answering):
            def render(self, request: Request) -> bytes | int:
                request.setHeader(b"location", b"https://old.example/")
                return super().render(request)

        raw, _ = _exchange(
            Relocated(ANSWERS[0], b"https://new.example/", fast=True), b"GET / HTTP/1.1\r\n\r\n"
        )
        self.assertEqual(raw.count(b"Location: "), 1)
        self.assertIn(b"Location: https://new.example/\r\n", raw)

    def test_keepAlive(self) -> None:
        """
        Requests one after another and pipelined in one read on one connection are each
        answered in order, and the connection stays open.
        """
        resource = _Answering(ANSWERS[2], None, fast=True)
        protocol = _Unlogged(resource, reactor=Clock()).buildProtocol(PEER)
        assert protocol is not None
        transport = StringTransport(peerAddress=PEER)
        protocol.makeConnection(transport)
        request = b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n"
        protocol.dataReceived(request)
        protocol.dataReceived(request * 3)
        answers = transport.value().split(b"HTTP/1.1 200 OK\r\n")
        self.assertEqual(answers[0], b"")
        self.assertEqual(len(answers), 5)
        self.assertTrue(all(answer.endswith(b"GIF89a\x01\x00") for answer in answers[1:]))
        self.assertEqual(resource.finished, [None] * 4)
        self.assertFalse(transport.disconnecting)
