"""Micro-benchmark of ``Jurisdictions.locate``: lookups per second on one core (printed only).

Run ``xborder bench geo [--geojson FILE] [--densify-km 0.1]``. ``--densify-km``
splits every edge into pieces of at most that length, with a small deterministic wiggle, to
mimic an official boundary with thousands of vertices; shared edges stay shared.
"""

from __future__ import annotations

import argparse
import math
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from xborder.geo import KM_PER_DEGREE, Area, Jurisdictions, Placement, read_jurisdictions

EXAMPLE = Path(__file__).resolve().parent.parent / "deploy" / "jurisdictions.example.geojson"


def densify(areas: list[Area], max_edge_km: float) -> list[Area]:
    """Split each edge into pieces of at most ``max_edge_km``; the wiggle depends only on the
    edge's end points, so an edge two polygons share is split the same way in both."""

    def split(a: tuple[float, float], b: tuple[float, float]) -> list[tuple[float, float]]:
        lo, hi = min(a, b), max(a, b)
        length = math.dist(lo, hi) * KM_PER_DEGREE
        n = max(1, math.ceil(length / max_edge_km))
        nx, ny = (lo[1] - hi[1]) / (length or 1.0), (hi[0] - lo[0]) / (length or 1.0)
        points = [lo]
        for k in range(1, n):
            w = 0.02 * max_edge_km * math.sin(k * 1.7)  # km, perpendicular
            t = k / n
            points.append(
                (lo[0] + t * (hi[0] - lo[0]) + w * nx, lo[1] + t * (hi[1] - lo[1]) + w * ny)
            )
        return points if a == lo else [hi, *reversed(points[1:])]

    out = []
    for area in areas:
        rings = []
        for ring in area.rings:
            dense = [p for k in range(len(ring) - 1) for p in split(ring[k], ring[k + 1])]
            rings.append((*dense, dense[0]))
        out.append(Area(area.agency_id, tuple(rings)))
    return out


def rate(fn: Callable[[float, float], Placement], points: list[tuple[float, float]]) -> float:
    """Calls per second of ``fn`` over ``points`` (best of three runs)."""
    best = math.inf
    for _ in range(3):
        start = time.perf_counter()
        for lat, lon in points:
            fn(lat, lon)
        best = min(best, time.perf_counter() - start)
    return len(points) / best


def main(argv: Sequence[str] | None = None) -> None:
    """Build the index, then time uniform, in-jurisdiction and near-border lookups."""
    parser = argparse.ArgumentParser(prog="xborder bench geo", description=__doc__)
    parser.add_argument("--geojson", type=Path, default=EXAMPLE)
    parser.add_argument("--border-zone-km", type=float, default=5.0)
    parser.add_argument("--densify-km", type=float, default=None)
    parser.add_argument("--points", type=int, default=200_000)
    args = parser.parse_args(argv)
    areas = read_jurisdictions(args.geojson)
    if args.densify_km:
        areas = densify(areas, args.densify_km)
    vertices = sum(len(ring) - 1 for area in areas for ring in area.rings)
    start = time.perf_counter()
    index = Jurisdictions(areas, args.border_zone_km)
    built = time.perf_counter() - start
    print(f"{len(areas)} polygons, {vertices} vertices; index built in {built:.2f} s")
    print(f"cells: {index.cell_kinds()}")
    rng = random.Random(7)
    lats = [p[1] for a in areas for ring in a.rings for p in ring]
    lons = [p[0] for a in areas for ring in a.rings for p in ring]
    uniform = [
        (rng.uniform(min(lats), max(lats)), rng.uniform(min(lons), max(lons)))
        for _ in range(args.points)
    ]
    inside = [p for p in uniform if index.locate(*p).agency_id is not None]
    border = [p for p in uniform if index.locate(*p).in_border_zone]
    runs = (("uniform over bbox", uniform), ("inside", inside), ("border zone", border))
    for label, points in runs:
        print(f"locate, {label:17s}: {rate(index.locate, points):12,.0f} lookups/s")
    sample = uniform[:2_000]
    print(f"locate_exact (brute force)   : {rate(index.locate_exact, sample):12,.0f} lookups/s")


if __name__ == "__main__":
    main()
