# -*- test-case-name: tests.test_collector_ingest -*-
"""
A router's batch, from gzip bytes to checked events: bounded, and line by line.

The body is inflated with a hard limit (a gzip bomb is refused, never inflated past the
limit), then every line is checked on its own: its checksum, every field's type and range,
no missing and no extra field, and the router it names must be the one that sent it. A bad
line is named in the answer with the reason and never blocks the lines beside it.
"""

from __future__ import annotations

import calendar
import re
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from attrs import frozen

from ..codec import LINK_ID_PATTERN, MAX_ISSUED_AT
from ..event import EVENT_VERSION, MAX_USER_AGENT, decode_line
from ..keys import KEY_ID_PATTERN
from .addresses import is_address
from .model import Event

__all__ = ["Batch", "BodyRefused", "Rejected", "inflate", "parse_batch"]

_CHUNK = 64 * 1024
_ROUTER = re.compile(r"[A-Za-z0-9._-]{1,64}")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_TIMESTAMP = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.(\d{3})Z", re.ASCII)
_METHOD = re.compile(r"[A-Z]{1,16}")
_MAX_AGENT = 4 * MAX_USER_AGENT  # the router escapes each bad byte as four characters
_FIELDS = frozenset(
    (
        "v",
        "id",
        "seq",
        "router",
        "ts",
        "kind",
        "link",
        "key",
        "part",
        "issued",
        "method",
        "ip",
        "ua",
    )
)


