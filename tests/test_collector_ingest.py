"""
Tests for L{linkrouter.collector.ingest}: a router's batch from gzip bytes to checked events,
bounded, and line by line. Hostile batches: bombs, broken gzip, every kind of bad line; a bad
line is named and never costs the good lines beside it.
"""

from __future__ import annotations

import gzip
import io
import random
import re
import struct
import tracemalloc
import zlib
from functools import cache
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from linkrouter.codec import MAX_ISSUED_AT, Kind, Part
from linkrouter.collector.ingest import Batch, BodyRefused, Rejected, inflate, parse_batch
from linkrouter.collector.model import Event
from linkrouter.event import MAX_USER_AGENT, Hit, IPStorage, decode_line, encode_hits

from .test_event import addresses, key_ids, link_ids, make_hit, make_link, times, user_agents

ROUTER = "ams-1-blue"
MIB = 1024 * 1024
NOT_A_LINE = "not an event line (JSON with a matching crc)"


def encoded(*hits: Hit, router: str = ROUTER, storage: IPStorage = IPStorage.FULL) -> bytes:
    """
    The journal lines of C{hits}, by the router's own encoder.
    """
    return encode_hits(hits, router, 1, storage)[0]


def good_lines(count: int, router: str = ROUTER) -> list[bytes]:
    """
    C{count} distinct good lines, each with its newline.
    """
    hits = [make_hit(when=1_764_780_000 + n, user_agent=b"UA %d" % n) for n in range(count)]
    return encoded(*hits, router=router).splitlines(keepends=True)


def fields_of(line: bytes) -> dict[str, Any]:
    """
    The fields of a good line, without its checksum.
    """
    fields = decode_line(line)
    assert fields is not None
    return fields


def line_of(fields: dict[str, Any]) -> bytes:
    """
    A line with a correct checksum for any C{fields}: what a buggy or hostile router
    could send, past the checksum.
    """
    body = orjson.dumps(fields)
    return line_of_body(body)


def line_of_body(body: bytes) -> bytes:
    """
    A line with a correct checksum for any JSON object text C{body}.
    """
    return b'%b,"crc":"%08x"}\n' % (body[:-1], zlib.crc32(body))


def with_field(name: str, value: object, line: bytes | None = None) -> bytes:
    """
    A good line with field C{name} set to C{value}, checksum recomputed.
    """
    fields = fields_of(line if line is not None else good_lines(1)[0])
    fields[name] = value
    return line_of(fields)


def parse(*lines: bytes, sender: str = ROUTER, max_events: int = 1000) -> Batch:
    return parse_batch(b"".join(lines), sender, max_events)


