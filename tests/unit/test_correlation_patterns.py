"""Alert detectors: border-zone incident, subject on both sides, group forming; CAP fields."""

from __future__ import annotations

from typing import Any

import pytest

from streams.correlation.blocking import blocking_keys
from streams.correlation.engine import CaseStage, Correlator, CorrelatorConfig
from streams.correlation.model import IncidentView
from streams.correlation.patterns import (
    CASE_DETECTORS,
    EVENT_DETECTORS,
    TOKEN_DETECTORS,
    CaseSnapshot,
    PatternConfig,
    alert_id,
    border_alerts,
    border_zone_incident,
    group_forming,
    subject_both_sides,
)
from streams.correlation.scoring import correlation_id
from tests.unit.test_correlation_support import (
    AGENCIES,
    ANGIANG_DEEP,
    ANGIANG_EDGE,
    CANTHO_DEEP,
    CANTHO_EDGE,
    HOUR,
    T0,
    TOKEN_H,
    TOKEN_P,
    TOKEN_V,
    encodes,
    view,
)

WINDOW = 72 * HOUR
PATTERNS = PatternConfig(agencies=AGENCIES)
CONFIG = CorrelatorConfig(patterns=PATTERNS)


def items(*views: IncidentView) -> list[tuple[str, IncidentView]]:
    return [(key, v) for v in views for key in blocking_keys(v, CONFIG.blocking)]


def check_cap(alert: dict[str, Any]) -> dict[str, Any]:
    assert alert["status"] == "Actual" and alert["msgType"] == "Alert"
    assert alert["scope"] == "Restricted" and alert["restriction"]
    assert alert["category"] == "Security"
    assert len(alert["identifier"]) == 64 and alert["sender"] == PATTERNS.sender
    (circle,) = alert["area"]["circle"]
    point, radius = circle.split(" ")
    lat, lon = (float(x) for x in point.split(","))
    assert 9 < lat < 12 and 104 < lon < 107 and float(radius) > 0
    assert alert["area"]["areaDesc"] and alert["headline"] and alert["description"]
    assert alert["expires"] > alert["sent"]
    for token in (TOKEN_H, TOKEN_P, TOKEN_V):
        assert token not in str(alert)  # never a whole token
    back = encodes("Alert", alert)
    assert back["identifier"] == alert["identifier"]
    return alert


def test_border_zone_incident_tells_the_other_agencies() -> None:
    v = view("cantho", at=CANTHO_EDGE, severity="HIGH", category="SMUGGLING")
    alert = check_cap(border_zone_incident(v, PATTERNS, WINDOW) or {})
    assert alert["alert_kind"] == "BORDER_ZONE_INCIDENT"
    assert alert["target_agencies"] == ["angiang"]
    assert (alert["urgency"], alert["severity"], alert["certainty"]) == (
        "Immediate", "Severe", "Observed"
    )  # fmt: skip
    assert alert["sent"] == v.occurred_ms and alert["expires"] == v.occurred_ms + WINDOW
    assert alert["identifier"] == alert_id("BORDER_ZONE_INCIDENT", "cantho", v.incident_id)
    assert alert["area"]["circle"] == [f"{v.lat:.5f},{v.lon:.5f} 1.0"]
    assert "km from the boundary" in alert["area"]["areaDesc"]
    assert border_zone_incident(view("cantho", at=CANTHO_DEEP), PATTERNS, WINDOW) is None


def test_border_zone_incident_without_configured_agencies() -> None:
    # reported by cantho but located on the angiang side: angiang is told
    v = view("cantho", at=ANGIANG_EDGE)
    alert = border_zone_incident(v, PatternConfig(), WINDOW)
    assert alert is not None and alert["target_agencies"] == ["angiang"]
    assert border_zone_incident(view("cantho", at=CANTHO_EDGE), PatternConfig(), WINDOW) is None


def test_border_alerts_helper_once_per_incident() -> None:
    v = view("angiang", at=ANGIANG_EDGE)
    alerts = border_alerts([v, v, view("cantho", at=CANTHO_DEEP)], PATTERNS, WINDOW)
    assert [a["target_agencies"] for a in alerts] == [["cantho"]]


