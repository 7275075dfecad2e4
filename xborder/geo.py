"""Jurisdictions: which agency an event location falls in, and how near the border it is.

Jurisdictions are GeoJSON polygons, one or more per agency. ``Jurisdictions.locate`` answers,
for one point, the agency whose polygon contains it, the distance to the nearest *other*
agency's jurisdiction (for two neighbours sharing an edge, that is the distance to the shared
boundary; it stays meaningful when official polygons leave small gaps or overlaps along it),
and whether that distance is within the border zone.

The correlator calls ``locate`` for every event, so the work is done up front: the polygons'
bounding box is cut into cells (0.01 degree by default). A cell that no polygon edge crosses
lies wholly inside one jurisdiction (or none) and answers membership by lookup; only cells an
edge crosses run a point-in-polygon test, and then only against the edges in that cell's row.
Each cell also keeps the few edge chunks that can be nearest to some point in it (bounded
with the triangle inequality), so the distance is exact without scanning the whole boundary.
``locate_exact`` is the brute-force reference the grid is tested against.

Distances use a local equirectangular projection (km) centred on the jurisdictions: within a
degree or two of its reference latitude the error is a few parts per thousand, far below the
accuracy of any event location. ``haversine_km`` is the great-circle distance.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from xborder.agencies import AgenciesConfig, Region
from xborder.errors import ConfigurationError

EARTH_RADIUS_KM = 6371.0088
"""Mean Earth radius (IUGG)."""
KM_PER_DEGREE = EARTH_RADIUS_KM * math.pi / 180.0
"""Length of one degree of latitude (and of longitude at the equator)."""
DEFAULT_CELL_DEG = 0.01
"""Grid cell size of the jurisdiction index, about 1.1 km."""
_CHUNK_EDGES = 8  # edges per distance chunk: one bounding box test skips eight segments
_SUPER = 10  # fine cells per side of a super-cell (narrows the candidate pool for fine cells)
_EPS_DEG = 1e-9  # cells are widened by this much when testing which edges touch them
_EPS_KM = 1e-9  # slack for float rounding in the distance bounds

Position = tuple[float, float]  # (lon, lat), GeoJSON order
Ring = tuple[Position, ...]  # closed: first position repeated at the end
_RawEdge = tuple[float, float, float, float]  # lon0, lat0, lon1, lat1 (point-in-polygon)
_Edge = tuple[float, float, float, float, float]  # x0, y0, dx, dy, 1/len^2 in km (distance)
_Chunk = tuple[float, float, float, float, tuple[_Edge, ...]]  # bbox x0, y0, x1, y1, edges
_Entry = tuple[float, float, float, float, float, tuple[_Edge, ...]]  # bound from cell, chunk


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in km between two points given in degrees."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dlat, dlon = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dlat / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dlon / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def cell_of(lat: float, lon: float, size_km: float, max_abs_lat: float = 23.5) -> tuple[int, int]:
    """Blocking key: the (row, column) of a grid of cells at least ``size_km`` on each side.

    Columns have a fixed width in degrees, sized so that a cell is at least ``size_km`` wide
    wherever ``|lat| <= max_abs_lat`` (the default covers all of Vietnam). Two points closer
    than ``size_km`` there are then in the same or adjacent cells: see ``neighbour_cells``.
    """
    if size_km <= 0:
        raise ValueError(f"size_km must be positive, got {size_km}")
    lat_deg = size_km / KM_PER_DEGREE
    lon_deg = lat_deg / math.cos(math.radians(min(abs(max_abs_lat), 89.0)))
    return math.floor(lat / lat_deg), math.floor(lon / lon_deg)


def neighbour_cells(cell: tuple[int, int]) -> list[tuple[int, int]]:
    """The 3 x 3 block of cells around ``cell``, the cell itself included, row by row."""
    row, col = cell
    return [(row + dr, col + dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1)]


class Placement(NamedTuple):
    """Where a point lies with respect to the jurisdictions."""

    agency_id: str | None
    """Agency whose jurisdiction contains the point (the first listed, if several); None
    outside every jurisdiction."""
    in_border_zone: bool
    """The point is within the border zone of another agency's jurisdiction."""
    distance_to_boundary_km: float | None
    """Distance to the nearest other agency's jurisdiction (0 inside an overlap); None outside
    every jurisdiction or when no other agency has one."""


