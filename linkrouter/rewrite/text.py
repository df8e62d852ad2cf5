# -*- test-case-name: tests.test_rewrite_text -*-
"""
Find the URLs of a plain-text part and replace them, and nothing else.

A URL starts with C{http://} or C{https://} (any case) where a word does not continue, and
runs to the next whitespace, C{<}, C{>} or C{"}. Punctuation that ends a sentence is not part
of it (C{https://x.example/a).} links C{https://x.example/a}): trailing C{. , : ; ! ? ' " * _
~} and closing quotes are dropped, and a closing bracket only when the URL holds fewer
opening ones (C{https://en.wikipedia.org/wiki/Go_(game)} keeps its C{)}). A URL written
C{<https://...>} (RFC 3986, appendix C) is taken whole, up to the C{>}.
"""

from __future__ import annotations

import re
from collections.abc import Callable

__all__ = ["find_urls", "rewrite_urls"]

_URL = re.compile(r"(?<![\w.+/-])https?://[^\s<>\"]+", re.IGNORECASE)
_TRAILING = frozenset(".,:;!?'\"*_~\u2019\u201d\u00bb")
_OPENER = {")": "(", "]": "[", "}": "{"}


def _trimmed(url: str) -> str:
    end = len(url)
    while end:
        last = url[end - 1]
        unbalanced = last in _OPENER and url.count(last, 0, end) > url.count(_OPENER[last], 0, end)
        if not (last in _TRAILING or unbalanced):
            break
        end -= 1
    return url[:end]


def find_urls(text: str) -> list[tuple[int, int]]:
    """
    The start and end of every URL in C{text}, in order.
    """
    spans: list[tuple[int, int]] = []
    for match in _URL.finditer(text):
        start, end = match.span()
        if not (start and text[start - 1] == "<" and text.startswith(">", end)):
            end = start + len(_trimmed(match.group()))
        spans.append((start, end))
    return spans


def rewrite_urls(text: str, track: Callable[[str], str | None]) -> str:
    """
    C{text} with every URL replaced by what C{track} returns for it (in order), or left as
    it is where C{track} returns C{None}.
    """
    pieces: list[str] = []
    position = 0
    for start, end in find_urls(text):
        tracked = track(text[start:end])
        if tracked is not None:
            pieces += [text[position:start], tracked]
            position = end
    if not pieces:
        return text
    pieces.append(text[position:])
    return "".join(pieces)
