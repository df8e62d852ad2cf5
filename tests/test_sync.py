"""
Tests for L{linkrouter.sync}: the sync loop against a L{FakeCollector} through C{StubTreq},
on a L{Clock}: delivery and catch-up, the request, backoff with full jitter and
C{Retry-After}, a cursor that only an acknowledgement moves, dead letters, a loop no
exception stops, logging state changes once, retention, the last attempt on stop, and the
status file.
"""

from __future__ import annotations

import email.utils
import gzip
import json
import os
import stat
from collections.abc import Callable
from typing import Any

from OpenSSL import SSL
from treq.testing import StubTreq
from twisted.internet import error as neterror
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.logger import Logger, LogLevel, formatEvent
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import ResponseFailed, ResponseNeverReceived
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import Request

from linkrouter.codec import Kind, Part, TrackedLink
from linkrouter.cursor import CURSOR_NAME, Cursor, load_cursor, oldest_cursor
from linkrouter.event import Hit, IPStorage, decode_line, encode_hits
from linkrouter.journal import SegmentJournal, segments
from linkrouter.journalservice import run_in_place
from linkrouter.reader import read_batch
from linkrouter.sync import DEAD_LETTER_NAME, STATUS_NAME, SyncService, SyncSettings
from linkrouter.testing import FakeCollector

LINK = TrackedLink(Kind.CLICK, Part.HTML, "https://dest.example/", "k1", "L1", 1_700_000_000)
T0 = 1_700_000_000.0
NOW = T0 + 3600.0
URL = "https://collector.example/v1/events"
TOKEN = b"s3cret-token"
START = Cursor(1, 0, 1)


def append_events(directory: FilePath[str], count: int, segment_bytes: int = 1 << 20) -> None:
    """
    Append C{count} events to the journal in C{directory} (made if need be), as the
    writer would, numbering on from the last one there.
    """
    journal = SegmentJournal(directory, segment_bytes=segment_bytes, clock=lambda: T0)
    sequence = journal.open()
    for _ in range(count):
        hit = Hit(T0 + sequence, LINK, b"GET", "192.0.2.1", b"agent %d" % sequence)
        data, sequence = encode_hits([hit], "r1", sequence, IPStorage.FULL)
        journal.append(data)
    journal.close()


def journal_lines(directory: FilePath[str]) -> list[bytes]:
    return [item for _, path in segments(directory) for item in path.getContent().splitlines(True)]


def journal_end(directory: FilePath[str]) -> Cursor:
    """
    The cursor after every event in the journal.
    """
    return read_batch(directory, oldest_cursor(directory), 1 << 30, 1 << 22).end


class RecordingCollector(FakeCollector):
    """
    A fake collector that also keeps each request's method, path, headers and body.
    """

    def __init__(self, token: bytes | None = None, clock: Any = None) -> None:
        super().__init__(token, clock)
        self.requests: list[dict[str, Any]] = []

    def render_POST(self, request: Request) -> bytes | int:
        assert request.content is not None
        body = request.content.read()
        request.content.seek(0)
        self.requests.append(
            {
                "method": request.method,
                "path": request.path,
                "headers": {
                    name.lower(): values
                    for name, values in request.requestHeaders.getAllRawHeaders()
                },
                "body": body,
            }
        )
        return super().render_POST(request)


class Answering(Resource):
    """
    A collector that answers each C{POST} with the next of C{answers} (code, headers,
    body), then 200; it stores nothing.
    """

    isLeaf = True

    def __init__(self, *answers: tuple[int, dict[bytes, bytes], bytes]) -> None:
        super().__init__()
        self.answers = list(answers)
        self.bodies: list[bytes] = []
        self.gets = 0

    def render_POST(self, request: Request) -> bytes:
        assert request.content is not None
        self.bodies.append(gzip.decompress(request.content.read()))
        code, headers, body = self.answers.pop(0) if self.answers else (200, {}, b"{}")
        request.setResponseCode(code)
        for name, value in headers.items():
            request.setHeader(name, value)
        return body

    def render_GET(self, request: Request) -> bytes:
        self.gets += 1
        return b'{"ok": true}'


class FakeResponse:
    """
    A response as treq gives it, with a chosen code, headers and content.
    """

    def __init__(self, code: Any, content: Callable[[], Any], headers: Any = None) -> None:
        self.code = code
        self._content = content
        self.headers = Headers() if headers is None else headers

    def content(self) -> Any:
        return self._content()


class ScriptedClient:
    """
    An HTTP client that plays each of C{script} in turn (a callable standing in for
    C{post}, or C{None} to pass the request on), then passes every request on to C{real}.
    """

    def __init__(self, real: Any, *script: Callable[[], Any] | None) -> None:
        self.real = real
        self.script = list(script)
        self.calls: list[dict[str, Any]] = []

    def post(self, url: str, data: Any = None, **kwargs: Any) -> Any:
        self.calls.append({"url": url, "data": data, **kwargs})
        behaviour = self.script.pop(0) if self.script else None
        if behaviour is None:
            return self.real.post(url, data=data, **kwargs)
        return behaviour()


def raising(exception: BaseException) -> Callable[[], Any]:
    def post() -> Any:
        raise exception

    return post


