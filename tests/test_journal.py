"""
Tests for L{linkrouter.journal}: segment files of self-checking lines, their permissions,
rolling, and recovery of a torn tail after a crash.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from linkrouter import journal as journal_module
from linkrouter.codec import Kind, Part, TrackedLink
from linkrouter.event import Hit, IPStorage, decode_line, encode_hits
from linkrouter.journal import (
    JournalError,
    SegmentJournal,
    read_lines,
    segment_name,
    segments,
)

LINK = TrackedLink(Kind.CLICK, Part.HTML, "https://dest.example/x", "kA", "link1", 1_700_000_000)


def encoded(first: int, count: int, user_agent: bytes = b"Mozilla/5.0 (test)") -> bytes:
    """
    C{count} good journal lines numbered from C{first}.
    """
    hits = [
        Hit(1_700_000_000.0 + n, LINK, b"GET", "192.0.2.1", user_agent + b" %d" % n)
        for n in range(count)
    ]
    data, next_sequence = encode_hits(hits, "router-1", first, IPStorage.FULL)
    assert next_sequence == first + count
    return data


def line_ends(data: bytes) -> list[int]:
    """
    The offset just past each line of C{data}.
    """
    ends, end = [], 0
    for line in data.splitlines(keepends=True):
        end += len(line)
        ends.append(end)
    return ends


def mode_of(path: FilePath[str]) -> int:
    return stat.S_IMODE(os.stat(path.path).st_mode)


class FakeTime:
    """
    Seconds since the epoch, moved by hand.
    """

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class JournalTestCase(SynchronousTestCase):
    def make_directory(self) -> FilePath[str]:
        """
        A fresh journal directory, mode 0700.
        """
        directory = FilePath(self.mktemp())
        directory.makedirs()
        os.chmod(directory.path, 0o700)
        return directory

    def open_journal(
        self,
        directory: FilePath[str],
        segment_bytes: int = 64 * 1024 * 1024,
        segment_seconds: float = 3600.0,
        clock: Callable[[], float] | None = None,
    ) -> tuple[SegmentJournal, int]:
        """
        An open journal on C{directory}, closed at cleanup, and its next sequence number.
        Its clock stands, by default, a little after the time the test events carry.
        """
        clock = clock or FakeTime(1_700_000_010.0)
        journal = SegmentJournal(directory, segment_bytes, segment_seconds, clock)
        next_sequence = journal.open()
        self.addCleanup(journal.close)
        return journal, next_sequence

    def assertWholeGoodLines(self, path: FilePath[str]) -> list[int]:
        """
        C{path} ends at a line boundary and every line of it decodes; its sequence numbers.
        """
        content = path.getContent()
        self.assertTrue(content == b"" or content.endswith(b"\n"), content[-80:])
        numbers = []
        for offset, line in read_lines(path):
            event = decode_line(line)
            self.assertIsNotNone(event, (offset, line))
            assert event is not None
            numbers.append(event["seq"])
        return numbers


class PermissionTests(JournalTestCase):
    """
    The journal lives in a 0700 directory of 0600 files, whatever the umask.
    """

    def setUp(self) -> None:
        self.addCleanup(os.umask, os.umask(0))

    def test_createdPrivate(self) -> None:
        """
        A missing directory is made with mode 0700, and every segment, the first and rolled
        ones, with mode 0600, even with a umask of 0.
        """
        directory = FilePath(self.mktemp()).child("journal")
        journal, _ = self.open_journal(directory, segment_bytes=1)
        self.assertEqual(mode_of(directory), 0o700)
        journal.append(encoded(1, 1))
        journal.append(encoded(2, 1))
        names = [path.basename() for _, path in segments(directory)]
        self.assertEqual(names, ["00000001.jsonl", "00000002.jsonl"])
        for _, path in segments(directory):
            self.assertEqual(mode_of(path), 0o600)

    def test_openDirectoryRefused(self) -> None:
        """
        An existing directory that group or others may enter or read is refused with a
        L{JournalError} that names it and says to run C{chmod 700}; nothing is created.
        """
        for mode in [0o755, 0o750, 0o705, 0o701]:
            directory = FilePath(self.mktemp())
            directory.makedirs()
            os.chmod(directory.path, mode)
            error = self.assertRaises(JournalError, SegmentJournal(directory).open)
            self.assertIn(f"chmod 700 {directory.path}", str(error))
            self.assertEqual(directory.listdir(), [])

    def test_notADirectory(self) -> None:
        """
        A file where the directory should be is refused with a L{JournalError}.
        """
        path = FilePath(self.mktemp())
        path.setContent(b"")
        error = self.assertRaises(JournalError, SegmentJournal(path).open)
        self.assertIn("not a directory", str(error))


class OpenTests(JournalTestCase):
    """
    L{SegmentJournal.open} says which sequence number comes next.
    """

    def test_emptyDirectory(self) -> None:
        """
        An empty directory starts at sequence 1 in segment 1.
        """
        directory = self.make_directory()
        journal, next_sequence = self.open_journal(directory)
        self.assertEqual(next_sequence, 1)
        self.assertEqual(journal.current_segment, directory.child("00000001.jsonl"))
        self.assertEqual(directory.child("00000001.jsonl").getContent(), b"")

    def test_reopenContinues(self) -> None:
        """
        After appends and a close, reopening returns the last sequence number plus one and
        appends after the existing lines.
        """
        directory = self.make_directory()
        journal, _ = self.open_journal(directory)
        journal.append(encoded(1, 3))
        journal.append(encoded(4, 2))
        self.assertEqual(journal.bytes_written, len(encoded(1, 5)))
        journal.close()
        journal, next_sequence = self.open_journal(directory)
        self.assertEqual(next_sequence, 6)
        journal.append(encoded(6, 1))
        journal.close()
        self.assertEqual(
            self.assertWholeGoodLines(directory.child("00000001.jsonl")), [1, 2, 3, 4, 5, 6]
        )

    def test_newestSegmentEmpty(self) -> None:
        """
        When the newest segment is empty (a roll just happened), the sequence continues from
        the last line of the segment before, and appends go to the newest segment.
        """
        directory = self.make_directory()
        first = encoded(1, 3)
        directory.child(segment_name(1)).setContent(first)
        directory.child(segment_name(2)).setContent(b"")
        journal, next_sequence = self.open_journal(directory)
        self.assertEqual(next_sequence, 4)
        journal.append(encoded(4, 1))
        journal.close()
        self.assertEqual(self.assertWholeGoodLines(directory.child(segment_name(2))), [4])
        self.assertEqual(directory.child(segment_name(1)).getContent(), first)

    def test_newestSegmentOnlyTorn(self) -> None:
        """
        A newest segment that holds only a torn line is emptied, and the sequence continues
        from the segment before.
        """
        directory = self.make_directory()
        first = encoded(1, 3)
        directory.child(segment_name(1)).setContent(first)
        directory.child(segment_name(2)).setContent(encoded(4, 1)[:-7])
        _, next_sequence = self.open_journal(directory)
        self.assertEqual(next_sequence, 4)
        self.assertEqual(directory.child(segment_name(2)).getContent(), b"")
        self.assertEqual(directory.child(segment_name(1)).getContent(), first)


class RollTests(JournalTestCase):
    """
    Segments roll over by size and by age into consecutively numbered files.
    """

    def all_sequences(self, directory: FilePath[str]) -> list[list[int]]:
        return [self.assertWholeGoodLines(path) for _, path in segments(directory)]

    def test_bySize(self) -> None:
        """
        A batch that would take a segment past its size goes whole into the next segment
        (even a batch larger than a segment: lines are never split); a batch that exactly
        fills a segment stays in it; sequence numbers continue across segments and after a
        reopen.
        """
        directory = self.make_directory()
        size = len(encoded(1, 3))
        journal, _ = self.open_journal(directory, segment_bytes=size)
        for sequence in range(1, 8):
            journal.append(encoded(sequence, 1))
        journal.append(encoded(8, 2))
        journal.append(encoded(10, 4))
        journal.append(encoded(14, 1))
        journal.close()
        self.assertEqual(
            [path.basename() for _, path in segments(directory)],
            [segment_name(n) for n in range(1, 6)],
        )
        self.assertEqual(
            self.all_sequences(directory),
            [[1, 2, 3], [4, 5, 6], [7, 8, 9], [10, 11, 12, 13], [14]],
        )
        journal, next_sequence = self.open_journal(directory, segment_bytes=size)
        self.assertEqual(next_sequence, 15)
        self.assertEqual(journal.current_segment.basename(), "00000005.jsonl")

    def test_byAge(self) -> None:
        """
        A segment older than C{segment_seconds} (by the injected clock) is rolled at the next
        append; a younger one is not.
        """
        directory = self.make_directory()
        clock = FakeTime()
        journal, _ = self.open_journal(directory, segment_seconds=60.0, clock=clock)
        journal.append(encoded(1, 1))
        clock.now += 59.9
        journal.append(encoded(2, 1))
        clock.now += 0.1
        journal.append(encoded(3, 1))
        clock.now += 59.0
        journal.append(encoded(4, 1))
        clock.now += 1.0
        journal.append(encoded(5, 1))
        self.assertEqual(journal.current_segment.basename(), "00000003.jsonl")
        journal.close()
        self.assertEqual(self.all_sequences(directory), [[1, 2], [3, 4], [5]])

    def test_ageSurvivesRestart(self) -> None:
        """
        A segment's age is counted from its first event, not from when the router last
        opened it: a router restarted more often than C{segment_seconds} still rolls.
        """
        directory = self.make_directory()
        clock = FakeTime(1_700_000_000.0)
        journal, _ = self.open_journal(directory, segment_seconds=60.0, clock=clock)
        journal.append(encoded(1, 1))
        journal.close()
        clock.now += 59.0
        journal, _ = self.open_journal(directory, segment_seconds=60.0, clock=clock)
        journal.append(encoded(2, 1))
        journal.close()
        clock.now += 1.0
        journal, _ = self.open_journal(directory, segment_seconds=60.0, clock=clock)
        journal.append(encoded(3, 1))
        journal.close()
        self.assertEqual(self.all_sequences(directory), [[1, 2], [3]])

    def test_rollIsExplicitToo(self) -> None:
        """
        L{SegmentJournal.roll} starts the next segment at once.
        """
        directory = self.make_directory()
        journal, _ = self.open_journal(directory)
        journal.append(encoded(1, 1))
        journal.roll()
        journal.append(encoded(2, 1))
        journal.close()
        self.assertEqual(self.all_sequences(directory), [[1], [2]])


class TornTailTests(JournalTestCase):
    """
    On open, a torn or corrupt tail of the newest segment is cut off at a line boundary.
    """

    def recover(self, directory: FilePath[str], content: bytes) -> tuple[bytes, int]:
        """
        Make C{content} the only segment of C{directory}, open and close the journal: what
        the segment then holds, and the next sequence number.
        """
        segment = directory.child(segment_name(1))
        with open(segment.path, "wb") as file:
            file.write(content)
        journal = SegmentJournal(directory)
        next_sequence = journal.open()
        journal.close()
        return segment.getContent(), next_sequence

    def assertRecovered(
        self, directory: FilePath[str], good: bytes, damaged: bytes, keep: int
    ) -> None:
        """
        Recovering C{damaged} leaves exactly the first C{keep} bytes of C{good} (a line
        boundary), all good lines, and continues after the last of them.
        """
        content, next_sequence = self.recover(directory, damaged)
        self.assertEqual(content, good[:keep], (len(damaged), keep))
        numbers = self.assertWholeGoodLines(directory.child(segment_name(1)))
        self.assertEqual(numbers, list(range(1, len(numbers) + 1)))
        self.assertEqual(next_sequence, len(numbers) + 1, len(damaged))

    def test_everyCutInTheLastTwoLines(self) -> None:
        """
        Cut at every byte offset within the last two lines, a segment is recovered to the
        last whole line before the cut: nothing good is lost, and the sequence continues
        from the last surviving line.
        """
        directory = self.make_directory()
        good = encoded(1, 6, b"agent \xff\n\x00")
        ends = line_ends(good)
        for cut in range(ends[-3], len(good) + 1):
            keep = max(end for end in [0, *ends] if end <= cut)
            self.assertRecovered(directory, good, good[:cut], keep)

    def test_garbageAppended(self) -> None:
        """
        Garbage, NUL bytes (a crash after the size grew, before the data landed), or a
        spurious newline after the last good line are cut off.
        """
        directory = self.make_directory()
        good = encoded(1, 4)
        for tail in [
            b"garbage",
            b"garbage\n",
            b"\x00" * 4096,
            b"\x00" * 100 + b"\n",
            b"\n",
            b'{"v":1,"seq":99}\n',
            encoded(5, 1)[:-1] + b"x\n",
            b"\x00\n" * 3,
        ]:
            self.assertRecovered(directory, good, good + tail, len(good))

    def test_corruptLastLine(self) -> None:
        """
        A terminated last line whose checksum does not match is cut off, and so is a run of
        such lines; a corrupt line is never kept.
        """
        directory = self.make_directory()
        good = encoded(1, 5)
        ends = line_ends(good)
        for position in range(ends[-2], ends[-1] - 1):
            damaged = bytearray(good)
            damaged[position] ^= 0x01
            self.assertRecovered(directory, good, bytes(damaged), ends[-2])
        damaged = bytearray(good)
        damaged[ends[-3] + 10] ^= 0x04
        damaged[ends[-2] + 10] ^= 0x04
        self.assertRecovered(directory, good, bytes(damaged), ends[-3])

    def test_largeSegment(self) -> None:
        """
        A segment longer than the scanned tail (256 KiB) is recovered the same way.
        """
        directory = self.make_directory()
        good = encoded(1, 700, b"\xff" * 500)
        self.assertGreater(len(good), 300 * 1024)
        ends = line_ends(good)
        for cut in [ends[-1] - 1, ends[-2] + 1, ends[-2]]:
            keep = max(end for end in ends if end <= cut)
            self.assertRecovered(directory, good, good[:cut], keep)
        self.assertRecovered(directory, good, good + b"\x00" * 1000, len(good))

    def test_appendAfterRecovery(self) -> None:
        """
        Lines appended after a recovery follow the last good line directly.
        """
        directory = self.make_directory()
        good, more = encoded(1, 3), encoded(4, 2)
        segment = directory.child(segment_name(1))
        segment.setContent(good + encoded(4, 1)[:50])
        journal, next_sequence = self.open_journal(directory)
        self.assertEqual(next_sequence, 4)
        journal.append(more)
        journal.close()
        self.assertEqual(segment.getContent(), good + more)
        self.assertEqual(self.assertWholeGoodLines(segment), [1, 2, 3, 4, 5])


class FailedWriteTests(JournalTestCase):
    """
    A write that fails part-way is rolled back to the last line boundary.
    """

    def fail_after(self, written: int, first_call_short: bool) -> Callable[[int, bytes], int]:
        """
        An C{os.write} that writes C{written} bytes for real, then fails with C{ENOSPC}:
        either in the same call, or (C{first_call_short}) in the next call, as a full disk
        does after a short write.
        """
        real_write = os.write
        calls: list[int] = []

        def write(fd: int, data: bytes) -> int:
            calls.append(fd)
            if first_call_short and len(calls) == 1:
                return real_write(fd, bytes(data[:written]))
            if not first_call_short and len(calls) == 1:
                real_write(fd, bytes(data[:written]))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        return write

    def test_rolledBack(self) -> None:
        """
        After a failed or short write the error reaches the caller, the segment holds only
        its earlier whole lines, and a later append works and continues them.
        """
        for first_call_short in [False, True]:
            for written in [0, 1, 100, len(encoded(3, 2)) - 1]:
                directory = self.make_directory()
                journal, _ = self.open_journal(directory)
                good, more = encoded(1, 2), encoded(3, 2)
                journal.append(good)
                before = journal.bytes_written
                patched = self.patch(
                    journal_module.os, "write", self.fail_after(written, first_call_short)
                )
                error = self.assertRaises(OSError, journal.append, more)
                patched.restore()
                self.assertEqual(error.errno, errno.ENOSPC)
                self.assertEqual(journal.current_segment.getContent(), good)
                self.assertEqual(journal.bytes_written, before)
                journal.append(more)
                self.assertEqual(journal.current_segment.getContent(), good + more)
                journal.close()
                segment = directory.child(segment_name(1))
                self.assertEqual(self.assertWholeGoodLines(segment), [1, 2, 3, 4])
                _, next_sequence = self.open_journal(directory)
                self.assertEqual(next_sequence, 5)

    def test_rollbackFailsToo(self) -> None:
        """
        If the rollback of a failed write fails as well, the torn bytes are still removed
        before the next append: the segment never holds a torn line between good ones.
        """
        directory = self.make_directory()
        journal, _ = self.open_journal(directory)
        journal.append(encoded(1, 2))
        patched = [self.patch(journal_module.os, "write", self.fail_after(50, False))]

        def ftruncate(fd: int, length: int) -> None:
            raise OSError(errno.EIO, os.strerror(errno.EIO))

        patched.append(self.patch(journal_module.os, "ftruncate", ftruncate))
        self.assertRaises(OSError, journal.append, encoded(3, 2))
        for patch in patched:
            patch.restore()
        with contextlib.suppress(OSError):
            # refusing to append is acceptable; appending after a torn line is not
            journal.append(encoded(3, 2))
        journal.close()
        self.assertWholeGoodLines(directory.child(segment_name(1)))

    def test_rollbackFailsThenRoll(self) -> None:
        """
        If the rollback of a failed write fails and the next append rolls to a new segment
        (by age), the torn bytes are still cut off the old segment first: no segment is
        left holding a torn tail.
        """
        directory = self.make_directory()
        clock = FakeTime()
        journal, _ = self.open_journal(directory, segment_seconds=60.0, clock=clock)
        good, more = encoded(1, 2), encoded(3, 2)
        journal.append(good)
        patched = [self.patch(journal_module.os, "write", self.fail_after(50, False))]

        def ftruncate(fd: int, length: int) -> None:
            raise OSError(errno.EIO, os.strerror(errno.EIO))

        patched.append(self.patch(journal_module.os, "ftruncate", ftruncate))
        self.assertRaises(OSError, journal.append, more)
        for patch in patched:
            patch.restore()
        clock.now += 60
        with contextlib.suppress(OSError):
            journal.append(more)
        journal.close()
        self.assertEqual(directory.child(segment_name(1)).getContent(), good)
        for _, path in segments(directory):
            self.assertWholeGoodLines(path)


class ReadLinesTests(JournalTestCase):
    """
    L{read_lines} gives each line with its byte offset.
    """

    def test_offsets(self) -> None:
        """
        Each line comes with the offset it starts at in the file, the last one possibly
        unterminated.
        """
        directory = self.make_directory()
        segment = directory.child(segment_name(1))
        good = encoded(1, 3)
        segment.setContent(good + b"torn")
        result = list(read_lines(segment))
        ends = line_ends(good)
        self.assertEqual([offset for offset, _ in result], [0, *ends])
        self.assertEqual(result[-1][1], b"torn")
        with open(segment.path, "rb") as file:
            for offset, line in result:
                file.seek(offset)
                self.assertEqual(file.read(len(line)), line)

    def test_empty(self) -> None:
        """
        An empty segment has no lines.
        """
        directory = self.make_directory()
        segment = directory.child(segment_name(1))
        segment.setContent(b"")
        self.assertEqual(list(read_lines(segment)), [])


class NamingTests(SynchronousTestCase):
    """
    Segment names sort in order, and only segment names are segments.
    """

    def test_names(self) -> None:
        """
        Segment C{n} is named with 8 digits; L{segments} lists only such files, oldest first.
        """
        self.assertEqual(segment_name(1), "00000001.jsonl")
        self.assertEqual(segment_name(12345678), "12345678.jsonl")
        directory = FilePath(self.mktemp())
        directory.makedirs()
        for name in [
            "00000010.jsonl",
            "00000002.jsonl",
            "cursor",
            "00000003.jsonl.tmp",
            "1.jsonl",
        ]:
            directory.child(name).setContent(b"")
        self.assertEqual([number for number, _ in segments(directory)], [2, 10])
