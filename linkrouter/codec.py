# -*- test-case-name: tests.test_codec -*-
"""
The tracked-link format, version 1: sign a destination into a link, verify a link back.

Pure functions over values: no Twisted, no I/O. The layout, the signed byte string and the
rules are documented in C{docs/link-format.rst} and pinned by C{tests/vectors/links-v1.json};
links issued today must verify for years, so nothing here may change what version 1 means.

A click link's path is C{/<prefix>/<readable target>/<key id>/<link id>/<issued>/<tag>}; an
open-pixel link's is C{/1o/<key id>/<link id>/<issued>/<tag>}.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from collections.abc import Mapping
from enum import Enum
from functools import lru_cache
from typing import NamedTuple

from ada_url import parse_url
from attrs import field, frozen

from .keys import Key, KeyState
from .target import TargetRefused, normalize_target

__all__ = [
    "LINK_ID_PATTERN",
    "MAX_ISSUED_AT",
    "MAX_LINK_LENGTH",
    "TAG_BYTES",
    "ClickSigner",
    "Kind",
    "Part",
    "Refusal",
    "TargetRefused",
    "TrackedLink",
    "canonical_message",
    "sign",
    "verify",
]

MAX_LINK_LENGTH = 2000
"""No tracked link is issued longer than this (Outlook refuses links over 2,048)."""

TAG_BYTES = 12
"""The HMAC-SHA256 tag keeps 96 bits: exactly 16 base64url characters, with no padding."""

LINK_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,32}")
"""A LinkID is 1 to 32 base64url characters, opaque: it says nothing of the destination."""

MAX_ISSUED_AT = 64**8 - 1
"""The issue time is at most 8 base64url digits of seconds since the epoch."""

_DOMAIN = b"linkrouter tracked link v1\x00"

# An issued link is at most 2,000 characters; an intermediary may escape every character of
# it (3 characters each). Anything longer is refused before any parsing.
_MAX_PATH_LENGTH = 3 * MAX_LINK_LENGTH


class Kind(Enum):
    """
    What a link records when it is fetched.
    """

    CLICK = "click"
    """A redirect to the signed destination."""

    OPEN = "open"
    """A transparent pixel: the HTML part was displayed."""


class Part(Enum):
    """
    The part of the message a link was issued in.
    """

    HTML = "html"
    TEXT = "text"


class Refusal(Enum):
    """
    Why a path is not a valid tracked link. The router answers every one with the same 404;
    the reasons are for operators (C{linkrouter verify}) and metrics only.
    """

    MALFORMED = "the path is not a version 1 tracked link"
    UNKNOWN_KEY = "the link names a key that is not in the keyring"
    REVOKED_KEY = "the link was signed by a key that has been revoked"
    BAD_TAG = "the link's tag does not match: it was changed or never issued"


class TrackedLink(NamedTuple):
    """
    What a verified link says. C{target} is the exact C{Location} value (C{None} for an open
    pixel).

    A named tuple rather than an C{attrs} class: the router builds one for every request, and
    a tuple is built in a third of the time of a frozen C{attrs} instance (about 1 us less a
    click, C{docs/performance.rst}).
    """

    kind: Kind
    part: Part
    target: str | None
    key_id: str
    link_id: str
    issued_at: int


def _message_head(kind: Kind, part: Part) -> str:
    """
    The start of the signed string for a kind and part, as latin-1 text (chr(n) is byte n).
    """
    return (
        _DOMAIN
        + len(kind.value).to_bytes(2, "big")
        + kind.value.encode()
        + len(part.value).to_bytes(2, "big")
        + part.value.encode()
    ).decode("latin-1")


@frozen
class _Layout:
    """
    What a prefix means: kind, part, the target's scheme and the signed string's start.
    """

    kind: Kind
    part: Part
    scheme: str
    head: str = field(init=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "head", _message_head(self.kind, self.part))


# Every prefix of version 1; every other prefix is refused.
_PREFIXES = {
    "1": _Layout(Kind.CLICK, Part.HTML, "http://"),
    "1s": _Layout(Kind.CLICK, Part.HTML, "https://"),
    "1t": _Layout(Kind.CLICK, Part.TEXT, "http://"),
    "1st": _Layout(Kind.CLICK, Part.TEXT, "https://"),
    "1o": _Layout(Kind.OPEN, Part.HTML, ""),
}

_FIELDS = r"([A-Za-z0-9_-]{1,16})/([A-Za-z0-9_-]{1,32})/([A-Za-z0-9_-]{1,8})/([A-Za-z0-9_-]{16})"
# The readable target may arrive with any equivalent escaping: RFC 3986 pchar, raw or escaped.
_CLICK_PATH = re.compile(r"/(1s?t?)/([A-Za-z0-9._~!$&'()*+,;=:@%-]+)/" + _FIELDS)
_OPEN_PATH = re.compile(r"/1o/" + _FIELDS)

# "XX" of "%XX", in any case, -> the character, for printable ASCII only: a signed target
# never holds anything else, so an escape outside this table is refused without decoding it.
_UNESCAPE = {
    high + low: chr(byte)
    for byte in range(0x21, 0x7F)
    for high in {f"{byte >> 4:X}", f"{byte >> 4:x}"}
    for low in {f"{byte & 0xF:X}", f"{byte & 0xF:x}"}
}

# Everything but the unreserved characters is escaped in the readable target, upper-case hex.
_UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
_ESCAPED = {chr(b): f"%{b:02X}" for b in range(0x21, 0x7F) if chr(b) not in _UNRESERVED}
_UNRESERVED_BYTES = _UNRESERVED.encode("ascii")
_ESCAPED_BYTES = {ord(character): (character, escaped) for character, escaped in _ESCAPED.items()}


@lru_cache(maxsize=4096)
def _readable(href: str) -> str:
    """
    The target C{href} without its scheme as one path segment: every reserved character
    escaped. Cached, like L{normalize_target}, and by the target itself, whose hash is known
    already: a bulk send signs the same few destinations again and again.
    """
    try:
        rest = href[href.index("://") + 3 :]
        # A URL holds a few of the 28 reserved characters, many times each: deleting the
        # unreserved ones in one pass in C says which, and each is replaced in one pass ("%"
        # first: the escapes hold "%" themselves).
        present = set(rest.encode("ascii").translate(None, _UNRESERVED_BYTES))
        readable = rest
        if 0x25 in present:
            present.remove(0x25)
            readable = readable.replace("%", "%25")
        for byte in present:
            character, escaped = _ESCAPED_BYTES[byte]
            readable = readable.replace(character, escaped)
    except (ValueError, KeyError):  # never: normalize_target
        raise ValueError(f"{href!r} is not a normalized target") from None
    return readable


def _message(head: str, key_id: str, link_id: str, issued_at: int, target: str) -> bytes:
    issued = str(issued_at)
    size = len(target)
    # One latin-1 string where chr(n) is byte n: the short fields' lengths fit the low byte
    # (their high byte is 0); the target's takes both.
    return (
        f"{head}"
        f"\x00{chr(len(key_id))}{key_id}"
        f"\x00{chr(len(link_id))}{link_id}"
        f"\x00{chr(len(issued))}{issued}"
        f"{chr(size >> 8)}{chr(size & 0xFF)}{target}"
    ).encode("latin-1")


def canonical_message(
    kind: Kind, part: Part, key_id: str, link_id: str, issued_at: int, target: str
) -> bytes:
    """
    The byte string the tag authenticates: the domain constant, then each field as a 2-byte
    big-endian length and its ASCII bytes, in a fixed order: kind, part, key id, LinkID, issue
    time in decimal, target (empty for an open pixel). No two different links share one.
    """
    return _message(_message_head(kind, part), key_id, link_id, issued_at, target)


_URLSAFE = bytes.maketrans(b"+/", b"-_")


def _tag(key: Key, message: bytes) -> bytes:
    """
    The link's tag: the first 96 bits of the HMAC, base64url (16 characters, never padded).
    """
    return binascii.b2a_base64(key.mac(message)[:TAG_BYTES], newline=False).translate(_URLSAFE)


# The issue time is a base-64 numeral in the base64url alphabet, most significant digit first,
# without leading zero digits ("A"): the 8-digit form is exactly the base64url of 6 bytes.
def _encode_issued_at(seconds: int) -> str:
    return base64.urlsafe_b64encode(seconds.to_bytes(6, "big")).decode().lstrip("A") or "A"


@lru_cache(maxsize=1024)  # a message's links, and a campaign's, share their issue time
def _decode_issued_at(digits: str) -> int | None:
    if len(digits) > 1 and digits[0] == "A":
        return None  # a leading zero digit: the same time has one spelling only
    padded = digits.rjust(8, "A").replace("-", "+").replace("_", "/")
    return int.from_bytes(binascii.a2b_base64(padded), "big")


@lru_cache(maxsize=64)
def _checked_base(base: str) -> str:
    """
    C{base} as the origin links start with, or L{ValueError}: https, or http for loopback.
    """
    try:
        parsed = parse_url(base, attributes=("href", "protocol", "hostname", "pathname"))
    except ValueError:
        raise ValueError(
            f"the base {base!r} is not a URL; give one like https://click.example"
        ) from None
    origin = str(parsed["href"]).rstrip("/")
    if parsed["pathname"] != "/" or origin + "/" != parsed["href"] or "@" in origin:
        raise ValueError(
            f"the base {base!r} must be only a scheme and host (and port), like "
            "https://click.example"
        )
    loopback = parsed["hostname"] in {"localhost", "127.0.0.1", "[::1]"}
    if parsed["protocol"] != "https:" and not (parsed["protocol"] == "http:" and loopback):
        raise ValueError(f"the base {base!r} must use https (http only for loopback)")
    return origin


def _check_signer(key: Key, issued_at: int) -> None:
    if key.state is not KeyState.ACTIVE:
        raise ValueError(f"key {key.key_id!r} is {key.state.value}; only the active key signs")
    if type(issued_at) is not int or not 0 <= issued_at <= MAX_ISSUED_AT:
        raise ValueError(f"the issue time {issued_at!r} is not in 0..{MAX_ISSUED_AT}")


def _check_link_id(link_id: str) -> None:
    if not LINK_ID_PATTERN.fullmatch(link_id):
        raise ValueError(f"the LinkID {link_id!r} is not 1 to 32 characters of A-Z a-z 0-9 - _")


def _too_long(link: str) -> TargetRefused:
    return TargetRefused(
        f"the tracked link would have {len(link)} characters, over {MAX_LINK_LENGTH}"
    )


def sign(
    target: str | None,
    key: Key,
    link_id: str,
    part: Part,
    issued_at: int,
    *,
    base: str,
    kind: Kind = Kind.CLICK,
) -> str:
    """
    The tracked link under C{base} for C{target}, signed with C{key}.

    @param target: the destination as written in the email (an IRI is fine); C{None} for an
        open pixel.
    @raise TargetRefused: the destination must not be signed, or the link would be over
        L{MAX_LINK_LENGTH} characters; the original link should be left as it is.
    @raise ValueError: an argument is invalid (inactive key, bad LinkID, base or time).
    """
    _check_signer(key, issued_at)
    _check_link_id(link_id)
    origin = _checked_base(base)
    if kind is Kind.OPEN:
        if target is not None or part is not Part.HTML:
            raise ValueError("an open pixel has no target and belongs to the HTML part")
        href = ""
        layout = _PREFIXES["1o"]
        head = "/1o"
    else:
        if target is None:
            raise ValueError("a click link needs a target")
        href = normalize_target(target)
        https = href.startswith("https://")
        prefix = ("1s" if https else "1") + ("t" if part is Part.TEXT else "")
        layout = _PREFIXES[prefix]
        head = f"/{prefix}/{_readable(href)}"
    tag = _tag(key, _message(layout.head, key.key_id, link_id, issued_at, href)).decode("ascii")
    link = f"{origin}{head}/{key.key_id}/{link_id}/{_encode_issued_at(issued_at)}/{tag}"
    if len(link) > MAX_LINK_LENGTH:
        raise _too_long(link)
    return link


class ClickSigner:
    """
    Signs the click links of one part of one message: L{sign} with the key, part, issue time
    and base checked and laid out once, not once a link (the rewriter signs hundreds).

    C{signer.link(normalize_target(target), link_id)} is exactly C{sign(target, key, link_id,
    part, issued_at, base=base)}; the caller has the target normalized already (to decide
    whether to track it), so it is not normalized again.
    """

    __slots__ = ("_issued", "_key", "_key_id", "_layouts", "_signed_issued")

    def __init__(self, key: Key, part: Part, issued_at: int, *, base: str) -> None:
        _check_signer(key, issued_at)
        origin = _checked_base(base)
        text = "t" if part is Part.TEXT else ""
        key_field = f"\x00{chr(len(key.key_id))}{key.key_id}"
        # Per scheme: how the link starts, how the signed string starts.
        self._layouts = {
            https: (f"{origin}/{prefix}/", layout.head + key_field)
            for https, prefix in ((False, "1" + text), (True, "1s" + text))
            for layout in (_PREFIXES[prefix],)
        }
        self._key = key
        issued = str(issued_at)
        self._signed_issued = f"\x00{chr(len(issued))}{issued}"
        self._key_id = key.key_id
        self._issued = _encode_issued_at(issued_at)

    def link(self, href: str, link_id: str) -> str:
        """
        The tracked link for C{href}, which is what L{normalize_target} returned.

        @raise TargetRefused: the link would be over L{MAX_LINK_LENGTH} characters.
        @raise ValueError: C{link_id} is not a LinkID.
        """
        _check_link_id(link_id)
        return self.link_with_valid_id(href, link_id)

    def link_with_valid_id(self, href: str, link_id: str) -> str:
        """
        L{link} for a C{link_id} that is a valid LinkID by construction, as the issuer's
        (a message key and a position) are: not checked again for every link.

        @raise TargetRefused: the link would be over L{MAX_LINK_LENGTH} characters.
        """
        start, head = self._layouts[href.startswith("https://")]
        size = len(href)
        message = (
            f"{head}\x00{chr(len(link_id))}{link_id}{self._signed_issued}"
            f"{chr(size >> 8)}{chr(size & 0xFF)}{href}"
        ).encode("latin-1")
        mac = self._key.mac(message)[:TAG_BYTES]  # _tag, inlined
        tag = binascii.b2a_base64(mac, newline=False).translate(_URLSAFE).decode("ascii")
        readable = _readable(href)
        link = f"{start}{readable}/{self._key_id}/{link_id}/{self._issued}/{tag}"
        if len(link) > MAX_LINK_LENGTH:
            raise _too_long(link)
        return link


def _unescaped(readable: str) -> str | None:
    """
    The readable target with each C{%XX} replaced by its character, or C{None} for a bad
    escape or one of a byte no target can hold.
    """
    pieces = readable.split("%")
    try:
        return pieces[0] + "".join([_UNESCAPE[piece[:2]] + piece[2:] for piece in pieces[1:]])
    except KeyError:
        return None


# Every recipient of a campaign clicks links with the same readable target (only the LinkID
# and tag differ), so a busy router unescapes each destination once, not once a click. Only
# targets up to 1,024 characters are cached, which bounds what strangers' paths can make it
# hold to a few MiB.
_CACHED_READABLE = 1024
_unescaped_cached = lru_cache(maxsize=2048)(_unescaped)


def verify(path: str, keys: Mapping[str, Key]) -> TrackedLink | Refusal:
    """
    Decode and authenticate the path of a tracked link (no query, no fragment).

    The readable target is unescaped exactly once; the tag is compared in constant time; the
    key is found with one dictionary lookup. Nothing of the request but C{path} is consulted,
    so nothing else can change where the link goes.
    """
    if len(path) > _MAX_PATH_LENGTH:
        return Refusal.MALFORMED
    match = _CLICK_PATH.fullmatch(path)
    if match is not None:
        prefix, readable, key_id, link_id, issued, tag = match.groups()
        layout = _PREFIXES[prefix]
        if "%" in readable:
            if len(readable) <= _CACHED_READABLE:
                unescaped = _unescaped_cached(readable)
            else:
                unescaped = _unescaped(readable)
            if unescaped is None:
                return Refusal.MALFORMED
            readable = unescaped
        href = layout.scheme + readable
        if len(href) > MAX_LINK_LENGTH:
            return Refusal.MALFORMED  # no issued link holds a target this long
        target: str | None = href
    else:
        match = _OPEN_PATH.fullmatch(path)
        if match is None:
            return Refusal.MALFORMED
        key_id, link_id, issued, tag = match.groups()
        layout = _PREFIXES["1o"]
        href, target = "", None
    issued_at = _decode_issued_at(issued)
    if issued_at is None:
        return Refusal.MALFORMED
    key = keys.get(key_id)
    if key is None:
        return Refusal.UNKNOWN_KEY
    expected = _tag(key, _message(layout.head, key_id, link_id, issued_at, href))
    if not hmac.compare_digest(expected, tag.encode("ascii")):
        return Refusal.BAD_TAG
    if key.state is KeyState.REVOKED:
        return Refusal.REVOKED_KEY
    return TrackedLink(layout.kind, layout.part, target, key_id, link_id, issued_at)
