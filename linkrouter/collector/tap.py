# -*- test-case-name: tests.test_collector_tap -*-
"""
C{twistd linkcollector}: the collector's service, built from its configuration.

Everything that can be checked before the reactor runs is (configuration, tokens, TLS
material, GeoIP and scanner data), so a bad deployment stops with one line. The store is
opened (and migrated) when the service starts; the listener opens only after that, so no
request ever meets a store that is not ready, and a store that cannot be opened stops the
process with a non-zero status.
"""

from __future__ import annotations

import gc
import os
from typing import Any, ClassVar

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.endpoints import SSL4ServerEndpoint, TCP4ServerEndpoint
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.filepath import FilePath
from twisted.python.threadpool import ThreadPool

from ..metrics import MetricsResource
from ..tls import TLSError, server_options
from .api import (
    CollectorSite,
    EventsResource,
    EventStore,
    Limits,
    LinksResource,
    StatsResource,
    build_root,
)
from .config import CollectorConfig, ConfigError, load_collector_config
from .dashboardresource import DashboardResource
from .enrich import Enricher
from .metrics import CollectorMetrics
from .tokens import Role, TokensError, load_tokens

__all__ = ["CollectorService", "Options", "build_service", "makeService"]

CLIENT_TIMEOUT = 60


class Options(usage.Options):
    optParameters: ClassVar[list[list[str | None]]] = [
        ["config", "c", None, "The collector's TOML configuration file."]
    ]

    def postOptions(self) -> None:
        if not self["config"]:
            raise usage.UsageError("--config PATH is required (see conf/linkcollector.toml)")


def make_store(config: CollectorConfig, reactor: Any) -> EventStore:
    """
    The store the configuration names (not yet opened).
    """
    if config.store == "postgresql":
        from .postgres import PostgresStore

        assert config.dsn is not None
        return PostgresStore(config.dsn, reactor)
    from .sqlite import SQLiteStore

    assert config.database is not None
    return SQLiteStore(config.database, reactor)


class CollectorService(Service):
    """
    Opens the store, then listens; on stop, stops listening, then closes the store and the
    worker threads.
    """

    log = Logger()

    def __init__(
        self, store: EventStore, listener: Service, pool: ThreadPool, reactor: Any
    ) -> None:
        self.store = store
        self.listener = listener
        self._pool = pool
        self._reactor = reactor
        self.ready: Deferred[None] = Deferred()
        """Fires once the store is open and the listener is listening."""

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self._pool.start()
        self.store.open().addCallbacks(self._opened, self._failed)

    def _opened(self, _: object) -> None:
        if not self.running:
            return
        try:
            self.listener.startService()
        except Exception as error:  # the port is taken, for example
            self._stop_with_error(f"cannot listen: {error}")
            return
        self.log.info("collector ready: {store}", store=self.store.description)
        self.ready.callback(None)

    def _failed(self, failure: Any) -> None:
        self._stop_with_error(f"the store cannot be opened: {failure.getErrorMessage()}")

    def _stop_with_error(self, message: str) -> None:
        self.log.critical("linkcollector: {message}", message=message)
        self._reactor.addSystemEventTrigger("after", "shutdown", os._exit, 1)
        self._reactor.stop()

    def stopService(self) -> Deferred[None]:
        super().stopService()  # type: ignore[no-untyped-call]
        return Deferred.fromCoroutine(self._stop_in_order())

    async def _stop_in_order(self) -> None:
        try:
            if self.listener.running:
                await maybeDeferred(self.listener.stopService)
            await self.store.close()
        finally:
            self._pool.stop()


def build_service(
    config: CollectorConfig, reactor: Any, enricher: Enricher | None = None
) -> CollectorService:
    """
    The collector for C{config}; everything but the store is loaded and checked now.
    """
    tokens = load_tokens(config.tokens_file)
    if enricher is None:
        enricher = Enricher.from_options(
            scanners_file=config.scanners_file,
            mmdb_files=() if config.geoip_mmdb is None else (config.geoip_mmdb,),
            too_soon_seconds=config.too_soon_seconds,
            burst_seconds=config.burst_seconds,
            burst_links=config.burst_links,
        )
    store = make_store(config, reactor)
    metrics = CollectorMetrics()
    # One thread parses and enriches batches: the enricher is not thread-safe, and one
    # batch at a time keeps the burst detector's view in order.
    pool = ThreadPool(minthreads=1, maxthreads=1, name="linkcollector-parse")

    def run(function: Any) -> Deferred[Any]:
        return deferToThreadPool(reactor, pool, function)

    limits = Limits(config.max_body_bytes, config.max_inflated_bytes, config.max_events)
    events = EventsResource(
        lambda: tokens, store, enricher.enrich, run, limits, metrics.observe_events
    )
    links = LinksResource(lambda: tokens, store, run, limits)
    stats = StatsResource(lambda: tokens, store, metrics.stats_seconds.observe)
    dashboard = DashboardResource(
        allowed=lambda request: (
            tokens.holder(Role.READERS, request.getHeader(b"authorization")) is not None
        )
    )
    root = build_root(events, links, stats, MetricsResource(metrics), dashboard)
    site = CollectorSite(root, config.max_body_bytes, timeout=CLIENT_TIMEOUT)
    if config.tls:
        assert config.certificate is not None and config.private_key is not None
        options = server_options(config.certificate, config.private_key)
        endpoint: Any = SSL4ServerEndpoint(
            reactor, config.listen_port, options, interface=config.listen_host
        )
    else:
        endpoint = TCP4ServerEndpoint(reactor, config.listen_port, interface=config.listen_host)
    listener = StreamServerEndpointService(endpoint, site)
    listener._raiseSynchronously = True
    return CollectorService(store, listener, pool, reactor)


def makeService(options: Options) -> CollectorService:
    """
    The entry point twistd calls: read the configuration and build the collector.
    """
    from twisted.internet import reactor

    try:
        config = load_collector_config(FilePath(options["config"]))
        service = build_service(config, reactor)
    except (ConfigError, TokensError, TLSError, ValueError) as error:
        raise SystemExit(f"linkcollector: {error}") from None
    tune_garbage_collector()
    return service


#: Container objects allocated between two young collections (Python's default: 700).
YOUNG_COLLECTION_THRESHOLD = 50_000


def tune_garbage_collector() -> None:
    """
    Collect cycles less often, and never look again at what start-up loaded.

    A batch of 5,000 events allocates a few hundred thousand tuples and objects that live
    until it is stored: with the default thresholds the collector ran hundreds of young
    collections a batch, each walking the batch's live objects again, and full ones that
    also walked the GeoIP and scanner tables (about 40 ms each). HTTP ingest went from
    about 10,200 to 14,400 events/s with this (docs/performance.rst). Memory stays bounded:
    cycles are still collected, every 50,000 allocations rather than every 700.
    """
    gc.collect()  # start-up's garbage first: what is frozen is never collected
    gc.freeze()  # the start-up objects: tables, compiled patterns, modules
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, middle, old)
