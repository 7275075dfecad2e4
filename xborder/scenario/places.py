"""Where incidents happen: points inside each jurisdiction, in or out of the border zone.

The jurisdictions' bounding box is cut into small cells once; each cell is probed (centre
and four inner points) with ``Jurisdictions.locate`` and listed, per agency, as touching
the border zone, the interior, or the strip near the boundary. A sample picks a listed
cell, a uniform point in it, rounds it to the precision written to the events, and keeps
it only if ``locate`` of the rounded point gives the wanted agency and zone. Every point
is therefore placed exactly as the correlator will place it.

Hot spots (a few per agency and zone, fixed by the seed) cluster part of the incidents,
as towns and markets do. Administrative units are synthetic: cells of a coarse grid,
labelled as simulated.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

from xborder.errors import ConfigurationError
from xborder.geo import KM_PER_DEGREE, Jurisdictions, Placement, haversine_km

Zone = Literal["border", "interior", "near"]
"""In the border zone; outside it; within ``near_km`` of another jurisdiction."""

COORD_DIGITS: Final = 6
"""Decimal places of written coordinates (about 0.1 m)."""
_PROBES: Final = ((0.5, 0.5), (0.2, 0.2), (0.2, 0.8), (0.8, 0.2), (0.8, 0.8))
_UNIT_DEG: Final = 0.05  # synthetic administrative units: about 5.5 km across
_MAX_TRIES: Final = 2000


@dataclass(frozen=True, slots=True)
class Spot:
    """A located point: coordinates as written and ``locate``'s answer for them."""

    lat: float
    lon: float
    agency: str
    border: bool
    distance_km: float | None


