"""
Tests for L{linkrouter.site} and L{linkrouter.headers}: the public site's short-cut request
and the header blocks it relies on.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import Request
from twisted.web.test.requesthelper import DummyChannel

from linkrouter.headers import header_block, set_headers
from linkrouter.site import LinkSite


class Recorder(Resource):
    """
    A leaf that remembers what each request looked like when it was rendered.
    """

    isLeaf = True

    def __init__(self, fail: bool = False) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.seen: list[tuple[list[bytes], list[bytes], bytes]] = []
        self.fail = fail

    def render(self, request: Request) -> bytes:
        self.seen.append((request.prepath, request.postpath, request.path))
        if self.fail:
            raise RuntimeError("secret detail /1s/example.com")
        return b"rendered"


def exchange(site: LinkSite, raw_request: bytes) -> bytes:
    peer = IPv4Address("TCP", "192.0.2.7", 40000)
    protocol = site.buildProtocol(peer)
    transport = StringTransport(peerAddress=peer)
    assert protocol is not None
    protocol.makeConnection(transport)
    protocol.dataReceived(raw_request)
    return transport.value()


class LinkRequestTests(SynchronousTestCase):
    def test_noTraversal(self) -> None:
        """
        Every path, however many segments or escapes it has, goes to the one leaf as it came:
        nothing is unquoted or split.
        """
        leaf = Recorder()
        site = LinkSite(leaf, reactor=Clock())
        exchange(site, b"GET /a%2Fb/c/../d?x=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(leaf.seen, [([], [], b"/a%2Fb/c/../d")])

    def test_dateFromTheSiteClock(self) -> None:
        """
        C{Date} comes from the site's reactor, formatted again only when the second changes.
        """
        clock = Clock()
        site = LinkSite(Recorder(), reactor=clock)
        clock.advance(1_764_780_000.25)
        first = exchange(site, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertIn(b"\r\nDate: Wed, 03 Dec 2025 16:40:00 GMT\r\n", first)
        clock.advance(0.5)
        self.assertIn(
            b"\r\nDate: Wed, 03 Dec 2025 16:40:00 GMT\r\n",
            exchange(site, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
        )
        clock.advance(0.5)
        self.assertIn(
            b"\r\nDate: Wed, 03 Dec 2025 16:40:01 GMT\r\n",
            exchange(site, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
        )

    def test_failureIsA500WithoutDetail(self) -> None:
        """
        A resource that raises gives Twisted's plain 500, which shows nothing of the error
        or the path.
        """
        site = LinkSite(Recorder(fail=True), reactor=Clock())
        response = exchange(site, b"GET /1s/example.com HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(response.startswith(b"HTTP/1.1 500 "), response[:40])
        self.assertNotIn(b"secret", response)
        self.assertNotIn(b"example.com", response)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class HeaderBlockTests(SynchronousTestCase):
    def test_blockIsCanonical(self) -> None:
        """
        A block holds Twisted's canonical names, so Twisted's own lookups find its headers.
        """
        block = header_block([(b"content-length", b"0"), (b"x-thing", b"1")])
        self.assertEqual(block, ((b"Content-Length", (b"0",)), (b"X-Thing", (b"1",))))

    def test_setHeadersIsSetHeader(self) -> None:
        """
        L{set_headers} leaves C{Headers} as C{setRawHeaders} would: this fails if Twisted
        changes how it stores headers.
        """
        request = Request(DummyChannel())  # type: ignore[no-untyped-call]
        request.responseHeaders.setRawHeaders(b"content-length", [b"5"])
        set_headers(request, header_block([(b"Content-Length", b"0"), (b"allow", b"GET")]))
        expected = Headers({b"content-length": [b"0"], b"allow": [b"GET"]})
        self.assertEqual(request.responseHeaders, expected)
        self.assertEqual(request.responseHeaders.getRawHeaders(b"content-length"), [b"0"])

    def test_eachRequestOwnsItsValues(self) -> None:
        """
        Appending to a header of one request does not change the block or another request.
        """
        block = header_block([(b"vary", b"a")])
        first, second = Request(DummyChannel()), Request(DummyChannel())  # type: ignore[no-untyped-call]
        set_headers(first, block)
        set_headers(second, block)
        first.responseHeaders.addRawHeader(b"vary", b"b")
        self.assertEqual(second.responseHeaders.getRawHeaders(b"vary"), [b"a"])
        self.assertEqual(block, ((b"Vary", (b"a",)),))

    def test_badValueRefusedAtBuild(self) -> None:
        """
        A block is checked when it is built: a line break in a value is made harmless there.
        """
        block = header_block([(b"x-a", b"one\r\ntwo")])
        self.assertEqual(block, ((b"X-A", (b"one two",)),))
