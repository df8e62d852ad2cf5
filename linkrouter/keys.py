# -*- test-case-name: tests.test_keys -*-
"""
Signing keys and the keyring value: pure data, no I/O.

A keyring holds every key that may still verify a link. Exactly one key is C{active}: it signs
new links. Retired keys stay C{verify} for as long as their links should work (years);
C{revoked} keys refuse every link they signed.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Iterator, Mapping
from enum import Enum
from typing import Any

from attrs import field, frozen

__all__ = [
    "KEY_ID_PATTERN",
    "MIN_SECRET_BYTES",
    "Key",
    "KeyState",
    "Keyring",
    "KeyringInvalid",
    "new_key",
]

MIN_SECRET_BYTES = 32
"""Every secret has at least this many bytes: the full HMAC-SHA256 security level."""

KEY_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,16}")
"""A key id is 1 to 16 base64url characters; it travels in every link."""


_BLOCK = 64  # SHA-256's block size: RFC 2104 pads (or first hashes) the key to it
_IPAD = bytes(byte ^ 0x36 for byte in range(256))
_OPAD = bytes(byte ^ 0x5C for byte in range(256))


class KeyringInvalid(ValueError):
    """
    A keyring, or a key in it, breaks a rule; the message says which and how to fix it.
    """


class KeyState(Enum):
    """
    What a key may do.
    """

    ACTIVE = "active"
    """Signs new links and verifies; exactly one key of a keyring is active."""

    VERIFY = "verify"
    """Verifies links it signed earlier; signs nothing new (a retired signing key)."""

    REVOKED = "revoked"
    """Verifies nothing: every link it signed is refused."""


def _check_key_id(instance: object, attribute: object, value: str) -> None:
    if not KEY_ID_PATTERN.fullmatch(value):
        raise KeyringInvalid(
            f"key id {value!r} is not 1 to 16 characters of A-Z a-z 0-9 - _; "
            "choose an id of that form"
        )


def _check_secret(instance: object, attribute: object, value: bytes) -> None:
    if len(value) < MIN_SECRET_BYTES:
        raise KeyringInvalid(
            f"a secret has {len(value)} bytes, fewer than {MIN_SECRET_BYTES}; "
            "generate keys with 'linkrouter keygen'"
        )


@frozen(repr=False)
class Key:
    """
    One HMAC-SHA256 key with its id and state.

    C{repr} hides the secret so a key can never be logged by accident.
    """

    key_id: str = field(validator=_check_key_id)
    secret: bytes = field(validator=_check_secret)
    state: KeyState
    created: str = ""
    """When the key was made, ISO 8601 UTC; informational only."""

    _inner: Any = field(init=False, eq=False)
    _outer: Any = field(init=False, eq=False)

    def __attrs_post_init__(self) -> None:
        block = self.secret if len(self.secret) <= _BLOCK else hashlib.sha256(self.secret).digest()
        block = block.ljust(_BLOCK, b"\0")
        object.__setattr__(self, "_inner", hashlib.sha256(block.translate(_IPAD)))
        object.__setattr__(self, "_outer", hashlib.sha256(block.translate(_OPAD)))

    def __repr__(self) -> str:
        return f"<Key {self.key_id} {self.state.value}>"

    def mac(self, message: bytes) -> bytes:
        """
        HMAC-SHA256 of C{message} under this key (RFC 2104), 32 bytes.

        The padded key blocks are hashed once per key, not once per link: this halves the
        cost of an HMAC over a short message, which is most of what verifying a link costs.
        """
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        digest: bytes = outer.digest()
        return digest


def new_key(existing: Mapping[str, Key] | None = None, created: str = "") -> Key:
    """
    Make a new active key with 32 random bytes and a random 4-character id that is not in
    C{existing}.
    """
    taken = existing or {}
    while True:
        key_id = base64.urlsafe_b64encode(secrets.token_bytes(3)).decode("ascii")
        if key_id not in taken:
            return Key(key_id, secrets.token_bytes(MIN_SECRET_BYTES), KeyState.ACTIVE, created)


@frozen
class Keyring:
    """
    Every key by id, in the order they were added; exactly one active.

    C{by_id} is the mapping that L{linkrouter.codec.verify} takes: one dictionary lookup per
    link, whatever ids exist.
    """

    keys: tuple[Key, ...]
    by_id: Mapping[str, Key] = field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        if not self.keys:
            raise KeyringInvalid(
                "the keyring holds no key; add one with 'linkrouter keygen KEYRING'"
            )
        by_id: dict[str, Key] = {}
        for key in self.keys:
            if key.key_id in by_id:
                raise KeyringInvalid(
                    f"key id {key.key_id!r} appears more than once; give each key its own id"
                )
            by_id[key.key_id] = key
        active = [k for k in self.keys if k.state is KeyState.ACTIVE]
        if len(active) != 1:
            raise KeyringInvalid(
                f"the keyring has {len(active)} active keys, it needs exactly one; "
                "run 'linkrouter keygen KEYRING' to add a new active key"
            )
        object.__setattr__(self, "by_id", by_id)

    @property
    def active(self) -> Key:
        """
        The one key that signs new links.
        """
        return next(k for k in self.keys if k.state is KeyState.ACTIVE)

    def __iter__(self) -> Iterator[Key]:
        return iter(self.keys)

    def rotated(self, key: Key) -> Keyring:
        """
        A keyring with C{key} as its new active key; the previous active key becomes
        verify-only, so every link it signed keeps working.
        """
        if key.state is not KeyState.ACTIVE:
            raise KeyringInvalid(f"key {key.key_id!r} is not active and cannot be rotated in")
        if key.key_id in self.by_id:
            raise KeyringInvalid(f"key id {key.key_id!r} is already in the keyring")
        retired = tuple(
            Key(k.key_id, k.secret, KeyState.VERIFY, k.created)
            if k.state is KeyState.ACTIVE
            else k
            for k in self.keys
        )
        return Keyring((*retired, key))
