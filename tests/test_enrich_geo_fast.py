"""
Tests for L{linkrouter.collector.geo.PackagedLocator}'s fast path: placing an address from
its number gives what C{geoip2fast}'s public C{lookup} of its text gives, on every address.
"""

from __future__ import annotations

import ipaddress
from bisect import bisect_right
from functools import cache

from hypothesis import example, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from linkrouter.collector.geo import Address, PackagedLocator, Place


@cache
def locator() -> PackagedLocator:
    return PackagedLocator()


def by_lookup(address: Address) -> Place:
    """The reference: geoip2fast's public lookup of the address's text."""
    packaged = locator()
    return packaged._place(*packaged._details(address))


v4 = st.builds(ipaddress.IPv4Address, st.integers(0, 2**32 - 1))
v6 = st.builds(
    ipaddress.IPv6Address,
    st.integers(0, 2**128 - 1)
    | st.integers(0x2000 << 112, (0x2C00 << 112) - 1)  # where the allocated space is
    | st.integers(0, 2**32 - 1),  # ::a.b.c.d, numbers the IPv4 table holds
)
scoped = st.builds(
    lambda address, scope: ipaddress.IPv6Address(f"{address}%{scope}"),
    v6,
    st.sampled_from(["eth0", "1"]),
)


class PackagedFastPathTests(SynchronousTestCase):
    @settings(max_examples=3000, deadline=None)
    @given(v4 | v6 | scoped)
    @example(ipaddress.IPv4Address("8.8.8.8"))
    @example(ipaddress.IPv4Address("10.0.0.1"))
    @example(ipaddress.IPv4Address("255.255.255.255"))
    @example(ipaddress.IPv4Address("0.0.0.0"))
    @example(ipaddress.IPv6Address("2a02:8100::"))
    @example(ipaddress.IPv6Address("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"))
    @example(ipaddress.IPv6Address("::"))
    @example(ipaddress.IPv6Address("fe80::1%eth0"))
    def test_agrees_with_lookup(self, address: Address) -> None:
        """
        L{PackagedLocator.locate} places every address as the public lookup does.
        """
        self.assertEqual(locator().locate(address), by_lookup(address))

    @settings(max_examples=1000, deadline=None)
    @given(v4 | v6)
    def test_agrees_at_network_ends(self, address: Address) -> None:
        """
        At and beside both ends of the data's network holding C{address}, where a gap
        between networks (an address the data does not know) begins and ends.
        """
        found = locator()._database._main_index_lookup(int(address))
        if not isinstance(found, tuple):
            return
        _, _, first, last, _ = found
        kind = type(address)
        top = 2**32 - 1 if isinstance(address, ipaddress.IPv4Address) else 2**128 - 1
        for number in {first - 1, first, last, last + 1, last + 2}:
            if 0 <= number <= top:
                end = kind(number)
                self.assertEqual((end, locator().locate(end)), (end, by_lookup(end)))

    @settings(max_examples=1000, deadline=None)
    @given(v4 | v6)
    def test_agrees_at_owner_network_ends(self, address: Address) -> None:
        """
        At and beside both ends of the owner network (ASN) range holding C{address}: the
        owner network is found from geoip2fast's tables, not from its C{_asn_lookup}.
        """
        tables = locator()._tables
        assert tables is not None
        number = int(address)
        root = bisect_right(tables.asn_index, number) - 1
        chunk = bisect_right(tables.asn_first[root], number) - 1
        first = tables.asn_first[root][chunk]
        sizes = tables.v6_sizes if locator()._database.ipv6 else tables.v4_sizes
        last = first + sizes[tables.asn_length[root][chunk]] - 1
        kind = type(address)
        top = 2**32 - 1 if isinstance(address, ipaddress.IPv4Address) else 2**128 - 1
        for end_number in {first - 1, first, last, last + 1}:
            if 0 <= end_number <= top:
                end = kind(end_number)
                self.assertEqual((end, locator().locate(end)), (end, by_lookup(end)))

    def test_fast_path_taken(self) -> None:
        """
        Plain public addresses take the fast path (so the property above tests it), and
        places are found: the data is there.
        """
        self.assertIsNotNone(locator()._tables)
        for text in ["8.8.8.8", "193.99.144.80", "2a02:8100::"]:
            address = ipaddress.ip_address(text)
            found = locator()._locate_number(address)
            self.assertIsNotNone(found)
            assert found is not None
            self.assertIsNotNone(found.country)
