"""
Tests for the enricher's shortcuts: each gives what the plain code it replaces gives.
"""

from __future__ import annotations

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from linkrouter.collector import enrich
from linkrouter.collector.geo import Place
from linkrouter.collector.model import Enrichment, Platform

texts = st.none() | st.text(max_size=12)
reasons = st.lists(st.text(max_size=20), max_size=4).map(tuple)
enrichments = st.builds(
    Enrichment,
    browser_family=texts,
    browser_version=texts,
    os_family=texts,
    os_version=texts,
    device=texts,
    platform=st.sampled_from(Platform),
    country=texts,
    region=texts,
    city=texts,
    network=texts,
    bot_reasons=reasons,
)


class WithReasonsTests(SynchronousTestCase):
    @settings(max_examples=500, deadline=None)
    @given(enrichments, reasons)
    def test_agrees_with_evolve(self, enrichment: Enrichment, added: tuple[str, ...]) -> None:
        """
        L{enrich._with_reasons} builds what C{attrs.evolve} builds: every field kept, the
        reasons replaced.
        """
        self.assertEqual(
            enrich._with_reasons(enrichment, added),
            attrs.evolve(enrichment, bot_reasons=added),
        )

    def test_every_field(self) -> None:
        """
        Every field in its place: a value of its own for each, so a field out of order
        would show.
        """
        names = [field.name for field in attrs.fields(Enrichment)]
        values = {name: f"value of {name}" for name in names}
        values["platform"] = Platform.MOBILE
        values["bot_reasons"] = ("before",)
        enrichment = Enrichment(**values)
        self.assertEqual(
            enrich._with_reasons(enrichment, ("after",)),
            attrs.evolve(enrichment, bot_reasons=("after",)),
        )


class NowhereTests(SynchronousTestCase):
    def test_empty(self) -> None:
        """
        The shared empty place is the one every nowhere used to build.
        """
        self.assertEqual(enrich._NOWHERE, Place())
        self.assertEqual(enrich._NO_ADDRESS, enrich._AddressFacts(Place(), None))