class Places:
    """Location sampler over the agencies' jurisdictions (see the module docstring)."""

    def __init__(
        self,
        index: Jurisdictions,
        rng: random.Random,
        cell_deg: float = 0.01,
        near_km: float = 1.5,
        hotspots: int = 6,
        hotspot_sigma_km: float = 1.2,
    ) -> None:
        self.index = index
        self.near_km = min(near_km, index.border_zone_km)
        self.cell_deg = cell_deg
        self.sigma_km = hotspot_sigma_km
        lats = [p[1] for a in index.areas for ring in a.rings for p in ring]
        lons = [p[0] for a in index.areas for ring in a.rings for p in ring]
        self.lat0, self.lon0 = min(lats), min(lons)
        self.rank = {agency: n for n, agency in enumerate(index.agency_ids)}
        self.cells: dict[tuple[str, Zone], list[tuple[float, float]]] = {
            (agency, zone): []
            for agency in index.agency_ids
            for zone in ("border", "interior", "near")
        }
        rows = int((max(lats) - self.lat0) / cell_deg) + 1
        cols = int((max(lons) - self.lon0) / cell_deg) + 1
        for i in range(rows):
            for j in range(cols):
                lat, lon = self.lat0 + i * cell_deg, self.lon0 + j * cell_deg
                seen: set[tuple[str, Zone]] = set()
                for fy, fx in _PROBES:
                    placement = index.locate(lat + fy * cell_deg, lon + fx * cell_deg)
                    for key in self._keys(placement):
                        if key not in seen:
                            seen.add(key)
                            self.cells[key].append((lat, lon))
        self.hotspots: dict[tuple[str, Zone], list[Spot]] = {}
        for key, cells in self.cells.items():
            self.hotspots[key] = (
                [self.sample(rng, key[0], key[1]) for _ in range(hotspots)] if cells else []
            )

    def _keys(self, placement: Placement) -> list[tuple[str, Zone]]:
        agency = placement.agency_id
        if agency is None:
            return []
        keys: list[tuple[str, Zone]] = [
            (agency, "border" if placement.in_border_zone else "interior")
        ]
        distance = placement.distance_to_boundary_km
        if distance is not None and distance <= self.near_km:
            keys.append((agency, "near"))
        return keys

    def spot(self, lat: float, lon: float) -> Spot | None:
        """The point rounded as written, placed by ``locate``; None outside every jurisdiction."""
        lat, lon = round(lat, COORD_DIGITS), round(lon, COORD_DIGITS)
        placement = self.index.locate(lat, lon)
        if placement.agency_id is None:
            return None
        return Spot(
            lat,
            lon,
            placement.agency_id,
            placement.in_border_zone,
            placement.distance_to_boundary_km,
        )

    def fits(self, spot: Spot, zone: Zone | None) -> bool:
        """Whether ``spot`` lies in ``zone`` (None: anywhere)."""
        if zone is None:
            return True
        if zone == "border":
            return spot.border
        if zone == "interior":
            return not spot.border
        return spot.distance_km is not None and spot.distance_km <= self.near_km

    def match(
        self,
        agency: str | None = None,
        other_than: str | None = None,
        zone: Zone | None = None,
        within_km: float | None = None,
        of: Spot | None = None,
    ) -> Callable[[Spot], bool]:
        """A test for ``around``: in ``agency`` (or not in ``other_than``), in ``zone``, and
        less than ``within_km`` (great circle) from ``of``."""

        def test(spot: Spot) -> bool:
            if agency is not None and spot.agency != agency:
                return False
            if other_than is not None and spot.agency == other_than:
                return False
            if within_km is not None and of is not None:
                if haversine_km(of.lat, of.lon, spot.lat, spot.lon) >= within_km:
                    return False
            return self.fits(spot, zone)

        return test

    def sample(self, rng: random.Random, agency: str, zone: Zone) -> Spot:
        """A uniform point of ``agency``'s jurisdiction in ``zone``."""
        cells = self.cells[(agency, zone)]
        if not cells:
            raise ConfigurationError(
                f"the jurisdiction of {agency!r} has no {zone} area at this border zone width; "
                "lower border_share or check the jurisdictions file"
            )
        size = self.cell_deg
        for _ in range(_MAX_TRIES):
            lat, lon = cells[rng.randrange(len(cells))]
            spot = self.spot(lat + rng.random() * size, lon + rng.random() * size)
            if spot is not None and spot.agency == agency and self.fits(spot, zone):
                return spot
        raise ConfigurationError(f"could not sample a {zone} point of {agency!r}")

    def sample_clustered(self, rng: random.Random, agency: str, zone: Zone) -> Spot:
        """A point near one of the hot spots of ``agency`` and ``zone`` (uniform if none fits)."""
        spots = self.hotspots[(agency, zone)]
        if spots:
            centre = spots[rng.randrange(len(spots))]
            found = self.around(
                rng,
                centre.lat,
                centre.lon,
                3 * self.sigma_km,
                self.match(agency=agency, zone=zone),
                gaussian=True,
            )
            if found is not None:
                return found
        return self.sample(rng, agency, zone)

    def around(
        self,
        rng: random.Random,
        lat: float,
        lon: float,
        radius_km: float,
        accept: Callable[[Spot], bool],
        tries: int = 60,
        gaussian: bool = False,
    ) -> Spot | None:
        """A point within ``radius_km`` of (lat, lon) that ``accept`` takes, or None.

        Uniform over the disc, or Gaussian (sigma a third of the radius, cut at the radius).
        """
        kx = KM_PER_DEGREE * math.cos(math.radians(lat))
        for _ in range(tries):
            if gaussian:
                dx, dy = rng.gauss(0.0, radius_km / 3), rng.gauss(0.0, radius_km / 3)
                if dx * dx + dy * dy > radius_km * radius_km:
                    continue
            else:
                r = radius_km * math.sqrt(rng.random())
                angle = rng.random() * 2 * math.pi
                dx, dy = r * math.cos(angle), r * math.sin(angle)
            spot = self.spot(lat + dy / KM_PER_DEGREE, lon + dx / kx)
            if spot is not None and accept(spot):
                return spot
        return None

    def unit(self, spot: Spot) -> tuple[str, str]:
        """Synthetic administrative unit (code, name) of a spot: a coarse grid cell."""
        row = int((spot.lat - self.lat0) / _UNIT_DEG)
        col = int((spot.lon - self.lon0) / _UNIT_DEG)
        code = f"{self.rank[spot.agency] + 1}{row:02d}{col:02d}"
        return code, f"Don vi mo phong {code}"
