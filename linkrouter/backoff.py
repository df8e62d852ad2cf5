# -*- test-case-name: tests.test_backoff -*-
"""
Retry arithmetic for sync: exponential backoff with full jitter, and C{Retry-After}.

Pure functions; the random source is passed in, so tests can pin it.
"""

from __future__ import annotations

import datetime
import email.utils
import random
from collections.abc import Callable

__all__ = ["MAX_RETRY_AFTER", "full_jitter", "parse_retry_after"]

MAX_RETRY_AFTER = 3600.0
"""A collector's Retry-After is honoured up to an hour; a longer one is taken as an hour."""


def full_jitter(
    failures: int,
    base: float,
    cap: float,
    uniform: Callable[[float, float], float] = random.uniform,
) -> float:
    """
    Seconds to wait after C{failures} failures in a row (1 or more): uniformly random in
    M{[0, min(cap, base * 2 ** (failures - 1))]}, so many routers retrying after one outage
    spread out instead of arriving together.
    """
    ceiling = min(cap, base * 2.0 ** min(failures - 1, 64))
    return uniform(0.0, ceiling)


def parse_retry_after(value: bytes | None, now: float) -> float | None:
    """
    Seconds to wait from a C{Retry-After} header (delta-seconds or an HTTP date), bounded to
    L{MAX_RETRY_AFTER}; C{None} if absent or unreadable.
    """
    if not value:
        return None
    text = value.decode("latin-1").strip()
    if text.isascii() and text.isdigit():
        return min(float(text), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # asctime and other zone-less forms are GMT in HTTP
        when = when.replace(tzinfo=datetime.UTC)
    return min(max(when.timestamp() - now, 0.0), MAX_RETRY_AFTER)
