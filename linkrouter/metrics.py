# -*- test-case-name: tests.test_metrics -*-
"""
Prometheus metrics for the router, served on the loopback admin listener only.

The request path pays for one counter increment and one histogram observation; everything
about the journal is read from the journal service when Prometheus scrapes, not per event.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from twisted.web.resource import Resource
from twisted.web.server import Request

from .journalservice import JournalService
from .sync import SyncService

__all__ = ["MetricsResource", "RouterMetrics"]

_LATENCY_BUCKETS = (0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05)
_FSYNC_BUCKETS = (0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0)


class _JournalCollector(Collector):
    def __init__(self, journal: JournalService) -> None:
        self._journal = journal

    def collect(self) -> Iterator[Metric]:
        journal = self._journal
        depth = GaugeMetricFamily("linkrouter_queue_depth", "Events waiting for the journal.")
        depth.add_metric([], journal.depth)
        yield depth
        written = CounterMetricFamily(
            "linkrouter_events_written", "Events written to the journal."
        )
        written.add_metric([], journal.written)
        yield written
        dropped = CounterMetricFamily(
            "linkrouter_events_dropped", "Events dropped, by reason.", labels=["reason"]
        )
        for reason, count in sorted(journal.dropped.items()):
            dropped.add_metric([reason], count)
        yield dropped
        size = CounterMetricFamily(
            "linkrouter_journal_bytes", "Bytes appended to the journal since start."
        )
        size.add_metric([], journal.journal.bytes_written)
        yield size


class _SyncCollector(Collector):
    def __init__(self, sync: SyncService, journal: JournalService) -> None:
        self._sync = sync
        self._journal = journal

    def collect(self) -> Iterator[Metric]:
        status = self._sync.status
        cursor = status.cursor
        unsynced = GaugeMetricFamily(
            "linkrouter_sync_unsynced_events", "Journaled events not yet acknowledged."
        )
        waiting = 0 if cursor is None else max(0, self._journal.next_sequence - cursor.sequence)
        unsynced.add_metric([], waiting)
        yield unsynced
        failures = GaugeMetricFamily(
            "linkrouter_sync_failures", "Failed sync attempts in a row (0 when healthy)."
        )
        failures.add_metric([], status.failures)
        yield failures
        last = GaugeMetricFamily(
            "linkrouter_sync_last_success_timestamp_seconds", "When a batch was last acknowledged."
        )
        last.add_metric([], status.last_success or 0.0)
        yield last
        retry = GaugeMetricFamily(
            "linkrouter_sync_next_attempt_timestamp_seconds", "When backoff allows the next try."
        )
        retry.add_metric([], status.next_attempt)
        yield retry
        sent = CounterMetricFamily("linkrouter_sync_events_sent", "Events acknowledged.")
        sent.add_metric([], status.sent)
        yield sent
        dead = CounterMetricFamily(
            "linkrouter_sync_dead_lettered", "Events the collector refused, set aside."
        )
        dead.add_metric([], status.dead_lettered)
        yield dead


class RouterMetrics:
    """
    The router's registry: request outcomes and latency, fsync latency, journal state.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._requests = Counter(
            "linkrouter_requests",
            "Requests answered, by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "linkrouter_response_seconds",
            "Time from request to finished response, in process, by outcome.",
            ["outcome"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.fsync = Histogram(
            "linkrouter_fsync_seconds",
            "Time of one group fsync of the journal.",
            buckets=_FSYNC_BUCKETS,
            registry=self.registry,
        )
        self._outcomes = {}
        for outcome in ["redirect", "open", "invalid", "blocked", "method", "health"]:
            self._outcomes[outcome] = (
                self._requests.labels(outcome).inc,
                self._latency.labels(outcome).observe,
            )

    def watch(self, journal: JournalService) -> None:
        """
        Report C{journal}'s queue depth, events written and dropped, and bytes, at each
        scrape.
        """
        self.registry.register(_JournalCollector(journal))

    def watch_sync(self, sync: SyncService, journal: JournalService) -> None:
        """
        Report sync's backlog, failures, last success and next attempt at each scrape.
        """
        self.registry.register(_SyncCollector(sync, journal))

    def observe(self, outcome: str, seconds: float) -> None:
        """
        Count one request with its outcome and in-process latency.
        """
        increment, observe = self._outcomes[outcome]
        increment()
        observe(seconds)

    def render(self) -> bytes:
        """
        The Prometheus text exposition of every metric.
        """
        return generate_latest(self.registry)


class MetricsResource(Resource):
    """
    C{GET /metrics} on the admin listener.
    """

    isLeaf = True

    def __init__(self, metrics: RouterMetrics) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._metrics = metrics

    def render_GET(self, request: Request) -> bytes:
        if request.path != b"/metrics":
            request.setResponseCode(404)
            return b"not found\n"
        request.setHeader(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")
        return self._metrics.render()
