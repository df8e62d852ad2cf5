"""
Tests for L{linkrouter.collector.scanners}: the shipped list, an operator's own file, the
errors that name the file and the problem, and the lookups.
"""

from __future__ import annotations

import os
from ipaddress import ip_address, ip_network

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from linkrouter.collector.scanners import (
    FORMAT,
    ScannerList,
    ScannerListInvalid,
    Source,
    default_scanners,
    load_scanners,
    parse_scanners,
)

HEADER = f'format = "{FORMAT}"\n'


def parse(text: str) -> ScannerList:
    return parse_scanners(text.encode(), "own.toml")


class ShippedListTests(SynchronousTestCase):
    scanners = default_scanners()

    def test_ids(self) -> None:
        """
        The shipped list names the scanners the collector is documented to know, and the
        Gmail and Yahoo image proxies.
        """
        ids = {source.id for source in self.scanners.scanners}
        for expected in (
            "microsoft",
            "google",
            "mimecast",
            "proofpoint",
            "barracuda",
            "cisco-ironport",
            "symantec",
            "trend-micro",
            "fortinet",
            "sophos",
        ):
            self.assertIn(expected, ids)
        self.assertEqual([p.id for p in self.scanners.image_proxies], ["gmail", "yahoo"])

    def test_ownerNetworks(self) -> None:
        """
        Owner network names, as the packaged geo data spells them, name their scanner,
        whatever their case.
        """
        for network, expected in [
            ("MICROSOFT-CORP-MSN-AS-BLOCK", "microsoft"),
            ("mimecast services limited", "mimecast"),
            ("PROOFPOINT-ASN-US-WEST", "proofpoint"),
            ("IRONPORT-SYSTEMS-INC", "cisco-ironport"),
            ("BARRACUDA-NETWORKS-INC", "barracuda"),
            ("Messagelabs-AS", "symantec"),
            ("AS-TRENDMICRO-COM", "trend-micro"),
            ("GOOGLE", "google"),
        ]:
            self.assertEqual(self.scanners.scanner_for_address(None, network), expected)

    def test_peoplesNetworksAreNotScanners(self) -> None:
        """
        Networks that carry people's own traffic (a company's offices, web gateways, a
        cloud of virtual desktops, an ISP) are not listed, nor matched by a part of a name.
        """
        for network in [
            "MICROSOFT-CORP-AS",
            "ZSCALER-INC",
            "CISCOSYSTEMS",
            "GOOGLE-FIBER",
            "Deutsche Telekom AG",
            "MICROSOFT",
        ]:
            self.assertIsNone(self.scanners.scanner_for_address(None, network), network)

    def test_ranges(self) -> None:
        """
        Exchange Online Protection's published ranges are Microsoft's, in IPv4 and IPv6,
        whatever owner the geo data reports.
        """
        for address in ["40.107.1.1", "104.47.0.0", "2a01:111:f400:7e00::"]:
            self.assertEqual(
                self.scanners.scanner_for_address(ip_address(address), None), "microsoft"
            )
        self.assertIsNone(self.scanners.scanner_for_address(ip_address("40.106.255.255"), None))

    def test_userAgents(self) -> None:
        """
        Scanner and image-proxy User-Agents are found by a part, whatever the case; a
        browser's is neither.
        """
        self.assertEqual(self.scanners.scanner_for_user_agent("curl/8.5.0"), "http-client")
        self.assertEqual(
            self.scanners.scanner_for_user_agent("Mozilla/5.0 ... HeadlessChrome/131.0.0.0"),
            "headless-browser",
        )
        self.assertEqual(
            self.scanners.scanner_for_user_agent("Mozilla/5.0 (compatible; Google-Safety)"),
            "google",
        )
        self.assertEqual(
            self.scanners.proxy_for_user_agent(
                "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 "
                "(via ggpht.com GoogleImageProxy)"
            ),
            "gmail",
        )
        self.assertEqual(self.scanners.proxy_for_user_agent("YAHOOMAILPROXY; x"), "yahoo")
        browser = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
        self.assertIsNone(self.scanners.scanner_for_user_agent(browser))
        self.assertIsNone(self.scanners.proxy_for_user_agent(browser))


