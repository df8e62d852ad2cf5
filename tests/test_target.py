"""
Tests for L{linkrouter.target}: which destinations may be signed, and in which exact form.
"""

from __future__ import annotations

import contextlib
import json
import string
from typing import Any

import ada_url
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from linkrouter.codec import Part, TrackedLink, sign, verify
from linkrouter.keys import Key, KeyState
from linkrouter.target import (
    MAX_TARGET_LENGTH,
    TargetRefused,
    is_canonical,
    normalize_target,
    parse_target,
)

_SETTINGS = settings(max_examples=1000, deadline=None)

# The WPT URL corpus, vendored with its source and licence: tests/vectors/wpt/README.rst.
_WPT = FilePath(__file__).sibling("vectors").descendant(["wpt", "urltestdata.json"])

_KEY = Key("wpt", b"w" * 32, KeyState.ACTIVE)
_BASE = "https://click.example"


def _is_safe_location(text: str) -> bool:
    """
    Whether C{text} is only printable ASCII without space: no control, whitespace, non-ASCII.
    """
    return all(0x21 <= ord(c) <= 0x7E for c in text)


def _ada_href(text: str) -> str | None:
    """
    What a WHATWG parser (ada-url) makes of C{text} without a base, or L{None} if it fails.
    """
    try:
        return str(ada_url.URL(text).href)
    except ValueError:
        return None


def _load_wpt() -> list[dict[str, Any]]:
    """
    The test objects of the WPT URL corpus (comment strings dropped).
    """
    items = json.loads(_WPT.getContent().decode("utf-8"))
    return [item for item in items if isinstance(item, dict)]


class RefusedSchemeTests(SynchronousTestCase):
    """
    Only absolute http: and https: URLs are signed.
    """

    def assertRefused(self, raw: str) -> None:
        """
        C{normalize_target(raw)} raises L{TargetRefused}.
        """
        self.assertRaises(TargetRefused, normalize_target, raw)

    def test_javascript(self) -> None:
        """
        javascript: URLs are refused in any case, and with leading whitespace or control
        characters that a browser would strip.
        """
        for raw in [
            "javascript:alert(1)",
            "JaVaScRiPt:alert(1)",
            "JAVASCRIPT:alert(document.cookie)",
            " javascript:alert(1)",
            "\tjavascript:alert(1)",
            "\njavascript:alert(1)",
            "\x00javascript:alert(1)",
            "\x01javascript:alert(1)",
            "\x1fjavascript:alert(1)",
            "java\tscript:alert(1)",
            "java\nscript:alert(1)",
            "javascript://https://good.example/%0aalert(1)",
        ]:
            self.assertRefused(raw)

    def test_otherSchemes(self) -> None:
        """
        data:, file:, vbscript:, mailto:, tel:, ftp:, ws: and the like are refused.
        """
        for raw in [
            "data:text/html,<script>alert(1)</script>",
            "DATA:text/html;base64,PHNjcmlwdD4=",
            "file:///etc/passwd",
            "file://server/share",
            "vbscript:msgbox(1)",
            "VBScript:msgbox(1)",
            "mailto:someone@example.com",
            "tel:+15555550100",
            "ftp://ftp.example/file",
            "ws://example.com/",
            "wss://example.com/",
            "blob:https://example.com/uuid",
            "about:blank",
            "httpx://example.com/",
            "http+unix://example.com/",
        ]:
            self.assertRefused(raw)

    def test_relativeAndTemplates(self) -> None:
        """
        Relative links, fragments and template placeholders are not absolute URLs: refused.
        """
        for raw in ["#top", "/path", "path", "?q=1", "", "{{url}}", "*|URL|*", "%%URL%%"]:
            self.assertRefused(raw)

    def test_controlAndSpaceAroundScheme(self) -> None:
        """
        Leading or trailing whitespace and control characters, which a browser would strip,
        are refused rather than signed.
        """
        for raw in [
            " https://example.com/",
            "https://example.com/ ",
            "\x00https://example.com/",
            "https://example.com/\x00",
            "\thttps://example.com/",
            "https://example.com/\r\n",
            "https://example.com/\r\nSet-Cookie: a=b",
            "https://exa\tmple.com/",
            "https://example.com/a\nb",
            "https://example.com/\x7f",
        ]:
            self.assertRefused(raw)


