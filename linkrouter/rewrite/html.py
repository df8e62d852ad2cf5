# -*- test-case-name: tests.test_rewrite_html -*-
"""
Find the links of an HTML document and rewrite their C{href} values, and nothing else.

This is a tokenizer, not a parser: one regular expression walks the document the way the
HTML5 tokenizer does (tags and their quoted attribute values, comments, bogus comments,
raw-text elements such as C{<style>} and C{<script>}), skipping everything but C{<a>} and
C{<area>} start tags in C. Nothing is re-serialized: the output is the input with only the
rewritten C{href} values (and the opt-out attributes) replaced, so every other byte stays as
the sender wrote it, and the document is scanned once at C speed.

Outlook's conditional comments (C{<!--[if mso]> ... <![endif]-->}) are read as Outlook reads
them: their content is markup, and its links are rewritten. Other comments, C{<style>},
C{<script>}, C{<title>}, C{<textarea>} and the other raw-text elements are left alone, as are
C{href}s of every other element (including C{<base>}: relative links are left as written).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from html import unescape
from html.entities import html5

__all__ = ["OPT_OUT_ATTRIBUTE", "decode_attribute", "rewrite_links"]

OPT_OUT_ATTRIBUTE = "data-linkrouter-no-track"
"""On an C{<a>} or C{<area>}: leave this link untracked (the attribute is removed)."""

_SPACE = r"\t\n\f\r "
# A start or end tag's attributes (the rest of its name first), as the HTML5 tokenizer reads
# them: separators, then each attribute with its value, if any, and the separators after it.
_ATTRIBUTES = (
    rf"[{_SPACE}/]*+(?:[^{_SPACE}/>][^{_SPACE}/=>]*+"
    rf"(?:[{_SPACE}]*+=[{_SPACE}]*+(?:\"[^\"]*+\"?|'[^']*+'?|[^{_SPACE}>]*+))?+[{_SPACE}/]*+)*+"
)
# The same, and the ">", for the commonest tags: the rest of a plain name, then
# name="value" attributes between separators. Wherever this matches, the general form above
# matches the same characters (it reads the name's rest as an attribute name), only slower.
_PLAIN_ATTRIBUTES = (
    rf"[A-Za-z0-9]*+(?:[{_SPACE}/]++[A-Za-z][A-Za-z0-9_:-]*+=\"[^\"]*+\")*+[{_SPACE}/]*+>"
)
# Elements whose content is text, never tags (noscript is not one: mail clients run no
# script, so its content is markup). plaintext runs to the end of the document.
_RAW_TEXT = ["script", "style", "textarea", "title", "xmp", "iframe", "noembed", "noframes"]
_END = rf"(?=[{_SPACE}/>]|\Z)"
# One alternative an element, not a back-reference: CPython 3.11's possessive repeats
# mishandle capturing groups inside them.
_RAW_TEXT_ELEMENTS = "|".join(
    rf"(?i:{name}){_END}{_ATTRIBUTES}>?(?:[^<]++|<(?!/(?i:{name}){_END}))*+" for name in _RAW_TEXT
)
_SPECIAL = ["a", "area", "plaintext", *_RAW_TEXT]


def _ordinary_start_tag() -> str:
    """
    The first letter of a start tag that is none of the special elements.

    Dispatched on that letter, then on the next: most names (C{td}, C{div}, C{img}) cost one
    or two class tests; only a name that starts like a special one (C{tb}ody, C{ar}ticle) is
    compared with the special names.
    """
    # Branches are tried in order: the initials of common tags (table, span, p, img) first.
    initials = sorted({name[0] for name in _SPECIAL}, key="tspianx".find)
    others = "".join(c + c.upper() for c in "abcdefghijklmnopqrstuvwxyz" if c not in initials)
    branches = [f"[{others}]"]
    for initial in initials:
        names = [name for name in _SPECIAL if name[0] == initial]
        seconds = "".join(sorted({c + c.upper() for name in names if name[1:] for c in name[1]}))
        # If a special name is this letter alone, the name ending here is that one.
        unlike = rf"[{seconds}{_SPACE}/>]|\Z" if initial in names else f"[{seconds}]"
        rests = "|".join(name[1:] for name in names)
        branches.append(f"[{initial}{initial.upper()}](?!{unlike})")
        branches.append(rf"[{initial}{initial.upper()}](?!(?i:{rests}){_END})")
    return "(?:" + "|".join(branches) + ")"


# One match: everything up to the next <a> or <area> start tag (skipped in C, possessively,
# so malformed input cannot make it backtrack), then that tag, or the end of the document.
# Each step is some text and one "<" token, chosen by the character after the "<"; the
# commonest tokens come first. Names are matched case-insensitively, and nothing else is (a
# case-insensitive pattern is much slower in CPython's engine). When the next token is a link,
# the step fails, and the text before it is taken again after the loop.
_NEXT_LINK = re.compile(
    rf"""
    (?:
        [^<]*+<
        (?:
            /(?:
                [A-Za-z](?:[A-Za-z0-9]*+>|{_ATTRIBUTES}>?)  # an end tag
              | >|(?![A-Za-z])[^>]*+>?                  # an ignored end tag, bogus comment
            )
          | {_ordinary_start_tag()}                     # a start tag without links
            (?:{_PLAIN_ATTRIBUTES}|{_ATTRIBUTES}>?)
          | !(?:
                --\[(?i:if)[^\]>]*+\]>(?!<!)          # Outlook conditional comment: markup
              | --(?:-?>|(?:[^-]++|-(?!-!?>))*+(?:--!?>)?)          # a comment
              | [^>]*+>?                                # doctype, <![endif]-->, bogus comment
            )
          | \?[^>]*+>?                                  # a bogus comment
          | (?i:plaintext){_END}.*+
          | {_RAW_TEXT_ELEMENTS}                         # raw text up to its end tag
          | (?![A-Za-z!?/])                             # a "<" that is text
        )
    )*+
    [^<]*+
    (?:(?P<link><(?i:a|area){_END}{_ATTRIBUTES}>?)|\Z)
    """,
    re.VERBOSE | re.DOTALL,
)

_ATTRIBUTE = re.compile(
    rf"([^{_SPACE}/>][^{_SPACE}/=>]*+)"
    rf"(?:[{_SPACE}]*+=[{_SPACE}]*+(?:\"([^\"]*+)\"?|'([^']*+)'?|([^{_SPACE}>]*+)))?+"
)
# The first href of a tag and its value (double-, single- or un-quoted): one match in C.
_FIRST_HREF = re.compile(
    rf"<[A-Za-z]++(?:[{_SPACE}/]++|(?!(?i:href)(?:[{_SPACE}/=>]|\Z))"
    rf"[^{_SPACE}/>][^{_SPACE}/=>]*+"
    rf"(?:[{_SPACE}]*+=[{_SPACE}]*+(?:\"[^\"]*+\"?|'[^']*+'?|[^{_SPACE}>]*+))?+)*+"
    rf"(?i:href)[{_SPACE}]*+=[{_SPACE}]*+(?:\"([^\"]*+)\"?|'([^']*+)'?|([^{_SPACE}>]*+))"
)
_QUOTE = {1: '"', 2: "'", 3: ""}
# Whether a tag may hold the opt-out attribute (any ASCII case, as attribute names are).
_MAYBE_OPT_OUT = re.compile("-no-track", re.ASCII | re.IGNORECASE)
_TAG_NAME = re.compile(r"<[A-Za-z]+")
_TRAILING_SPACE = re.compile(rf"[{_SPACE}]*\Z")

_CHARACTER_REFERENCE = re.compile(r"&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)")

# What a tracked link is made of: nothing that needs escaping in any attribute quoting.
_PLAIN = re.compile(r"[A-Za-z0-9._~%/:-]*")
_ESCAPES = {"&": "&amp;", '"': "&quot;", "'": "&#39;", "<": "&lt;", ">": "&gt;", "=": "&#61;"}
_ESCAPES.update({c: f"&#{ord(c)};" for c in "`" + _SPACE})


def _named_reference(match: re.Match[str]) -> str:
    """
    One character reference decoded as the HTML5 tokenizer does inside an attribute value.
    """
    reference = match.group(1)
    if reference[0] == "#" or reference in html5:
        return unescape(match.group(0))
    # The longest known name without its ";": decoded, unless it runs on into the value
    # (followed by "=" or a letter or digit), as in "?a=1&copy=2" (a parameter, not an entity).
    for end in range(len(reference) - 1, 1, -1):
        if reference[:end] in html5:
            following = reference[end]
            if following == "=" or (following.isascii() and following.isalnum()):
                return match.group(0)
            return html5[reference[:end]] + reference[end:]
    return match.group(0)


def decode_attribute(value: str) -> str:
    """
    An attribute value as the browser sees it: character references decoded exactly once.
    """
    if "&" not in value:
        return value
    if "&" not in value.replace("&amp;", ""):
        return value.replace("&amp;", "&")  # the common case: only "&amp;"s
    # "&amp;" is most of the references in links; it is whole, so the text between two of
    # them decodes on its own, and only that text needs the general decoder.
    return "&".join(
        _CHARACTER_REFERENCE.sub(_named_reference, piece) if "&" in piece else piece
        for piece in value.split("&amp;")
    )


def _encode_attribute(link: str, quote: str) -> str:
    """
    C{link} written as an attribute value in C{quote} (C{'"'}, C{"'"} or C{""}).
    """
    if quote and "&" not in link and quote not in link:
        return link  # every tracked link, in quotes: nothing to escape
    if _PLAIN.fullmatch(link):
        return link
    return "".join(
        _ESCAPES.get(c, c) if (c == "&" or c == quote or not quote) else c for c in link
    )


Track = Callable[[str], "str | None"]
"""Called with a link's decoded value: the tracked link to write instead, or C{None}."""

