"""
The real C{twistd linkrouter} process against crashes and a full disk: C{kill -9} under load
loses no line that was on disk and leaves at most a torn tail that the next start cuts; a torn
tail at any offset is cut and numbering continues; a full disk drops and counts events while
every redirect is still answered, and writing resumes once space returns.

These tests start real processes on loopback ports, use real HTTPS against a test CA, and the
disk-full test mounts a tmpfs, so it must run as root (CI does).
"""

from __future__ import annotations

import http.client
import os
import random
import signal
import ssl
import statistics
import subprocess
import sys
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from linkrouter.codec import Kind, Part, TrackedLink, sign
from linkrouter.event import Hit, IPStorage, decode_line, encode_hits
from linkrouter.journal import segment_name, segments
from linkrouter.journaltool import Report, verify_journal
from linkrouter.keyfile import save_keyring
from linkrouter.keys import Keyring, new_key
from tests.test_tap import BASE, free_port, router_directory

TARGET = "https://crash-target.example/path?q=1"
START_TIMEOUT = 60.0
"""Seconds a router may take to start listening on a slow, busy machine."""

Files = dict[str, bytes]


def journal_files(directory: FilePath[str]) -> Files:
    """
    The content of every segment of the journal in C{directory}, by file name.
    """
    return {path.basename(): path.getContent() for _, path in segments(directory)}


def lines_of(files: Files) -> list[bytes]:
    """
    Every line of C{files}, oldest segment first, the last one possibly unterminated.
    """
    return [line for name in sorted(files) for line in files[name].splitlines(keepends=True)]


def events_of(files: Files) -> list[dict[str, Any]]:
    """
    The events of every complete good line of C{files}, in journal order.
    """
    found = []
    for line in lines_of(files):
        event = decode_line(line) if line.endswith(b"\n") else None
        if event is not None:
            found.append(event)
    return found


def recovered(files: Files) -> Files:
    """
    C{files} as a start of the router must leave them: the newest segment cut back to the
    end of its last complete good line, everything else untouched.
    """
    expected = dict(files)
    if expected:
        newest = max(expected)
        kept = expected[newest].splitlines(keepends=True)
        while kept and (not kept[-1].endswith(b"\n") or decode_line(kept[-1]) is None):
            kept.pop()
        expected[newest] = b"".join(kept)
    return expected


def percentiles(samples: list[float]) -> str:
    """
    Median, 90th percentile and maximum of C{samples} (seconds), in milliseconds.
    """
    if not samples:
        return "no samples"
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
    return (
        f"n={len(ordered)} median={statistics.median(ordered) * 1000:.2f} ms "
        f"p90={p90 * 1000:.2f} ms max={ordered[-1] * 1000:.2f} ms"
    )


