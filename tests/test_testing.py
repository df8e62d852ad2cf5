"""
Tests for L{linkrouter.testing.FakeCollector}: the collector's side of the sync protocol, as
a test double — authentication, gzip (and gzip bombs), idempotent ingest, per-line refusals,
and the failures it can be told to produce.
"""

from __future__ import annotations

import functools
import gzip
import json
import tracemalloc
import zlib
from typing import Any

from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from linkrouter import testing
from linkrouter.codec import Kind, Part, TrackedLink
from linkrouter.event import Hit, IPStorage, encode_hits
from linkrouter.testing import MAX_BODY, MAX_INFLATED, FakeCollector

LINK = TrackedLink(Kind.CLICK, Part.HTML, "https://dest.example/", "k1", "L1", 1_700_000_000)
T0 = 1_700_000_000.0
TOKEN = b"s3cret-token"
URL = "https://collector.example/v1/events"


def event_lines(count: int, first: int = 1) -> list[bytes]:
    """
    C{count} journal lines, each with its own event id, numbered from C{first}.
    """
    hits = [
        Hit(T0 + n, LINK, b"GET", "192.0.2.1", b"agent %d" % n)
        for n in range(first, first + count)
    ]
    data, _ = encode_hits(hits, "r1", first, IPStorage.FULL)
    return data.splitlines(keepends=True)


