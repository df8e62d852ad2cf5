# -*- test-case-name: tests.test_rewrite_scanner -*-
"""
The HTML scanner's fast paths against the plain tokenizer they replaced.

L{linkrouter.rewrite.html} finds links with one regular expression whose common tokens take
shortcuts (start tags dispatched on their first letters, plain C{name="value"} attributes
read without the general attribute grammar). The shortcuts must find exactly the links the
plain tokenizer finds; the plain one is kept here, unchanged, as the reference.
"""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from linkrouter.rewrite.html import _NEXT_LINK

_SETTINGS = settings(max_examples=1500, deadline=None)

# The scanner of linkrouter/rewrite/html.py before the fast paths (commit d160c62), verbatim.
_SPACE = r"\t\n\f\r "
_ATTRIBUTES = (
    rf"(?:[{_SPACE}/]++"
    rf"|[^{_SPACE}/>][^{_SPACE}/=>]*+"
    rf"(?:[{_SPACE}]*+=[{_SPACE}]*+(?:\"[^\"]*+\"?|'[^']*+'?|[^{_SPACE}>]*+))?+)*+"
)
_RAW_TEXT = ["script", "style", "textarea", "title", "xmp", "iframe", "noembed", "noframes"]
_END = rf"(?=[{_SPACE}/>]|\Z)"
_RAW_TEXT_ELEMENTS = "|".join(
    rf"<(?i:{name}){_END}{_ATTRIBUTES}>?(?:[^<]++|<(?!/(?i:{name}){_END}))*+" for name in _RAW_TEXT
)
_SPECIAL = "|".join(["a", "area", "plaintext", *_RAW_TEXT])
_REFERENCE = re.compile(
    rf"""
    (?:
        [^<]++
      | <(?!(?i:{_SPECIAL}){_END})[A-Za-z]{_ATTRIBUTES}>?   # a start tag without links
      | </[A-Za-z]{_ATTRIBUTES}>?              # an end tag
      | <!--\[(?i:if)[^\]>]*+\]>(?!<!)          # Outlook conditional comment: markup inside
      | <!--(?:-?>|(?:[^-]++|-(?!-!?>))*+(?:--!?>)?)             # a comment
      | <[!?][^>]*+>?                          # doctype, bogus comment, <![endif]-->
      | </(?:>|(?![A-Za-z])[^>]*+>?)            # an ignored end tag, bogus comment, or EOF
      | <(?i:plaintext){_END}.*+
      | {_RAW_TEXT_ELEMENTS}                     # raw text up to its end tag
      | <(?![A-Za-z!?/])                         # a "<" that is text
    )*+
    (?:(?P<link><(?i:a|area){_END}{_ATTRIBUTES}>?)|\Z)
    """,
    re.VERBOSE | re.DOTALL,
)


def _links(scanner: re.Pattern[str], document: str) -> list[tuple[int, int]]:
    """
    Where C{scanner} finds C{<a>} and C{<area>} start tags in C{document}.
    """
    return [m.span("link") for m in scanner.finditer(document) if m.start("link") >= 0]


# Pieces that meet every branch of both scanners: every initial of a special element and the
# names that start like one, plain and irregular attributes, quotes, comments, raw text.
_NAMES = [
    *"abceinpstxBTSAP",
    "a",
    "A",
    "area",
    "ArEa",
    "abbr",
    "article",
    "td",
    "tr",
    "TD",
    "table",
    "tbody",
    "textarea",
    "title",
    "TITLE",
    "span",
    "script",
    "style",
    "Style",
    "p",
    "plaintext",
    "img",
    "iframe",
    "noembed",
    "noframes",
    "nobr",
    "xmp",
    "xml",
    "h1",
    "br",
    "div",
]
_PIECES = st.one_of(
    st.sampled_from(
        [
            *"<>/!?=\"' \t\n-[]",
            "</",
            "<!--",
            "-->",
            "--!>",
            "<!--[if mso]>",
            "<![endif]-->",
            "<!DOCTYPE html>",
            "<?xml?>",
            'href="https://x.example/?a=1&amp;b=2"',
            "href=",
            ' class="c"',
            ' style="a:b;c:d"',
            " data-x='1'",
            ' a:b="v"',
            " =x",
            ' x ="y"',
            " x= 'y'",
            " x=y",
            " x",
            "/>",
            " />",
            '"',
            "text",
            "&amp;",
            "</a>",
            "</td>",
            "</script>",
            "</style>",
            "</title>",
            "</textarea>",
            "</xmp>",
            "</iframe>",
        ]
    ),
    st.builds(lambda name: f"<{name}", st.sampled_from(_NAMES)),
    st.builds(lambda name: f"</{name}", st.sampled_from(_NAMES)),
    st.sampled_from(_NAMES),
)
html_ish = st.lists(_PIECES, max_size=40).map("".join)
"""Strings made of the pieces HTML scanners disagree on, in any order."""


class ScannerTests(SynchronousTestCase):
    """
    The fast scanner finds the links the reference tokenizer finds, at the same places.
    """

    @_SETTINGS
    @given(html_ish)
    def test_sameLinksAsReference(self, document: str) -> None:
        self.assertEqual(_links(_NEXT_LINK, document), _links(_REFERENCE, document))

    @_SETTINGS
    @given(st.lists(st.sampled_from([*"<>/!=\"' aAtTrRdDsSpPeE-"]), max_size=40).map("".join))
    def test_sameLinksOnShortNoise(self, document: str) -> None:
        self.assertEqual(_links(_NEXT_LINK, document), _links(_REFERENCE, document))

    def test_fastPathsAgree(self) -> None:
        """
        Documents where a shortcut could go wrong, and the links both scanners see there.
        """
        cases = {
            '<td class="x>"><a href=1>': 1,  # ">" in a plain quoted value
            '<td ="x><a href=1>">': 0,  # "=" starting a name: the value is no value
            '<td a ="x><a href=1>">': 0,  # spaces before "=": a quoted value
            '<td a"b <a href=1>': 0,  # a quote in a name: the tag runs on to the ">"
            '<tr="<a href=1>">': 0,  # "=" right after the name
            "<t><a href=1>": 1,
            "<ta><a href=1>": 1,
            "<textarea><a href=1></textarea><a href=2>": 1,
            "<titles><a href=1>": 1,
            "<abbr><a href=1><area href=2><arean href=3>": 2,
            "</td <a href=1>><a href=2>": 1,
            '<div/class="x"/><a href=1>': 1,
        }
        for document, count in cases.items():
            found = _links(_NEXT_LINK, document)
            self.assertEqual(found, _links(_REFERENCE, document), document)
            self.assertEqual(len(found), count, document)
