"""
Tests for L{linkrouter.rewrite.mime}: MIME messages keep every byte but their rewritten
text parts, which are decoded and encoded back the way they came.
"""

from __future__ import annotations

import base64
import email
import quopri
from email.message import EmailMessage
from email.policy import default

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from linkrouter.codec import Part
from linkrouter.linkid import message_key
from linkrouter.rewrite import Mode, SkipReason, rewrite_message

from .rewriting import TRACKED, rewriter, verified

HEADERS = (
    b"Return-Path: <bounce@example.com>\r\n"
    b"From: =?utf-8?q?Caf=C3=A9?= <news@example.com>\r\n"
    b"To: someone@example.org\r\n"
    b"Subject: A very long subject line that a re-serializing generator would fold somewhere\r\n"
    b" differently than it came\r\n"
    b"Message-ID: <m-1@example.com>\r\n"
    b"MIME-Version: 1.0\r\n"
)


def _part(content_type: str, encoding: str, body: bytes, extra: str = "") -> bytes:
    if encoding == "base64":
        body = base64.encodebytes(body).replace(b"\n", b"\r\n")
    elif encoding == "quoted-printable":
        body = quopri.encodestring(body.replace(b"\r\n", b"\n")).replace(b"\n", b"\r\n")
    return (
        f"Content-Type: {content_type}\r\nContent-Transfer-Encoding: {encoding}\r\n{extra}\r\n"
    ).encode() + body


def _multipart(subtype: str, boundary: str, *parts: bytes) -> bytes:
    head = f'Content-Type: multipart/{subtype}; boundary="{boundary}"\r\n\r\n'.encode()
    body = b"".join(b"--" + boundary.encode() + b"\r\n" + p + b"\r\n" for p in parts)
    return head + b"This is a multi-part message.\r\n" + body + f"--{boundary}--\r\n".encode()


HTML = (
    '<html><body><p>Caf\u00e9 \u2014 <a href="https://shop.example/deal?a=1&amp;b=2">deal</a>'
    ' <a href="https://example.com/private" data-linkrouter-no-track>private</a></p>'
    "</body></html>\r\n"
)
TEXT = "Caf\u00e9: https://shop.example/deal?a=1&b=2\r\nPrivate: https://example.com/private\r\n"
IMAGE = _part("image/png", "base64", bytes(range(256)) * 4, "Content-ID: <logo>\r\n")
ATTACHED = _part(
    "text/plain; charset=utf-8",
    "7bit",
    b"https://attached.example/ stays\r\n",
    'Content-Disposition: attachment; filename="notes.txt"\r\n',
)


def _message(
    html_encoding: str = "base64", text_encoding: str = "quoted-printable", html: str = HTML
) -> bytes:
    alternative = _multipart(
        "alternative",
        "ALT-1",
        _part("text/plain; charset=utf-8", text_encoding, TEXT.encode()),
        _part('text/html; charset="utf-8"', html_encoding, html.encode()),
    )
    related = _multipart("related", "REL-2", alternative, IMAGE)
    return HEADERS + _multipart("mixed", "MIX-3", related, ATTACHED) + b"epilogue\r\n"


def _parts(data: bytes) -> list[EmailMessage]:
    message = email.message_from_bytes(data, policy=default)
    assert isinstance(message, EmailMessage)
    return [p for p in message.walk() if not p.is_multipart()]  # type: ignore[misc]


