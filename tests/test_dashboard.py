"""
Tests for L{linkrouter.collector.dashboardresource}: the resource's answers and headers, the
files it ships, and the page itself in headless Chromium against a fake stats API serving a
seeded document of the shape C{docs/api.rst} fixes.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any

from twisted.internet import reactor as global_reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.interfaces import IReactorProcess, IReactorTCP
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.internet.threads import deferToThread
from twisted.internet.utils import getProcessOutputAndValue
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase
from twisted.web.resource import Resource
from twisted.web.server import Request, Site
from twisted.web.test.requesthelper import DummyRequest

from linkrouter.collector import dashboardresource
from linkrouter.collector.dashboardresource import (
    ASSET_TYPES,
    CONTENT_SECURITY_POLICY,
    PAGE,
    Asset,
    DashboardResource,
    load_assets,
)

SOURCE = FilePath(dashboardresource.__file__).sibling("dashboard")

# ---- the seeded stats document -------------------------------------------------------------

HOSTILE_URL = 'https://evil.example/"><img src=x id=injected>?a=<script>alert(1)</script>'
HOSTILE_NAME = "<b id=injected2>Bold</b>Browser"


def _series() -> list[dict[str, Any]]:
    """
    37 hourly buckets with events over three days, with gaps, clicks and opens split
    between humans and bots; deterministic.
    """
    start = datetime(2026, 12, 1, 10, tzinfo=UTC)
    points = []
    for index in range(37):
        hour = start + timedelta(hours=index * 2 - (index % 3))
        clicks = (index * 7) % 23 + 1
        opens = (index * 5) % 11
        bot = (index % 4) + (1 if index % 5 == 0 else 0)
        bot = min(bot, clicks + opens)
        points.append(
            {
                "start": hour.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "clicks": clicks,
                "opens": opens,
                "human": clicks + opens - bot,
                "bot": bot,
            }
        )
    return points


SERIES = _series()
CLICKS = sum(point["clicks"] for point in SERIES)
OPENS = sum(point["opens"] for point in SERIES)
HUMAN = sum(point["human"] for point in SERIES)
BOT = sum(point["bot"] for point in SERIES)


def _breakdown(*rows: tuple[str, int, int]) -> list[dict[str, Any]]:
    return [
        {"name": name, "total": human + bot, "human": human, "bot": bot}
        for name, human, bot in rows
    ]


STATS: dict[str, Any] = {
    "query": {
        "from": None,
        "to": None,
        "tag": None,
        "message": None,
        "link": None,
        "bucket": "hour",
        "top": 10,
    },
    "totals": {
        "clicks": CLICKS,
        "unique_clicks": 14,
        "opens": OPENS,
        "unique_opens": 31,
        "human": HUMAN,
        "bot": BOT,
        "first_click": SERIES[0]["start"],
        "last_click": "2026-12-04T10:47:12.345Z",
    },
    "bots": [
        {"reason": "scanner-user-agent:mimecast", "events": 41},
        {"reason": "head-request", "events": 23},
        {"reason": "too-soon-after-issue", "events": 12},
    ],
    "browsers": _breakdown(
        ("Chrome", 402, 12), ("Safari", 211, 3), ("Firefox", 88, 1), (HOSTILE_NAME, 1, 0)
    ),
    "platforms": _breakdown(("Desktop", 390, 40), ("Mobile", 280, 6), ("WebMail", 31, 30)),
    "os": _breakdown(("Windows", 301, 30), ("iOS", 190, 2), ("macOS", 140, 4), ("Unknown", 5, 9)),
    "countries": _breakdown(("NL", 312, 7), ("DE", 205, 19), ("US", 111, 40), ("Unknown", 3, 0)),
    "parts": _breakdown(("html", 590, 50), ("text", 112, 26)),
    "links": [
        {
            "link": "Xk3v9Qa_Lm0Z1",
            "url": "https://shop.example/sale?utm_source=mail",
            "tag": "welcome",
            "clicks": 1234,
            "human": 1200,
            "bot": 34,
            "first_click": "2026-12-01T10:02:03.123Z",
            "last_click": "2026-12-03T08:00:00.000Z",
        },
        {
            "link": "Xk3v9Qa_Lm0Z2",
            "url": HOSTILE_URL,
            "tag": "<i>tag</i>",
            "clicks": 55,
            "human": 50,
            "bot": 5,
            "first_click": "2026-12-01T11:00:00.000Z",
            "last_click": "2026-12-02T09:30:00.000Z",
        },
        {
            "link": "Zz9Unregistered",
            "url": None,
            "tag": None,
            "clicks": 3,
            "human": 0,
            "bot": 3,
            "first_click": "2026-12-02T00:00:00.000Z",
            "last_click": "2026-12-02T00:00:01.000Z",
        },
    ],
    "series": SERIES,
}


class FakeStats(Resource):
    """
    C{GET /v1/stats} answering a fixed document (or a fixed error), remembering the query
    of every request.
    """

    isLeaf = True

    def __init__(self, document: dict[str, Any] | bytes, status: int = 200) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.body = document if isinstance(document, bytes) else json.dumps(document).encode()
        self.status = status
        self.queries: list[dict[str, list[str]]] = []

    def render_GET(self, request: Request) -> bytes:
        args = request.args or {}
        self.queries.append(
            {key.decode(): [value.decode() for value in values] for key, values in args.items()}
        )
        request.setResponseCode(self.status)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        return self.body


def stats_site(stats: FakeStats, assets: dict[str, Asset] | None = None) -> Site:
    """
    The dashboard at C{/} with C{stats} at C{/v1/stats}, as the collector will mount them.
    """
    root = DashboardResource(assets)
    api = Resource()  # type: ignore[no-untyped-call]
    api.putChild(b"stats", stats)
    root.putChild(b"v1", api)
    return Site(root)


# ---- the resource, in memory ---------------------------------------------------------------


class Response:
    """
    One parsed HTTP/1.1 response.
    """

    def __init__(self, raw: bytes) -> None:
        head, _, self.body = raw.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        self.status = int(lines[0].split()[1])
        self.headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            self.headers[name.strip().lower()] = value.strip()


def exchange(site: Site, method: bytes, path: bytes, headers: bytes = b"") -> Response:
    peer = IPv4Address("TCP", "127.0.0.1", 40000)
    protocol = site.buildProtocol(peer)
    assert protocol is not None
    transport = StringTransport(peerAddress=peer)
    protocol.makeConnection(transport)
    protocol.dataReceived(
        method + b" " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + headers + b"\r\n"
    )
    return Response(transport.value())


SECURITY_HEADERS = {
    b"content-security-policy": CONTENT_SECURITY_POLICY,
    b"x-content-type-options": b"nosniff",
    b"cache-control": b"no-cache",
    b"x-frame-options": b"DENY",
    b"referrer-policy": b"no-referrer",
}


class DashboardResourceTests(SynchronousTestCase):
    """
    L{DashboardResource} behind a plain C{Site}, over an in-memory transport.
    """

    def setUp(self) -> None:
        self.assets = {
            PAGE: Asset(b"<!DOCTYPE html><title>page</title>", ASSET_TYPES[PAGE]),
            "dashboard.js": Asset(b"// script\n", ASSET_TYPES["dashboard.js"]),
            "dashboard.css": Asset(b"/* style */\n", ASSET_TYPES["dashboard.css"]),
        }
        self.stats = FakeStats({"totals": {}})
        self.site = stats_site(self.stats, self.assets)
        self.site.reactor = Clock()

    def assertSecure(self, response: Response) -> None:
        for name, value in SECURITY_HEADERS.items():
            self.assertEqual(response.headers.get(name), value, name)

    def test_page(self) -> None:
        """
        C{GET /} is the page as HTML, with the security headers, whatever the query.
        """
        for path in [b"/", b"/?tag=welcome&bucket=day"]:
            response = exchange(self.site, b"GET", path)
            self.assertEqual(response.status, 200)
            self.assertEqual(response.body, self.assets[PAGE].body)
            self.assertEqual(response.headers[b"content-type"], b"text/html; charset=utf-8")
            self.assertSecure(response)

    def test_assets(self) -> None:
        """
        C{/dashboard/<name>} serves each file with its own content type and the same headers.
        """
        for name, content_type in [
            (b"dashboard.js", b"text/javascript; charset=utf-8"),
            (b"dashboard.css", b"text/css; charset=utf-8"),
        ]:
            response = exchange(self.site, b"GET", b"/dashboard/" + name)
            self.assertEqual(response.status, 200, name)
            self.assertEqual(response.body, self.assets[name.decode()].body)
            self.assertEqual(response.headers[b"content-type"], content_type)
            self.assertEqual(response.headers[b"content-length"], str(len(response.body)).encode())
            self.assertSecure(response)

    def test_head(self) -> None:
        """
        HEAD answers as GET would, without the body.
        """
        response = exchange(self.site, b"HEAD", b"/dashboard/dashboard.js")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.body, b"")
        self.assertEqual(response.headers[b"content-type"], b"text/javascript; charset=utf-8")
        self.assertSecure(response)

    def test_notModified(self) -> None:
        """
        Each answer carries an entity tag; asked again with it, the answer is a bodiless 304.
        """
        first = exchange(self.site, b"GET", b"/dashboard/dashboard.css")
        etag = first.headers[b"etag"]
        self.assertEqual(etag, self.assets["dashboard.css"].etag)
        again = exchange(
            self.site, b"GET", b"/dashboard/dashboard.css", b"If-None-Match: " + etag + b"\r\n"
        )
        self.assertEqual((again.status, again.body), (304, b""))
        changed = exchange(
            self.site, b"GET", b"/dashboard/dashboard.css", b'If-None-Match: "other"\r\n'
        )
        self.assertEqual(changed.status, 200)

    def test_notFound(self) -> None:
        """
        Any other path is a plain-text 404 with the same security headers: the page under
        another name, unknown or nested assets, the directory itself, an encoded slash.
        """
        for path in [
            b"/index.html",
            b"/dashboard",
            b"/dashboard/",
            b"/dashboard/index.html",
            b"/dashboard/missing.js",
            b"/dashboard/dashboard.js/",
            b"/dashboard/x/dashboard.js",
            b"/dashboard%2Fdashboard.js",
            b"/dashboard/..%2Fdashboard.js",
            b"//",
            b"/favicon.ico",
            b"/v2",
        ]:
            response = exchange(self.site, b"GET", path)
            self.assertEqual(response.status, 404, path)
            self.assertEqual(response.body, b"Not found\n")
            self.assertEqual(response.headers[b"content-type"], b"text/plain; charset=utf-8")
            self.assertSecure(response)

    def test_notAllowed(self) -> None:
        """
        Anything but GET and HEAD is 405 with C{Allow}, on the page, an asset or a missing path.
        """
        for method in [b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH"]:
            for path in [b"/", b"/dashboard/dashboard.js", b"/nothing"]:
                response = exchange(self.site, method, path)
                self.assertEqual(response.status, 405, (method, path))
                self.assertEqual(response.headers[b"allow"], b"GET, HEAD")
                self.assertSecure(response)

    def test_childrenPutThere(self) -> None:
        """
        A child put on the resource (the collector's API) answers its own paths.
        """
        response = exchange(self.site, b"GET", b"/v1/stats?tag=x")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.headers[b"content-type"], b"application/json")
        self.assertEqual(self.stats.queries, [{"tag": ["x"]}])

    def test_readOnce(self) -> None:
        """
        The files are read when the resource is made; a change on disk afterwards changes
        nothing served.
        """
        assets = dict(self.assets)
        resource = DashboardResource(assets)
        assets[PAGE] = Asset(b"changed", ASSET_TYPES[PAGE])
        site = Site(resource)
        site.reactor = Clock()
        self.assertEqual(exchange(site, b"GET", b"/").body, self.assets[PAGE].body)

    def test_missingFile(self) -> None:
        """
        Without the page, the resource cannot be made: a broken install stops start-up.
        """
        assets = dict(self.assets)
        del assets[PAGE]
        self.assertRaises(KeyError, DashboardResource, assets)


# ---- the shipped files ---------------------------------------------------------------------

# The one URL allowed in the files: the SVG namespace, a name that is never fetched.
SVG_NAMESPACE = "http://www.w3.org/2000/svg"
URL_ATTRIBUTE = re.compile(r"""\b(?:src|href|action)\s*=\s*["']?\s*([^"'\s>]*)""", re.I)
CSS_URL = re.compile(r"""(?:url\(|@import)\s*["']?\s*([^"')\s;]*)""", re.I)


class ShippedFilesTests(SynchronousTestCase):
    """
    The files as the package ships them.
    """

    def test_installedPackage(self) -> None:
        """
        The installed package (outside the checkout) holds every served file, byte for byte
        as in the source tree.
        """
        cwd = FilePath(self.mktemp())
        cwd.makedirs()
        script = (
            "import json\n"
            "from linkrouter.collector.dashboardresource import load_assets\n"
            "print(json.dumps({n: a.body.decode() for n, a in load_assets().items()}))\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", script],
            cwd=cwd.path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "PYTHONPATH": ""},
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        installed = json.loads(result.stdout)
        self.assertEqual(sorted(installed), sorted(ASSET_TYPES))
        for name, body in installed.items():
            self.assertEqual(
                body,
                SOURCE.child(name).getContent().decode(),
                f"{name} differs from the installed copy: reinstall (pip install --no-deps .)",
            )

    def test_sourceFilesAllServed(self) -> None:
        """
        Every file of the dashboard directory is served (none is forgotten in
        L{ASSET_TYPES}) and L{load_assets} reads them all.
        """
        self.assertEqual(sorted(SOURCE.listdir()), sorted(ASSET_TYPES))
        self.assertEqual(
            {name: asset.body for name, asset in load_assets().items()},
            {name: SOURCE.child(name).getContent() for name in ASSET_TYPES},
        )

    def test_nothingFromElsewhere(self) -> None:
        """
        No file names another origin: no absolute or protocol-relative URL in any C{src},
        C{href}, C{action}, CSS C{url()} or C{@import}, and no C{http(s)://} anywhere but
        the SVG namespace name.
        """
        for name, asset in load_assets().items():
            content = asset.body.decode("utf-8")
            for pattern in (URL_ATTRIBUTE, CSS_URL):
                for match in pattern.finditer(content):
                    target = match.group(1)
                    if target == SVG_NAMESPACE and "xmlns" in content[: match.start()][-12:]:
                        continue
                    self.assertNotRegex(target, r"^(?:[a-z][a-z0-9+.-]*:|//)", (name, target))
            without_namespace = content.replace(SVG_NAMESPACE, "")
            self.assertNotRegex(without_namespace, r"(?i)https?:|//[a-z0-9.-]+\.[a-z]", name)

    def test_noInlineScript(self) -> None:
        """
        The page has one script, from its own file; no inline script or event handler
        attribute (the content security policy would block them), no inline style.
        """
        page = load_assets()[PAGE].body.decode()
        scripts = re.findall(r"<script\b[^>]*>(.*?)</script>", page, re.S | re.I)
        self.assertEqual(scripts, [""])
        self.assertIn('<script src="dashboard/dashboard.js" defer></script>', page)
        self.assertNotRegex(page, r"(?i)\son[a-z]+\s*=")
        self.assertNotRegex(page, r"(?i)<style|\sstyle\s*=")

    def test_noInnerHTML(self) -> None:
        """
        The script never parses strings as markup.
        """
        script = load_assets()["dashboard.js"].body.decode()
        for sink in ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("]:
            self.assertFalse(sink in script, sink)


# ---- the page in headless Chromium ---------------------------------------------------------


class Node:
    """
    An element of a parsed DOM dump.
    """

    def __init__(self, tag: str, attributes: dict[str, str], parent: Node | None) -> None:
        self.tag = tag
        self.attributes = attributes
        self.parent = parent
        self.children: list[Node | str] = []

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def walk(self) -> list[Node]:
        found = [self]
        for child in self.children:
            if isinstance(child, Node):
                found.extend(child.walk())
        return found

    def find_all(self, match: Callable[[Node], bool]) -> list[Node]:
        return [node for node in self.walk() if match(node)]

    def by_id(self, identifier: str) -> Node:
        found = self.find_all(lambda node: node.attributes.get("id") == identifier)
        assert len(found) == 1, (identifier, len(found))
        return found[0]


VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"}


class _DOMParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {}, None)
        self.current = self.root

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {name: value or "" for name, value in attrs}, self.current)
        self.current.children.append(node)
        if tag not in VOID:
            self.current = node

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.current.children.append(
            Node(tag, {name: value or "" for name, value in attrs}, self.current)
        )

    def handle_endtag(self, tag: str) -> None:
        node: Node | None = self.current
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.current = node.parent

    def handle_data(self, data: str) -> None:
        self.current.children.append(data)


