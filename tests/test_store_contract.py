"""
The contract every L{IEventStore} keeps, run against SQLite and against a real PostgreSQL.

The PostgreSQL tests start one throw-away server a test process (see
L{linkrouter.collector.testing_postgres}); without the server binaries they are skipped,
except under CI (C{CI=true}), where a missing server is a failure.
"""

from __future__ import annotations

import atexit
import os
import sqlite3
import stat
import threading
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import attrs
import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SkipTest, TestCase
from zope.interface.verify import verifyObject

from linkrouter.collector import postgres, sqlcommon, sqlite
from linkrouter.collector.migrations import MIGRATIONS
from linkrouter.collector.model import (
    Enrichment,
    Event,
    IngestResult,
    LinkRecord,
    Platform,
    message_key,
)
from linkrouter.collector.postgres import PostgresStore
from linkrouter.collector.sqlcommon import migrate, register
from linkrouter.collector.sqlcommon import stats as compute_stats
from linkrouter.collector.sqlite import SQLiteStore
from linkrouter.collector.store import (
    IEventStore,
    KindTotals,
    LinkCount,
    Point,
    Stats,
    StatsQuery,
    StoreError,
    Tally,
)
from linkrouter.collector.testing_postgres import PostgresServer, PostgresUnavailable

T0 = 1_735_689_600_000  # 2025-01-01T00:00:00Z, an hour (and day) boundary
MINUTE = 60_000
HOUR = 3_600_000

A = "msgAAAAAAAAA"
B = "msgBBBBBBBBB"
C = "msgCCCCCCCCC"


def event(
    number: int,
    timestamp_ms: int,
    kind: str,
    link_id: str,
    part: str = "html",
    browser: str | None = None,
    platform: Platform = Platform.UNKNOWN,
    os_family: str | None = None,
    country: str | None = None,
    reasons: tuple[str, ...] = (),
) -> tuple[Event, Enrichment]:
    return (
        Event(
            event_id=f"0190-{number:08d}",
            sequence=number,
            router="router-1",
            timestamp_ms=timestamp_ms,
            kind=kind,
            link_id=link_id,
            key_id="k1",
            part=part,
            issued_at=T0 // 1000 - 86400,
            method="HEAD" if "head-request" in reasons else "GET",
            ip="192.0.2.0",
            user_agent=f"agent {browser}",
        ),
        Enrichment(
            browser_family=browser,
            browser_version="1.0" if browser else None,
            os_family=os_family,
            platform=platform,
            country=country,
            region="Bavaria" if country == "DE" else None,
            network="EXAMPLE-AS" if reasons else None,
            bot_reasons=reasons,
        ),
    )


MIMECAST = "scanner-user-agent:mimecast"
HEAD = "head-request"
MICROSOFT = "scanner-network:microsoft"

EVENTS = [
    event(1, T0 + 10 * MINUTE, "click", A + "01", "html", "Chrome", Platform.DESKTOP, "Windows", "DE"),  # noqa: E501
    event(2, T0 + 20 * MINUTE, "click", A + "01", "html", "Firefox", Platform.DESKTOP, "Linux", "FR"),  # noqa: E501
    event(3, T0 + 30 * MINUTE, "click", A + "02", "text", "Chrome", Platform.MOBILE, "Android", "DE", (MIMECAST,)),  # noqa: E501
    event(4, T0 + HOUR + 5 * MINUTE, "open", A + "01", "html", "Outlook", Platform.DESKTOP, "Windows", "DE"),  # noqa: E501
    event(5, T0 + HOUR + 6 * MINUTE, "open", A + "02", "html", "Outlook", Platform.DESKTOP, "Windows", None, (HEAD, MICROSOFT)),  # noqa: E501
    event(6, T0 + 25 * HOUR, "click", B + "01", "html", "Safari", Platform.MOBILE, "iOS", "US"),
    event(7, T0 + 25 * HOUR + 1, "click", C + "01", "text", None, Platform.UNKNOWN, None, None, (HEAD,)),  # noqa: E501
    event(8, T0 + 26 * HOUR, "open", B + "01", "html", None, Platform.WEBMAIL, None, "US"),
]  # fmt: skip

LINKS = [
    LinkRecord(A + "01", "https://a.example/1", "<a@example>", "html", 0, "news", "h1"),
    LinkRecord(A + "02", "https://a.example/2", "<a@example>", "text", 1, "news", "h1"),
    LinkRecord(B + "01", "https://b.example/", "<b@example>", "html", 0, "promo", "h2"),
]


def run(method: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., Deferred[None]]:
    """
    A trial test method from an C{async} one.
    """

    def test(self: Any) -> Deferred[None]:
        return Deferred.fromCoroutine(method(self))

    test.__name__ = method.__name__
    test.__doc__ = method.__doc__
    return test


def tally(value: str | None, clicks: int, opens: int, bot_clicks: int, bot_opens: int) -> Tally:
    return Tally(value, clicks, opens, bot_clicks, bot_opens)


