"""
Tests for L{linkrouter.rewrite.html} (through L{linkrouter.rewrite.rewrite_html}): only the
C{href} values of C{<a>} and C{<area>} change, each decoded once and written back escaped.
"""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from linkrouter.codec import Part
from linkrouter.rewrite import Mode, SkipReason, rewrite_html
from linkrouter.rewrite.html import decode_attribute, rewrite_links
from linkrouter.target import TargetRefused, normalize_target

from .rewriting import TRACKED, rewriter, urls, verified

_SETTINGS = settings(max_examples=300, deadline=None)


def _escape(url: str, quote: str, style: int) -> str:
    """
    C{url} as an attribute value in C{quote}, with C{&} written one of three ways.
    """
    ampersand = ["&amp;", "&#38;", "&#x26;"][style % 3]
    value = url.replace("&", ampersand)
    if quote == '"':
        return value.replace('"', "&quot;")
    if quote == "'":
        return value.replace("'", "&#39;")
    return value


@st.composite
def link_tags(draw: st.DrawFn) -> tuple[str, str, str, str]:
    """
    An <a> or <area> start tag with a trackable href: (before, value, after, url).
    """
    url = draw(urls)
    quote = draw(st.sampled_from(['"', "'", ""]))
    element = draw(st.sampled_from(["a", "A", "area", "AREA", "aReA"]))
    name = draw(st.sampled_from(["href", "HREF", "Href"]))
    space = draw(st.sampled_from(["", " ", "\n  ", "\t"]))
    other = draw(st.sampled_from(["", ' class="btn"', " target=_blank", " title='a > b'"]))
    value = _escape(url, quote, draw(st.integers(0, 2)))
    before = f"<{element}{other} {name}{space}={space}{quote}"
    after = f"{quote}{' ' if not quote else ''}{draw(st.sampled_from(['', 'style=x', '/']))}>"
    return before, value, after, url


_PLAIN = st.text(st.characters(blacklist_characters="<&", codec="utf-8"), max_size=30)
_UNTOUCHED = st.sampled_from(
    [
        '<style>a{background:url("https://no.example/style")} .x>a{}</style>',
        "<SCRIPT>var a = '<a href=\"https://no.example/script\">';</script >",
        '<!-- <a href="https://no.example/comment"> -->',
        "<!---->",
        "<!-->",
        '<link rel=stylesheet href="https://no.example/link.css">',
        "<div data-html='<a href=\"https://no.example/attribute\">'>",
        '<title><a href="https://no.example/title"></title>',
        '<textarea><a href="https://no.example/textarea"></textarea>',
        '<base href="https://no.example/base/">',
        '<img src="https://no.example/img.png" alt="&amp;">',
        "<!DOCTYPE html>",
        "<![endif]-->",
        "<br/>",
        "</p>",
        "&amp; &lt; < 3",
        '<a name="top">',
        '<a href="mailto:someone@example.com">',
        '<a href="#top">',
        '<a href="/relative/path">',
        '<a href="{{ unsubscribe_url }}">',
        '<a href="*|UNSUB|*">',
        '<a href="javascript:alert(1)">',
        '<a href="https://click.example/1s/example.com/t1/x/B/AAAAAAAAAAAAAAAA">',
    ]
)


@st.composite
def documents(draw: st.DrawFn) -> list[tuple[str, str, str, str] | str]:
    """
    A document as pieces: text and markup that must stay as they are, and link tags.
    """
    pieces: list[tuple[str, str, str, str] | str] = []
    for _ in range(draw(st.integers(0, 12))):
        kind = draw(st.integers(0, 3))
        if kind == 0:
            pieces.append(draw(_PLAIN))
        elif kind == 1:
            pieces.append(draw(_UNTOUCHED))
        elif kind == 2:
            pieces.append(draw(link_tags()))
        else:
            before, value, after, url = draw(link_tags())
            pieces += ["<!--[if mso]>", (before, value, after, url), "<![endif]-->"]
    return pieces


def _assemble(pieces: list[tuple[str, str, str, str] | str]) -> str:
    return "".join(p if isinstance(p, str) else "".join(p[:3]) for p in pieces)


def _trackable(url: str) -> bool:
    try:
        normalize_target(url.strip())
    except TargetRefused:
        return False
    return True


