# -*- test-case-name: tests.test_config -*-
"""
The router's TOML configuration, checked completely before anything starts.

Every problem stops start-up with one line naming the key, the bad value and the fix: a
misconfigured router must fail when it is deployed, not at its first click.
"""

from __future__ import annotations

import ipaddress
import tomllib
from collections.abc import Mapping
from typing import Any

from attrs import frozen
from twisted.python.filepath import FilePath

__all__ = ["ConfigError", "RouterConfig", "load_config"]

_LOOPBACK_NAMES = {"localhost"}


class ConfigError(ValueError):
    """
    The configuration is unusable; the message is the one line to show the operator.
    """


@frozen
class RouterConfig:
    """
    What the router was told to do.
    """

    keyring: FilePath[str]
    listen_host: str = "127.0.0.1"
    listen_port: int = 8080


_KNOWN: Mapping[str, type] = {"keyring": str, "listen": dict}
_KNOWN_LISTEN: Mapping[str, type] = {"host": str, "port": int}


def _typed(table: dict[str, Any], known: Mapping[str, type], where: str) -> None:
    for name, value in table.items():
        if name not in known:
            raise ConfigError(
                f"{where}{name}: unknown key; the known keys are {', '.join(sorted(known))}"
            )
        if not isinstance(value, known[name]) or isinstance(value, bool):
            raise ConfigError(f"{where}{name}: {value!r} is not a {known[name].__name__}")


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_config(path: FilePath[str]) -> RouterConfig:
    """
    Read and check the configuration file at C{path}.

    @raise ConfigError: the file is missing or invalid.
    """
    try:
        text = path.getContent()
    except OSError as error:
        raise ConfigError(f"config {path.path} cannot be read: {error.strerror}") from None
    try:
        document = tomllib.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"config {path.path} is not valid TOML: {error}") from None
    _typed(document, _KNOWN, "")
    if "keyring" not in document:
        raise ConfigError("keyring: missing; give the path of the keyring file")
    listen = document.get("listen", {})
    _typed(listen, _KNOWN_LISTEN, "listen.")
    config = RouterConfig(
        keyring=path.parent().preauthChild(document["keyring"])
        if not document["keyring"].startswith("/")
        else FilePath(document["keyring"]),
        listen_host=listen.get("host", "127.0.0.1"),
        listen_port=listen.get("port", 8080),
    )
    if not 0 <= config.listen_port <= 65535:
        raise ConfigError(f"listen.port: {config.listen_port} is not a port (0 to 65535)")
    if not _is_loopback(config.listen_host):
        raise ConfigError(
            f"listen.host: {config.listen_host!r} is not a loopback address; this version "
            "serves plain HTTP, which is only for loopback (use 127.0.0.1 or ::1)"
        )
    return config
