"""
Tests for L{linkrouter.config}: every key checked at start-up, one line per problem.
"""

from __future__ import annotations

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from linkrouter.config import ConfigError, load_config
from linkrouter.event import IPStorage

MINIMAL = """\
router_id = "r1"
keyring = "keys/keyring.json"
[listen]
certificate = "tls/chain.pem"
private_key = "/etc/tls/key.pem"
[journal]
directory = "journal"
"""


class ConfigTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = FilePath(self.mktemp())
        self.directory.makedirs()
        self.path = self.directory.child("linkrouter.toml")

    def load(self, text: str):  # type: ignore[no-untyped-def]
        self.path.setContent(text.encode())
        return load_config(self.path)

    def refused(self, text: str, *words: str) -> None:
        self.path.setContent(text.encode())
        message = str(self.assertRaises(ConfigError, load_config, self.path))
        self.assertEqual(message.count("\n"), 0)
        for word in words:
            self.assertIn(word, message)

    def test_defaultsAndPaths(self) -> None:
        """
        Relative paths are taken from the config file's directory, absolute ones kept; the
        documented defaults apply.
        """
        config = self.load(MINIMAL)
        self.assertEqual(config.keyring, self.directory.child("keys").child("keyring.json"))
        self.assertEqual(config.certificate, self.directory.child("tls").child("chain.pem"))
        self.assertEqual(config.private_key, FilePath("/etc/tls/key.pem"))
        self.assertEqual(config.journal_directory, self.directory.child("journal"))
        self.assertEqual(
            (config.listen_host, config.listen_port, config.tls), ("127.0.0.1", 443, True)
        )
        self.assertEqual(config.fsync_interval, 0.2)
        self.assertEqual(config.ip_storage, IPStorage.FULL)
        self.assertEqual((config.admin_host, config.admin_port), ("127.0.0.1", 9110))

    def test_journalChoices(self) -> None:
        """
        fsync takes "always", "never" or seconds; ip_storage takes its three values.
        """
        base = MINIMAL + 'fsync = "always"\nip_storage = "truncated"\n'
        config = self.load(base)
        self.assertEqual((config.fsync_interval, config.ip_storage), (0.0, IPStorage.TRUNCATED))
        self.assertIsNone(self.load(MINIMAL + 'fsync = "never"\n').fsync_interval)
        self.assertEqual(self.load(MINIMAL + "fsync = 0.05\n").fsync_interval, 0.05)

    def test_plainHttpOnLoopbackOnly(self) -> None:
        """
        listen.tls = false is accepted on loopback, refused elsewhere.
        """
        text = (
            'router_id = "r"\nkeyring = "k"\n[journal]\ndirectory = "j"\n[listen]\ntls = false\n'
        )
        self.assertFalse(self.load(text).tls)
        self.refused(text + 'host = "0.0.0.0"\n', "listen.tls", "loopback")

    def test_behindBalancer(self) -> None:
        """
        proxy_protocol and forwarded_for need proxy_from; with proxy_protocol, plain HTTP
        is allowed off loopback (a TLS-terminating balancer), and not otherwise.
        """
        self.assertFalse(self.load(MINIMAL).proxy_protocol)
        self.assertFalse(self.load(MINIMAL).forwarded_for)
        self.assertFalse(self.load(MINIMAL).proxy_from)
        text = MINIMAL.replace(
            "[listen]",
            '[listen]\nproxy_protocol = true\nproxy_from = ["10.0.0.0/8", "::1"]\n'
            "forwarded_for = true",
        )
        config = self.load(text)
        self.assertTrue(config.proxy_protocol and config.forwarded_for)
        self.assertTrue(config.proxy_from.trusts("10.1.2.3"))
        self.assertTrue(config.proxy_from.trusts("::1"))
        self.assertFalse(config.proxy_from.trusts("127.0.0.1"))
        plain = (
            'router_id = "r"\nkeyring = "k"\n[journal]\ndirectory = "j"\n[listen]\n'
            'tls = false\nhost = "0.0.0.0"\nproxy_from = ["10.0.0.0/8"]\n'
        )
        self.refused(plain, "listen.tls", "loopback", "proxy_protocol")
        self.assertFalse(self.load(plain + "proxy_protocol = true\n").tls)
        for key in ["proxy_protocol", "forwarded_for"]:
            self.refused(
                MINIMAL.replace("[listen]", f"[listen]\n{key} = true"),
                "listen.proxy_from",
                f"listen.{key}",
            )
        for bad in ['"10.0.0.0/8"', '["10.0.0.1/8"]', '["balancer.example"]', "[1]"]:
            self.refused(
                MINIMAL.replace("[listen]", f"[listen]\nproxy_from = {bad}"), "listen.proxy_from"
            )

    def test_refusals(self) -> None:
        """
        Each bad configuration is refused with one line naming the key and the problem.
        """
        self.refused("", "router_id", "missing")
        self.refused(MINIMAL.replace('router_id = "r1"', 'router_id = "a b"'), "router_id")
        self.refused(MINIMAL + "colour = 1\n", "colour", "unknown")
        self.refused(MINIMAL.replace("keyring", "keyrings"), "keyrings", "unknown")
        self.refused(MINIMAL.replace('"keys/keyring.json"', "1"), "keyring", "not a path")
        self.refused(
            MINIMAL.replace("[journal]", "[journal]\nqueue_size = 0"), "journal.queue_size"
        )
        self.refused(MINIMAL.replace("[journal]", "[journal]\nfsync = 99"), "journal.fsync")
        self.refused(MINIMAL.replace("[journal]", '[journal]\nip_storage = "half"'), "ip_storage")
        self.refused(MINIMAL.replace("[journal]", "[journal]\nretain = 1"), "journal.retain")
        self.refused(MINIMAL.replace("[listen]", "[listen]\nport = 70000"), "listen.port")
        self.refused(MINIMAL.replace("[listen]", '[listen]\nport = "443"'), "listen.port")
        self.refused(MINIMAL.replace("[listen]", '[listen]\nhost = "example.com"'), "listen.host")
        self.refused(MINIMAL + '[admin]\nhost = "0.0.0.0"\n', "admin.host", "loopback")
        self.refused(MINIMAL.replace('private_key = "/etc/tls/key.pem"\n', ""), "private_key")
        self.refused('listen = 1\nrouter_id = "r"\n', "[listen]", "table")
        self.refused("keyring = \n", "not valid TOML")

    def test_adminCanBeTurnedOff(self) -> None:
        """
        admin.port = false turns the metrics listener off.
        """
        self.assertIsNone(self.load(MINIMAL + "[admin]\nport = false\n").admin_port)

    def test_missingFile(self) -> None:
        """
        A missing configuration file is refused, naming it.
        """
        message = str(self.assertRaises(ConfigError, load_config, self.path))
        self.assertIn(self.path.path, message)

    def test_exampleConfigLoads(self) -> None:
        """
        The commented production example in conf/ is valid.
        """
        example = FilePath(__file__).parent().parent().descendant(["conf", "linkrouter.toml"])
        config = load_config(example)
        self.assertTrue(config.tls)

    def test_reusePortAndOCSPResponse(self) -> None:
        """
        listen.reuse_port is off unless set to a boolean; listen.ocsp_response is a path taken
        from the config file's directory, and only with TLS.
        """
        config = self.load(MINIMAL)
        self.assertEqual((config.reuse_port, config.ocsp_response), (False, None))
        listen = MINIMAL.replace("[listen]", '[listen]\nreuse_port = true\nocsp_response = "o"')
        config = self.load(listen)
        self.assertEqual(
            (config.reuse_port, config.ocsp_response), (True, self.directory.child("o"))
        )
        self.refused(MINIMAL.replace("[listen]", '[listen]\nreuse_port = "yes"'), "reuse_port")
        self.refused(
            'router_id = "r"\nkeyring = "k"\n[journal]\ndirectory = "j"\n'
            '[listen]\ntls = false\nocsp_response = "o"\n',
            "listen.ocsp_response",
            "TLS",
        )
