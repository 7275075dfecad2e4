"""The correlator's view of one incident, built from a decoded event, and its wire form.

An ``IncidentView`` keeps only what correlation needs (no narrative, no descriptors, no
admin unit): the ids, the event time, where it happened and on which side of the boundary,
category, severity, the subject tokens and the modus-operandi tags. It is immutable, so one
object can sit under several blocking keys of the index at once. It is a NamedTuple, not a
frozen dataclass: the correlation stage builds one per item it receives, and a tuple is
built about three times faster (a frozen dataclass sets each field through
``object.__setattr__``).

The wire form (``to_wire``/``from_wire``) is a flat JSON-able list, versioned by its first
element, for shipping many views per Kafka message in one JSON array: no field names, tokens
as a flat ``[kind, token, kind, token, ...]`` list.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, Protocol

from xborder.geo import Placement

Ref = tuple[str, str]
"""An incident: (agency, incident_id)."""
Token = tuple[str, str]
"""A subject token: (kind, token), kind one of the SubjectKind symbols."""

WIRE_VERSION = 2
"""First element of every wire list; bump it when the layout changes (version 2 added
the person keys and individuals; version 1 lists are still read, without them)."""
_WIRE_LEN = 17
_WIRE_V1_LEN = 15
NAME_KEYS = frozenset({"NAME_BIRTH_DATE", "NAME_BIRTH_YEAR", "NAME"})
"""Person keys made from a name: a national-ID disagreement contradicts their agreement."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


class Locator(Protocol):
    """What ``view_from_event`` needs of ``xborder.geo.Jurisdictions``."""

    def locate(self, lat: float, lon: float) -> Placement: ...


class IncidentView(NamedTuple):
    """The state of one incident, as of one event, that the correlator indexes and scores."""

    event_id: str
    """event_id of the IncidentReported or IncidentUpdated this state comes from."""
    agency: str
    """Reporting agency."""
    incident_id: str
    """The agency's incident id."""
    occurred_ms: int
    """Event time of the incident, ms since the epoch: the time the window works on."""
    lat: float
    lon: float
    category: str
    """Category symbol."""
    severity: str
    """Severity symbol."""
    tokens: tuple[Token, ...]
    """Subject tokens, sorted and de-duplicated."""
    modus_operandi: frozenset[str]
    """Modus-operandi tags, lower-case."""
    jurisdiction: str | None
    """Agency whose jurisdiction contains the location; None outside every jurisdiction."""
    in_border_zone: bool
    """The location is within the border zone of another agency's jurisdiction."""
    distance_km: float | None
    """Distance to the nearest other jurisdiction; None when unknown."""
    version_ms: int = 0
    """When the agency recorded this state (reported_at, or updated_at of an update): of two
    events of one incident the later version wins, whatever order they arrive in."""
    person_keys: tuple[tuple[str, str], ...] = ()
    """(PERSON token, PersonKey) for the person tokens whose key the agency declared,
    sorted; a token not listed is UNSPECIFIED."""
    individuals: tuple[tuple[str, str], ...] = ()
    """(name-based PERSON token, national-ID token) of each individual recorded with both,
    sorted: what lets a national-ID disagreement count against a name agreement."""

    @property
    def ref(self) -> Ref:
        """(agency, incident_id): the incident, whatever its version."""
        return (self.agency, self.incident_id)

    @property
    def side(self) -> str:
        """Side of the boundary: the jurisdiction holding the location, else the agency."""
        return self.jurisdiction if self.jurisdiction is not None else self.agency


def to_ms(value: Any) -> int:
    """Milliseconds since the epoch of a decoded timestamp-millis (datetime) or of an int."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return (value - _EPOCH) // _MS
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise TypeError(f"expected a datetime or milliseconds since the epoch, got {value!r}")


def stable_id(*parts: str) -> str:
    """Hex SHA-256 of the parts joined by a unit separator: the deterministic ids' hash."""
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()


_interned: dict[Any, Any] = {}
_INTERN_MAX = 65_536  # categories, kinds, agencies and tag sets repeat: share one object each


