"""
Tests for L{linkrouter.codec}: signing destinations into tracked links and verifying them back.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import string
import time
from collections.abc import Iterator, Mapping
from urllib.parse import quote, unquote_to_bytes

from hypothesis import assume, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from linkrouter import codec
from linkrouter.codec import (
    MAX_ISSUED_AT,
    MAX_LINK_LENGTH,
    TAG_BYTES,
    ClickSigner,
    Kind,
    Part,
    Refusal,
    TargetRefused,
    TrackedLink,
    canonical_message,
    sign,
    verify,
)
from linkrouter.keys import Key, KeyState
from linkrouter.target import normalize_target

_SETTINGS = settings(max_examples=300, deadline=None)
_FEW = settings(max_examples=100, deadline=None)

BASE = "https://click.example"
KEY_A = Key("kA", bytes(range(32)), KeyState.ACTIVE)
KEY_B = Key("kB", bytes(range(1, 33)), KeyState.VERIFY)
KEY_TWIN = Key("twin", KEY_A.secret, KeyState.VERIFY)  # key A's secret under another id
KEY_GONE = Key("gone", b"g" * 40, KeyState.ACTIVE)  # signs links; KEYS holds it revoked
KEYS: dict[str, Key] = {
    "kA": KEY_A,
    "kB": KEY_B,
    "twin": KEY_TWIN,
    "gone": Key("gone", KEY_GONE.secret, KeyState.REVOKED),
}

_B64URL = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
_UNRESERVED = string.ascii_letters + string.digits + "-._~"
_SUB_DELIMS = "!$&'()*+,;=:@"  # sub-delims and ':' '@': pchar, allowed raw in a segment
_PCHAR = set(_UNRESERVED + _SUB_DELIMS + "%")
_PREFIX = {
    (Kind.CLICK, Part.HTML, "http"): "1",
    (Kind.CLICK, Part.HTML, "https"): "1s",
    (Kind.CLICK, Part.TEXT, "http"): "1t",
    (Kind.CLICK, Part.TEXT, "https"): "1st",
    (Kind.OPEN, Part.HTML, ""): "1o",
}


def path_of(link: str) -> str:
    """
    The path of a link issued under L{BASE}.
    """
    if not link.startswith(BASE + "/"):
        raise AssertionError(f"{link!r} is not under {BASE}")
    return link[len(BASE) :]


def is_safe_location(text: str) -> bool:
    """
    Whether C{text} is only printable ASCII without space: nothing that can split a header.
    """
    return all(0x21 <= ord(c) <= 0x7E for c in text)


def encode_issued(seconds: int) -> str:
    """
    The issue time as base-64 digits in the base64url alphabet, without leading zero digits.
    """
    digits = ""
    while seconds:
        seconds, digit = divmod(seconds, 64)
        digits = _B64URL[digit] + digits
    return digits or "A"


def reference_tag(secret: bytes, message: bytes) -> str:
    """
    The tag computed with the standard library: HMAC-SHA256, 96 bits, base64url, no padding.
    """
    mac = hmac.new(secret, message, hashlib.sha256).digest()[:TAG_BYTES]
    return base64.urlsafe_b64encode(mac).decode("ascii")


def reference_message(
    kind: Kind, part: Part, key_id: str, link_id: str, issued_at: int, target: str
) -> bytes:
    """
    The signed string as docs/link-format.rst writes it: the domain constant, then each field
    as u16(len) and its ASCII bytes.
    """
    message = b"linkrouter tracked link v1\x00"
    for text in (kind.value, part.value, key_id, link_id, str(issued_at), target):
        data = text.encode("ascii")
        message += len(data).to_bytes(2, "big") + data
    return message


def forge_click(
    prefix: str,
    readable: str,
    signed_target: str,
    key: Key = KEY_A,
    link_id: str = "L1",
    issued_at: int = 1000,
) -> str:
    """
    A click path with C{readable} as its readable segment and a tag that is correct for
    C{signed_target}: what an attacker who could choose the signed string would send.
    """
    kind, part, _ = next(k for k, v in _PREFIX.items() if v == prefix)
    message = canonical_message(kind, part, key.key_id, link_id, issued_at, signed_target)
    tag = reference_tag(key.secret, message)
    return f"/{prefix}/{readable}/{key.key_id}/{link_id}/{encode_issued(issued_at)}/{tag}"


def segments(path: str) -> list[str]:
    """
    The path split at '/', without the empty piece before the leading '/'.
    """
    return path.split("/")[1:]


def with_segment(path: str, index: int, value: str) -> str:
    """
    C{path} with its segment C{index} (from 0, after the leading '/') replaced by C{value}.
    """
    pieces = segments(path)
    pieces[index] = value
    return "/" + "/".join(pieces)


class CountingMapping(Mapping[str, Key]):
    """
    A key mapping that counts how it is consulted.
    """

    def __init__(self, keys: dict[str, Key]) -> None:
        """
        Wrap C{keys}, with no lookup counted yet.
        """
        self._keys = keys
        self.lookups = 0
        self.scans = 0

    def __getitem__(self, key_id: str) -> Key:
        self.lookups += 1
        return self._keys[key_id]

    def get(self, key_id: str, default: Key | None = None) -> Key | None:  # type: ignore[override]
        """
        One counted lookup, without going through __getitem__.
        """
        self.lookups += 1
        return self._keys.get(key_id, default)

    def __contains__(self, key_id: object) -> bool:
        self.lookups += 1
        return key_id in self._keys

    def __iter__(self) -> Iterator[str]:
        self.scans += 1
        return iter(self._keys)

    def __len__(self) -> int:
        self.scans += 1
        return len(self._keys)


# Strategies.

_KEY_IDS = st.from_regex(r"[A-Za-z0-9_-]{1,16}", fullmatch=True)
_LINK_IDS = st.from_regex(r"[A-Za-z0-9_-]{1,32}", fullmatch=True)
_ISSUED = st.integers(0, MAX_ISSUED_AT)
_SECRETS = st.binary(min_size=32, max_size=80)

_LABEL_CHARS = list(string.ascii_lowercase + string.digits) + list("éüßñçøåæ日本語中文абвгдαβγÉÜ-")
_LABELS = st.text(alphabet=st.sampled_from(_LABEL_CHARS), min_size=1, max_size=12)
_DOMAINS = st.builds(
    "{}.{}".format,
    st.lists(_LABELS, min_size=1, max_size=3).map(".".join),
    st.sampled_from(["com", "example", "org", "日本", "рф", "Com", "co.uk"]),
)
_HOSTS = st.one_of(
    _DOMAINS,
    _DOMAINS.map(str.upper),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda address: f"[{address}]"),
    st.sampled_from(["localhost", "example.com", "xn--pple-43d.com", "faß.de"]),
)
_ESCAPES = ["%2F", "%2f", "%25", "%7E", "%41", "%20", "%zz", "%", "%C3%A9", "%00", "%252F"]
_PATH_CHARS = list(string.ascii_letters + string.digits + "-._~!$&'()*+,;=:@/%\\[]{}|^`\"<>")
_PATH_CHARS += list("é€日ü😀")
_PATHS = st.lists(st.sampled_from(_PATH_CHARS + _ESCAPES), max_size=20).map("".join)
_QUERY_CHARS = st.sampled_from(_PATH_CHARS + _ESCAPES + ["?", "&", "=", "+", "&a=b", "'"])
_QUERIES = st.lists(_QUERY_CHARS, max_size=20).map("".join)
_FRAGMENTS = st.lists(st.sampled_from([*_PATH_CHARS, *_ESCAPES, "#", "?"]), max_size=12).map(
    "".join
)


@st.composite
def raw_urls(draw: st.DrawFn) -> str:
    """
    An http(s) URL as it might be written in an email: unicode hosts and paths, ports, IPv4
    and IPv6 hosts, queries with & = + %, fragments.
    """
    scheme = draw(st.sampled_from(["http", "https", "HTTPS", "Http"]))
    url = f"{scheme}://{draw(_HOSTS)}"
    port = draw(st.none() | st.integers(0, 65535))
    if port is not None:
        url += f":{port}"
    if draw(st.booleans()):
        url += "/" + draw(_PATHS)
    if draw(st.booleans()):
        url += "?" + draw(_QUERIES)
    if draw(st.booleans()):
        url += "#" + draw(_FRAGMENTS)
    return url


@st.composite
def click_inputs(draw: st.DrawFn) -> tuple[str, str, Key, str, Part, int]:
    """
    (raw URL, normalized target, key, LinkID, part, issue time) for a valid click link.
    """
    raw = draw(raw_urls())
    try:
        target = normalize_target(raw)
    except TargetRefused:
        assume(False)
        raise  # not reached: assume(False) stops the example
    key = Key(draw(_KEY_IDS), draw(_SECRETS), KeyState.ACTIVE)
    return raw, target, key, draw(_LINK_IDS), draw(st.sampled_from(Part)), draw(_ISSUED)


def _fixed_links() -> list[tuple[str, TrackedLink]]:
    """
    A few links of every shape, with what they verify to, for exhaustive tampering tests.
    """
    cases = [
        ("https://例え.テスト/パス?q=a&b=c+d%20e#frag~", Part.HTML, "L1", 1_700_000_000),
        ("http://[2001:db8::1]:8080/a/b;c=d?x=%2F#y", Part.TEXT, "x_Y-9", 0),
        ("https://example.com/%7E/~user/?a=b&c=%25#%23", Part.TEXT, "a" * 32, MAX_ISSUED_AT),
        ("http://127.0.0.1/", Part.HTML, "Z", 64),
    ]
    links = []
    for raw, part, link_id, issued_at in cases:
        link = sign(raw, KEY_A, link_id, part, issued_at, base=BASE)
        expected = TrackedLink(Kind.CLICK, part, normalize_target(raw), "kA", link_id, issued_at)
        links.append((path_of(link), expected))
    pixel = sign(None, KEY_A, "pixel", Part.HTML, 12345, base=BASE, kind=Kind.OPEN)
    links.append((path_of(pixel), TrackedLink(Kind.OPEN, Part.HTML, None, "kA", "pixel", 12345)))
    return links


FIXED_LINKS = _fixed_links()

# Replacement characters: all of ASCII (controls included) and non-ASCII look-alikes.
REPLACEMENTS = [chr(c) for c in range(0x80)] + [
    "\x80",
    "\xa0",
    "é",
    "\u0130",
    "\u0430",
    "\u202e",
    "\u200b",
    "\ufeff",
    "\uff05",
    "\uff0f",
    "\u2215",
    "\U0001f600",
    "\udcff",
]


def equivalent_changes(path: str) -> set[tuple[int, str]]:
    """
    The single-character changes of a signed path that keep its meaning: the case of a hex
    letter in a percent-escape.
    """
    changes = set()
    for match in re.finditer(r"%[0-9A-Fa-f]{2}", path):
        for position in (match.start() + 1, match.start() + 2):
            if path[position].isalpha():
                changes.add((position, path[position].swapcase()))
    return changes


class RoundTripTests(SynchronousTestCase):
    """
    Every link sign issues verifies back to exactly what was signed.
    """

    @_SETTINGS
    @given(click_inputs(), st.sampled_from([KeyState.ACTIVE, KeyState.VERIFY]))
    def test_clickRoundTrip(
        self, inputs: tuple[str, str, Key, str, Part, int], state: KeyState
    ) -> None:
        """
        For any valid http(s) URL and fields, verify(path_of(sign(...))) is a TrackedLink
        equal to the inputs with target == normalize_target(url), under the key as active or
        retired; the link has the documented shape and tag.
        """
        raw, target, key, link_id, part, issued_at = inputs
        link = sign(raw, key, link_id, part, issued_at, base=BASE)
        self.assertLessEqual(len(link), MAX_LINK_LENGTH)
        path = path_of(link)
        keys = {key.key_id: Key(key.key_id, key.secret, state)}
        self.assertEqual(
            verify(path, keys),
            TrackedLink(Kind.CLICK, part, target, key.key_id, link_id, issued_at),
        )
        scheme, rest = target.split("://", 1)
        prefix, readable, key_id, link_field, issued, tag = segments(path)
        self.assertEqual(prefix, _PREFIX[Kind.CLICK, part, scheme])
        self.assertEqual(readable, quote(rest, safe=""))
        self.assertEqual((key_id, link_field), (key.key_id, link_id))
        self.assertEqual(issued, encode_issued(issued_at))
        message = canonical_message(Kind.CLICK, part, key.key_id, link_id, issued_at, target)
        self.assertEqual(tag, reference_tag(key.secret, message))

    @_FEW
    @given(_KEY_IDS, _SECRETS, _LINK_IDS, _ISSUED)
    def test_openRoundTrip(self, key_id: str, secret: bytes, link_id: str, issued: int) -> None:
        """
        For any fields, an open pixel verifies to an OPEN TrackedLink with no target.
        """
        key = Key(key_id, secret, KeyState.ACTIVE)
        link = sign(None, key, link_id, Part.HTML, issued, base=BASE, kind=Kind.OPEN)
        path = path_of(link)
        self.assertEqual(
            path,
            f"/1o/{key_id}/{link_id}/{encode_issued(issued)}/"
            + reference_tag(
                secret, canonical_message(Kind.OPEN, Part.HTML, key_id, link_id, issued, "")
            ),
        )
        self.assertEqual(
            verify(path, {key_id: key}),
            TrackedLink(Kind.OPEN, Part.HTML, None, key_id, link_id, issued),
        )

    def test_loopbackBases(self) -> None:
        """
        Links issued under an http loopback base verify like any other.
        """
        for base in ["http://127.0.0.1:8080", "http://localhost", "https://click.example/"]:
            link = sign("https://example.com/x", KEY_A, "L", Part.HTML, 5, base=base)
            origin = base.rstrip("/")
            self.assertTrue(link.startswith(origin + "/1s/"), link)
            result = verify(link[len(origin) :], KEYS)
            assert isinstance(result, TrackedLink)
            self.assertEqual(result.target, "https://example.com/x")


class TamperingTests(SynchronousTestCase):
    """
    Any change to a link that changes its meaning is refused.
    """

    def assertRefused(self, path: str, keys: Mapping[str, Key] = KEYS) -> Refusal:
        """
        verify(path) is a Refusal, never a TrackedLink; return it.
        """
        result = verify(path, keys)
        self.assertIsInstance(result, Refusal, repr(path))
        assert isinstance(result, Refusal)
        return result

    def test_fixedLinksVerify(self) -> None:
        """
        The fixed links used below verify as issued (so their refusals below are caused by
        the change alone).
        """
        for path, expected in FIXED_LINKS:
            self.assertEqual(verify(path, KEYS), expected)

    def test_everySingleCharacterChange(self) -> None:
        """
        Every single-character change at every position, to any ASCII character (controls
        included) or a non-ASCII one, is refused, except changing the case of a hex letter in
        a percent-escape, which verifies to the same link.
        """
        for path, expected in FIXED_LINKS:
            same = equivalent_changes(path)
            for position, original in enumerate(path):
                for replacement in REPLACEMENTS:
                    if replacement == original:
                        continue
                    changed = path[:position] + replacement + path[position + 1 :]
                    if (position, replacement) in same:
                        self.assertEqual(verify(changed, KEYS), expected)
                    else:
                        self.assertRefused(changed)

    def test_everyDeletion(self) -> None:
        """
        Deleting any one character of a link is refused.
        """
        for path, _ in FIXED_LINKS:
            for position in range(len(path)):
                self.assertRefused(path[:position] + path[position + 1 :])

    def test_everyInsertion(self) -> None:
        """
        Inserting any one character anywhere in a link is refused.
        """
        for path, _ in FIXED_LINKS:
            for position in range(len(path) + 1):
                for inserted in REPLACEMENTS:
                    self.assertRefused(path[:position] + inserted + path[position:])

    @_SETTINGS
    @given(click_inputs(), st.data())
    def test_randomSingleCharacterChange(
        self, inputs: tuple[str, str, Key, str, Part, int], data: st.DataObject
    ) -> None:
        """
        For any link, a change of one character to another (other than a hex letter's case in
        an escape) is refused.
        """
        raw, _, key, link_id, part, issued_at = inputs
        path = path_of(sign(raw, key, link_id, part, issued_at, base=BASE))
        position = data.draw(st.integers(0, len(path) - 1))
        replacement = data.draw(st.sampled_from(REPLACEMENTS))
        assume(replacement != path[position])
        assume((position, replacement) not in equivalent_changes(path))
        changed = path[:position] + replacement + path[position + 1 :]
        self.assertRefused(changed, {key.key_id: key})

    def test_everyTagBitFlip(self) -> None:
        """
        Flipping any one of the 96 bits of the tag is refused as a bad tag.
        """
        for path, _ in FIXED_LINKS:
            tag = segments(path)[-1]
            raw = base64.urlsafe_b64decode(tag)
            self.assertEqual(len(raw), TAG_BYTES)
            for bit in range(TAG_BYTES * 8):
                flipped = bytearray(raw)
                flipped[bit // 8] ^= 1 << (bit % 8)
                forged = base64.urlsafe_b64encode(bytes(flipped)).decode("ascii")
                self.assertEqual(len(forged), 16)
                changed = path[: -len(tag)] + forged
                self.assertIs(self.assertRefused(changed), Refusal.BAD_TAG)

    def test_truncatedAndExtendedTags(self) -> None:
        """
        A tag cut short by any number of characters, or extended, or doubled, is refused.
        """
        for path, _ in FIXED_LINKS:
            tag = segments(path)[-1]
            stem = path[: -len(tag)]
            for length in range(len(tag)):
                self.assertRefused(stem + tag[:length])
            for extra in ["A", "AA", "=", "==", tag, "0" * 100]:
                self.assertRefused(stem + tag + extra)
            full = base64.urlsafe_b64encode(hmac.new(KEY_A.secret, b"", "sha256").digest())
            self.assertRefused(stem + full.decode().rstrip("="))

    def test_tagFromAnotherLink(self) -> None:
        """
        The tag of one link does not verify another: the target, LinkID, time, part or kind
        differs.
        """
        tags = [segments(path)[-1] for path, _ in FIXED_LINKS]
        for path, _ in FIXED_LINKS:
            own = segments(path)[-1]
            for tag in tags:
                if tag != own:
                    self.assertIs(self.assertRefused(path[: -len(own)] + tag), Refusal.BAD_TAG)
        one = path_of(sign("https://example.com/a", KEY_A, "L1", Part.HTML, 7, base=BASE))
        two = path_of(sign("https://example.com/a", KEY_A, "L2", Part.HTML, 7, base=BASE))
        self.assertIs(self.assertRefused(with_segment(one, 5, segments(two)[5])), Refusal.BAD_TAG)

    def test_otherKeyId(self) -> None:
        """
        A valid tag for key A presented under key B's id is refused, even when B has the same
        secret as A.
        """
        for path, _ in FIXED_LINKS:
            key_index = len(segments(path)) - 4
            for other in ["kB", "twin"]:
                changed = with_segment(path, key_index, other)
                self.assertIs(self.assertRefused(changed), Refusal.BAD_TAG)

    def test_unknownKey(self) -> None:
        """
        A link naming a key that is not in the keyring is refused as an unknown key, even with
        the tag its key would give.
        """
        stranger = Key("who", b"s" * 32, KeyState.ACTIVE)
        path = path_of(sign("https://example.com/", stranger, "L", Part.HTML, 1, base=BASE))
        self.assertIs(self.assertRefused(path), Refusal.UNKNOWN_KEY)
        for path, _ in FIXED_LINKS:
            key_index = len(segments(path)) - 4
            for key_id in ["kC", "ka", "KA", "kA-", "k", "kAkAkAkAkAkAkAkA"]:
                changed = with_segment(path, key_index, key_id)
                self.assertIs(self.assertRefused(changed), Refusal.UNKNOWN_KEY)
        self.assertIs(self.assertRefused(FIXED_LINKS[0][0], {}), Refusal.UNKNOWN_KEY)

    def test_revokedKey(self) -> None:
        """
        A link signed by a key that has since been revoked is refused as such; one with a
        revoked key's id and a bad tag is refused too.
        """
        for kind, target, part in [
            (Kind.CLICK, "https://example.com/", Part.HTML),
            (Kind.CLICK, "http://example.com/x", Part.TEXT),
            (Kind.OPEN, None, Part.HTML),
        ]:
            link = sign(target, KEY_GONE, "L", part, 99, base=BASE, kind=kind)
            path = path_of(link)
            active = {"gone": KEY_GONE}
            self.assertIsInstance(verify(path, active), TrackedLink)
            self.assertIs(self.assertRefused(path), Refusal.REVOKED_KEY)
            for path_a, _ in FIXED_LINKS:
                key_index = len(segments(path_a)) - 4
                self.assertRefused(with_segment(path_a, key_index, "gone"))

    def test_retiredKeyStillVerifies(self) -> None:
        """
        A link signed by a key that is now verify-only still verifies.
        """
        path = path_of(sign("https://example.com/", KEY_A, "L", Part.HTML, 1, base=BASE))
        retired = {"kA": Key("kA", KEY_A.secret, KeyState.VERIFY)}
        self.assertIsInstance(verify(path, retired), TrackedLink)


def _reencodings(decoded: str) -> st.SearchStrategy[str]:
    """
    Equivalent spellings of a readable segment whose decoding is C{decoded}: every character
    raw where a segment allows it, or escaped with upper- or lower-case hex in any mix.
    """

    def spellings(character: str) -> list[str]:
        """
        Every way a segment may write C{character}.
        """
        code = f"{ord(character):02X}"
        high, low = code[0], code[1]
        escapes = sorted({f"%{h}{lo}" for h in {high, high.lower()} for lo in {low, low.lower()}})
        if character in _UNRESERVED or character in _SUB_DELIMS:
            return [character, *escapes]
        return escapes

    return st.tuples(*[st.sampled_from(spellings(c)) for c in decoded]).map("".join)


class EquivalentEncodingTests(SynchronousTestCase):
    """
    An intermediary that re-encodes the readable segment equivalently does not break a link.
    """

    def setUp(self) -> None:
        """
        Sign a target with unreserved characters, sub-delims, escapes and a fragment.
        """
        self.target = "https://ex-ample.com/~A/a%2Fb/:@!$&'()*+,;=?q=1&r=%41#f/~"
        self.path = path_of(sign(self.target, KEY_A, "L", Part.HTML, 5, base=BASE))
        self.expected = verify(self.path, KEYS)
        self.assertIsInstance(self.expected, TrackedLink)

    def readable(self) -> str:
        """
        The readable segment of the link as issued.
        """
        return segments(self.path)[1]

    def replaced(self, readable: str) -> str:
        """
        The link's path with C{readable} as its readable segment.
        """
        return with_segment(self.path, 1, readable)

    def test_lowerCaseHex(self) -> None:
        """
        %2f for %2F (every escape in lower case) verifies to the same target.
        """
        self.assertIn("%2F", self.readable())
        lowered = re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), self.readable())
        self.assertNotEqual(lowered, self.readable())
        self.assertEqual(verify(self.replaced(lowered), KEYS), self.expected)
        self.assertEqual(
            verify(self.replaced(self.readable().replace("%2F", "%2f", 1)), KEYS), self.expected
        )

    def test_escapedUnreserved(self) -> None:
        """
        Escaping unreserved characters (%7E for ~, %41 for A, %2D for -, %2e for .) verifies
        to the same target.
        """
        readable = self.readable()
        for raw, escaped in [("~", "%7E"), ("A", "%41"), ("-", "%2D"), (".", "%2e"), ("e", "%65")]:
            tokens = re.findall(r"%[0-9A-F]{2}|.", readable)
            self.assertIn(raw, tokens)
            changed = self.replaced("".join(escaped if t == raw else t for t in tokens))
            self.assertEqual(verify(changed, KEYS), self.expected, escaped)

    def test_unescapedSubDelims(self) -> None:
        """
        Leaving sub-delims, ':' and '@' unescaped where the issuer escaped them verifies to
        the same target.
        """
        readable = self.readable()
        for character in _SUB_DELIMS:
            escaped = f"%{ord(character):02X}"
            self.assertIn(escaped, readable)
            changed = self.replaced(readable.replace(escaped, character))
            self.assertEqual(verify(changed, KEYS), self.expected, character)
        everything = readable
        for character in _SUB_DELIMS:
            everything = everything.replace(f"%{ord(character):02X}", character)
        self.assertEqual(verify(self.replaced(everything), KEYS), self.expected)

    def test_longestLinkFullyEscaped(self) -> None:
        """
        A link of the maximum length still verifies when every character of its readable
        segment is escaped, in upper- or lower-case hex.
        """
        prefix = "https://example.com/"
        size = MAX_LINK_LENGTH - len(sign(prefix, KEY_A, "L", Part.HTML, 1, base=BASE))
        link = sign(prefix + "a" * size, KEY_A, "L", Part.HTML, 1, base=BASE)
        self.assertEqual(len(link), MAX_LINK_LENGTH)
        path = path_of(link)
        expected = verify(path, KEYS)
        self.assertIsInstance(expected, TrackedLink)
        decoded = unquote_to_bytes(segments(path)[1]).decode("ascii")
        for hexes in ["%{:02X}", "%{:02x}"]:
            readable = "".join(hexes.format(ord(c)) for c in decoded)
            self.assertEqual(verify(with_segment(path, 1, readable), KEYS), expected)

    def test_rawSlashRefused(self) -> None:
        """
        A raw '/' for %2F is not equivalent: the readable target is one path segment.
        """
        readable = self.readable()
        self.assertRefusal(self.replaced(readable.replace("%2F", "/", 1)))
        self.assertRefusal(self.replaced(readable.replace("%2F", "/")))
        for character in '?#[] "<>\\^`{|}':
            escaped = f"%{ord(character):02X}"
            if escaped in readable:
                self.assertRefusal(self.replaced(readable.replace(escaped, character)))

    def assertRefusal(self, path: str) -> None:
        """
        verify(path) is a Refusal.
        """
        self.assertIsInstance(verify(path, KEYS), Refusal, path)

    @_SETTINGS
    @given(st.data())
    def test_anyEquivalentSpelling(self, data: st.DataObject) -> None:
        """
        Any mix of raw and escaped (upper- or lower-case) spellings of the readable segment
        verifies to the same target.
        """
        decoded = unquote_to_bytes(self.readable()).decode("ascii")
        readable = data.draw(_reencodings(decoded))
        self.assertEqual(verify(self.replaced(readable), KEYS), self.expected)

    @_FEW
    @given(click_inputs(), st.data())
    def test_anyLinkAnyEquivalentSpelling(
        self, inputs: tuple[str, str, Key, str, Part, int], data: st.DataObject
    ) -> None:
        """
        For any link, an equivalent re-spelling of its readable segment verifies the same.
        """
        raw, _, key, link_id, part, issued_at = inputs
        path = path_of(sign(raw, key, link_id, part, issued_at, base=BASE))
        keys = {key.key_id: key}
        readable = data.draw(_reencodings(unquote_to_bytes(segments(path)[1]).decode("ascii")))
        self.assertEqual(verify(with_segment(path, 1, readable), keys), verify(path, keys))


# Pieces of readable segments: pchar, characters a segment may not hold, and escapes.
_READABLE_PIECES = st.one_of(
    st.sampled_from(sorted(_PCHAR - {"%"})),
    st.sampled_from([*'/?# \t\r\n\x00\x7f"<>\\^`{|}[]', "é", "\u202e", "\u200b", "€"]),
    st.sampled_from(
        [
            *["%00", "%0d%0a", "%0D%0A", "%7f", "%7F", "%c3%a9", "%C3%A9", "%c0%af", "%C0%AE"],
            *["%e2%80%ae", "%ff", "%80", "%20", "%09", "%25", "%2F", "%252F", "%41", "%7e"],
            *["%zz", "%", "%4", "%g0", "%%", "%2"],
        ]
    ),
    st.integers(0, 255).map(lambda b: f"%{b:02x}"),
    st.integers(0, 255).map(lambda b: f"%{b:02X}"),
)
_READABLES = st.lists(_READABLE_PIECES, min_size=1, max_size=30).map("".join)
_VALID_READABLE = re.compile(r"(?:[A-Za-z0-9._~!$&'()*+,;=:@-]|%[0-9A-Fa-f]{2})+")


class DecodedTargetTests(SynchronousTestCase):
    """
    Whatever a path says, a verified target is printable ASCII without space.
    """

    @settings(max_examples=1000, deadline=None)
    @given(
        st.sampled_from(["1", "1s", "1t", "1st"]), _READABLES, _LINK_IDS, _ISSUED, st.booleans()
    )
    def test_arbitraryReadable(
        self, prefix: str, readable: str, link_id: str, issued: int, long: bool
    ) -> None:
        """
        For a click path with any readable segment and a tag that is correct for its naive
        byte-for-byte decoding, verify returns a TrackedLink exactly when the segment is valid
        pchar with valid escapes of printable ASCII, and then its target is that decoding;
        otherwise a Refusal. A TrackedLink's target never has a control, space or non-ASCII
        character. Long segments (over the 1,024 characters whose decoding is cached) are
        decoded alike.
        """
        if long:
            readable = "a" * 1100 + readable
        scheme = "https://" if "s" in prefix else "http://"
        naive = scheme + unquote_to_bytes(readable).decode("latin-1")
        path = forge_click(prefix, readable, naive, link_id=link_id, issued_at=issued)
        result = verify(path, KEYS)
        if isinstance(result, TrackedLink):
            self.assertTrue(is_safe_location(str(result.target)), result.target)
        decoded = unquote_to_bytes(readable)
        valid = _VALID_READABLE.fullmatch(readable) is not None and all(
            0x21 <= b <= 0x7E for b in decoded
        )
        if valid:
            part = Part.TEXT if "t" in prefix else Part.HTML
            self.assertEqual(result, TrackedLink(Kind.CLICK, part, naive, "kA", link_id, issued))
        else:
            self.assertIsInstance(result, Refusal)

    @settings(max_examples=1000, deadline=None)
    @given(
        st.one_of(
            st.text(),
            st.lists(
                st.one_of(
                    st.text(max_size=20),
                    st.sampled_from(["", "1", "1s", "1t", "1st", "1o", "kA", "gone", "A"]),
                    st.sampled_from([segments(p)[-1] for p, _ in FIXED_LINKS]),
                    _READABLES,
                ),
                max_size=9,
            ).map(lambda pieces: "/" + "/".join(pieces)),
        )
    )
    def test_fuzz(self, path: str) -> None:
        """
        verify of arbitrary text never raises: it returns a Refusal or a TrackedLink with a
        safe target.
        """
        result = verify(path, KEYS)
        self.assertIsInstance(result, (Refusal, TrackedLink))
        if isinstance(result, TrackedLink) and result.target is not None:
            self.assertTrue(is_safe_location(result.target))


class EncodingGameTests(SynchronousTestCase):
    """
    The encoding games of malicious-inputs.md are refused.
    """

    def setUp(self) -> None:
        """
        Sign a link to play with.
        """
        self.path = path_of(
            sign("https://example.com/a/b", KEY_A, "L1", Part.HTML, 1000, base=BASE)
        )

    def assertRefused(self, path: str) -> Refusal:
        """
        verify(path) is a Refusal, never a TrackedLink; return it.
        """
        result = verify(path, KEYS)
        self.assertIsInstance(result, Refusal, repr(path))
        assert isinstance(result, Refusal)
        return result

    def test_base64PaddingAndStandardAlphabet(self) -> None:
        """
        Fields in padded base64 or with the standard alphabet's '+' and '/' are refused, even
        when they decode to the right bytes.
        """
        # Find a link whose tag uses '-' or '_', so the standard alphabet differs.
        for number in range(1000):
            path = path_of(
                sign("https://e.example/", KEY_A, f"L{number}", Part.HTML, 1, base=BASE)
            )
            tag = segments(path)[-1]
            if "-" in tag or "_" in tag:
                break
        self.assertIsInstance(verify(path, KEYS), TrackedLink)
        standard = base64.b64encode(base64.urlsafe_b64decode(tag)).decode("ascii")
        self.assertNotEqual(standard, tag)
        self.assertRefused(path[: -len(tag)] + standard)
        self.assertRefused(path[: -len(tag)] + tag.replace("-", "+").replace("_", "%2F"))
        self.assertRefused(path + "=")
        self.assertRefused(path + "==")
        self.assertRefused(path[: -len(tag)] + tag[:-1] + "=")
        for index, padded in [(2, "kA="), (3, "L1=="), (4, "Po="), (4, "Po==")]:
            self.assertRefused(with_segment(self.path, index, padded))
        self.assertRefused(with_segment(self.path, 4, "+o"))
        self.assertRefused(with_segment(self.path, 3, "L+1"))

    def test_nonCanonicalIssueTime(self) -> None:
        """
        An issue time with leading zero digits ('A') is refused, though it decodes to the time
        the tag covers; so are over-long times.
        """
        issued = segments(self.path)[4]
        self.assertEqual(issued, encode_issued(1000))
        for spelling in ["A" + issued, "AA" + issued, ("A" * 8 + issued)[-8:]]:
            self.assertIs(
                self.assertRefused(with_segment(self.path, 4, spelling)), Refusal.MALFORMED
            )
        zero = path_of(sign("https://example.com/", KEY_A, "L", Part.HTML, 0, base=BASE))
        self.assertEqual(segments(zero)[4], "A")
        self.assertIsInstance(verify(zero, KEYS), TrackedLink)
        self.assertRefused(with_segment(zero, 4, "AA"))
        self.assertRefused(with_segment(zero, 4, ""))
        self.assertRefused(with_segment(self.path, 4, "B" + "A" * 8))

    def test_doubleEncodingDecodesOnce(self) -> None:
        """
        %252F decodes once, to the three characters %2F: it is not the link of the target with
        '/', and a link signed for the target with a literal %2F says so.
        """
        slash = path_of(sign("https://example.com/a/b", KEY_A, "L", Part.HTML, 1, base=BASE))
        escaped = path_of(sign("https://example.com/a%2Fb", KEY_A, "L", Part.HTML, 1, base=BASE))
        self.assertEqual(segments(slash)[1], "example.com%2Fa%2Fb")
        self.assertEqual(segments(escaped)[1], "example.com%2Fa%252Fb")
        result = verify(escaped, KEYS)
        assert isinstance(result, TrackedLink)
        self.assertEqual(result.target, "https://example.com/a%2Fb")
        self.assertIs(
            self.assertRefused(with_segment(slash, 1, segments(escaped)[1])), Refusal.BAD_TAG
        )
        self.assertIs(
            self.assertRefused(with_segment(escaped, 1, segments(slash)[1])), Refusal.BAD_TAG
        )
        # A tag for the twice-decoded target does not make the once-decoded link verify.
        forged = forge_click("1s", "example.com%2Fa%252Fb", "https://example.com/a/b")
        self.assertIs(self.assertRefused(forged), Refusal.BAD_TAG)

    def test_invalidEscapes(self) -> None:
        """
        Invalid escapes (%zz, a trailing %, %2 before the next segment) are refused, even with
        a tag for the text as written.
        """
        for readable in ["example.com%2F%zz", "example.com%2F%", "example.com%2", "%", "%%41"]:
            naive = "https://" + readable.replace("%2F", "/")
            self.assertIs(
                self.assertRefused(forge_click("1s", readable, naive)), Refusal.MALFORMED
            )
        for bad in ["%zz", "%", "%2", "%g1", "%1g", "%%", "%-1", "%+1", "% 1"]:
            self.assertRefused(with_segment(self.path, 1, segments(self.path)[1] + bad))

    def test_controlAndNonAsciiEscapes(self) -> None:
        """
        Escapes of NUL, CR, LF, DEL, space, and of UTF-8 (valid, overlong or invalid) are
        refused even with a tag for their byte-for-byte decoding.
        """
        for escape in [
            "%00",
            "%0d%0a",
            "%0D%0A",
            "%0a",
            "%09",
            "%20",
            "%7f",
            "%c3%a9",
            "%c0%af",
            "%C0%AE",
            "%e0%80%af",
            "%e2%80%ae",
            "%ff",
            "%80",
            "%ef%bb%bf",
        ]:
            readable = "example.com%2F" + escape
            naive = "https://example.com/" + unquote_to_bytes(escape).decode("latin-1")
            self.assertIs(
                self.assertRefused(forge_click("1s", readable, naive)), Refusal.MALFORMED
            )

    def test_controlCharactersAnywhere(self) -> None:
        """
        NUL and every other control character, raw, at any position of a link, is refused.
        """
        controls = [chr(c) for c in range(0x20)] + ["\x7f", "\x85", "\u2028"]
        for path, _ in FIXED_LINKS:
            for position in range(len(path) + 1):
                for control in controls:
                    self.assertRefused(path[:position] + control + path[position:])

    def test_unknownPrefixes(self) -> None:
        """
        Prefixes of other versions or with unknown or repeated flags are refused.
        """
        for prefix in [
            "0",
            "2",
            "2s",
            "1x",
            "1ss",
            "1ts",
            "1S",
            "1T",
            "1so",
            "1os",
            "1ot",
            "",
            "s",
        ]:
            self.assertRefused(with_segment(self.path, 0, prefix))


class PathGameTests(SynchronousTestCase):
    """
    The path games of malicious-inputs.md are refused.
    """

    def test_extraAndMissingSegments(self) -> None:
        """
        A link with any segment removed, duplicated or an extra one inserted is refused.
        """
        for path, _ in FIXED_LINKS:
            pieces = segments(path)
            for index in range(len(pieces)):
                removed = pieces[:index] + pieces[index + 1 :]
                self.assertIsInstance(verify("/" + "/".join(removed), KEYS), Refusal)
                doubled = pieces[: index + 1] + pieces[index:]
                self.assertIsInstance(verify("/" + "/".join(doubled), KEYS), Refusal)
            for index in range(len(pieces) + 1):
                for extra in ["x", "", ".", "..", "1s", "kA", "A"]:
                    longer = [*pieces[:index], extra, *pieces[index:]]
                    self.assertIsInstance(verify("/" + "/".join(longer), KEYS), Refusal)

    def test_dotAndEmptySegments(self) -> None:
        """
        //, /./, /../ at any slash, a trailing slash, no leading slash, and a query or
        fragment after a link are refused.
        """
        for path, _ in FIXED_LINKS:
            slashes = [i for i, c in enumerate(path) if c == "/"]
            for position in slashes:
                for inserted in ["/", "/.", "/..", "/./", "/../", "/%2E", "/%2e%2e"]:
                    changed = path[:position] + inserted + path[position:]
                    self.assertIsInstance(verify(changed, KEYS), Refusal, changed)
            for changed in [
                path + "/",
                path + "//",
                path + "/.",
                path + "/..",
                path + "/../x",
                "/" + path,
                path[1:],
                path + "?",
                path + "?url=https://evil.example/",
                path + "?x=1",
                path + "#",
                path + "#frag",
                path + ";x",
                path + "%2F",
                path + "%00",
                BASE + path,
            ]:
                self.assertIsInstance(verify(changed, KEYS), Refusal, changed)

    def test_veryLongPaths(self) -> None:
        """
        Paths of 100 kB, of many shapes, many with a known key id and a readable segment of
        every size around 64 KiB, are refused (never raise) within a fraction of a second each.
        """
        path = FIXED_LINKS[0][0]
        pieces = segments(path)
        stem = "/".join(pieces[2:])  # key id / LinkID / issued / tag
        huge = 100_000
        problems: list[str] = []
        for long_path in [
            f"/1s/{'a' * huge}/{stem}",
            f"/1s/{'%41' * (huge // 3)}/{stem}",
            f"/1s/{'%2F' * (huge // 3)}/{stem}",
            f"/1s/{'a' * 70_000}/{stem}",
            f"/1s/{'a' * 65_527}/{stem}",
            f"/1s/{'a' * 65_528}/{stem}",
            f"/1/{'a' * 65_529}/{stem}",
            f"/1s/{'a' * 2_000}/{stem}",
            f"/1s/{'a' * 60_000}/{stem}",
            f"/1/{'/' * huge}",
            "/" * huge,
            f"/1o/{'A' * huge}",
            f"/1o/kA/{'A' * huge}/A/{pieces[-1]}",
            path + "a" * huge,
            path + "/" * huge,
            "/1s/" + "a/" * (huge // 2),
            "%" * huge,
            "/1s/" + "%" * huge + "/" + stem,
        ]:
            shape = f"{long_path[:24]}...({len(long_path)} characters)"
            started = time.perf_counter()
            try:
                result: object = verify(long_path, KEYS)
            except Exception as error:
                result = f"raised {type(error).__name__}: {error}"
            elapsed = time.perf_counter() - started
            if not isinstance(result, Refusal):
                problems.append(f"{shape}: {str(result)[:200]}")
            elif elapsed > 0.5:
                problems.append(f"{shape}: took {elapsed:.2f} s")
        self.maxDiff = None
        self.assertEqual(problems, [])


class HeaderInjectionTests(SynchronousTestCase):
    """
    No verified target can put CR, LF or another control character into Location.
    """

    def test_noSigningOfControls(self) -> None:
        """
        sign refuses targets with CR, LF, NUL, tab or space, raw or in the host.
        """
        for target in [
            "https://example.com/\r\nSet-Cookie: a=b",
            "https://example.com/\n",
            "https://example.com/\r",
            "https://example.com/\x00",
            "https://example.com/a b",
            "https://example.com/\t",
            "https://exa\r\nmple.com/",
        ]:
            self.assertRaises(TargetRefused, sign, target, KEY_A, "L", Part.HTML, 1, base=BASE)

    def test_escapedCRLFStaysEscaped(self) -> None:
        """
        An escaped CR LF in a target is signed as the escape, and verifies as the escape.
        """
        target = "https://example.com/a%0D%0ASet-Cookie:%20x"
        path = path_of(sign(target, KEY_A, "L", Part.HTML, 1, base=BASE))
        result = verify(path, KEYS)
        assert isinstance(result, TrackedLink)
        self.assertEqual(result.target, target)
        self.assertTrue(is_safe_location(target))

    def test_forgedCRLFRefused(self) -> None:
        """
        A readable segment that decodes to CR LF is refused even with a correct tag for it.
        """
        for readable in ["example.com%0D%0ALocation:%20x", "example.com%0a", "example.com%0d"]:
            naive = "https://" + unquote_to_bytes(readable).decode("latin-1")
            self.assertIsInstance(verify(forge_click("1s", readable, naive), KEYS), Refusal)


_PRINTABLE = st.characters(min_codepoint=0x21, max_codepoint=0x7E)
_FIELDS = st.tuples(
    st.sampled_from(Kind),
    st.sampled_from(Part),
    _KEY_IDS,
    _LINK_IDS,
    _ISSUED,
    st.one_of(
        st.text(alphabet=_PRINTABLE, max_size=60),
        # Targets longer than 255 characters, whose length needs both bytes of its prefix.
        st.builds(str.__mul__, _PRINTABLE, st.integers(200, 2100)),
    ),
)
Fields = tuple[Kind, Part, str, str, int, str]


@st.composite
def shifted_fields(draw: st.DrawFn) -> tuple[Fields, Fields]:
    """
    Two field tuples whose naive concatenation is the same: a boundary between two adjacent
    textual fields (key id, LinkID, decimal issue time, target) moved.
    """
    kind = draw(st.sampled_from(Kind))
    part = draw(st.sampled_from(Part))
    key_id, link_id, issued, target = (
        draw(_KEY_IDS),
        draw(_LINK_IDS),
        draw(st.integers(0, 99999)),
        draw(st.from_regex(r"[0-9A-Za-z]{0,8}", fullmatch=True)),
    )
    fields = [key_id, link_id, str(issued), target]
    which = draw(st.integers(0, 2))
    joined = fields[which] + fields[which + 1]
    split = draw(st.integers(0, len(joined)))
    moved = list(fields)
    moved[which], moved[which + 1] = joined[:split], joined[split:]
    assume(moved != fields)
    assume(re.fullmatch(r"[A-Za-z0-9_-]{1,16}", moved[0]) is not None)
    assume(re.fullmatch(r"[A-Za-z0-9_-]{1,32}", moved[1]) is not None)
    assume(re.fullmatch(r"[1-9][0-9]*|0", moved[2]) is not None)
    first: Fields = (kind, part, key_id, link_id, issued, target)
    second: Fields = (kind, part, moved[0], moved[1], int(moved[2]), moved[3])
    return first, second


class CanonicalMessageTests(SynchronousTestCase):
    """
    The signed string is unambiguous.
    """

    def test_namedCollisions(self) -> None:
        """
        Field tuples that collide under naive concatenation have different messages.
        """
        base = (Kind.CLICK, Part.HTML)
        pairs: list[tuple[Fields, Fields]] = [
            ((*base, "ab", "c", 1, "t"), (*base, "a", "bc", 1, "t")),
            ((*base, "k", "L1", 23, "t"), (*base, "k", "L", 123, "t")),
            ((*base, "k", "L", 1, "2http://x/"), (*base, "k", "L", 12, "http://x/")),
            ((*base, "k", "L", 1, ""), (Kind.OPEN, Part.HTML, "k", "L", 1, "")),
            ((*base, "k", "L", 1, "t"), (Kind.CLICK, Part.TEXT, "k", "L", 1, "t")),
            ((Kind.OPEN, Part.TEXT, "k", "L", 1, ""), (Kind.OPEN, Part.HTML, "k", "L", 1, "")),
            ((*base, "k", "L", 10, "t"), (*base, "k", "L", 1, "0t")),
        ]
        for first, second in pairs:
            self.assertNotEqual(canonical_message(*first), canonical_message(*second))

    @_SETTINGS
    @given(_FIELDS, _FIELDS)
    def test_differentFieldsDifferentMessages(self, first: Fields, second: Fields) -> None:
        """
        Two different field tuples never have the same message.
        """
        assume(first != second)
        self.assertNotEqual(canonical_message(*first), canonical_message(*second))

    @_SETTINGS
    @given(shifted_fields())
    def test_shiftedBoundaries(self, pair: tuple[Fields, Fields]) -> None:
        """
        Moving the boundary between two adjacent fields changes the message.
        """
        first, second = pair
        self.assertNotEqual(canonical_message(*first), canonical_message(*second))

    @_SETTINGS
    @given(_FIELDS)
    def test_documentedLayout(self, fields: Fields) -> None:
        """
        The message is exactly the documented layout: the domain constant, then kind, part,
        key id, LinkID, decimal issue time and target, each as u16 length and ASCII bytes.
        """
        self.assertEqual(canonical_message(*fields), reference_message(*fields))

    def test_documentedVector(self) -> None:
        """
        The message of the documentation's example link is byte for byte the documented one.
        """
        self.assertEqual(
            canonical_message(
                Kind.CLICK, Part.HTML, "tv1", "Lk04", 1764780000, "https://www.example.com/pricing"
            ),
            b"linkrouter tracked link v1\x00"
            b"\x00\x05click\x00\x04html\x00\x03tv1\x00\x04Lk04\x00\x0a1764780000"
            b"\x00\x1fhttps://www.example.com/pricing",
        )

    @_FEW
    @given(_FIELDS)
    def test_deterministic(self, fields: Fields) -> None:
        """
        The same fields always give the same message, which holds each field's bytes.
        """
        message = canonical_message(*fields)
        self.assertEqual(message, canonical_message(*fields))
        for text in [fields[2], fields[3], str(fields[4]), fields[5]]:
            self.assertIn(text.encode("ascii"), message)


class SignRefusalTests(SynchronousTestCase):
    """
    sign refuses what it must not issue.
    """

    def test_inactiveKeys(self) -> None:
        """
        Verify-only and revoked keys sign nothing.
        """
        for state in [KeyState.VERIFY, KeyState.REVOKED]:
            key = Key("old", b"o" * 32, state)
            self.assertRaises(
                ValueError, sign, "https://example.com/", key, "L", Part.HTML, 1, base=BASE
            )
            self.assertRaises(
                ValueError, sign, None, key, "L", Part.HTML, 1, base=BASE, kind=Kind.OPEN
            )

    def test_badLinkIds(self) -> None:
        """
        LinkIDs that are empty, too long, or hold characters outside base64url are refused.
        """
        for link_id in ["", "a" * 33, "a b", "a/b", "a=", "a+b", "é", "a\n", "a.b", "%41"]:
            self.assertRaises(
                ValueError, sign, "https://example.com/", KEY_A, link_id, Part.HTML, 1, base=BASE
            )
        sign("https://example.com/", KEY_A, "a" * 32, Part.HTML, 1, base=BASE)

    def test_issueTimes(self) -> None:
        """
        Issue times below 0, above 64**8 - 1, or bools are refused; the bounds are issued.
        """
        for issued in [-1, MAX_ISSUED_AT + 1, 64**9, True, False]:
            self.assertRaises(
                ValueError, sign, "https://example.com/", KEY_A, "L", Part.HTML, issued, base=BASE
            )
        for issued in [0, MAX_ISSUED_AT]:
            path = path_of(sign("https://example.com/", KEY_A, "L", Part.HTML, issued, base=BASE))
            result = verify(path, KEYS)
            assert isinstance(result, TrackedLink)
            self.assertEqual(result.issued_at, issued)
        self.assertEqual(MAX_ISSUED_AT, 64**8 - 1)

    def test_bases(self) -> None:
        """
        Bases with a path, query, fragment or userinfo, http bases for hosts other than
        loopback, and non-URLs are refused; https and http loopback bases are accepted.
        """
        for base in [
            "https://click.example/path",
            "https://click.example/path/",
            "https://click.example?x=1",
            "https://click.example/?",
            "https://click.example#f",
            "https://user@click.example",
            "https://user:pw@click.example",
            "http://click.example",
            "http://127.0.0.2",
            "http://10.0.0.1",
            "ftp://click.example",
            "click.example",
            "",
            "//click.example",
        ]:
            self.assertRaises(
                ValueError, sign, "https://example.com/", KEY_A, "L", Part.HTML, 1, base=base
            )
        for base in [
            "https://click.example",
            "https://click.example/",
            "https://click.example:8443",
            "http://127.0.0.1:8080",
            "http://localhost",
            "http://[::1]:8080",
        ]:
            link = sign("https://example.com/", KEY_A, "L", Part.HTML, 1, base=base)
            self.assertTrue(link.startswith(base.rstrip("/") + "/1s/"), link)

    def test_openPixelArguments(self) -> None:
        """
        An open pixel with a target, or for the text part, is refused; a click needs a target.
        """
        self.assertRaises(
            ValueError,
            sign,
            "https://example.com/",
            KEY_A,
            "L",
            Part.HTML,
            1,
            base=BASE,
            kind=Kind.OPEN,
        )
        self.assertRaises(
            ValueError, sign, None, KEY_A, "L", Part.TEXT, 1, base=BASE, kind=Kind.OPEN
        )
        self.assertRaises(ValueError, sign, None, KEY_A, "L", Part.HTML, 1, base=BASE)

    def test_refusedTargets(self) -> None:
        """
        Targets the issuing rules refuse raise TargetRefused from sign.
        """
        for target in ["javascript:alert(1)", "//evil.example", "https://a@evil.example", ""]:
            self.assertRaises(TargetRefused, sign, target, KEY_A, "L", Part.HTML, 1, base=BASE)

    def test_lengthLimit(self) -> None:
        """
        A link of exactly 2,000 characters is issued and verifies; one character more is
        refused with TargetRefused, also for a target that is short before escaping.
        """
        prefix = "https://example.com/"

        def link_for(size: int) -> str:
            """
            The link for a target whose path is C{size} letters.
            """
            return sign(prefix + "a" * size, KEY_A, "L", Part.TEXT, 1, base=BASE)

        size = MAX_LINK_LENGTH - len(link_for(0))
        exact = link_for(size)
        self.assertEqual(len(exact), MAX_LINK_LENGTH)
        result = verify(path_of(exact), KEYS)
        assert isinstance(result, TrackedLink)
        self.assertEqual(result.target, prefix + "a" * size)
        self.assertRaises(TargetRefused, link_for, size + 1)
        # 700 '&' are 700 characters of target but 2,100 of readable segment.
        self.assertRaises(
            TargetRefused, sign, prefix + "&" * 700, KEY_A, "L", Part.HTML, 1, base=BASE
        )


class ClickSignerTests(SynchronousTestCase):
    """
    ClickSigner, the rewriter's way to sign many links of one message part, issues exactly
    the links sign issues, and refuses what sign refuses.
    """

    @_SETTINGS
    @given(click_inputs(), st.sampled_from([BASE, "https://c.example:8443", "http://[::1]"]))
    def test_sameLinksAsSign(
        self, inputs: tuple[str, str, Key, str, Part, int], base: str
    ) -> None:
        raw, target, key, link_id, part, issued_at = inputs
        signer = ClickSigner(key, part, issued_at, base=base)
        expected = sign(raw, key, link_id, part, issued_at, base=base)
        self.assertEqual(signer.link(target, link_id), expected)
        self.assertEqual(signer.link_with_valid_id(target, link_id), expected)

    def test_refusals(self) -> None:
        """
        An inactive key, a bad issue time or base at construction, a bad LinkID or a link
        over the limit at signing: the same errors, with the same messages, as sign.
        """
        for key, issued_at, base in [
            (KEY_B, 1, BASE),
            (KEY_A, -1, BASE),
            (KEY_A, MAX_ISSUED_AT + 1, BASE),
            (KEY_A, 1, "http://click.example"),
        ]:
            with self.assertRaises(ValueError) as expected:
                sign("https://example.com/", key, "L", Part.HTML, issued_at, base=base)
            with self.assertRaises(ValueError) as raised:
                ClickSigner(key, Part.HTML, issued_at, base=base)
            self.assertEqual(str(raised.exception), str(expected.exception))
        signer = ClickSigner(KEY_A, Part.HTML, 1, base=BASE)
        for link_id in ["", "a" * 33, "a/b"]:
            self.assertRaises(ValueError, signer.link, "https://example.com/", link_id)
        target = "https://example.com/" + "&" * 700
        with self.assertRaises(TargetRefused) as expected_refusal:
            sign(target, KEY_A, "L", Part.HTML, 1, base=BASE)
        for link in [signer.link, signer.link_with_valid_id]:
            with self.assertRaises(TargetRefused) as refusal:
                link(target, "L")
            self.assertEqual(str(refusal.exception), str(expected_refusal.exception))


class ReadableTests(SynchronousTestCase):
    """
    The readable segment escapes exactly the reserved characters, as the format says.
    """

    @_SETTINGS
    @given(st.sampled_from(["http://", "https://"]), st.text(_PRINTABLE, max_size=60))
    def test_asDocumented(self, scheme: str, rest: str) -> None:
        """
        For any printable ASCII after the scheme, every character but A-Z a-z 0-9 - . _ ~ is
        escaped as upper-case %XX ("%" too, so an escape in the target stays one), like
        urllib's quote.
        """
        codec._readable.cache_clear()
        self.assertEqual(codec._readable(scheme + rest), quote(rest, safe=""))
        self.assertEqual(codec._readable(scheme + rest), quote(rest, safe=""))  # cached

    def test_notATarget(self) -> None:
        """
        Space, controls and non-ASCII are no part of a normalized target, nor is a target
        without a scheme: refused, with the text as given.
        """
        for href in ["https://a b", "https://a%2F\x7f", "http://\x00", "https://é/%41", "a/b"]:
            with self.assertRaises(ValueError) as raised:
                codec._readable(href)
            self.assertIn(repr(href), str(raised.exception))


class KeyMacTests(SynchronousTestCase):
    """
    Key.mac is HMAC-SHA256.
    """

    @_SETTINGS
    @given(st.binary(min_size=32, max_size=200), st.binary(max_size=300))
    def test_matchesStandardHmac(self, secret: bytes, message: bytes) -> None:
        """
        Key.mac equals hmac.new(secret, message, sha256) for any secret of 32 to 200 bytes
        (longer than a block included) and any message, every time it is called.
        """
        key = Key("k", secret, KeyState.ACTIVE)
        expected = hmac.new(secret, message, hashlib.sha256).digest()
        self.assertEqual(key.mac(message), expected)
        self.assertEqual(key.mac(message), expected)
        self.assertEqual(
            key.mac(b"other" + message), hmac.new(secret, b"other" + message, "sha256").digest()
        )

    def test_blockBoundaries(self) -> None:
        """
        Secrets of 63, 64 and 65 bytes (around SHA-256's block size) match the standard HMAC.
        """
        for size in [32, 63, 64, 65, 128]:
            secret = bytes(range(size))
            key = Key("k", secret, KeyState.ACTIVE)
            self.assertEqual(key.mac(b"msg"), hmac.new(secret, b"msg", hashlib.sha256).digest())


class LookupAndComparisonTests(SynchronousTestCase):
    """
    verify finds the key with one lookup and compares tags in constant time.
    """

    def test_oneLookup(self) -> None:
        """
        verify consults the key mapping exactly once for every well-formed path (valid, bad
        tag, unknown or revoked key), never scans it, and at most once for a malformed one.
        """
        revoked = path_of(sign("https://example.com/", KEY_GONE, "L", Part.HTML, 1, base=BASE))
        path = FIXED_LINKS[0][0]
        key_index = len(segments(path)) - 4
        well_formed = [p for p, _ in FIXED_LINKS] + [
            revoked,
            with_segment(path, key_index, "nobody"),
            path[:-1] + ("A" if path[-1] != "A" else "B"),
        ]
        for candidate in well_formed:
            keys = CountingMapping(KEYS)
            verify(candidate, keys)
            self.assertEqual((keys.lookups, keys.scans), (1, 0), candidate)
        for candidate in ["/", path + "/", "/1s/%zz/kA/L/B/AAAAAAAAAAAAAAAA", "/1s/x/kA/L/AB/x"]:
            keys = CountingMapping(KEYS)
            self.assertIsInstance(verify(candidate, keys), Refusal)
            self.assertLessEqual(keys.lookups, 1)
            self.assertEqual(keys.scans, 0)

    def test_compareDigest(self) -> None:
        """
        verify compares the expected and the received tag with hmac.compare_digest, for valid
        and tampered tags alike.
        """
        calls: list[tuple[str, str]] = []
        original = hmac.compare_digest

        def recording(a: bytes | str, b: bytes | str) -> bool:
            """
            Record the compared values, then compare.
            """
            calls.append(
                (
                    a.decode("ascii") if isinstance(a, bytes) else a,
                    b.decode("ascii") if isinstance(b, bytes) else b,
                )
            )
            return original(a, b)  # type: ignore[arg-type]

        self.patch(codec.hmac, "compare_digest", recording)
        path, expected = FIXED_LINKS[0]
        tag = segments(path)[-1]
        message = canonical_message(
            Kind.CLICK,
            expected.part,
            "kA",
            expected.link_id,
            expected.issued_at,
            str(expected.target),
        )
        right = reference_tag(KEY_A.secret, message)
        self.assertEqual(tag, right)
        self.assertEqual(verify(path, KEYS), expected)
        self.assertEqual(calls, [(right, right)])
        del calls[:]
        wrong = ("B" if tag[0] != "B" else "C") + tag[1:]
        self.assertIs(verify(path[: -len(tag)] + wrong, KEYS), Refusal.BAD_TAG)
        self.assertEqual(len(calls), 1)
        self.assertEqual(sorted(calls[0]), sorted([right, wrong]))
