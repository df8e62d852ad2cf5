# -*- test-case-name: tests.test_config -*-
"""
The router's TOML configuration, checked completely before anything starts.

Every problem stops start-up with one line naming the key, the bad value and the fix: a
misconfigured router must fail when it is deployed, not at its first click. Every key and
its default is listed in C{docs/configuration.rst}.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from typing import Any

from attrs import frozen
from twisted.python.filepath import FilePath

from .event import IPStorage

__all__ = ["ConfigError", "RouterConfig", "load_config"]


class ConfigError(ValueError):
    """
    The configuration is unusable; the message is the one line to show the operator.
    """


@frozen
class RouterConfig:
    """
    What the router was told to do; paths are absolute.
    """

    router_id: str
    keyring: FilePath[str]
    journal_directory: FilePath[str]
    listen_host: str = "127.0.0.1"
    listen_port: int = 443
    tls: bool = True
    certificate: FilePath[str] | None = None
    private_key: FilePath[str] | None = None
    drain_seconds: float = 0.0
    fsync_interval: float | None = 0.2
    segment_bytes: int = 64 * 1024 * 1024
    segment_seconds: float = 3600.0
    queue_size: int = 10_000
    write_delay: float = 0.02
    ip_storage: IPStorage = IPStorage.FULL
    admin_host: str = "127.0.0.1"
    admin_port: int | None = 9110
    retention_seconds: float = 86400.0
    max_journal_bytes: int = 1024 * 1024 * 1024
    sync_url: str | None = None
    sync_token_file: FilePath[str] | None = None
    sync_interval: float = 5.0
    sync_batch_events: int = 5000
    sync_batch_bytes: int = 4 * 1024 * 1024
    sync_backoff_base: float = 1.0
    sync_backoff_cap: float = 300.0
    sync_timeout: float = 30.0
    sync_final_seconds: float = 5.0
    sync_ca_file: FilePath[str] | None = None
    sync_client_certificate: FilePath[str] | None = None
    sync_client_key: FilePath[str] | None = None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("is not a string")
    try:
        ipaddress.ip_address(value)
    except ValueError:
        if value != "localhost":
            raise ValueError("is not an IP address (or localhost)") from None
    return value


def _port(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 65535:
        raise ValueError("is not a port number (0 to 65535)")
    return value


def _positive(kind: type) -> Callable[[object], Any]:
    def check(value: object) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("is not a number")
        if value <= 0 or (kind is int and not isinstance(value, int)):
            raise ValueError(f"is not a positive {'whole ' if kind is int else ''}number")
        return value

    return check


def _at_most(limit: int, check: Callable[[object], Any]) -> Callable[[object], Any]:
    def bounded(value: object) -> Any:
        checked = check(value)
        if checked > limit:
            raise ValueError(f"is over {limit}")
        return checked

    return bounded


def _string(pattern: str, hint: str) -> Callable[[object], str]:
    def check(value: object) -> str:
        if not isinstance(value, str) or not re.fullmatch(pattern, value):
            raise ValueError(f"is not {hint}")
        return value

    return check


def _boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError("is not true or false")
    return value


def _fsync(value: object) -> float | None:
    if value == "always":
        return 0.0
    if value == "never":
        return None
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value <= 10:
        return float(value)
    raise ValueError('is not "always", "never" or seconds between 0 and 10')


def _ip_storage(value: object) -> IPStorage:
    try:
        return IPStorage(value)
    except ValueError:
        raise ValueError('is not "full", "truncated" or "none"') from None


_PATH = _string(r".+", "a path")


def _url(value: object) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"https?://[^\s/?#]+/\S*", value):
        raise ValueError("is not an http(s) URL with a path, like https://collector/v1/events")
    host = value.split("/")[2].rsplit(":", 1)[0].strip("[]")
    if value.startswith("http://") and not _is_loopback(host):
        raise ValueError("uses plain http off loopback; the collector must be https")
    return value


# section -> key -> (RouterConfig field, check)
_SCHEMA: Mapping[str, Mapping[str, tuple[str, Callable[[object], Any]]]] = {
    "": {
        "router_id": (
            "router_id",
            _string(r"[A-Za-z0-9._-]{1,64}", "1 to 64 of A-Z a-z 0-9 . _ -"),
        ),
        "keyring": ("keyring", _PATH),
    },
    "listen": {
        "host": ("listen_host", _host),
        "port": ("listen_port", _port),
        "tls": ("tls", _boolean),
        "certificate": ("certificate", _PATH),
        "private_key": ("private_key", _PATH),
        "drain_seconds": ("drain_seconds", lambda v: 0.0 if v == 0 else _positive(float)(v)),
    },
    "journal": {
        "directory": ("journal_directory", _PATH),
        "fsync": ("fsync_interval", _fsync),
        "segment_bytes": ("segment_bytes", _positive(int)),
        "segment_seconds": ("segment_seconds", _positive(float)),
        "queue_size": ("queue_size", _positive(int)),
        "write_delay": (
            "write_delay",
            lambda v: 0.0 if v == 0 else _at_most(1, _positive(float))(v),
        ),
        "ip_storage": ("ip_storage", _ip_storage),
        "retention_seconds": ("retention_seconds", _positive(float)),
        "max_bytes": ("max_journal_bytes", _positive(int)),
    },
    "sync": {
        "url": ("sync_url", _url),
        "token_file": ("sync_token_file", _PATH),
        "interval": ("sync_interval", _positive(float)),
        "batch_events": ("sync_batch_events", _at_most(100_000, _positive(int))),
        "batch_bytes": ("sync_batch_bytes", _at_most(64 * 1024 * 1024, _positive(int))),
        "backoff_base": ("sync_backoff_base", _positive(float)),
        "backoff_cap": ("sync_backoff_cap", _positive(float)),
        "timeout": ("sync_timeout", _positive(float)),
        "final_sync_seconds": ("sync_final_seconds", _positive(float)),
        "ca_file": ("sync_ca_file", _PATH),
        "client_certificate": ("sync_client_certificate", _PATH),
        "client_key": ("sync_client_key", _PATH),
    },
    "admin": {
        "host": ("admin_host", _host),
        "port": ("admin_port", lambda v: None if v is False else _port(v)),
    },
}
_REQUIRED = {
    "router_id": "router_id",
    "keyring": "keyring",
    "journal_directory": "journal.directory",
}
_PATH_FIELDS = {
    "keyring",
    "journal_directory",
    "certificate",
    "private_key",
    "sync_token_file",
    "sync_ca_file",
    "sync_client_certificate",
    "sync_client_key",
}


def _values(document: dict[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, value in document.items():
        if name in _SCHEMA and name:
            if not isinstance(value, dict):
                raise ConfigError(f"[{name}]: must be a table")
            table, prefix = value, f"{name}."
            schema = _SCHEMA[name]
        elif name in _SCHEMA[""]:
            table, prefix, schema = {name: value}, "", _SCHEMA[""]
        else:
            known = sorted([*_SCHEMA[""], *(f"[{s}]" for s in _SCHEMA if s)])
            raise ConfigError(f"{name}: unknown key; the known ones are {', '.join(known)}")
        for key, item in table.items():
            if key not in schema:
                raise ConfigError(
                    f"{prefix}{key}: unknown key; [{name}] knows {', '.join(sorted(schema))}"
                )
            field_name, check = schema[key]
            try:
                values[field_name] = check(item)
            except ValueError as error:
                raise ConfigError(f"{prefix}{key}: {item!r} {error}") from None
    return values


def load_config(path: FilePath[str]) -> RouterConfig:
    """
    Read and check the configuration file at C{path}; relative paths in it are taken from
    the file's directory.

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
    values = _values(document)
    for field_name, key in _REQUIRED.items():
        if field_name not in values:
            raise ConfigError(f"{key}: missing; see docs/configuration.rst")
    for field_name in _PATH_FIELDS & values.keys():
        # os.path.join keeps an absolute path as it is and resolves a relative one here
        values[field_name] = FilePath(
            os.path.abspath(os.path.join(path.parent().path, values[field_name]))
        )
    config = RouterConfig(**values)
    if config.tls and (config.certificate is None or config.private_key is None):
        raise ConfigError(
            "listen.certificate and listen.private_key: required with TLS; or set "
            "listen.tls = false on a loopback address"
        )
    if not config.tls and not _is_loopback(config.listen_host):
        raise ConfigError(
            f"listen.tls: false is only allowed on a loopback address, not "
            f"{config.listen_host!r}; recipients' links must be HTTPS"
        )
    if config.sync_url is not None and config.sync_token_file is None:
        raise ConfigError("sync.token_file: required with sync.url (the collector's token)")
    if (config.sync_client_certificate is None) != (config.sync_client_key is None):
        raise ConfigError("sync.client_certificate and sync.client_key: give both or neither")
    if config.admin_port is not None and not _is_loopback(config.admin_host):
        raise ConfigError(
            f"admin.host: {config.admin_host!r} is not loopback; metrics stay on loopback"
        )
    return config
