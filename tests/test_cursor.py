"""
Tests for L{linkrouter.cursor}: the durable sync cursor, its previous copy, and how a damaged
cursor falls back — never forward.
"""

from __future__ import annotations

import json
import os
import stat

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from linkrouter.codec import Kind, Part, TrackedLink
from linkrouter.cursor import CURSOR_NAME, Cursor, load_cursor, oldest_cursor, save_cursor
from linkrouter.event import Hit, IPStorage, decode_line, encode_hits
from linkrouter.journal import SegmentJournal, segment_name, segments
from linkrouter.reader import read_batch

LINK = TrackedLink(Kind.CLICK, Part.HTML, "https://dest.example/", "k1", "L1", 1_700_000_000)
T0 = 1_700_000_000.0
PREVIOUS_NAME = "cursor.previous.json"
OLDEST_PROBLEM = "cursor damaged; sync starts again from the oldest segment"
PREVIOUS_PROBLEM = "cursor damaged; used the previous copy"


def write_journal(directory: FilePath[str], count: int, segment_bytes: int = 1500) -> None:
    """
    A real journal of C{count} events (numbered from 1) over several segments.
    """
    journal = SegmentJournal(directory, segment_bytes=segment_bytes, clock=lambda: T0)
    sequence = journal.open()
    for number in range(count):
        hit = Hit(T0 + number, LINK, b"GET", "192.0.2.1", b"agent %d" % number)
        data, sequence = encode_hits([hit], "r1", sequence, IPStorage.FULL)
        journal.append(data)
    journal.close()


def position(directory: FilePath[str], events: int) -> Cursor:
    """
    The cursor just after the first C{events} events, as sync would save it.
    """
    return read_batch(directory, oldest_cursor(directory), events, 1 << 22).end


def write_cursor(directory: FilePath[str], document: object, name: str = CURSOR_NAME) -> None:
    directory.child(name).setContent(json.dumps(document).encode())


def as_document(cursor: Cursor) -> dict[str, int]:
    return {"segment": cursor.segment, "offset": cursor.offset, "sequence": cursor.sequence}


class SaveLoadTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = FilePath(self.mktemp())
        write_journal(self.directory, 20)
        self.assertGreater(len(segments(self.directory)), 2)

    def test_roundTrip(self) -> None:
        """
        A saved cursor loads back exactly, with no problem reported.
        """
        cursor = position(self.directory, 7)
        save_cursor(self.directory, cursor)
        self.assertEqual(load_cursor(self.directory, self.directory), (cursor, None))

    def test_stateDirectoryMayDiffer(self) -> None:
        """
        The cursor may live in another directory than the journal it points into.
        """
        state = FilePath(self.mktemp())
        state.makedirs()
        cursor = position(self.directory, 4)
        save_cursor(state, cursor)
        self.assertEqual(load_cursor(state, self.directory), (cursor, None))
        self.assertFalse(self.directory.child(CURSOR_NAME).exists())

    def test_mode0600(self) -> None:
        """
        The cursor file and its previous copy are readable by the owner only, and no
        temporary file is left behind.
        """
        save_cursor(self.directory, position(self.directory, 1))
        save_cursor(self.directory, position(self.directory, 2))
        for name in [CURSOR_NAME, PREVIOUS_NAME]:
            mode = stat.S_IMODE(os.stat(self.directory.child(name).path).st_mode)
            self.assertEqual(mode, 0o600, name)
        self.assertFalse(self.directory.child(CURSOR_NAME + ".tmp").exists())

    def test_previousCopyKept(self) -> None:
        """
        Each save keeps the cursor it replaces as the previous copy.
        """
        first, second, third = (position(self.directory, n) for n in (3, 9, 15))
        save_cursor(self.directory, first)
        self.assertFalse(self.directory.child(PREVIOUS_NAME).exists())
        save_cursor(self.directory, second)
        previous = json.loads(self.directory.child(PREVIOUS_NAME).getContent())
        self.assertEqual(previous, as_document(first))
        save_cursor(self.directory, third)
        previous = json.loads(self.directory.child(PREVIOUS_NAME).getContent())
        self.assertEqual(previous, as_document(second))
        self.assertEqual(load_cursor(self.directory, self.directory), (third, None))

    def test_missingCursor(self) -> None:
        """
        With no cursor at all, sync starts at the start of the oldest segment, and that is
        no problem worth reporting.
        """
        self.assertEqual(load_cursor(self.directory, self.directory), (Cursor(1, 0, 1), None))

    def test_missingCursorOldestSegmentNotOne(self) -> None:
        """
        When retention has removed the first segments, "the oldest" is the lowest number
        left.
        """
        for _, path in segments(self.directory)[:2]:
            path.remove()
        oldest = segments(self.directory)[0][0]
        self.assertEqual(oldest, 3)
        self.assertEqual(load_cursor(self.directory, self.directory), (Cursor(oldest, 0, 1), None))

    def test_emptyJournal(self) -> None:
        """
        A journal directory with no segment yet gives the start of segment 1.
        """
        empty = FilePath(self.mktemp())
        empty.makedirs()
        self.assertEqual(load_cursor(empty, empty), (Cursor(1, 0, 1), None))

    def test_boundariesAreValid(self) -> None:
        """
        Offset 0 and the very end of a segment are valid places for a cursor whose sequence
        number is that of the event starting there (at a segment's end: the first event of
        the next segment, or anything at the end of the newest).
        """
        found = segments(self.directory)
        for index, (number, path) in enumerate(found):
            first = json.loads(path.getContent().split(b"\n")[0])["seq"]
            if index + 1 < len(found):
                following = json.loads(found[index + 1][1].getContent().split(b"\n")[0])["seq"]
            else:
                following = 12345
            for offset, sequence in [(0, first), (path.getsize(), following)]:
                cursor = Cursor(number, offset, sequence)
                save_cursor(self.directory, cursor)
                self.assertEqual(load_cursor(self.directory, self.directory), (cursor, None))

    def test_sequenceMustMatchTheLine(self) -> None:
        """
        A cursor at a line boundary whose sequence number is not the event's there is
        damaged, and falls back.
        """
        number, path = segments(self.directory)[0]
        first = json.loads(path.getContent().split(b"\n")[0])["seq"]
        save_cursor(self.directory, Cursor(number, 0, first + 1))
        cursor, problem = load_cursor(self.directory, self.directory)
        self.assertIsNotNone(problem)
        self.assertEqual(cursor.sequence, 1)


