# -*- test-case-name: tests.test_enrich_scanners -*-
"""
The list of known machine visitors: security scanners that follow every link of a message
before (or instead of) its recipient, and the webmail image proxies that fetch open pixels
on a reader's behalf.

The list is data, not code (C{data/scanners.toml}), so it can be updated without a release,
and an operator can point the collector to a file of their own. Its format is documented in
C{docs/enrichment.rst} and in the shipped file itself.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Iterable, Mapping
from importlib import resources
from typing import Any

import attrs
from twisted.python.filepath import FilePath

__all__ = [
    "FORMAT",
    "Address",
    "ScannerList",
    "ScannerListInvalid",
    "Source",
    "default_scanners",
    "load_scanners",
    "parse_scanners",
]

FORMAT = "linkrouter-scanners 1"
"""The value of the file's C{format} key; any other is refused."""

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_MAX_SIZE = 1024 * 1024
_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,39}\Z")
_TOP_KEYS = {"format", "include_default", "scanner", "image_proxy"}
_SCANNER_KEYS = frozenset({"id", "name", "user_agents", "networks", "ranges"})
_PROXY_KEYS = frozenset({"id", "name", "user_agents"})  # proxies are known by User-Agent only
_MIN_UA_PATTERN = 3


class ScannerListInvalid(ValueError):
    """
    A scanner list cannot be used; the message names the file and what is wrong with it.
    """


@attrs.frozen
class Source:
    """
    One known machine visitor.

    @ivar id: a short stable identifier, used in bot reasons (C{scanner-network:<id>}).
    @ivar user_agents: case-insensitive substrings, any of which identifies its User-Agent.
    @ivar networks: owner networks (the AS organisation names the geo data reports),
        compared without regard to case.
    @ivar ranges: address ranges it visits from.
    """

    id: str
    name: str
    user_agents: tuple[str, ...] = ()
    networks: tuple[str, ...] = ()
    ranges: tuple[Network, ...] = ()


class _RangeTable:
    """
    Longest-prefix match over many ranges: one dictionary per prefix length, so a lookup
    costs a few dictionary probes however many ranges there are.
    """

    def __init__(self, entries: Iterable[tuple[Network, str]]) -> None:
        self._tables: dict[int, list[tuple[int, dict[int, str]]]] = {4: [], 6: []}
        by_length: dict[tuple[int, int], dict[int, str]] = {}
        for network, source_id in entries:
            shift = network.max_prefixlen - network.prefixlen
            table = by_length.setdefault((network.version, shift), {})
            table.setdefault(int(network.network_address) >> shift, source_id)
        for (version, shift), table in sorted(by_length.items()):
            self._tables[version].append((shift, table))  # shortest shift = longest prefix

    def get(self, address: Address) -> str | None:
        value = int(address)
        for shift, table in self._tables[address.version]:
            found = table.get(value >> shift)
            if found is not None:
                return found
        return None


@attrs.frozen
class ScannerList:
    """
    Known security scanners and image proxies, with fast lookups by User-Agent, owner
    network and address. The first listed source wins where two match.
    """

    scanners: tuple[Source, ...]
    image_proxies: tuple[Source, ...] = ()
    _scanner_agents: tuple[tuple[str, str], ...] = attrs.field(init=False)
    _proxy_agents: tuple[tuple[str, str], ...] = attrs.field(init=False)
    _networks: Mapping[str, str] = attrs.field(init=False)
    _ranges: _RangeTable = attrs.field(init=False)

    @_scanner_agents.default
    def _scanner_agents_default(self) -> tuple[tuple[str, str], ...]:
        return _agent_patterns(self.scanners)

    @_proxy_agents.default
    def _proxy_agents_default(self) -> tuple[tuple[str, str], ...]:
        return _agent_patterns(self.image_proxies)

    @_networks.default
    def _networks_default(self) -> Mapping[str, str]:
        networks: dict[str, str] = {}
        for source in self.scanners:
            for network in source.networks:
                networks.setdefault(network.casefold(), source.id)
        return networks

    @_ranges.default
    def _ranges_default(self) -> _RangeTable:
        return _RangeTable((r, s.id) for s in self.scanners for r in s.ranges)

    def scanner_for_user_agent(self, user_agent: str) -> str | None:
        """
        The id of the scanner whose User-Agent C{user_agent} is, or C{None}.
        """
        return _find(self._scanner_agents, user_agent)

    def proxy_for_user_agent(self, user_agent: str) -> str | None:
        """
        The id of the image proxy whose User-Agent C{user_agent} is, or C{None}.
        """
        return _find(self._proxy_agents, user_agent)

    def scanner_for_address(self, address: Address | None, network: str | None) -> str | None:
        """
        The id of the scanner that visits from C{address} (in one of its ranges) or from the
        owner network named C{network}, or C{None}. A listed range wins over an owner name.
        """
        if address is not None:
            found = self._ranges.get(address)
            if found is not None:
                return found
        if network:
            return self._networks.get(network.casefold())
        return None


def _agent_patterns(sources: Iterable[Source]) -> tuple[tuple[str, str], ...]:
    return tuple((p.casefold(), s.id) for s in sources for p in s.user_agents)


