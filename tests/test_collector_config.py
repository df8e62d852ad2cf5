"""
Tests for L{linkrouter.collector.config}: the collector's TOML configuration, every key
checked at start-up with one line naming it.
"""

from __future__ import annotations

import re

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from linkrouter.collector.config import CollectorConfig, ConfigError, load_collector_config

PLAIN = """\
[auth]
tokens_file = "tokens.toml"
[listen]
tls = false
"""

TLS = """\
[auth]
tokens_file = "/etc/linkcollector/tokens.toml"
[listen]
host = "0.0.0.0"
certificate = "tls/chain.pem"
private_key = "tls/key.pem"
"""

# Bad values of every key, as TOML: (section, key, values).
BAD_VALUES = [
    ("listen", "host", ['"example.com"', '""', "1", '"127.0.0.1 "', '"::1%"', "[1]"]),
    ("listen", "port", ["70000", "-1", '"8443"', "true", "1.5", "1979-05-27", "{a = 1}"]),
    ("listen", "tls", ['"yes"', "1", '"false"']),
    ("listen", "behind_proxy", ['"true"', "0"]),
    ("listen", "certificate", ["1", '""', "false", '"a\\nb"']),
    ("listen", "private_key", ["1", '""', "[]"]),
    ("auth", "tokens_file", ["1", '""', "true", '"\\n"']),
    ("store", "backend", ['"mysql"', '"SQLite"', '""', "1"]),
    ("store", "database", ["1", '""']),
    ("ingest", "max_body_bytes", ["0", "-1", "1.5", "true", '"1"', str(1024**3 + 1)]),
    ("ingest", "max_inflated_bytes", ["0", "2.0", str(4 * 1024**3 + 1), "nan", "inf"]),
    ("ingest", "max_events", ["0", "1_000_001", "false", '"100"']),
    ("enrich", "geoip_mmdb", ["1", '""']),
    ("enrich", "scanners_file", ["false", '""']),
    ("enrich", "too_soon_seconds", ["-1", "86401", "1.5", "true", '"10"']),
    ("enrich", "burst_seconds", ["-1", "86401", "0.5"]),
    ("enrich", "burst_links", ["0", "1001", "true", "2.5", '"3"']),
]


class CollectorConfigTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = FilePath(self.mktemp())
        self.directory.makedirs()
        self.path = self.directory.child("linkcollector.toml")

    def load(self, text: str) -> CollectorConfig:
        self.path.setContent(text.encode())
        return load_collector_config(self.path)

    def refused(self, text: str | bytes, *words: str) -> str:
        """
        The configuration C{text} is refused with one line holding every one of C{words}.
        """
        self.path.setContent(text.encode() if isinstance(text, str) else text)
        message = str(self.assertRaises(ConfigError, load_collector_config, self.path))
        self.assertNotIn("\n", message)
        for word in words:
            self.assertIn(word, message)
        return message

    def with_key(self, section: str, key: str, value: str) -> str:
        """
        A valid configuration (L{PLAIN}) with C{key = value} in C{[section]}.
        """
        if f"\n{key} = " in PLAIN:
            return re.sub(rf"(?m)^{key} = .*$", lambda _: f"{key} = {value}", PLAIN)
        if f"[{section}]\n" in PLAIN:
            return PLAIN.replace(f"[{section}]\n", f"[{section}]\n{key} = {value}\n")
        return f"{PLAIN}[{section}]\n{key} = {value}\n"

    def test_defaults(self) -> None:
        """
        A minimal configuration gets the documented defaults; the SQLite database is
        C{collector.sqlite3} beside the configuration file.
        """
        config = self.load(PLAIN)
        self.assertEqual(
            config,
            CollectorConfig(
                tokens_file=self.directory.child("tokens.toml"),
                store="sqlite",
                database=self.directory.child("collector.sqlite3"),
                dsn=None,
                listen_host="127.0.0.1",
                listen_port=8443,
                tls=False,
                behind_proxy=False,
                certificate=None,
                private_key=None,
                max_body_bytes=16 * 1024 * 1024,
                max_inflated_bytes=64 * 1024 * 1024,
                max_events=100_000,
                geoip_mmdb=None,
                scanners_file=None,
                too_soon_seconds=10,
                burst_seconds=10,
                burst_links=3,
            ),
        )

    def test_tlsAndPaths(self) -> None:
        """
        With TLS, certificate and key are read from paths relative to the configuration's
        directory; absolute paths are kept.
        """
        config = self.load(TLS)
        self.assertTrue(config.tls)
        self.assertEqual(config.certificate, self.directory.descendant(["tls", "chain.pem"]))
        self.assertEqual(config.private_key, self.directory.descendant(["tls", "key.pem"]))
        self.assertEqual(config.tokens_file, FilePath("/etc/linkcollector/tokens.toml"))
        self.assertEqual(config.listen_host, "0.0.0.0")

    def test_everyKeyGiven(self) -> None:
        """
        Every key is read into its field, at the upper bound of its range where it has one.
        """
        config = self.load(
            PLAIN.replace("tls = false\n", 'tls = false\nhost = "::1"\nport = 0\n')
            + '[store]\nbackend = "sqlite"\ndatabase = "../db/c.sqlite3"\n'
            + f"[ingest]\nmax_body_bytes = {1024**3}\nmax_inflated_bytes = {4 * 1024**3}\n"
            + "max_events = 1_000_000\n"
            + '[enrich]\ngeoip_mmdb = "/usr/share/GeoIP/City.mmdb"\nscanners_file = "s.toml"\n'
            + "too_soon_seconds = 86400\nburst_seconds = 0\nburst_links = 1000\n"
        )
        self.assertEqual((config.listen_host, config.listen_port), ("::1", 0))
        self.assertEqual(config.database, self.directory.parent().descendant(["db", "c.sqlite3"]))
        self.assertEqual(
            (config.max_body_bytes, config.max_inflated_bytes, config.max_events),
            (1024**3, 4 * 1024**3, 1_000_000),
        )
        self.assertEqual(config.geoip_mmdb, FilePath("/usr/share/GeoIP/City.mmdb"))
        self.assertEqual(config.scanners_file, self.directory.child("s.toml"))
        self.assertEqual(
            (config.too_soon_seconds, config.burst_seconds, config.burst_links), (86400, 0, 1000)
        )

    def test_badValues(self) -> None:
        """
        Every key's bad values are refused with one line that starts with the key.
        """
        for section, key, values in BAD_VALUES:
            for value in values:
                message = self.refused(self.with_key(section, key, value))
                self.assertTrue(
                    message.startswith(f"{section}.{key}: "), (section, key, value, message)
                )

    def test_unknownKeys(self) -> None:
        """
        An unknown key, at the top or in a section, or an unknown section, is refused
        naming it and what is known.
        """
        self.refused(PLAIN + "colour = 1\n", "listen.colour", "unknown key", "behind_proxy")
        self.refused("colour = 1\n" + PLAIN, "colour: unknown key", "[auth]", "[store]")
        self.refused(PLAIN + "[sync]\nurl = 1\n", "sync: unknown key", "[ingest]")
        self.refused(PLAIN + "[Listen]\n", "Listen", "unknown key")
        self.refused(PLAIN.replace("tokens_file", "token_file"), "auth.token_file", "unknown")

    def test_sectionNotATable(self) -> None:
        """
        A section given as a value is refused.
        """
        self.refused("listen = 1\n[auth]\ntokens_file = 't'\n", "[listen]", "table")
        self.refused('auth = "tokens.toml"\n', "[auth]", "table")

    def test_tokensFileRequired(self) -> None:
        """
        Without auth.tokens_file there is nobody to let in: refused.
        """
        self.refused("[listen]\ntls = false\n", "auth.tokens_file", "missing")
        self.refused("", "auth.tokens_file", "missing")

    def test_unreadableFile(self) -> None:
        """
        A missing file, text that is not TOML and bytes that are not UTF-8 are refused,
        naming the file.
        """
        message = str(self.assertRaises(ConfigError, load_collector_config, self.path))
        self.assertIn(self.path.path, message)
        self.refused("[auth\n", self.path.path, "not valid TOML")
        self.refused(b'[auth]\ntokens_file = "\xff"\n', self.path.path, "not valid TOML")

    def test_sqliteDatabase(self) -> None:
        """
        The SQLite database defaults to the configuration's directory; a relative path is
        taken from there; store.dsn is refused with SQLite.
        """
        config = self.load(PLAIN + '[store]\nbackend = "sqlite"\n')
        self.assertEqual(config.database, self.directory.child("collector.sqlite3"))
        config = self.load(PLAIN + '[store]\ndatabase = "data/c.db"\n')
        self.assertEqual(config.database, self.directory.descendant(["data", "c.db"]))
        self.refused(PLAIN + '[store]\ndsn = "postgresql:///links"\n', "store.dsn", "postgresql")

    def test_postgresql(self) -> None:
        """
        PostgreSQL needs store.dsn and takes no store.database; no SQLite path is invented.
        """
        config = self.load(PLAIN + '[store]\nbackend = "postgresql"\ndsn = "dbname=links"\n')
        self.assertEqual(
            (config.store, config.dsn, config.database), ("postgresql", "dbname=links", None)
        )
        self.refused(PLAIN + '[store]\nbackend = "postgresql"\n', "store.dsn", "required")
        self.refused(
            PLAIN + '[store]\nbackend = "postgresql"\ndsn = "dbname=x"\ndatabase = "x.db"\n',
            "store.database",
            "sqlite",
        )

    def test_dsnWithoutPassword(self) -> None:
        """
        Connection strings without a password are accepted as given.
        """
        for dsn in [
            "dbname=links",
            "host=db.example user=collector dbname=links",
            "postgresql:///links",
            "postgresql://collector@db.example/links",
            "postgresql://collector@db.example:5432/links?sslmode=verify-full",
        ]:
            text = PLAIN + f'[store]\nbackend = "postgresql"\ndsn = "{dsn}"\n'
            self.assertEqual(self.load(text).dsn, dsn)

    def test_dsnWithHostPort(self) -> None:
        """
        A URI with a port or an IPv6 address but no user holds no password and is accepted.
        """
        for dsn in [
            "postgresql://db.example:5432/links",
            "postgresql://[::1]/links",
            "postgresql://collector@[2001:db8::1]:5432/links",
        ]:
            text = PLAIN + f'[store]\nbackend = "postgresql"\ndsn = "{dsn}"\n'
            self.assertEqual(self.load(text).dsn, dsn)

    def test_dsnWithPasswordRefused(self) -> None:
        """
        A password in the connection string is refused with where to keep it instead.
        """
        for dsn in [
            "postgresql://collector:s3cret@db.example/links",
            "postgres://collector:@db.example/links",
            "host=db.example password=s3cret",
            "host=db.example PASSWORD=s3cret",
            "postgresql://collector@db.example/links?password=s3cret",
        ]:
            text = PLAIN + f'[store]\nbackend = "postgresql"\ndsn = "{dsn}"\n'
            message = self.refused(text, "store.dsn", "password", ".pgpass")
            self.assertNotIn("s3cret\n", message)
        for blank in ['""', '"   "', "1"]:
            text = PLAIN + f'[store]\nbackend = "postgresql"\ndsn = {blank}\n'
            self.refused(text, "store.dsn", "not a PostgreSQL connection string")

    def test_plainHttpOnLoopback(self) -> None:
        """
        listen.tls = false is accepted on loopback addresses.
        """
        for host in ["127.0.0.1", "127.8.9.10", "::1", "localhost"]:
            config = self.load(PLAIN.replace("tls = false\n", f'tls = false\nhost = "{host}"\n'))
            self.assertEqual((config.tls, config.listen_host), (False, host))

    def test_plainHttpElsewhereRefused(self) -> None:
        """
        listen.tls = false off loopback is refused unless a TLS-terminating proxy is in
        front (listen.behind_proxy = true).
        """
        for host in ["0.0.0.0", "::", "192.0.2.1", "10.0.0.1", "::ffff:127.0.0.1"]:
            text = PLAIN.replace("tls = false\n", f'tls = false\nhost = "{host}"\n')
            self.refused(text, "listen.tls", "behind_proxy", repr(host))
            config = self.load(text.replace("tls = false\n", "tls = false\nbehind_proxy = true\n"))
            self.assertEqual((config.tls, config.behind_proxy), (False, True))

    def test_tlsNeedsCertificateAndKey(self) -> None:
        """
        With TLS (the default), both the certificate and the key are required, on any
        address.
        """
        no_key = TLS.replace('private_key = "tls/key.pem"\n', "")
        no_certificate = TLS.replace('certificate = "tls/chain.pem"\n', "")
        for text in [no_key, no_certificate, '[auth]\ntokens_file = "t"\n']:
            self.refused(text, "listen.certificate and listen.private_key", "required")
        self.refused(PLAIN.replace("tls = false", "tls = true"), "listen.certificate")
        self.refused(no_key + "behind_proxy = true\n", "listen.private_key")

    def test_nulInPathRefused(self) -> None:
        """
        A path with a NUL byte (a TOML C{\\u0000} escape) is refused when the configuration
        is read, naming the key, rather than failing later in C{open}.
        """
        self.refused(PLAIN.replace('"tokens.toml"', '"tokens\\u0000.toml"'), "auth.tokens_file")
