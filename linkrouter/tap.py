# -*- test-case-name: tests.test_tap -*-
"""
C{twistd linkrouter}: the Link Router's services, composed from its configuration.

Only this module, the application's entry point, touches the global reactor. Start-up reads
and checks everything (config, keyring, certificate, journal directory) before listening, so
a bad deployment fails at once with one line.
"""

from __future__ import annotations

import random
from contextlib import suppress
from functools import partial
from typing import Any, ClassVar, cast

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService
from twisted.internet.defer import CancelledError, Deferred, maybeDeferred
from twisted.internet.endpoints import SSL4ServerEndpoint, TCP4ServerEndpoint
from twisted.internet.interfaces import Binding, IOpenSSLServerConnectionCreator
from twisted.internet.task import deferLater
from twisted.internet.tcp import makeBinding
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python import usage
from twisted.python.filepath import FilePath

from .blocklist import BlockListError
from .collectorclient import TokenError, collector_client, load_token
from .config import ConfigError, RouterConfig, load_config
from .journal import JournalError, SegmentJournal
from .journalservice import JournalService, RunBlocking
from .keys import KeyringInvalid
from .metrics import MetricsResource, RouterMetrics
from .proxyprotocol import ProxyFactory
from .reload import Reloader, load_material, reload_on_hangup
from .resource import LinkResource
from .site import LinkSite, QuietSite
from .sni import CurrentContexts
from .sync import HTTPClient, SyncService, SyncSettings
from .tls import TLSError
from .worker import SerialWorker

__all__ = [
    "Options",
    "RouterService",
    "build_service",
    "makeService",
    "public_port",
]

CLIENT_TIMEOUT = 30
"""Seconds an idle or slow client may hold a connection."""


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


