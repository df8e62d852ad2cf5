"""
How fast sync catches up a backlog over loopback TLS, against merely reading the same journal
from disk in the same run.

A journal of 500,000 events (20,000 with C{--quick}) is written as the router writes it
(L{SegmentJournal} and L{encode_hits}, default 64 MiB segments, realistic User-Agents). The
baseline reads it back with L{linkrouter.reader.read_batch} in batches of 5,000 events / 4
MiB, the reading sync itself does before anything else (best of two passes; the journal is in
the page cache both times). Then the fake collector (C{python -m linkrouter.testing}) serves
TLS on 127.0.0.1 and the installed C{twistd linkrouter} starts on the journal with C{[sync]}
pointing at it, default batch sizes; the catch-up is timed from the moment the router's admin
port answers (its start-up excluded, the events acknowledged by then subtracted) until
C{linkrouter_sync_unsynced_events} is 0, and the collector's C{/received} is checked to hold
every id. The CPU time of both processes over the catch-up is printed too: a process near
one CPU-second per second is the bottleneck (each is single-threaded Python where it counts).
Aim: >= 50,000 events/s.

C{--profile} samples both processes with C{py-spy} during the catch-up (C{pip install
py-spy}; root or ptrace rights) and prints where each spends its time.

Run with C{python benchmarks/bench_sync.py [--quick] [--events N] [--profile]}.
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from twisted.python.filepath import FilePath

from linkrouter.codec import Kind, Part, TrackedLink
from linkrouter.cursor import Cursor
from linkrouter.devenv import make_certificate
from linkrouter.event import Hit, IPStorage, encode_hits
from linkrouter.journal import SegmentJournal, segments
from linkrouter.keyfile import save_keyring
from linkrouter.keys import Keyring, new_key
from linkrouter.reader import read_batch

AIM = 50_000
BATCH_EVENTS = 5000
BATCH_BYTES = 4 * 1024 * 1024
BIN = Path(sys.executable).parent
TARGET = "https://shop.example.com/products/42?utm_source=email"
USER_AGENTS = [
    b"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    b"Chrome/131.0.0.0 Safari/537.36",
    b"Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
    b"like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    b"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_7_1) AppleWebKit/605.1.15 (KHTML, like Gecko)"
    b" Version/18.1 Safari/605.1.15",
    b"Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17928; Pro)",
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def build_journal(journal: FilePath[str], count: int) -> int:
    """
    Write C{count} events to a new journal in C{journal}, as the router writes them; its size.
    """
    writer = SegmentJournal(journal)
    sequence = writer.open()
    now = time.time() - 3600
    links = [
        TrackedLink(Kind.CLICK, Part.HTML, TARGET, "kA", f"campaign-{n}", 1_764_780_000)
        for n in range(50)
    ]
    for first in range(0, count, 10_000):
        hits = [
            Hit(
                now + n * 0.005,
                links[n % len(links)],
                b"GET",
                f"198.51.{n % 200}.{n % 251}",
                USER_AGENTS[n % len(USER_AGENTS)],
            )
            for n in range(first, min(count, first + 10_000))
        ]
        data, sequence = encode_hits(hits, "bench-router", sequence, IPStorage.FULL)
        writer.append(data)
    writer.close()
    return sum(path.getsize() for _, path in segments(journal))


def read_journal(journal: FilePath[str]) -> tuple[int, float]:
    """
    Read the whole journal as sync does, in batches of the default size: events, seconds.
    """
    started = time.perf_counter()
    cursor = Cursor(segments(journal)[0][0], 0, 1)
    events = 0
    while True:
        batch = read_batch(journal, cursor, BATCH_EVENTS, BATCH_BYTES)
        events += len(batch.lines)
        if batch.end == cursor:
            return events, time.perf_counter() - started
        cursor = batch.end


def cpu_seconds(pid: int) -> float:
    """
    User and system CPU time of process C{pid} and all its threads so far.
    """
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def metrics(port: int) -> dict[str, float]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", "/metrics")
        response = connection.getresponse()
        text = response.read().decode()
        if response.status != 200:
            raise http.client.HTTPException(f"/metrics answered {response.status}")
    finally:
        connection.close()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def received(port: int, context: ssl.SSLContext) -> dict[str, object]:
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=120)
    try:
        connection.request("GET", "/received")
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise http.client.HTTPException(f"/received answered {response.status}")
    finally:
        connection.close()
    answer: dict[str, object] = json.loads(body)
    return answer


def wait_until_up(process: subprocess.Popen[bytes], probe: object, what: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise SystemExit(f"{what} exited with {process.returncode} at start")
        try:
            probe()  # type: ignore[operator]
            return
        except (OSError, http.client.HTTPException):
            if time.monotonic() > deadline:
                raise SystemExit(f"{what} did not start in 60 s") from None
            time.sleep(0.05)


def write_config(directory: FilePath[str], port: int, admin: int, collector: int) -> None:
    keyring = Keyring((new_key(),))
    save_keyring(keyring, directory.child("keyring.json"))
    make_certificate(directory)
    token = directory.child("token")
    token.setContent(b"bench-token\n")
    os.chmod(token.path, 0o600)
    directory.child("linkrouter.toml").setContent(
        f"""router_id = "bench-router"
