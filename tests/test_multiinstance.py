"""
Several C{twistd linkrouter} processes on one port with C{listen.reuse_port}: the kernel
spreads new connections among them, each journals under its own router id in its own
directory, and one can stop while the others go on answering.
"""

from __future__ import annotations

import signal
from urllib.parse import urlsplit

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from linkrouter.codec import Part, sign
from linkrouter.devenv import make_certificate
from linkrouter.keyfile import save_keyring
from linkrouter.keys import Keyring, new_key

from .daemons import Daemon, free_port, https, journal_events

TARGET = "https://shop.example/item/7"


class ReusePortProcessTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = FilePath(self.mktemp())
        self.directory.makedirs()
        self.ca, _, _ = make_certificate(self.directory)
        self.keyring = Keyring((new_key(),))
        save_keyring(self.keyring, self.directory.child("keyring.json"))
        self.port = free_port()

    def instance(self, name: str) -> Daemon:
        """
        A router named C{name} with its own journal and admin port, on the shared port; it
        is listening once its admin port is, which opens after the public one.
        """
        admin_port = free_port()
        config = self.directory.child(f"{name}.toml")
        config.setContent(
            f"""router_id = "{name}"
keyring = "keyring.json"
[listen]
port = {self.port}
certificate = "localhost.pem"
private_key = "localhost-key.pem"
reuse_port = true
[journal]
directory = "journal-{name}"
fsync = "always"
[admin]
port = {admin_port}
""".encode()
        )
        return Daemon(self, "linkrouter", config, admin_port)

    def test_instancesShareOnePort(self) -> None:
        """
        Two instances on one port both answer clicks on new connections, and journal them
        under their own router ids; once one has stopped, the other answers every click.
        """
        blue, green = self.instance("blue"), self.instance("green")
        blue.start().wait_listening()
        green.start().wait_listening()
        path = urlsplit(
            sign(TARGET, self.keyring.active, "L1", Part.HTML, 1, base="https://x")
        ).path
        statuses = []
        for _ in range(60):
            status, headers, _ = https(self.port, self.ca, "GET", path)
            statuses.append((status, headers.get("location")))
        self.assertEqual(statuses, [(302, TARGET)] * 60)
        self.assertEqual(blue.stop(), -signal.SIGTERM)
        for _ in range(20):
            self.assertEqual(https(self.port, self.ca, "GET", path)[0], 302)
        self.assertEqual(green.stop(), -signal.SIGTERM)

        by_blue = journal_events(self.directory.child("journal-blue"))
        by_green = journal_events(self.directory.child("journal-green"))
        self.assertEqual(len(by_blue) + len(by_green), 80)
        self.assertEqual({e["router"] for e in by_blue}, {"blue"})
        self.assertEqual({e["router"] for e in by_green}, {"green"})
        # the kernel hashes each connection to one listener: both had some of the first 60
        # (all 60 on one side has a chance of 2 ** -59), and green had all of the last 20
        self.assertGreater(len(by_blue), 0)
        self.assertGreater(len(by_green), 20)
