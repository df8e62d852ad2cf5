# -*- test-case-name: tests.test_blocklist -*-
"""
The block list: valid links an operator has disabled, for abuse.

A link stays valid (its HMAC verifies) but the router answers it C{410 Gone}. An operator
blocks one link (its LinkID), every link of one message (its message key, the first 12
characters of its LinkIDs), every link a key signed (its key id), or every link to a
destination host and its subdomains. The file is TOML, re-read on SIGHUP; the check costs a
few set lookups per click, so it sits on the redirect path without slowing it.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Iterable
from functools import lru_cache

from ada_url import URL
from attrs import field, frozen
from twisted.python.filepath import FilePath

from .codec import LINK_ID_PATTERN, TrackedLink
from .keys import KEY_ID_PATTERN
from .linkid import MESSAGE_KEY_LENGTH

__all__ = ["EMPTY", "BlockList", "BlockListError", "destination_host", "load_blocklist"]

MAX_BLOCKLIST_BYTES = 16 * 1024 * 1024
"""A block list larger than this is refused rather than read into memory."""

_CACHED_TARGET = 1024
"""Host checks of destinations up to this length are cached (a few MiB at most)."""

_MESSAGE_KEY = re.compile(rf"[A-Za-z0-9_-]{{{MESSAGE_KEY_LENGTH}}}")
_HOST = re.compile(r"[^\s/?#@:\\\[\]]+|\[[0-9A-Fa-f:.]+\]")


class BlockListError(ValueError):
    """
    The block list cannot be used; the message names the file and the problem.
    """


def destination_host(target: str) -> str:
    """
    The host of a signed (normalized) target: lower case, IDNA, without port or final dot.
    """
    start = target.index("//") + 2
    end = target.find("/", start)
    authority = target[start : end if end >= 0 else len(target)]
    if authority.startswith("["):
        return authority[: authority.find("]") + 1]
    return authority.partition(":")[0].removesuffix(".")


@frozen
class BlockList:
    """
    What is blocked: exact LinkIDs, message keys, key ids and destination hosts.
    """

    link_ids: frozenset[str] = frozenset()
    message_keys: frozenset[str] = frozenset()
    key_ids: frozenset[str] = frozenset()
    hosts: frozenset[str] = frozenset()
    _empty: bool = field(init=False, repr=False, eq=False)
    _cached_host_reason: Callable[[str], str | None] = field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        empty = not (self.link_ids or self.message_keys or self.key_ids or self.hosts)
        object.__setattr__(self, "_empty", empty)
        # Every recipient of a campaign clicks the same destinations: each is walked once.
        cached = lru_cache(maxsize=2048)(self._host_reason)
        object.__setattr__(self, "_cached_host_reason", cached)

    def __bool__(self) -> bool:
        return not self._empty

    def reason(self, link: TrackedLink) -> str | None:
        """
        Why C{link} is blocked, or C{None} if it is not: a set lookup per listed kind, and
        one per label of the destination host (C{a.b.example}, C{b.example}, C{example}).
        """
        if self._empty:
            return None
        if link.link_id in self.link_ids:
            return f"link id {link.link_id} is listed"
        prefix = link.link_id[:MESSAGE_KEY_LENGTH]
        if prefix in self.message_keys:
            return f"message key {prefix} is listed"
        if link.key_id in self.key_ids:
            return f"key id {link.key_id} is listed"
        target = link.target
        if self.hosts and target is not None:
            if len(target) <= _CACHED_TARGET:
                return self._cached_host_reason(target)
            return self._host_reason(target)
        return None

    def _host_reason(self, target: str) -> str | None:
        host = destination_host(target)
        suffix = host
        while True:
            if suffix in self.hosts:
                return f"destination host {host} is listed as {suffix}"
            dot = suffix.find(".")
            if dot < 0:
                return None
            suffix = suffix[dot + 1 :]


EMPTY = BlockList()
"""Nothing blocked: the router's block list when none is configured."""


def _host(value: str) -> str:
    if not _HOST.fullmatch(value):
        raise ValueError("is not a host name (no scheme, port, path or user)")
    try:
        hostname = URL(f"http://{value}/").hostname
    except ValueError:
        hostname = ""
    name = str(hostname or "").removesuffix(".")
    if not name or "" in name.split("."):
        raise ValueError("is not a valid host name")
    return name


def _strings(
    document: dict[str, object], name: str, check: Callable[[str], str], hint: str
) -> frozenset[str]:
    values = document.get(name, [])
    if not isinstance(values, list):
        raise ValueError(f"{name} must be a list of strings")
    checked = set()
    for value in values:
        if not isinstance(value, str):
            raise ValueError(f"{name}: {value!r} is not a string")
        try:
            checked.add(check(value))
        except ValueError:
            raise ValueError(f"{name}: {value!r} is not {hint}") from None
    return frozenset(checked)


def _pattern(pattern: re.Pattern[str]) -> Callable[[str], str]:
    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise ValueError(value)
        return value

    return check


_LISTS: Iterable[tuple[str, Callable[[str], str], str]] = (
    ("link_ids", _pattern(LINK_ID_PATTERN), "a LinkID (1 to 32 of A-Z a-z 0-9 - _)"),
    (
        "message_keys",
        _pattern(_MESSAGE_KEY),
        f"a message key ({MESSAGE_KEY_LENGTH} of A-Z a-z 0-9 - _)",
    ),
    ("key_ids", _pattern(KEY_ID_PATTERN), "a key id (1 to 16 of A-Z a-z 0-9 - _)"),
    ("hosts", _host, "a host name like spam.example (its subdomains are blocked too)"),
)


def parse_blocklist(text: bytes) -> BlockList:
    """
    The block list in the TOML C{text}.

    @raise ValueError: it is not TOML, has an unknown key or a malformed entry.
    """
    try:
        document = tomllib.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise ValueError(f"is not valid TOML: {error}") from None
    known = [name for name, _, _ in _LISTS]
    unknown = sorted(set(document) - set(known))
    if unknown:
        raise ValueError(f"has unknown key(s) {unknown}; the known ones are {', '.join(known)}")
    return BlockList(*(_strings(document, name, check, hint) for name, check, hint in _LISTS))


def load_blocklist(path: FilePath[str]) -> BlockList:
    """
    Read and check the block list at C{path}.

    @raise BlockListError: it cannot be read or is invalid; the message names the file.
    """
    try:
        with open(path.path, "rb") as file:
            text = file.read(MAX_BLOCKLIST_BYTES + 1)
    except OSError as error:
        raise BlockListError(f"block list {path.path} cannot be read: {error.strerror}") from None
    if len(text) > MAX_BLOCKLIST_BYTES:
        raise BlockListError(f"block list {path.path} is over {MAX_BLOCKLIST_BYTES} bytes")
    try:
        return parse_blocklist(text)
    except ValueError as error:
        raise BlockListError(f"block list {path.path} {error}") from None
