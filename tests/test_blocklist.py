"""
Tests for L{linkrouter.blocklist}: what each kind of entry blocks, the file's checks, and the
host suffix walk against a brute-force reference.
"""

from __future__ import annotations

import contextlib
import os
import re

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from linkrouter.blocklist import (
    EMPTY,
    MAX_BLOCKLIST_BYTES,
    BlockList,
    BlockListError,
    destination_host,
    load_blocklist,
    parse_blocklist,
)
from linkrouter.codec import Kind, Part, TrackedLink
from linkrouter.linkid import link_id, message_key


def click(target: str, link: str = "abcdefghijkl1", key_id: str = "k1") -> TrackedLink:
    return TrackedLink(Kind.CLICK, Part.HTML, target, key_id, link, 1_764_780_000)


LABEL = st.text("abcxyz0-", min_size=1, max_size=4)
HOSTS = st.lists(LABEL, min_size=1, max_size=5).map(".".join)
_DOTTED_QUAD = re.compile(r"[0-9]{1,3}(\.[0-9]{1,3}){3}")


class ReasonTests(SynchronousTestCase):
    def test_emptyBlocksNothing(self) -> None:
        """
        The empty block list blocks no link and is false.
        """
        self.assertIsNone(EMPTY.reason(click("https://spam.example/")))
        self.assertFalse(EMPTY)
        self.assertTrue(BlockList(hosts=frozenset({"spam.example"})))

    def test_eachKind(self) -> None:
        """
        A link is blocked by its exact LinkID, by the message key its LinkID starts with, by
        its key id, and by its destination host; the reason names which.
        """
        message = message_key("<m@example.com>")
        link = click("https://shop.example/x", link_id("<m@example.com>", 3), "k9")
        cases = [
            (BlockList(link_ids=frozenset({link.link_id})), f"link id {link.link_id}"),
            (BlockList(message_keys=frozenset({message})), f"message key {message}"),
            (BlockList(key_ids=frozenset({"k9"})), "key id k9"),
            (BlockList(hosts=frozenset({"shop.example"})), "destination host shop.example"),
        ]
        for blocklist, reason in cases:
            found = blocklist.reason(link)
            assert found is not None
            self.assertIn(reason, found)
        other = BlockList(
            link_ids=frozenset({link.link_id + "0"}),
            message_keys=frozenset({"A" * 12}),
            key_ids=frozenset({"k1"}),
            hosts=frozenset({"example.com", "op.example"}),
        )
        self.assertIsNone(other.reason(link))

    def test_hostAndSubdomains(self) -> None:
        """
        A listed host blocks itself and every subdomain, whatever the port; not a host that
        merely ends with the same characters, nor a parent domain.
        """
        blocklist = BlockList(hosts=frozenset({"spam.example"}))
        for target in [
            "https://spam.example/",
            "https://a.b.spam.example/x?y",
            "http://spam.example:8080/",
            "https://spam.example./",
        ]:
            self.assertIsNotNone(blocklist.reason(click(target)), target)
        for target in ["https://notspam.example/", "https://example/", "https://spam.examples/"]:
            self.assertIsNone(blocklist.reason(click(target)), target)

    def test_hostsOfAnyLength(self) -> None:
        """
        Short destinations' host checks are cached, long ones' are not: both answer alike,
        asked once or again, and two block lists never share an answer.
        """
        listed = BlockList(hosts=frozenset({"spam.example"}))
        other = BlockList(hosts=frozenset({"ham.example"}))
        for path in ["x", "x" * 1100]:
            spam, ham = (
                click(f"https://a.spam.example/{path}"),
                click(f"https://ham.example/{path}"),
            )
            for _ in range(2):
                self.assertEqual(
                    listed.reason(spam),
                    "destination host a.spam.example is listed as spam.example",
                )
                self.assertIsNone(listed.reason(ham))
                self.assertIsNone(other.reason(spam))
                self.assertIsNotNone(other.reason(ham))

    def test_openPixel(self) -> None:
        """
        An open pixel has no destination: host entries pass it, link entries block it.
        """
        pixel = TrackedLink(Kind.OPEN, Part.HTML, None, "k1", "abcdefghijkl9", 0)
        self.assertIsNone(BlockList(hosts=frozenset({"example"})).reason(pixel))
        self.assertIsNotNone(BlockList(message_keys=frozenset({"abcdefghijkl"})).reason(pixel))

    def test_destinationHost(self) -> None:
        """
        The host of a normalized target, without port or final dot; IPv6 keeps brackets.
        """
        self.assertEqual(destination_host("https://a.example:444/p"), "a.example")
        self.assertEqual(destination_host("https://[::1]:8443/"), "[::1]")
        self.assertEqual(destination_host("http://a.example./"), "a.example")

    @settings(max_examples=300, deadline=None)
    @given(HOSTS, st.sets(HOSTS, max_size=4))
    def test_suffixWalk(self, host: str, listed: set[str]) -> None:
        """
        A host is blocked exactly when it, or a domain it is under, is listed.
        """
        expected = any(host == entry or host.endswith("." + entry) for entry in listed)
        blocklist = BlockList(hosts=frozenset(listed))
        self.assertEqual(blocklist.reason(click(f"https://{host}/")) is not None, expected)