@cache
def zeros_bomb(mebibytes: int, checked: bool = True) -> bytes:
    """
    A valid gzip stream of C{mebibytes} MiB of zeros, about a thousand times smaller, built
    without ever holding or deflating the whole: after a full flush the deflater's output
    for the next MiB of zeros is the same, so one flushed MiB is repeated.

    @param checked: whether the trailer holds the real CRC-32, whose computation reads
        every byte of the content.
    """
    zeros = bytes(MIB)
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    segment = deflater.compress(zeros) + deflater.flush(zlib.Z_FULL_FLUSH)
    assert segment == deflater.compress(zeros) + deflater.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(mebibytes if checked else 0):  # unchecked: the trailer is never reached
        crc = zlib.crc32(zeros, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    final_block = b"\x03\x00"  # an empty fixed-Huffman block marked last
    trailer = struct.pack("<II", crc, (mebibytes * MIB) & 0xFFFFFFFF)
    return header + segment * mebibytes + final_block + trailer


class IngestTestCase(SynchronousTestCase):
    def refused(self, status: int, function: Any, *args: Any) -> str:
        """
        C{function(*args)} raises L{BodyRefused} with C{status}; its message.
        """
        error = self.assertRaises(BodyRefused, function, *args)
        self.assertEqual(error.status, status, str(error))
        return str(error)


class InflateTests(IngestTestCase):
    def test_roundTrip(self) -> None:
        """
        A gzip body within the limit inflates to what was compressed, at any level,
        including an empty one and one larger than the inflater's chunk.
        """
        rng = random.Random(5)
        for data in [b"", b"x", rng.randbytes(200_000), bytes(3 * MIB), b"line\n" * 50_000]:
            for level in [0, 1, 9]:
                body = gzip.compress(data, compresslevel=level)
                self.assertEqual(inflate(body, 4 * MIB), data)

    def test_exactLimit(self) -> None:
        """
        A body that inflates to exactly the limit is accepted; one byte more is refused
        with 413, for compressible and incompressible data, small and large limits.
        """
        rng = random.Random(7)
        for data in [b"a", bytes(1000), rng.randbytes(150_000), bytes(2 * MIB + 3)]:
            body = gzip.compress(data)
            self.assertEqual(inflate(body, len(data)), data)
            self.assertIn("over", self.refused(413, inflate, body, len(data) - 1))
            self.assertEqual(inflate(gzip.compress(data + b"!"), len(data) + 1), data + b"!")
            self.refused(413, inflate, gzip.compress(data + b"!"), len(data))

    @settings(max_examples=200, deadline=None)
    @given(st.binary(max_size=3000), st.integers(0, 3100), st.sampled_from([0, 1, 6, 9]))
    def test_limitProperty(self, data: bytes, limit: int, level: int) -> None:
        """
        For any data and limit: the data comes back whole if it fits, else 413.
        """
        body = gzip.compress(data, compresslevel=level)
        if len(data) <= limit:
            self.assertEqual(inflate(body, limit), data)
        else:
            self.refused(413, inflate, body, limit)

    def test_zeroLimit(self) -> None:
        """
        With a limit of 0, only an empty stream is accepted.
        """
        self.assertEqual(inflate(gzip.compress(b""), 0), b"")
        self.refused(413, inflate, gzip.compress(b"\n"), 0)

    def test_bombBuilder(self) -> None:
        """
        The bomb used below is a valid gzip stream of zeros, about 1000 times smaller.
        """
        bomb = zeros_bomb(4)
        self.assertEqual(gzip.decompress(bomb), bytes(4 * MIB))
        self.assertLess(len(bomb), 4 * MIB // 900)

    def test_gigabyteBombRefused(self) -> None:
        """
        A one-megabyte body that inflates to 1 GiB of zeros is refused with 413 at the
        default 64 MiB limit, and with a small limit never holds more than about that limit
        in memory.
        """
        bomb = zeros_bomb(1024)
        self.assertLess(len(bomb), 1100 * 1024)
        self.assertIn("over 67108864 bytes", self.refused(413, inflate, bomb, 64 * MIB))
        tracemalloc.start()
        try:
            self.refused(413, inflate, bomb, MIB)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        self.assertLess(peak, 4 * MIB)

    def test_bombInputNotCopiedOverAndOver(self) -> None:
        """
        Refusing a bomb costs work in proportion to the body and the limit: the inflater
        is not handed the whole rest of a large body again for every piece of output (with
        an 8 MiB body and an 8 MiB limit that was 128 copies of the body, 1 GiB of copying;
        at the default 16 MiB body and 64 MiB limit, 16 GiB and seconds of CPU).
        """
        bomb = zeros_bomb(8 * 1024, checked=False)
        fed = []
        real = zlib.decompressobj

        class Counting:
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                self._inflater = real(*args, **kwargs)

            def decompress(self, data: bytes, max_length: int = 0) -> bytes:
                fed.append(len(data))
                return self._inflater.decompress(data, max_length)

            def __getattr__(self, name: str) -> Any:
                return getattr(self._inflater, name)

        self.patch(zlib, "decompressobj", Counting)
        self.refused(413, inflate, bomb, 8 * MIB)
        self.assertLessEqual(sum(fed), 2 * (len(bomb) + 8 * MIB))

    def test_concatenatedMembersRefused(self) -> None:
        """
        Two gzip members one after the other are not one batch: 400 (the router sends one
        stream, and a second member would be a second, unchecked limit).
        """
        body = gzip.compress(b"first\n") + gzip.compress(b"second\n")
        self.assertIn("one complete gzip stream", self.refused(400, inflate, body, MIB))

    def test_trailingGarbageRefused(self) -> None:
        """
        Bytes after the end of the stream, even zeros, are refused with 400.
        """
        body = gzip.compress(b"events\n")
        for tail in [b"x", b"\x00", bytes(512), b"\n", b"\x1f\x8b"]:
            self.refused(400, inflate, body + tail, MIB)

    def test_truncatedRefused(self) -> None:
        """
        Every truncation of a stream is refused with 400, even one cut inside its trailer.
        """
        body = gzip.compress(random.Random(3).randbytes(5000) + b"end\n")
        for cut in range(len(body)):
            self.refused(400, inflate, body[:cut], MIB)

    def test_notGzipRefused(self) -> None:
        """
        Plain text, a zlib or raw deflate stream, another format's magic, and an empty body
        are refused with 400.
        """
        data = b'{"v":1}\n'
        raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        for body in [
            b"",
            data,
            zlib.compress(data),
            raw.compress(data) + raw.flush(),
            b"BZh91AY&SY",
            b"\x1f\x8b",
            b"\x1f\x8b\x09" + gzip.compress(data)[3:],  # a compression method other than 8
            bytes(100),
        ]:
            self.refused(400, inflate, body, MIB)

    def test_corruptStreamRefused(self) -> None:
        """
        A stream whose checksum or length trailer does not match its data, or whose
        compressed data is damaged, is refused with 400.
        """
        body = bytearray(gzip.compress(b"click\n" * 100))
        for index in [-8, -5, -4, -1, len(body) // 2]:
            damaged = bytearray(body)
            damaged[index] ^= 0x55
            self.refused(400, inflate, bytes(damaged), MIB)

    def test_headerFieldsAccepted(self) -> None:
        """
        A stream with a file name and a modification time in its header is still gzip.
        """
        out = io.BytesIO()
        with gzip.GzipFile("batch.jsonl", "wb", fileobj=out, mtime=1_764_780_000) as file:
            file.write(b"click\n")
        self.assertEqual(inflate(out.getvalue(), MIB), b"click\n")

    def test_refusalsAreBodyRefused(self) -> None:
        """
        L{BodyRefused} is a C{ValueError} carrying the status to answer.
        """
        error = BodyRefused(413, "too big")
        self.assertIsInstance(error, ValueError)
        self.assertEqual((error.status, str(error)), (413, "too big"))


class ParseGoodTests(IngestTestCase):
    def test_eventsOfTheRouter(self) -> None:
        """
        The router's own lines become events with every raw fact kept.
        """
        link = make_link(Kind.OPEN, Part.TEXT, "Lk04", "tv1", 1_764_780_000)
        hit = make_hit(b"Mozilla/5.0 \xff", "2001:db8::7", 1_764_780_000.123, b"HEAD", link)
        data, _ = encode_hits([hit, make_hit()], ROUTER, 41, IPStorage.FULL)
        batch = parse_batch(data, ROUTER, 10)
        self.assertEqual(batch.rejected, [])
        first = fields_of(data.splitlines()[0])
        self.assertEqual(
            batch.events[0],
            Event(
                event_id=first["id"],
                sequence=41,
                router=ROUTER,
                timestamp_ms=1_764_780_000_123,
                kind="open",
                link_id="Lk04",
                key_id="tv1",
                part="text",
                issued_at=1_764_780_000,
                method="HEAD",
                ip="2001:db8::7",
                user_agent="Mozilla/5.0 \\xff",
            ),
        )
        self.assertEqual(batch.events[1].sequence, 42)
        self.assertEqual(batch.events[1].kind, "click")

    def test_noAddress(self) -> None:
        """
        A router that stores no address sends C{"ip": null}: accepted as no address.
        """
        batch = parse(encoded(make_hit(), storage=IPStorage.NONE))
        self.assertEqual((batch.events[0].ip, batch.rejected), (None, []))

    def test_emptyBatch(self) -> None:
        """
        An empty body has no events and no refused lines.
        """
        self.assertEqual(parse(b""), Batch([], []))

    def test_finalLineWithoutNewline(self) -> None:
        """
        The last line needs no newline.
        """
        lines = good_lines(3)
        batch = parse(*lines[:2], lines[2].rstrip(b"\n"))
        self.assertEqual((len(batch.events), batch.rejected), (3, []))

    def test_duplicateIdsBothKept(self) -> None:
        """
        The same event twice in one batch is not a parse error: both come out, and the
        store counts the second as a duplicate.
        """
        line = good_lines(1)[0]
        batch = parse(line, line, good_lines(2)[1], line)
        self.assertEqual(batch.rejected, [])
        self.assertEqual(len(batch.events), 4)
        self.assertEqual(batch.events[0], batch.events[1])
        self.assertEqual(batch.events[0], batch.events[3])

    def test_longestUserAgents(self) -> None:
        """
        The router caps a User-Agent at 512 bytes and escapes bad bytes as four characters:
        a 10 KB agent, and 512 bytes that are all invalid UTF-8 (2,048 characters), are
        accepted as the router wrote them.
        """
        for agent in [b"A" * 10_000, b"\xff" * 10_000, b"\xe2\x82\xac" * 3000]:
            batch = parse(encoded(make_hit(user_agent=agent)))
            self.assertEqual(batch.rejected, [])
            expected = agent[:MAX_USER_AGENT].decode("utf-8", "backslashreplace")
            self.assertEqual(batch.events[0].user_agent, expected)
        self.assertEqual(len(parse(encoded(make_hit(b"\xff" * 512))).events[0].user_agent), 2048)

    def test_nulInUserAgentEscaped(self) -> None:
        """
        A NUL in a User-Agent (valid JSON, but no database text holds it) comes out escaped
        as C{\\x00}, the way the router escapes bytes it cannot keep; the line is kept.
        """
        batch = parse(encoded(make_hit(user_agent=b"curl\x00/8")))
        self.assertEqual(batch.rejected, [])
        self.assertEqual(batch.events[0].user_agent, "curl\\x00/8")

    def test_maxEvents(self) -> None:
        """
        Exactly C{max_events} lines are parsed; one more refuses the whole body with 413
        before any line is looked at. The final newline is not a line; an empty line is.
        """
        lines = good_lines(5)
        self.assertEqual(len(parse(*lines, max_events=5).events), 5)
        self.assertIn("over 4 lines", self.refused(413, parse_batch, b"".join(lines), ROUTER, 4))
        self.refused(413, parse_batch, b"".join(lines) + b"\n", ROUTER, 5)
        self.refused(413, parse_batch, b"x\n" * 6, ROUTER, 5)

    @settings(max_examples=150, deadline=None)
    @given(
        st.lists(
            st.builds(
                make_hit,
                user_agent=user_agents,
                ip=addresses,
                when=times,
                method=st.sampled_from([b"GET", b"HEAD"]),
                link=st.builds(
                    make_link,
                    kind=st.sampled_from(list(Kind)),
                    part=st.sampled_from(list(Part)),
                    link_id=link_ids,
                    key_id=key_ids,
                    issued_at=st.integers(0, MAX_ISSUED_AT),
                ),
            ),
            min_size=1,
            max_size=20,
        ),
        st.from_regex(r"\A[A-Za-z0-9._-]{1,64}\Z"),
        st.sampled_from(list(IPStorage)),
        st.integers(0, 2**62),
    )
    def test_everyRouterLineAccepted(
        self, hits: list[Hit], router: str, storage: IPStorage, first: int
    ) -> None:
        """
        Whatever the router's encoder writes is accepted, fact for fact: the collector never
        dead-letters a line of a healthy router.
        """
        data, _ = encode_hits(hits, router, first, storage)
        batch = parse_batch(data, router, len(hits))
        self.assertEqual(batch.rejected, [])
        for number, (hit, event) in enumerate(zip(hits, batch.events, strict=True)):
            self.assertEqual(event.sequence, first + number)
            self.assertEqual(event.router, router)
            self.assertEqual(event.timestamp_ms, int(hit.time * 1000))
            self.assertEqual(event.link_id, hit.link.link_id)
            self.assertEqual(event.key_id, hit.link.key_id)
            self.assertEqual(event.issued_at, hit.link.issued_at)
            self.assertEqual(event.kind, hit.link.kind.value)
            self.assertEqual(event.part, hit.link.part.value)
            self.assertEqual(event.method, hit.method.decode())
            expected = hit.user_agent[:MAX_USER_AGENT].decode("utf-8", "backslashreplace")
            self.assertEqual(event.user_agent, expected.replace("\x00", "\\x00"))
            self.assertEqual(event.ip is None, storage is IPStorage.NONE)


# Bad values of every field: bools for numbers, floats, numbers as strings, null, nested
# objects, out of range, malformed.
BAD_VALUES: dict[str, list[object]] = {
    "v": [True, 1.0, "1", None, {}, [1], 0, 2, -1],
    "id": [
        None,
        5,
        "",
        "019AE515-C37B-7D16-81AA-00E5EBC51214",
        "019ae515c37b7d1681aa00e5ebc51214",
        "019ae515-c37b-7d16-81aa-00e5ebc51214x",
        "{019ae515-c37b-7d16-81aa-00e5ebc51214}",
        "019ae515-c37b-7d16-81aa-00e5ebc5121g",
        {"id": "019ae515-c37b-7d16-81aa-00e5ebc51214"},
    ],
    "seq": [-1, 2**63, 2**64 - 1, True, False],
    "router": ["", "a b", "r" * 65, None, 1, ["ams-1-blue"], "ams-1-blue\n", "ams/1"],
    "ts": [
        None,
        1_764_780_000_123,
        "",
        "2026-12-03T16:40:00Z",
        "2026-12-03T16:40:00.123",
        "2026-12-03 16:40:00.123Z",
        "2026-12-03T16:40:00.123+00:00",
        "2026-12-03T16:40:00.1234Z",
        "2026-12-03T16:40:00.123z",
        "2026-02-30T00:00:00.000Z",
        "2025-02-29T00:00:00.000Z",
        "2026-12-03T24:00:00.000Z",
        "2026-13-01T00:00:00.000Z",
        "2026-00-10T00:00:00.000Z",
        "2026-12-00T00:00:00.000Z",
        "2026-12-03T16:60:00.000Z",
        "2026-12-03T16:40:60.000Z",
        "0000-01-01T00:00:00.000Z",
        "+2026-12-03T16:40:00.123Z",
        ["2026-12-03T16:40:00.123Z"],
    ],
    "kind": ["CLICK", "Click", "", None, 1, ["click"], {"click": 1}, "click ", "pixel"],
    "link": ["", "a" * 33, "a b", "a/b", "a=", "a+b", "é", None, 5, ["Lk04"]],
    "key": ["", "k" * 17, "k.1", None, 1, "k\n"],
    "part": ["HTML", "", None, 1, ["html"], "both"],
    "issued": [-1, MAX_ISSUED_AT + 1, True, 1.5, 1e9, "1764780000", None, {}],
    "method": ["get", "", "G E T", "A" * 17, None, 1, "GÉT", "GET\r\n", ["GET"]],
    "ip": ["", "example.com", "203.0.113.300", 1, {}, "::1::", " 203.0.113.9", "1" * 46, True],
    "ua": [None, 1, "u" * (4 * MAX_USER_AGENT + 1), "u" * 10_000, ["Mozilla"], {"a": "b"}, False],
}


class ParseBadTests(SynchronousTestCase):
    def assertOneBadLine(self, bad: bytes, reason: str | None = None) -> Rejected:
        """
        C{bad} between two good lines is refused as line 2 (with C{reason} when given);
        both good lines are kept.
        """
        first, last = good_lines(2)
        batch = parse(first, bad, last)
        self.assertEqual(
            [event.event_id for event in batch.events],
            [fields_of(first)["id"], fields_of(last)["id"]],
        )
        self.assertEqual([rejected.line for rejected in batch.rejected], [2], batch.rejected)
        rejected = batch.rejected[0]
        if reason is not None:
            self.assertEqual(rejected.reason, reason)
        self.assertLess(len(rejected.reason), 300)
        return rejected

    def test_goodLineTemplateIsGood(self) -> None:
        """
        The helpers' re-encoded line is accepted unchanged: the refusals below are caused
        by the one field changed, not by the re-encoding.
        """
        line = good_lines(1)[0]
        self.assertEqual(line_of(fields_of(line)), line)
        self.assertEqual(len(parse(with_field("ua", "other")).events), 1)

    def test_wrongChecksum(self) -> None:
        """
        A line whose crc does not match its content, is spelt in upper case or with more
        digits, or is missing, is refused as not an event line.
        """
        # a line whose checksum has a letter in it (all but about 2% of lines)
        line = next(line for line in good_lines(20) if re.search(rb'"crc":"[0-9]*[a-f]', line))
        crc_at = line.rindex(b'"crc":"') + 7
        crc = line[crc_at : crc_at + 8]
        other = b"%08x" % (int(crc, 16) ^ 1)
        for bad in [
            line.replace(crc, other),
            line.replace(crc, crc.upper()),
            line.replace(crc, b"0" + crc),
            line.replace(b'"crc":"' + crc + b'"', b'"crc":' + str(int(crc, 16)).encode()),
            line[: line.rindex(b',"crc"')] + b"}\n",
            line.replace(b'"UA 0"', b'"UA 1"'),
            line.replace(b'"v":1', b'"v": 1'),
        ]:
            self.assertOneBadLine(bad, NOT_A_LINE)

    def test_missingFields(self) -> None:
        """
        A line without any one field is refused, naming it.
        """
        for name in fields_of(good_lines(1)[0]):
            fields = fields_of(good_lines(1)[0])
            del fields[name]
            self.assertOneBadLine(line_of(fields), f"missing {name}" if name != "seq" else None)

    def test_extraFields(self) -> None:
        """
        A line with a field the collector does not know is refused, naming it; with fields
        both missing and unknown, both are named.
        """
        self.assertOneBadLine(with_field("url", "https://x.example/"), "unknown url")
        self.assertOneBadLine(with_field("Ua", "x"), "unknown Ua")
        fields = fields_of(good_lines(1)[0])
        del fields["ua"], fields["ip"]
        fields["agent"] = "x"
        fields["addr"] = None
        self.assertOneBadLine(line_of(fields), "missing ip, ua; unknown addr, agent")

    def test_hugeUnknownFieldName(self) -> None:
        """
        A 10 KB unknown field name, or thousands of them, give a short reason.
        """
        self.assertOneBadLine(with_field("x" * 10_000, 1))
        fields = fields_of(good_lines(1)[0])
        fields.update({f"f{n}": n for n in range(5000)})
        self.assertOneBadLine(line_of(fields))

    def test_badValues(self) -> None:
        """
        Every field's bad values are refused, naming the field (a non-integer C{seq} is
        already not an event line).
        """
        for name, values in BAD_VALUES.items():
            for value in values:
                rejected = self.assertOneBadLine(with_field(name, value))
                self.assertIn(rejected.reason, [f"invalid {name}", NOT_A_LINE], (name, value))
        for value in [1.0, 1.5, "5", None, {}, [5]]:
            self.assertOneBadLine(with_field("seq", value), NOT_A_LINE)

    def test_boundaryValues(self) -> None:
        """
        The ends of every range are accepted.
        """
        for name, value in [
            ("seq", 0),
            ("seq", 2**63 - 1),
            ("issued", 0),
            ("issued", MAX_ISSUED_AT),
            ("ts", "1970-01-01T00:00:00.000Z"),
            ("ts", "9999-12-31T23:59:59.999Z"),
            ("ts", "2024-02-29T12:00:00.000Z"),
            ("router", "r" * 64),
            ("link", "a" * 32),
            ("key", "k" * 16),
            ("method", "M" * 16),
            ("ip", "::ffff:203.0.113.9"),
            ("ua", "u" * 4 * MAX_USER_AGENT),
            ("ua", ""),
        ]:
            batch = parse(with_field(name, value), sender="r" * 64 if name == "router" else ROUTER)
            self.assertEqual(batch.rejected, [], (name, value))

    def test_timestampValue(self) -> None:
        """
        The time is read as UTC with its milliseconds.
        """
        for ts, milliseconds in [
            ("1970-01-01T00:00:00.000Z", 0),
            ("2026-12-03T16:40:00.123Z", 1_796_316_000_123),
            ("9999-12-31T23:59:59.999Z", 253_402_300_799_999),
        ]:
            self.assertEqual(parse(with_field("ts", ts)).events[0].timestamp_ms, milliseconds)

    def test_nonAsciiDigitsInTimestamp(self) -> None:
        """
        A timestamp spelt with digits other than ASCII ones (full-width, Arabic-Indic) is
        not what the router writes and is refused.
        """
        for ts in [
            "\uff12\uff10\uff12\uff16-12-03T16:40:00.123Z",
            "2026-12-03T16:40:00.\u0661\u0662\u0663Z",
        ]:
            self.assertOneBadLine(with_field("ts", ts), "invalid ts")

    def test_otherRouter(self) -> None:
        """
        A line naming a router other than the sender is refused: one router's token cannot
        write another's events.
        """
        other = good_lines(1, router="ams-2-green")[0]
        self.assertOneBadLine(other, "the router id is not the sender's")
        self.assertOneBadLine(
            with_field("router", "AMS-1-BLUE"), "the router id is not the sender's"
        )

    def test_invalidUtf8(self) -> None:
        """
        Invalid UTF-8 in a line, even under a matching crc, is refused as not an event line.
        """
        body = orjson.dumps(fields_of(good_lines(1)[0]))
        for bad in [b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82", b"\x80"]:
            self.assertOneBadLine(line_of_body(body.replace(b"UA 0", b"UA " + bad)), NOT_A_LINE)
        self.assertOneBadLine(line_of_body(body.replace(b"UA 0", b"\\ud800")), NOT_A_LINE)

    def test_notJsonObject(self) -> None:
        """
        Lines that are not one JSON object with a crc, or nest deeper than any parser
        should follow, are refused as not event lines.
        """
        deep = b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        for bad in [
            b"hello",
            b"{}",
            b"[]",
            b"null",
            line_of_body(b'{"seq":1,}'),
            line_of_body(b'{"seq":NaN}'),
            line_of_body(b'{"seq":1e999}'),
            line_of_body(b'{"seq":1'),
            line_of_body(deep),
            b'{"seq":1,"crc":"00000000"}',
            b"\x00" * 50,
            b"\x1f\x8b\x08\x00" + bytes(40),
        ]:
            self.assertOneBadLine(bad.rstrip(b"\n") + b"\n", NOT_A_LINE)

    def test_hugeLine(self) -> None:
        """
        A 10 KB User-Agent, even with a matching crc, is refused: no router writes one.
        """
        self.assertOneBadLine(with_field("ua", "Mozilla/5.0 " + "x" * 10_000), "invalid ua")
        self.assertOneBadLine(b"x" * 1_000_000 + b"\n", NOT_A_LINE)

    def test_crlf(self) -> None:
        """
        CRLF line endings are not the router's: every such line is refused by number, and
        the LF lines beside them are kept.
        """
        lines = good_lines(4)
        crlf = [line.replace(b"\n", b"\r\n") for line in lines]
        batch = parse(lines[0], crlf[1], lines[2], crlf[3])
        self.assertEqual([event.sequence for event in batch.events], [1, 3])
        self.assertEqual([rejected.line for rejected in batch.rejected], [2, 4])
        self.assertEqual(parse(b"".join(crlf)).events, [])

    def test_emptyLines(self) -> None:
        """
        Empty lines are refused by number, so the numbers stay the router's own.
        """
        lines = good_lines(2)
        batch = parse(b"\n", lines[0], b"\n", b"\n", lines[1], b"\n")
        self.assertEqual([event.sequence for event in batch.events], [1, 2])
        self.assertEqual([rejected.line for rejected in batch.rejected], [1, 3, 4, 6])
        self.assertEqual(parse(b"\n").rejected, [Rejected(1, NOT_A_LINE)])

    def test_lineNumbers(self) -> None:
        """
        Refused lines are numbered from 1 in the batch, in order, with their reasons.
        """
        lines = good_lines(5)
        batch = parse(
            b"junk\n",
            lines[0],
            with_field("router", "x", lines[1]),
            lines[2],
            with_field("kind", "CLICK", lines[3]),
            lines[4],
            b"junk",
        )
        self.assertEqual(
            batch.rejected,
            [
                Rejected(1, NOT_A_LINE),
                Rejected(3, "the router id is not the sender's"),
                Rejected(5, "invalid kind"),
                Rejected(7, NOT_A_LINE),
            ],
        )
        self.assertEqual([event.sequence for event in batch.events], [1, 3, 5])


def _flip(line: bytes, data: st.DataObject) -> bytes:
    """
    C{line} with one byte before its newline replaced by another byte that is not a newline.
    """
    index = data.draw(st.integers(0, len(line) - 2))
    byte = data.draw(st.integers(0, 255).filter(lambda b: b not in (line[index], 10)))
    return line[:index] + bytes([byte]) + line[index + 1 :]


_CORRUPTIONS = [
    lambda line, data: _flip(line, data),
    lambda line, data: line[: data.draw(st.integers(0, len(line) - 2))] + b"\n",
    lambda line, data: line[:-1] + b"\r\n",
    lambda line, data: with_field("router", "intruder", line),
    lambda line, data: with_field(
        data.draw(st.sampled_from(sorted(set(BAD_VALUES) - {"ip"}))), None, line
    ),
    lambda line, data: with_field("extra", 1, line),
    lambda line, data: data.draw(st.binary(max_size=200).filter(lambda b: b"\n" not in b)) + b"\n",
]


class MixedBatchTests(SynchronousTestCase):
    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.booleans(), min_size=1, max_size=40), st.data())
    def test_goodLinesKeptBadLinesNamed(self, goodness: list[bool], data: st.DataObject) -> None:
        """
        In any mix of good and corrupted lines (a changed byte, a cut, CRLF, another router,
        a bad or extra field, garbage), exactly the good lines are accepted, in order, and
        exactly the bad ones are named by number.
        """
        lines = good_lines(len(goodness))
        batch_lines = []
        for line, good in zip(lines, goodness, strict=True):
            if good:
                batch_lines.append(line)
            else:
                corrupt = data.draw(st.sampled_from(_CORRUPTIONS))
                batch_lines.append(corrupt(line, data))
        batch = parse(*batch_lines)
        self.assertEqual(
            [event.event_id for event in batch.events],
            [fields_of(line)["id"] for line, good in zip(lines, goodness, strict=True) if good],
        )
        self.assertEqual(
            [rejected.line for rejected in batch.rejected],
            [number for number, good in enumerate(goodness, start=1) if not good],
        )
