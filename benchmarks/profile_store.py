"""
Where the SQLite store's writer spends its time, an event at a time: each SQL statement (by
its first words), the commit (the log's fsync included), and the Python bookkeeping around
them (the rest), over the batches of C{bench_collector.py} or of C{collector_http.py}.

Run with C{PYTHONPATH=. python benchmarks/profile_store.py [--events N] [--http-data]
[--profile]}: C{--http-data} stores the HTTP benchmark's events (one day, unregistered links,
no enrichment) rather than the store benchmark's (30 days, ten tagged campaigns), and
C{--profile} adds C{cProfile}'s top functions.
"""

from __future__ import annotations

import argparse
import cProfile
import gzip
import pstats
import re
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from linkrouter.collector import sqlite as sqlite_store
from linkrouter.collector.ingest import parse_batch
from linkrouter.collector.model import Enrichment
from linkrouter.collector.sqlcommon import migrate, register

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_collector import events, link_records
from collector_http import journal_batches

_T = TypeVar("_T")

spent: defaultdict[str, float] = defaultdict(float)
calls: defaultdict[str, int] = defaultdict(int)


def label(sql: str) -> str:
    """
    A statement's first words: its verb and table.
    """
    words = " ".join(sql.split())
    found = re.match(r"(INSERT INTO \w+|SELECT .*? FROM \w+|DELETE FROM \w+|\w+)", words)
    return found.group(1)[:70] if found else words[:40]


class TimedConnection(sqlite_store._Connection):
    """
    The store's connection, timing each statement under its L{label}.
    """

    def _time(self, sql: str, work: Callable[[], _T]) -> _T:
        started = time.perf_counter()
        try:
            return work()
        finally:
            spent[label(sql)] += time.perf_counter() - started
            calls[label(sql)] += 1

    def query(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._time(sql, lambda: super(TimedConnection, self).query(sql, parameters))

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> None:
        self._time(sql, lambda: super(TimedConnection, self).execute(sql, parameters))

    def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._time(sql, lambda: super(TimedConnection, self).execute_many(sql, rows))

    def transaction(self, work: Callable[[], _T], begin: str = "BEGIN") -> _T:
        self._time(begin, lambda: self.connection.execute(begin))
        result = work()
        self._time("COMMIT", lambda: self.connection.execute("COMMIT"))
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--http-data", action="store_true")
    parser.add_argument("--profile", action="store_true")
    options = parser.parse_args()
    if options.http_data:
        batches = [
            [
                (event, Enrichment())
                for event in parse_batch(gzip.decompress(body), "bench", 5_000).events
            ]
            for body in journal_batches(options.events)
        ]
    else:
        batches = list(events(options.events))
    with tempfile.TemporaryDirectory() as directory:
        db = TimedConnection(f"{directory}/collector.sqlite", read_only=False)
        db.transaction(lambda: migrate(db, 0), "BEGIN IMMEDIATE")
        if not options.http_data:
            for records in link_records(options.events):
                db.transaction(lambda r=records: register(db, r), "BEGIN IMMEDIATE")
        spent.clear()
        calls.clear()
        profiler = cProfile.Profile() if options.profile else None
        total = 0.0
        stored = 0
        for batch in batches:
            started = time.perf_counter()
            if profiler is not None:
                profiler.enable()
            stored += sqlite_store.ingest_batch(db, batch).accepted
            if profiler is not None:
                profiler.disable()
            total += time.perf_counter() - started
        db.close()
    sql = sum(spent.values())
    print(
        f"{stored:,} events, {total / stored * 1e6:.1f} us an event:"
        f" SQL {sql / stored * 1e6:.1f}, Python {(total - sql) / stored * 1e6:.1f}"
    )
    for name, seconds in sorted(spent.items(), key=lambda item: -item[1]):
        print(f"  {seconds / stored * 1e6:7.2f} us  {calls[name]:6,} calls  {name}")
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
