# -*- test-case-name: tests.test_answer,tests.test_resource -*-
"""
Fixed answers, serialized once and written with the request's own headers in one piece.

Every answer the public resource gives is a constant (status, headers, body) except the
redirect's C{Location}. Letting C{twisted.web} write them costs, per request, a header
lookup for each of its framing decisions, the serialization of every header and a
C{finish} that looks for a log to write to: about 7 us of a keep-alive redirect in process,
nearly what verifying the link costs (C{docs/performance.rst}). L{respond} writes the
pre-serialized answer, the request's own headers (C{Date}, C{Connection}) and the body with
one C{writeSequence} and finishes the request as C{Request.finish} would, without its
access-log call.

It also means a C{HEAD} answer never hands C{twisted.web} a body to discard: Twisted logs
such a request, with its path, to say it ate the body, and the router must never log a path.
"""

from __future__ import annotations

from collections.abc import Iterable

from attrs import frozen
from twisted.web.http import RESPONSES, HTTPChannel
from twisted.web.server import Request

from .headers import HeaderBlock, header_block, set_headers

__all__ = ["Answer", "answer", "respond"]


@frozen
class Answer:
    """
    A complete answer but for the request's own headers: see L{answer}.
    """

    code: int
    status: bytes
    """The status line after the protocol version: C{b"302 Found"}."""
    headers: HeaderBlock
    """The answer's headers, C{Content-Length} included, in C{twisted.web}'s stored form."""
    head: bytes
    """The same headers serialized, one C{Name: value} line each, CRLF-terminated."""
    body: bytes


def answer(code: int, headers: Iterable[tuple[bytes, bytes]], body: bytes = b"") -> Answer:
    """
    The answer of status C{code}, C{headers} and C{body}, with its C{Content-Length}; the
    headers are checked as C{Request.setHeader} checks them, once.
    """
    block = header_block((*headers, (b"content-length", b"%d" % len(body))))
    head = b"".join(name + b": " + value + b"\r\n" for name, values in block for value in values)
    return Answer(code, b"%d %s" % (code, RESPONSES[code]), block, head, body)


def respond(request: Request, fixed: Answer, location: bytes | None = None) -> bool:
    """
    Write C{fixed} as the whole answer to C{request} (no body for C{HEAD}), with
    C{location} as its C{Location} if given, and finish the request; C{False} if the
    client had gone and nothing was written.

    Headers already set on the request are written too, but those the answer names are
    replaced by the answer's. C{location} must be printable ASCII: it is not checked.
    C{tests.test_answer} fails if C{twisted.web} changes what this relies on. On anything
    but an HTTP/1.x channel (an HTTP/2 stream, say), C{twisted.web} writes the answer.
    """
    if request._disconnected:
        return False
    if not isinstance(request.channel, HTTPChannel):
        return _respond_generic(request, fixed, location)
    request.code = fixed.code
    request.code_message = fixed.status[4:]
    request.startedWriting = 1
    raw = request.responseHeaders._rawHeaders
    lines = [request.clientproto, b" ", fixed.status, b"\r\n", fixed.head]
    if location is not None:
        lines += (b"Location: ", location, b"\r\n")
        raw.pop(b"Location", None)
    if raw:
        for name, _ in fixed.headers:
            raw.pop(name, None)
        for name, values in raw.items():
            for value in values:
                lines += (name, b": ", value, b"\r\n")
    lines.append(b"\r\n")
    if fixed.body and request.method != b"HEAD":
        lines.append(fixed.body)
        request.sentLength = len(fixed.body)
    request.channel.writeSequence(lines)
    request.finished = 1
    if not request.queued:
        request._cleanup()
    return True


def _respond_generic(request: Request, fixed: Answer, location: bytes | None) -> bool:
    request.setResponseCode(fixed.code)
    set_headers(request, fixed.headers)
    if location is not None:
        request.responseHeaders.setRawHeaders(b"location", [location])
    if request.method != b"HEAD":
        request.write(fixed.body)
    request.finish()
    return True
