"""
What the rewriter's tests share: a fixed key and base, and checks of tracked links.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from linkrouter.codec import Part, TrackedLink, verify
from linkrouter.keys import Key, KeyState
from linkrouter.rewrite import Mode, Rewriter

BASE = "https://click.example"
ISSUED_AT = 1_764_780_000
KEY = Key("t1", bytes(range(32)), KeyState.ACTIVE)
KEYS = {KEY.key_id: KEY}
MESSAGE_ID = "<test@linkrouter.example>"

TRACKED = re.compile(
    r"https://click\.example/1s?t?/[A-Za-z0-9._~%-]+(?:/[A-Za-z0-9_-]+){3}/[A-Za-z0-9_-]{16}"
)
"""A click link under L{BASE}, without what follows it in an attribute or a sentence."""


def rewriter(mode: Mode = Mode.HTML_AND_TEXT, message_id: str | None = MESSAGE_ID) -> Rewriter:
    return Rewriter(KEY, BASE, mode, ISSUED_AT, message_id)


def verified(
    case: SynchronousTestCase,
    link: str,
    part: Part | None = Part.HTML,
    issued_at: int | None = ISSUED_AT,
) -> TrackedLink:
    """
    The verified content of the tracked link C{link}; fails the test if it does not verify,
    or if its part or issue time is not the one given (C{None}: any).
    """
    result = verify(urlsplit(link).path, KEYS)
    assert isinstance(result, TrackedLink), (link, result)
    if part is not None:
        case.assertEqual(result.part, part)
    if issued_at is not None:
        case.assertEqual(result.issued_at, issued_at)
    return result


_HOSTS = st.sampled_from(
    [
        "example.com",
        "www.example.org",
        "shop.example.co.uk",
        "bücher.example",
        "xn--80ak6aa92e.com",
    ]
)
_PATH_CHARS = st.sampled_from([*"abcXYZ019-._~!$'()*+,;=:@é中/", "%20", "%2F", "&"])
_QUERY_CHARS = st.sampled_from([*"abc019-._~=&+/?:@é'\"", "%26", "&amp", "&copy", "&lt;"])

urls = st.builds(
    lambda scheme, host, path, query, fragment: f"{scheme}://{host}/{path}{query}{fragment}",
    st.sampled_from(["http", "https", "HTTPS"]),
    _HOSTS,
    st.lists(_PATH_CHARS, max_size=12).map("".join),
    st.one_of(st.just(""), st.lists(_QUERY_CHARS, max_size=16).map(lambda c: "?" + "".join(c))),
    st.sampled_from(["", "#top", "#a=1&b"]),
)
"""Absolute http(s) URLs with the characters that trip rewriters: &, =, %, quotes, IRIs."""
