"""
Tests for L{linkrouter.reader}: batches of whole, checksum-valid journal lines from a cursor,
across segments, holding back the live tail and skipping corrupt lines; and the backlog.
"""

from __future__ import annotations

import functools
import tempfile
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from linkrouter.codec import Kind, Part, TrackedLink
from linkrouter.cursor import Cursor, oldest_cursor
from linkrouter.event import Hit, IPStorage, decode_line, encode_hits
from linkrouter.journal import SegmentJournal, segment_name, segments
from linkrouter.reader import Batch, backlog, read_batch

LINK = TrackedLink(Kind.CLICK, Part.HTML, "https://dest.example/", "k1", "L1", 1_700_000_000)
T0 = 1_700_000_000.0


@functools.cache
def line(sequence: int, when: float | None = None, agent: bytes = b"") -> bytes:
    """
    The journal line of event C{sequence} (the same one each time: event ids are random).
    """
    hit = Hit(
        T0 + sequence if when is None else when,
        LINK,
        b"GET",
        "192.0.2.1",
        agent or b"agent %d" % sequence,
    )
    return encode_hits([hit], "r1", sequence, IPStorage.FULL)[0]


def corrupted(good: bytes) -> bytes:
    """
    C{good} with one byte changed in its middle: still one line, no longer valid.
    """
    data = bytearray(good)
    data[len(data) // 2] ^= 0x01
    assert decode_line(bytes(data)) is None and bytes(data).count(b"\n") == 1
    return bytes(data)


def write_journal(directory: FilePath[str], count: int, segment_bytes: int = 1000) -> None:
    """
    A real journal of C{count} events, about three to a segment with the default size.
    """
    journal = SegmentJournal(directory, segment_bytes=segment_bytes, clock=lambda: T0)
    sequence = journal.open()
    for number in range(count):
        data, sequence = encode_hits(
            [Hit(T0 + number, LINK, b"GET", "192.0.2.1", b"agent %d" % number)],
            "r1",
            sequence,
            IPStorage.FULL,
        )
        journal.append(data)
    journal.close()


def all_lines(directory: FilePath[str]) -> list[bytes]:
    return [item for _, path in segments(directory) for item in path.getContent().splitlines(True)]


def read_all(
    directory: FilePath[str], start: Cursor, max_events: int, max_bytes: int
) -> tuple[list[Batch], Cursor]:
    """
    Every batch from C{start} until the reader stops moving; and where it stopped.
    """
    batches = []
    cursor = start
    for _ in range(10_000):
        batch = read_batch(directory, cursor, max_events, max_bytes)
        batches.append(batch)
        if batch.end == cursor:
            return batches, cursor
        cursor = batch.end
    raise AssertionError("the reader never stopped")


class BatchLimitTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = FilePath(self.mktemp())
        write_journal(self.directory, 20)
        self.lines = all_lines(self.directory)
        self.assertEqual(len(self.lines), 20)
        self.assertGreater(len(segments(self.directory)), 4)
        self.start = oldest_cursor(self.directory)

    def test_maxEvents(self) -> None:
        """
        No more than C{max_events} lines come back, the first ones, in order, and the end
        cursor is just after the last of them with the next sequence number.
        """
        batch = read_batch(self.directory, self.start, 4, 1 << 20)
        self.assertEqual(list(batch.lines), self.lines[:4])
        self.assertEqual(batch.start, self.start)
        self.assertEqual(batch.end.sequence, 5)
        self.assertEqual(batch.corrupt, ())
        rest = read_batch(self.directory, batch.end, 100, 1 << 20)
        self.assertEqual(list(rest.lines), self.lines[4:])

    def test_maxBytes(self) -> None:
        """
        The batch stays within C{max_bytes}: lines that would go over it wait for the next.
        """
        limit = len(self.lines[0]) * 5 // 2
        batch = read_batch(self.directory, self.start, 100, limit)
        self.assertEqual(list(batch.lines), self.lines[:2])
        self.assertLessEqual(batch.size, limit)
        self.assertEqual(batch.size, len(self.lines[0]) + len(self.lines[1]))

    def test_maxBytesExact(self) -> None:
        """
        A budget of exactly three lines takes exactly three.
        """
        limit = sum(map(len, self.lines[:3]))
        batch = read_batch(self.directory, self.start, 100, limit)
        self.assertEqual(list(batch.lines), self.lines[:3])

    def test_atLeastOneLine(self) -> None:
        """
        A line longer than the whole byte budget still goes, alone: sync never stalls on it.
        """
        batch = read_batch(self.directory, self.start, 100, 1)
        self.assertEqual(list(batch.lines), self.lines[:1])
        batch = read_batch(self.directory, self.start, 1, 1 << 20)
        self.assertEqual(list(batch.lines), self.lines[:1])

    def test_crossesSegments(self) -> None:
        """
        A batch continues into the next segments when one is exhausted, ending in a later
        segment than it started.
        """
        batch = read_batch(self.directory, self.start, 10, 1 << 20)
        self.assertEqual(list(batch.lines), self.lines[:10])
        self.assertGreater(batch.end.segment, batch.start.segment + 1)
        self.assertEqual(batch.end.sequence, 11)

    def test_everything(self) -> None:
        """
        A large enough batch reads the whole journal and ends at the end of the newest
        segment; from there the next batch is empty and does not move.
        """
        batch = read_batch(self.directory, self.start, 1000, 1 << 20)
        self.assertEqual(list(batch.lines), self.lines)
        number, newest = segments(self.directory)[-1]
        self.assertEqual(batch.end, Cursor(number, newest.getsize(), 21))
        again = read_batch(self.directory, batch.end, 1000, 1 << 20)
        self.assertEqual((again.lines, again.end, again.corrupt), ((), batch.end, ()))

    def test_fromTheMiddleOfASegment(self) -> None:
        """
        Reading from a cursor inside a segment starts at that line.
        """
        middle = read_batch(self.directory, self.start, 7, 1 << 20).end
        self.assertNotEqual(middle.offset, 0)
        batch = read_batch(self.directory, middle, 3, 1 << 20)
        self.assertEqual(list(batch.lines), self.lines[7:10])

    def test_endOfOlderSegment(self) -> None:
        """
        A cursor at the very end of an older segment moves on into the next one.
        """
        number, first = segments(self.directory)[0]
        count = len(first.getContent().splitlines())
        at_end = Cursor(number, first.getsize(), count + 1)
        batch = read_batch(self.directory, at_end, 2, 1 << 20)
        self.assertEqual(list(batch.lines), self.lines[count : count + 2])
        self.assertEqual(batch.end.segment, segments(self.directory)[1][0])

    def test_emptyNewestSegment(self) -> None:
        """
        An empty newest segment (just rolled) is read through to its start, not stuck on.
        """
        number, _ = segments(self.directory)[-1]
        self.directory.child(segment_name(number + 1)).touch()
        batch = read_batch(self.directory, self.start, 1000, 1 << 20)
        self.assertEqual(list(batch.lines), self.lines)
        self.assertEqual(batch.end, Cursor(number + 1, 0, 21))


class TailAndCorruptionTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = FilePath(self.mktemp())
        self.directory.makedirs()

    def segment(self, number: int, *parts: bytes) -> FilePath[str]:
        path = self.directory.child(segment_name(number))
        path.setContent(b"".join(parts))
        return path

    def test_liveTailHeldBack(self) -> None:
        """
        An unterminated last line of the newest segment (the writer is in the middle of it)
        is not read, not reported, and the cursor stays before it; once the writer ends
        the line it is read.
        """
        one, two, three = line(1), line(2), line(3)
        path = self.segment(1, one, two, three[:50])
        batch = read_batch(self.directory, Cursor(1, 0, 1), 100, 1 << 20)
        self.assertEqual(batch.lines, (one, two))
        self.assertEqual(batch.end, Cursor(1, len(one + two), 3))
        self.assertEqual(batch.corrupt, ())
        again = read_batch(self.directory, batch.end, 100, 1 << 20)
        self.assertEqual((again.lines, again.end, again.corrupt), ((), batch.end, ()))
        path.setContent(one + two + three)
        done = read_batch(self.directory, batch.end, 100, 1 << 20)
        self.assertEqual(done.lines, (three,))
        self.assertEqual(done.end, Cursor(1, len(one + two + three), 4))

    def test_liveTailWithoutNewlineThatIsValid(self) -> None:
        """
        Even a complete, valid event without its newline is held back while its segment
        is the newest: the newline is what says the write finished.
        """
        self.segment(1, line(1), line(2).rstrip(b"\n"))
        batch = read_batch(self.directory, Cursor(1, 0, 1), 100, 1 << 20)
        self.assertEqual(batch.lines, (line(1),))
        self.assertEqual(batch.corrupt, ())

    def test_corruptLineInTheMiddle(self) -> None:
        """
        A corrupt line between good ones is skipped and reported by segment and offset;
        the lines after it are read.
        """
        one, bad, three = line(1), corrupted(line(2)), line(3)
        self.segment(1, one, bad, three)
        batch = read_batch(self.directory, Cursor(1, 0, 1), 100, 1 << 20)
        self.assertEqual(batch.lines, (one, three))
        self.assertEqual(batch.corrupt, (f"{segment_name(1)}:{len(one)}",))
        self.assertEqual(batch.end, Cursor(1, len(one + bad + three), 4))

    def test_corruptLinesKinds(self) -> None:
        """
        Blank lines, plain JSON without a checksum and binary junk are all corrupt lines.
        """
        junk = [b"\n", b'{"seq": 2}\n', b"\x00\xff\x00\n", b"not json at all\n"]
        self.segment(1, line(1), *junk, line(2))
        batch = read_batch(self.directory, Cursor(1, 0, 1), 100, 1 << 20)
        self.assertEqual(batch.lines, (line(1), line(2)))
        self.assertEqual(len(batch.corrupt), len(junk))

    def test_tornTailOfOlderSegment(self) -> None:
        """
        An older segment ending in a torn line (no newline) is not the live one: its tail
        is skipped and reported, and reading goes on into the next segment.
        """
        one, two, three = line(1), line(2), line(3)
        self.segment(1, one, two[:40])
        self.segment(2, three)
        batch = read_batch(self.directory, Cursor(1, 0, 1), 100, 1 << 20)
        self.assertEqual(batch.lines, (one, three))
        self.assertEqual(batch.corrupt, (f"{segment_name(1)}:{len(one)}",))
        self.assertEqual(batch.end, Cursor(2, len(three), 4))

    def test_onlyCorruptLinesMoveTheCursor(self) -> None:
        """
        With no good event to read, the end cursor still moves past the corrupt lines
        (sequence unchanged) so they are not read again.
        """
        one = line(1)
        bad = corrupted(line(2)) + corrupted(line(3))
        self.segment(1, one, bad)
        start = Cursor(1, len(one), 2)
        batch = read_batch(self.directory, start, 100, 1 << 20)
        self.assertEqual(batch.lines, ())
        self.assertEqual(len(batch.corrupt), 2)
        self.assertEqual(batch.end, Cursor(1, len(one + bad), 2))
        again = read_batch(self.directory, batch.end, 100, 1 << 20)
        self.assertEqual((again.lines, again.end, again.corrupt), ((), batch.end, ()))

    def test_onlyTornTailIntoNextSegment(self) -> None:
        """
        A cursor before the torn tail of an older segment moves into the next segment even
        when that one holds nothing yet.
        """
        one = line(1)
        self.segment(1, one, b'{"v":1,"se')
        self.segment(2)
        batch = read_batch(self.directory, Cursor(1, len(one), 2), 100, 1 << 20)
        self.assertEqual(batch.lines, ())
        self.assertEqual(batch.end, Cursor(2, 0, 2))
        self.assertEqual(len(batch.corrupt), 1)

    def test_hugeGarbageWithoutNewline(self) -> None:
        """
        More than a read's worth of bytes without a newline in an older segment is skipped
        as garbage; the reader neither loops forever nor loses the next segment.
        """
        self.segment(1, line(1), b"x" * 300_000, b"\n", line(2))
        self.segment(2, line(3))
        batches, end = read_all(self.directory, Cursor(1, 0, 1), 100, 1000)
        read = [item for batch in batches for item in batch.lines]
        self.assertEqual(read, [line(1), line(2), line(3)])
        self.assertTrue(any(batch.corrupt for batch in batches))
        self.assertEqual(end, Cursor(2, len(line(3)), 4))

    def test_corruptLinesDoNotCountAgainstLimits(self) -> None:
        """
        Skipped lines do not use up the event budget: a batch of two after a corrupt line
        holds two good events.
        """
        self.segment(1, corrupted(line(1)), line(2), corrupted(line(3)), line(4), line(5))
        batch = read_batch(self.directory, Cursor(1, 0, 1), 2, 1 << 20)
        self.assertEqual(batch.lines, (line(2), line(4)))
        self.assertEqual(len(batch.corrupt), 2)


class BacklogTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = FilePath(self.mktemp())
        write_journal(self.directory, 20)
        self.lines = all_lines(self.directory)

    def test_everything(self) -> None:
        """
        From the oldest cursor the backlog is every event, every byte, and the first
        event's time.
        """
        events, size, oldest = backlog(self.directory, oldest_cursor(self.directory))
        self.assertEqual(events, 20)
        self.assertEqual(size, sum(map(len, self.lines)))
        self.assertEqual(oldest, T0)

    def test_fromTheMiddle(self) -> None:
        """
        From a later cursor only the rest counts, and the oldest time is that of the first
        event not yet synced.
        """
        cursor = read_batch(self.directory, oldest_cursor(self.directory), 7, 1 << 20).end
        events, size, oldest = backlog(self.directory, cursor)
        self.assertEqual(events, 13)
        self.assertEqual(size, sum(map(len, self.lines[7:])))
        self.assertEqual(oldest, T0 + 7)

    def test_nothingWaiting(self) -> None:
        """
        At the end of the journal nothing waits: zero, zero and no time.
        """
        end = read_batch(self.directory, oldest_cursor(self.directory), 100, 1 << 20).end
        self.assertEqual(backlog(self.directory, end), (0, 0, None))

    def test_milliseconds(self) -> None:
        """
        The oldest time keeps the event's milliseconds.
        """
        directory = FilePath(self.mktemp())
        directory.makedirs()
        directory.child(segment_name(1)).setContent(line(1, when=T0 + 0.25))
        self.assertEqual(backlog(directory, Cursor(1, 0, 1)), (1, len(line(1)), T0 + 0.25))

    def test_skipsCorrupt(self) -> None:
        """
        Corrupt lines and the live tail are not counted.
        """
        directory = FilePath(self.mktemp())
        directory.makedirs()
        directory.child(segment_name(1)).setContent(corrupted(line(1)) + line(2) + line(3)[:30])
        self.assertEqual(backlog(directory, Cursor(1, 0, 1)), (1, len(line(2)), T0 + 2))


@dataclass
class Layout:
    """
    A journal laid out on disk, and what a reader should find in it.
    """

    first: int
    files: dict[int, bytes]
    good: list[tuple[int, int, bytes]]  # segment, offset, line
    corrupt: int  # lines and torn tails a full read must report
    starts: list[Cursor]  # every line start, as a cursor a reader may begin at
    end: Cursor


# what each segment holds: a list of kinds of lines, and how it ends
segment_strategy = st.tuples(
    st.lists(st.sampled_from(["good", "good", "good", "corrupt"]), max_size=8),
    st.booleans(),  # ends in a torn or unterminated line
)


def lay_out(
    directory: FilePath[str], first: int, gaps: list[int], specs: list[tuple[list[str], bool]]
) -> Layout:
    files: dict[int, bytes] = {}
    good: list[tuple[int, int, bytes]] = []
    starts: list[Cursor] = []
    corrupt = 0
    sequence = 1
    number = first
    for index, (kinds, torn) in enumerate(specs):
        newest = index == len(specs) - 1
        data = b""
        for kind in kinds:
            made = line(sequence)
            starts.append(Cursor(number, len(data), sequence))
            if kind == "good":
                good.append((number, len(data), made))
                sequence += 1
            else:
                made = corrupted(made)
                corrupt += 1
            data += made
        tail = b""
        if torn:
            tail = line(sequence)[: 10 + sequence % 50]
            if not newest:
                corrupt += 1
        end = Cursor(number, len(data), sequence)
        files[number] = data + tail
        directory.child(segment_name(number)).setContent(data + tail)
        if not newest:
            number += 1 + gaps[index % len(gaps)]
    return Layout(first, files, good, corrupt, starts, end)


class ReadEverythingProperty(SynchronousTestCase):
    @settings(max_examples=150, deadline=None)
    @given(
        first=st.integers(min_value=1, max_value=99_999_000),
        gaps=st.lists(st.integers(min_value=0, max_value=3), min_size=1, max_size=4),
        specs=st.lists(segment_strategy, min_size=1, max_size=6),
        max_events=st.integers(min_value=1, max_value=12),
        max_bytes=st.integers(min_value=1, max_value=4000),
        pick=st.integers(min_value=0),
    )
    def test_batchesConcatenateToAllValidLines(
        self,
        first: int,
        gaps: list[int],
        specs: list[tuple[list[str], bool]],
        max_events: int,
        max_bytes: int,
        pick: int,
    ) -> None:
        """
        For any journal (segments numbered from anywhere, with gaps, corrupt lines, torn
        tails of older segments and an unterminated live tail) and any batch limits:
        reading batch after batch from the oldest cursor, or from any line start, yields
        exactly the valid lines from there in order, every batch within its limits (or one
        line alone), every corrupt line reported once, and it stops before the live tail.
        """
        with tempfile.TemporaryDirectory() as name:
            directory = FilePath(name)
            layout = lay_out(directory, first, gaps, specs)
            batches, end = read_all(directory, oldest_cursor(directory), max_events, max_bytes)
            read = [item for batch in batches for item in batch.lines]
            self.assertEqual(read, [item for _, _, item in layout.good])
            self.assertEqual(end, layout.end)
            self.assertEqual(sum(len(batch.corrupt) for batch in batches), layout.corrupt)
            for batch in batches:
                self.assertLessEqual(len(batch.lines), max_events)
                if len(batch.lines) > 1:
                    self.assertLessEqual(batch.size, max_bytes)
                self.assertLessEqual(batch.start, batch.end)
            if layout.starts:
                start = layout.starts[pick % len(layout.starts)]
                batches, end = read_all(directory, start, max_events, max_bytes)
                read = [item for batch in batches for item in batch.lines]
                expected = [
                    item
                    for segment, offset, item in layout.good
                    if (segment, offset) >= (start.segment, start.offset)
                ]
                self.assertEqual(read, expected)
                self.assertEqual(end, layout.end)