class Router:
    """
    A router directory (keyring, test CA, certificate, config) and the real C{twistd
    linkrouter} processes started on it, one at a time, on the same ports and journal.
    """

    def __init__(self, test: SynchronousTestCase, **journal: str) -> None:
        """
        @param journal: values replacing keys of the config's C{[journal]} table, as TOML
            text (C{fsync="0.05"}, C{directory='"/abs/path"'}); new keys are added.
        """
        self.test = test
        self.port, self.admin_port = free_port(), free_port()
        self.directory = router_directory(test, self.port, self.admin_port)
        self.keyring = Keyring((new_key(),))
        save_keyring(self.keyring, self.directory.child("keyring.json"))
        config = self.directory.child("linkrouter.toml")
        text = config.getContent().decode()
        table = {"directory": '"journal"', "fsync": '"always"', **journal}
        head, _, rest = text.partition("[journal]\n")
        _, _, tail = rest.partition("[admin]\n")
        body = "".join(f"{key} = {value}\n" for key, value in table.items())
        config.setContent(f"{head}[journal]\n{body}[admin]\n{tail}".encode())
        self.journal = FilePath(os.path.join(self.directory.path, table["directory"].strip('"')))
        self.context = ssl.create_default_context(cafile=self.directory.child("ca.pem").path)
        self.path = urlsplit(
            sign(TARGET, self.keyring.active, "crash1", Part.HTML, 1764780000, base=BASE)
        ).path
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def log(self) -> FilePath[str]:
        """
        The output of the latest process.
        """
        return self.directory.child(f"twistd-{self.starts}.log")

    def output(self) -> str:
        """
        The tail of the latest process's output, for failure messages.
        """
        try:
            return self.log.getContent()[-4000:].decode("utf-8", "replace")
        except OSError:
            return "(no output)"

    def start(self) -> None:
        """
        Start C{twistd -n linkrouter} and return once its admin listener answers (the
        journal is recovered and the public listener is up before that).
        """
        assert self.process is None or self.process.poll() is not None
        self.starts += 1
        command = [
            os.path.join(os.path.dirname(sys.executable), "twistd"),
            "-n",
            "--pidfile=",
            "linkrouter",
            "--config",
            self.directory.child("linkrouter.toml").path,
        ]
        with open(self.log.path, "wb") as log:
            process = subprocess.Popen(
                command, cwd=self.directory.path, stdout=log, stderr=subprocess.STDOUT
            )
        self.process = process
        self.test.addCleanup(self._reap, process)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                self.test.fail(
                    f"router exited with {process.returncode} at start:\n{self.output()}"
                )
            try:
                self.metrics()
                return
            except (OSError, http.client.HTTPException):
                if time.monotonic() > deadline:
                    self.test.fail(f"router did not start in {START_TIMEOUT} s:\n{self.output()}")
                time.sleep(0.05)

    def _reap(self, process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            process.kill()
            process.wait(30)

    def kill(self) -> None:
        """
        C{kill -9} the router: no shutdown code runs.
        """
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def terminate(self) -> None:
        """
        Stop the router with SIGTERM (ordered shutdown) and check that it exited for it.
        """
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        self.test.assertEqual(self.process.wait(60), -signal.SIGTERM, self.output())
        self.check_output()

    def check_output(self) -> None:
        """
        The router logged no traceback.
        """
        self.test.assertNotIn("Traceback", self.output())

    def connection(self) -> http.client.HTTPSConnection:
        """
        A keep-alive HTTPS connection to the router on 127.0.0.1, verified against the CA.
        """
        return http.client.HTTPSConnection(
            "127.0.0.1", self.port, context=self.context, timeout=30
        )

    def click(
        self, connection: http.client.HTTPSConnection, user_agent: str
    ) -> tuple[int, str | None]:
        """
        GET the tracked link on C{connection}: the status and Location.
        """
        connection.request("GET", self.path, headers={"User-Agent": user_agent})
        response = connection.getresponse()
        response.read()
        return response.status, response.getheader("Location")

    def metrics(self) -> dict[str, float]:
        """
        Every sample of C{/metrics} on the admin port, by name with labels.
        """
        connection = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=30)
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


def written(metrics: dict[str, float]) -> float:
    return metrics.get("linkrouter_events_written_total", 0.0)


def dropped(metrics: dict[str, float], reason: str | None = None) -> float:
    return sum(
        value
        for name, value in metrics.items()
        if name.startswith("linkrouter_events_dropped_total")
        and (reason is None or f'reason="{reason}"' in name)
    )


class Load:
    """
    A few client threads clicking the router's link over keep-alive HTTPS, each with its
    own numbered User-Agents, until stopped, a request limit, or a connection error.
    """

    def __init__(
        self, router: Router, tag: str, threads: int = 3, limit: int = 100, padding: int = 0
    ) -> None:
        self.router = router
        self._padding = " " + "p" * padding if padding else ""  # no trailing space
        self.results: list[tuple[str, int, str | None]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(f"{tag}-t{n}", limit), daemon=True)
            for n in range(threads)
        ]

    def _run(self, tag: str, limit: int) -> None:
        connection = self.router.connection()
        try:
            for number in range(limit):
                if self._stop.is_set():
                    break
                agent = f"crash-test {tag} n{number}{self._padding}"
                status, location = self.router.click(connection, agent)
                with self._lock:
                    self.results.append((agent, status, location))
        except (OSError, http.client.HTTPException) as error:
            with self._lock:
                self.errors.append(f"{tag}: {error!r}")
        finally:
            connection.close()

    def start(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        """
        Stop after the requests in flight, and wait for the threads.
        """
        self._stop.set()
        self.join()

    def join(self) -> None:
        """
        Wait for the threads to reach their limit or an error.
        """
        for thread in self._threads:
            thread.join(60)
            assert not thread.is_alive(), "a client thread hangs"

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.results)