class SchemeRelativeAndBackslashTests(SynchronousTestCase):
    """
    Scheme-relative and backslash forms are refused.
    """

    def test_refused(self) -> None:
        """
        //host, \\\\host, /\\host, http:/\\/x, http:///x, http:\\\\x and scheme-only forms are
        refused.
        """
        for raw in [
            "//evil.example",
            "//evil.example/path",
            "\\\\evil.example",
            "\\\\evil.example\\path",
            "/\\evil.example",
            "\\/evil.example",
            "http:/\\/x",
            "http:\\\\x",
            "https:\\\\evil.example",
            "http:\\/evil.example",
            "http:///x",
            "https:///evil.example",
            "http:////x",
            "http:/x",
            "http:x",
            "https:evil.example",
            "http://\\evil.example",
            "http://evil.example\\@good.example",
        ]:
            self.assertRaises(TargetRefused, normalize_target, raw)


class UserinfoTests(SynchronousTestCase):
    """
    Userinfo tricks are refused.
    """

    def test_refused(self) -> None:
        """
        Anything before an '@' in the authority is refused, escaped or backslashed or not.
        """
        for raw in [
            "https://good.example@evil.example",
            "https://good.example@evil.example/",
            "https://good.example\\@evil.example",
            "https://user:pass@evil.example/",
            "https://:@evil.example/",
            "https://@evil.example/",
            "https://good.example:443@evil.example/",
            "https://good.example%40evil.example/",
            "https://good.example%2540evil.example/",
            "http://a@b@evil.example/",
        ]:
            self.assertRaises(TargetRefused, normalize_target, raw)

    def test_atInPathIsFine(self) -> None:
        """
        An '@' after the authority is not userinfo: it is kept in the path, query or fragment.
        """
        self.assertEqual(
            normalize_target("https://example.com/@user?to=a@b#c@d"),
            "https://example.com/@user?to=a@b#c@d",
        )


