"""
Sync through real processes: the installed C{twistd linkrouter} shipping its journal over
verified HTTPS to the fake collector (C{python -m linkrouter.testing}), through a collector
outage, C{kill -9} of either side, a poison event and a damaged cursor.

Every process listens on 127.0.0.1 only, with a test CA from L{make_certificate}; each one is
killed in the test's cleanups. Every wait is bounded.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable
from typing import Any

import orjson
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from linkrouter.codec import Kind, Part, TrackedLink
from linkrouter.cursor import Cursor
from linkrouter.event import Hit, IPStorage, decode_line, encode_hits
from linkrouter.journal import SegmentJournal, segment_name, segments
from linkrouter.journaltool import verify_journal
from tests.test_crash import START_TIMEOUT, TARGET, Load, Router
from tests.test_tap import free_port

TOKEN = b"sync-integration-token"
CURSOR = "cursor.json"
PREVIOUS = "cursor.previous.json"
DEAD_LETTER = "dead-letter.jsonl"
DELETE = b"<delete>"
LINK = TrackedLink(Kind.CLICK, Part.HTML, TARGET, "kA", "sync-backlog", 1_700_000_000)

UNSYNCED = "linkrouter_sync_unsynced_events"
FAILURES = "linkrouter_sync_failures"
SENT = "linkrouter_sync_events_sent_total"
DEAD_LETTERED = "linkrouter_sync_dead_lettered_total"
WRITTEN = "linkrouter_events_written_total"
QUEUE = "linkrouter_queue_depth"


def eventually(
    test: SynchronousTestCase, check: Callable[[], bool], timeout: float, what: Callable[[], str]
) -> float:
    """
    Poll C{check} until it is true, or fail after C{timeout} seconds saying C{what()}; the
    seconds it took.
    """
    started = time.monotonic()
    deadline = started + timeout
    while not check():
        if time.monotonic() > deadline:
            test.fail(f"not within {timeout} s: {what()}")
        time.sleep(0.05)
    return time.monotonic() - started


class Collector:
    """
    The fake collector process serving TLS on a loopback port with the router directory's
    test certificate and token. Restarted, it listens on the same port and has forgotten
    everything it received.
    """

    def __init__(self, test: SynchronousTestCase, directory: FilePath[str]) -> None:
        self.test = test
        self.directory = directory
        self.port = free_port()
        self.context = ssl.create_default_context(cafile=directory.child("ca.pem").path)
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def output(self) -> str:
        log = self.directory.child(f"collector-{self.starts}.log")
        try:
            return log.getContent()[-4000:].decode("utf-8", "replace")
        except OSError:
            return "(no output)"

    def start(self) -> None:
        """
        Start the collector and return once C{GET /received} answers.
        """
        assert self.process is None or self.process.poll() is not None
        self.starts += 1
        command = [
            sys.executable,
            "-m",
            "linkrouter.testing",
            "--port",
            str(self.port),
            "--tls",
            self.directory.child("localhost.pem").path,
            self.directory.child("localhost-key.pem").path,
            "--token-file",
            self.directory.child("token").path,
        ]
        log = self.directory.child(f"collector-{self.starts}.log")
        with open(log.path, "wb") as output:
            process = subprocess.Popen(
                command, cwd=self.directory.path, stdout=output, stderr=subprocess.STDOUT
            )
        self.process = process
        self.test.addCleanup(self._reap, process)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                self.test.fail(f"collector exited with {process.returncode}:\n{self.output()}")
            try:
                self.received()
                return
            except (OSError, http.client.HTTPException):
                if time.monotonic() > deadline:
                    self.test.fail(f"collector did not start:\n{self.output()}")
                time.sleep(0.05)

    @staticmethod
    def _reap(process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            process.kill()
            process.wait(30)

    def received(self) -> dict[str, Any]:
        """
        C{GET /received}: the ids accepted, the batches received and the duplicates.
        """
        connection = http.client.HTTPSConnection(
            "127.0.0.1", self.port, context=self.context, timeout=30
        )
        try:
            connection.request("GET", "/received")
            response = connection.getresponse()
            body = response.read()
            if response.status != 200:
                raise http.client.HTTPException(f"/received answered {response.status}")
        finally:
            connection.close()
        answer: dict[str, Any] = json.loads(body)
        return answer

    def ids(self) -> set[str]:
        return set(self.received()["ids"])

    def signal(self, number: int) -> None:
        assert self.process is not None
        self.process.send_signal(number)

    def kill(self) -> None:
        """
        C{kill -9} the collector.
        """
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def pending_bytes(self) -> int:
        """
        Bytes the kernel received on the collector's established connections that the
        collector has not read (from C{/proc/net/tcp}): a request in flight while it is
        stopped.
        """
        pending = 0
        with open("/proc/net/tcp") as table:
            next(table)
            for row in table:
                fields = row.split()
                local, state, queues = fields[1], fields[3], fields[4]
                if int(local.rpartition(":")[2], 16) == self.port and state == "01":
                    pending += int(queues.partition(":")[2], 16)
        return pending


def sync_router(test: SynchronousTestCase, **sync: str) -> tuple[Router, Collector]:
    """
    A router (fsync every 50 ms, 64 KiB segments) whose C{[sync]} section points at a
    collector on its own loopback port (not started); C{sync} overrides C{[sync]} keys as
    TOML text.
    """
    router = Router(test, fsync="0.05", segment_bytes="65536")
    token = router.directory.child("token")
    token.setContent(TOKEN + b"\n")
    os.chmod(token.path, 0o600)
    collector = Collector(test, router.directory)
    table = {
        "url": f'"https://localhost:{collector.port}/v1/events"',
        "token_file": '"token"',
        "ca_file": '"ca.pem"',
        "interval": "0.5",
        "backoff_base": "0.2",
        "backoff_cap": "2",
        **sync,
    }
    config = router.directory.child("linkrouter.toml")
    text = "".join(f"{key} = {value}\n" for key, value in table.items())
    config.setContent(config.getContent() + f"\n[sync]\n{text}".encode())
    return router, collector


def append_events(journal: FilePath[str], count: int, tag: str) -> None:
    """
    Append C{count} events to the journal in C{journal} as the router writes them (64 KiB
    segments), numbered on from its last line.
    """
    writer = SegmentJournal(journal, segment_bytes=65536)
    sequence = writer.open()
    now = time.time() - 60
    try:
        for first in range(0, count, 1000):
            hits = [
                Hit(now, LINK, b"GET", "192.0.2.7", b"%s %d" % (tag.encode(), n))
                for n in range(first, min(count, first + 1000))
            ]
            data, sequence = encode_hits(hits, "test-router", sequence, IPStorage.FULL)
            writer.append(data)
    finally:
        writer.close()


def append_raw(journal: FilePath[str], data: bytes) -> None:
    writer = SegmentJournal(journal, segment_bytes=65536)
    writer.open()
    try:
        writer.append(data)
    finally:
        writer.close()


def journal_events(journal: FilePath[str], start: Cursor | None = None) -> list[dict[str, Any]]:
    """
    The events of every complete, checksum-valid line of the journal, in order, from
    C{start} (segment and offset) on; read here, not with the router's reader.
    """
    found = []
    for number, path in segments(journal):
        data = path.getContent()
        if start is not None:
            if number < start.segment:
                continue
            if number == start.segment:
                data = data[start.offset :]
        for line in data.splitlines(keepends=True):
            event = decode_line(line) if line.endswith(b"\n") else None
            if event is not None:
                found.append(event)
    return found


def journal_ids(journal: FilePath[str], start: Cursor | None = None) -> list[str]:
    return [str(event.get("id")) for event in journal_events(journal, start)]


def read_cursor(path: FilePath[str]) -> Cursor:
    document = json.loads(path.getContent())
    return Cursor(int(document["segment"]), int(document["offset"]), int(document["sequence"]))


def poison_line(sequence: int) -> bytes:
    """
    A journal line whose checksum is right and whose JSON has a sequence number but no
    event id: the journal keeps it, the collector cannot accept it.
    """
    body = orjson.dumps(
        {"v": 1, "seq": sequence, "router": "test-router", "kind": "click", "poison": True}
    )
    return b'%b,"crc":"%08x"}\n' % (body[:-1], zlib.crc32(body))


def check_redirects(test: SynchronousTestCase, answers: list[tuple[int, str | None]]) -> None:
    wrong = [answer for answer in answers if answer != (302, TARGET)]
    test.assertEqual(wrong[:5], [], f"{len(wrong)} of {len(answers)} answers not 302 {TARGET}")


class Trickle:
    """
    One client clicking the router's link over keep-alive HTTPS, reconnecting whenever the
    router is gone, until stopped.
    """

    def __init__(self, router: Router, pause: float = 0.004) -> None:
        self.router = router
        self.answers: list[tuple[int, str | None]] = []
        self.refused = 0
        self._pause = pause
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        number = 0
        connection: http.client.HTTPSConnection | None = None
        while not self._stop.is_set():
            if connection is None:
                connection = self.router.connection()
            try:
                answer = self.router.click(connection, f"trickle n{number}")
            except (OSError, http.client.HTTPException):
                connection.close()
                connection = None
                self.refused += 1
                self._stop.wait(0.02)
                continue
            with self._lock:
                self.answers.append(answer)
            number += 1
            self._stop.wait(self._pause)
        if connection is not None:
            connection.close()

    def start(self) -> Trickle:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)
        assert not self._thread.is_alive(), "the trickle client hangs"


class OutageTests(SynchronousTestCase):
    """
    The collector is away while clicks arrive, then comes back.
    """

    THREADS = 4
    PER_THREAD = 600

    def test_collectorDownThenUp(self) -> None:
        """
        While the collector is not running, 2,400 clicks over four keep-alive HTTPS
        connections are each answered 302 with the exact Location and all journaled, and
        sync fails (counted in C{linkrouter_sync_failures}) without acknowledging anything.
        Once the collector starts, within 30 s every journaled event reaches it: the set of
        ids it accepted is exactly the set of ids in the journal, each event id is journaled
        once, and the collector saw no duplicate (nothing had been half-sent); the router
        then reports nothing unsynced and stops cleanly on SIGTERM.
        """
        total = self.THREADS * self.PER_THREAD
        router, collector = sync_router(self)
        router.start()
        started = time.monotonic()
        load = Load(router, "outage", threads=self.THREADS, limit=self.PER_THREAD).start()
        load.join()
        clicking = time.monotonic() - started
        self.assertEqual(load.errors, [])
        self.assertEqual(len(load.results), total)
        check_redirects(self, [(status, location) for _, status, location in load.results])

        eventually(
            self,
            lambda: (m := router.metrics())[WRITTEN] == total and m[QUEUE] == 0,
            30,
            lambda: f"{total} events not journaled: {router.metrics()}",
        )
        eventually(
            self,
            lambda: router.metrics()[FAILURES] >= 1,
            10,
            lambda: f"sync did not fail with the collector down: {router.metrics()}",
        )
        metrics = router.metrics()
        self.assertEqual((metrics[SENT], metrics[UNSYNCED]), (0, total), metrics)
        journaled = journal_events(router.journal)
        ids = [str(event["id"]) for event in journaled]
        self.assertEqual(len(ids), total)
        self.assertEqual(len(set(ids)), total, "an event id is journaled twice")
        self.assertEqual(
            {event["ua"] for event in journaled}, {agent for agent, _, _ in load.results}
        )

        collector.start()
        catch_up = eventually(
            self,
            lambda: len(collector.ids()) >= total,
            30,
            lambda: f"{len(collector.ids())} of {total} events arrived: {router.metrics()}",
        )
        eventually(
            self,
            lambda: router.metrics()[UNSYNCED] == 0,
            10,
            lambda: f"the router still counts unsynced events: {router.metrics()}",
        )
        received = collector.received()
        self.assertEqual(set(received["ids"]), set(ids))
        self.assertEqual(received["duplicates"], 0, received["batches"])
        metrics = router.metrics()
        self.assertEqual((metrics[SENT], metrics[FAILURES]), (total, 0), metrics)
        router.terminate()
        print(
            f"\noutage: {total} clicks in {clicking:.2f} s with the collector down; all "
            f"{total} events at the collector {catch_up:.2f} s after it started, in "
            f"{received['batches']} batches"
        )


class CrashTests(SynchronousTestCase):
    """
    C{kill -9} of the router again and again while sync is busy, then of the collector
    in the middle of a request.
    """

    ROUNDS = 20
    BACKLOG = 40_000
    TOP_UP = 5_000
    """While the router is down, events are added when fewer than this were unsynced."""
    COLLECTOR_KILLS = 2

    def test_killBothSides(self) -> None:
        """
        With a backlog of journaled events (topped up while the router is down if it runs
        low), a trickle of clicks and sync sending 50 events a batch: twenty times the router
        is started, killed with SIGKILL at a random moment (0 to 0.6 s) while sync still has
        a backlog, and started again on the same journal, with one collector running
        throughout. Every click answered is a 302 with the exact Location, no router logs a
        traceback, and the journal never has a problem. After the last start, within 60 s
        the set of ids the collector accepted is exactly the set of ids in the journal, each
        journaled once (re-sends after a kill only show as the collector's duplicates).

        Then, twice, with sync caught up: the collector is stopped (SIGSTOP), clicks arrive,
        sync's request to it stays unanswered, the cursor is still at the first unsent
        event, and the collector is killed with SIGKILL with that request in flight (unread
        bytes on its connection) and restarted, empty. Within 30 s the new collector has
        exactly the events after the cursor (the lost request is sent again, nothing
        earlier), with no duplicate. In the end every journaled event id reached a collector,
        the router stops cleanly, the journal verifies and nothing was dead-lettered.
        """
        seed = random.randrange(2**32)
        rng = random.Random(seed)
        router, collector = sync_router(self, batch_events="50")
        append_events(router.journal, self.BACKLOG, "backlog")
        collector.start()
        started = time.monotonic()
        trickle: Trickle | None = None
        busy_kills = 0
        unsynced = float(self.BACKLOG)
        summary = []
        for number in range(self.ROUNDS):
            context = f"round {number}, seed {seed}"
            if unsynced < self.TOP_UP:  # a fast machine: keep sync busy to the last kill
                append_events(router.journal, self.TOP_UP, f"top-up {number}")
            router.start()
            if trickle is None:
                trickle = Trickle(router).start()
                self.addCleanup(trickle.stop)
            time.sleep(rng.uniform(0.0, 0.6))
            unsynced = router.metrics()[UNSYNCED]
            router.kill()
            router.check_output()
            busy_kills += unsynced > 0
            report = verify_journal(router.journal)
            self.assertEqual(report.problems, (), context)
            summary.append(f"{unsynced:.0f}")
        assert trickle is not None
        router.start()
        time.sleep(0.5)
        trickle.stop()
        check_redirects(self, trickle.answers)
        self.assertGreater(len(trickle.answers), 0)
        self.assertGreaterEqual(busy_kills, self.ROUNDS - 2, "sync was idle at kills")
        catch_up = eventually(
            self,
            lambda: router.metrics()[UNSYNCED] == 0,
            60,
            lambda: f"sync did not catch up: {router.metrics()}\n{router.output()}",
        )
        ids = journal_ids(router.journal)
        self.assertEqual(len(set(ids)), len(ids), "an event id is journaled twice")
        eventually(
            self,
            lambda: collector.ids() == set(ids),
            10,
            lambda: f"collector and journal differ: {len(collector.ids())} vs {len(ids)}",
        )
        received = collector.received()
        print(
            f"\nkill -9 of the router (seed {seed}): {self.ROUNDS} kills in "
            f"{time.monotonic() - started:.1f} s, {busy_kills} with events unsynced "
            f"(unsynced at each kill: {', '.join(summary)}); {len(trickle.answers)} clicks "
            f"answered, {trickle.refused} refused while down; {len(ids)} events at the "
            f"collector {catch_up:.1f} s after the last start, {received['duplicates']} "
            f"duplicates in {received['batches']} batches"
        )

        delivered = set(received["ids"])
        for kill in range(self.COLLECTOR_KILLS):
            delivered |= self.kill_collector(router, collector, delivered, f"kill {kill}")
        missing = set(journal_ids(router.journal)) - delivered
        self.assertEqual(sorted(missing)[:5], [], f"{len(missing)} events never delivered")
        router.terminate()
        report = verify_journal(router.journal)
        self.assertEqual((report.problems, report.torn_tail), ((), None))
        self.assertFalse(router.journal.child(DEAD_LETTER).exists())

    def kill_collector(
        self, router: Router, collector: Collector, delivered: set[str], tag: str
    ) -> set[str]:
        """
        Once sync is caught up, stop the collector, click, kill it with sync's request in
        flight and restart it; the ids the new one received (see L{test_killBothSides}).
        """
        eventually(
            self,
            lambda: router.metrics()[UNSYNCED] == 0,
            30,
            lambda: f"sync did not catch up: {router.metrics()}",
        )
        collector.signal(signal.SIGSTOP)
        settle(self, router, tag)
        before = set(journal_ids(router.journal))
        load = Load(router, f"collector-{tag}", threads=3, limit=100).start()
        load.join()
        self.assertEqual(load.errors, [], tag)
        check_redirects(self, [(status, location) for _, status, location in load.results])
        settle(self, router, tag)
        eventually(
            self,
            lambda: collector.pending_bytes() > 0,
            10,
            lambda: f"{tag}: sync sent no request to the stopped collector",
        )
        cursor = read_cursor(router.journal.child(CURSOR))
        unsent = set(journal_ids(router.journal, cursor))
        self.assertEqual(
            unsent,
            set(journal_ids(router.journal)) - before,
            f"{tag}: the cursor is not at the first event journaled after the collector stopped",
        )
        pending = collector.pending_bytes()
        collector.kill()
        collector.start()
        seconds = eventually(
            self,
            lambda: collector.ids() >= unsent,
            30,
            lambda: f"{tag}: {len(collector.ids())} events re-sent: {router.metrics()}",
        )
        received = collector.received()
        self.assertEqual(set(received["ids"]), unsent, tag)
        self.assertEqual(received["duplicates"], 0, tag)
        print(
            f"  collector {tag}: {pending} request bytes unread at the kill; {len(unsent)} "
            f"events after the cursor at the new collector in {seconds:.1f} s"
        )
        return unsent


def settle(test: SynchronousTestCase, router: Router, tag: str) -> None:
    """
    Wait until every click the router answered is in its journal: its queue is empty and
    its written count has stopped moving (clicks wait up to the group-commit delay).
    """
    last = -1.0
    deadline = time.monotonic() + 10
    while True:
        sample = router.metrics()
        if sample[QUEUE] == 0 and sample[WRITTEN] == last:
            return
        last = sample[WRITTEN]
        if time.monotonic() > deadline:
            test.fail(f"{tag}: the journal did not settle: {sample}")
        time.sleep(0.1)


class PoisonTests(SynchronousTestCase):
    """
    One event the collector cannot accept, in the middle of the journal.
    """

    def test_poisonDeadLettered(self) -> None:
        """
        A journal of 300 lines whose 151st has a valid checksum and sequence number but no
        event id, synced 100 events a batch: the collector answers the second batch 422
        naming that line (keeping the other 99), the router appends exactly that line to
        C{dead-letter.jsonl} (mode 0600) and sends the other 99 again (counted as the
        collector's only duplicates), and every other event arrives, in four batches in all;
        the metrics count one dead-lettered event and 299 sent. After a restart the poison
        line is not sent again.
        """
        router, collector = sync_router(self, batch_events="100")
        append_events(router.journal, 150, "before")
        poison = poison_line(151)
        event = decode_line(poison)
        assert event is not None and "id" not in event, event
        append_raw(router.journal, poison)
        append_events(router.journal, 149, "after")
        events = journal_events(router.journal)
        self.assertEqual([e["seq"] for e in events], list(range(1, 301)))
        self.assertEqual(verify_journal(router.journal).problems, ())
        good = {str(e["id"]) for e in events if "id" in e}
        self.assertEqual(len(good), 299)

        collector.start()
        router.start()
        dead_letter = router.journal.child(DEAD_LETTER)
        eventually(
            self,
            lambda: collector.ids() == good and router.metrics()[UNSYNCED] == 0,
            20,
            lambda: f"{len(collector.ids())} of 299 arrived: {router.metrics()}",
        )
        self.assertEqual(dead_letter.getContent(), poison)
        self.assertEqual(os.stat(dead_letter.path).st_mode & 0o777, 0o600)
        received = collector.received()
        # 100, 100 refused (its 99 good lines kept), those 99 again (duplicates), 99 + 1
        self.assertEqual((received["batches"], received["duplicates"]), (4, 99))
        metrics = router.metrics()
        self.assertEqual((metrics[DEAD_LETTERED], metrics[SENT]), (1, 299), metrics)

        router.terminate()
        router.start()
        time.sleep(1.5)  # three sync intervals
        self.assertEqual(collector.received()["batches"], 4)
        self.assertEqual(dead_letter.getContent(), poison)
        router.terminate()


class CursorDamageTests(SynchronousTestCase):
    """
    The sync cursor and its previous copy damaged while the router is down.
    """

    def halfway(self) -> FilePath[str]:
        """
        A journal of 600 events whose first 300 were synced by the real router (100 a
        batch), so its cursor and the previous copy are the router's own; a copy of it.
        """
        router, collector = sync_router(self, batch_events="100")
        append_events(router.journal, 300, "synced")
        collector.start()
        router.start()
        eventually(
            self,
            lambda: len(collector.ids()) == 300 and router.metrics()[UNSYNCED] == 0,
            20,
            lambda: f"the first half was not synced: {router.metrics()}",
        )
        router.terminate()
        collector.kill()
        append_events(router.journal, 300, "unsynced")
        pristine = FilePath(self.mktemp())
        shutil.copytree(router.journal.path, pristine.path)
        return pristine

    def test_damagedCursor(self) -> None:
        """
        With half of a 600-event journal synced, and C{cursor.json} made empty, garbage,
        missing, pointing past the end of a segment, into a missing segment or into the
        middle of a line (and, in some cases, C{cursor.previous.json} damaged or missing
        too), a restarted router sends every event not yet synced to a fresh collector:
        nothing is lost, and duplicates only come from going back. A damaged cursor with a
        good previous copy starts from that copy (and says so in the log); with both
        damaged or missing, sync starts from the oldest segment, never forward. The
        undamaged cursor, for comparison, sends exactly the unsynced half.
        """
        pristine = self.halfway()
        cursor = read_cursor(pristine.child(CURSOR))
        previous = read_cursor(pristine.child(PREVIOUS))
        everything = journal_ids(pristine)
        unsynced = set(everything[300:])
        self.assertEqual(len(everything), 600)
        self.assertEqual(set(journal_ids(pristine, cursor)), unsynced)
        self.assertLess(previous, cursor)
        from_previous = set(journal_ids(pristine, previous))
        newest, newest_path = segments(pristine)[-1]
        past_end = json.dumps(
            {"segment": newest, "offset": newest_path.getsize() + 4096, "sequence": 601}
        ).encode()
        missing_segment = json.dumps(
            {"segment": newest + 3, "offset": 0, "sequence": 10_000}
        ).encode()
        mid_line = json.dumps(
            {"segment": cursor.segment, "offset": cursor.offset + 17, "sequence": 301}
        ).encode()
        cut = pristine.child(segment_name(cursor.segment)).getContent()
        self.assertNotIn(b"\n", cut[cursor.offset : cursor.offset + 17])
        garbage = b"\x00\x93{not json" + os.urandom(64)
        keep = None  # leave the file as the router wrote it
        delete = DELETE
        cases: list[tuple[str, bytes | None, bytes | None, set[str], bool]] = [
            ("intact", keep, keep, unsynced, False),
            ("empty cursor", b"", keep, from_previous, True),
            ("garbage cursor", garbage, keep, from_previous, True),
            ("missing cursor", delete, keep, from_previous, True),
            ("cursor past the end", past_end, keep, from_previous, True),
            ("cursor in a missing segment", missing_segment, keep, from_previous, True),
            ("empty cursor, garbage previous", b"", garbage, set(everything), True),
            ("both missing", delete, delete, set(everything), False),
            ("both past the end", past_end, missing_segment, set(everything), True),
            ("cursor mid-line, empty previous", mid_line, b"", set(everything), True),
        ]
        summary = []
        for name, current_damage, previous_damage, expected, logged in cases:
            seconds = self.restart_damaged(
                pristine,
                name,
                {CURSOR: current_damage, PREVIOUS: previous_damage},
                expected,
                logged,
            )
            summary.append(f"{name}: {len(expected)} sent in {seconds:.1f} s")
        print("\n  " + "\n  ".join(summary))

    def restart_damaged(
        self,
        pristine: FilePath[str],
        name: str,
        damages: dict[str, bytes | None],
        expected: set[str],
        logged: bool,
    ) -> float:
        """
        Copy the journal C{pristine} to a new router, damage its cursor files (C{None}
        leaves one as it is, C{DELETE} removes it), start it with a fresh collector and
        check that exactly C{expected} arrives; the seconds it took.
        """
        router, collector = sync_router(self, batch_events="100")
        shutil.copytree(pristine.path, router.journal.path)
        for file_name, damage in damages.items():
            path = router.journal.child(file_name)
            if damage == DELETE:
                path.remove()
            elif damage is not None:
                path.setContent(damage)
        unsynced = set(journal_ids(pristine)[300:])
        collector.start()
        router.start()
        seconds = eventually(
            self,
            lambda: router.metrics()[UNSYNCED] == 0 and collector.ids() >= unsynced,
            20,
            lambda: f"{name}: {len(collector.ids())} arrived: {router.metrics()}",
        )
        received = collector.received()
        self.assertEqual(set(received["ids"]), expected, name)
        self.assertEqual(received["duplicates"], 0, name)
        router.terminate()
        collector.kill()
        self.assertEqual("cursor damaged" in router.output(), logged, name)
        number, path = segments(router.journal)[-1]
        last = journal_events(router.journal)[-1]
        end = Cursor(number, path.getsize(), int(last["seq"]) + 1)
        self.assertEqual(read_cursor(router.journal.child(CURSOR)), end, name)
        return seconds