def view_from_event(value: Mapping[str, Any], jurisdictions: Locator) -> IncidentView:
    """The view of a decoded IncidentReported or IncidentUpdated (timestamps as datetimes or
    ms); ``jurisdictions`` places the location (``Jurisdictions.locate``)."""
    location = value["location"]
    lat, lon = float(location["lat"]), float(location["lon"])
    placement = (
        jurisdictions.locate(lat, lon)
        if math.isfinite(lat) and math.isfinite(lon)
        else Placement(None, False, None)
    )
    version = value.get("updated_at")
    if version is None:
        version = value.get("reported_at")
    subjects = value.get("subjects") or ()
    tokens = sorted({(s["kind"], s["token"]) for s in subjects})
    person_keys, individuals = _person_facts(subjects)
    tags = frozenset(str(t).strip().lower() for t in value.get("modus_operandi") or ())
    tags = tags - {""} if "" in tags else tags
    intern = _interned.setdefault
    if len(_interned) >= _INTERN_MAX:
        _interned.clear()
    # positional: a NamedTuple built with keywords costs a third more
    return IncidentView(
        str(value["event_id"]),
        intern(agency := value["agency"], agency),
        value["incident_id"],
        to_ms(value["occurred_at"]),
        lat,
        lon,
        intern(category := value["category"], category),
        intern(severity := value["severity"], severity),
        tuple([(intern(kind, kind), token) for kind, token in tokens]),
        intern(tags, tags),
        placement.agency_id,
        placement.in_border_zone,
        placement.distance_to_boundary_km,
        0 if version is None else to_ms(version),
        person_keys,
        individuals,
    )


def _person_facts(
    subjects: Any,
) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]:
    """The declared person keys and the (name token, national-ID token) pairs of the
    individuals of an event's subjects."""
    keys: set[tuple[str, str]] = set()
    by_individual: dict[str, list[tuple[str, str]]] = {}
    for s in subjects:
        if s["kind"] != "PERSON":
            continue
        key = s.get("person_key") or "UNSPECIFIED"
        if key != "UNSPECIFIED":
            keys.add((s["token"], key))
            label = s.get("individual") or ""
            if label:
                by_individual.setdefault(label, []).append((s["token"], key))
    pairs = {
        (name, national)
        for members in by_individual.values()
        for name, name_key in members
        if name_key in NAME_KEYS
        for national, national_key in members
        if national_key == "NATIONAL_ID"
    }
    return tuple(sorted(keys)), tuple(sorted(pairs))


def to_wire(view: IncidentView) -> list[Any]:
    """The compact JSON-able list form of a view (see the module docstring)."""
    flat: list[str] = []
    for kind, token in view.tokens:
        flat.append(kind)
        flat.append(token)
    return [
        WIRE_VERSION,
        view.event_id,
        view.agency,
        view.incident_id,
        view.occurred_ms,
        view.version_ms,
        view.lat,
        view.lon,
        view.category,
        view.severity,
        flat,
        sorted(view.modus_operandi),
        view.jurisdiction,
        1 if view.in_border_zone else 0,
        view.distance_km,
        [x for pair in view.person_keys for x in pair],
        [x for pair in view.individuals for x in pair],
    ]


def from_wire(item: list[Any]) -> IncidentView:
    """The view of a wire list made by ``to_wire``; ValueError on another layout."""
    if len(item) == _WIRE_V1_LEN and item[0] == 1:
        item = [*item, [], []]
    elif len(item) != _WIRE_LEN or item[0] != WIRE_VERSION:
        raise ValueError(
            f"not an IncidentView wire list of version {WIRE_VERSION} "
            f"({len(item)} elements, version {item[0] if item else None!r})"
        )
    (_, event_id, agency, incident_id, occurred, version, lat, lon, category, severity,
     flat, tags, jurisdiction, border, distance, keys, individuals) = item  # fmt: skip
    if not (
        isinstance(event_id, str) and isinstance(agency, str) and isinstance(incident_id, str)
        and type(occurred) is int and type(version) is int
        and isinstance(lat, (int, float)) and isinstance(lon, (int, float))
        and isinstance(category, str) and isinstance(severity, str)
        and isinstance(flat, list) and isinstance(tags, list)
        and (jurisdiction is None or isinstance(jurisdiction, str))
        and (distance is None or isinstance(distance, (int, float)))
        and isinstance(keys, list) and len(keys) % 2 == 0
        and isinstance(individuals, list) and len(individuals) % 2 == 0
        and all(isinstance(x, str) for x in keys) and all(isinstance(x, str) for x in individuals)
    ):  # fmt: skip
        raise ValueError(f"IncidentView wire list with a field of the wrong type: {item!r:.200}")
    # interned through the dict's setdefault (one C call each, no Python frame): the views
    # of a window share one object per agency, category, kind and tag set
    intern = _interned.setdefault
    if len(_interned) >= _INTERN_MAX:
        _interned.clear()
    it = iter(flat)
    kit, iit = iter(keys), iter(individuals)
    tag_set = frozenset(tags)
    return IncidentView(
        event_id,
        intern(agency, agency),
        incident_id,
        occurred,
        lat,
        lon,
        intern(category, category),
        intern(severity, severity),
        tuple([(intern(kind, kind), token) for kind, token in zip(it, it, strict=True)]),
        intern(tag_set, tag_set),
        None if jurisdiction is None else intern(jurisdiction, jurisdiction),
        bool(border),
        distance,
        version,
        tuple(zip(kit, kit, strict=True)) if keys else (),
        tuple(zip(iit, iit, strict=True)) if individuals else (),
    )