class HostTests(SynchronousTestCase):
    """
    Host names: homographs become punycode, disguised addresses and broken hosts are refused.
    """

    def test_homographBecomesPunycode(self) -> None:
        """
        A unicode host is signed as its IDNA (punycode) form, so the Cyrillic 'a' (U+0430)
        in a look-alike of "apple.com" is visible as xn--...
        """
        self.assertEqual(normalize_target("https://\u0430pple.com/"), "https://xn--pple-43d.com/")
        self.assertEqual(
            normalize_target("https://\u0430\u0440\u0440\u04cf\u0435.com/login"),
            "https://xn--80ak6aa92e.com/login",
        )
        self.assertEqual(normalize_target("https://faß.de/"), "https://xn--fa-hia.de/")
        self.assertEqual(
            normalize_target("https://\u4f8b\u3048.\u30c6\u30b9\u30c8/"),
            "https://xn--r8jz45g.xn--zckzah/",
        )

    def test_invalidPunycode(self) -> None:
        """
        A host with an xn-- label that is not valid punycode (which a browser refuses) is
        refused; valid punycode is signed, lower-cased.
        """
        for raw in [
            "http://a.b.c.xn--pokxncvks",
            "http://10.0.0.XN--pokxncvks/",
            "http://xn--/",
            "http://xn--a.com/",
            "http://xn--abc-.com/",
            "http://xn--0x0c/",  # decodes to a lone surrogate
        ]:
            self.assertRaises(TargetRefused, normalize_target, raw)
        self.assertEqual(
            normalize_target("https://XN--PPLE-43D.com/"), "https://xn--pple-43d.com/"
        )
        self.assertEqual(normalize_target("http://xn--ls8h.la/"), "http://xn--ls8h.la/")

    def test_hostIsLowerCased(self) -> None:
        """
        Scheme and host are lower-cased; a default port is dropped; the path gets its '/'.
        """
        self.assertEqual(normalize_target("HTTPS://Example.COM:443"), "https://example.com/")
        self.assertEqual(normalize_target("http://Example.com:80/A"), "http://example.com/A")
        self.assertEqual(normalize_target("http://example.com:8080/"), "http://example.com:8080/")

    def test_brokenIPv6(self) -> None:
        """
        IPv6 hosts with missing, extra or misplaced brackets, or bad addresses, are refused.
        """
        for raw in [
            "http://[::1/",
            "http://::1]/",
            "http://[::1]]/",
            "http://[[::1]/",
            "http://[::1/]",
            "http://[1:2:3]/",
            "http://[::1::2]/",
            "http://[::g]/",
            "http://[]/",
            "http://[::1]x/",
            "http://[::1]:x/",
            "http://::1/",
            "http://[127.0.0.1]/",
            "http://[::1%25eth0]/",
        ]:
            self.assertRaises(TargetRefused, normalize_target, raw)

    def test_IPv6(self) -> None:
        """
        A well-formed IPv6 host is signed in its canonical compressed form, port kept.
        """
        self.assertEqual(normalize_target("http://[::1]/"), "http://[::1]/")
        self.assertEqual(
            normalize_target("https://[2001:DB8:0:0:0:0:0:1]:8443/x"),
            "https://[2001:db8::1]:8443/x",
        )

    def test_disguisedIPv4(self) -> None:
        """
        Integer, octal, hex, short and trailing-dot IPv4 forms are refused; the dotted-decimal
        form is signed.
        """
        for raw in [
            "http://2130706433/",
            "http://0177.0.0.1/",
            "http://0x7f.0.0.1/",
            "http://0x7F.0x0.0x0.0x1/",
            "http://0x7f000001/",
            "http://017700000001/",
            "http://127.1/",
            "http://127.0.1/",
            "http://127.0.0.1./",
            "http://127.0.0.01/",
            "http://%31%32%37.0.0.1/",
            "http://\uff11\uff12\uff17.0.0.1/",
            "https://3232235521:443/",
        ]:
            self.assertRaises(TargetRefused, normalize_target, raw)
        self.assertEqual(normalize_target("http://127.0.0.1/"), "http://127.0.0.1/")
        self.assertEqual(normalize_target("https://10.1.2.3:8443/a"), "https://10.1.2.3:8443/a")

    def test_invalidIPv4(self) -> None:
        """
        Addresses out of range, with five parts, or an invalid last numeric label are refused.
        """
        for raw in ["http://256.0.0.1/", "http://1.2.3.4.5/", "http://999.1.1.1/", "http://a.1/"]:
            self.assertRaises(TargetRefused, normalize_target, raw)

    def test_emptyHost(self) -> None:
        """
        A missing or empty host, or a host with an empty label, is refused.
        """
        for raw in [
            "http://",
            "https://",
            "http:///",
            "http://:80/",
            "https://:443/",
            "http://?x=1",
            "http://#frag",
            "http://./",
            "http://../",
            "http://.example/",
            "http://a..example/",
            "http://example..com/",
            "http://%2E/",
            "http://a%2E%2Eb/",
            "http://\u3002example.com/",
        ]:
            self.assertRaises(TargetRefused, normalize_target, raw)

    def test_labelLength(self) -> None:
        """
        A label of 63 characters is signed, one of 64 is refused, also when it only grows over
        63 as punycode.
        """
        self.assertEqual(normalize_target(f"https://{'a' * 63}.com/"), f"https://{'a' * 63}.com/")
        self.assertRaises(TargetRefused, normalize_target, f"https://{'a' * 64}.com/")
        self.assertRaises(TargetRefused, normalize_target, f"https://b.{'a' * 64}/")
        self.assertRaises(TargetRefused, normalize_target, f"https://{'é' * 60}.com/")

    def test_hostLength(self) -> None:
        """
        A host of 253 characters is signed, one of 254 or more is refused.
        """
        label = "a" * 63
        host253 = f"{label}.{label}.{label}.{'b' * 61}"
        self.assertEqual(len(host253), 253)
        self.assertEqual(normalize_target(f"https://{host253}/"), f"https://{host253}/")
        host254 = f"{label}.{label}.{label}.{'b' * 62}"
        self.assertRaises(TargetRefused, normalize_target, f"https://{host254}/")
        self.assertRaises(TargetRefused, normalize_target, f"https://{'a.' * 200}com/")


