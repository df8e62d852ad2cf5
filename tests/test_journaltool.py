"""
Tests for L{linkrouter.journaltool} and the C{linkrouter journal} and C{devenv} commands.
"""

from __future__ import annotations

import io
import json
import os
import stat

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from linkrouter.cli import EXIT_FAILURE, main
from linkrouter.codec import Kind, Part, TrackedLink
from linkrouter.collector.config import load_collector_config
from linkrouter.collector.tokens import Role, load_tokens
from linkrouter.config import load_config
from linkrouter.event import Hit, IPStorage, encode_hits
from linkrouter.journal import SegmentJournal
from linkrouter.journaltool import follow, verify_journal

LINK = TrackedLink(Kind.CLICK, Part.HTML, "https://secret.example/", "k1", "L1", 1)


def write_journal(directory: FilePath[str], count: int, segment_bytes: int = 1 << 20) -> None:
    journal = SegmentJournal(directory, segment_bytes=segment_bytes)
    sequence = journal.open()
    for number in range(count):
        hit = Hit(1764780000.0 + number, LINK, b"GET", "192.0.2.1", b"agent %d" % number)
        data, sequence = encode_hits([hit], "r1", sequence, IPStorage.FULL)
        journal.append(data)
    journal.close()


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = main(list(argv), out, err)
    return status, out.getvalue(), err.getvalue()


class VerifyTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = FilePath(self.mktemp())
        write_journal(self.directory, 30, segment_bytes=2000)

    def test_intactJournal(self) -> None:
        """
        An intact journal over several segments verifies, counting every event.
        """
        report = verify_journal(self.directory)
        self.assertEqual((report.events, report.problems, report.torn_tail), (30, (), None))
        self.assertGreater(len(self.directory.listdir()), 3)
        status, out, _ = run("journal", "verify", self.directory.path)
        self.assertEqual(status, 0)
        self.assertIn("ok: 30 events", out)

    def test_tornTailIsNotAProblem(self) -> None:
        """
        An unterminated last line of the newest segment is reported as a torn tail, exit 0.
        """
        newest = sorted(self.directory.listdir())[-1]
        with open(self.directory.child(newest).path, "ab") as file:
            file.write(b'{"v":1,"seq":31')
        report = verify_journal(self.directory)
        self.assertTrue(report.ok)
        self.assertIn("torn tail", report.torn_tail or "")
        self.assertEqual(run("journal", "verify", self.directory.path)[0], 0)

    def test_corruptLineInTheMiddle(self) -> None:
        """
        A changed byte inside an older line is a corrupt line: reported with its place,
        exit 1 with one line on standard error.
        """
        oldest = self.directory.child(sorted(self.directory.listdir())[0])
        data = bytearray(oldest.getContent())
        second = data.index(b"\n") + 1
        data[data.index(b"agent", second) + 1] ^= 0x01
        oldest.setContent(bytes(data))
        report = verify_journal(self.directory)
        self.assertEqual(
            report.problems,
            (
                f"{oldest.basename()}:{second}: corrupt line",
                f"{oldest.basename()}:{2 * second}: sequence 3 follows 1",
            ),
        )
        status, out, err = run("journal", "verify", self.directory.path)
        self.assertEqual(status, EXIT_FAILURE)
        self.assertIn("corrupt line", out)
        self.assertEqual(err.count("\n"), 1)

    def test_missingDirectory(self) -> None:
        """
        A directory that does not exist fails with one line.
        """
        status, _, err = run("journal", "verify", self.directory.child("nope").path)
        self.assertEqual(status, EXIT_FAILURE)
        self.assertIn("not a journal directory", err)


class TailTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = FilePath(self.mktemp())
        write_journal(self.directory, 25, segment_bytes=2000)

    def test_lastEvents(self) -> None:
        """
        tail prints the last N events, across segments, oldest first.
        """
        lines = list(follow(self.directory, last=12))
        self.assertEqual([json.loads(line)["seq"] for line in lines], list(range(14, 26)))

    def test_humanAndJson(self) -> None:
        """
        The command prints one readable line per event, or the raw JSON lines with --json;
        neither holds the destination.
        """
        status, out, _ = run("journal", "tail", "-n", "3", self.directory.path)
        self.assertEqual(status, 0)
        self.assertEqual(len(out.splitlines()), 3)
        self.assertIn("#25 click html link=L1 key=k1 GET ip=192.0.2.1", out)
        status, out, _ = run("journal", "tail", "--json", self.directory.path)
        self.assertEqual(
            [json.loads(line)["seq"] for line in out.splitlines()], list(range(16, 26))
        )
        self.assertNotIn("secret.example", out)

    def test_followsNewEventsAndSegments(self) -> None:
        """
        With follow, new lines are printed as they are written, including in a new segment;
        a half-written line waits until it is complete.
        """
        journal = SegmentJournal(self.directory, segment_bytes=2000)
        sequence = journal.open()
        writes = iter(range(6))

        def sleep(_: float) -> None:
            nonlocal sequence
            next(writes)
            hit = Hit(1.0, LINK, b"HEAD", "192.0.2.1", b"new")
            data, sequence = encode_hits([hit], "r1", sequence, IPStorage.FULL)
            journal.append(data)

        lines = follow(self.directory, last=0, forever=True, sleep=sleep)
        seen = [json.loads(next(lines))["seq"] for _ in range(6)]
        self.assertEqual(seen, list(range(26, 32)))
        journal.close()


class DevenvTests(SynchronousTestCase):
    def test_makesMaterialOnce(self) -> None:
        """
        devenv makes a CA, certificate, keyring and a valid config with private files 0600,
        and leaves them alone when run again.
        """
        directory = FilePath(self.mktemp())
        status, out, _ = run("devenv", directory.path, "--port", "9443")
        self.assertEqual(status, 0)
        self.assertIn("made", out)
        for name in [
            "keyring.json",
            "localhost-key.pem",
            "ca-key.pem",
            "collector-tokens.toml",
            "router-token",
            "issuer-token",
            "reader-token",
        ]:
            mode = stat.S_IMODE(os.stat(directory.child(name).path).st_mode)
            self.assertEqual(mode, 0o600, name)
        config = load_config(directory.child("linkrouter.toml"))
        self.assertEqual(config.listen_port, 9443)
        self.assertEqual(config.sync_url, "https://localhost:8444/v1/events")
        collector = load_collector_config(directory.child("linkcollector.toml"))
        self.assertEqual(collector.listen_port, 8444)
        tokens = load_tokens(collector.tokens_file)
        router_token = directory.child("router-token").getContent().strip()
        self.assertEqual(tokens.holder(Role.ROUTERS, b"Bearer " + router_token), "dev")
        before = directory.child("keyring.json").getContent()
        status, out, _ = run("devenv", directory.path)
        self.assertIn("kept", out)
        self.assertEqual(directory.child("keyring.json").getContent(), before)


class StatusTests(SynchronousTestCase):
    def test_backlogAndCursor(self) -> None:
        """
        journal status shows the cursor, the unsynced events and bytes counted from it, and
        says sync is off when the config has no [sync] url.
        """
        from linkrouter.cursor import Cursor, save_cursor

        directory = FilePath(self.mktemp())
        directory.makedirs()
        journal = directory.child("journal")
        write_journal(journal, 12)
        first_line = journal.child("00000001.jsonl").getContent().split(b"\n")[0]
        save_cursor(journal, Cursor(1, len(first_line) + 1, 2))
        config = directory.child("linkrouter.toml")
        config.setContent(
            b'router_id = "r1"\nkeyring = "k"\n[listen]\ntls = false\n'
            b'[journal]\ndirectory = "journal"\n'
        )
        status, out, _ = run("journal", "status", "--config", config.path)
        self.assertEqual(status, 0, out)
        self.assertIn("cursor:    segment 1, offset", out)
        self.assertIn("next sequence 2", out)
        self.assertIn("unsynced:  11 events", out)
        self.assertIn("last sync: never", out)
        self.assertIn("sync:      off", out)

    def test_badConfig(self) -> None:
        """
        A config that does not load fails with one line.
        """
        status, _, err = run("journal", "status", "--config", self.mktemp())
        self.assertEqual(status, EXIT_FAILURE)
        self.assertEqual(err.count("\n"), 1)
