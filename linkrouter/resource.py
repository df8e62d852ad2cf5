# -*- test-case-name: tests.test_resource -*-
"""
The public web resource: a tracked link in, a redirect out, as fast as the codec allows.

It answers exactly the table of C{links.md}: 302 for a valid click link, the 43-byte GIF for a
valid open pixel, one fixed 404 page for anything else, 405 for other methods, and
C{/healthz}. The response is written and finished I{before} the click is handed to the
journal, and the journal hand-over only enqueues a tuple. It never reveals why a link was
refused, and never logs a path.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from .codec import Kind, TrackedLink, verify
from .event import Hit
from .keys import Key

__all__ = ["HSTS", "NOT_FOUND_PAGE", "PIXEL", "LinkResource"]

PIXEL = bytes.fromhex(
    "47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b"
)
"""A transparent 1x1 GIF, 43 bytes."""

HSTS = b"max-age=63072000"
NOT_FOUND_PAGE = b"<!DOCTYPE html><title>Not found</title><p>This link is not valid.</p>\n"
NOT_ALLOWED_PAGE = b"<!DOCTYPE html><title>Method not allowed</title>\n"
_PIXEL_LENGTH = str(len(PIXEL)).encode()


def _ignore(outcome: str, seconds: float) -> None:
    pass


class LinkResource(Resource):
    """
    The leaf resource behind every public path.

    @param keys: called once per request for the current keys by id, so a reloaded keyring
        takes effect at the next request without a restart.
    @param record: takes each verified hit after its response is finished; must not raise.
    @param observe: takes each request's outcome (C{redirect}, C{open}, C{invalid},
        C{method}, C{health}) and the seconds spent answering it, for metrics.
    @param now: seconds since the epoch, the time stamped on hits.
    """

    isLeaf = True

    def __init__(
        self,
        keys: Callable[[], Mapping[str, Key]],
        record: Callable[[Hit], None] | None = None,
        observe: Callable[[str, float], None] = _ignore,
        now: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._keys = keys
        self._record = record
        self._observe = observe
        self._now = now
        self.draining = False
        """Set once a graceful stop begins: C{/healthz} then answers 503."""

    def render(self, request: Request) -> bytes | int:
        started = time.perf_counter()
        request.setHeader(b"server", b"linkrouter")  # not Twisted's name and version
        request.setHeader(b"strict-transport-security", HSTS)
        request.setHeader(b"cache-control", b"no-store")
        method = request.method
        if method != b"GET" and method != b"HEAD":
            request.setResponseCode(405)
            request.setHeader(b"allow", b"GET, HEAD")
            request.setHeader(b"content-type", b"text/html; charset=utf-8")
            self._observe("method", time.perf_counter() - started)
            return NOT_ALLOWED_PAGE
        path = request.path.decode("latin-1")
        if path == "/healthz":
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            self._observe("health", time.perf_counter() - started)
            if self.draining:
                request.setResponseCode(503)
                return b"draining\n"
            return b"ok\n"
        link = verify(path, self._keys())
        if not isinstance(link, TrackedLink):
            request.setResponseCode(404)
            request.setHeader(b"content-type", b"text/html; charset=utf-8")
            self._observe("invalid", time.perf_counter() - started)
            return NOT_FOUND_PAGE
        request.setHeader(b"referrer-policy", b"no-referrer")
        if link.kind is Kind.OPEN:
            request.setHeader(b"content-type", b"image/gif")
            request.setHeader(b"content-length", _PIXEL_LENGTH)
            request.write(PIXEL)
            outcome = "open"
        else:
            assert link.target is not None
            request.setResponseCode(302)
            request.setHeader(b"location", link.target.encode("ascii"))
            request.setHeader(b"content-length", b"0")
            outcome = "redirect"
        request.finish()  # the answer is on its way before the click is recorded
        self._observe(outcome, time.perf_counter() - started)
        if self._record is not None:
            agents = request.requestHeaders.getRawHeaders(b"user-agent")
            self._record(
                Hit(
                    self._now(),
                    link,
                    method,
                    request.getClientAddress().host,
                    agents[0] if agents else b"",
                )
            )
        return NOT_DONE_YET
