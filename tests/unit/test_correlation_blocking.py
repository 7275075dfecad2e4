"""Blocking keys: token keys, coarse spatial keys with a low fan-out, co-location property."""

from __future__ import annotations

import math
import random

import pytest

from streams.correlation.blocking import (
    BlockingConfig,
    blocking_keys,
    fine_cell,
    near_cells,
    parse_token_key,
    spatial_key,
    spatial_keys,
    token_key,
)
from tests.unit.test_correlation_support import view
from xborder.geo import EARTH_RADIUS_KM, cell_of, haversine_km

CFG = BlockingConfig()


def destination(lat: float, lon: float, bearing: float, km: float) -> tuple[float, float]:
    """The point ``km`` away from (lat, lon) along ``bearing`` (radians), on the sphere."""
    d = km / EARTH_RADIUS_KM
    p1, l1 = math.radians(lat), math.radians(lon)
    p2 = math.asin(math.sin(p1) * math.cos(d) + math.cos(p1) * math.sin(d) * math.cos(bearing))
    l2 = l1 + math.atan2(
        math.sin(bearing) * math.sin(d) * math.cos(p1), math.cos(d) - math.sin(p1) * math.sin(p2)
    )
    return math.degrees(p2), math.degrees(l2)


def test_one_key_per_strong_token_then_the_spatial_keys() -> None:
    v = view(tokens=(("VEHICLE", "v1"), ("PERSON", "p1"), ("PHONE", "h1")))
    keys = blocking_keys(v, CFG)
    assert keys[:3] == ["t:PERSON:p1", "t:PHONE:h1", "t:VEHICLE:v1"]
    assert all(k.startswith("s:") for k in keys[3:]) and keys[3] == spatial_key(v.lat, v.lon, CFG)
    only_vehicles = BlockingConfig(strong_kinds=frozenset({"VEHICLE"}))
    assert [k for k in blocking_keys(v, only_vehicles) if k.startswith("t:")] == ["t:VEHICLE:v1"]


def test_token_key_round_trip() -> None:
    assert parse_token_key(token_key("PHONE", "ab:cd")) == ("PHONE", "ab:cd")
    assert parse_token_key("s:1:2") is None


def test_own_cell_matches_geo_cell_of() -> None:
    rng = random.Random(1)
    for _ in range(2000):
        lat, lon = rng.uniform(8.0, 23.0), rng.uniform(102.0, 110.0)
        row, col = cell_of(lat, lon, CFG.cell_km)
        assert spatial_keys(lat, lon, CFG)[0] == f"s:{col}:{row}"


def test_no_spatial_key_without_a_location() -> None:
    assert spatial_keys(float("nan"), 105.0, CFG) == []


@pytest.mark.parametrize("radius_km", [None, 0.4])
def test_points_within_the_radius_always_share_a_spatial_key(radius_km: float | None) -> None:
    """Also for a smaller search radius (the same-occurrence one), with fewer neighbours."""
    radius = CFG.radius_km if radius_km is None else radius_km
    rng = random.Random(42)
    lat_deg = CFG.cell_km / (EARTH_RADIUS_KM * math.pi / 180)
    for n in range(20_000):
        if n % 2:
            lat, lon = rng.uniform(9.6, 11.0), rng.uniform(104.7, 106.0)
        else:  # close to a cell edge or corner, where the fan-out decides
            row = math.floor(rng.uniform(9.6, 11.0) / lat_deg)
            lat = (row + rng.choice((0.0, 1.0))) * lat_deg + rng.uniform(-0.03, 0.03)
            lon = rng.uniform(104.7, 106.0)
        km = radius * math.sqrt(rng.random())
        lat2, lon2 = destination(lat, lon, rng.uniform(0, 2 * math.pi), km)
        assert haversine_km(lat, lon, lat2, lon2) <= radius + 1e-9
        mine = spatial_keys(lat, lon, CFG, radius_km)
        shared = set(mine) & set(spatial_keys(lat2, lon2, CFG, radius_km))
        assert shared, (lat, lon, lat2, lon2, km)
        assert set(mine) <= set(spatial_keys(lat, lon, CFG))  # never more than the default


def test_fan_out_is_usually_one_and_at_most_four() -> None:
    rng = random.Random(7)
    counts = [
        len(spatial_keys(rng.uniform(9.6, 11.0), rng.uniform(104.7, 106.0), CFG))
        for _ in range(20_000)
    ]
    assert max(counts) <= 4
    assert sum(c == 1 for c in counts) / len(counts) > 0.7
    assert 1.2 < sum(counts) / len(counts) < 1.4


def test_fine_cells_hold_every_point_within_the_radius() -> None:
    rng = random.Random(3)
    for _ in range(10_000):
        lat, lon = rng.uniform(9.6, 11.0), rng.uniform(104.7, 106.0)
        lat2, lon2 = destination(lat, lon, rng.uniform(0, 2 * math.pi), CFG.radius_km)
        assert fine_cell(lat2, lon2, CFG.radius_km) in near_cells(
            fine_cell(lat, lon, CFG.radius_km)
        )


def test_small_cells_still_co_locate_neighbours() -> None:
    small = BlockingConfig(cell_km=5.0, radius_km=3.0)  # near both opposite edges at once
    rng = random.Random(5)
    for _ in range(5_000):
        lat, lon = rng.uniform(9.6, 11.0), rng.uniform(104.7, 106.0)
        lat2, lon2 = destination(lat, lon, rng.uniform(0, 2 * math.pi), 3.0 * rng.random())
        assert set(spatial_keys(lat, lon, small)) & set(spatial_keys(lat2, lon2, small))


def test_config_rejects_a_cell_smaller_than_the_radius() -> None:
    with pytest.raises(ValueError, match="at least radius_km"):
        BlockingConfig(cell_km=2.0, radius_km=3.0)
    with pytest.raises(ValueError):
        BlockingConfig(radius_km=0)
