# -*- test-case-name: tests.test_target -*-
"""
The issuing rules: which destinations may be signed, and in which exact form.

A destination is signed only if a browser would treat it, with no base URL, as an absolute
C{http:} or C{https:} URL with a host, and only in the form a WHATWG URL parser (C{ada-url})
gives it: IRIs become URIs (IDNA host, percent-encoded non-ASCII), so the signed target is the
exact, ASCII C{Location} value the router will send. Forms a browser accepts but a person would
not recognise (userinfo, backslashes in the host part, integer or octal IPv4 hosts, invalid
punycode, missing slashes) are refused: such links are left untracked rather than signed.
"""

from __future__ import annotations

import re
from functools import lru_cache

from ada_url import idna_to_ascii, normalize_url

__all__ = [
    "MAX_TARGET_LENGTH",
    "TargetRefused",
    "is_canonical",
    "normalize_target",
    "parse_target",
]

MAX_TARGET_LENGTH = 2000
"""No target this long can fit in a tracked link of at most 2,000 characters."""

_SCHEME_AND_AUTHORITY = re.compile(r"(?i:https?)://([^/?#]*)")

_IPV4 = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+")

# A URL that a WHATWG parser leaves exactly as it is and that every rule below accepts, as
# most links of a bulk send are: http or https in lower case; a host of at most 63
# characters, lower-case letter-digit-hyphen labels (no "--", so no punycode to check) whose
# last starts with a letter (so it is no IPv4 address); no userinfo, no port; then a path of
# segments that are not dot segments ("." or "%2e" first: the parser would resolve them),
# and a query and fragment, all of characters that the parser never escapes or drops.
# ada-url's result is the same string (tests.test_target checks it over the WPT corpus and
# generated URLs); a URL that does not match is simply parsed.
_CANONICAL = re.compile(
    r"https?://(?=[a-z0-9.-]{1,63}/)"
    r"(?:[a-z0-9]++(?:-[a-z0-9]++)*+\.)*+[a-z][a-z0-9]*+(?:-[a-z0-9]++)*+"
    r"(?:/(?!\.|%2[eE])[A-Za-z0-9._~!$&'()*+,;=:@%-]*+)++"
    r"(?:\?[A-Za-z0-9._~!$&()*+,;=:@%/?-]*+)?+"
    r"(?:#[A-Za-z0-9._~!$&'()*+,;=:@%/?#-]*+)?+"
)

_MAX_LABEL = 63
_MAX_HOST = 253


class TargetRefused(ValueError):
    """
    A destination that must not be signed; the message says why, for the issuer's report.
    """


def _is_visible(text: str) -> bool:
    """
    Whether C{text} has no control, space, separator, format (bidi, zero-width), private-use
    or unassigned character: nothing that can hide what a link says or split a header.
    """
    return text.isprintable() and " " not in text


def _is_valid_punycode(label: str) -> bool:
    """
    Whether a label is not punycode, or is punycode that IDNA would produce itself.

    The WHATWG parser passes C{xn--} labels through unchecked; a browser refuses those that
    do not decode to a valid name, so they are refused here too.
    """
    if not label.startswith("xn--"):
        return True
    try:
        name = label[4:].encode("ascii").decode("punycode")
        # A name holding a lone surrogate has no UTF-8 form: IDNA cannot take it.
        return bool(name) and idna_to_ascii(name).decode("ascii") == label
    except UnicodeError:
        return False


def _authority_host(authority: str) -> str:
    """
    The host part of a raw authority without userinfo: drop the port, keep IPv6 brackets.
    """
    if authority.startswith("["):
        return authority[: authority.find("]") + 1]
    return authority.partition(":")[0]


@lru_cache(maxsize=4096)
def normalize_target(raw: str) -> str:
    """
    The exact URL to sign for the link C{raw}, or L{TargetRefused} saying why it cannot be.

    The result is what a WHATWG parser makes of C{raw} without a base: the same destination a
    browser would reach, in printable ASCII only. Results are cached: a bulk send repeats the
    same few destinations in every message, and parsing is most of what signing costs. A URL
    written in the parser's own form already (L{is_canonical}) is returned without parsing.
    """
    if is_canonical(raw):
        return raw
    return parse_target(raw)


def is_canonical(raw: str) -> bool:
    """
    Whether L{parse_target} certainly returns C{raw} itself: the fast path's test.
    """
    return len(raw) <= MAX_TARGET_LENGTH and _CANONICAL.fullmatch(raw) is not None


def parse_target(raw: str) -> str:
    """
    L{normalize_target} without its cache and fast path: every rule, with the WHATWG parser.
    """
    if len(raw) > MAX_TARGET_LENGTH:
        raise TargetRefused(f"the URL has {len(raw)} characters, over {MAX_TARGET_LENGTH}")
    if not _is_visible(raw):
        position, character = next(
            (i, c) for i, c in enumerate(raw) if c == " " or not c.isprintable()
        )
        raise TargetRefused(
            f"the URL contains U+{ord(character):04X} (a control, space or invisible "
            f"character) at position {position}"
        )
    match = _SCHEME_AND_AUTHORITY.match(raw)
    if match is None:
        raise TargetRefused("the URL does not start with http:// or https://")
    authority = match.group(1)
    if not authority:
        raise TargetRefused("the URL has no host")
    if "\\" in authority:
        raise TargetRefused("the URL has a backslash in its host part")
    if "@" in authority:
        raise TargetRefused("the URL has a user name or password before its host")
    try:
        href = normalize_url(raw)
    except ValueError:
        raise TargetRefused("the URL is not valid (a browser would not open it)") from None
    # A special-scheme href is always scheme://host[:port]/path..., without userinfo here.
    after_scheme = href.index("//") + 2
    host = _authority_host(href[after_scheme : href.index("/", after_scheme)])
    if host[-1].isdigit() and _IPV4.fullmatch(host):
        written = _authority_host(authority).lower()
        if written != host:
            raise TargetRefused(
                f"the host {written!r} is an IPv4 address in disguise ({host}); write it as {host}"
            )
    elif host[0] != "[":
        if host[0] == "." or ".." in host:
            raise TargetRefused(f"the host {host!r} has an empty label")
        if "xn--" in host and not all(map(_is_valid_punycode, host.split("."))):
            raise TargetRefused(f"the host {host!r} has an invalid punycode (xn--) label")
        # Only a long host can hold a label over 63 characters: split only then.
        if len(host) > _MAX_LABEL and (
            len(host.removesuffix(".")) > _MAX_HOST or max(map(len, host.split("."))) > _MAX_LABEL
        ):
            raise TargetRefused("the host name is too long (DNS allows 63 per label, 253 in all)")
    if not (href.isascii() and _is_visible(href)):
        raise TargetRefused("the URL cannot be written as a safe Location header")
    if len(href) > MAX_TARGET_LENGTH:
        raise TargetRefused(f"the URL has {len(href)} characters, over {MAX_TARGET_LENGTH}")
    return href