def failing(exception: BaseException) -> Callable[[], Any]:
    return lambda: fail(exception)


class SyncTestCase(SynchronousTestCase):
    """
    A journal of C{EVENTS} events, a clock an hour after them, a token-checking
    L{FakeCollector} behind C{StubTreq}, and a random source that always draws the upper
    bound and records what it was asked.
    """

    EVENTS = 20

    def setUp(self) -> None:
        from twisted.internet import reactor

        self.directory = FilePath(self.mktemp())
        append_events(self.directory, self.EVENTS)
        self.clock = Clock()
        self.clock.advance(NOW)
        self.collector = RecordingCollector(TOKEN, self.clock)
        self.stub = StubTreq(self.collector)
        self.draws: list[tuple[float, float]] = []
        self.removed: list[int] = []
        self.logged: list[dict[str, Any]] = []
        # treq schedules its request timeout on the global reactor; cancel the timers of
        # requests that a test leaves unanswered
        before = set(reactor.getDelayedCalls())

        def cancel_timers() -> None:
            for call in reactor.getDelayedCalls():
                if call not in before and call.active():
                    call.cancel()

        self.addCleanup(cancel_timers)

    def uniform(self, low: float, high: float) -> float:
        self.draws.append((low, high))
        return high

    def make(self, http: Any = None, uniform: Any = None, **overrides: Any) -> SyncService:
        settings = SyncSettings(url=URL, token=TOKEN, router_id="r1", **overrides)
        service = SyncService(
            self.directory,
            settings,
            self.stub if http is None else http,
            self.clock,
            run_in_place,
            self.uniform if uniform is None else uniform,
            on_removed=self.removed.append,
        )
        service.log = Logger(observer=self.logged.append)  # type: ignore[misc]
        return service

    def start(self, http: Any = None, **overrides: Any) -> SyncService:
        service = self.make(http, **overrides)
        service.startService()
        return service

    def received(self) -> list[int]:
        return sorted(event["seq"] for event in self.collector.events.values())

    def saved_cursor(self) -> Cursor | None:
        if not self.directory.child(CURSOR_NAME).exists():
            return None
        cursor, problem = load_cursor(self.directory, self.directory)
        self.assertIsNone(problem)
        return cursor

    def messages(self, level: LogLevel | None = None) -> list[str]:
        return [
            formatEvent(event)
            for event in self.logged
            if level is None or event["log_level"] == level
        ]

    def step(self, seconds: float, by: float = 1.0) -> None:
        """
        Advance the clock C{seconds}, C{by} seconds at a time, so every tick runs.
        """
        for _ in range(round(seconds / by)):
            self.clock.advance(by)


