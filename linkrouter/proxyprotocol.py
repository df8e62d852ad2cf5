# -*- test-case-name: tests.test_proxyprotocol -*-
"""
The PROXY protocol (versions 1 and 2) on the public listener, so that behind HAProxy the
journal records the client's address, not the balancer's.

The header comes first on the raw TCP connection, before any TLS: the layers are raw TCP,
then L{ProxyProtocol}, then TLS, then HTTP. (Twisted's C{haproxy:ssl:} endpoint string puts
the parser inside TLS, which a real HAProxy does not speak.) A connection from an address
that is not a configured balancer is closed before anything is read; a connection whose
first bytes are not a valid header is closed without an answer.

L{parse_proxy_header} is the pure parser; it takes the bytes received so far, so a header
split across reads is read whole.
"""

from __future__ import annotations

import ipaddress
import re
import struct
from typing import Any

from attrs import frozen
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IAddress, IProtocol, IProtocolFactory
from twisted.internet.protocol import connectionDone
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure

from .trustedproxies import TrustedProxies

__all__ = [
    "V1_MAX",
    "V2_SIGNATURE",
    "InvalidProxyHeader",
    "ProxyFactory",
    "ProxyHeader",
    "ProxyProtocol",
    "parse_proxy_header",
]

V1_PREFIX = b"PROXY "
V1_MAX = 107
"""The longest version 1 header, with its CRLF."""

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
_V2_FIXED = 16
_V1_LINE = re.compile(
    rb"PROXY (?:UNKNOWN[^\r\n]*|(TCP4|TCP6) ([0-9a-fA-F.:]+) ([0-9a-fA-F.:]+)"
    rb" (0|[1-9][0-9]{0,4}) (0|[1-9][0-9]{0,4}))\r\n"
)
_V2_LOCAL, _V2_PROXY = 0x20, 0x21
_V2_UNSPEC, _V2_INET, _V2_INET6, _V2_UNIX = 0x00, 0x10, 0x20, 0x30
_V2_STREAM = 0x1
_V2_ADDRESS_BYTES = {_V2_INET: 12, _V2_INET6: 36, _V2_UNIX: 216}


class InvalidProxyHeader(ValueError):
    """
    The bytes are not, and cannot become, a valid PROXY header.
    """


@frozen
class ProxyHeader:
    """
    A parsed header: C{size} bytes long, naming the client C{source} (address and port), or
    C{None} when the connection speaks for itself (C{LOCAL} health checks, C{UNKNOWN} or
    non-IP families), whose real peer then stands.
    """

    size: int
    source: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int] | None


def parse_proxy_header(data: bytes) -> ProxyHeader | None:
    """
    The PROXY header at the start of C{data}, or C{None} if C{data} is a valid beginning of
    one that needs more bytes.

    @raise InvalidProxyHeader: C{data} does not begin with a valid header.
    """
    if data[:12] == V2_SIGNATURE[: len(data)]:
        return _parse_v2(data)
    if data[:6] == V1_PREFIX[: len(data)]:
        return _parse_v1(data)
    raise InvalidProxyHeader("neither a version 1 nor a version 2 PROXY header")


def _address(text: bytes, version: int) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        address = ipaddress.ip_address(text.decode("ascii"))
    except ValueError:
        raise InvalidProxyHeader(f"{text!r} is not an IP address") from None
    if address.version != version:
        raise InvalidProxyHeader(f"{text!r} is not an IPv{version} address")
    return address


def _parse_v1(data: bytes) -> ProxyHeader | None:
    end = data.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        if len(data) >= V1_MAX or b"\n" in data:
            raise InvalidProxyHeader("a version 1 header without CRLF within 107 bytes")
        return None
    match = _V1_LINE.fullmatch(data, 0, end + 2)
    if match is None:
        raise InvalidProxyHeader("a malformed version 1 header")
    protocol, source, destination, source_port, destination_port = match.groups()
    if protocol is None:
        return ProxyHeader(end + 2, None)
    version = 4 if protocol == b"TCP4" else 6
    _address(destination, version)
    if int(source_port) > 65535 or int(destination_port) > 65535:
        raise InvalidProxyHeader("a port over 65535")
    return ProxyHeader(end + 2, (_address(source, version), int(source_port)))