class KillTests(SynchronousTestCase):
    """
    C{kill -9} of the router under load, again and again, on one journal.
    """

    ROUNDS = 10

    def assertRecovered(self, router: Router, after_kill: Files) -> Report:
        """
        The restarted router cut at most the torn tail of the newest segment, nothing else,
        and the journal now verifies with no problem and no torn tail.
        """
        now = journal_files(router.journal)
        self.assertEqual(sorted(now), sorted(after_kill))
        expected = recovered(after_kill)
        for name in sorted(now):
            self.assertEqual(now[name], expected[name], f"{name} after restart")
        report = verify_journal(router.journal)
        self.assertEqual((report.problems, report.torn_tail), ((), None))
        return report

    def assertSequence(self, files: Files) -> None:
        """
        The events of C{files} are numbered 1, 2, 3, ... with no gap or repeat.
        """
        numbers = [event["seq"] for event in events_of(files)]
        self.assertEqual(numbers, list(range(1, len(numbers) + 1)))

    def test_killUnderLoad(self) -> None:
        """
        Ten times: clients click over keep-alive HTTPS, pause until the router is idle for
        longer than its fsync interval (the journal is snapshotted then), click again, and
        the router is killed with SIGKILL mid-load and restarted on the same journal (small
        segments, so rolls happen too). After every kill the journal has no problem but
        possibly a torn tail; after every restart that tail and nothing else is gone; every
        line of every snapshot is still there byte for byte at the same place; every 302 the
        clients got before a snapshot is an event in it; and sequence numbers rise by exactly
        one across the whole journal, across all restarts.
        """
        seed = random.randrange(2**32)
        rng = random.Random(seed)
        router = Router(self, fsync="0.05", segment_bytes="65536")
        snapshots: list[Files] = []
        acknowledged: set[str] = set()  # User-Agents of 302s received before a snapshot
        torn_tails = 0
        summary = []
        started = time.monotonic()
        router.start()
        for number in range(self.ROUNDS):
            context = f"round {number}, seed {seed}"
            # clicks, then an idle pause longer than the fsync interval, then a snapshot
            padding = rng.choice([0, 100, 450])  # long lines make batches span pages
            first = Load(router, f"r{number}a", limit=60, padding=padding).start()
            time.sleep(0.4)
            first.stop()
            self.assertEqual(first.errors, [], context)
            self.assertTrue(first.results, context)
            for agent, status, location in first.results:
                self.assertEqual((status, location), (302, TARGET), (context, agent))
            time.sleep(0.3)
            deadline = time.monotonic() + 30
            while router.metrics()["linkrouter_queue_depth"] and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.1)  # twice the fsync interval after the queue drained
            snapshot = journal_files(router.journal)
            snapshots.append(snapshot)
            report = verify_journal(router.journal)
            self.assertEqual((report.problems, report.torn_tail), ((), None), context)
            agents = {event["ua"] for event in events_of(snapshot)}
            sent = {agent for agent, _, _ in first.results}
            missing = sorted(sent - agents)
            self.assertEqual(len(missing), 0, f"{context}: 302s not journaled: {missing[:5]}")
            ours = [e for e in events_of(snapshot) if f" r{number}a-" in e["ua"]]
            self.assertGreaterEqual(len(ours), len(first.results), context)
            acknowledged |= sent

            # load again, and kill -9 after a random number of answers
            second = Load(router, f"r{number}b", limit=100, padding=padding).start()
            target = rng.randint(1, 200)
            deadline = time.monotonic() + 10
            while second.count < target and time.monotonic() < deadline:
                time.sleep(0.001)
            router.kill()
            answered_before_kill = second.count
            second.stop()
            for agent, status, location in second.results:
                self.assertEqual((status, location), (302, TARGET), (context, agent))
            router.check_output()
            after_kill = journal_files(router.journal)
            report = verify_journal(router.journal)
            self.assertEqual(report.problems, (), context)
            torn = report.torn_tail
            torn_tails += torn is not None
            for name, content in snapshot.items():
                self.assertTrue(after_kill.get(name, b"").startswith(content), context)

            router.start()
            report = self.assertRecovered(router, after_kill)
            files = journal_files(router.journal)
            for earlier in snapshots:
                for name, content in earlier.items():
                    self.assertTrue(
                        files[name].startswith(content), f"{context}: {name} lost lines"
                    )
            self.assertSequence(files)
            journaled = {event["ua"] for event in events_of(files)}
            lost = sum(agent not in journaled for agent, _, _ in second.results)
            summary.append(
                f"round {number}: {len(first.results)} clicks before the snapshot, "
                f"{answered_before_kill} answered in the killed load "
                f"(kill after {target}), {lost} of them not journaled, {report.events} events, "
                f"torn tail at kill: {torn or 'none'}"
            )

        # the last start continues the numbering too; stop it in order and check it all
        final = Load(router, "final", threads=1, limit=10).start()
        final.join()
        self.assertEqual(final.errors, [])
        router.terminate()
        report = verify_journal(router.journal)
        self.assertEqual((report.problems, report.torn_tail), ((), None))
        files = journal_files(router.journal)
        self.assertSequence(files)
        agents = {event["ua"] for event in events_of(files)}
        self.assertEqual(sorted(acknowledged - agents)[:5], [], "302s lost across restarts")
        self.assertEqual(len(final.results), 10)
        self.assertEqual({agent for agent, _, _ in final.results} - agents, set())
        self.assertGreater(len(segments(router.journal)), 1, "no segment roll happened")
        print(
            f"\nkill -9 test (seed {seed}): {self.ROUNDS} kills, {torn_tails} torn tails cut, "
            f"{report.events} events in {len(files)} segments, "
            f"{time.monotonic() - started:.1f} s"
        )
        for line in summary:
            print("  " + line)


