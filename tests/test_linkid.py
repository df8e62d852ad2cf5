"""
Tests for L{linkrouter.linkid}: LinkIDs derived from a message id and a position.
"""

from __future__ import annotations

import base64
import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from linkrouter.codec import LINK_ID_PATTERN
from linkrouter.collector.model import message_key as collector_message_key
from linkrouter.linkid import MESSAGE_KEY_LENGTH, link_id, message_key


class LinkIdTests(SynchronousTestCase):
    def test_derivation(self) -> None:
        """
        The message key is the first 12 characters of the base64url SHA-256 of the domain
        constant and the message id; the LinkID appends the position in decimal.
        """
        digest = hashlib.sha256(b"linkrouter message\x00<a@example.com>").digest()
        expected = base64.urlsafe_b64encode(digest).decode()[:12]
        self.assertEqual(message_key("<a@example.com>"), expected)
        self.assertEqual(link_id("<a@example.com>", 7), expected + "7")
        self.assertEqual(link_id("<a@example.com>", 1234), expected + "1234")

    def test_positionIsOneBased(self) -> None:
        """
        Position 0 or below is a programming error.
        """
        self.assertRaises(ValueError, link_id, "m", 0)

    @settings(max_examples=200, deadline=None)
    @given(st.text(min_size=1, max_size=200), st.integers(min_value=1, max_value=10**19))
    def test_validLinkIdTheCollectorGroups(self, message_id: str, position: int) -> None:
        """
        Every LinkID is a valid LinkID for the codec, and the collector recovers its
        message key from it.
        """
        identifier = link_id(message_id, position)
        self.assertTrue(LINK_ID_PATTERN.fullmatch(identifier))
        self.assertEqual(len(message_key(message_id)), MESSAGE_KEY_LENGTH)
        self.assertEqual(collector_message_key(identifier), message_key(message_id))

    def test_positionsAndMessagesDiffer(self) -> None:
        """
        Different positions and different messages give different LinkIDs.
        """
        ids = {link_id(f"<m{m}@x>", p) for m in range(50) for p in range(1, 50)}
        self.assertEqual(len(ids), 50 * 49)