def _parse_v2(data: bytes) -> ProxyHeader | None:
    if len(data) < _V2_FIXED:
        return None
    command, family_protocol, length = struct.unpack_from("!BBH", data, 12)
    size = _V2_FIXED + length
    if command not in (_V2_LOCAL, _V2_PROXY):
        raise InvalidProxyHeader(f"version and command {command:#04x} are not 2 LOCAL or PROXY")
    family, protocol = family_protocol & 0xF0, family_protocol & 0x0F
    if family not in (_V2_UNSPEC, _V2_INET, _V2_INET6, _V2_UNIX) or protocol > 2:
        raise InvalidProxyHeader(f"unknown address family {family_protocol:#04x}")
    if length < _V2_ADDRESS_BYTES.get(family, 0):
        raise InvalidProxyHeader(f"{length} bytes of addresses are too few for {family:#04x}")
    if len(data) < size:
        return None
    if command == _V2_LOCAL or family in (_V2_UNSPEC, _V2_UNIX) or protocol == 0:
        return ProxyHeader(size, None)
    if protocol != _V2_STREAM:
        raise InvalidProxyHeader("a datagram source on a stream connection")
    if family == _V2_INET:
        source: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv4Address(data[16:20])
        (port,) = struct.unpack_from("!H", data, 24)
    else:
        source = ipaddress.IPv6Address(data[16:32])
        (port,) = struct.unpack_from("!H", data, 48)
    return ProxyHeader(size, (source, port))


class ProxyProtocol(ProtocolWrapper):
    """
    Reads the PROXY header off a balancer's connection, then passes the rest through to
    the wrapped protocol (TLS), which sees the header's source as its peer.
    """

    def __init__(self, factory: ProxyFactory, wrapped_protocol: IProtocol) -> None:
        super().__init__(factory, wrapped_protocol)  # type: ignore[arg-type]
        self._received = b""
        self._peer: Any = None

    def dataReceived(self, data: bytes) -> None:
        self._received += data
        try:
            header = parse_proxy_header(self._received)
        except InvalidProxyHeader:
            self._received = b""
            transport: Any = self.transport
            transport.abortConnection()
            return
        if header is None:
            return
        rest, self._received = self._received[header.size :], b""
        if header.source is not None:
            host, port = header.source
            kind = IPv4Address if host.version == 4 else IPv6Address
            self._peer = kind("TCP", str(host), port)
        wrapped: Any = self.wrappedProtocol
        # from now on the transport hands its bytes straight to TLS
        self.dataReceived = wrapped.dataReceived  # type: ignore[method-assign]
        if rest:
            wrapped.dataReceived(rest)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.__dict__.pop("dataReceived", None)  # no cycle through the bound method
        super().connectionLost(reason)  # type: ignore[no-untyped-call]

    def getPeer(self) -> IAddress:
        if self._peer is not None:
            peer: IAddress = self._peer
            return peer
        transport: Any = self.transport
        return transport.getPeer()  # type: ignore[no-any-return]


class ProxyFactory(WrappingFactory):
    """
    Wraps C{wrapped_factory}'s connections in L{ProxyProtocol}; refuses any connection whose
    peer is not one of C{trusted} (the listener closes it before reading a byte).
    """

    protocol = ProxyProtocol

    def __init__(self, wrapped_factory: IProtocolFactory, trusted: TrustedProxies) -> None:
        super().__init__(wrapped_factory)  # type: ignore[no-untyped-call]
        self.trusted = trusted

    def buildProtocol(self, addr: IAddress | None) -> Any:
        host = getattr(addr, "host", None)
        if not isinstance(host, str) or not self.trusted.trusts(host):
            return None
        return super().buildProtocol(addr)

    def logPrefix(self) -> str:
        return "PROXY"
