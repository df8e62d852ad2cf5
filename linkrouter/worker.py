# -*- test-case-name: tests.test_worker -*-
"""
One thread that runs blocking calls in order, handed to it from the reactor thread.

The journal's disk work needs exactly one thread, and under load the hand-over happens many
times a second while the reactor is busy answering clicks. Twisted's C{ThreadPool} is built
for pools: each hand-over goes through its team coordinator and a Python-level
C{queue.Queue} whose C{Condition} makes the reactor thread wait for the worker's locks (a
profile of the router under load put two microseconds a click there). Here the hand-over is
one C{SimpleQueue.put} (implemented in C) and the answer comes back with
C{callFromThread}, the reactor's own thread-safe entry point.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from queue import SimpleQueue
from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

__all__ = ["SerialWorker"]

T = TypeVar("T")
_STOP = None


class SerialWorker:
    """
    Runs each call given to it on its own thread, one at a time, in the order given.

    @param reactor: an C{IReactorFromThreads}; the L{Deferred} of each call fires in the
        reactor thread.
    @param name: the thread's name, as seen in profiles and C{/proc}.
    """

    def __init__(self, reactor: Any, name: str) -> None:
        self._reactor = reactor
        self._name = name
        self._calls: SimpleQueue[tuple[Callable[[], Any], Deferred[Any]] | None] = SimpleQueue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """
        Start the thread; calls made before this wait for it.
        """
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """
        Finish every call already given, then end the thread (waiting for it).
        """
        thread, self._thread = self._thread, None
        if thread is not None:
            self._calls.put(_STOP)
            thread.join()

    def __call__(self, function: Callable[[], T]) -> Deferred[T]:
        """
        Run C{function} on the worker thread; its result or exception fires the returned
        L{Deferred} in the reactor thread.
        """
        done: Deferred[T] = Deferred()
        self._calls.put((function, done))
        return done

    def _run(self) -> None:
        while True:
            call = self._calls.get()
            if call is _STOP:
                return
            function, done = call
            try:
                result = function()
            except BaseException:
                self._reactor.callFromThread(done.errback, Failure())
            else:
                self._reactor.callFromThread(done.callback, result)
