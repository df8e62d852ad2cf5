"""
Tests for the front door of L{linkrouter.collector.api} that sits before any resource:
request bodies bounded by L{BoundedRequest} and L{CollectorSite}, the stats query's
parameters (L{stats_query}) and a registered link's record (C{_link_record}).
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import Request

from linkrouter.collector.api import CollectorSite, StatsQueryError, _link_record, stats_query
from linkrouter.collector.model import LinkRecord
from linkrouter.limits import LimitedHTTPChannel
from linkrouter.linkid import message_key

LIMIT = 100


class TCPLikeTransport(StringTransport):
    """
    A L{StringTransport} that, like TCP and TLS transports, lets a producer be unregistered
    twice, so a second refusal shows as what a client would see rather than as an error of
    the fake.
    """

    def unregisterProducer(self) -> None:
        self.producer = None
        self.streaming = None


class Leaf(Resource):
    """
    A resource that keeps every body it is given and answers C{ok}.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[bytes] = []

    def render_POST(self, request: Request) -> bytes:
        assert request.content is not None
        self.bodies.append(request.content.read())
        return b"ok"


def post(headers: bytes, body: bytes = b"") -> bytes:
    return b"POST /v1/events HTTP/1.1\r\nHost: collector\r\n" + headers + b"\r\n" + body


