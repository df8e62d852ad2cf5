# -*- test-case-name: tests.test_resource -*-
"""
The public web resource: a tracked link in, a redirect out, as fast as the codec allows.

It answers exactly the table of C{links.md}: 302 for a valid click link, the 43-byte GIF for a
valid open pixel, one fixed 404 page for anything else, 405 for other methods, and
C{/healthz}. It never reveals why a link was refused, and never logs a path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from twisted.web.resource import Resource
from twisted.web.server import Request

from .codec import Kind, TrackedLink, verify
from .keys import Key

__all__ = ["PIXEL", "LinkResource"]

PIXEL = bytes.fromhex(
    "47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b"
)
"""A transparent 1x1 GIF, 43 bytes."""

HSTS = b"max-age=63072000"
NOT_FOUND_PAGE = b"<!DOCTYPE html><title>Not found</title><p>This link is not valid.</p>\n"
NOT_ALLOWED_PAGE = b"<!DOCTYPE html><title>Method not allowed</title>\n"


class LinkResource(Resource):
    """
    The leaf resource behind every public path.

    @param keys: called once per request for the current keys by id, so a reloaded keyring
        takes effect at the next request without a restart.
    @param on_hit: called with each verified link and the request I{after} the response has
        been written (the journal hook); it must not raise.
    """

    isLeaf = True

    def __init__(
        self,
        keys: Callable[[], Mapping[str, Key]],
        on_hit: Callable[[TrackedLink, Request], None] | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._keys = keys
        self._on_hit = on_hit

    def render(self, request: Request) -> bytes:
        request.setHeader(b"strict-transport-security", HSTS)
        method = request.method
        if method not in (b"GET", b"HEAD"):
            request.setResponseCode(405)
            request.setHeader(b"allow", b"GET, HEAD")
            request.setHeader(b"content-type", b"text/html; charset=utf-8")
            return NOT_ALLOWED_PAGE
        path = request.path.decode("latin-1")
        if path == "/healthz":
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            request.setHeader(b"cache-control", b"no-store")
            return b"ok\n"
        link = verify(path, self._keys())
        if not isinstance(link, TrackedLink):
            request.setResponseCode(404)
            request.setHeader(b"content-type", b"text/html; charset=utf-8")
            request.setHeader(b"cache-control", b"no-store")
            return NOT_FOUND_PAGE
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"referrer-policy", b"no-referrer")
        if link.kind is Kind.OPEN:
            request.setHeader(b"content-type", b"image/gif")
            body = PIXEL
        else:
            assert link.target is not None
            request.setResponseCode(302)
            request.setHeader(b"location", link.target.encode("ascii"))
            request.setHeader(b"content-length", b"0")
            body = b""
        if self._on_hit is not None:
            request.notifyFinish().addBoth(lambda _: self._hit(link, request))
        return body

    def _hit(self, link: TrackedLink, request: Request) -> None:
        assert self._on_hit is not None
        self._on_hit(link, request)
