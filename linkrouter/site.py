# -*- test-case-name: tests.test_resource,tests.test_site -*-
"""
The router's HTTP sites: no access log, the request limits of L{LimitedHTTPChannel}, and for
the public listener a request that goes straight to its one leaf resource.

C{twisted.web}'s generic request does work the router never needs: it unquotes every path
segment to traverse a resource tree (the router has one leaf, and its codec reads the raw
path itself) and formats the C{Date} header anew for every request. On a keep-alive
connection that is a measurable share of a redirect's CPU (see C{docs/performance.rst}),
so L{LinkRequest} skips the traversal and formats the date once a second.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.python.failure import Failure
from twisted.web.http import Request as HTTPRequest
from twisted.web.http import datetimeToString
from twisted.web.server import Request, Site

from .limits import LimitedHTTPChannel
from .trustedproxies import TrustedProxies

__all__ = ["ForwardedLinkRequest", "LinkRequest", "LinkSite", "QuietSite"]


class QuietSite(Site):
    """
    A site that writes no access log (request paths carry destinations, which the router
    must never store) and enforces the request limits of L{LimitedHTTPChannel}; HTTP/1.1.
    """

    protocol = LimitedHTTPChannel  # type: ignore[assignment]  # HTTP/1.1 only, no H2 wrapper

    def log(self, request: HTTPRequest) -> None:
        pass


class _HTTPDate:
    """
    The C{Date} header's value, formatted once for every second it is asked for.
    """

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def __call__(self, seconds: float) -> bytes:
        second = int(seconds)
        if second != self._second:
            self._second = second
            self._value = datetimeToString(second)
        return self._value


class LinkRequest(Request):
    """
    A request for the site's one leaf resource: no traversal, no unquoting of path segments
    (C{prepath} and C{postpath} stay empty) and a cached C{Date}.
    """

    def process(self) -> None:
        site: LinkSite = self.channel.site  # type: ignore[attr-defined]
        self.site = site
        self.prepath = []
        self.postpath = []
        now = site.reactor.seconds()  # type: ignore[misc]
        self.responseHeaders._rawHeaders[b"Date"] = [site.http_date(now)]
        try:
            self.render(site.resource)  # type: ignore[no-untyped-call]
        except BaseException:
            self.processingFailed(Failure())  # type: ignore[no-untyped-call]


class ForwardedLinkRequest(LinkRequest):
    """
    A L{LinkRequest} whose client address is the one C{X-Forwarded-For} names, when the
    connection comes from one of the site's C{trusted_proxies}.
    """

    def getClientAddress(self) -> Any:
        peer = super().getClientAddress()  # type: ignore[no-untyped-call]
        if not isinstance(peer, IPv4Address | IPv6Address):
            return peer
        trusted: TrustedProxies = self.site.trusted_proxies  # type: ignore[union-attr]
        forwarded = self.requestHeaders.getRawHeaders(b"x-forwarded-for")
        host = trusted.forwarded_client(peer.host, forwarded)
        if host == peer.host:
            return peer
        return (IPv6Address if ":" in host else IPv4Address)("TCP", host, 0)


class LinkSite(QuietSite):
    """
    The public site: a L{QuietSite} whose requests go straight to its leaf resource.

    @param forwarded_for: the balancers whose C{X-Forwarded-For} header names the client;
        by default the header is ignored, as anyone can write it.
    """

    requestFactory = LinkRequest

    def __init__(
        self, *args: object, forwarded_for: TrustedProxies | None = None, **kwargs: object
    ) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        self.http_date = _HTTPDate()
        if forwarded_for is not None:
            self.trusted_proxies = forwarded_for
            self.requestFactory = ForwardedLinkRequest
