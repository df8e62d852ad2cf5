"""
Tests for L{linkrouter.tap}: the composed service, its start-up checks and its ordered stop,
and the real C{twistd linkrouter} process answering HTTPS on loopback.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from typing import Any
from urllib.parse import urlsplit

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.tcp import Port
from twisted.internet.testing import MemoryReactorClock
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.filepath import FilePath
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from linkrouter.codec import Kind, Part, sign
from linkrouter.config import RouterConfig, load_config
from linkrouter.devenv import make_certificate
from linkrouter.journalservice import run_in_place
from linkrouter.journaltool import verify_journal
from linkrouter.keyfile import save_keyring
from linkrouter.keys import Keyring, new_key
from linkrouter.proxyprotocol import V2_SIGNATURE, ProxyFactory
from linkrouter.site import LinkSite
from linkrouter.tap import Options, build_service, public_port

from .daemons import journal_events

BASE = "https://localhost"
BEHIND_BALANCER = b'proxy_protocol = true\nproxy_from = ["127.0.0.1"]\n[journal]'


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def router_directory(
    test: SynchronousTestCase, port: int, admin_port: int, extra: str = ""
) -> FilePath[str]:
    """
    A directory with a keyring, a dev CA and certificate, and a config for them.
    """
    directory = FilePath(test.mktemp())
    directory.makedirs()
    save_keyring(Keyring((new_key(),)), directory.child("keyring.json"))
    make_certificate(directory)
    directory.child("linkrouter.toml").setContent(
        f"""router_id = "test-router"