class ParseTests(SynchronousTestCase):
    def test_parse(self) -> None:
        """
        Each list is read; hosts are normalized to lower-case IDNA without a final dot.
        """
        blocklist = parse_blocklist(
            b'link_ids = ["abc"]\nmessage_keys = ["abcdefghijkl"]\nkey_ids = ["k1"]\n'
            b'hosts = ["Spam.Example.", "b\xc3\xbccher.example"]\n'
        )
        self.assertEqual(
            blocklist,
            BlockList(
                frozenset({"abc"}),
                frozenset({"abcdefghijkl"}),
                frozenset({"k1"}),
                frozenset({"spam.example", "xn--bcher-kva.example"}),
            ),
        )
        self.assertEqual(parse_blocklist(b""), EMPTY)

    def test_refused(self) -> None:
        """
        Unknown keys, non-lists, malformed entries and non-TOML are refused, naming the key
        and the value.
        """
        for text, words in [
            (b"hostz = []", "unknown key"),
            (b'hosts = "a.example"', "must be a list"),
            (b"hosts = [1]", "1 is not a string"),
            (b'hosts = ["https://a.example/"]', "'https://a.example/' is not a host"),
            (b'hosts = ["a.example:80"]', "'a.example:80'"),
            (b'hosts = ["a..b"]', "'a..b'"),
            (b'message_keys = ["short"]', "message_keys: 'short' is not a message key"),
            (b'link_ids = ["a/b"]', "link_ids: 'a/b'"),
            (b'key_ids = ["' + b"k" * 17 + b'"]', "key_ids"),
            (b"hosts = [", "not valid TOML"),
            (b"\xff", "not valid TOML"),
        ]:
            error = self.assertRaises(ValueError, parse_blocklist, text)
            self.assertIn(words, str(error), text)

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
    def test_anyBytes(self, text: bytes) -> None:
        """
        Any input yields a block list or a ValueError, nothing else.
        """
        with contextlib.suppress(ValueError):
            parse_blocklist(text)

    @settings(max_examples=100, deadline=None)
    @given(st.sets(HOSTS, max_size=5))
    def test_roundTrip(self, hosts: set[str]) -> None:
        """
        Valid lowercase ASCII hosts are kept as written (wherever the WHATWG parser agrees);
        a host spelled in numbers is the IPv4 address WHATWG reads in it, so two spellings
        ("0" and "0.0", both 0.0.0.0) may be one entry.
        """
        text = "hosts = [" + ", ".join(f'"{host}"' for host in sorted(hosts)) + "]"
        try:
            parsed = parse_blocklist(text.encode())
        except ValueError:
            return  # e.g. a numeric last label: not a host name the parser accepts
        names = {host for host in parsed.hosts if not _DOTTED_QUAD.fullmatch(host)}
        self.assertLessEqual(names, hosts)  # names as written
        addresses = parsed.hosts - names
        for host in hosts - names:  # each other host is one of the addresses
            alone = parse_blocklist(f'hosts = ["{host}"]'.encode()).hosts
            self.assertEqual(len(alone), 1)
            self.assertLessEqual(alone, addresses)


class LoadTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = FilePath(self.mktemp())
        self.directory.makedirs()

    def test_loadNamesTheFile(self) -> None:
        """
        A missing, oversized or invalid file is a L{BlockListError} naming the file.
        """
        path = self.directory.child("blocklist.toml")
        self.assertIn(path.path, str(self.assertRaises(BlockListError, load_blocklist, path)))
        path.setContent(b"x = 1")
        error = str(self.assertRaises(BlockListError, load_blocklist, path))
        self.assertIn(path.path, error)
        self.assertIn("unknown key", error)
        with open(path.path, "wb") as file:
            file.truncate(MAX_BLOCKLIST_BYTES + 1)
        self.assertIn("over", str(self.assertRaises(BlockListError, load_blocklist, path)))
        os.remove(path.path)
        path.setContent(b'key_ids = ["k1"]')
        self.assertEqual(load_blocklist(path), BlockList(key_ids=frozenset({"k1"})))
