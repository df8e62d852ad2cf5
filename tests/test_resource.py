"""
Tests for L{linkrouter.resource}: the answers of links.md, driven through the router's
L{linkrouter.site.LinkSite} and a plain C{Site} over an in-memory transport.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from linkrouter.blocklist import EMPTY, BlockList
from linkrouter.codec import Kind, Part, sign
from linkrouter.event import Hit
from linkrouter.keys import Key, KeyState
from linkrouter.resource import GONE_PAGE, NOT_FOUND_PAGE, PIXEL, LinkResource
from linkrouter.site import LinkSite, QuietSite
from linkrouter.trustedproxies import TrustedProxies

KEY = Key("k1", b"\x01" * 32, KeyState.ACTIVE)
REVOKED = Key("k0", b"\x02" * 32, KeyState.ACTIVE)
BASE = "https://click.example"
TARGET = "https://example.com/reset?token=s3cret&x=1"


def path_of(link: str) -> str:
    return urlsplit(link).path


class Response:
    """
    One parsed HTTP/1.1 response.
    """

    def __init__(self, raw: bytes) -> None:
        head, _, self.body = raw.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        self.status = int(lines[0].split()[1])
        self.headers: dict[bytes, bytes] = {}
        self.names: list[bytes] = []
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            self.names.append(name.strip().lower())
            self.headers[name.strip().lower()] = value.strip()


class LinkResourceTests(SynchronousTestCase):
    """
    The resource behind the router's own site, L{LinkSite}.
    """

    site_class: type[QuietSite] = LinkSite

    def setUp(self) -> None:
        self.hits: list[Hit] = []
        self.outcomes: list[str] = []
        revoked = Key(REVOKED.key_id, REVOKED.secret, KeyState.REVOKED)
        keys = {KEY.key_id: KEY, revoked.key_id: revoked}
        self.blocklist = EMPTY
        self.resource = LinkResource(
            lambda: keys,
            self.record,
            lambda outcome, _: self.outcomes.append(outcome),
            lambda: 12.5,
            lambda: self.blocklist,
        )
        self.site = self.site_class(self.resource, reactor=Clock())
        self.link = sign(TARGET, KEY, "L1", Part.HTML, 1764780000, base=BASE)
        self.transport = StringTransport()

    def record(self, hit: Hit) -> None:
        self.assertIn(b"\r\n\r\n", self.transport.value(), "the answer is written first")
        self.hits.append(hit)

    def request(
        self,
        path: str | bytes,
        method: bytes = b"GET",
        agent: bytes = b"test",
        host: bytes = b"click.example",
    ) -> Response:
        raw_path = path.encode("latin-1") if isinstance(path, str) else path
        peer = IPv4Address("TCP", "192.0.2.7", 40000)
        protocol = self.site.buildProtocol(peer)
        self.transport = StringTransport(peerAddress=peer)
        protocol.makeConnection(self.transport)
        protocol.dataReceived(
            method + b" " + raw_path + b" HTTP/1.1\r\nHost: " + host + b"\r\n"
            b"User-Agent: " + agent + b"\r\n\r\n"
        )
        return Response(self.transport.value())

    def assertCommonHeaders(self, response: Response) -> None:
        self.assertEqual(response.headers[b"strict-transport-security"], b"max-age=63072000")
        self.assertEqual(response.headers[b"server"], b"linkrouter")
        self.assertIn(b"date", response.headers)
        if self.site_class is LinkSite:  # its date comes from the site's (here fake) clock
            self.assertEqual(response.headers[b"date"], b"Thu, 01 Jan 1970 00:00:00 GMT")
        self.assertEqual(len(response.names), len(set(response.names)), "no header twice")

    def test_blockedIsGone(self) -> None:
        """
        A valid link on the block list answers 410 with the fixed page, HTML, no-store and
        HSTS (for GET and HEAD, click and pixel), is counted as C{blocked} and never recorded;
        taken off the list, it redirects again.
        """
        pixel = sign(None, KEY, "L1", Part.HTML, 1764780000, base=BASE, kind=Kind.OPEN)
        self.blocklist = BlockList(link_ids=frozenset({"L1"}))
        for path, method in [(self.link, b"GET"), (self.link, b"HEAD"), (pixel, b"GET")]:
            response = self.request(path_of(path), method)
            self.assertEqual(response.status, 410)
            self.assertEqual(response.body, b"" if method == b"HEAD" else GONE_PAGE)
            self.assertEqual(response.headers[b"cache-control"], b"no-store")
            self.assertEqual(response.headers[b"content-type"], b"text/html; charset=utf-8")
            self.assertNotIn(b"location", response.headers)
            self.assertCommonHeaders(response)
        self.assertIn(b"This link has been disabled.", GONE_PAGE)
        self.assertEqual(self.outcomes, ["blocked"] * 3)
        self.assertEqual(self.hits, [])
        self.blocklist = BlockList(hosts=frozenset({"other.example"}))
        self.assertEqual(self.request(path_of(self.link)).status, 302)
        self.assertEqual(len(self.hits), 1)

    def test_customDomain(self) -> None:
        """
        A link issued under a custom tracking domain redirects when requested under that
        name, and under the shared one: the codec verifies the path, never the host.
        """
        link = sign(
            TARGET, KEY, "L1", Part.HTML, 1764780000, base="https://click.customer.example"
        )
        self.assertTrue(link.startswith("https://click.customer.example/"))
        for host in [b"click.customer.example", b"click.example"]:
            response = self.request(path_of(link), host=host)
            self.assertEqual(response.status, 302, host)
            self.assertEqual(response.headers[b"location"], TARGET.encode())

    def test_clickRedirects(self) -> None:
        """
        A valid click link answers 302 to exactly the signed target, with an empty body,
        no-store, no-referrer and HSTS, and is recorded once, after the response.
        """
        response = self.request(path_of(self.link))
        self.assertEqual(response.status, 302)
        self.assertEqual(response.headers[b"location"], TARGET.encode())
        self.assertEqual(response.headers[b"cache-control"], b"no-store")
        self.assertEqual(response.headers[b"referrer-policy"], b"no-referrer")
        self.assertEqual(response.body, b"")
        self.assertCommonHeaders(response)
        self.assertEqual(
            sorted(response.names),
            [
                b"cache-control",
                b"content-length",
                b"date",
                b"location",
                b"referrer-policy",
                b"server",
                b"strict-transport-security",
            ],
        )
        self.assertEqual(
            [(h.link.link_id, h.method, h.ip, h.user_agent, h.time) for h in self.hits],
            [("L1", b"GET", "192.0.2.7", b"test", 12.5)],
        )
        self.assertEqual(self.outcomes, ["redirect"])

    def test_headRedirects(self) -> None:
        """
        HEAD of a valid link answers the same 302, and counts as a hit with its method.
        """
        response = self.request(path_of(self.link), b"HEAD")
        self.assertEqual(response.status, 302)
        self.assertEqual(response.headers[b"location"], TARGET.encode())
        self.assertEqual([hit.method for hit in self.hits], [b"HEAD"])

    def test_queryDoesNotChangeDestination(self) -> None:
        """
        A query string appended to a valid link changes nothing about where it goes.
        """
        response = self.request(path_of(self.link) + "?next=https://evil.example/")
        self.assertEqual(response.headers[b"location"], TARGET.encode())

    def test_openPixel(self) -> None:
        """
        A valid open-pixel link answers 200 with the 43-byte transparent GIF, no-store.
        """
        link = sign(None, KEY, "P1", Part.HTML, 1764780000, base=BASE, kind=Kind.OPEN)
        response = self.request(path_of(link))
        self.assertEqual(response.status, 200)
        self.assertEqual(response.body, PIXEL)
        self.assertEqual(len(PIXEL), 43)
        self.assertEqual(response.headers[b"content-type"], b"image/gif")
        self.assertEqual(response.headers[b"cache-control"], b"no-store")
        self.assertCommonHeaders(response)
        self.assertEqual([hit.link.kind for hit in self.hits], [Kind.OPEN])
        self.assertEqual(response.headers[b"content-length"], b"43")

    def test_everyRefusalLooksTheSame(self) -> None:
        """
        Tampered, malformed, unknown-key and revoked-key links all get the same fixed 404
        page, with HSTS, and none is recorded.
        """
        revoked_link = sign(TARGET, REVOKED, "L2", Part.HTML, 1, base=BASE)
        path = path_of(self.link)
        cases = [
            path[:-1] + ("A" if path[-1] != "A" else "B"),
            path.replace("/k1/", "/zz/"),
            path + "/",
            "/",
            "/favicon.ico",
            path_of(revoked_link),
            "/1s/%ff%fe%0d%0a/k1/L1/A/AAAAAAAAAAAAAAAA",
        ]
        for case in cases:
            response = self.request(case)
            self.assertEqual(response.status, 404, case)
            self.assertEqual(response.body, NOT_FOUND_PAGE)
            self.assertNotIn(b"location", response.headers)
            self.assertCommonHeaders(response)
        self.assertEqual(self.hits, [])
        self.assertEqual(self.outcomes, ["invalid"] * len(cases))

    def test_controlBytesRefusedByHttpLayer(self) -> None:
        """
        A NUL or a byte over 0x7F in the request line never reaches the resource: Twisted
        answers 400.
        """
        for raw in [b"/1s/a\x00b/k1/L1/A/AAAAAAAAAAAAAAAA", b"/1s/\xff\xfe/k1/L1/A/AAAA"]:
            self.assertEqual(self.request(raw).status, 400)
        self.assertEqual(self.hits, [])

    def test_otherMethods(self) -> None:
        """
        Methods other than GET and HEAD answer 405 with Allow, even for a valid link, and
        record nothing.
        """
        for method in [b"POST", b"PUT", b"DELETE", b"OPTIONS", b"TRACE", b"PATCH"]:
            response = self.request(path_of(self.link), method)
            self.assertEqual(response.status, 405, method)
            self.assertEqual(response.headers[b"allow"], b"GET, HEAD")
            self.assertCommonHeaders(response)
        self.assertEqual(self.hits, [])

    def test_healthz(self) -> None:
        """
        /healthz answers 200 ok, with HSTS.
        """
        response = self.request("/healthz")
        self.assertEqual((response.status, response.body), (200, b"ok\n"))
        self.assertCommonHeaders(response)

    def test_healthzWhileDraining(self) -> None:
        """
        Once a graceful stop begins, /healthz answers 503 draining, while links still work.
        """
        self.resource.draining = True
        response = self.request("/healthz")
        self.assertEqual((response.status, response.body), (503, b"draining\n"))
        self.assertCommonHeaders(response)
        self.assertEqual(self.request(path_of(self.link)).status, 302)

    def test_forwardedForIgnored(self) -> None:
        """
        X-Forwarded-For from the client is ignored: the hit carries the connection's address.
        """
        peer = IPv4Address("TCP", "192.0.2.7", 40000)
        protocol = self.site.buildProtocol(peer)
        self.transport = StringTransport(peerAddress=peer)
        protocol.makeConnection(self.transport)
        protocol.dataReceived(
            b"GET " + path_of(self.link).encode() + b" HTTP/1.1\r\nHost: click.example\r\n"
            b"X-Forwarded-For: 203.0.113.66\r\nX-Real-IP: 203.0.113.67\r\n\r\n"
        )
        self.assertEqual(Response(self.transport.value()).status, 302)
        self.assertEqual([hit.ip for hit in self.hits], ["192.0.2.7"])

    def test_drainingClosesConnections(self) -> None:
        """
        While draining, every answer says C{Connection: close} and closes its keep-alive
        connection, so that clients reconnect through the balancer elsewhere.
        """
        self.request(path_of(self.link))
        self.assertFalse(self.transport.disconnecting)
        self.resource.draining = True
        for path in [path_of(self.link), "/healthz", "/nothing"]:
            response = self.request(path)
            self.assertEqual(response.headers[b"connection"], b"close")
            self.assertTrue(self.transport.disconnecting)
            self.assertCommonHeaders(response)

    def test_oddHostChangesNothing(self) -> None:
        """
        A missing, odd or hostile Host header changes neither the answer nor the destination.
        """
        for host in [b"", b"Host: \r\n", b"Host: evil.example\r\n", b"Host: a b c\r\n"]:
            peer = IPv4Address("TCP", "192.0.2.7", 40000)
            protocol = self.site.buildProtocol(peer)
            self.transport = StringTransport(peerAddress=peer)
            protocol.makeConnection(self.transport)
            protocol.dataReceived(
                b"GET " + path_of(self.link).encode() + b" HTTP/1.1\r\n" + host + b"\r\n"
            )
            response = Response(self.transport.value())
            self.assertEqual(response.status, 302, host)
            self.assertEqual(response.headers[b"location"], TARGET.encode())

    def test_binaryUserAgentKeptRaw(self) -> None:
        """
        A long, binary User-Agent reaches the journal hand-over as raw bytes; the redirect
        is unaffected.
        """
        agent = bytes(range(0x21, 0x7F)) * 100 + b"\xff\xfe"
        response = self.request(path_of(self.link), agent=agent)
        self.assertEqual(response.status, 302)
        self.assertEqual(self.hits[0].user_agent, agent)

    def test_nothingLogged(self) -> None:
        """
        Serving links logs nothing that holds a path, a destination or a query, whatever
        the answer and the method (Twisted logs the path of a C{HEAD} request whose resource
        returns a body).
        """
        events: list[LogEvent] = []
        globalLogPublisher.addObserver(events.append)
        pixel = sign(None, KEY, "L1", Part.HTML, 1764780000, base=BASE, kind=Kind.OPEN)
        try:
            for method in [b"GET", b"HEAD", b"POST"]:
                self.request(path_of(self.link) + "?q=s3cret", method)
                self.request(path_of(pixel) + "?q=s3cret", method)
                self.request("/1s/s3cret/x", method)
                self.request("/healthz?s3cret", method)
            self.blocklist = BlockList(link_ids=frozenset({"L1"}))
            self.request(path_of(self.link) + "?q=s3cret", b"HEAD")
        finally:
            globalLogPublisher.removeObserver(events.append)
        text = repr(events)
        for secret in ["s3cret", "example.com", "reset"]:
            self.assertNotIn(secret, text)


class ForwardedForTests(SynchronousTestCase):
    """
    A L{LinkSite} told to believe C{X-Forwarded-For} from its balancers.
    """

    def setUp(self) -> None:
        self.hits: list[Hit] = []
        resource = LinkResource(lambda: {KEY.key_id: KEY}, self.hits.append)
        self.site = LinkSite(
            resource,
            reactor=Clock(),
            forwarded_for=TrustedProxies.parse(["10.0.0.0/8"]),
        )
        self.link = sign(TARGET, KEY, "L1", Part.HTML, 1764780000, base=BASE)

    def click(self, peer: str, forwarded: bytes) -> str:
        protocol = self.site.buildProtocol(IPv4Address("TCP", peer, 40000))
        transport = StringTransport(peerAddress=IPv4Address("TCP", peer, 40000))
        protocol.makeConnection(transport)
        protocol.dataReceived(
            b"GET "
            + path_of(self.link).encode()
            + b" HTTP/1.1\r\nHost: click.example\r\n"
            + forwarded
            + b"\r\n"
        )
        self.assertEqual(Response(transport.value()).status, 302)
        return self.hits.pop().ip

    def test_fromBalancer(self) -> None:
        """
        From a balancer, the hit carries the right-most address no balancer vouches for;
        IPv6 clients included.
        """
        xff = b"X-Forwarded-For: 198.51.100.1, 203.0.113.66, 10.0.0.9\r\n"
        self.assertEqual(self.click("10.0.0.1", xff), "203.0.113.66")
        xff6 = b"X-Forwarded-For: 2001:db8::66\r\n"
        self.assertEqual(self.click("10.0.0.1", xff6), "2001:db8::66")
        self.assertEqual(self.click("10.0.0.1", b""), "10.0.0.1")

    def test_notFromOthers(self) -> None:
        """
        From any other address, the header is ignored.
        """
        xff = b"X-Forwarded-For: 203.0.113.66\r\n"
        self.assertEqual(self.click("192.0.2.7", xff), "192.0.2.7")


class LinkResourceUnderTwistedRequestTests(LinkResourceTests):
    """
    The same answers from C{twisted.web}'s own request, which traverses and sets its own
    C{Server} header: the resource's headers replace it.
    """

    site_class = QuietSite
