# -*- test-case-name: tests.test_linkid -*-
"""
LinkIDs: which message a tracked link belongs to, and which of its links it is.

A LinkID is derived, not drawn at random, so that issuing one message twice gives the same
LinkIDs, the same URL in its HTML and Text parts shares one LinkID (one click counted once),
and the collector can group the links of one message without a registry. It is a hash of the
message id and a position: it says nothing of the destination.
"""

from __future__ import annotations

import base64
import hashlib

__all__ = ["MESSAGE_KEY_LENGTH", "link_id", "message_key"]

MESSAGE_KEY_LENGTH = 12
"""The first characters of every LinkID of one message: its message key."""

_DOMAIN = b"linkrouter message\x00"


def message_key(message_id: str) -> str:
    """
    The message key of C{message_id}: the first 12 characters of the base64url (no padding)
    SHA-256 of C{b"linkrouter message\\x00"} and the id's UTF-8 bytes. 72 bits: distinct for
    every message a sender will ever send, and not reversible to the message id.
    """
    digest = hashlib.sha256(_DOMAIN + message_id.encode("utf-8", "surrogateescape")).digest()
    return base64.urlsafe_b64encode(digest)[:MESSAGE_KEY_LENGTH].decode("ascii")


def link_id(message_id: str, position: int) -> str:
    """
    The LinkID of the C{position}th distinct link (1-based) of message C{message_id}: its
    message key followed by the position in decimal, for example C{Xk3v9Qa_Lm0Z7}.
    """
    if position < 1:
        raise ValueError(f"a link position is 1-based, not {position}")
    return f"{message_key(message_id)}{position}"
