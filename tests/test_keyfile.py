"""
Tests for L{linkrouter.keyfile}: the keyring file's format, permissions and atomic writes.
"""

from __future__ import annotations

import json
import os
import stat

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from linkrouter.keyfile import FORMAT, dump_keyring, load_keyring, parse_keyring, save_keyring
from linkrouter.keys import Key, Keyring, KeyringInvalid, KeyState, new_key


def write(path: FilePath[str], content: bytes, mode: int = 0o600) -> None:
    path.setContent(content)
    os.chmod(path.path, mode)


def entry(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {"id": "k1", "state": "active", "secret": "A" * 43}
    base.update(fields)
    return base


def document(*entries: dict[str, object], **extra: object) -> bytes:
    return json.dumps({"format": FORMAT, "keys": list(entries), **extra}).encode()


class RoundTripTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.path = FilePath(self.mktemp())
        self.path.makedirs()
        self.path = self.path.child("keyring.json")

    def test_saveThenLoad(self) -> None:
        """
        A saved keyring loads back equal, with mode 0600 on disk.
        """
        ring = Keyring((Key("old", b"\x07" * 40, KeyState.VERIFY, "2025-01-01"), new_key()))
        save_keyring(ring, self.path)
        self.assertEqual(stat.S_IMODE(os.stat(self.path.path).st_mode), 0o600)
        self.assertEqual(load_keyring(self.path), ring)

    def test_saveReplacesAndLeavesNoTemporaryFile(self) -> None:
        """
        Saving over an existing keyring replaces it whole and leaves nothing else behind.
        """
        first = Keyring((new_key(),))
        save_keyring(first, self.path)
        second = first.rotated(new_key(first.by_id))
        save_keyring(second, self.path)
        self.assertEqual(load_keyring(self.path), second)
        self.assertEqual(self.path.parent().listdir(), ["keyring.json"])

    def test_saveIgnoresUmask(self) -> None:
        """
        The keyring is 0600 even under a permissive umask.
        """
        previous = os.umask(0)
        try:
            save_keyring(Keyring((new_key(),)), self.path)
        finally:
            os.umask(previous)
        self.assertEqual(stat.S_IMODE(os.stat(self.path.path).st_mode), 0o600)

    @settings(max_examples=50, deadline=None)
    @given(
        st.lists(
            st.tuples(
                st.sampled_from([KeyState.VERIFY, KeyState.REVOKED]),
                st.binary(min_size=32, max_size=96),
            ),
            max_size=6,
        )
    )
    def test_dumpParseRoundTrip(self, retired: list[tuple[KeyState, bytes]]) -> None:
        """
        Any keyring survives L{dump_keyring} then L{parse_keyring} unchanged.
        """
        keys = [Key(f"r{i}", secret, state) for i, (state, secret) in enumerate(retired)]
        ring = Keyring((*keys, new_key()))
        self.assertEqual(parse_keyring(dump_keyring(ring)), ring)


class LoadRefusalTests(SynchronousTestCase):
    """
    Every bad keyring is refused at load with one message naming the file and the fix.
    """

    def setUp(self) -> None:
        directory = FilePath(self.mktemp())
        directory.makedirs()
        self.path = directory.child("keyring.json")

    def refused(self, content: bytes, mode: int = 0o600) -> str:
        write(self.path, content, mode)
        message = str(self.assertRaises(KeyringInvalid, load_keyring, self.path))
        self.assertIn(self.path.path, message)
        return message

    def test_missing(self) -> None:
        """
        A missing keyring says how to create one.
        """
        message = str(self.assertRaises(KeyringInvalid, load_keyring, self.path))
        self.assertIn("does not exist", message)
        self.assertIn(f"linkrouter keygen {self.path.path}", message)

    def test_groupOrWorldAccessRefused(self) -> None:
        """
        Any group or world permission bit is refused, and the fix (chmod 600) is named.
        """
        content = document(entry())
        for mode in [0o640, 0o604, 0o620, 0o602, 0o610, 0o601, 0o644, 0o666]:
            message = self.refused(content, mode)
            self.assertIn(f"{mode:04o}", message)
            self.assertIn("chmod 600", message)

    def test_ownerOnlyModesAccepted(self) -> None:
        """
        0600 and 0400 are accepted.
        """
        for mode in [0o600, 0o400]:
            write(self.path, document(entry()), mode)
            self.assertEqual(load_keyring(self.path).active.key_id, "k1")

    def test_symlinkRefused(self) -> None:
        """
        A keyring behind a symbolic link is refused: its permissions are not the link's.
        """
        target = self.path.sibling("real.json")
        write(target, document(entry()))
        os.symlink(target.path, self.path.path)
        self.assertRaises(KeyringInvalid, load_keyring, self.path)

    def test_directoryRefused(self) -> None:
        """
        A directory where the keyring should be is refused.
        """
        self.path.makedirs()
        os.chmod(self.path.path, 0o700)
        self.assertRaises(KeyringInvalid, load_keyring, self.path)

    def test_empty(self) -> None:
        """
        An empty file says how to add a key.
        """
        self.assertIn("linkrouter keygen", self.refused(b""))
        self.assertIn("linkrouter keygen", self.refused(b"  \n"))

    def test_notJson(self) -> None:
        """
        Malformed JSON and non-UTF-8 bytes are refused as not JSON.
        """
        self.assertIn("not valid JSON", self.refused(b"{keys: []}"))
        self.assertIn("not valid JSON", self.refused(b"\xff\xfe"))

    def test_wrongFormat(self) -> None:
        """
        A JSON document without the keyring format marker is refused.
        """
        for content in [b"[]", b'{"keys": []}', b'{"format": "other", "keys": []}']:
            self.assertIn("format", self.refused(content))

    def test_noKeys(self) -> None:
        """
        A keyring whose key list is empty or not a list is refused.
        """
        self.assertIn("no key", self.refused(document()))
        self.assertIn("list", self.refused(json.dumps({"format": FORMAT, "keys": {}}).encode()))

    def test_badEntries(self) -> None:
        """
        Each broken key entry is refused, naming what is wrong with it.
        """
        cases = [
            (entry(state="signing"), "state"),
            (entry(secret="A" * 40), "fewer than 32"),
            (entry(secret="not base64!"), "base64url"),
            (entry(secret="A" * 42 + "B"), "canonical"),
            (entry(secret="A" * 43 + "="), "canonical"),
            (entry(secret=42), "base64url"),
            (entry(id="a/b"), "key id"),
            (entry(id=7), "strings"),
            (entry(extra=1), "unknown"),
            ({"id": "k1", "state": "active"}, "secret"),
            ("k1", "not an object"),
        ]
        for bad, words in cases:
            self.assertIn(words, self.refused(document(bad)), bad)

    def test_unknownTopLevelMember(self) -> None:
        """
        Unknown members are refused rather than ignored: a typo must not pass silently.
        """
        self.assertIn("unknown", self.refused(document(entry(), comment="x")))

    def test_ruleBreakingKeyrings(self) -> None:
        """
        Keyrings breaking the keyring rules (no active key, two, duplicate ids) are refused.
        """
        self.assertIn("0 active", self.refused(document(entry(state="verify"))))
        self.assertIn("2 active", self.refused(document(entry(), entry(id="k2"))))
        self.assertIn("more than once", self.refused(document(entry(), entry(state="verify"))))