class DamagedCursorTests(SynchronousTestCase):
    """
    A damaged C{cursor.json} falls back to the previous copy if that is valid, else to the
    oldest segment; the result is never beyond the position the damaged cursor meant.
    """

    def setUp(self) -> None:
        self.directory = FilePath(self.mktemp())
        write_journal(self.directory, 20)
        self.previous = position(self.directory, 5)
        self.intended = position(self.directory, 11)
        self.assertNotEqual(self.intended.offset, 0)
        self.assertLess(self.previous, self.intended)

    def damages(self) -> list[tuple[str, bytes]]:
        intended = as_document(self.intended)
        size = self.directory.child(segment_name(self.intended.segment)).getsize()

        def changed(**fields: object) -> bytes:
            return json.dumps({**intended, **fields}).encode()

        return [
            ("zero bytes", b""),
            ("garbage", b"\x00\x17{not json"),
            ("truncated", json.dumps(intended).encode()[:-7]),
            ("not an object", b"[1, 2, 3]"),
            ("a string", b'"cursor"'),
            ("missing segment key", json.dumps({"offset": 0, "sequence": 1}).encode()),
            ("missing offset key", json.dumps({"segment": 1, "sequence": 1}).encode()),
            ("missing sequence key", json.dumps({"segment": 1, "offset": 0}).encode()),
            ("null offset", changed(offset=None)),
            ("text offset", changed(offset="far")),
            ("negative segment", changed(segment=-1)),
            ("negative offset", changed(offset=-10)),
            ("zero sequence", changed(sequence=0)),
            ("negative sequence", changed(sequence=-3)),
            ("missing segment", changed(segment=99)),
            ("offset past the end", changed(offset=size + 1)),
            ("offset far past the end", changed(offset=10**12)),
            ("offset inside a line", changed(offset=self.intended.offset + 1)),
            ("offset one short", changed(offset=self.intended.offset - 1)),
            ("invalid UTF-8", b'{"segment": 1\xff}'),
        ]

    def test_fallsBackToPrevious(self) -> None:
        """
        With a valid previous copy, every kind of damage gives back that copy (which is
        behind the damaged cursor's position), reporting the fallback.
        """
        save_cursor(self.directory, self.previous)
        save_cursor(self.directory, self.intended)
        for name, content in self.damages():
            self.directory.child(CURSOR_NAME).setContent(content)
            cursor, problem = load_cursor(self.directory, self.directory)
            self.assertEqual(cursor, self.previous, name)
            self.assertEqual(problem, PREVIOUS_PROBLEM, name)
            self.assertLessEqual(cursor, self.intended, name)

    def test_fallsBackToOldest(self) -> None:
        """
        With no previous copy, every kind of damage gives the start of the oldest
        segment, reporting it.
        """
        save_cursor(self.directory, self.intended)
        self.assertFalse(self.directory.child(PREVIOUS_NAME).exists())
        for name, content in self.damages():
            self.directory.child(CURSOR_NAME).setContent(content)
            cursor, problem = load_cursor(self.directory, self.directory)
            self.assertEqual(cursor, Cursor(1, 0, 1), name)
            self.assertEqual(problem, OLDEST_PROBLEM, name)
            self.assertLessEqual(cursor, self.intended, name)

    def test_previousDamagedToo(self) -> None:
        """
        When the previous copy is damaged as well, sync starts from the oldest segment.
        """
        save_cursor(self.directory, self.previous)
        save_cursor(self.directory, self.intended)
        for name, content in self.damages():
            self.directory.child(CURSOR_NAME).setContent(content)
            self.directory.child(PREVIOUS_NAME).setContent(content)
            self.assertEqual(
                load_cursor(self.directory, self.directory),
                (Cursor(1, 0, 1), OLDEST_PROBLEM),
                name,
            )

    def test_cursorMissingPreviousPresent(self) -> None:
        """
        A crash between the two renames of a save leaves only the previous copy: it is
        used.
        """
        save_cursor(self.directory, self.previous)
        save_cursor(self.directory, self.intended)
        self.directory.child(CURSOR_NAME).remove()
        cursor, problem = load_cursor(self.directory, self.directory)
        self.assertEqual(cursor, self.previous)
        self.assertIsNotNone(problem)

    def test_previousOnlyAndDamaged(self) -> None:
        """
        Only a damaged previous copy and no cursor: the oldest segment, and a problem.
        """
        self.directory.child(PREVIOUS_NAME).setContent(b"{")
        self.assertEqual(
            load_cursor(self.directory, self.directory), (Cursor(1, 0, 1), OLDEST_PROBLEM)
        )

    def test_previousPointsAtRemovedSegment(self) -> None:
        """
        A previous copy whose segment retention has removed is no longer valid: the oldest
        segment left is used, which is still behind the damaged cursor.
        """
        save_cursor(self.directory, self.previous)
        save_cursor(self.directory, self.intended)
        for number, path in segments(self.directory):
            if number < self.intended.segment:
                path.remove()
        self.directory.child(CURSOR_NAME).setContent(b"")
        cursor, problem = load_cursor(self.directory, self.directory)
        self.assertEqual(cursor, Cursor(self.intended.segment, 0, 1))
        self.assertEqual(problem, OLDEST_PROBLEM)
        self.assertLessEqual(cursor, self.intended)

    def test_everyTornWrite(self) -> None:
        """
        A cursor file cut at any length (a torn write without the durable-replace pattern)
        never loads as a position beyond the intended one.
        """
        save_cursor(self.directory, self.previous)
        save_cursor(self.directory, self.intended)
        content = self.directory.child(CURSOR_NAME).getContent()
        for length in range(len(content)):
            self.directory.child(CURSOR_NAME).setContent(content[:length])
            cursor, problem = load_cursor(self.directory, self.directory)
            self.assertEqual((cursor, problem), (self.previous, PREVIOUS_PROBLEM), length)

    def test_nonFiniteNumbers(self) -> None:
        """
        Numbers JSON can spell but no integer can hold (C{1e999}, C{Infinity}, C{NaN}) are
        damage like any other: load falls back instead of raising.
        """
        save_cursor(self.directory, self.previous)
        save_cursor(self.directory, self.intended)
        for spelling in [b"1e999", b"-1e999", b"Infinity", b"-Infinity", b"NaN"]:
            self.directory.child(CURSOR_NAME).setContent(
                b'{"segment": %b, "offset": 0, "sequence": 1}' % spelling
            )
            self.assertEqual(
                load_cursor(self.directory, self.directory),
                (self.previous, PREVIOUS_PROBLEM),
                spelling,
            )

    def test_deeplyNested(self) -> None:
        """
        A cursor file of deeply nested brackets is damage too: load falls back instead of
        raising C{RecursionError}.
        """
        save_cursor(self.directory, self.previous)
        save_cursor(self.directory, self.intended)
        self.directory.child(CURSOR_NAME).setContent(b"[" * 100_000)
        self.assertEqual(
            load_cursor(self.directory, self.directory), (self.previous, PREVIOUS_PROBLEM)
        )

    def test_sequenceDisagreesWithTheJournal(self) -> None:
        """
        A cursor whose one changed digit moves it onto another line boundary (segment 2
        becomes 3 at the same offset) names a sequence number that is not the one of the
        event there. It must not be taken as it stands: that would skip the events in
        between, i.e. go forward. The line at the offset carries its C{seq}, so the
        cursor's C{sequence} can be checked.
        """
        directory = FilePath(self.mktemp())
        write_journal(directory, 40, segment_bytes=4000)
        self.assertGreaterEqual(len(segments(directory)), 3)
        intended = next(
            cursor
            for cursor in (position(directory, n) for n in range(1, 40))
            if cursor.segment == 2 and cursor.offset > 0
        )
        save_cursor(directory, intended)
        flipped = as_document(intended) | {"segment": 3}
        self.assertTrue(
            directory.child(segment_name(3)).getsize() > intended.offset, "setup: offset fits"
        )
        write_cursor(directory, flipped)
        with open(directory.child(segment_name(3)).path, "rb") as file:
            file.seek(intended.offset)
            there = decode_line(file.readline())
        self.assertIsNotNone(there, "setup: the offset is a line boundary in segment 3")
        assert there is not None
        self.assertNotEqual(there["seq"], intended.sequence)
        cursor, problem = load_cursor(directory, directory)
        self.assertLessEqual(cursor, intended)
        self.assertIsNotNone(problem)


class ArbitraryDamageTests(SynchronousTestCase):
    @settings(
        max_examples=200,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(content=st.binary(max_size=80))
    def test_arbitraryBytes(self, content: bytes) -> None:
        """
        Whatever bytes replace the cursor, load never raises, and unless they happen to
        spell a valid cursor it gives the previous copy.
        """
        if not hasattr(self, "directory"):
            self.directory = FilePath(self.mktemp())
            write_journal(self.directory, 12)
            self.previous = position(self.directory, 3)
            self.intended = position(self.directory, 8)
            save_cursor(self.directory, self.previous)
            save_cursor(self.directory, self.intended)
        self.directory.child(CURSOR_NAME).setContent(content)
        cursor, problem = load_cursor(self.directory, self.directory)
        if problem is not None:
            self.assertEqual(cursor, self.previous)
