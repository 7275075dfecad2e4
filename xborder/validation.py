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


def _as_ms(value: Any) -> int:
    """Milliseconds since the epoch of a decoded timestamp (a datetime, or already ms)."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return (value - _EPOCH) // _MS
    return int(value)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


@dataclass(frozen=True)
class EventRules:
    """Contract rules beyond the schema, from the agencies config and settings."""

    region: Region
    max_future_skew: timedelta
    max_bytes: int = 1_000_000
    max_subjects: int = 50

    def check_incident(self, value: dict[str, Any], now: datetime | int) -> None:
        """Raise InvalidRecordError for an incident event that breaks a rule; ``now`` is a
        datetime or milliseconds since the epoch."""
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
        # compared in milliseconds: the worker decodes timestamps as ints
        now_ms = _as_ms(now)
        skew_ms = self.max_future_skew // _MS
        limit_ms = now_ms + skew_ms
        for field in ("occurred_at", "reported_at", "updated_at", "closed_at"):
            moment = value.get(field)
            if moment is not None and _as_ms(moment) > limit_ms:
                ahead = timedelta(milliseconds=_as_ms(moment) - now_ms)
                raise _fail(
                    field,
                    f"is in the future by {_human(ahead)} (max skew "
                    f"{_human(self.max_future_skew)}); check the producer's clock",
                )
        occurred, reported = value.get("occurred_at"), value.get("reported_at")
        if occurred is not None and reported is not None:
            if _as_ms(occurred) > _as_ms(reported) + skew_ms:
                raise _fail(
                    "occurred_at", "is after reported_at; an incident is reported after it happens"
                )
        subjects = value.get("subjects") or ()
        if len(subjects) > self.max_subjects:
            raise _fail(
                "subjects",
                f"{len(subjects)} subjects > limit {self.max_subjects} "
                "(XBORDER_CONTRACT__MAX_SUBJECTS); split the record or raise the limit",
            )
        assert_subjects(subjects)


def _human(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds >= 2 * 86400:
        return f"{seconds // 86400} days"
    if seconds >= 2 * 3600:
        return f"{seconds // 3600} h"
    if seconds >= 120:
        return f"{seconds // 60} min"
    return f"{seconds} s"
