"""
Tests for L{linkrouter.metrics}: what Prometheus reads, in its text format.
"""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.task import Clock
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from linkrouter.codec import Kind, Part, TrackedLink
from linkrouter.event import Hit
from linkrouter.journal import SegmentJournal
from linkrouter.journalservice import JournalService
from linkrouter.metrics import RouterMetrics


def samples(metrics: RouterMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


class RequestMetricsTests(SynchronousTestCase):
    def test_outcomesAndLatency(self) -> None:
        """
        Each observed request counts under its outcome, and its latency lands in the right
        cumulative histogram buckets with the right sum.
        """
        metrics = RouterMetrics()
        metrics.observe("redirect", 0.00003)
        metrics.observe("redirect", 0.0003)
        metrics.observe("invalid", 0.02)
        found = samples(metrics)
        self.assertEqual(found[("linkrouter_requests_total", (("outcome", "redirect"),))], 2)
        self.assertEqual(found[("linkrouter_requests_total", (("outcome", "invalid"),))], 1)
        self.assertEqual(found[("linkrouter_requests_total", (("outcome", "open"),))], 0)

        def bucket(outcome: str, bound: str) -> float:
            key = (("le", bound), ("outcome", outcome))
            return found[("linkrouter_response_seconds_bucket", key)]

        self.assertEqual(bucket("redirect", "5e-05"), 1)
        self.assertEqual(bucket("redirect", "0.0002"), 1)
        self.assertEqual(bucket("redirect", "0.0005"), 2)
        self.assertEqual(bucket("redirect", "+Inf"), 2)
        self.assertEqual(bucket("invalid", "0.01"), 0)
        self.assertEqual(bucket("invalid", "0.05"), 1)
        self.assertAlmostEqual(
            found[("linkrouter_response_seconds_sum", (("outcome", "redirect"),))], 0.00033
        )

    def test_journalFacts(self) -> None:
        """
        Queue depth, events written and dropped by reason, and journal bytes are read from
        the journal service when scraped.
        """
        directory = FilePath(self.mktemp())
        journal = JournalService(SegmentJournal(directory), "r1", Clock(), queue_size=1)
        metrics = RouterMetrics()
        metrics.watch(journal)
        link = TrackedLink(Kind.CLICK, Part.HTML, "https://x.example/", "k", "L", 1)
        journal.record(Hit(1.0, link, b"GET", "192.0.2.1", b"ua"))  # before start: dropped
        journal.startService()
        journal.record(Hit(1.0, link, b"GET", "192.0.2.1", b"ua"))
        found = samples(metrics)
        self.assertEqual(found[("linkrouter_events_written_total", ())], 1)
        self.assertEqual(found[("linkrouter_events_dropped_total", (("reason", "stopped"),))], 1)
        self.assertEqual(found[("linkrouter_queue_depth", ())], 0)
        self.assertGreater(found[("linkrouter_journal_bytes_total", ())], 100)
        journal.stopService()
