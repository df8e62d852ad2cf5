"""
Tests for L{linkrouter.collector.api}: the collector's resources over an in-memory
transport, with a store that keeps events in a dictionary.
"""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Sequence
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from linkrouter.codec import Kind, Part, TrackedLink
from linkrouter.collector.api import (
    CollectorSite,
    EventsResource,
    Limits,
    LinksResource,
    StatsResource,
    build_root,
)
from linkrouter.collector.metrics import CollectorMetrics
from linkrouter.collector.model import Enrichment, Event, IngestResult, LinkRecord
from linkrouter.collector.store import KindTotals, LinkCount, Point, Stats, Tally
from linkrouter.collector.tokens import Role, Tokens
from linkrouter.event import Hit, IPStorage, encode_hits
from linkrouter.linkid import message_key
from linkrouter.metrics import MetricsResource

ROUTER_TOKEN = b"router-token-0123456789"
OTHER_ROUTER_TOKEN = b"router-token-9876543210"
ISSUER_TOKEN = b"issuer-token-0123456789"
READER_TOKEN = b"reader-token-0123456789"
TOKENS = Tokens(
    {
        Role.ROUTERS: {"r1": ROUTER_TOKEN, "r2": OTHER_ROUTER_TOKEN},
        Role.ISSUERS: {"mailer": ISSUER_TOKEN},
        Role.READERS: {"marketing": READER_TOKEN},
    }
)


def batch(count: int, router: str = "r1", first: int = 1) -> bytes:
    """
    C{count} journal lines as the router writes them.
    """
    link = TrackedLink(Kind.CLICK, Part.HTML, "https://x.example/", "k1", "Xk3v9Qa_Lm0Z1", 10)
    hits = [
        Hit(1_764_780_000.0 + n, link, b"GET", "192.0.2.7", b"agent-%d" % n) for n in range(count)
    ]
    return encode_hits(hits, router, first, IPStorage.FULL)[0]


class MemoryStore:
    """
    Events by id, link records by LinkID; C{fail_with} makes the next call fail.
    """

    description = "memory"

    def __init__(self) -> None:
        self.events: dict[str, tuple[Event, Enrichment]] = {}
        self.links: dict[str, LinkRecord] = {}
        self.queries: list[Any] = []
        self.fail_with: Exception | None = None
        self.pending: Deferred[IngestResult] | None = None

    def _failure(self) -> Deferred[Any] | None:
        if self.fail_with is not None:
            error, self.fail_with = self.fail_with, None
            return fail(error)
        return None

    def ingest(self, rows: Sequence[tuple[Event, Enrichment]]) -> Deferred[IngestResult]:
        failed = self._failure()
        if failed is not None:
            return failed
        accepted = 0
        for event, enrichment in rows:
            if event.event_id not in self.events:
                self.events[event.event_id] = (event, enrichment)
                accepted += 1
        result = IngestResult(accepted, len(rows) - accepted)
        if self.pending is not None:
            pending = self.pending
            pending.addCallback(lambda _: result)
            return pending
        return succeed(result)

    def register_links(self, records: Sequence[LinkRecord]) -> Deferred[int]:
        for record in records:
            self.links[record.link_id] = record
        return succeed(len(records))

    def stats(self, query: Any) -> Deferred[Any]:
        failed = self._failure()
        if failed is not None:
            return failed
        self.queries.append(query)
        return succeed(STATS)


def tally(value: str | None, clicks: int, opens: int, bot_clicks: int, bot_opens: int) -> Tally:
    return Tally(value, clicks, opens, bot_clicks, bot_opens)


STATS = Stats(
    clicks=KindTotals(total=5, unique=2, human=4, bot=1),
    opens=KindTotals(total=3, unique=1, human=3, bot=0),
    first_click_ms=1_796_083_200_123,
    last_click_ms=1_796_086_800_000,
    bot_reasons=(tally("head-request", 1, 0, 1, 0),),
    browsers=(tally("Firefox", 4, 3, 0, 0), tally(None, 1, 0, 1, 0)),
    platforms=(tally("Desktop", 5, 3, 1, 0),),
    systems=(tally("Linux", 5, 3, 1, 0),),
    countries=(tally("NL", 5, 3, 1, 0),),
    parts=(tally("html", 4, 3, 1, 0), tally("text", 1, 0, 0, 0)),
    top_links=(LinkCount("Xk3v9Qa_Lm0Z1", "https://shop.example/", 4, 1),),
    bucket="hour",
    series=(Point(1_796_083_200_000, 5, 3, 1, 0),),
)


