# -*- test-case-name: tests.test_journal -*-
"""
The journal on disk: numbered segment files of self-checking JSON lines, appended only.

Plain blocking file operations, no Twisted: L{linkrouter.journalservice} runs them off the
reactor thread. Directory 0700, files 0600. A failed or short write is cut back to the last
line boundary, so the file only ever holds whole lines plus, after a crash, one torn tail
that L{SegmentJournal.open} removes.
"""

from __future__ import annotations

import calendar
import os
import re
import stat
import time
from collections.abc import Callable, Iterator

from twisted.python.filepath import FilePath

from .durable import fsync_directory
from .event import decode_line

__all__ = ["JournalError", "SegmentJournal", "segment_name", "segments"]

_SEGMENT = re.compile(r"([0-9]{8})\.jsonl")
_TAIL_SCAN = 256 * 1024  # far more than the longest line (a capped User-Agent and fields)


class JournalError(OSError):
    """
    The journal directory cannot be used; the message says why and how to fix it.
    """


def segment_name(number: int) -> str:
    """
    The file name of segment C{number}: 8 digits, so names sort in order.
    """
    return f"{number:08d}.jsonl"


def segments(directory: FilePath[str]) -> list[tuple[int, FilePath[str]]]:
    """
    Every segment in C{directory}, oldest first.
    """
    found = []
    for name in directory.listdir():
        match = _SEGMENT.fullmatch(name)
        if match:
            found.append((int(match.group(1)), directory.child(name)))
    return sorted(found)


def _last_good_line(data: bytes) -> tuple[int, int | None]:
    """
    In the tail C{data} of a segment: the length of its prefix that ends with the last good
    line, and that line's sequence number (C{None} if no good line is in C{data}).
    """
    end = len(data)
    while end > 0:
        newline = data.rfind(b"\n", 0, end)
        if newline == -1:
            return 0, None
        if end == len(data) and newline != end - 1:
            end = newline + 1  # an unterminated tail: cut it
            continue
        start = data.rfind(b"\n", 0, newline) + 1
        event = decode_line(data[start:newline])
        if event is not None:
            return newline + 1, int(event["seq"])
        end = start  # a torn or corrupt last line: cut it and look at the one before
    return 0, None


class SegmentJournal:
    """
    Appends batches of lines to the newest segment, rolling to a new one by size and age.

    @param clock: seconds since the epoch, for segment age.
    """

    def __init__(
        self,
        directory: FilePath[str],
        segment_bytes: int = 64 * 1024 * 1024,
        segment_seconds: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = directory
        self._segment_bytes = segment_bytes
        self._segment_seconds = segment_seconds
        self._clock = clock
        self._fd: int | None = None
        self._number = 0
        self._size = 0
        self._opened_at = 0.0
        self._torn = False  # a partial write is still in the file, past _size
        self.bytes_written = 0

    def open(self) -> int:
        """
        Make or check the directory, cut a torn tail off the newest segment, and return the
        sequence number the next event gets.

        @raise JournalError: the directory is not usable (wrong owner permissions, not a
            directory, not writable).
        """
        self.check()
        next_sequence = 1
        existing = segments(self.directory)
        for _, path in reversed(existing):
            last = self._recover(path)
            if last is not None:
                next_sequence = last + 1
                break
        self._number = existing[-1][0] if existing else 0
        self._open_segment(self._number if existing else 1)
        return next_sequence

    def check(self) -> None:
        """
        Make the directory (0700) if it is missing, and check that it is usable.

        @raise JournalError: it is not a directory, is open to others, or not writable.
        """
        path = self.directory
        if not path.exists():
            os.makedirs(path.path, mode=0o700, exist_ok=True)
        if not path.isdir():
            raise JournalError(f"journal {path.path} is not a directory")
        mode = stat.S_IMODE(os.stat(path.path).st_mode)
        if mode & 0o077:
            raise JournalError(
                f"journal directory {path.path} has mode {mode:04o}: group or others may read "
                f"clicks; run 'chmod 700 {path.path}'"
            )
        if not os.access(path.path, os.W_OK | os.X_OK):
            raise JournalError(f"journal directory {path.path} is not writable")

    def _recover(self, path: FilePath[str]) -> int | None:
        """
        Cut the torn or corrupt tail of segment C{path}; its last good sequence number.
        """
        with open(path.path, "r+b") as file:
            size = file.seek(0, os.SEEK_END)
            start = max(0, size - _TAIL_SCAN)
            file.seek(start)
            keep, last = _last_good_line(file.read())
            if start > 0 and last is None:
                keep = size  # no good line in the scanned tail: leave it to 'journal verify'
            if start + keep < size:
                file.truncate(start + keep)
                file.flush()
                os.fsync(file.fileno())
        return last

    def _open_segment(self, number: int) -> None:
        path = self.directory.child(segment_name(number))
        created = not path.exists()
        fd = os.open(
            path.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600
        )
        self._fd, self._number = fd, number
        self._size = os.fstat(fd).st_size
        self._opened_at = self._first_event_time(path) if self._size else self._clock()
        if created:
            fsync_directory(self.directory)

    def _first_event_time(self, path: FilePath[str]) -> float:
        """
        When segment C{path} was started: its first event's time, so a segment's age
        survives restarts (falling back to now if the first line is unreadable).
        """
        with open(path.path, "rb") as file:
            event = decode_line(file.readline(_TAIL_SCAN))
        try:
            stamp = str(event["ts"]) if event else ""
            return calendar.timegm(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S"))
        except ValueError:
            return self._clock()

    def append(self, data: bytes) -> None:
        """
        Write C{data} (whole lines) at the end of the journal with as few writes as it takes.

        @raise OSError: the write failed (a full disk, an I/O error); the segment was cut
            back to where it was, so it holds only whole lines.
        """
        assert self._fd is not None, "open() the journal first"
        if self._size and (
            self._size + len(data) > self._segment_bytes
            or self._clock() - self._opened_at >= self._segment_seconds
        ):
            self.roll()
        fd = self._fd
        assert fd is not None
        if self._torn:
            os.ftruncate(fd, self._size)  # an earlier cut failed: retry it before writing
            self._torn = False
        view = memoryview(data)
        written = 0
        try:
            while written < len(data):
                written += os.write(fd, view[written:])
        except OSError:
            self._torn = True
            os.ftruncate(fd, self._size)
            self._torn = False
            raise
        self._size += written
        self.bytes_written += written

    def roll(self) -> None:
        """
        Close the current segment, durably, and start the next one.
        """
        assert self._fd is not None
        if self._torn:
            os.ftruncate(self._fd, self._size)
            self._torn = False
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = None
        self._open_segment(self._number + 1)

    def sync(self) -> None:
        """
        Make everything appended so far durable.
        """
        if self._fd is not None:
            os.fsync(self._fd)

    def close(self) -> None:
        """
        Sync and close the current segment.
        """
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    @property
    def current_segment(self) -> FilePath[str]:
        """
        The segment being appended to.
        """
        return self.directory.child(segment_name(self._number))


def read_lines(path: FilePath[str]) -> Iterator[tuple[int, bytes]]:
    """
    Every line of segment C{path} with its byte offset, the last one possibly unterminated.
    """
    offset = 0
    with open(path.path, "rb") as file:
        for line in file:
            yield offset, line
            offset += len(line)