def chunked(*pieces: bytes) -> bytes:
    """
    C{pieces} as HTTP/1.1 chunks, with the last, empty chunk.
    """
    return b"".join(b"%x\r\n%b\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n\r\n"


class BoundedRequestTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.leaf = Leaf()
        self.site = CollectorSite(self.leaf, LIMIT, reactor=Clock())
        peer = IPv4Address("TCP", "192.0.2.7", 40000)
        self.channel: LimitedHTTPChannel = self.site.buildProtocol(peer)  # type: ignore[assignment]
        self.transport = TCPLikeTransport(peerAddress=peer)
        self.channel.makeConnection(self.transport)

    def send(self, *segments: bytes) -> bytes:
        """
        Deliver C{segments} one by one, as separate reads; what was answered.
        """
        for segment in segments:
            self.channel.dataReceived(segment)
        return self.transport.value()

    def assertTooLarge(self, answer: bytes) -> None:
        """
        C{answer} is one 413 and nothing else, the connection is closing, and the leaf
        never saw a body.
        """
        self.assertTrue(answer.startswith(b"HTTP/1.1 413 "), answer[:100])
        self.assertEqual(answer.count(b"HTTP/1.1 "), 1, answer)
        self.assertIn(b"\r\nConnection: close\r\n", answer)
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.leaf.bodies, [])

    def test_declaredLengthOverLimit(self) -> None:
        """
        A declared length over the limit is answered 413 and the connection closed as soon
        as the headers are read: no buffer is made for the body, and the body that follows,
        at once or later, is neither stored nor answered.
        """
        answer = self.send(post(b"Content-Length: %d\r\n" % (LIMIT + 1), b"a" * 60))
        self.assertTooLarge(answer)
        self.assertIsNone(self.channel.requests[-1].content)
        self.assertEqual(self.send(b"b" * 41, post(b"Content-Length: 1\r\n", b"c")), answer)
        self.assertTooLarge(answer)

    def test_hugeDeclaredLength(self) -> None:
        """
        An absurd declared length is refused the same way, without allocating anything
        for it.
        """
        self.assertTooLarge(self.send(post(b"Content-Length: %d\r\n" % 10**30)))
        self.assertIsNone(self.channel.requests[-1].content)

    def test_declaredLengthAtLimit(self) -> None:
        """
        A body of exactly the limit is given to the resource whole.
        """
        answer = self.send(post(b"Content-Length: %d\r\n" % LIMIT, b"a" * LIMIT))
        self.assertTrue(answer.startswith(b"HTTP/1.1 200 "), answer)
        self.assertEqual(self.leaf.bodies, [b"a" * LIMIT])
        self.assertFalse(self.transport.disconnecting)

    def test_chunkedGrowsPastLimit(self) -> None:
        """
        A chunked body that grows past the limit, chunk by chunk in separate reads, is
        answered 413 when it passes the limit; the chunks after it are ignored.
        """
        headers = post(b"Transfer-Encoding: chunked\r\n")
        self.send(headers, b"40\r\n" + b"a" * 64 + b"\r\n")
        self.assertEqual(self.transport.value(), b"")
        answer = self.send(b"40\r\n" + b"b" * 64 + b"\r\n")
        self.assertTooLarge(answer)
        self.assertEqual(self.send(b"40\r\n" + b"c" * 64 + b"\r\n", b"0\r\n\r\n"), answer)
        self.assertTooLarge(answer)

    def test_chunkedPastLimitInOneRead(self) -> None:
        """
        A whole chunked body past the limit arriving in one read, its last chunk
        included, gets one 413 and no other answer: the chunks after the one that passed
        the limit are not counted again, and the request is never processed.
        """
        answer = self.send(post(b"Transfer-Encoding: chunked\r\n", chunked(*[b"x" * 64] * 4)))
        self.assertTooLarge(answer)

    def test_chunkedAtLimit(self) -> None:
        """
        A chunked body of exactly the limit, in any chunking, reaches the resource whole.
        """
        for pieces in [[b"a" * LIMIT], [b"a" * 64, b"b" * 36], [b"c"] * LIMIT]:
            self.leaf.bodies.clear()
            answer = self.send(post(b"Transfer-Encoding: chunked\r\n", chunked(*pieces)))
            self.assertTrue(answer.endswith(b"ok"), answer)
            self.assertEqual(self.leaf.bodies, [b"".join(pieces)])
        self.assertFalse(self.transport.disconnecting)

    def test_limitIsPerRequest(self) -> None:
        """
        Requests on one connection are bounded one by one, not together; a request over
        the limit after good ones is refused.
        """
        good = post(b"Content-Length: %d\r\n" % LIMIT, b"g" * LIMIT)
        self.send(good, good, post(b"Transfer-Encoding: chunked\r\n", chunked(b"h" * LIMIT)))
        self.assertEqual(self.leaf.bodies, [b"g" * LIMIT] * 2 + [b"h" * LIMIT])
        answer = self.send(post(b"Content-Length: %d\r\n" % (LIMIT + 1)))
        self.assertEqual(answer.count(b"HTTP/1.1 200 "), 3)
        self.assertIn(b"HTTP/1.1 413 ", answer)
        self.assertTrue(self.transport.disconnecting)

    def test_tooLargeAnswerIsJson(self) -> None:
        """
        The 413's body is the API's JSON error, exactly as long as its Content-Length says.
        """
        answer = self.send(post(b"Content-Length: %d\r\n" % (LIMIT + 1)))
        head, _, body = answer.partition(b"\r\n\r\n")
        lengths = [line for line in head.split(b"\r\n") if line.startswith(b"Content-Length:")]
        self.assertEqual(lengths, [b"Content-Length: %d" % len(body)])
        self.assertEqual(list(json.loads(body)), ["error"])

    def test_noContinueAfterRefusal(self) -> None:
        """
        A client that asks C{Expect: 100-continue} with a declared length over the limit
        gets only the 413, never an invitation to send the body after it.
        """
        answer = self.send(post(b"Content-Length: %d\r\nExpect: 100-continue\r\n" % (LIMIT + 1)))
        self.assertNotIn(b"100 Continue", answer)
        self.assertTooLarge(answer)

    def test_continueWithinLimit(self) -> None:
        """
        C{Expect: 100-continue} within the limit is invited and served.
        """
        answer = self.send(post(b"Content-Length: 2\r\nExpect: 100-continue\r\n"), b"ok")
        self.assertTrue(answer.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 "))
        self.assertEqual(self.leaf.bodies, [b"ok"])

    def test_badLengthRefused(self) -> None:
        """
        A Content-Length that is not a number is refused by the channel with 400.
        """
        for value in [b"-1", b"abc", b"1e3", b"0x10"]:
            self.setUp()
            answer = self.send(post(b"Content-Length: " + value + b"\r\n"))
            self.assertTrue(answer.startswith(b"HTTP/1.1 400 "), (value, answer))
            self.assertEqual(self.leaf.bodies, [])


EMPTY_QUERY = {
    "start_ms": None,
    "end_ms": None,
    "tag": None,
    "message": None,
    "link": None,
    "bucket": "hour",
    "top": 10,
}
DAY_MS = 1_796_083_200_000  # 2026-12-01T00:00:00Z


def query(**arguments: bytes | list[bytes]) -> dict[str, Any]:
    """
    The stats query of C{arguments}, as keyword arguments.
    """
    raw = {
        name.encode(): value if isinstance(value, list) else [value]
        for name, value in arguments.items()
    }
    result: dict[str, Any] = stats_query(raw, dict)
    return result


class StatsQueryTests(SynchronousTestCase):
    def refused(self, arguments: dict[bytes, list[bytes]], *words: str) -> str:
        """
        The query is refused with one line holding C{words}.
        """
        message = str(self.assertRaises(StatsQueryError, stats_query, arguments, dict))
        self.assertNotIn("\n", message)
        for word in words:
            self.assertIn(word, message)
        return message

    def test_defaults(self) -> None:
        """
        No parameters, or empty ones, give the documented defaults.
        """
        self.assertEqual(stats_query({}, dict), EMPTY_QUERY)
        empty = {name: b"" for name in ["from", "to", "tag", "message", "link", "bucket", "top"]}
        self.assertEqual(query(**empty), EMPTY_QUERY)

    def test_times(self) -> None:
        """
        C{from} and C{to} take ISO 8601 dates and times, with or without C{Z} or an offset
        (without one, UTC), and seconds since the epoch with or without a fraction.
        """
        ten = DAY_MS + 10 * 3600 * 1000
        for value, milliseconds in [
            (b"2026-12-01", DAY_MS),
            (b"2026-12-01T10:00:00Z", ten),
            (b"2026-12-01T10:00:00", ten),
            (b"2026-12-01T11:00:00+01:00", ten),
            (b"2026-12-01T10:00:00.250Z", ten + 250),
            (b"1796083200", DAY_MS),
            (b"1796083200.25", DAY_MS + 250),
            (b"0", 0),
        ]:
            self.assertEqual(query(**{"from": value})["start_ms"], milliseconds, value)
            self.assertEqual(query(to=value)["end_ms"], milliseconds, value)

    def test_allDigitsAreSeconds(self) -> None:
        """
        A value of only digits is seconds since the epoch, even one that could be read as
        a basic ISO date.
        """
        self.assertEqual(query(**{"from": b"20261201"})["start_ms"], 20_261_201_000)

    def test_badTimes(self) -> None:
        """
        Anything else is refused, naming the parameter.
        """
        for value in [
            b"yesterday",
            b"2026-13-01",
            b"2026-02-30",
            b"2026-12-01T25:00:00Z",
            b"2026-12-01T10:00:00ZZ",
            b"1e9",
            b"-5",
            b"+5",
            b"0x10",
            b"1234567890123",
            b"1796083200.",
            b"nan",
            b" 1796083200",
        ]:
            self.refused({b"from": [value]}, "from:", "ISO 8601")
            self.refused({b"to": [value]}, "to:", "ISO 8601")

    def test_repeatedParameters(self) -> None:
        """
        A parameter given twice is refused, even with the same value: which one would
        count is not the caller's guess to make.
        """
        for name in [b"from", b"to", b"tag", b"message", b"link", b"bucket", b"top"]:
            self.refused({name: [b"1", b"1"]}, name.decode(), "more than once")

    def test_unknownParameters(self) -> None:
        """
        An unknown parameter is refused, naming it (cut to 40 characters); names are case
        sensitive.
        """
        self.refused({b"since": [b"1"]}, "since: unknown parameter")
        self.refused({b"From": [b"1"]}, "From: unknown parameter")
        self.refused({b"x" * 10_000: [b"1"]}, "x" * 40 + ": unknown")
        self.assertLess(len(self.refused({b"x" * 10_000: [b"1"]})), 100)
        self.refused({b"\xff\xfe": [b"1"]}, "unknown parameter")

    def test_notUtf8(self) -> None:
        """
        A value that is not UTF-8 is refused, naming the parameter.
        """
        for name in [b"from", b"tag", b"message", b"link", b"bucket", b"top"]:
            self.refused({name: [b"a\xffb"]}, name.decode() + ": not UTF-8")

    def test_top(self) -> None:
        """
        C{top} is a whole number from 1 to 100.
        """
        for value, top in [(b"1", 1), (b"100", 100), (b"010", 10), (b"", 10)]:
            self.assertEqual(query(top=value)["top"], top)
        for value in [b"0", b"101", b"abc", b"-1", b"1.5", b"+5", b" 5", b"1e2", b"9" * 400]:
            self.refused({b"top": [value]}, "top:", "1 to 100")

    def test_topUnicodeDigits(self) -> None:
        """
        A C{top} of characters Python calls digits but C{int} does not read (C{\u00b2}) is a
        refused parameter, not an internal error; other scripts' digits are refused too.
        """
        for value in ["\u00b2", "\u2460", "\uff11\uff10", "\u0665"]:
            self.refused({b"top": [value.encode()]}, "top:", "1 to 100")

    def test_bucket(self) -> None:
        """
        C{bucket} is C{hour} or C{day}, nothing else.
        """
        self.assertEqual(query(bucket=b"day")["bucket"], "day")
        self.assertEqual(query(bucket=b"hour")["bucket"], "hour")
        for value in [b"week", b"HOUR", b"Day", b"hour ", b"minute"]:
            self.refused({b"bucket": [value]}, "bucket:")

    def test_messageIdBecomesItsKey(self) -> None:
        """
        A message id is turned into its 12-character message key; a value that already is
        a message key is kept.
        """
        for message_id in ["<20261201.abc@mail.example>", "campaign-7", "été", "x" * 998]:
            self.assertEqual(
                query(message=message_id.encode())["message"], message_key(message_id)
            )
        key = message_key("<20261201.abc@mail.example>")
        self.assertEqual(query(message=key.encode())["message"], key)
        self.assertEqual(query(message=b"Xk3v9Qa_Lm0Z")["message"], "Xk3v9Qa_Lm0Z")
        self.refused({b"message": [b"x" * 999]}, "message:", "too long")

    def test_link(self) -> None:
        """
        C{link} is a LinkID: 1 to 32 of the base64url alphabet.
        """
        self.assertEqual(query(link=b"Xk3v9Qa_Lm0Z7")["link"], "Xk3v9Qa_Lm0Z7")
        self.assertEqual(query(link=b"a" * 32)["link"], "a" * 32)
        for value in [b"a" * 33, b"a/b", b"a b", b"a=", b"a+b", "é".encode()]:
            self.refused({b"link": [value]}, "link:", "LinkID")

    def test_tag(self) -> None:
        """
        C{tag} is any text up to 998 characters.
        """
        self.assertEqual(query(tag="Wëlcome 🎉".encode())["tag"], "Wëlcome 🎉")
        self.assertEqual(query(tag=b"t" * 998)["tag"], "t" * 998)
        self.refused({b"tag": [b"t" * 999]}, "tag:", "too long")

    def test_everything(self) -> None:
        """
        All parameters together.
        """
        self.assertEqual(
            query(
                **{"from": b"2026-12-01"},
                to=b"1796169600",
                tag=b"welcome",
                message=b"<m@x>",
                link=b"Lk04",
                bucket=b"day",
                top=b"25",
            ),
            {
                "start_ms": DAY_MS,
                "end_ms": DAY_MS + 86_400_000,
                "tag": "welcome",
                "message": message_key("<m@x>"),
                "link": "Lk04",
                "bucket": "day",
                "top": 25,
            },
        )

    @settings(max_examples=300, deadline=None)
    @given(
        st.dictionaries(
            st.one_of(
                st.sampled_from([b"from", b"to", b"tag", b"message", b"link", b"bucket"]),
                st.binary(max_size=8),
            ),
            st.lists(st.binary(max_size=40), min_size=1, max_size=2),
            max_size=4,
        )
    )
    def test_anyArgumentsAnswered(self, arguments: dict[bytes, list[bytes]]) -> None:
        """
        Any arguments at all give a query or a L{StatsQueryError}, never another error.
        """
        with contextlib.suppress(StatsQueryError):
            stats_query(arguments, dict)


GOOD_RECORD = {"link": "Xk3v9Qa_Lm0Z7", "url": "https://shop.example/sale"}


def record(**fields: object) -> LinkRecord | str:
    """
    The record of L{GOOD_RECORD} with C{fields} changed, as a JSON line.
    """
    return _link_record(json.dumps({**GOOD_RECORD, **fields}).encode())


class LinkRecordTests(SynchronousTestCase):
    def test_minimal(self) -> None:
        """
        A LinkID and its URL make a record.
        """
        self.assertEqual(record(), LinkRecord("Xk3v9Qa_Lm0Z7", "https://shop.example/sale"))

    def test_full(self) -> None:
        """
        Every field is read.
        """
        self.assertEqual(
            record(
                message="<m@x>",
                part="text",
                position=7,
                tag="welcome",
                recipient="5e884898da28047151d0e56f8dc62927",
                url="http://plain.example/",
            ),
            LinkRecord(
                link_id="Xk3v9Qa_Lm0Z7",
                url="http://plain.example/",
                message_id="<m@x>",
                part="text",
                position=7,
                tag="welcome",
                recipient_hash="5e884898da28047151d0e56f8dc62927",
            ),
        )

    def test_nullsAreAbsent(self) -> None:
        """
        Optional fields given as null are as if absent.
        """
        nulls = dict.fromkeys(["message", "part", "position", "tag", "recipient"])
        self.assertEqual(record(**nulls), record())

    def test_unknownFields(self) -> None:
        """
        A field the collector does not know is refused, naming it, briefly.
        """
        self.assertEqual(record(destination="x"), "unknown destination")
        self.assertEqual(record(b=1, a=2), "unknown a, b")
        reason = record(**{f"f{n}" * 50: n for n in range(100)})
        self.assertIsInstance(reason, str)
        self.assertLessEqual(len(str(reason)), 210)

    def test_badLinks(self) -> None:
        """
        A missing or malformed LinkID is refused.
        """
        for link in ["", "a" * 33, "a b", "a/b", "a=", "é", None, 5, ["Lk04"], {"id": "x"}]:
            self.assertEqual(record(link=link), "invalid link", link)
        self.assertEqual(_link_record(b'{"url": "https://x.example/"}'), "invalid link")
        self.assertIsInstance(record(link="a" * 32), LinkRecord)

    def test_badUrls(self) -> None:
        """
        A URL that is missing, empty, not a string, over 8,192 characters or not http(s)
        is refused.
        """
        for url in [
            "",
            None,
            5,
            ["https://x.example/"],
            "javascript:alert(1)",
            "data:text/html,<script>",
            "ftp://x.example/",
            "file:///etc/passwd",
            " https://x.example/",
            "//x.example/",
            "https://x.example/" + "a" * 8175,
        ]:
            self.assertEqual(record(url=url), "invalid url", url)
        self.assertEqual(_link_record(b'{"link": "Lk04"}'), "invalid url")
        longest = "https://x.example/" + "a" * 8174
        self.assertEqual(len(longest), 8192)
        self.assertIsInstance(record(url=longest), LinkRecord)

    def test_overLongTexts(self) -> None:
        """
        C{message}, C{tag} and C{recipient} are strings of at most 998 characters.
        """
        for name in ["message", "tag", "recipient"]:
            self.assertIsInstance(record(**{name: "m" * 998}), LinkRecord)
            for value in ["m" * 999, 5, True, ["m"], {"m": 1}]:
                self.assertEqual(record(**{name: value}), f"invalid {name}", (name, value))

    def test_badParts(self) -> None:
        """
        C{part} is C{html} or C{text}.
        """
        for part in ["HTML", "", "both", 1, True, ["html"]]:
            self.assertEqual(record(part=part), "invalid part", part)

    def test_badPositions(self) -> None:
        """
        C{position} is a whole number from 1 to 2**31 - 1; booleans, floats and strings
        are not.
        """
        self.assertIsInstance(record(position=1), LinkRecord)
        self.assertIsInstance(record(position=2**31 - 1), LinkRecord)
        for position in [0, -1, 2**31, True, 1.0, 1.5, "1", [1]]:
            self.assertEqual(record(position=position), "invalid position", position)

    def test_notJsonObjects(self) -> None:
        """
        A line that is not a JSON object is refused as such.
        """
        for line in [b"", b"{", b"\xff\xfe", b'{"link": "a",}', b"NaN}"]:
            self.assertEqual(_link_record(line), "not JSON", line)
        for line in [b"[]", b'"x"', b"null", b"1", b"true"]:
            self.assertEqual(_link_record(line), "not a JSON object", line)

    def test_deepNesting(self) -> None:
        """
        A line nested deeper than the JSON parser recurses is refused like any bad line,
        rather than failing the whole request.
        """
        for line in [b"[" * 100_000, b'{"link": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"]:
            self.assertIsInstance(_link_record(line), str)

    @settings(max_examples=300, deadline=None)
    @given(
        st.one_of(
            st.binary(max_size=200),
            st.dictionaries(
                st.sampled_from(["link", "url", "message", "part", "position", "tag", "x"]),
                st.recursive(
                    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                    lambda inner: (
                        st.lists(inner, max_size=3)
                        | st.dictionaries(st.text(max_size=3), inner, max_size=3)
                    ),
                    max_leaves=5,
                ),
            ).map(lambda fields: json.dumps(fields).encode()),
        )
    )
    def test_anyLineAnswered(self, line: bytes) -> None:
        """
        Any line gives a record or a reason, never an exception.
        """
        self.assertIsInstance(_link_record(line), LinkRecord | str)
