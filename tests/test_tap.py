"""
Tests for L{linkrouter.tap} and L{linkrouter.config}: start-up checks, the composed service,
and the real C{twistd linkrouter} process answering HTTP on loopback.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time

from twisted.internet.testing import MemoryReactor
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from linkrouter.codec import Part, sign
from linkrouter.config import ConfigError, load_config
from linkrouter.keyfile import save_keyring
from linkrouter.keys import Keyring, new_key
from linkrouter.tap import Options, build_service


class ConfigTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = FilePath(self.mktemp())
        self.directory.makedirs()
        self.path = self.directory.child("linkrouter.toml")

    def refused(self, text: str, *words: str) -> None:
        self.path.setContent(text.encode())
        message = str(self.assertRaises(ConfigError, load_config, self.path))
        for word in words:
            self.assertIn(word, message)

    def test_defaultsAndRelativeKeyring(self) -> None:
        """
        A keyring path is resolved against the config file's directory; the listener
        defaults to 127.0.0.1:8080.
        """
        self.path.setContent(b'keyring = "keys/keyring.json"\n')
        config = load_config(self.path)
        self.assertEqual(config.keyring, self.directory.child("keys").child("keyring.json"))
        self.assertEqual((config.listen_host, config.listen_port), ("127.0.0.1", 8080))

    def test_refusals(self) -> None:
        """
        Each bad configuration is refused with one line naming the key and the problem.
        """
        self.refused("", "keyring", "missing")
        self.refused('keyring = "k"\nkeyrings = 1\n', "keyrings", "unknown")
        self.refused("keyring = 1\n", "keyring", "not a str")
        self.refused('keyring = "k"\n[listen]\nport = "80"\n', "listen.port", "not a int")
        self.refused('keyring = "k"\n[listen]\nport = 70000\n', "listen.port", "not a port")
        self.refused('keyring = "k"\n[listen]\nhost = "0.0.0.0"\n', "listen.host", "loopback")
        self.refused('keyring = "k"\n[listen]\nbind = 1\n', "listen.bind", "unknown")
        self.refused("keyring = \n", "not valid TOML")

    def test_missingFile(self) -> None:
        """
        A missing configuration file is refused, naming it.
        """
        message = str(self.assertRaises(ConfigError, load_config, self.path))
        self.assertIn(self.path.path, message)


class ServiceTests(SynchronousTestCase):
    def test_optionsRequireConfig(self) -> None:
        """
        C{twistd linkrouter} without --config is a usage error.
        """
        from twisted.python.usage import UsageError

        self.assertRaises(UsageError, Options().parseOptions, [])

    def test_listensOnConfiguredLoopback(self) -> None:
        """
        The built service listens where configured, once started, and stops listening
        when stopped.
        """
        directory = FilePath(self.mktemp())
        directory.makedirs()
        save_keyring(Keyring((new_key(),)), directory.child("keyring.json"))
        directory.child("c.toml").setContent(
            b'keyring = "keyring.json"\n[listen]\nhost = "::1"\nport = 8443\n'
        )
        reactor = MemoryReactor()
        service = build_service(load_config(directory.child("c.toml")), reactor)
        service.startService()
        self.assertEqual(
            [(port, interface) for port, _, _, interface in reactor.tcpServers], [(8443, "::1")]
        )
        service.stopService()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class TwistdProcessTests(SynchronousTestCase):
    """
    The installed C{twistd linkrouter}, started as an operator would start it.
    """

    def setUp(self) -> None:
        self.directory = FilePath(self.mktemp())
        self.directory.makedirs()
        self.keyring = Keyring((new_key(),))
        save_keyring(self.keyring, self.directory.child("keyring.json"))
        self.port = free_port()
        self.config = self.directory.child("linkrouter.toml")
        self.config.setContent(
            f'keyring = "keyring.json"\n[listen]\nport = {self.port}\n'.encode()
        )

    def twistd(self, *argv: str) -> subprocess.Popen[bytes]:
        command = [os.path.join(os.path.dirname(sys.executable), "twistd"), *argv]
        process = subprocess.Popen(
            command, cwd=self.directory.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        self.addCleanup(self.stop, process)
        return process

    def stop(self, process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        assert process.stdout is not None
        process.stdout.close()

    def get(self, path: str) -> http.client.HTTPResponse:
        deadline = time.monotonic() + 30
        while True:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            try:
                connection.request("GET", path)
                return connection.getresponse()
            except ConnectionRefusedError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def test_redirectsOverRealHttp(self) -> None:
        """
        A real twistd process redirects a valid link, refuses a tampered one, writes no
        access log line, and exits cleanly on SIGTERM.
        """
        process = self.twistd("-n", "--pidfile=", "linkrouter", "--config", self.config.path)
        target = "https://example.com/private?token=s3cret"
        link = sign(target, self.keyring.active, "L1", Part.HTML, 1764780000, base="https://c.x")
        path = "/" + link.split("/", 3)[3]
        response = self.get(path)
        self.assertEqual(response.status, 302)
        self.assertEqual(response.getheader("Location"), target)
        self.assertEqual(self.get(path[:-2] + "xx").status, 404)
        process.send_signal(signal.SIGTERM)
        # twistd shuts down, then exits by the signal it received, as the signal asked.
        self.assertEqual(process.wait(30), -signal.SIGTERM)
        assert process.stdout is not None
        output = process.stdout.read().decode()
        self.assertIn("Server Shut Down", output)
        for secret in ["s3cret", "example.com", path]:
            self.assertNotIn(secret, output)

    def test_badKeyringStopsStartUp(self) -> None:
        """
        A keyring readable by others stops start-up with one line naming the fix.
        """
        os.chmod(self.directory.child("keyring.json").path, 0o644)
        process = self.twistd("-n", "--pidfile=", "linkrouter", "--config", self.config.path)
        self.assertNotEqual(process.wait(30), 0)
        assert process.stdout is not None
        self.assertIn(b"chmod 600", process.stdout.read())
