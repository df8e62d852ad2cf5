# -*- test-case-name: tests.test_rewrite -*-
"""
The issuer: what each link of a message becomes, and the record of what was done.

A L{Rewriter} holds what every message of a send shares (key, router base, mode, issue time);
one message is rewritten in one session, which numbers its distinct destinations in order of
first appearance (HTML first, then text), so the LinkIDs of one message are stable and the
same URL in both parts shares one. Links that must not be tracked are left as written and
reported as L{Skipped}, with a reason.
"""

from __future__ import annotations

import re
import time
import uuid
from contextlib import suppress
from enum import Enum
from functools import partial
from typing import Any, Generic, TypeVar

from attrs import field, frozen

from ..codec import ClickSigner, Part, TargetRefused, sign
from ..keys import Key
from ..linkid import message_key
from ..target import normalize_target
from .html import rewrite_links
from .text import rewrite_urls

__all__ = [
    "LinkRecord",
    "Mode",
    "Rewriter",
    "Rewritten",
    "SkipReason",
    "Skipped",
    "rewrite_html",
    "rewrite_text",
]

Content = TypeVar("Content", str, bytes)


class Mode(Enum):
    """
    Which parts of a message get tracked links (Postmark's C{TrackLinks} values).
    """

    HTML_AND_TEXT = "html-and-text"
    HTML_ONLY = "html-only"
    TEXT_ONLY = "text-only"

    def tracks(self, part: Part) -> bool:
        """
        Whether links of C{part} are tracked in this mode.
        """
        if part is Part.HTML:
            return self is not Mode.TEXT_ONLY
        return self is not Mode.HTML_ONLY


class SkipReason(Enum):
    """
    Why a link was left as it is.
    """

    NOT_HTTP = "not an http(s) link"
    PLACEHOLDER = "a template placeholder"
    ALREADY_TRACKED = "already a tracked link"
    OPTED_OUT = "opted out"
    REFUSED = "refused"
    TOO_LONG = "too long to track"
    UNREADABLE_PART = "part not rewritten"


@frozen
class LinkRecord:
    """
    One tracked destination of a message, as registered with the collector
    (C{POST /v1/links}): one record per LinkID and part it appears in.

    @ivar url: the destination exactly as signed: where the link redirects.
    @ivar position: the 1-based number of the destination within the message.
    """

    link_id: str
    url: str
    part: Part
    position: int
    message_id: str

    def as_json(self, tag: str | None = None, recipient: str | None = None) -> dict[str, Any]:
        """
        The record as one C{--links-out} line's object, with the optional tag and
        recipient hash.
        """
        record: dict[str, Any] = {
            "link": self.link_id,
            "url": self.url,
            "part": self.part.value,
            "position": self.position,
            "message": self.message_id,
        }
        if tag is not None:
            record["tag"] = tag
        if recipient is not None:
            record["recipient"] = recipient
        return record


@frozen
class Skipped:
    """
    A link left as written, and why; C{detail} says more for people (never a secret).
    """

    url: str
    part: Part
    reason: SkipReason
    detail: str = ""


@frozen
class Rewritten(Generic[Content]):
    """
    A rewritten document or message, with the message id its LinkIDs derive from, the
    tracked destinations and the links left as they were.
    """

    content: Content
    message_id: str
    links: tuple[LinkRecord, ...]
    skipped: tuple[Skipped, ...]


def _check_issued_at(instance: object, attribute: object, value: int | None) -> None:
    if value is not None and (type(value) is not int or value < 0):
        raise ValueError(f"the issue time {value!r} is not a whole number of seconds")


