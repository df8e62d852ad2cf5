# -*- test-case-name: tests.test_config,tests.test_collector_config -*-
"""
The checks shared by the router's and the collector's TOML configurations.

Every problem becomes one L{ConfigError} line naming the key, the bad value and the fix, so a
misconfigured daemon fails when it is deployed, not at its first request.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from twisted.python.filepath import FilePath

__all__ = [
    "PATH",
    "ConfigError",
    "Schema",
    "absolute_paths",
    "at_most",
    "boolean",
    "host",
    "is_loopback",
    "port",
    "positive",
    "read_document",
    "schema_values",
    "string",
]

Schema = Mapping[str, Mapping[str, tuple[str, Callable[[object], Any]]]]
"""Section (C{""} for the top level) -> key -> (the config's field, its check)."""


class ConfigError(ValueError):
    """
    The configuration is unusable; the message is the one line to show the operator.
    """


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("is not a string")
    try:
        ipaddress.ip_address(value)
    except ValueError:
        if value != "localhost":
            raise ValueError("is not an IP address (or localhost)") from None
    return value


def port(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 65535:
        raise ValueError("is not a port number (0 to 65535)")
    return value


def positive(kind: type) -> Callable[[object], Any]:
    def check(value: object) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("is not a number")
        if value <= 0 or (kind is int and not isinstance(value, int)):
            raise ValueError(f"is not a positive {'whole ' if kind is int else ''}number")
        return value

    return check


def at_most(limit: int, check: Callable[[object], Any]) -> Callable[[object], Any]:
    def bounded(value: object) -> Any:
        checked = check(value)
        if checked > limit:
            raise ValueError(f"is over {limit}")
        return checked

    return bounded


def string(pattern: str, hint: str) -> Callable[[object], str]:
    def check(value: object) -> str:
        if not isinstance(value, str) or not re.fullmatch(pattern, value):
            raise ValueError(f"is not {hint}")
        return value

    return check


def boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError("is not true or false")
    return value


PATH = string(r"[^\x00\n]+", "a path")


def read_document(path: FilePath[str]) -> dict[str, Any]:
    """
    The TOML document at C{path}.

    @raise ConfigError: it cannot be read or is not TOML.
    """
    try:
        text = path.getContent()
    except OSError as error:
        raise ConfigError(f"config {path.path} cannot be read: {error.strerror}") from None
    try:
        return tomllib.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"config {path.path} is not valid TOML: {error}") from None


def schema_values(document: dict[str, Any], schema: Schema) -> dict[str, Any]:
    """
    The checked values of C{document} by field name.

    @raise ConfigError: an unknown key or a bad value.
    """
    values: dict[str, Any] = {}
    for name, value in document.items():
        if name in schema and name:
            if not isinstance(value, dict):
                raise ConfigError(f"[{name}]: must be a table")
            table, prefix, section = value, f"{name}.", schema[name]
        elif name in schema[""]:
            table, prefix, section = {name: value}, "", schema[""]
        else:
            known = sorted([*schema[""], *(f"[{s}]" for s in schema if s)])
            raise ConfigError(f"{name}: unknown key; the known ones are {', '.join(known)}")
        for key, item in table.items():
            if key not in section:
                raise ConfigError(
                    f"{prefix}{key}: unknown key; [{name}] knows {', '.join(sorted(section))}"
                )
            field_name, check = section[key]
            try:
                values[field_name] = check(item)
            except ValueError as error:
                raise ConfigError(f"{prefix}{key}: {item!r} {error}") from None
    return values


def absolute_paths(values: dict[str, Any], fields: Iterable[str], base: FilePath[str]) -> None:
    """
    Turn the path C{fields} of C{values} into L{FilePath}s, relative ones taken from C{base}.
    """
    for field_name in set(fields) & values.keys():
        # os.path.join keeps an absolute path as it is and resolves a relative one here
        values[field_name] = FilePath(os.path.abspath(os.path.join(base.path, values[field_name])))