class LookupTests(SynchronousTestCase):
    def test_longestPrefixWins(self) -> None:
        """
        An address in nested ranges belongs to the most specific one, wherever it is
        listed; a listed range wins over the owner network.
        """
        scanners = ScannerList(
            (
                Source("wide", "Wide", ranges=(ip_network("10.0.0.0/8"),)),
                Source("narrow", "Narrow", ranges=(ip_network("10.1.2.0/24"),)),
                Source("owner", "Owner", networks=("SOME-NET",)),
            )
        )
        self.assertEqual(scanners.scanner_for_address(ip_address("10.1.2.3"), None), "narrow")
        self.assertEqual(scanners.scanner_for_address(ip_address("10.1.3.3"), None), "wide")
        self.assertEqual(
            scanners.scanner_for_address(ip_address("10.1.2.3"), "SOME-NET"), "narrow"
        )
        self.assertEqual(scanners.scanner_for_address(ip_address("11.0.0.1"), "some-net"), "owner")
        self.assertIsNone(scanners.scanner_for_address(ip_address("::a00:1"), None))

    @settings(max_examples=200, deadline=None)
    @given(st.ip_addresses(), st.lists(st.ip_addresses(), max_size=5), st.integers(0, 128))
    def test_rangesAgreeWithIpaddress(self, address, listed, prefix) -> None:  # type: ignore[no-untyped-def]
        """
        The range table answers what a plain scan of the ranges with C{ipaddress} answers.
        """
        ranges = tuple(
            ip_network(f"{a}/{min(prefix, a.max_prefixlen)}", strict=False) for a in listed
        )
        scanners = ScannerList((Source("s", "S", ranges=ranges),))
        expected = "s" if any(address in r for r in ranges) else None
        self.assertEqual(scanners.scanner_for_address(address, None), expected)


class OwnFileTests(SynchronousTestCase):
    def test_replaces(self) -> None:
        """
        An operator's file is the whole list unless it asks for the shipped one too.
        """
        scanners = parse(
            HEADER + '[[scanner]]\nid = "sandbox"\nranges = ["192.0.2.0/24"]\n'
            '[[image_proxy]]\nid = "corp-webmail"\nuser_agents = ["CorpMailProxy"]\n'
        )
        self.assertEqual(
            scanners.scanners,
            (Source("sandbox", "sandbox", ranges=(ip_network("192.0.2.0/24"),)),),
        )
        self.assertEqual(scanners.proxy_for_user_agent("x CorpMailProxy/1"), "corp-webmail")
        self.assertIsNone(scanners.scanner_for_address(None, "MICROSOFT-CORP-MSN-AS-BLOCK"))

    def test_includeDefault(self) -> None:
        """
        With C{include_default = true} the file adds to the shipped list, and an entry with
        a shipped id replaces the shipped one.
        """
        scanners = parse(
            HEADER + "include_default = true\n"
            '[[scanner]]\nid = "sandbox"\nranges = ["192.0.2.0/24"]\n'
            '[[scanner]]\nid = "google"\nuser_agents = ["Google-Safety"]\n'
        )
        self.assertEqual(scanners.scanner_for_address(ip_address("192.0.2.9"), None), "sandbox")
        self.assertEqual(scanners.scanner_for_address(None, "MIMECAST"), "mimecast")
        self.assertIsNone(scanners.scanner_for_address(None, "GOOGLE"))
        self.assertEqual([p.id for p in scanners.image_proxies], ["gmail", "yahoo"])

    def test_loadFromFile(self) -> None:
        """
        L{load_scanners} reads a file.
        """
        path = FilePath(self.mktemp())
        path.setContent((HEADER + '[[scanner]]\nid = "x"\nnetworks = ["X-NET"]\n').encode())
        self.assertEqual(load_scanners(path).scanner_for_address(None, "x-net"), "x")

    def test_missingFile(self) -> None:
        """
        A missing file is refused with its path.
        """
        path = FilePath(self.mktemp())
        error = self.assertRaises(ScannerListInvalid, load_scanners, path)
        self.assertIn(path.path, str(error))
        self.assertIn("cannot be read", str(error))

    def test_unreadableFile(self) -> None:
        """
        A file that cannot be read is refused with its path.
        """
        if os.geteuid() == 0:
            path = FilePath(self.mktemp())
            path.makedirs()  # a directory cannot be read as a file, even by root
        else:
            path = FilePath(self.mktemp())
            path.setContent(HEADER.encode())
            path.chmod(0)
        error = self.assertRaises(ScannerListInvalid, load_scanners, path)
        self.assertIn(path.path, str(error))

    def test_tooLarge(self) -> None:
        """
        A file over 1 MiB is refused.
        """
        path = FilePath(self.mktemp())
        path.setContent(HEADER.encode() + b"#" * (1024 * 1024))
        self.assertIn(
            "larger than", str(self.assertRaises(ScannerListInvalid, load_scanners, path))
        )


