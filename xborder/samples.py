"""A handful of realistic sample incidents for the demo and the tests.

Subjects are pseudonymised with a key ring generated per call (example keys, never
stored), so the samples never contain raw identifiers. :func:`sample_events` gives the
incidents (the first two share a vehicle across the boundary); :func:`double_report`
gives one brawl on the boundary road reported by both agencies (no shared subject), the
pair the same-occurrence matching links.
"""

from __future__ import annotations

import itertools
import math
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from xborder.pseudonym import KeyRing, SharedKeyTokenizer, pseudonymise_subject

# (agency, admin unit code, admin unit name, lat, lon, category, severity, mo tags)
_SAMPLES = (
    ("cantho", "31123", "Xa Thanh An", 10.270, 105.390, "THEFT", "MEDIUM", ["motorbike", "night"]),
    (
        "angiang",
        "30352",
        "Xa Vinh Trach",
        10.280,
        105.370,
        "THEFT",
        "MEDIUM",
        ["motorbike", "night"],
    ),
    ("cantho", "31120", "Phuong Thot Not", 10.268, 105.530, "DRUGS", "HIGH", ["delivery"]),
    ("angiang", "30340", "Xa Vinh Thanh Trung", 10.300, 105.420, "GAMBLING", "LOW", ["online"]),
    ("cantho", "31150", "Xa Thoi Lai", 10.065, 105.560, "ROBBERY", "HIGH", ["knife", "group"]),
    ("angiang", "30301", "Phuong My Binh", 10.380, 105.430, "SMUGGLING", "HIGH", ["river", "boat"]),
)
"""(agency, admin unit code, admin unit name, lat, lon, category, severity, modus operandi).

The first two lie either side of the shared boundary, in the border zone, and share a
suspect vehicle: the cross-border pair the correlator should link. Unit codes are
illustrative."""


_SHARED_BOUNDARY = ((10.221, 105.301), (10.263, 105.361), (10.297, 105.417))
"""(lat, lon) vertices of the example jurisdictions' shared boundary along the communes of
the first two samples (deploy/jurisdictions.example.geojson, approximate): Can Tho lies
to its south-east, An Giang to its north-west."""
_KM_PER_DEG_LAT = 110.574
_KM_PER_DEG_LON_EQUATOR = 111.320


def _event(
    agency: str,
    incident_id: str,
    occurred: datetime,
    reported: datetime,
    place: tuple[str, str, float, float],
    category: str,
    severity: str,
    subjects: list[dict[str, Any]],
    tags: list[str],
) -> dict[str, Any]:
    code, unit, lat, lon = place
    return {
        "event_id": str(uuid.uuid4()),
        "agency": agency,
        "incident_id": incident_id,
        "occurred_at": occurred.isoformat(timespec="milliseconds"),
        "reported_at": reported.isoformat(timespec="milliseconds"),
        "location": {
            "lat": lat,
            "lon": lon,
            "admin_unit_code": code,
            "admin_unit_name": unit,
            "address": None,
        },
        "category": category,
        "severity": severity,
        "subjects": subjects,
        "modus_operandi": list(tags),  # its own: a caller may edit it
        "narrative": None,
        "source_system": f"{agency}-case-mgmt",
    }


def sample_events(count: int = 6, now: datetime | None = None) -> list[dict[str, Any]]:
    """``count`` JSON-shaped IncidentReported events across the configured example agencies."""
    tokenizer = SharedKeyTokenizer(KeyRing.generate())
    now = now or datetime.now(UTC)
    events = []
    for i in range(count):
        agency, code, unit, lat, lon, category, severity, tags = _SAMPLES[i % len(_SAMPLES)]
        occurred = now - timedelta(hours=2 + i)
        vehicle = pseudonymise_subject(
            tokenizer,
            "VEHICLE",
            "65B1-234.56" if i % len(_SAMPLES) < 2 else f"67F1-{100 + i % 900}.{10 + i % 90}",
            "SUSPECT",
            {"colour": "black"},
        )
        events.append(
            _event(
                agency,
                f"{agency.upper()}-{now:%Y%m%d}-{i:04d}-{uuid.uuid4().hex[:6]}",
                occurred,
                occurred + timedelta(minutes=40),
                (code, unit, lat, lon),
                category,
                severity,
                [vehicle],
                tags,
            )
        )
    return events


def boundary_spot(fraction: float, offset_m: float) -> tuple[float, float]:
    """(lat, lon) ``offset_m`` metres off the example shared boundary, at ``fraction``
    (0..1) of its length: positive offsets into Can Tho, negative into An Giang."""
    km_per_deg_lon = _KM_PER_DEG_LON_EQUATOR * math.cos(math.radians(_SHARED_BOUNDARY[0][0]))
    legs = [
        (a, (b[0] - a[0]) * _KM_PER_DEG_LAT, (b[1] - a[1]) * km_per_deg_lon)
        for a, b in itertools.pairwise(_SHARED_BOUNDARY)
    ]
    along = min(max(fraction, 0.0), 1.0) * sum(math.hypot(dy, dx) for _, dy, dx in legs)
    for n, ((lat, lon), dy, dx) in enumerate(legs):
        length = math.hypot(dy, dx)
        if along > length and n < len(legs) - 1:
            along -= length
            continue
        # the boundary runs north-east: its right-hand normal (dy, -dx) points into Can Tho
        north = (along * dy - offset_m / 1000 * dx) / length
        east = (along * dx + offset_m / 1000 * dy) / length
        return round(lat + north / _KM_PER_DEG_LAT, 6), round(lon + east / km_per_deg_lon, 6)
    raise AssertionError("unreachable: the last leg takes the rest")


def double_report(
    now: datetime | None = None, rng: random.Random | None = None
) -> list[dict[str, Any]]:
    """One brawl on the boundary road reported by both agencies: a Can Tho report and an
    An Giang report 6 minutes and about 150 m apart, each inside its own jurisdiction and
    in the border zone, same category, no subject recorded.

    The spot along the boundary is drawn from ``rng``, so that two demo runs a few minutes
    apart report two brawls, not four reports of one.
    """
    now = now or datetime.now(UTC)
    fraction = (rng or random.Random()).uniform(0.05, 0.95)
    # older than the newest sample (2 h ago): the correlator's watermark follows the newest
    # event time, so a newer brawl would make the oldest samples too late to correlate
    occurred = now - timedelta(hours=2, minutes=20)
    stamp = f"{now:%Y%m%d}-{uuid.uuid4().hex[:6]}"
    reports = (
        # agency, unit, offset into its side (m), minutes later, reported after, tags
        ("cantho", ("31123", "Xa Thanh An"), 70.0, 0, 25, ["brawl", "night", "group"]),
        ("angiang", ("30352", "Xa Vinh Trach"), -70.0, 6, 18, ["brawl", "group"]),
    )
    events = []
    for agency, (code, unit), offset_m, later_min, lag_min, tags in reports:
        lat, lon = boundary_spot(fraction + (0.002 if agency == "angiang" else 0.0), offset_m)
        at = occurred + timedelta(minutes=later_min)
        events.append(
            _event(
                agency,
                f"{agency.upper()}-{stamp}-BRAWL",
                at,
                at + timedelta(minutes=lag_min),
                (code, unit, lat, lon),
                "PUBLIC_DISORDER",
                "MEDIUM",
                [],
                tags,
            )
        )
    return events