@functools.cache
def bomb(inflated: int) -> bytes:
    """
    A gzip stream of C{inflated} zero bytes, made without holding them all.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = bytes(1 << 20)
    parts = []
    whole, rest = divmod(inflated, len(chunk))
    for _ in range(whole):
        parts.append(compressor.compress(chunk))
    parts.append(compressor.compress(bytes(rest)))
    parts.append(compressor.flush())
    return b"".join(parts)


class Answer:
    def __init__(self, code: int, headers: Any, body: bytes) -> None:
        self.code = code
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


class FakeCollectorTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.collector = FakeCollector(TOKEN, self.clock)
        self.stub = StubTreq(self.collector)

    def post(
        self,
        body: bytes,
        token: bytes | None = TOKEN,
        url: str = URL,
        router: bytes = b"r1",
        flush: bool = False,
    ) -> Answer:
        headers = {b"Content-Encoding": [b"gzip"], b"X-Linkrouter-Router": [router]}
        if token is not None:
            headers[b"Authorization"] = [b"Bearer " + token]
        answered = self.stub.post(url, data=body, headers=headers, timeout=30)
        if flush:
            self.stub.flush()
        response = self.successResultOf(answered)
        content = self.successResultOf(response.content())
        return Answer(response.code, response.headers, content)

    def send(self, lines: list[bytes], **kwargs: Any) -> Answer:
        return self.post(gzip.compress(b"".join(lines)), **kwargs)

    def test_accepts(self) -> None:
        """
        Good lines with the right token are stored by event id and counted as accepted,
        with the router's id noted.
        """
        lines = event_lines(5)
        answer = self.send(lines)
        self.assertEqual(answer.code, 200)
        self.assertEqual(answer.json(), {"accepted": 5, "duplicates": 0, "rejected": []})
        self.assertEqual(answer.headers.getRawHeaders(b"content-type"), [b"application/json"])
        self.assertEqual(len(self.collector.events), 5)
        self.assertEqual(sorted(e["seq"] for e in self.collector.events.values()), [1, 2, 3, 4, 5])
        self.assertEqual(self.collector.batches, 1)
        self.assertEqual(self.collector.routers, {"r1"})

    def test_timeoutKeywordAccepted(self) -> None:
        """
        StubTreq's C{post} takes the C{timeout} keyword sync passes (every request here
        uses it); a request answered at once leaves no timer behind on the reactor.
        """
        from twisted.internet import reactor

        before = set(reactor.getDelayedCalls())
        self.assertEqual(self.send(event_lines(1)).code, 200)
        self.assertEqual(set(reactor.getDelayedCalls()), before)

    def test_wrongToken(self) -> None:
        """
        A wrong or missing bearer token is refused with 401 and nothing is stored.
        """
        for token in [b"wrong", TOKEN + b"x", b"", None]:
            answer = self.send(event_lines(2), token=token)
            self.assertEqual(answer.code, 401, token)
        self.assertEqual(self.collector.events, {})

    def test_noTokenConfigured(self) -> None:
        """
        A collector made without a token takes any caller.
        """
        stub = StubTreq(FakeCollector())
        response = self.successResultOf(
            stub.post(URL, data=gzip.compress(b"".join(event_lines(1))))
        )
        self.assertEqual(response.code, 200)

    def test_notGzip(self) -> None:
        """
        A body that is not gzip (plain lines, zlib without the gzip header, junk) is a 400.
        """
        plain = b"".join(event_lines(2))
        for body in [plain, zlib.compress(plain), b"\x1f\x8b\x08junk", b""]:
            self.assertEqual(self.post(body).code, 400, body[:10])
        self.assertEqual(self.collector.events, {})

    def test_truncatedGzip(self) -> None:
        """
        A gzip stream cut short is a 400, not a partial ingest.
        """
        body = gzip.compress(b"".join(event_lines(20)))
        self.assertEqual(self.post(body[: len(body) // 2]).code, 400)
        self.assertEqual(self.collector.events, {})

    def test_gzipBomb(self) -> None:
        """
        100 MB of zeros, gzip-compressed to about 100 kB, is refused with 400.
        """
        body = bomb(100 * 1024 * 1024)
        self.assertLess(len(body), 200_000)
        self.assertEqual(self.post(body).code, 400)
        self.assertEqual(self.collector.events, {})

    def test_inflatedBound(self) -> None:
        """
        The bound is C{MAX_INFLATED}: a body inflating to exactly that much is read (and
        its zero bytes are one bad line), one byte more is refused with 400.
        """
        self.patch(testing, "MAX_INFLATED", 64 * 1024)
        at_limit = self.post(bomb(64 * 1024))
        self.assertEqual(at_limit.code, 422)
        self.assertEqual(self.post(bomb(64 * 1024 + 1)).code, 400)

    def test_bombMemoryBounded(self) -> None:
        """
        Memory spent on a bomb is bounded by C{MAX_INFLATED}, not by what the bomb would
        inflate to: with the bound at 1 MiB, 100 MB of zeros costs a few MiB at most.
        """
        self.patch(testing, "MAX_INFLATED", 1024 * 1024)
        body = bomb(100 * 1024 * 1024)
        tracemalloc.start()
        self.addCleanup(tracemalloc.stop)
        self.assertIsNone(testing._inflate(body))
        _, peak = tracemalloc.get_traced_memory()
        self.assertLess(peak, 4 * 1024 * 1024)

    def test_defaultBounds(self) -> None:
        """
        The limits are 16 MiB of compressed body and 64 MiB inflated.
        """
        self.assertEqual((MAX_BODY, MAX_INFLATED), (16 << 20, 64 << 20))

    def test_bodyTooLarge(self) -> None:
        """
        A compressed body over C{MAX_BODY} is refused with 413.
        """
        self.patch(testing, "MAX_BODY", 200)
        body = gzip.compress(b"".join(event_lines(20)))
        self.assertGreater(len(body), 200)
        self.assertEqual(self.post(body).code, 413)

    def test_multiMemberGzip(self) -> None:
        """
        A gzip body of several members (RFC 1952 allows it; C{gzip.decompress} reads them
        all) is either read whole or refused: never answered 200 with only the first
        member's events stored, which would let the router drop the rest.
        """
        lines = event_lines(4)
        body = gzip.compress(b"".join(lines[:2])) + gzip.compress(b"".join(lines[2:]))
        self.assertEqual(gzip.decompress(body), b"".join(lines))
        answer = self.post(body)
        if answer.code == 200:
            self.assertEqual(len(self.collector.events), 4)
        else:
            self.assertEqual(answer.code, 400)

    def test_trailingGarbageAfterGzip(self) -> None:
        """
        Bytes after the end of the gzip stream are not silently ignored.
        """
        body = gzip.compress(b"".join(event_lines(2))) + b"trailing junk"
        self.assertEqual(self.post(body).code, 400)

    def test_duplicatesAcrossBatches(self) -> None:
        """
        Events sent again in a later batch are counted as duplicates and not stored again.
        """
        lines = event_lines(6)
        self.send(lines[:4])
        answer = self.send(lines[2:])
        self.assertEqual(answer.code, 200)
        self.assertEqual(answer.json(), {"accepted": 2, "duplicates": 2, "rejected": []})
        self.assertEqual(len(self.collector.events), 6)
        self.assertEqual(self.collector.duplicates, 2)
        self.assertEqual(self.collector.batches, 2)

    def test_duplicatesWithinBatch(self) -> None:
        """
        The same event twice in one batch is stored once and counted once as a duplicate.
        """
        lines = event_lines(3)
        answer = self.send([lines[0], lines[1], lines[0], lines[2]])
        self.assertEqual(answer.json(), {"accepted": 3, "duplicates": 1, "rejected": []})
        self.assertEqual(self.collector.duplicates, 1)

    def test_badLinesRejected(self) -> None:
        """
        Lines that are not events (junk, a checksum mismatch, an event without an id) get
        a 422 naming their 1-based line numbers; the good lines are kept.
        """
        good = event_lines(3)
        tampered = good[1].replace(b"agent", b"Agent")
        no_id = encode_hits([Hit(T0, LINK, b"GET", "192.0.2.1", b"x")], "r1", 9, IPStorage.FULL)[0]
        no_id_line = no_id.replace(b'"id":"', b'"xx":"')
        lines = [good[0], b"junk\n", tampered, good[2], no_id_line]
        answer = self.send(lines)
        self.assertEqual(answer.code, 422)
        body = answer.json()
        self.assertEqual([item["line"] for item in body["rejected"]], [2, 3, 5])
        self.assertEqual(body["accepted"], 2)
        self.assertEqual(
            sorted(e["seq"] for e in self.collector.events.values()),
            [1, 3],
        )

    def test_rejectPredicate(self) -> None:
        """
        C{reject} refuses the events it selects with a 422 naming their lines, keeping the
        others.
        """
        self.collector.reject(lambda event: event["seq"] in (2, 4))
        answer = self.send(event_lines(5))
        self.assertEqual(answer.code, 422)
        self.assertEqual([item["line"] for item in answer.json()["rejected"]], [2, 4])
        self.assertEqual(sorted(e["seq"] for e in self.collector.events.values()), [1, 3, 5])

    def test_fail(self) -> None:
        """
        C{fail} answers the next C{times} batches with the status, storing nothing (even
        for a wrong token), then goes back to normal.
        """
        self.collector.fail(503, times=2)
        lines = event_lines(2)
        self.assertEqual(self.send(lines).code, 503)
        self.assertEqual(self.send(lines, token=b"wrong").code, 503)
        self.assertEqual(self.collector.events, {})
        self.assertEqual(self.send(lines).code, 200)
        self.assertEqual(self.collector.batches, 3)

    def test_failSequence(self) -> None:
        """
        Failures queue up in the order they were asked for.
        """
        self.collector.fail(500)
        self.collector.fail(429, retry_after=b"7")
        lines = event_lines(1)
        self.assertEqual([self.send(lines).code for _ in range(3)], [500, 429, 200])

    def test_retryAfter(self) -> None:
        """
        A failure told to carry C{Retry-After} sends it; one without does not.
        """
        self.collector.fail(429, retry_after=b"120")
        self.collector.fail(503)
        first = self.send(event_lines(1))
        self.assertEqual(first.code, 429)
        self.assertEqual(first.headers.getRawHeaders(b"retry-after"), [b"120"])
        second = self.send(event_lines(1))
        self.assertIsNone(second.headers.getRawHeaders(b"retry-after"))

    def test_otherPath(self) -> None:
        """
        Any other path is a 404 and is not counted as a batch.
        """
        answer = self.send(event_lines(1), url="https://collector.example/v1/other")
        self.assertEqual(answer.code, 404)
        answer = self.send(event_lines(1), url="https://collector.example/")
        self.assertEqual(answer.code, 404)
        self.assertEqual(self.collector.batches, 0)
        self.assertEqual(self.collector.events, {})

    def test_getNotAllowed(self) -> None:
        """
        C{GET} on the ingest endpoint is not allowed.
        """
        response = self.successResultOf(self.stub.get(URL))
        self.assertEqual(response.code, 405)

    def test_delay(self) -> None:
        """
        With C{delay}, the answer comes only after that many seconds of the given clock;
        the events are stored on arrival.
        """
        self.collector.delay(10)
        headers = {b"Authorization": [b"Bearer " + TOKEN]}
        answered = self.stub.post(URL, data=gzip.compress(event_lines(1)[0]), headers=headers)
        self.stub.flush()
        self.assertNoResult(answered)
        self.assertEqual(len(self.collector.events), 1)
        self.clock.advance(9.9)
        self.stub.flush()
        self.assertNoResult(answered)
        self.clock.advance(0.1)
        self.stub.flush()
        self.assertEqual(self.successResultOf(answered).code, 200)
