# -*- test-case-name: tests.test_store_contract -*-
"""
The store's schema, as numbered migrations both back-ends apply in order at start-up.

The logical schema is one; a migration is a list of statement templates whose few dialect
words are filled in per back-end (C{{link_text}}: LinkIDs compare byte by byte, which the
message filter's prefix range relies on; C{{compact}}: a table clustered on its key).

Tables:
  - C{events}: one row an event, raw facts and enrichment side by side (C{bot} is 1 when the
    event has bot reasons, which are kept as a JSON array);
  - C{links}: the link registry, C{tag} C{''} when none;
  - C{daily} and C{hourly}: counts by UTC day (or hour), tag, kind, bot or human, and one
    breakdown dimension and its value (dimension C{all} holds the totals), kept up to date
    at ingest; C{hourly_totals}: the totals alone by hour, for the time series;
  - C{link_totals}: per link and kind, counts, first and last time and the link's tag,
    ranked by count for the top links (one index for every tag, and only of links clicked
    more than once: each index a row's count is in costs ingest a write an event), the
    index holding the first and last times too;
  - C{unit_hours}: the hours in which a unit had events, with their counts, where a unit of
    series C{click} is a LinkID (under its tag), of series C{open} a message under one tag
    (series C{open-any}, a message under every tag, takes the union of its tags' rows);
  - C{unit_news} and C{unit_returns}: per series, tag and hour, how many units had their
    first event ever in that hour, and how many came back after their previous hour with
    events, C{previous}. The distinct units of the whole hours C{[a, b)} are the news of
    those hours plus the returns in them whose previous hour is before C{a}: exact unique
    counts for any range from a few rows an hour.
"""

from __future__ import annotations

import attrs

__all__ = ["MIGRATIONS", "POSTGRES", "SQLITE", "Dialect", "Migration"]


@attrs.frozen
class Dialect:
    """
    The words in which a back-end's SQL differs from the other's.
    """

    name: str
    link_text: str
    compact: str
    least: str
    greatest: str
    #: Whether other writers may hold row locks at the same time (they may in PostgreSQL,
    #: where collectors lock rollup rows in one order so as not to deadlock; SQLite has one
    #: writer a file, which need not pay for sorting).
    concurrent_writers: bool


SQLITE = Dialect("sqlite", "TEXT", " WITHOUT ROWID", "min", "max", concurrent_writers=False)
POSTGRES = Dialect(
    "postgresql", 'TEXT COLLATE "C"', "", "LEAST", "GREATEST", concurrent_writers=True
)


@attrs.frozen
class Migration:
    version: int
    description: str
    templates: tuple[str, ...]
    #: The name of the step that fills the new tables from the events already stored
    #: (L{sqlcommon.migrate} runs it after the statements).
    backfill: str | None = None

    def statements(self, dialect: Dialect) -> list[str]:
        return [
            template.format(link_text=dialect.link_text, compact=dialect.compact)
            for template in self.templates
        ]