class PropertyTests(SynchronousTestCase):
    @_SETTINGS
    @given(documents())
    def test_onlyHrefValuesChange(self, pieces: list[tuple[str, str, str, str] | str]) -> None:
        """
        Outside the rewritten href values the output is the input, character for character;
        every rewritten value is a tracked link that verifies and leads to the URL written
        (entity-decoded once); the same URL has the same LinkID, different URLs differ.
        """
        document = _assemble(pieces)
        result = rewrite_html(rewriter(), document)
        pattern = ""
        expected: list[str] = []
        for piece in pieces:
            if isinstance(piece, str):
                pattern += re.escape(piece)
                continue
            before, value, after, url = piece
            if _trackable(url):
                pattern += re.escape(before) + f"({TRACKED.pattern})" + re.escape(after)
                expected.append(url)
            else:
                pattern += re.escape(before + value + after)
        match = re.fullmatch(pattern, result.content, re.DOTALL)
        self.assertIsNotNone(match, (document, result.content))
        assert match is not None
        ids: dict[str, str] = {}
        for link, url in zip(match.groups(), expected, strict=True):
            tracked = verified(self, link)
            self.assertEqual(tracked.target, normalize_target(url))
            self.assertEqual(
                ids.setdefault(normalize_target(url), tracked.link_id), tracked.link_id
            )
        self.assertEqual(len(set(ids.values())), len(ids))
        self.assertEqual(len(result.links), len(ids))

    @_SETTINGS
    @given(documents())
    def test_idempotent(self, pieces: list[tuple[str, str, str, str] | str]) -> None:
        """
        Rewriting a rewritten document changes nothing: tracked links are never wrapped twice.
        """
        once = rewrite_html(rewriter(), _assemble(pieces))
        twice = rewrite_html(rewriter(), once.content)
        self.assertEqual(twice.content, once.content)
        self.assertEqual(twice.links, ())

    @_SETTINGS
    @given(
        st.lists(
            st.sampled_from([*"<>!-/='\" \naAhrefsyltcp[]?ix:", "href=", "<a ", "<!--", "]>"])
        ).map("".join)
    )
    def test_anyInputChangesOnlyValues(self, document: str) -> None:
        """
        Whatever the input (no references, so a value is its decoded self), the rewriter
        finishes, and its edits are only at the values it was handed: returning each value
        unchanged gives the input back; appending a mark to each adds exactly those marks.
        """
        seen: list[str] = []

        def marked(value: str) -> str:
            if not re.fullmatch(r"[^\s\"'<=>&`]*", value):
                return value  # would be written back escaped
            seen.append(value)
            return value + "\N{BULLET}"

        self.assertEqual(
            rewrite_links(document, lambda value: value, lambda value: None), document
        )
        output = rewrite_links(document, marked, lambda value: None)
        self.assertEqual(output.replace("\N{BULLET}", ""), document)
        self.assertEqual(output.count("\N{BULLET}"), len(seen))


class AttributeTests(SynchronousTestCase):
    def test_decodedExactlyOnce(self) -> None:
        """
        Character references are decoded once: C{&amp;amp;} is a literal C{&amp;}.
        """
        self.assertEqual(decode_attribute("a?x=1&amp;y=2"), "a?x=1&y=2")
        self.assertEqual(decode_attribute("a?x=1&amp;amp;y=2"), "a?x=1&amp;y=2")
        self.assertEqual(decode_attribute("&#38;&#x26;&#X26"), "&&&")
        self.assertEqual(decode_attribute("&lt;&gt;&quot;&#39;"), "<>\"'")

    def test_legacyReferencesInAttributes(self) -> None:
        """
        A named reference without C{;} followed by C{=} or a letter or digit is text in an
        attribute (HTML5): C{?a=1&copy=2} keeps its parameter; C{&copy } is still decoded.
        """
        self.assertEqual(decode_attribute("?a=1&copy=2"), "?a=1&copy=2")
        self.assertEqual(decode_attribute("?x&notit;"), "?x&notit;")
        self.assertEqual(decode_attribute("?x&notin;"), "?x\u2209")
        self.assertEqual(decode_attribute("&copy 2024"), "\u00a9 2024")
        self.assertEqual(decode_attribute("&lt-"), "<-")
        self.assertEqual(decode_attribute("?a&unknown;b"), "?a&unknown;b")


