# -*- test-case-name: tests.test_reader -*-
"""
Reading the journal from the cursor onward, for sync: whole, checksum-valid lines only.

The unterminated last line of the live segment is held back (the writer may be in the middle
of it); a corrupt line anywhere else is skipped and reported, never allowed to stall sync.
"""

from __future__ import annotations

import calendar
import time

from attrs import frozen
from twisted.python.filepath import FilePath

from .cursor import Cursor
from .event import decode_line
from .journal import segment_name, segments

__all__ = ["Batch", "backlog", "read_batch"]


@frozen
class Batch:
    """
    Events read from C{start}: their lines (each ending in a newline), the cursor just after
    the last line read, the places of corrupt lines skipped on the way, and whether reading
    stopped at a limit (more may be waiting) rather than at the end of the journal.
    """

    start: Cursor
    lines: tuple[bytes, ...]
    end: Cursor
    corrupt: tuple[str, ...]
    full: bool = False

    @property
    def size(self) -> int:
        return sum(map(len, self.lines))


def read_batch(journal: FilePath[str], start: Cursor, max_events: int, max_bytes: int) -> Batch:
    """
    Up to C{max_events} events or C{max_bytes} bytes of lines from C{start}, crossing into
    later segments when a segment is exhausted. C{end} may move past skipped corrupt lines and
    into a newer segment even when no event is read.
    """
    lines: list[bytes] = []
    corrupt: list[str] = []
    size = 0
    segment, offset, sequence = start.segment, start.offset, start.sequence
    numbers = [number for number, _ in segments(journal)]
    newer = [number for number in numbers if number > segment]
    if segment not in numbers:  # deleted under us, or no journal yet: go to what exists
        if not newer:
            return Batch(start, (), start, ())
        segment, offset = newer.pop(0), 0
    stopped = False
    while True:
        path = journal.child(segment_name(segment))
        live = not newer
        with open(path.path, "rb") as file:
            file.seek(offset)
            budget = max(max_bytes - size, 0) + 65536  # one line past the byte budget at most
            data = file.read(budget)
        position = 0
        full = False
        while True:
            newline = data.find(b"\n", position)
            if newline == -1:
                break
            line = data[position : newline + 1]
            if lines and (len(lines) >= max_events or size + len(line) > max_bytes):
                full = True
                break
            event = decode_line(line)
            if event is None:
                corrupt.append(f"{segment_name(segment)}:{offset + position}")
            else:
                lines.append(line)
                size += len(line)
                sequence = int(event["seq"]) + 1
            position = newline + 1
        offset += position
        if full or len(lines) >= max_events or size >= max_bytes:
            stopped = True
            break
        rest = data[position:]
        if rest and len(data) == budget:
            if position == 0:  # no newline in a whole read: garbage, not a line; skip it
                corrupt.append(f"{segment_name(segment)}:{offset}")
                offset += len(data)
            continue  # more of this segment to read
        if live:
            break  # an unterminated tail of the live segment waits for the writer
        if rest:  # an older segment ends in a torn line: skip it
            corrupt.append(f"{segment_name(segment)}:{offset}")
        segment, offset = newer.pop(0), 0
    return Batch(start, tuple(lines), Cursor(segment, offset, sequence), tuple(corrupt), stopped)


def backlog(journal: FilePath[str], start: Cursor) -> tuple[int, int, float | None]:
    """
    What is not yet synced from C{start}: events, bytes, and the oldest one's time (seconds
    since the epoch; C{None} when nothing waits). Reads the whole backlog: for operators.
    """
    events = size = 0
    oldest: float | None = None
    cursor = start
    while True:
        batch = read_batch(journal, cursor, 100_000, 64 * 1024 * 1024)
        if oldest is None and batch.lines:
            event = decode_line(batch.lines[0])
            assert event is not None
            oldest = _seconds(str(event["ts"]))
        events += len(batch.lines)
        size += batch.size
        if batch.end == cursor:
            return events, size, oldest
        cursor = batch.end


def _seconds(stamp: str) -> float:
    return calendar.timegm(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")) + float(
        "0" + stamp[19:-1]
    )
