# -*- test-case-name: tests.test_journalservice -*-
"""
The click queue and its writer: the only link between the redirect path and the disk.

The request path calls L{JournalService.record} after its response is written; that only puts
a L{Hit} on a bounded L{DeferredQueue}. One consumer takes everything waiting (up to
L{MAX_BATCH}), encodes it and appends it with one write, and makes it durable with a group
C{fsync} at the configured interval. Disk work runs on one worker thread, so a slow or full
disk never stalls the reactor: when the queue is full, or a write fails, the events are
dropped and counted, and the redirects go on.

Encoding runs in the reactor thread, between requests, not on the worker: it is pure Python
and holds the GIL wherever it runs, and on the worker every batch made the reactor wait for
the GIL to come back (measured: 0.64 of a bare site's keep-alive rate with encoding on the
worker, 0.98 with it here; C{docs/performance.rst}). L{MAX_BATCH} bounds the pause one batch
can cause.
"""

from __future__ import annotations

import errno
from collections import Counter
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol, TypeVar

from twisted.application.service import Service
from twisted.internet.defer import (
    Deferred,
    DeferredQueue,
    QueueOverflow,
    maybeDeferred,
    succeed,
)
from twisted.logger import Logger

from .event import Hit, IPStorage, encode_hits
from .journal import SegmentJournal, segments

__all__ = ["MAX_BATCH", "Clock", "JournalService", "RunBlocking"]

T = TypeVar("T")
RunBlocking = Callable[[Callable[[], Any]], "Deferred[Any]"]
"""Runs a blocking call off the reactor thread (tests run it in place)."""


class DelayedCall(Protocol):
    def active(self) -> bool: ...
    def cancel(self) -> None: ...


class Clock(Protocol):
    """
    The part of C{IReactorTime} used here (as a typing protocol: zope interfaces do not
    type-check their methods).
    """

    def seconds(self) -> float: ...
    def callLater(self, delay: float, f: Callable[[], object]) -> DelayedCall: ...


_LOG_EVERY = 60.0

MAX_BATCH = 1024
"""Events encoded in one reactor turn: about 6 ms of CPU, the longest pause a backlog causes."""


class _Written(NamedTuple):
    next_sequence: int
    size: int
    fsync_seconds: float | None
    sync_error: OSError | None  # seconds between two log lines about dropped events


def run_in_place(function: Callable[[], T]) -> Deferred[T]:
    """
    Run C{function} now, in this thread, reporting an exception as a failed L{Deferred} as
    a thread pool would: for tests.
    """
    return maybeDeferred(function)


