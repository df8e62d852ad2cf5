"""
Response headers set as a block: checked once at import, stored without checking again.

Setting half a dozen constant headers one by one through C{Request.setHeader} canonicalizes
and sanitizes each every time, which on a keep-alive redirect costs more than the link's
HMAC. The router's headers are constants, and its one variable header (C{Location}) is a
target the codec only yields as printable ASCII.
"""

from __future__ import annotations

from collections.abc import Iterable

from twisted.web.http_headers import Headers
from twisted.web.server import Request

__all__ = ["HeaderBlock", "header_block", "set_headers"]

HeaderBlock = tuple[tuple[bytes, tuple[bytes, ...]], ...]


def header_block(headers: Iterable[tuple[bytes, bytes]]) -> HeaderBlock:
    """
    Response headers in C{twisted.web}'s stored form (canonical names, checked values),
    computed once so that L{set_headers} can add them without checking them again.
    """
    checked = Headers()
    for name, value in headers:
        checked.setRawHeaders(name, [value])
    return tuple((name, tuple(values)) for name, values in checked.getAllRawHeaders())


def set_headers(request: Request, block: HeaderBlock) -> None:
    """
    Set the response headers of C{block} on C{request}, replacing any of the same names.

    This writes to C{Headers}' storage directly: the block was checked by L{header_block}
    and setting six constant headers one by one costs more than the HMAC of the link.
    C{tests.test_site} fails if Twisted changes that storage.
    """
    raw = request.responseHeaders._rawHeaders
    for name, values in block:
        raw[name] = list(values)  # a list of its own: Twisted may append to it
