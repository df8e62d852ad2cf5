"""
Tests for L{linkrouter.collector.enrich}: what an event's raw facts become, the bot rules
and their reasons, message bursts across batches, and events of any shape.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from linkrouter.collector.enrich import Enricher, MessageBursts, default_enricher
from linkrouter.collector.geo import Address, GeoDatabaseError, IGeoLocator, Place
from linkrouter.collector.model import Enrichment, Event, Platform, message_key
from linkrouter.collector.scanners import ScannerListInvalid, default_scanners
from linkrouter.collector.useragent import AgentParser

from .test_enrich_geo import city_database

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
    "like Gecko) Version/18.1 Mobile/15E148 Safari/604.1"
)
GMAIL_PROXY = (
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
)
YAHOO_PROXY = "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html"

ISSUED = 1_764_780_000
LATER = (ISSUED + 3600) * 1000  # an hour after issue, in milliseconds
MESSAGE = "TWVzc2FnZTAx"  # twelve characters: the message key
assert len(MESSAGE) == 12


def event(
    *,
    number: int = 1,
    kind: str = "click",
    link: str = MESSAGE + "aaaa",
    at: int = LATER,
    method: str = "GET",
    ip: str | None = "81.2.69.160",
    user_agent: str = CHROME,
) -> Event:
    return Event(
        event_id=f"event-{number}",
        sequence=number,
        router="r1",
        timestamp_ms=at,
        kind=kind,
        link_id=link,
        key_id="k1",
        part="html",
        issued_at=ISSUED,
        method=method,
        ip=ip,
        user_agent=user_agent,
    )


@implementer(IGeoLocator)
@attrs.frozen
class MemoryLocator:
    """
    Places from a dictionary keyed by address text: a fake of L{IGeoLocator}.
    """

    places: Mapping[str, Place]
    asked: list[str] = attrs.field(factory=list, eq=False)

    def locate(self, address: Address) -> Place:
        self.asked.append(str(address))
        return self.places.get(str(address), Place())


PLACES = {
    "81.2.69.160": Place("GB", "England", "London", "EXAMPLE-ISP"),
    "81.2.69.0": Place("GB", "England", None, "EXAMPLE-ISP"),
    "40.94.16.5": Place("CA", None, None, "MICROSOFT-CORP-MSN-AS-BLOCK"),
    "205.139.110.1": Place("US", None, None, "MIMECAST"),
    "66.249.93.1": Place("US", None, None, "GOOGLE"),
    "2a02:8108:1::": Place("DE", None, None, "Vodafone GmbH"),
}


AGENTS = AgentParser()  # building one compiles the regexes: 0.2 s
SCANNERS = default_scanners()


def enricher(**options: int) -> Enricher:
    return Enricher(MemoryLocator(PLACES), SCANNERS, agents=AGENTS, **options)


def reasons(result: Enrichment) -> tuple[str, ...]:
    return result.bot_reasons


class FactsTests(SynchronousTestCase):
    def test_person(self) -> None:
        """
        A person's click gets its browser, system, platform and place, and no bot reason.
        """
        [result] = enricher().enrich([event()])
        self.assertEqual(
            result,
            Enrichment(
                browser_family="Chrome",
                browser_version="131.0.0",
                os_family="Windows",
                os_version="10",
                device=None,
                platform=Platform.DESKTOP,
                country="GB",
                region="England",
                city="London",
                network="EXAMPLE-ISP",
                bot_reasons=(),
            ),
        )
        self.assertFalse(result.bot)

    def test_mobile(self) -> None:
        """
        A phone's click is Mobile, placed by its truncated IPv6 address.
        """
        [result] = enricher().enrich([event(user_agent=IPHONE, ip="2a02:8108:1::")])
        self.assertEqual(
            (result.platform, result.device, result.country), (Platform.MOBILE, "iPhone", "DE")
        )

    def test_addresses(self) -> None:
        """
        Truncated addresses are placed; an IPv4-mapped IPv6 address is placed as IPv4; no
        address, garbage, private and loopback addresses are nowhere, without a lookup.
        """
        geo = MemoryLocator(PLACES)
        enrich = Enricher(geo, SCANNERS, agents=AGENTS).enrich
        cases = [
            ("81.2.69.0", "GB"),
            ("::ffff:81.2.69.160", "GB"),
            (None, None),
            ("", None),
            ("not an address", None),
            ("10.1.2.3", None),
            ("::1", None),
            ("fe80::1%eth0", None),
        ]
        results = enrich([event(number=n, ip=ip) for n, (ip, _) in enumerate(cases)])
        self.assertEqual([r.country for r in results], [country for _, country in cases])
        self.assertEqual(geo.asked, ["81.2.69.0", "81.2.69.160"])

    def test_cached(self) -> None:
        """
        Each address is located once while it stays in the cache.
        """
        geo = MemoryLocator(PLACES)
        enrich = Enricher(geo, SCANNERS, agents=AGENTS, cache_size=1).enrich
        enrich([event(number=n) for n in range(5)])
        self.assertEqual(geo.asked, ["81.2.69.160"])
        enrich([event(ip="81.2.69.0"), event(ip="2a02:8108:1::"), event(ip="81.2.69.0")])
        self.assertEqual(geo.asked, ["81.2.69.160", "81.2.69.0", "2a02:8108:1::"])


class WebMailTests(SynchronousTestCase):
    def test_proxyOpen(self) -> None:
        """
        An open fetched by Gmail's or Yahoo's image proxy is a WebMail open by a person:
        no bot reason, not even for the proxy's owner network; the proxy's data-centre
        place and fake system are not the reader's, so they are left unknown.
        """
        results = enricher().enrich(
            [
                event(kind="open", user_agent=GMAIL_PROXY, ip="66.249.93.1"),
                event(kind="open", user_agent=YAHOO_PROXY, ip="66.249.93.1", at=ISSUED * 1000),
            ]
        )
        for result in results:
            self.assertEqual(result.platform, Platform.WEBMAIL)
            self.assertEqual(result.bot_reasons, ())
            self.assertEqual((result.country, result.city, result.os_family), (None,) * 3)
            self.assertEqual(result.network, "GOOGLE")
        self.assertEqual(
            [r.browser_family for r in results], ["GmailImageProxy", "YahooMailProxy"]
        )

    def test_proxyClick(self) -> None:
        """
        A click with an image proxy's User-Agent is no reader's click.
        """
        [result] = enricher().enrich([event(user_agent=GMAIL_PROXY, ip="66.249.93.1")])
        self.assertEqual(result.platform, Platform.WEBMAIL)
        self.assertEqual(reasons(result), ("image-proxy-click:gmail", "scanner-network:google"))

    def test_openByPerson(self) -> None:
        """
        An open in a mail client, not through a proxy, is the client's platform.
        """
        [result] = enricher().enrich([event(kind="open", user_agent=IPHONE)])
        self.assertEqual((result.platform, result.bot_reasons), (Platform.MOBILE, ()))


class BotRuleTests(SynchronousTestCase):
    def test_headRequest(self) -> None:
        """
        A HEAD request is a machine's, whatever the case of the method.
        """
        results = enricher().enrich([event(method="HEAD"), event(method="head")])
        self.assertEqual([reasons(r) for r in results], [("head-request",)] * 2)

    def test_scannerUserAgents(self) -> None:
        """
        Listed scanner User-Agents give their scanner's id; crawlers that the list does
        not name are crawlers; an empty User-Agent is a machine's.
        """
        results = enricher().enrich(
            [
                event(user_agent="python-requests/2.32.3"),
                event(user_agent="Mozilla/5.0 (compatible; Google-Safety; +http://g.co/x)"),
                event(user_agent="Mozilla/5.0 (compatible; bingbot/2.0; +http://bing.com)"),
                event(user_agent="  "),
            ]
        )
        self.assertEqual(
            [reasons(r) for r in results],
            [
                ("scanner-user-agent:http-client",),
                ("scanner-user-agent:google",),
                ("crawler-user-agent",),
                ("empty-user-agent",),
            ],
        )

    def test_scannerNetworks(self) -> None:
        """
        Clicks from a scanner's owner network or listed range are its, even with a
        browser's User-Agent (as Safe Links sends), and for a truncated address.
        """
        results = enricher().enrich(
            [
                event(ip="40.94.16.5"),
                event(ip="205.139.110.1"),
                event(ip="40.107.1.0"),
                event(ip="2a01:111:f400:7e00::"),
            ]
        )
        self.assertEqual(
            [reasons(r) for r in results],
            [
                ("scanner-network:microsoft",),
                ("scanner-network:mimecast",),
                ("scanner-network:microsoft",),
                ("scanner-network:microsoft",),
            ],
        )
        self.assertEqual(results[0].platform, Platform.DESKTOP)

    def test_tooSoon(self) -> None:
        """
        A click sooner after its link's issue than the configured seconds, or before it,
        is a machine's; one at the limit is not.
        """
        at = [ISSUED * 1000 + 9_999, (ISSUED - 5) * 1000, ISSUED * 1000 + 10_000]
        results = enricher().enrich(
            [event(number=n, link=f"message{n:05d}link", at=t) for n, t in enumerate(at)]
        )
        self.assertEqual([reasons(r) for r in results], [("too-soon-after-issue",)] * 2 + [()])

    def test_tooSoonConfigured(self) -> None:
        """
        The limit is configurable; 0 turns the rule off.
        """
        soon = event(at=ISSUED * 1000 + 30_000)
        self.assertEqual(
            reasons(enricher(too_soon_seconds=60).enrich([soon])[0]), ("too-soon-after-issue",)
        )
        self.assertEqual(reasons(enricher(too_soon_seconds=0).enrich([soon])[0]), ())
        early = event(at=(ISSUED - 1) * 1000)
        self.assertEqual(reasons(enricher(too_soon_seconds=0).enrich([early])[0]), ())

    def test_reasonsTogether(self) -> None:
        """
        Every rule that applies gives its reason, in a fixed order.
        """
        [result] = enricher().enrich(
            [event(method="HEAD", user_agent="curl/8.5.0", ip="40.94.16.5", at=ISSUED * 1000)]
        )
        self.assertEqual(
            reasons(result),
            (
                "head-request",
                "scanner-user-agent:http-client",
                "scanner-network:microsoft",
                "too-soon-after-issue",
            ),
        )
        self.assertTrue(result.bot)


def clicks(*spec: tuple[str, float], message: str = MESSAGE, first: int = 0) -> list[Event]:
    """
    Clicks on links of C{message}: each a (link suffix, seconds after LATER) pair.
    """
    return [
        event(number=first + n, link=message + suffix, at=LATER + int(seconds * 1000))
        for n, (suffix, seconds) in enumerate(spec)
    ]


def burst_flags(results: list[Enrichment]) -> list[bool]:
    return ["message-burst" in r.bot_reasons for r in results]


class BurstTests(SynchronousTestCase):
    def test_sameBatch(self) -> None:
        """
        Three different links of one message hit within ten seconds are all flagged,
        the first ones too, whatever their order in the batch.
        """
        batch = clicks(("b", 4), ("a", 0), ("c", 9.5))
        self.assertEqual(burst_flags(enricher().enrich(batch)), [True] * 3)

    def test_slowReader(self) -> None:
        """
        A reader who clicks three links over more than ten seconds, or clicks one link
        three times, is no burst.
        """
        self.assertEqual(
            burst_flags(enricher().enrich(clicks(("a", 0), ("b", 6), ("c", 12)))), [False] * 3
        )
        self.assertEqual(
            burst_flags(enricher().enrich(clicks(("a", 0), ("a", 1), ("a", 2)))), [False] * 3
        )

    def test_messagesApart(self) -> None:
        """
        Links of different messages never make a burst together.
        """
        batch = clicks(("a", 0)) + clicks(("b", 1), message="OtherMessage") + clicks(("c", 2))
        self.assertEqual(message_key(batch[1].link_id), "OtherMessage")
        self.assertEqual(burst_flags(enricher().enrich(batch)), [False] * 3)

    def test_acrossBatches(self) -> None:
        """
        A burst split across batches is found when its last click arrives, and clicks
        that join it in later batches are flagged; earlier batches' results stand.
        """
        enrich = enricher().enrich
        self.assertEqual(burst_flags(enrich(clicks(("a", 0), ("b", 1)))), [False, False])
        self.assertEqual(burst_flags(enrich(clicks(("c", 2), first=2))), [True])
        self.assertEqual(burst_flags(enrich(clicks(("d", 3), first=3))), [True])
        self.assertEqual(burst_flags(enrich(clicks(("a", 30), first=4))), [False])

    def test_opensDoNotCount(self) -> None:
        """
        Opens are not clicks: an open pixel fetched with two clicks makes no burst.
        """
        batch = [event(number=0, kind="open", link=MESSAGE + "open"), *clicks(("a", 1), ("b", 2))]
        self.assertEqual(burst_flags(enricher().enrich(batch)), [False] * 3)

    def test_configured(self) -> None:
        """
        The number of links and the window are configurable; a window of 0 turns the
        rule off; fewer than two links is refused.
        """
        batch = clicks(("a", 0), ("b", 20))
        self.assertEqual(
            burst_flags(enricher(burst_links=2, burst_seconds=30).enrich(batch)), [True] * 2
        )
        self.assertEqual(
            burst_flags(enricher(burst_seconds=0).enrich(clicks(("a", 0), ("b", 0), ("c", 0)))),
            [False] * 3,
        )
        self.assertRaises(ValueError, enricher, burst_links=1)
        self.assertRaises(ValueError, enricher, burst_seconds=-1)

    def test_bounded(self) -> None:
        """
        The window remembers at most its number of messages, the least recently clicked
        forgotten first, and only clicks within the window of each message's newest.
        """
        bursts = MessageBursts(seconds=10, links=3, max_messages=2)
        first = clicks(("a", 0), ("b", 1))
        bursts.observe(list(enumerate(first)))
        bursts.observe(list(enumerate(clicks(("a", 0), message="SecondMessg1"))))
        bursts.observe(list(enumerate(clicks(("a", 0), message="ThirdMessage"))))
        self.assertEqual(len(bursts), 2)
        self.assertEqual(bursts.observe([(0, clicks(("c", 2))[0])]), set())  # forgotten

    def test_deterministic(self) -> None:
        """
        The same batches give the same results, in any order within a batch.
        """
        batch = clicks(("a", 0), ("b", 3), ("c", 5), ("a", 40), ("d", 41))
        forward = enricher().enrich(batch)
        backward = enricher().enrich(batch[::-1])[::-1]
        self.assertEqual(forward, backward)
        self.assertEqual(burst_flags(forward), [True, True, True, False, False])


class ConstructionTests(SynchronousTestCase):
    def test_default(self) -> None:
        """
        The zero-configuration enricher uses the packaged data and the shipped list:
        Microsoft Safe Links' address is a scanner's.
        """
        [result] = default_enricher().enrich([event(ip="40.94.16.5")])
        self.assertEqual(result.network, "MICROSOFT-CORP-MSN-AS-BLOCK")
        self.assertEqual(reasons(result), ("scanner-network:microsoft",))

    def test_options(self) -> None:
        """
        Options name an operator's scanner list and MaxMind databases.
        """
        scanners = FilePath(self.mktemp())
        scanners.setContent(
            b'format = "linkrouter-scanners 1"\n'
            b'[[scanner]]\nid = "ours"\nranges = ["81.2.69.0/24"]\n'
        )
        built = Enricher.from_options(
            scanners_file=scanners, mmdb_files=[city_database(self)], too_soon_seconds=5
        )
        self.assertEqual(built.too_soon_seconds, 5)
        [result] = built.enrich([event()])
        self.assertEqual((result.region, result.city), ("England", "London"))
        self.assertEqual(reasons(result), ("scanner-network:ours",))

    def test_badFiles(self) -> None:
        """
        A bad scanner list or a missing database fails construction with the file's name.
        """
        missing = FilePath(self.mktemp())
        self.assertIn(
            missing.path,
            str(
                self.assertRaises(ScannerListInvalid, Enricher.from_options, scanners_file=missing)
            ),
        )
        self.assertIn(
            missing.path,
            str(self.assertRaises(GeoDatabaseError, Enricher.from_options, mmdb_files=[missing])),
        )

    def test_fakeLocator(self) -> None:
        """
        The fake locator these tests use provides the interface the real ones do.
        """
        self.assertTrue(verifyObject(IGeoLocator, MemoryLocator({})))


_TEXT = st.text(max_size=40)
_EVENTS = st.builds(
    Event,
    event_id=_TEXT,
    sequence=st.integers(),
    router=_TEXT,
    timestamp_ms=st.integers(-(2**63), 2**63),
    kind=st.sampled_from(["click", "open"]) | _TEXT,
    link_id=st.text(max_size=30) | st.sampled_from([MESSAGE + "aaaa", MESSAGE + "bbbb"]),
    key_id=_TEXT,
    part=_TEXT,
    issued_at=st.integers(-(2**40), 2**40),
    method=st.sampled_from(["GET", "HEAD"]) | _TEXT,
    ip=st.none() | st.ip_addresses().map(str) | _TEXT,
    user_agent=st.sampled_from([CHROME, IPHONE, GMAIL_PROXY, "curl/8"]) | st.text(max_size=600),
)


class PropertyTests(SynchronousTestCase):
    @settings(max_examples=300, deadline=None)
    @given(st.lists(_EVENTS, max_size=20))
    def test_anyEvents(self, events: list[Event]) -> None:
        """
        Any batch of events gives one enrichment each, in order, without an exception, and
        a fresh enricher given the same batch gives the same enrichments.
        """
        results = enricher().enrich(events)
        self.assertEqual(len(results), len(events))
        self.assertTrue(all(isinstance(r, Enrichment) for r in results))
        self.assertEqual(enricher().enrich(events), results)