@frozen
class Rewriter:
    """
    How to rewrite the messages of one send.

    @ivar key: the keyring's active key.
    @ivar base: the router's origin, C{https://HOST[:PORT]}.
    @ivar issued_at: the issue time signed into every link, in seconds (default: now, when
        each message is rewritten).
    @ivar message_id: the message id LinkIDs derive from (default: the message's
        C{Message-ID}, else a random one).
    """

    key: Key
    base: str
    mode: Mode = Mode.HTML_AND_TEXT
    issued_at: int | None = field(default=None, validator=_check_issued_at)
    message_id: str | None = None
    origin: str = field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        # Signing one link checks the key, the base and the time, once, with codec's messages.
        sign("https://example.com/", self.key, "check", Part.HTML, 0, base=self.base)
        object.__setattr__(self, "origin", normalize_target(self.base).rstrip("/"))

    def session(self, message_id: str | None = None, written: str | None = None) -> _Session:
        """
        A session for one message, whose id is the first given of: C{message_id} (given for
        this message), the rewriter's, C{written} (the message's own), a random one.
        """
        chosen = message_id or self.message_id or written or uuid.uuid4().hex
        issued_at = int(time.time()) if self.issued_at is None else self.issued_at
        return _Session(self, chosen, issued_at)


# Markers of the template languages ESPs and frameworks use: a URL holding one is filled in
# after this rewriting, so signing it would freeze the placeholder into the link.
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{%|%\}|\*\||\|\*|%%|\[\[|\]\]|\$\{|<%|%>|\{\$")


def _holds_placeholder(value: str) -> bool:
    """
    Whether C{value} holds a template marker (L{_PLACEHOLDER}).
    """
    # Every marker but "%%" holds one of these nine characters, and most links hold none:
    # ten substring tests (memchr, in C) cost half a regular expression search of the link.
    if (
        "{" in value
        or "}" in value
        or "*" in value
        or "|" in value
        or "[" in value
        or "]" in value
        or "$" in value
        or "<" in value
        or ">" in value
        or "%%" in value
    ):
        return _PLACEHOLDER.search(value) is not None
    return False


_HTTP = re.compile(r"https?:", re.IGNORECASE)
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
# Browsers strip these from both ends of a URL before parsing it.
_STRIPPED = "".join(map(chr, range(0x21)))


def _not_http(value: str) -> str:
    """
    What kind of link C{value} is, for the report (browsers ignore tabs and newlines).
    """
    value = value.replace("\t", "").replace("\n", "").replace("\r", "")
    if not value:
        return "an empty link"
    if value.startswith("#"):
        return "an anchor in the document"
    if value[:2] in {"//", "\\\\", "/\\", "\\/"}:
        return "a scheme-relative link (refused: its scheme is not written)"
    scheme = _SCHEME.match(value)
    if scheme is not None:
        return f"a {scheme.group(1).lower()}: link"
    return "a relative link (left as written)"


class _PartLinks:
    """
    What one session knows of the links of one part (a plain object, not a dictionary keyed
    by L{Part}: an enum member hashes in Python, and this is consulted for every link).
    """

    __slots__ = ("known", "part", "signer", "tracked")

    def __init__(self, part: Part, signer: ClickSigner) -> None:
        self.part = part
        self.signer = signer
        self.tracked: dict[str, str] = {}  # destination -> its tracked link in this part
        # Each link value as written -> its tracked link: a value seen again (the same URL
        # in a header and a footer) costs one lookup.
        self.known: dict[str, str] = {}


class _Session:
    """
    The rewriting of one message: its LinkIDs, its records and what was skipped.
    """

    def __init__(self, rewriter: Rewriter, message_id: str, issued_at: int) -> None:
        self.rewriter = rewriter
        self.message_id = message_id
        self.issued_at = issued_at
        self.message_key = message_key(message_id)  # LinkIDs: this and the position
        self.positions: dict[str, int] = {}
        self.links: list[LinkRecord] = []
        self.skipped: list[Skipped] = []
        self.opted_out: set[str] = set()
        self.tracked_prefix = rewriter.origin + "/"  # how a link tracked already starts
        self.html_links, self.text_links = (
            _PartLinks(part, ClickSigner(rewriter.key, part, issued_at, base=rewriter.base))
            for part in (Part.HTML, Part.TEXT)
        )

    def skip(self, url: str, part: Part, reason: SkipReason, detail: str = "") -> None:
        self.skipped.append(Skipped(url, part, reason, detail))

    def track(self, written: str, part: Part) -> str | None:
        """
        The tracked link for the link C{written} (decoded), or C{None} (and a report).
        """
        return self._track(self.html_links if part is Part.HTML else self.text_links, written)

    def _track(self, links: _PartLinks, written: str) -> str | None:
        known = links.known.get(written)
        if known is not None:
            return known
        part = links.part
        value = written.strip(_STRIPPED)
        if _holds_placeholder(value):
            self.skip(written, part, SkipReason.PLACEHOLDER)
            return None
        if not _HTTP.match(value):
            self.skip(written, part, SkipReason.NOT_HTTP, _not_http(value))
            return None
        try:
            target = normalize_target(value)
        except TargetRefused as refusal:
            self.skip(written, part, SkipReason.REFUSED, str(refusal))
            return None
        if target.startswith(self.tracked_prefix):
            self.skip(written, part, SkipReason.ALREADY_TRACKED)
            return None
        if target in self.opted_out:
            self.skip(written, part, SkipReason.OPTED_OUT, "opted out in the HTML part")
            return None
        tracked = links.tracked.get(target)
        if tracked is None:
            position = self.positions.get(target, len(self.positions) + 1)
            identifier = f"{self.message_key}{position}"  # valid: base64url, then digits
            try:
                tracked = links.signer.link_with_valid_id(target, identifier)
            except TargetRefused as refusal:
                self.skip(written, part, SkipReason.TOO_LONG, str(refusal))
                return None
            self.positions[target] = position
            links.tracked[target] = tracked
            self.links.append(LinkRecord(identifier, target, part, position, self.message_id))
        # Else the same destination again: the same link.
        links.known[written] = tracked
        return tracked

    def opt_out(self, written: str) -> None:
        """
        The HTML link C{written} is marked not to be tracked: nor is its URL in the text.
        """
        # An opt-out untracks its URL from here on, even where it was tracked before.
        self.html_links.known.clear()
        self.text_links.known.clear()
        value = written.strip(_STRIPPED)
        with suppress(TargetRefused):  # a refused URL is never tracked anyway
            self.opted_out.add(normalize_target(value))
        self.skip(written, Part.HTML, SkipReason.OPTED_OUT, "data-linkrouter-no-track")

    def html(self, document: str) -> str:
        """
        C{document} with its links tracked (per the mode) and opt-out markers removed.
        """
        if self.rewriter.mode.tracks(Part.HTML):
            # The part bound by position: a partial with a keyword builds a dict every call.
            return rewrite_links(document, partial(self._track, self.html_links), self.opt_out)
        return rewrite_links(document, lambda v: None, self.opt_out)

    def text(self, text: str) -> str:
        """
        C{text} with its URLs tracked, if the mode tracks the text part.
        """
        if not self.rewriter.mode.tracks(Part.TEXT):
            return text
        return rewrite_urls(text, partial(self._track, self.text_links))

    def result(self, content: Content) -> Rewritten[Content]:
        return Rewritten(content, self.message_id, tuple(self.links), tuple(self.skipped))


def rewrite_html(
    rewriter: Rewriter, document: str, message_id: str | None = None
) -> Rewritten[str]:
    """
    An HTML document (one message's HTML part) with every trackable link replaced.

    @param message_id: this message's id, if not the rewriter's.
    """
    session = rewriter.session(message_id)
    return session.result(session.html(document))


def rewrite_text(rewriter: Rewriter, text: str, message_id: str | None = None) -> Rewritten[str]:
    """
    A plain-text document (one message's text part) with every trackable URL replaced.

    @param message_id: this message's id, if not the rewriter's.
    """
    session = rewriter.session(message_id)
    return session.result(session.text(text))
