# -*- test-case-name: tests.test_resource -*-
"""
The public web resource: a tracked link in, a redirect out, as fast as the codec allows.

It answers exactly the table of C{links.md}: 302 for a valid click link, the 43-byte GIF for a
valid open pixel, one fixed 410 page for a valid link on the block list (not journaled), one
fixed 404 page for anything else, 405 for other methods, and C{/healthz}. The response is
written and finished I{before} the click is handed to the journal, and the journal hand-over
only enqueues a tuple. It never reveals why a link was refused, and never logs a path.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from .answer import answer, respond
from .blocklist import EMPTY, BlockList
from .codec import Kind, TrackedLink, verify
from .event import Hit
from .headers import header_block, set_headers
from .keys import Key

__all__ = ["GONE_PAGE", "HSTS", "NOT_FOUND_PAGE", "PIXEL", "LinkResource"]

PIXEL = bytes.fromhex(
    "47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b"
)
"""A transparent 1x1 GIF, 43 bytes."""

HSTS = b"max-age=63072000"
NOT_FOUND_PAGE = b"<!DOCTYPE html><title>Not found</title><p>This link is not valid.</p>\n"
NOT_ALLOWED_PAGE = b"<!DOCTYPE html><title>Method not allowed</title>\n"
GONE_PAGE = b"<!DOCTYPE html><title>Gone</title><p>This link has been disabled.</p>\n"

_EVERY = ((b"server", b"linkrouter"), (b"strict-transport-security", HSTS))
_NO_STORE = (*_EVERY, (b"cache-control", b"no-store"))
_HTML = (b"content-type", b"text/html; charset=utf-8")
_TEXT = (b"content-type", b"text/plain; charset=utf-8")
_NO_REFERRER = (b"referrer-policy", b"no-referrer")
_REDIRECT = answer(302, (*_NO_STORE, _NO_REFERRER))
_PIXEL = answer(200, (*_NO_STORE, _NO_REFERRER, (b"content-type", b"image/gif")), PIXEL)
_NOT_FOUND = answer(404, (*_NO_STORE, _HTML), NOT_FOUND_PAGE)
_GONE = answer(410, (*_NO_STORE, _HTML), GONE_PAGE)
_NOT_ALLOWED = answer(405, (*_NO_STORE, _HTML, (b"allow", b"GET, HEAD")), NOT_ALLOWED_PAGE)
_HEALTHY = answer(200, (*_NO_STORE, _TEXT), b"ok\n")
_DRAINING = answer(503, (*_NO_STORE, _TEXT), b"draining\n")
_CLOSE = header_block(((b"connection", b"close"),))


def _ignore(outcome: str, seconds: float) -> None:
    pass


def _close_after(request: Request) -> None:
    # While draining, keep-alive connections are closed after their next answer, so that
    # their clients reconnect through the balancer to an instance that is staying.
    request.channel.persistent = False
    set_headers(request, _CLOSE)


class LinkResource(Resource):
    """
    The leaf resource behind every public path.

    @param keys: called once per request for the current keys by id, so a reloaded keyring
        takes effect at the next request without a restart.
    @param record: takes each verified hit after its response is finished; must not raise.
    @param observe: takes each request's outcome (C{redirect}, C{open}, C{invalid},
        C{blocked}, C{method}, C{health}) and the seconds spent answering it, for metrics;
        called after the answer is finished, so it must not raise either.
    @param now: seconds since the epoch, the time stamped on hits.
    @param blocklist: called once per valid link for the current block list (reloadable,
        like C{keys}); a listed link answers 410, outcome C{blocked}, and is not recorded.
    """

    isLeaf = True

    def __init__(
        self,
        keys: Callable[[], Mapping[str, Key]],
        record: Callable[[Hit], None] | None = None,
        observe: Callable[[str, float], None] = _ignore,
        now: Callable[[], float] = time.time,
        blocklist: Callable[[], BlockList] = lambda: EMPTY,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._keys = keys
        self._record = record
        self._observe = observe
        self._now = now
        self._blocklist = blocklist
        self.draining = False
        """Set once a graceful stop begins: C{/healthz} then answers 503, and every answer
        closes its connection."""

    def render(self, request: Request) -> int:
        started = time.perf_counter()
        if self.draining:
            _close_after(request)
        method = request.method
        if method != b"GET" and method != b"HEAD":
            respond(request, _NOT_ALLOWED)
            self._observe("method", time.perf_counter() - started)
            return NOT_DONE_YET
        path = request.path.decode("latin-1")
        if path == "/healthz":
            respond(request, _DRAINING if self.draining else _HEALTHY)
            self._observe("health", time.perf_counter() - started)
            return NOT_DONE_YET
        link = verify(path, self._keys())
        if not isinstance(link, TrackedLink):
            respond(request, _NOT_FOUND)
            self._observe("invalid", time.perf_counter() - started)
            return NOT_DONE_YET
        if self._blocklist().reason(link) is not None:
            respond(request, _GONE)
            self._observe("blocked", time.perf_counter() - started)
            return NOT_DONE_YET
        if link.kind is Kind.OPEN:
            written = respond(request, _PIXEL)
            outcome = "open"
        else:
            assert link.target is not None
            # The codec only yields printable ASCII targets: nothing to check or escape.
            written = respond(request, _REDIRECT, link.target.encode("ascii"))
            outcome = "redirect"
        # the answer is on its way before the click is recorded
        self._observe(outcome, time.perf_counter() - started)
        if written and self._record is not None:
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
