# -*- test-case-name: tests.test_metrics -*-
"""
Prometheus metrics for the router, served on the loopback admin listener only.

The request path pays for one counter increment and one histogram observation; everything
about the journal is read from the journal service when Prometheus scrapes, not per event.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from itertools import accumulate
from typing import Protocol

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from twisted.web.resource import Resource
from twisted.web.server import Request

from .journalservice import JournalService
from .sync import SyncService

__all__ = ["MetricsResource", "RouterMetrics"]

_LATENCY_BUCKETS = (0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05)
_FSYNC_BUCKETS = (0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0)


def _one(
    family: type[GaugeMetricFamily | CounterMetricFamily], name: str, text: str, value: float
) -> Metric:
    """
    A metric family of one unlabelled sample.
    """
    metric = family(name, text)
    metric.add_metric([], value)
    return metric


class _JournalCollector(Collector):
    def __init__(self, journal: JournalService) -> None:
        self._journal = journal

    def collect(self) -> Iterator[Metric]:
        journal = self._journal
        yield _one(
            GaugeMetricFamily,
            "linkrouter_queue_depth",
            "Events waiting for the journal.",
            journal.depth,
        )
        yield _one(
            CounterMetricFamily,
            "linkrouter_events_written",
            "Events written to the journal.",
            journal.written,
        )
        dropped = CounterMetricFamily(
            "linkrouter_events_dropped", "Events dropped, by reason.", labels=["reason"]
        )
        for reason, count in sorted(journal.dropped.items()):
            dropped.add_metric([reason], count)
        yield dropped
        yield _one(
            CounterMetricFamily,
            "linkrouter_journal_bytes",
            "Bytes appended to the journal since start.",
            journal.journal.bytes_written,
        )


class _SyncCollector(Collector):
    def __init__(self, sync: SyncService, journal: JournalService) -> None:
        self._sync = sync
        self._journal = journal

    def collect(self) -> Iterator[Metric]:
        status = self._sync.status
        cursor = status.cursor
        waiting = 0 if cursor is None else max(0, self._journal.next_sequence - cursor.sequence)
        for family, name, text, value in [
            (
                GaugeMetricFamily,
                "linkrouter_sync_unsynced_events",
                "Journaled events not yet acknowledged.",
                waiting,
            ),
            (
                GaugeMetricFamily,
                "linkrouter_sync_failures",
                "Failed sync attempts in a row (0 when healthy).",
                status.failures,
            ),
            (
                GaugeMetricFamily,
                "linkrouter_sync_last_success_timestamp_seconds",
                "When a batch was last acknowledged.",
                status.last_success or 0.0,
            ),
            (
                GaugeMetricFamily,
                "linkrouter_sync_next_attempt_timestamp_seconds",
                "When backoff allows the next try.",
                status.next_attempt,
            ),
            (
                CounterMetricFamily,
                "linkrouter_sync_events_sent",
                "Events acknowledged.",
                status.sent,
            ),
            (
                CounterMetricFamily,
                "linkrouter_sync_dead_lettered",
                "Events the collector refused, set aside.",
                status.dead_lettered,
            ),
        ]:
            yield _one(family, name, text, value)


_OUTCOMES = ("redirect", "open", "invalid", "blocked", "method", "health")


class _RequestCollector(Collector):
    """
    Requests by outcome and their latency histogram, from plain counters: on the request
    path a Prometheus client metric costs a lock and several calls, a list index does not.
    """

    def __init__(self) -> None:
        self.counts = dict.fromkeys(_OUTCOMES, 0)
        self.sums = dict.fromkeys(_OUTCOMES, 0.0)
        self.buckets = {outcome: [0] * (len(_LATENCY_BUCKETS) + 1) for outcome in _OUTCOMES}

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "linkrouter_requests", "Requests answered, by outcome.", labels=["outcome"]
        )
        latency = HistogramMetricFamily(
            "linkrouter_response_seconds",
            "Time from request to finished response, in process, by outcome.",
            labels=["outcome"],
        )
        bounds = [*(str(bound) for bound in _LATENCY_BUCKETS), "+Inf"]
        for outcome in _OUTCOMES:
            requests.add_metric([outcome], self.counts[outcome])
            cumulative = list(accumulate(self.buckets[outcome]))
            latency.add_metric(
                [outcome], list(zip(bounds, cumulative, strict=True)), self.sums[outcome]
            )
        yield requests
        yield latency


class RouterMetrics:
    """
    The router's registry: request outcomes and latency, fsync latency, journal and sync.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._requests = _RequestCollector()
        self.registry.register(self._requests)
        self.fsync = Histogram(
            "linkrouter_fsync_seconds",
            "Time of one group fsync of the journal.",
            buckets=_FSYNC_BUCKETS,
            registry=self.registry,
        )

    def observe(self, outcome: str, seconds: float) -> None:
        """
        Count one request with its outcome and in-process latency.
        """
        requests = self._requests
        requests.counts[outcome] += 1
        requests.sums[outcome] += seconds
        requests.buckets[outcome][bisect_left(_LATENCY_BUCKETS, seconds)] += 1

    def render(self) -> bytes:
        """
        The Prometheus text exposition of every metric.
        """
        return generate_latest(self.registry)

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


class _Renders(Protocol):
    def render(self) -> bytes: ...


class MetricsResource(Resource):
    """
    C{GET /metrics} on the admin listener.
    """

    isLeaf = True

    def __init__(self, metrics: _Renders) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._metrics = metrics

    def render_GET(self, request: Request) -> bytes:
        if request.path != b"/metrics":
            request.setResponseCode(404)
            return b"not found\n"
        request.setHeader(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")
        return self._metrics.render()
