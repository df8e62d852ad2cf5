# -*- test-case-name: tests.test_store_units -*-
"""
Exact unique counts over any range of whole hours, from the hours in which each unit had
events.

A unit is what a unique count counts: a LinkID for clicks, a message for opens. Give each
hour in which a unit had events an I{entry}: the hour, and the unit's previous hour with
events (C{None} for its first). The units with events in the hours C{[a, b)} are then
exactly the entries in those hours whose previous hour is C{None} or before C{a}: each unit
has one such entry, its first hour in the range. Entries are counted per series, tag, hour
and previous hour (tables C{unit_news} and C{unit_returns}), so a range's unique count reads
a few rows an hour, whatever the number of events.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from .model import message_key

__all__ = [
    "Entries",
    "UnitKey",
    "entries",
    "entry_changes",
    "unit_keys",
]

UnitKey = tuple[str, str, str]  # series, unit, tag
Entries = Counter[tuple[str, str, int, int | None]]  # series, tag, hour, previous hour


def unit_keys(kind: str, link_id: str, tag: str) -> tuple[UnitKey, ...]:
    """
    The units an event of C{kind} on C{link_id} (registered with C{tag}) counts towards.

    Opens count messages both under the link's tag and under every tag at once: the links
    of one message may have different tags, so the unique opens of all tags are not the sum
    of each tag's.
    """
    if kind == "click":
        return (("click", link_id, tag),)
    message = message_key(link_id)
    return (("open", message, tag), ("open-any", message, ""))


def entries(hours: Iterable[int]) -> list[tuple[int, int | None]]:
    """
    Each hour of C{hours} with the one before it (C{None} for the first).
    """
    previous: int | None = None
    result = []
    for hour in sorted(set(hours)):
        result.append((hour, previous))
        previous = hour
    return result


def entry_changes(
    changes: Entries, key: UnitKey, old_hours: Iterable[int], new_hours: Iterable[int]
) -> None:
    """
    Add to C{changes} what the entries of unit C{key} become when its hours with events go
    from C{old_hours} to C{new_hours}.
    """
    series, _, tag = key
    old = entries(old_hours)
    new = entries(new_hours)
    if old == new:
        return
    for hour, previous in old:
        changes[(series, tag, hour, previous)] -= 1
    for hour, previous in new:
        changes[(series, tag, hour, previous)] += 1
