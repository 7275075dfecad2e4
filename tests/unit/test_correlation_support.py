"""Shared helpers of the correlation tests: example geography, a view factory, the codec.

Imported by the other ``test_correlation_*`` modules; the few tests here check that the
helpers' places are where the tests assume they are.
"""

from __future__ import annotations

import itertools
from functools import cache
from pathlib import Path
from typing import Any

from streams.correlation.model import IncidentView
from xborder.agencies import load_agencies
from xborder.codec import AvroCodec
from xborder.geo import Jurisdictions, jurisdictions_for
from xborder.schemas import SchemaStore

ROOT = Path(__file__).resolve().parents[2]
HOUR = 3_600_000
T0 = 1_773_900_000_000  # 2026-03-19
AGENCIES = ("cantho", "angiang")

# Two points 0.7 km apart on either side of the shared boundary, both in the border zone.
CANTHO_EDGE = (10.2772, 105.3907)
ANGIANG_EDGE = (10.2828, 105.3873)
# Far from the boundary on each side.
CANTHO_DEEP = (10.03, 105.77)
ANGIANG_DEEP = (10.40, 105.30)

TOKEN_V = "3fa2" + "a" * 60
TOKEN_P = "b2b2" + "b" * 60
TOKEN_H = "c3c3" + "c" * 60

_ids = itertools.count(1)


@cache
def jurisdictions() -> Jurisdictions:
    """The example jurisdictions (approximate polygons of deploy/)."""
    return jurisdictions_for(load_agencies(ROOT / "deploy" / "agencies.example.json"))


@cache
def codec() -> AvroCodec:
    """The real codec over schemas/."""
    return AvroCodec(SchemaStore(ROOT / "schemas"))


def event_id(n: int | None = None) -> str:
    """A UUID-shaped event id (fresh unless ``n`` is given)."""
    return f"00000000-0000-4000-8000-{next(_ids) if n is None else n:012d}"


def view(
    agency: str = "cantho",
    incident: str | None = None,
    at: tuple[float, float] = CANTHO_EDGE,
    t: int = T0,
    tokens: tuple[tuple[str, str], ...] = (),
    category: str = "THEFT",
    mo: tuple[str, ...] = (),
    severity: str = "MEDIUM",
    **overrides: Any,
) -> IncidentView:
    """A view placed by the example jurisdictions (override any field)."""
    lat, lon = at
    placed = jurisdictions().locate(lat, lon)
    n = next(_ids)
    built = IncidentView(
        event_id=event_id(n),
        agency=agency,
        incident_id=incident or f"{agency.upper()}-{n:05d}",
        occurred_ms=t,
        lat=lat,
        lon=lon,
        category=category,
        severity=severity,
        tokens=tuple(sorted(set(tokens))),
        modus_operandi=frozenset(mo),
        jurisdiction=placed.agency_id,
        in_border_zone=placed.in_border_zone,
        distance_km=placed.distance_to_boundary_km,
        version_ms=t,
    )
    return built._replace(**overrides) if overrides else built


def encodes(record: str, value: dict[str, Any]) -> dict[str, Any]:
    """Encode with the real codec and decode back (raises if the value does not fit)."""
    decoded = codec().decode(codec().encode(record, value))
    assert decoded.record_name == f"xborder.v1.{record}"
    return decoded.value


def test_places_are_where_the_tests_assume() -> None:
    j = jurisdictions()
    c, a = j.locate(*CANTHO_EDGE), j.locate(*ANGIANG_EDGE)
    assert (c.agency_id, c.in_border_zone) == ("cantho", True)
    assert (a.agency_id, a.in_border_zone) == ("angiang", True)
    assert j.locate(*CANTHO_DEEP)[:2] == ("cantho", False)
    assert j.locate(*ANGIANG_DEEP)[:2] == ("angiang", False)


def test_view_factory_sorts_tokens() -> None:
    v = view(tokens=(("VEHICLE", "b"), ("PERSON", "a"), ("VEHICLE", "b")))
    assert v.tokens == (("PERSON", "a"), ("VEHICLE", "b"))
    assert v.ref == ("cantho", v.incident_id)
