"""
Tests for L{linkrouter.collector.addresses}: the fast address parsing and globalness agree
with C{ipaddress}, the reference, on every input: IPv4, IPv6, IPv4-mapped, scoped, garbage.
"""

from __future__ import annotations

import ipaddress

from hypothesis import example, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from linkrouter.collector import addresses
from linkrouter.collector.addresses import Address, is_address, is_global, parse_address

V4_EDGES = addresses._V4[0]
V6_EDGES = addresses._V6[0]


def reference(text: str) -> Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def near(edges: list[int], top: int) -> st.SearchStrategy[int]:
    """Integers at and beside the table's edges, where an off-by-one would show."""
    return st.builds(
        lambda edge, step: min(max(edge + step, 0), top),
        st.sampled_from(edges),
        st.integers(-2, 2),
    )


v4_ints = st.integers(0, 2**32 - 1) | near(V4_EDGES, 2**32 - 1)
v6_ints = (
    st.integers(0, 2**128 - 1)
    | near(V6_EDGES, 2**128 - 1)
    | st.builds(lambda v4: (0xFFFF << 32) | v4, v4_ints)  # IPv4-mapped
    | st.builds(lambda v4: v4, v4_ints)  # IPv4-compatible, ::a.b.c.d
)
v4_addresses = st.builds(ipaddress.IPv4Address, v4_ints)
v6_addresses = st.builds(ipaddress.IPv6Address, v6_ints)
scope_ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789.", min_size=1, max_size=8)
scopes = scope_ids | st.text(max_size=8)  # some valid, some not


def spellings(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> st.SearchStrategy[str]:
    texts = [str(address), address.exploded, str(address).upper()]
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        texts.append(f"::ffff:{address.ipv4_mapped}")
    return st.sampled_from(texts)


address_texts = (
    st.one_of(v4_addresses, v6_addresses).flatmap(spellings)
    | st.builds(lambda a, s: f"{a}%{s}", v6_addresses, scopes)  # scoped
    | st.text(alphabet="0123456789abcdefABCDEF:.%x ", max_size=45)  # near-addresses
    | st.text(max_size=45)  # anything at all
)


class ParseAddressTests(SynchronousTestCase):
    @settings(max_examples=3000, deadline=None)
    @given(address_texts)
    @example("01.2.3.4")
    @example("1.2.3.04")
    @example("::1.2.3.04")
    @example("1.2.3.4\x00")
    @example("fe80::1%eth0")
    @example("::ffff:1.2.3.4")
    @example("\u0661.2.3.4")
    @example("1::2:3:4:5:6:7:8")
    @example("0:0:0:0:0:0:0:0:1")
    @example("")
    def test_agrees_with_ipaddress(self, text: str) -> None:
        """
        L{parse_address} reads an address where C{ipaddress.ip_address} does, the same one
        (scope included), and refuses what it refuses.
        """
        expected = reference(text)
        found = parse_address(text)
        self.assertEqual(found, expected)
        self.assertIs(type(found), type(expected))
        if expected is not None and isinstance(expected, ipaddress.IPv6Address):
            assert isinstance(found, ipaddress.IPv6Address)
            self.assertEqual(found.scope_id, expected.scope_id)

    @settings(max_examples=3000, deadline=None)
    @given(address_texts)
    @example("1.2.3.4\x00")
    @example("fe80::1%eth0")
    @example("01.2.3.4")
    @example("")
    def test_is_address_agrees(self, text: str) -> None:
        """
        L{is_address} says yes exactly where L{parse_address} reads an address.
        """
        self.assertEqual(is_address(text), parse_address(text) is not None)


class IsGlobalTests(SynchronousTestCase):
    @settings(max_examples=3000, deadline=None)
    @given(v4_addresses | v6_addresses)
    def test_agrees_with_ipaddress(self, address: Address) -> None:
        """
        L{is_global} answers as C{address.is_global} for IPv4 and IPv6 addresses, at and
        beside every special-purpose network's ends and for IPv4-mapped ones.
        """
        self.assertEqual(is_global(address), address.is_global)

    @settings(max_examples=500, deadline=None)
    @given(v6_addresses, scope_ids)
    def test_scoped(self, address: ipaddress.IPv6Address, scope: str) -> None:
        """
        A scoped IPv6 address is global as C{ipaddress} says.
        """
        scoped = ipaddress.IPv6Address(f"{address}%{scope}")
        self.assertEqual(is_global(scoped), scoped.is_global)

    def test_examples(self) -> None:
        """
        Well-known addresses: public, private, shared, documentation, mapped.
        """
        for text, expected in [
            ("8.8.8.8", True),
            ("10.1.2.3", False),
            ("100.64.0.1", False),
            ("192.0.2.1", False),
            ("2a02:8100::", True),
            ("fe80::1", False),
            ("::1", False),
        ]:
            address = ipaddress.ip_address(text)
            self.assertEqual((text, is_global(address)), (text, expected))
            self.assertEqual(address.is_global, expected)
