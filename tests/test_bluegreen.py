"""
The blue-green proof with the real HAProxy: two C{twistd linkrouter} processes behind
Debian's C{haproxy} (TCP mode, PROXY v2, health checks on C{/healthz} over TLS), clicked
continuously while blue is drained and green takes over, then blue restarted and green
drained. Not one click may fail or be lost, and each is journaled once with its client's
real address.

HAProxy is a Debian package (C{apt-get install haproxy}); without it the test is skipped,
except under C{CI=true}, where it fails.
"""

from __future__ import annotations

import http.client
import itertools
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections import Counter
from urllib.parse import urlsplit

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from linkrouter.codec import Part, sign
from linkrouter.devenv import make_certificate
from linkrouter.event import decode_line
from linkrouter.journal import segments
from linkrouter.keyfile import save_keyring
from linkrouter.keys import Keyring, new_key

from .daemons import Daemon, free_port

BASE = "https://localhost"
TARGET = "https://example.com/landing"
DRAIN_SECONDS = 2.0
"""Longer than HAProxy needs to mark a draining router down (fall 2 x inter 200 ms)."""
RATE = 250
"""Requests per second the load generator aims for."""
MAX_REQUESTS = 12_000
"""The load's bound, whatever happens to the switch-overs."""
WORKERS = 8
SOURCES = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]
"""The clients' addresses; the routers trust only HAProxy's 127.0.0.1."""

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
[admin]
port = false
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
        self.outcomes: dict[int, tuple[str, int | str]] = {}
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
            try:
                if connection is None:
                    connection = self.connect(source)
                connection.request("GET", path)
                response = connection.getresponse()
                response.read()
                self.outcomes[number] = (source, response.status)
                if response.will_close:
                    connection.close()
                    connection = None
            except (OSError, http.client.HTTPException) as error:
                self.outcomes[number] = (source, f"{type(error).__name__}: {error}")
                if connection is not None:
                    connection.close()
                connection = None
        if connection is not None:
            connection.close()


class BlueGreenTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.haproxy_binary = find_haproxy()
        self.directory = FilePath(self.mktemp())
        self.directory.makedirs()
        os.chmod(self.directory.path, 0o700)
        self.ca, _, _ = make_certificate(self.directory)
        self.keyring = Keyring((new_key(),))
        save_keyring(self.keyring, self.directory.child("keyring.json"))
        self.front = free_port()
        self.routers = {}
        for name in ["blue", "green"]:
            port = free_port()
            config = self.directory.child(f"{name}.toml")
            config.setContent(
                ROUTER_CONFIG.format(name=name, port=port, drain=DRAIN_SECONDS).encode()
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

    def server_states(self) -> dict[str, str]:
        """
        HAProxy's view of each router: C{UP}, C{DOWN}, or a transition like C{UP 1/2}.
        """
        with socket.create_connection(("127.0.0.1", self.stats), 5) as control:
            control.sendall(b"show stat\n")
            answer = b""
            while chunk := control.recv(65536):
                answer += chunk
        lines = answer.decode().splitlines()
        columns = lines[0].lstrip("# ").split(",")
        states = {}
        for line in lines[1:]:
            row = dict(zip(columns, line.split(","), strict=False))
            if row.get("pxname") == "routers" and row.get("svname") in self.routers:
                states[row["svname"]] = row["status"]
        return states

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

    def events(self) -> list[dict[str, object]]:
        found = []
        for name in self.routers:
            for _, path in segments(self.directory.child(f"journal-{name}")):
                for line in path.getContent().splitlines():
                    event = decode_line(line)
                    assert event is not None, line
                    found.append(event)
        return found

    def test_drainBlueThenGreen(self) -> None:
        """
        Clicks flow through HAProxy while blue drains (green takes all), blue comes back,
        and green drains (blue takes all): every request answers 302, and the two journals
        hold exactly one event per request, each with its client's address.
        """
        blue, green = self.routers["blue"], self.routers["green"]
        for router in [blue, green]:
            router.start()
        for router in [blue, green]:
            router.wait_listening()
        self.start_haproxy()
        self.wait_state("blue", "UP")
        self.wait_state("green", "UP")

        load = Load(self.front, self.ca, self.keyring)
        self.addCleanup(load.stop)
        load.start()
        time.sleep(2)
        self.assertEqual(blue.stop(), -signal.SIGTERM, blue.output())
        blue_stopped = len(load.outcomes)
        blue.start()
        blue.wait_listening()
        self.wait_state("blue", "UP")
        time.sleep(1)
        self.assertEqual(green.stop(), -signal.SIGTERM, green.output())
        green_stopped = len(load.outcomes)
        time.sleep(1.5)
        load.stop()
        sent = len(load.outcomes)
        self.assertEqual(blue.stop(), -signal.SIGTERM, blue.output())

        failed = {n: o for n, o in load.outcomes.items() if o[1] != 302}
        self.assertEqual(failed, {}, f"{len(failed)} of {sent} requests failed")
        self.assertLess(blue_stopped, green_stopped)
        self.assertLess(green_stopped, sent, "the load ran past green's drain")
        self.assertLess(sent, MAX_REQUESTS, "the load was stopped, not exhausted")
        self.assertEqual(sorted(load.outcomes), list(range(sent)))

        events = self.events()
        links = Counter(str(e["link"]) for e in events)
        self.assertEqual(set(links), {f"r{n}" for n in range(sent)})
        self.assertEqual(set(links.values()), {1})
        self.assertEqual(
            {str(e["link"]): e["ip"] for e in events},
            {f"r{n}": source for n, (source, _) in load.outcomes.items()},
        )
        served = Counter(str(e["router"]) for e in events)
        self.assertEqual(set(served), {"blue", "green"})


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
