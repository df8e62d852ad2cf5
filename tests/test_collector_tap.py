"""
Tests for L{linkrouter.collector.tap}: the real C{twistd linkcollector} over HTTPS, and
start-up refusals.
"""

from __future__ import annotations

import gc
import gzip
import json
import os
import signal
import subprocess

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from linkrouter.codec import Kind, Part, TrackedLink
from linkrouter.collector.tap import YOUNG_COLLECTION_THRESHOLD, tune_garbage_collector
from linkrouter.devenv import make_certificate
from linkrouter.event import Hit, IPStorage, encode_hits

from .daemons import TWISTD, Daemon, free_port, https

ROUTER_TOKEN = "router-token-" + "a" * 20
READER_TOKEN = "reader-token-" + "b" * 20


def collector_directory(test: SynchronousTestCase, port: int, extra: str = "") -> FilePath[str]:
    """
    A directory with a dev CA and certificate, a tokens file and a collector config.
    """
    directory = FilePath(test.mktemp())
    directory.makedirs()
    os.chmod(directory.path, 0o700)  # the database beside the config holds clicks
    make_certificate(directory)
    tokens = directory.child("tokens.toml")
    tokens.setContent(
        f'[routers]\nr1 = "{ROUTER_TOKEN}"\n[readers]\nteam = "{READER_TOKEN}"\n'.encode()
    )
    os.chmod(tokens.path, 0o600)
    directory.child("linkcollector.toml").setContent(
        f"""[listen]
port = {port}
certificate = "localhost.pem"
private_key = "localhost-key.pem"
[auth]
tokens_file = "tokens.toml"
{extra}""".encode()
    )
    return directory


def journal_lines(
    count: int, agent: bytes = b"Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0"
) -> bytes:
    link = TrackedLink(Kind.CLICK, Part.HTML, "https://x.example/", "k1", "Xk3v9Qa_Lm0Z1", 10)
    hits = [Hit(1_764_780_000.0 + n, link, b"GET", "192.0.2.7", agent) for n in range(count)]
    return encode_hits(hits, "r1", 1, IPStorage.FULL)[0]


class CollectorProcessTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.port = free_port()
        self.directory = collector_directory(self, self.port)
        self.ca = self.directory.child("ca.pem")
        config = self.directory.child("linkcollector.toml")
        self.daemon = Daemon(self, "linkcollector", config, self.port)

    def post(self, body: bytes) -> tuple[int, dict[str, object]]:
        status, _, answer = https(
            self.port,
            self.ca,
            "POST",
            "/v1/events",
            gzip.compress(body),
            {"Authorization": f"Bearer {ROUTER_TOKEN}", "X-Linkrouter-Router": "r1"},
        )
        return status, json.loads(answer)

    def test_ingestAndStats(self) -> None:
        """
        A batch posted over HTTPS is stored in SQLite, enriched, survives a restart, and
        shows in the stats; its replay only counts duplicates.
        """
        self.daemon.start().wait_listening()
        data = journal_lines(5)
        self.assertEqual(self.post(data), (200, {"accepted": 5, "duplicates": 0, "rejected": []}))
        self.assertEqual(self.daemon.stop(), -signal.SIGTERM)  # twistd re-raises it
        database = self.directory.child("collector.sqlite3")
        self.assertEqual(oct(os.stat(database.path).st_mode & 0o777), oct(0o600))
        self.daemon.start().wait_listening()
        self.assertEqual(self.post(data), (200, {"accepted": 0, "duplicates": 5, "rejected": []}))
        status, _, answer = https(
            self.port,
            self.ca,
            "GET",
            "/v1/stats",
            headers={"Authorization": f"Bearer {READER_TOKEN}"},
        )
        self.assertEqual(status, 200, answer)
        stats = json.loads(answer)
        self.assertEqual(stats["totals"]["clicks"], 5)
        self.assertEqual(stats["totals"]["unique_clicks"], 1)
        self.assertEqual(
            [(row["name"], row["total"]) for row in stats["browsers"]], [("Firefox", 5)]
        )
        self.assertEqual([row["name"] for row in stats["platforms"]], ["Desktop"])
        self.assertEqual(self.daemon.stop(), -signal.SIGTERM)  # twistd re-raises it

    def test_badConfigStopsStartUp(self) -> None:
        """
        A tokens file that others can read stops start-up with one line naming it.
        """
        os.chmod(self.directory.child("tokens.toml").path, 0o644)
        done = subprocess.run(
            [
                TWISTD,
                "-n",
                "--pidfile=",
                "linkcollector",
                "--config",
                self.directory.child("linkcollector.toml").path,
            ],
            capture_output=True,
            timeout=120,
            check=False,
        )
        self.assertNotEqual(done.returncode, 0)
        self.assertIn(b"chmod 600", done.stderr + done.stdout)
        self.assertNotIn(b"Traceback", done.stderr + done.stdout)


class GarbageCollectorTests(SynchronousTestCase):
    def test_tuned(self) -> None:
        """
        The collector runs a young collection every L{YOUNG_COLLECTION_THRESHOLD}
        allocations, the older generations' thresholds as they were, and leaves what was
        loaded before it out of its collections.
        """
        before = gc.get_threshold()
        self.addCleanup(gc.set_threshold, *before)
        self.addCleanup(gc.unfreeze)
        tune_garbage_collector()
        self.assertEqual(gc.get_threshold(), (YOUNG_COLLECTION_THRESHOLD, *before[1:]))
        self.assertGreater(gc.get_freeze_count(), 0)
