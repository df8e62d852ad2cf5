"""
How fast the collector turns an inflated batch into checked, enriched events: the CPU the
HTTP ingest spends per event before the store, against C{orjson.loads} of the same lines
measured in the same run (alternating rounds, best of each, since the machine is shared).

The data is the hard case the issue names: almost every event from an address never seen
before (so no address cache helps) and a few hundred distinct User-Agents. The aim is
parse + enrich together at most 20 us an event, leaving the store room for 20,000 events/s.

With C{--http-data} the lines are those C{bench_collector.py}'s HTTP ingest sends
(C{collector_http.journal_batches}): every address new, a tenth of the User-Agents unique,
three links a message clicked within a second, so most clicks are in a message burst.

Run with C{python benchmarks/bench_ingest.py [--quick] [--http-data]}.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import orjson

from linkrouter.collector.enrich import Enricher, default_enricher
from linkrouter.collector.ingest import parse_batch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_enrich import COMMON_AGENTS
from collector_http import journal_batches

ISSUED = 1_764_780_000


def line(fields: dict[str, object]) -> bytes:
    """A journal line as the router writes it: the JSON object, then its crc32."""
    body = orjson.dumps(fields)
    return body[:-1] + b',"crc":"%08x"}' % zlib.crc32(body)


def batch(count: int, seed: int, agents: list[str]) -> bytes:
    """
    C{count} journal lines: nine in ten from an address unique to the batch (a fifth of
    them IPv6, truncated as the router stores them), User-Agents from C{agents}.
    """
    rng = random.Random(seed)
    lines = []
    for number in range(count):
        if rng.random() < 0.2:
            ip = f"2a02:{rng.randint(0x8100, 0x81FF):x}:{rng.randint(0, 0xFFFF):x}::"
        else:
            ip = f"{rng.randint(1, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.0"
        milliseconds = (ISSUED + 3600 + seed * 100) * 1000 + number * 7
        seconds, fraction = divmod(milliseconds, 1000)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{fraction:03d}Z"
        lines.append(
            line(
                {
                    "v": 1,
                    "id": f"0193{seed:04x}-{number:04x}-7000-8000-{rng.getrandbits(48):012x}",
                    "seq": seed * count + number,
                    "router": "r1",
                    "ts": stamp,
                    "kind": "open" if rng.random() < 0.2 else "click",
                    "link": f"{rng.getrandbits(60):015x}"[:12] + f"{rng.randint(0, 5):04d}",
                    "key": "k1",
                    "part": "html" if rng.random() < 0.7 else "text",
                    "issued": ISSUED,
                    "method": "HEAD" if rng.random() < 0.02 else "GET",
                    "ip": ip,
                    "ua": rng.choice(agents),
                }
            )
        )
    return b"\n".join(lines) + b"\n"


def http_batch(count: int, seed: int, agents: list[str]) -> bytes:
    """C{count} lines as the HTTP benchmark's routers send them, inflated."""
    return zlib.decompress(journal_batches(count, seed)[0], wbits=16 + zlib.MAX_WBITS)


def timed(function: Callable[..., object], *arguments: object) -> float:
    start = time.perf_counter()
    function(*arguments)
    return time.perf_counter() - start


def loads_each(lines: list[bytes]) -> list[object]:
    return [orjson.loads(x) for x in lines]


def parse_and_enrich(enricher: Enricher, data: bytes, router: str, count: int) -> object:
    return enricher.enrich(parse_batch(data, router, count).events)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few rounds only (smoke test)")
    parser.add_argument(
        "--http-data", action="store_true", help="the lines of bench_collector's HTTP ingest"
    )
    options = parser.parse_args(argv)
    make, router = (http_batch, "bench") if options.http_data else (batch, "r1")
    count, rounds = (2_000, 3) if options.quick else (5_000, 9)
    rng = random.Random(5)
    agents = [rng.choice(COMMON_AGENTS).format(v=n) for n in range(300)]
    enricher = default_enricher()
    enricher.enrich(parse_batch(make(count, 0, agents), router, count).events)  # UAs seen
    best = dict.fromkeys(("loads", "parse", "enrich", "both"), float("inf"))
    for round_number in range(1, rounds + 1):
        data = make(count, round_number, agents)
        lines = data.split(b"\n")[:-1]
        best["loads"] = min(best["loads"], timed(loads_each, lines))
        events = parse_batch(data, router, count).events
        assert len(events) == count, "the benchmark's lines must all be valid"
        best["parse"] = min(best["parse"], timed(parse_batch, data, router, count))
        # enrich and both on fresh batches, so no address was seen before
        fresh = parse_batch(make(count, 1000 + round_number, agents), router, count).events
        best["enrich"] = min(best["enrich"], timed(enricher.enrich, fresh))
        other = make(count, 2000 + round_number, agents)
        best["both"] = min(best["both"], timed(parse_and_enrich, enricher, other, router, count))
    print(
        f"python {sys.version.split()[0]}; batches of {count:,} lines, "
        + ("the HTTP benchmark's" if options.http_data else "~90% unseen addresses, ")
        + ("" if options.http_data else f"{len(agents)} User-Agents")
        + f"; best of {rounds} alternating rounds"
    )
    baseline = best["loads"]
    for name, label in (
        ("loads", "orjson.loads of each line (baseline)"),
        ("parse", "parse_batch: crc, JSON, validation"),
        ("enrich", "enrich (unseen addresses)"),
        ("both", "parse + enrich (aim <= 20 us)"),
    ):
        seconds = best[name]
        print(
            f"{label:<40} {seconds / count * 1e6:6.1f} us/event  {count / seconds:>9,.0f} /s"
            f"  {seconds / baseline:5.1f}x baseline"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
