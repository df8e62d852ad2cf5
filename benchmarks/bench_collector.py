"""
How fast the collector's store ingests and answers stats, against a bare C{executemany}.

Ingest: batches of 5,000 enriched events go through the store's C{ingest} (threads,
dedupe, rollups, one durable commit a batch) and, in the same run and batch by batch, the
same rows go through a bare C{executemany} into a plain table without indexes in a database
of its own, committed the same way. The ratio says what the store's bookkeeping costs over
the database's own minimum. Stats: each query's median time through the store's C{stats},
with the number of events stored.

Events look like email tracking: one LinkID per link per recipient (three links a message),
ten tagged campaigns, a fifth of the events from bots, time stamps spread over 30 days and
arriving roughly in order.

Run with C{make bench}, or C{python benchmarks/bench_collector.py [--quick]
[--backend sqlite|postgresql]}. Other measurements (HTTP ingest) can be added as more
C{Measurement} functions run by L{main}.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg
from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.python.filepath import FilePath

from linkrouter.collector.model import Enrichment, Event, LinkRecord, Platform
from linkrouter.collector.postgres import PostgresStore
from linkrouter.collector.sqlcommon import EVENT_COLUMNS, event_row
from linkrouter.collector.sqlite import SQLiteStore
from linkrouter.collector.store import StatsQuery
from linkrouter.collector.testing_postgres import PostgresServer
from linkrouter.event import uuid7

sys.path.insert(0, str(Path(__file__).resolve().parent))
from collector_http import http_ingest

BATCH = 5_000
DAY = 86_400_000
SPAN = 30 * DAY
START = 1_764_547_200_000  # 2025-12-01T00:00:00Z
BROWSERS = ["Chrome", "Safari", "Firefox", "Edge", "Outlook", "Thunderbird", None]
SYSTEMS = ["Windows", "Mac OS X", "iOS", "Android", "Linux", None]
COUNTRIES = ["US", "DE", "FR", "GB", "NL", "JP", "BR", "IN", "CA", "ES", None]
REASONS = ["scanner-user-agent:mimecast", "scanner-network:microsoft", "head-request"]

Row = tuple[Event, Enrichment]


def events(count: int, seed: int = 1) -> Iterator[list[Row]]:
    """
    C{count} events in batches of L{BATCH}, the same for the same C{seed}.
    """
    rng = random.Random(seed)
    messages = max(count // 4, 1)
    step = SPAN / count
    for first in range(0, count, BATCH):
        batch = []
        for number in range(first, min(count, first + BATCH)):
            message = rng.randrange(messages)
            link_id = f"m{message:011d}{rng.randrange(3):04d}"
            timestamp = START + int(number * step) + rng.randrange(60_000)
            bot = rng.random() < 0.2
            kind = "open" if rng.random() < 0.3 else "click"
            batch.append(
                (
                    Event(
                        event_id=uuid7(timestamp),
                        sequence=number,
                        router=f"router-{number % 3}",
                        timestamp_ms=timestamp,
                        kind=kind,
                        link_id=link_id,
                        key_id="k2025",
                        part="html" if rng.random() < 0.8 else "text",
                        issued_at=START // 1000,
                        method="HEAD" if bot and rng.random() < 0.5 else "GET",
                        ip=f"198.51.{rng.randrange(256)}.0",
                        user_agent="Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36",
                    ),
                    Enrichment(
                        browser_family=rng.choice(BROWSERS),
                        browser_version="131.0",
                        os_family=rng.choice(SYSTEMS),
                        platform=rng.choice(list(Platform)),
                        country=rng.choice(COUNTRIES),
                        network="EXAMPLE-AS",
                        bot_reasons=(rng.choice(REASONS),) if bot else (),
                    ),
                )
            )
        yield batch


def link_records(count: int) -> Iterator[list[LinkRecord]]:
    """
    The registry of the links L{events} uses, ten campaigns' tags, in batches.
    """
    messages = max(count // 4, 1)
    batch = []
    for message in range(messages):
        for position in range(3):
            batch.append(
                LinkRecord(
                    f"m{message:011d}{position:04d}",
                    f"https://shop.example/{position}?campaign={message % 10}",
                    message_id=f"<{message}@example>",
                    part="html",
                    position=position,
                    tag=f"campaign-{message % 10}",
                )
            )
            if len(batch) == BATCH:
                yield batch
                batch = []
    if batch:
        yield batch


_BARE_COLUMNS = ", ".join(EVENT_COLUMNS)


class BareSQLite:
    """
    The baseline: the same rows into a plain table, one durable transaction a batch.
    """

    def __init__(self, path: str) -> None:
        self.connection = sqlite3.connect(path, isolation_level=None)
        self.connection.execute("PRAGMA journal_mode = WAL")
        self.connection.execute("PRAGMA synchronous = FULL")
        self.connection.execute(f"CREATE TABLE plain ({_BARE_COLUMNS})")
        self.sql = f"INSERT INTO plain VALUES ({', '.join('?' * len(EVENT_COLUMNS))})"

    def insert(self, rows: Sequence[Sequence[Any]]) -> None:
        self.connection.execute("BEGIN IMMEDIATE")
        self.connection.executemany(self.sql, rows)
        self.connection.execute("COMMIT")


class BarePostgres:
    """
    The baseline: a plain table with the events' columns (and no key or index) in the
    store's database, the same rows by C{executemany}, one transaction a batch.
    """

    def __init__(self, dsn: str) -> None:
        self.connection = psycopg.connect(dsn, autocommit=True)
        self.connection.execute("CREATE TABLE plain (LIKE events)")
        marks = ", ".join(["%s"] * len(EVENT_COLUMNS))
        self.sql = f"INSERT INTO plain ({_BARE_COLUMNS}) VALUES ({marks})"

    def insert(self, rows: Sequence[Sequence[Any]]) -> None:
        with self.connection.transaction(), self.connection.cursor() as cursor:
            cursor.executemany(self.sql, rows)


def queries(count: int) -> list[tuple[str, StatsQuery]]:
    end = START + SPAN + DAY
    return [
        ("everything", StatsQuery()),
        ("last 7 days", StatsQuery(start_ms=end - 7 * DAY - 1_234, end_ms=end)),
        ("last 24 hours, by hour", StatsQuery(start_ms=end - 2 * DAY + 5_678)),
        ("one campaign (tag)", StatsQuery(tag="campaign-3")),
        ("one campaign, last 7 days", StatsQuery(tag="campaign-3", start_ms=end - 8 * DAY)),
        ("one message", StatsQuery(message=f"m{count // 8:011d}")),
        ("one link, by day", StatsQuery(link=f"m{count // 8:011d}0001", bucket="day")),
    ]


async def measure(
    name: str,
    store: Any,
    make_bare: Callable[[], Callable[[Sequence[Sequence[Any]]], None]],
    count: int,
    rounds: int,
) -> None:
    await store.open()
    try:
        bare = make_bare()
        for records in link_records(count):
            await store.register_links(records)
        store_time = bare_time = 0.0
        stored = 0
        for batch in events(count):
            rows = [event_row(e, n) for e, n in batch]
            started = time.perf_counter()
            result = await store.ingest(batch)
            store_time += time.perf_counter() - started
            stored += result.accepted
            started = time.perf_counter()
            bare(rows)
            bare_time += time.perf_counter() - started
        print(
            f"{name:<11} ingest {stored:>9,} events: store {stored / store_time:>9,.0f} /s "
            f"({store_time / stored * 1e6:5.1f} us an event); bare executemany "
            f"{stored / bare_time:>9,.0f} /s; ratio {bare_time / store_time:.2f} of bare"
        )
        for label, query in queries(count):
            times = []
            for _ in range(rounds):
                started = time.perf_counter()
                await store.stats(query)
                times.append(time.perf_counter() - started)
            print(
                f"{name:<11} stats {label:<28} median {statistics.median(times) * 1000:7.1f} ms"
                f"  worst {max(times) * 1000:7.1f} ms  (aim < 200 ms)"
            )
    finally:
        await store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 events (smoke test)")
    parser.add_argument("--events", type=int, help="how many events (default 1,000,000)")
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument(
        "--http-connections",
        type=int,
        default=1,
        help="also post the HTTP batches over this many connections at once (as several"
        " routers do), reported beside the one-connection figure",
    )
    options = parser.parse_args(argv)
    count = options.events or (100_000 if options.quick else 1_000_000)
    rounds = 3 if options.quick else 5
    print(
        f"python {sys.version.split()[0]}, sqlite {sqlite3.sqlite_version}; batches of {BATCH:,}"
    )

    async def run(reactor: Any) -> None:
        with tempfile.TemporaryDirectory() as directory:
            if options.backend in ("sqlite", "both"):
                root = FilePath(directory).child("sqlite")
                store = SQLiteStore(root.child("collector.sqlite"), reactor)
                bare = FilePath(directory).child("bare.sqlite").path
                await measure("SQLite", store, lambda: BareSQLite(bare).insert, count, rounds)
            if options.backend in ("postgresql", "both"):
                server = PostgresServer()
                server.start()
                try:
                    dsn = server.create_database()
                    pg = PostgresStore(dsn, reactor)
                    await measure(
                        "PostgreSQL", pg, lambda: BarePostgres(dsn).insert, count, rounds
                    )
                finally:
                    server.stop()

    try:
        task.react(lambda reactor: Deferred.fromCoroutine(run(reactor)))
    except SystemExit as stopped:  # react always exits; the HTTP measurement comes next
        if stopped.code:
            raise
    http_count = min(count, 50_000 if options.quick else 200_000)
    with tempfile.TemporaryDirectory() as directory:
        if options.backend in ("sqlite", "both"):
            bare = FilePath(directory).child("bare-http.sqlite").path
            http_ingest("SQLite", "", BareSQLite(bare).insert, http_count)
            if options.http_connections > 1:
                again = FilePath(directory).child("bare-http-again.sqlite").path
                http_ingest(
                    "SQLite",
                    "",
                    BareSQLite(again).insert,
                    http_count,
                    options.http_connections,
                )
        if options.backend in ("postgresql", "both"):
            server = PostgresServer()
            server.start()
            try:
                dsn = server.create_database()
                bare_tables: list[BarePostgres] = []

                def bare_insert(rows: Sequence[Sequence[Any]]) -> None:
                    # Made at the first insert: its table copies C{events}, which the
                    # collector creates when it starts.
                    if not bare_tables:
                        bare_tables.append(BarePostgres(dsn))
                    bare_tables[0].insert(rows)

                http_ingest(
                    "PostgreSQL",
                    f'[store]\nbackend = "postgresql"\ndsn = "{dsn}"',
                    bare_insert,
                    http_count,
                )
            finally:
                server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