SCHEMA_VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_version ("
    " version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_ms BIGINT NOT NULL)"
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "events, link registry, hourly and per-link rollups",
        (
            """
            CREATE TABLE events (
                event_id TEXT NOT NULL PRIMARY KEY,
                sequence BIGINT NOT NULL,
                router TEXT NOT NULL,
                ts_ms BIGINT NOT NULL,
                kind TEXT NOT NULL,
                link_id {link_text} NOT NULL,
                key_id TEXT NOT NULL,
                part TEXT NOT NULL,
                issued_at BIGINT NOT NULL,
                method TEXT NOT NULL,
                ip TEXT,
                user_agent TEXT NOT NULL,
                browser_family TEXT,
                browser_version TEXT,
                os_family TEXT,
                os_version TEXT,
                device TEXT,
                platform TEXT NOT NULL,
                country TEXT,
                region TEXT,
                city TEXT,
                network TEXT,
                bot SMALLINT NOT NULL,
                bot_reasons TEXT NOT NULL
            )
            """,
            "CREATE INDEX events_kind_time ON events (kind, ts_ms, link_id, bot)",
            "CREATE INDEX events_link_time ON events (link_id, ts_ms, kind, bot)",
            """
            CREATE TABLE links (
                link_id {link_text} NOT NULL PRIMARY KEY,
                url TEXT NOT NULL,
                message_id TEXT,
                part TEXT,
                position INTEGER,
                tag TEXT NOT NULL,
                recipient_hash TEXT
            )
            """,
            "CREATE INDEX links_tag ON links (tag, link_id)",
            """
            CREATE TABLE hourly (
                hour BIGINT NOT NULL,
                tag TEXT NOT NULL,
                kind TEXT NOT NULL,
                bot SMALLINT NOT NULL,
                dimension TEXT NOT NULL,
                value TEXT NOT NULL,
                events BIGINT NOT NULL,
                PRIMARY KEY (hour, tag, kind, bot, dimension, value)
            ){compact}
            """,
            """
            CREATE TABLE daily (
                day BIGINT NOT NULL,
                tag TEXT NOT NULL,
                kind TEXT NOT NULL,
                bot SMALLINT NOT NULL,
                dimension TEXT NOT NULL,
                value TEXT NOT NULL,
                events BIGINT NOT NULL,
                PRIMARY KEY (day, tag, kind, bot, dimension, value)
            ){compact}
            """,
            """
            CREATE TABLE hourly_totals (
                hour BIGINT NOT NULL,
                tag TEXT NOT NULL,
                kind TEXT NOT NULL,
                bot SMALLINT NOT NULL,
                events BIGINT NOT NULL,
                PRIMARY KEY (hour, tag, kind, bot)
            ){compact}
            """,
            """
            CREATE TABLE link_totals (
                kind TEXT NOT NULL,
                link_id {link_text} NOT NULL,
                events BIGINT NOT NULL,
                bot_events BIGINT NOT NULL,
                first_ms BIGINT NOT NULL,
                last_ms BIGINT NOT NULL,
                PRIMARY KEY (kind, link_id)
            ){compact}
            """,
        ),
    ),
    Migration(
        2,
        "unit hours, news and returns for unique counts; links ranked by clicks",
        (
            """
            CREATE TABLE unit_hours (
                series TEXT NOT NULL,
                unit {link_text} NOT NULL,
                tag TEXT NOT NULL,
                hour BIGINT NOT NULL,
                events BIGINT NOT NULL,
                bot_events BIGINT NOT NULL,
                PRIMARY KEY (unit, series, tag, hour)
            ){compact}
            """,
            """
            CREATE TABLE unit_news (
                series TEXT NOT NULL,
                hour BIGINT NOT NULL,
                tag TEXT NOT NULL,
                units BIGINT NOT NULL,
                PRIMARY KEY (series, hour, tag)
            ){compact}
            """,
            """
            CREATE TABLE unit_returns (
                series TEXT NOT NULL,
                hour BIGINT NOT NULL,
                previous BIGINT NOT NULL,
                tag TEXT NOT NULL,
                units BIGINT NOT NULL,
                PRIMARY KEY (series, hour, previous, tag)
            ){compact}
            """,
            "ALTER TABLE link_totals ADD COLUMN tag TEXT NOT NULL DEFAULT ''",
            """
            UPDATE link_totals SET tag = COALESCE(
                (SELECT l.tag FROM links l WHERE l.link_id = link_totals.link_id), '')
            """,
            """
            CREATE INDEX link_totals_rank
                ON link_totals (kind, events DESC, link_id, bot_events, tag) WHERE events >= 2
            """,
        ),
        backfill="units",
    ),
    Migration(
        3,
        "links ranked by clicks with their first and last click times",
        (
            # The top links of a time range skip, in the index alone, the links whose
            # clicks all fall outside it (see sqlcommon._walk); the index is written as
            # often as before, its key (clicks) changing with every click anyway.
            "DROP INDEX link_totals_rank",
            """
            CREATE INDEX link_totals_rank ON link_totals
                (kind, events DESC, link_id, bot_events, tag, first_ms, last_ms)
                WHERE events >= 2
            """,
        ),
    ),
)
