# -*- test-case-name: tests.test_enrich -*-
"""
What the collector infers from an event's raw facts: browser, system, device, platform,
place, owner network, and whether a machine rather than a person made the request, with
the reasons. See C{docs/enrichment.rst} for the rules.

Enrichment is pure CPU over data loaded at construction, deterministic for a given sequence
of batches, and never fails on an event: whatever cannot be inferred is unknown.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Callable, Sequence
from functools import lru_cache

import attrs
from twisted.python.filepath import FilePath

from .addresses import is_global, parse_address
from .geo import Address, GeoLocator, Place, layered
from .model import Enrichment, Event, Platform, message_key
from .scanners import ScannerList, default_scanners, load_scanners
from .useragent import MAX_PARSED_LENGTH, Agent, AgentParser

__all__ = ["Enricher", "MessageBursts", "default_enricher"]

HEAD_REQUEST = "head-request"
EMPTY_USER_AGENT = "empty-user-agent"
SCANNER_USER_AGENT = "scanner-user-agent:"
IMAGE_PROXY_CLICK = "image-proxy-click:"
CRAWLER_USER_AGENT = "crawler-user-agent"
SCANNER_NETWORK = "scanner-network:"
TOO_SOON = "too-soon-after-issue"
MESSAGE_BURST = "message-burst"


@attrs.frozen
class _AgentFacts:
    agent: Agent
    proxy: str | None
    scanner: str | None


@attrs.frozen
class _AddressFacts:
    place: Place
    scanner: str | None


_NOWHERE = Place()  # frozen: one instance serves every address placed nowhere
_NO_ADDRESS = _AddressFacts(_NOWHERE, None)


def _with_reasons(enrichment: Enrichment, bot_reasons: tuple[str, ...]) -> Enrichment:
    """
    C{attrs.evolve(enrichment, bot_reasons=bot_reasons)}, spelled out: C{evolve} reads the
    class's fields on every call, several times the cost of building the enrichment, and
    most clicks of a message burst get a reason added this way.
    """
    return Enrichment(
        enrichment.browser_family,
        enrichment.browser_version,
        enrichment.os_family,
        enrichment.os_version,
        enrichment.device,
        enrichment.platform,
        enrichment.country,
        enrichment.region,
        enrichment.city,
        enrichment.network,
        bot_reasons,
    )


def _address(ip: str | None) -> Address | None:
    """
    The address in C{ip} as the router stored it (full or truncated), or C{None} when it
    kept none or the text is not an address.
    """
    if not ip:
        return None
    address = parse_address(ip)
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped
        if mapped is not None:
            return mapped  # a dual-stack listener's view of an IPv4 client
    return address


_Click = tuple[int, str, int, int]


class MessageBursts:
    """
    Recent clicks per message, to tell when the links of one message are hit within
    seconds of each other: a security scanner following every link, not a reader.

    A click is in a burst when clicks on at least C{links} different links of its message
    (by L{message_key}), itself included, fall within C{seconds} of each other, by the
    events' own timestamps. Clicks of earlier batches are remembered for C{seconds} after
    their message's newest click, so a burst split across batches is found, and a click
    that joins a burst later is flagged. The memory is bounded and per process: at most
    C{max_messages} messages (the least recently clicked are forgotten) and C{max_clicks}
    clicks each; clicks that arrive more than C{seconds} after newer ones of their message
    were stored, or at another collector, are judged without them.
    """

    def __init__(
        self, seconds: int, links: int, max_messages: int = 100_000, max_clicks: int = 64
    ) -> None:
        self._window_ms = seconds * 1000
        self._links = links
        self._max_messages = max_messages
        self._max_clicks = max_clicks
        self._batch = 0
        # Per message, its recent clicks: (timestamp, link, batch number, index in batch).
        self._recent: OrderedDict[str, list[_Click]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._recent)

    def observe(self, clicks: Sequence[tuple[int, Event]]) -> set[int]:
        """
        Remember C{clicks} (each with its index in its batch), and return the indexes of
        those that are part of a burst.
        """
        self._batch += 1
        batch = self._batch
        by_message: dict[str, list[_Click]] = {}
        for index, event in clicks:
            click = (event.timestamp_ms, event.link_id, batch, index)
            key = message_key(event.link_id)
            found = by_message.get(key)
            if found is None:
                by_message[key] = [click]
            else:
                found.append(click)
        bursting: set[int] = set()
        recent, window = self._recent, self._window_ms
        for key, merged in by_message.items():
            remembered = recent.get(key)
            if remembered is not None:
                merged = remembered + merged
                recent.move_to_end(key)
            if len(merged) > 1:
                merged.sort()
                # Most messages see one or two links: no window to slide.
                if window > 0 and len({click[1] for click in merged}) >= self._links:
                    bursting.update(self._bursting(merged, batch))
            cutoff = merged[-1][0] - window
            if merged[0][0] < cutoff:
                merged = [click for click in merged if click[0] >= cutoff]
            recent[key] = merged[-self._max_clicks :]
        while len(recent) > self._max_messages:
            recent.popitem(last=False)
        return bursting

    def _bursting(self, clicks: list[_Click], batch: int) -> set[int]:
        """
        The indexes of the clicks of C{batch} among C{clicks} (sorted by time) that lie in
        a window of the burst's length holding enough different links: one pass with a
        sliding window.
        """
        found: set[int] = set()
        links: dict[str, int] = {}
        start = 0
        marked = -1
        for end, (timestamp, link, _, _) in enumerate(clicks):
            links[link] = links.get(link, 0) + 1
            while timestamp - clicks[start][0] > self._window_ms:
                gone = clicks[start][1]
                links[gone] -= 1
                if not links[gone]:
                    del links[gone]
                start += 1
            if len(links) >= self._links:
                for position in range(max(start, marked + 1), end + 1):
                    _, _, of_batch, index = clicks[position]
                    if of_batch == batch:
                        found.add(index)
                marked = end
        return found


@attrs.define
class Enricher:
    """
    Enriches batches of events. Not thread-safe: it remembers recent clicks (see
    L{MessageBursts}) and caches what it derived from User-Agents and addresses, so call it
    from one thread at a time.

    @ivar geo: places addresses.
    @ivar scanners: the known scanners and image proxies.
    @ivar too_soon_seconds: a click sooner than this after its link was issued is a
        machine's (0 turns the rule off).
    @ivar burst_seconds: the window in which clicks on C{burst_links} different links of
        one message make a burst (0 turns the rule off).
    @ivar burst_links: how many different links of one message make a burst.
    @ivar cache_size: how many User-Agents, and four times as many addresses and
        combinations of the two, to remember the facts of: they repeat a lot, and a cache
        hit costs a fraction of a microsecond where parsing a User-Agent costs 20-50.
    """

    geo: GeoLocator
    scanners: ScannerList
    too_soon_seconds: int = attrs.field(default=10, validator=attrs.validators.ge(0))
    burst_seconds: int = attrs.field(default=10, validator=attrs.validators.ge(0))
    burst_links: int = attrs.field(default=3, validator=attrs.validators.ge(2))
    agents: AgentParser = attrs.field(factory=AgentParser)
    cache_size: int = attrs.field(default=4096, validator=attrs.validators.ge(1))
    _bursts: MessageBursts = attrs.field(init=False)
    _agent_facts: Callable[[str], _AgentFacts] = attrs.field(init=False)
    _address_facts: Callable[[str | None], _AddressFacts] = attrs.field(init=False)
    _base: Callable[[str, str | None, bool, bool], tuple[Enrichment, bool]] = attrs.field(
        init=False
    )

    def __attrs_post_init__(self) -> None:
        self._bursts = MessageBursts(self.burst_seconds, self.burst_links)
        self._agent_facts = lru_cache(maxsize=self.cache_size)(self._parse_agent)
        self._address_facts = lru_cache(maxsize=4 * self.cache_size)(self._place_address)
        self._base = lru_cache(maxsize=4 * self.cache_size)(self._judge)

    @classmethod
    def from_options(
        cls,
        *,
        scanners_file: FilePath[str] | None = None,
        mmdb_files: Sequence[FilePath[str]] = (),
        too_soon_seconds: int = 10,
        burst_seconds: int = 10,
        burst_links: int = 3,
    ) -> Enricher:
        """
        An enricher for a configuration. With no options it needs no files at all: the
        shipped scanner list and the packaged geo data.

        @raise ScannerListInvalid: C{scanners_file} cannot be used.
        @raise GeoDatabaseError: one of C{mmdb_files} cannot be used.
        @raise ValueError: a number is out of range.
        """
        scanners = default_scanners() if scanners_file is None else load_scanners(scanners_file)
        return cls(
            geo=layered(mmdb_files),
            scanners=scanners,
            too_soon_seconds=too_soon_seconds,
            burst_seconds=burst_seconds,
            burst_links=burst_links,
        )

    def _parse_agent(self, user_agent: str) -> _AgentFacts:
        return _AgentFacts(
            self.agents.parse(user_agent),
            self.scanners.proxy_for_user_agent(user_agent),
            self.scanners.scanner_for_user_agent(user_agent),
        )

    def _place_address(self, ip: str | None) -> _AddressFacts:
        address = _address(ip)
        if address is None:
            return _NO_ADDRESS
        place = self.geo.locate(address) if is_global(address) else _NOWHERE
        return _AddressFacts(place, self.scanners.scanner_for_address(address, place.network))

    def enrich(self, events: Sequence[Event]) -> list[Enrichment]:
        """
        The enrichment of each of C{events}, in their order.
        """
        bursting = self._bursts.observe(
            [(index, event) for index, event in enumerate(events) if event.kind == "click"]
        )
        return [self._enrich(event, index in bursting) for index, event in enumerate(events)]

    def _enrich(self, event: Event, burst: bool) -> Enrichment:
        base, judged = self._base(
            event.user_agent[:MAX_PARSED_LENGTH],
            event.ip,
            event.kind == "open",
            event.method.upper() == "HEAD",
        )
        if not judged:
            return base
        later: tuple[str, ...] = (TOO_SOON,) if self._too_soon(event) else ()
        if burst:
            later += (MESSAGE_BURST,)
        if later:
            return _with_reasons(base, base.bot_reasons + later)
        return base

    def _judge(
        self, user_agent: str, ip: str | None, is_open: bool, head: bool
    ) -> tuple[Enrichment, bool]:
        """
        What an event's User-Agent, address, kind and method say, and whether the rules on
        its time apply (not to an image proxy's open): the same for many events, so cached.
        """
        facts = self._agent_facts(user_agent)
        where = self._address_facts(ip)
        agent, place = facts.agent, where.place
        platform = agent.platform
        reasons: list[str] = []
        if facts.proxy is not None:
            # The proxy's place is a data centre's, and its system a fixed fake: not the
            # reader's. Only its name (the browser family) and owner network are facts.
            platform = Platform.WEBMAIL
            place = Place(network=place.network)
            agent = Agent(agent.browser_family, agent.browser_version)
        judged = facts.proxy is None or not is_open
        if judged:
            if head:
                reasons.append(HEAD_REQUEST)
            if not user_agent.strip():
                reasons.append(EMPTY_USER_AGENT)
            if facts.scanner is not None:
                reasons.append(SCANNER_USER_AGENT + facts.scanner)
            elif facts.proxy is not None:
                reasons.append(IMAGE_PROXY_CLICK + facts.proxy)
            elif agent.crawler:
                reasons.append(CRAWLER_USER_AGENT)
            if where.scanner is not None:
                reasons.append(SCANNER_NETWORK + where.scanner)
        enrichment = Enrichment(
            browser_family=agent.browser_family,
            browser_version=agent.browser_version,
            os_family=agent.os_family,
            os_version=agent.os_version,
            device=agent.device,
            platform=platform,
            country=place.country,
            region=place.region,
            city=place.city,
            network=place.network,
            bot_reasons=tuple(reasons),
        )
        return enrichment, judged

    def _too_soon(self, event: Event) -> bool:
        return (
            self.too_soon_seconds > 0
            and event.timestamp_ms - event.issued_at * 1000 < self.too_soon_seconds * 1000
        )


def default_enricher() -> Enricher:
    """
    The zero-configuration enricher: the shipped scanner list, the packaged geo data.
    """
    return Enricher.from_options()