def parse_dom(html: str) -> Node:
    parser = _DOMParser()
    parser.feed(html)
    parser.close()
    return parser.root


CHROMIUM_TIMEOUT = 60.0


def find_chromium(test: SynchronousTestCase) -> str:
    """
    The Chromium binary; without it, the test fails on CI (C{CI=true}) and is skipped
    elsewhere.
    """
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path is not None:
            return path
    if os.environ.get("CI") == "true":
        test.fail("chromium is not installed: .ci/run must apt-get install chromium")
    raise SkipTest("chromium is not installed (apt-get install chromium); CI runs this test")


class FindChromiumTests(SynchronousTestCase):
    """
    L{find_chromium} without Chromium on the path.
    """

    def test_failsOnCI(self) -> None:
        """
        On CI a missing Chromium fails the test: the browser tests must not go quietly.
        """
        self.patch(os, "environ", {"PATH": "", "CI": "true"})
        self.assertRaises(self.failureException, find_chromium, self)

    def test_skipsElsewhere(self) -> None:
        """
        Elsewhere the browser tests are skipped, saying how to install it.
        """
        self.patch(os, "environ", {"PATH": ""})
        skipped = self.assertRaises(SkipTest, find_chromium, self)
        self.assertIn("apt-get install chromium", str(skipped))


