"""A handful of realistic sample incidents for the demo and the tests.

Tokens are made with a key generated per call (an example key, never stored), so the
samples never contain raw identifiers.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

SAMPLE_KEY_ID = "example-demo-key"

# (agency, admin unit code, admin unit name, lat, lon, category, severity, mo tags)
_SAMPLES = (
    (
        "cantho",
        "31117",
        "Phuong Thoi An Dong",
        10.087,
        105.662,
        "THEFT",
        "MEDIUM",
        ["motorbike", "night"],
    ),
    (
        "angiang",
        "30316",
        "Xa Vinh Trinh",
        10.212,
        105.565,
        "THEFT",
        "MEDIUM",
        ["motorbike", "night"],
    ),
    ("cantho", "31120", "Phuong Thot Not", 10.268, 105.530, "DRUGS", "HIGH", ["delivery"]),
    ("angiang", "30340", "Xa Vinh Thanh Trung", 10.300, 105.420, "GAMBLING", "LOW", ["online"]),
    ("cantho", "31150", "Xa Thoi Lai", 10.065, 105.560, "ROBBERY", "HIGH", ["knife", "group"]),
    ("angiang", "30301", "Phuong My Binh", 10.380, 105.430, "SMUGGLING", "HIGH", ["river", "boat"]),
)


def _token(key: bytes, kind: str, normalised: str) -> str:
    return hmac.new(key, f"{kind}:{normalised}".encode(), hashlib.sha256).hexdigest()


def sample_events(count: int = 6, now: datetime | None = None) -> list[dict[str, Any]]:
    """``count`` JSON-shaped IncidentReported events across the configured example agencies."""
    key = secrets.token_bytes(32)
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
                    {
                        "role": "SUSPECT",
                        "kind": "VEHICLE",
                        "token": _token(key, "vehicle", f"65B1{23456 + i % 2}"),
                        "key_id": SAMPLE_KEY_ID,
                        "descriptors": {"colour": "black"},
                    }
                ],
                "modus_operandi": tags,
                "narrative": None,
                "source_system": f"{agency}-case-mgmt",
            }
        )
    return events
