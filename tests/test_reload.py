"""
Tests for L{linkrouter.reload}: all-or-nothing reloads of the keyring, certificates and block
list; SIGHUP scheduling one in the reactor; and a real C{twistd linkrouter} reloaded on SIGHUP
under continuous HTTPS load without a failed request.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogEvent, Logger, formatEvent
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from linkrouter.blocklist import EMPTY, BlockList
from linkrouter.codec import Part, sign
from linkrouter.config import load_config
from linkrouter.devenv import make_certificate
from linkrouter.journalservice import run_in_place
from linkrouter.keyfile import save_keyring
from linkrouter.keys import Key, Keyring, KeyringInvalid, new_key
from linkrouter.reload import Material, Reloader, load_material, reload_on_hangup
from linkrouter.tap import build_service

from .daemons import Daemon, free_port, journal_events

CUSTOM = "click.customer.example"


def router_directory(test: SynchronousTestCase, port: int, admin_port: int) -> FilePath[str]:
    """
    A router's directory: a dev CA, a default certificate for localhost, a certificates
    directory serving L{CUSTOM}, a keyring of one key, an empty block list and the config.
    """
    directory = FilePath(test.mktemp())
    directory.makedirs()
    os.chmod(directory.path, 0o700)
    make_certificate(directory)
    directory.child("domains").makedirs()
    add_domain(directory, CUSTOM)
    save_keyring(Keyring((new_key(),)), directory.child("keyring.json"))
    directory.child("blocklist.toml").setContent(b"link_ids = []\n")
    directory.child("linkrouter.toml").setContent(
        f"""router_id = "reload"