def test_subject_both_sides_alert() -> None:
    a = view("cantho", at=CANTHO_DEEP, t=T0, tokens=(("VEHICLE", TOKEN_V),), severity="LOW")
    b = view("angiang", at=ANGIANG_DEEP, t=T0 + 30 * HOUR, tokens=(("VEHICLE", TOKEN_V),),
             severity="CRITICAL")  # fmt: skip
    token = ("VEHICLE", TOKEN_V)
    alert = check_cap(subject_both_sides(a, b, token, PATTERNS, WINDOW) or {})
    assert alert == subject_both_sides(b, a, token, PATTERNS, WINDOW)  # symmetric
    assert alert["alert_kind"] == "SUBJECT_BOTH_SIDES"
    assert alert["target_agencies"] == ["angiang", "cantho"]
    assert alert["severity"] == "Extreme" and alert["certainty"] == "Likely"
    assert alert["correlation_ids"] == [correlation_id(a.ref, b.ref)]
    assert alert["sent"] == b.occurred_ms
    assert "3fa2…" in alert["description"]
    period = str(b.occurred_ms // WINDOW)
    assert alert["identifier"] == alert_id("SUBJECT_BOTH_SIDES", "VEHICLE", TOKEN_V, period)
    far = view("angiang", at=ANGIANG_DEEP, t=T0 + 80 * HOUR, tokens=(token,))
    assert subject_both_sides(a, far, token, PATTERNS, WINDOW) is None  # beyond the window


def test_subject_both_sides_once_per_token_and_window_period() -> None:
    token = ("PHONE", TOKEN_P)
    base = (T0 // WINDOW + 1) * WINDOW  # start of a window period
    sightings = [
        view("cantho", at=CANTHO_DEEP, t=base + HOUR, tokens=(token,)),
        view("angiang", at=ANGIANG_DEEP, t=base + 2 * HOUR, tokens=(token,)),
        view("cantho", at=CANTHO_DEEP, t=base + 3 * HOUR, tokens=(token,)),
        view("angiang", at=ANGIANG_DEEP, t=base + WINDOW + HOUR, tokens=(token,)),  # next period
    ]
    correlator = Correlator(CONFIG)
    alerts = [
        a for v in sightings for a in correlator.process(items(v)).alerts
        if a["alert_kind"] == "SUBJECT_BOTH_SIDES"
    ]  # fmt: skip
    assert len(alerts) == 2
    assert alerts[0]["sent"] == base + 2 * HOUR and alerts[1]["sent"] == base + WINDOW + HOUR
    same_side = Correlator(CONFIG)
    only_cantho = [view("cantho", at=CANTHO_DEEP, t=T0 + h * HOUR, tokens=(token,)) for h in (1, 2)]
    assert not same_side.process(items(*only_cantho)).alerts


def members(n: int, tokens_each: int = 1, sides: tuple[str, ...] = AGENCIES) -> list[IncidentView]:
    places = {"cantho": CANTHO_EDGE, "angiang": ANGIANG_EDGE}
    return [
        view(
            sides[i % len(sides)],
            at=places[sides[i % len(sides)]],
            t=T0 + i * HOUR,
            tokens=tuple(("PERSON", f"p{i}-{k}") for k in range(tokens_each)),
        )
        for i in range(n)
    ]


def snapshot(views: list[IncidentView]) -> CaseSnapshot:
    return CaseSnapshot("c" * 64, views, ["x" * 64, "a" * 64], max(v.occurred_ms for v in views))


def test_group_forming_needs_n_incidents_m_subjects_and_both_sides() -> None:
    alert = check_cap(group_forming(snapshot(members(3)), PATTERNS, WINDOW) or {})
    assert alert["alert_kind"] == "GROUP_FORMING" and alert["case_id"] == "c" * 64
    assert alert["target_agencies"] == ["angiang", "cantho"]
    assert alert["correlation_ids"] == ["a" * 64, "x" * 64]  # sorted
    assert alert["identifier"] == alert_id("GROUP_FORMING", "c" * 64)
    assert "3 incidents, 3 subjects" in alert["headline"]
    assert group_forming(snapshot(members(2)), PATTERNS, WINDOW) is None  # N = 3
    assert group_forming(snapshot(members(3, tokens_each=0)), PATTERNS, WINDOW) is None  # M = 2
    assert group_forming(snapshot(members(4, sides=("cantho",))), PATTERNS, WINDOW) is None
    stretched = members(3)
    stretched[0] = view("cantho", at=CANTHO_EDGE, t=T0 - 100 * HOUR, tokens=(("PERSON", "q"),))
    assert group_forming(snapshot(stretched), PATTERNS, WINDOW) is None  # outside the window
    strict = PatternConfig(agencies=AGENCIES, group_min_incidents=4, group_min_subjects=5)
    assert group_forming(snapshot(members(4)), strict, WINDOW) is None
    assert group_forming(snapshot(members(4, tokens_each=2)), strict, WINDOW) is not None


def test_case_stage_raises_group_forming_once() -> None:
    token = ("VEHICLE", TOKEN_V)
    views = [
        view("cantho", at=CANTHO_DEEP, t=T0, tokens=(token, ("PERSON", "p1"))),
        view("angiang", at=ANGIANG_DEEP, t=T0 + HOUR, tokens=(token,)),
        view("cantho", at=CANTHO_DEEP, t=T0 + 2 * HOUR, tokens=(token, ("PHONE", "h1"))),
        view("angiang", at=ANGIANG_DEEP, t=T0 + 3 * HOUR, tokens=(token,)),
    ]
    correlator, stage = Correlator(CONFIG), CaseStage(CONFIG)
    by_ref = {v.ref: v for v in views}
    group_alerts = []
    for v in views:
        out = correlator.process(items(v))
        group_alerts += stage.process(out.correlations, by_ref).alerts
    assert [a["alert_kind"] for a in group_alerts] == ["GROUP_FORMING"]
    assert group_alerts[0]["case_id"] == stage.tracker.case_of(views[0].ref)


def test_registries_and_enabled_kinds() -> None:
    assert set(EVENT_DETECTORS) | set(TOKEN_DETECTORS) | set(CASE_DETECTORS) == {
        "BORDER_ZONE_INCIDENT", "SUBJECT_BOTH_SIDES", "GROUP_FORMING"
    }  # fmt: skip
    quiet = CorrelatorConfig(patterns=PatternConfig(agencies=AGENCIES, enabled=frozenset()))
    token = ("VEHICLE", TOKEN_V)
    a = view("cantho", at=CANTHO_EDGE, tokens=(token,))
    b = view("angiang", at=ANGIANG_EDGE, tokens=(token,))
    out = Correlator(quiet).process(items(a, b))
    assert out.correlations and not out.alerts


@pytest.mark.parametrize("severity,cap", [("LOW", "Minor"), ("MEDIUM", "Moderate"),
                                          ("HIGH", "Severe"), ("CRITICAL", "Extreme")])  # fmt: skip
def test_severity_mapping(severity: str, cap: str) -> None:
    alert = border_zone_incident(view(at=CANTHO_EDGE, severity=severity), PATTERNS, WINDOW)
    assert alert is not None and alert["severity"] == cap
