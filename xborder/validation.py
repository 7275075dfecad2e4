"""Validation of events against the contract, with messages an upstream developer can act on.

:func:`xborder.jsonavro.from_json` checks what the schema says (types, enums, required
and unknown fields); :class:`EventRules` adds what a schema cannot say (coordinates
inside the configured region, timestamps neither in the future beyond the allowed skew
nor before the configured earliest date, ids that are not blank, tokens instead of raw
identifiers, bounds on subjects and blocking keys). The producer library and the worker
share both.

Raw identifiers (:mod:`xborder.pseudonym.detect`): every free-text field (narrative,
address, administrative unit, modus operandi, closing reason) and every identifier-like
one (source system, descriptor keys and values, the ``individual`` label, where names
are looked for too) is checked first; ``XBORDER_CONTRACT__RAW_IDENTIFIERS`` says whether
an event holding one is refused (reason ``raw-identifier``) or has each one replaced by
a marker such as ``[redacted:PHONE]``. Incident ids, Kafka keys and tokens are always
refused. Messages quote no input value (:func:`~xborder.pseudonym.detect.masked`).

"Now" is the caller's: the producer's clock, and in the worker the Kafka timestamp of the
message. The project creates the agency topics with ``message.timestamp.type=
LogAppendTime`` (:mod:`xborder.topics`), so there it is the broker's clock when the
event was appended and a client cannot move it; on a topic left at ``CreateTime`` it is
whatever the producing client set.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from xborder.agencies import Region
from xborder.errors import InvalidRecordError
from xborder.pseudonym.detect import (
    RAW_IDENTIFIER,
    RawIdentifierPolicy,
    assert_token,
    check_text,
    find_identifiers,
    masked,
)
from xborder.pseudonym.tokens import TOKEN_PATTERN
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
    raw_identifiers: RawIdentifierPolicy = "reject"
    """Refuse or redact raw identifiers in text (``XBORDER_CONTRACT__RAW_IDENTIFIERS``)."""

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
            raw_identifiers=contract.raw_identifiers,
        )

    def check_incident(self, value: dict[str, Any], now: datetime | int) -> int:
        """Raise InvalidRecordError for an incident event that breaks a rule; ``now`` is a
        datetime or milliseconds since the epoch. Raw identifiers come first: redacted in
        ``value`` itself under the ``redact`` policy; returns how many fields were."""
        _check_ids(value)
        redacted = check_raw_identifiers(value, self.raw_identifiers)
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
        return redacted

    def check_key(self, key: bytes | None) -> None:
        """Raise InvalidRecordError (``raw-identifier``) when a Kafka key carries a raw
        identifier: keys are read by every consumer of a topic and kept by compaction."""
        if key:
            check_identifier(key.decode("utf-8", "replace"), "key")


_PLAIN_KEY = re.compile(r"[a-z][a-z0-9_]{0,31}")
"""A descriptor key a message may quote (``colour``, ``age_band``): no identifier fits."""
_FREE_TEXT_RULE = (
    "free text must not identify anyone: tokenise the identifier as a subject, or set "
    "XBORDER_CONTRACT__RAW_IDENTIFIERS=redact to replace it with a marker"
)
_ID_RULE = (
    "incident ids and Kafka keys must not carry personal identifiers: use the agency's case number"
)


def check_identifier(value: str, field_path: str) -> None:
    """Refuse (always) an id or key that holds a phone, national ID, plate or name."""
    check_text(value, field_path, "reject", names=True, rule=_ID_RULE)


def check_raw_identifiers(value: dict[str, Any], policy: RawIdentifierPolicy) -> int:
    """Check every free-text and identifier-like field of an incident event (any of the
    three records) under ``policy``; redacts in place and returns how many fields were
    changed, or raises InvalidRecordError with reason ``raw-identifier``."""
    changed = 0
    incident_id = value.get("incident_id")
    if isinstance(incident_id, str):
        check_identifier(incident_id, "incident_id")
    for name, names in _TOP_TEXT_FIELDS:
        changed += _check_field(value, name, name, policy, names)
    location = value.get("location")
    if isinstance(location, dict):
        for name, path in _LOCATION_TEXT_FIELDS:
            changed += _check_field(location, name, path, policy, False)
    tags = value.get("modus_operandi")
    if isinstance(tags, list):
        for index, tag in enumerate(tags):
            # the path is built only for a tag that holds something (most hold nothing)
            if isinstance(tag, str) and find_identifiers(tag):
                checked = check_text(tag, f"modus_operandi[{index}]", policy, rule=_FREE_TEXT_RULE)
                if checked is not tag:
                    tags[index] = checked
                    changed += 1
    for index, subject in enumerate(value.get("subjects") or ()):
        changed += _check_subject(subject, index, policy)
    return changed


_TOP_TEXT_FIELDS = (("source_system", True), ("narrative", False), ("reason", False))
"""Top-level text fields of an incident event and whether names are looked for in them."""
_LOCATION_TEXT_FIELDS = tuple(
    (name, f"location.{name}") for name in ("address", "admin_unit_name", "admin_unit_code")
)


def _check_field(
    holder: dict[str, Any], name: str, path: str, policy: RawIdentifierPolicy, names: bool
) -> int:
    """Check the text field ``name`` of ``holder`` under ``policy`` (redacted in place);
    1 when it was changed. The detector's answer for a short text is cached, so asking it
    first and calling :func:`check_text` only when it finds something costs one look-up."""
    given = holder.get(name)
    if not (isinstance(given, str) and given) or not find_identifiers(given, names=names):
        return 0
    checked = check_text(given, path, policy, names=names, rule=_FREE_TEXT_RULE)
    if checked is given:
        return 0
    holder[name] = checked
    return 1


_VERIFICATION_RULE = (
    "verification text must not identify anyone (refer to the incident or the case); it is "
    "refused, never redacted, because the agencies agree on the exact text"
)


def check_verification_input(record_name: str, value: dict[str, Any]) -> None:
    """Refuse (always: an agreed text must not change under the agencies' feet) a Verdict,
    CaseReport or IncidentRelease whose ids, free text or released details hold a raw
    identifier; InvalidRecordError with reason ``raw-identifier``."""
    short = record_name.rpartition(".")[2]
    for name in ("target_id", "case_id", "conclusion_id"):
        given = value.get(name)
        if isinstance(given, str):
            check_identifier(given, name)
    for name in ("reason", "conclusion"):
        given = value.get(name)
        if isinstance(given, str):
            check_text(given, name, "reject", rule=_VERIFICATION_RULE)
    officer = value.get("officer_token")
    if short in ("Verdict", "CaseReport") and officer is not None:
        assert_token(officer, "officer_token")
    incident = value.get("incident")
    if isinstance(incident, dict) and isinstance(incident.get("incident_id"), str):
        check_identifier(incident["incident_id"], "incident.incident_id")
    details = value.get("details")
    if isinstance(details, dict):
        try:
            check_raw_identifiers(details, "reject")
        except InvalidRecordError as exc:
            raise _fail("details", str(exc), RAW_IDENTIFIER) from exc


def _check_subject(subject: dict[str, Any], index: int, policy: RawIdentifierPolicy) -> int:
    """A subject's token (always refused when not a token) and its descriptors and
    ``individual`` label (names looked for too) under ``policy``."""
    token = subject.get("token")
    # a token passes assert_token exactly when it matches the pattern; the field path is
    # built only for a value that does not
    if not (isinstance(token, str) and TOKEN_PATTERN.fullmatch(token)):
        assert_token(token, f"subjects[{index}].token")
    changed = 0
    individual = subject.get("individual")
    if isinstance(individual, str) and individual and find_identifiers(individual, names=True):
        checked = check_text(individual, f"subjects[{index}].individual", policy, names=True)
        if checked is not individual:
            subject["individual"] = checked
            changed += 1
    descriptors = subject.get("descriptors")
    if not descriptors:
        return changed
    where = f"subjects[{index}]"
    if not isinstance(descriptors, dict):
        raise _fail(f"{where}.descriptors", "descriptors must be a map of text to text")
    rule = "descriptors must not identify anyone (tokenise the identifier as a subject)"
    for key, given in list(descriptors.items()):
        shown = repr(key) if isinstance(key, str) and _PLAIN_KEY.fullmatch(key) else masked(key)
        path = f"{where}.descriptors[{shown}]"
        if not isinstance(key, str) or not isinstance(given, str):
            raise _fail(path, "descriptor keys and values must be text")
        if find_identifiers(key, names=True):
            raise _fail(path, f"the key looks like a personal identifier; {rule}", RAW_IDENTIFIER)
        checked = check_text(given, path, policy, names=True, rule=rule)
        if checked is not given:
            descriptors[key] = checked
            changed += 1
    return changed


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
            raise _fail(field, f"{masked(given)} is not a UUID") from exc


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
