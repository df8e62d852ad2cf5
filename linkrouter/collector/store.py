# -*- test-case-name: tests.test_store_contract -*-
"""
Where the collector keeps events, enrichment and the link registry, and how it asks for stats.

Two implementations share this interface and one contract test suite: L{SQLiteStore
<linkrouter.collector.sqlite.SQLiteStore>}, the embedded default, and L{PostgresStore
<linkrouter.collector.postgres.PostgresStore>} for several collectors sharing one database.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import attrs
from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface  # type: ignore[import-untyped]

from .model import Enrichment, Event, IngestResult, LinkRecord

__all__ = [
    "Bucket",
    "IEventStore",
    "KindTotals",
    "LinkCount",
    "Point",
    "Stats",
    "StatsQuery",
    "StoreError",
    "Tally",
]

Bucket = Literal["hour", "day"]


class StoreError(Exception):
    """
    The store cannot be opened as configured; the message says what to change.
    """


@attrs.frozen
class StatsQuery:
    """
    Which events the stats describe; every filter given must hold.

    @ivar start_ms: the first millisecond counted (UTC, since the epoch), or C{None}.
    @ivar end_ms: the first millisecond I{not} counted, or C{None}.
    @ivar tag: only links registered with this tag (links never registered have none).
    @ivar message: only links of this message (see L{model.message_key}).
    @ivar link: only this LinkID.
    @ivar bucket: the time series' bucket, UTC hours or days.
    @ivar top: how many links the top-links list holds.
    """

    start_ms: int | None = None
    end_ms: int | None = None
    tag: str | None = None
    message: str | None = None
    link: str | None = None
    bucket: Bucket = "hour"
    top: int = 10


@attrs.frozen
class KindTotals:
    """
    The totals of one kind of event (clicks or opens).

    @ivar unique: distinct LinkIDs clicked, or distinct messages opened.
    @ivar bot: events with at least one bot reason; C{human} are the others.
    """

    total: int
    unique: int
    human: int
    bot: int

    def to_json(self) -> dict[str, int]:
        return {"total": self.total, "unique": self.unique, "human": self.human, "bot": self.bot}


@attrs.frozen
class Tally:
    """
    The events that share one value of a breakdown; C{value} C{None} is "unknown".
    """

    value: str | None
    clicks: int
    opens: int
    bot_clicks: int
    bot_opens: int

    def to_json(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "clicks": self.clicks,
            "opens": self.opens,
            "bot_clicks": self.bot_clicks,
            "bot_opens": self.bot_opens,
        }


@attrs.frozen
class LinkCount:
    """
    One of the most clicked links, with its destination if it was registered.
    """

    link_id: str
    url: str | None
    clicks: int
    bot_clicks: int

    def to_json(self) -> dict[str, Any]:
        return {
            "link": self.link_id,
            "url": self.url,
            "clicks": self.clicks,
            "bot_clicks": self.bot_clicks,
        }


@attrs.frozen
class Point:
    """
    One bucket of the time series, starting at C{start_ms} (UTC).
    """

    start_ms: int
    clicks: int
    opens: int
    bot_clicks: int
    bot_opens: int

    def to_json(self) -> dict[str, int]:
        return {
            "start": self.start_ms,
            "clicks": self.clicks,
            "opens": self.opens,
            "bot_clicks": self.bot_clicks,
            "bot_opens": self.bot_opens,
        }


@attrs.frozen
class Stats:
    """
    What the events selected by a L{StatsQuery} add up to.

    L{to_json} gives this shape (times in milliseconds since the epoch, UTC)::

        {
          "clicks": {"total": int, "unique": int, "human": int, "bot": int},
          "opens":  {"total": int, "unique": int, "human": int, "bot": int},
          "first_click": int | null,
          "last_click": int | null,
          "bot_reasons": [TALLY, ...],
          "browsers": [TALLY, ...],
          "platforms": [TALLY, ...],
          "systems": [TALLY, ...],
          "countries": [TALLY, ...],
          "parts": [TALLY, ...],
          "top_links": [{"link": str, "url": str | null, "clicks": int, "bot_clicks": int}],
          "series": {"bucket": "hour" | "day",
                     "points": [{"start": int, "clicks": int, "opens": int,
                                 "bot_clicks": int, "bot_opens": int}, ...]}
        }

    where TALLY is C{{"value": str | null, "clicks": int, "opens": int, "bot_clicks": int,
    "bot_opens": int}} and C{null} means unknown. Unique clicks are distinct LinkIDs clicked;
    unique opens are distinct messages opened. A bot event is one with at least one bot reason
    (an event with several reasons counts once under each). Tallies are sorted by events,
    most first, then by value; top links by clicks, then LinkID; the series holds only the
    buckets that have events, oldest first.
    """

    clicks: KindTotals
    opens: KindTotals
    first_click_ms: int | None
    last_click_ms: int | None
    bot_reasons: tuple[Tally, ...]
    browsers: tuple[Tally, ...]
    platforms: tuple[Tally, ...]
    systems: tuple[Tally, ...]
    countries: tuple[Tally, ...]
    parts: tuple[Tally, ...]
    top_links: tuple[LinkCount, ...]
    bucket: Bucket
    series: tuple[Point, ...]

    def to_json(self) -> dict[str, Any]:
        """
        The JSON-ready form documented above.
        """

        def tallies(values: tuple[Tally, ...]) -> list[dict[str, Any]]:
            return [tally.to_json() for tally in values]

        return {
            "clicks": self.clicks.to_json(),
            "opens": self.opens.to_json(),
            "first_click": self.first_click_ms,
            "last_click": self.last_click_ms,
            "bot_reasons": tallies(self.bot_reasons),
            "browsers": tallies(self.browsers),
            "platforms": tallies(self.platforms),
            "systems": tallies(self.systems),
            "countries": tallies(self.countries),
            "parts": tallies(self.parts),
            "top_links": [link.to_json() for link in self.top_links],
            "series": {
                "bucket": self.bucket,
                "points": [point.to_json() for point in self.series],
            },
        }


class IEventStore(Interface):  # type: ignore[misc]
    """
    The collector's storage: raw events with their enrichment, the link registry, and stats.

    Every method runs its database work off the reactor thread and answers with a Deferred.
    """

    description: str = Attribute("What the store is, for logs (never a password).")

    def open() -> Deferred[None]:  # type: ignore[misc, empty-body]
        """
        Connect and bring the schema up to date (migrations run once, in order, and are safe
        to run from several collectors starting at once).
        """

    def close() -> Deferred[None]:  # type: ignore[misc, empty-body]
        """
        Finish the work in hand, close the connections and stop the store's threads.
        """

    def ingest(rows: Sequence[tuple[Event, Enrichment]]) -> Deferred[IngestResult]:  # type: ignore[empty-body]
        """
        Store the new events of C{rows}; an event id stored before, or seen earlier in
        C{rows}, is counted as a duplicate and not stored again.

        The Deferred fires only once the accepted events are durable: an acknowledged batch
        survives a crash, and sending it again yields only duplicates.
        """

    def register_links(records: Sequence[LinkRecord]) -> Deferred[int]:  # type: ignore[empty-body]
        """
        Register (or update) LinkIDs' destinations and tags; registering the same record
        again changes nothing. Events already stored are counted under a link's new tag.

        @return: a Deferred firing with how many links were new or changed.
        """

    def stats(query: StatsQuery) -> Deferred[Stats]:  # type: ignore[empty-body]
        """
        Add up the events C{query} selects.
        """
