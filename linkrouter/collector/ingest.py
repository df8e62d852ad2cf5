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
import ipaddress
import re
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from attrs import frozen

from ..codec import LINK_ID_PATTERN, MAX_ISSUED_AT
from ..event import EVENT_VERSION, MAX_USER_AGENT, decode_line
from ..keys import KEY_ID_PATTERN
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
    if not isinstance(value, str) or len(value) > 45:
        return False
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


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


def _milliseconds(timestamp: str) -> int | None:
    match = _TIMESTAMP.fullmatch(timestamp)
    assert match is not None
    year, month, day, hour, minute, second, millisecond = map(int, match.groups())
    try:
        moment = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError:  # February 30th and the like
        return None
    return calendar.timegm(moment.utctimetuple()) * 1000 + millisecond


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