class DeliveryTests(SyncTestCase):
    def test_oneTickSendsEverything(self) -> None:
        """
        Starting the service syncs at once: every event reaches the collector in one
        batch, and the cursor, in memory and on disk, is at the end of the journal.
        """
        service = self.start()
        self.assertEqual(self.received(), list(range(1, 21)))
        self.assertEqual(self.collector.batches, 1)
        end = journal_end(self.directory)
        self.assertEqual(service.status.cursor, end)
        self.assertEqual(self.saved_cursor(), end)
        self.assertEqual(service.status.sent, 20)
        self.assertEqual(service.status.failures, 0)
        self.assertEqual(service.status.last_success, NOW)
        self.assertEqual(self.draws, [])

    def test_request(self) -> None:
        """
        The batch is a gzip-compressed C{POST} of the journal lines, exactly as they are,
        to the configured URL, with the bearer token, the router id, and the content type
        and encoding; redirects are not followed (a redirect is no acknowledgement).
        """
        client = ScriptedClient(self.stub)
        self.start(client, timeout=12.5)
        (request,) = self.collector.requests
        self.assertEqual((request["method"], request["path"]), (b"POST", b"/v1/events"))
        headers = request["headers"]
        self.assertEqual(headers[b"authorization"], [b"Bearer " + TOKEN])
        self.assertEqual(headers[b"content-encoding"], [b"gzip"])
        self.assertEqual(headers[b"x-linkrouter-router"], [b"r1"])
        self.assertEqual(headers[b"content-type"], [b"application/x-ndjson"])
        self.assertEqual(gzip.decompress(request["body"]), b"".join(journal_lines(self.directory)))
        self.assertEqual(client.calls[0]["url"], URL)
        self.assertIs(client.calls[0]["allow_redirects"], False)
        self.assertEqual(self.collector.routers, {"r1"})

    def test_wrongToken(self) -> None:
        """
        A collector with another token answers 401: that is a failure with backoff, and
        the cursor does not move.
        """
        self.collector = RecordingCollector(b"another-token", self.clock)
        self.stub = StubTreq(self.collector)
        service = self.start()
        self.assertEqual(self.collector.events, {})
        self.assertEqual(service.status.cursor, START)
        self.assertIsNone(self.saved_cursor())
        self.assertEqual(service.status.failures, 1)
        self.assertEqual(service.status.last_error, "the collector answered 401")
        self.assertEqual(service.status.next_attempt, NOW + 1.0)

    def test_catchUp(self) -> None:
        """
        With a backlog larger than a batch, one tick sends batch after batch at once
        until it is gone: 35 events at 10 a batch are 4 batches, no waiting.
        """
        append_events(self.directory, 15)
        service = self.start(max_events=10)
        self.assertEqual(self.collector.batches, 4)
        self.assertEqual(self.received(), list(range(1, 36)))
        self.assertEqual(
            [len(gzip.decompress(r["body"]).splitlines()) for r in self.collector.requests],
            [10, 10, 10, 5],
        )
        self.assertEqual(service.status.cursor, journal_end(self.directory))
        self.assertEqual(self.clock.seconds(), NOW)

    def test_catchUpByBytes(self) -> None:
        """
        The byte limit splits batches too, and a batch ended by it is followed at once by
        the next: three lines' worth a batch, so 20 events are 7 batches in one tick. (A
        batch ended by the byte limit is almost never exactly C{max_bytes} long.)
        """
        size = max(map(len, journal_lines(self.directory)))  # seq 10 on is one digit longer
        self.start(max_bytes=size * 3 + 3)
        self.assertEqual(self.collector.batches, 7)
        self.assertEqual(self.received(), list(range(1, 21)))

    def test_exactMultipleOfBatch(self) -> None:
        """
        A backlog of exactly two full batches is sent as two, then an empty read ends the
        catch-up without sending an empty batch.
        """
        self.start(max_events=10)
        self.assertEqual(self.collector.batches, 2)

    def test_acrossSegments(self) -> None:
        """
        A journal of many segments is sent whole, in order, and the cursor ends in the
        newest segment.
        """
        self.directory = FilePath(self.mktemp())
        append_events(self.directory, 30, segment_bytes=1000)
        self.assertGreater(len(segments(self.directory)), 5)
        service = self.start(max_events=7)
        self.assertEqual(self.received(), list(range(1, 31)))
        self.assertEqual(service.status.cursor, journal_end(self.directory))
        self.assertEqual(service.status.cursor.segment, segments(self.directory)[-1][0])

    def test_nothingToSend(self) -> None:
        """
        When nothing waits, no request is made, and that is no failure.
        """
        service = self.start()
        self.step(30)
        self.assertEqual(self.collector.batches, 1)
        self.assertEqual(service.status.failures, 0)

    def test_laterEventsAtTheNextTick(self) -> None:
        """
        Events written after a sync go at the next tick of the interval.
        """
        service = self.start(interval=5.0)
        append_events(self.directory, 6)
        self.clock.advance(4.9)
        self.assertEqual(self.collector.batches, 1)
        self.clock.advance(0.1)
        self.assertEqual(self.collector.batches, 2)
        self.assertEqual(self.received(), list(range(1, 27)))
        self.assertEqual(service.status.cursor, journal_end(self.directory))

    def test_resumesFromSavedCursor(self) -> None:
        """
        A restarted service starts from the saved cursor: nothing is sent twice.
        """
        self.start().stopService()
        append_events(self.directory, 3)
        self.collector.requests.clear()
        self.start()
        (request,) = self.collector.requests
        self.assertEqual(len(gzip.decompress(request["body"]).splitlines()), 3)
        self.assertEqual(self.collector.duplicates, 0)

    def test_anySuccessCode(self) -> None:
        """
        Any 2xx is an acknowledgement, whatever its body.
        """
        for code in [200, 201, 202, 204]:
            self.directory = FilePath(self.mktemp())
            append_events(self.directory, 3)
            service = self.start(StubTreq(Answering((code, {}, b""))))
            self.assertEqual(service.status.cursor, journal_end(self.directory), code)

    def test_corruptLineSkippedAndReported(self) -> None:
        """
        A corrupt journal line is not sent, the rest are, and the skip is counted and
        logged.
        """
        self.directory = FilePath(self.mktemp())
        append_events(self.directory, 5)
        (_, path) = segments(self.directory)[0]
        data = bytearray(path.getContent())
        second = data.index(b"\n") + 1
        data[data.index(b"agent", second)] ^= 0x01
        path.setContent(bytes(data))
        service = self.start()
        self.assertEqual(self.received(), [1, 3, 4, 5])
        self.assertEqual(service.status.skipped_corrupt, 1)
        self.assertTrue(any("corrupt" in text for text in self.messages(LogLevel.warn)))
        self.assertEqual(service.status.cursor, journal_end(self.directory))


