# -*- test-case-name: tests.test_limits -*-
"""
HTTP/1.1 request limits with the answers of C{links.md}: 414 for a request line over the
limit, 431 for a header section over it (too long, or too many headers), each followed by
closing the connection. Every such answer, and Twisted's own 400, carries HSTS.

No tracked link is longer than 2,000 characters, so a far longer request line is never a
link; refusing it early bounds the memory one client can hold.
"""

from __future__ import annotations

from twisted.web.http import HTTPChannel

from .resource import HSTS

__all__ = ["MAX_HEADERS", "MAX_HEADER_BYTES", "MAX_REQUEST_LINE", "LimitedHTTPChannel"]

MAX_REQUEST_LINE = 8192
"""Bytes in the request line: a 2,000-character link with every character escaped fits."""

MAX_HEADER_BYTES = 16384
"""Bytes in the request line and header section together."""

MAX_HEADERS = 100
"""Header lines in one request."""


def _answer(status: bytes) -> bytes:
    return (
        b"HTTP/1.1 " + status + b"\r\nStrict-Transport-Security: " + HSTS + b"\r\n"
        b"Content-Length: 0\r\nConnection: close\r\n\r\n"
    )


_URI_TOO_LONG = _answer(b"414 URI Too Long")
_HEADERS_TOO_LARGE = _answer(b"431 Request Header Fields Too Large")
_BAD_REQUEST = _answer(b"400 Bad Request")


class LimitedHTTPChannel(HTTPChannel):
    """
    An HTTP/1.1 channel that answers 414 and 431 for requests over the limits.

    Only a request's first line is checked here, by a C{lineReceived} set on the instance
    while one is expected: header lines go straight to C{HTTPChannel}'s own, which counts
    their bytes and number (an override called for every line cost a keep-alive request
    about 1.5 us, C{docs/performance.rst}).
    """

    MAX_LENGTH = MAX_HEADER_BYTES
    totalHeadersSize = MAX_HEADER_BYTES
    maxHeaders = MAX_HEADERS
    _expecting_request_line = True

    def connectionMade(self) -> None:
        super().connectionMade()  # type: ignore[no-untyped-call]
        self.lineReceived = self._request_line_received  # type: ignore[method-assign]

    def refuse(self, answer: bytes) -> None:
        """
        Answer with the complete response C{answer}, close, and ignore whatever follows.
        """
        self.transport.write(answer)  # type: ignore[union-attr, call-arg, misc]
        self.loseConnection()  # type: ignore[no-untyped-call]
        self.dataReceived = self.lineReceived = lambda *args: None  # type: ignore[method-assign]

    def _respondToBadRequestAndDisconnect(self) -> None:
        if self._expecting_request_line:
            self.refuse(_BAD_REQUEST)
        elif (
            self._receivedHeaderSize > self.totalHeadersSize
            or self._receivedHeaderCount > self.maxHeaders
        ):
            self.refuse(_HEADERS_TOO_LARGE)
        else:
            self.refuse(_BAD_REQUEST)

    def _request_line_received(self, line: bytes) -> None:
        if line:  # (an empty line before a request is skipped, as HTTPChannel does)
            if len(line) > MAX_REQUEST_LINE:
                self.refuse(_URI_TOO_LONG)
                return
            self._expecting_request_line = False
            del self.lineReceived  # header lines go to HTTPChannel.lineReceived
        HTTPChannel.lineReceived(self, line)

    def lineLengthExceeded(self, line: bytes) -> None:
        self.refuse(_URI_TOO_LONG if self._expecting_request_line else _HEADERS_TOO_LARGE)

    def allContentReceived(self) -> None:
        self._expecting_request_line = True
        self.lineReceived = self._request_line_received  # type: ignore[method-assign]
        super().allContentReceived()  # type: ignore[no-untyped-call]
