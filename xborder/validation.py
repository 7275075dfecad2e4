"""Validation of events against the contract, with messages an upstream developer can act on.

:func:`xborder.jsonavro.from_json` checks what the schema says (types, enums, required
and unknown fields); :class:`EventRules` adds what a schema cannot say (coordinates
inside the configured region, timestamps not in the future beyond the allowed skew,
tokens instead of raw identifiers). The producer library and the worker share both.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from xborder.agencies import Region
from xborder.errors import InvalidRecordError
from xborder.pseudonym import assert_subjects


def _fail(path: str, message: str, reason: str = "invalid") -> InvalidRecordError:
    return InvalidRecordError(f"{path}: {message}", reason=reason)


def _as_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    return datetime.fromtimestamp(value / 1000, tz=UTC)


@dataclass(frozen=True)
class EventRules:
    """Contract rules beyond the schema, from the agencies config and settings."""

    region: Region
    max_future_skew: timedelta
    max_bytes: int = 1_000_000

    def check_incident(self, value: dict[str, Any], now: datetime) -> None:
        """Raise InvalidRecordError for an incident event that breaks a rule."""
        location = value.get("location")
        if isinstance(location, dict) and "lat" in location and "lon" in location:
            lat, lon = location["lat"], location["lon"]
            if not self.region.contains(lat, lon):
                r = self.region
                raise _fail(
                    "location",
                    f"({lat}, {lon}) is outside the configured region "
                    f"lat {r.min_lat}..{r.max_lat}, lon {r.min_lon}..{r.max_lon}",
                )
        limit = now + self.max_future_skew
        for field in ("occurred_at", "reported_at", "updated_at", "closed_at"):
            if field in value and value[field] is not None:
                moment = _as_datetime(value[field])
                if moment > limit:
                    ahead = moment - now
                    raise _fail(
                        field,
                        f"is in the future by {_human(ahead)} (max skew "
                        f"{_human(self.max_future_skew)}); check the producer's clock",
                    )
        if "occurred_at" in value and "reported_at" in value:
            occurred, reported = (
                _as_datetime(value["occurred_at"]),
                _as_datetime(value["reported_at"]),
            )
            if occurred > reported + self.max_future_skew:
                raise _fail(
                    "occurred_at", "is after reported_at; an incident is reported after it happens"
                )
        assert_subjects(value.get("subjects") or ())


def _human(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds >= 2 * 86400:
        return f"{seconds // 86400} days"
    if seconds >= 2 * 3600:
        return f"{seconds // 3600} h"
    if seconds >= 120:
        return f"{seconds // 60} min"
    return f"{seconds} s"
