"""
Tests for L{linkrouter.event}: the hit the request path hands over, and its self-checking
journal line.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import uuid
import zlib
from datetime import UTC, datetime
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from linkrouter.codec import MAX_ISSUED_AT, Kind, Part, TrackedLink
from linkrouter.event import (
    EVENT_VERSION,
    MAX_USER_AGENT,
    Hit,
    IPStorage,
    _stored_ip,
    _utc,
    _uuid7,
    decode_line,
    encode_hits,
    uuid7,
)

_SETTINGS = settings(max_examples=300, deadline=None)
_FEW = settings(max_examples=100, deadline=None)

TARGET = "https://destination.example/secret-path?token=Zq9xSECRET"
ROUTER = "router-1"
FIELDS = {
    "v",
    "id",
    "seq",
    "router",
    "ts",
    "kind",
    "link",
    "key",
    "part",
    "issued",
    "method",
    "ip",
    "ua",
}
_TS = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z")
_CRC_MEMBER = b',"crc":"'

_B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
link_ids = st.text(alphabet=_B64URL, min_size=1, max_size=32)
key_ids = st.text(alphabet=_B64URL, min_size=1, max_size=16)
kinds = st.sampled_from(list(Kind))
parts = st.sampled_from(list(Part))
methods = st.one_of(
    st.sampled_from([b"GET", b"HEAD", b"POST", b"OPTIONS"]), st.binary(min_size=1, max_size=12)
)
addresses = st.ip_addresses().map(str)
user_agents = st.one_of(
    st.binary(max_size=700),
    st.text(max_size=300).map(lambda text: text.encode("utf-8", "surrogatepass")),
    st.sampled_from([b"", b"\n", b"\x00", b"a\r\nb\x00c", b"\xff\xfe\xc3", b'"}\n{"seq":1}']),
)
times = st.floats(min_value=0, max_value=4_102_444_800, allow_nan=False, allow_infinity=False)


def make_link(
    kind: Kind = Kind.CLICK,
    part: Part = Part.HTML,
    link_id: str = "L1nk_id-0",
    key_id: str = "kA",
    issued_at: int = 1_700_000_000,
) -> TrackedLink:
    """
    A verified link; a click carries the distinctive L{TARGET}, which no event may contain.
    """
    target = TARGET if kind is Kind.CLICK else None
    return TrackedLink(kind, part, target, key_id, link_id, issued_at)


def make_hit(
    user_agent: bytes = b"Mozilla/5.0",
    ip: str = "203.0.113.77",
    when: float = 1_700_000_000.123,
    method: bytes = b"GET",
    link: TrackedLink | None = None,
) -> Hit:
    return Hit(when, make_link() if link is None else link, method, ip, user_agent)


def one_line(hit: Hit, storage: IPStorage = IPStorage.FULL, sequence: int = 1) -> bytes:
    data, next_sequence = encode_hits([hit], ROUTER, sequence, storage)
    assert next_sequence == sequence + 1
    return data


def expected_ua(user_agent: bytes) -> str:
    return user_agent[:MAX_USER_AGENT].decode("utf-8", "backslashreplace")


class LineFormatTests(SynchronousTestCase):
    """
    Every encoded hit is one self-checking JSON line that decodes back to its fields.
    """

    def assertOneGoodLine(self, line: bytes) -> dict[str, Any]:
        """
        C{line} is one terminated line of JSON with a C{crc} member, and decodes; return the
        decoded event.
        """
        self.assertTrue(line.endswith(b"\n"), line)
        self.assertEqual(line.count(b"\n"), 1, line)
        document = json.loads(line)
        self.assertIsInstance(document, dict)
        self.assertRegex(document["crc"], r"\A[0-9a-f]{8}\Z")
        event = decode_line(line)
        self.assertIsNotNone(event)
        assert event is not None
        self.assertEqual(decode_line(line[:-1]), event)
        del document["crc"]
        self.assertEqual(event, document)
        return event

    @_SETTINGS
    @given(
        link_id=link_ids,
        key_id=key_ids,
        kind=kinds,
        part=parts,
        issued_at=st.integers(min_value=0, max_value=MAX_ISSUED_AT),
        method=methods,
        ip=addresses,
        user_agent=user_agents,
        when=times,
        sequence=st.integers(min_value=1, max_value=2**53),
    )
    @example(
        link_id="a",
        key_id="k",
        kind=Kind.CLICK,
        part=Part.TEXT,
        issued_at=0,
        method=b"GET",
        ip="2001:db8::1",
        user_agent=os.urandom(10 * 1024),
        when=0.0,
        sequence=1,
    )
    @example(
        link_id="b",
        key_id="k",
        kind=Kind.OPEN,
        part=Part.HTML,
        issued_at=MAX_ISSUED_AT,
        method=b"HEAD",
        ip="0.0.0.0",
        user_agent=(b"\n\x00\xff" * 4000)[: 10 * 1024],
        when=4_102_444_799.999,
        sequence=2**53,
    )
    def test_roundTrip(
        self,
        link_id: str,
        key_id: str,
        kind: Kind,
        part: Part,
        issued_at: int,
        method: bytes,
        ip: str,
        user_agent: bytes,
        when: float,
        sequence: int,
    ) -> None:
        """
        Any hit (any ids, kind, part, method, IPv4 or IPv6 address, and any User-Agent bytes:
        newlines, NUL, invalid UTF-8, 10 KB long) encodes to exactly one line of valid JSON
        with a C{crc}, and L{decode_line} gives back every field, the User-Agent capped to
        512 bytes and escaped.
        """
        link = make_link(kind, part, link_id, key_id, issued_at)
        line = one_line(Hit(when, link, method, ip, user_agent), sequence=sequence)
        event = self.assertOneGoodLine(line)
        self.assertEqual(set(event), FIELDS)
        self.assertEqual(event["v"], EVENT_VERSION)
        self.assertEqual(event["seq"], sequence)
        self.assertEqual(event["router"], ROUTER)
        self.assertEqual(event["kind"], kind.value)
        self.assertEqual(event["link"], link_id)
        self.assertEqual(event["key"], key_id)
        self.assertEqual(event["part"], part.value)
        self.assertEqual(event["issued"], issued_at)
        self.assertEqual(event["method"], method.decode("latin-1"))
        self.assertEqual(event["ip"], ip)
        self.assertEqual(event["ua"], expected_ua(user_agent))
        self.assertNotIn(TARGET.encode(), line)
        # the timestamp and the event id carry the same millisecond, the hit's own
        self.assertRegex(event["ts"], _TS)
        milliseconds = uuid.UUID(event["id"]).int >> 80
        self.assertLessEqual(abs(milliseconds / 1000 - when), 0.001 + 1e-6)
        stamp = datetime.fromtimestamp(milliseconds / 1000, UTC)
        self.assertEqual(
            event["ts"], stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp:%f}"[:3] + "Z"
        )

    def test_checksumCoversTheRestOfTheLine(self) -> None:
        """
        The C{crc} is the CRC-32, as 8 lowercase hex digits, of the line's JSON without the
        C{crc} member: what another reader (the collector, C{journal verify}) recomputes.
        """
        line = one_line(make_hit())
        cut = line.rindex(_CRC_MEMBER)
        self.assertEqual(line[cut:], b'%b%08x"}\n' % (_CRC_MEMBER, zlib.crc32(line[:cut] + b"}")))

    def test_batchIsOneLinePerHit(self) -> None:
        """
        A batch encodes to one line per hit, in order, with consecutive sequence numbers
        from the first one given; the next number is returned.
        """
        hits = [make_hit(user_agent=b"agent %d\n" % index) for index in range(5)]
        data, next_sequence = encode_hits(hits, ROUTER, 41, IPStorage.FULL)
        self.assertEqual(next_sequence, 46)
        lines = data.splitlines(keepends=True)
        self.assertEqual(len(lines), 5)
        self.assertEqual(data.count(b"\n"), 5)
        events = [decode_line(line) for line in lines]
        self.assertEqual([event and event["seq"] for event in events], [41, 42, 43, 44, 45])
        self.assertEqual(
            [event and event["ua"] for event in events], [f"agent {i}\n" for i in range(5)]
        )
        self.assertEqual(len({event and event["id"] for event in events}), 5)

    def test_emptyBatch(self) -> None:
        """
        No hits encode to no bytes, and the sequence number does not move.
        """
        self.assertEqual(encode_hits([], ROUTER, 7, IPStorage.FULL), (b"", 7))

    def test_userAgentCappedBeforeDecoding(self) -> None:
        """
        Only the first 512 bytes of the User-Agent are kept, cut before decoding, so a
        multi-byte character split by the cap is escaped rather than lost or overlong.
        """
        event = decode_line(one_line(make_hit(user_agent=b"a" * 5000)))
        assert event is not None
        self.assertEqual(event["ua"], "a" * MAX_USER_AGENT)
        split = b"a" * (MAX_USER_AGENT - 1) + "é".encode()
        event = decode_line(one_line(make_hit(user_agent=split)))
        assert event is not None
        self.assertEqual(event["ua"], "a" * (MAX_USER_AGENT - 1) + "\\xc3")

    def test_userAgentBytesEscaped(self) -> None:
        """
        Invalid UTF-8 is kept as backslash escapes; valid UTF-8, newlines and NUL are kept as
        characters (JSON-escaped in the line, which stays one line).
        """
        agent = b"A\xff\xfeB\n\x00\r\xe2\x82\xac"
        line = one_line(make_hit(user_agent=agent))
        self.assertEqual(line.count(b"\n"), 1)
        self.assertNotIn(b"\x00", line)
        self.assertNotIn(b"\r", line)
        event = decode_line(line)
        assert event is not None
        self.assertEqual(event["ua"], "A\\xff\\xfeB\n\x00\r€")

    def test_destinationNeverInTheLine(self) -> None:
        """
        The destination URL of a click, and no part of its path or query, is in the line.
        """
        for storage in IPStorage:
            line = one_line(make_hit(), storage)
            for piece in [TARGET, "destination.example", "secret-path", "Zq9xSECRET"]:
                self.assertNotIn(piece.encode(), line)
        self.assertNotIn(b"target", line)


class CorruptionTests(SynchronousTestCase):
    """
    A torn or changed line is told apart from a good one.
    """

    lines = (
        one_line(make_hit()),
        one_line(make_hit(b"\xff\x00\n" * 20, "2001:db8::7", 12.5, b"HEAD"), sequence=99),
        one_line(make_hit(link=make_link(Kind.OPEN, Part.TEXT)), IPStorage.NONE),
    )

    def test_everySingleByteChange(self) -> None:
        """
        Changing any one byte of a line, at every position, to any of several values makes
        L{decode_line} refuse the line, or (never otherwise) give back the very same event.
        """
        for line in self.lines:
            original = decode_line(line)
            self.assertIsNotNone(original)
            for position in range(len(line)):
                old = line[position]
                for new in {old ^ 0x01, old ^ 0x80, 0x00, 0x0A, 0x20, 0x22, 0x30, 0x7D}:
                    if new == old:
                        continue
                    changed = line[:position] + bytes([new]) + line[position + 1 :]
                    event = decode_line(changed)
                    if event is not None:
                        self.assertEqual(event, original, (position, old, new))

    def test_everyTruncation(self) -> None:
        """
        Every proper prefix of a line, but the line without its newline, is refused.
        """
        for line in self.lines:
            for length in range(len(line) - 1):
                self.assertIsNone(decode_line(line[:length]), length)

    def test_nonCanonicalChecksumRefused(self) -> None:
        """
        The checksum is exactly 8 lowercase hex digits as written: the same value spelled
        in upper case, or with its leading zero replaced by a space or a sign, is a changed
        line and is refused (a reader comparing the checksum as text refuses it too).
        """
        for attempt in range(10_000):
            line = one_line(make_hit(user_agent=b"%d" % attempt))
            cut = line.rindex(_CRC_MEMBER) + len(_CRC_MEMBER)
            digits = line[cut : cut + 8]
            if digits.startswith(b"0") and digits.upper() != digits:
                break
        else:
            self.fail("no line with a checksum of a leading zero and a letter")
        for spelling in [digits.upper(), b" " + digits[1:], b"+" + digits[1:]]:
            changed = line[:cut] + spelling + line[cut + 8 :]
            self.assertIsNone(decode_line(changed), spelling)

    def test_notAnEvent(self) -> None:
        """
        A line whose checksum matches but whose JSON is not an event with a sequence number
        is refused, as are empty and garbage lines.
        """
        for body in [b'{"seq":"1"}', b'{"v":1}', b'{"seq":null}']:
            line = b'%b,"crc":"%08x"}\n' % (body[:-1], zlib.crc32(body))
            self.assertIsNone(decode_line(line), line)
        for line in [b"", b"\n", b"\x00" * 40, b"garbage\n", b'{"crc":"00000000"}\n']:
            self.assertIsNone(decode_line(line), line)


class IPStorageTests(SynchronousTestCase):
    """
    The configured share of the client address is kept.
    """

    def ip_of(self, ip: str, storage: IPStorage) -> object:
        event = decode_line(one_line(make_hit(ip=ip), storage))
        assert event is not None
        return event["ip"]

    def test_full(self) -> None:
        """
        C{full} keeps the address as given, IPv4 or IPv6.
        """
        self.assertEqual(self.ip_of("203.0.113.77", IPStorage.FULL), "203.0.113.77")
        self.assertEqual(self.ip_of("2001:db8:1:2::5", IPStorage.FULL), "2001:db8:1:2::5")

    def test_truncated(self) -> None:
        """
        C{truncated} keeps the /24 of an IPv4 address and the /48 of an IPv6 one.
        """
        self.assertEqual(self.ip_of("203.0.113.77", IPStorage.TRUNCATED), "203.0.113.0")
        self.assertEqual(
            self.ip_of("2001:db8:abcd:1234:5678::1", IPStorage.TRUNCATED), "2001:db8:abcd::"
        )

    @_FEW
    @given(address=st.ip_addresses())
    def test_truncatedAny(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
        """
        For any address, C{truncated} keeps exactly its /24 or /48 network address.
        """
        prefix = 24 if address.version == 4 else 48
        network = ipaddress.ip_network((address, prefix), strict=False)
        self.assertEqual(
            self.ip_of(str(address), IPStorage.TRUNCATED), str(network.network_address)
        )

    def test_truncatedNotAnAddress(self) -> None:
        """
        C{truncated} never keeps a value that is not an address (it cannot be truncated).
        """
        self.assertIsNone(self.ip_of("not-an-address", IPStorage.TRUNCATED))

    def test_none(self) -> None:
        """
        C{none} keeps no address at all, and the line holds no trace of it.
        """
        line = one_line(make_hit(ip="198.51.100.23"), IPStorage.NONE)
        event = decode_line(line)
        assert event is not None
        self.assertIsNone(event["ip"])
        self.assertNotIn(b"198.51.100", line)


class UUID7Tests(SynchronousTestCase):
    """
    Event ids are UUIDv7: unique, and sorted by time.
    """

    @_SETTINGS
    @given(milliseconds=st.integers(min_value=0, max_value=2**48 - 1))
    def test_versionAndVariant(self, milliseconds: int) -> None:
        """
        An id is a canonical UUID of version 7 and the RFC variant, carrying its millisecond.
        """
        text = uuid7(milliseconds)
        value = uuid.UUID(text)
        self.assertEqual(str(value), text)
        self.assertEqual(value.version, 7)
        self.assertEqual(value.variant, uuid.RFC_4122)
        self.assertEqual(value.int >> 80, milliseconds)

    @_SETTINGS
    @given(
        earlier=st.integers(min_value=0, max_value=2**48 - 2),
        gap=st.integers(min_value=1, max_value=2**47),
    )
    def test_sortsByTime(self, earlier: int, gap: int) -> None:
        """
        An id of an earlier millisecond sorts before one of a later millisecond, as text and
        as a number.
        """
        later = min(earlier + gap, 2**48 - 1)
        first, second = uuid7(earlier), uuid7(later)
        self.assertLess(first, second)
        self.assertLess(uuid.UUID(first).int, uuid.UUID(second).int)

    def test_unique(self) -> None:
        """
        Ids of the same millisecond differ.
        """
        self.assertEqual(len({uuid7(1_700_000_000_000) for _ in range(2000)}), 2000)


class TimestampTests(SynchronousTestCase):
    """
    The timestamp is UTC with milliseconds.
    """

    def test_millisecondsAndZ(self) -> None:
        """
        The timestamp has three fraction digits and ends in C{Z}.
        """
        cases = {
            0.0: "1970-01-01T00:00:00.000Z",
            1_700_000_000.123: "2023-11-14T22:13:20.123Z",
            1_700_000_000.5: "2023-11-14T22:13:20.500Z",
            1_700_000_059.9999: "2023-11-14T22:14:19.999Z",
        }
        for when, expected in cases.items():
            event = decode_line(one_line(make_hit(when=when)))
            assert event is not None
            self.assertEqual(event["ts"], expected)


def _reference_lines(
    hits: list[Hit], first_sequence: int, storage: IPStorage, randomness: bytes
) -> bytes:
    """
    The lines of C{hits} built one event at a time, each id by L{uuid7}'s own construction
    from its 10 bytes of C{randomness}: what a batch must equal, byte for byte.
    """
    lines = []
    for index, hit in enumerate(hits):
        milliseconds = int(hit.time * 1000)
        random = int.from_bytes(randomness[10 * index : 10 * index + 10], "big")
        event = {
            "v": EVENT_VERSION,
            "id": _uuid7(milliseconds, random),
            "seq": first_sequence + index,
            "router": ROUTER,
            "ts": _utc(milliseconds),
            "kind": hit.link.kind.value,
            "link": hit.link.link_id,
            "key": hit.link.key_id,
            "part": hit.link.part.value,
            "issued": hit.link.issued_at,
            "method": hit.method.decode("latin-1"),
            "ip": _stored_ip(hit.ip, storage),
            "ua": hit.user_agent[:MAX_USER_AGENT].decode("utf-8", "backslashreplace"),
        }
        body = json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()
        lines.append(body[:-1] + b',"crc":"%08x"}\n' % zlib.crc32(body))
    return b"".join(lines)


class BatchTests(SynchronousTestCase):
    @_FEW
    @given(
        times=st.lists(
            st.one_of(times, st.sampled_from([1_764_780_000.0, 1_764_780_000.0004])),
            min_size=1,
            max_size=12,
        ),
        agents=st.lists(user_agents, min_size=12, max_size=12),
        links=st.lists(
            st.builds(make_link, st.sampled_from(Kind), st.sampled_from(Part), link_ids, key_ids),
            min_size=12,
            max_size=12,
        ),
        methods=st.lists(st.sampled_from([b"GET", b"HEAD"]), min_size=12, max_size=12),
        addresses=st.lists(
            st.sampled_from(["2001:db8::7", "192.0.2.1", "203.0.113.250"]),
            min_size=12,
            max_size=12,
        ),
        storage=st.sampled_from(list(IPStorage)),
        randomness=st.binary(min_size=120, max_size=120),
    )
    def test_batchIsEventByEvent(
        self,
        times: list[float],
        agents: list[bytes],
        links: list[TrackedLink],
        methods: list[bytes],
        addresses: list[str],
        storage: IPStorage,
        randomness: bytes,
    ) -> None:
        """
        A batch's lines are those of its events encoded one by one with the same
        randomness, whatever the times (several in one millisecond share its time fields),
        links, methods and addresses.
        """
        hits = [
            Hit(when, link, method, address, agent)
            for when, agent, link, method, address in zip(
                times, agents, links, methods, addresses, strict=False
            )
        ]
        self.patch(os, "urandom", lambda size: randomness[:size])
        data, _ = encode_hits(hits, ROUTER, 7, storage)
        self.assertEqual(data, _reference_lines(hits, 7, storage, randomness))

    def test_idsInOneMillisecond(self) -> None:
        """
        The events of one millisecond get distinct UUIDv7 ids of that millisecond, version 7
        with the RFC variant.
        """
        link = TrackedLink(Kind.CLICK, Part.HTML, TARGET, "k", "L1", 1_764_000_000)
        hits = [Hit(1_764_780_000.1234, link, b"GET", "192.0.2.1", b"") for _ in range(2000)]
        data, _ = encode_hits(hits, ROUTER, 1, IPStorage.FULL)
        ids = [uuid.UUID(json.loads(line)["id"]) for line in data.splitlines()]
        self.assertEqual(len(set(ids)), 2000)
        for value in ids:
            self.assertEqual(value.version, 7)
            self.assertEqual(value.variant, uuid.RFC_4122)
            self.assertEqual(value.int >> 80, 1_764_780_000_123)