OptOut = Callable[[str], None]
"""Called with the decoded value of a link marked with L{OPT_OUT_ATTRIBUTE}."""


def _rewrite_tag(tag: str, track: Track, opt_out: OptOut) -> str | None:
    """
    C{tag} (one C{<a>} or C{<area>} start tag) with its C{href} tracked and its opt-out
    attributes removed, or C{None} if it stays exactly as it is: the general case, for tags
    that may hold the opt-out attribute (L{rewrite_links} does the others itself).
    """
    name_end = _TAG_NAME.match(tag)
    assert name_end is not None
    href: re.Match[str] | None = None
    opt_outs: list[re.Match[str]] = []
    for attribute in _ATTRIBUTE.finditer(tag, name_end.end()):
        name = attribute.group(1)
        if len(name) == 4 and href is None and name.lower() == "href":
            href = attribute
        elif len(name) == len(OPT_OUT_ATTRIBUTE) and name.lower() == OPT_OUT_ATTRIBUTE:
            opt_outs.append(attribute)
    if href is None and not opt_outs:
        return None
    edits: list[tuple[int, int, str]] = []
    if href is not None and href.lastindex is not None and href.lastindex > 1:
        value_group = href.lastindex
        raw = href.group(value_group)
        decoded = decode_attribute(raw)
        if opt_outs:
            opt_out(decoded)
        else:
            tracked = track(decoded)
            if tracked is not None and tracked != decoded:
                quote = {2: '"', 3: "'", 4: ""}[value_group]
                start, end = href.span(value_group)
                edits.append((start, end, _encode_attribute(tracked, quote)))
    elif opt_outs:
        opt_out("")
    for attribute in opt_outs:
        start, end = attribute.span()
        space = _TRAILING_SPACE.search(tag, 0, start)
        edits.append((space.start() if space else start, end, ""))
    if not edits:
        return None
    edits.sort()
    pieces: list[str] = []
    position = 0
    for start, end, text in edits:
        pieces += [tag[position:start], text]
        position = end
    pieces.append(tag[position:])
    return "".join(pieces)