class InvisibleCharacterTests(SynchronousTestCase):
    """
    Characters that can hide what a link says are refused anywhere in the URL.
    """

    def test_refused(self) -> None:
        """
        Bidi controls, zero-width characters, BOM, non-ASCII spaces and soft hyphens are refused
        in the host, path, query and fragment.
        """
        invisible = [
            "\u202e",  # RIGHT-TO-LEFT OVERRIDE
            "\u202d",
            "\u2066",
            "\u200e",
            "\u200f",
            "\u200b",  # ZERO WIDTH SPACE
            "\u200c",
            "\u200d",
            "\u2060",
            "\ufeff",
            "\u00a0",
            "\u2028",
            "\u3000",
            "\u00ad",
            "\ue000",  # private use
        ]
        for character in invisible:
            for template in [
                "https://exa{}mple.com/",
                "https://example.com/{}",
                "https://example.com/?q={}",
                "https://example.com/#{}",
                "https://example.com/{}gpj.exe",
            ]:
                raw = template.format(character)
                self.assertRaises(TargetRefused, normalize_target, raw)


class LengthTests(SynchronousTestCase):
    """
    URLs that cannot fit in a tracked link are refused.
    """

    def test_overLimit(self) -> None:
        """
        A URL of 2,000 characters is accepted, one of 2,001 is refused, and so is a short IRI
        whose URI form is over the limit.
        """
        prefix = "https://example.com/"
        exact = prefix + "a" * (MAX_TARGET_LENGTH - len(prefix))
        self.assertEqual(normalize_target(exact), exact)
        self.assertRaises(TargetRefused, normalize_target, exact + "a")
        self.assertRaises(TargetRefused, normalize_target, prefix + "a" * 100_000)
        iri = prefix + "é" * 400  # 420 characters, 2,420 once percent-encoded
        self.assertRaises(TargetRefused, normalize_target, iri)


class KeptAsWrittenTests(SynchronousTestCase):
    """
    Normal URLs keep their path, query, fragment and escapes byte for byte.
    """

    def test_keptExactly(self) -> None:
        """
        Percent-escapes (in any case, even invalid ones), query separators and fragments are
        signed exactly as written.
        """
        for raw in [
            "https://example.com/a%2Fb%2f?q=%41&x=y+z#frag%20ment",
            "https://example.com/%7e~?%zz#%",
            "https://example.com/path;params?a=1&a=2&b=%26%3D#section-2.1",
            "https://example.com/?#",
            "https://example.com/#a#b?c",
            "https://example.com/a%252F?redirect=https%3A%2F%2Fother.example%2F",
            "http://example.com:8080/x?y=z#",
            "https://example.com/!$&'()*+,;=:@-._~",
        ]:
            self.assertEqual(normalize_target(raw), raw)

    def test_iriBecomesUri(self) -> None:
        """
        Non-ASCII path, query and fragment characters are percent-encoded as UTF-8.
        """
        self.assertEqual(
            normalize_target("https://example.com/é?é#é"),
            "https://example.com/%C3%A9?%C3%A9#%C3%A9",
        )

    def test_dotSegmentsResolved(self) -> None:
        """
        Dot segments and path backslashes are resolved as a browser would.
        """
        self.assertEqual(normalize_target("http://example.com/./a/../b"), "http://example.com/b")
        self.assertEqual(normalize_target("http://example.com/a\\b"), "http://example.com/a/b")


