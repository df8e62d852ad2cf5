"""
Tests for L{linkrouter.collector.tokens}: the tokens file's refusals, and who a request's
C{Authorization} header says it comes from.
"""

from __future__ import annotations

import base64
import os

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from linkrouter.collector.tokens import Role, Tokens, TokensError, load_tokens

ROUTER_1 = "r1-token-0123456789abcdef"
ROUTER_2 = "r2-token-0123456789abcdef"
ISSUER = "issuer-token-0123456789ab"
READER = "reader-token-0123456789ab"

GOOD = f"""\
[routers]
r1 = "{ROUTER_1}"
"ams-2.blue_x" = "{ROUTER_2}"
[issuers]
mailer = "{ISSUER}"
[readers]
marketing = "{READER}"
"""


def bearer(token: str | bytes) -> bytes:
    return b"Bearer " + (token.encode() if isinstance(token, str) else token)


def basic(user: bytes, password: str | bytes) -> bytes:
    secret = password.encode() if isinstance(password, str) else password
    return b"Basic " + base64.b64encode(user + b":" + secret)


class LoadTokensTests(SynchronousTestCase):
    def setUp(self) -> None:
        directory = FilePath(self.mktemp())
        directory.makedirs()
        self.path = directory.child("tokens.toml")

    def write(self, text: str | bytes, mode: int = 0o600) -> None:
        self.path.setContent(text.encode() if isinstance(text, str) else text)
        os.chmod(self.path.path, mode)

    def refused(self, text: str | bytes, *words: str, mode: int = 0o600) -> str:
        """
        The tokens file C{text} is refused with one line naming the file and C{words}.
        """
        self.write(text, mode)
        message = str(self.assertRaises(TokensError, load_tokens, self.path))
        self.assertNotIn("\n", message)
        self.assertIn(self.path.path, message)
        for word in words:
            self.assertIn(word, message)
        return message

    def test_good(self) -> None:
        """
        Every role's tokens are read by name, as bytes.
        """
        self.write(GOOD)
        tokens = load_tokens(self.path)
        self.assertEqual(
            tokens.by_role,
            {
                Role.ROUTERS: {"r1": ROUTER_1.encode(), "ams-2.blue_x": ROUTER_2.encode()},
                Role.ISSUERS: {"mailer": ISSUER.encode()},
                Role.READERS: {"marketing": READER.encode()},
            },
        )

    def test_onlyRoutersNeeded(self) -> None:
        """
        Issuers and readers are optional: a collector may only ingest.
        """
        self.write(f'[routers]\nr1 = "{ROUTER_1}"\n')
        self.assertEqual(load_tokens(self.path).by_role, {Role.ROUTERS: {"r1": ROUTER_1.encode()}})

    def test_modeRefused(self) -> None:
        """
        A tokens file that group or others may read is refused with the chmod fix; 0400 is
        fine.
        """
        for mode in [0o640, 0o604, 0o644]:
            self.refused(GOOD, f"{mode:04o}", "chmod 600", mode=mode)
        self.write(GOOD, 0o400)
        self.assertIn(Role.READERS, load_tokens(self.path).by_role)

    def test_missingFile(self) -> None:
        """
        A missing tokens file is refused, naming it.
        """
        message = str(self.assertRaises(TokensError, load_tokens, self.path))
        self.assertIn(self.path.path, message)
        self.assertIn("cannot be opened", message)

    def test_symlinkRefused(self) -> None:
        """
        A tokens file behind a symbolic link is refused.
        """
        target = self.path.sibling("real.toml")
        target.setContent(GOOD.encode())
        os.chmod(target.path, 0o600)
        os.symlink(target.path, self.path.path)
        self.assertRaises(TokensError, load_tokens, self.path)

    def test_oversizeRefused(self) -> None:
        """
        A tokens file over 1 MiB is refused before it is parsed.
        """
        self.refused(GOOD + "#" * (1024 * 1024) + "\n", "over 1048576 bytes")

    def test_badToml(self) -> None:
        """
        Text that is not TOML, or not UTF-8, is refused as not valid TOML.
        """
        for text in [
            "[routers\n",
            'r1 = "x" = "y"\n',
            f'[routers]\nr1 = "{ROUTER_1}"\nr1 = "{ROUTER_2}"\n',
            f'[routers]\nr1 = "{ROUTER_1}"\n[routers]\n',
            b'[routers]\nr1 = "\xff\xfe-0123456789abcdef"\n',
        ]:
            self.refused(text, "not valid TOML")

    def test_unknownSection(self) -> None:
        """
        A table other than the three roles is refused, naming it and the known ones; so is
        a top-level key, or a misspelt role.
        """
        for text, name in [
            (GOOD + '[admins]\nroot = "admin-token-0123456789"\n', "[admins]"),
            (GOOD + "[router]\n", "[router]"),
            (GOOD + "[Readers]\n", "[Readers]"),
            (f'stray = "{ROUTER_1}"\n' + GOOD, "[stray]"),
        ]:
            self.refused(text, name, "unknown", "[routers], [issuers] and [readers]")

    def test_roleNotATable(self) -> None:
        """
        A role given as a plain value rather than a table is refused.
        """
        self.refused(f'routers = "{ROUTER_1}"\n', "[routers] must be a table")
        self.refused("routers = [1, 2]\n", "[routers] must be a table")

    def test_badNames(self) -> None:
        """
        A name outside 1 to 64 of C{A-Z a-z 0-9 . _ -} is refused; 64 is the bound.
        """
        for name in ['""', '"has space"', '"a/b"', '"été"', '"x\\u0000"', '"' + "n" * 65 + '"']:
            self.refused(f'[routers]\n{name} = "{ROUTER_1}"\n', "a name is")
        self.write(f'[routers]\n"{"n" * 64}" = "{ROUTER_1}"\n')
        self.assertIn("n" * 64, load_tokens(self.path).by_role[Role.ROUTERS])

    def test_controlCharactersStayOnOneLine(self) -> None:
        """
        A name or a section with a line break in it is refused in one line: the message
        shows it escaped, so a log line cannot be forged from the tokens file.
        """
        self.refused(f'[routers]\n"x\\ny" = "{ROUTER_1}"\n', "a name is")
        self.refused('["evil\\nline"]\n', "unknown")

    def test_nestedTableIsABadName(self) -> None:
        """
        A dotted key (a table inside a role) is refused rather than taken as a token.
        """
        self.refused(f'[routers]\nr1.sub = "{ROUTER_1}"\n', "routers.r1", "a token is")

    def test_badTokens(self) -> None:
        """
        A token that is short, long, not visible ASCII or not a string is refused with a way
        to make a good one; 16 and 256 characters are the bounds.
        """
        for value in [
            '"0123456789abcde"',  # 15
            '"' + "a" * 257 + '"',
            '"0123456789abcdeé"',
            '"0123456789abcdef "',
            '"0123456789 abcdef"',
            '"0123456789abcdef\\t"',
            '"0123456789abcdef\\n"',
            '"0123456789abcdef\\u0000"',
            '""',
            "1234567890123456789",
            "true",
            '["0123456789abcdef"]',
        ]:
            self.refused(f"[routers]\nr1 = {value}\n", "routers.r1", "openssl rand -hex 32")
        for token in ["a" * 16, "~" * 256, "!#$%&'()*+,-./:;"]:
            self.write(f'[routers]\nr1 = """{token}"""\n')
            self.assertEqual(load_tokens(self.path).by_role[Role.ROUTERS]["r1"], token.encode())

    def test_reusedToken(self) -> None:
        """
        One token for two holders, in one role or across roles, is refused: every holder
        gets its own, so one can be revoked alone.
        """
        self.refused(
            f'[routers]\nr1 = "{ROUTER_1}"\nr2 = "{ROUTER_1}"\n', "routers.r2", "routers.r1"
        )
        self.refused(
            f'[routers]\nr1 = "{ROUTER_1}"\n[readers]\nboss = "{ROUTER_1}"\n',
            "readers.boss",
            "routers.r1",
            "give every holder its own",
        )
        self.refused(
            f'[routers]\nr1 = "{ROUTER_1}"\n'
            f'[issuers]\nm = "{READER}"\n[readers]\nx = "{READER}"\n',
            "reuses the token",
        )

    def test_noRouters(self) -> None:
        """
        Without a router token nothing could sync: refused, empty or absent.
        """
        for text in ["", "[routers]\n", f'[readers]\nboss = "{READER}"\n']:
            self.refused(text, "[routers] holds no token")


class HolderTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.tokens = Tokens(
            {
                Role.ROUTERS: {"r1": ROUTER_1.encode(), "r2": ROUTER_2.encode()},
                Role.ISSUERS: {"mailer": ISSUER.encode()},
                Role.READERS: {"marketing": READER.encode()},
            }
        )

    def test_bearer(self) -> None:
        """
        C{Bearer <token>} names its holder in its role; the scheme is case-insensitive.
        """
        self.assertEqual(self.tokens.holder(Role.ROUTERS, bearer(ROUTER_2)), "r2")
        self.assertEqual(self.tokens.holder(Role.READERS, bearer(READER)), "marketing")
        self.assertEqual(self.tokens.holder(Role.ISSUERS, bearer(ISSUER)), "mailer")
        for scheme in [b"bearer", b"BEARER", b"bEaReR"]:
            value = scheme + b" " + ROUTER_1.encode()
            self.assertEqual(self.tokens.holder(Role.ROUTERS, value), "r1")

    def test_basic(self) -> None:
        """
        HTTP Basic with any user name (even empty) and the token as password names the
        holder; the user name is not a holder's name.
        """
        for user in [b"", b"anyone", b"marketing", b"r1", b"\xff\xfe"]:
            self.assertEqual(self.tokens.holder(Role.READERS, basic(user, READER)), "marketing")
        self.assertEqual(
            self.tokens.holder(Role.READERS, b"basic " + basic(b"u", READER)[6:]), "marketing"
        )

    def test_basicWithoutPassword(self) -> None:
        """
        Basic credentials without a colon, or with the token as the user name, name nobody.
        """
        no_colon = b"Basic " + base64.b64encode(READER.encode())
        self.assertIsNone(self.tokens.holder(Role.READERS, no_colon))
        self.assertIsNone(self.tokens.holder(Role.READERS, basic(READER.encode(), b"")))

    def test_basicGarbage(self) -> None:
        """
        Basic credentials that are not base64 (bad characters, bad padding) name nobody and
        raise nothing.
        """
        for value in [b"!!!!", b"abc", b"a===", b"%%%%%%%%", b"\xff\xfe\x00", b"", b"=" * 8]:
            self.assertIsNone(self.tokens.holder(Role.READERS, b"Basic " + value))

    def test_wrongScheme(self) -> None:
        """
        Any other scheme, or a token without a scheme, names nobody.
        """
        for value in [
            b"Token " + READER.encode(),
            b"Digest " + READER.encode(),
            b"Bearer" + READER.encode(),
            READER.encode(),
            b"Bearer:" + READER.encode(),
            b"Bearer\t" + READER.encode(),
        ]:
            self.assertIsNone(self.tokens.holder(Role.READERS, value), value)

    def test_empty(self) -> None:
        """
        No header, an empty one, or a scheme without a token names nobody.
        """
        for value in [None, b"", b" ", b"Bearer", b"Bearer ", b"Bearer    ", b"Basic", b"Basic "]:
            self.assertIsNone(self.tokens.holder(Role.READERS, value), value)

    def test_whitespace(self) -> None:
        """
        Spaces around the header's value and between scheme and token are tolerated; a
        token cut, extended or padded inside is not the token.
        """
        token = READER.encode()
        for value in [
            b"  Bearer " + token,
            b"Bearer " + token + b"  ",
            b"Bearer    " + token,
            b"\tBearer " + token + b"\r\n",
        ]:
            self.assertEqual(self.tokens.holder(Role.READERS, value), "marketing", value)
        for value in [
            b"Bearer " + token[:-1],
            b"Bearer " + token + b"x",
            b"Bearer " + token[:5] + b" " + token[5:],
            b"Bearer " + token + b" " + token,
            b"Bearer " + token.upper(),
            b"Bearer " + token + b"\x00",
        ]:
            self.assertIsNone(self.tokens.holder(Role.READERS, value), value)

    def test_roleIsChecked(self) -> None:
        """
        A token is only good for its own role: a reader cannot send events, a router cannot
        read stats, an issuer can do neither.
        """
        self.assertIsNone(self.tokens.holder(Role.ROUTERS, bearer(READER)))
        self.assertIsNone(self.tokens.holder(Role.ROUTERS, bearer(READER), "marketing"))
        self.assertIsNone(self.tokens.holder(Role.READERS, bearer(ROUTER_1)))
        self.assertIsNone(self.tokens.holder(Role.ROUTERS, bearer(ISSUER)))
        self.assertIsNone(self.tokens.holder(Role.READERS, basic(b"u", ISSUER)))

    def test_routerName(self) -> None:
        """
        With a claimed router name, only that router's own token is accepted: r1's token
        with C{X-Linkrouter-Router: r2} names nobody.
        """
        self.assertEqual(self.tokens.holder(Role.ROUTERS, bearer(ROUTER_1), "r1"), "r1")
        self.assertIsNone(self.tokens.holder(Role.ROUTERS, bearer(ROUTER_1), "r2"))
        self.assertIsNone(self.tokens.holder(Role.ROUTERS, bearer(ROUTER_2), "r1"))
        self.assertIsNone(self.tokens.holder(Role.ROUTERS, bearer(ROUTER_1), "unknown"))
        self.assertIsNone(self.tokens.holder(Role.ROUTERS, bearer(ROUTER_1), ""))
        self.assertIsNone(self.tokens.holder(Role.ROUTERS, bearer(ROUTER_1), "R1"))

    def test_roleWithoutTokens(self) -> None:
        """
        A role with no tokens at all names nobody, whatever is presented.
        """
        tokens = Tokens({Role.ROUTERS: {"r1": ROUTER_1.encode()}})
        self.assertIsNone(tokens.holder(Role.READERS, bearer(ROUTER_1)))
        self.assertIsNone(tokens.holder(Role.READERS, None))

    @settings(max_examples=300, deadline=None)
    @given(
        st.tuples(st.sampled_from([b"", b"Bearer ", b"Basic ", b"basic  "]), st.binary()).map(
            b"".join
        )
    )
    def test_anyHeaderIsSafe(self, header: bytes) -> None:
        """
        Any bytes at all after any scheme raise nothing and name nobody.
        """
        for role in Role:
            self.assertIsNone(self.tokens.holder(role, header))

    @settings(max_examples=200, deadline=None)
    @given(st.sampled_from([ROUTER_1, ROUTER_2]), st.integers(0, 24), st.binary(min_size=1))
    def test_alteredTokenRefused(self, token: str, index: int, replacement: bytes) -> None:
        """
        A token with any one character replaced by anything else names nobody.
        """
        raw = token.encode()
        changed = raw[:index] + replacement + raw[index + 1 :]
        if changed.strip() in (ROUTER_1.encode(), ROUTER_2.encode()):
            return  # unchanged, or only padded with the spaces a header may carry
        self.assertIsNone(self.tokens.holder(Role.ROUTERS, bearer(changed)))
        self.assertIsNone(self.tokens.holder(Role.ROUTERS, basic(b"u", changed)))