def rewrite_links(document: str, track: Track, opt_out: OptOut) -> str:
    """
    C{document} with the C{href} of every C{<a>} and C{<area>} start tag replaced by what
    C{track} returns for it, in document order.

    A tag marked with L{OPT_OUT_ATTRIBUTE} is passed to C{opt_out} instead and loses that
    attribute. Everything else is copied unchanged.
    """
    pieces: list[str] = []
    position = 0
    for match in _NEXT_LINK.finditer(document):
        start, end = match.span("link")
        if start < 0 or document[end - 1] != ">":
            continue  # the end, or a tag cut off by it: browsers drop such a tag
        if _MAYBE_OPT_OUT.search(document, start, end) is None:
            # The common case, inlined: one match finds the first href in the document
            # (browsers ignore a repeated attribute), and only its value is replaced.
            first = _FIRST_HREF.match(document, start, end)
            if first is None or first.lastindex is None:
                continue
            group = first.lastindex
            decoded = decode_attribute(first.group(group))
            tracked = track(decoded)
            if tracked is None or tracked == decoded:
                continue
            value_start, value_end = first.span(group)
            pieces += [document[position:value_start], _encode_attribute(tracked, _QUOTE[group])]
            position = value_end
            continue
        rewritten = _rewrite_tag(match.group("link"), track, opt_out)
        if rewritten is not None:
            pieces += [document[position:start], rewritten]
            position = end
    if not pieces:
        return document
    pieces.append(document[position:])
    return "".join(pieces)
