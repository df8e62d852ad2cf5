"""
Tests for L{linkrouter.rewrite.issuer} and C{linkrouter rewrite}: what a link becomes, the
WPT URL corpus through the rewriter, and the command line.
"""

from __future__ import annotations

import io
import json

import ada_url
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from linkrouter.cli import main
from linkrouter.codec import Part
from linkrouter.keyfile import save_keyring
from linkrouter.keys import Keyring
from linkrouter.linkid import message_key
from linkrouter.rewrite import Rewriter, rewrite_html, rewrite_text
from linkrouter.rewrite.issuer import _PLACEHOLDER, _holds_placeholder

from .rewriting import BASE, ISSUED_AT, KEY, TRACKED, rewriter, verified
from .test_target import _ada_href, _load_wpt


class RewriterTests(SynchronousTestCase):
    def test_badSettingsRefusedUpFront(self) -> None:
        """
        A bad base or issue time is refused when the rewriter is made, not per link.
        """
        self.assertRaises(ValueError, Rewriter, KEY, "http://click.example")
        self.assertRaises(ValueError, Rewriter, KEY, "https://click.example/path")
        self.assertRaises(ValueError, Rewriter, KEY, BASE, issued_at=-1)

    def test_issueTimeDefaultsToNow(self) -> None:
        """
        Without an issue time, links carry the time of rewriting.
        """
        result = rewrite_text(Rewriter(KEY, BASE), "https://x.example/")
        (link,) = TRACKED.findall(result.content)
        self.assertGreater(verified(self, link, Part.TEXT, None).issued_at, ISSUED_AT)

    def test_sameMessageSameLinks(self) -> None:
        """
        Rewriting one message twice with the same settings gives the same output.
        """
        document = '<a href="https://x.example/a">a</a><a href="https://x.example/b">b</a>'
        self.assertEqual(
            rewrite_html(rewriter(), document).content, rewrite_html(rewriter(), document).content
        )

    def test_recordJson(self) -> None:
        """
        A record's JSON has the keys the collector's POST /v1/links takes.
        """
        (record,) = rewrite_text(rewriter(), "https://x.example/a").links
        self.assertEqual(
            record.as_json("welcome", "h1"),
            {
                "link": message_key("<test@linkrouter.example>") + "1",
                "url": "https://x.example/a",
                "part": "text",
                "position": 1,
                "message": "<test@linkrouter.example>",
                "tag": "welcome",
                "recipient": "h1",
            },
        )


# Links with the characters template markers are made of, in any order.
_MARKERISH = st.lists(
    st.sampled_from([*"{}%*|[]$<>", "https://e.com/", "a", "%%", "{{", "é"]), max_size=12
).map("".join)


class PlaceholderTests(SynchronousTestCase):
    @settings(max_examples=1000, deadline=None)
    @given(st.one_of(_MARKERISH, st.text(max_size=40)))
    def test_sameAsThePattern(self, value: str) -> None:
        """
        The quick test for template markers says what the marker pattern says.
        """
        self.assertEqual(_holds_placeholder(value), _PLACEHOLDER.search(value) is not None)

    def test_everyMarker(self) -> None:
        """
        Every marker is found, alone and inside a link; a link with none is not.
        """
        for marker in [
            "{{",
            "}}",
            "{%",
            "%}",
            "*|",
            "|*",
            "%%",
            "[[",
            "]]",
            "${",
            "<%",
            "%>",
            "{$",
        ]:
            self.assertTrue(_holds_placeholder(marker), marker)
            self.assertTrue(_holds_placeholder(f"https://e.com/?u={marker}x"), marker)
        self.assertFalse(_holds_placeholder("https://e.com/a%20b?c=[d]&e=$f*g{h}"))


