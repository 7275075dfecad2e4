"""The demo's samples as the correlator sees them: the shared-vehicle pair links by
identity, the double report by same occurrence, and nothing else links."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import pytest

from streams.correlation.blocking import blocking_keys
from streams.correlation.engine import CaseStage, Correlator, CorrelatorConfig
from streams.correlation.model import IncidentView, view_from_event
from streams.correlation.occurrence import OccurrenceConfig, score_occurrence
from streams.correlation.patterns import PatternConfig
from tests.unit.test_correlation_support import AGENCIES, jurisdictions
from xborder.codec import AvroCodec
from xborder.samples import boundary_spot, double_report, sample_events

NOW = datetime(2026, 3, 19, 12, 0, tzinfo=UTC)
CONFIG = CorrelatorConfig(patterns=PatternConfig(agencies=AGENCIES))


def views(codec: AvroCodec, events: list[dict[str, Any]]) -> list[IncidentView]:
    """Each event through the codec (it must fit the schema) and into the worker's view."""
    return [
        view_from_event(codec.from_json("IncidentReported", e), jurisdictions()) for e in events
    ]


def correlate(found: list[IncidentView]) -> list[dict[str, Any]]:
    items = [(key, v) for v in found for key in blocking_keys(v, CONFIG.blocking)]
    return Correlator(CONFIG).process(items).correlations


@pytest.mark.parametrize("seed", range(20))
def test_the_double_report_is_one_occurrence_on_either_side_of_the_boundary(
    codec: AvroCodec, seed: int
) -> None:
    cantho, angiang = views(codec, double_report(NOW, random.Random(seed)))
    assert (cantho.jurisdiction, angiang.jurisdiction) == ("cantho", "angiang")
    assert cantho.in_border_zone and angiang.in_border_zone
    assert cantho.tokens == angiang.tokens == ()
    scored = score_occurrence(cantho, angiang, OccurrenceConfig())
    assert scored is not None and scored.linked
    assert [e.kind for e in scored.evidence][:2] == ["DISTANCE", "TIME"]
    assert [e.weight for e in scored.evidence][:2] == [4.0, 4.0]  # within 300 m and 15 min


def test_the_samples_give_one_identity_and_one_same_occurrence_case(codec: AvroCodec) -> None:
    samples, brawl = sample_events(6, NOW), double_report(NOW, random.Random(7))
    found = views(codec, samples + brawl)
    correlations = correlate(found)
    sides = ("incident_a", "incident_b")
    linked = {
        r["match_kind"]: {(r[s]["agency"], r[s]["incident_id"]) for s in sides}
        for r in correlations
    }
    assert len(correlations) == 2
    assert linked["IDENTITY"] == {(e["agency"], e["incident_id"]) for e in samples[:2]}
    assert linked["SAME_OCCURRENCE"] == {(e["agency"], e["incident_id"]) for e in brawl}
    by_ref = {v.ref: v for v in found}
    cases = CaseStage(CONFIG).process(correlations, by_ref).case_events
    assert sorted((e["event_type"], e["possible_double_report"]) for e in cases) == [
        ("CREATED", False),
        ("CREATED", True),
    ]


def test_boundary_spots_lie_on_the_side_the_offset_names() -> None:
    for fraction in (0.0, 0.25, 0.53, 1.0):
        on_line = jurisdictions().locate(*boundary_spot(fraction, 0.0))
        assert on_line.distance_to_boundary_km is not None
        assert on_line.distance_to_boundary_km < 0.005
        assert jurisdictions().locate(*boundary_spot(fraction, 70.0)).agency_id == "cantho"
        assert jurisdictions().locate(*boundary_spot(fraction, -70.0)).agency_id == "angiang"