OUTSIDE = Placement(None, False, None)

PLACEMENT_OWN = "own"
"""An agency's event located in that agency's jurisdiction."""
PLACEMENT_OTHER = "other-jurisdiction:"
"""Prefix of the placement of an event located only in another agency's jurisdiction; the
other agency's id follows."""
PLACEMENT_OUTSIDE = "outside"
"""An event located outside every configured jurisdiction."""


class AdminUnit(NamedTuple):
    """An administrative unit (ward or commune) as the jurisdictions file names it."""

    code: str
    name: str


@dataclass(frozen=True)
class Area:
    """One polygon of an agency's jurisdiction: the exterior ring, then any holes."""

    agency_id: str
    rings: tuple[Ring, ...]
    unit: AdminUnit | None = None
    """The administrative unit this polygon is, when its feature names one."""


def read_jurisdictions(
    path: Path, agency_ids: Iterable[str] | None = None, region: Region | None = None
) -> list[Area]:
    """Read a GeoJSON FeatureCollection of Polygon/MultiPolygon features, ``properties.agency``
    naming the owner. With ``agency_ids``, every agency must have a polygon and no other may;
    with ``region``, every vertex must lie inside it. Errors name the file and the feature."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigurationError(
            f"jurisdictions file {path} not found; point the agencies config's 'jurisdictions' "
            "at a GeoJSON FeatureCollection"
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"{path}: cannot read the jurisdictions file: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(raw, dict) or raw.get("type") != "FeatureCollection":
        got = raw.get("type") if isinstance(raw, dict) else type(raw).__name__
        raise ConfigurationError(
            f"{path}: the top level must be a GeoJSON FeatureCollection, got {got!r}"
        )
    features = raw.get("features")
    if not isinstance(features, list) or not features:
        raise ConfigurationError(f"{path}: 'features' must be a non-empty list of Features")
    known = None if agency_ids is None else list(agency_ids)
    areas: list[Area] = []
    for n, feature in enumerate(features):
        areas.extend(_read_feature(f"{path}: feature #{n}", feature, known, region))
    if known is not None:
        covered = {area.agency_id for area in areas}
        for agency in known:
            if agency not in covered:
                raise ConfigurationError(
                    f"{path}: no jurisdiction polygon for agency {agency!r}; add a Feature "
                    f"with properties.agency = {agency!r}"
                )
    return areas


def _read_feature(
    where: str, feature: Any, known: list[str] | None, region: Region | None
) -> list[Area]:
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        raise ConfigurationError(f'{where}: expected an object with "type": "Feature"')
    props = feature.get("properties")
    agency = props.get("agency") if isinstance(props, dict) else None
    if not isinstance(agency, str) or not agency:
        raise ConfigurationError(
            f"{where}: missing 'agency' property (the id of the agency owning this polygon)"
        )
    if known is not None and agency not in known:
        raise ConfigurationError(
            f"{where}: agency {agency!r} is not in the agencies config "
            f"(known: {', '.join(known)}); fix properties.agency or add the agency"
        )
    where = f"{where} ({agency})"
    unit = _read_unit(where, props or {})
    geometry = feature.get("geometry")
    kind = geometry.get("type") if isinstance(geometry, dict) else None
    coords = geometry.get("coordinates") if isinstance(geometry, dict) else None
    if kind == "Polygon":
        polygons = [coords]
    elif kind == "MultiPolygon" and isinstance(coords, list):
        polygons = coords
    else:
        raise ConfigurationError(
            f"{where}: geometry must be a Polygon or MultiPolygon, got {kind!r}"
        )
    areas = []
    for p, polygon in enumerate(polygons):
        if not isinstance(polygon, list) or not polygon:
            raise ConfigurationError(f"{where} polygon {p}: expected a list of rings")
        rings = tuple(
            _read_ring(f"{where} polygon {p} ring {r}", ring, region)
            for r, ring in enumerate(polygon)
        )
        areas.append(Area(agency, rings, unit))
    return areas


def _read_unit(where: str, props: dict[str, Any]) -> AdminUnit | None:
    """The optional ``admin_unit_code`` and ``admin_unit_name`` properties of a feature."""
    code, name = props.get("admin_unit_code"), props.get("admin_unit_name")
    if code is None and name is None:
        return None
    if not (isinstance(code, str) and code.strip() and isinstance(name, str) and name.strip()):
        raise ConfigurationError(
            f"{where}: an administrative unit needs both 'admin_unit_code' and "
            f"'admin_unit_name' as non-empty strings, got {code!r} and {name!r}"
        )
    return AdminUnit(code, name)


def _read_ring(where: str, ring: Any, region: Region | None) -> Ring:
    if not isinstance(ring, list) or len(ring) < 4:
        raise ConfigurationError(f"{where}: a ring needs at least 4 positions (closed triangle)")
    positions = []
    for position in ring:
        if (
            not isinstance(position, list)
            or len(position) < 2
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in position[:2])
        ):
            raise ConfigurationError(f"{where}: position {position!r} is not [lon, lat]")
        lon, lat = float(position[0]), float(position[1])
        if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
            raise ConfigurationError(
                f"{where}: position {position!r} is out of range; GeoJSON order is [lon, lat]"
            )
        if region is not None and not region.contains(lat, lon):
            raise ConfigurationError(
                f"{where}: position [{lon}, {lat}] lies outside the region box (lat "
                f"{region.min_lat}..{region.max_lat}, lon {region.min_lon}..{region.max_lon}); "
                "widen 'region' in the agencies config or fix the polygon"
            )
        positions.append((lon, lat))
    if positions[0] != positions[-1]:
        raise ConfigurationError(
            f"{where}: ring is not closed: first position {list(positions[0])} differs from "
            f"the last {list(positions[-1])} (GeoJSON repeats the first position at the end)"
        )
    if len(set(positions)) < 3:
        raise ConfigurationError(f"{where}: ring has fewer than 3 distinct positions")
    return tuple(positions)


def load_jurisdictions(
    path: Path,
    border_zone_km: float,
    agency_ids: Iterable[str] | None = None,
    region: Region | None = None,
    cell_deg: float = DEFAULT_CELL_DEG,
) -> Jurisdictions:
    """Read a jurisdictions GeoJSON file (see ``read_jurisdictions``) and index it."""
    return Jurisdictions(read_jurisdictions(path, agency_ids, region), border_zone_km, cell_deg)


def _inside(lon: float, lat: float, edges: Sequence[_RawEdge]) -> bool:
    """Even-odd ray casting towards +lon; the grid and the reference share this arithmetic."""
    inside = False
    for x0, y0, x1, y1 in edges:
        if (y0 > lat) != (y1 > lat) and lon < x0 + (lat - y0) * (x1 - x0) / (y1 - y0):
            inside = not inside
    return inside


def _segment_d2(x: float, y: float, edge: _Edge) -> float:
    x0, y0, dx, dy, inv = edge
    t = ((x - x0) * dx + (y - y0) * dy) * inv
    t = 0.0 if t < 0.0 else 1.0 if t > 1.0 else t
    ex, ey = x0 + t * dx - x, y0 + t * dy - y
    return ex * ex + ey * ey


def _nearest(x: float, y: float, r: float, entries: Sequence[_Entry]) -> float:
    """Distance to the nearest edge; ``entries`` sorted by their bound from a point ``r`` away."""
    best2 = best = math.inf
    for bound, bx0, by0, bx1, by1, edges in entries:
        if bound - r >= best:
            break  # this and every later chunk is at least ``best`` away
        dx = bx0 - x if x < bx0 else x - bx1 if x > bx1 else 0.0
        dy = by0 - y if y < by0 else y - by1 if y > by1 else 0.0
        if dx * dx + dy * dy >= best2:
            continue
        for x0, y0, ex, ey, inv in edges:
            t = ((x - x0) * ex + (y - y0) * ey) * inv
            t = 0.0 if t < 0.0 else 1.0 if t > 1.0 else t
            px, py = x0 + t * ex - x, y0 + t * ey - y
            d2 = px * px + py * py
            if d2 < best2:
                best2 = d2
        best = math.sqrt(best2)
    return best


def _bbox_distance(x: float, y: float, chunk: _Chunk) -> float:
    bx0, by0, bx1, by1, _ = chunk
    dx = bx0 - x if x < bx0 else x - bx1 if x > bx1 else 0.0
    dy = by0 - y if y < by0 else y - by1 if y > by1 else 0.0
    return math.hypot(dx, dy)


def _candidates(cx: float, cy: float, half_diag: float, pool: Sequence[_Chunk]) -> list[_Entry]:
    """Chunks that can hold the nearest edge for some point within ``half_diag`` of the centre.

    For such a point p, the nearest edge is at most d(c) + half_diag away from p, hence at most
    d(c) + 2 * half_diag from the centre c; chunks whose box is farther cannot hold it.
    """
    scored = sorted(((_bbox_distance(cx, cy, chunk), *chunk) for chunk in pool), key=lambda e: e[0])
    limit = _nearest(cx, cy, 0.0, scored) + 2.0 * half_diag + _EPS_KM
    return [entry for entry in scored if entry[0] <= limit]


def _segment_hits_box(edge: _RawEdge, x0: float, y0: float, x1: float, y1: float) -> bool:
    """Whether a segment touches an axis-aligned box (separating axis test)."""
    ax, ay, bx, by = edge
    if max(ax, bx) < x0 or min(ax, bx) > x1 or max(ay, by) < y0 or min(ay, by) > y1:
        return False
    dx, dy = bx - ax, by - ay
    sides = [dx * (cy - ay) - dy * (cx - ax) for cx, cy in ((x0, y0), (x1, y0), (x0, y1), (x1, y1))]
    return not (all(s > 0 for s in sides) or all(s < 0 for s in sides))


class _Fixed:
    """A cell with one answer for every point in it."""

    __slots__ = ("placement",)

    def __init__(self, placement: Placement) -> None:
        self.placement = placement

    def place(self, lat: float, lon: float, x: float, y: float) -> Placement:
        return self.placement


class _Pure:
    """A cell wholly inside one jurisdiction: only the distance depends on the point."""

    __slots__ = ("agency", "cx", "cy", "entries", "zone")

    def __init__(
        self, agency: str, cx: float, cy: float, entries: list[_Entry], zone: float
    ) -> None:
        self.agency, self.cx, self.cy, self.entries, self.zone = agency, cx, cy, entries, zone

    def place(self, lat: float, lon: float, x: float, y: float) -> Placement:
        r = math.hypot(x - self.cx, y - self.cy)
        d = _nearest(x, y, r, self.entries)
        return Placement(self.agency, d <= self.zone, d)


class _Crossed:
    """A cell some jurisdiction edge crosses: point-in-polygon on that row's edges first."""

    __slots__ = ("cx", "cy", "tests", "views", "zone")

    def __init__(
        self,
        cx: float,
        cy: float,
        tests: list[tuple[str, tuple[_RawEdge, ...] | None]],
        views: dict[str, list[_Entry] | None],
        zone: float,
    ) -> None:
        self.cx, self.cy, self.tests, self.views, self.zone = cx, cy, tests, views, zone

    def place(self, lat: float, lon: float, x: float, y: float) -> Placement:
        first: str | None = None
        for agency, edges in self.tests:  # in agency order; None = the whole cell is inside
            if agency == first:
                continue
            if edges is None or _inside(lon, lat, edges):
                if first is not None:
                    return Placement(first, True, 0.0)  # inside two jurisdictions (overlap)
                first = agency
        if first is None:
            return OUTSIDE
        entries = self.views[first]
        if entries is None:
            return Placement(first, False, None)
        d = _nearest(x, y, math.hypot(x - self.cx, y - self.cy), entries)
        return Placement(first, d <= self.zone, d)


