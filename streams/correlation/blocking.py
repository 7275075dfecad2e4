"""Blocking keys: which partitions an incident is routed to so it meets its candidates.

Two kinds of key, both plain strings so they hash evenly over partitions:

- ``t:<KIND>:<token>``, one per strong subject token (person, vehicle, phone): every
  incident naming the same subject lands on the same key, whatever the distance;
- ``s:<cx>:<cy>``, a COARSE spatial cell (``cell_km`` on a side, default 40 km) holding the
  incident, plus each neighbouring coarse cell whose edge (or corner) is within
  ``radius_km`` of the point. Two incidents within ``radius_km`` of each other therefore
  share at least one spatial key, while most incidents get a single spatial key (about 1.3
  on average with the defaults; at most 4 while cell_km >= 2 * radius_km). Repartitioning
  costs one message per key, so the fan-out is kept low (PERFORMANCE.md) and the neighbour
  search happens in the partition's local index instead, on fine cells (``fine_cell``,
  ``near_cells``).

Time is not part of any key: the index orders each key's incidents by time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

from xborder.geo import KM_PER_DEGREE, haversine_km

from .model import IncidentView

STRONG_KINDS: frozenset[str] = frozenset({"PERSON", "VEHICLE", "PHONE"})
"""Subject kinds whose equal tokens identify the same subject."""
MAX_ABS_LAT = 23.5
"""Grid columns are sized for |lat| <= this (all of Vietnam), as in ``xborder.geo.cell_of``."""
_SLACK = 1.001  # the edge distances use a local flat approximation: widen the reach by 0.1 %
_SLACK_KM = 0.001


@dataclass(frozen=True)
class BlockingConfig:
    """How incidents are keyed."""

    cell_km: float = 40.0
    """Side of a coarse spatial cell (one key, one partition): large against the radius,
    so that few incidents fan out to a neighbouring cell."""
    radius_km: float = 3.0
    """Search radius of the space-time candidates: incidents closer than this always share
    a spatial key and are compared."""
    strong_kinds: frozenset[str] = field(default_factory=lambda: STRONG_KINDS)
    """Subject kinds that get a token key."""

    def __post_init__(self) -> None:
        if not self.radius_km > 0:
            raise ValueError(f"radius_km must be positive, got {self.radius_km}")
        if not self.cell_km >= self.radius_km:
            raise ValueError(
                f"cell_km ({self.cell_km}) must be at least radius_km ({self.radius_km}): "
                "points within the radius must lie in the same or adjacent cells"
            )


@lru_cache(maxsize=64)
def _grid(size_km: float) -> tuple[float, float]:
    """Cell height and width in degrees, as ``xborder.geo.cell_of`` sizes them."""
    lat_deg = size_km / KM_PER_DEGREE
    return lat_deg, lat_deg / math.cos(math.radians(MAX_ABS_LAT))


def token_key(kind: str, token: str) -> str:
    """The blocking key of one subject token."""
    return f"t:{kind}:{token}"


def parse_token_key(key: str) -> tuple[str, str] | None:
    """(kind, token) of a token key; None for any other key."""
    if not key.startswith("t:"):
        return None
    kind, sep, token = key[2:].partition(":")
    return (kind, token) if sep else None


def is_spatial_key(key: str) -> bool:
    """True for an ``s:`` key."""
    return key.startswith("s:")


def spatial_key(lat: float, lon: float, cfg: BlockingConfig) -> str:
    """The coarse cell key of a point (its own cell, no neighbours)."""
    lat_deg, lon_deg = _grid(cfg.cell_km)
    return f"s:{math.floor(lon / lon_deg)}:{math.floor(lat / lat_deg)}"


def spatial_keys(
    lat: float, lon: float, cfg: BlockingConfig, radius_km: float | None = None
) -> list[str]:
    """The point's own coarse cell first, then each neighbour within ``radius_km`` (by
    default the config's; a smaller search radius, such as the same-occurrence one, needs
    fewer neighbours)."""
    if not (math.isfinite(lat) and math.isfinite(lon)):
        return []
    lat_deg, lon_deg = _grid(cfg.cell_km)
    cx, cy = math.floor(lon / lon_deg), math.floor(lat / lat_deg)
    reach = (cfg.radius_km if radius_km is None else radius_km) * _SLACK + _SLACK_KM
    # Distances to the west/east edges along the parallel (the shortest way to a meridian
    # there) and to the south/north edges (a latitude difference is exact).
    west, east = cx * lon_deg, (cx + 1) * lon_deg
    south, north = cy * lat_deg, (cy + 1) * lat_deg
    km_lon = KM_PER_DEGREE * math.cos(math.radians(lat))
    xs = [
        (d, edge)
        for d, km, edge in ((-1, (lon - west) * km_lon, west), (1, (east - lon) * km_lon, east))
        if km <= reach
    ]
    ys = [
        (d, edge)
        for d, km, edge in (
            (-1, (lat - south) * KM_PER_DEGREE, south),
            (1, (north - lat) * KM_PER_DEGREE, north),
        )
        if km <= reach
    ]
    keys = [f"s:{cx}:{cy}"]
    keys.extend(f"s:{cx + dx}:{cy}" for dx, _ in xs)
    keys.extend(f"s:{cx}:{cy + dy}" for dy, _ in ys)
    # A diagonal cell is reachable only if its corner is within reach: every point of that
    # cell is at least as far as the corner.
    for dx, x_edge in xs:
        for dy, y_edge in ys:
            if haversine_km(lat, lon, y_edge, x_edge) <= reach:
                keys.append(f"s:{cx + dx}:{cy + dy}")
    return keys


def blocking_keys(
    view: IncidentView,
    cfg: BlockingConfig,
    spatial: bool = True,
    spatial_radius_km: float | None = None,
) -> list[str]:
    """Every key of a view: one per strong token (in token order), then the spatial keys
    for ``spatial_radius_km`` (default the config's radius; left out when ``spatial`` is
    False)."""
    strong = cfg.strong_kinds
    keys = [f"t:{kind}:{token}" for kind, token in view.tokens if kind in strong]
    if spatial:
        keys.extend(spatial_keys(view.lat, view.lon, cfg, spatial_radius_km))
    return keys


def fine_cell(lat: float, lon: float, radius_km: float) -> tuple[int, int]:
    """The fine cell (column, row), at least ``radius_km`` on a side, of a point: the local
    index of a spatial key files incidents by it."""
    lat_deg, lon_deg = _grid(radius_km)
    return math.floor(lon / lon_deg), math.floor(lat / lat_deg)


def near_cells(cell: tuple[int, int]) -> list[tuple[int, int]]:
    """The 3 x 3 fine cells around ``cell``: they hold every point within the radius."""
    cx, cy = cell
    return [(cx + dx, cy + dy) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
