"""
The collector's ingest as the routers use it, for C{bench_collector.py}: batches of gzip
JSON lines posted over HTTPS to a real C{twistd linkcollector} (parsing, enrichment, dedupe
and the store's durable commit included), beside a bare C{executemany} of the same rows.

The events look like a day of tracking: three links a message, a mix of browsers, mail
clients and scanners in which most User-Agents repeat and one in ten is new, addresses
spread over the IPv4 space.
"""

from __future__ import annotations

import gzip
import http.client
import os
import random
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from twisted.python.filepath import FilePath

from linkrouter.codec import Kind, Part, TrackedLink
from linkrouter.collector.ingest import parse_batch
from linkrouter.collector.model import Enrichment
from linkrouter.collector.sqlcommon import event_row
from linkrouter.devenv import make_certificate
from linkrouter.event import Hit, IPStorage, encode_hits
from linkrouter.linkid import link_id

BATCH = 5_000
TOKEN = "bench-router-token-0123456789"
TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")
AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/142.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.6 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_6 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.6 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0",
    "Mozilla/5.0 (Linux; Android 15; Pixel 9) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/142.0.0.0 Mobile Safari/537.36",
    "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.18025; Pro)",
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
    "Mozilla/5.0 (compatible; Google-Safety; +http://www.google.com/bot.html)",
]


def journal_batches(count: int, seed: int = 7) -> list[bytes]:
    """
    C{count} journal lines as a router writes them, in gzip batches of L{BATCH}.
    """
    chooser = random.Random(seed)
    batches = []
    sequence = 1
    for start in range(0, count, BATCH):
        hits = []
        for number in range(start, min(count, start + BATCH)):
            message = f"<m{number // 6}@bench.example>"
            kind = Kind.OPEN if number % 6 == 5 else Kind.CLICK
            link = TrackedLink(
                kind,
                Part.TEXT if number % 4 == 0 else Part.HTML,
                None if kind is Kind.OPEN else "https://shop.example/",
                "k1",
                link_id(message, 999 if kind is Kind.OPEN else 1 + number % 3),
                1_764_000_000,
            )
            agent = chooser.choice(AGENTS)
            if chooser.random() < 0.1:
                agent += f" build/{chooser.randrange(1_000_000)}"
            address = ".".join(str(chooser.randrange(1, 224)) for _ in range(4))
            hits.append(Hit(1_764_780_000.0 + number / 100, link, b"GET", address, agent.encode()))
        data, sequence = encode_hits(hits, "bench", sequence, IPStorage.FULL)
        batches.append(gzip.compress(data, compresslevel=1))
    return batches


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _post(connection: http.client.HTTPSConnection, body: bytes) -> None:
    connection.request(
        "POST",
        "/v1/events",
        body=body,
        headers={
            "Authorization": f"Bearer {TOKEN}",
            "X-Linkrouter-Router": "bench",
            "Content-Encoding": "gzip",
            "Content-Type": "application/x-ndjson",
        },
    )
    response = connection.getresponse()
    answer = response.read()
    if response.status != 200:
        raise RuntimeError(f"the collector answered {response.status}: {answer[:200]!r}")


def http_ingest(
    name: str,
    store_toml: str,
    bare_insert: Callable[[Sequence[Sequence[Any]]], None],
    count: int,
    connections: int = 1,
) -> None:
    """
    Post C{count} events to a collector configured with C{store_toml} (its C{[store]}
    table) over C{connections} connections at once, and insert the same rows with
    C{bare_insert}; print both rates and the ratio.
    """
    batches = journal_batches(count)
    with tempfile.TemporaryDirectory() as name_of_directory:
        directory = FilePath(name_of_directory)
        os.chmod(directory.path, 0o700)
        ca, _, _ = make_certificate(directory)
        tokens = directory.child("tokens.toml")
        tokens.setContent(f'[routers]\nbench = "{TOKEN}"\n'.encode())
        os.chmod(tokens.path, 0o600)
        port = _free_port()
        config = directory.child("linkcollector.toml")
        config.setContent(
            f'[listen]\nport = {port}\ncertificate = "localhost.pem"\n'
            f'private_key = "localhost-key.pem"\n[auth]\ntokens_file = "tokens.toml"\n'
            f"{store_toml}\n".encode()
        )
        log = directory.child("output.log").open("wb")
        process = subprocess.Popen(
            [TWISTD, "-n", "--pidfile=", "linkcollector", "--config", config.path],
            cwd=directory.path,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            context = ssl.create_default_context(cafile=ca.path)
            deadline = time.monotonic() + 60
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        output = directory.child("output.log").getContent()[-2000:]
                        raise RuntimeError(output.decode("utf-8", "replace")) from None
                    time.sleep(0.05)
            # Each client thread posts every connections-th batch on a connection of its
            # own, as that many routers would (one batch in flight each).
            failures: list[BaseException] = []

            def post_share(first: int) -> None:
                connection = http.client.HTTPSConnection("localhost", port, context=context)
                try:
                    for body in batches[first::connections]:
                        _post(connection, body)
                except BaseException as error:
                    failures.append(error)
                finally:
                    connection.close()

            clients = [
                threading.Thread(target=post_share, args=(first,)) for first in range(connections)
            ]
            started = time.perf_counter()
            for client in clients:
                client.start()
            for client in clients:
                client.join()
            http_seconds = time.perf_counter() - started
            if failures:
                raise failures[0]
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(60)
            log.close()
    bare_seconds = 0.0
    for body in batches:
        events = parse_batch(gzip.decompress(body), "bench", BATCH).events
        rows = [event_row(event, Enrichment()) for event in events]
        started = time.perf_counter()
        bare_insert(rows)
        bare_seconds += time.perf_counter() - started
    label = "HTTP ingest" if connections == 1 else f"HTTP ingest, {connections} connections"
    print(
        f"{name:<11} {label} {count:>9,} events: {count / http_seconds:>9,.0f} /s "
        f"(gzip JSON lines over HTTPS, enrichment on; aim >= 20,000); bare executemany "
        f"{count / bare_seconds:>9,.0f} /s; ratio {bare_seconds / http_seconds:.2f} of bare"
    )
