"""IncidentView: built from decoded events, its wire form, timestamps, deterministic ids."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from streams.correlation.model import (
    WIRE_VERSION,
    from_wire,
    stable_id,
    to_ms,
    to_wire,
    view_from_event,
)
from tests.unit.test_correlation_support import ROOT, codec, jurisdictions, view


def decoded_example(record: str) -> dict:
    document = json.loads((ROOT / "schemas" / "examples" / f"{record}.json").read_text())
    c = codec()
    return c.decode(c.encode(record, c.from_json(record, document))).value


def test_view_from_a_decoded_report() -> None:
    value = decoded_example("IncidentReported")
    assert isinstance(value["occurred_at"], datetime)
    v = view_from_event(value, jurisdictions())
    assert v.ref == ("cantho", "EXAMPLE-CANTHO-0001")
    assert v.event_id == "00000000-0000-4000-8000-000000000001"
    assert v.occurred_ms == to_ms(datetime(2026, 3, 19, 8, 0, tzinfo=UTC))
    assert v.version_ms == to_ms(datetime(2026, 3, 19, 8, 40, tzinfo=UTC))  # reported_at
    assert v.tokens == (("PHONE", "b2" * 32), ("VEHICLE", "a1" * 32))
    assert v.modus_operandi == frozenset({"motorbike", "night"})
    assert (v.category, v.severity) == ("THEFT", "MEDIUM")
    placed = jurisdictions().locate(10.087, 105.662)
    assert (v.jurisdiction, v.in_border_zone, v.distance_km) == placed


def test_view_from_a_decoded_update_takes_updated_at_as_version() -> None:
    v = view_from_event(decoded_example("IncidentUpdated"), jurisdictions())
    assert v.version_ms == to_ms(datetime(2026, 3, 19, 10, 15, tzinfo=UTC))
    assert v.tokens == (("PERSON", "c3" * 32), ("VEHICLE", "a1" * 32))
    assert "group" in v.modus_operandi and v.severity == "HIGH"


def test_view_outside_every_jurisdiction_and_messy_tags() -> None:
    value = decoded_example("IncidentReported")
    value["location"] = {**value["location"], "lat": 21.0, "lon": 105.8}  # Hanoi
    value["modus_operandi"] = ["Night", " night ", ""]
    value["subjects"] = value["subjects"] * 2
    v = view_from_event(value, jurisdictions())
    assert (v.jurisdiction, v.in_border_zone, v.distance_km) == (None, False, None)
    assert v.modus_operandi == frozenset({"night"})
    assert len(v.tokens) == 2


def test_wire_round_trip_through_json() -> None:
    views = [
        view(tokens=(("VEHICLE", "a" * 64), ("PHONE", "b" * 64)), mo=("night", "group")),
        view(agency="angiang", at=(21.0, 105.8)),  # outside: None fields
    ]
    text = json.dumps([to_wire(v) for v in views])
    back = [from_wire(item) for item in json.loads(text)]
    assert back == views
    assert to_wire(views[0])[0] == WIRE_VERSION
    assert "agency" not in text  # positional: no field names on the wire


def test_from_wire_rejects_another_layout() -> None:
    item = to_wire(view())
    with pytest.raises(ValueError, match="version"):
        from_wire([99, *item[1:]])
    with pytest.raises(ValueError):
        from_wire(item[:-1])


def test_to_ms() -> None:
    assert to_ms(datetime(1970, 1, 1, 0, 0, 1, 500, tzinfo=UTC)) == 1000
    assert to_ms(datetime(1970, 1, 1, 7, tzinfo=timezone(timedelta(hours=7)))) == 0
    assert to_ms(datetime(1970, 1, 1, 0, 0, 2)) == 2000  # naive reads as UTC
    assert to_ms(1234) == 1234
    with pytest.raises(TypeError):
        to_ms("2026-03-19")


def test_stable_id_is_a_separator_safe_sha256() -> None:
    assert stable_id("a", "bc") != stable_id("ab", "c")
    assert stable_id("x") == stable_id("x") and len(stable_id("x")) == 64
