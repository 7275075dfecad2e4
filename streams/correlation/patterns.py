"""Alert patterns: one detector function per alert kind, in registries by what they look at.

- ``EVENT_DETECTORS`` see one incident: BORDER_ZONE_INCIDENT (an incident inside the border
  zone: the other agencies are told at once);
- ``TOKEN_DETECTORS`` see a token key's cross-jurisdiction pair: SUBJECT_BOTH_SIDES (the
  same subject token on both sides within the window);
- ``CASE_DETECTORS`` see a case after it changed: GROUP_FORMING (a case spanning both
  jurisdictions with at least N incidents and M distinct subject tokens within the window).

A detector returns an ``Alert`` Avro datum or None. Adding a kind is one function and one
registry entry (and an ``AlertKind`` symbol in schemas/Alert.avsc). Every identifier is a
hash of the kind and the inputs that define the alert, and ``sent`` is an event time, so a
replay gives the same alerts; the stages remember emitted identifiers to send each once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from xborder.geo import haversine_km

from .model import IncidentView, Token, stable_id
from .scoring import correlation_id

AlertKind = Literal[
    "SUBJECT_BOTH_SIDES", "BORDER_ZONE_INCIDENT", "GROUP_FORMING", "VERIFICATION_OVERDUE", "OTHER"
]
"""The AlertKind symbols of schemas/Alert.avsc."""
ALL_KINDS: frozenset[str] = frozenset(
    {"SUBJECT_BOTH_SIDES", "BORDER_ZONE_INCIDENT", "GROUP_FORMING"}
)
CAP_SEVERITY = {"CRITICAL": "Extreme", "HIGH": "Severe", "MEDIUM": "Moderate", "LOW": "Minor"}
"""Incident severity to CAP severity."""
_RANK = {"Extreme": 4, "Severe": 3, "Moderate": 2, "Minor": 1, "Unknown": 0}
_HOUR_MS = 3_600_000


@dataclass(frozen=True)
class PatternConfig:
    """What the detectors need besides their inputs."""

    agencies: tuple[str, ...] = ()
    """Every cooperating agency (targets of border-zone alerts: all but the reporter)."""
    sender: str = "xborder@xborder.local"
    """CAP sender; no spaces, commas, '<' or '&'."""
    status: Literal["Actual", "Exercise", "System", "Test", "Draft"] = "Actual"
    restriction: str = "Duty officers of the cooperating agencies only"
    """CAP restriction (the scope is Restricted)."""
    group_min_incidents: int = 3
    """GROUP_FORMING: incidents of the case within the window."""
    group_min_subjects: int = 2
    """GROUP_FORMING: distinct subject tokens among those incidents."""
    border_radius_km: float = 1.0
    """Radius of the CAP circle of a border-zone alert."""
    enabled: frozenset[str] = field(default_factory=lambda: ALL_KINDS)
    """Alert kinds to raise."""


@dataclass(frozen=True)
class CaseSnapshot:
    """A case as the case detectors see it after a change."""

    case_id: str
    members: Sequence[IncidentView]
    """Views of the case's incidents (those known to the case stage)."""
    correlation_ids: Sequence[str]
    at_ms: int
    """Event time of the change."""


def _circle(lat: float, lon: float, radius_km: float) -> str:
    return f"{lat:.5f},{lon:.5f} {max(radius_km, 0.1):.1f}"


def _duration(ms: int) -> str:
    hours = ms / _HOUR_MS
    return f"{round(ms / 60_000)} min" if hours < 1 else f"{hours:.1f} h"


