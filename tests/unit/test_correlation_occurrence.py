"""Same-occurrence matching (double reports): scoring, the engine's output, the case mark."""

from __future__ import annotations

from dataclasses import replace

from streams.correlation.blocking import blocking_keys
from streams.correlation.cases import CaseTracker
from streams.correlation.engine import CaseStage, Correlator, CorrelatorConfig
from streams.correlation.model import IncidentView
from streams.correlation.occurrence import OccurrenceConfig, score_occurrence
from streams.correlation.patterns import PatternConfig
from streams.correlation.scoring import correlation_id
from tests.unit.test_correlation_support import AGENCIES, HOUR, T0, encodes, view

# about 130 m apart, on either side of the boundary, both in the border zone
CANTHO_ROAD = (10.27944, 105.38934)
ANGIANG_ROAD = (10.28056, 105.38866)
MINUTE = 60_000
CONFIG = CorrelatorConfig(patterns=PatternConfig(agencies=AGENCIES))
OCCURRENCE = OccurrenceConfig()


def brawl(agency: str, t: int = T0, **kwargs: object) -> IncidentView:
    at = CANTHO_ROAD if agency == "cantho" else ANGIANG_ROAD
    fields: dict[str, object] = {"category": "PUBLIC_DISORDER", "mo": ("crowd",)}
    fields.update(kwargs)
    return view(agency, at=at, t=t, **fields)  # type: ignore[arg-type]


def items(*views: IncidentView) -> list[tuple[str, IncidentView]]:
    return [(key, v) for v in views for key in blocking_keys(v, CONFIG.blocking)]


def test_two_agencies_reports_of_one_brawl_match_without_a_token() -> None:
    a, b = brawl("cantho"), brawl("angiang", T0 + 6 * MINUTE)
    scored = score_occurrence(a, b, OCCURRENCE)
    assert scored is not None and scored.linked and scored.match_kind == "SAME_OCCURRENCE"
    kinds = [e.kind for e in scored.evidence]
    assert kinds == ["DISTANCE", "TIME", "CATEGORY", "BORDER_ZONE", "MODUS_OPERANDI"]
    assert scored.correlation_id != correlation_id(a.ref, b.ref)  # its own id per kind
    assert scored.correlation_id == correlation_id(a.ref, b.ref, "SAME_OCCURRENCE")


def test_one_sides_other_category_matches_on_a_shared_tag_and_differing_tags_say_nothing() -> None:
    a = brawl("cantho")
    assert score_occurrence(a, brawl("angiang", category="OTHER"), OCCURRENCE).linked  # type: ignore[union-attr]
    other_tags = score_occurrence(
        a, brawl("angiang", category="OTHER", mo=("karaoke",)), OCCURRENCE
    )
    # place, time and border alone (4 + 4 + 1) are not enough: nothing is held against
    # the unclassified report, but nothing else speaks for the match either
    assert other_tags is not None and other_tags.score == 9.0 and not other_tags.linked
    assert "MODUS_OPERANDI" not in [e.kind for e in other_tags.evidence]
    # classified alike, differing tags count against: with less time evidence, no match
    later = brawl("angiang", T0 + 20 * MINUTE, mo=("karaoke",))
    scored = score_occurrence(a, later, OCCURRENCE)
    assert scored is not None and not scored.linked
    assert ("MODUS_OPERANDI", -1.0) in [(e.kind, e.weight) for e in scored.evidence]


def test_near_misses_are_not_candidates_or_stay_below_the_threshold() -> None:
    a = brawl("cantho")
    another_day = brawl("angiang", T0 + 26 * HOUR)
    next_door = brawl("angiang", category="TRAFFIC", mo=("collision",))
    same_agency = brawl("cantho", T0 + 2 * MINUTE)
    for miss in (another_day, next_door, same_agency):
        assert score_occurrence(a, miss, OCCURRENCE) is None
    # a same-category report 22 minutes later with other tags: below the threshold
    later = brawl("angiang", T0 + 22 * MINUTE, mo=("weapon",))
    scored = score_occurrence(a, later, OCCURRENCE)
    assert scored is not None and not scored.linked


def test_the_engine_emits_one_same_occurrence_correlation_that_encodes() -> None:
    correlator = Correlator(CONFIG)
    a, b = brawl("cantho"), brawl("angiang", T0 + 4 * MINUTE)
    out = correlator.process(items(a, b))
    assert [r["match_kind"] for r in out.correlations] == ["SAME_OCCURRENCE"]
    record = encodes("Correlation", out.correlations[0])
    assert record["match_kind"] == "SAME_OCCURRENCE"
    assert correlator.process(items(b)).correlations == []  # not emitted twice
    off = Correlator(replace(CONFIG, occurrence=OccurrenceConfig(enabled=False)))
    assert off.process(items(a, b)).correlations == []


def test_an_identity_and_a_same_occurrence_match_of_one_pair_are_two_correlations() -> None:
    token = ("PERSON", "ab" * 32)
    a, b = brawl("cantho", tokens=(token,)), brawl("angiang", T0 + MINUTE, tokens=(token,))
    out = Correlator(CONFIG).process(items(a, b))
    assert sorted(r["match_kind"] for r in out.correlations) == ["IDENTITY", "SAME_OCCURRENCE"]
    assert len({r["correlation_id"] for r in out.correlations}) == 2


def test_a_double_report_opens_a_case_marked_possible_double_report() -> None:
    a, b = brawl("cantho"), brawl("angiang", T0 + 4 * MINUTE)
    correlations = Correlator(CONFIG).process(items(a, b)).correlations
    out = CaseStage(CONFIG).process(correlations, {a.ref: a, b.ref: b})
    assert [e["event_type"] for e in out.case_events] == ["CREATED"]
    assert encodes("CaseEvent", out.case_events[0])["possible_double_report"] is True


def test_a_same_occurrence_link_inside_a_case_marks_it_with_a_status_change() -> None:
    tracker = CaseTracker()
    a, b = ("angiang", "AG-1"), ("cantho", "CT-1")
    created = tracker.link(a, b, "c1", T0, ("e1", "e2"))
    assert created[0]["possible_double_report"] is False
    marked = tracker.link(a, b, "c2", T0 + 1, ("e1", "e2"), "SAME_OCCURRENCE")
    assert [(e["event_type"], e["possible_double_report"]) for e in marked] == [
        ("STATUS_CHANGED", True)
    ]
    assert tracker.link(a, b, "c3", T0 + 2, ("e1", "e2"), "SAME_OCCURRENCE") == []
    # the mark survives a merge into another case
    added = tracker.link(("cantho", "CT-0"), ("angiang", "AG-9"), "c4", T0 + 3, ("e3", "e4"))
    merged = tracker.link(a, ("cantho", "CT-0"), "c5", T0 + 4, ("e1", "e3"))
    assert added[0]["possible_double_report"] is False
    assert merged[-1]["event_type"] == "MERGED" and merged[-1]["possible_double_report"] is True