class UrlCorpusTests(SynchronousTestCase):
    def test_wptThroughTheRewriter(self) -> None:
        """
        Every WPT URL test input, written in an href (escaped) and in text: either left as
        written, or tracked by a link that verifies to where a WHATWG parser sends the
        input, and only for http(s).
        """
        tracked = 0
        for item in _load_wpt():
            raw = item["input"]
            escaped = raw.replace("&", "&amp;").replace('"', "&quot;")
            document = f'<a href="{escaped}">x</a>'
            result = rewrite_html(rewriter(), document)
            links = TRACKED.findall(result.content)
            if not links:
                self.assertEqual(result.content, document)
                self.assertEqual(len(result.skipped), 1, raw)
                continue
            tracked += 1
            target = verified(self, links[0]).target
            expected = _ada_href(raw)
            self.assertEqual(target, expected, raw)
            assert target is not None
            self.assertIn(ada_url.URL(target).protocol, {"http:", "https:"})
        self.assertGreater(tracked, 50)


class CommandTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = FilePath(self.mktemp())
        self.directory.makedirs()
        self.keyring = self.directory.child("keyring.json")
        save_keyring(Keyring((KEY,)), self.keyring)

    def run_rewrite(self, *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        status = main(["rewrite", "--keyring", self.keyring.path, "--base", BASE, *argv], out, err)
        return status, out.getvalue(), err.getvalue()

    def test_emlWithMapping(self) -> None:
        """
        An .eml is rewritten to OUT; --links-out gets one JSON line per record, with the
        tag; skipped links are reported without their query; stderr names the message id.
        """
        source = self.directory.child("m.eml")
        source.setContent(
            b"Message-ID: <cli@example.com>\r\nContent-Type: text/html\r\n\r\n"
            b'<a href="https://x.example/a">a</a><a href="https://bad.example@evil.example/'
            b'?token=SECRET">b</a>\r\n'
        )
        output, links = self.directory.child("out.eml"), self.directory.child("links.jsonl")
        status, out, err = self.run_rewrite(
            "--issued-at", str(ISSUED_AT), "--tag", "t", "-o", output.path,
            "--links-out", links.path, source.path,
        )  # fmt: skip
        self.assertEqual(status, 0, err)
        self.assertEqual(out, "")
        (link,) = TRACKED.findall(output.getContent().decode())
        self.assertEqual(verified(self, link, Part.HTML).target, "https://x.example/a")
        (line,) = links.getContent().decode().splitlines()
        self.assertEqual(
            json.loads(line),
            {
                "link": message_key("<cli@example.com>") + "1",
                "url": "https://x.example/a",
                "part": "html",
                "position": 1,
                "message": "<cli@example.com>",
                "tag": "t",
            },
        )
        self.assertNotIn("SECRET", err)
        self.assertIn("refused", err)
        self.assertIn("message id <cli@example.com> (the Message-ID header)", err)

    def test_textToStdoutWithMessageId(self) -> None:
        """
        A .txt is written to standard output; --message-id sets the LinkIDs.
        """
        source = self.directory.child("m.txt")
        source.setContent(b"Go to https://x.example/a.\n")
        status, out, err = self.run_rewrite("--message-id", "abc", source.path)
        self.assertEqual(status, 0, err)
        (link,) = TRACKED.findall(out)
        self.assertEqual(verified(self, link, Part.TEXT, None).link_id, message_key("abc") + "1")
        self.assertTrue(out.endswith(".\n"))
        self.assertIn("(--message-id)", err)

    def test_unknownType(self) -> None:
        """
        An input whose type cannot be told is a failure that says to use --type.
        """
        source = self.directory.child("m.dat")
        source.setContent(b"x")
        status, out, err = self.run_rewrite(source.path)
        self.assertEqual(status, 1)
        self.assertIn("--type", err)
        status, out, err = self.run_rewrite("--type", "txt", source.path)
        self.assertEqual(status, 0, err)
        self.assertEqual(out, "x")

    def test_badBase(self) -> None:
        """
        A base that is not an https origin is a one-line failure.
        """
        source = self.directory.child("m.txt")
        source.setContent(b"x")
        status, _, err = self.run_rewrite("--base", "http://evil.example", source.path)
        self.assertEqual(status, 1)
        self.assertIn("https", err)
