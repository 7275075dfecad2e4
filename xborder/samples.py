"""A handful of realistic sample incidents for the demo and the tests.

Subjects are pseudonymised with a key ring generated per call (example keys, never
stored), so the samples never contain raw identifiers.
"""

from __future__ import annotations

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


def sample_events(count: int = 6, now: datetime | None = None) -> list[dict[str, Any]]:
    """``count`` JSON-shaped IncidentReported events across the configured example agencies."""
    tokenizer = SharedKeyTokenizer(KeyRing.generate())
    now = now or datetime.now(UTC)
    events = []
    for i in range(count):
        agency, code, unit, lat, lon, category, severity, tags = _SAMPLES[i % len(_SAMPLES)]
        occurred = now - timedelta(hours=2 + i)
        events.append(
            {
                "event_id": str(uuid.uuid4()),
                "agency": agency,
                "incident_id": f"{agency.upper()}-{now:%Y%m%d}-{i:04d}-{uuid.uuid4().hex[:6]}",
                "occurred_at": occurred.isoformat(timespec="milliseconds"),
                "reported_at": (occurred + timedelta(minutes=40)).isoformat(
                    timespec="milliseconds"
                ),
                "location": {
                    "lat": lat,
                    "lon": lon,
                    "admin_unit_code": code,
                    "admin_unit_name": unit,
                    "address": None,
                },
                "category": category,
                "severity": severity,
                "subjects": [
                    pseudonymise_subject(
                        tokenizer,
                        "VEHICLE",
                        "65B1-234.56"
                        if i % len(_SAMPLES) < 2
                        else f"67F1-{100 + i % 900}.{10 + i % 90}",
                        "SUSPECT",
                        {"colour": "black"},
                    )
                ],
                "modus_operandi": tags,
                "narrative": None,
                "source_system": f"{agency}-case-mgmt",
            }
        )
    return events
