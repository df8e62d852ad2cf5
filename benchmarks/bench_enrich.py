"""
How fast the collector enriches events, against C{orjson.loads} of the same journal lines
measured in the same run: the cost the ingest pays for every event anyway.

The mix is realistic: most events come from a few thousand readers whose addresses and
User-Agents repeat, and one in ten brings a User-Agent, one in ten an address, never seen
before (every round has new ones, so the caches cannot hide them). The collector must ingest at
least 20,000 events a second in all, so enrichment should stay well under 25 us an event.
It also measures what the native User-Agent matcher (C{ua-parser-rs}) gains over the
pure-Python one on unseen User-Agents, and what the caches gain on repeating ones.

Run with C{make bench}, or C{python benchmarks/bench_enrich.py [--quick]}.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable

import orjson
from ua_parser import BasicResolver, load_builtins

from linkrouter.collector.enrich import Enricher, default_enricher
from linkrouter.collector.model import Event
from linkrouter.collector.useragent import AgentParser

ISSUED = 1_764_780_000

COMMON_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/{v}.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/{v}.0.0.0 Safari/537.36 Edg/{v}.0.2903.86",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.{v} Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_{v} like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
    "like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/{v}.0.6778.81 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:{v}.0) Gecko/20100101 Firefox/{v}.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)",
    "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.{v}; Pro)",
]
PROXY_AGENTS = [
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
    "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html",
]


def agent(rng: random.Random, unique: str | None = None) -> str:
    template = rng.choice(COMMON_AGENTS)
    if unique is not None:
        return template.format(v=unique)
    return template.format(v=rng.randint(128, 133))  # six versions of each: ~50 strings


def address(rng: random.Random) -> str:
    if rng.random() < 0.2:
        return f"2a02:{rng.randint(0x8100, 0x81FF):x}:{rng.randint(0, 0xFFFF):x}::"
    return f"{rng.randint(1, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.0"


def events(count: int, seed: int, round_number: int) -> list[Event]:
    """
    C{count} events, most from 2,000 readers who keep their address and User-Agent (the
    same in every round); one in ten with a User-Agent and one in ten from an address
    unique to the round; a fifth are opens, half of those through a webmail image proxy.
    """
    rng = random.Random(seed)
    readers = [(address(rng), agent(rng)) for _ in range(2000)]
    rng = random.Random(seed * 1000 + round_number)
    result = []
    for number in range(count):
        ip, user_agent = rng.choice(readers)
        draw = rng.random()
        if draw < 0.1:
            user_agent = agent(rng, f"{round_number}.{number}")
        elif draw < 0.2:
            ip = address(rng)
        kind = "open" if rng.random() < 0.2 else "click"
        if kind == "open" and rng.random() < 0.5:
            user_agent = rng.choice(PROXY_AGENTS)
        message = f"r{round_number:03d}m{rng.randint(0, count // 4):07d}"  # a message key
        result.append(
            Event(
                event_id=f"{round_number}-{number}",
                sequence=number,
                router="r1",
                timestamp_ms=(ISSUED + 3600) * 1000 + (round_number * count + number) * 50,
                kind=kind,
                link_id=message + f"{rng.randint(0, 5):04d}",
                key_id="k1",
                part="html",
                issued_at=ISSUED,
                method="HEAD" if rng.random() < 0.02 else "GET",
                ip=ip,
                user_agent=user_agent,
            )
        )
    return result


def journal_lines(batch: list[Event]) -> list[bytes]:
    return [
        orjson.dumps(
            {
                "v": 1,
                "id": e.event_id,
                "seq": e.sequence,
                "router": e.router,
                "ts": "2025-12-03T17:00:00.000Z",
                "kind": e.kind,
                "link": e.link_id,
                "key": e.key_id,
                "part": e.part,
                "issued": e.issued_at,
                "method": e.method,
                "ip": e.ip,
                "ua": e.user_agent,
                "crc": "0badc0de",
            }
        )
        for e in batch
    ]


def timed(function: Callable[[], object]) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few rounds only (smoke test)")
    options = parser.parse_args(argv)
    count, rounds, unseen = (2_000, 3, 20) if options.quick else (20_000, 7, 200)
    batch_size = 5_000  # the router's sync batch

    start = time.perf_counter()
    enricher = default_enricher()
    built = time.perf_counter() - start

    batches = [events(count, 7, n) for n in range(rounds + 1)]
    lines = [journal_lines(b) for b in batches]
    enricher.enrich(batches[0])  # warm: the repeating User-Agents and addresses are seen

    best_enrich = best_loads = float("inf")
    for batch, journal in zip(batches[1:], lines[1:], strict=True):
        best_loads = min(best_loads, timed(loads(journal)))
        best_enrich = min(best_enrich, timed(enrich_with(enricher, batch, batch_size)))

    # The User-Agent parser alone on unseen strings: native matcher against pure Python.
    native = AgentParser()
    pure = AgentParser(BasicResolver(load_builtins()))
    rng = random.Random(3)
    fresh = [agent(rng, f"9{n}") for n in range(unseen)]
    native.parse(fresh[0])
    pure.parse(fresh[0])
    native_time = timed(lambda: [native.parse(ua) for ua in fresh[1:]])
    pure_time = timed(lambda: [pure.parse(ua) for ua in fresh[1:]])

    # Cached: the same events again, every User-Agent and address seen before.
    warm = Enricher(enricher.geo, enricher.scanners, agents=native)
    warm.enrich(batches[1])
    warm_time = timed(enrich_with(warm, batches[1], batch_size))

    per_event = best_enrich / count * 1e6
    print(
        f"python {sys.version.split()[0]}; {count:,} events a round, batches of {batch_size:,}; "
        f"best of {rounds} rounds; building the enricher took {built:.2f} s"
    )
    print(f"{'orjson.loads of the journal lines (baseline)':<48} {count / best_loads:>10,.0f} /s")
    print(
        f"{'enrich, realistic mix (10% unseen UA, 10% IP)':<48} {count / best_enrich:>10,.0f} /s"
        f"   {per_event:.1f} us an event (aim < 25); ratio {best_loads / best_enrich:.3f} "
        "of orjson.loads"
    )
    print(
        f"{'enrich, everything cached':<48} {count / warm_time:>10,.0f} /s"
        f"   {warm_time / count * 1e6:.1f} us an event"
    )
    print(
        f"{'parse an unseen User-Agent, ua-parser-rs':<48} {(unseen - 1) / native_time:>10,.0f} /s"
        f"   {native_time / (unseen - 1) * 1e6:.0f} us"
    )
    print(
        f"{'parse an unseen User-Agent, pure Python':<48} {(unseen - 1) / pure_time:>10,.0f} /s"
        f"   {pure_time / (unseen - 1) * 1e6:.0f} us; native is {pure_time / native_time:.0f}x "
        "faster"
    )
    return 0


def loads(lines: list[bytes]) -> Callable[[], object]:
    return lambda: [orjson.loads(line) for line in lines]


def enrich_with(enricher: Enricher, batch: list[Event], size: int) -> Callable[[], object]:
    return lambda: [enricher.enrich(batch[i : i + size]) for i in range(0, len(batch), size)]


if __name__ == "__main__":
    raise SystemExit(main())
