"""Jurisdiction lookup: known places, the border zone, the grid against brute force, bad files."""

from __future__ import annotations

import copy
import json
import math
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from xborder.agencies import Region, load_agencies
from xborder.errors import ConfigurationError
from xborder.geo import (
    OUTSIDE,
    Area,
    Jurisdictions,
    Placement,
    cell_of,
    haversine_km,
    load_jurisdictions,
    neighbour_cells,
    read_jurisdictions,
)

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
EXAMPLE = DEPLOY / "jurisdictions.example.geojson"
AGENCIES = ("cantho", "angiang")
REGION = Region(min_lat=9.6, max_lat=11.0, min_lon=104.7, max_lon=106.0)
# Two consecutive vertices (lon, lat) of the edge the example polygons share.
SHARED_A, SHARED_B = (105.361, 10.263), (105.417, 10.297)
TRIPOINT = (105.239, 10.181)


@pytest.fixture(scope="module")
def example() -> Jurisdictions:
    return load_jurisdictions(EXAMPLE, border_zone_km=5.0, agency_ids=AGENCIES, region=REGION)


def same(grid: Placement, exact: Placement) -> bool:
    """Equal agency and flag; equal distance up to float rounding in the bound tests."""
    if grid[:2] != exact[:2] or (grid[2] is None) != (exact[2] is None):
        return False
    return grid[2] is None or exact[2] is None or abs(grid[2] - exact[2]) < 1e-9


def random_points(n: int, seed: int) -> list[tuple[float, float]]:
    rng = random.Random(seed)
    return [
        (rng.uniform(REGION.min_lat, REGION.max_lat), rng.uniform(REGION.min_lon, REGION.max_lon))
        for _ in range(n)
    ]


def square(agency: str, lon: float, lat: float, size: float) -> Area:
    ring = ((lon, lat), (lon + size, lat), (lon + size, lat + size), (lon, lat + size), (lon, lat))
    return Area(agency, (ring,))


def densify(areas: list[Area], pieces: int) -> list[Area]:
    """Split every edge into ``pieces``, the same way in both polygons that share it."""

    def split(a: tuple[float, float], b: tuple[float, float]) -> list[tuple[float, float]]:
        lo, hi = min(a, b), max(a, b)
        points = [
            (lo[0] + (hi[0] - lo[0]) * k / pieces, lo[1] + (hi[1] - lo[1]) * k / pieces)
            for k in range(pieces)
        ]
        return points if a == lo else [hi, *reversed(points[1:])]

    out = []
    for area in areas:
        rings = []
        for ring in area.rings:
            dense = [p for k in range(len(ring) - 1) for p in split(ring[k], ring[k + 1])]
            rings.append((*dense, dense[0]))
        out.append(Area(area.agency_id, tuple(rings)))
    return out


@pytest.mark.parametrize(
    ("lat", "lon", "agency"),
    [
        (10.03, 105.78, "cantho"),  # Ninh Kieu
        (10.12, 105.63, "cantho"),  # O Mon
        (10.27, 105.53, "cantho"),  # Thot Not
        (10.38, 105.43, "angiang"),  # Long Xuyen
        (10.71, 105.12, "angiang"),  # Chau Doc
        (10.45, 105.50, "angiang"),  # Cho Moi, across the Hau
    ],
)
def test_known_places_fall_in_their_jurisdiction(
    example: Jurisdictions, lat: float, lon: float, agency: str
) -> None:
    placement = example.locate(lat, lon)
    assert placement.agency_id == agency
    assert placement.distance_to_boundary_km is not None
    assert placement.distance_to_boundary_km > 0


def test_points_either_side_of_the_shared_edge_are_in_the_border_zone(
    example: Jurisdictions,
) -> None:
    mid_lon, mid_lat = (SHARED_A[0] + SHARED_B[0]) / 2, (SHARED_A[1] + SHARED_B[1]) / 2
    north = example.locate(mid_lat + 0.003, mid_lon)
    south = example.locate(mid_lat - 0.003, mid_lon)
    assert (north.agency_id, south.agency_id) == ("angiang", "cantho")
    for placement, lat in ((north, mid_lat + 0.003), (south, mid_lat - 0.003)):
        assert placement.in_border_zone
        assert placement.distance_to_boundary_km is not None
        # The edge's midpoint is a boundary point: the distance cannot exceed the way there.
        straight = haversine_km(lat, mid_lon, mid_lat, mid_lon)
        assert 0.5 * straight < placement.distance_to_boundary_km <= straight * 1.005


def test_a_point_far_from_the_boundary_is_not_in_the_border_zone(example: Jurisdictions) -> None:
    placement = example.locate(10.71, 105.12)  # Chau Doc, on the Cambodian border
    assert placement.agency_id == "angiang"
    assert not placement.in_border_zone
    assert placement.distance_to_boundary_km is not None
    to_tripoint = haversine_km(10.71, 105.12, TRIPOINT[1], TRIPOINT[0])
    assert 40 < placement.distance_to_boundary_km <= to_tripoint * 1.005