LINK = TrackedLink(Kind.CLICK, Part.HTML, TARGET, "kA", "torn", 1_700_000_000)


def journal_lines(first: int, count: int) -> bytes:
    """
    C{count} good journal lines numbered from C{first}, as the router writes them.
    """
    now = time.time() - 60  # recent: a segment's age counts from its first event
    hits = [
        Hit(now + n, LINK, b"GET", "192.0.2.7", b"torn-fixture %d" % n)
        for n in range(first, first + count)
    ]
    data, _ = encode_hits(hits, "test-router", first, IPStorage.FULL)
    return data


class TornTailTests(SynchronousTestCase):
    """
    A torn last line at a handful of offsets, recovered by the real process.
    """

    def write_journal(self, router: Router, segment_sizes: list[int]) -> Files:
        """
        Replace the router's journal by segments holding C{segment_sizes} events, numbered
        from 1; the files written.
        """
        if router.journal.exists():
            router.journal.remove()
        router.journal.makedirs()
        os.chmod(router.journal.path, 0o700)
        files, first = {}, 1
        for number, size in enumerate(segment_sizes, 1):
            path = router.journal.child(segment_name(number))
            path.setContent(journal_lines(first, size))
            os.chmod(path.path, 0o600)
            files[path.basename()] = path.getContent()
            first += size
        return files

    def test_tornTailCut(self) -> None:
        """
        For a handful of offsets inside the last line of a 20-event journal (two segments;
        and once where the torn line is the newest segment's only line), with the newest
        segment truncated there: the router starts, answers a click with a 302, and after
        SIGTERM the journal verifies with no torn tail, everything before the torn line is
        unchanged byte for byte, and the new event is number 20, continuing from the last
        surviving line.
        """
        router = Router(self)
        last_length = len(journal_lines(20, 1))
        offsets = [1, 2, 30, last_length // 2, last_length - 12, last_length - 2]
        offsets.append(last_length - 1)  # only the newline is missing
        cases = [([10, 10], offset) for offset in offsets] + [([19, 1], last_length // 3)]
        for layout, offset in cases:
            context = f"segments {layout}, cut {offset} bytes into the last line"
            pristine = self.write_journal(router, layout)
            newest = router.journal.child(segment_name(len(layout)))
            start = len(pristine[newest.basename()]) - last_length
            with open(newest.path, "r+b") as file:
                file.truncate(start + offset)
            self.assertIsNotNone(verify_journal(router.journal).torn_tail, context)

            router.start()
            connection = router.connection()
            self.assertEqual(router.click(connection, f"after {context}"), (302, TARGET))
            connection.close()
            router.terminate()

            report = verify_journal(router.journal)
            self.assertEqual((report.problems, report.torn_tail, report.events), ((), None, 20))
            files = journal_files(router.journal)
            self.assertEqual(sorted(files), sorted(pristine), context)
            for name, content in pristine.items():
                if name != newest.basename():
                    self.assertEqual(files[name], content, (context, name))
            self.assertEqual(files[newest.basename()][:start], pristine[newest.basename()][:start])
            events = events_of(files)
            self.assertEqual([e["seq"] for e in events], list(range(1, 21)), context)
            self.assertEqual(events[-1]["ua"], f"after {context}", context)
            self.assertEqual(events[-1]["router"], "test-router", context)


class DiskFullTests(SynchronousTestCase):
    """
    The journal on a 1 MiB tmpfs that fills up while clicks go on.
    """

    def mount_tmpfs(self) -> FilePath[str]:
        if os.geteuid() != 0:
            self.fail(
                "the disk-full test must run as root: it mounts a 1 MiB tmpfs as the journal "
                "(CI runs it as root)"
            )
        mountpoint = FilePath(os.path.abspath(self.mktemp()))
        mountpoint.makedirs()
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", mountpoint.path],
            capture_output=True,
            check=False,
        )
        if result.returncode != 0:
            self.fail(
                f"mount -t tmpfs failed ({result.returncode}): "
                f"{result.stderr.decode(errors='replace').strip()}; the disk-full test needs "
                "root with the right to mount (CI has it)"
            )
        self.addCleanup(self.unmount, mountpoint)
        os.chmod(mountpoint.path, 0o700)
        return mountpoint

    def unmount(self, mountpoint: FilePath[str]) -> None:
        if subprocess.run(["umount", mountpoint.path], check=False).returncode != 0:
            subprocess.run(["umount", "-l", mountpoint.path], check=False)

    def test_diskFull(self) -> None:
        """
        With the journal on a tmpfs nearly filled by a filler file, clicks with a ~400-byte
        User-Agent go on until the disk is full and well beyond: every one is answered 302
        with the exact Location, the dropped events are counted as
        C{events_dropped_total{reason="disk-full"}}, every answered click is either written
        or counted as dropped, and the journal on disk stays whole lines that verify. Once
        the filler is deleted, new clicks are written again and the journal verifies with
        no problem and no torn tail, numbered without gaps. Redirect latency before, while
        and after the disk is full is printed, not asserted.
        """
        mountpoint = self.mount_tmpfs()
        filler = mountpoint.child("filler")
        room = 160 * 1024
        with open(filler.path, "wb") as file:
            file.write(b"\xa5" * (1024 * 1024 - room))
        router = Router(self, directory=f'"{mountpoint.path}"', fsync="0.05")
        router.start()
        connection = router.connection()
        self.addCleanup(connection.close)
        padding = "x" * 400
        answered = 0
        latencies: dict[str, list[float]] = {"before": [], "full": [], "after": []}
        first_drop: int | None = None
        deadline = time.monotonic() + 20
        while answered < 6000 and time.monotonic() < deadline:
            started = time.perf_counter()
            answer = router.click(connection, f"disk-full {answered} {padding}")
            seconds = time.perf_counter() - started
            self.assertEqual(answer, (302, TARGET), f"click {answered}")
            if answered < 100:
                latencies["before"].append(seconds)
            elif first_drop is not None:
                latencies["full"].append(seconds)
            answered += 1
            if first_drop is None and answered % 25 == 0 and dropped(router.metrics()):
                first_drop = answered
            if first_drop is not None and answered >= first_drop + 1000:
                break
        self.assertIsNotNone(first_drop, f"no event dropped after {answered} clicks")
        assert first_drop is not None

        metrics = self.settled(router)
        full_written = written(metrics)
        self.assertGreater(dropped(metrics, "disk-full"), 0, metrics)
        self.assertEqual(dropped(metrics), dropped(metrics, "disk-full"), metrics)
        self.assertEqual(full_written + dropped(metrics), answered, metrics)
        report = verify_journal(mountpoint)
        self.assertEqual((report.problems, report.torn_tail), ((), None))
        self.assertEqual(report.events, full_written)
        free = os.statvfs(mountpoint.path)
        print(
            f"\ndisk full after ~{first_drop} clicks; {answered} clicks answered, "
            f"{full_written:.0f} written, {dropped(metrics):.0f} dropped; "
            f"{free.f_bavail * free.f_frsize} bytes free"
        )

        filler.remove()
        for number in range(50):
            started = time.perf_counter()
            answer = router.click(connection, f"space again {number} {padding}")
            latencies["after"].append(time.perf_counter() - started)
            self.assertEqual(answer, (302, TARGET))
        metrics = self.settled(router)
        self.assertEqual(written(metrics), full_written + 50, metrics)
        self.assertEqual(dropped(metrics), answered - full_written, metrics)
        connection.close()
        router.terminate()

        report = verify_journal(mountpoint)
        self.assertEqual((report.problems, report.torn_tail), ((), None))
        events = events_of(journal_files(mountpoint))
        self.assertEqual(len(events), full_written + 50)
        self.assertEqual([e["seq"] for e in events], list(range(1, len(events) + 1)))
        self.assertEqual(
            [e["ua"] for e in events[-50:]], [f"space again {n} {padding}" for n in range(50)]
        )
        for phase, samples in latencies.items():
            print(f"  redirect latency {phase:6} (client round trip): {percentiles(samples)}")

    def settled(self, router: Router) -> dict[str, float]:
        """
        The router's metrics once its queue is empty and the counts stopped moving.
        """
        deadline = time.monotonic() + 30
        previous: dict[str, float] | None = None
        while True:
            metrics = router.metrics()
            counts = (written(metrics), dropped(metrics))
            idle = metrics["linkrouter_queue_depth"] == 0
            if idle and previous is not None and counts == (written(previous), dropped(previous)):
                return metrics
            if time.monotonic() > deadline:
                self.fail(f"the journal did not settle: {metrics}")
            previous = metrics
            time.sleep(0.2)
