"""
The rollup, unit-hour and link-total counters of L{linkrouter.collector.sqlcommon}, against
plain event-by-event counts.
"""

from __future__ import annotations

from collections import Counter

import orjson
from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import TestCase

from linkrouter.collector.sqlcommon import (
    HOUR_MS,
    Fact,
    RollupKey,
    UnitHours,
    _link_totals,
    _unit_hours,
    rollup,
)
from linkrouter.collector.units import unit_keys

_maybe_text = st.one_of(st.none(), st.sampled_from(["", "Chrome", "Firefox", "US", "DE"]))

facts = st.builds(
    Fact,
    ts_ms=st.integers(min_value=0, max_value=5 * HOUR_MS),
    link_id=st.sampled_from(["a", "b"]),
    kind=st.sampled_from(["click", "open"]),
    part=st.sampled_from(["html", "text"]),
    browser=_maybe_text,
    platform=st.sampled_from(["desktop", "mobile", "unknown"]),
    os=_maybe_text,
    country=_maybe_text,
    bot_reasons=st.lists(st.sampled_from(["head-request", "scanner-user-agent:x"])).map(
        lambda reasons: orjson.dumps(reasons).decode("ascii")
    ),
)


def one_by_one(tagged: list[tuple[Fact, str]], sign: int) -> Counter[RollupKey]:
    """
    The rollup counted the obvious way: every event adds one to each of its keys.
    """
    counts: Counter[RollupKey] = Counter()
    for fact, tag in tagged:
        reasons = sorted(set(orjson.loads(fact.bot_reasons)))
        base = (fact.ts_ms // HOUR_MS, tag, fact.kind, 1 if reasons else 0)
        counts[(*base, "all", "")] += sign
        counts[(*base, "browser", fact.browser or "")] += sign
        counts[(*base, "platform", fact.platform)] += sign
        counts[(*base, "os", fact.os or "")] += sign
        counts[(*base, "country", fact.country or "")] += sign
        counts[(*base, "part", fact.part)] += sign
        for reason in reasons:
            counts[(*base, "reason", reason)] += sign
    return counts


class RollupTests(TestCase):
    @given(
        st.lists(st.tuples(facts, st.sampled_from(["", "tag-1", "tag-2"]))),
        st.sampled_from([1, -1]),
    )
    def test_sameAsOneByOne(self, tagged: list[tuple[Fact, str]], sign: int) -> None:
        """
        Counting each dimension's distinct keys at once gives the counts of adding each event.
        """
        self.assertEqual(rollup(tagged, sign), one_by_one(tagged, sign))

    def test_duplicateReasonsCountOnce(self) -> None:
        """
        A reason given twice for one event counts that event once under it.
        """
        fact = Fact(0, "a", "click", "html", None, "desktop", None, None, '["r", "r"]')
        counts = rollup([(fact, "")])
        self.assertEqual(counts[(0, "", "click", 1, "reason", "r")], 1)
        self.assertEqual(counts[(0, "", "click", 1, "all", "")], 1)


# (kind, LinkID, tag, time, bot): LinkIDs of two messages, so opens share message units.
unit_events = st.lists(
    st.tuples(
        st.sampled_from(["click", "open"]),
        st.sampled_from(["m000000000010000", "m000000000010001", "m000000000020000"]),
        st.sampled_from(["", "tag-1"]),
        st.integers(min_value=0, max_value=4 * HOUR_MS),
        st.booleans(),
    )
)


def unit_hours_one_by_one(events: list[tuple[str, str, str, int, bool]]) -> UnitHours:
    """
    The unit hours counted the obvious way: every event adds one to each unit's hour.
    """
    found: UnitHours = {}
    for kind, link_id, tag, ts_ms, bot in events:
        for key in unit_keys(kind, link_id, tag):
            counts = found.setdefault(key, {}).setdefault(ts_ms // HOUR_MS, [0, 0])
            counts[0] += 1
            counts[1] += bot
    return found


class UnitHoursTests(TestCase):
    @given(unit_events)
    def test_sameAsOneByOne(self, events: list[tuple[str, str, str, int, bool]]) -> None:
        """
        Counting identical events together gives the unit hours of adding each event.
        """
        self.assertEqual(_unit_hours(events), unit_hours_one_by_one(events))


class LinkTotalsTests(TestCase):
    @given(unit_events)
    def test_sameAsOneByOne(self, events: list[tuple[str, str, str, int, bool]]) -> None:
        """
        Counting by key and ordering by time gives each key's events, bot events, first and
        last time as a pass over the events does.
        """
        expected: dict[tuple[str, str], tuple[int, int, int, int]] = {}
        for kind, link_id, _, ts_ms, bot in events:
            count, bots, first, last = expected.get((kind, link_id), (0, 0, ts_ms, ts_ms))
            expected[(kind, link_id)] = (
                count + 1,
                bots + bot,
                min(first, ts_ms),
                max(last, ts_ms),
            )
        kinds = [kind for kind, _, _, _, _ in events]
        link_ids = [link_id for _, link_id, _, _, _ in events]
        times = [ts_ms for _, _, _, ts_ms, _ in events]
        bots = [int(bot) for _, _, _, _, bot in events]
        self.assertEqual(_link_totals(kinds, link_ids, times, bots), expected)