class BackoffTests(SyncTestCase):
    def test_fullJitterSequence(self) -> None:
        """
        Each failure in a row waits a full-jitter draw from M{[0, base * 2 ** (n - 1)]}:
        with the upper bound drawn, 10, 20, then 40 s. Nothing is sent before
        C{next_attempt} though the loop ticks every 5 s; the batch goes exactly then; and
        a success resets the failures.
        """
        self.collector.fail(503, times=3)
        service = self.start(backoff_base=10.0, backoff_cap=300.0, interval=5.0)
        attempts = 1
        for delay in [10.0, 20.0, 40.0]:
            self.assertEqual(self.collector.batches, attempts)
            self.assertEqual(service.status.next_attempt, self.clock.seconds() + delay)
            self.step(delay - 1)
            self.clock.advance(0.5)
            self.assertEqual(self.collector.batches, attempts)
            self.assertEqual(service.status.cursor, START)
            self.clock.advance(0.5)
            attempts += 1
            self.assertEqual(self.collector.batches, attempts)
        self.assertEqual(self.draws, [(0.0, 10.0), (0.0, 20.0), (0.0, 40.0)])
        self.assertEqual(self.received(), list(range(1, 21)))
        self.assertEqual(service.status.failures, 0)
        self.assertEqual(service.status.next_attempt, 0.0)
        self.assertIsNone(service.status.last_error)
        self.assertEqual(service.status.last_success, NOW + 70.0)
        self.assertEqual(self.saved_cursor(), journal_end(self.directory))

    def test_cap(self) -> None:
        """
        The ceiling doubles up to the cap and stays there.
        """
        self.collector.fail(503, times=6)
        self.start(backoff_base=1.0, backoff_cap=4.0)
        self.step(100)
        self.assertEqual([high for _, high in self.draws], [1.0, 2.0, 4.0, 4.0, 4.0, 4.0])
        self.assertEqual(self.received(), list(range(1, 21)))

    def test_drawIsTheDelay(self) -> None:
        """
        The delay is what the random source drew, not its ceiling.
        """
        self.collector.fail(503)
        service = self.start(uniform=lambda low, high: high / 4, backoff_base=8.0)
        self.assertEqual(service.status.next_attempt, NOW + 2.0)

    def test_zeroDelay(self) -> None:
        """
        A draw of zero schedules the retry for the next turn of the clock instead of
        retrying within the failed attempt; then it goes with no wait.
        """
        self.collector.fail(503, times=3)
        service = self.make(uniform=lambda low, high: low)
        service.startService()
        self.assertEqual(self.collector.batches, 1)
        self.assertEqual(service.status.next_attempt, NOW)
        self.clock.advance(0)
        self.assertEqual(self.collector.batches, 4)
        self.assertEqual(self.received(), list(range(1, 21)))
        self.assertEqual(self.clock.seconds(), NOW)

    def test_retryAfterSeconds(self) -> None:
        """
        C{429} with C{Retry-After: 120} waits 120 s even though the backoff says 1 s.
        """
        self.collector.fail(429, retry_after=b"120")
        service = self.start()
        self.assertEqual(service.status.next_attempt, NOW + 120.0)
        self.step(119)
        self.clock.advance(0.5)
        self.assertEqual(self.collector.batches, 1)
        self.clock.advance(0.5)
        self.assertEqual(self.collector.batches, 2)
        self.assertEqual(self.received(), list(range(1, 21)))

    def test_retryAfterDate(self) -> None:
        """
        C{503} with C{Retry-After} as an HTTP date waits until then, by the service's
        clock.
        """
        when = email.utils.formatdate(NOW + 200, usegmt=True).encode()
        self.collector.fail(503, retry_after=when)
        service = self.start()
        self.assertEqual(service.status.next_attempt, NOW + 200.0)

    def test_retryAfterShorterThanBackoff(self) -> None:
        """
        A Retry-After shorter than the backoff draw does not shorten the wait.
        """
        self.collector.fail(503, retry_after=b"1")
        service = self.start(backoff_base=30.0)
        self.assertEqual(service.status.next_attempt, NOW + 30.0)

    def test_retryAfterCapped(self) -> None:
        """
        A Retry-After of days is taken as an hour.
        """
        self.collector.fail(503, retry_after=b"999999")
        service = self.start()
        self.assertEqual(service.status.next_attempt, NOW + 3600.0)

    def test_retryAfterGarbage(self) -> None:
        """
        An unreadable Retry-After is ignored: plain backoff, and the batch is retried.
        """
        for value in [b"soon", b"\xb2"]:
            self.directory = FilePath(self.mktemp())
            append_events(self.directory, 2)
            self.collector = RecordingCollector(TOKEN, self.clock)
            self.stub = StubTreq(self.collector)
            self.collector.fail(503, retry_after=value)
            service = self.start()
            self.assertEqual(service.status.next_attempt, self.clock.seconds() + 1.0, value)
            self.assertEqual(service.status.last_error, "the collector answered 503", value)


