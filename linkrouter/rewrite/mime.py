# -*- test-case-name: tests.test_rewrite_mime -*-
"""
Rewrite the links of a MIME message (an C{.eml}): its HTML and text parts, nothing else.

The stdlib C{email} package (modern policy) reads each part's headers: content type, boundary,
charset, transfer encoding, disposition. The message itself is never re-serialized by
C{email}'s generator, which would re-fold headers and rewrite boundaries: parts are found by
their boundaries in the raw bytes, and only the bodies of the rewritten parts are replaced,
decoded (quoted-printable, base64, charset) and encoded back the same way. Headers, preamble,
epilogue, attachments, images and every part without a changed link stay byte for byte.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.policy import default

from attrs import frozen

from ..codec import Part
from .issuer import Rewriter, Rewritten, SkipReason, _Session

__all__ = ["rewrite_message"]

_HEADERS = BytesHeaderParser(policy=default)
_BLANK_LINE = re.compile(rb"\n\r?\n")
_TRANSFER_ENCODING = re.compile(
    rb"^content-transfer-encoding[ \t]*:[^\r\n]*(?:\r?\n[ \t][^\r\n]*)*", re.IGNORECASE | re.M
)
# RFC 5322: a line of a 7bit or 8bit body holds at most 998 characters.
_MAX_LINE = 998
_LONG_LINE = re.compile(rb"[^\n]{%d}" % (_MAX_LINE + 1))
_IDENTITY = {"7bit", "8bit", "binary"}
_BARE_LF = re.compile(rb"(?<!\r)\n")


@frozen
class _Leaf:
    """
    A text part: where its header block and body lie in the message, and its headers.
    """

    head_start: int
    head_end: int
    body_start: int
    body_end: int
    headers: EmailMessage
    part: Part


def _head_and_body(data: bytes, start: int, end: int) -> tuple[int, int]:
    """
    Where the header block of the entity in C{data[start:end]} ends and its body begins.
    """
    if data.startswith(b"\n", start) or data.startswith(b"\r\n", start):
        return start, data.index(b"\n", start) + 1
    blank = _BLANK_LINE.search(data, start, end)
    if blank is None:
        return end, end
    return blank.start() + 1, blank.end()


def _body_parts(data: bytes, start: int, end: int, boundary: str) -> list[tuple[int, int]]:
    """
    The spans of the body parts of a multipart body, found by RFC 2046 delimiter lines.
    """
    delimiter = re.compile(
        rb"^--" + re.escape(boundary.encode("ascii", "replace")) + rb"(--)?[ \t]*(?:\r?\n|\Z)",
        re.M,
    )
    spans: list[tuple[int, int]] = []
    part_start: int | None = None
    for line in delimiter.finditer(data, start, end):
        if part_start is not None:
            part_end = line.start() - 1  # the line break before a delimiter belongs to it
            if part_end > part_start and data[part_end - 1] == 0x0D:
                part_end -= 1
            spans.append((part_start, max(part_start, part_end)))
        if line.group(1):
            return spans
        part_start = line.end()
    if part_start is not None:
        spans.append((part_start, end))  # no closing delimiter: the part runs to the end
    return spans


def _leaves(data: bytes, start: int, end: int, into: list[_Leaf]) -> None:
    """
    Add the inline text/html and text/plain parts of the entity at C{data[start:end]} to
    C{into}, in order, descending into multiparts (not into attached messages).
    """
    head_end, body_start = _head_and_body(data, start, end)
    headers = _HEADERS.parsebytes(data[start:head_end])
    assert isinstance(headers, EmailMessage)
    content_type = headers.get_content_type()
    if content_type.startswith("multipart/"):
        boundary = headers.get_boundary()
        if boundary:
            for part_start, part_end in _body_parts(data, body_start, end, boundary):
                _leaves(data, part_start, part_end, into)
        return
    if headers.get_content_disposition() == "attachment":
        return
    if content_type == "text/html":
        into.append(_Leaf(start, head_end, body_start, end, headers, Part.HTML))
    elif content_type == "text/plain":
        into.append(_Leaf(start, head_end, body_start, end, headers, Part.TEXT))


class _Unreadable(Exception):
    """
    A part that cannot be decoded, or encoded back, as it claims; it is left as it is.
    """


def _transfer_encoding(leaf: _Leaf) -> str:
    return str(leaf.headers.get("content-transfer-encoding", "7bit")).strip().lower()


def _charset(leaf: _Leaf) -> str:
    charset = leaf.headers.get_content_charset() or "us-ascii"
    try:
        name = codecs.lookup(charset).name
    except LookupError:
        raise _Unreadable(f"unknown charset {charset!r}") from None
    # US-ASCII parts are read as UTF-8 (its superset), so stray 8-bit bytes survive.
    return "utf-8" if name == "ascii" else name


def _decode(leaf: _Leaf, body: bytes) -> str:
    encoding = _transfer_encoding(leaf)
    try:
        if encoding == "base64":
            raw = binascii.a2b_base64(body)
        elif encoding == "quoted-printable":
            raw = binascii.a2b_qp(body)
        elif encoding in _IDENTITY:
            raw = body
        else:
            raise _Unreadable(f"unknown transfer encoding {encoding!r}")
        return raw.decode(_charset(leaf), "surrogateescape")
    except (binascii.Error, UnicodeError) as error:
        raise _Unreadable(f"cannot be decoded ({error})") from None


def _encode(leaf: _Leaf, body: bytes, text: str, linesep: bytes) -> tuple[bytes, bool]:
    """
    C{text} encoded as the part's body, and whether its transfer encoding had to become
    quoted-printable (a line too long for 7bit or 8bit).
    """
    try:
        raw = text.encode(_charset(leaf), "surrogateescape")
    except UnicodeError as error:
        raise _Unreadable(f"cannot be encoded back ({error})") from None
    encoding = _transfer_encoding(leaf)
    if encoding == "base64":
        encoded = base64.encodebytes(raw).replace(b"\n", linesep)
        if not body.endswith(b"\n"):
            encoded = encoded.removesuffix(linesep)
        return encoded, False
    if encoding == "quoted-printable":
        return _quoted_printable(raw, linesep), False
    if encoding == "binary" or not _LONG_LINE.search(raw.replace(b"\r\n", b"\n")):
        return raw, False
    return _quoted_printable(raw, linesep), True


def _quoted_printable(raw: bytes, linesep: bytes) -> bytes:
    encoded = binascii.b2a_qp(raw, istext=True)
    # b2a_qp breaks lines with the body's first line ending, or LF if it has none.
    return _BARE_LF.sub(b"\r\n", encoded) if linesep == b"\r\n" else encoded


def _with_quoted_printable(head: bytes, linesep: bytes) -> bytes:
    """
    The header block C{head} with its transfer encoding set to quoted-printable.
    """
    header = b"Content-Transfer-Encoding: quoted-printable"
    if _TRANSFER_ENCODING.search(head):
        return _TRANSFER_ENCODING.sub(header, head, count=1)
    return head + header + linesep


def _rewrite_leaf(
    data: bytes, leaf: _Leaf, session: _Session, edits: list[tuple[int, int, bytes]]
) -> None:
    body = data[leaf.body_start : leaf.body_end]
    linesep = b"\r\n" if b"\r\n" in data[leaf.head_start : leaf.body_start] else b"\n"
    try:
        text = _decode(leaf, body)
        rewritten = session.html(text) if leaf.part is Part.HTML else session.text(text)
        if rewritten == text:
            return
        encoded, requoted = _encode(leaf, body, rewritten, linesep)
    except _Unreadable as problem:
        session.skip("", leaf.part, SkipReason.UNREADABLE_PART, str(problem))
        return
    edits.append((leaf.body_start, leaf.body_end, encoded))
    if requoted:
        head = data[leaf.head_start : leaf.head_end]
        edits.append((leaf.head_start, leaf.head_end, _with_quoted_printable(head, linesep)))


def message_id_of(data: bytes) -> str | None:
    """
    The C{Message-ID} of the message C{data}, as written (angle brackets kept), if any.
    """
    head_end, _ = _head_and_body(data, 0, len(data))
    value = _HEADERS.parsebytes(data[:head_end]).get("message-id")
    written = str(value).strip() if value is not None else ""
    return written or None


def rewrite_message(
    rewriter: Rewriter, data: bytes, message_id: str | None = None
) -> Rewritten[bytes]:
    """
    The MIME message C{data} with the links of its inline HTML and text parts tracked.

    LinkIDs derive from C{message_id}, else the rewriter's, else the message's
    C{Message-ID}, else a random id.

    HTML parts are rewritten first, then text parts, so a URL's LinkID is numbered by its
    first appearance in the HTML. A part that cannot be decoded is left unchanged and
    reported (reason L{SkipReason.UNREADABLE_PART}).
    """
    session = rewriter.session(message_id, message_id_of(data))
    leaves: list[_Leaf] = []
    _leaves(data, 0, len(data), leaves)
    edits: list[tuple[int, int, bytes]] = []
    for part in (Part.HTML, Part.TEXT):
        for leaf in leaves:
            if leaf.part is part:
                _rewrite_leaf(data, leaf, session, edits)
    if not edits:
        return session.result(data)
    edits.sort()
    pieces: list[bytes] = []
    position = 0
    for start, end, replacement in edits:
        pieces += [data[position:start], replacement]
        position = end
    pieces.append(data[position:])
    return session.result(b"".join(pieces))