class WPTCorpusTests(SynchronousTestCase):
    """
    The Web Platform Tests URL corpus: the issuer signs only what a browser would open, exactly
    as a browser would open it.
    """

    def test_corpus(self) -> None:
        """
        Every WPT input is either refused, or signed as what ada-url makes of it without a
        base, which is the WPT expected href for http(s) entries; the signed link verifies to
        that target. Inputs that do not parse, or are not http(s), are refused.
        """
        issued = refused = 0
        for entry in _load_wpt():
            raw = entry["input"]
            alone = _ada_href(raw)
            try:
                target = normalize_target(raw)
            except TargetRefused:
                refused += 1
                continue
            issued += 1
            self.assertTrue(_is_safe_location(target), (raw, target))
            self.assertTrue(raw[:8].lower().startswith(("http://", "https://")), raw)
            self.assertIsNotNone(alone, raw)
            self.assertIn(ada_url.URL(target).protocol, ("http:", "https:"), raw)
            self.assertEqual(ada_url.URL(target).href, alone, raw)
            if "failure" not in entry and entry["href"].startswith(("http:", "https:")):
                self.assertEqual(target, entry["href"], raw)
            link = sign(raw, _KEY, "wpt", Part.HTML, 1, base=_BASE)
            verified = verify(link[len(_BASE) :], {_KEY.key_id: _KEY})
            self.assertIsInstance(verified, TrackedLink, raw)
            assert isinstance(verified, TrackedLink)
            self.assertEqual(verified.target, target, raw)
            self.assertEqual(_ada_href(str(verified.target)), alone, raw)
        self.assertGreater(issued, 50, f"issued {issued}, refused {refused}")
        self.assertGreater(refused, 50, f"issued {issued}, refused {refused}")

    def test_unparseableAndOtherSchemesRefused(self) -> None:
        """
        Every WPT input that ada-url cannot parse without a base, or whose scheme is not
        http(s), is refused.
        """
        checked = 0
        for entry in _load_wpt():
            raw = entry["input"]
            try:
                protocol = ada_url.URL(raw).protocol
            except ValueError:
                protocol = None
            if protocol in ("http:", "https:"):
                continue
            checked += 1
            self.assertRaises(TargetRefused, normalize_target, raw)
        self.assertGreater(checked, 50)

    def test_browserFailuresRefused(self) -> None:
        """
        Every absolute http(s) WPT input that a conforming browser fails to parse is refused
        (for such an input the base does not matter): the issuer never signs a link that a
        browser would not open.
        """
        signed: list[tuple[str, str]] = []
        checked = 0
        for entry in _load_wpt():
            raw = entry["input"]
            if "failure" not in entry or not raw[:8].lower().startswith(("http://", "https://")):
                continue
            checked += 1
            with contextlib.suppress(TargetRefused):
                signed.append((raw, normalize_target(raw)))
        self.assertGreater(checked, 20)
        self.assertEqual(signed, [])


# Characters URL inputs are made of: ASCII, the tricky ones, and a few non-ASCII kinds.
_URLISH = st.sampled_from(
    [
        *string.printable,
        *["é", "ß", "\u0430", "\u4f8b", "\uff0e", "\u3002", "\uff05", "\u202e", "\u200b"],
        *["\ufffd", "%", "%2F", "%2e", "%00", "%0d%0a", "%c3%a9", "%zz", "@", "\\", "[", "]"],
        *["::", "xn--"],
    ]
)
_URLISH_TEXT = st.lists(_URLISH, max_size=40).map("".join)
_ANY_TARGET = st.one_of(
    st.text(max_size=80),
    st.builds(
        "".join,
        st.tuples(
            st.sampled_from(["http://", "https://", "HTTP://", "hTtPs://", "http:", "//"]),
            _URLISH_TEXT,
        ),
    ),
    st.builds(
        "{}://{}{}".format,
        st.sampled_from(["http", "https"]),
        st.from_regex(r"[a-z0-9.-]{1,20}", fullmatch=True),
        _URLISH_TEXT,
    ),
)


