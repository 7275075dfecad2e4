"""Location: the administrative unit is optional and derived from unit polygons; where an
event lies with respect to the jurisdictions (placement) in Python and in ClickHouse alike."""

from __future__ import annotations

import copy
import json
import logging
import random
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import clickhouse_connect
import pytest

from xborder.agencies import load_agencies
from xborder.codec import AvroCodec
from xborder.compat import check_compatibility
from xborder.errors import ConfigurationError
from xborder.geo import (
    AdminUnit,
    Jurisdictions,
    admin_unit_sql,
    jurisdictions_for,
    placement_sql,
    read_jurisdictions,
)
from xborder.producer import EventEncoder
from xborder.samples import sample_events
from xborder.schemas import SchemaStore
from xborder.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas"
DEPLOY = ROOT / "deploy"
NOW = datetime(2026, 3, 19, 12, 0, tzinfo=UTC)

CANTHO_UNIT = AdminUnit("31117", "Phuong Thoi An Dong")
ANGIANG_UNIT = AdminUnit("30352", "Xa Vinh Trach")
INSIDE_CANTHO = (10.087, 105.662)
"""(lat, lon) in Can Tho's jurisdiction and in its unit polygon."""
INSIDE_ANGIANG = (10.45, 105.2)
"""In An Giang's jurisdiction and in its unit polygon (outside the polygon's hole)."""
IN_ANGIANG_HOLE = (10.46, 105.21)
"""In An Giang's jurisdiction, in the hole of its unit polygon: no unit."""
OUTSIDE_ALL = (9.7, 105.0)
"""In the configured region, outside every jurisdiction."""


def _square(lon: float, lat: float, half: float) -> list[list[float]]:
    return [
        [lon - half, lat - half],
        [lon + half, lat - half],
        [lon + half, lat + half],
        [lon - half, lat + half],
        [lon - half, lat - half],
    ]


def write_units_config(directory: Path) -> Path:
    """The example agencies config with two administrative-unit polygons added to the
    example jurisdictions (one with a hole); returns the agencies config's path."""
    directory.mkdir(parents=True, exist_ok=True)
    geojson = json.loads((DEPLOY / "jurisdictions.example.geojson").read_text())
    (clat, clon), (alat, alon) = INSIDE_CANTHO, INSIDE_ANGIANG
    geojson["features"] += [
        {
            "type": "Feature",
            "properties": {
                "agency": "cantho",
                "admin_unit_code": CANTHO_UNIT.code,
                "admin_unit_name": CANTHO_UNIT.name,
            },
            "geometry": {"type": "Polygon", "coordinates": [_square(clon, clat, 0.01)]},
        },
        {
            "type": "Feature",
            "properties": {
                "agency": "angiang",
                "admin_unit_code": ANGIANG_UNIT.code,
                "admin_unit_name": ANGIANG_UNIT.name,
            },
            "geometry": {
                "type": "MultiPolygon",
                "coordinates": [
                    [
                        _square(alon + 0.005, alat + 0.005, 0.02),
                        _square(alon + 0.01, alat + 0.01, 0.003),
                    ]
                ],
            },
        },
    ]
    (directory / "jurisdictions.geojson").write_text(json.dumps(geojson))
    agencies = json.loads((DEPLOY / "agencies.example.json").read_text())
    agencies["jurisdictions"] = "jurisdictions.geojson"
    path = directory / "agencies.json"
    path.write_text(json.dumps(agencies))
    return path


@pytest.fixture(scope="module")
def units_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_units_config(tmp_path_factory.mktemp("units"))


@pytest.fixture(scope="module")
def places(units_config: Path) -> Jurisdictions:
    return jurisdictions_for(load_agencies(units_config))


def _encoder(agencies_config: Path) -> EventEncoder:
    settings = load_settings(agencies_config=agencies_config)
    codec = AvroCodec(SchemaStore(settings.schemas_dir))
    return EventEncoder(settings, load_agencies(agencies_config), codec, "cantho")


def _event(lat: float, lon: float, **location: Any) -> dict[str, Any]:
    event = copy.deepcopy(sample_events(1, now=NOW)[0])
    event["agency"] = "cantho"
    event["location"] = {"lat": lat, "lon": lon, **location}
    return event


# --- the schema ---------------------------------------------------------------------------


def test_an_event_without_administrative_unit_is_accepted_and_reads_empty() -> None:
    encoder = _encoder(DEPLOY / "agencies.example.json")
    payload = encoder.encode(_event(*INSIDE_CANTHO, address=None), now=NOW)
    location = encoder.codec.decode(payload).value["location"]
    assert (location["admin_unit_code"], location["admin_unit_name"]) == ("", "")


def test_the_optional_unit_keeps_the_wire_fingerprint_and_passes_the_gate(tmp_path: Path) -> None:
    """A default is not part of the Parsing Canonical Form: producers built on v1's Location
    and on the current one write the same fingerprint, and old data reads."""
    v1 = json.loads((SCHEMAS / "history" / "v1" / "Location.avsc").read_text())
    current = json.loads((SCHEMAS / "Location.avsc").read_text())
    assert check_compatibility(v1, current) == []
    assert check_compatibility(current, v1) == []  # a v1 reader reads the new events too
    shutil.copytree(SCHEMAS, tmp_path / "schemas", ignore=shutil.ignore_patterns("history"))
    (tmp_path / "schemas" / "Location.avsc").write_text(json.dumps(v1))
    before = SchemaStore(tmp_path / "schemas").current("xborder.v1.IncidentReported")
    after = SchemaStore(SCHEMAS).current("xborder.v1.IncidentReported")
    assert before.fingerprint == after.fingerprint


