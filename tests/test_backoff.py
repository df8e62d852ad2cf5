"""
Tests for L{linkrouter.backoff}: exponential backoff with full jitter, and C{Retry-After}.
"""

from __future__ import annotations

import email.utils
import os
import time

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from linkrouter.backoff import MAX_RETRY_AFTER, full_jitter, parse_retry_after

NOW = 1_700_000_000.0


def upper(low: float, high: float) -> float:
    """
    A pinned random source: always the upper bound.
    """
    return high


class FullJitterTests(SynchronousTestCase):
    def test_ceilingForFailuresOneToSeventy(self) -> None:
        """
        For 1 to 70 failures in a row the draw is asked for in M{[0, min(cap, base *
        2 ** (failures - 1))]}: doubling from the base, then flat at the cap, with no
        overflow for large counts.
        """
        for base, cap in [(1.0, 300.0), (0.5, 30.0), (2.0, 3600.0), (0.001, 86400.0)]:
            for failures in range(1, 71):
                calls: list[tuple[float, float]] = []

                def recording(low: float, high: float, calls: list = calls) -> float:
                    calls.append((low, high))
                    return high

                delay = full_jitter(failures, base, cap, recording)
                expected = min(cap, base * 2.0 ** (failures - 1))
                self.assertEqual(calls, [(0.0, expected)], (base, cap, failures))
                self.assertEqual(delay, expected)

    def test_hugeFailureCounts(self) -> None:
        """
        A collector away for a very long time (a million failures in a row) still gives a
        finite ceiling: the cap.
        """
        self.assertEqual(full_jitter(1_000_000, 1.0, 300.0, upper), 300.0)

    def test_firstFailures(self) -> None:
        """
        With the default base of 1 s and cap of 5 min the ceilings go 1, 2, 4, … 256, then
        300 from the tenth failure on.
        """
        ceilings = [full_jitter(n, 1.0, 300.0, upper) for n in range(1, 13)]
        self.assertEqual(ceilings, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300])

    def test_usesTheGivenUniform(self) -> None:
        """
        The value returned is the one the given random source drew, unchanged.
        """
        self.assertEqual(full_jitter(3, 1.0, 300.0, lambda low, high: 0.25), 0.25)
        self.assertEqual(full_jitter(3, 1.0, 300.0, lambda low, high: low), 0.0)

    @settings(max_examples=300, deadline=None)
    @given(
        failures=st.integers(min_value=1, max_value=10_000),
        base=st.floats(min_value=0.001, max_value=60.0),
        cap=st.floats(min_value=0.001, max_value=86400.0),
    )
    def test_realRandomWithinBounds(self, failures: int, base: float, cap: float) -> None:
        """
        With the real random source the delay is never negative and never over the cap,
        nor over the exponential ceiling.
        """
        delay = full_jitter(failures, base, cap)
        self.assertGreaterEqual(delay, 0.0)
        self.assertLessEqual(delay, cap)
        self.assertLessEqual(delay, base * 2.0 ** min(failures - 1, 64))


class RetryAfterTests(SynchronousTestCase):
    def test_absent(self) -> None:
        """
        No header (or an empty one) means no instruction.
        """
        self.assertIsNone(parse_retry_after(None, NOW))
        self.assertIsNone(parse_retry_after(b"", NOW))

    def test_deltaSeconds(self) -> None:
        """
        Delta-seconds are taken as they are, surrounding whitespace ignored.
        """
        self.assertEqual(parse_retry_after(b"120", NOW), 120.0)
        self.assertEqual(parse_retry_after(b"0", NOW), 0.0)
        self.assertEqual(parse_retry_after(b" 7 ", NOW), 7.0)

    def test_deltaSecondsCapped(self) -> None:
        """
        More than an hour is taken as an hour, however long the number.
        """
        self.assertEqual(MAX_RETRY_AFTER, 3600.0)
        self.assertEqual(parse_retry_after(b"3601", NOW), 3600.0)
        self.assertEqual(parse_retry_after(b"9" * 400, NOW), 3600.0)

    def test_httpDateInTheFuture(self) -> None:
        """
        An IMF-fixdate in the future is the seconds until then.
        """
        value = email.utils.formatdate(NOW + 200, usegmt=True).encode()
        self.assertEqual(parse_retry_after(value, NOW), 200.0)

    def test_httpDateInThePast(self) -> None:
        """
        A date already past means retry now: 0, never negative.
        """
        value = email.utils.formatdate(NOW - 5000, usegmt=True).encode()
        self.assertEqual(parse_retry_after(value, NOW), 0.0)

    def test_httpDateFarFutureCapped(self) -> None:
        """
        A date more than an hour away is taken as an hour.
        """
        value = email.utils.formatdate(NOW + 86400, usegmt=True).encode()
        self.assertEqual(parse_retry_after(value, NOW), 3600.0)

    def test_obsoleteDateFormsAreGMT(self) -> None:
        """
        RFC 9110 makes recipients accept the obsolete RFC 850 and asctime forms, both in
        GMT: in a process whose local time zone is not UTC they still mean the same
        instant.
        """
        old = os.environ.get("TZ")

        def restore() -> None:
            if old is None:
                os.environ.pop("TZ", None)
            else:
                os.environ["TZ"] = old
            time.tzset()

        self.addCleanup(restore)
        os.environ["TZ"] = "America/New_York"
        time.tzset()
        moment = time.gmtime(NOW + 200)
        rfc850 = time.strftime("%A, %d-%b-%y %H:%M:%S GMT", moment).encode()
        asctime = time.strftime("%a %b %d %H:%M:%S %Y", moment).encode()
        self.assertEqual(parse_retry_after(rfc850, NOW), 200.0)
        self.assertEqual(parse_retry_after(asctime, NOW), 200.0)

    def test_garbage(self) -> None:
        """
        Anything that is neither delta-seconds nor a date is no instruction: negative and
        fractional numbers too.
        """
        for value in [b"soon", b"-5", b"1.5", b"12abc", b"Mon, 99 Foo 2023", b"\xff\xfe"]:
            self.assertIsNone(parse_retry_after(value, NOW), value)

    def test_latin1DigitLookalikes(self) -> None:
        """
        Latin-1 superscript digits (C{\\xb2} is '²', which C{str.isdigit} accepts) are
        garbage, not a number: no instruction, and no exception.
        """
        for value in [b"\xb2", b"1\xb2", b"\xb9\xb2\xb3"]:
            self.assertIsNone(parse_retry_after(value, NOW), value)

    @settings(max_examples=500, deadline=None)
    @given(st.binary(max_size=40))
    def test_neverRaises(self, value: bytes) -> None:
        """
        Whatever bytes a collector sends, the answer is C{None} or a delay in M{[0, 3600]}.
        """
        result = parse_retry_after(value, NOW)
        if result is not None:
            self.assertGreaterEqual(result, 0.0)
            self.assertLessEqual(result, MAX_RETRY_AFTER)