keyring = "keyring.json"
[listen]
port = {port}
certificate = "localhost.pem"
private_key = "localhost-key.pem"
[journal]
directory = "journal"
fsync = "always"
[admin]
port = {admin_port}
{extra}""".encode()
    )
    return directory


class ServiceTests(SynchronousTestCase):
    def test_optionsRequireConfig(self) -> None:
        """
        C{twistd linkrouter} without --config is a usage error.
        """
        self.assertRaises(UsageError, Options().parseOptions, [])

    def test_listensWhereConfigured(self) -> None:
        """
        Started, the router listens with TLS on the public port and in plain text on the
        loopback admin port.
        """
        directory = router_directory(self, 8443, 9111)
        reactor = MemoryReactorClock()
        service = build_service(
            load_config(directory.child("linkrouter.toml")), reactor, run_in_place
        )
        service.startService()
        self.assertEqual([(p, i) for p, _, _, _, i in reactor.sslServers], [(8443, "127.0.0.1")])
        self.assertEqual([(p, i) for p, _, _, i in reactor.tcpServers], [(9111, "127.0.0.1")])

    def test_listensBehindBalancer(self) -> None:
        """
        With listen.proxy_protocol, the public port is plain TCP whose connections go
        through the PROXY parser first, then TLS, then the site.
        """
        config = router_directory(self, 8443, 9111).child("linkrouter.toml")
        config.setContent(config.getContent().replace(b"[journal]", BEHIND_BALANCER))
        reactor = MemoryReactorClock()
        service = build_service(load_config(config), reactor, run_in_place)
        service.startService()
        self.assertEqual(reactor.sslServers, [])
        [(port, factory, _, interface), _] = reactor.tcpServers
        self.assertEqual((port, interface), (8443, "127.0.0.1"))
        self.assertIsInstance(factory, ProxyFactory)
        self.assertIsInstance(factory.wrappedFactory, TLSMemoryBIOFactory)
        self.assertIsInstance(factory.wrappedFactory.wrappedFactory, LinkSite)
        self.assertIsNone(factory.buildProtocol(IPv4Address("TCP", "127.0.0.2", 1)))

    def test_stopsInOrder(self) -> None:
        """
        A stop turns /healthz to 503 at once, closes the public listener only after
        drain_seconds, and the journal only after that.
        """
        directory = router_directory(self, 8443, 9111, "")
        config = directory.child("linkrouter.toml")
        config.setContent(
            config.getContent().replace(b"[journal]", b"drain_seconds = 5\n[journal]")
        )
        clock = Clock()
        reactor = MemoryReactorClock()
        reactor.callLater = clock.callLater  # type: ignore[method-assign]
        reactor.seconds = clock.seconds  # type: ignore[method-assign]
        service = build_service(load_config(config), reactor, run_in_place)
        service.startService()
        stopped: Deferred[None] = service.stopService()
        self.assertTrue(service.resource.draining)
        self.assertTrue(service.public.running)
        self.assertTrue(service.journal.running)
        clock.advance(5)
        self.assertFalse(service.public.running)
        self.assertFalse(service.journal.running)
        self.assertIsNone(self.successResultOf(stopped))

    def test_badMaterialStopsStartUp(self) -> None:
        """
        A journal directory open to others, or a key that does not match the certificate,
        stops start-up with a clear error.
        """
        from linkrouter.journal import JournalError
        from linkrouter.tls import TLSError

        directory = router_directory(self, 8443, 9111)
        config = load_config(directory.child("linkrouter.toml"))
        directory.child("journal").makedirs()
        os.chmod(directory.child("journal").path, 0o755)
        self.assertRaises(JournalError, build_service, config, MemoryReactorClock())
        os.chmod(directory.child("journal").path, 0o700)
        other = FilePath(self.mktemp())
        other.makedirs()
        _, _, wrong_key = make_certificate(other)
        directory.child("localhost-key.pem").setContent(wrong_key.getContent())
        os.chmod(directory.child("localhost-key.pem").path, 0o600)
        error = self.assertRaises(TLSError, build_service, config, MemoryReactorClock())
        self.assertIn("does not match", str(error))


class ReusePortTests(SynchronousTestCase):
    """
    C{listen.reuse_port}: several listeners on one address and port, IPv4 and IPv6.
    """

    def listen(self, host: str, port: int, reuse_port: bool) -> Port:
        config = RouterConfig(
            router_id="r",
            keyring=FilePath("/k"),
            journal_directory=FilePath("/j"),
            listen_host=host,
            listen_port=port,
            reuse_port=reuse_port,
        )
        listening = Port(
            public_port(config),
            Factory.forProtocol(Protocol),
            interface=host,
            reactor=MemoryReactorClock(),
        )
        listening.startListening()
        self.addCleanup(listening.socket.close)
        return listening

    def test_listenersShareThePort(self) -> None:
        """
        With reuse_port, a second listener binds the first one's address and port (the
        family follows the address); without it, the second is refused.
        """
        for host in ["127.0.0.1", "::1"]:
            first = self.listen(host, 0, True)
            port = first.getHost().port
            second = self.listen(host, port, True)
            self.assertEqual((second.getHost().host, second.getHost().port), (host, port))
            self.assertRaises(CannotListenError, self.listen, host, port, False)
            alone = self.listen(host, 0, False)
            self.assertRaises(CannotListenError, self.listen, host, alone.getHost().port, True)

    def test_defaultIsAPlainPort(self) -> None:
        """
        Without reuse_port, the public port is the configured number, as before.
        """
        directory = router_directory(self, 8443, 9111)
        reactor = MemoryReactorClock()
        build_service(
            load_config(directory.child("linkrouter.toml")), reactor, run_in_place
        ).startService()
        self.assertEqual(reactor.sslServers[0][0], 8443)


class TwistdProcessTests(SynchronousTestCase):
    """
    The installed C{twistd linkrouter}, started as an operator would start it, spoken to
    over real HTTPS verified against the test CA.
    """

    def setUp(self) -> None:
        self.port, self.admin_port = free_port(), free_port()
        self.directory = router_directory(self, self.port, self.admin_port)
        self.keyring = Keyring((new_key(),))
        save_keyring(self.keyring, self.directory.child("keyring.json"))
        self.context = ssl.create_default_context(cafile=self.directory.child("ca.pem").path)

    def twistd(self) -> subprocess.Popen[bytes]:
        command = [
            os.path.join(os.path.dirname(sys.executable), "twistd"),
            "-n",
            "--pidfile=",
            "linkrouter",
            "--config",
            self.directory.child("linkrouter.toml").path,
        ]
        process = subprocess.Popen(
            command, cwd=self.directory.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        self.addCleanup(self.stop, process)
        return process

    def stop(self, process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            process.kill()
            process.wait()
        assert process.stdout is not None
        process.stdout.close()

    def request(
        self, path: str, method: str = "GET", headers: dict[str, str] | None = None
    ) -> tuple[http.client.HTTPResponse, bytes]:
        deadline = time.monotonic() + 30
        while True:
            connection = http.client.HTTPSConnection(
                "localhost", self.port, context=self.context, timeout=10
            )
            try:
                connection.request(method, path, headers=headers or {})
                response = connection.getresponse()
                return response, response.read()
            except ConnectionRefusedError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
            finally:
                connection.close()

    def events(self) -> list[dict[str, Any]]:
        return journal_events(self.directory.child("journal"))

    def test_router(self) -> None:
        """
        Over real HTTPS: a valid link redirects with the exact Location and every header; a
        HEAD and an open pixel are journaled; a 10 KB binary User-Agent becomes one valid
        line; hostile requests get their refusals and journal nothing; SIGTERM drains the
        journal; no destination is anywhere on disk or in the output.
        """
        process = self.twistd()
        target = "https://distinctive-target.example/private/r3set?token=s3cret-t0ken&x=1"
        link = sign(target, self.keyring.active, "L1", Part.HTML, 1764780000, base=BASE)
        path = urlsplit(link).path
        pixel = urlsplit(
            sign(None, self.keyring.active, "P1", Part.HTML, 1, base=BASE, kind=Kind.OPEN)
        ).path

        response, body = self.request(path)
        self.assertEqual(response.status, 302)
        self.assertEqual(response.getheader("Location"), target)
        self.assertEqual(response.getheader("Strict-Transport-Security"), "max-age=63072000")
        self.assertEqual(response.getheader("Cache-Control"), "no-store")
        self.assertEqual(response.getheader("Referrer-Policy"), "no-referrer")
        self.assertEqual(body, b"")
        self.assertEqual(self.request(path, "HEAD")[0].status, 302)
        response, body = self.request(pixel)
        self.assertEqual((response.status, len(body)), (200, 43))
        agent = ("Mozilla/5.0 " + "\u00e9\u4f8b" * 1700).encode("utf-8")[:10_000] + b"\xff\xfe"
        self.assertEqual(
            self.request(path, headers={"User-Agent": agent.decode("latin-1")})[0].status, 302
        )

        hostile = [
            (path[:-1] + ("A" if path[-1] != "A" else "B"), "GET", 404),
            (path + "/", "GET", 404),
            (path.replace("/1s/", "/1s//"), "GET", 404),
            ("/1s/../" + path, "GET", 404),
            (path.replace("%2F", "/"), "GET", 404),
            (path.replace("%2F", "%252F"), "GET", 404),
            ("/" + "a" * 8000, "GET", 404),
            (path, "POST", 405),
            (path, "PUT", 405),
            (path, "OPTIONS", 405),
            (path, "TRACE", 405),
        ]
        for hostile_path, method, status in hostile:
            response, _ = self.request(hostile_path, method)
            self.assertEqual(response.status, status, (hostile_path[:80], method))
            self.assertEqual(response.getheader("Strict-Transport-Security"), "max-age=63072000")
        response, _ = self.request(path + "?u=https://evil.example/")
        self.assertEqual(response.getheader("Location"), target)
        self.assertEqual(self.request("/healthz")[0].status, 200)

        metrics = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=10)
        metrics.request("GET", "/metrics")
        text = metrics.getresponse().read().decode()
        self.assertIn('linkrouter_requests_total{outcome="redirect"} 4.0', text)
        self.assertIn('linkrouter_requests_total{outcome="invalid"} 7.0', text)

        process.send_signal(signal.SIGTERM)
        self.assertEqual(process.wait(30), -signal.SIGTERM)
        assert process.stdout is not None
        output = process.stdout.read()

        events = self.events()
        self.assertEqual(
            [(e["kind"], e["link"], e["method"]) for e in events],
            [
                ("click", "L1", "GET"),
                ("click", "L1", "HEAD"),
                ("open", "P1", "GET"),
                ("click", "L1", "GET"),
                ("click", "L1", "GET"),
            ],
        )
        self.assertEqual([e["seq"] for e in events], [1, 2, 3, 4, 5])
        self.assertEqual(events[0]["ip"], "127.0.0.1")
        self.assertEqual(events[0]["router"], "test-router")
        self.assertEqual(
            len(str(events[3]["ua"]).encode("utf-8")),
            512 - 0 + 0 or 0 + len(str(events[3]["ua"]).encode("utf-8")),
        )
        self.assertEqual(events[3]["ua"], agent[:512].decode("utf-8", "backslashreplace"))
        self.assertTrue(verify_journal(self.directory.child("journal")).ok)
        for secret in [b"distinctive-target", b"s3cret", b"r3set"]:
            self.assertNotIn(secret, output)
            for root, _, files in os.walk(self.directory.path):
                for name in files:
                    with open(os.path.join(root, name), "rb") as file:
                        self.assertNotIn(secret, file.read(), name)

    def proxied(self, header: bytes, path: str, source: str = "127.0.0.1") -> bytes:
        """
        Everything the router sends back on a connection from C{source} that starts with
        C{header}, then speaks TLS and asks for C{path}.
        """
        raw = socket.create_connection(("127.0.0.1", self.port), 10, (source, 0))
        try:
            raw.sendall(header)
            with self.context.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
                answer = b""
                while b"\r\n\r\n" not in answer:
                    chunk = tls.recv(65536)
                    if not chunk:
                        break
                    answer += chunk
                return answer
        finally:
            raw.close()

    def refused(self, header: bytes, source: str = "127.0.0.1") -> bytes:
        """
        What the router sends back on a raw connection from C{source} that starts with
        C{header} (then a TLS ClientHello's first bytes): C{b""} once it closes.
        """
        raw = socket.create_connection(("127.0.0.1", self.port), 10, (source, 0))
        try:
            raw.sendall(header + b"\x16\x03\x01\x00\x05hello")
            received = b""
            while True:
                try:
                    chunk = raw.recv(65536)
                except ConnectionResetError:
                    return received
                if not chunk:
                    return received
                received += chunk
        finally:
            raw.close()

    def test_behindBalancer(self) -> None:
        """
        With listen.proxy_protocol, the real twistd reads PROXY v1 and v2 headers sent
        before TLS (raw TCP, PROXY, TLS, HTTP), answers over TLS and journals the header's
        source; a LOCAL header (health checks) is served; a connection from an address that
        is not a balancer, or without a valid header, is closed without a byte.
        """
        config = self.directory.child("linkrouter.toml")
        config.setContent(config.getContent().replace(b"[journal]", BEHIND_BALANCER))
        process = self.twistd()
        link = sign("https://example.com/", self.keyring.active, "L1", Part.HTML, 1, base=BASE)
        path = urlsplit(link).path
        v1 = b"PROXY TCP6 2001:db8::9 ::1 40000 443\r\n"
        v2 = V2_SIGNATURE + b"\x21\x11\x00\x0c" + bytes([203, 0, 113, 9, 127, 0, 0, 1])
        v2 += b"\x9c\x40\x01\xbb"
        local = V2_SIGNATURE + b"\x20\x00\x00\x00"
        deadline = time.monotonic() + 30
        while True:
            try:
                first = self.proxied(v2, path)
                break
            except ConnectionRefusedError:
                self.assertLess(time.monotonic(), deadline)
                time.sleep(0.1)
        self.assertTrue(first.startswith(b"HTTP/1.1 302 "), first)
        self.assertTrue(self.proxied(v1, path).startswith(b"HTTP/1.1 302 "))
        self.assertTrue(self.proxied(local, "/healthz").startswith(b"HTTP/1.1 200 "))
        self.assertEqual(self.refused(v2, source="127.0.0.2"), b"")
        self.assertEqual(self.refused(b""), b"")
        self.assertEqual(self.refused(b"PROXY TCP4 1.2.3.4\r\n"), b"")
        process.send_signal(signal.SIGTERM)
        self.assertEqual(process.wait(30), -signal.SIGTERM)
        self.assertEqual([e["ip"] for e in self.events()], ["203.0.113.9", "2001:db8::9"])

    def test_badKeyringStopsStartUp(self) -> None:
        """
        A keyring readable by others stops start-up with one line naming the fix.
        """
        os.chmod(self.directory.child("keyring.json").path, 0o644)
        process = self.twistd()
        self.assertNotEqual(process.wait(30), 0)
        assert process.stdout is not None
        self.assertIn(b"chmod 600", process.stdout.read())
