# -*- test-case-name: tests.test_collector_config -*-
"""
The collector's TOML configuration, checked completely before anything starts, like the
router's (C{linkrouter.config}); every key and its default is in C{docs/configuration.rst}.
"""

from __future__ import annotations

from typing import Any

from attrs import frozen
from twisted.python.filepath import FilePath

from ..configschema import (
    PATH,
    ConfigError,
    Schema,
    absolute_paths,
    at_most,
    boolean,
    host,
    is_loopback,
    port,
    positive,
    read_document,
    schema_values,
)

__all__ = ["CollectorConfig", "ConfigError", "load_collector_config"]


@frozen
class CollectorConfig:
    """
    What the collector was told to do; paths are absolute.
    """

    tokens_file: FilePath[str]
    store: str = "sqlite"
    database: FilePath[str] | None = None
    dsn: str | None = None
    listen_host: str = "127.0.0.1"
    listen_port: int = 8443
    tls: bool = True
    behind_proxy: bool = False
    certificate: FilePath[str] | None = None
    private_key: FilePath[str] | None = None
    max_body_bytes: int = 16 * 1024 * 1024
    max_inflated_bytes: int = 64 * 1024 * 1024
    max_events: int = 100_000
    geoip_mmdb: FilePath[str] | None = None
    scanners_file: FilePath[str] | None = None
    too_soon_seconds: int = 10
    burst_seconds: int = 10
    burst_links: int = 3


def _store(value: object) -> str:
    if value not in ("sqlite", "postgresql"):
        raise ValueError('is not "sqlite" or "postgresql"')
    assert isinstance(value, str)
    return value


def _dsn(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("is not a PostgreSQL connection string")
    authority = value.partition("://")[2].partition("/")[0]
    if "password" in value.lower() or ":" in authority.rpartition("@")[0]:
        raise ValueError("holds a password; keep it out of the config, in ~/.pgpass or PGPASSFILE")
    return value


def _seconds(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 86400:
        raise ValueError("is not whole seconds from 0 to 86400")
    return value


_SCHEMA: Schema = {
    "": {},
    "listen": {
        "host": ("listen_host", host),
        "port": ("listen_port", port),
        "tls": ("tls", boolean),
        "behind_proxy": ("behind_proxy", boolean),
        "certificate": ("certificate", PATH),
        "private_key": ("private_key", PATH),
    },
    "auth": {"tokens_file": ("tokens_file", PATH)},
    "store": {
        "backend": ("store", _store),
        "database": ("database", PATH),
        "dsn": ("dsn", _dsn),
    },
    "ingest": {
        "max_body_bytes": ("max_body_bytes", at_most(1024**3, positive(int))),
        "max_inflated_bytes": ("max_inflated_bytes", at_most(4 * 1024**3, positive(int))),
        "max_events": ("max_events", at_most(1_000_000, positive(int))),
    },
    "enrich": {
        "geoip_mmdb": ("geoip_mmdb", PATH),
        "scanners_file": ("scanners_file", PATH),
        "too_soon_seconds": ("too_soon_seconds", _seconds),
        "burst_seconds": ("burst_seconds", _seconds),
        "burst_links": ("burst_links", at_most(1000, positive(int))),
    },
}
_PATH_FIELDS = {
    "tokens_file",
    "database",
    "certificate",
    "private_key",
    "geoip_mmdb",
    "scanners_file",
}


def load_collector_config(path: FilePath[str]) -> CollectorConfig:
    """
    Read and check the collector's configuration at C{path}; relative paths in it are taken
    from the file's directory.

    @raise ConfigError: the file is missing or invalid.
    """
    values: dict[str, Any] = schema_values(read_document(path), _SCHEMA)
    if "tokens_file" not in values:
        raise ConfigError("auth.tokens_file: missing; see docs/configuration.rst")
    absolute_paths(values, _PATH_FIELDS, path.parent())
    if values.get("store", "sqlite") == "sqlite":
        if "dsn" in values:
            raise ConfigError('store.dsn: only for backend = "postgresql"')
        values.setdefault("database", path.parent().child("collector.sqlite3"))
    elif "dsn" not in values:
        raise ConfigError('store.dsn: required with backend = "postgresql"')
    elif "database" in values:
        raise ConfigError('store.database: only for backend = "sqlite"')
    config = CollectorConfig(**values)
    if config.tls and (config.certificate is None or config.private_key is None):
        raise ConfigError(
            "listen.certificate and listen.private_key: required with TLS; or set "
            "listen.tls = false on a loopback address or behind a TLS-terminating proxy"
        )
    if not config.tls and not (is_loopback(config.listen_host) or config.behind_proxy):
        raise ConfigError(
            f"listen.tls: false on {config.listen_host!r} needs listen.behind_proxy = true "
            f"(a TLS-terminating proxy in front); tokens must not cross a network in clear"
        )
    return config