keyring = "keyring.json"
[listen]
port = {port}
certificate = "localhost.pem"
private_key = "localhost-key.pem"
[journal]
directory = "journal"
[admin]
port = {admin}
[sync]
url = "https://localhost:{collector}/v1/events"
token_file = "token"
ca_file = "ca.pem"
interval = 0.5
backoff_base = 0.2
backoff_cap = 2
""".encode()
    )


def profile(pid: int, seconds: float, output: str) -> subprocess.Popen[bytes]:
    py_spy = shutil.which("py-spy", path=str(BIN)) or shutil.which("py-spy")
    if py_spy is None:
        raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
    return subprocess.Popen(
        [
            py_spy,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, int(seconds))),
            "--rate",
            "200",
            "--nonblocking",
            "--threads",
            "--format",
            "raw",
            "--output",
            output,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


NOTABLE = ("linkrouter/", "gzip.py", "zlib", "OpenSSL/", "treq/", "json/", "ssl.py")
"""Where frames are worth listing by inclusive time (not the reactor's or threads' plumbing)."""


def summarize(collapsed: Path, top: int = 10) -> list[str]:
    """
    Where a process spent its busy samples, from a py-spy raw (collapsed stack) file: by
    function running (self) and, for the project's and notable library functions, anywhere
    on the stack (inclusive); shares of all busy samples, every thread together.
    """
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    busy = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = []
        for frame in stack.split(";")[1:]:  # the first element names the thread
            function, _, where = frame.partition(" (")
            frames.append(f"{function} ({where.rpartition(':')[0]})")
        if not frames:
            continue
        samples = int(count)
        busy += samples
        own[frames[-1]] += samples
        for frame in set(frames):
            if any(part in frame for part in NOTABLE):
                inclusive[frame] += samples
    if not busy:
        return ["  (no busy samples)"]
    lines = [f"  {busy} busy samples (all threads); self:"]
    lines += [f"    {n / busy:6.1%}  {frame}" for frame, n in own.most_common(top)]
    lines.append("  inclusive, project and notable library functions:")
    lines += [f"    {n / busy:6.1%}  {frame}" for frame, n in inclusive.most_common(top)]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20,000 events, for CI smoke")
    parser.add_argument("--events", type=int, help="events in the backlog (default 500,000)")
    parser.add_argument("--profile", action="store_true", help="py-spy both processes")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    options = parser.parse_args()
    count = options.events or (20_000 if options.quick else 500_000)

    directory = FilePath(tempfile.mkdtemp(prefix="bench-sync-"))
    processes: list[subprocess.Popen[bytes]] = []
    try:
        started = time.perf_counter()
        journal = directory.child("journal")
        size = build_journal(journal, count)
        print(
            f"journal: {count:,} events, {size / 1e6:.1f} MB in {len(segments(journal))} "
            f"segment(s), written in {time.perf_counter() - started:.1f} s"
        )
        reads = [read_journal(journal) for _ in range(2)]
        assert all(events == count for events, _ in reads), reads
        read_seconds = min(seconds for _, seconds in reads)
        read_rate = count / read_seconds
        print(f"read_batch from disk: {read_rate:,.0f} events/s ({read_seconds:.2f} s)")

        port, admin, collector_port = free_port(), free_port(), free_port()
        write_config(directory, port, admin, collector_port)
        context = ssl.create_default_context(cafile=directory.child("ca.pem").path)
        collector = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "linkrouter.testing",
                "--port",
                str(collector_port),
                "--tls",
                directory.child("localhost.pem").path,
                directory.child("localhost-key.pem").path,
                "--token-file",
                directory.child("token").path,
            ],
            cwd=directory.path,
            stdout=open(directory.child("collector.log").path, "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
        )
        processes.append(collector)
        wait_until_up(collector, lambda: received(collector_port, context), "the collector")

        spawned = time.perf_counter()
        router = subprocess.Popen(
            [
                str(BIN / "twistd"),
                "-n",
                "--pidfile=",
                "linkrouter",
                "--config",
                directory.child("linkrouter.toml").path,
            ],
            cwd=directory.path,
            stdout=open(directory.child("router.log").path, "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
        )
        processes.append(router)
        wait_until_up(router, lambda: metrics(admin), "the router")
        t0 = time.perf_counter()
        sent0 = metrics(admin)["linkrouter_sync_events_sent_total"]
        cpu0 = cpu_seconds(router.pid), cpu_seconds(collector.pid)
        profilers = []
        if options.profile:
            expected = max(1.0, count / AIM)
            profilers = [
                profile(router.pid, expected, directory.child("router.spy").path),
                profile(collector.pid, expected, directory.child("collector.spy").path),
            ]
        deadline = t0 + max(120.0, count / 2000)
        while True:
            values = metrics(admin)
            if values["linkrouter_sync_unsynced_events"] == 0:
                break
            if time.perf_counter() > deadline or router.poll() is not None:
                raise SystemExit(f"sync did not catch up: {values}")
            time.sleep(0.05)
        t1 = time.perf_counter()
        cpu1 = cpu_seconds(router.pid), cpu_seconds(collector.pid)
        seconds = t1 - t0
        rate = (count - sent0) / seconds
        answer = received(collector_port, context)
        ids = answer["ids"]
        assert isinstance(ids, list)
        if len(ids) != count:
            raise SystemExit(f"the collector holds {len(ids)} of {count} events")
        batches = answer["batches"]
        print(
            f"sync catch-up over loopback TLS: {rate:,.0f} events/s, "
            f"{rate * size / count / 1e6:.1f} MB/s ({count - sent0:,.0f} events in "
            f"{seconds:.2f} s, timed from the admin port answering {t0 - spawned:.2f} s after "
            f"spawn; {batches} batches, "
            f"{answer['duplicates']} duplicates)"
        )
        router_cpu, collector_cpu = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
        per_batch = 1000 / max(1, int(str(batches)))
        print(
            f"CPU over the catch-up: router {router_cpu:.2f} s, fake collector "
            f"{collector_cpu:.2f} s, in {seconds:.2f} s of wall time; per batch "
            f"{seconds * per_batch:.1f} ms wall, router {router_cpu * per_batch:.1f} ms + "
            f"collector {collector_cpu * per_batch:.1f} ms CPU (one batch in flight at a "
            f"time: their turns add up)"
        )
        print(
            f"ratio sync / read_batch: {rate / read_rate:.2f}; aim >= {AIM:,} events/s: "
            f"{'met' if rate >= AIM else 'NOT met'}"
            + (" (py-spy sampling slows both processes: time without --profile)" * options.profile)
        )
        for name, process in zip(["router", "collector"], profilers, strict=False):
            process.wait(300)
            output = Path(directory.child(f"{name}.spy").path)
            print(f"py-spy, {name}:")
            print("\n".join(summarize(output) if output.exists() else ["  (no profile)"]))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(30)
        if options.keep:
            print(f"kept {directory.path}")
        else:
            shutil.rmtree(directory.path, ignore_errors=True)


if __name__ == "__main__":
    main()