class PropertyTests(SynchronousTestCase):
    """
    Properties of normalize_target over arbitrary text.
    """

    @_SETTINGS
    @given(_ANY_TARGET)
    def test_refusedOrSafeAndIdempotent(self, raw: str) -> None:
        """
        For any text, normalize_target either refuses it or returns printable ASCII without
        space that starts with http:// or https://, that a WHATWG parser leaves unchanged, and
        that normalize_target itself leaves unchanged.
        """
        try:
            target = normalize_target(raw)
        except TargetRefused:
            return
        self.assertTrue(_is_safe_location(target), target)
        self.assertTrue(target.startswith(("http://", "https://")), target)
        self.assertLessEqual(len(target), MAX_TARGET_LENGTH)
        self.assertEqual(_ada_href(target), target)
        self.assertEqual(_ada_href(raw), target)
        self.assertEqual(normalize_target(target), target)


def _outcome(function: Any, raw: str) -> str | TargetRefused:
    """
    What C{function(raw)} returns, or the L{TargetRefused} it raises.
    """
    try:
        return str(function(raw))
    except TargetRefused as refusal:
        return refusal


# URLs near the canonical form: mostly in it, or in it but for one piece that the parser would
# change, refuse or check (one_of repeats a choice to weight it).
_SAFE_HOST = st.from_regex(
    r"([a-z0-9]{1,8}(-[a-z0-9]{1,4})?\.){0,3}[a-z][a-z0-9]{0,6}", fullmatch=True
)
_ODD_LABEL = st.sampled_from(
    ["", "A", "1", "0x1", "xn--", "xn--ls8h", "xn--0x0c", "a--b", "-a", "a-", "é", "_", "%41"]
)
_ODD_HOST = st.lists(st.one_of(_SAFE_HOST, _ODD_LABEL), min_size=1, max_size=4).map(".".join)
_SEGMENT = st.from_regex(
    r"[A-Za-z0-9_~!$&'()*+,;=:@%-][A-Za-z0-9._~!$&'()*+,;=:@%-]{0,8}|", fullmatch=True
)
_SAFE_REST = st.builds(
    "{}{}{}".format,
    st.lists(_SEGMENT, min_size=1, max_size=4).map(lambda segments: "/" + "/".join(segments)),
    st.one_of(
        st.just(""), st.from_regex(r"\?[A-Za-z0-9._~!$&()*+,;=:@%/?-]{0,12}", fullmatch=True)
    ),
    st.one_of(
        st.just(""), st.from_regex(r"#[A-Za-z0-9._~!$&'()*+,;=:@%/?#-]{0,8}", fullmatch=True)
    ),
)
_ODD_PIECE = st.sampled_from(
    [
        *["^", "`", "{", "}", "|", "[", "]", "\\", '"', "<", ">", " ", "\t", "\x7f", "é", "'"],
        *["/.", "/..", "/./", "/../", "/%2e", "/%2E", "/.%2e/", "?", "#", "//", "%zz", "%2e"],
        *["\u200b", "\u202e", "\uff0e", ":", "@", ""],
    ]
)
_ODD_REST = st.builds(
    lambda rest, piece, at: rest[:at] + piece + rest[at:],
    _SAFE_REST,
    _ODD_PIECE,
    st.integers(0, 40),
)
_NEAR_CANONICAL = st.builds(
    "{}://{}{}{}".format,
    st.sampled_from(["http", "https", "http", "https", "HTTP", "Https", "ftp"]),
    st.one_of(_SAFE_HOST, _SAFE_HOST, _SAFE_HOST, _ODD_HOST),
    st.sampled_from(["", "", "", "", "", "", ":", ":80", ":443", ":8080", "@a.com", ":x"]),
    st.one_of(_SAFE_REST, _SAFE_REST, _ODD_REST, _ODD_REST, st.just("")),
)


_LONG_PREFIX = "https://e.com/x.y/"