class MessageTests(SynchronousTestCase):
    def test_onlyTextPartsChange(self) -> None:
        """
        Headers, boundaries, preamble, epilogue, the image and the attachment are unchanged
        byte for byte; both text parts are rewritten and still decode as they claim.
        """
        data = _message()
        result = rewrite_message(rewriter(), data)
        self.assertTrue(result.content.startswith(HEADERS))
        self.assertTrue(result.content.endswith(ATTACHED + b"\r\n--MIX-3--\r\nepilogue\r\n"))
        self.assertIn(IMAGE, result.content)
        before, after = _parts(data), _parts(result.content)
        self.assertEqual(len(before), len(after))
        for old, new in zip(before, after, strict=True):
            self.assertEqual(old.items(), new.items())
            if (
                old.get_content_disposition() == "attachment"
                or old.get_content_maintype() != "text"
            ):
                self.assertEqual(old.get_payload(decode=True), new.get_payload(decode=True))
        text, html = (p.get_content().replace("\r\n", "\n") for p in after[:2])
        self.assertEqual(
            TRACKED.sub("L", text), "Caf\u00e9: L\nPrivate: https://example.com/private\n"
        )
        self.assertEqual(
            TRACKED.sub("L", html),
            HTML.replace("https://shop.example/deal?a=1&amp;b=2", "L")
            .replace(" data-linkrouter-no-track", "")
            .replace("\r\n", "\n"),
        )

    def test_sameUrlSameLinkId(self) -> None:
        """
        A URL in the HTML and in the text has one LinkID (numbered from the HTML) and the
        part signed into each link; the opted-out URL is skipped in the text too.
        """
        result = rewrite_message(rewriter(message_id=None), _message())
        self.assertEqual(result.message_id, "<m-1@example.com>")
        (text_link,) = TRACKED.findall(_parts(result.content)[0].get_content())
        (html_link,) = TRACKED.findall(_parts(result.content)[1].get_content())
        text, html = verified(self, text_link, Part.TEXT), verified(self, html_link, Part.HTML)
        self.assertEqual(text.link_id, html.link_id)
        self.assertEqual(html.link_id, message_key("<m-1@example.com>") + "1")
        self.assertEqual(
            [(r.link_id, r.part, r.position) for r in result.links],
            [(html.link_id, Part.HTML, 1), (html.link_id, Part.TEXT, 1)],
        )
        self.assertEqual(
            [(s.part, s.reason) for s in result.skipped],
            [(Part.HTML, SkipReason.OPTED_OUT), (Part.TEXT, SkipReason.OPTED_OUT)],
        )

    def test_givenMessageIdWins(self) -> None:
        """
        A message id given to the rewriter is used instead of the header's.
        """
        result = rewrite_message(rewriter(message_id="given"), _message())
        self.assertEqual(result.message_id, "given")
        self.assertTrue(result.links[0].link_id.startswith(message_key("given")))

    def test_randomMessageIdWithoutHeader(self) -> None:
        """
        With neither, a random id is used (and returned).
        """
        data = b"Content-Type: text/plain\r\n\r\nhttps://x.example/\r\n"
        first = rewrite_message(rewriter(message_id=None), data)
        second = rewrite_message(rewriter(message_id=None), data)
        self.assertEqual(len(first.message_id), 32)
        self.assertNotEqual(first.message_id, second.message_id)

    def test_modes(self) -> None:
        """
        html-only leaves the text part as it was; text-only leaves the HTML links (but drops
        the opt-out marker) and still exempts the opted-out URL in the text.
        """
        html_only = _parts(rewrite_message(rewriter(Mode.HTML_ONLY), _message()).content)
        self.assertEqual(html_only[0].get_content(), TEXT)
        self.assertEqual(len(TRACKED.findall(html_only[1].get_content())), 1)
        text_only = rewrite_message(rewriter(Mode.TEXT_ONLY), _message())
        parts = _parts(text_only.content)
        self.assertEqual(len(TRACKED.findall(parts[0].get_content())), 1)
        self.assertEqual(TRACKED.findall(parts[1].get_content()), [])
        self.assertNotIn("data-linkrouter-no-track", parts[1].get_content())
        self.assertEqual([r.part for r in text_only.links], [Part.TEXT])

    def test_longLineIn8bitBecomesQuotedPrintable(self) -> None:
        """
        When a tracked link would make a line of an 8bit part longer than 998 characters,
        the part is re-encoded quoted-printable (only its transfer encoding header changes).
        """
        html = "<p>" + " ".join(
            f'<a href="https://x.example/{n}?q={n * 7}">{n}</a>' for n in range(20)
        )
        data = HEADERS + _part("text/html; charset=utf-8", "8bit", html.encode())
        self.assertLess(len(html), 998)
        result = rewrite_message(rewriter(), data)
        self.assertIn(b"Content-Transfer-Encoding: quoted-printable\r\n", result.content)
        body = result.content[len(HEADERS) :].split(b"\r\n")
        self.assertTrue(all(len(line) <= 76 for line in body), body)
        (part,) = _parts(result.content)
        self.assertEqual(len(TRACKED.findall(part.get_content())), 20)

    def test_otherCharsets(self) -> None:
        """
        A latin-1 quoted-printable part is decoded and encoded back in latin-1.
        """
        html = '<p>Gr\u00fc\u00dfe <a href="https://x.example/\u00e4">\u00e4</a></p>'
        data = HEADERS + _part(
            "text/html; charset=iso-8859-1", "quoted-printable", html.encode("latin-1")
        )
        result = rewrite_message(rewriter(), data)
        (part,) = _parts(result.content)
        self.assertEqual(part.get_content_charset(), "iso-8859-1")
        content = part.get_content()
        self.assertIn("Gr\u00fc\u00dfe", content)
        (link,) = TRACKED.findall(content)
        self.assertEqual(verified(self, link).target, "https://x.example/%C3%A4")

    def test_unknownCharsetLeftAndReported(self) -> None:
        """
        A part in a charset Python does not know is left as it is, and reported.
        """
        data = HEADERS + _part(
            "text/html; charset=x-unknown", "7bit", b'<a href="https://x.example/">'
        )
        result = rewrite_message(rewriter(), data)
        self.assertEqual(result.content, data)
        self.assertEqual([s.reason for s in result.skipped], [SkipReason.UNREADABLE_PART])

    def test_attachedMessageNotEntered(self) -> None:
        """
        A forwarded message (message/rfc822) is an attachment: its links are not tracked.
        """
        inner = b"Content-Type: text/plain\r\n\r\nhttps://inner.example/\r\n"
        data = HEADERS + _multipart(
            "mixed",
            "B",
            _part("text/plain", "7bit", b"https://outer.example/"),
            b"Content-Type: message/rfc822\r\n\r\n" + inner,
        )
        result = rewrite_message(rewriter(), data)
        self.assertIn(inner, result.content)
        self.assertEqual([r.url for r in result.links], ["https://outer.example/"])

    def test_lfLineEndings(self) -> None:
        """
        A message with bare LF line endings keeps them.
        """
        data = _message().replace(b"\r\n", b"\n")
        result = rewrite_message(rewriter(), data)
        self.assertNotIn(b"\r", result.content)
        self.assertEqual(len(result.links), 2)

    @settings(max_examples=60, deadline=None)
    @given(
        st.sampled_from(["base64", "quoted-printable", "8bit"]),
        st.sampled_from(["base64", "quoted-printable", "7bit"]),
    )
    def test_idempotentInEveryEncoding(self, html_encoding: str, text_encoding: str) -> None:
        """
        Rewriting a rewritten message changes nothing, whatever the parts' encodings.
        """
        html = HTML.replace(" data-linkrouter-no-track", "")
        data = _message(html_encoding, text_encoding, html)
        once = rewrite_message(rewriter(), data).content
        self.assertEqual(rewrite_message(rewriter(), once).content, once)
        self.assertEqual(len(TRACKED.findall(_parts(once)[1].get_content())), 2)