class StoreContractMixin:
    """
    The contract tests; a subclass says how to make a store on a fresh database, how to
    read a stored event's row back, and how to get a synchronous connection for L{stats}.
    """

    store: Any

    def makeStore(self) -> Any:
        raise NotImplementedError()

    def storedRow(self, event_id: str) -> dict[str, Any] | None:
        raise NotImplementedError()

    def schemaVersions(self) -> list[int]:
        raise NotImplementedError()

    async def openStore(self, data: bool = True) -> Any:
        store = self.makeStore()
        await store.open()
        self.addCleanup(store.close)  # type: ignore[attr-defined]
        if data:
            await store.register_links(LINKS)
            await store.ingest(EVENTS)
        return store

    async def stats(self, store: Any, **filters: Any) -> Stats:
        result: Stats = await store.stats(StatsQuery(**filters))
        return result

    @run
    async def test_interface(self) -> None:
        """
        The store provides L{IEventStore}.
        """
        store = await self.openStore(data=False)
        self.assertTrue(verifyObject(IEventStore, store))  # type: ignore[attr-defined]

    @run
    async def test_threadsStop(self) -> None:
        """
        Closing the store (twice is harmless) leaves none of its threads running.
        """
        store = await self.openStore()
        await store.stats(StatsQuery())
        await store.close()
        await store.close()
        running = [t.name for t in threading.enumerate() if "PoolThread-collector-" in t.name]
        self.assertEqual(running, [])

    @run
    async def test_ingestCounts(self) -> None:
        """
        A batch's answer counts new events and duplicates, within the batch and across
        batches; a whole batch sent again is all duplicates and changes no figure.
        """
        store = await self.openStore(data=False)
        first = await store.ingest([*EVENTS[:3], EVENTS[0], EVENTS[1]])
        self.assertEqual(first, IngestResult(accepted=3, duplicates=2))
        second = await store.ingest(EVENTS)
        self.assertEqual(second, IngestResult(accepted=5, duplicates=3))
        before = await self.stats(store)
        again = await store.ingest(EVENTS)
        self.assertEqual(again, IngestResult(accepted=0, duplicates=8))
        self.assertEqual(await self.stats(store), before)
        self.assertEqual(before.clicks.total, 5)
        self.assertEqual(await store.ingest([]), IngestResult(0, 0))

    @run
    async def test_committedBeforeAnswer(self) -> None:
        """
        Once C{ingest} has answered, the batch is in the database: another store opened on
        it (as after a crash, without closing the first) finds every event a duplicate.
        """
        store = await self.openStore(data=False)
        self.assertEqual(await store.ingest(EVENTS), IngestResult(8, 0))
        other = self.makeStore()
        await other.open()
        self.addCleanup(other.close)  # type: ignore[attr-defined]
        self.assertEqual(await other.ingest(EVENTS), IngestResult(0, 8))
        self.assertEqual((await self.stats(other)).opens.total, 3)

    @run
    async def test_rawAndEnrichment(self) -> None:
        """
        A stored event keeps every raw fact as the router journaled it, with the
        enrichment beside it.
        """
        await self.openStore()
        row = self.storedRow(EVENTS[4][0].event_id)
        expected_event, expected_enrichment = EVENTS[4]
        assert row is not None
        self.assertEqual(
            {name: row[name] for name in ("event_id", "sequence", "router", "ts_ms", "kind")},
            {
                "event_id": expected_event.event_id,
                "sequence": 5,
                "router": "router-1",
                "ts_ms": T0 + HOUR + 6 * MINUTE,
                "kind": "open",
            },
        )
        self.assertEqual(
            (row["link_id"], row["key_id"], row["part"], row["issued_at"], row["method"]),
            (A + "02", "k1", "html", T0 // 1000 - 86400, "HEAD"),
        )
        self.assertEqual((row["ip"], row["user_agent"]), ("192.0.2.0", "agent Outlook"))
        self.assertEqual(
            (row["browser_family"], row["browser_version"], row["os_family"], row["platform"]),
            ("Outlook", "1.0", "Windows", "Desktop"),
        )
        self.assertEqual((row["country"], row["network"], row["bot"]), (None, "EXAMPLE-AS", 1))
        self.assertEqual(row["bot_reasons"], '["head-request","scanner-network:microsoft"]')
        self.assertEqual(expected_enrichment.bot_reasons, (HEAD, MICROSOFT))

    @run
    async def test_migrationsOnce(self) -> None:
        """
        Opening the store again applies no migration twice and keeps the data.
        """
        store = await self.openStore()
        await store.close()
        again = await self.openStore(data=False)
        self.assertEqual(self.schemaVersions(), [m.version for m in MIGRATIONS])
        self.assertEqual((await self.stats(again)).clicks.total, 5)

    @run
    async def test_everything(self) -> None:
        """
        With no filter every figure covers every event.
        """
        store = await self.openStore()
        result = await self.stats(store)
        self.assertEqual(result.clicks, KindTotals(total=5, unique=4, human=3, bot=2))
        self.assertEqual(result.opens, KindTotals(total=3, unique=2, human=2, bot=1))
        self.assertEqual(result.first_click_ms, T0 + 10 * MINUTE)
        self.assertEqual(result.last_click_ms, T0 + 25 * HOUR + 1)
        self.assertEqual(
            result.bot_reasons,
            (tally(HEAD, 1, 1, 1, 1), tally(MICROSOFT, 0, 1, 0, 1), tally(MIMECAST, 1, 0, 1, 0)),
        )
        self.assertEqual(
            result.browsers,
            (
                tally("Chrome", 2, 0, 1, 0),
                tally("Outlook", 0, 2, 0, 1),
                tally(None, 1, 1, 1, 0),
                tally("Firefox", 1, 0, 0, 0),
                tally("Safari", 1, 0, 0, 0),
            ),
        )
        self.assertEqual(
            result.platforms,
            (
                tally("Desktop", 2, 2, 0, 1),
                tally("Mobile", 2, 0, 1, 0),
                tally("Unknown", 1, 0, 1, 0),
                tally("WebMail", 0, 1, 0, 0),
            ),
        )
        self.assertEqual(
            result.systems,
            (
                tally("Windows", 1, 2, 0, 1),
                tally(None, 1, 1, 1, 0),
                tally("Android", 1, 0, 1, 0),
                tally("Linux", 1, 0, 0, 0),
                tally("iOS", 1, 0, 0, 0),
            ),
        )
        self.assertEqual(
            result.countries,
            (
                tally("DE", 2, 1, 1, 0),
                tally("US", 1, 1, 0, 0),
                tally(None, 1, 1, 1, 1),
                tally("FR", 1, 0, 0, 0),
            ),
        )
        self.assertEqual(result.parts, (tally("html", 3, 3, 0, 1), tally("text", 2, 0, 2, 0)))
        self.assertEqual(
            result.top_links,
            (
                LinkCount(A + "01", "https://a.example/1", 2, 0),
                LinkCount(A + "02", "https://a.example/2", 1, 1),
                LinkCount(B + "01", "https://b.example/", 1, 0),
                LinkCount(C + "01", None, 1, 1),
            ),
        )
        self.assertEqual(
            result.series,
            (
                Point(T0, 3, 0, 1, 0),
                Point(T0 + HOUR, 0, 2, 0, 1),
                Point(T0 + 25 * HOUR, 2, 0, 1, 0),
                Point(T0 + 26 * HOUR, 0, 1, 0, 0),
            ),
        )
        self.assertEqual(result.bucket, "hour")

    @run
    async def test_days(self) -> None:
        """
        The series by day adds up the hours of each UTC day; C{top} limits the top links.
        """
        store = await self.openStore()
        result = await self.stats(store, bucket="day", top=1)
        self.assertEqual(result.series, (Point(T0, 3, 2, 1, 1), Point(T0 + 24 * HOUR, 2, 1, 1, 0)))
        self.assertEqual(result.bucket, "day")
        self.assertEqual(result.top_links, (LinkCount(A + "01", "https://a.example/1", 2, 0),))
        self.assertEqual(result.to_json()["series"]["bucket"], "day")

    @run
    async def test_timeRange(self) -> None:
        """
        A time range counts the events from its start up to, not including, its end, to
        the millisecond, whether or not it falls on whole hours.
        """
        store = await self.openStore()
        result = await self.stats(store, start_ms=T0 + 15 * MINUTE, end_ms=T0 + 25 * HOUR)
        self.assertEqual(result.clicks, KindTotals(total=2, unique=2, human=1, bot=1))
        self.assertEqual(result.opens, KindTotals(total=2, unique=1, human=1, bot=1))
        self.assertEqual(
            (result.first_click_ms, result.last_click_ms), (T0 + 20 * MINUTE, T0 + 30 * MINUTE)
        )
        self.assertEqual(result.series, (Point(T0, 2, 0, 1, 0), Point(T0 + HOUR, 0, 2, 0, 1)))
        self.assertEqual(result.parts, (tally("html", 1, 2, 0, 1), tally("text", 1, 0, 1, 0)))

        result = await self.stats(store, start_ms=T0 + HOUR, end_ms=T0 + 25 * HOUR + 1)
        self.assertEqual(result.clicks, KindTotals(total=1, unique=1, human=1, bot=0))
        self.assertEqual(result.opens.total, 2)
        self.assertEqual(result.top_links, (LinkCount(B + "01", "https://b.example/", 1, 0),))

        result = await self.stats(store, start_ms=T0 + 10 * MINUTE, end_ms=T0 + 20 * MINUTE)
        self.assertEqual(result.clicks, KindTotals(total=1, unique=1, human=1, bot=0))
        self.assertEqual(result.browsers, (tally("Chrome", 1, 0, 0, 0),))

        result = await self.stats(store, start_ms=T0 + 25 * HOUR + 1)
        self.assertEqual(result.clicks, KindTotals(total=1, unique=1, human=0, bot=1))
        self.assertEqual(result.opens, KindTotals(total=1, unique=1, human=1, bot=0))

        result = await self.stats(store, end_ms=T0 + HOUR)
        self.assertEqual(result.clicks.total, 3)
        self.assertEqual(result.opens.total, 0)

        result = await self.stats(store, start_ms=T0 + 30 * HOUR)
        self.assertEqual(result.clicks, KindTotals(0, 0, 0, 0))
        self.assertEqual((result.first_click_ms, result.top_links, result.series), (None, (), ()))

    @run
    async def test_filters(self) -> None:
        """
        Tag (through the registry), message and link filters select those links' events.
        """
        store = await self.openStore()
        news = await self.stats(store, tag="news")
        self.assertEqual(news.clicks, KindTotals(total=3, unique=2, human=2, bot=1))
        self.assertEqual(news.opens, KindTotals(total=2, unique=1, human=1, bot=1))
        self.assertEqual(
            (news.first_click_ms, news.last_click_ms), (T0 + 10 * MINUTE, T0 + 30 * MINUTE)
        )
        self.assertEqual(
            news.top_links,
            (
                LinkCount(A + "01", "https://a.example/1", 2, 0),
                LinkCount(A + "02", "https://a.example/2", 1, 1),
            ),
        )
        message = await self.stats(store, message=A)
        self.assertEqual(message, news)

        link = await self.stats(store, link=A + "01")
        self.assertEqual(link.clicks, KindTotals(total=2, unique=1, human=2, bot=0))
        self.assertEqual(link.opens, KindTotals(total=1, unique=1, human=1, bot=0))
        self.assertEqual(link.series, (Point(T0, 2, 0, 0, 0), Point(T0 + HOUR, 0, 1, 0, 0)))

        late_news = await self.stats(store, tag="news", start_ms=T0 + HOUR)
        self.assertEqual(late_news.clicks.total, 0)
        self.assertEqual(late_news.opens, KindTotals(total=2, unique=1, human=1, bot=1))

        promo = await self.stats(store, tag="promo", bucket="day")
        self.assertEqual(promo.series, (Point(T0 + 24 * HOUR, 1, 1, 0, 0),))
        nothing = await self.stats(store, tag="none-such")
        self.assertEqual((nothing.clicks.total, nothing.opens.total, nothing.browsers), (0, 0, ()))
        self.assertEqual((await self.stats(store, message=C, link=A + "01")).clicks.total, 0)
        self.assertEqual((await self.stats(store, message=A[:6])).clicks.total, 0)

    @run
    async def test_registry(self) -> None:
        """
        Registering a link again changes nothing; a new tag carries the link's stored
        events to it; links registered after their clicks show their URL.
        """
        store = await self.openStore()
        self.assertEqual(await store.register_links(LINKS), 0)
        moved = LinkRecord(B + "01", "https://b.example/new", "<b@example>", "html", 0, "news")
        late = LinkRecord(C + "01", "https://c.example/", tag="promo")
        self.assertEqual(await store.register_links([moved, late, late]), 2)
        news = await self.stats(store, tag="news")
        self.assertEqual((news.clicks.total, news.opens.total), (4, 3))
        self.assertEqual(news.opens.unique, 2)
        self.assertEqual(news.series[-1], Point(T0 + 26 * HOUR, 0, 1, 0, 0))
        promo = await self.stats(store, tag="promo")
        self.assertEqual(promo.clicks, KindTotals(total=1, unique=1, human=0, bot=1))
        self.assertEqual(promo.top_links, (LinkCount(C + "01", "https://c.example/", 1, 1),))
        untagged = LinkRecord(C + "01", "https://c.example/")
        self.assertEqual(await store.register_links([untagged]), 1)
        self.assertEqual((await self.stats(store, tag="promo")).clicks.total, 0)
        everything = await self.stats(store)
        self.assertEqual(everything.clicks.total, 5)
        self.assertEqual(everything.top_links[-1].url, "https://c.example/")

    @run
    async def test_json(self) -> None:
        """
        C{to_json} gives the documented shape.
        """
        store = await self.openStore()
        shape = (await self.stats(store, link=B + "01")).to_json()
        self.assertEqual(
            shape,
            {
                "clicks": {"total": 1, "unique": 1, "human": 1, "bot": 0},
                "opens": {"total": 1, "unique": 1, "human": 1, "bot": 0},
                "first_click": T0 + 25 * HOUR,
                "last_click": T0 + 25 * HOUR,
                "bot_reasons": [],
                "browsers": [
                    {"value": "Safari", "clicks": 1, "opens": 0, "bot_clicks": 0, "bot_opens": 0},
                    {"value": None, "clicks": 0, "opens": 1, "bot_clicks": 0, "bot_opens": 0},
                ],
                "platforms": [
                    {"value": "Mobile", "clicks": 1, "opens": 0, "bot_clicks": 0, "bot_opens": 0},
                    {"value": "WebMail", "clicks": 0, "opens": 1, "bot_clicks": 0, "bot_opens": 0},
                ],
                "systems": [
                    {"value": "iOS", "clicks": 1, "opens": 0, "bot_clicks": 0, "bot_opens": 0},
                    {"value": None, "clicks": 0, "opens": 1, "bot_clicks": 0, "bot_opens": 0},
                ],
                "countries": [
                    {"value": "US", "clicks": 1, "opens": 1, "bot_clicks": 0, "bot_opens": 0}
                ],
                "parts": [
                    {"value": "html", "clicks": 1, "opens": 1, "bot_clicks": 0, "bot_opens": 0}
                ],
                "top_links": [
                    {"link": B + "01", "url": "https://b.example/", "clicks": 1, "bot_clicks": 0}
                ],
                "series": {
                    "bucket": "hour",
                    "points": [
                        {
                            "start": T0 + 25 * HOUR,
                            "clicks": 1,
                            "opens": 0,
                            "bot_clicks": 0,
                            "bot_opens": 0,
                        },
                        {
                            "start": T0 + 26 * HOUR,
                            "clicks": 0,
                            "opens": 1,
                            "bot_clicks": 0,
                            "bot_opens": 0,
                        },
                    ],
                },
            },
        )


def reference(
    rows: Sequence[tuple[Event, Enrichment]], links: Sequence[LinkRecord], query: StatsQuery
) -> Stats:
    """
    The stats of C{query}, counted event by event in plain Python.
    """
    urls = {record.link_id: record.url for record in links}
    tags = {record.link_id: record.tag or "" for record in links}
    unique: dict[str, tuple[Event, Enrichment]] = {}
    for event_, enrichment in rows:
        unique.setdefault(event_.event_id, (event_, enrichment))
    chosen = []
    for event_, enrichment in unique.values():
        if query.start_ms is not None and event_.timestamp_ms < query.start_ms:
            continue
        if query.end_ms is not None and event_.timestamp_ms >= query.end_ms:
            continue
        if query.tag is not None and tags.get(event_.link_id, "") != query.tag:
            continue
        if query.message is not None and message_key(event_.link_id) != query.message:
            continue
        if query.link is not None and event_.link_id != query.link:
            continue
        chosen.append((event_, enrichment))
    clicks = [(e, n) for e, n in chosen if e.kind == "click"]
    opens = [(e, n) for e, n in chosen if e.kind == "open"]

    def totals(events: list[tuple[Event, Enrichment]], unique_count: int) -> KindTotals:
        bots = sum(1 for _, n in events if n.bot)
        return KindTotals(len(events), unique_count, len(events) - bots, bots)

    def breakdown(values: Callable[[Enrichment, Event], list[str | None]]) -> tuple[Tally, ...]:
        counts: Counter[tuple[str | None, str, bool]] = Counter()
        for e, n in chosen:
            for value in values(n, e):
                counts[(value, e.kind, n.bot)] += 1
        found = []
        for value in {value for value, _, _ in counts}:
            c = [counts[(value, "click", bot)] for bot in (False, True)]
            o = [counts[(value, "open", bot)] for bot in (False, True)]
            found.append(Tally(value, sum(c), sum(o), c[1], o[1]))
        found.sort(key=lambda t: (-(t.clicks + t.opens), t.value is None, t.value or ""))
        return tuple(found)

    per_link: Counter[str] = Counter(e.link_id for e, _ in clicks)
    bot_per_link: Counter[str] = Counter(e.link_id for e, n in clicks if n.bot)
    top = sorted(per_link, key=lambda link: (-per_link[link], link))[: query.top]
    size = HOUR * (1 if query.bucket == "hour" else 24)
    series: Counter[tuple[int, str, bool]] = Counter(
        (e.timestamp_ms // size, e.kind, n.bot) for e, n in chosen
    )
    points = []
    for bucket in sorted({bucket for bucket, _, _ in series}):
        c = [series[(bucket, "click", bot)] for bot in (False, True)]
        o = [series[(bucket, "open", bot)] for bot in (False, True)]
        points.append(Point(bucket * size, sum(c), sum(o), c[1], o[1]))
    times = [e.timestamp_ms for e, _ in clicks]
    return Stats(
        clicks=totals(clicks, len(per_link)),
        opens=totals(opens, len({message_key(e.link_id) for e, _ in opens})),
        first_click_ms=min(times, default=None),
        last_click_ms=max(times, default=None),
        bot_reasons=breakdown(lambda n, e: sorted(set(n.bot_reasons))),  # type: ignore[arg-type]
        browsers=breakdown(lambda n, e: [n.browser_family]),
        platforms=breakdown(lambda n, e: [n.platform.value]),
        systems=breakdown(lambda n, e: [n.os_family]),
        countries=breakdown(lambda n, e: [n.country]),
        parts=breakdown(lambda n, e: [e.part]),
        top_links=tuple(
            LinkCount(link, urls.get(link), per_link[link], bot_per_link[link]) for link in top
        ),
        bucket=query.bucket,
        series=tuple(points),
    )


LINK_IDS = [f"{m}{n:02d}" for m in (A, B, C) for n in range(3)] + ["short"]
REASONS = [HEAD, MIMECAST, MICROSOFT]

random_events = st.lists(
    st.builds(
        event,
        st.integers(0, 40),  # few ids: duplicates are likely
        # Any time, or one of a few hours' middles: units with events in several hours;
        # or an hour's start, where queries start and end too (a link's first or last
        # click at the very start or end of a range).
        st.integers(T0 - 2 * HOUR, T0 + 50 * HOUR)
        | st.integers(-2, 50).map(lambda hour: T0 + hour * HOUR + 30 * MINUTE)
        | st.integers(-2, 50).map(lambda hour: T0 + hour * HOUR),
        st.sampled_from(["click", "open"]),
        st.sampled_from(LINK_IDS),
        st.sampled_from(["html", "text"]),
        st.sampled_from([None, "Chrome", "Firefox"]),
        st.sampled_from(list(Platform)),
        st.sampled_from([None, "Windows", "iOS"]),
        st.sampled_from([None, "DE", "US"]),
        st.lists(st.sampled_from(REASONS), max_size=3).map(tuple),
    ),
    max_size=60,
)
random_links = st.lists(
    st.builds(
        LinkRecord,
        st.sampled_from(LINK_IDS),
        st.sampled_from(["https://x.example/", "https://y.example/"]),
        tag=st.sampled_from([None, "news", "promo"]),
    ),
    max_size=8,
)
on_the_hour = st.integers(-3, 51).map(lambda hour: T0 + hour * HOUR)
random_queries = st.builds(
    StatsQuery,
    start_ms=st.none() | st.integers(T0 - 3 * HOUR, T0 + 51 * HOUR) | on_the_hour,
    end_ms=st.none() | st.integers(T0 - 3 * HOUR, T0 + 51 * HOUR) | on_the_hour,
    tag=st.none() | st.sampled_from(["news", "promo", ""]),
    message=st.none() | st.sampled_from([A, B, "short", "msg"]),
    link=st.none() | st.sampled_from(LINK_IDS),
    bucket=st.sampled_from(["hour", "day"]),
    top=st.integers(0, 4),
)


#: The top links' search, read a few candidates at a time (page, chunk) and giving up early
#: or never (how many raw clicks a candidate's look-up is worth), as well as as configured.
paging = st.sampled_from([(2_000, 250, 8), (2, 1, 1), (4, 3, 1), (3, 2, 1_000), (1, 1, 0)])


@contextmanager
def paged(page: int, chunk: int, lookup_cost: int) -> Iterator[None]:
    saved = (sqlcommon._PAGE, sqlcommon._CHUNK_OF_CANDIDATES, sqlcommon._LOOKUP_COST)
    sqlcommon._PAGE, sqlcommon._CHUNK_OF_CANDIDATES, sqlcommon._LOOKUP_COST = (
        page,
        chunk,
        max(lookup_cost, 1),
    )
    try:
        yield
    finally:
        sqlcommon._PAGE, sqlcommon._CHUNK_OF_CANDIDATES, sqlcommon._LOOKUP_COST = saved


#: What takes a database back to the schema of migration 1.
BEFORE_MIGRATION_2 = (
    "DROP INDEX link_totals_rank",
    "ALTER TABLE link_totals DROP COLUMN tag",
    "DROP TABLE unit_hours",
    "DROP TABLE unit_news",
    "DROP TABLE unit_returns",
    "DELETE FROM schema_version WHERE version = 2",
)


#: What takes a database back to the schema of migration 2.
BEFORE_MIGRATION_3 = (
    "DROP INDEX link_totals_rank",
    """
    CREATE INDEX link_totals_rank
        ON link_totals (kind, events DESC, link_id, bot_events, tag) WHERE events >= 2
    """,
    "DELETE FROM schema_version WHERE version = 3",
)


class PropertyMixin:
    """
    Random events, registries and queries: the store's stats equal a plain count.
    """

    def connection(self) -> Any:
        raise NotImplementedError()

    def ingest(self, db: Any, rows: Sequence[tuple[Event, Enrichment]]) -> IngestResult:
        raise NotImplementedError()

    def register(self, db: Any, links: Sequence[LinkRecord]) -> int:
        raise NotImplementedError()

    @settings(
        max_examples=60,
        deadline=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            # One test body for both back-ends; every example makes its own database.
            HealthCheck.differing_executors,
        ],
    )
    @given(random_events, random_events, random_links, random_links, random_queries, paging)
    def test_statsEqualACount(
        self,
        first: list[tuple[Event, Enrichment]],
        second: list[tuple[Event, Enrichment]],
        early: list[LinkRecord],
        late: list[LinkRecord],
        query: StatsQuery,
        pages: tuple[int, int, int],
    ) -> None:
        """
        Whatever the events, the links registered before or after them (retagging), and
        the filters, the stats equal a count of the matching events in plain Python; so
        do the top links however many candidates are read at a time, and whether or not
        their search gives up for a grouping of the raw clicks.
        """
        db = self.connection()
        try:
            self.register(db, early)
            accepted = self.ingest(db, first).accepted + self.ingest(db, second).accepted
            self.register(db, late)
            self.assertEqual(accepted, len({e.event_id for e, _ in first + second}))
            registry = {record.link_id: record for record in early + late}
            expected = reference(first + second, list(registry.values()), query)
            with paged(*pages):
                self.assertEqual(db.transaction(lambda: compute_stats(db, query)), expected)
        finally:
            db.close()

    @settings(
        max_examples=20,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.differing_executors],
    )
    @given(random_events, random_links, random_links, st.lists(random_queries, max_size=5))
    def test_migrationFillsUnits(
        self,
        rows: list[tuple[Event, Enrichment]],
        early: list[LinkRecord],
        late: list[LinkRecord],
        queries: list[StatsQuery],
    ) -> None:
        """
        A database made before migration 2 (its tables, indexes and column dropped again)
        is brought up to date at start-up, and the unit tables it fills answer as if every
        event had been counted at ingest.
        """
        db = self.connection()
        try:
            self.register(db, early)
            self.ingest(db, rows)
            self.register(db, late)
            for statement in BEFORE_MIGRATION_2:
                db.transaction(lambda statement=statement: db.execute(statement))
            self.assertEqual(db.transaction(lambda: migrate(db, 0)), [2])
            registry = {record.link_id: record for record in early + late}
            for query in queries:
                expected = reference(rows, list(registry.values()), query)
                self.assertEqual(db.transaction(lambda q=query: compute_stats(db, q)), expected)
        finally:
            db.close()

    def test_topLinkFirstClickAtRangeStart(self) -> None:
        """
        A link whose first click is at the very start of the range has all its clicks in
        it: the top links' search does not pass it over when it ties with the last of
        the best, and comes before it.
        """
        start = T0 + 10 * HOUR
        earlier, later = A + "01", A + "02"
        rows = [
            # The later link: one click before the range, two in it; read first, as it has
            # more clicks over all time.
            event(1, start - HOUR, "click", later),
            event(2, start + HOUR, "click", later),
            event(3, start + 2 * HOUR, "click", later),
            # The earlier link: as many clicks in the range, the first at its start.
            event(4, start, "click", earlier),
            event(5, start + 3 * HOUR, "click", earlier),
        ]
        query = StatsQuery(start_ms=start, end_ms=start + 5 * HOUR, top=1)
        db = self.connection()
        try:
            self.ingest(db, rows)
            with paged(2_000, 1, 1):
                found = db.transaction(lambda: compute_stats(db, query))
        finally:
            db.close()
        self.assertEqual(found.top_links, (LinkCount(earlier, None, 2, 0),))

    def test_migration3(self) -> None:
        """
        Migration 3 gives a database of migration 2 the rank index with first and last
        click times; the stats stay those of a count.
        """
        db = self.connection()
        try:
            self.ingest(db, EVENTS)
            for statement in BEFORE_MIGRATION_3:
                db.transaction(lambda statement=statement: db.execute(statement))
            self.assertNotIn("last_ms", self.rankIndex(db))
            self.assertEqual(db.transaction(lambda: migrate(db, 0)), [3])
            self.assertIn("last_ms", self.rankIndex(db))
            query = StatsQuery(start_ms=T0 + 15 * MINUTE, end_ms=T0 + 25 * HOUR + 1, top=2)
            self.assertEqual(
                db.transaction(lambda: compute_stats(db, query)), reference(EVENTS, [], query)
            )
        finally:
            db.close()

    def rankIndex(self, db: Any) -> str:
        """
        The definition of the rank index of C{link_totals}.
        """
        raise NotImplementedError()


