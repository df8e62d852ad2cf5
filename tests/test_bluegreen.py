"""
The blue-green proof with the real HAProxy: two C{twistd linkrouter} processes behind
Debian's C{haproxy} (TCP mode, PROXY v2, health checks on C{/healthz} over TLS), both syncing
to a real C{twistd linkcollector}, clicked continuously while blue is drained and green takes
over, then blue restarted and green drained. Not one click may fail or be lost: each is
journaled once and reaches the collector once, with its client's real address.

HAProxy is a Debian package (C{apt-get install haproxy}); without it the test is skipped,
except under C{CI=true}, where it fails.
"""

from __future__ import annotations

import http.client
import itertools
import json
import os
import shutil
import signal
import socket
import sqlite3
import ssl
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, NamedTuple
from urllib.parse import quote, urlsplit

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from linkrouter.codec import Part, sign
from linkrouter.devenv import make_certificate
from linkrouter.keys import Keyring

from .daemons import Daemon, daemon_material, free_port, https, journal_events

BASE = "https://localhost"
TARGET = "https://example.com/landing"
DRAIN_SECONDS = 2.0
"""Longer than HAProxy needs to mark a draining router down (fall 2 x inter 200 ms)."""
SYNC_INTERVAL = 600
"""
Longer than the test: a router syncs once when it starts, with nothing new, and then only
when it drains, so every event reaching the collector proves the drain's own sync.
"""
RATE = 250
"""Requests per second the load generator aims for."""
MAX_REQUESTS = 12_000
"""The load's bound, whatever happens to the switch-overs."""
WORKERS = 8
SOURCES = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]
"""The clients' addresses; the routers trust only HAProxy's 127.0.0.1."""
HAPROXY_ADDRESS = "127.0.0.1"
STEP = 250
"""Requests answered in each phase (one router alone, or both) before the next switch-over."""
READER_TOKEN = "reader-token-" + "b" * 24

ROUTER_CONFIG = """\
router_id = "{name}"
keyring = "keyring.json"
[listen]
port = {port}
certificate = "localhost.pem"
private_key = "localhost-key.pem"
drain_seconds = {drain}
proxy_protocol = true
proxy_from = ["127.0.0.1"]
[journal]
directory = "journal-{name}"
[sync]
url = "https://localhost:{collector}/v1/events"
token_file = "{name}-token"
ca_file = "ca.pem"
interval = {sync_interval}
final_sync_seconds = 20
[admin]
port = false
"""

COLLECTOR_CONFIG = """\
[listen]
port = {port}
certificate = "localhost.pem"
private_key = "localhost-key.pem"
[auth]
tokens_file = "tokens.toml"
"""

HAPROXY_CONFIG = """\
global
    maxconn 4096
    stats socket ipv4@127.0.0.1:{stats} level admin

defaults
    mode tcp
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    retries 3
    option redispatch

frontend clicks
    bind 127.0.0.1:{front}
    default_backend routers

backend routers
    balance roundrobin
    option httpchk GET /healthz HTTP/1.1
    http-check send hdr Host localhost
    http-check expect status 200
    default-server {server_options}
    server blue 127.0.0.1:{blue}
    server green 127.0.0.1:{green}
"""


SERVER_OPTIONS = (
    "send-proxy-v2 check check-ssl check-sni localhost verify required ca-file {ca} "
    "inter 200ms fall 2 rise 2"
)


def find_haproxy() -> str:
    """
    The haproxy binary; skip the test if there is none, fail under C{CI=true}.
    """
    found = shutil.which("haproxy") or (
        "/usr/sbin/haproxy" if os.path.exists("/usr/sbin/haproxy") else None
    )
    if found is None:
        message = "haproxy is not installed: apt-get install -y haproxy"
        if os.environ.get("CI") == "true":
            raise AssertionError(message)
        raise SkipTest(message)
    return found


class Outcome(NamedTuple):
    """
    What became of one request: its source address, the status or the error, and when
    (C{time.monotonic()}) it was sent and answered.
    """

    source: str
    status: int | str
    sent: float
    answered: float


