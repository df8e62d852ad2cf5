# -*- test-case-name: tests.test_collector_addresses -*-
"""
Client addresses as the router stores them, read at the collector's ingest rate.

C{ipaddress} is the reference: it decides which texts are addresses and which addresses are
global. But it parses in Python (about 2 us an address) and tests globalness by trying every
special-purpose network in turn (about 10 us); the collector reads one address an event, most
of them new. So the texts C{socket.inet_pton} accepts (what the router writes) are parsed in
C, anything else is left to C{ipaddress}; and globalness is one binary search in a table built
at import from C{ipaddress}'s own answers, so both keep to the running Python's rules.
"""

from __future__ import annotations

import ipaddress
import socket
from bisect import bisect_right
from collections.abc import Iterable, Iterator

__all__ = ["Address", "is_address", "is_global", "parse_address"]

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_IPV4_MAPPED = 0xFFFF << 32  # ::ffff:0:0/96, an IPv4 address seen by a dual-stack socket


def parse_address(text: str) -> Address | None:
    """
    The address C{text} spells, as C{ipaddress.ip_address(text)} reads it, or C{None} where
    that raises C{ValueError}.
    """
    try:
        if "." in text and ":" not in text:
            return ipaddress.IPv4Address(int.from_bytes(socket.inet_pton(socket.AF_INET, text)))
        return ipaddress.IPv6Address(int.from_bytes(socket.inet_pton(socket.AF_INET6, text)))
    except (OSError, ValueError):
        pass  # not the plain spelling C reads: a scope id, or not an address at all
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def is_address(text: str) -> bool:
    """
    Whether C{text} spells an address (C{parse_address(text) is not None}), without
    building it: the check of every ingested line, which L{parse_address} then reads again
    for enrichment.
    """
    try:
        _inet_pton(_AF_INET if "." in text and ":" not in text else _AF_INET6, text)
    except (OSError, ValueError):
        return parse_address(text) is not None  # not what C reads: let ipaddress decide
    return True


_AF_INET, _AF_INET6 = socket.AF_INET, socket.AF_INET6
_inet_pton = socket.inet_pton


def _networks(constants: type) -> Iterator[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """
    Every network C{ipaddress} names in one of its constants classes.
    """
    for value in vars(constants).values():
        for item in value if isinstance(value, list | tuple) else [value]:
            if isinstance(item, ipaddress.IPv4Network | ipaddress.IPv6Network):
                yield item


def _edges(networks: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> set[int]:
    """
    The first address of every network, and the one after its last.
    """
    edges = set()
    for network in networks:
        edges.add(int(network.network_address))
        edges.add(int(network.broadcast_address) + 1)
    return edges


def _table(edges: set[int], top: int, make: type[Address]) -> tuple[list[int], list[bool]]:
    """
    The starts of the stretches of address space between C{edges}, and whether the
    addresses of each are global: C{ipaddress} decides by membership of networks whose ends
    are all among C{edges}, so one address answers for its whole stretch.
    """
    starts = sorted({0} | {edge for edge in edges if edge <= top})
    return starts, [make(start).is_global for start in starts]


# The special-purpose networks ipaddress tests against: private, so not in its stubs.
_V4_CONSTANTS: type = ipaddress._IPv4Constants  # type: ignore[attr-defined]
_V6_CONSTANTS: type = ipaddress._IPv6Constants  # type: ignore[attr-defined]
_V4_EDGES = _edges(_networks(_V4_CONSTANTS)) | _edges(
    [ipaddress.IPv4Network("100.64.0.0/10")]  # named inline by some Python versions
)
_V4 = _table(_V4_EDGES, 2**32 - 1, ipaddress.IPv4Address)
_V6 = _table(
    _edges(_networks(_V6_CONSTANTS)) | {_IPV4_MAPPED + edge for edge in _V4_EDGES | {0, 2**32}},
    2**128 - 1,
    ipaddress.IPv6Address,
)


def is_global(address: Address) -> bool:
    """
    C{address.is_global}, in one binary search.
    """
    starts, answers = _V4 if address.version == 4 else _V6
    return answers[bisect_right(starts, int(address)) - 1]