class CursorOnlyMovesOnAcknowledgementTests(SyncTestCase):
    """
    Whatever goes wrong, the cursor stays where it was until a 2xx, and the same events
    are then delivered.
    """

    def check_not_moved(self, service: SyncService, reason: str) -> None:
        self.assertEqual(service.status.cursor, START, reason)
        self.assertIsNone(self.saved_cursor(), reason)
        self.assertEqual(service.status.failures, 1, reason)
        self.assertGreater(service.status.next_attempt, self.clock.seconds(), reason)
        self.assertIsNotNone(service.status.last_error, reason)

    def fresh(self) -> None:
        self.directory = FilePath(self.mktemp())
        append_events(self.directory, 5)
        self.collector = RecordingCollector(TOKEN, self.clock)
        self.stub = StubTreq(self.collector)

    def test_refusals(self) -> None:
        """
        401, 403, 408, 429, 500, 502, 503, 504, and other answers (409, 418, a 400 or 422
        that names no line) leave the cursor; after them the batch is delivered.
        """
        for code in [401, 403, 408, 429, 500, 502, 503, 504, 409, 418, 400, 422]:
            self.fresh()
            self.collector.fail(code)
            service = self.start()
            self.check_not_moved(service, str(code))
            self.assertEqual(service.status.last_error, f"the collector answered {code}")
            self.clock.advance(1)
            self.assertEqual(service.status.cursor, journal_end(self.directory), code)

    def test_badGzip400(self) -> None:
        """
        The fake collector's own 400 for a body it cannot read names no lines: a failure.
        """
        client = ScriptedClient(
            self.stub,
            lambda: self.stub.post(
                URL, data=b"not gzip", headers={b"Authorization": [b"Bearer " + TOKEN]}
            ),
        )
        service = self.start(client)
        self.check_not_moved(service, "400")

    def test_rejectionsOutOfRange(self) -> None:
        """
        A 422 naming only lines the batch does not have is a failure, not an
        acknowledgement.
        """
        answer = json.dumps({"rejected": [{"line": 0}, {"line": 99}]}).encode()
        service = self.start(StubTreq(Answering((422, {}, answer))))
        self.check_not_moved(service, "422")

    def test_redirectWithoutLocation(self) -> None:
        """
        A 3xx answer without a Location leaves the cursor.
        """
        for code in [301, 302, 307, 308]:
            self.fresh()
            self.collector.fail(code)
            service = self.start()
            self.check_not_moved(service, str(code))

    def test_seeOtherIsNoAcknowledgement(self) -> None:
        """
        A C{303 See Other} pointing elsewhere is "any other answer": nothing was stored,
        and the cursor must stay. (treq follows a 303 with a C{GET} by default; the 200 of
        that C{GET} is no acknowledgement of the batch.)
        """
        collector = Answering((303, {b"location": b"/thanks"}, b""))
        service = self.start(StubTreq(collector))
        self.assertEqual(service.status.cursor, START)
        self.assertIsNone(self.saved_cursor())
        self.assertEqual(collector.gets, 0)

    def test_exceptions(self) -> None:
        """
        Connection refused, DNS failure, timeouts (as the timeout's cancellation or as a
        timeout error), a TLS verification error, a response cut short: each leaves the
        cursor, and the reason names the error.
        """
        tls = SSL.Error([("SSL routines", "", "certificate verify failed")])
        cases = [
            neterror.ConnectionRefusedError(),
            neterror.DNSLookupError("collector.example"),
            neterror.TimeoutError(),
            TimeoutError("timed out"),
            CancelledError(),
            ResponseNeverReceived([Failure(CancelledError())]),
            ResponseNeverReceived([Failure(tls)]),
            ResponseFailed([Failure(neterror.ConnectionLost())]),
            neterror.ConnectionLost(),
        ]
        for exception in cases:
            self.fresh()
            service = self.start(ScriptedClient(self.stub, failing(exception)))
            self.check_not_moved(service, repr(exception))
            self.assertIn(type(exception).__name__, service.status.last_error or "")
            self.clock.advance(1)
            self.assertEqual(service.status.cursor, journal_end(self.directory))

    def test_bodyUnreadableAfter200(self) -> None:
        """
        A 200 whose body cannot be read is not taken as an acknowledgement.
        """
        response = FakeResponse(200, lambda: fail(ResponseFailed([Failure(Exception())])))
        service = self.start(ScriptedClient(self.stub, lambda: succeed(response)))
        self.check_not_moved(service, "unreadable 200")

    def test_refusalAfterPartialCatchUp(self) -> None:
        """
        In a catch-up, batches acknowledged before a refusal stay acknowledged; the cursor
        stops right after the last of them.
        """
        client = ScriptedClient(self.stub, None, None, failing(neterror.ConnectionLost()))
        service = self.start(client, max_events=5)
        self.assertEqual(self.received(), list(range(1, 11)))
        after_ten = read_batch(self.directory, START, 10, 1 << 20).end
        self.assertEqual(service.status.cursor, after_ten)
        self.assertEqual(self.saved_cursor(), after_ten)
        self.clock.advance(1)
        self.assertEqual(self.received(), list(range(1, 21)))