class Response:
    def __init__(self, raw: bytes) -> None:
        head, _, self.body = raw.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        self.status = int(lines[0].split()[1]) if lines[0] else 0
        self.headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            self.headers[name.strip().lower()] = value.strip()

    def json(self) -> Any:
        return json.loads(self.body)


class CollectorAPITests(SynchronousTestCase):
    def setUp(self) -> None:
        self.store = MemoryStore()
        self.metrics = CollectorMetrics()
        self.enriched: list[list[str]] = []
        limits = Limits(max_body_bytes=64 * 1024, max_inflated_bytes=256 * 1024, max_events=500)

        def enrich(events: Sequence[Event]) -> list[Enrichment]:
            self.enriched.append([event.event_id for event in events])
            return [Enrichment(browser_family="Firefox") for _ in events]

        events = EventsResource(
            lambda: TOKENS, self.store, enrich, maybeDeferred, limits, self.metrics.observe_events
        )
        links = LinksResource(lambda: TOKENS, self.store, maybeDeferred, limits)
        stats = StatsResource(lambda: TOKENS, self.store)
        root = build_root(events, links, stats, MetricsResource(self.metrics))
        self.site = CollectorSite(root, limits.max_body_bytes, reactor=Clock())

    def request(
        self,
        method: bytes,
        path: bytes,
        body: bytes = b"",
        headers: dict[bytes, bytes] | None = None,
    ) -> Response:
        peer = IPv4Address("TCP", "192.0.2.9", 40000)
        protocol = self.site.buildProtocol(peer)
        assert protocol is not None
        self.transport = StringTransport(peerAddress=peer)
        protocol.makeConnection(self.transport)
        lines = [method + b" " + path + b" HTTP/1.1", b"Host: collector.example"]
        lines += [name + b": " + value for name, value in (headers or {}).items()]
        lines.append(b"Content-Length: %d" % len(body))
        protocol.dataReceived(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        self.protocol = protocol
        return Response(self.transport.value())

    def post_events(
        self, data: bytes, token: bytes = ROUTER_TOKEN, router: bytes | None = b"r1"
    ) -> Response:
        headers = {b"Authorization": b"Bearer " + token, b"Content-Encoding": b"gzip"}
        if router is not None:
            headers[b"X-Linkrouter-Router"] = router
        return self.request(b"POST", b"/v1/events", gzip.compress(data), headers)

    def test_ingest(self) -> None:
        """
        A router's batch is stored with its enrichment and answered with its counts.
        """
        response = self.post_events(batch(3))
        self.assertEqual(response.status, 200, response.body)
        self.assertEqual(response.json(), {"accepted": 3, "duplicates": 0, "rejected": []})
        self.assertEqual(len(self.store.events), 3)
        event, enrichment = next(iter(self.store.events.values()))
        self.assertEqual((event.router, event.user_agent), ("r1", "agent-0"))
        self.assertEqual(enrichment.browser_family, "Firefox")
        self.assertIn(b'linkcollector_events_total{outcome="accepted"} 3.0', self.metrics.render())

    def test_replayIsDuplicates(self) -> None:
        """
        The same batch twice: the second time every event is a duplicate, nothing new.
        """
        data = batch(4)
        self.post_events(data)
        response = self.post_events(data)
        self.assertEqual(response.json(), {"accepted": 0, "duplicates": 4, "rejected": []})
        self.assertEqual(len(self.store.events), 4)

    def test_badLinesNamedGoodLinesKept(self) -> None:
        """
        A batch with refused lines answers 422 naming each (from 1) with a reason, and the
        good lines beside them are stored.
        """
        good = batch(3).splitlines(keepends=True)
        data = good[0] + b"not json\n" + good[1] + good[2].replace(b'"GET"', b'"get"')
        response = self.post_events(data)
        self.assertEqual(response.status, 422)
        answer = response.json()
        self.assertEqual((answer["accepted"], answer["duplicates"]), (2, 0))
        self.assertEqual([item["line"] for item in answer["rejected"]], [2, 4])
        self.assertEqual(len(self.store.events), 2)

    def test_otherRoutersEvents(self) -> None:
        """
        Lines naming another router than the token's are refused; the rest kept.
        """
        response = self.post_events(batch(2, router="r2"))
        self.assertEqual(response.status, 422)
        self.assertEqual(
            {item["reason"] for item in response.json()["rejected"]},
            {"the router id is not the sender's"},
        )
        self.assertEqual(self.store.events, {})

    def test_tokens(self) -> None:
        """
        No token, a wrong one, another role's, or a router's token under another router's
        name: 401 with a challenge, and nothing stored or even parsed.
        """
        for token, router in [
            (b"", b"r1"),
            (b"wrong-token-0123456789", b"r1"),
            (READER_TOKEN, b"r1"),
            (OTHER_ROUTER_TOKEN, b"r1"),
        ]:
            response = self.post_events(batch(1), token, router)
            self.assertEqual(response.status, 401, token)
            self.assertIn(b"Bearer", response.headers[b"www-authenticate"])
        self.assertEqual((self.store.events, self.enriched), ({}, []))

    def test_tokenWithoutRouterHeader(self) -> None:
        """
        Without C{X-Linkrouter-Router} the token alone names the router.
        """
        response = self.post_events(batch(1, router="r2"), OTHER_ROUTER_TOKEN, None)
        self.assertEqual(response.status, 200)

    def test_notGzip(self) -> None:
        """
        A body that is not gzip is a 400 with a one-line reason; nothing stored.
        """
        response = self.request(
            b"POST",
            b"/v1/events",
            batch(2),
            {b"Authorization": b"Bearer " + ROUTER_TOKEN},
        )
        self.assertEqual(response.status, 400)
        self.assertEqual(response.json(), {"error": "the body is not gzip"})
        self.assertEqual(self.store.events, {})

    def test_gzipBomb(self) -> None:
        """
        A small body that inflates past the limit is a 413; nothing stored.
        """
        bomb = gzip.compress(b"\n" * (1024 * 1024))
        self.assertLess(len(bomb), 64 * 1024)
        response = self.request(
            b"POST", b"/v1/events", bomb, {b"Authorization": b"Bearer " + ROUTER_TOKEN}
        )
        self.assertEqual(response.status, 413)
        self.assertEqual(self.store.events, {})

    def test_bodyTooLarge(self) -> None:
        """
        A declared body over the limit is refused with 413 before it is read, and the
        connection is closed.
        """
        response = self.request(
            b"POST",
            b"/v1/events",
            b"x" * (64 * 1024 + 1),
            {b"Authorization": b"Bearer " + ROUTER_TOKEN},
        )
        self.assertEqual(response.status, 413)
        self.assertTrue(self.transport.disconnecting)

    def test_storeFailure(self) -> None:
        """
        A store that fails answers 500 with no detail (the router retries later); the
        failure is logged.
        """
        self.store.fail_with = RuntimeError("disk I/O error at /var/lib/secret")
        response = self.post_events(batch(2))
        self.assertEqual(response.status, 500)
        self.assertEqual(response.json(), {"error": "internal error"})
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_answerOnlyWhenDurable(self) -> None:
        """
        The answer waits for the store: until the store's Deferred fires, nothing is sent.
        """
        self.store.pending = Deferred()
        response = self.post_events(batch(1))
        self.assertEqual(response.status, 0)
        self.store.pending.callback(None)
        self.assertEqual(Response(self.transport.value()).status, 200)

    def test_clientGoneBeforeAnswer(self) -> None:
        """
        A router that hangs up before the answer costs nothing: the batch is stored and no
        write is attempted on the closed connection.
        """
        self.store.pending = Deferred()
        self.post_events(batch(1))
        self.protocol.connectionLost(None)  # type: ignore[arg-type]
        self.store.pending.callback(None)
        self.assertEqual(len(self.store.events), 1)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_registerLinks(self) -> None:
        """
        An issuer registers LinkIDs as JSON lines, gzip or not; bad lines are named.
        """
        lines = [
            {
                "link": "Xk3v9Qa_Lm0Z1",
                "url": "https://shop.example/",
                "part": "html",
                "position": 1,
                "message": "<m1@example>",
                "tag": "welcome",
            },
            {"link": "bad link!", "url": "https://x.example/"},
        ]
        body = b"\n".join(json.dumps(line).encode() for line in lines)
        response = self.request(
            b"POST", b"/v1/links", body, {b"Authorization": b"Bearer " + ISSUER_TOKEN}
        )
        self.assertEqual(response.status, 422)
        self.assertEqual(response.json()["registered"], 1)
        self.assertEqual(response.json()["rejected"], [{"line": 2, "reason": "invalid link"}])
        self.assertEqual(self.store.links["Xk3v9Qa_Lm0Z1"].tag, "welcome")
        response = self.request(
            b"POST",
            b"/v1/links",
            gzip.compress(body.splitlines()[0]),
            {b"Authorization": b"Bearer " + ISSUER_TOKEN, b"Content-Encoding": b"gzip"},
        )
        self.assertEqual(response.status, 200)

    def test_linksNeedIssuer(self) -> None:
        response = self.request(
            b"POST", b"/v1/links", b"{}", {b"Authorization": b"Bearer " + ROUTER_TOKEN}
        )
        self.assertEqual(response.status, 401)

    def test_stats(self) -> None:
        """
        A reader gets the store's stats document for the query its parameters describe;
        HTTP Basic with the token as password works too, for browsers.
        """
        basic = base64.b64encode(b"anyone:" + READER_TOKEN)
        response = self.request(
            b"GET",
            b"/v1/stats?bucket=day&message=%3Cm1%40example%3E&from=2026-12-01",
            headers={b"Authorization": b"Basic " + basic},
        )
        self.assertEqual(response.status, 200, response.body)
        [query] = self.store.queries
        self.assertEqual(query.bucket, "day")
        self.assertEqual(query.message, message_key("<m1@example>"))
        self.assertEqual(query.start_ms, 1_796_083_200_000)  # 2026-12-01T00:00Z
        self.assertEqual(
            response.json(),
            {
                "query": {
                    "from": "2026-12-01T00:00:00.000Z",
                    "to": None,
                    "tag": None,
                    "message": message_key("<m1@example>"),
                    "link": None,
                    "bucket": "day",
                    "top": 10,
                },
                "totals": {
                    "clicks": 5,
                    "unique_clicks": 2,
                    "opens": 3,
                    "unique_opens": 1,
                    "human": 7,
                    "bot": 1,
                    "first_click": "2026-12-01T00:00:00.123Z",
                    "last_click": "2026-12-01T01:00:00.000Z",
                },
                "bots": [{"reason": "head-request", "events": 1}],
                "browsers": [
                    {"name": "Firefox", "total": 7, "human": 7, "bot": 0},
                    {"name": "Unknown", "total": 1, "human": 0, "bot": 1},
                ],
                "platforms": [{"name": "Desktop", "total": 8, "human": 7, "bot": 1}],
                "os": [{"name": "Linux", "total": 8, "human": 7, "bot": 1}],
                "countries": [{"name": "NL", "total": 8, "human": 7, "bot": 1}],
                "parts": [
                    {"name": "html", "total": 7, "human": 6, "bot": 1},
                    {"name": "text", "total": 1, "human": 1, "bot": 0},
                ],
                "links": [
                    {
                        "link": "Xk3v9Qa_Lm0Z1",
                        "url": "https://shop.example/",
                        "clicks": 4,
                        "human": 3,
                        "bot": 1,
                    }
                ],
                "series": [
                    {
                        "start": "2026-12-01T00:00:00Z",
                        "clicks": 5,
                        "opens": 3,
                        "human": 7,
                        "bot": 1,
                    }
                ],
            },
        )

    def test_statsSection(self) -> None:
        response = self.request(
            b"GET", b"/v1/stats/totals", headers={b"Authorization": b"Bearer " + READER_TOKEN}
        )
        self.assertEqual(set(response.json()), {"query", "totals"})
        self.assertEqual(response.json()["totals"]["clicks"], 5)
        response = self.request(
            b"GET", b"/v1/stats/secrets", headers={b"Authorization": b"Bearer " + READER_TOKEN}
        )
        self.assertEqual(response.status, 404)

    def test_statsBadQuery(self) -> None:
        response = self.request(
            b"GET", b"/v1/stats?top=1000", headers={b"Authorization": b"Bearer " + READER_TOKEN}
        )
        self.assertEqual(response.status, 400)
        self.assertEqual(response.json(), {"error": "top: not a number from 1 to 100"})
        self.assertEqual(self.store.queries, [])

    def test_statsNeedReader(self) -> None:
        response = self.request(
            b"GET", b"/v1/stats", headers={b"Authorization": b"Bearer " + ROUTER_TOKEN}
        )
        self.assertEqual(response.status, 401)
        self.assertIn(b"Basic", response.headers[b"www-authenticate"])

    def test_healthAndMetrics(self) -> None:
        self.assertEqual(self.request(b"GET", b"/healthz").body, b"ok\n")
        self.assertIn(b"linkcollector_events_total", self.request(b"GET", b"/metrics").body)
