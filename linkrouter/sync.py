# -*- test-case-name: tests.test_sync -*-
"""
Sync: ship the journal to the collector, in order, at least once, without ever touching the
redirect path.

A L{LoopingCall} wakes the loop; each wake-up reads a batch from the cursor (off the reactor
thread), gzips it and C{POST}s it with treq. Only an acknowledgement moves the cursor. A
collector that is down, slow or refusing costs nothing but delay: the batch is retried with
exponential backoff and full jitter, honouring C{Retry-After}, forever. Lines the collector
names as unacceptable go to a dead-letter file so one poison event never stalls the rest.
The wire protocol is in C{docs/sync-protocol.rst}.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Callable
from functools import partial
from typing import Any, Protocol

from attrs import define
from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.filepath import FilePath

from .backoff import full_jitter, parse_retry_after
from .cursor import Cursor, load_cursor, save_cursor
from .durable import fsync_directory
from .journal import segments
from .journalservice import Clock, DelayedCall, RunBlocking
from .reader import Batch, read_batch

__all__ = [
    "DEAD_LETTER_NAME",
    "STATUS_NAME",
    "HTTPClient",
    "SyncService",
    "SyncSettings",
    "SyncStatus",
]

DEAD_LETTER_NAME = "dead-letter.jsonl"
STATUS_NAME = "sync-status.json"
_RETRYABLE_REFUSALS = {400, 422}


class HTTPClient(Protocol):
    """
    The part of treq's client used here (C{treq.client.HTTPClient}, or C{StubTreq}).
    """

    def post(self, url: str, data: Any = None, **kwargs: Any) -> Deferred[Any]: ...


@define
class SyncSettings:
    """
    How sync behaves; the defaults are those of C{docs/configuration.rst}.
    """

    url: str
    token: bytes
    router_id: str
    interval: float = 5.0
    max_events: int = 5000
    max_bytes: int = 4 * 1024 * 1024
    backoff_base: float = 1.0
    backoff_cap: float = 300.0
    timeout: float = 30.0
    retention_seconds: float = 86400.0
    final_sync_seconds: float = 5.0


@define
class SyncStatus:
    """
    What sync knows of itself, for metrics and C{linkrouter journal status}.
    """

    cursor: Cursor | None = None
    failures: int = 0
    last_success: float | None = None
    last_error: str | None = None
    next_attempt: float = 0.0
    sent: int = 0
    dead_lettered: int = 0
    skipped_corrupt: int = 0

    def as_json(self) -> bytes:
        cursor = self.cursor
        return json.dumps(
            {
                "cursor": None
                if cursor is None
                else {
                    "segment": cursor.segment,
                    "offset": cursor.offset,
                    "sequence": cursor.sequence,
                },
                "failures": self.failures,
                "last_success": self.last_success,
                "last_error": self.last_error,
                "next_attempt": self.next_attempt,
                "sent": self.sent,
                "dead_lettered": self.dead_lettered,
                "skipped_corrupt": self.skipped_corrupt,
            }
        ).encode()


class _Refused(Exception):
    """
    The collector did not acknowledge a batch; C{retry_after} if it said when to come back.
    """

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class SyncService(Service):
    """
    The sync loop for one journal directory.

    @param http: treq's C{HTTPClient} (or C{StubTreq}) for the collector.
    @param uniform: the random source for jitter.
    """

    log = Logger()

    def __init__(
        self,
        journal: FilePath[str],
        settings: SyncSettings,
        http: HTTPClient,
        clock: Clock,
        run_blocking: RunBlocking,
        uniform: Callable[[float, float], float],
        on_removed: Callable[[int], object] = lambda size: None,
    ) -> None:
        self.journal = journal
        self.settings = settings
        self._http = http
        self._clock = clock
        self._run = run_blocking
        self._uniform = uniform
        self._on_removed = on_removed
        self.status = SyncStatus()
        self._loop: LoopingCall | None = None
        self._running: Deferred[None] | None = None
        self._retry: DelayedCall | None = None
        self._dead: set[bytes] = set()

    # -- life cycle

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        cursor, problem = load_cursor(self.journal, self.journal)
        if problem:
            self.log.warn("{problem}", problem=problem)
        self.status.cursor = cursor
        self._loop = LoopingCall(self.tick)
        self._loop.clock = self._clock  # type: ignore[assignment]
        self._loop.start(self.settings.interval, now=True)

    def stopService(self) -> Deferred[None]:
        """
        Stop the loop; after any sync in flight, make one last attempt, bounded in time.
        """
        super().stopService()  # type: ignore[no-untyped-call]
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        in_flight = self._running if self._running is not None else succeed(None)
        final: Deferred[None] = Deferred()

        def settle(_: object) -> None:
            if not final.called:
                final.callback(None)

        def attempt(_: object) -> None:
            if final.called:
                return  # out of time already: no attempt after the stop
            self.status.next_attempt = 0.0
            self._sync().addBoth(settle)

        def give_up() -> None:
            if self._running is not None:
                self._running.cancel()
            settle(None)

        in_flight.addBoth(attempt)
        timer = self._clock.callLater(self.settings.final_sync_seconds, give_up)

        def done(result: object) -> None:
            if timer.active():
                timer.cancel()

        return final.addBoth(done)

    # -- the loop

    def tick(self) -> None:
        """
        Start a sync unless one is running or backoff says to wait. Never raises, so the
        looping call never dies.
        """
        if self._running is not None or self._clock.seconds() < self.status.next_attempt:
            return
        self._sync().addCallback(lambda _: self.retire()).addErrback(
            lambda failure: self.log.warn(
                "journal retention failed: {error}", error=failure.getErrorMessage()
            )
        )

    def _sync(self) -> Deferred[None]:
        if self._running is not None:
            return self._running
        running = Deferred.fromCoroutine(self._catch_up())

        def finished(result: object) -> None:
            if self._running is running:
                self._running = None

        running.addBoth(finished)
        if not running.called:
            self._running = running
        return running

    async def _catch_up(self) -> None:
        """
        Send batches until the journal is caught up or the collector refuses one.
        """
        try:
            while True:
                cursor = self.status.cursor
                assert cursor is not None
                batch, body = await self._run(partial(self._read, cursor))
                if not batch.lines:
                    if batch.end != cursor:
                        await self._advance(batch)
                    return
                await self._send(batch, body)
                await self._advance(batch)
                self._succeeded()
                if not batch.full:
                    return
        except _Refused as refusal:
            self._failed(str(refusal), refusal.retry_after)
        except Exception as error:  # a network, TLS or timeout error, or any other
            self._failed(f"{type(error).__name__}: {error}", None)

    def _read(self, cursor: Cursor) -> tuple[Batch, bytes]:
        batch = read_batch(self.journal, cursor, self.settings.max_events, self.settings.max_bytes)
        return batch, gzip.compress(b"".join(batch.lines), compresslevel=1)

    async def _send(self, batch: Batch, body: bytes) -> None:
        lines = list(batch.lines)
        while lines:
            exchange = Deferred.fromCoroutine(self._post(body))
            # treq's own timeout covers only the headers, on the global reactor: bound the
            # whole exchange, body included, on our clock.
            code, content, retry_after = await exchange.addTimeout(
                self.settings.timeout,
                self._clock,  # type: ignore[arg-type]
            )
            if 200 <= code < 300:
                self.status.sent += len(lines)
                return
            if code in _RETRYABLE_REFUSALS:
                rejected = self._rejected_lines(content, len(lines))
                if rejected:
                    await self._run(
                        partial(self._dead_letter, [lines[i] for i in sorted(rejected)])
                    )
                    lines = [line for i, line in enumerate(lines) if i not in rejected]
                    body = await self._run(partial(gzip.compress, b"".join(lines), 1))
                    continue
            raise _Refused(f"the collector answered {code}", retry_after)

    async def _post(self, body: bytes) -> tuple[int, bytes, float | None]:
        response = await self._http.post(
            self.settings.url,
            data=body,
            headers={
                b"Content-Type": [b"application/x-ndjson"],
                b"Content-Encoding": [b"gzip"],
                b"Authorization": [b"Bearer " + self.settings.token],
                b"X-Linkrouter-Router": [self.settings.router_id.encode()],
            },
            allow_redirects=False,  # a redirect is no acknowledgement
        )
        content = await response.content()
        retry_after = parse_retry_after(
            (response.headers.getRawHeaders(b"retry-after") or [None])[0],
            self._clock.seconds(),
        )
        return response.code, content, retry_after

    @staticmethod
    def _rejected_lines(content: bytes, count: int) -> set[int]:
        """
        The 0-based indexes of the lines a 400/422 answer names (it counts from 1).
        """
        try:
            rejected = json.loads(content)["rejected"]
            numbers = {int(item["line"]) - 1 for item in rejected}
        except (ValueError, KeyError, TypeError):
            return set()
        return {n for n in numbers if 0 <= n < count}

    def _dead_letter(self, lines: list[bytes]) -> None:
        """
        Append refused lines to the dead-letter file, each once even if a batch is re-sent.
        """
        fresh = [line for line in lines if line not in self._dead]
        if not fresh:
            return
        self._dead.update(fresh)
        self.status.dead_lettered += len(fresh)
        path = self.journal.child(DEAD_LETTER_NAME)
        fd = os.open(path.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, b"".join(fresh))
            os.fsync(fd)
        finally:
            os.close(fd)

    async def _advance(self, batch: Batch) -> None:
        """
        Durably move the cursor past C{batch}; then old, synced segments may go.
        """
        await self._run(lambda: save_cursor(self.journal, batch.end))
        self.status.cursor = batch.end
        if batch.corrupt:
            self.status.skipped_corrupt += len(batch.corrupt)
            self.log.warn(
                "sync skipped {count} corrupt journal line(s), first at {where}",
                count=len(batch.corrupt),
                where=batch.corrupt[0],
            )
        if batch.end.segment != batch.start.segment:
            removed = await self._run(partial(self._retire, batch.end.segment))
            if removed:
                self._on_removed(removed)

    def _retire(self, current: int) -> int:
        """
        Delete segments the cursor has passed once their retention time is over; the bytes
        freed.
        """
        deadline = self._clock.seconds() - self.settings.retention_seconds
        removed = 0
        for number, path in segments(self.journal):
            if number >= current:
                break
            if path.getModificationTime() <= deadline:
                size = path.getsize()
                path.remove()
                removed += size
        if removed:
            fsync_directory(self.journal)
        return removed

    def retire(self) -> Deferred[int]:
        """
        Apply retention now (sync also does it whenever the cursor enters a new segment).
        """
        cursor = self.status.cursor
        if cursor is None:
            return succeed(0)

        def freed(size: int) -> int:
            if size:
                self._on_removed(size)
            return size

        return self._run(partial(self._retire, cursor.segment)).addCallback(freed)

    # -- state

    def _succeeded(self) -> None:
        if self.status.failures:
            self.log.info(
                "sync recovered after {failures} failed attempt(s)",
                failures=self.status.failures,
            )
        self.status.failures = 0
        self.status.last_error = None
        self.status.next_attempt = 0.0
        self.status.last_success = self._clock.seconds()
        self._write_status()

    def _failed(self, reason: str, retry_after: float | None) -> None:
        status = self.status
        status.failures += 1
        delay = full_jitter(
            status.failures, self.settings.backoff_base, self.settings.backoff_cap, self._uniform
        )
        if retry_after is not None:
            delay = max(delay, retry_after)
        if status.failures == 1 or reason != status.last_error:
            self.log.warn("sync failing: {reason}; retrying with backoff", reason=reason)
        status.last_error = reason
        status.next_attempt = self._clock.seconds() + delay
        self._write_status()
        if self.running:
            if self._retry is not None and self._retry.active():
                self._retry.cancel()
            self._retry = self._clock.callLater(delay, self.tick)

    def _write_status(self) -> None:
        data = self.status.as_json()

        def write() -> None:
            path = self.journal.child(STATUS_NAME)
            temporary = self.journal.child(STATUS_NAME + ".tmp")
            fd = os.open(temporary.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
            os.replace(temporary.path, path.path)

        self._run(write).addErrback(
            lambda failure: self.log.warn(
                "cannot write sync status: {error}", error=failure.getErrorMessage()
            )
        )