class DeadLetterTests(SyncTestCase):
    def dead_letters(self) -> list[bytes]:
        path = self.directory.child(DEAD_LETTER_NAME)
        return path.getContent().splitlines(True) if path.exists() else []

    def test_poisonEvent(self) -> None:
        """
        An event the collector refuses (422 naming its line) goes, exactly as journalled,
        to C{dead-letter.jsonl} (0600); the rest are re-sent and acknowledged, and the
        cursor moves past all of them.
        """
        self.collector.reject(lambda event: event["seq"] == 5)
        service = self.start()
        lines = journal_lines(self.directory)
        self.assertEqual(self.dead_letters(), [lines[4]])
        mode = stat.S_IMODE(os.stat(self.directory.child(DEAD_LETTER_NAME).path).st_mode)
        self.assertEqual(mode, 0o600)
        self.assertEqual(self.received(), [n for n in range(1, 21) if n != 5])
        self.assertEqual(service.status.cursor, journal_end(self.directory))
        self.assertEqual(self.saved_cursor(), journal_end(self.directory))
        self.assertEqual(service.status.dead_lettered, 1)
        self.assertEqual(service.status.sent, 19)
        self.assertEqual(service.status.failures, 0)
        self.assertEqual(self.collector.batches, 2)
        resent = gzip.decompress(self.collector.requests[1]["body"]).splitlines(True)
        self.assertEqual(resent, lines[:4] + lines[5:])

    def test_poisonEventsInSeveralBatches(self) -> None:
        """
        Refusals in several batches of a catch-up are all dead-lettered, in journal order.
        """
        self.collector.reject(lambda event: event["seq"] % 6 == 0)
        service = self.start(max_events=4)
        lines = journal_lines(self.directory)
        self.assertEqual(self.dead_letters(), [lines[5], lines[11], lines[17]])
        self.assertEqual(service.status.dead_lettered, 3)
        self.assertEqual(service.status.cursor, journal_end(self.directory))

    def test_everyLineRefused(self) -> None:
        """
        A batch whose every line is refused is dead-lettered whole and the cursor moves on:
        sync never stalls.
        """
        self.collector.reject(lambda event: True)
        service = self.start()
        self.assertEqual(len(self.dead_letters()), 20)
        self.assertEqual(service.status.cursor, journal_end(self.directory))
        self.assertEqual(self.collector.events, {})

    def test_appends(self) -> None:
        """
        Later dead letters are appended to the file.
        """
        self.collector.reject(lambda event: event["seq"] in (3, 22))
        service = self.start()
        append_events(self.directory, 5)
        self.clock.advance(service.settings.interval)
        lines = journal_lines(self.directory)
        self.assertEqual(self.dead_letters(), [lines[2], lines[21]])

    def test_status400NamingLines(self) -> None:
        """
        A 400 naming lines is handled as a 422: those lines are dead-lettered.
        """
        answer = json.dumps({"rejected": [{"line": 2, "reason": "bad"}]}).encode()
        collector = Answering((400, {}, answer))
        service = self.start(StubTreq(collector))
        lines = journal_lines(self.directory)
        self.assertEqual(self.dead_letters(), [lines[1]])
        self.assertEqual(collector.bodies[1], b"".join(lines[:1] + lines[2:]))
        self.assertEqual(service.status.cursor, journal_end(self.directory))

    def test_resendFails(self) -> None:
        """
        When the re-send after a refusal fails, the cursor stays: the whole batch is read
        and tried again later, and the good events then arrive.
        """
        armed = [True]

        def refuse(event: dict[str, Any]) -> bool:
            if event["seq"] == 5 and armed[0]:
                armed[0] = False
                self.collector.fail(503)  # for the re-send
            return bool(event["seq"] == 5)

        self.collector.reject(refuse)
        service = self.start()
        self.assertEqual(service.status.cursor, START)
        self.assertIsNone(self.saved_cursor())
        self.assertEqual(service.status.failures, 1)
        self.assertIn(journal_lines(self.directory)[4], self.dead_letters())
        self.clock.advance(1)
        self.assertEqual(service.status.cursor, journal_end(self.directory))
        self.assertEqual(self.received(), [n for n in range(1, 21) if n != 5])


class SurvivalTests(SyncTestCase):
    def test_everyKindOfBrokenClient(self) -> None:
        """
        A client that raises at once, returns a non-Deferred or garbage, or a response
        whose content fails, whose code is no number, or that has no headers: each is one
        failure; the loop goes on and delivers once the client works.
        """
        script: list[Callable[[], Any] | None] = [
            raising(RuntimeError("raised synchronously")),
            raising(KeyError("key")),
            lambda: 42,
            lambda: None,
            lambda: succeed(None),
            lambda: succeed(object()),
            lambda: succeed(FakeResponse(200, lambda: fail(ValueError("no content")))),
            lambda: succeed(FakeResponse(200, lambda: 17)),
            lambda: succeed(FakeResponse("200", lambda: succeed(b"{}"))),
            lambda: succeed(FakeResponse(503, lambda: succeed(b""), headers=object())),
        ]
        client = ScriptedClient(self.stub, *script)
        service = self.start(client, backoff_base=1.0, backoff_cap=2.0)
        for count in range(1, len(script) + 1):
            self.assertEqual(service.status.failures, count)
            self.assertEqual(service.status.cursor, START)
            self.clock.advance(2)
        self.assertEqual(service.status.failures, 0)
        self.assertEqual(self.received(), list(range(1, 21)))
        service.tick()
        append_events(self.directory, 2)
        service.tick()
        self.assertEqual(self.received(), list(range(1, 23)))

    def test_loopKeepsTicking(self) -> None:
        """
        After failures the looping call itself still runs at every interval.
        """
        client = ScriptedClient(self.stub, raising(RuntimeError("once")))
        service = self.start(client, interval=5.0, backoff_base=100.0)
        self.assertEqual(service.status.next_attempt, NOW + 100.0)
        self.clock.advance(100)
        self.assertEqual(self.received(), list(range(1, 21)))
        append_events(self.directory, 1)
        self.clock.advance(5)
        self.assertEqual(self.received(), list(range(1, 22)))

    def test_stalledBodyIsRetried(self) -> None:
        """
        A collector that sends its status line and headers, then never the body, is a
        timeout like any other: after the configured timeout the batch is retried. (treq's
        C{timeout} only covers the wait for the response headers, not C{content()}.)
        """
        stalled = FakeResponse(200, Deferred)
        client = ScriptedClient(self.stub, lambda: succeed(stalled))
        service = self.start(client, timeout=30.0)
        self.step(600, by=5.0)
        self.assertEqual(service.status.cursor, journal_end(self.directory))
        self.assertEqual(self.received(), list(range(1, 21)))

    def test_vanishedSegments(self) -> None:
        """
        If every segment vanishes under the cursor (removed by hand), sync reads nothing and
        does not fail; new events are synced from the segment the journal writes next.
        """
        service = self.start()
        for _, path in segments(self.directory):
            path.remove()
        self.clock.advance(service.settings.interval)
        self.assertEqual(service.status.failures, 0)
        append_events(self.directory, 2)
        self.clock.advance(service.settings.interval)
        self.assertEqual(service.status.failures, 0)


