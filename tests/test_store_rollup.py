"""
The rollup counter of L{linkrouter.collector.sqlcommon}, against a plain event-by-event count.
"""

from __future__ import annotations

from collections import Counter

import orjson
from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import TestCase

from linkrouter.collector.sqlcommon import HOUR_MS, Fact, RollupKey, rollup

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
