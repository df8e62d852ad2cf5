# -*- test-case-name: tests.test_store_contract -*-
"""
The embedded store: one SQLite file in write-ahead-log mode.

One thread owns the only writing connection, so batches never wait on each other's locks;
another thread reads, and in WAL mode readers see a consistent snapshot while the writer
commits. With C{synchronous=FULL} a commit is on disk (the WAL fsynced) before C{ingest}'s
Deferred fires: the collector acknowledges only what a crash cannot take back. Batches
that arrive while the writer is busy are stored together when it is free, in one
transaction with one commit (group commit), each still answered only after that commit.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer  # type: ignore[import-untyped]

from .migrations import SQLITE, Dialect
from .model import Enrichment, Event, IngestResult, LinkRecord
from .sqlcommon import (
    EVENT_COLUMNS,
    event_row,
    migrate,
    record_accepted,
    register,
    stats,
)
from .store import IEventStore, Stats, StatsQuery, StoreError

__all__ = ["SQLiteStore", "ingest_batch"]

_T = TypeVar("_T")

_INSERT = (
    f"INSERT INTO events ({', '.join(EVENT_COLUMNS)})"
    f" VALUES ({', '.join('?' * len(EVENT_COLUMNS))}) ON CONFLICT (event_id) DO NOTHING"
)


_NEW = "SELECT event_id FROM events WHERE rowid > ?"


class _Connection:
    """
    A L{sqlcommon.Database} over one C{sqlite3} connection in autocommit mode, so that
    transactions are begun explicitly (C{BEGIN IMMEDIATE} takes the write lock up front).
    """

    dialect: Dialect = SQLITE

    def __init__(self, path: str, *, read_only: bool) -> None:
        # Used only from the one thread of its pool, though not the thread that made it.
        self.connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.connection.execute("PRAGMA busy_timeout = 10000")
        # 64 MiB of pages a connection (the default is 2 MiB): the LinkID index takes inserts
        # all over, and at a million events its pages no longer fit the default cache.
        self.connection.execute("PRAGMA cache_size = -65536")
        if read_only:
            self.connection.execute("PRAGMA query_only = 1")
        else:
            mode = self.connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise StoreError(f"SQLite database {path}: cannot use write-ahead logging")
            self.connection.execute("PRAGMA synchronous = FULL")
            # Checkpoint every 64 MiB of log rather than every 4 MiB: a batch dirties
            # thousands of index pages, and a page dirtied by several batches between two
            # checkpoints is copied into the database once. Durability is the log's fsync at
            # each commit, which this does not change.
            self.connection.execute("PRAGMA wal_autocheckpoint = 16384")

    def query(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.connection.execute(sql, parameters).fetchall()

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> None:
        self.connection.execute(sql, parameters)

    def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self.connection.executemany(sql, rows)

    def transaction(self, work: Callable[[], _T], begin: str = "BEGIN") -> _T:
        self.connection.execute(begin)
        try:
            result = work()
        except BaseException:
            self.connection.execute("ROLLBACK")
            raise
        self.connection.execute("COMMIT")
        return result

    def close(self) -> None:
        self.connection.close()


def _prepare(path: FilePath[str]) -> None:
    """
    Make the database's directory (0700) and file (0600), refusing a directory others can
    enter: the database holds every click's raw facts.
    """
    directory = path.parent()
    if not directory.exists():
        os.makedirs(directory.path, mode=0o700, exist_ok=True)
    mode = stat.S_IMODE(os.stat(directory.path).st_mode)
    if mode & 0o077:
        raise StoreError(
            f"database directory {directory.path} has mode {mode:04o}: group or others may "
            f"read clicks; run 'chmod 700 {directory.path}' or choose another directory"
        )
    fd = os.open(path.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def _candidates(rows: Sequence[tuple[Event, Enrichment]]) -> list[tuple[Any, ...]]:
    """
    The C{events} rows of C{rows}, each event id once.
    """
    seen: set[str] = set()
    candidates = []
    for event, enrichment in rows:
        if event.event_id not in seen:
            seen.add(event.event_id)
            candidates.append(event_row(event, enrichment))
    return candidates


def _insert_new(db: _Connection, candidates: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """
    Insert C{candidates}; those that were new.
    """
    # The one writer appends rows with growing rowids: those past the old end are new.
    [(end,)] = db.query("SELECT coalesce(max(rowid), 0) FROM events")
    db.execute_many(_INSERT, candidates)
    new = {event_id for (event_id,) in db.query(_NEW, (end,))}
    return [row for row in candidates if row[0] in new]


def ingest_batch(db: _Connection, rows: Sequence[tuple[Event, Enrichment]]) -> IngestResult:
    """
    Store the new events of C{rows} and count them into the rollups, in one transaction.
    """
    [result] = ingest_batches(db, [rows])
    if isinstance(result, Failure):
        result.raiseException()
    assert isinstance(result, IngestResult)
    return result


def ingest_batches(
    db: _Connection, batches: Sequence[Sequence[tuple[Event, Enrichment]]]
) -> list[IngestResult | Failure]:
    """
    Store the new events of each of C{batches}, in order, and count them into the rollups,
    all in one transaction (one commit, one fsync of the log); each batch's result, or its
    failure.

    A batch is inserted inside a savepoint of its own, so one that fails leaves the others
    in; the rollups count the new events of all at once. If the transaction itself fails
    (the rollups, the commit), each batch is tried again in a transaction of its own, so
    that one batch's failure there is not every batch's; none is acknowledged before its
    commit is on disk.
    """
    together = _ingest_together(db, batches)
    if not isinstance(together, Failure):
        return together
    if len(batches) == 1:
        return [together]
    results: list[IngestResult | Failure] = []
    for rows in batches:
        alone = _ingest_together(db, [rows])
        results.extend([alone] if isinstance(alone, Failure) else alone)
    return results


def _ingest_together(
    db: _Connection, batches: Sequence[Sequence[tuple[Event, Enrichment]]]
) -> list[IngestResult | Failure] | Failure:
    """
    L{ingest_batches} in one transaction; or, if the transaction failed (nothing of it was
    kept), why.
    """
    results: list[IngestResult | Failure] = []

    def insert() -> None:
        fresh: list[tuple[Any, ...]] = []
        for rows in batches:
            db.execute("SAVEPOINT batch")
            try:
                new = _insert_new(db, _candidates(rows))
            except Exception:
                db.execute("ROLLBACK TO batch")
                db.execute("RELEASE batch")
                results.append(Failure())
                continue
            db.execute("RELEASE batch")
            fresh.extend(new)
            results.append(IngestResult(accepted=len(new), duplicates=len(rows) - len(new)))
        record_accepted(db, fresh)

    try:
        db.transaction(insert, "BEGIN IMMEDIATE")
    except Exception:
        return Failure()
    return results


@implementer(IEventStore)
class SQLiteStore:
    """
    Events in the SQLite database at C{path}, worked on by two threads of its own.

    @param reactor: the reactor the Deferreds fire in.
    """

    def __init__(self, path: FilePath[str], reactor: IReactorFromThreads) -> None:
        self.path = path
        self.description = f"SQLite {path.path}"
        self._reactor = reactor
        self._writer_pool = ThreadPool(minthreads=1, maxthreads=1, name="collector-sqlite-write")
        self._reader_pool = ThreadPool(minthreads=1, maxthreads=1, name="collector-sqlite-read")
        self._writer: _Connection | None = None
        self._reader: _Connection | None = None
        # Batches for the writer, appended by the reactor and taken by the writer thread
        # (a deque's append and popleft are atomic).
        self._waiting: deque[tuple[Sequence[tuple[Event, Enrichment]], Deferred[IngestResult]]]
        self._waiting = deque()

    def _write(self, work: Callable[[_Connection], _T]) -> Deferred[_T]:
        def run() -> _T:
            assert self._writer is not None, "the store is not open"
            return work(self._writer)

        return deferToThreadPool(self._reactor, self._writer_pool, run)

    def _read(self, work: Callable[[_Connection], _T]) -> Deferred[_T]:
        def run() -> _T:
            assert self._reader is not None, "the store is not open"
            return work(self._reader)

        return deferToThreadPool(self._reactor, self._reader_pool, run)

    def open(self) -> Deferred[None]:
        self._writer_pool.start()
        self._reader_pool.start()

        def connect_writer() -> None:
            _prepare(self.path)
            writer = _Connection(self.path.path, read_only=False)
            try:
                writer.transaction(
                    lambda: migrate(writer, int(time.time() * 1000)), "BEGIN IMMEDIATE"
                )
            except BaseException:
                writer.close()
                raise
            self._writer = writer

        def connect_reader() -> None:
            self._reader = _Connection(self.path.path, read_only=True)

        opened = deferToThreadPool(self._reactor, self._writer_pool, connect_writer)
        opened.addCallback(
            lambda _: deferToThreadPool(self._reactor, self._reader_pool, connect_reader)
        )

        def failed(reason: Any) -> Any:
            self._stop_pools()
            return reason

        opened.addErrback(failed)
        return opened

    def _stop_pools(self) -> None:
        for pool in (self._writer_pool, self._reader_pool):
            if pool.started:
                pool.stop()

    def close(self) -> Deferred[None]:
        if not self._writer_pool.started:
            return succeed(None)

        def close_connection(connection: _Connection | None) -> None:
            if connection is not None:
                connection.close()

        reader_closed = deferToThreadPool(
            self._reactor, self._reader_pool, close_connection, self._reader
        )
        closed = reader_closed.addCallback(
            lambda _: deferToThreadPool(
                self._reactor, self._writer_pool, close_connection, self._writer
            )
        )

        def stopped(result: object) -> object:
            self._writer = self._reader = None
            self._stop_pools()
            return result

        return closed.addBoth(stopped)

    def ingest(self, rows: Sequence[tuple[Event, Enrichment]]) -> Deferred[IngestResult]:
        """
        Queue C{rows} for the writer, which stores every batch waiting when it comes to
        them in one transaction (group commit): batches posted at once share one fsync, and
        each is answered only once that commit is on disk.
        """
        answer: Deferred[IngestResult] = Deferred()
        self._waiting.append((rows, answer))
        # One call of the writer a batch, in order: the first to run takes every batch
        # waiting, the others find none (and close, queued after them, finds none).
        self._write(self._store_waiting).addCallbacks(self._answer, self._fail_waiting)
        return answer

    def _store_waiting(self, db: _Connection) -> list[tuple[Deferred[IngestResult], Any]]:
        """
        On the writer thread: store the batches waiting; each one's answer and outcome.
        """
        taken = []
        while True:
            try:
                taken.append(self._waiting.popleft())
            except IndexError:
                break
        # Rows are encoded here too: nothing of a batch costs the reactor.
        try:
            outcomes = ingest_batches(db, [rows for rows, _ in taken]) if taken else []
        except BaseException:
            # Taken from the queue, so _fail_waiting cannot reach them: answered here.
            outcomes = [Failure()] * len(taken)
        return [(answer, outcome) for (_, answer), outcome in zip(taken, outcomes, strict=True)]

    def _fail_waiting(self, reason: Failure) -> None:
        """
        The writer could not run (the store is not open): no batch waiting is stored.
        """
        while self._waiting:
            _, answer = self._waiting.popleft()
            answer.errback(reason)

    @staticmethod
    def _answer(outcomes: list[tuple[Deferred[IngestResult], Any]]) -> None:
        for answer, outcome in outcomes:
            if isinstance(outcome, Failure):
                answer.errback(outcome)
            else:
                answer.callback(outcome)

    def register_links(self, records: Sequence[LinkRecord]) -> Deferred[int]:
        return self._write(
            lambda db: db.transaction(lambda: register(db, records), "BEGIN IMMEDIATE")
        )

    def stats(self, query: StatsQuery) -> Deferred[Stats]:
        # One read transaction: every figure comes from the same snapshot.
        return self._read(lambda db: db.transaction(lambda: stats(db, query)))
