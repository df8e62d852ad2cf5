"""
Tests for L{linkrouter.proxyprotocol}: the PROXY header parser (versions 1 and 2) and the
wrapper that puts the header's source under the router's site.
"""

from __future__ import annotations

import ipaddress
import itertools
import struct
from urllib.parse import urlsplit

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from linkrouter.codec import Part, sign
from linkrouter.event import Hit
from linkrouter.keys import Key, KeyState
from linkrouter.proxyprotocol import (
    V1_MAX,
    V2_SIGNATURE,
    InvalidProxyHeader,
    ProxyFactory,
    ProxyHeader,
    parse_proxy_header,
)
from linkrouter.resource import LinkResource
from linkrouter.site import LinkSite
from linkrouter.trustedproxies import TrustedProxies

_SETTINGS = settings(max_examples=300, deadline=None)
KEY = Key("k1", b"\x01" * 32, KeyState.ACTIVE)
LINK = urlsplit(
    sign("https://example.com/", KEY, "L1", Part.HTML, 1764780000, base="https://click.example")
).path
BALANCER = IPv4Address("TCP", "10.1.2.3", 50000)

ipv4 = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)
ipv6 = st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address)
ports = st.integers(0, 65535)


def v1(source: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> bytes:
    kind, destination = ("TCP4", "192.0.2.1") if source.version == 4 else ("TCP6", "2001:db8::1")
    return f"PROXY {kind} {source} {destination} {port} 443\r\n".encode()


def v2(
    source: ipaddress.IPv4Address | ipaddress.IPv6Address,
    port: int,
    command: int = 0x21,
    tlvs: bytes = b"",
) -> bytes:
    if source.version == 4:
        family, addresses = 0x11, source.packed + bytes([192, 0, 2, 1])
    else:
        family = 0x21
        addresses = source.packed + ipaddress.IPv6Address("2001:db8::1").packed
    block = addresses + struct.pack("!HH", port, 443) + tlvs
    return V2_SIGNATURE + bytes([command, family]) + struct.pack("!H", len(block)) + block


def splits(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


class ParserTests(SynchronousTestCase):
    def test_v1(self) -> None:
        """
        A version 1 header gives its source address and port, and its length.
        """
        header = b"PROXY TCP4 203.0.113.9 192.0.2.1 51000 443\r\n"
        self.assertEqual(
            parse_proxy_header(header + b"GET /"),
            ProxyHeader(len(header), (ipaddress.IPv4Address("203.0.113.9"), 51000)),
        )
        header6 = b"PROXY TCP6 2001:db8::9 2001:db8::1 51000 443\r\n"
        self.assertEqual(
            parse_proxy_header(header6),
            ProxyHeader(len(header6), (ipaddress.IPv6Address("2001:db8::9"), 51000)),
        )

    def test_v1Unknown(self) -> None:
        """
        C{PROXY UNKNOWN} (a balancer's own connection) names no source.
        """
        self.assertEqual(parse_proxy_header(b"PROXY UNKNOWN\r\n"), ProxyHeader(15, None))
        self.assertEqual(
            parse_proxy_header(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\nX"), ProxyHeader(35, None)
        )

    def test_v2(self) -> None:
        """
        A version 2 header (IPv4 or IPv6, with or without TLVs) gives its source.
        """
        source4 = ipaddress.IPv4Address("203.0.113.9")
        self.assertEqual(parse_proxy_header(v2(source4, 51000)), ProxyHeader(28, (source4, 51000)))
        source6 = ipaddress.IPv6Address("2001:db8::9")
        tlv = b"\x04\x00\x03abc"  # PP2_TYPE_NOOP
        header = v2(source6, 51000, tlvs=tlv)
        self.assertEqual(
            parse_proxy_header(header + b"\x16\x03\x01"),
            ProxyHeader(16 + 36 + len(tlv), (source6, 51000)),
        )

    def test_v2Local(self) -> None:
        """
        The C{LOCAL} command (HAProxy's health checks) names no source, whatever the block.
        """
        header = v2(ipaddress.IPv4Address("203.0.113.9"), 1, command=0x20)
        self.assertEqual(parse_proxy_header(header), ProxyHeader(28, None))
        local = V2_SIGNATURE + b"\x20\x00\x00\x00"
        self.assertEqual(parse_proxy_header(local), ProxyHeader(16, None))

    def test_v2UnixAndUnspec(self) -> None:
        """
        A PROXY of the UNSPEC or UNIX family names no IP source: the real peer stands.
        """
        unspec = V2_SIGNATURE + b"\x21\x00\x00\x00"
        self.assertEqual(parse_proxy_header(unspec), ProxyHeader(16, None))
        unix = V2_SIGNATURE + b"\x21\x31" + struct.pack("!H", 216) + b"\x00" * 216
        self.assertEqual(parse_proxy_header(unix), ProxyHeader(232, None))

    def test_garbage(self) -> None:
        """
        Anything that is not a header is refused at once: HTTP, a TLS ClientHello, a bad
        version or command, a wrong family, addresses that do not parse, too-short blocks.
        """
        good = v2(ipaddress.IPv4Address("203.0.113.9"), 1)
        for data in [
            b"GET / HTTP/1.1\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
            b"PROXY TCP4 2001:db8::1 5.6.7.8 1 2\r\n",
            b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
            b"PROXY TCP4 1.2.3.400 5.6.7.8 1 2\r\n",
            b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 " + b"1" * V1_MAX,
            b"proxy TCP4",
            good[:12] + b"\x11" + good[13:],  # version 1 in a version 2 signature
            good[:12] + b"\x22" + good[13:],  # command 2
            good[:13] + b"\x12" + good[14:],  # UDP over a TCP connection
            good[:13] + b"\x41" + good[14:],  # family 4
            good[:14] + b"\x00\x04" + good[16:20],  # 4 bytes are too few for IPv4
            good[:13] + b"\x21" + good[14:],  # IPv6 in 12 bytes
        ]:
            self.assertRaises(InvalidProxyHeader, parse_proxy_header, data)

    @_SETTINGS
    @given(st.one_of(ipv4, ipv6), ports, st.booleans(), st.binary(max_size=40))
    def test_prefixesWaitAndWholeParses(
        self,
        source: ipaddress.IPv4Address | ipaddress.IPv6Address,
        port: int,
        version_two: bool,
        tlvs: bytes,
    ) -> None:
        """
        Every strict prefix of a valid header asks for more; the whole header gives its
        source and size, whatever follows it.
        """
        header = v2(source, port, tlvs=tlvs) if version_two else v1(source, port)
        for end in range(len(header)):
            self.assertIsNone(parse_proxy_header(header[:end]))
        self.assertEqual(
            parse_proxy_header(header + b"\x16\x03\x01"), ProxyHeader(len(header), (source, port))
        )

    @_SETTINGS
    @given(st.binary(max_size=120))
    def test_anyBytes(self, data: bytes) -> None:
        """
        Any bytes give a header, a request for more, or L{InvalidProxyHeader}; a header is
        never longer than the bytes, and more bytes never turn a refusal into a header.
        """
        try:
            header = parse_proxy_header(data)
        except InvalidProxyHeader:
            self.assertRaises(InvalidProxyHeader, parse_proxy_header, data + b"\r\n" * 60)
            return
        if header is not None:
            self.assertLessEqual(header.size, len(data))

    @_SETTINGS
    @given(st.binary(max_size=120).map(lambda b: V2_SIGNATURE + b))
    def test_anyVersionTwoBytes(self, data: bytes) -> None:
        """
        Arbitrary bytes after the version 2 signature are parsed or refused cleanly.
        """
        try:
            header = parse_proxy_header(data)
        except InvalidProxyHeader:
            return
        if header is not None:
            self.assertLessEqual(header.size, len(data))


class WrapperTests(SynchronousTestCase):
    """
    L{ProxyFactory} around the router's site, over an in-memory transport (the real
    listener puts TLS between them; C{tests.test_tap} runs that).
    """

    def setUp(self) -> None:
        self.hits: list[Hit] = []
        resource = LinkResource(lambda: {KEY.key_id: KEY}, self.hits.append)
        site = LinkSite(resource, reactor=Clock())
        self.factory = ProxyFactory(site, TrustedProxies.parse(["10.0.0.0/8", "::1"]))

    def connect(
        self, peer: IPv4Address | IPv6Address = BALANCER
    ) -> tuple[object, StringTransport]:
        protocol = self.factory.buildProtocol(peer)
        self.assertIsNotNone(protocol)
        transport = StringTransport(peerAddress=peer)
        protocol.makeConnection(transport)
        return protocol, transport

    def click(self, chunks: list[bytes]) -> tuple[StringTransport, list[str]]:
        protocol, transport = self.connect()
        for chunk in chunks:
            protocol.dataReceived(chunk)  # type: ignore[attr-defined]
        return transport, [hit.ip for hit in self.hits]

    def request(self) -> bytes:
        return b"GET " + LINK.encode() + b" HTTP/1.1\r\nHost: click.example\r\n\r\n"

    def test_v1Source(self) -> None:
        """
        After a version 1 header, the request is answered and its hit carries the header's
        source address.
        """
        transport, ips = self.click([v1(ipaddress.IPv4Address("203.0.113.9"), 1) + self.request()])
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 302 "))
        self.assertEqual(ips, ["203.0.113.9"])

    def test_v2Sources(self) -> None:
        """
        Version 2 headers carry IPv4 and IPv6 sources to the hit.
        """
        for source in ["203.0.113.9", "2001:db8::9"]:
            self.hits.clear()
            header = v2(ipaddress.ip_address(source), 1, tlvs=b"\x04\x00\x00")
            transport, ips = self.click([header, self.request()])
            self.assertTrue(transport.value().startswith(b"HTTP/1.1 302 "))
            self.assertEqual(ips, [source])

    def test_local(self) -> None:
        """
        A C{LOCAL} header (a health check) is served as the balancer's own connection.
        """
        local = V2_SIGNATURE + b"\x20\x00\x00\x00"
        transport, ips = self.click([local + self.request()])
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 302 "))
        self.assertEqual(ips, [BALANCER.host])

    @settings(max_examples=100, deadline=None)
    @given(st.lists(st.integers(0, 200), max_size=6))
    def test_splitAcrossReads(self, cuts: list[int]) -> None:
        """
        A header and request cut anywhere across reads is read the same.
        """
        self.hits.clear()
        data = v2(ipaddress.IPv4Address("203.0.113.9"), 1) + self.request()
        transport, ips = self.click(splits(data, cuts))
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 302 "))
        self.assertEqual(ips, ["203.0.113.9"])

    def test_garbageClosedWithoutAnswer(self) -> None:
        """
        A connection that starts with anything but a header (here a plain request, and a
        split bad header) is aborted without a byte written, and nothing is recorded.
        """
        for chunks in [[self.request()], [b"PROXY TC", b"P9 1.2.3.4 5.6.7.8 1 2\r\n"]]:
            transport, ips = self.click(chunks)
            self.assertEqual(transport.value(), b"")
            self.assertTrue(transport.disconnected)
            self.assertEqual(ips, [])

    def test_untrustedRefused(self) -> None:
        """
        A connection from an address that is not a balancer gets no protocol: the listener
        closes it before reading anything. Trusted IPv4-mapped peers are accepted.
        """
        for host in ["192.0.2.7", "11.0.0.1"]:
            self.assertIsNone(self.factory.buildProtocol(IPv4Address("TCP", host, 1)))
        self.assertIsNone(self.factory.buildProtocol(IPv6Address("TCP", "::2", 1)))
        self.assertIsNotNone(self.factory.buildProtocol(IPv6Address("TCP", "::1", 1)))
        self.assertIsNotNone(self.factory.buildProtocol(IPv6Address("TCP", "::ffff:10.0.0.1", 1)))

    def test_peerBeforeHeader(self) -> None:
        """
        Until the header is read, the connection's peer is the balancer; the wrapper ends
        the connection cleanly.
        """
        protocol, _ = self.connect()
        self.assertEqual(protocol.getPeer(), BALANCER)  # type: ignore[attr-defined]
        protocol.dataReceived(v1(ipaddress.IPv4Address("203.0.113.9"), 7))  # type: ignore[attr-defined]
        self.assertEqual(
            protocol.getPeer(),  # type: ignore[attr-defined]
            IPv4Address("TCP", "203.0.113.9", 7),
        )
        protocol.connectionLost(None)  # type: ignore[attr-defined]
        self.assertEqual(self.factory.protocols, {})
