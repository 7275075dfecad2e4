"""The generated scenario in memory: compact incidents, publications, truth, planted negatives.

Incidents are kept compact (entity ids, epoch milliseconds, one located spot) and turned
into JSON-shaped ``IncidentReported`` documents only when they are published or written,
so a run of a million events fits in memory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

from xborder.scenario.config import ScenarioConfig
from xborder.scenario.identities import Identities
from xborder.scenario.malformed import MalformedKind
from xborder.scenario.places import Places, Spot
from xborder.scenario.truth import Ref, Truth

Progress = Callable[[int, int], None]
"""Progress callback: ``progress(n_done, n_total)``."""

IncidentKind = Literal[
    "background",
    "repeat",
    "group",
    "hard_negative",
    "lookalike",
    "double_report",
    "near_miss",
    "namesake",
]
"""Why an incident exists: ordinary, repeat offender, cross-border group, hard-negative
twin (or its standalone base, marked background), lookalike plate, one of two agencies'
reports of one occurrence, a double report's near miss, one of a pair of namesakes."""
Delay = Literal["normal", "out_of_order", "late"]
"""Publication delay class: 1-10 min, 10-60 min, 1 h to ``max_lateness``."""

PUBLISH_INCIDENT: Final = 0
PUBLISH_DUPLICATE: Final = 1
PUBLISH_MALFORMED: Final = 2
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def iso_ms(ms: int) -> str:
    """Epoch milliseconds as ISO-8601 UTC with milliseconds and 'Z'."""
    moment = EPOCH + timedelta(milliseconds=ms)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}Z"


@dataclass(slots=True, eq=False)
class Incident:
    """One planned incident (mutable while the generator assigns ids and delays)."""

    serial: int
    agency: str
    occurred_ms: int
    spot: Spot
    category: str
    severity: str
    subjects: tuple[tuple[int, str], ...]
    """(entity id, role) pairs."""
    mo: tuple[str, ...]
    kind: IncidentKind
    event_id: str
    source_system: str
    narrative: str | None
    address: str | None
    group: str | None = None
    incident_id: str = ""
    reported_ms: int = 0
    publish_ms: int = 0
    delay: Delay = "normal"

    @property
    def ref(self) -> Ref:
        """(agency, incident_id)."""
        return (self.agency, self.incident_id)

    @property
    def entities(self) -> list[int]:
        """Entity ids of the subjects."""
        return [entity for entity, _ in self.subjects]


@dataclass(frozen=True, slots=True)
class MalformedLine:
    """A line the publish CLI must reject, as published by ``agency``."""

    agency: str
    kind: MalformedKind
    line: str
    publish_ms: int


@dataclass(frozen=True)
class Lookalike:
    """A planted lookalike plate (raw plates in memory only; never written)."""

    incident: Ref
    mimics: Ref
    plate: str
    original_plate: str
    token: str
    original_token: str


@dataclass(frozen=True)
class ScenarioEvent:
    """One publication, in publish order across agencies."""

    agency: str
    """The publishing agency (its topic; the file ``events.<agency>.jsonl``)."""
    kind: Literal["incident", "duplicate", "malformed"]
    line: str
    """The text to publish (one JSON object, or deliberately broken text)."""
    document: dict[str, Any] | None
    """The parsed line; None when the line is not JSON."""
    publish_at_ms: int
    """When the agency publishes it, epoch milliseconds on the scenario's clock."""
    offset_s: float
    """Seconds after the scenario's first publication (to pace a replay)."""
    late: bool
    out_of_order: bool
    malformed_kind: MalformedKind | None = None


@dataclass
class Scenario:
    """A generated scenario: what to publish, in which order, and the ground truth."""

    config: ScenarioConfig
    agency_ids: tuple[str, ...]
    identities: Identities
    places: Places
    incidents: list[Incident]
    malformed: list[MalformedLine]
    publications: list[tuple[int, int, int, int, int]]
    """Sorted (publish_ms, agency rank, serial, PUBLISH_* code, index)."""
    truth: Truth
    hard_negatives: list[tuple[Incident, Incident]]
    lookalikes: list[Lookalike]

    def document(self, incident: Incident) -> dict[str, Any]:
        """The JSON-shaped ``IncidentReported`` event of an incident (as the publish CLI takes)."""
        return incident_document(incident, self.identities, self.places)

    @property
    def lines(self) -> int:
        """Every line published: incidents, duplicates and malformed lines."""
        return len(self.publications)


def incident_document(incident: Incident, identities: Identities, places: Places) -> dict[str, Any]:
    """The JSON-shaped ``IncidentReported`` event of an incident."""
    code, name = places.unit(incident.spot)
    subjects = identities.subjects
    return {
        "event_id": incident.event_id,
        "agency": incident.agency,
        "incident_id": incident.incident_id,
        "occurred_at": iso_ms(incident.occurred_ms),
        "reported_at": iso_ms(incident.reported_ms),
        "location": {
            "lat": incident.spot.lat,
            "lon": incident.spot.lon,
            "admin_unit_code": code,
            "admin_unit_name": name,
            "address": incident.address,
        },
        "category": incident.category,
        "severity": incident.severity,
        "subjects": [
            s for entity, role in incident.subjects for s in subjects(entity, role, incident.agency)
        ],
        "modus_operandi": list(incident.mo),
        "narrative": incident.narrative,
        "source_system": incident.source_system,
    }