def _rewrite(document: str, mode: Mode = Mode.HTML_AND_TEXT) -> tuple[str, list[str]]:
    result = rewrite_html(rewriter(mode), document)
    return result.content, TRACKED.findall(result.content)


class DocumentTests(SynchronousTestCase):
    def test_quotings(self) -> None:
        """
        Double-, single- and un-quoted values are rewritten in place, keeping their quoting.
        """
        content, links = _rewrite(
            "<a href=\"https://a.example/1\">1</a><a href='https://a.example/2'>2</a>"
            '<a href=https://a.example/3>3</a><a href = "https://a.example/4" >4</a>'
        )
        self.assertEqual(len(links), 4)
        self.assertEqual(
            re.sub(TRACKED, "L", content),
            '<a href="L">1</a><a href=\'L\'>2</a><a href=L>3</a><a href = "L" >4</a>',
        )
        self.assertEqual(
            [verified(self, link).target for link in links],
            [f"https://a.example/{n}" for n in range(1, 5)],
        )

    def test_ampersandsAndUpperCase(self) -> None:
        """
        C{&amp;} in the value is one C{&} in the signed URL; tag and attribute names in any
        case are found.
        """
        content, links = _rewrite('<A HREF="https://a.example/?x=1&amp;y=2&amp;amp;z">x</A>')
        self.assertEqual(verified(self, links[0]).target, "https://a.example/?x=1&y=2&amp;z")
        self.assertTrue(content.startswith('<A HREF="https://click.example/'))

    def test_firstHrefCounts(self) -> None:
        """
        Of two href attributes the first is the link (browsers ignore the second): only it
        is rewritten.
        """
        content, links = _rewrite('<a href="https://a.example/1" href="https://a.example/2">')
        self.assertEqual(len(links), 1)
        self.assertEqual(verified(self, links[0]).target, "https://a.example/1")
        self.assertTrue(content.endswith(' href="https://a.example/2">'))

    def test_outlookConditionalComments(self) -> None:
        """
        Links inside C{<!--[if mso]>} blocks (read by Outlook) and in the downlevel-revealed
        C{<!--[if !mso]><!-->} form are rewritten; the comment syntax stays as it was.
        """
        document = (
            '<!--[if mso]><v:roundrect href="https://a.example/vml"><a href="https://a.example/'
            'mso">x</a></v:roundrect><![endif]-->'
            '<!--[if !mso]><!--><a href="https://a.example/other">y</a><!--<![endif]-->'
        )
        content, links = _rewrite(document)
        self.assertEqual(
            [verified(self, link).target for link in links],
            ["https://a.example/mso", "https://a.example/other"],
        )
        self.assertEqual(
            re.sub(TRACKED, "L", content),
            '<!--[if mso]><v:roundrect href="https://a.example/vml"><a href="L">x</a>'
            '</v:roundrect><![endif]--><!--[if !mso]><!--><a href="L">y</a><!--<![endif]-->',
        )

    def test_rawTextAndOtherElements(self) -> None:
        """
        Links in style, script, title, textarea, plain comments, other elements' hrefs and
        attribute values stay as written.
        """
        document = (
            "<head><title>see <a href='https://no.example/1'></title>"
            "<style>@import url(https://no.example/2);</style>"
            "<script>document.write('<a href=\"https://no.example/3\">')</script>"
            '<link href="https://no.example/4"><base href="https://no.example/5/"></head>'
            '<!-- <a href="https://no.example/6"> --><div title="<a href=\'https://no.example'
            "/7'>\"></div><textarea><a href=https://no.example/8></textarea>"
            "<plaintext><a href=https://no.example/9>"
        )
        content, links = _rewrite(document)
        self.assertEqual(content, document)
        self.assertEqual(links, [])

    def test_endsOfRawText(self) -> None:
        """
        A raw-text element ends at its own end tag, in any case, and not at a look-alike.
        """
        content, links = _rewrite(
            "<style>x</styles><a href=https://no.example/1></STYLE><a href=https://a.example/yes>"
        )
        self.assertEqual(
            [verified(self, link).target for link in links], ["https://a.example/yes"]
        )
        self.assertIn("<a href=https://no.example/1>", content)

    def test_relativeLinksAndBase(self) -> None:
        """
        Relative links are left as written, even under C{<base href>}, and reported.
        """
        result = rewrite_html(rewriter(), '<base href="https://a.example/"><a href="page.html">')
        self.assertEqual(result.content, '<base href="https://a.example/"><a href="page.html">')
        self.assertEqual(
            [(s.url, s.reason, s.detail) for s in result.skipped],
            [("page.html", SkipReason.NOT_HTTP, "a relative link (left as written)")],
        )

    def test_skippedAndReported(self) -> None:
        """
        mailto:, tel:, anchors, javascript:, placeholders, tracked links and refused URLs are
        left untouched, each reported with its reason.
        """
        values = [
            "mailto:a@example.com",
            "tel:+441234",
            "#top",
            " JavaScript:alert(1)",
            "{{ url }}",
            "*|ARCHIVE|*",
            "%%view_url%%",
            "https://x.example/?u={{user}}",
            "https://click.example/1s/x/t1/a/B/AAAAAAAAAAAAAAAA",
            "https://good.example@evil.example/",
            "//evil.example/",
            "https://x.example/" + "a" * 1960,
        ]
        document = "".join(f'<a href="{v}">' for v in values)
        result = rewrite_html(rewriter(), document)
        self.assertEqual(result.content, document)
        self.assertEqual(
            [s.reason for s in result.skipped],
            [SkipReason.NOT_HTTP] * 4
            + [SkipReason.PLACEHOLDER] * 4
            + [SkipReason.ALREADY_TRACKED, SkipReason.REFUSED, SkipReason.NOT_HTTP]
            + [SkipReason.TOO_LONG],
        )
        self.assertEqual(result.skipped[0].detail, "a mailto: link")
        self.assertEqual(result.skipped[3].detail, "a javascript: link")

    def test_optOut(self) -> None:
        """
        C{data-linkrouter-no-track} leaves the link untracked and is removed from the output
        with the space before it.
        """
        result = rewrite_html(
            rewriter(),
            '<a class=x data-linkrouter-no-track href="https://a.example/">'
            "<a href='https://b.example/' DATA-LINKROUTER-NO-TRACK=\"\">",
        )
        self.assertEqual(
            result.content, "<a class=x href=\"https://a.example/\"><a href='https://b.example/'>"
        )
        self.assertEqual([s.reason for s in result.skipped], [SkipReason.OPTED_OUT] * 2)
        self.assertEqual(result.links, ())

    def test_linkIdsByFirstAppearance(self) -> None:
        """
        Distinct destinations are numbered in order of first appearance; the same URL
        written differently is one destination with one LinkID.
        """
        result = rewrite_html(
            rewriter(),
            '<a href="https://a.example/x?p=1&amp;q=2"><a href="https://b.example/">'
            '<a href="HTTPS://A.EXAMPLE/x?p=1&q=2">',
        )
        links = [verified(self, link) for link in TRACKED.findall(result.content)]
        self.assertEqual(links[0].link_id, links[2].link_id)
        self.assertEqual([r.position for r in result.links], [1, 2])
        self.assertEqual(
            [r.url for r in result.links], ["https://a.example/x?p=1&q=2", "https://b.example/"]
        )
        self.assertEqual({r.part for r in result.links}, {Part.HTML})
        self.assertTrue(links[1].link_id.endswith("2"))

    def test_textOnlyModeLeavesHtml(self) -> None:
        """
        In text-only mode HTML links are not tracked (opt-out markers are still removed).
        """
        document = '<a href="https://a.example/">x</a>'
        self.assertEqual(_rewrite(document, Mode.TEXT_ONLY), (document, []))

    def test_truncatedTagIsLeft(self) -> None:
        """
        A tag cut off by the end of the document (browsers drop it) is left as it is.
        """
        self.assertEqual(
            _rewrite('<p><a href="https://a.example/'), ('<p><a href="https://a.example/', [])
        )

    def test_thousandsOfLinks(self) -> None:
        """
        Thousands of links, many repeated: each occurrence rewritten, one LinkID a URL.
        """
        document = "".join(
            f'<p><a href="https://a.example/item/{n % 700}?utm=x&amp;n={n % 700}">{n}</a>'
            for n in range(3000)
        )
        result = rewrite_html(rewriter(), document)
        self.assertEqual(len(TRACKED.findall(result.content)), 3000)
        self.assertEqual(len(result.links), 700)
        self.assertEqual(result.links[-1].position, 700)
