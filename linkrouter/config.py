# -*- test-case-name: tests.test_config -*-
"""
The router's TOML configuration, checked completely before anything starts.

Every problem stops start-up with one line naming the key, the bad value and the fix: a
misconfigured router must fail when it is deployed, not at its first click. Every key and
its default is listed in C{docs/configuration.rst}.
"""

from __future__ import annotations

import re

from attrs import frozen
from twisted.python.filepath import FilePath

from .configschema import (
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
    string,
)
from .event import IPStorage
from .trustedproxies import NO_PROXIES, TrustedProxies

__all__ = ["ConfigError", "RouterConfig", "load_config"]


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
    reuse_port: bool = False
    ocsp_response: FilePath[str] | None = None
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
    proxy_protocol: bool = False
    proxy_from: TrustedProxies = NO_PROXIES
    forwarded_for: bool = False
    certificates_directory: FilePath[str] | None = None
    blocklist_file: FilePath[str] | None = None


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


def _url(value: object) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"https?://[^\s/?#]+/\S*", value):
        raise ValueError("is not an http(s) URL with a path, like https://collector/v1/events")
    host = value.split("/")[2].rsplit(":", 1)[0].strip("[]")
    if value.startswith("http://") and not is_loopback(host):
        raise ValueError("uses plain http off loopback; the collector must be https")
    return value


def _proxies(value: object) -> TrustedProxies:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError('is not a list of addresses and networks, like ["10.0.0.0/8"]')
    return TrustedProxies.parse(value)


# section -> key -> (RouterConfig field, check)
_SCHEMA: Schema = {
    "": {
        "router_id": (
            "router_id",
            string(r"[A-Za-z0-9._-]{1,64}", "1 to 64 of A-Z a-z 0-9 . _ -"),
        ),
        "keyring": ("keyring", PATH),
    },
    "listen": {
        "host": ("listen_host", host),
        "port": ("listen_port", port),
        "tls": ("tls", boolean),
        "certificate": ("certificate", PATH),
        "private_key": ("private_key", PATH),
        "drain_seconds": ("drain_seconds", lambda v: 0.0 if v == 0 else positive(float)(v)),
        "proxy_protocol": ("proxy_protocol", boolean),
        "proxy_from": ("proxy_from", _proxies),
        "forwarded_for": ("forwarded_for", boolean),
        "certificates_directory": ("certificates_directory", PATH),
        "reuse_port": ("reuse_port", boolean),
        "ocsp_response": ("ocsp_response", PATH),
    },
    "journal": {
        "directory": ("journal_directory", PATH),
        "fsync": ("fsync_interval", _fsync),
        "segment_bytes": ("segment_bytes", positive(int)),
        "segment_seconds": ("segment_seconds", positive(float)),
        "queue_size": ("queue_size", positive(int)),
        "write_delay": (
            "write_delay",
            lambda v: 0.0 if v == 0 else at_most(1, positive(float))(v),
        ),
        "ip_storage": ("ip_storage", _ip_storage),
        "retention_seconds": ("retention_seconds", positive(float)),
        "max_bytes": ("max_journal_bytes", positive(int)),
    },
    "sync": {
        "url": ("sync_url", _url),
        "token_file": ("sync_token_file", PATH),
        "interval": ("sync_interval", positive(float)),
        "batch_events": ("sync_batch_events", at_most(100_000, positive(int))),
        "batch_bytes": ("sync_batch_bytes", at_most(64 * 1024 * 1024, positive(int))),
        "backoff_base": ("sync_backoff_base", positive(float)),
        "backoff_cap": ("sync_backoff_cap", positive(float)),
        "timeout": ("sync_timeout", positive(float)),
        "final_sync_seconds": ("sync_final_seconds", positive(float)),
        "ca_file": ("sync_ca_file", PATH),
        "client_certificate": ("sync_client_certificate", PATH),
        "client_key": ("sync_client_key", PATH),
    },
    "admin": {
        "host": ("admin_host", host),
        "port": ("admin_port", lambda v: None if v is False else port(v)),
    },
    "blocklist": {
        "file": ("blocklist_file", PATH),
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
    "certificates_directory",
    "blocklist_file",
    "ocsp_response",
}


def _check_balancers(config: RouterConfig) -> None:
    for key, wanted in [
        ("proxy_protocol", config.proxy_protocol),
        ("forwarded_for", config.forwarded_for),
    ]:
        if wanted and not config.proxy_from:
            raise ConfigError(
                f"listen.proxy_from: required with listen.{key} = true; list the balancers' "
                f'addresses or networks, like ["10.0.0.0/8"]'
            )


def load_config(path: FilePath[str]) -> RouterConfig:
    """
    Read and check the configuration file at C{path}; relative paths in it are taken from
    the file's directory.

    @raise ConfigError: the file is missing or invalid.
    """
    values = schema_values(read_document(path), _SCHEMA)
    for field_name, key in _REQUIRED.items():
        if field_name not in values:
            raise ConfigError(f"{key}: missing; see docs/configuration.rst")
    absolute_paths(values, _PATH_FIELDS, path.parent())
    config = RouterConfig(**values)
    if config.tls and (config.certificate is None or config.private_key is None):
        raise ConfigError(
            "listen.certificate and listen.private_key: required with TLS; or set "
            "listen.tls = false on a loopback address"
        )
    if not config.tls and not config.proxy_protocol and not is_loopback(config.listen_host):
        raise ConfigError(
            f"listen.tls: false is only allowed on a loopback address, not "
            f"{config.listen_host!r}; recipients' links must be HTTPS (behind a "
            f"TLS-terminating balancer, set listen.proxy_protocol = true)"
        )
    _check_balancers(config)
    if config.certificates_directory is not None and not config.tls:
        raise ConfigError("listen.certificates_directory: needs listen.tls = true")
    if config.ocsp_response is not None and not config.tls:
        raise ConfigError("listen.ocsp_response: only with TLS; remove it or set listen.tls")
    if config.sync_url is not None and config.sync_token_file is None:
        raise ConfigError("sync.token_file: required with sync.url (the collector's token)")
    if (config.sync_client_certificate is None) != (config.sync_client_key is None):
        raise ConfigError("sync.client_certificate and sync.client_key: give both or neither")
    if config.admin_port is not None and not is_loopback(config.admin_host):
        raise ConfigError(
            f"admin.host: {config.admin_host!r} is not loopback; metrics stay on loopback"
        )
    return config