class JournalService(Service):
    """
    Owns the queue, the writer loop and the group-fsync timer for one journal.

    @param fsync_interval: seconds between group fsyncs; C{0} syncs after every batch and
        C{None} never syncs until shutdown.
    """

    log = Logger()

    def __init__(
        self,
        journal: SegmentJournal,
        router_id: str,
        clock: Clock,
        run_blocking: RunBlocking = run_in_place,
        *,
        fsync_interval: float | None = 0.2,
        queue_size: int = 10_000,
        ip_storage: IPStorage = IPStorage.FULL,
        on_fsync: Callable[[float], object] = lambda seconds: None,
        max_bytes: int | None = None,
        write_delay: float = 0.0,
    ) -> None:
        self.journal = journal
        self.router_id = router_id
        self._clock = clock
        self._run = run_blocking
        self._fsync_interval = fsync_interval
        self._ip_storage = ip_storage
        self._queue: DeferredQueue[Hit] = DeferredQueue(size=queue_size)
        self._next_sequence = 0
        self._accepting = False
        self._sync_call: DelayedCall | None = None
        self._idle: Deferred[None] | None = None
        self._busy = False
        self._last_drop_log = float("-inf")
        self.written = 0
        self.dropped: Counter[str] = Counter()
        self._on_fsync = on_fsync
        self._max_bytes = max_bytes
        self._write_delay = write_delay
        self._delayed_get: DelayedCall | None = None
        self.disk_bytes = 0
        """Bytes of segments on disk: what the journal's disk budget counts."""

    @property
    def next_sequence(self) -> int:
        """
        The sequence number the next written event gets.
        """
        return self._next_sequence

    @property
    def depth(self) -> int:
        """
        Events waiting to be written.
        """
        return len(self._queue.pending)

    def record(self, hit: Hit) -> None:
        """
        Queue C{hit} for the journal, or drop and count it; never raises, never waits.
        """
        if not self._accepting:
            self._drop("stopped", 1)
            return
        if self._max_bytes is not None and self.disk_bytes >= self._max_bytes:
            self._drop("disk-budget", 1)  # the collector has been away too long
            return
        try:
            self._queue.put(hit)
        except QueueOverflow:
            self._drop("queue-full", 1)

    def startService(self) -> None:
        """
        Recover the journal (a failure here stops start-up) and start writing.
        """
        self._next_sequence = self.journal.open()
        self.disk_bytes = sum(path.getsize() for _, path in segments(self.journal.directory))
        super().startService()  # type: ignore[no-untyped-call]
        self._accepting = True
        self._next()

    def _next(self) -> None:
        if not self._accepting and not self._queue.pending:
            return
        if self._write_delay and self._accepting:
            # Group commit: let clicks gather before the next write, so a busy router makes
            # a few large writes a second rather than a thread round trip per click.
            self._delayed_get = self._clock.callLater(self._write_delay, self._get)
        else:
            self._get()

    def _get(self) -> None:
        self._delayed_get = None
        self._queue.get().addCallback(self._write)

    def _write(self, first: Hit) -> Deferred[None]:
        pending = self._queue.pending
        batch = [first, *pending[: MAX_BATCH - 1]]
        del pending[: MAX_BATCH - 1]
        self._busy = True
        always = self._fsync_interval == 0
        try:
            data, next_sequence = encode_hits(
                batch, self.router_id, self._next_sequence, self._ip_storage
            )
        except Exception as error:  # never expected: dropped and counted, not fatal
            self._drop("encode-error", len(batch), str(error))
            return succeed(None).addBoth(self._done)

        def write() -> _Written:
            self.journal.append(data)  # a failure here drops the batch: nothing was kept
            if not always:
                return _Written(next_sequence, len(data), None, None)
            started = self._clock.seconds()
            try:
                self.journal.sync()
            except OSError as error:  # the lines are written; only their durability is late
                return _Written(next_sequence, len(data), None, error)
            return _Written(next_sequence, len(data), self._clock.seconds() - started, None)

        def written(result: _Written) -> None:
            self._next_sequence = result.next_sequence
            self.written += len(batch)
            self.disk_bytes += result.size
            if result.sync_error is not None:
                self.log.error("journal fsync failed: {error}", error=result.sync_error)
            elif result.fsync_seconds is not None:
                self._on_fsync(result.fsync_seconds)
            if not always and self._accepting:
                self._schedule_sync()

        def failed(failure: Any) -> None:
            error = failure.value
            reason = "disk-full" if getattr(error, "errno", None) == errno.ENOSPC else "io-error"
            self._drop(reason, len(batch), failure.getErrorMessage())

        return self._run(write).addCallbacks(written, failed).addBoth(self._done)

    def _done(self, _: object) -> None:
        self._busy = False
        if self._idle is not None and not self._queue.pending:
            idle, self._idle = self._idle, None
            idle.callback(None)
        else:
            self._next()

    def released(self, size: int) -> None:
        """
        Segments of C{size} bytes were deleted (synced and past retention).
        """
        self.disk_bytes = max(0, self.disk_bytes - size)

    def _schedule_sync(self) -> None:
        if self._fsync_interval is None or self._sync_call is not None:
            return
        self._sync_call = self._clock.callLater(self._fsync_interval, self._sync)

    def _sync(self) -> Deferred[None]:
        self._sync_call = None
        started = self._clock.seconds()

        def synced(_: object) -> None:
            self._on_fsync(self._clock.seconds() - started)

        def failed(failure: Any) -> None:
            self.log.error("journal fsync failed: {error}", error=failure.getErrorMessage())

        return self._run(self.journal.sync).addCallbacks(synced, failed)

    def _drop(self, reason: str, count: int, detail: str = "") -> None:
        self.dropped[reason] += count
        now = self._clock.seconds()
        if now - self._last_drop_log >= _LOG_EVERY:
            self._last_drop_log = now
            self.log.warn(
                "journal dropped events ({reason}{detail}); {total} dropped so far",
                reason=reason,
                detail=f": {detail}" if detail else "",
                total=sum(self.dropped.values()),
            )

    def stopService(self) -> Deferred[None]:
        """
        Stop taking events, write everything queued, fsync and close the journal.
        """
        super().stopService()  # type: ignore[no-untyped-call]
        self._accepting = False
        if self._sync_call is not None and self._sync_call.active():
            self._sync_call.cancel()
        self._sync_call = None
        if self._delayed_get is not None and self._delayed_get.active():
            self._delayed_get.cancel()
        self._delayed_get = None
        if self._busy or self._queue.pending:
            self._idle = Deferred()
            drained: Deferred[None] = self._idle
        else:
            drained = succeed(None)
        # the consumer waiting on an empty queue must not hold the queue open
        for waiting in list(self._queue.waiting):
            self._queue.waiting.remove(waiting)
        if self._queue.pending and not self._busy:
            self._queue.get().addCallback(self._write)
        return drained.addCallback(lambda _: self._run(self.journal.close)).addCallback(
            lambda _: None
        )
