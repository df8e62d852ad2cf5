"""
The whole path with real processes: C{twistd linkrouter} answers real HTTPS clicks and syncs
its journal to C{twistd linkcollector}, whose stats API then reports exactly what happened.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import signal
import ssl
import time
from typing import Any
from urllib.parse import urlsplit

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from linkrouter.codec import Kind, Part, sign
from linkrouter.devenv import DevPorts, make_devenv
from linkrouter.keyfile import load_keyring
from linkrouter.linkid import link_id

from .daemons import Daemon, daemon_material, free_port, https
from .test_dashboard import DevTools, find_chromium

ROUTER_TOKEN = "router-token-" + "r" * 24
ISSUER_TOKEN = "issuer-token-" + "i" * 24
READER_TOKEN = "reader-token-" + "s" * 24
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0"
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/142.0.0.0 Safari/537.36"
)
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_6 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.6 Mobile/15E148 Safari/604.1"
)
SCANNER = "Mozilla/5.0 (compatible; Google-Safety; +http://www.google.com/bot.html)"
IMAGE_PROXY = (
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
)


def write_private(path: FilePath[str], text: str) -> None:
    path.setContent(text.encode())
    os.chmod(path.path, 0o600)


class TwoDaemons(SynchronousTestCase):
    """
    A collector and a router syncing to it, sharing a directory, a CA and tokens.
    """

    def setUp(self) -> None:
        self.directory, self.ca, self.keyring = daemon_material(self)
        write_private(
            self.directory.child("tokens.toml"),
            f'[routers]\ne2e = "{ROUTER_TOKEN}"\n[issuers]\nmailer = "{ISSUER_TOKEN}"\n'
            f'[readers]\nteam = "{READER_TOKEN}"\n',
        )
        write_private(self.directory.child("router-token"), ROUTER_TOKEN + "\n")
        self.router_port, self.collector_port = free_port(), free_port()
        self.directory.child("linkcollector.toml").setContent(
            f"""[listen]
port = {self.collector_port}
certificate = "localhost.pem"
private_key = "localhost-key.pem"
[auth]
tokens_file = "tokens.toml"
""".encode()
        )
        self.directory.child("linkrouter.toml").setContent(
            f"""router_id = "e2e"
