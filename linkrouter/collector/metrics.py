# -*- test-case-name: tests.test_collector_api -*-
"""
The collector's Prometheus metrics: events by outcome, batches by answer, and how long the
store takes to ingest a batch and to answer a stats query.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

__all__ = ["CollectorMetrics"]


class CollectorMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._events = Counter(
            "linkcollector_events_total",
            "Events received, by outcome (accepted, duplicate, rejected).",
            ["outcome"],
            registry=self.registry,
        )
        self._batches = Counter(
            "linkcollector_batches_refused_total",
            "Batches refused as a whole (not gzip, too large, too many lines).",
            registry=self.registry,
        )
        self.stats_seconds = Histogram(
            "linkcollector_stats_seconds",
            "Time the store took to answer a stats query.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0),
            registry=self.registry,
        )
        for outcome in ("accepted", "duplicate", "rejected"):
            self._events.labels(outcome)

    def observe_events(self, outcome: str, count: int) -> None:
        """
        C{count} events had C{outcome}; C{"refused"} counts one refused batch.
        """
        if outcome == "refused":
            self._batches.inc(count)
        elif count:
            self._events.labels(outcome).inc(count)

    def render(self) -> bytes:
        return generate_latest(self.registry)
