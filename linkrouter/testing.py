# -*- test-case-name: tests.test_testing -*-
"""
Test doubles shipped with linkrouter, so that users' tests (and ours) need no real collector.

L{FakeCollector} is a real C{twisted.web} resource speaking the collector's side of the sync
protocol (C{docs/sync-protocol.rst}): use it in-process with C{treq.testing.StubTreq}, or
serve it on a loopback port with C{python -m linkrouter.testing}. It can be told to fail,
delay, refuse given events, or answer C{Retry-After}.
"""

from __future__ import annotations

import argparse
import hmac
import json
import zlib
from collections.abc import Callable
from typing import Any

from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from .event import decode_line
from .journalservice import Clock

__all__ = ["MAX_BODY", "MAX_INFLATED", "FakeCollector", "main"]

MAX_BODY = 16 * 1024 * 1024
"""Largest compressed request body accepted."""

MAX_INFLATED = 64 * 1024 * 1024
"""Largest decompressed body: a gzip bomb is refused, not inflated."""


def _inflate(body: bytes) -> bytes | None:
    """
    The data of every gzip member in C{body}, or C{None} if it is not gzip, has trailing
    garbage, or would inflate past L{MAX_INFLATED} (decompressed in bounded steps).
    """
    pieces: list[bytes] = []
    total = 0
    rest = body
    while rest:
        decompressor = zlib.decompressobj(wbits=31)
        try:
            data = decompressor.decompress(rest, MAX_INFLATED + 1 - total)
        except zlib.error:
            return None
        total += len(data)
        if total > MAX_INFLATED or not decompressor.eof:
            return None
        pieces.append(data)
        rest = decompressor.unused_data
    return b"".join(pieces) if pieces else None


class FakeCollector(Resource):
    """
    The ingest endpoint C{POST /v1/events}, remembering every event it accepted.

    @ivar events: accepted events by event id.
    @ivar batches: how many batches were received, whatever their answer.
    @ivar duplicates: events received again after being accepted once.
    """

    isLeaf = True

    def __init__(self, token: bytes | None = None, clock: Clock | None = None) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.token = token
        self._clock = clock
        self.events: dict[str, dict[str, Any]] = {}
        self.batches = 0
        self.duplicates = 0
        self.routers: set[str] = set()
        self._failures: list[tuple[int, bytes | None]] = []
        self._rejects: Callable[[dict[str, Any]], bool] = lambda event: False
        self._delay = 0.0

    def fail(self, status: int, times: int = 1, retry_after: bytes | None = None) -> None:
        """
        Answer the next C{times} batches with C{status} (and C{Retry-After}), storing nothing.
        """
        self._failures.extend([(status, retry_after)] * times)

    def reject(self, predicate: Callable[[dict[str, Any]], bool]) -> None:
        """
        Refuse, with a 422 naming their lines, the events for which C{predicate} is true.
        """
        self._rejects = predicate

    def delay(self, seconds: float) -> None:
        """
        Answer every batch only after C{seconds} (needs the clock given at creation).
        """
        self._delay = seconds

    def render_POST(self, request: Request) -> bytes | int:
        if request.path != b"/v1/events":
            request.setResponseCode(404)
            return b"{}"
        self.batches += 1
        if self._failures:
            status, retry_after = self._failures.pop(0)
            request.setResponseCode(status)
            if retry_after is not None:
                request.setHeader(b"retry-after", retry_after)
            return b'{"error": "told to fail"}'
        authorization = request.getHeader(b"authorization") or b""
        if self.token is not None and not hmac.compare_digest(
            authorization, b"Bearer " + self.token
        ):
            request.setResponseCode(401)
            return b'{"error": "bad token"}'
        assert request.content is not None
        body = request.content.read(MAX_BODY + 1)
        data = _inflate(body) if len(body) <= MAX_BODY else None
        if data is None:
            request.setResponseCode(413 if len(body) > MAX_BODY else 400)
            return b'{"error": "the body is not gzip, or too large"}'
        self.routers.add((request.getHeader(b"x-linkrouter-router") or b"").decode())
        answer = self._ingest(data)
        request.setHeader(b"content-type", b"application/json")
        request.setResponseCode(422 if answer["rejected"] else 200)
        payload = json.dumps(answer).encode()
        if self._delay and self._clock is not None:
            self._clock.callLater(self._delay, lambda: self._finish(request, payload))
            return NOT_DONE_YET
        return payload

    @staticmethod
    def _finish(request: Request, payload: bytes) -> None:
        if not request.finished and not request._disconnected:
            request.write(payload)
            request.finish()

    def _ingest(self, data: bytes) -> dict[str, Any]:
        accepted = duplicates = 0
        rejected = []
        for number, line in enumerate(data.splitlines(), start=1):
            event = decode_line(line)
            if event is None or not isinstance(event.get("id"), str):
                rejected.append({"line": number, "reason": "not a valid event line"})
                continue
            if self._rejects(event):
                rejected.append({"line": number, "reason": "refused by the test"})
                continue
            if event["id"] in self.events:
                duplicates += 1
            else:
                self.events[event["id"]] = event
                accepted += 1
        self.duplicates += duplicates
        return {"accepted": accepted, "duplicates": duplicates, "rejected": rejected}


class _Received(Resource):
    """
    C{GET /received}: the ids of every accepted event, for a test in another process.
    """

    isLeaf = True

    def __init__(self, collector: FakeCollector) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._collector = collector

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        return json.dumps(
            {
                "ids": sorted(self._collector.events),
                "batches": self._collector.batches,
                "duplicates": self._collector.duplicates,
            }
        ).encode()


def main(argv: list[str] | None = None) -> None:
    """
    Serve a fake collector on loopback: C{python -m linkrouter.testing --port N [--tls
    CERT KEY] [--token-file F]}. C{GET /received} lists what it accepted. Tests only.
    """
    from twisted.internet import reactor
    from twisted.internet.endpoints import SSL4ServerEndpoint, TCP4ServerEndpoint
    from twisted.python.filepath import FilePath
    from twisted.web.server import Site

    from .tls import server_options

    parser = argparse.ArgumentParser(description="A fake linkrouter collector, for tests.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    parser.add_argument("--token-file")
    parser.add_argument("--fail", type=int, default=0, help="answer the first N batches 503")
    options = parser.parse_args(argv)
    token = FilePath(options.token_file).getContent().strip() if options.token_file else None
    collector = FakeCollector(token, reactor)
    if options.fail:
        collector.fail(503, options.fail)
    root = Resource()
    root.putChild(b"v1", collector)  # type: ignore[arg-type]
    root.putChild(b"received", _Received(collector))  # type: ignore[arg-type]
    site = Site(root)
    if options.tls:
        tls = server_options(FilePath(options.tls[0]), FilePath(options.tls[1]))
        endpoint: Any = SSL4ServerEndpoint(reactor, options.port, tls, interface="127.0.0.1")
    else:
        endpoint = TCP4ServerEndpoint(reactor, options.port, interface="127.0.0.1")
    endpoint.listen(site)
    reactor.run()  # type: ignore[misc]


if __name__ == "__main__":
    main()
