# -*- test-case-name: tests.test_tap -*-
"""
C{twistd linkrouter}: the Link Router's service, composed from its configuration.

Only this module, the application's entry point, touches the global reactor.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.internet.interfaces import IReactorTCP
from twisted.python import usage
from twisted.python.filepath import FilePath
from twisted.web.http import Request
from twisted.web.server import Site

from .config import ConfigError, RouterConfig, load_config
from .keyfile import load_keyring
from .keys import Key, KeyringInvalid
from .resource import LinkResource

__all__ = ["Options", "QuietSite", "build_service", "makeService"]


class Options(usage.Options):
    """
    Command-line options of C{twistd linkrouter}.
    """

    optParameters: ClassVar[list[list[str | None]]] = [
        ["config", "c", None, "The router's TOML configuration file."]
    ]

    def postOptions(self) -> None:
        if self["config"] is None:
            raise usage.UsageError("--config PATH is required")


class QuietSite(Site):
    """
    A site that writes no access log: request paths carry destinations, which the router
    must never store.
    """

    def log(self, request: Request) -> None:
        pass


def build_service(config: RouterConfig, reactor: IReactorTCP) -> MultiService:
    """
    The router's services for C{config}; the keyring is loaded now, so a bad one stops
    start-up.
    """
    keys: Mapping[str, Key] = load_keyring(config.keyring).by_id
    site = QuietSite(LinkResource(lambda: keys))  # type: ignore[no-untyped-call]
    endpoint_type = TCP6ServerEndpoint if ":" in config.listen_host else TCP4ServerEndpoint
    endpoint = endpoint_type(reactor, config.listen_port, interface=config.listen_host)
    root = MultiService()
    listener = StreamServerEndpointService(endpoint, site)
    listener._raiseSynchronously = True
    listener.setServiceParent(root)
    return root


def makeService(options: Options) -> MultiService:
    """
    The entry point twistd calls: read the configuration and build the router.
    """
    from twisted.internet import reactor

    try:
        config = load_config(FilePath(options["config"]))
        return build_service(config, reactor)
    except (ConfigError, KeyringInvalid) as error:
        raise SystemExit(f"linkrouter: {error}") from None