def test_the_border_zone_edge_is_the_configured_distance(example: Jurisdictions) -> None:
    lon = (SHARED_A[0] + SHARED_B[0]) / 2
    lats = [10.28 - k * 0.001 for k in range(120)]  # walking south into Can Tho
    distances = [example.locate(lat, lon).distance_to_boundary_km or 0.0 for lat in lats]
    zone = [example.locate(lat, lon).in_border_zone for lat in lats]
    assert distances == sorted(distances)
    assert zone == [d <= 5.0 for d in distances]
    assert zone[0] and not zone[-1]


@pytest.mark.parametrize(
    ("lat", "lon"),
    [
        (9.80, 104.80),  # Gulf of Thailand
        (10.01, 105.08),  # Rach Gia, Kien Giang
        (10.30, 105.75),  # Dong Thap, across the Hau from Thot Not
        (0.0, 0.0),  # far outside the grid
        (math.nan, 105.5),
        (10.2, math.inf),
    ],
)
def test_points_outside_every_jurisdiction(example: Jurisdictions, lat: float, lon: float) -> None:
    assert example.locate(lat, lon) == OUTSIDE == Placement(None, False, None)
    assert example.locate_exact(lat, lon) == OUTSIDE


def test_grid_matches_brute_force_on_10000_random_points(example: Jurisdictions) -> None:
    points = random_points(10_000, seed=20250601)
    wrong = [p for p in points if not same(example.locate(*p), example.locate_exact(*p))]
    assert wrong == []
    placed = [example.locate(*p) for p in points]
    assert {p.agency_id for p in placed} == {None, "cantho", "angiang"}
    assert any(p.in_border_zone for p in placed)


@pytest.mark.parametrize("cell_deg", [0.003, 0.01, 0.05])
def test_grid_matches_brute_force_on_dense_boundaries(cell_deg: float) -> None:
    areas = densify(read_jurisdictions(EXAMPLE), pieces=25)  # about a thousand vertices each
    index = Jurisdictions(areas, border_zone_km=5.0, cell_deg=cell_deg)
    points = random_points(1_500, seed=7)
    rng = random.Random(8)  # and points crowding the shared edge
    for _ in range(500):
        t = rng.random()
        lon = SHARED_A[0] + t * (SHARED_B[0] - SHARED_A[0]) + rng.gauss(0, 0.002)
        points.append((SHARED_A[1] + t * (SHARED_B[1] - SHARED_A[1]) + rng.gauss(0, 0.002), lon))
    wrong = [p for p in points if not same(index.locate(*p), index.locate_exact(*p))]
    assert wrong == []


def test_most_cells_answer_without_a_polygon_test(example: Jurisdictions) -> None:
    kinds = example.cell_kinds()
    assert kinds["crossed"] < 0.1 * sum(kinds.values())


def test_overlapping_jurisdictions_put_the_point_on_the_border() -> None:
    index = Jurisdictions([square("a", 0.0, 0.0, 1.0), square("b", 0.9, 0.0, 1.0)], 5.0)
    for locate in (index.locate, index.locate_exact):
        assert locate(0.5, 0.95) == Placement("a", True, 0.0)
        assert locate(0.5, 0.5).agency_id == "a"
        assert locate(0.5, 1.5).agency_id == "b"


def test_a_lone_jurisdiction_has_no_border() -> None:
    index = Jurisdictions([square("a", 0.0, 0.0, 1.0)], 5.0)
    assert index.locate(0.5, 0.5) == Placement("a", False, None)
    assert index.locate(0.5, 1.5) == OUTSIDE


