# -*- test-case-name: tests.test_store_contract -*-
"""
What both SQL back-ends do alike: rows for events, rollups kept at ingest, retagging, stats.

The functions here run on a store's thread inside one transaction, through a L{Database}
that speaks C{?} placeholders; the back-ends differ only in how they connect, how they
insert a batch and learn which events were new, and how they lock.

Stats read the C{daily} rollup for the whole days of the range, C{hourly} for the whole hours
of the partial days at its edges, and the raw events for the partial hours at its ends, so
they are exact to the millisecond yet read few rows. Filters on
a message or a link read raw events through the LinkID index: those select few events.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from itertools import compress, repeat
from typing import Any, NamedTuple, Protocol

import orjson

from .migrations import MIGRATIONS, SCHEMA_VERSION_TABLE, Dialect
from .model import MESSAGE_KEY_LENGTH, Enrichment, Event, LinkRecord, message_key
from .store import KindTotals, LinkCount, Point, Stats, StatsQuery, Tally
from .units import Entries, UnitKey, entry_changes, unit_keys

__all__ = [
    "EVENT_COLUMNS",
    "HOUR_MS",
    "Database",
    "Fact",
    "event_row",
    "migrate",
    "record_accepted",
    "register",
    "rollup",
    "stats",
]

HOUR_MS = 3_600_000
CHUNK = 2_000  # parameters of one IN (...) list: well under either back-end's limit

EVENT_COLUMNS = (
    "event_id",
    "sequence",
    "router",
    "ts_ms",
    "kind",
    "link_id",
    "key_id",
    "part",
    "issued_at",
    "method",
    "ip",
    "user_agent",
    "browser_family",
    "browser_version",
    "os_family",
    "os_version",
    "device",
    "platform",
    "country",
    "region",
    "city",
    "network",
    "bot",
    "bot_reasons",
)

_FACT_COLUMNS = (
    "ts_ms",
    "link_id",
    "kind",
    "part",
    "browser_family",
    "platform",
    "os_family",
    "country",
    "bot_reasons",
)
_FACT_INDEXES = tuple(EVENT_COLUMNS.index(name) for name in _FACT_COLUMNS)
_DIMENSIONS = ("browser", "platform", "os", "country", "part")


class Database(Protocol):
    """
    One connection inside a transaction, with C{?} placeholders whatever the back-end.
    """

    dialect: Dialect

    def query(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> None: ...

    def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...


class Fact(NamedTuple):
    """
    What the rollups count of one event.
    """

    ts_ms: int
    link_id: str
    kind: str
    part: str
    browser: str | None
    platform: str
    os: str | None
    country: str | None
    bot_reasons: str  # a JSON array, as stored


def event_row(event: Event, enrichment: Enrichment) -> tuple[Any, ...]:
    """
    The C{events} row of C{event}, in L{EVENT_COLUMNS} order.
    """
    reasons = enrichment.bot_reasons
    return (
        event.event_id,
        event.sequence,
        event.router,
        event.timestamp_ms,
        event.kind,
        event.link_id,
        event.key_id,
        event.part,
        event.issued_at,
        event.method,
        event.ip,
        event.user_agent,
        enrichment.browser_family,
        enrichment.browser_version,
        enrichment.os_family,
        enrichment.os_version,
        enrichment.device,
        # The member's own attribute: C{.value} is a descriptor call, dear once an event.
        enrichment.platform._value_,
        enrichment.country,
        enrichment.region,
        enrichment.city,
        enrichment.network,
        1 if reasons else 0,
        _reasons_text(reasons) if reasons else "[]",
    )


@lru_cache(maxsize=1024)
def _reasons_text(reasons: tuple[str, ...]) -> str:
    """
    The stored JSON array of C{reasons}: a batch repeats a few combinations, encoded once.
    """
    return orjson.dumps(list(reasons)).decode("ascii")


_TIME, _LINK_ID, _KIND, _BOT_REASONS = (
    EVENT_COLUMNS.index(name) for name in ("ts_ms", "link_id", "kind", "bot_reasons")
)


def _reasons(text: str) -> list[str]:
    """
    The distinct reasons in a stored JSON array C{text}, sorted.
    """
    if text == "[]":
        return []
    return sorted(set(orjson.loads(text)))


RollupKey = tuple[int, str, str, int, str, str]  # hour, tag, kind, bot, dimension, value


def rollup(facts: Iterable[tuple[Fact, str]], sign: int = 1) -> Counter[RollupKey]:
    """
    The C{hourly} counts that C{facts} (each with its link's tag) add, times C{sign}.
    """
    tagged = list(facts)
    if not tagged:
        return Counter()
    columns = list(zip(*(fact for fact, _ in tagged), strict=True))
    return _rollup_columns(columns, [tag for _, tag in tagged], sign)


def _rollup_columns(
    columns: Sequence[Sequence[Any]], tags: Sequence[str], sign: int
) -> Counter[RollupKey]:
    """
    L{rollup} of the facts given as columns (in L{_FACT_COLUMNS} order) and their tags.

    Events are counted by distinct key in C{Counter}'s C loop, one pass a dimension over
    zipped columns, and only the distinct keys are spread into rollup keys in Python: a
    batch's events share few keys, and ingest spends its time here otherwise. Reasons are
    parsed once a distinct JSON text.
    """
    times, _, kinds, parts, browsers, platforms, systems, countries, reasons_texts = columns
    reasons_of = {text: _reasons(text) for text in set(reasons_texts)}
    bot_of = {text: 1 if reasons else 0 for text, reasons in reasons_of.items()}
    bases = list(
        zip(
            [ts_ms // HOUR_MS for ts_ms in times],
            tags,
            kinds,
            map(bot_of.__getitem__, reasons_texts),
            strict=True,
        )
    )
    counts: Counter[RollupKey] = Counter()
    for base, count in Counter(bases).items():
        counts[(*base, "all", "")] += sign * count
    per_dimension = (
        ("browser", browsers),
        ("platform", platforms),
        ("os", systems),
        ("country", countries),
        ("part", parts),
    )
    for dimension, values in per_dimension:
        for (base, value), count in Counter(zip(bases, values, strict=True)).items():
            # None and "" are one value (unknown): the += merges them.
            counts[(*base, dimension, value or "")] += sign * count
    for (base, text), count in Counter(zip(bases, reasons_texts, strict=True)).items():
        for reason in reasons_of[text]:
            counts[(*base, "reason", reason)] += sign * count
    return counts


def _chunks(values: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), CHUNK):
        yield values[start : start + CHUNK]


def _marks(count: int) -> str:
    return ", ".join("?" * count)


def _tags(db: Database, link_ids: Sequence[str]) -> dict[str, str]:
    tags: dict[str, str] = {}
    for chunk in _chunks(link_ids):
        sql = f"SELECT link_id, tag FROM links WHERE link_id IN ({_marks(len(chunk))})"
        tags.update(db.query(sql, chunk))
    return tags


# The rollup columns' types, for PostgreSQL's arrays.
_COLUMN_TYPES = {
    "hour": "bigint",
    "day": "bigint",
    "tag": "text",
    "kind": "text",
    "bot": "smallint",
    "dimension": "text",
    "value": "text",
    "events": "bigint",
    "link_id": "text",
    "bot_events": "bigint",
    "first_ms": "bigint",
    "last_ms": "bigint",
    "series": "text",
    "unit": "text",
    "previous": "bigint",
    "units": "bigint",
}


def _insert_many(
    db: Database, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]], conflict: str
) -> None:
    """
    Insert C{rows} into C{table}, C{conflict} saying what a row whose key is there does.

    PostgreSQL takes them as one array a column in one statement: row by row, a batch's
    thousands of rollup rows cost a round trip each. (The rows' keys are distinct, as one
    statement must not update a row twice.)
    """
    if not rows:
        return
    names = ", ".join(columns)
    if db.dialect.name == "postgresql":
        arrays = ", ".join(f"?::{_COLUMN_TYPES[name]}[]" for name in columns)
        db.execute(
            f"INSERT INTO {table} ({names}) SELECT * FROM unnest({arrays}) {conflict}",
            [list(column) for column in zip(*rows, strict=True)],
        )
    else:
        db.execute_many(
            f"INSERT INTO {table} ({names}) VALUES ({_marks(len(columns))}) {conflict}", rows
        )


def _upsert(
    db: Database,
    table: str,
    key: tuple[str, ...],
    rows: list[tuple[Any, ...]],
    counts: tuple[str, ...] = ("events",),
) -> None:
    additions = ", ".join(f"{name} = {table}.{name} + excluded.{name}" for name in counts)
    _insert_many(
        db,
        table,
        (*key, *counts),
        rows,
        f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {additions}",
    )


_BREAKDOWN_KEY = ("tag", "kind", "bot", "dimension", "value")


def _apply_rollup(db: Database, counts: Counter[RollupKey]) -> None:
    daily: Counter[RollupKey] = Counter()
    totals: Counter[tuple[int, str, str, int]] = Counter()
    for (hour, tag, kind, bot, dimension, value), count in counts.items():
        daily[(hour // 24, tag, kind, bot, dimension, value)] += count
        if dimension == "all":
            totals[(hour, tag, kind, bot)] += count
    ordered = db.dialect.concurrent_writers
    _upsert(db, "hourly", ("hour", *_BREAKDOWN_KEY), _rows(counts, ordered))
    _upsert(db, "daily", ("day", *_BREAKDOWN_KEY), _rows(daily, ordered))
    _upsert(db, "hourly_totals", ("hour", "tag", "kind", "bot"), _rows(totals, ordered))


def _rows(counts: Counter[Any], ordered: bool) -> list[tuple[Any, ...]]:
    """
    The upsert rows of C{counts}; C{ordered}, so that collectors sharing a database lock
    rollup rows in one order.
    """
    items = sorted(counts.items()) if ordered else counts.items()
    return [(*key, count) for key, count in items if count]


def record_accepted(db: Database, rows: Sequence[Sequence[Any]]) -> None:
    """
    Add the events C{rows}, just inserted, to the rollups.

    The rows are turned into columns once, and counted column by column (see
    L{_rollup_columns}): Python work an event is what this costs beside the SQL.
    """
    if not rows:
        return
    columns = list(zip(*rows, strict=True))
    times, link_ids, kinds = columns[_TIME], columns[_LINK_ID], columns[_KIND]
    tag_of = _tags(db, sorted(set(link_ids)))
    tags = list(map(tag_of.get, link_ids, repeat("")))
    _apply_rollup(db, _rollup_columns([columns[i] for i in _FACT_INDEXES], tags, 1))
    bot_of = {text: 0 if text == "[]" else 1 for text in set(columns[_BOT_REASONS])}
    bots = list(map(bot_of.__getitem__, columns[_BOT_REASONS]))
    _add_units(
        db,
        _count_unit_hours(kinds, link_ids, tags, [ts_ms // HOUR_MS for ts_ms in times], bots),
    )
    totals = _link_totals(kinds, link_ids, times, bots)
    least, greatest = db.dialect.least, db.dialect.greatest
    _insert_many(
        db,
        "link_totals",
        ("kind", "link_id", "events", "bot_events", "first_ms", "last_ms", "tag"),
        [
            (*key, *total, tag_of.get(key[1], ""))
            for key, total in (
                sorted(totals.items()) if db.dialect.concurrent_writers else totals.items()
            )
        ],
        "ON CONFLICT (kind, link_id) DO UPDATE SET"
        " events = link_totals.events + excluded.events,"
        " bot_events = link_totals.bot_events + excluded.bot_events,"
        f" first_ms = {least}(link_totals.first_ms, excluded.first_ms),"
        f" last_ms = {greatest}(link_totals.last_ms, excluded.last_ms)",
    )


def _link_totals(
    kinds: Sequence[str], link_ids: Sequence[str], times: Sequence[int], bots: Sequence[int]
) -> dict[tuple[str, str], tuple[int, int, int, int]]:
    """
    The events, bot events, first and last time of each (kind, LinkID) of the events given
    as columns, counted in C{Counter}'s C loop and ordered by C{sorted}'s rather than
    compared one event at a time.
    """
    keys = list(zip(kinds, link_ids, strict=True))
    events = Counter(keys)
    bot_events = Counter(compress(keys, bots))
    # By time: a key's last time is the last one a dict of them keeps, its first the last
    # of the reversed order.
    order = sorted(range(len(keys)), key=times.__getitem__)
    last_ms = dict(zip(map(keys.__getitem__, order), map(times.__getitem__, order), strict=True))
    order.reverse()
    first_ms = dict(zip(map(keys.__getitem__, order), map(times.__getitem__, order), strict=True))
    return {
        key: (count, bot_events[key], first_ms[key], last_ms[key]) for key, count in events.items()
    }


UnitHours = dict[UnitKey, dict[int, list[int]]]  # hour: [events, bot events]
_UNIT_HOURS_KEY = ("series", "unit", "tag", "hour")


def _unit_hours(events: Iterable[tuple[str, str, str, int, bool]]) -> UnitHours:
    """
    The hours, with their counts, of the units that C{events} (kind, LinkID, tag, time, bot)
    count towards.
    """
    listed = list(events)
    if not listed:
        return {}
    kinds, link_ids, tags, times, bots = zip(*listed, strict=True)
    return _count_unit_hours(kinds, link_ids, tags, [ts_ms // HOUR_MS for ts_ms in times], bots)


def _count_unit_hours(
    kinds: Sequence[str],
    link_ids: Sequence[str],
    tags: Sequence[str],
    hours: Sequence[int],
    bots: Sequence[int | bool],
) -> UnitHours:
    """
    L{_unit_hours} of events given as columns, with their hours: identical events are
    counted together first, in C.
    """
    found: UnitHours = {}
    together = Counter(zip(kinds, link_ids, tags, hours, bots, strict=True))
    for (kind, link_id, tag, hour, bot), count in together.items():
        for key in unit_keys(kind, link_id, tag):
            by_hour = found.get(key)
            if by_hour is None:
                found[key] = {hour: [count, count if bot else 0]}
                continue
            counts = by_hour.get(hour)
            if counts is None:
                by_hour[hour] = [count, count if bot else 0]
            else:
                counts[0] += count
                counts[1] += count if bot else 0
    return found


_NO_HOURS: frozenset[int] = frozenset()


def _stored_hours(db: Database, keys: Iterable[UnitKey]) -> dict[UnitKey, set[int]]:
    """
    The hours stored in C{unit_hours} for those of C{keys} that have any; a message's hours
    under every tag (series C{open-any}) are those of its opens under each tag.

    Keys with no hours are left out rather than given an empty set each: most units of a
    batch are new, and thousands of empty sets cost more than the look-ups.
    """
    wanted = keys if isinstance(keys, (set, dict)) else set(keys)
    by_series: dict[str, set[str]] = {}
    for series, unit, _ in wanted:
        by_series.setdefault("open" if series == "open-any" else series, set()).add(unit)
    stored: dict[UnitKey, set[int]] = {}
    for series, units in by_series.items():
        for chunk in _chunks(sorted(units)):
            sql = (
                "SELECT unit, tag, hour FROM unit_hours"
                f" WHERE series = ? AND unit IN ({_marks(len(chunk))})"
            )
            for unit, tag, hour in db.query(sql, [series, *chunk]):
                for key in ((series, unit, tag), ("open-any", unit, "")):
                    if key in wanted:
                        hours = stored.get(key)
                        if hours is None:
                            stored[key] = {int(hour)}
                        else:
                            hours.add(int(hour))
    return stored


def _apply_entries(db: Database, changes: Entries) -> None:
    news: Counter[tuple[str, int, str]] = Counter()
    returns: Counter[tuple[str, int, int, str]] = Counter()
    for (series, tag, hour, previous), count in changes.items():
        if previous is None:
            news[(series, hour, tag)] += count
        else:
            returns[(series, hour, previous, tag)] += count
    ordered = db.dialect.concurrent_writers
    _upsert(db, "unit_news", ("series", "hour", "tag"), _rows(news, ordered), ("units",))
    _upsert(
        db,
        "unit_returns",
        ("series", "hour", "previous", "tag"),
        _rows(returns, ordered),
        ("units",),
    )


def _add_units(db: Database, added: UnitHours) -> None:
    """
    Count the unit hours C{added} by newly stored events into C{unit_hours}, C{unit_news}
    and C{unit_returns}.
    """
    stored = _stored_hours(db, added)
    changes: Entries = Counter()
    for key, hours in added.items():
        old = stored.get(key, _NO_HOURS)
        if old.issuperset(hours):
            continue
        if not old or min(hours) > max(old):
            # Hours after all the unit had (events arrive roughly in time order): the
            # entries before them stay as they were.
            series, _, tag = key
            previous = max(old) if old else None
            for hour in sorted(hours):
                changes[(series, tag, hour, previous)] += 1
                previous = hour
        else:
            entry_changes(changes, key, old, old.union(hours))
    rows = [
        (*key, hour, events, bots)
        for key, hours in added.items()
        if key[0] != "open-any"  # the union of the message's "open" rows
        for hour, (events, bots) in hours.items()
    ]
    if db.dialect.concurrent_writers:
        rows.sort()
    _upsert(db, "unit_hours", _UNIT_HOURS_KEY, rows, ("events", "bot_events"))
    _apply_entries(db, changes)


def _replace_units(db: Database, wanted: UnitHours) -> None:
    """
    Make the stored hours of the units of C{wanted} what it says (a unit with no hours has
    none left), with their entries.
    """
    stored = _stored_hours(db, wanted)
    changes: Entries = Counter()
    for key, hours in wanted.items():
        entry_changes(changes, key, stored.get(key, _NO_HOURS), hours)
    db.execute_many(
        "DELETE FROM unit_hours WHERE series = ? AND unit = ? AND tag = ?", sorted(wanted)
    )
    rows = [
        (*key, hour, events, bots)
        for key, hours in sorted(wanted.items())
        for hour, (events, bots) in sorted(hours.items())
    ]
    _upsert(db, "unit_hours", _UNIT_HOURS_KEY, rows, ("events", "bot_events"))
    _apply_entries(db, changes)


def _retag_units(db: Database, old_tags: dict[str, str], new_tags: dict[str, str]) -> None:
    """
    Move the units of links retagged from C{old_tags} to C{new_tags}: their clicks go to
    the new tag, and their messages' opens are counted again under both tags.
    """
    wanted: UnitHours = {}
    for link_id in new_tags:
        wanted[("click", link_id, old_tags[link_id])] = {}
    clicks: list[tuple[str, str, str, int, bool]] = []
    messages: set[str] = set()
    for chunk in _chunks(sorted(new_tags)):
        sql = (
            f"SELECT link_id, kind, ts_ms, bot FROM events WHERE link_id IN ({_marks(len(chunk))})"
        )
        for link_id, kind, ts_ms, bot in db.query(sql, chunk):
            if kind == "click":
                clicks.append((kind, link_id, new_tags[link_id], int(ts_ms), bool(bot)))
            else:
                messages.add(message_key(link_id))
    wanted.update(_unit_hours(clicks))
    for message in sorted(messages):
        opens = [
            (kind, link_id, ts_ms, bot)
            for link_id, kind, ts_ms, bot in _message_events(db, message)
            if kind == "open"
        ]
        registered = _tags(db, sorted({link_id for _, link_id, _, _ in opens}))
        registered.update(new_tags)
        touched = {
            either
            for link_id, tag in new_tags.items()
            if message_key(link_id) == message
            for either in (tag, old_tags[link_id])
        }
        for tag in touched:
            wanted[("open", message, tag)] = {}
        for key, hours in _unit_hours(
            (kind, link_id, registered.get(link_id, ""), int(ts_ms), bool(bot))
            for kind, link_id, ts_ms, bot in opens
        ).items():
            if key[0] == "open" and key[2] in touched:
                wanted[key] = hours
    _replace_units(db, wanted)


def _message_events(db: Database, message: str) -> list[tuple[Any, ...]]:
    """
    The (LinkID, kind, time, bot) of every event on a link of C{message}.
    """
    conditions = ["link_id >= ?"]
    parameters: list[Any] = [message]
    following = _successor(message)
    if following is not None:
        conditions.append("link_id < ?")
        parameters.append(following)
    conditions.append(f"substr(link_id, 1, {MESSAGE_KEY_LENGTH}) = ?")
    parameters.append(message)
    return db.query(
        f"SELECT link_id, kind, ts_ms, bot FROM events WHERE {' AND '.join(conditions)}",
        parameters,
    )


def _link_row(record: LinkRecord) -> tuple[Any, ...]:
    return (
        record.link_id,
        record.url,
        record.message_id,
        record.part,
        record.position,
        record.tag or "",
        record.recipient_hash,
    )


def register(db: Database, records: Sequence[LinkRecord]) -> int:
    """
    Register C{records} (the last one wins for a LinkID given twice); how many were new or
    changed. A link whose tag changes takes its stored events' counts to the new tag.
    """
    latest = {record.link_id: _link_row(record) for record in records}
    link_ids = sorted(latest)
    existing: dict[str, tuple[Any, ...]] = {}
    for chunk in _chunks(link_ids):
        sql = (
            "SELECT link_id, url, message_id, part, position, tag, recipient_hash FROM links"
            f" WHERE link_id IN ({_marks(len(chunk))})"
        )
        existing.update((row[0], tuple(row)) for row in db.query(sql, chunk))
    changed = [latest[link_id] for link_id in link_ids if existing.get(link_id) != latest[link_id]]
    old_tags = {row[0]: existing[row[0]][5] if row[0] in existing else "" for row in changed}
    retagged = {row[0]: row[5] for row in changed if old_tags[row[0]] != row[5]}
    if retagged:
        columns = ", ".join(_FACT_COLUMNS)
        facts: list[Fact] = []
        for chunk in _chunks(sorted(retagged)):
            sql = f"SELECT {columns} FROM events WHERE link_id IN ({_marks(len(chunk))})"
            facts.extend(Fact(*row) for row in db.query(sql, chunk))
        counts = rollup(((fact, old_tags[fact.link_id]) for fact in facts), -1)
        counts.update(rollup((fact, retagged[fact.link_id]) for fact in facts))
        _apply_rollup(db, counts)
        _retag_units(db, {link_id: old_tags[link_id] for link_id in retagged}, retagged)
        db.execute_many(
            "UPDATE link_totals SET tag = ? WHERE link_id = ?",
            [(tag, link_id) for link_id, tag in sorted(retagged.items())],
        )
    if changed:
        db.execute_many(
            "INSERT INTO links (link_id, url, message_id, part, position, tag, recipient_hash)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (link_id) DO UPDATE SET"
            " url = excluded.url, message_id = excluded.message_id, part = excluded.part,"
            " position = excluded.position, tag = excluded.tag,"
            " recipient_hash = excluded.recipient_hash",
            changed,
        )
    return len(changed)


def _successor(prefix: str) -> str | None:
    """
    The least string greater than every string starting with C{prefix}, if there is one.
    """
    while prefix:
        last = ord(prefix[-1])
        if last < 0x10FFFF:
            following = last + 1
            if 0xD800 <= following <= 0xDFFF:  # surrogates cannot be stored
                following = 0xE000
            return prefix[:-1] + chr(following)
        prefix = prefix[:-1]
    return None


class _Selection(NamedTuple):
    joins: str
    conditions: list[str]
    parameters: list[Any]

    def where(self, *more: str) -> str:
        conditions = self.conditions + list(more)
        return " WHERE " + " AND ".join(conditions) if conditions else ""


def _select_events(
    query: StatsQuery, start_ms: int | None, end_ms: int | None, kind: str | None
) -> _Selection:
    """
    The joins and conditions over C{events e} for C{query}'s link filters, a time range and a kind.
    """
    joins = ""
    conditions: list[str] = []
    parameters: list[Any] = []
    if query.tag:
        joins = " JOIN links l ON l.link_id = e.link_id"
        conditions.append("l.tag = ?")
        parameters.append(query.tag)
    elif query.tag is not None:  # untagged: registered without a tag, or never registered
        joins = " LEFT JOIN links l ON l.link_id = e.link_id"
        conditions.append("COALESCE(l.tag, '') = ''")
    if kind is not None:
        # With a link filter the LinkID index selects few rows: keep the planner off the
        # kind index (an expression cannot use it, in either database).
        by_link = query.link is not None or query.message is not None
        conditions.append("e.kind || '' = ?" if by_link else "e.kind = ?")
        parameters.append(kind)
    if query.link is not None:
        conditions.append("e.link_id = ?")
        parameters.append(query.link)
    if query.message is not None:
        # A range on the LinkID index, then the exact test (a key shorter than a message
        # key's length is a whole LinkID).
        conditions.append("e.link_id >= ?")
        parameters.append(query.message)
        following = _successor(query.message)
        if following is not None:
            conditions.append("e.link_id < ?")
            parameters.append(following)
        conditions.append(f"substr(e.link_id, 1, {MESSAGE_KEY_LENGTH}) = ?")
        parameters.append(query.message)
    if start_ms is not None:
        conditions.append("e.ts_ms >= ?")
        parameters.append(start_ms)
    if end_ms is not None:
        conditions.append("e.ts_ms < ?")
        parameters.append(end_ms)
    return _Selection(joins, conditions, parameters)


TallyKey = tuple[str, int, str, str]  # kind, bot, dimension, value
SeriesKey = tuple[int, str, int]  # bucket, kind, bot


def _add_raw(
    db: Database,
    query: StatsQuery,
    start_ms: int | None,
    end_ms: int | None,
    hours_a_bucket: int,
    tallies: Counter[TallyKey],
    series: Counter[SeriesKey],
) -> None:
    selection = _select_events(query, start_ms, end_ms, None)
    columns = ", ".join(f"e.{name}" for name in _FACT_COLUMNS)
    more = []
    if query.link is None and query.message is None:
        # The kinds stats report, named so that the (kind, time) index serves the time range
        # (neither database skips over a leading column): else the edges of a range read
        # every event.
        more.append("e.kind IN ('click', 'open')")
    sql = f"SELECT {columns} FROM events e{selection.joins}{selection.where(*more)}"
    counts = rollup((Fact(*row), "") for row in db.query(sql, selection.parameters))
    for (hour, _, kind, bot, dimension, value), count in counts.items():
        tallies[(kind, bot, dimension, value)] += count
        if dimension == "all":
            series[(hour // hours_a_bucket, kind, bot)] += count


def _unit_conditions(
    query: StatsQuery, unit: str, first: int | None, end: int | None
) -> tuple[str, list[Any]]:
    conditions: list[str] = []
    parameters: list[Any] = []
    if first is not None:
        conditions.append(f"{unit} >= ?")
        parameters.append(first)
    if end is not None:
        conditions.append(f"{unit} < ?")
        parameters.append(end)
    if query.tag is not None:
        conditions.append("tag = ?")
        parameters.append(query.tag)
    return " AND ".join(conditions) or "1 = 1", parameters


def _add_tallies(
    db: Database,
    query: StatsQuery,
    table: str,
    unit: str,
    first: int | None,
    end: int | None,
    tallies: Counter[TallyKey],
) -> None:
    """
    Add the breakdown counts of rollup C{table} for its units (days or hours) C{[first, end)}.
    """
    conditions, parameters = _unit_conditions(query, unit, first, end)
    for kind, bot, dimension, value, count in db.query(
        f"SELECT kind, bot, dimension, value, sum(events) FROM {table}"
        f" WHERE {conditions} GROUP BY kind, bot, dimension, value",
        parameters,
    ):
        tallies[(kind, int(bot), dimension, value)] += int(count)


def _add_series(
    db: Database,
    query: StatsQuery,
    first_hour: int | None,
    end_hour: int | None,
    hours_a_bucket: int,
    series: Counter[SeriesKey],
) -> None:
    conditions, parameters = _unit_conditions(query, "hour", first_hour, end_hour)
    for bucket, kind, bot, count in db.query(
        f"SELECT hour / {hours_a_bucket}, kind, bot, sum(events) FROM hourly_totals"
        f" WHERE {conditions} GROUP BY hour / {hours_a_bucket}, kind, bot",
        parameters,
    ):
        series[(int(bucket), kind, int(bot))] += int(count)


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


def _whole_hours(query: StatsQuery) -> tuple[int | None, int | None]:
    """
    The first whole hour of C{query}'s range, and the hour after its last.
    """
    first_hour = None if query.start_ms is None else _ceil_div(query.start_ms, HOUR_MS)
    end_hour = None if query.end_ms is None else query.end_ms // HOUR_MS
    return first_hour, end_hour


def _counts(db: Database, query: StatsQuery, tallies: Counter[TallyKey]) -> Counter[SeriesKey]:
    """
    Fill C{tallies} and give the time series' counts.
    """
    series: Counter[SeriesKey] = Counter()
    hours_a_bucket = 1 if query.bucket == "hour" else 24
    start, end = query.start_ms, query.end_ms
    if query.link is not None or query.message is not None:
        _add_raw(db, query, start, end, hours_a_bucket, tallies, series)
        return series
    first_hour = None if start is None else _ceil_div(start, HOUR_MS)
    end_hour = None if end is None else end // HOUR_MS
    if first_hour is not None and end_hour is not None and first_hour >= end_hour:
        _add_raw(db, query, start, end, hours_a_bucket, tallies, series)
        return series
    _add_series(db, query, first_hour, end_hour, hours_a_bucket, series)
    first_day = None if first_hour is None else _ceil_div(first_hour, 24)
    end_day = None if end_hour is None else end_hour // 24
    if first_day is not None and end_day is not None and first_day >= end_day:
        _add_tallies(db, query, "hourly", "hour", first_hour, end_hour, tallies)
    else:
        _add_tallies(db, query, "daily", "day", first_day, end_day, tallies)
        if first_hour is not None and first_day is not None and first_hour < first_day * 24:
            _add_tallies(db, query, "hourly", "hour", first_hour, first_day * 24, tallies)
        if end_hour is not None and end_day is not None and end_day * 24 < end_hour:
            _add_tallies(db, query, "hourly", "hour", end_day * 24, end_hour, tallies)
    if start is not None and first_hour is not None and start < first_hour * HOUR_MS:
        _add_raw(db, query, start, first_hour * HOUR_MS, hours_a_bucket, tallies, series)
    if end is not None and end_hour is not None and end_hour * HOUR_MS < end:
        _add_raw(db, query, end_hour * HOUR_MS, end, hours_a_bucket, tallies, series)
    return series


class _Links(NamedTuple):
    unique_clicks: int
    unique_opens: int
    top: list[tuple[str, int, int]]
    first_click_ms: int | None
    last_click_ms: int | None


def _hour_conditions(first_hour: int | None, end_hour: int | None) -> tuple[str, list[Any]]:
    conditions = ""
    parameters: list[Any] = []
    if first_hour is not None:
        conditions += " AND hour >= ?"
        parameters.append(first_hour)
    if end_hour is not None:
        conditions += " AND hour < ?"
        parameters.append(end_hour)
    return conditions, parameters


def _unique_in_hours(
    db: Database, series: str, tag: str | None, first_hour: int | None, end_hour: int | None
) -> int:
    """
    How many units of C{series} (and C{tag}, unless C{None}) had events in the whole hours
    C{[first_hour, end_hour)}: the news in them, and the returns whose previous hour is
    before them (see L{units}).
    """
    conditions, parameters = _hour_conditions(first_hour, end_hour)
    if tag is not None:
        conditions += " AND tag = ?"
        parameters.append(tag)
    [(news,)] = db.query(
        f"SELECT sum(units) FROM unit_news WHERE series = ?{conditions}", [series, *parameters]
    )
    total = int(news or 0)
    if first_hour is not None:
        [(returns,)] = db.query(
            f"SELECT sum(units) FROM unit_returns WHERE series = ?{conditions} AND previous < ?",
            [series, *parameters, first_hour],
        )
        total += int(returns or 0)
    return total


def _units_in_hours(
    db: Database,
    series: str,
    tag: str | None,
    units: set[str],
    first_hour: int | None,
    end_hour: int | None,
) -> set[str]:
    """
    Which of C{units} had events in the whole hours C{[first_hour, end_hour)}.
    """
    if series == "open-any":  # the union of the messages' opens under every tag
        series, tag = "open", None
    found: set[str] = set()
    conditions, parameters = _hour_conditions(first_hour, end_hour)
    if tag is not None:
        conditions += " AND tag = ?"
        parameters.append(tag)
    with _by_key(db):
        for chunk in _chunks(sorted(units)):
            found.update(
                unit
                for (unit,) in db.query(
                    f"SELECT DISTINCT unit FROM unit_hours WHERE series = ?{conditions}"
                    f" AND unit IN ({_marks(len(chunk))})",
                    [series, *parameters, *chunk],
                )
            )
    return found


def _edge_click_time(
    db: Database, query: StatsQuery, edge: tuple[int, int] | None, last: bool
) -> int | None:
    """
    The first (or C{last}) click C{query} selects in the time range C{edge}, or C{None}.
    """
    if edge is None:
        return None
    clicks = _select_events(query, edge[0], edge[1], "click")
    [(found,)] = db.query(
        f"SELECT {'max' if last else 'min'}(e.ts_ms) FROM events e{clicks.joins}{clicks.where()}",
        clicks.parameters,
    )
    return None if found is None else int(found)


def _first_click_hour(
    db: Database, query: StatsQuery, first_hour: int | None, end_hour: int | None, last: bool
) -> int | None:
    """
    The first (or C{last}) hour of C{[first_hour, end_hour)} with clicks C{query} selects.
    """
    conditions, parameters = _hour_conditions(first_hour, end_hour)
    if query.tag is not None:
        conditions += " AND tag = ?"
        parameters.append(query.tag)
    [(hour,)] = db.query(
        f"SELECT {'max' if last else 'min'}(hour) FROM hourly_totals"
        f" WHERE kind = 'click' AND events > 0{conditions}",
        parameters,
    )
    return None if hour is None else int(hour)


_PAGE = 2_000
#: About how many raw clicks grouping reads in the time a link's range count is looked up.
_LOOKUP_COST = 8
_CHUNK_OF_CANDIDATES = 250


def _ranked_links(db: Database, query: StatsQuery) -> Iterator[list[tuple[Any, ...]]]:
    """
    Pages of the clicked links C{query}'s tag selects, (LinkID, clicks, bot clicks), most
    clicked first (then by LinkID).

    The rank index holds only links clicked more than once: most links are clicked once,
    and each index a row's count is in costs ingest a write. Those come last, in the
    order of the table's key.
    """
    condition, parameters = ("", []) if query.tag is None else (" AND tag = ?", [query.tag])
    offset = 0
    while True:
        page = db.query(
            "SELECT link_id, events, bot_events FROM link_totals"
            f" WHERE kind = 'click' AND events >= 2{condition}"
            " ORDER BY events DESC, link_id LIMIT ? OFFSET ?",
            [*parameters, _PAGE, offset],
        )
        if page:
            yield page
        if len(page) < _PAGE:
            break
        offset += _PAGE
    after = ""
    while True:
        page = db.query(
            "SELECT link_id, events, bot_events FROM link_totals"
            f" WHERE kind = 'click' AND link_id > ? AND events = 1{condition}"
            " ORDER BY link_id LIMIT ?",
            [after, *parameters, _PAGE],
        )
        if page:
            yield page
        if len(page) < _PAGE:
            break
        after = page[-1][0]


def _top_in_hours(
    db: Database,
    query: StatsQuery,
    first_hour: int | None,
    end_hour: int | None,
    edge_clicks: dict[str, list[int]],
    budget: int,
) -> list[tuple[str, int, int]] | None:
    """
    The most clicked links of the range: the whole hours C{[first_hour, end_hour)} and the
    clicks C{edge_clicks} (LinkID: [clicks, bot clicks]) in the partial hours at its ends.

    Links are read most clicked over all time first, and their clicks in the range added
    up, skipping those that cannot enter the list (see L{_walk}). C{None} if that takes
    reading more than C{budget} links: grouping the range's raw clicks is cheaper then;
    and at once if the budget does not cover two pages of them, as grouping the few
    clicks of a short range costs about as much as reading the rank index's first pages.
    """
    if query.top <= 0:
        return []
    best: list[tuple[int, str, int]] = []  # -clicks, LinkID, bot clicks

    def answer() -> list[tuple[str, int, int]]:
        return [(link_id, -negative, bots) for negative, link_id, bots in best]

    if first_hour is None and end_hour is None:  # all time: the totals are the answer
        for page in _ranked_links(db, query):
            best.extend((-int(clicks), link_id, int(bots)) for link_id, clicks, bots in page)
            if len(best) >= query.top:
                break
        del best[query.top :]
        return answer()
    if budget < 2 * _PAGE:
        return None
    hours, hour_parameters = _hour_conditions(first_hour, end_hour)
    with _by_key(db):
        return _walk(db, query, hours, hour_parameters, edge_clicks, budget)


@contextmanager
def _by_key(db: Database) -> Iterator[None]:
    """
    Keep PostgreSQL's plans on the indexes for look-ups by key: with the statistics of
    tables that grow fast, it would read a whole table for a few hundred keys.
    """
    if db.dialect.name != "postgresql":
        yield
        return
    db.execute("SET LOCAL enable_seqscan = off")
    db.execute("SET LOCAL enable_bitmapscan = off")
    yield  # (a failure rolls the transaction back, and its settings with it)
    db.execute("SET LOCAL enable_seqscan = on")
    db.execute("SET LOCAL enable_bitmapscan = on")


def _walk(
    db: Database,
    query: StatsQuery,
    hours: str,
    hour_parameters: list[Any],
    edge_clicks: dict[str, list[int]],
    budget: int,
) -> list[tuple[str, int, int]] | None:
    """
    The search of L{_top_in_hours} over ranked links, their clicks in the C{hours}.

    Only the links that can still enter the list are read: those whose clicks in the range
    could beat the last of the best, or tie with it and come before it by LinkID. A link
    has at most its clicks over all time in the range, one fewer if its first click is
    before the range, and none if its clicks all fall outside it: every statement below
    says so in plain comparisons of the rank index's columns, which it tests without
    reading the table (PostgreSQL reads the table for each index entry it cannot reject
    that way, to see whether the row is visible).
    """
    best: list[tuple[int, str, int]] = []  # -clicks, LinkID, bot clicks
    within = "kind = 'click' AND events >= 2"
    within_parameters: list[Any] = []
    if query.tag is not None:
        within += " AND tag = ?"
        within_parameters.append(query.tag)
    if query.start_ms is not None:
        within += " AND last_ms >= ?"
        within_parameters.append(query.start_ms)
    if query.end_ms is not None:
        within += " AND first_ms < ?"
        within_parameters.append(query.end_ms)
    read = 0

    def threshold() -> tuple[int, str | None]:
        """
        The clicks in the range that a link must beat to enter the list, or tie with if it
        comes before the LinkID given with them. Until the list is full, a link needs two
        clicks: links clicked once are left to grouping (see the end).
        """
        if len(best) < query.top:
            return 1, None
        return -best[-1][0], best[-1][1]

    def enters(clicks: int, link_id: str) -> bool:
        """
        Whether a link with C{clicks} in the range would enter the list.
        """
        least, before = threshold()
        return clicks > least or (clicks == least and before is not None and link_id < before)

    def most(events: int, first_ms: int, last_ms: int) -> int:
        """
        The most clicks a link can have in the range: its clicks over all time, less its
        first and last when they are outside it.
        """
        if query.start_ms is not None and first_ms < query.start_ms:
            events -= 1
        if query.end_ms is not None and last_ms >= query.end_ms:
            events -= 1
        return events

    def count(page: list[tuple[Any, ...]]) -> None:
        """
        Look up the range's clicks of the links of C{page} that can still enter the list.
        """
        for start in range(0, len(page), _CHUNK_OF_CANDIDATES):
            chunk = [
                link_id
                for link_id, events, first_ms, last_ms in page[
                    start : start + _CHUNK_OF_CANDIDATES
                ]
                if enters(most(int(events), int(first_ms), int(last_ms)), link_id)
            ]
            if not chunk:
                continue
            counts = {link_id: list(edge_clicks.get(link_id, (0, 0))) for link_id in chunk}
            for link_id, clicks, bots in db.query(
                "SELECT unit, sum(events), sum(bot_events) FROM unit_hours"
                f" WHERE series = 'click'{hours} AND unit IN ({_marks(len(chunk))})"
                " GROUP BY unit",
                [*hour_parameters, *chunk],
            ):
                counts[link_id][0] += int(clicks)
                counts[link_id][1] += int(bots)
            best.extend(
                (-clicks, link_id, bots) for link_id, (clicks, bots) in counts.items() if clicks
            )
            best.sort()
            del best[query.top :]

    def select(conditions: str, parameters: list[Any], order: str) -> list[tuple[Any, ...]]:
        return db.query(
            f"SELECT link_id, events, first_ms, last_ms FROM link_totals WHERE {within}"
            f"{conditions} ORDER BY {order} LIMIT ?",
            [*within_parameters, *parameters, _PAGE],
        )

    # First the links whose clicks over all time, less one, beat the last of the best,
    # in rank order.
    after: tuple[int, str] | None = None  # (clicks, LinkID) of the last link read
    counted_for: tuple[int, str | None] | None = None
    while True:
        if read > budget:
            return None
        least, before = threshold()
        conditions = " AND events >= ?"
        parameters: list[Any] = [least + 2]
        if after is not None:
            conditions += " AND events <= ? AND (events < ? OR link_id > ?)"
            parameters += [after[0], after[0], after[1]]
        if before is not None and counted_for != (least, before):
            # How many of them are left (counted again only once the last of the best
            # changes): more than the budget, and grouping is cheaper.
            counted_for = (least, before)
            [(left,)] = db.query(
                "SELECT count(*) FROM (SELECT 1 FROM link_totals"
                f" WHERE {within}{conditions} LIMIT ?) AS found",
                [*within_parameters, *parameters, budget - read + 1],
            )
            if int(left) > budget - read:
                return None
        page = select(conditions, parameters, "events DESC, link_id")
        read += len(page)
        count(page)
        if page:
            after = (int(page[-1][1]), page[-1][0])
        if len(page) < _PAGE:
            break
    # Then, tier by tier, those that could still tie or beat it: the ones with one more
    # click than it, their first in the range or coming before it; and the ones with as
    # many, their first click in the range and coming before it.
    tier = threshold()[0] + 1
    if after is not None:
        tier = min(tier, after[0])
    while tier >= max(threshold()[0], 2):
        for first_inside in (True, False) if query.start_ms is not None else (True,):
            following = after[1] if after is not None and after[0] == tier else None
            while True:
                if read > budget:
                    return None
                least, before = threshold()
                room = tier - (0 if first_inside else 1) - least
                if room < 0 or (room == 0 and before is None):
                    break
                conditions = " AND events = ?"
                parameters = [tier]
                if query.start_ms is not None:
                    conditions += " AND first_ms >= ?" if first_inside else " AND first_ms < ?"
                    parameters.append(query.start_ms)
                if room == 0:
                    conditions += " AND link_id < ?"
                    parameters.append(before)
                if following is not None:
                    conditions += " AND link_id > ?"
                    parameters.append(following)
                page = select(conditions, parameters, "link_id")
                read += len(page)
                count(page)
                if len(page) < _PAGE:
                    break
                following = page[-1][0]
        tier -= 1
    if len(best) < query.top or -best[-1][0] < 2:
        # Links clicked once over all time could still enter: they are not in the rank
        # index, and as many as the range's clicks; grouping those is as cheap.
        return None
    return [(link_id, -negative, bots) for negative, link_id, bots in best]


def _links_from_rollups(
    db: Database, query: StatsQuery, first_hour: int | None, end_hour: int | None, clicks: int
) -> _Links:
    """
    Unique counts, top links, first and last click of a range with whole hours
    C{[first_hour, end_hour)}: from the unit tables for those hours, and the raw events of
    the partial hours at the range's ends. C{clicks} is how many clicks the range holds.
    """
    start, end = query.start_ms, query.end_ms
    left = right = None
    if start is not None and first_hour is not None and start < first_hour * HOUR_MS:
        left = (start, first_hour * HOUR_MS)
    if end is not None and end_hour is not None and end_hour * HOUR_MS < end:
        right = (end_hour * HOUR_MS, end)
    edges = [edge for edge in (left, right) if edge is not None]
    edge_clicks: dict[str, list[int]] = {}
    edge_messages: set[str] = set()
    for edge_start, edge_end in edges:
        selection = _select_events(query, edge_start, edge_end, None)
        kinds = "e.kind IN ('click', 'open')"
        for link_id, kind, bot in db.query(
            f"SELECT e.link_id, e.kind, e.bot FROM events e{selection.joins}"
            f"{selection.where(kinds)}",
            selection.parameters,
        ):
            if kind == "click":
                counts = edge_clicks.setdefault(link_id, [0, 0])
                counts[0] += 1
                counts[1] += int(bot)
            else:
                edge_messages.add(message_key(link_id))
    click_tag = query.tag
    open_series, open_tag = ("open", query.tag) if query.tag is not None else ("open-any", "")
    unique_clicks = _unique_in_hours(db, "click", click_tag, first_hour, end_hour)
    unique_clicks += len(
        set(edge_clicks)
        - _units_in_hours(db, "click", None, set(edge_clicks), first_hour, end_hour)
    )
    unique_opens = _unique_in_hours(db, open_series, open_tag, first_hour, end_hour)
    unique_opens += len(
        edge_messages
        - _units_in_hours(db, open_series, open_tag, edge_messages, first_hour, end_hour)
    )
    ends: list[int | None] = []
    for last in (False, True):
        near, far = (right, left) if last else (left, right)
        found = _edge_click_time(db, query, near, last)
        if found is None:
            hour = _first_click_hour(db, query, first_hour, end_hour, last)
            if hour is not None:
                found = _edge_click_time(db, query, (hour * HOUR_MS, (hour + 1) * HOUR_MS), last)
        if found is None:
            found = _edge_click_time(db, query, far, last)
        ends.append(found)
    if query.tag is not None:
        # Grouping the raw clicks of one tag reads every click of the range.
        hours, parameters = _hour_conditions(first_hour, end_hour)
        [(all_clicks,)] = db.query(
            f"SELECT sum(events) FROM hourly_totals WHERE kind = 'click'{hours}", parameters
        )
        clicks = max(clicks, int(all_clicks or 0))
    top = _top_in_hours(db, query, first_hour, end_hour, edge_clicks, clicks // _LOOKUP_COST)
    if top is None:
        top = _top_from_events(db, query)
    return _Links(unique_clicks, unique_opens, top, ends[0], ends[1])


def _links_from_events(db: Database, query: StatsQuery) -> _Links:
    """
    Unique counts, top links, first and last click, from the events C{query} selects.
    """
    clicks = _select_events(query, query.start_ms, query.end_ms, "click")
    groups = db.query(
        "SELECT e.link_id, count(*), sum(e.bot), count(*) OVER ()"
        f" FROM events e{clicks.joins}{clicks.where()}"
        " GROUP BY e.link_id ORDER BY 2 DESC, 1 LIMIT ?",
        [*clicks.parameters, max(query.top, 1)],
    )
    opens = _select_events(query, query.start_ms, query.end_ms, "open")
    [(unique_opens,)] = db.query(
        f"SELECT count(DISTINCT substr(e.link_id, 1, {MESSAGE_KEY_LENGTH}))"
        f" FROM events e{opens.joins}{opens.where()}",
        opens.parameters,
    )
    ends = []
    for direction in ("", " DESC"):
        found = db.query(
            f"SELECT e.ts_ms FROM events e{clicks.joins}{clicks.where()}"
            f" ORDER BY e.ts_ms{direction} LIMIT 1",
            clicks.parameters,
        )
        ends.append(int(found[0][0]) if found else None)
    return _Links(
        int(groups[0][3]) if groups else 0,
        int(unique_opens),
        [(link_id, int(count), int(bots)) for link_id, count, bots, _ in groups[: query.top]],
        ends[0],
        ends[1],
    )


def _top_from_events(db: Database, query: StatsQuery) -> list[tuple[str, int, int]]:
    """
    The most clicked links of the events C{query} selects, grouping its clicks.
    """
    if query.top <= 0:
        return []
    clicks = _select_events(query, query.start_ms, query.end_ms, "click")
    groups = db.query(
        f"SELECT e.link_id, count(*), sum(e.bot) FROM events e{clicks.joins}{clicks.where()}"
        " GROUP BY e.link_id ORDER BY 2 DESC, 1 LIMIT ?",
        [*clicks.parameters, query.top],
    )
    return [(link_id, int(count), int(bots)) for link_id, count, bots in groups]


def _urls(db: Database, link_ids: Sequence[str]) -> dict[str, str]:
    if not link_ids:
        return {}
    sql = f"SELECT link_id, url FROM links WHERE link_id IN ({_marks(len(link_ids))})"
    return dict(db.query(sql, link_ids))


def _breakdown(tallies: Counter[TallyKey], dimension: str) -> tuple[Tally, ...]:
    values = {value for (_, _, name, value) in tallies if name == dimension}
    result = []
    for value in values:
        clicks = [tallies[("click", bot, dimension, value)] for bot in (0, 1)]
        opens = [tallies[("open", bot, dimension, value)] for bot in (0, 1)]
        if sum(clicks) + sum(opens):
            result.append(Tally(value or None, sum(clicks), sum(opens), clicks[1], opens[1]))
    result.sort(key=lambda t: (-(t.clicks + t.opens), t.value is None, t.value or ""))
    return tuple(result)


def _kind_totals(tallies: Counter[TallyKey], kind: str, unique: int) -> KindTotals:
    human, bot = (tallies[(kind, bot, "all", "")] for bot in (0, 1))
    return KindTotals(human + bot, unique, human, bot)


def stats(db: Database, query: StatsQuery) -> Stats:
    """
    The stats of the events C{query} selects, read in the caller's (read) transaction.
    """
    tallies: Counter[TallyKey] = Counter()
    series = _counts(db, query, tallies)
    first_hour, end_hour = _whole_hours(query)
    if (
        query.link is None
        and query.message is None
        and (first_hour is None or end_hour is None or first_hour < end_hour)
    ):
        range_clicks = sum(tallies[("click", bot, "all", "")] for bot in (0, 1))
        links = _links_from_rollups(db, query, first_hour, end_hour, range_clicks)
    else:
        links = _links_from_events(db, query)
    urls = _urls(db, [link_id for link_id, _, _ in links.top])
    bucket_ms = HOUR_MS * (1 if query.bucket == "hour" else 24)
    points = []
    for bucket in sorted({bucket for bucket, _, _ in series}):
        clicks = [series[(bucket, "click", bot)] for bot in (0, 1)]
        opens = [series[(bucket, "open", bot)] for bot in (0, 1)]
        if sum(clicks) + sum(opens):
            points.append(Point(bucket * bucket_ms, sum(clicks), sum(opens), clicks[1], opens[1]))
    return Stats(
        clicks=_kind_totals(tallies, "click", links.unique_clicks),
        opens=_kind_totals(tallies, "open", links.unique_opens),
        first_click_ms=links.first_click_ms,
        last_click_ms=links.last_click_ms,
        bot_reasons=_breakdown(tallies, "reason"),
        browsers=_breakdown(tallies, "browser"),
        platforms=_breakdown(tallies, "platform"),
        systems=_breakdown(tallies, "os"),
        countries=_breakdown(tallies, "country"),
        parts=_breakdown(tallies, "part"),
        top_links=tuple(
            LinkCount(link_id, urls.get(link_id), clicks, bots)
            for link_id, clicks, bots in links.top
        ),
        bucket=query.bucket,
        series=tuple(points),
    )


def migrate(db: Database, now_ms: int) -> list[int]:
    """
    Apply the migrations not yet recorded in C{schema_version}, in order; their versions.
    The caller holds the lock that keeps other collectors from migrating at the same time.
    """
    db.execute(SCHEMA_VERSION_TABLE)
    backfills = {"units": _fill_units}
    applied = {int(version) for (version,) in db.query("SELECT version FROM schema_version")}
    done = []
    for migration in MIGRATIONS:
        if migration.version in applied:
            continue
        for statement in migration.statements(db.dialect):
            db.execute(statement)
        if migration.backfill is not None:
            backfills[migration.backfill](db)
        db.execute(
            "INSERT INTO schema_version (version, description, applied_ms) VALUES (?, ?, ?)",
            (migration.version, migration.description, now_ms),
        )
        done.append(migration.version)
    return done


def _fill_units(db: Database) -> None:
    """
    Count the events already stored into the unit tables (migration 2).
    """
    events = db.query(
        "SELECT e.kind, e.link_id, COALESCE(l.tag, ''), e.ts_ms, e.bot"
        " FROM events e LEFT JOIN links l ON l.link_id = e.link_id"
    )
    _add_units(
        db,
        _unit_hours(
            (kind, link_id, tag, int(ts_ms), bool(bot))
            for kind, link_id, tag, ts_ms, bot in events
        ),
    )
