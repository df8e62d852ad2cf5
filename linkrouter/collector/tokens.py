# -*- test-case-name: tests.test_collector_tokens -*-
"""
Who may do what at the collector: bearer tokens by role, from one 0600 TOML file.

Routers send events, issuers register links, readers see the stats and the dashboard. Every
check compares against every token of the role in constant time, so neither the answer's
timing nor its content says which part of a guess was right.
"""

from __future__ import annotations

import base64
import hmac
import re
import tomllib
from collections.abc import Mapping
from enum import Enum

from attrs import frozen
from twisted.python.filepath import FilePath

from ..privatefile import PrivateFileError, read_private_file

__all__ = ["Role", "Tokens", "TokensError", "load_tokens"]

_MAX_SIZE = 1024 * 1024
_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
_TOKEN = re.compile(r"[\x21-\x7e]{16,256}")


class TokensError(ValueError):
    """
    The tokens file cannot be used; the message names the file and the fix.
    """


class Role(Enum):
    ROUTERS = "routers"
    ISSUERS = "issuers"
    READERS = "readers"


@frozen
class Tokens:
    """
    Tokens by role, each by name (for a router, its router id).
    """

    by_role: Mapping[Role, Mapping[str, bytes]]

    def holder(
        self, role: Role, authorization: bytes | None, name: str | None = None
    ) -> str | None:
        """
        The name whose token C{authorization} carries, or C{None}.

        @param authorization: the C{Authorization} header: C{Bearer <token>}, or C{Basic}
            with any user name and the token as password (for browsers).
        @param name: when given (a router's C{X-Linkrouter-Router}), only that name's token
            is accepted.
        """
        presented = _presented(authorization)
        found = None
        for holder, token in self.by_role.get(role, {}).items():
            # every token is compared, so the time taken does not depend on which matched
            if hmac.compare_digest(presented, token) and (name is None or name == holder):
                found = holder
        return found if presented else None


def _presented(authorization: bytes | None) -> bytes:
    if not authorization:
        return b""
    scheme, _, value = authorization.strip().partition(b" ")
    scheme = scheme.lower()
    if scheme == b"bearer":
        return value.strip()
    if scheme == b"basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True)
        except ValueError:
            return b""
        return decoded.partition(b":")[2]
    return b""


def _shown(text: str) -> str:
    return repr(text)[1:-1][:80]  # a line break or control character stays on one line


def load_tokens(path: FilePath[str]) -> Tokens:
    """
    Read the tokens file: TOML tables C{[routers]}, C{[issuers]}, C{[readers]} of
    C{name = "token"}; mode 0600.

    @raise TokensError: one line naming the file, the problem and the fix.
    """
    try:
        text = read_private_file(path, "tokens file", _MAX_SIZE)
    except PrivateFileError as error:
        raise TokensError(str(error)) from None
    try:
        document = tomllib.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise TokensError(f"tokens file {path.path} is not valid TOML: {error}") from None
    by_role: dict[Role, dict[str, bytes]] = {}
    for section, table in document.items():
        try:
            role = Role(section)
        except ValueError:
            raise TokensError(
                f"tokens file {path.path}: [{_shown(section)}] is unknown; use [routers], "
                f"[issuers] "
                f"and [readers]"
            ) from None
        if not isinstance(table, dict):
            raise TokensError(f"tokens file {path.path}: [{section}] must be a table")
        for name, token in table.items():
            if not _NAME.fullmatch(name):
                raise TokensError(
                    f"tokens file {path.path}: {section}.{_shown(name)}: a name is 1 to 64 of "
                    f"A-Z a-z 0-9 . _ -"
                )
            if not isinstance(token, str) or not _TOKEN.fullmatch(token):
                raise TokensError(
                    f"tokens file {path.path}: {section}.{name}: a token is 16 to 256 "
                    f"visible ASCII characters (make one with: openssl rand -hex 32)"
                )
            by_role.setdefault(role, {})[name] = token.encode("ascii")
    seen: dict[bytes, str] = {}
    for role, tokens in by_role.items():
        for name, token in tokens.items():
            if token in seen:
                raise TokensError(
                    f"tokens file {path.path}: {role.value}.{name} reuses the token of "
                    f"{seen[token]}; give every holder its own"
                )
            seen[token] = f"{role.value}.{name}"
    if not by_role.get(Role.ROUTERS):
        raise TokensError(
            f"tokens file {path.path}: [routers] holds no token; no router could sync"
        )
    return Tokens(by_role)
