"""
Tests for L{linkrouter.journalservice}: the bounded click queue, its batching writer, group
fsync, dropped-event accounting, and draining on stop.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from linkrouter.codec import Kind, Part, TrackedLink
from linkrouter.event import Hit, IPStorage, decode_line
from linkrouter.journal import SegmentJournal, read_lines, segments
from linkrouter.journalservice import MAX_BATCH, JournalService, run_in_place

LINK = TrackedLink(Kind.CLICK, Part.TEXT, "https://dest.example/p", "kA", "linkA", 1_700_000_000)


def hit(number: int) -> Hit:
    """
    A distinct hit: its User-Agent names C{number}.
    """
    return Hit(1_700_000_000.0 + number, LINK, b"GET", "192.0.2.7", b"agent-%d" % number)


class RecordingJournal(SegmentJournal):
    """
    A real journal that also records, in order, every append, sync and close it is asked
    for, and can be told to fail its appends or syncs with an C{OSError}.
    """

    def __init__(self, directory: FilePath[str]) -> None:
        super().__init__(directory)
        self.calls: list[str] = []
        self.appended: list[bytes] = []
        self.append_errno: int | None = None
        self.sync_errno: int | None = None

    @property
    def syncs(self) -> int:
        return self.calls.count("sync")

    def append(self, data: bytes) -> None:
        self.calls.append("append")
        if self.append_errno is not None:
            raise OSError(self.append_errno, os.strerror(self.append_errno))
        super().append(data)
        self.appended.append(data)

    def sync(self) -> None:
        self.calls.append("sync")
        if self.sync_errno is not None:
            raise OSError(self.sync_errno, os.strerror(self.sync_errno))
        super().sync()

    def close(self) -> None:
        self.calls.append("close")
        super().close()


class ControlledRunner:
    """
    A C{run_blocking} whose calls wait until the test runs them, one at a time, in order:
    a slow disk or a busy worker thread.
    """

    def __init__(self) -> None:
        self.waiting: list[tuple[Callable[[], Any], Deferred[Any]]] = []

    def __call__(self, function: Callable[[], Any]) -> Deferred[Any]:
        result: Deferred[Any] = Deferred()
        self.waiting.append((function, result))
        return result

    def run_next(self) -> None:
        """
        Run the oldest waiting call and fire its L{Deferred} with the outcome.
        """
        function, result = self.waiting.pop(0)
        try:
            value = function()
        except Exception:
            result.errback(Failure())
        else:
            result.callback(value)

    def run_all(self) -> None:
        """
        Run waiting calls, and those they lead to, until none is left.
        """
        while self.waiting:
            self.run_next()


class ServiceTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        directory = FilePath(self.mktemp())
        directory.makedirs()
        os.chmod(directory.path, 0o700)
        self.directory = directory
        self.journal = RecordingJournal(directory)
        self.addCleanup(self.journal.close)

    def make_service(self, **kwargs: Any) -> JournalService:
        # task.Clock.callLater returns IDelayedCall, which mypy cannot match to the protocol
        return JournalService(self.journal, "router-1", self.clock, **kwargs)  # type: ignore[arg-type]

    def started(self, **kwargs: Any) -> JournalService:
        service = self.make_service(**kwargs)
        service.startService()
        return service

    def stop(self, service: JournalService) -> None:
        """
        Stop C{service} and check that the stop completed.
        """
        self.successResultOf(service.stopService())

    def events(self) -> list[dict[str, Any]]:
        """
        Every line of every segment, decoded (a line that does not decode fails the test).
        """
        found = []
        for _, path in segments(self.directory):
            content = path.getContent()
            self.assertTrue(content == b"" or content.endswith(b"\n"))
            for offset, line in read_lines(path):
                event = decode_line(line)
                self.assertIsNotNone(event, (path, offset, line))
                assert event is not None
                found.append(event)
        return found

    def agents(self) -> list[str]:
        return [event["ua"] for event in self.events()]


class RecordTests(ServiceTestCase):
    """
    L{JournalService.record} queues or drops, and never raises.
    """

    def test_beforeStart(self) -> None:
        """
        A hit recorded before the service starts is dropped and counted as C{stopped};
        nothing is written and the journal is not even opened.
        """
        service = self.make_service()
        service.record(hit(1))
        self.assertEqual(service.dropped["stopped"], 1)
        self.assertEqual(service.written, 0)
        self.assertEqual(self.directory.listdir(), [])

    def test_writtenAfterStart(self) -> None:
        """
        After start, recorded hits land in the journal as lines, numbered from the next
        sequence number of the journal.
        """
        service = self.started()
        for number in range(3):
            service.record(hit(number))
        self.assertEqual(self.agents(), ["agent-0", "agent-1", "agent-2"])
        self.assertEqual([event["seq"] for event in self.events()], [1, 2, 3])
        self.assertEqual(service.written, 3)
        self.assertEqual(service.depth, 0)
        self.assertEqual(sum(service.dropped.values()), 0)
        self.stop(service)

    def test_sequenceContinuesAfterRestart(self) -> None:
        """
        A service started on an existing journal continues its sequence numbers.
        """
        service = self.started()
        service.record(hit(1))
        service.record(hit(2))
        self.stop(service)
        self.journal = RecordingJournal(self.directory)
        service = self.started()
        service.record(hit(3))
        self.stop(service)
        self.assertEqual([event["seq"] for event in self.events()], [1, 2, 3])

    def test_oneBatchPerWakeUp(self) -> None:
        """
        Hits that arrive while a write is in flight are written together, with one append,
        when the writer wakes up again.
        """
        runner = ControlledRunner()
        service = self.started(run_blocking=runner, fsync_interval=None)
        service.record(hit(0))
        self.assertEqual(len(runner.waiting), 1)
        for number in range(1, 6):
            service.record(hit(number))
        self.assertEqual(service.depth, 5)
        self.assertEqual(len(runner.waiting), 1)
        runner.run_next()
        self.assertEqual(self.agents(), ["agent-0"])
        self.assertEqual(len(runner.waiting), 1)
        runner.run_next()
        self.assertEqual(self.journal.calls, ["append", "append"])
        self.assertEqual(self.journal.appended[1].count(b"\n"), 5)
        self.assertEqual(self.agents(), [f"agent-{n}" for n in range(6)])
        self.assertEqual(service.written, 6)
        self.assertEqual(service.depth, 0)
        self.assertEqual(runner.waiting, [])

    def test_batchIsBounded(self) -> None:
        """
        One write takes at most L{MAX_BATCH} events, so a backlog is encoded in bounded
        reactor turns; the rest follows in the next writes, in order.
        """
        runner = ControlledRunner()
        service = self.started(run_blocking=runner, fsync_interval=None, queue_size=3 * MAX_BATCH)
        service.record(hit(0))
        for number in range(1, 2 * MAX_BATCH + 2):
            service.record(hit(number))
        runner.run_all()
        self.assertEqual(
            [chunk.count(b"\n") for chunk in self.journal.appended],
            [1, MAX_BATCH, MAX_BATCH, 1],
        )
        self.assertEqual(
            [event["seq"] for event in self.events()], list(range(1, 2 * MAX_BATCH + 3))
        )

    def test_queueFull(self) -> None:
        """
        When the queue holds C{queue_size} hits, further hits are dropped and counted as
        C{queue-full} without raising; the queued ones are still written.
        """
        runner = ControlledRunner()
        service = self.started(run_blocking=runner, queue_size=3, fsync_interval=None)
        for number in range(9):
            service.record(hit(number))  # 0 is in flight, 1-3 queued
        self.assertEqual(service.dropped["queue-full"], 5)
        self.assertEqual(service.depth, 3)
        runner.run_all()
        self.assertEqual(self.agents(), [f"agent-{n}" for n in range(4)])
        self.assertEqual([event["seq"] for event in self.events()], [1, 2, 3, 4])
        service.record(hit(9))
        runner.run_all()
        self.assertEqual(self.agents()[-1], "agent-9")
        self.assertEqual(service.dropped["queue-full"], 5)

    def test_ipStorage(self) -> None:
        """
        The configured IP storage applies to the written events.
        """
        service = self.started(ip_storage=IPStorage.TRUNCATED)
        service.record(hit(1))
        self.assertEqual(self.events()[0]["ip"], "192.0.2.0")


class FsyncTests(ServiceTestCase):
    """
    Writes are made durable by a group fsync at the configured interval.
    """

    def test_interval(self) -> None:
        """
        With an interval of 0.2 s, nothing is synced until 0.2 s after the first write; then
        exactly one sync covers every write made meanwhile; the next write starts a new
        interval.
        """
        service = self.started(fsync_interval=0.2)
        service.record(hit(1))
        self.clock.advance(0.1)
        service.record(hit(2))
        self.clock.advance(0.09)
        self.assertEqual(self.journal.syncs, 0)
        self.clock.advance(0.01)
        self.assertEqual(self.journal.syncs, 1)
        self.assertEqual(self.journal.calls, ["append", "append", "sync"])
        self.clock.advance(10)
        self.assertEqual(self.journal.syncs, 1)
        service.record(hit(3))
        self.clock.advance(0.2)
        self.assertEqual(self.journal.syncs, 2)
        self.stop(service)

    def test_always(self) -> None:
        """
        With an interval of 0, every batch is synced right after it is written, and no
        timer is left behind.
        """
        service = self.started(fsync_interval=0)
        for number in range(3):
            service.record(hit(number))
        self.assertEqual(self.journal.calls, ["append", "sync"] * 3)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.stop(service)

    def test_never(self) -> None:
        """
        With no interval, nothing is synced while running; the stop syncs and closes.
        """
        service = self.started(fsync_interval=None)
        for number in range(3):
            service.record(hit(number))
        self.clock.advance(3600)
        self.assertEqual(self.journal.syncs, 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.stop(service)
        self.assertEqual(self.journal.calls, ["append"] * 3 + ["close"])

    def test_onFsyncDurations(self) -> None:
        """
        C{on_fsync} receives how long each group fsync took, by the service's clock.
        """
        durations: list[float] = []
        runner = ControlledRunner()
        service = self.started(run_blocking=runner, on_fsync=durations.append)
        service.record(hit(1))
        runner.run_next()
        self.clock.advance(0.2)
        self.assertEqual(len(runner.waiting), 1)  # the sync, in flight
        self.clock.advance(0.05)
        runner.run_next()
        self.assertEqual(self.journal.syncs, 1)
        self.assertEqual(len(durations), 1)
        self.assertAlmostEqual(durations[0], 0.05)

    def test_onFsyncAlways(self) -> None:
        """
        With an interval of 0, C{on_fsync} still receives the duration of every sync, one
        per batch (the fsync latency metric must not go silent in this mode).
        """
        durations: list[float] = []
        service = self.started(fsync_interval=0, on_fsync=durations.append)
        service.record(hit(1))
        service.record(hit(2))
        self.assertEqual(self.journal.syncs, 2)
        self.assertEqual(len(durations), 2)

    def test_syncFailureAlways(self) -> None:
        """
        With an interval of 0, a failing fsync after a successful append does not count
        the written events as dropped, and the next events do not reuse their sequence
        numbers.
        """
        runner = ControlledRunner()
        service = self.started(run_blocking=runner, fsync_interval=0)
        self.journal.sync_errno = errno.EIO
        service.record(hit(1))
        runner.run_all()
        self.journal.sync_errno = None
        service.record(hit(2))
        runner.run_all()
        self.assertEqual(self.agents(), ["agent-1", "agent-2"])
        seqs = [event["seq"] for event in self.events()]
        self.assertEqual(len(set(seqs)), len(seqs), seqs)
        self.assertEqual(service.written, 2)
        self.assertEqual(sum(service.dropped.values()), 0)

    def test_syncFailureInterval(self) -> None:
        """
        A failing group fsync is logged, not raised, and later syncs still happen.
        """
        runner = ControlledRunner()
        service = self.started(run_blocking=runner, fsync_interval=0.2)
        self.journal.sync_errno = errno.EIO
        service.record(hit(1))
        runner.run_all()
        self.clock.advance(0.2)
        runner.run_all()
        self.journal.sync_errno = None
        service.record(hit(2))
        runner.run_all()
        self.clock.advance(0.2)
        runner.run_all()
        self.assertEqual(self.journal.syncs, 2)
        self.assertEqual(self.agents(), ["agent-1", "agent-2"])


class WriteErrorTests(ServiceTestCase):
    """
    A failed write drops and counts its events; the service keeps going.
    """

    def test_runInPlaceFailure(self) -> None:
        """
        L{run_in_place}, the default C{run_blocking}, reports an exception of the function
        it runs as a failed L{Deferred}, as a thread pool does, rather than raising it.
        """

        def fail() -> None:
            raise OSError(errno.ENOSPC, "full")

        try:
            result = run_in_place(fail)
        except OSError:
            self.fail("run_in_place raised instead of returning a failed Deferred")
        self.assertEqual(self.failureResultOf(result, OSError).value.errno, errno.ENOSPC)
        self.assertEqual(self.successResultOf(run_in_place(lambda: 7)), 7)

    def test_diskFull(self) -> None:
        """
        Events of a batch whose write fails with C{ENOSPC} are counted as C{disk-full};
        later writes succeed and the journal holds only whole good lines.
        """
        service = self.started()
        self.journal.append_errno = errno.ENOSPC
        service.record(hit(1))
        service.record(hit(2))
        self.assertEqual(service.dropped["disk-full"], 2)
        self.assertEqual(service.written, 0)
        self.journal.append_errno = None
        service.record(hit(3))
        self.assertEqual(service.written, 1)
        self.assertEqual(self.agents(), ["agent-3"])
        self.assertEqual(sum(service.dropped.values()), 2)
        self.stop(service)

    def test_diskFullBatch(self) -> None:
        """
        A failed batch counts every event of it, and the writer wakes for the next batch.
        """
        runner = ControlledRunner()
        service = self.started(run_blocking=runner, fsync_interval=None)
        service.record(hit(0))
        for number in range(1, 4):
            service.record(hit(number))
        self.journal.append_errno = errno.ENOSPC
        runner.run_next()
        runner.run_next()
        self.assertEqual(service.dropped["disk-full"], 4)
        self.journal.append_errno = None
        service.record(hit(4))
        runner.run_all()
        self.assertEqual(self.agents(), ["agent-4"])

    def test_otherError(self) -> None:
        """
        Any other write error is counted as C{io-error}, and the service keeps going.
        """
        service = self.started()
        self.journal.append_errno = errno.EIO
        service.record(hit(1))
        self.assertEqual(dict(service.dropped), {"io-error": 1})
        self.journal.append_errno = None
        service.record(hit(2))
        self.assertEqual(self.agents(), ["agent-2"])

    def test_encodeError(self) -> None:
        """
        A batch that cannot be encoded (never expected) is dropped and counted as
        C{encode-error} without reaching the disk; the writer goes on with the next batch.
        """
        service = self.started()
        broken = hit(1)._replace(link=None)  # type: ignore[arg-type]
        service.record(broken)
        self.assertEqual(dict(service.dropped), {"encode-error": 1})
        self.assertEqual(self.journal.appended, [])
        service.record(hit(2))
        self.assertEqual(self.agents(), ["agent-2"])
        self.assertEqual([event["seq"] for event in self.events()], [1])
        self.stop(service)


class StopTests(ServiceTestCase):
    """
    Stopping drains the queue to disk, syncs and closes.
    """

    def test_drains(self) -> None:
        """
        L{JournalService.stopService} writes everything queued, then syncs and closes the
        journal, and only then fires; hits recorded after the stop are dropped as
        C{stopped}.
        """
        runner = ControlledRunner()
        service = self.started(run_blocking=runner)
        for number in range(4):
            service.record(hit(number))
        stopped = service.stopService()
        service.record(hit(99))
        self.assertEqual(service.dropped["stopped"], 1)
        self.assertNoResult(stopped)
        runner.run_all()
        self.successResultOf(stopped)
        self.assertEqual(self.agents(), [f"agent-{n}" for n in range(4)])
        self.assertEqual(self.journal.calls[-1], "close")
        self.assertNotIn("append", self.journal.calls[self.journal.calls.index("close") :])
        self.assertIsNone(self.journal._fd)
        service.record(hit(100))
        self.assertEqual(service.dropped["stopped"], 2)
        self.assertEqual(service.written, 4)

    def test_idle(self) -> None:
        """
        Stopping an idle service cancels the pending group fsync and closes (which syncs).
        """
        service = self.started()
        service.record(hit(1))
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.stop(service)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.journal.calls, ["append", "close"])
        self.clock.advance(1)
        self.assertEqual(self.journal.calls, ["append", "close"])

    def test_waitsForInFlightWrite(self) -> None:
        """
        With a slow C{run_blocking}, the stop waits for the write in flight before closing.
        """
        runner = ControlledRunner()
        service = self.started(run_blocking=runner)
        service.record(hit(1))
        stopped = service.stopService()
        self.assertEqual(self.journal.calls, [])
        self.assertEqual(len(runner.waiting), 1)
        runner.run_next()
        self.assertEqual(self.journal.calls, ["append"])
        self.assertNoResult(stopped)
        runner.run_next()
        self.assertEqual(self.journal.calls, ["append", "close"])
        self.successResultOf(stopped)
        self.assertEqual(self.agents(), ["agent-1"])

    def test_noTimerLeftAfterStop(self) -> None:
        """
        A write that completes during the stop leaves no group-fsync timer behind: after the
        stop, the clock holds no delayed calls and the journal is not touched again.
        """
        runner = ControlledRunner()
        service = self.started(run_blocking=runner)
        service.record(hit(1))
        service.record(hit(2))
        stopped = service.stopService()
        runner.run_all()
        self.successResultOf(stopped)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        calls = list(self.journal.calls)
        self.clock.advance(1)
        runner.run_all()
        self.assertEqual(self.journal.calls, calls)

    def test_writeFailsDuringStop(self) -> None:
        """
        If the drain's write fails, its events are counted as dropped and the stop still
        completes, closing the journal.
        """
        runner = ControlledRunner()
        service = self.started(run_blocking=runner)
        service.record(hit(1))
        service.record(hit(2))
        stopped = service.stopService()
        self.journal.append_errno = errno.ENOSPC
        runner.run_all()
        self.successResultOf(stopped)
        self.assertEqual(service.dropped["disk-full"], 2)
        self.assertEqual(self.journal.calls[-1], "close")


class BudgetTests(ServiceTestCase):
    """
    The journal's disk budget, and the group-commit write delay.
    """

    def test_overBudgetDrops(self) -> None:
        """
        Once the journal holds max_bytes, new events are dropped and counted as
        disk-budget; when sync frees segments (released), writing resumes.
        """
        service = self.started(max_bytes=600)
        for number in range(4):
            service.record(hit(number))
        written = service.written
        self.assertGreaterEqual(service.disk_bytes, 600)
        self.assertLess(written, 4)
        self.assertEqual(service.dropped["disk-budget"], 4 - written)
        service.released(service.disk_bytes)
        service.record(hit(9))
        self.assertEqual(service.written, written + 1)
        self.stop(service)

    def test_budgetCountsExistingSegments(self) -> None:
        """
        At start the budget counts what is already on disk.
        """
        first = self.started()
        for number in range(3):
            first.record(hit(number))
        self.stop(first)
        size = sum(path.getsize() for _, path in segments(self.directory))
        self.journal = RecordingJournal(self.directory)
        self.addCleanup(self.journal.close)
        second = self.started(max_bytes=size)
        self.assertEqual(second.disk_bytes, size)
        second.record(hit(4))
        self.assertEqual(dict(second.dropped), {"disk-budget": 1})
        self.stop(second)

    def test_writeDelayGathersABatch(self) -> None:
        """
        With a write delay, clicks arriving after a write wait for it and are written
        together in one append; stopping writes what waits at once.
        """
        service = self.started(write_delay=0.05)
        service.record(hit(0))  # the consumer waits only after its first delay
        self.clock.advance(0.05)
        service.record(hit(1))
        appends = len(self.journal.appended)
        service.record(hit(2))
        service.record(hit(3))
        self.assertEqual(len(self.journal.appended), appends)
        self.clock.advance(0.05)
        self.assertEqual(len(self.journal.appended), appends + 1)
        service.record(hit(4))
        self.stop(service)
        self.assertEqual(self.agents(), [f"agent-{n}" for n in range(5)])
