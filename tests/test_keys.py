"""
Tests for L{linkrouter.keys}: key values, the keyring's rules and rotation.
"""

from __future__ import annotations

import hashlib
import hmac

from twisted.trial.unittest import SynchronousTestCase

from linkrouter.keys import (
    MIN_SECRET_BYTES,
    Key,
    Keyring,
    KeyringInvalid,
    KeyState,
    new_key,
)


def key(key_id: str, state: KeyState = KeyState.ACTIVE, fill: int = 1) -> Key:
    return Key(key_id, bytes([fill]) * 32, state)


class KeyTests(SynchronousTestCase):
    def test_newKeyIsRandomActiveAndLongEnough(self) -> None:
        """
        L{new_key} makes an active key of 32 random bytes with a 4-character id; two calls
        never share a secret.
        """
        first, second = new_key(), new_key()
        self.assertIs(first.state, KeyState.ACTIVE)
        self.assertEqual(len(first.secret), MIN_SECRET_BYTES)
        self.assertEqual(len(first.key_id), 4)
        self.assertNotEqual(first.secret, second.secret)

    def test_newKeyAvoidsTakenIds(self) -> None:
        """
        L{new_key} never returns an id that is already in the keyring it is given.
        """
        taken = {f"k{i}": key(f"k{i}") for i in range(3)}
        for _ in range(200):
            self.assertNotIn(new_key(taken).key_id, taken)

    def test_shortSecretRefused(self) -> None:
        """
        A secret under 32 bytes is refused with an error that says how to make keys.
        """
        error = self.assertRaises(
            KeyringInvalid, Key, "k1", b"x" * (MIN_SECRET_BYTES - 1), KeyState.ACTIVE
        )
        self.assertIn("linkrouter keygen", str(error))

    def test_badKeyIdRefused(self) -> None:
        """
        Key ids travel in links: only 1 to 16 base64url characters are allowed.
        """
        for bad in ["", "a" * 17, "a/b", "a b", "é", "a.b", "a%"]:
            self.assertRaises(KeyringInvalid, Key, bad, b"x" * 32, KeyState.ACTIVE)

    def test_reprHidesSecret(self) -> None:
        """
        A key's repr names the key and its state but never shows the secret.
        """
        secret = b"\x01" * 32
        text = repr(Key("k1", secret, KeyState.VERIFY))
        self.assertEqual(text, "<Key k1 verify>")
        self.assertNotIn(repr(secret), text)

    def test_macIsHmacSha256(self) -> None:
        """
        L{Key.mac} is RFC 2104 HMAC-SHA256, for keys shorter and longer than a block
        (RFC 4231 test case 2 and test case 6 expected values).
        """
        case2 = Key("k", b"Jefe" * 8, KeyState.ACTIVE)
        message = b"what do ya want for nothing?"
        self.assertEqual(
            case2.mac(message), hmac.new(b"Jefe" * 8, message, hashlib.sha256).digest()
        )
        case6 = Key("k", b"\xaa" * 131, KeyState.ACTIVE)
        self.assertEqual(
            case6.mac(b"Test Using Larger Than Block-Size Key - Hash Key First").hex(),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
        )


class KeyringTests(SynchronousTestCase):
    def test_emptyRefused(self) -> None:
        """
        A keyring with no key is refused, and the error says how to add one.
        """
        error = self.assertRaises(KeyringInvalid, Keyring, ())
        self.assertIn("linkrouter keygen", str(error))

    def test_exactlyOneActive(self) -> None:
        """
        A keyring needs exactly one active key: none, or two, is refused.
        """
        self.assertRaises(KeyringInvalid, Keyring, (key("a", KeyState.VERIFY),))
        self.assertRaises(KeyringInvalid, Keyring, (key("a"), key("b")))
        self.assertEqual(Keyring((key("a"), key("b", KeyState.REVOKED))).active.key_id, "a")

    def test_duplicateIdsRefused(self) -> None:
        """
        Two keys with one id would make verification ambiguous: refused, naming the id.
        """
        error = self.assertRaises(
            KeyringInvalid, Keyring, (key("a"), key("a", KeyState.VERIFY, fill=2))
        )
        self.assertIn("'a'", str(error))

    def test_byIdFindsEveryKey(self) -> None:
        """
        C{by_id} maps every id to its key, whatever its state.
        """
        keys = (key("a", KeyState.VERIFY), key("b"), key("c", KeyState.REVOKED))
        ring = Keyring(keys)
        self.assertEqual(dict(ring.by_id), {k.key_id: k for k in keys})
        self.assertEqual(list(ring), list(keys))

    def test_rotationKeepsOldKeysVerifying(self) -> None:
        """
        Rotating in a new key makes it the active one and the previous active key
        verify-only; other keys keep their state.
        """
        ring = Keyring((key("old", KeyState.VERIFY), key("cur"), key("bad", KeyState.REVOKED)))
        rotated = ring.rotated(key("new", fill=9))
        self.assertEqual(
            [(k.key_id, k.state) for k in rotated],
            [
                ("old", KeyState.VERIFY),
                ("cur", KeyState.VERIFY),
                ("bad", KeyState.REVOKED),
                ("new", KeyState.ACTIVE),
            ],
        )
        self.assertEqual(rotated.by_id["cur"].secret, ring.by_id["cur"].secret)

    def test_rotationRefusesTakenIdOrInactiveKey(self) -> None:
        """
        Rotation refuses a key whose id is taken, or a key that is not active.
        """
        ring = Keyring((key("a"),))
        self.assertRaises(KeyringInvalid, ring.rotated, key("a", fill=2))
        self.assertRaises(KeyringInvalid, ring.rotated, key("b", KeyState.VERIFY))