class SQLiteStoreTests(StoreContractMixin, PropertyMixin, TestCase):
    def setUp(self) -> None:
        self.directory = FilePath(self.mktemp())
        self.path = self.directory.child("collector.sqlite")

    def makeStore(self) -> SQLiteStore:
        return SQLiteStore(self.path, reactor)

    def storedRow(self, event_id: str) -> dict[str, Any] | None:
        with sqlite3.connect(self.path.path) as connection:
            connection.row_factory = sqlite3.Row
            found = connection.execute("SELECT * FROM events WHERE event_id = ?", (event_id,))
            row = found.fetchone()
        return None if row is None else dict(row)

    def schemaVersions(self) -> list[int]:
        with sqlite3.connect(self.path.path) as connection:
            rows = connection.execute("SELECT version FROM schema_version ORDER BY version")
            return [version for (version,) in rows]

    def connection(self) -> Any:
        directory = FilePath(self.mktemp())
        directory.makedirs()
        db = sqlite._Connection(directory.child("property.sqlite").path, read_only=False)
        db.transaction(lambda: migrate(db, 0))
        return db

    def ingest(self, db: Any, rows: Sequence[tuple[Event, Enrichment]]) -> IngestResult:
        return sqlite.ingest_batch(db, rows)

    def rankIndex(self, db: Any) -> str:
        [(sql,)] = db.query("SELECT sql FROM sqlite_master WHERE name = 'link_totals_rank'")
        return str(sql)

    def register(self, db: Any, links: Sequence[LinkRecord]) -> int:
        return db.transaction(lambda: register(db, links))  # type: ignore[no-any-return]

    @run
    async def test_batchesAtOnce(self) -> None:
        """
        Batches given before any is answered (several routers posting at once) are each
        answered with their own counts, in order: an event of an earlier batch is a
        duplicate in a later one, whether they share a transaction (group commit) or not.
        The figures are those of the batches stored one after another.
        """
        store = await self.openStore(data=False)
        batches = [EVENTS[:3], [*EVENTS[2:6], EVENTS[0]], EVENTS[:3], [], EVENTS]
        answers = [store.ingest(rows) for rows in batches]
        results = [await answer for answer in answers]
        self.assertEqual(
            results,
            [
                IngestResult(3, 0),
                IngestResult(3, 2),
                IngestResult(0, 3),
                IngestResult(0, 0),
                IngestResult(2, 6),
            ],
        )
        one_by_one = SQLiteStore(FilePath(self.mktemp()).child("c.sqlite"), reactor)
        await one_by_one.open()
        self.addCleanup(one_by_one.close)
        for rows in batches:
            await one_by_one.ingest(rows)
        self.assertEqual(await self.stats(store), await self.stats(one_by_one))

    def test_failedBatchAlone(self) -> None:
        """
        A batch that cannot be stored fails alone; the others of its transaction are stored
        and counted.
        """
        db = self.connection()
        event, enrichment = EVENTS[5]
        unstorable = [EVENTS[4], (attrs.evolve(event, sequence=object()), enrichment)]
        results = sqlite.ingest_batches(db, [EVENTS[:3], unstorable, EVENTS[3:5]])
        self.assertEqual(results[0], IngestResult(3, 0))
        self.assertIsInstance(results[1], Failure)
        self.assertEqual(results[2], IngestResult(2, 0))
        totals = db.transaction(lambda: compute_stats(db, StatsQuery()))
        # Nothing of the failed batch is left, not even its storable event.
        self.assertEqual((totals.clicks.total, totals.opens.total), (3, 2))
        db.close()

    def test_failedRollupAlone(self) -> None:
        """
        When the rollups of a group of batches fail, the group's transaction is undone and
        each batch is stored in one of its own: only the batch that fails alone is refused.
        """
        db = self.connection()
        poison = EVENTS[4][0].event_id
        plain = sqlite.record_accepted

        def record_accepted(db: Any, rows: Any) -> None:
            if any(row[0] == poison for row in rows):
                raise sqlite3.OperationalError("the rollups of this batch cannot be written")
            plain(db, rows)

        self.patch(sqlite, "record_accepted", record_accepted)
        results = sqlite.ingest_batches(db, [EVENTS[:3], [EVENTS[4]], [EVENTS[3], EVENTS[5]]])
        self.assertEqual(results[0], IngestResult(3, 0))
        self.assertIsInstance(results[1], Failure)
        self.assertEqual(results[2], IngestResult(2, 0))
        totals = db.transaction(lambda: compute_stats(db, StatsQuery()))
        self.assertEqual(totals.clicks.total + totals.opens.total, 5)
        ids = {event_id for (event_id,) in db.query("SELECT event_id FROM events")}
        self.assertNotIn(poison, ids)
        db.close()

    @run
    async def test_permissions(self) -> None:
        """
        The database is created 0600 in a directory made 0700; a directory others may
        enter is refused with the fix in the message.
        """
        await self.openStore(data=False)
        self.assertEqual(stat.S_IMODE(os.stat(self.directory.path).st_mode), 0o700)
        for name in ("collector.sqlite", "collector.sqlite-wal"):
            mode = stat.S_IMODE(os.stat(self.directory.child(name).path).st_mode)
            self.assertEqual(mode, 0o600, name)
        open_directory = FilePath(self.mktemp())
        open_directory.makedirs()
        open_directory.chmod(0o755)
        store = SQLiteStore(open_directory.child("c.sqlite"), reactor)
        error = await self.assertFailure(store.open(), StoreError)
        self.assertIn(f"chmod 700 {open_directory.path}", str(error))
        self.assertFalse(store._writer_pool.started)


