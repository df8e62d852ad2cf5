# -*- test-case-name: tests.test_event -*-
"""
The click event: what the request path hands over, and its self-checking journal line.

The request path only builds a L{Hit} (a small tuple); the journal writer turns batches of
hits into lines, off the redirect path. A line is one JSON object ending in a CRC-32 of the
rest, so a reader can tell a torn or corrupted line from a good one while C{jq} still reads
every line. The destination URL is never part of an event.
"""

from __future__ import annotations

import ipaddress
import os
import time
import zlib
from collections.abc import Iterable
from enum import Enum
from typing import Any, NamedTuple

import orjson

from .codec import TrackedLink

__all__ = [
    "EVENT_VERSION",
    "MAX_USER_AGENT",
    "Hit",
    "IPStorage",
    "decode_line",
    "encode_hits",
    "uuid7",
]

EVENT_VERSION = 1
MAX_USER_AGENT = 512
"""User-Agent bytes kept; the rest is cut before decoding."""

_CRC_SUFFIX = b',"crc":"'
_CRC_TAIL_LENGTH = len(_CRC_SUFFIX) + 8 + 2  # ,"crc":"xxxxxxxx"}


class IPStorage(Enum):
    """
    How much of the client address an event keeps.
    """

    FULL = "full"
    TRUNCATED = "truncated"  # the /24 of IPv4, the /48 of IPv6
    NONE = "none"


class Hit(NamedTuple):
    """
    One verified request, as the request path enqueues it: nothing is encoded yet.
    """

    time: float
    link: TrackedLink
    method: bytes
    ip: str
    user_agent: bytes


_RANDOM_BITS = (1 << 80) - 1
_RANDOM_KEPT = _RANDOM_BITS & ~(0xF << 76) & ~(0x3 << 62)  # room for version and variant
_VERSION_AND_VARIANT = (0x7 << 76) | (0x2 << 62)


def _uuid7(milliseconds: int, random: int) -> str:
    value = (milliseconds & 0xFFFF_FFFF_FFFF) << 80 | (random & _RANDOM_KEPT)
    text = f"{value | _VERSION_AND_VARIANT:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def _uuid7_head(milliseconds: int) -> str:
    """
    The first 13 digits of a UUIDv7 for C{milliseconds} (the time and the version), dashes
    included: what L{encode_hits} computes once for the clicks of one millisecond.
    """
    text = f"{milliseconds & 0xFFFF_FFFF_FFFF:012x}"
    return f"{text[:8]}-{text[8:]}-7"


_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}
"""A random hex digit with its top two bits set to the RFC 9562 variant, C{10}."""


def uuid7(milliseconds: int) -> str:
    """
    A UUIDv7 (RFC 9562) for C{milliseconds} since the epoch: unique, and sorted by time.
    """
    return _uuid7(milliseconds, int.from_bytes(os.urandom(10), "big"))


def _stored_ip(ip: str, storage: IPStorage) -> str | None:
    if storage is IPStorage.FULL:
        return ip
    if storage is IPStorage.NONE:
        return None
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)


def _second(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


_MILLISECONDS = [f".{fraction:03d}Z" for fraction in range(1000)]


def _utc(milliseconds: int) -> str:
    seconds, fraction = divmod(milliseconds, 1000)
    return _second(seconds) + _MILLISECONDS[fraction]


def encode_hits(
    hits: Iterable[Hit], router_id: str, first_sequence: int, ip_storage: IPStorage
) -> tuple[bytes, int]:
    """
    The journal lines for C{hits}, numbered from C{first_sequence}, and the next number.

    Written for speed, as it runs for every click (about 3 us an event): what is the same
    for many events (the second's and the millisecond's text, the enums' values) is
    computed once, and C{orjson} writes the line.
    """
    lines = []
    sequence = first_sequence
    batch = list(hits)
    # One system call a batch, not one an event; as hex, each event's 80 bits are 20 digits.
    randomness = os.urandom(10 * len(batch)).hex()
    full_ip = ip_storage is IPStorage.FULL
    last_millisecond = last_second = -1
    second = stamp = head = ""
    crc32 = zlib.crc32
    dumps = orjson.dumps
    for index, hit in enumerate(batch):
        link = hit.link
        milliseconds = int(hit.time * 1000)
        if milliseconds != last_millisecond:  # a busy router journals several a millisecond
            last_millisecond = milliseconds
            seconds, fraction = divmod(milliseconds, 1000)
            if seconds != last_second:
                last_second = seconds
                second = _second(seconds)
            stamp = second + _MILLISECONDS[fraction]
            head = _uuid7_head(milliseconds)
        random = randomness[20 * index : 20 * index + 20]
        body = dumps(
            {
                "v": EVENT_VERSION,
                "id": f"{head}{random[1:4]}-{_VARIANT[random[4]]}{random[5:8]}-{random[8:]}",
                "seq": sequence,
                "router": router_id,
                "ts": stamp,
                "kind": link.kind._value_,  # not .value: a property, five times slower
                "link": link.link_id,
                "key": link.key_id,
                "part": link.part._value_,
                "issued": link.issued_at,
                "method": hit.method.decode("latin-1"),
                "ip": hit.ip if full_ip else _stored_ip(hit.ip, ip_storage),
                "ua": hit.user_agent[:MAX_USER_AGENT].decode("utf-8", "backslashreplace"),
            }
        )
        lines.append(b'%b,"crc":"%08x"}\n' % (body[:-1], crc32(body)))
        sequence += 1
    return b"".join(lines), sequence


def decode_line(line: bytes) -> dict[str, Any] | None:
    """
    The event of one journal line (with or without its newline), or C{None} if the line is
    torn or corrupt: its checksum does not match, or it is not an event.
    """
    line = line.rstrip(b"\n")
    if len(line) <= _CRC_TAIL_LENGTH or not line.endswith(b'"}'):
        return None
    cut = len(line) - _CRC_TAIL_LENGTH
    if line[cut : cut + len(_CRC_SUFFIX)] != _CRC_SUFFIX:
        return None
    body = line[:cut] + b"}"
    if line[cut + len(_CRC_SUFFIX) : -2] != b"%08x" % zlib.crc32(body):
        return None  # one spelling only: eight lower-case hex digits
    try:
        event = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(event, dict) or not isinstance(event.get("seq"), int):
        return None
    return event
