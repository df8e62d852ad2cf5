"""
Tests for L{linkrouter.trustedproxies}: which peers are balancers, and the client that
C{X-Forwarded-For} names through them.
"""

from __future__ import annotations

import contextlib
import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from linkrouter.trustedproxies import NO_PROXIES, TrustedProxies

TRUSTED = TrustedProxies.parse(["10.0.0.0/8", "127.0.0.1", "2001:db8:1::/48"])


class TrustedProxiesTests(SynchronousTestCase):
    def test_parse(self) -> None:
        """
        Addresses and CIDR networks parse; anything else, or host bits in a network, is
        refused with the value named.
        """
        self.assertEqual(len(TRUSTED.networks), 3)
        for bad in ["10.0.0.1/8", "example.com", "", "10.0.0.0/33"]:
            error = self.assertRaises(ValueError, TrustedProxies.parse, [bad])
            self.assertIn(repr(bad), str(error))

    def test_trusts(self) -> None:
        """
        Membership by address, IPv4-mapped IPv6 included; non-addresses are not trusted.
        """
        for host in ["10.255.0.1", "127.0.0.1", "::ffff:127.0.0.1", "2001:db8:1:ffff::1"]:
            self.assertTrue(TRUSTED.trusts(host), host)
        for host in ["127.0.0.2", "11.0.0.1", "2001:db8:2::1", "unknown", ""]:
            self.assertFalse(TRUSTED.trusts(host), host)
        self.assertFalse(NO_PROXIES.trusts("127.0.0.1"))
        self.assertFalse(NO_PROXIES)

    def test_forwardedClient(self) -> None:
        """
        From a trusted peer, the right-most untrusted address of the header is the client;
        from any other peer, or without a header, the peer is.
        """
        cases = [
            ("10.0.0.1", [b"203.0.113.5"], "203.0.113.5"),
            ("10.0.0.1", [b"198.51.100.1, 203.0.113.5, 10.0.0.9"], "203.0.113.5"),
            ("10.0.0.1", [b"198.51.100.1", b"203.0.113.5,10.0.0.9"], "203.0.113.5"),
            ("10.0.0.1", [b"10.0.0.7, 10.0.0.9"], "10.0.0.7"),  # all trusted: the left-most
            ("10.0.0.1", [b"garbage, 10.0.0.9"], "10.0.0.9"),  # the walk stops at garbage
            ("10.0.0.1", [b"203.0.113.5, \xff"], "10.0.0.1"),
            ("10.0.0.1", [b"2001:db8:9::5"], "2001:db8:9::5"),
            ("10.0.0.1", None, "10.0.0.1"),
            ("10.0.0.1", [], "10.0.0.1"),
            ("192.0.2.7", [b"203.0.113.5"], "192.0.2.7"),
        ]
        for peer, header, client in cases:
            self.assertEqual(TRUSTED.forwarded_client(peer, header), client, (peer, header))
        self.assertEqual(NO_PROXIES.forwarded_client("10.0.0.1", [b"203.0.113.5"]), "10.0.0.1")

    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.binary(max_size=60), max_size=4), st.booleans())
    def test_anyHeader(self, header: list[bytes], trusted_peer: bool) -> None:
        """
        Any header gives the peer or an IP address that appears in the header.
        """
        peer = "10.0.0.1" if trusted_peer else "192.0.2.7"
        client = TRUSTED.forwarded_client(peer, header)
        named = set()
        for hop in b",".join(header).split(b","):
            with contextlib.suppress(UnicodeDecodeError, ValueError):
                named.add(str(ipaddress.ip_address(hop.strip().decode("ascii"))))
        self.assertIn(client, {peer} | (named if trusted_peer else set()))