class BodyRefused(ValueError):
    """
    The request body as a whole is unusable (not gzip, or over a limit): HTTP 400 or 413.

    @ivar status: the HTTP status to answer.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@frozen
class Rejected:
    """
    A line the collector cannot accept: C{line} counts from 1, as the router expects.
    """

    line: int
    reason: str


@frozen
class Batch:
    events: list[Event]
    rejected: list[Rejected]


def inflate(body: bytes, limit: int) -> bytes:
    """
    The gzip C{body} inflated, at most C{limit} bytes of it.

    @raise BodyRefused: not gzip (400), or it inflates past C{limit} (413); inflating stops
        at the limit, so a bomb costs no more memory than an honest batch.
    """
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    pieces: list[bytes] = []
    size = 0
    rest = b""
    try:
        # the body goes in by slices: the unconsumed tail copied on every call stays small
        for start in range(0, len(body), _CHUNK):
            data = body[start : start + _CHUNK]
            while data and not inflater.eof:
                piece = inflater.decompress(data, min(_CHUNK, limit + 1 - size))
                size += len(piece)
                if size > limit:
                    raise BodyRefused(413, f"the batch inflates to over {limit} bytes")
                pieces.append(piece)
                data = inflater.unconsumed_tail
            if inflater.eof:
                rest = inflater.unused_data or body[start + _CHUNK : start + _CHUNK + 1]
                break
    except zlib.error:
        raise BodyRefused(400, "the body is not gzip") from None
    if not inflater.eof or rest:
        raise BodyRefused(400, "the body is not one complete gzip stream")
    return b"".join(pieces)


def _int_in(low: int, high: int) -> Callable[[object], bool]:
    def check(value: object) -> bool:
        return type(value) is int and low <= value <= high

    return check


def _matches(pattern: re.Pattern[str]) -> Callable[[object], bool]:
    def check(value: object) -> bool:
        return isinstance(value, str) and pattern.fullmatch(value) is not None

    return check


def _ip(value: object) -> bool:
    if value is None:
        return True
    return isinstance(value, str) and len(value) <= 45 and is_address(value)


def _agent(value: object) -> bool:
    return isinstance(value, str) and len(value) <= _MAX_AGENT


_CHECKS: dict[str, Callable[[object], bool]] = {
    "v": lambda value: type(value) is int and value == EVENT_VERSION,
    "id": _matches(_UUID),
    "seq": _int_in(0, 2**63 - 1),
    "router": _matches(_ROUTER),
    "ts": _matches(_TIMESTAMP),
    "kind": lambda value: value in ("click", "open"),
    "link": _matches(LINK_ID_PATTERN),
    "key": _matches(KEY_ID_PATTERN),
    "part": lambda value: value in ("html", "text"),
    "issued": _int_in(0, MAX_ISSUED_AT),
    "method": _matches(_METHOD),
    "ip": _ip,
    "ua": _agent,
}


_UUID_MATCH = _UUID.fullmatch
_ROUTER_MATCH = _ROUTER.fullmatch
_TIMESTAMP_MATCH = _TIMESTAMP.fullmatch
_LINK_MATCH = LINK_ID_PATTERN.fullmatch
_KEY_MATCH = KEY_ID_PATTERN.fullmatch
_METHOD_MATCH = _METHOD.fullmatch


def _valid(fields: dict[str, Any]) -> bool:
    """
    Whether every field passes its check of C{_CHECKS}: the same checks in one expression,
    since calling thirteen functions costs more than the checks themselves. Only when this
    says no are the checks run one by one, to name the first that fails.
    """
    (v, event_id, seq, router, ts, kind, link, key, part, issued, method, ip, ua) = (
        fields["v"], fields["id"], fields["seq"], fields["router"], fields["ts"],
        fields["kind"], fields["link"], fields["key"], fields["part"], fields["issued"],
        fields["method"], fields["ip"], fields["ua"],
    )  # fmt: skip
    return (
        type(v) is int
        and v == EVENT_VERSION
        and isinstance(event_id, str)
        and _UUID_MATCH(event_id) is not None
        and type(seq) is int
        and 0 <= seq <= 2**63 - 1
        and isinstance(router, str)
        and _ROUTER_MATCH(router) is not None
        and isinstance(ts, str)
        and _TIMESTAMP_MATCH(ts) is not None
        and kind in ("click", "open")
        and isinstance(link, str)
        and _LINK_MATCH(link) is not None
        and isinstance(key, str)
        and _KEY_MATCH(key) is not None
        and part in ("html", "text")
        and type(issued) is int
        and 0 <= issued <= MAX_ISSUED_AT
        and isinstance(method, str)
        and _METHOD_MATCH(method) is not None
        and _ip(ip)
        and isinstance(ua, str)
        and len(ua) <= _MAX_AGENT
    )


def _milliseconds(timestamp: str) -> int | None:
    """
    The time C{timestamp} (which matches C{_TIMESTAMP}) names, in milliseconds since the
    epoch, or C{None} if it names no day of the calendar.
    """
    seconds = _seconds(timestamp[:19])
    if seconds is None:
        return None
    return seconds + int(timestamp[20:23])


@lru_cache(maxsize=4096)
def _seconds(date_and_time: str) -> int | None:
    """
    C{YYYY-MM-DDTHH:MM:SS} in milliseconds since the epoch: cached, since the events of a
    batch share few seconds, and building a datetime costs more than checking the line.
    """
    year, month, day = int(date_and_time[0:4]), int(date_and_time[5:7]), int(date_and_time[8:10])
    hour, minute = int(date_and_time[11:13]), int(date_and_time[14:16])
    try:
        moment = datetime(year, month, day, hour, minute, int(date_and_time[17:19]), tzinfo=UTC)
    except ValueError:  # February 30th and the like
        return None
    return calendar.timegm(moment.utctimetuple()) * 1000


def _event(fields: dict[str, Any], sender: str) -> Event | str:
    """
    The event of a decoded line, or why it cannot be accepted.
    """
    if fields.keys() != _FIELDS:
        missing = sorted(_FIELDS - fields.keys())
        extra = sorted(fields.keys() - _FIELDS)
        return "; ".join(
            [f"missing {', '.join(missing)}"] * bool(missing)
            + [f"unknown {', '.join(extra)[:200]}"] * bool(extra)
        )
    if not _valid(fields):
        for name, check in _CHECKS.items():
            if not check(fields[name]):
                return f"invalid {name}"
    if fields["router"] != sender:
        return "the router id is not the sender's"
    milliseconds = _milliseconds(fields["ts"])
    if milliseconds is None:
        return "invalid ts"
    return Event(
        event_id=fields["id"],
        sequence=fields["seq"],
        router=fields["router"],
        timestamp_ms=milliseconds,
        kind=fields["kind"],
        link_id=fields["link"],
        key_id=fields["key"],
        part=fields["part"],
        issued_at=fields["issued"],
        method=fields["method"],
        ip=fields["ip"],
        # NUL is valid JSON but no database text holds it: escaped as the router escapes bytes
        user_agent=fields["ua"].replace("\x00", "\\x00"),
    )


def parse_batch(data: bytes, sender: str, max_events: int) -> Batch:
    """
    The events of an inflated batch from router C{sender}, and the lines refused.

    @raise BodyRefused: more than C{max_events} lines (413).
    """
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if len(lines) > max_events:
        raise BodyRefused(413, f"the batch has over {max_events} lines")
    events: list[Event] = []
    rejected: list[Rejected] = []
    for number, line in enumerate(lines, start=1):
        fields = decode_line(line)
        if fields is None:
            rejected.append(Rejected(number, "not an event line (JSON with a matching crc)"))
            continue
        fields.pop("crc", None)
        result = _event(fields, sender)
        if isinstance(result, str):
            rejected.append(Rejected(number, result))
        else:
            events.append(result)
    return Batch(events, rejected)