def test_holes_and_multipolygons(write_geojson: Callable[[Any], Path]) -> None:
    outer = [[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]
    hole = [[0.4, 0.4], [0.4, 0.6], [0.6, 0.6], [0.6, 0.4], [0.4, 0.4]]
    island = [[2, 0], [3, 0], [3, 1], [2, 1], [2, 0]]
    neighbour = [[0, 1], [3, 1], [3, 2], [0, 2], [0, 1]]
    path = write_geojson(
        {
            "type": "FeatureCollection",
            "features": [
                feature("a", {"type": "MultiPolygon", "coordinates": [[outer, hole], [island]]}),
                feature("b", {"type": "Polygon", "coordinates": [neighbour]}),
            ],
        }
    )
    index = load_jurisdictions(path, border_zone_km=5.0)
    assert index.agency_ids == ("a", "b")
    assert index.locate(0.5, 0.5) == OUTSIDE  # in the hole
    assert index.locate(0.2, 0.2).agency_id == "a"
    assert index.locate(0.5, 2.5).agency_id == "a"  # on the island
    placed = index.locate(0.99, 2.5)
    assert placed.agency_id == "a" and placed.in_border_zone
    assert placed.distance_to_boundary_km == pytest.approx(haversine_km(0.99, 2.5, 1, 2.5), 1e-3)


def feature(agency: str | None, geometry: dict[str, Any]) -> dict[str, Any]:
    props = {} if agency is None else {"agency": agency}
    return {"type": "Feature", "properties": props, "geometry": geometry}


@pytest.fixture
def write_geojson(tmp_path: Path) -> Callable[[Any], Path]:
    def write(content: Any) -> Path:
        path = tmp_path / "jurisdictions.geojson"
        text = content if isinstance(content, str) else json.dumps(content)
        path.write_text(text, encoding="utf-8")
        return path

    return write


def _example() -> dict[str, Any]:
    return copy.deepcopy(json.loads(EXAMPLE.read_text(encoding="utf-8")))


def _unclosed() -> dict[str, Any]:
    doc = _example()
    doc["features"][0]["geometry"]["coordinates"][0].pop()
    return doc


def _agency(value: Any) -> dict[str, Any]:
    doc = _example()
    if value is None:
        del doc["features"][1]["properties"]["agency"]
    else:
        doc["features"][1]["properties"]["agency"] = value
    return doc


def _swapped() -> dict[str, Any]:
    doc = _example()
    ring = doc["features"][0]["geometry"]["coordinates"][0]
    doc["features"][0]["geometry"]["coordinates"][0] = [[lat, lon] for lon, lat in ring]
    return doc


def _moved_north() -> dict[str, Any]:
    doc = _example()
    ring = doc["features"][1]["geometry"]["coordinates"][0]
    doc["features"][1]["geometry"]["coordinates"][0] = [[lon, lat + 0.1] for lon, lat in ring]
    return doc


def _point() -> dict[str, Any]:
    doc = _example()
    doc["features"][0]["geometry"] = {"type": "Point", "coordinates": [105.7, 10.0]}
    return doc


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ({"type": "Feature"}, "must be a GeoJSON FeatureCollection, got 'Feature'"),
        ({"type": "FeatureCollection", "features": []}, "'features' must be a non-empty list"),
        (_agency(None), "feature #1: missing 'agency' property"),
        (_agency("kiengiang"), "feature #1: agency 'kiengiang' is not in the agencies config"),
        (_unclosed(), "feature #0 (cantho) polygon 0 ring 0: ring is not closed"),
        (_swapped(), "is out of range; GeoJSON order is [lon, lat]"),
        (_moved_north(), "feature #1 (angiang) polygon 0 ring 0: position"),
        (_point(), "geometry must be a Polygon or MultiPolygon, got 'Point'"),
    ],
)
def test_bad_geojson_is_rejected_with_file_and_reason(
    write_geojson: Callable[[Any], Path], content: Any, message: str
) -> None:
    path = write_geojson(content)
    with pytest.raises(ConfigurationError) as caught:
        load_jurisdictions(path, border_zone_km=5.0, agency_ids=AGENCIES, region=REGION)
    assert str(path) in str(caught.value)
    assert message in str(caught.value)


def test_every_configured_agency_needs_a_polygon(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="no jurisdiction polygon for agency 'haugiang'"):
        read_jurisdictions(EXAMPLE, agency_ids=[*AGENCIES, "haugiang"])
    with pytest.raises(ConfigurationError, match="not found"):
        read_jurisdictions(tmp_path / "missing.geojson")


def test_example_polygons_are_labelled_approximate_and_fit_the_example_region() -> None:
    config = load_agencies(DEPLOY / "agencies.example.json")
    areas = read_jurisdictions(EXAMPLE, agency_ids=config.ids, region=config.region)
    assert {area.agency_id for area in areas} == set(AGENCIES)
    for feat in json.loads(EXAMPLE.read_text(encoding="utf-8"))["features"]:
        assert feat["properties"]["approximate"] is True
        assert "not an official boundary" in feat["properties"]["note"].lower()


def test_haversine() -> None:
    assert haversine_km(0, 0, 0, 1) == pytest.approx(111.195, abs=1e-3)
    assert haversine_km(10.03, 105.78, 10.38, 105.43) == pytest.approx(
        haversine_km(10.38, 105.43, 10.03, 105.78)
    )
    assert haversine_km(10.0, 105.0, 10.0, 105.0) == 0.0


def test_points_closer_than_the_cell_size_share_a_block_of_neighbour_cells() -> None:
    rng = random.Random(3)
    for _ in range(5_000):
        lat, lon = rng.uniform(8.5, 23.4), rng.uniform(102.0, 110.0)
        bearing, dist = rng.uniform(0, 2 * math.pi), rng.uniform(0, 2.0)
        lat2 = lat + dist * math.cos(bearing) / 111.195
        lon2 = lon + dist * math.sin(bearing) / (111.195 * math.cos(math.radians(lat)))
        if haversine_km(lat, lon, lat2, lon2) < 2.0:
            assert cell_of(lat2, lon2, 2.0) in neighbour_cells(cell_of(lat, lon, 2.0))
    block = neighbour_cells((5, -3))
    assert len(set(block)) == 9 and (5, -3) in block and (4, -4) in block and (6, -2) in block
    assert cell_of(10.03, 105.78, 1.0) == cell_of(10.0301, 105.7801, 1.0)