def test_severity_levels_are_documented() -> None:
    severity = json.loads((SCHEMAS / "Severity.avsc").read_text())
    for symbol in severity["symbols"]:
        assert f"{symbol}:" in severity["doc"], symbol


# --- units and placement in Python --------------------------------------------------------


def test_unit_polygons_are_read_with_their_unit(units_config: Path) -> None:
    config = load_agencies(units_config)
    assert config.jurisdictions is not None
    areas = read_jurisdictions(config.jurisdictions, config.ids, config.region)
    assert [a.unit for a in areas] == [None, None, CANTHO_UNIT, ANGIANG_UNIT]


def test_a_unit_needs_both_code_and_name(tmp_path: Path, units_config: Path) -> None:
    geojson = json.loads((units_config.parent / "jurisdictions.geojson").read_text())
    del geojson["features"][2]["properties"]["admin_unit_name"]
    path = tmp_path / "bad.geojson"
    path.write_text(json.dumps(geojson))
    with pytest.raises(ConfigurationError, match=r"feature #2 \(cantho\): .*'admin_unit_name'"):
        read_jurisdictions(path)


def test_placement_and_unit_of_known_points(places: Jurisdictions) -> None:
    assert places.placement("cantho", *INSIDE_CANTHO) == "own"
    assert places.placement("angiang", *INSIDE_CANTHO) == "other-jurisdiction:cantho"
    assert places.placement("cantho", *INSIDE_ANGIANG) == "other-jurisdiction:angiang"
    assert places.placement("cantho", *OUTSIDE_ALL) == "outside"
    assert places.admin_unit(*INSIDE_CANTHO) == CANTHO_UNIT
    assert places.admin_unit(*INSIDE_ANGIANG) == ANGIANG_UNIT
    assert places.admin_unit(*IN_ANGIANG_HOLE) is None
    assert places.placement("angiang", *IN_ANGIANG_HOLE) == "own"  # the hole is the unit's
    assert places.admin_unit(*OUTSIDE_ALL) is None


def test_an_overlap_is_the_agencys_own_jurisdiction() -> None:
    ring = ((0.0, 0.0), (2.0, 0.0), (2.0, 2.0), (0.0, 2.0), (0.0, 0.0))
    shifted = tuple((x + 1.0, y) for x, y in ring)
    from xborder.geo import Area

    places = Jurisdictions([Area("a", (ring,)), Area("b", (shifted,))], border_zone_km=1.0)
    assert places.placement("b", 1.0, 1.5) == "own"  # in both: b's own
    assert places.placement("b", 1.0, 0.5) == "other-jurisdiction:a"


def test_the_producer_warns_about_an_event_outside_its_jurisdiction(
    units_config: Path, caplog: pytest.LogCaptureFixture
) -> None:
    encoder = _encoder(units_config)
    with caplog.at_level(logging.WARNING, logger="xborder.producer"):
        encoder.encode(_event(*INSIDE_CANTHO), now=NOW)
        assert not caplog.records
        encoder.encode(_event(*INSIDE_ANGIANG), now=NOW)
        encoder.encode(_event(*OUTSIDE_ALL), now=NOW)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert "in the jurisdiction of angiang, not in cantho's" in messages[0]
    assert "'other-jurisdiction:angiang'" in messages[0]
    assert "outside every configured jurisdiction" in messages[1]
    assert encoder.placement(_event(*OUTSIDE_ALL)) == "outside"


# --- the same rules in ClickHouse ---------------------------------------------------------


def test_clickhouse_expressions_agree_with_python(places: Jurisdictions, tmp_path: Path) -> None:
    rng = random.Random(14)
    points = [
        (rng.choice(("cantho", "angiang")), rng.uniform(104.7, 106.0), rng.uniform(9.6, 11.0))
        for _ in range(3000)
    ]
    # and points in and around the unit polygons, where the units are small
    for lat, lon in (INSIDE_CANTHO, INSIDE_ANGIANG, IN_ANGIANG_HOLE):
        points += [
            ("cantho", lon + rng.uniform(-0.03, 0.03), lat + rng.uniform(-0.03, 0.03))
            for _ in range(300)
        ]
    literal = "[" + ", ".join(f"('{a}', {x!r}, {y!r})" for a, x, y in points) + "]"
    areas = places.areas
    client = clickhouse_connect.get_client(dsn=f"chdb://{tmp_path}")
    try:
        rows = client.query(
            f"SELECT {placement_sql(areas)}, {admin_unit_sql(areas, 'code')},"
            f" {admin_unit_sql(areas, 'name')} FROM (SELECT p.1 AS agency, p.2 AS lon,"
            f" p.3 AS lat FROM (SELECT arrayJoin({literal}) AS p))"
        ).result_rows
    finally:
        client.close()
    expected = []
    for agency, lon, lat in points:
        unit = places.admin_unit(lat, lon)
        code, name = unit if unit is not None else ("", "")
        expected.append((places.placement(agency, lat, lon), code, name))
    assert [tuple(r) for r in rows] == expected
    found = {r[0].partition(":")[0] for r in rows} | {r[1] for r in rows}
    assert {"own", "other-jurisdiction", "outside", "", CANTHO_UNIT.code} <= found
    assert ANGIANG_UNIT.code in found


def test_without_units_the_expressions_are_empty(places: Jurisdictions) -> None:
    plain = [a for a in places.areas if a.unit is None]
    assert admin_unit_sql(plain, "code") == "''"
    assert placement_sql([]) == "'outside'"
