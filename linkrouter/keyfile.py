# -*- test-case-name: tests.test_keyfile -*-
"""
The keyring file: JSON, mode 0600, replaced atomically and durably.

The file holds secrets that can forge links, so it is refused at load time unless only its
owner can read it, and it is never written in place: a crash while rotating keys leaves the
old keyring or the new one, never half of either.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import stat
from typing import Any

from twisted.python.filepath import FilePath

from .durable import fsync_directory
from .keys import Key, Keyring, KeyringInvalid, KeyState

__all__ = [
    "FORMAT",
    "KeyringInvalid",
    "dump_keyring",
    "load_keyring",
    "parse_keyring",
    "save_keyring",
]

FORMAT = "linkrouter-keyring 1"
"""The value of the file's C{format} member; any other is refused."""

_MAX_SIZE = 1024 * 1024
_KEY_MEMBERS = {"id", "state", "secret", "created"}


def _secret_from_text(text: object, where: str) -> bytes:
    if not isinstance(text, str):
        raise KeyringInvalid(f"{where}: 'secret' must be a base64url string")
    try:
        secret = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise KeyringInvalid(f"{where}: 'secret' is not valid base64url") from None
    if base64.urlsafe_b64encode(secret).decode().rstrip("=") != text:
        raise KeyringInvalid(f"{where}: 'secret' is not canonical base64url without padding")
    return secret


def _key_from_json(entry: object, index: int) -> Key:
    where = f"key #{index + 1}"
    if not isinstance(entry, dict):
        raise KeyringInvalid(f"{where} is not an object")
    unknown = set(entry) - _KEY_MEMBERS
    if unknown:
        raise KeyringInvalid(f"{where} has unknown member(s) {sorted(unknown)}; remove them")
    missing = {"id", "state", "secret"} - set(entry)
    if missing:
        raise KeyringInvalid(f"{where} lacks member(s) {sorted(missing)}")
    key_id, state, created = entry["id"], entry["state"], entry.get("created", "")
    if not isinstance(key_id, str) or not isinstance(created, str):
        raise KeyringInvalid(f"{where}: 'id' and 'created' must be strings")
    try:
        key_state = KeyState(state)
    except ValueError:
        raise KeyringInvalid(
            f"{where} ({key_id}): state {state!r} is not one of active, verify, revoked"
        ) from None
    try:
        return Key(key_id, _secret_from_text(entry["secret"], where), key_state, created)
    except KeyringInvalid as error:
        raise KeyringInvalid(f"{where} ({key_id}): {error}") from None


def parse_keyring(text: bytes) -> Keyring:
    """
    The keyring in C{text} (the file's bytes), or L{KeyringInvalid} saying what is wrong.
    """
    try:
        document: Any = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise KeyringInvalid(f"it is not valid JSON ({error})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise KeyringInvalid(f'it is not a keyring: the "format" member must be "{FORMAT}"')
    unknown = set(document) - {"format", "keys"}
    if unknown:
        raise KeyringInvalid(f"unknown member(s) {sorted(unknown)}; remove them")
    entries = document.get("keys")
    if not isinstance(entries, list):
        raise KeyringInvalid('the "keys" member must be a list of keys')
    return Keyring(tuple(_key_from_json(entry, index) for index, entry in enumerate(entries)))


def dump_keyring(keyring: Keyring) -> bytes:
    """
    The file's bytes for C{keyring}: one key a line, so a diff shows what rotation changed.
    """
    lines = [
        "  "
        + json.dumps(
            {
                "id": key.key_id,
                "state": key.state.value,
                "created": key.created,
                "secret": base64.urlsafe_b64encode(key.secret).decode().rstrip("="),
            }
        )
        for key in keyring
    ]
    body = ",\n".join(lines)
    return f'{{"format": "{FORMAT}", "keys": [\n{body}\n]}}\n'.encode()


def load_keyring(path: FilePath[str]) -> Keyring:
    """
    Read and check the keyring at C{path}.

    @raise KeyringInvalid: the file is missing, not a regular file, readable or writable by
        anyone but its owner, too large, or not a valid keyring; the message names the file
        and the fix.
    """
    try:
        fd = os.open(path.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise KeyringInvalid(
            f"keyring {path.path} does not exist; create it with 'linkrouter keygen {path.path}'"
        ) from None
    except OSError as error:
        raise KeyringInvalid(f"keyring {path.path} cannot be opened: {error.strerror}") from None
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise KeyringInvalid(f"keyring {path.path} is not a regular file")
        mode = stat.S_IMODE(status.st_mode)
        if mode & 0o077:
            raise KeyringInvalid(
                f"keyring {path.path} has mode {mode:04o}: group or others may use it; "
                f"run 'chmod 600 {path.path}'"
            )
        if status.st_size > _MAX_SIZE:
            raise KeyringInvalid(f"keyring {path.path} is over {_MAX_SIZE} bytes")
        text = os.read(fd, _MAX_SIZE + 1)
    finally:
        os.close(fd)
    if not text.strip():
        raise KeyringInvalid(
            f"keyring {path.path} is empty; add a key with 'linkrouter keygen {path.path}'"
        )
    try:
        return parse_keyring(text)
    except KeyringInvalid as error:
        raise KeyringInvalid(f"keyring {path.path}: {error}") from None


def save_keyring(keyring: Keyring, path: FilePath[str]) -> None:
    """
    Write C{keyring} to C{path} with mode 0600: a new file beside it, flushed to disk, then
    renamed over the old one, and the directory flushed so the rename itself survives a crash.
    """
    temporary = path.sibling(f".{path.basename()}.{os.getpid()}.tmp")
    fd = os.open(
        temporary.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600
    )
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(dump_keyring(keyring))
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary.path, path.path)
    except BaseException:
        if temporary.exists():
            temporary.remove()
        raise
    fsync_directory(path.parent())