class LoggingTests(SyncTestCase):
    def failing_messages(self) -> list[str]:
        return [t for t in self.messages(LogLevel.warn) if t.startswith("sync failing")]

    def recovered_messages(self) -> list[str]:
        return [t for t in self.messages(LogLevel.info) if "recovered" in t]

    def test_onceForARun(self) -> None:
        """
        Several failures in a row for the same reason log one warning; the recovery logs
        one line, naming how many attempts failed; later successes log nothing.
        """
        self.collector.fail(503, times=4)
        self.start()
        self.step(100)
        self.assertEqual(
            self.failing_messages(),
            ["sync failing: the collector answered 503; retrying with backoff"],
        )
        self.assertEqual(self.recovered_messages(), ["sync recovered after 4 failed attempt(s)"])
        count = len(self.logged)
        append_events(self.directory, 1)
        self.clock.advance(10)
        self.assertEqual(len(self.logged), count)

    def test_reasonChanges(self) -> None:
        """
        A change of reason is a change of state: logged once more, then quiet again.
        """
        refused = failing(neterror.ConnectionRefusedError())
        client = ScriptedClient(self.stub, refused, refused, refused)
        self.collector.fail(503, times=2)
        client.script[:0] = [None, None]
        self.start(client)
        self.step(100)
        self.assertEqual(len(self.failing_messages()), 2)
        self.assertIn("503", self.failing_messages()[0])
        self.assertIn("ConnectionRefusedError", self.failing_messages()[1])
        self.assertEqual(len(self.recovered_messages()), 1)

    def test_nothingWhenHealthy(self) -> None:
        """
        Successful syncs log nothing.
        """
        self.start()
        self.clock.advance(60)
        self.assertEqual(self.logged, [])


class RetentionTests(SyncTestCase):
    EVENTS = 0

    def setUp(self) -> None:
        super().setUp()
        append_events(self.directory, 16, segment_bytes=1000)
        self.segments = dict(segments(self.directory))
        self.assertEqual(sorted(self.segments), [1, 2, 3, 4])
        self.sizes = {number: path.getsize() for number, path in self.segments.items()}

    def age(self, number: int, seconds: float) -> None:
        when = NOW - seconds
        os.utime(self.segments[number].path, (when, when))

    def left(self) -> list[int]:
        return [number for number, _ in segments(self.directory)]

    def test_syncedAndOldRemoved(self) -> None:
        """
        Segments the cursor has passed and older than the retention time are deleted, and
        C{on_removed} is told the bytes freed; a passed but newer segment, and the
        cursor's own, stay.
        """
        for number in [1, 2, 4]:
            self.age(number, 7200)
        self.age(3, 60)
        service = self.start(retention_seconds=3600)
        self.assertEqual(service.status.cursor.segment, 4)
        self.assertEqual(self.left(), [3, 4])
        self.assertEqual(sum(self.removed), self.sizes[1] + self.sizes[2])
        self.assertNotIn(0, self.removed)

    def test_newerKeptUntilOld(self) -> None:
        """
        A synced segment is deleted by a later pass once its retention time is over.
        """
        for number in [1, 2, 3, 4]:
            self.age(number, 60)
        service = self.start(retention_seconds=3600)
        self.assertEqual(self.left(), [1, 2, 3, 4])
        self.assertEqual(self.removed, [])
        self.clock.advance(3600)
        self.assertEqual(self.left(), [4])
        self.assertEqual(sum(self.removed), self.sizes[1] + self.sizes[2] + self.sizes[3])
        freed = self.successResultOf(service.retire())
        self.assertEqual(freed, 0)

    def test_unsyncedKept(self) -> None:
        """
        However old, segments the collector has not acknowledged stay.
        """
        for number in [1, 2, 3, 4]:
            self.age(number, 10 * 86400)
        self.collector.fail(503, times=100)
        service = self.start(retention_seconds=3600)
        self.clock.advance(100)
        self.assertEqual(self.successResultOf(service.retire()), 0)
        self.assertEqual(self.left(), [1, 2, 3, 4])
        self.assertEqual(self.removed, [])

    def test_partlySynced(self) -> None:
        """
        After a partial sync only the segments wholly before the cursor's segment go.
        """
        for number in [1, 2, 3, 4]:
            self.age(number, 10 * 86400)
        refused = failing(neterror.ConnectionRefusedError())
        client = ScriptedClient(self.stub, None, refused)
        service = self.start(client, max_events=6, retention_seconds=3600)
        self.assertEqual(service.status.cursor.segment, 2)
        self.assertEqual(self.successResultOf(service.retire()), 0)
        self.assertEqual(self.left(), [2, 3, 4])
        self.assertEqual(self.removed, [self.sizes[1]])


