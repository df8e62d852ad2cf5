"""
Tests for L{linkrouter.worker.SerialWorker}: calls run one at a time, in order, on its own
thread, and their outcomes come back through the reactor's C{callFromThread}.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from linkrouter.worker import SerialWorker


class FromThreads:
    """
    The C{callFromThread} of a reactor: calls are kept, to be run by the test's thread.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
        self._lock = threading.Lock()

    def callFromThread(self, function: Callable[..., Any], *args: Any) -> None:
        with self._lock:
            self.calls.append((function, args))

    def run(self) -> None:
        with self._lock:
            calls, self.calls = self.calls, []
        for function, args in calls:
            function(*args)


class SerialWorkerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = FromThreads()
        self.worker = SerialWorker(self.reactor, "test-worker")

    def test_inOrderOnItsOwnThread(self) -> None:
        """
        Calls given before and after C{start} run in the order given, on a thread named as
        asked that is not the caller's; each result fires its L{Deferred} only when the
        reactor runs what the worker handed back.
        """
        seen: list[tuple[int, str]] = []

        def call(number: int) -> Callable[[], int]:
            def run() -> int:
                seen.append((number, threading.current_thread().name))
                return number * 10

            return run

        results: list[int] = []
        self.worker(call(1)).addCallback(results.append)
        self.worker.start()
        for number in range(2, 6):
            self.worker(call(number)).addCallback(results.append)
        self.worker.stop()  # finishes everything given first
        self.assertEqual(seen, [(n, "test-worker") for n in range(1, 6)])
        self.assertEqual(results, [])
        self.reactor.run()
        self.assertEqual(results, [10, 20, 30, 40, 50])

    def test_exceptionIsAFailure(self) -> None:
        """
        An exception raised by a call fails its L{Deferred} with that exception; the worker
        goes on with the next call.
        """

        def broken() -> None:
            raise OSError(28, "No space left on device")

        self.worker.start()
        failed = self.worker(broken)
        after = self.worker(lambda: "next")
        self.worker.stop()
        self.reactor.run()
        self.assertEqual(self.failureResultOf(failed, OSError).value.errno, 28)
        self.assertEqual(self.successResultOf(after), "next")

    def test_stopTwice(self) -> None:
        """
        Stopping a stopped (or never started) worker does nothing.
        """
        self.worker.stop()
        self.worker.start()
        self.worker.stop()
        self.worker.stop()
        self.assertEqual([t.name for t in threading.enumerate() if t.name == "test-worker"], [])
