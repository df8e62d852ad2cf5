"""
Tests for L{linkrouter.rewrite.text} (through L{linkrouter.rewrite.rewrite_text}): URLs in
plain text, their trailing punctuation and brackets.
"""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from linkrouter.codec import Part
from linkrouter.rewrite import Mode, SkipReason, rewrite_text
from linkrouter.rewrite.text import find_urls
from linkrouter.target import normalize_target

from .rewriting import TRACKED, rewriter, verified


def _found(text: str) -> list[str]:
    return [text[start:end] for start, end in find_urls(text)]


class FindTests(SynchronousTestCase):
    def test_trailingPunctuation(self) -> None:
        """
        Sentence punctuation after a URL is not part of it.
        """
        self.assertEqual(_found("See https://x.example/a). Or"), ["https://x.example/a"])
        self.assertEqual(_found("(https://x.example/a)."), ["https://x.example/a"])
        self.assertEqual(
            _found("at https://x.example/a, https://y.example/b;"),
            [
                "https://x.example/a",
                "https://y.example/b",
            ],
        )
        self.assertEqual(_found("'https://x.example/q?a=1'!"), ["https://x.example/q?a=1"])
        self.assertEqual(_found("“https://x.example/”"), ["https://x.example/"])

    def test_balancedBrackets(self) -> None:
        """
        A closing bracket the URL opened is kept.
        """
        self.assertEqual(
            _found("(see https://en.wikipedia.org/wiki/Go_(game))"),
            ["https://en.wikipedia.org/wiki/Go_(game)"],
        )
        self.assertEqual(_found("[https://x.example/a[1]]"), ["https://x.example/a[1]"])

    def test_angleBrackets(self) -> None:
        """
        C{<URL>} is taken whole, punctuation included.
        """
        self.assertEqual(_found("<https://x.example/a.>."), ["https://x.example/a."])

    def test_boundaries(self) -> None:
        """
        A URL starts where a word does not continue, in any case, and ends at whitespace
        or quotes.
        """
        self.assertEqual(
            _found('xhttps://no.example HTTP://Yes.example/"q'), ["HTTP://Yes.example/"]
        )
        self.assertEqual(_found("ftp://no.example mailto:a@b.example"), [])


_WORDS = st.sampled_from(
    ["Hello", " ", "\n", "\r\n", ".", ",", "(", ")", '"', "'", "<", ">", "é", "—", "mailto:a@b"]
)
_URLS = st.sampled_from(
    [
        "https://example.com/",
        "https://example.com/pricing?plan=pro&utm_source=mail",
        "http://bücher.example/straße",
        "https://example.org/a_(b)",
        "https://x.example/reset?token=" + "A1b2" * 60,
    ]
)


class PropertyTests(SynchronousTestCase):
    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.one_of(_WORDS, _URLS)))
    def test_urlsReplacedRestKept(self, pieces: list[str]) -> None:
        """
        Every URL (set off by whitespace) is replaced by a tracked link that verifies to it
        as a text-part link; everything else is unchanged; a second pass changes nothing.
        """
        spaced = [f" {p} " if p.startswith("http") else p for p in pieces]
        text = "".join(spaced)
        result = rewrite_text(rewriter(), text)
        pattern = "".join(
            f" ({TRACKED.pattern}) " if p.startswith("http") else re.escape(p) for p in pieces
        )
        match = re.fullmatch(pattern, result.content)
        self.assertIsNotNone(match, (text, result.content))
        assert match is not None
        urls = [p for p in pieces if p.startswith("http")]
        for link, url in zip(match.groups(), urls, strict=True):
            self.assertEqual(verified(self, link, Part.TEXT).target, normalize_target(url))
        self.assertEqual(rewrite_text(rewriter(), result.content).content, result.content)


class TextTests(SynchronousTestCase):
    def test_skipped(self) -> None:
        """
        Placeholders, tracked links and refused URLs in text stay and are reported.
        """
        text = (
            "a https://x.example/u/*|ID|* b https://click.example/1st/x/t1/a/B/AAAAAAAAAAAAAAAA "
            "c https://good.example@evil.example/"
        )
        result = rewrite_text(rewriter(), text)
        self.assertEqual(result.content, text)
        self.assertEqual(
            [s.reason for s in result.skipped],
            [SkipReason.PLACEHOLDER, SkipReason.ALREADY_TRACKED, SkipReason.REFUSED],
        )

    def test_htmlOnlyMode(self) -> None:
        """
        In html-only mode the text is left as it is.
        """
        text = "see https://x.example/"
        self.assertEqual(rewrite_text(rewriter(Mode.HTML_ONLY), text).content, text)