class RouterService(MultiService):
    """
    The router: journal, sync, public listener and admin listener, started in that order.

    C{MultiService} stops its children all at once; a router must stop in order, so that no
    click is lost: C{/healthz} turns 503 (the balancer moves traffic away), the public
    listener closes after C{drain_seconds}, the journal writes out its queue and fsyncs, sync
    makes one last bounded attempt, then the worker threads and the admin listener stop.
    """

    def __init__(
        self,
        resource: LinkResource,
        journal: JournalService,
        sync: SyncService | None,
        public: StreamServerEndpointService,
        admin: StreamServerEndpointService | None,
        pools: list[SerialWorker],
        clock: Any,
        drain_seconds: float,
        reloader: Reloader | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.resource = resource
        self.journal = journal
        self.sync = sync
        self.public = public
        self.admin = admin
        self._pools = pools
        self._clock = clock
        self._drain_seconds = drain_seconds
        self.reloader = reloader
        """Swaps in a new keyring, certificates and block list: C{reloader.reload()}."""
        for child in [journal, sync, public, admin]:
            if child is not None:
                child.setServiceParent(self)  # type: ignore[no-untyped-call]

    def startService(self) -> None:
        for pool in self._pools:
            pool.start()
        super().startService()  # type: ignore[no-untyped-call]

    def stopService(self) -> Deferred[None]:
        self.running = 0
        self.resource.draining = True
        return Deferred.fromCoroutine(self._stop_in_order())

    async def _stop_in_order(self) -> None:
        try:
            if self._drain_seconds:
                await deferLater(self._clock, self._drain_seconds)
            await maybeDeferred(self.public.stopService)
            await self.journal.stopService()
            if self.sync is not None:
                # if the last attempt runs out of time, the journal keeps the rest
                with suppress(CancelledError):
                    await self.sync.stopService()
            if self.admin is not None:
                await maybeDeferred(self.admin.stopService)
        finally:
            for pool in self._pools:
                pool.stop()


def _worker(reactor: Any, name: str, pools: list[SerialWorker]) -> RunBlocking:
    worker = SerialWorker(reactor, name)
    pools.append(worker)
    return worker


def public_port(config: RouterConfig) -> int | Binding:
    """
    The public listener's port: with C{listen.reuse_port}, a binding with C{SO_REUSEPORT},
    so that several router processes (of the same user) listen on one port and the kernel
    spreads new connections among them.

    The binding names the address too, and Twisted requires the C{interface} given with it
    to be the same, which also picks IPv6 for an IPv6 address.
    """
    if not config.reuse_port:
        return config.listen_port
    return makeBinding(config.listen_host, config.listen_port, reuseAddress=True, reusePort=True)


def _behind_balancer(
    config: RouterConfig, reactor: Any, site: LinkSite, contexts: CurrentContexts | None
) -> tuple[Any, Any]:
    """
    The public endpoint and factory for C{listen.proxy_protocol}: raw TCP, then the PROXY
    header, then TLS with the current (reloadable) certificates unless the balancer
    terminates it, then HTTP.
    """
    factory: Any = site
    if contexts is not None:
        creator = cast(IOpenSSLServerConnectionCreator, contexts)  # zope: not seen by mypy
        factory = TLSMemoryBIOFactory(creator, False, factory)
    endpoint = TCP4ServerEndpoint(reactor, public_port(config), interface=config.listen_host)
    return endpoint, ProxyFactory(factory, config.proxy_from)


def build_service(
    config: RouterConfig,
    reactor: Any,
    run_blocking: RunBlocking | None = None,
    http: HTTPClient | None = None,
) -> RouterService:
    """
    The router for C{config}; everything is loaded and checked now, so a bad keyring,
    certificate, token or journal directory stops start-up.

    @param run_blocking: how disk work runs; by default on one thread for the journal and
        one for sync.
    @param http: the client sync uses; by default treq with verified TLS.
    """
    reloader = Reloader(partial(load_material, config))
    segments = SegmentJournal(
        config.journal_directory,
        segment_bytes=config.segment_bytes,
        segment_seconds=config.segment_seconds,
    )
    segments.check()
    metrics = RouterMetrics()
    pools: list[SerialWorker] = []
    journal = JournalService(
        segments,
        config.router_id,
        reactor,
        run_blocking or _worker(reactor, "linkrouter-journal", pools),
        fsync_interval=config.fsync_interval,
        queue_size=config.queue_size,
        ip_storage=config.ip_storage,
        on_fsync=metrics.fsync.observe,
        max_bytes=config.max_journal_bytes,
        write_delay=config.write_delay,
    )
    metrics.watch(journal)
    sync = None
    if config.sync_url is not None:
        assert config.sync_token_file is not None
        settings = SyncSettings(
            url=config.sync_url,
            token=load_token(config.sync_token_file),
            router_id=config.router_id,
            interval=config.sync_interval,
            max_events=config.sync_batch_events,
            max_bytes=config.sync_batch_bytes,
            backoff_base=config.sync_backoff_base,
            backoff_cap=config.sync_backoff_cap,
            timeout=config.sync_timeout,
            retention_seconds=config.retention_seconds,
            final_sync_seconds=config.sync_final_seconds,
        )
        if http is None:
            client: Any = collector_client(
                reactor,
                config.sync_ca_file,
                config.sync_client_certificate,
                config.sync_client_key,
            )
            http = client
        sync = SyncService(
            config.journal_directory,
            settings,
            http,
            reactor,
            run_blocking or _worker(reactor, "linkrouter-sync", pools),
            random.uniform,
            on_removed=journal.released,
        )
        metrics.watch_sync(sync, journal)
    resource = LinkResource(
        lambda: reloader.current.keys,
        journal.record,
        metrics.observe,
        reactor.seconds,
        lambda: reloader.current.blocklist,
    )
    site = LinkSite(
        resource,
        timeout=CLIENT_TIMEOUT,
        forwarded_for=config.proxy_from if config.forwarded_for else None,
    )
    contexts = CurrentContexts(lambda: reloader.current.contexts) if config.tls else None
    factory: Any = site
    if config.proxy_protocol:
        endpoint, factory = _behind_balancer(config, reactor, site, contexts)
    elif contexts is not None:
        endpoint = SSL4ServerEndpoint(
            reactor, public_port(config), contexts, interface=config.listen_host
        )
    else:
        endpoint = TCP4ServerEndpoint(reactor, public_port(config), interface=config.listen_host)
    public = StreamServerEndpointService(endpoint, factory)
    public._raiseSynchronously = True
    admin = None
    if config.admin_port is not None:
        admin_site = QuietSite(MetricsResource(metrics))  # type: ignore[no-untyped-call]
        admin = StreamServerEndpointService(
            TCP4ServerEndpoint(reactor, config.admin_port, interface=config.admin_host),
            admin_site,
        )
        admin._raiseSynchronously = True
    return RouterService(
        resource, journal, sync, public, admin, pools, reactor, config.drain_seconds, reloader
    )


def makeService(options: Options) -> RouterService:
    """
    The entry point twistd calls: read the configuration and build the router.
    """
    from twisted.internet import reactor

    try:
        config = load_config(FilePath(options["config"]))
        service = build_service(config, reactor)
    except (
        ConfigError,
        KeyringInvalid,
        TLSError,
        JournalError,
        TokenError,
        BlockListError,
    ) as error:
        raise SystemExit(f"linkrouter: {error}") from None
    assert service.reloader is not None
    reload_on_hangup(reactor, service.reloader.reload)
    return service