class InvalidTests(SynchronousTestCase):
    def assertRefused(self, text: str | bytes, *fragments: str) -> None:
        data = text.encode() if isinstance(text, str) else text
        error = self.assertRaises(ScannerListInvalid, parse_scanners, data, "own.toml")
        message = str(error)
        self.assertTrue(message.startswith("scanner list own.toml: "), message)
        for fragment in fragments:
            self.assertIn(fragment, message)

    def test_invalid(self) -> None:
        """
        Each way a file can be wrong is refused with a message that says what is wrong.
        """
        entry = '[[scanner]]\nid = "x"\n'
        self.assertRefused(b"\xff", "UTF-8")
        self.assertRefused("format = ", "not valid TOML")
        self.assertRefused("", "format = 'linkrouter-scanners 1'")
        self.assertRefused('format = "linkrouter-scanners 2"', "format")
        self.assertRefused(HEADER + "extra = 1", "unknown key(s) ['extra']")
        self.assertRefused(HEADER + 'include_default = "yes"', "true or false")
        self.assertRefused(HEADER + "scanner = 1", "array of tables")
        self.assertRefused(HEADER + "scanner = [1]", "#1 is not a table")
        self.assertRefused(HEADER + '[[scanner]]\nid = "Big Name"\nnetworks = ["N"]', "'id'")
        self.assertRefused(HEADER + '[[scanner]]\nnetworks = ["N"]', "'id'")
        self.assertRefused(HEADER + entry, "at least one of")
        self.assertRefused(HEADER + entry + 'networks = ["N"]\nasn = 1', "unknown key(s)")
        self.assertRefused(HEADER + entry + 'name = 1\nnetworks = ["N"]', "'name'")
        self.assertRefused(HEADER + entry + 'networks = "N"', "list of non-empty strings")
        self.assertRefused(HEADER + entry + 'networks = [""]', "list of non-empty strings")
        self.assertRefused(HEADER + entry + 'user_agents = ["Mo"]', "shorter than 3")
        self.assertRefused(HEADER + entry + 'ranges = ["10.0.0.0/33"]', "not a network")
        self.assertRefused(HEADER + entry + 'ranges = ["10.0.0.1/8"]', "host bits")
        self.assertRefused(
            HEADER + entry + 'networks = ["N"]\n' + entry + 'networks = ["M"]',
            "#2 (x): the id is used twice",
        )
        self.assertRefused(
            HEADER + '[[image_proxy]]\nid = "p"\nnetworks = ["N"]', "unknown key(s) ['networks']"
        )