_Cell = _Fixed | _Pure | _Crossed


class Jurisdictions:
    """Grid index over the agencies' jurisdiction polygons; ``locate`` is the fast path."""

    def __init__(
        self, areas: Sequence[Area], border_zone_km: float, cell_deg: float = DEFAULT_CELL_DEG
    ) -> None:
        if not areas:
            raise ConfigurationError("no jurisdiction polygons given")
        if not border_zone_km > 0:
            raise ConfigurationError(f"border_zone_km must be positive, got {border_zone_km}")
        if not 0 < cell_deg <= 1:
            raise ConfigurationError(f"cell_deg must be in (0, 1] degrees, got {cell_deg}")
        self.areas = tuple(areas)
        self.border_zone_km = float(border_zone_km)
        self.agency_ids: tuple[str, ...] = tuple(dict.fromkeys(a.agency_id for a in areas))
        lons = [p[0] for a in areas for ring in a.rings for p in ring]
        lats = [p[1] for a in areas for ring in a.rings for p in ring]
        self._cell = cell_deg
        self._inv = 1.0 / cell_deg
        self._lat0, self._lon0 = min(lats), min(lons)
        self._nrows = int((max(lats) - self._lat0) * self._inv) + 1
        self._ncols = int((max(lons) - self._lon0) * self._inv) + 1
        self._lat1 = self._lat0 + self._nrows * cell_deg
        self._lon1 = self._lon0 + self._ncols * cell_deg
        self._ky = KM_PER_DEGREE
        self._kx = KM_PER_DEGREE * math.cos(math.radians((self._lat0 + self._lat1) / 2))
        self._raw = [
            tuple((*ring[k], *ring[k + 1]) for ring in a.rings for k in range(len(ring) - 1))
            for a in areas
        ]
        self._others = {agency: self._chunks_except(agency) for agency in self.agency_ids}
        self._cells = self._build_cells()

    def locate(self, lat: float, lon: float) -> Placement:
        """Jurisdiction, border-zone flag and distance to the other jurisdictions of a point."""
        if not (self._lat0 <= lat < self._lat1 and self._lon0 <= lon < self._lon1):
            return OUTSIDE  # also NaN
        i = min(int((lat - self._lat0) * self._inv), self._nrows - 1)
        j = min(int((lon - self._lon0) * self._inv), self._ncols - 1)
        x, y = (lon - self._lon0) * self._kx, (lat - self._lat0) * self._ky
        return self._cells[i * self._ncols + j].place(lat, lon, x, y)

    def locate_exact(self, lat: float, lon: float) -> Placement:
        """The same answer as ``locate`` by brute force over every edge (the test reference)."""
        found = [
            agency
            for agency in self.agency_ids
            if any(
                _inside(lon, lat, self._raw[n])
                for n, area in enumerate(self.areas)
                if area.agency_id == agency
            )
        ]
        if not found:
            return OUTSIDE
        if len(found) > 1:
            return Placement(found[0], True, 0.0)
        chunks = self._others[found[0]]
        if not chunks:
            return Placement(found[0], False, None)
        x, y = (lon - self._lon0) * self._kx, (lat - self._lat0) * self._ky
        d = math.sqrt(min(_segment_d2(x, y, edge) for chunk in chunks for edge in chunk[4]))
        return Placement(found[0], d <= self.border_zone_km, d)

    def placement(self, agency: str, lat: float, lon: float) -> str:
        """Where an event of ``agency`` lies: ``own`` inside the agency's jurisdiction (an
        overlap with another's included), ``other-jurisdiction:<id>`` inside another agency's
        only (the first listed), ``outside`` in none. ``placement_sql`` is the same rule in
        ClickHouse."""
        found = self.locate(lat, lon).agency_id
        if found is None:
            return PLACEMENT_OUTSIDE
        if found == agency or any(
            area.agency_id == agency and _inside(lon, lat, self._raw[n])
            for n, area in enumerate(self.areas)
        ):
            return PLACEMENT_OWN
        return PLACEMENT_OTHER + found

    def admin_unit(self, lat: float, lon: float) -> AdminUnit | None:
        """The administrative unit whose polygon contains the point (the first listed), None
        when no polygon naming a unit does."""
        for n, area in enumerate(self.areas):
            if area.unit is not None and _inside(lon, lat, self._raw[n]):
                return area.unit
        return None

    def cell_kinds(self) -> dict[str, int]:
        """How many grid cells answer by lookup (fixed), by distance only (pure) or need a
        point-in-polygon test (crossed): a health figure for the benchmark and the logs."""
        counts = {"fixed": 0, "pure": 0, "crossed": 0}
        for cell in self._cells:
            counts[type(cell).__name__.lstrip("_").lower()] += 1
        return counts

    def _project(self, lon: float, lat: float) -> tuple[float, float]:
        return (lon - self._lon0) * self._kx, (lat - self._lat0) * self._ky

    def _chunks_except(self, agency: str) -> list[_Chunk]:
        """The edges of every other agency's polygons, in runs of consecutive edges."""
        chunks: list[_Chunk] = []
        for area, raw in zip(self.areas, self._raw, strict=True):
            if area.agency_id == agency:
                continue
            edges: list[_Edge] = []
            for lon0, lat0, lon1, lat1 in raw:
                (x0, y0), (x1, y1) = self._project(lon0, lat0), self._project(lon1, lat1)
                dx, dy = x1 - x0, y1 - y0
                if dx or dy:  # a repeated vertex adds no edge
                    edges.append((x0, y0, dx, dy, 1.0 / (dx * dx + dy * dy)))
            for k in range(0, len(edges), _CHUNK_EDGES):
                run = tuple(edges[k : k + _CHUNK_EDGES])
                xs = [v for e in run for v in (e[0], e[0] + e[2])]
                ys = [v for e in run for v in (e[1], e[1] + e[3])]
                chunks.append((min(xs), min(ys), max(xs), max(ys), run))
        return chunks

    def _rows_of(self, lat_a: float, lat_b: float) -> range:
        lo = int((min(lat_a, lat_b) - _EPS_DEG - self._lat0) * self._inv)
        hi = int((max(lat_a, lat_b) + _EPS_DEG - self._lat0) * self._inv)
        return range(max(lo, 0), min(hi, self._nrows - 1) + 1)

    def _cols_of(self, lon_a: float, lon_b: float) -> range:
        lo = int((min(lon_a, lon_b) - _EPS_DEG - self._lon0) * self._inv)
        hi = int((max(lon_a, lon_b) + _EPS_DEG - self._lon0) * self._inv)
        return range(max(lo, 0), min(hi, self._ncols - 1) + 1)

    def _build_cells(self) -> list[_Cell]:
        nareas, ncols, size = len(self.areas), self._ncols, self._cell
        # Per row and area, the edges a horizontal ray in that row can cross; per cell, the
        # areas whose boundary touches it.
        slabs: list[list[list[_RawEdge]]] = [
            [[] for _ in range(nareas)] for _ in range(self._nrows)
        ]
        crossed: dict[int, set[int]] = {}
        for n, raw in enumerate(self._raw):
            for edge in raw:
                lon_a, lat_a, lon_b, lat_b = edge
                for i in self._rows_of(lat_a, lat_b):
                    slabs[i][n].append(edge)
                    y0, y1 = self._lat0 + i * size - _EPS_DEG, self._lat0 + (i + 1) * size
                    for j in self._cols_of(lon_a, lon_b):
                        x0, x1 = self._lon0 + j * size - _EPS_DEG, self._lon0 + (j + 1) * size
                        if _segment_hits_box(edge, x0, y0, x1 + _EPS_DEG, y1 + _EPS_DEG):
                            crossed.setdefault(i * ncols + j, set()).add(n)
        frozen = [[tuple(edges) for edges in row] for row in slabs]
        fine = 0.5 * math.hypot(size * self._kx, size * self._ky)
        coarse = _SUPER * fine
        pools: dict[tuple[int, int, str], list[_Chunk]] = {}

        def entries(i: int, j: int, agency: str) -> list[_Entry] | None:
            if not self._others[agency]:
                return None
            key = (i // _SUPER, j // _SUPER, agency)
            if key not in pools:  # candidates for the whole super-cell: the pool for its cells
                lat = self._lat0 + (key[0] + 0.5) * _SUPER * size
                lon = self._lon0 + (key[1] + 0.5) * _SUPER * size
                found = _candidates(*self._project(lon, lat), coarse, self._others[agency])
                pools[key] = [entry[1:] for entry in found]
            lat, lon = self._lat0 + (i + 0.5) * size, self._lon0 + (j + 0.5) * size
            return _candidates(*self._project(lon, lat), fine, pools[key])

        zone = self.border_zone_km
        areas_of = {
            agency: [n for n, area in enumerate(self.areas) if area.agency_id == agency]
            for agency in self.agency_ids
        }
        cells: list[_Cell] = []
        for i in range(self._nrows):
            lat = self._lat0 + (i + 0.5) * size
            for j in range(ncols):
                lon = self._lon0 + (j + 0.5) * size
                touching = crossed.get(i * ncols + j, set())
                tests: list[tuple[str, tuple[_RawEdge, ...] | None]] = []
                for agency in self.agency_ids:
                    ours = areas_of[agency]
                    if any(n not in touching and _inside(lon, lat, frozen[i][n]) for n in ours):
                        tests.append((agency, None))
                    else:
                        tests.extend((agency, frozen[i][n]) for n in ours if n in touching)
                cx, cy = self._project(lon, lat)
                if not tests:
                    cells.append(_Fixed(OUTSIDE))
                elif any(edges is not None for _, edges in tests):
                    views = {agency: entries(i, j, agency) for agency, _ in tests}
                    cells.append(_Crossed(cx, cy, tests, views, zone))
                elif len(tests) > 1:
                    cells.append(_Fixed(Placement(tests[0][0], True, 0.0)))
                else:
                    agency = tests[0][0]
                    found = entries(i, j, agency)
                    if found is None:
                        cells.append(_Fixed(Placement(agency, False, None)))
                    else:
                        cells.append(_Pure(agency, cx, cy, found, zone))
        return cells


def placement_sql(
    areas: Sequence[Area], agency: str = "agency", lon: str = "lon", lat: str = "lat"
) -> str:
    """A ClickHouse expression of ``Jurisdictions.placement`` over columns (or expressions)
    ``agency``, ``lon`` and ``lat``, the polygons as constants (``pointInPolygon`` indexes a
    constant polygon once per query). A point on an edge may fall either way, in Python and
    in ClickHouse alike."""
    agencies = list(dict.fromkeys(area.agency_id for area in areas))
    inside = {a: _inside_sql([x for x in areas if x.agency_id == a], lon, lat) for a in agencies}
    own = " OR ".join(f"({agency} = {_sql_text(a)} AND {inside[a]})" for a in agencies)
    cases = [(own, PLACEMENT_OWN)] if agencies else []
    cases += [(inside[a], PLACEMENT_OTHER + a) for a in agencies]
    return _cases_sql(cases, PLACEMENT_OUTSIDE)


def admin_unit_sql(areas: Sequence[Area], part: str, lon: str = "lon", lat: str = "lat") -> str:
    """A ClickHouse expression of the ``code`` or ``name`` of ``Jurisdictions.admin_unit``;
    an empty string where no unit polygon contains the point (or none is configured)."""
    cases = [
        (_inside_sql([area], lon, lat), getattr(area.unit, part))
        for area in areas
        if area.unit is not None
    ]
    return _cases_sql(cases, "")


def _cases_sql(cases: Sequence[tuple[str, str]], otherwise: str) -> str:
    if not cases:
        return _sql_text(otherwise)
    arms = ", ".join(f"{condition}, {_sql_text(value)}" for condition, value in cases)
    return (
        f"multiIf({arms}, {_sql_text(otherwise)})"
        if len(cases) > 1
        else f"if({arms}, {_sql_text(otherwise)})"
    )


def _inside_sql(areas: Sequence[Area], lon: str, lat: str) -> str:
    tests = [
        f"pointInPolygon(({lon}, {lat}), "
        + ", ".join(
            "[" + ", ".join(f"({x!r}, {y!r})" for x, y in ring) + "]" for ring in area.rings
        )
        + ")"
        for area in areas
    ]
    return tests[0] if len(tests) == 1 else "(" + " OR ".join(tests) + ")"


def _sql_text(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def jurisdictions_for(config: AgenciesConfig) -> Jurisdictions:
    """The jurisdiction index of an agencies config (every agency needs a polygon)."""
    if config.jurisdictions is None:
        raise ConfigurationError(
            "the agencies config has no 'jurisdictions' (path to a GeoJSON file of polygons)"
        )
    return load_jurisdictions(
        config.jurisdictions, config.border_zone_km, config.ids, config.region
    )