class Load:
    """
    A bounded load generator: C{WORKERS} threads, each on a keep-alive HTTPS connection
    from one of C{SOURCES}, together clicking C{RATE} distinct links a second until
    stopped. Request C{n} clicks link C{rN} from C{SOURCES[n's worker]}; its outcome is
    the status or the error.
    """

    def __init__(self, port: int, ca: FilePath[str], keyring: Keyring) -> None:
        self.port = port
        self.context = ssl.create_default_context(cafile=ca.path)
        self.key = keyring.active
        self.numbers = itertools.count()
        self.stopping = threading.Event()
        self.outcomes: dict[int, Outcome] = {}
        self.threads = [
            threading.Thread(target=self.worker, args=(SOURCES[i % len(SOURCES)],))
            for i in range(WORKERS)
        ]
        self.started = 0.0

    def start(self) -> None:
        self.started = time.monotonic()
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(60)

    def wait_answered(self, count: int, timeout: float = 60) -> None:
        """
        Wait until C{count} requests have their outcome; the load is the clock of each phase.
        """
        deadline = time.monotonic() + timeout
        while len(self.outcomes) < count:
            if time.monotonic() > deadline or not any(t.is_alive() for t in self.threads):
                raise AssertionError(f"{len(self.outcomes)} of {count} requests answered")
            time.sleep(0.02)

    def connect(self, source: str) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(
            "localhost", self.port, context=self.context, timeout=10, source_address=(source, 0)
        )

    def worker(self, source: str) -> None:
        connection = None
        while not self.stopping.is_set():
            number = next(self.numbers)
            if number >= MAX_REQUESTS:
                return
            delay = self.started + number / RATE - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            path = urlsplit(
                sign(TARGET, self.key, f"r{number}", Part.HTML, 1764780000, base=BASE)
            ).path
            sent = time.monotonic()
            try:
                if connection is None:
                    connection = self.connect(source)
                connection.request("GET", path)
                response = connection.getresponse()
                response.read()
                self.outcomes[number] = Outcome(source, response.status, sent, time.monotonic())
                if response.will_close:
                    connection.close()
                    connection = None
            except (OSError, http.client.HTTPException) as error:
                failure = f"{type(error).__name__}: {error}"
                self.outcomes[number] = Outcome(source, failure, sent, time.monotonic())
                if connection is not None:
                    connection.close()
                connection = None
        if connection is not None:
            connection.close()


class BlueGreenTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.haproxy_binary = find_haproxy()
        self.directory, self.ca, self.keyring = daemon_material(self)
        self.front = free_port()
        collector_port = free_port()
        self.directory.child("linkcollector.toml").setContent(
            COLLECTOR_CONFIG.format(port=collector_port).encode()
        )
        self.collector = Daemon(
            self, "linkcollector", self.directory.child("linkcollector.toml"), collector_port
        )
        tokens = {name: f"{name}-token-" + name[0] * 24 for name in ["blue", "green"]}
        self.write_private(
            "tokens.toml",
            "[routers]\n"
            + "".join(f'{name} = "{token}"\n' for name, token in tokens.items())
            + f'[readers]\nteam = "{READER_TOKEN}"\n',
        )
        self.routers = {}
        for name, token in tokens.items():
            self.write_private(f"{name}-token", token + "\n")
            port = free_port()
            config = self.directory.child(f"{name}.toml")
            config.setContent(
                ROUTER_CONFIG.format(
                    name=name,
                    port=port,
                    drain=DRAIN_SECONDS,
                    collector=collector_port,
                    sync_interval=SYNC_INTERVAL,
                ).encode()
            )
            self.routers[name] = Daemon(self, "linkrouter", config, port)
            self.routers[name].log = self.directory.child(f"{name}-output.log")
        self.stats = free_port()
        self.directory.child("haproxy.cfg").setContent(
            HAPROXY_CONFIG.format(
                stats=self.stats,
                front=self.front,
                server_options=SERVER_OPTIONS.format(ca=self.ca.path),
                blue=self.routers["blue"].port,
                green=self.routers["green"].port,
            ).encode()
        )

    def write_private(self, name: str, text: str) -> None:
        secret = self.directory.child(name)
        secret.setContent(text.encode())
        os.chmod(secret.path, 0o600)

    def start_haproxy(self) -> None:
        log = open(self.directory.child("haproxy-output.log").path, "ab")  # noqa: SIM115
        self.addCleanup(log.close)
        process = subprocess.Popen(
            [self.haproxy_binary, "-db", "-f", self.directory.child("haproxy.cfg").path],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

        def stop() -> None:
            process.kill()
            process.wait()

        self.addCleanup(stop)
        self.haproxy = process

    def server_stats(self, column: str) -> dict[str, str]:
        """
        One column of HAProxy's statistics for each router, such as C{status} or C{stot}.
        """
        with socket.create_connection(("127.0.0.1", self.stats), 5) as control:
            control.sendall(b"show stat\n")
            answer = b""
            while chunk := control.recv(65536):
                answer += chunk
        lines = answer.decode().splitlines()
        columns = lines[0].lstrip("# ").split(",")
        values = {}
        for line in lines[1:]:
            row = dict(zip(columns, line.split(","), strict=False))
            if row.get("pxname") == "routers" and row.get("svname") in self.routers:
                values[row["svname"]] = row[column]
        return values

    def both_connected(self) -> bool:
        sessions = self.server_stats("stot")
        return set(sessions) == set(self.routers) and all(int(n) > 0 for n in sessions.values())

    def server_states(self) -> dict[str, str]:
        """
        HAProxy's view of each router: C{UP}, C{DOWN}, or a transition like C{UP 1/2}.
        """
        return self.server_stats("status")

    def wait_state(self, name: str, state: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.haproxy.poll() is not None:
                self.fail(f"haproxy exited:\n{self.output('haproxy')}")
            try:
                if self.server_states().get(name) == state:
                    return
            except OSError:
                pass  # the stats socket is not there yet
            if time.monotonic() > deadline:
                self.fail(f"haproxy never saw {name} {state}:\n{self.output('haproxy')}")
            time.sleep(0.05)

    def output(self, name: str) -> str:
        log = self.directory.child(f"{name}-output.log")
        return log.getContent().decode("utf-8", "replace") if log.exists() else ""

    def journal_events(self, name: str) -> list[dict[str, Any]]:
        """
        The events in router C{name}'s journal, as its files hold them now.
        """
        return journal_events(self.directory.child(f"journal-{name}"))

    def events(self) -> list[dict[str, Any]]:
        return [event for name in self.routers for event in self.journal_events(name)]

    def collected(
        self,
        query: str = "SELECT event_id, router, link_id, ip FROM events",
        parameters: tuple[str, ...] = (),
    ) -> list[Any]:
        """
        The rows of C{query} over the collector's store, read from its SQLite file
        read-only: the stats API reports totals, not single events.
        """
        store = self.directory.child("collector.sqlite3")
        connection = sqlite3.connect(f"file:{quote(store.path)}?mode=ro", uri=True, timeout=10)
        try:
            return connection.execute(query, parameters).fetchall()
        finally:
            connection.close()

    def collected_total(self) -> int:
        """
        The events the collector's stats API counts, clicks and opens.
        """
        status, _, body = https(
            self.collector.port,
            self.ca,
            "GET",
            "/v1/stats/totals",
            headers={"Authorization": f"Bearer {READER_TOKEN}"},
        )
        self.assertEqual(status, 200, body)
        totals = json.loads(body)["totals"]
        return int(totals["clicks"]) + int(totals["opens"])

    def everyone_output(self) -> str:
        return "\n".join(
            f"--- {name}\n{self.output(name)}"
            for name in [*self.routers, "linkcollector", "haproxy"]
        )

    def wait_until(self, condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                self.fail(f"never true: {what}\n{self.everyone_output()}")
            time.sleep(0.05)

    def assert_synced(self, name: str) -> None:
        """
        Every event in router C{name}'s journal is at the collector: called once the router
        has exited, it proves that the drain synced the journal to its end before exiting.
        """
        journaled = {str(event["id"]) for event in self.journal_events(name)}
        query = "SELECT event_id FROM events WHERE router = ?"
        collected = {event_id for (event_id,) in self.collected(query, (name,))}
        self.assertEqual(
            (len(journaled - collected), len(collected - journaled)),
            (0, 0),
            f"{name}: journaled events missing at the collector, collected events not in "
            f"the journal\n{self.everyone_output()}",
        )

    def test_drainBlueThenGreen(self) -> None:
        """
        Clicks flow through HAProxy while blue drains (green takes all), blue comes back,
        and green drains (blue takes all): every request answers 302; each drained router
        has synced its whole journal to the collector when it exits; and in the end the
        collector holds exactly one event per request sent, each with its client's address
        from the PROXY header, and exactly the events of the two journals.
        """
        blue, green = self.routers["blue"], self.routers["green"]
        for daemon in [self.collector, blue, green]:
            daemon.start()
        for daemon in [self.collector, blue, green]:
            daemon.wait_listening()
        self.start_haproxy()
        self.wait_state("blue", "UP")
        self.wait_state("green", "UP")

        load = Load(self.front, self.ca, self.keyring)
        self.addCleanup(load.stop)
        load.start()
        load.wait_answered(STEP)
        self.wait_until(self.both_connected, "HAProxy has sent connections to both routers")

        self.assertEqual(blue.stop(), -signal.SIGTERM, blue.output())
        blue_exited = time.monotonic()
        self.assert_synced("blue")
        load.wait_answered(len(load.outcomes) + STEP)  # green alone
        blue_restarted = time.monotonic()
        blue.start()
        blue.wait_listening()
        self.wait_state("blue", "UP")
        load.wait_answered(len(load.outcomes) + STEP)  # both up; open connections stay on green

        self.assertEqual(green.stop(), -signal.SIGTERM, green.output())
        green_exited = time.monotonic()
        self.assert_synced("green")
        load.wait_answered(len(load.outcomes) + STEP)  # blue alone
        load.stop()
        sent = len(load.outcomes)
        self.assertEqual(blue.stop(), -signal.SIGTERM, blue.output())
        self.assert_synced("blue")

        failed = {n: o for n, o in load.outcomes.items() if o.status != 302}
        self.assertEqual(failed, {}, f"{len(failed)} of {sent} requests failed")
        self.assertLess(sent, MAX_REQUESTS, "the load was stopped, not exhausted")
        self.assertEqual(sorted(load.outcomes), list(range(sent)))

        events = self.events()
        links = Counter(str(e["link"]) for e in events)
        self.assertEqual(set(links), {f"r{n}" for n in range(sent)})
        self.assertEqual(set(links.values()), {1})
        self.assertEqual(
            {str(e["link"]): e["ip"] for e in events},
            {f"r{n}": outcome.source for n, outcome in load.outcomes.items()},
        )
        served = Counter(str(e["router"]) for e in events)
        self.assertEqual(set(served), {"blue", "green"})

        # The proof ends at the collector, after both drains synced.
        self.assertEqual(self.collected_total(), sent)
        collected = self.collected()
        self.assertEqual(len(collected), sent)
        event_ids = Counter(event_id for event_id, _, _, _ in collected)
        self.assertEqual(set(event_ids.values()), {1})
        self.assertEqual(set(event_ids), {str(e["id"]) for e in events})
        self.assertEqual(Counter(router for _, router, _, _ in collected), served)
        collected_links = Counter(link for _, _, link, _ in collected)
        self.assertEqual(set(collected_links), {f"r{n}" for n in range(sent)})
        self.assertEqual(set(collected_links.values()), {1})
        addresses = {link: ip for _, _, link, ip in collected}
        self.assertEqual(
            addresses, {f"r{n}": outcome.source for n, outcome in load.outcomes.items()}
        )
        self.assertNotIn(HAPROXY_ADDRESS, set(addresses.values()))

        # A request sent after a router exited was served by the other one.
        router_of = {link: router for _, router, link, _ in collected}
        green_alone = [
            n
            for n, outcome in load.outcomes.items()
            if blue_exited < outcome.sent and outcome.answered < blue_restarted
        ]
        blue_alone = [n for n, outcome in load.outcomes.items() if green_exited < outcome.sent]
        # each phase had STEP answers, and at most one request per worker was in flight
        self.assertGreaterEqual(len(green_alone), STEP - WORKERS)
        self.assertGreaterEqual(len(blue_alone), STEP - WORKERS)
        self.assertEqual({router_of[f"r{n}"] for n in green_alone}, {"green"})
        self.assertEqual({router_of[f"r{n}"] for n in blue_alone}, {"blue"})

        self.assertEqual(self.collector.stop(), -signal.SIGTERM, self.collector.output())


class ShippedConfigTests(SynchronousTestCase):
    def test_haproxyConfigIsValid(self) -> None:
        """
        C{conf/haproxy.cfg} passes C{haproxy -c} (with the test CA for the system's).
        """
        haproxy = find_haproxy()
        directory = FilePath(self.mktemp())
        directory.makedirs()
        ca, _, _ = make_certificate(directory)
        shipped = FilePath(__file__).parent().sibling("conf").child("haproxy.cfg")
        text = shipped.getContent().replace(
            b"/etc/ssl/certs/ca-certificates.crt", ca.asBytesMode().path
        )
        self.assertIn(b"send-proxy-v2", text)
        self.assertIn(b"option httpchk GET /healthz", text)
        config = directory.child("haproxy.cfg")
        config.setContent(text)
        result = subprocess.run(
            [haproxy, "-c", "-f", config.path], capture_output=True, check=False, timeout=30
        )
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