keyring = "keyring.json"
[listen]
port = {self.router_port}
certificate = "localhost.pem"
private_key = "localhost-key.pem"
[journal]
directory = "journal"
[sync]
url = "https://localhost:{self.collector_port}/v1/events"
token_file = "router-token"
ca_file = "ca.pem"
interval = 0.2
backoff_base = 0.2
backoff_cap = 1
[admin]
port = false
""".encode()
        )
        self.collector = Daemon(
            self, "linkcollector", self.directory.child("linkcollector.toml"), self.collector_port
        )
        self.router = Daemon(
            self, "linkrouter", self.directory.child("linkrouter.toml"), self.router_port
        )

    def link(self, message: str, part: Part, issued_at: int, kind: Kind = Kind.CLICK) -> str:
        target = None if kind is Kind.OPEN else f"https://shop.example/{message}?from=email"
        identifier = link_id(message, 1) if kind is Kind.CLICK else link_id(message, 999)
        return sign(
            target,
            self.keyring.active,
            identifier,
            part,
            issued_at,
            base=f"https://localhost:{self.router_port}",
            kind=kind,
        )

    def click(self, link: str, agent: str, source: str, method: str = "GET") -> int:
        """
        Follow C{link} (a URL or a path) from the loopback address C{source}.
        """
        context = ssl.create_default_context(cafile=self.ca.path)
        connection = http.client.HTTPSConnection(
            "localhost",
            self.router_port,
            context=context,
            timeout=30,
            source_address=(source, 0),
        )
        try:
            connection.request(method, urlsplit(link).path, headers={"User-Agent": agent})
            response = connection.getresponse()
            response.read()
            return response.status
        finally:
            connection.close()

    def stats(self, query: str = "") -> dict[str, Any]:
        status, _, body = https(
            self.collector_port,
            self.ca,
            "GET",
            "/v1/stats" + query,
            headers={"Authorization": f"Bearer {READER_TOKEN}"},
        )
        self.assertEqual(status, 200, body)
        document: dict[str, Any] = json.loads(body)
        return document

    def duplicates(self) -> float:
        """
        The events the collector has counted as duplicates, from its metrics.
        """
        _, _, body = https(self.collector_port, self.ca, "GET", "/metrics")
        for line in body.decode().splitlines():
            if line.startswith('linkcollector_events_total{outcome="duplicate"}'):
                return float(line.split()[-1])
        return 0.0

    def wait_for_events(self, count: int, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            stats = self.stats()
            totals = stats["totals"]
            if totals["clicks"] + totals["opens"] >= count:
                return stats
            if time.monotonic() > deadline:
                self.fail(
                    f"the collector has {totals}, not {count} events\n"
                    f"{self.router.output()}\n{self.collector.output()}"
                )
            time.sleep(0.2)


class EndToEndTests(TwoDaemons):
    def test_clicksReachTheStats(self) -> None:
        """
        Clicks from several browsers and addresses, both parts, GET and HEAD, a scanner, a
        link clicked too soon after issue and a webmail open all reach the stats with the
        right counts, breakdowns and bot reasons; the router re-sending its whole journal
        changes no count.
        """
        self.collector.start().wait_listening()
        self.router.start().wait_listening()
        long_ago = int(time.time()) - 3600
        newsletter = self.link("<m1@example>", Part.HTML, long_ago)
        text = self.link("<m2@example>", Part.TEXT, long_ago)
        fresh = self.link("<m3@example>", Part.HTML, int(time.time()))
        scanned = self.link("<m4@example>", Part.HTML, long_ago)
        pixel = self.link("<m1@example>", Part.HTML, long_ago, Kind.OPEN)
        registration = json.dumps(
            {
                "link": link_id("<m1@example>", 1),
                "url": "https://shop.example/<m1@example>",
                "message": "<m1@example>",
                "part": "html",
                "position": 1,
                "tag": "welcome",
            }
        ).encode()
        status, _, body = https(
            self.collector_port,
            self.ca,
            "POST",
            "/v1/links",
            registration,
            {"Authorization": f"Bearer {ISSUER_TOKEN}"},
        )
        self.assertEqual(status, 200, body)

        self.assertEqual(self.click(newsletter, FIREFOX, "127.0.0.2"), 302)
        self.assertEqual(self.click(newsletter, CHROME, "127.0.0.3"), 302)
        self.assertEqual(self.click(newsletter, FIREFOX, "127.0.0.2", "HEAD"), 302)
        self.assertEqual(self.click(text, IPHONE, "127.0.0.4"), 302)
        self.assertEqual(self.click(fresh, FIREFOX, "127.0.0.5"), 302)
        self.assertEqual(self.click(scanned, SCANNER, "127.0.0.6"), 302)
        self.assertEqual(self.click(pixel, IMAGE_PROXY, "127.0.0.7"), 200)
        self.assertEqual(
            self.click("/1s/not.a.link/x/y/z/abcdefghijklmnop", FIREFOX, "127.0.0.8"), 404
        )

        stats = self.wait_for_events(7)
        self.check(stats)
        self.check_dashboard()
        by_message = self.stats("?message=%3Cm1%40example%3E")
        self.assertEqual((by_message["totals"]["clicks"], by_message["totals"]["opens"]), (3, 1))
        by_tag = self.stats("?tag=welcome")
        self.assertEqual(by_tag["totals"]["clicks"], 3)

        # The router forgets what it sent and sends its whole journal again: no count moves.
        self.router.stop()
        journal = self.directory.child("journal")
        for name in ("cursor.json", "cursor.previous.json"):
            if journal.child(name).exists():
                journal.child(name).remove()
        self.router.start().wait_listening()
        deadline = time.monotonic() + 60
        while self.duplicates() < 7:
            if time.monotonic() > deadline:
                self.fail(f"the journal was not sent again\n{self.router.output()}")
            time.sleep(0.2)
        self.check(self.stats())
        self.assertEqual(self.router.stop(), -signal.SIGTERM)
        self.assertEqual(self.collector.stop(), -signal.SIGTERM)

    def check_dashboard(self) -> None:
        """
        The real collector's dashboard in headless Chromium, with the reader's token: it
        loads without a console problem and shows the collector's figures.
        """
        profile = FilePath(self.mktemp())
        profile.makedirs()
        browser = DevTools(find_chromium(self), profile, FilePath(self.mktemp()))
        try:
            browser.send("Security.setIgnoreCertificateErrors", {"ignore": True})
            browser.send("Network.enable", session=True)
            token = base64.b64encode(f"team:{READER_TOKEN}".encode()).decode()
            browser.send(
                "Network.setExtraHTTPHeaders",
                {"headers": {"Authorization": f"Basic {token}"}},
                session=True,
            )
            browser.navigate(f"https://localhost:{self.collector_port}/")
            shown = browser.settle("")
            totals = browser.evaluate('document.getElementById("totals").innerText')
            links = browser.evaluate('document.getElementById("links").innerText')
            parts = browser.evaluate('document.getElementById("parts").innerText')
        finally:
            browser.close()
        self.assertEqual((shown["state"], shown["errors"]), ("ready", 0), shown)
        self.assertEqual(browser.problems, [])
        figures = totals.split("\n")
        for label, value in [("Clicks", "6"), ("Unique clicks", "4"), ("Opens", "1")]:
            self.assertEqual(figures[figures.index(label) + 1], value, totals)
        self.assertIn("https://shop.example/<m1@example>", links)
        self.assertIn("HTML\t\n\t6 85.7%\t3\t3", parts)

    def check(self, stats: dict[str, Any]) -> None:
        totals = stats["totals"]
        self.assertEqual(
            {
                key: totals[key]
                for key in ("clicks", "unique_clicks", "opens", "unique_opens", "human", "bot")
            },
            {"clicks": 6, "unique_clicks": 4, "opens": 1, "unique_opens": 1, "human": 4, "bot": 3},
        )
        self.assertEqual(
            sorted((row["reason"], row["events"]) for row in stats["bots"]),
            [
                ("head-request", 1),
                ("scanner-user-agent:google", 1),
                ("too-soon-after-issue", 1),
            ],
        )
        parts = {row["name"]: (row["total"], row["human"], row["bot"]) for row in stats["parts"]}
        self.assertEqual(parts, {"html": (6, 3, 3), "text": (1, 1, 0)})
        browsers = {row["name"]: row["total"] for row in stats["browsers"]}
        self.assertEqual(browsers["Firefox"], 3)
        self.assertEqual(browsers["Chrome"], 1)
        platforms = {row["name"]: row["total"] for row in stats["platforms"]}
        self.assertEqual(platforms["Mobile"], 1)
        self.assertEqual(platforms["WebMail"], 1)
        [top, *_] = stats["links"]
        self.assertEqual(
            (top["link"], top["url"], top["clicks"], top["bot"]),
            (link_id("<m1@example>", 1), "https://shop.example/<m1@example>", 3, 1),
        )


class DevenvTests(SynchronousTestCase):
    def test_materialRunsBoth(self) -> None:
        """
        What C{linkrouter devenv} makes (and C{make run} uses) starts a collector and a
        router that syncs to it: a click shows in the stats, read with the reader token.
        """
        directory = FilePath(self.mktemp())
        ports = DevPorts(free_port(), free_port(), free_port())
        make_devenv(directory, ports)
        collector = Daemon(
            self, "linkcollector", directory.child("linkcollector.toml"), ports.collector
        ).start()
        router = Daemon(self, "linkrouter", directory.child("linkrouter.toml"), ports.router)
        router.start()
        collector.wait_listening()
        router.wait_listening()
        keyring = load_keyring(directory.child("keyring.json"))
        link = sign(
            "https://example.com/",
            keyring.active,
            "devlink",
            Part.HTML,
            1,
            base=f"https://localhost:{ports.router}",
        )
        ca = directory.child("ca.pem")
        status, _, _ = https(ports.router, ca, "GET", urlsplit(link).path)
        self.assertEqual(status, 302)
        reader = directory.child("reader-token").getContent().strip().decode()
        deadline = time.monotonic() + 60
        while True:
            status, _, body = https(
                ports.collector,
                ca,
                "GET",
                "/v1/stats/totals",
                headers={"Authorization": f"Bearer {reader}"},
            )
            self.assertEqual(status, 200, body)
            if json.loads(body)["totals"]["clicks"] == 1:
                break
            if time.monotonic() > deadline:
                self.fail(f"no click in the stats\n{router.output()}\n{collector.output()}")
            time.sleep(0.2)
        self.assertEqual(router.stop(), -signal.SIGTERM)
        self.assertEqual(collector.stop(), -signal.SIGTERM)


class CollectorCrashTests(TwoDaemons):
    def test_killCollectorWhileSyncing(self) -> None:
        """
        C{kill -9} of the collector, again and again while the router syncs small batches:
        in the end every click is counted exactly once (a batch committed but not answered
        comes back as duplicates).
        """
        config = self.directory.child("linkrouter.toml")
        config.setContent(
            config.getContent().replace(b"interval = 0.2", b"interval = 0.05\nbatch_events = 20")
        )
        self.collector.start().wait_listening()
        self.router.start().wait_listening()
        link = self.link("<crash@example>", Part.HTML, int(time.time()) - 3600)
        context = ssl.create_default_context(cafile=self.ca.path)
        clicks = 0
        for round_ in range(5):
            connection = http.client.HTTPSConnection(
                "localhost", self.router_port, context=context, timeout=30
            )
            for _ in range(120):
                connection.request("GET", urlsplit(link).path, headers={"User-Agent": FIREFOX})
                response = connection.getresponse()
                response.read()
                self.assertEqual(response.status, 302)
                clicks += 1
            connection.close()
            time.sleep(0.05 * round_)  # let the kill land at a different point each round
            self.collector.kill()
            self.collector.start().wait_listening()
        stats = self.wait_for_events(clicks)
        time.sleep(1)  # anything still in flight would now be counted twice
        stats = self.stats()
        self.assertEqual(stats["totals"]["clicks"], clicks)
        self.assertEqual(self.router.stop(), -signal.SIGTERM)