keyring = "keyring.json"
[listen]
port = {port}
certificate = "localhost.pem"
private_key = "localhost-key.pem"
certificates_directory = "domains"
[journal]
directory = "journal"
fsync = 0.05
[admin]
port = {admin_port}
[blocklist]
file = "blocklist.toml"
""".encode()
    )
    return directory


def add_domain(directory: FilePath[str], name: str) -> None:
    """
    A certificate for C{name} from the directory's CA, moved into its C{domains/}.
    """
    _, chain, key = make_certificate(directory, name)
    chain.moveTo(directory.child("domains").child(f"{name}.pem"))
    key.moveTo(directory.child("domains").child(f"{name}-key.pem"))


def overwrite(path: FilePath[str], content: bytes) -> None:
    """
    Replace C{path}'s content in place, keeping its mode (as an editor would).
    """
    with open(path.path, "wb") as file:
        file.write(content)


class ReloaderTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.events: list[LogEvent] = []
        self.loads: list[Material | Exception] = []

    def load(self) -> Material:
        result = self.loads.pop(0)
        if isinstance(result, Exception):
            raise result
        return result

    def reloader(self) -> Reloader:
        reloader = Reloader(self.load)
        reloader.log = Logger(observer=self.events.append)
        return reloader

    def test_startUpFailureRaises(self) -> None:
        """
        The first load happens at construction, and its failure is start-up's.
        """
        self.loads = [KeyringInvalid("keyring /k is empty")]
        self.assertRaises(KeyringInvalid, self.reloader)

    def test_reloadSwaps(self) -> None:
        """
        A successful reload replaces the current material as a whole and logs one line.
        """
        first = Material({}, EMPTY, None)
        second = Material({}, BlockList(key_ids=frozenset({"k1"})), None)
        self.loads = [first, second]
        reloader = self.reloader()
        self.assertIs(reloader.current, first)
        self.assertTrue(reloader.reload())
        self.assertIs(reloader.current, second)
        self.assertEqual(len(self.events), 1)
        self.assertIn("reloaded: 0 keys", formatEvent(self.events[0]))
        self.assertIn("1 block list entries", formatEvent(self.events[0]))

    def test_failedReloadKeeps(self) -> None:
        """
        A reload that fails keeps everything as it was and logs one error line with the
        problem, naming the file.
        """
        first = Material({}, EMPTY, None)
        self.loads = [first, KeyringInvalid("keyring /etc/k.json is not valid JSON")]
        reloader = self.reloader()
        self.assertFalse(reloader.reload())
        self.assertIs(reloader.current, first)
        [event] = self.events
        text = formatEvent(event)
        self.assertIn("reload failed", text)
        self.assertIn("keyring /etc/k.json is not valid JSON", text)
        self.assertEqual(text.count("\n"), 0)
        self.assertEqual(event["log_level"].name, "error")

    def test_loadMaterial(self) -> None:
        """
        L{load_material} reads what the config names; each broken file is refused with its
        path.
        """
        directory = router_directory(self, 8443, 9110)
        config = load_config(directory.child("linkrouter.toml"))
        material = load_material(config)
        self.assertEqual(len(material.keys), 1)
        self.assertEqual(material.blocklist, EMPTY)
        self.assertEqual(sorted(material.contexts.names), [CUSTOM])
        for name, content in [
            ("keyring.json", b"{"),
            ("blocklist.toml", b"hosts = [1]"),
            ("localhost.pem", b""),
        ]:
            path = directory.child(name)
            saved = path.getContent()
            overwrite(path, content)
            error = self.assertRaises(ValueError, load_material, config)
            self.assertIn(path.path, str(error))
            overwrite(path, saved)


class HangupTests(SynchronousTestCase):
    def test_sighupSchedulesReload(self) -> None:
        """
        SIGHUP schedules the reload through C{callFromThread}; it does not run it inside the
        signal handler.
        """
        scheduled: list[Callable[[], object]] = []

        class Reactor:
            def callFromThread(self, function: Callable[[], object]) -> None:
                scheduled.append(function)

        def reload() -> None:
            pass

        previous = reload_on_hangup(Reactor(), reload)
        self.addCleanup(signal.signal, signal.SIGHUP, previous)
        os.kill(os.getpid(), signal.SIGHUP)
        self.assertEqual(scheduled, [reload])


class BuildServiceTests(SynchronousTestCase):
    def test_reloadReachesTheResource(self) -> None:
        """
        The router's resource reads keys and block list from the reloader, the public
        listener its certificates: a reload changes all three.
        """
        directory = router_directory(self, 8443, 9110)
        service = build_service(
            load_config(directory.child("linkrouter.toml")), MemoryReactorClock(), run_in_place
        )
        reloader = service.reloader
        assert reloader is not None
        before = reloader.current
        ring = Keyring((new_key(),))
        save_keyring(ring, directory.child("keyring.json"))
        directory.child("blocklist.toml").setContent(b'key_ids = ["abc"]\n')
        self.assertTrue(reloader.reload())
        self.assertEqual(list(service.resource._keys()), [ring.active.key_id])
        self.assertEqual(service.resource._blocklist(), BlockList(key_ids=frozenset({"abc"})))
        self.assertIsNot(reloader.current.contexts, before.contexts)


class Load:
    """
    Threads clicking valid links over HTTPS, each request on a new connection, until told to
    stop (or a bound is reached); every answer other than a 302 is a failure.
    """

    def __init__(self, port: int, ca: FilePath[str], paths: list[str], threads: int = 3) -> None:
        self.port = port
        self.context = ssl.create_default_context(cafile=ca.path)
        self.paths = paths
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.sent = 0
        self.failures: list[str] = []
        self.threads = [threading.Thread(target=self.run, args=(n,)) for n in range(threads)]

    def start(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def run(self, number: int) -> None:
        deadline = time.monotonic() + 240
        count = 0
        while not self.stopping.is_set() and time.monotonic() < deadline and count < 20_000:
            path = self.paths[(number + count) % len(self.paths)]
            count += 1
            connection = http.client.HTTPSConnection(
                "localhost", self.port, context=self.context, timeout=30
            )
            try:
                connection.request("GET", path)
                response = connection.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException) as error:
                status, failure = 0, repr(error)
            else:
                failure = f"status {status}"
            finally:
                connection.close()
            with self.lock:
                self.sent += 1
                if status != 302:
                    self.failures.append(failure)

    def wait_for(self, more: int, timeout: float = 60) -> None:
        """
        Wait until C{more} requests beyond the current count have been answered.
        """
        target = self.sent + more
        deadline = time.monotonic() + timeout
        while self.sent < target and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self.sent >= target, f"the load stalled at {self.sent} requests"

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join()


def peer(port: int, ca: FilePath[str], name: str) -> x509.Certificate:
    """
    The certificate served to a new TLS connection asking for C{name} by SNI.
    """
    context = ssl.create_default_context(cafile=ca.path)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=30) as raw,
        context.wrap_socket(raw, server_hostname=name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def s_client_subject(port: int, ca: FilePath[str], name: str | None) -> str:
    """
    The subject line C{openssl s_client} prints for the server's certificate, asking for
    C{name} by SNI (or without SNI).
    """
    sni = ["-servername", name] if name is not None else ["-noservername"]
    result = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", ca.path, *sni],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=30,
        check=False,
    )
    output = result.stdout.decode()
    assert "Verify return code: 0 (ok)" in output, output
    match = re.search(r"^subject=(.*)$", output, re.MULTILINE)
    assert match is not None, output
    return match.group(1).replace(" ", "")


def request_as(
    port: int, ca: FilePath[str], name: str, path: str
) -> tuple[int, dict[str, str], bytes]:
    """
    One HTTPS GET to 127.0.0.1 for the host C{name}: SNI, certificate check and C{Host}.
    """
    context = ssl.create_default_context(cafile=ca.path)
    connection = http.client.HTTPSConnection(name, port, context=context, timeout=30)
    connection.sock = context.wrap_socket(
        socket.create_connection(("127.0.0.1", port), timeout=30), server_hostname=name
    )
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body
    finally:
        connection.close()


class TwistdReloadTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.port, self.admin_port = free_port(), free_port()
        self.directory = router_directory(self, self.port, self.admin_port)
        self.ca = self.directory.child("ca.pem")
        self.router = Daemon(
            self, "linkrouter", self.directory.child("linkrouter.toml"), self.port
        )

    def link(self, key: Key, link_id: str, base: str = "https://localhost") -> str:
        target = f"https://shop.example/{link_id}?from=email"
        return urlsplit(sign(target, key, link_id, Part.HTML, 1_764_780_000, base=base)).path

    def wait_output(self, text: str, count: int = 1, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.router.output().count(text) < count:
            if time.monotonic() > deadline:
                self.fail(f"no {text!r} in the output:\n{self.router.output()}")
            time.sleep(0.02)

    def blocked_count(self) -> float:
        admin = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=10)
        try:
            admin.request("GET", "/metrics")
            text = admin.getresponse().read().decode()
        finally:
            admin.close()
        match = re.search(r'^linkrouter_requests_total\{outcome="blocked"\} (\S+)$', text, re.M)
        assert match is not None, text
        return float(match.group(1))

    def test_sni(self) -> None:
        """
        C{openssl s_client -servername} gets each configured name's certificate and the
        default for an unknown name or no SNI; a link issued for the custom domain
        redirects when requested under that name, with Python's C{ssl} and SNI.
        """
        self.router.start().wait_listening()
        self.assertEqual(s_client_subject(self.port, self.ca, CUSTOM), f"CN={CUSTOM}")
        self.assertEqual(s_client_subject(self.port, self.ca, "unknown.example"), "CN=localhost")
        self.assertEqual(s_client_subject(self.port, self.ca, None), "CN=localhost")
        keyring = Keyring((new_key(),))
        save_keyring(keyring, self.directory.child("keyring.json"))
        self.router.process.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        self.wait_output("reloaded:")
        path = self.link(keyring.active, "custom-1", base=f"https://{CUSTOM}")
        status, headers, _ = request_as(self.port, self.ca, CUSTOM, path)
        self.assertEqual(status, 302)
        self.assertEqual(headers["location"], "https://shop.example/custom-1?from=email")
        self.assertEqual(headers["strict-transport-security"], "max-age=63072000")
        self.assertEqual(request_as(self.port, self.ca, "localhost", path)[0], 302)
        self.assertEqual(self.router.stop(), -signal.SIGTERM)

    def test_reloadUnderLoad(self) -> None:
        """
        Under continuous HTTPS clicks, SIGHUP after a new default certificate, a new domain,
        a rotated keyring and a block list: new connections get the new certificate, an open
        keep-alive connection keeps working, new-key and old-key links redirect, the listed
        link answers 410 (counted, not journaled). A broken keyring then keeps the previous
        one and logs the file. No request fails; every redirect is journaled once.
        """
        old_key = Keyring((new_key(),))
        save_keyring(old_key, self.directory.child("keyring.json"))
        self.router.start().wait_listening()
        load_paths = [self.link(old_key.active, f"load-{n}") for n in range(20)]
        load = Load(self.port, self.ca, load_paths).start()
        self.addCleanup(load.stop)
        load.wait_for(100)

        context = ssl.create_default_context(cafile=self.ca.path)
        kept = http.client.HTTPSConnection("localhost", self.port, context=context, timeout=30)
        self.addCleanup(kept.close)
        kept.request("GET", load_paths[0])
        self.assertEqual(kept.getresponse().read(), b"")
        old_serial = peer(self.port, self.ca, "localhost").serial_number

        make_certificate(self.directory)  # a new default certificate and key, same CA
        add_domain(self.directory, "new.customer.example")
        new_ring = old_key.rotated(new_key())
        save_keyring(new_ring, self.directory.child("keyring.json"))
        self.directory.child("blocklist.toml").setContent(b'link_ids = ["blocked-1"]\n')
        self.router.process.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        self.wait_output("reloaded:")
        load.wait_for(100)

        new_serial = peer(self.port, self.ca, "localhost").serial_number
        self.assertNotEqual(new_serial, old_serial)
        self.assertEqual(
            s_client_subject(self.port, self.ca, "new.customer.example"),
            "CN=new.customer.example",
        )
        kept.request("GET", load_paths[1])
        kept_response = kept.getresponse()
        kept_response.read()
        self.assertEqual(kept_response.status, 302)
        assert kept.sock is not None
        kept_der = kept.sock.getpeercert(binary_form=True)
        assert kept_der is not None
        self.assertEqual(x509.load_der_x509_certificate(kept_der).serial_number, old_serial)

        responses: list[tuple[int, dict[str, str], bytes]] = []
        new_path = self.link(new_ring.active, "new-key-1")
        blocked_path = self.link(old_key.active, "blocked-1")
        responses.append(request_as(self.port, self.ca, "localhost", new_path))
        self.assertEqual(responses[-1][0], 302)
        responses.append(request_as(self.port, self.ca, "localhost", blocked_path))
        status, headers, body = responses[-1]
        self.assertEqual(status, 410)
        self.assertIn(b"This link has been disabled.", body)
        self.assertEqual(headers["strict-transport-security"], "max-age=63072000")
        self.assertEqual(headers["cache-control"], "no-store")
        self.assertEqual(self.blocked_count(), 1)

        keyring_file = self.directory.child("keyring.json")
        overwrite(keyring_file, b'{"format": "not a keyring"')
        self.router.process.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        self.wait_output("reload failed")
        failure = next(
            line for line in self.router.output().splitlines() if "reload failed" in line
        )
        self.assertIn(f"keyring {keyring_file.path}: it is not valid JSON", failure)
        load.wait_for(100)
        responses.append(request_as(self.port, self.ca, "localhost", new_path))
        self.assertEqual(responses[-1][0], 302)
        responses.append(request_as(self.port, self.ca, "localhost", blocked_path))
        self.assertEqual(responses[-1][0], 410)

        load.stop()
        self.assertEqual(load.failures, [])
        self.assertEqual(self.router.stop(), -signal.SIGTERM)
        events = self.events()
        redirects = load.sent + 2 + sum(1 for status, _, _ in responses if status == 302)
        self.assertEqual(len(events), redirects)
        self.assertNotIn("blocked-1", {event["link"] for event in events})
        self.assertNotIn("shop.example", self.router.output(), "no destination is logged")

    def events(self) -> list[dict[str, Any]]:
        return journal_events(self.directory.child("journal"))