_server: PostgresServer | None = None


def postgres_server() -> PostgresServer:
    """
    This process's PostgreSQL server, started on first use and stopped at exit; under CI a
    missing server fails the test instead of skipping it.
    """
    global _server
    if _server is None:
        try:
            server = PostgresServer()
            server.start()
        except PostgresUnavailable as reason:
            if os.environ.get("CI") == "true":
                raise
            raise SkipTest(f"no PostgreSQL server to test against: {reason}") from None
        atexit.register(server.stop)
        _server = server
    return _server


class PostgresStoreTests(StoreContractMixin, PropertyMixin, TestCase):
    def setUp(self) -> None:
        self.dsn = postgres_server().create_database()

    def makeStore(self) -> PostgresStore:
        return PostgresStore(self.dsn, reactor)

    def storedRow(self, event_id: str) -> dict[str, Any] | None:
        with psycopg.connect(self.dsn, row_factory=psycopg.rows.dict_row) as connection:
            return connection.execute(
                "SELECT * FROM events WHERE event_id = %s", (event_id,)
            ).fetchone()

    def schemaVersions(self) -> list[int]:
        with psycopg.connect(self.dsn) as connection:
            rows = connection.execute("SELECT version FROM schema_version ORDER BY version")
            return [version for (version,) in rows]

    def connection(self) -> Any:
        db = postgres._Connection(postgres_server().create_database())
        db.transaction(lambda: migrate(db, 0))
        return db

    def ingest(self, db: Any, rows: Sequence[tuple[Event, Enrichment]]) -> IngestResult:
        return postgres.ingest_batch(db, rows)

    def rankIndex(self, db: Any) -> str:
        [(sql,)] = db.query("SELECT indexdef FROM pg_indexes WHERE indexname = 'link_totals_rank'")
        return str(sql)

    def register(self, db: Any, links: Sequence[LinkRecord]) -> int:
        return db.transaction(lambda: register(db, links))  # type: ignore[no-any-return]

    @run
    async def test_twoCollectors(self) -> None:
        """
        Two collectors sharing the database, sent the same batches at once, store each
        event once: together they accept every event exactly once.
        """
        first = await self.openStore(data=False)
        second = await self.openStore(data=False)
        batches = [EVENTS[:5], EVENTS[3:], EVENTS]
        results = []
        for batch in batches:
            answers = [first.ingest(batch), second.ingest(batch)]
            for answer in answers:
                results.append(await answer)
        self.assertEqual(sum(r.accepted for r in results), len(EVENTS))
        self.assertEqual(sum(r.duplicates for r in results), 2 * (5 + 5 + 8) - len(EVENTS))
        result = await self.stats(first)
        self.assertEqual((result.clicks.total, result.opens.total), (5, 3))