def _find(patterns: tuple[tuple[str, str], ...], user_agent: str) -> str | None:
    folded = user_agent.casefold()
    for pattern, source_id in patterns:
        if pattern in folded:
            return source_id
    return None


def _strings(entry: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = entry.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ScannerListInvalid(f"{where}: {key!r} must be a list of non-empty strings")
    return tuple(value)


def _range(text: str, where: str) -> Network:
    try:
        return ipaddress.ip_network(text)
    except ValueError as error:
        raise ScannerListInvalid(f"{where}: range {text!r} is not a network: {error}") from None


def _source(entry: object, table: str, keys: frozenset[str], index: int, seen: set[str]) -> Source:
    where = f"[[{table}]] #{index + 1}"
    if not isinstance(entry, dict):
        raise ScannerListInvalid(f"{where} is not a table")
    unknown = set(entry) - keys
    if unknown:
        raise ScannerListInvalid(f"{where} has unknown key(s) {sorted(unknown)}")
    source_id = entry.get("id")
    if not isinstance(source_id, str) or not _ID.match(source_id):
        raise ScannerListInvalid(
            f"{where}: 'id' must be 1-40 characters of a-z, 0-9 and '-', got {source_id!r}"
        )
    where = f"{where} ({source_id})"
    if source_id in seen:
        raise ScannerListInvalid(f"{where}: the id is used twice in [[{table}]]")
    seen.add(source_id)
    name = entry.get("name", source_id)
    if not isinstance(name, str):
        raise ScannerListInvalid(f"{where}: 'name' must be a string")
    user_agents = _strings(entry, "user_agents", where)
    short = [p for p in user_agents if len(p) < _MIN_UA_PATTERN]
    if short:
        raise ScannerListInvalid(
            f"{where}: user_agents {short} are shorter than {_MIN_UA_PATTERN} characters "
            "and would match almost any browser"
        )
    ranges = tuple(_range(r, where) for r in _strings(entry, "ranges", where))
    source = Source(source_id, name, user_agents, _strings(entry, "networks", where), ranges)
    if not (source.user_agents or source.networks or source.ranges):
        raise ScannerListInvalid(f"{where}: give at least one of user_agents, networks, ranges")
    return source


def _sources(document: Mapping[str, Any], table: str, keys: frozenset[str]) -> tuple[Source, ...]:
    entries = document.get(table, [])
    if not isinstance(entries, list):
        raise ScannerListInvalid(f"{table!r} must be an array of tables ([[{table}]])")
    seen: set[str] = set()
    return tuple(_source(e, table, keys, index, seen) for index, e in enumerate(entries))


def parse_scanners(text: bytes, where: str) -> ScannerList:
    """
    The scanner list in C{text}, the bytes of the file named C{where}, or
    L{ScannerListInvalid} naming the file and the problem.
    """
    try:
        try:
            document = tomllib.loads(text.decode("utf-8"))
        except UnicodeDecodeError:
            raise ScannerListInvalid("is not UTF-8 text") from None
        except tomllib.TOMLDecodeError as error:
            raise ScannerListInvalid(f"is not valid TOML: {error}") from None
        if document.get("format") != FORMAT:
            raise ScannerListInvalid(f"must start with format = {FORMAT!r}")
        unknown = set(document) - _TOP_KEYS
        if unknown:
            raise ScannerListInvalid(f"has unknown key(s) {sorted(unknown)}")
        include_default = document.get("include_default", False)
        if not isinstance(include_default, bool):
            raise ScannerListInvalid("'include_default' must be true or false")
        listed = ScannerList(
            _sources(document, "scanner", _SCANNER_KEYS),
            _sources(document, "image_proxy", _PROXY_KEYS),
        )
    except ScannerListInvalid as error:
        raise ScannerListInvalid(f"scanner list {where}: {error}") from None
    if include_default:
        shipped = default_scanners()
        return ScannerList(
            listed.scanners + _missing(shipped.scanners, listed.scanners),
            listed.image_proxies + _missing(shipped.image_proxies, listed.image_proxies),
        )
    return listed


def _missing(shipped: tuple[Source, ...], own: tuple[Source, ...]) -> tuple[Source, ...]:
    """The shipped sources an operator's file did not redefine (by id)."""
    ids = {source.id for source in own}
    return tuple(source for source in shipped if source.id not in ids)


def load_scanners(path: FilePath[str]) -> ScannerList:
    """
    The scanner list in the file at C{path}, or L{ScannerListInvalid} naming the file and
    the problem: missing, unreadable, too large or malformed.
    """
    try:
        with path.open("r") as file:
            text = file.read(_MAX_SIZE + 1)
    except OSError as error:
        raise ScannerListInvalid(
            f"scanner list {path.path}: cannot be read: {error.strerror or error}"
        ) from None
    if len(text) > _MAX_SIZE:
        raise ScannerListInvalid(f"scanner list {path.path}: is larger than {_MAX_SIZE} bytes")
    return parse_scanners(text, path.path)


_SHIPPED = resources.files(__package__) / "data" / "scanners.toml"


def default_scanners() -> ScannerList:
    """
    The scanner list shipped with linkrouter (C{linkrouter/collector/data/scanners.toml}).
    """
    return parse_scanners(_SHIPPED.read_bytes(), str(_SHIPPED))