def make_alert(
    kind: AlertKind,
    identifier: str,
    sent_ms: int,
    cfg: PatternConfig,
    *,
    event: str,
    urgency: str,
    severity: str,
    certainty: str,
    headline: str,
    description: str,
    instruction: str,
    area_desc: str,
    circle: str | None,
    targets: Sequence[str],
    expires_ms: int | None,
    case_id: str | None = None,
    correlation_ids: Sequence[str] = (),
) -> dict[str, Any]:
    """An ``Alert`` Avro datum with the fixed CAP fields (msgType Alert, scope Restricted,
    category Security) filled in; ``circle`` None for an alert with no area circle."""
    return {
        "identifier": identifier,
        "sender": cfg.sender,
        "sent": sent_ms,
        "status": cfg.status,
        "msgType": "Alert",
        "scope": "Restricted",
        "restriction": cfg.restriction,
        "addresses": [],
        "references": [],
        "category": "Security",
        "event": event,
        "urgency": urgency,
        "severity": severity,
        "certainty": certainty,
        "headline": headline,
        "description": description,
        "instruction": instruction,
        "expires": expires_ms,
        "area": {
            "areaDesc": area_desc,
            "polygon": [],
            "circle": [] if circle is None else [circle],
        },
        "alert_kind": kind,
        "case_id": case_id,
        "correlation_ids": list(correlation_ids),
        "target_agencies": sorted(set(targets)),
    }


def alert_id(kind: str, *inputs: str) -> str:
    """Deterministic alert identifier: hash of the kind and the defining inputs."""
    return stable_id("alert", kind, *inputs)


# -- detectors ----------------------------------------------------------------------------


def border_zone_incident(
    view: IncidentView, cfg: PatternConfig, window_ms: int
) -> dict[str, Any] | None:
    """BORDER_ZONE_INCIDENT: the incident lies in the border zone; one alert per incident,
    for every agency but the reporter."""
    if not view.in_border_zone:
        return None
    targets = [a for a in cfg.agencies if a != view.agency]
    if not targets and view.jurisdiction is not None and view.jurisdiction != view.agency:
        targets = [view.jurisdiction]
    if not targets:
        return None
    distance = "at the boundary" if not view.distance_km else (
        f"{view.distance_km:.1f} km from the boundary"
    )  # fmt: skip
    side = view.jurisdiction or "outside the configured jurisdictions"
    return make_alert(
        "BORDER_ZONE_INCIDENT",
        alert_id("BORDER_ZONE_INCIDENT", view.agency, view.incident_id),
        view.occurred_ms,
        cfg,
        event="Incident in the border zone",
        urgency="Immediate",
        severity=CAP_SEVERITY.get(view.severity, "Unknown"),
        certainty="Observed",
        headline=f"{view.category} reported by {view.agency} in the border zone, {distance}",
        description=(
            f"{view.agency} incident {view.incident_id}: {view.category}, severity "
            f"{view.severity}, {distance} (jurisdiction: {side})."
        ),
        instruction="Check for related activity on your side and exchange information.",
        area_desc=f"Border zone, {side} side, {distance}",
        circle=_circle(view.lat, view.lon, cfg.border_radius_km),
        targets=targets,
        expires_ms=view.occurred_ms + window_ms,
    )


def subject_both_sides(
    view: IncidentView, other: IncidentView, token: Token, cfg: PatternConfig, window_ms: int
) -> dict[str, Any] | None:
    """SUBJECT_BOTH_SIDES: one token in two cross-jurisdiction incidents within the window;
    one alert per token per window period (the period of the later sighting)."""
    dt = abs(view.occurred_ms - other.occurred_ms)
    if dt > window_ms:
        return None
    a, b = (view, other) if view.ref <= other.ref else (other, view)
    kind, value = token
    sent = max(a.occurred_ms, b.occurred_ms)
    period = sent // window_ms
    km = haversine_km(a.lat, a.lon, b.lat, b.lon)
    severity = max(
        (CAP_SEVERITY.get(a.severity, "Unknown"), CAP_SEVERITY.get(b.severity, "Unknown")),
        key=_RANK.__getitem__,
    )
    sides = f"{a.side} / {b.side}" if a.side != b.side else a.side
    return make_alert(
        "SUBJECT_BOTH_SIDES",
        alert_id("SUBJECT_BOTH_SIDES", kind, value, str(period)),
        sent,
        cfg,
        event="Cross-border subject activity",
        urgency="Expected",
        severity=severity,
        certainty="Likely",
        headline=f"Same {kind.lower()} seen on both sides of the boundary",
        description=(
            f"The {kind} token {value[:4]}… appears in {a.agency} incident {a.incident_id} "
            f"({a.category}, {a.side}) and {b.agency} incident {b.incident_id} "
            f"({b.category}, {b.side}), {_duration(dt)} and {km:.1f} km apart."
        ),
        instruction="Review both incidents with the other agency and record a verdict.",
        area_desc=f"Both sides of the boundary ({sides}): incidents {a.incident_id}, "
        f"{b.incident_id}",
        circle=_circle((a.lat + b.lat) / 2, (a.lon + b.lon) / 2, km / 2 + 1.0),
        targets=[a.agency, b.agency, *(j for j in (a.jurisdiction, b.jurisdiction) if j)],
        expires_ms=sent + window_ms,
        correlation_ids=[correlation_id(a.ref, b.ref)],
    )