class StopTests(SyncTestCase):
    def test_finalAttempt(self) -> None:
        """
        Stopping makes one last attempt that sends what was written since the last tick,
        fires with C{None}, and leaves nothing scheduled.
        """
        service = self.start()
        append_events(self.directory, 5)
        stopped = service.stopService()
        self.assertIsNone(self.successResultOf(stopped))
        self.assertEqual(self.received(), list(range(1, 26)))
        self.assertEqual(self.saved_cursor(), journal_end(self.directory))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_finalAttemptFails(self) -> None:
        """
        A failing last attempt still ends the stop with C{None}; no retry is scheduled and
        the events stay in the journal behind the cursor.
        """
        service = self.start()
        append_events(self.directory, 5)
        self.collector.fail(503)
        stopped = service.stopService()
        self.assertIsNone(self.successResultOf(stopped))
        self.assertEqual(service.status.failures, 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.received(), list(range(1, 21)))

    def test_stopDuringBackoff(self) -> None:
        """
        Stopping while waiting out a backoff cancels the wait and tries once more now.
        """
        self.collector.fail(503)
        service = self.start(backoff_base=100.0)
        self.assertEqual(self.collector.batches, 1)
        stopped = service.stopService()
        self.assertIsNone(self.successResultOf(stopped))
        self.assertEqual(self.collector.batches, 2)
        self.assertEqual(self.received(), list(range(1, 21)))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_finalAttemptBounded(self) -> None:
        """
        A last attempt the collector does not answer is given up after
        C{final_sync_seconds}: the stop then fires with C{None} (not C{CancelledError}),
        and the cursor has not moved.
        """
        service = self.start(final_sync_seconds=5.0)
        before = service.status.cursor
        append_events(self.directory, 5)
        self.collector.delay(60)
        stopped = service.stopService()
        self.stub.flush()
        self.assertNoResult(stopped)
        self.clock.advance(4.9)
        self.stub.flush()
        self.assertNoResult(stopped)
        self.clock.advance(0.1)
        self.assertIsNone(self.successResultOf(stopped))
        self.assertEqual(service.status.cursor, before)
        self.assertEqual(self.saved_cursor(), before)
        self.assertEqual(self.clock.getDelayedCalls()[0].getTime(), NOW + 60)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)  # only the collector's answer

    def test_lateAnswerAfterStop(self) -> None:
        """
        When the final attempt runs out of time, its request is cancelled: a late answer
        cannot move the cursor after the stop (those events go again at the next start, as
        duplicates the collector drops), and nothing fails.
        """
        service = self.start(final_sync_seconds=5.0)
        before = service.status.cursor
        append_events(self.directory, 5)
        self.collector.delay(60)
        stopped = service.stopService()
        self.clock.advance(5)
        self.assertIsNone(self.successResultOf(stopped))
        self.clock.advance(55)
        self.stub.flush()
        self.assertEqual(service.status.cursor, before)
        self.assertEqual(self.saved_cursor(), before)

    def status(self) -> dict[str, Any]:
        path = self.directory.child(STATUS_NAME)
        self.assertEqual(stat.S_IMODE(os.stat(path.path).st_mode), 0o600)
        document: dict[str, Any] = json.loads(path.getContent())
        return document

    def test_afterSuccess(self) -> None:
        """
        After a success C{sync-status.json} (0600) holds the cursor, no failures, the time
        of the success and the count sent.
        """
        self.start()
        end = journal_end(self.directory)
        self.assertEqual(
            self.status(),
            {
                "cursor": {"segment": end.segment, "offset": end.offset, "sequence": 21},
                "failures": 0,
                "last_success": NOW,
                "last_error": None,
                "next_attempt": 0.0,
                "sent": 20,
                "dead_lettered": 0,
                "skipped_corrupt": 0,
            },
        )
        self.assertFalse(self.directory.child(STATUS_NAME + ".tmp").exists())

    def test_afterFailure(self) -> None:
        """
        After a failure it holds the failure count, the reason and the next attempt's time.
        """
        self.collector.fail(503)
        self.start(backoff_base=8.0)
        status = self.status()
        self.assertEqual(status["failures"], 1)
        self.assertEqual(status["last_error"], "the collector answered 503")
        self.assertEqual(status["next_attempt"], NOW + 8.0)
        self.assertEqual(status["cursor"], {"segment": 1, "offset": 0, "sequence": 1})
        self.assertIsNone(status["last_success"])

    def test_segmentFilesUntouched(self) -> None:
        """
        The cursor, status and dead-letter files in the journal directory are not taken
        for segments.
        """
        self.collector.reject(lambda event: event["seq"] == 1)
        self.start()
        self.assertEqual(
            [path.basename() for _, path in segments(self.directory)], ["00000001.jsonl"]
        )
        for line in journal_lines(self.directory):
            self.assertIsNotNone(decode_line(line))
