# -*- test-case-name: tests.test_trustedproxies -*-
"""
The balancers allowed to speak for clients: the addresses and networks of C{[listen]
proxy_from}, and the client address an C{X-Forwarded-For} header names through them.

Anyone can write C{X-Forwarded-For} or a PROXY header, so either is believed only from a
configured balancer. A header is read from the right: each trusted hop vouches for the one
before it, and the right-most address no balancer vouches for is the client.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from attrs import frozen

__all__ = ["NO_PROXIES", "Network", "TrustedProxies"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _unmapped(address: _Address) -> _Address:
    # a dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@frozen
class TrustedProxies:
    """
    The networks whose connections may carry a PROXY header or C{X-Forwarded-For}.
    """

    networks: tuple[Network, ...] = ()

    @classmethod
    def parse(cls, values: Iterable[str]) -> TrustedProxies:
        """
        The networks of C{values}: addresses (C{"127.0.0.1"}, C{"::1"}) or networks in CIDR
        notation (C{"10.0.0.0/8"}).

        @raise ValueError: a value is neither, or a network has host bits set; the message
            names the value.
        """
        networks = []
        for value in values:
            try:
                networks.append(ipaddress.ip_network(value, strict=True))
            except ValueError:
                raise ValueError(
                    f"has {value!r}, which is not an IP address or a network like 10.0.0.0/8"
                ) from None
        return cls(tuple(networks))

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, host: str) -> bool:
        """
        Whether C{host}, an IP address as text, is in one of the networks.
        """
        try:
            address = _unmapped(ipaddress.ip_address(host))
        except ValueError:
            return False
        return self._trusts(address)

    def _trusts(self, address: _Address) -> bool:
        return any(address in network for network in self.networks)

    def forwarded_client(self, peer: str, forwarded_for: Sequence[bytes] | None) -> str:
        """
        The client's address for a request from C{peer} carrying the C{X-Forwarded-For}
        header lines C{forwarded_for}: C{peer} itself unless it is trusted; otherwise the
        right-most address of the header that is not trusted (the left-most if all are).
        An entry that is not an IP address ends the walk at the hop to its right.
        """
        if not forwarded_for or not self.trusts(peer):
            return peer
        client = peer
        for line in reversed(forwarded_for):
            for hop in reversed(line.split(b",")):
                try:
                    address = ipaddress.ip_address(hop.strip().decode("ascii"))
                except (UnicodeDecodeError, ValueError):
                    return client
                client = str(address)
                if not self._trusts(_unmapped(address)):
                    return client
        return client


NO_PROXIES = TrustedProxies()
"""Trust no one: every connection speaks for itself."""