def group_forming(case: CaseSnapshot, cfg: PatternConfig, window_ms: int) -> dict[str, Any] | None:
    """GROUP_FORMING: within the window up to the case's newest incident, at least N
    incidents on both sides with at least M distinct subject tokens; one alert per case."""
    if len(case.members) < cfg.group_min_incidents:
        return None
    newest = max(v.occurred_ms for v in case.members)
    recent = [v for v in case.members if v.occurred_ms >= newest - window_ms]
    if len(recent) < cfg.group_min_incidents:
        return None
    agencies = {v.agency for v in recent}
    sides = {v.side for v in recent}
    if len(agencies) < 2 and len(sides) < 2:
        return None
    tokens = {t for v in recent for t in v.tokens}
    if len(tokens) < cfg.group_min_subjects:
        return None
    lat = sum(v.lat for v in recent) / len(recent)
    lon = sum(v.lon for v in recent) / len(recent)
    radius = max(haversine_km(lat, lon, v.lat, v.lon) for v in recent) + 1.0
    span = newest - min(v.occurred_ms for v in recent)
    kinds = sorted({kind for kind, _ in tokens})
    return make_alert(
        "GROUP_FORMING",
        alert_id("GROUP_FORMING", case.case_id),
        case.at_ms,
        cfg,
        event="Group forming across the boundary",
        urgency="Expected",
        severity="Severe",
        certainty="Likely",
        headline=(
            f"Group forming across the boundary: {len(recent)} incidents, {len(tokens)} subjects"
        ),
        description=(
            f"Case {case.case_id[:12]}… links {len(recent)} incidents of "
            f"{', '.join(sorted(agencies))} on {', '.join(sorted(sides))} within "
            f"{_duration(span)}, involving {len(tokens)} distinct subjects "
            f"({', '.join(kinds)})."
        ),
        instruction="Open a joint review of the case with the other agency.",
        area_desc=f"Area of case {case.case_id[:12]}… ({', '.join(sorted(sides))})",
        circle=_circle(lat, lon, radius if math.isfinite(radius) else 1.0),
        targets=[*agencies, *(v.jurisdiction for v in recent if v.jurisdiction)],
        expires_ms=case.at_ms + window_ms,
        case_id=case.case_id,
        correlation_ids=sorted(case.correlation_ids),
    )


EventDetector = Callable[[IncidentView, PatternConfig, int], "dict[str, Any] | None"]
TokenDetector = Callable[
    [IncidentView, IncidentView, Token, PatternConfig, int], "dict[str, Any] | None"
]
CaseDetector = Callable[[CaseSnapshot, PatternConfig, int], "dict[str, Any] | None"]

EVENT_DETECTORS: dict[str, EventDetector] = {"BORDER_ZONE_INCIDENT": border_zone_incident}
"""Detectors of one incident, by alert kind."""
TOKEN_DETECTORS: dict[str, TokenDetector] = {"SUBJECT_BOTH_SIDES": subject_both_sides}
"""Detectors of a cross-jurisdiction pair sharing a token, by alert kind."""
CASE_DETECTORS: dict[str, CaseDetector] = {"GROUP_FORMING": group_forming}
"""Detectors of a changed case, by alert kind."""


def border_alerts(
    views: Sequence[IncidentView], cfg: PatternConfig, window_ms: int
) -> list[dict[str, Any]]:
    """The event detectors' alerts for a batch of views, each identifier once (for the
    routing stage, which sees every event exactly once)."""
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    detectors = [d for kind, d in EVENT_DETECTORS.items() if kind in cfg.enabled]
    for view in views:
        for detect in detectors:
            alert = detect(view, cfg, window_ms)
            if alert is not None and alert["identifier"] not in seen:
                seen.add(alert["identifier"])
                out.append(alert)
    return out
