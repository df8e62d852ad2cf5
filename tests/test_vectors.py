"""
Tests for C{tests/vectors/links-v1.json}, the pinned test vectors of tracked-link format
version 1, against L{linkrouter.codec} and against the documented rules themselves.

The vectors are what any other implementation of the signer checks itself against, so they are
checked here in both directions: L{sign} must produce every link and L{verify} must give every
input back; and, independently of linkrouter's code, the signed string, the tag and the link
layout are rebuilt from the documented rules with C{struct}, C{hmac} and C{hashlib} only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import string
import struct
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from linkrouter.codec import (
    MAX_ISSUED_AT,
    MAX_LINK_LENGTH,
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

Vector = dict[str, Any]

# The documented rules, written out again here so the vectors are checked against the
# documentation and not only against the code that generated them.
DOMAIN = b"linkrouter tracked link v1\x00"
TAG_BYTES = 12
UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")
BASE64URL = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
CURRENT_TIME = 1764780000


@lru_cache(maxsize=1)
def vectors() -> Vector:
    """
    The parsed contents of C{links-v1.json}.
    """
    path = FilePath(__file__).sibling("vectors").child("links-v1.json")
    data: Vector = json.loads(path.getContent().decode("utf-8"))
    return data


def links() -> list[Vector]:
    result: list[Vector] = vectors()["links"]
    return result


def secret(key_id: str) -> bytes:
    return bytes.fromhex(vectors()["keys"][key_id])


def keyring() -> dict[str, Key]:
    """
    Every key of the vectors by id, as L{verify} takes them: the revoked ones revoked, every
    other one verify-only.
    """
    revoked = set(vectors()["revoked_keys"])
    return {
        key_id: Key(
            key_id,
            secret(key_id),
            KeyState.REVOKED if key_id in revoked else KeyState.VERIFY,
        )
        for key_id in vectors()["keys"]
    }


def sign_input(given: Vector) -> str:
    """
    Sign the C{input} of a link vector (or the refused targets' parameters) with L{sign}.
    """
    key = Key(given["key_id"], secret(given["key_id"]), KeyState.ACTIVE)
    return sign(
        given["target"],
        key,
        given["link_id"],
        Part(given["part"]),
        given["issued_at"],
        base=given["base"],
        kind=Kind(given["kind"]),
    )


def path_of(vector: Vector) -> str:
    """
    The path of a vector's link: the link without its base.
    """
    link: str = vector["link"]
    base: str = vector["input"]["base"]
    assert link.startswith(base + "/"), vector["name"]
    return link[len(base) :]


def documented_field(value: str) -> bytes:
    data = value.encode("ascii")
    return struct.pack(">H", len(data)) + data


def documented_message(given: Vector, target: str | None) -> bytes:
    """
    The signed string by the documented rule: the domain constant, then kind, part, key id,
    LinkID, issue time in decimal and target (empty for an open pixel), each as a 2-byte
    big-endian length and its ASCII bytes.
    """
    fields = [
        given["kind"],
        given["part"],
        given["key_id"],
        given["link_id"],
        str(given["issued_at"]),
        target or "",
    ]
    return DOMAIN + b"".join(documented_field(value) for value in fields)


def documented_tag(key_secret: bytes, message: bytes) -> str:
    """
    The first 96 bits of the HMAC-SHA256 of C{message}, base64url without padding.
    """
    mac = hmac.new(key_secret, message, hashlib.sha256).digest()[:TAG_BYTES]
    return base64.urlsafe_b64encode(mac).decode("ascii").rstrip("=")


def documented_issued(seconds: int) -> str:
    """
    A base-64 numeral in the base64url alphabet, most significant digit first, no leading
    zero digit ("A") except for 0 itself.
    """
    digits = ""
    while True:
        seconds, digit = divmod(seconds, 64)
        digits = BASE64URL[digit] + digits
        if not seconds:
            return digits


def documented_readable(target: str) -> str:
    """
    The target without its scheme and "//", every character but A-Z a-z 0-9 - . _ ~ escaped
    as upper-case %XX.
    """
    scheme = "https://" if target.startswith("https://") else "http://"
    rest = target[len(scheme) :]
    return "".join(c if c in UNRESERVED else f"%{ord(c):02X}" for c in rest)


def documented_link(vector: Vector) -> str:
    given = vector["input"]
    target: str | None = vector["target"]
    fields = f"{given['key_id']}/{given['link_id']}/{documented_issued(given['issued_at'])}"
    if given["kind"] == "open":
        return f"{given['base']}/1o/{fields}/{vector['tag']}"
    assert target is not None
    prefix = "1" + ("s" if target.startswith("https://") else "")
    prefix += "t" if given["part"] == "text" else ""
    readable = documented_readable(target)
    return f"{given['base']}/{prefix}/{readable}/{fields}/{vector['tag']}"


def host_of(target: str) -> str:
    """
    The host of a normalized target (with port and IPv6 brackets).
    """
    return target.split("/")[2]


def raw_authority(raw: str) -> str:
    """
    What follows "http://" or "https://" (any case) in a raw target up to the next "/", or "".
    """
    scheme, separator, rest = raw.partition("://")
    if not separator or scheme.lower() not in {"http", "https"}:
        return ""
    return rest.split("/")[0]


class VectorTestCase(SynchronousTestCase):
    """
    Checks that go over many vectors report every failing one, by name, at once.
    """

    def assertNoFailures(self, failures: list[str]) -> None:
        if failures:
            self.fail(f"{len(failures)} vector(s) failed:\n" + "\n".join(failures))


class LinkVectorTests(VectorTestCase):
    """
    Every link vector against L{sign} and L{verify}.
    """

    def test_signGivesEveryLink(self) -> None:
        """
        L{sign} turns the input of every link vector into exactly the vector's link.
        """
        failures = []
        for vector in links():
            try:
                link = sign_input(vector["input"])
            except ValueError as error:
                failures.append(f"{vector['name']!r}: sign raised {error!r}")
                continue
            if link != vector["link"]:
                failures.append(f"{vector['name']!r}: got {link!r}, want {vector['link']!r}")
        self.assertNoFailures(failures)

    def test_verifyGivesBackEveryInput(self) -> None:
        """
        L{verify} of the path of every link vector gives back the vector's kind, part, key id,
        LinkID and issue time, and the normalized target (C{None} for an open pixel).
        """
        keys = keyring()
        failures = []
        for vector in links():
            given = vector["input"]
            want = TrackedLink(
                Kind(given["kind"]),
                Part(given["part"]),
                vector["target"],
                given["key_id"],
                given["link_id"],
                given["issued_at"],
            )
            got = verify(path_of(vector), keys)
            if got != want:
                failures.append(f"{vector['name']!r}: got {got!r}, want {want!r}")
        self.assertNoFailures(failures)

    def test_canonicalMessageIsTheVectors(self) -> None:
        """
        L{canonical_message} gives every vector's C{message_hex}.
        """
        failures = []
        for vector in links():
            given = vector["input"]
            message = canonical_message(
                Kind(given["kind"]),
                Part(given["part"]),
                given["key_id"],
                given["link_id"],
                given["issued_at"],
                vector["target"] or "",
            )
            if message.hex() != vector["message_hex"]:
                failures.append(f"{vector['name']!r}: got {message.hex()}")
        self.assertNoFailures(failures)

    def test_equivalentPathsVerify(self) -> None:
        """
        A path re-encoded equivalently (escapes in lower case, unreserved characters escaped,
        sub-delimiters left raw) verifies to the same link as the original path.
        """
        keys = keyring()
        by_name = {vector["name"]: vector for vector in links()}
        failures = []
        for entry in vectors()["equivalent_paths"]:
            original = verify(path_of(by_name[entry["vector"]]), keys)
            got = verify(entry["path"], keys)
            if not isinstance(got, TrackedLink) or got != original:
                failures.append(f"{entry['name']!r}: got {got!r}, want {original!r}")
        self.assertNoFailures(failures)


class DocumentedRuleTests(VectorTestCase):
    """
    Every link vector against the documented format, rebuilt here without linkrouter's code.
    """

    def test_messageIsTheDocumentedString(self) -> None:
        """
        Every vector's C{message_hex} is the domain constant followed by kind, part, key id,
        LinkID, decimal issue time and target (empty for an open pixel), each with a 2-byte
        big-endian length.
        """
        failures = []
        for vector in links():
            message = documented_message(vector["input"], vector["target"])
            if message.hex() != vector["message_hex"]:
                failures.append(f"{vector['name']!r}: want {message.hex()}")
        self.assertNoFailures(failures)

    def test_tagIsTheTruncatedHmac(self) -> None:
        """
        Every vector's tag is the first 12 bytes of the HMAC-SHA256 of its signed string under
        its key's secret, in 16 base64url characters without padding; keys over the 64-byte
        block are hashed first, as RFC 2104 says.
        """
        failures = []
        for vector in links():
            message = bytes.fromhex(vector["message_hex"])
            tag = documented_tag(secret(vector["input"]["key_id"]), message)
            if len(tag) != 16 or tag != vector["tag"]:
                failures.append(f"{vector['name']!r}: got {vector['tag']!r}, want {tag!r}")
        self.assertNoFailures(failures)

    def test_linkIsTheDocumentedLayout(self) -> None:
        """
        Every link is base, prefix ("1" + "s" for https + "t" for the text part, or "1o" for an
        open pixel), readable target (clicks only), key id, LinkID, issue time as a base-64
        numeral and tag, separated by "/", and is at most 2,000 characters long.
        """
        failures = []
        for vector in links():
            want = documented_link(vector)
            if vector["link"] != want:
                failures.append(f"{vector['name']!r}: want {want!r}")
            elif len(want) > MAX_LINK_LENGTH:
                failures.append(f"{vector['name']!r}: {len(want)} characters")
        self.assertNoFailures(failures)

    def test_targetIsALocationValue(self) -> None:
        """
        Every click's normalized target is a printable-ASCII http or https URL with a host
        and a path, fit for a C{Location} header; an open pixel has no target.
        """
        failures = []
        for vector in links():
            target = vector["target"]
            if vector["input"]["kind"] == "open":
                if target is not None or vector["input"]["target"] is not None:
                    failures.append(f"{vector['name']!r}: an open pixel with a target")
                continue
            scheme, _, rest = target.partition("://")
            if not (
                scheme in {"http", "https"}
                and target.isascii()
                and target.isprintable()
                and " " not in target
                and "/" in rest
                and host_of(target)
            ):
                failures.append(f"{vector['name']!r}: {target!r} is not a Location value")
        self.assertNoFailures(failures)

    def test_documentedHelpers(self) -> None:
        """
        The documented encodings rebuilt in this module give known answers, so a mistake in
        them cannot pass unnoticed: issue times, the readable segment and the field layout.
        """
        self.assertEqual(
            [documented_issued(t) for t in [0, 1, 63, 64, 4096, CURRENT_TIME, MAX_ISSUED_AT]],
            ["A", "B", "_", "BA", "BAA", "BpMGfg", "________"],
        )
        self.assertEqual(
            documented_readable("https://a.b/c?d=e&f=%2F~#g"), "a.b%2Fc%3Fd%3De%26f%3D%252F~%23g"
        )
        self.assertEqual(documented_field("click"), b"\x00\x05click")

    def test_keysAreFixed(self) -> None:
        """
        The keys are fixed, derived as documented from their ids (never random), and every
        secret has at least 32 bytes.
        """
        failures = []
        for key_id, hex_secret in vectors()["keys"].items():
            key_secret = bytes.fromhex(hex_secret)
            derived = b"".join(
                hashlib.sha256(f"linkrouter test vector key {key_id} {i}".encode()).digest()
                for i in range(4)
            )
            if len(key_secret) < 32 or key_secret != derived[: len(key_secret)]:
                failures.append(f"key {key_id!r}")
        self.assertNoFailures(failures)


class RefusalVectorTests(VectorTestCase):
    """
    The refused targets against L{sign} and the refused paths against L{verify}.
    """

    def test_refusedTargetsAreNotSigned(self) -> None:
        """
        L{sign} raises L{TargetRefused} (not another error, and no link) for every refused
        target, with the documented signing parameters.
        """
        parameters = vectors()["refused_targets_sign_with"]
        failures = []
        for entry in vectors()["refused_targets"]:
            try:
                link = sign_input({**parameters, "target": entry["target"]})
            except TargetRefused:
                continue
            except Exception as error:
                failures.append(f"{entry['name']!r}: raised {error!r}, not TargetRefused")
            else:
                failures.append(f"{entry['name']!r}: signed as {link!r}")
        self.assertNoFailures(failures)

    def test_refusedPathsAreRefused(self) -> None:
        """
        L{verify} refuses every refused path, for exactly the stated reason.
        """
        keys = keyring()
        failures = []
        for entry in vectors()["refused_paths"]:
            want = Refusal[entry["refusal"]]
            got = verify(entry["path"], keys)
            if got is not want:
                failures.append(f"{entry['name']!r}: got {got!r}, want {want!r}")
        self.assertNoFailures(failures)

    def test_refusedPathsAreNotLinks(self) -> None:
        """
        No refused path is the path of a link vector or an equivalent path.
        """
        valid = {path_of(vector) for vector in links()}
        valid.update(entry["path"] for entry in vectors()["equivalent_paths"])
        clashes = [e["name"] for e in vectors()["refused_paths"] if e["path"] in valid]
        self.assertEqual(clashes, [])


def coverage_of(entries: list[Vector], checks: dict[str, Callable[[Vector], bool]]) -> list[str]:
    """
    The names of the checks that no entry satisfies.
    """
    return [name for name, check in checks.items() if not any(map(check, entries))]


def click_targets(vector: Vector) -> tuple[str, str]:
    """
    The raw and the normalized target of a click vector; empty strings for an open pixel.
    """
    if vector["input"]["kind"] == "open":
        return "", ""
    return vector["input"]["target"], vector["target"]


class CoverageTests(VectorTestCase):
    """
    The vectors cover every case other implementations most need to get right.
    """

    def test_counts(self) -> None:
        """
        There are at least 40 link vectors, 25 refused targets and 25 refused paths, with
        unique names within each list.
        """
        self.assertGreaterEqual(len(links()), 40)
        self.assertGreaterEqual(len(vectors()["refused_targets"]), 25)
        self.assertGreaterEqual(len(vectors()["refused_paths"]), 25)
        for section in ["links", "refused_targets", "refused_paths", "equivalent_paths"]:
            names = [entry["name"] for entry in vectors()[section]]
            self.assertEqual(len(names), len(set(names)), section)

    def test_keysCovered(self) -> None:
        """
        The links use at least 3 keys, including a 64-byte secret and one over 64 bytes (which
        HMAC hashes), and key ids of 1 and 16 characters; a revoked key is listed.
        """
        used = {vector["input"]["key_id"] for vector in links()}
        revoked = set(vectors()["revoked_keys"])
        self.assertGreaterEqual(len(used), 3)
        self.assertFalse(used & revoked)
        self.assertTrue(revoked)
        self.assertTrue(revoked <= set(vectors()["keys"]))
        sizes = {len(secret(key_id)) for key_id in used}
        self.assertIn(64, sizes)
        self.assertTrue(any(size > 64 for size in sizes), sizes)
        self.assertTrue({1, 16} <= {len(key_id) for key_id in used})

    def test_fieldsCovered(self) -> None:
        """
        The links cover both kinds, both parts, every prefix, LinkIDs of 1 and 32 characters,
        issue times 0, small, current and the maximum, and more than one base.
        """
        missing = coverage_of(
            links(),
            {
                "prefix 1": lambda v: "/1/" in v["link"],
                "prefix 1s": lambda v: "/1s/" in v["link"],
                "prefix 1t": lambda v: "/1t/" in v["link"],
                "prefix 1st": lambda v: "/1st/" in v["link"],
                "prefix 1o (open)": lambda v: v["input"]["kind"] == "open",
                "text part": lambda v: v["input"]["part"] == "text",
                "LinkID of 1": lambda v: len(v["input"]["link_id"]) == 1,
                "LinkID of 32": lambda v: len(v["input"]["link_id"]) == 32,
                "issue time 0": lambda v: v["input"]["issued_at"] == 0,
                "small issue time": lambda v: 0 < v["input"]["issued_at"] < 100,
                "current issue time": lambda v: (
                    abs(v["input"]["issued_at"] - CURRENT_TIME) < 86400
                ),
                "maximum issue time": lambda v: v["input"]["issued_at"] == MAX_ISSUED_AT,
                "maximum issue time, open": lambda v: (
                    v["input"]["issued_at"] == MAX_ISSUED_AT and v["input"]["kind"] == "open"
                ),
                "base with a port": lambda v: v["input"]["base"].count(":") == 2,
                "loopback http base": lambda v: v["input"]["base"].startswith("http://"),
            },
        )
        self.assertEqual(missing, [])

    def test_targetsCovered(self) -> None:
        """
        The click targets cover plain http and https, heavy queries, fragments, links near
        the 2,000-character limit, existing escapes, IRIs with IDN hosts and non-ASCII paths
        and queries, upper-case schemes and hosts, default ports, IPv4, IPv6 and trailing-dot
        hosts.
        """

        def raw(v: Vector) -> str:
            return click_targets(v)[0]

        def target(v: Vector) -> str:
            return click_targets(v)[1]

        missing = coverage_of(
            links(),
            {
                "http": lambda v: target(v).startswith("http://"),
                "https": lambda v: target(v).startswith("https://"),
                "query heavy": lambda v: target(v).count("&") >= 5 and "+" in target(v),
                "fragment": lambda v: "#" in target(v),
                "exactly 2000 characters": lambda v: len(v["link"]) == MAX_LINK_LENGTH,
                "escapes kept": lambda v: (
                    "%2F" in raw(v) and "%25" in raw(v) and raw(v) == target(v)
                ),
                "IDN host": lambda v: (
                    not host_of(raw(v) or "x://x/").isascii() and "xn--" in target(v)
                ),
                "non-ASCII path and query": lambda v: (
                    target(v).startswith("https://example.com/")
                    and not raw(v).isascii()
                    and "?" in raw(v)
                ),
                "upper-case scheme and host": lambda v: (
                    raw(v).startswith("HTTP") and host_of(raw(v)).isupper()
                ),
                "default port removed": lambda v: ":80/" in raw(v) and ":80/" not in target(v),
                "IPv4 host": lambda v: host_of(target(v) or "x://x/").replace(".", "").isdigit(),
                "IPv6 host": lambda v: host_of(target(v) or "x://x/").startswith("["),
                "trailing-dot host": lambda v: host_of(target(v) or "x://x/").endswith("."),
            },
        )
        self.assertEqual(missing, [])
        self.assertGreaterEqual(sum(len(v["link"]) >= 1990 for v in links()), 3)

    def test_refusedTargetsCovered(self) -> None:
        """
        The refused targets cover script and other schemes, schemes hidden by case, spaces
        and controls, scheme-relative and backslash forms, missing slashes, userinfo tricks,
        disguised IPv4 hosts, broken IPv6, empty hosts, over-long labels and links too long.
        """

        def lowered(v: Vector) -> str:
            text: str = v["target"]
            return text.lower()

        missing = coverage_of(
            vectors()["refused_targets"],
            {
                "javascript: mixed case": lambda v: v["target"].startswith("JaVaScRiPt:"),
                "javascript: leading space": lambda v: v["target"].startswith(" javascript:"),
                "javascript: leading control": lambda v: (
                    v["target"][0] < " " and "javascript:" in v["target"]
                ),
                "data:": lambda v: lowered(v).startswith("data:"),
                "file:": lambda v: lowered(v).startswith("file:"),
                "vbscript:": lambda v: lowered(v).startswith("vbscript:"),
                "mailto:": lambda v: lowered(v).startswith("mailto:"),
                "//x": lambda v: v["target"].startswith("//"),
                "\\\\x": lambda v: v["target"].startswith("\\\\"),
                "/\\x": lambda v: v["target"].startswith("/\\"),
                "http:/\\x": lambda v: v["target"].startswith("http:/\\"),
                "http:///x": lambda v: v["target"].startswith("http:///"),
                "userinfo": lambda v: "@" in raw_authority(v["target"]),
                "userinfo, backslash form": lambda v: "\\@" in v["target"],
                "integer IPv4": lambda v: v["target"] == "http://2130706433/",
                "octal IPv4": lambda v: "//0177." in v["target"],
                "hex IPv4": lambda v: "//0x" in lowered(v),
                "broken IPv6": lambda v: "[::1/" in v["target"] or "::1]" in v["target"],
                "empty host": lambda v: v["target"] in {"http://", "http:///"},
                "label over 63": lambda v: "a" * 64 in v["target"],
                "space inside": lambda v: " " in v["target"].strip(),
                "control inside": lambda v: any(c < " " for c in v["target"][1:]),
                "too long": lambda v: len(v["target"]) > 2000,
                "link too long": lambda v: "link" in v["why"] and "long" in v["why"],
            },
        )
        self.assertEqual(missing, [])

    def test_refusedPathsCovered(self) -> None:
        """
        Every L{Refusal} is pinned by a refused path, and the refused paths cover changed
        tags and fields, bad escapes, unknown prefixes, extra and missing segments, query
        strings and the empty path.
        """
        entries = vectors()["refused_paths"]
        self.assertEqual({e["refusal"] for e in entries}, {r.name for r in Refusal})
        missing = coverage_of(
            entries,
            {
                "%zz": lambda e: "%zz" in e["path"],
                "trailing %": lambda e: "%/" in e["path"],
                "%00": lambda e: "%00" in e["path"],
                "double encoding": lambda e: "%252F" in e["path"] and e["refusal"] == "BAD_TAG",
                "raw non-ASCII": lambda e: not e["path"].isascii(),
                "trailing slash": lambda e: e["path"].endswith("/") and len(e["path"]) > 5,
                "//": lambda e: "//" in e["path"],
                "/./": lambda e: "/./" in e["path"],
                "/../": lambda e: "/../" in e["path"],
                "2s": lambda e: e["path"].startswith("/2s/"),
                "1x": lambda e: e["path"].startswith("/1x/"),
                "1ts": lambda e: e["path"].startswith("/1ts/"),
                "1so": lambda e: e["path"].startswith("/1so/"),
                "query string": lambda e: "?" in e["path"],
                "empty path": lambda e: e["path"] == "",
                "padding": lambda e: "=" in e["path"],
                "UNKNOWN_KEY": lambda e: e["refusal"] == "UNKNOWN_KEY",
                "REVOKED_KEY": lambda e: e["refusal"] == "REVOKED_KEY",
            },
        )
        self.assertEqual(missing, [])
