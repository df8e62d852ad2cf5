# -*- test-case-name: tests.test_cursor -*-
"""
The sync cursor: where in the journal the first event not yet acknowledged by the collector
starts.

It is replaced durably (a temporary file, fsync, rename, fsync of the directory) and the
previous copy is kept beside it. On load it is checked against the journal; a damaged
cursor falls back to the previous copy, then to the oldest segment — never forward: going
back only re-sends events, which the collector drops as duplicates.
"""

from __future__ import annotations

import json
import os

from attrs import frozen
from twisted.python.filepath import FilePath

from .durable import fsync_directory
from .event import decode_line
from .journal import segment_name, segments

__all__ = ["CURSOR_NAME", "Cursor", "load_cursor", "save_cursor"]

CURSOR_NAME = "cursor.json"
_PREVIOUS_NAME = "cursor.previous.json"


@frozen(order=True)
class Cursor:
    """
    A position in the journal: segment number, byte offset in it, and the sequence number of
    the event there (the first one not yet acknowledged).
    """

    segment: int
    offset: int
    sequence: int


def _parse(path: FilePath[str]) -> Cursor | None:
    try:
        document = json.loads(path.getContent())
        values = [document["segment"], document["offset"], document["sequence"]]
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None
    if not all(type(value) is int for value in values):
        return None
    cursor = Cursor(*values)
    if cursor.segment < 0 or cursor.offset < 0 or cursor.sequence < 1:
        return None
    return cursor


def _sequence_at(segment: FilePath[str], offset: int) -> int | None:
    """
    The sequence number of the event whose line starts at C{offset}; C{None} if no whole,
    valid line starts there.
    """
    with open(segment.path, "rb") as file:
        file.seek(offset)
        event = decode_line(file.readline(1024 * 1024))
    return None if event is None else int(event["seq"])


def _valid(cursor: Cursor, journal: FilePath[str]) -> bool:
    """
    Whether C{cursor} points at a line boundary of an existing segment where the event of
    its sequence number starts (or, at a segment's end, where the next segment starts with
    it): a cursor changed by damage almost never passes.
    """
    segment = journal.child(segment_name(cursor.segment))
    if not segment.exists():
        return False
    size = segment.getsize()
    if cursor.offset > size:
        return False
    if cursor.offset:
        with open(segment.path, "rb") as file:
            file.seek(cursor.offset - 1)
            if file.read(1) != b"\n":
                return False
    if cursor.offset < size:
        found = _sequence_at(segment, cursor.offset)
        return found is None or found == cursor.sequence  # a corrupt line cannot tell
    later = [path for number, path in segments(journal) if number > cursor.segment]
    if not later:
        return True  # the end of the newest segment: nothing written after it yet
    found = _sequence_at(later[0], 0)
    return found is None or found == cursor.sequence


def oldest_cursor(journal: FilePath[str]) -> Cursor:
    """
    The start of the oldest segment: where sync begins when nothing better is known.
    """
    found = segments(journal)
    return Cursor(found[0][0] if found else 1, 0, 1)


def load_cursor(state: FilePath[str], journal: FilePath[str]) -> tuple[Cursor, str | None]:
    """
    The cursor saved in C{state}, checked against C{journal}, and what was wrong if it had
    to fall back (C{None} when the saved cursor was good).
    """
    for name, problem in [
        (CURSOR_NAME, None),
        (_PREVIOUS_NAME, "cursor damaged; used the previous copy"),
    ]:
        cursor = _parse(state.child(name))
        if cursor is not None and _valid(cursor, journal):
            return cursor, problem
    missing = not state.child(CURSOR_NAME).exists() and not state.child(_PREVIOUS_NAME).exists()
    return oldest_cursor(
        journal
    ), None if missing else "cursor damaged; sync starts again from the oldest segment"


def save_cursor(state: FilePath[str], cursor: Cursor) -> None:
    """
    Durably replace the cursor in C{state}, keeping the one it replaces as the previous copy.
    """
    current = state.child(CURSOR_NAME)
    temporary = state.child(CURSOR_NAME + ".tmp")
    data = json.dumps(
        {"segment": cursor.segment, "offset": cursor.offset, "sequence": cursor.sequence}
    ).encode()
    fd = os.open(temporary.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    if current.exists():
        os.replace(current.path, state.child(_PREVIOUS_NAME).path)
    os.replace(temporary.path, current.path)
    fsync_directory(state)
