# -*- test-case-name: tests.test_store_contract -*-
"""
The shared store: PostgreSQL, for several collectors behind a balancer.

Each collector has a few connections, each used by one thread at a time. Duplicates are
refused by the database's own unique key (C{ON CONFLICT DO NOTHING}), so two collectors that
receive the same batch store it once; the rows the insert returns are the ones this
collector counts into the rollups. Re-tagging links takes an exclusive advisory lock that
ingest takes shared, so a link's events are never counted under a tag it has just left;
counting units (for unique counts) takes another, exclusive, lock once a batch's events are
inserted.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import psycopg
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer  # type: ignore[import-untyped]

from .migrations import POSTGRES, Dialect
from .model import Enrichment, Event, IngestResult, LinkRecord
from .sqlcommon import EVENT_COLUMNS, event_row, migrate, record_accepted, register, stats
from .store import IEventStore, Stats, StatsQuery, StoreError

__all__ = ["PostgresStore", "ingest_batch"]

_T = TypeVar("_T")

MIGRATION_LOCK = 0x6C696E6B_6D696772  # "linkmigr": one collector migrates at a time
REGISTRY_LOCK = 0x6C696E6B_74616773  # "linktags": ingest shares it, re-tagging holds it alone
UNITS_LOCK = 0x6C696E6B_756E6974  # "linkunit": one collector at a time counts units

_COLUMNS = ", ".join(EVENT_COLUMNS)
_INSERT = (
    f"INSERT INTO events ({_COLUMNS}) SELECT {_COLUMNS} FROM incoming"
    " ORDER BY event_id ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
)


class _Connection:
    """
    A L{sqlcommon.Database} over one psycopg connection, in autocommit mode outside the
    transactions it runs.
    """

    dialect: Dialect = POSTGRES

    def __init__(self, dsn: str) -> None:
        self.connection = psycopg.connect(dsn, autocommit=True)

    @staticmethod
    def _sql(sql: str) -> Any:
        return sql.replace("?", "%s")

    def query(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.connection.execute(self._sql(sql), parameters).fetchall()

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> None:
        self.connection.execute(self._sql(sql), parameters)

    def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self.connection.cursor() as cursor:
            cursor.executemany(self._sql(sql), rows)

    def transaction(self, work: Callable[[], _T]) -> _T:
        with self.connection.transaction():
            return work()

    def close(self) -> None:
        self.connection.close()


def _prefer_indexes(db: _Connection) -> None:
    """
    Keep this transaction's plans on the indexes: the rollups' look-ups read a few rows of
    large tables by key, and while a table grows fast the planner's statistics lag behind
    it and it would read the whole table.
    """
    db.execute("SET LOCAL enable_seqscan = off")
    db.execute("SET LOCAL enable_bitmapscan = off")


def ingest_batch(db: _Connection, rows: Sequence[tuple[Event, Enrichment]]) -> IngestResult:
    """
    Store the new events of C{rows} and count them into the rollups, in one transaction;
    the database's unique key decides which are new, whichever collector stores them.
    """
    seen: set[str] = set()
    candidates = []
    for event, enrichment in rows:
        if event.event_id not in seen:
            seen.add(event.event_id)
            candidates.append(event_row(event, enrichment))

    def insert() -> int:
        db.execute("SELECT pg_advisory_xact_lock_shared(?)", (REGISTRY_LOCK,))
        # The batch is copied here, then inserted with ON CONFLICT in one statement.
        db.execute(
            "CREATE TEMPORARY TABLE IF NOT EXISTS incoming (LIKE events INCLUDING DEFAULTS)"
            " ON COMMIT DELETE ROWS"
        )
        with db.connection.cursor() as cursor:
            with cursor.copy(f"COPY incoming ({_COLUMNS}) FROM STDIN") as copy:
                for row in candidates:
                    copy.write_row(row)
            stored = {event_id for (event_id,) in cursor.execute(_INSERT).fetchall()}
        fresh = [row for row in candidates if row[0] in stored]
        _prefer_indexes(db)
        if fresh:
            # A unit's entries depend on the hours other batches gave it: collectors read
            # and update them one at a time, until commit.
            db.execute("SELECT pg_advisory_xact_lock(?)", (UNITS_LOCK,))
        record_accepted(db, fresh)
        return len(fresh)

    accepted = db.transaction(insert)
    return IngestResult(accepted=accepted, duplicates=len(rows) - accepted)


@implementer(IEventStore)
class PostgresStore:
    """
    Events in the PostgreSQL database named by C{dsn} (a libpq connection string).

    @param reactor: the reactor the Deferreds fire in.
    @param connections: how many connections, and threads, this collector uses at most.
    """

    def __init__(self, dsn: str, reactor: IReactorFromThreads, connections: int = 4) -> None:
        self._dsn = dsn
        info = psycopg.conninfo.conninfo_to_dict(dsn)
        self.description = (
            f"PostgreSQL database {info.get('dbname', '?')} on {info.get('host', 'localhost')}"
        )
        self._reactor = reactor
        self._pool = ThreadPool(minthreads=0, maxthreads=connections, name="collector-postgres")
        self._idle: queue.SimpleQueue[_Connection] = queue.SimpleQueue()
        self._all: list[_Connection] = []

    def _connect(self) -> _Connection:
        connection = _Connection(self._dsn)
        self._all.append(connection)
        return connection

    def _run(self, work: Callable[[_Connection], _T]) -> Deferred[_T]:
        def run() -> _T:
            try:
                connection = self._idle.get_nowait()
            except queue.Empty:
                connection = self._connect()
            try:
                result = work(connection)
            except psycopg.OperationalError:
                connection.close()  # broken: the next task connects anew
                self._all.remove(connection)
                raise
            except BaseException:
                self._idle.put(connection)  # the transaction was rolled back
                raise
            self._idle.put(connection)
            return result

        return deferToThreadPool(self._reactor, self._pool, run)

    def open(self) -> Deferred[None]:
        self._pool.start()

        def migrate_once() -> None:
            try:
                connection = _Connection(self._dsn)
            except psycopg.OperationalError as error:
                raise StoreError(f"cannot connect to {self.description}: {error}") from error

            def locked() -> None:
                connection.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK,))
                migrate(connection, int(time.time() * 1000))

            try:
                connection.transaction(locked)
            finally:
                connection.close()
            self._idle.put(self._connect())

        opened = deferToThreadPool(self._reactor, self._pool, migrate_once)

        def failed(reason: Any) -> Any:
            self._pool.stop()
            return reason

        opened.addErrback(failed)
        return opened

    def close(self) -> Deferred[None]:
        if not self._pool.started:
            return succeed(None)
        # Stopping the pool waits for the work in hand; then no thread uses a connection.
        self._pool.stop()
        for connection in self._all:
            connection.close()
        self._all.clear()
        self._idle = queue.SimpleQueue()
        return succeed(None)

    def ingest(self, rows: Sequence[tuple[Event, Enrichment]]) -> Deferred[IngestResult]:
        return self._run(lambda db: ingest_batch(db, rows))

    def register_links(self, records: Sequence[LinkRecord]) -> Deferred[int]:
        def work(db: _Connection) -> int:
            def locked() -> int:
                db.execute("SELECT pg_advisory_xact_lock(?)", (REGISTRY_LOCK,))
                return register(db, records)

            return db.transaction(locked)

        return self._run(work)

    def stats(self, query: StatsQuery) -> Deferred[Stats]:
        def work(db: _Connection) -> Stats:
            def snapshot() -> Stats:
                db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                return stats(db, query)

            return db.transaction(snapshot)

        return self._run(work)