# A time zone far from UTC: the page must show UTC whatever the browser's zone.
BROWSER_ENVIRONMENT = {**os.environ, "TZ": "Pacific/Auckland", "LANG": "en_US.UTF-8"}


def browser_arguments(profile: FilePath[str]) -> tuple[str, ...]:
    """
    Headless Chromium as root on a machine without network: no sandbox, no GPU, no calls
    home, its own profile, English.
    """
    return (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--no-default-browser-check",
        "--lang=en-US",
        f"--user-data-dir={profile.path}",
    )


def console_lines(stderr: str) -> list[str]:
    """
    The page's console messages and script errors among Chromium's log lines.
    """
    return [
        line
        for line in stderr.splitlines()
        if ":CONSOLE" in line or "Uncaught" in line or "Content Security Policy" in line
    ]


class BrowserTestCase(TestCase):
    """
    Tests of the dashboard in headless Chromium, served by a real C{twisted.web} server on
    127.0.0.1 with a fake stats API.
    """

    timeout = CHROMIUM_TIMEOUT * 3

    def setUp(self) -> None:
        self.chromium = find_chromium(self)
        self.profile = FilePath(self.mktemp())
        self.profile.makedirs()

    def serve(self, stats: FakeStats) -> str:
        tcp: IReactorTCP = global_reactor  # type: ignore[assignment]
        port = tcp.listenTCP(0, stats_site(stats), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return f"http://127.0.0.1:{port.getHost().port}/"


class ChromiumTests(BrowserTestCase):
    """
    The page as Chromium renders it after loading, from C{--dump-dom}.
    """

    def dump(self, url: str, *extra: str) -> Deferred[tuple[bytes, bytes, int]]:
        process: IReactorProcess = global_reactor  # type: ignore[assignment]
        arguments = (
            *browser_arguments(self.profile),
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=10000",
            f"--timeout={int(CHROMIUM_TIMEOUT * 1000)}",
            *extra,
            url,
        )
        result: Deferred[tuple[bytes, bytes, int]] = getProcessOutputAndValue(
            self.chromium, arguments, env=BROWSER_ENVIRONMENT, reactor=process
        )
        result.addTimeout(CHROMIUM_TIMEOUT, global_reactor)  # type: ignore[arg-type]
        return result

    @inlineCallbacks
    def render(self, stats: FakeStats, query: str = "") -> Any:
        url = self.serve(stats) + query
        out, err, code = yield self.dump(url, "--dump-dom")
        stderr = err.decode("utf-8", "replace")
        self.assertEqual(code, 0, stderr)
        self.assertEqual(console_lines(stderr), [], stderr)
        return parse_dom(out.decode("utf-8"))

    @inlineCallbacks
    def test_seededStats(self) -> Any:
        """
        The page loads with no console message and no uncaught error, asks the API once
        with the query of its own URL, and shows the seeded figures: totals, the time
        series (one bar and one table row a bucket), top links, every breakdown; hostile
        strings show as text and inject nothing.
        """
        stats = FakeStats(STATS)
        dom: Node = yield self.render(stats, "?tag=welcome&top=25")
        self.assertEqual(dom.by_id("errors").children, [])
        root = dom.find_all(lambda node: node.tag == "html")[0]
        self.assertEqual(root.attributes.get("data-state"), "ready")
        self.assertNotIn("data-uncaught", root.attributes)
        self.assertEqual(stats.queries, [{"tag": ["welcome"], "top": ["25"]}])

        def stat(key: str) -> Node:
            [found] = dom.find_all(lambda node: node.attributes.get("data-stat") == key)
            return found

        for key, value in [
            ("clicks", CLICKS),
            ("unique_clicks", 14),
            ("opens", OPENS),
            ("unique_opens", 31),
        ]:
            [shown] = stat(key).find_all(lambda node: "data-value" in node.attributes)
            self.assertEqual(shown.attributes["data-value"], str(value), key)
            self.assertEqual(shown.text(), f"{value:,}", key)
        self.assertIn(f"{HUMAN / (HUMAN + BOT):.1%}".replace(".0%", "%"), stat("human").text())
        self.assertIn(f"{BOT:,} events", stat("bot").text())
        self.assertIn("2026-12-01 10:00 UTC", stat("first_click").text())
        self.assertIn("2026-12-04 10:47 UTC", stat("last_click").text())

        figure = dom.by_id("series")
        self.assertEqual(figure.attributes["data-points"], str(len(SERIES)))
        bars = figure.find_all(lambda node: node.attributes.get("class") == "bar")
        self.assertEqual(
            [bar.attributes["data-start"] for bar in bars], [p["start"] for p in SERIES]
        )
        rows = dom.by_id("series-table").find_all(lambda node: node.tag == "tr")
        self.assertEqual(len(rows), len(SERIES) + 1)
        first = SERIES[0]
        self.assertEqual(
            [cell.text() for cell in rows[1].children if isinstance(cell, Node)],
            [
                "2026-12-01 10:00 UTC",
                *(str(first[k]) for k in ("clicks", "opens", "human", "bot")),
            ],
        )

        links = dom.by_id("links").find_all(lambda node: "data-link" in node.attributes)
        link_rows = [node for node in links if node.tag == "tr"]
        self.assertEqual(
            [row.attributes["data-link"] for row in link_rows],
            ["Xk3v9Qa_Lm0Z1", "Xk3v9Qa_Lm0Z2", "Zz9Unregistered"],
        )
        self.assertIn("https://shop.example/sale?utm_source=mail", link_rows[0].text())
        self.assertIn("1,234", link_rows[0].text())
        self.assertIn(HOSTILE_URL, link_rows[1].text())
        self.assertIn("Not registered", link_rows[2].text())
        self.assertEqual(dom.by_id("links").find_all(lambda node: node.tag == "a"), [])

        def breakdown(table: str) -> dict[str, list[str]]:
            return {
                row.attributes["data-name"]: [
                    cell.attributes["data-value"]
                    for cell in row.find_all(lambda node: "data-value" in node.attributes)
                ]
                for row in dom.by_id(table).find_all(lambda node: "data-name" in node.attributes)
            }

        self.assertEqual(
            breakdown("countries"),
            {
                "NL": ["319", "312", "7"],
                "DE": ["224", "205", "19"],
                "US": ["151", "111", "40"],
                "Unknown": ["3", "3", "0"],
            },
        )
        self.assertIn("Netherlands (NL)", dom.by_id("countries").text())
        self.assertEqual(
            breakdown("parts"), {"html": ["640", "590", "50"], "text": ["138", "112", "26"]}
        )
        self.assertIn("HTML", dom.by_id("parts").text())
        self.assertEqual(breakdown("platforms")["WebMail"], ["61", "31", "30"])
        self.assertEqual(breakdown("os")["Unknown"], ["14", "5", "9"])
        self.assertEqual(breakdown("browsers")[HOSTILE_NAME], ["1", "1", "0"])
        self.assertIn(HOSTILE_NAME, dom.by_id("browsers").text())
        self.assertEqual(
            breakdown("bots"),
            {
                "scanner-user-agent:mimecast": ["41"],
                "head-request": ["23"],
                "too-soon-after-issue": ["12"],
            },
        )

        injected = dom.find_all(
            lambda node: (
                node.attributes.get("id") in ("injected", "injected2")
                or node.tag in ("img", "b", "i")
            )
        )
        self.assertEqual(injected, [])
        self.assertEqual(
            [node.attributes.get("src") for node in dom.find_all(lambda n: n.tag == "script")],
            ["dashboard/dashboard.js"],
        )

    @inlineCallbacks
    def test_errorShown(self) -> Any:
        """
        A 401 or 500 from the API is shown in the page, with the API's message, and throws
        nothing; the report stays hidden.
        """
        for status, words in [(401, "Not allowed to read the stats"), (500, "failed to answer")]:
            stats = FakeStats({"error": "no <b>token</b>"}, status)
            dom: Node = yield self.render(stats)
            root = dom.find_all(lambda node: node.tag == "html")[0]
            self.assertEqual(root.attributes.get("data-state"), "error")
            self.assertNotIn("data-uncaught", root.attributes)
            message = dom.by_id("status").text()
            self.assertIn(words, message)
            self.assertIn(f"HTTP {status}: no <b>token</b>", message)
            self.assertIn("hidden", dom.by_id("report").attributes)
            self.assertEqual(dom.by_id("errors").children, [])

    @inlineCallbacks
    def test_notStats(self) -> Any:
        """
        An answer that is not a stats document, JSON without totals or no JSON at all, is an
        error shown in the page, not an exception.
        """
        for body, words in [
            ({"nothing": True}, "has no totals"),
            (b"<html>a proxy's page</html>", "not valid JSON"),
        ]:
            stats = FakeStats(body)
            dom: Node = yield self.render(stats, "?bucket=day")
            self.assertEqual(stats.queries, [{"bucket": ["day"]}])
            self.assertIn(words, dom.by_id("status").text())
            self.assertIn("hidden", dom.by_id("report").attributes)
            self.assertEqual(dom.by_id("errors").children, [])


SETTLE = """(search, limit) => new Promise((resolve, reject) => {
  const started = Date.now();
  const check = () => {
    const state = document.documentElement.dataset.state;
    if (location.search === search && state !== "loading") {
      resolve({
        state: state,
        search: location.search,
        fields: Object.fromEntries(new FormData(document.getElementById("filters"))),
        pressed: [...document.querySelectorAll("[aria-pressed=true]")].map((b) => b.dataset.split),
        legend: document.getElementById("series-legend").textContent,
        errors: document.getElementById("errors").childElementCount,
      });
    } else if (Date.now() - started > limit) {
      reject(new Error(`still ${state} at ${location.search}`));
    } else {
      setTimeout(check, 20);
    }
  };
  check();
})"""
"""
A function of the page: once its address has the query C{search} and it has shown an
answer, what it shows.
"""


class DevTools:
    """
    A blocking client of the DevTools protocol over C{--remote-debugging-pipe} (commands on
    the browser's fd 3, answers on its fd 4, each message a JSON text ended by a NUL),
    attached to the browser's one page; for a worker thread, each wait bounded.

    @ivar problems: every console message of level warning or error, uncaught exception
        and browser log entry (failed loads, content security policy violations) seen.
    """

    def __init__(self, chromium: str, profile: FilePath[str], log: FilePath[str]) -> None:
        commands, self._commands = os.pipe()
        self._answers, answers = os.pipe()

        def on_fds_3_and_4() -> None:
            os.dup2(commands, 3)
            os.dup2(answers, 4)

        with log.open("w") as output:
            self.process = subprocess.Popen(
                [chromium, *browser_arguments(profile), "--remote-debugging-pipe", "about:blank"],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=output,
                env=BROWSER_ENVIRONMENT,
                preexec_fn=on_fds_3_and_4,
                pass_fds=(3, 4),
            )
        os.close(commands)
        os.close(answers)
        self._buffer = b""
        self._last_id = 0
        self.problems: list[dict[str, Any]] = []
        self._events: list[dict[str, Any]] = []
        targets = self.send("Target.getTargets")["targetInfos"]
        [page] = [target for target in targets if target["type"] == "page"]
        self._session = self.send(
            "Target.attachToTarget", {"targetId": page["targetId"], "flatten": True}
        )["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            self.send(f"{domain}.enable", session=True)

    def send(
        self, method: str, params: dict[str, Any] | None = None, session: bool = False
    ) -> Any:
        """
        Send a command and wait for its answer; events read meanwhile are kept.
        """
        self._last_id += 1
        message: dict[str, Any] = {"id": self._last_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self._session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        answer = self._until(lambda message: message.get("id") == self._last_id)
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        return answer["result"]

    def navigate(self, url: str) -> None:
        """
        Load C{url} in the page and wait for its C{load} event.
        """
        self._events.clear()
        self.send("Page.navigate", {"url": url}, session=True)
        self._until(lambda message: message.get("method") == "Page.loadEventFired")

    def _until(self, wanted: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        for index, event in enumerate(self._events):
            if wanted(event):
                return self._events.pop(index)
        deadline = time.monotonic() + CHROMIUM_TIMEOUT
        while True:
            for message in self._read(deadline):
                if wanted(message):
                    return message
                self._note(message)

    def _read(self, deadline: float) -> list[dict[str, Any]]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no answer from chromium within {CHROMIUM_TIMEOUT} s")
            if select.select([self._answers], [], [], left)[0]:
                chunk = os.read(self._answers, 1 << 16)
                if not chunk:
                    raise EOFError("chromium closed its DevTools pipe")
                self._buffer += chunk
        *messages, self._buffer = self._buffer.split(b"\0")
        return [json.loads(message) for message in messages]

    def _note(self, event: dict[str, Any]) -> None:
        self._events.append(event)
        method = event.get("method")
        params = event.get("params", {})
        if (
            method == "Runtime.exceptionThrown"
            or (method == "Runtime.consoleAPICalled" and params["type"] in ("error", "warning"))
            or (method == "Log.entryAdded" and params["entry"]["level"] in ("error", "warning"))
        ):
            self.problems.append(event)

    def evaluate(self, expression: str) -> Any:
        """
        The value of a JavaScript expression in the page, awaited if it is a promise.
        """
        result = self.send(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True},
            session=True,
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def settle(self, search: str) -> dict[str, Any]:
        """
        Wait until the page's address has the query C{search} and it has shown an answer;
        then what it shows: state, query, the form's fields, the split buttons pressed.
        """
        limit = CHROMIUM_TIMEOUT * 1000 / 2
        return self.evaluate(f"({SETTLE})({json.dumps(search)}, {limit})")

    def close(self) -> None:
        try:
            self.send("Browser.close")
            self.process.wait(CHROMIUM_TIMEOUT)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            os.close(self._commands)
            os.close(self._answers)


class InteractionTests(BrowserTestCase):
    """
    The page driven as a user would, through the DevTools protocol.
    """

    def interact(self, url: str) -> list[dict[str, Any]]:
        """
        In a worker thread: load the page, filter with the form, pick a link, go back,
        switch the chart's split; what the page showed after each step.
        """
        browser = DevTools(self.chromium, self.profile, FilePath(self.mktemp()))
        try:
            seen = []
            browser.navigate(url)
            seen.append(browser.settle(""))
            browser.evaluate(
                """(() => {
                  const form = document.getElementById("filters");
                  form.elements.from.value = "2026-12-01";
                  form.elements.tag.value = "promo";
                  form.elements.bucket.value = "day";
                  form.requestSubmit();
                })()"""
            )
            seen.append(browser.settle("?from=2026-12-01&tag=promo&bucket=day"))
            browser.evaluate('document.querySelector("button[data-link=Xk3v9Qa_Lm0Z2]").click()')
            seen.append(browser.settle("?from=2026-12-01&tag=promo&link=Xk3v9Qa_Lm0Z2&bucket=day"))
            browser.evaluate("history.back()")
            seen.append(browser.settle("?from=2026-12-01&tag=promo&bucket=day"))
            browser.evaluate('document.querySelector("[data-split=audience]").click()')
            seen.append(browser.settle("?from=2026-12-01&tag=promo&bucket=day"))
            browser.evaluate('document.getElementById("reset").click()')
            seen.append(browser.settle(""))
            seen.append({"problems": browser.problems})
            return seen
        finally:
            browser.close()

    @inlineCallbacks
    def test_filters(self) -> Any:
        """
        Applying the form puts its filters in the address (defaults left out) and asks the
        API with them; "Only this" adds the link; going back restores the form from the
        address and asks again; the split toggle redraws without asking; Reset clears it
        all. No console warning or error, no failed load, no policy violation on the way.
        """
        stats = FakeStats(STATS)
        url = self.serve(stats)
        seen = yield deferToThread(self.interact, url)
        problems = seen.pop()["problems"]
        self.assertEqual(problems, [])
        self.assertEqual([step["state"] for step in seen], ["ready"] * 6)
        self.assertEqual([step["errors"] for step in seen], [0] * 6)
        filtered = {"from": ["2026-12-01"], "tag": ["promo"], "bucket": ["day"]}
        self.assertEqual(
            stats.queries,
            [{}, filtered, {**filtered, "link": ["Xk3v9Qa_Lm0Z2"]}, filtered, {}],
        )
        empty = {"from": "", "to": "", "tag": "", "message": "", "link": "", "top": "10"}
        self.assertEqual(seen[0]["fields"], {**empty, "bucket": "hour"})
        self.assertEqual(
            seen[2]["fields"],
            {
                **empty,
                "from": "2026-12-01",
                "tag": "promo",
                "bucket": "day",
                "link": "Xk3v9Qa_Lm0Z2",
            },
        )
        self.assertEqual(
            seen[3]["fields"], {**empty, "from": "2026-12-01", "tag": "promo", "bucket": "day"}
        )
        self.assertEqual([step["pressed"] for step in seen[3:5]], [["kind"], ["audience"]])
        self.assertIn("Bot (hatched)", seen[4]["legend"])
        self.assertEqual(seen[5]["fields"], {**empty, "bucket": "hour"})


class DashboardAccessTests(SynchronousTestCase):
    """
    With C{allowed}, the page answers 401 with a Basic challenge to a request it refuses;
    the static files stay open (they hold no data).
    """

    def test_challenge(self) -> None:
        dashboard = DashboardResource(
            allowed=lambda request: request.getHeader(b"authorization") == b"Basic ok"
        )
        refused = DummyRequest([])
        body = dashboard.getChildWithDefault(b"", refused).render(refused)
        self.assertEqual(refused.responseCode, 401)
        self.assertEqual(
            refused.responseHeaders.getRawHeaders(b"www-authenticate"),
            [b'Basic realm="linkrouter dashboard"'],
        )
        self.assertNotIn(b"<html", body.lower())
        allowed = DummyRequest([])
        allowed.requestHeaders.setRawHeaders(b"authorization", [b"Basic ok"])
        body = dashboard.getChildWithDefault(b"", allowed).render(allowed)
        self.assertEqual(allowed.responseCode or 200, 200)
        self.assertIn(b"<html", body.lower())
