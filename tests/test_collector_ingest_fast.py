"""
Tests for the fast paths of L{linkrouter.collector.ingest}: the one-expression validation
and the cached timestamp reading agree with the reference checks they stand in for.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from linkrouter.codec import MAX_ISSUED_AT
from linkrouter.collector import ingest
from linkrouter.event import MAX_USER_AGENT

from .test_event import key_ids, link_ids

VALID: dict[str, Any] = {
    "v": 1,
    "id": "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
    "seq": 7,
    "router": "ams-1-blue",
    "ts": "2025-12-03T17:00:00.123Z",
    "kind": "click",
    "link": "AbCdEfGhIjKl0001",
    "key": "k1",
    "part": "html",
    "issued": 1_764_780_000,
    "method": "GET",
    "ip": "192.0.2.1",
    "ua": "Mozilla/5.0",
}


def reference_milliseconds(timestamp: str) -> int | None:
    """The reading the collector had before the cache: the regex's groups, a datetime."""
    match = ingest._TIMESTAMP.fullmatch(timestamp)
    assert match is not None
    year, month, day, hour, minute, second, millisecond = map(int, match.groups())
    try:
        moment = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError:
        return None
    return calendar.timegm(moment.utctimetuple()) * 1000 + millisecond


EDGE_VALUES: list[Any] = [
    None, True, False, -1, 0, 1, 2, 1.0, 2**62 + 1, 2**63 - 1, 2**63, MAX_ISSUED_AT,
    MAX_ISSUED_AT + 1, "", "click", "open", "html", "text", "GET", "HEAD", "get", "A" * 16,
    "A" * 17, "::1", "1.2.3.4", "fe80::1%eth0", "1.2.3", "x" * 45, "1" * 46,
    "x" * 4 * MAX_USER_AGENT, "x" * (4 * MAX_USER_AGENT + 1), "r" * 64, "r" * 65, [], {},
]  # fmt: skip

digits = st.text(alphabet="0123456789", min_size=1, max_size=1)
timestamps = st.builds(
    lambda y, mo, d, h, mi, s, ms: f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}.{ms:03d}Z",
    st.integers(0, 9999),
    st.integers(0, 99),
    st.integers(0, 99),
    st.integers(0, 99),
    st.integers(0, 99),
    st.integers(0, 99),
    st.integers(0, 999),
) | st.builds(
    lambda moment, ms: moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms:03d}Z",
    st.datetimes(datetime(1000, 1, 1), datetime(9999, 12, 31)),
    st.integers(0, 999),
)

odd_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**64), 2**64),
    st.sampled_from([-1, 0, 1, 2**62 + 1, 2**63 - 1, 2**63, MAX_ISSUED_AT, MAX_ISSUED_AT + 1]),
    st.floats(allow_nan=False),
    st.text(max_size=80),
    st.sampled_from(
        ["click", "open", "html", "text", "GET", "HEAD", "::1", "1.2.3.4", "x" * 3000]
    ),
    st.lists(st.integers(), max_size=2),
    link_ids,
    key_ids,
)


class ValidTests(SynchronousTestCase):
    @settings(max_examples=2000, deadline=None)
    @given(
        st.builds(dict, st.tuples(st.tuples(st.sampled_from(sorted(ingest._FIELDS)), odd_values)))
        | st.dictionaries(st.sampled_from(sorted(ingest._FIELDS)), odd_values, max_size=4),
    )
    def test_agrees_with_checks(self, changes: dict[str, Any]) -> None:
        """
        L{ingest._valid} says yes exactly when every check of C{_CHECKS} does, for a valid
        line with any of its fields replaced by values of any type.
        """
        fields = {**self.base, **changes}
        expected = all(check(fields[name]) for name, check in ingest._CHECKS.items())
        self.assertEqual(ingest._valid(fields), expected)

    def test_every_field_at_its_edges(self) -> None:
        """
        Each field alone set to each value at or beside a check's edge: the one-expression
        validation and the checks agree on every one.
        """
        edges: list[Any] = [
            *EDGE_VALUES,
            *(value[:-1] for value in self.base.values() if isinstance(value, str)),
            *(value + "x" for value in self.base.values() if isinstance(value, str)),
        ]
        for name in sorted(ingest._FIELDS):
            for value in edges:
                fields = {**self.base, name: value}
                expected = all(check(fields[n]) for n, check in ingest._CHECKS.items())
                self.assertEqual((name, value, ingest._valid(fields)), (name, value, expected))

    def setUp(self) -> None:
        self.base = dict(VALID)

    def test_base_is_valid(self) -> None:
        """The line the property varies is valid, so both answers are exercised."""
        self.assertTrue(ingest._valid(self.base))


class MillisecondsTests(SynchronousTestCase):
    @settings(max_examples=3000, deadline=None)
    @given(timestamps)
    @example("2024-02-29T23:59:59.999Z")
    @example("2025-02-29T00:00:00.000Z")
    @example("2025-02-30T00:00:00.000Z")
    @example("0000-01-01T00:00:00.000Z")
    @example("9999-12-31T23:59:59.999Z")
    @example("1970-01-01T00:00:00.000Z")
    @example("2025-12-03T24:00:00.000Z")
    @example("2025-12-03T23:60:00.000Z")
    def test_agrees_with_reference(self, timestamp: str) -> None:
        """
        The cached reading gives the same milliseconds, or the same refusal, as building a
        datetime from the regular expression's groups; twice, so a cache hit is tested.
        """
        expected = reference_milliseconds(timestamp)
        self.assertEqual(ingest._milliseconds(timestamp), expected)
        self.assertEqual(ingest._milliseconds(timestamp), expected)
