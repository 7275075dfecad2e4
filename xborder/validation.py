"""Validation of events against the contract, with messages an upstream developer can act on.

:func:`xborder.jsonavro.from_json` checks what the schema says (types, enums, required
and unknown fields); :class:`EventRules` adds what a schema cannot say (coordinates
inside the configured region, timestamps neither in the future beyond the allowed skew
nor before the configured earliest date, ids that are not blank, tokens instead of raw
identifiers, bounds on subjects and blocking keys). The producer library and the worker
share both.

"Now" is the caller's: the producer's clock, and in the worker the Kafka timestamp of the
message. The project creates the agency topics with ``message.timestamp.type=
LogAppendTime`` (:mod:`xborder.topics`), so there it is the broker's clock when the
event was appended and a client cannot move it; on a topic left at ``CreateTime`` it is
whatever the producing client set.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from xborder.agencies import Region
from xborder.errors import InvalidRecordError
from xborder.pseudonym import assert_subjects
from xborder.settings import ContractSettings


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
_TIME_FIELDS = ("occurred_at", "reported_at", "updated_at", "closed_at")
_ID_FIELDS = ("event_id", "agency", "incident_id", "source_system")
"""Top-level strings that identify an event: none may be blank where the record has it."""
_UUID_FIELDS = ("event_id", "supersedes_event_id")


@dataclass(frozen=True)
class EventRules:
    """Contract rules beyond the schema, from the agencies config and settings."""

    region: Region
    max_future_skew: timedelta
    max_bytes: int = 1_000_000
    max_subjects: int = 50
    max_blocking_keys: int = 32
    min_time: datetime = datetime(2000, 1, 1, tzinfo=UTC)
    """Earliest accepted event timestamp (``XBORDER_CONTRACT__MIN_OCCURRED_AT``)."""

    @classmethod
    def from_settings(cls, contract: ContractSettings, region: Region) -> EventRules:
        """The rules of ``contract`` (``XBORDER_CONTRACT__*``) over ``region``."""
        return cls(
            region=region,
            max_future_skew=timedelta(seconds=contract.max_future_skew_s),
            max_bytes=contract.max_message_bytes,
            max_subjects=contract.max_subjects,
            max_blocking_keys=contract.max_blocking_keys,
            min_time=contract.min_occurred_at,
        )

    def check_incident(self, value: dict[str, Any], now: datetime | int) -> None:
        """Raise InvalidRecordError for an incident event that breaks a rule; ``now`` is a
        datetime or milliseconds since the epoch."""
        _check_ids(value)
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
        earliest_ms = _as_ms(self.min_time)
        for field in _TIME_FIELDS:
            moment = value.get(field)
            if moment is None:
                continue
            moment_ms = _as_ms(moment)
            if moment_ms > limit_ms:
                ahead = timedelta(milliseconds=moment_ms - now_ms)
                raise _fail(
                    field,
                    f"is in the future by {_human(ahead)} (max skew "
                    f"{_human(self.max_future_skew)}); check the producer's clock",
                )
            if moment_ms < earliest_ms:
                raise _fail(
                    field,
                    f"{_iso(moment_ms)} is before the earliest accepted time "
                    f"{_iso(earliest_ms)} (XBORDER_CONTRACT__MIN_OCCURRED_AT); check the "
                    "date (a missing value sent as 0 or a default year), or lower the bound",
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
        keys = len({(s.get("kind"), s.get("token")) for s in subjects})
        if keys > self.max_blocking_keys:
            raise _fail(
                "subjects",
                f"{keys} distinct subject tokens (blocking keys) > limit "
                f"{self.max_blocking_keys} (XBORDER_CONTRACT__MAX_BLOCKING_KEYS); split the "
                "record or raise the limit",
            )
        for index, subject in enumerate(subjects):
            if not str(subject.get("key_id") or "").strip():
                raise _fail(f"subjects[{index}].key_id", "is empty; name the token's key id")


def _check_ids(value: dict[str, Any]) -> None:
    """Ids are not blank, and event ids are UUIDs (the worker decodes them as plain
    strings, and a producer other than this library may send anything)."""
    for field in _ID_FIELDS:
        if field in value and not str(value[field] or "").strip():
            raise _fail(field, "is empty; every event names its agency, incident and source")
    for field in _UUID_FIELDS:
        given = value.get(field)
        if given is None or isinstance(given, uuid.UUID):
            continue
        try:
            uuid.UUID(str(given))
        except ValueError as exc:
            raise _fail(field, f"{given!r} is not a UUID") from exc


def _iso(ms: int) -> str:
    """A millisecond timestamp as ISO 8601 UTC, for messages (any year, even 0001)."""
    try:
        moment = _EPOCH + timedelta(milliseconds=ms)
    except OverflowError:
        return f"{ms} ms from the epoch"
    return f"{moment.year:04d}-{moment:%m-%dT%H:%M:%S}Z"


def _human(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds >= 2 * 86400:
        return f"{seconds // 86400} days"
    if seconds >= 2 * 3600:
        return f"{seconds // 3600} h"
    if seconds >= 120:
        return f"{seconds // 60} min"
    return f"{seconds} s"
