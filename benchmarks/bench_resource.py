"""
The router's own work per request, in process: its site and resource against the bare
C{twisted.web} 302 of C{bench_router.py}, both fed keep-alive requests over an in-memory
transport, without TLS, sockets or a load tool.

C{bench_router.py} measures what matters (the real daemon over TLS under wrk), but on a
shared two-core machine its figures move with the neighbours. Here the only thing measured
is the Python each request costs, so the ratio is steady enough to tell a change of a few
microseconds from noise, and it says where the router's time goes: the full router (limits,
verification, answer, metrics, the click encoded and written to a journal), the router
without its journal, and bare. The journal's writer runs in place every 64 requests, as the
daemon's batches (20 ms at several thousand clicks a second) are written off the reactor;
its CPU counts, as the daemon's writer thread's does.

Run with C{make bench}, or C{python benchmarks/bench_resource.py [--quick]}.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.filepath import FilePath
from twisted.web.server import Site

from linkrouter.codec import Part, sign
from linkrouter.journal import SegmentJournal
from linkrouter.journalservice import JournalService
from linkrouter.keys import Keyring, new_key
from linkrouter.metrics import RouterMetrics
from linkrouter.resource import LinkResource
from linkrouter.site import LinkSite

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baseline import ConstantRedirect, UnloggedSite

TARGET = "https://shop.example.com/products/42?utm_source=email&utm_medium=newsletter"
BASE = "https://click.example"
PEER = IPv4Address("TCP", "192.0.2.7", 40000)
BATCH = 64
AGENT = b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130"


class LaterWorker:
    """
    A journal worker that runs its calls when told to (every L{BATCH} requests), in this
    thread, so that batches form as they do in the daemon.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[Callable[[], Any], Deferred[Any]]] = []

    def __call__(self, function: Callable[[], Any]) -> Deferred[Any]:
        result: Deferred[Any] = Deferred()
        self.calls.append((function, result))
        return result

    def run(self) -> None:
        calls, self.calls = self.calls, []
        for function, result in calls:
            result.callback(function())


def router_site(directory: Path, worker: LaterWorker, keyring: Keyring, journal: bool) -> Site:
    """
    The router's public site as C{linkrouter.tap} builds it, with a journal in C{directory}
    (or no journal).
    """
    metrics = RouterMetrics()
    record = None
    if journal:
        service = JournalService(
            SegmentJournal(FilePath(str(directory))), "bench", Clock(), worker
        )
        service.startService()
        record = service.record
    resource = LinkResource(lambda: keyring.by_id, record, metrics.observe, time.time)
    return LinkSite(resource, timeout=None)


def requests_per_round(
    site: Site, path: str, worker: LaterWorker, count: int
) -> Callable[[], float]:
    """
    A round of C{count} keep-alive requests on one connection; returns CPU seconds a request.
    """
    request = f"GET {path} HTTP/1.1\r\nHost: click.example\r\n".encode()
    request += b"User-Agent: " + AGENT + b"\r\n\r\n"
    protocol = site.buildProtocol(PEER)
    assert protocol is not None
    transport = StringTransport(peerAddress=PEER)
    protocol.makeConnection(transport)
    protocol.dataReceived(request)
    if not transport.value().startswith(b"HTTP/1.1 302 "):
        raise RuntimeError(f"not a redirect: {transport.value()[:200]!r}")

    def round_() -> float:
        received, clear, batch = protocol.dataReceived, transport.clear, BATCH
        started = time.process_time()
        for index in range(count):
            received(request)
            clear()
            if index % batch == 0:
                worker.run()
        worker.run()
        return (time.process_time() - started) / count

    return round_


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few rounds only (smoke test)")
    options = parser.parse_args(argv)
    count, rounds = (500, 2) if options.quick else (10_000, 9)
    with tempfile.TemporaryDirectory(prefix="bench-resource-") as temporary:
        worker, keyring = LaterWorker(), Keyring((new_key(),))
        link = sign(TARGET, keyring.active, "bench-link", Part.HTML, 1_764_780_000, base=BASE)
        path = urlsplit(link).path  # bare is asked for it too: the same request line to parse
        bare = UnloggedSite(ConstantRedirect(TARGET.encode()), timeout=None)  # type: ignore[no-untyped-call]
        sites = {
            "bare twisted.web 302": bare,
            "router, no journal": router_site(Path(temporary) / "none", worker, keyring, False),
            "router (verify, answer, metrics, journal)": router_site(
                Path(temporary) / "journal", worker, keyring, True
            ),
        }
        runs = {
            name: requests_per_round(site, path, worker, count) for name, site in sites.items()
        }
        best = dict.fromkeys(runs, float("inf"))
        for _ in range(rounds):
            for name, run in runs.items():
                best[name] = min(best[name], run())
    baseline = best["bare twisted.web 302"]
    print(
        f"python {sys.version.split()[0]}; {count:,} keep-alive requests a round over an "
        f"in-memory transport, no TLS; best of {rounds} interleaved rounds (CPU time)"
    )
    for name, seconds in best.items():
        print(f"  {name:<44}{seconds * 1e6:7.1f} us/req   bare/this {baseline / seconds:5.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
