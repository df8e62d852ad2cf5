"""
The values the collector's parts hand each other: an ingested event's raw facts, what
enrichment adds beside them, a registered link, and the answer to an ingest.

Raw facts are kept exactly as the router journaled them; enrichment is stored beside them,
never instead of them, so it can be recomputed when the parsers' data improves.
"""

from __future__ import annotations

from enum import Enum

import attrs

__all__ = [
    "MESSAGE_KEY_LENGTH",
    "Enrichment",
    "Event",
    "IngestResult",
    "LinkRecord",
    "Platform",
    "message_key",
]

MESSAGE_KEY_LENGTH = 12
"""
A LinkID's first characters name its message (see C{docs/link-format.rst}), so the collector
can tell that several clicks hit the links of one message without a registry.
"""


def message_key(link_id: str) -> str:
    """
    The message part of C{link_id}: links of one message share it.
    """
    return link_id[:MESSAGE_KEY_LENGTH]


class Platform(Enum):
    DESKTOP = "Desktop"
    MOBILE = "Mobile"
    WEBMAIL = "WebMail"
    UNKNOWN = "Unknown"


@attrs.frozen
class Event:
    """
    One click or open as the router journaled it: the raw facts, validated.

    @ivar timestamp_ms: the click's UTC time in milliseconds since the epoch.
    @ivar issued_at: the link's issue time in seconds since the epoch.
    @ivar ip: the client address as the router stored it (full, truncated), or C{None}.
    """

    event_id: str
    sequence: int
    router: str
    timestamp_ms: int
    kind: str  # "click" | "open"
    link_id: str
    key_id: str
    part: str  # "html" | "text"
    issued_at: int
    method: str
    ip: str | None
    user_agent: str


@attrs.frozen
class Enrichment:
    """
    What the collector infers from an event's raw facts; every field may be unknown.

    @ivar bot_reasons: why the event is thought to come from a machine, as short stable
        identifiers (for example C{"head-request"}, C{"scanner-user-agent:mimecast"},
        C{"scanner-network:microsoft"}, C{"too-soon-after-issue"}, C{"message-burst"});
        empty for a human.
    """

    browser_family: str | None = None
    browser_version: str | None = None
    os_family: str | None = None
    os_version: str | None = None
    device: str | None = None
    platform: Platform = Platform.UNKNOWN
    country: str | None = None
    region: str | None = None
    city: str | None = None
    network: str | None = None
    bot_reasons: tuple[str, ...] = ()

    @property
    def bot(self) -> bool:
        return bool(self.bot_reasons)


@attrs.frozen
class LinkRecord:
    """
    A LinkID registered by the issuer (C{POST /v1/links}, C{rewrite --links-out}), so stats
    can show destinations. Links never registered still count, shown by LinkID.
    """

    link_id: str
    url: str
    message_id: str | None = None
    part: str | None = None
    position: int | None = None
    tag: str | None = None
    recipient_hash: str | None = None


@attrs.frozen
class IngestResult:
    """
    How many events of a batch were new and how many had been stored before.
    """

    accepted: int
    duplicates: int
