"""
The entries of L{linkrouter.collector.units}: unique counts over any range of whole hours,
against a plain count of the units with events in it.
"""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import TestCase

from linkrouter.collector.units import Entries, entries, entry_changes, unit_keys

unit_hours = st.dictionaries(
    st.sampled_from(["a", "b", "c", "d"]), st.sets(st.integers(0, 30), min_size=1)
)


def unique(changes: Entries, first_hour: int | None, end_hour: int | None) -> int:
    """
    The count the store makes: entries in the hours whose previous hour is before them.
    """
    return sum(
        count
        for (_, _, hour, previous), count in changes.items()
        if (first_hour is None or hour >= first_hour)
        and (end_hour is None or hour < end_hour)
        and (previous is None or (first_hour is not None and previous < first_hour))
    )


class EntriesTests(TestCase):
    def test_entries(self) -> None:
        """
        Each hour is paired with the one before it, the first with C{None}.
        """
        self.assertEqual(entries([7, 3, 5, 3]), [(3, None), (5, 3), (7, 5)])

    @given(
        unit_hours,
        st.lists(st.integers(0, 3), min_size=31, max_size=31),
        st.none() | st.integers(-1, 32),
        st.none() | st.integers(-1, 32),
    )
    def test_uniqueEqualsACount(
        self,
        hours: dict[str, set[int]],
        batch_of_hour: list[int],
        first_hour: int | None,
        end_hour: int | None,
    ) -> None:
        """
        Hours added in batches, in any order, give entries that count the units with
        events in any range as many as there are.
        """
        changes: Entries = Counter()
        for batch in range(4):
            for unit, all_hours in hours.items():
                before = {hour for hour in all_hours if batch_of_hour[hour] < batch}
                after = {hour for hour in all_hours if batch_of_hour[hour] <= batch}
                entry_changes(changes, ("click", unit, "tag"), before, after)
        expected = sum(
            1
            for all_hours in hours.values()
            if any(
                (first_hour is None or hour >= first_hour)
                and (end_hour is None or hour < end_hour)
                for hour in all_hours
            )
        )
        self.assertEqual(unique(changes, first_hour, end_hour), expected)

    @given(unit_hours, unit_hours)
    def test_changesAreTheDifference(
        self, old: dict[str, set[int]], new: dict[str, set[int]]
    ) -> None:
        """
        Going from one set of hours to another changes the entries by their difference
        (hours may go as well as come: links are re-tagged).
        """
        changes: Entries = Counter()
        for unit in old.keys() | new.keys():
            entry_changes(changes, ("open", unit, ""), set(), old.get(unit, set()))
            entry_changes(changes, ("open", unit, ""), old.get(unit, set()), new.get(unit, set()))
        fresh: Entries = Counter()
        for unit, hours in new.items():
            entry_changes(fresh, ("open", unit, ""), set(), hours)
        self.assertEqual(+changes, fresh)
        self.assertEqual(-changes, Counter())

    def test_unitKeys(self) -> None:
        """
        A click counts its LinkID under its tag; an open its message, under its tag and
        under every tag.
        """
        self.assertEqual(
            unit_keys("click", "msgAAAAAAAAA01", "t"), (("click", "msgAAAAAAAAA01", "t"),)
        )
        self.assertEqual(
            unit_keys("open", "msgAAAAAAAAA01", "t"),
            (("open", "msgAAAAAAAAA", "t"), ("open-any", "msgAAAAAAAAA", "")),
        )