class CanonicalFastPathTests(SynchronousTestCase):
    """
    L{normalize_target} returns a URL already in the parser's form without parsing it: the
    fast path and the parser must never disagree.
    """

    def assertAgrees(self, raw: str) -> None:
        """
        If C{raw} takes the fast path, the parser and every rule give C{raw} itself; either
        way L{normalize_target} gives what L{parse_target} gives.
        """
        if is_canonical(raw):
            self.assertEqual(_outcome(parse_target, raw), raw)
            self.assertEqual(_ada_href(raw), raw)
        expected = _outcome(parse_target, raw)
        actual = _outcome(normalize_target.__wrapped__, raw)
        if isinstance(expected, TargetRefused):
            self.assertIsInstance(actual, TargetRefused, raw)
            self.assertEqual(str(actual), str(expected), raw)
        else:
            self.assertEqual(actual, expected, raw)

    def test_commonLinks(self) -> None:
        """
        The links of a bulk send take the fast path; anything the parser would change does
        not.
        """
        for raw in [
            "https://example.com/",
            "http://example.com/a/b.html",
            "https://shop.example.co.uk/products/5?utm_source=email&utm_medium=news&pos=5",
            "https://example.com/a%2Fb?q=%41&x=y+z#frag%20ment",
            "https://example.com/!$&'()*+,;=:@-._~",
            "https://example.com/@user?to=a@b#c@d",
            "https://example.com/#a#b?c",
            "https://www.my-shop.example/a..b/x./y.z",
            _LONG_PREFIX + "a" * (MAX_TARGET_LENGTH - len(_LONG_PREFIX)),
        ]:
            self.assertTrue(is_canonical(raw), raw)
            self.assertAgrees(raw)
        for raw in [
            "https://example.com",  # the parser adds the "/"
            "HTTPS://example.com/",
            "https://Example.com/",
            "https://example.com:443/",
            "https://example.com:8080/",  # a port: parsed (rare in email)
            "https://user@example.com/",
            "https://xn--pple-43d.com/",  # punycode: checked
            "https://a--b.com/",
            "https://-a.com/",
            "https://127.0.0.1/",
            "https://example.1/",
            "https://a.example./",
            "https://a..example/",
            "https://example.com/./a",
            "https://example.com/a/../b",
            "https://example.com/%2e%2E/b",
            "https://example.com/a^b",
            "https://example.com/a`b",
            "https://example.com/{x}",
            "https://example.com/?a='b'",
            "https://example.com/a\\b",
            "https://example.com/é",
            "https://example.com/a b",
            f"https://{'a' * 64}.com/",
            _LONG_PREFIX + "a" * (MAX_TARGET_LENGTH - len(_LONG_PREFIX) + 1),
        ]:
            self.assertFalse(is_canonical(raw), raw)
            self.assertAgrees(raw)

    def test_corpus(self) -> None:
        """
        Over every WPT input and every href the corpus expects, the fast path and the parser
        agree; enough of them take the fast path for this to mean something.
        """
        fast = 0
        for entry in _load_wpt():
            for raw in [entry["input"], entry.get("href"), _ada_href(entry["input"])]:
                if isinstance(raw, str):
                    fast += is_canonical(raw)
                    self.assertAgrees(raw)
        self.assertGreater(fast, 50)

    @_SETTINGS
    @given(_NEAR_CANONICAL)
    def test_nearCanonical(self, raw: str) -> None:
        """
        Over URLs in the canonical form or one piece away from it, the fast path and the
        parser agree.
        """
        self.assertAgrees(raw)

    @_SETTINGS
    @given(_ANY_TARGET)
    def test_arbitrary(self, raw: str) -> None:
        """
        Over arbitrary text and URL-like text, the fast path and the parser agree.
        """
        self.assertAgrees(raw)

    @_SETTINGS
    @given(_NEAR_CANONICAL)
    def test_parsedAreCanonical(self, raw: str) -> None:
        """
        What the parser returns, given again, is returned as it is, by either path.
        """
        target = _outcome(parse_target, raw)
        if isinstance(target, str):
            self.assertAgrees(target)
            self.assertEqual(normalize_target(target), target)
