"""Every rejection path of the producer library, with the message a user sees."""

from __future__ import annotations

import copy
import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from xborder.agencies import load_agencies
from xborder.codec import AvroCodec
from xborder.errors import InvalidRecordError
from xborder.producer import EventEncoder
from xborder.samples import sample_events
from xborder.schemas import SchemaStore
from xborder.settings import load_settings
from xborder.validation import EventRules

NOW = datetime(2026, 3, 19, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def encoder() -> EventEncoder:
    settings = load_settings()
    return EventEncoder(
        settings,
        load_agencies(settings.agencies_config),
        AvroCodec(SchemaStore(settings.schemas_dir)),
        "cantho",
    )


@pytest.fixture
def event() -> dict[str, Any]:
    return copy.deepcopy(sample_events(1, now=NOW)[0])


def _rejection(encoder: EventEncoder, event: dict[str, Any]) -> InvalidRecordError:
    with pytest.raises(InvalidRecordError) as caught:
        encoder.encode(event, now=NOW)
    return caught.value


def test_a_valid_event_encodes(encoder: EventEncoder, event: dict[str, Any]) -> None:
    payload = encoder.encode(event, now=NOW)
    assert payload[:2] == b"\xc3\x01"
    assert encoder.codec.decode(payload).value["incident_id"] == event["incident_id"]


def test_another_agencys_event_is_refused(encoder: EventEncoder, event: dict[str, Any]) -> None:
    event["agency"] = "angiang"
    error = _rejection(encoder, event)
    assert "differs from the publisher's agency 'cantho'" in str(error)


def test_missing_required_field_is_named(encoder: EventEncoder, event: dict[str, Any]) -> None:
    del event["incident_id"]
    assert (
        str(_rejection(encoder, event)) == "IncidentReported.incident_id: required field is missing"
    )


def test_unknown_field_is_named(encoder: EventEncoder, event: dict[str, Any]) -> None:
    event["severty"] = "HIGH"
    message = str(_rejection(encoder, event))
    assert message.startswith("IncidentReported: unknown field(s) severty")


def test_bad_enum_symbol_lists_the_allowed_ones(
    encoder: EventEncoder, event: dict[str, Any]
) -> None:
    event["category"] = "MURDER"
    message = str(_rejection(encoder, event))
    assert message.startswith("IncidentReported.category: 'MURDER' is not one of THEFT, ROBBERY")


def test_wrong_type_names_the_nested_field(encoder: EventEncoder, event: dict[str, Any]) -> None:
    event["location"]["lat"] = "ten"
    assert str(_rejection(encoder, event)).startswith(
        "IncidentReported.location.lat: expected a number, got str"
    )


def test_bad_uuid_is_refused(encoder: EventEncoder, event: dict[str, Any]) -> None:
    event["event_id"] = "not-a-uuid"
    assert (
        str(_rejection(encoder, event)) == "IncidentReported.event_id: 'not-a-uuid' is not a UUID"
    )


def test_timestamp_without_zone_is_refused(encoder: EventEncoder, event: dict[str, Any]) -> None:
    event["occurred_at"] = "2026-03-19T08:00:00"
    assert "has no time zone" in str(_rejection(encoder, event))


def test_unparseable_timestamp_is_refused(encoder: EventEncoder, event: dict[str, Any]) -> None:
    event["reported_at"] = "yesterday"
    assert str(_rejection(encoder, event)) == (
        "IncidentReported.reported_at: 'yesterday' is not an ISO-8601 timestamp"
    )


def test_future_timestamp_beyond_skew_is_refused(
    encoder: EventEncoder, event: dict[str, Any]
) -> None:
    event["occurred_at"] = (NOW + timedelta(days=2)).isoformat()
    event["reported_at"] = (NOW + timedelta(days=2, minutes=5)).isoformat()
    message = str(_rejection(encoder, event))
    assert message.startswith("occurred_at: is in the future by 2 days (max skew 5 min)")


def test_occurred_after_reported_is_refused(encoder: EventEncoder, event: dict[str, Any]) -> None:
    event["occurred_at"] = (NOW - timedelta(hours=1)).isoformat()
    event["reported_at"] = (NOW - timedelta(hours=3)).isoformat()
    assert "occurred_at: is after reported_at" in str(_rejection(encoder, event))


def test_location_outside_the_region_is_refused(
    encoder: EventEncoder, event: dict[str, Any]
) -> None:
    event["location"]["lat"], event["location"]["lon"] = 21.03, 105.85  # Hanoi
    message = str(_rejection(encoder, event))
    assert message.startswith("location: (21.03, 105.85) is outside the configured region")


def test_raw_plate_in_a_token_field_is_refused(
    encoder: EventEncoder, event: dict[str, Any]
) -> None:
    event["subjects"][0]["token"] = "65B1-234.56"
    error = _rejection(encoder, event)
    assert error.reason == "raw-identifier"
    assert str(error).startswith("subjects[0].token: ")
    assert "raw identifiers never leave the agency" in str(error)


def test_raw_phone_in_a_token_field_is_refused(
    encoder: EventEncoder, event: dict[str, Any]
) -> None:
    event["subjects"][0]["token"] = "0912 345 678"
    error = _rejection(encoder, event)
    assert error.reason == "raw-identifier"
    assert "phone" in str(error)


def test_oversized_event_is_refused(encoder: EventEncoder, event: dict[str, Any]) -> None:
    event["narrative"] = "x" * 1_100_000
    error = _rejection(encoder, event)
    assert error.reason == "oversized"
    assert "over the limit of 1000000" in str(error)


def test_rules_give_the_same_verdicts_on_millisecond_timestamps(
    encoder: EventEncoder, event: dict[str, Any]
) -> None:
    """The worker decodes timestamps as ints and passes the Kafka timestamp in ms."""
    codec = encoder.codec
    now_ms = int(NOW.timestamp() * 1000)
    late = copy.deepcopy(event)
    late["occurred_at"] = (NOW + timedelta(days=2)).isoformat()
    late["reported_at"] = (NOW + timedelta(days=2, minutes=5)).isoformat()
    for document, expected in ((event, None), (late, "occurred_at: is in the future by 2 days")):
        value = codec.from_json("IncidentReported", document)
        plain = codec.decode(codec.encode("IncidentReported", value), logical_types=False).value
        assert isinstance(plain["occurred_at"], int)
        for rules_input, now in ((value, NOW), (plain, now_ms)):
            if expected is None:
                encoder.rules.check_incident(rules_input, now)
            else:
                with pytest.raises(InvalidRecordError, match=expected):
                    encoder.rules.check_incident(rules_input, now)


def test_more_subjects_than_the_limit_are_refused_at_the_producer(
    encoder: EventEncoder, event: dict[str, Any]
) -> None:
    subject = event["subjects"][0] if event.get("subjects") else None
    assert subject is not None
    event["subjects"] = [dict(subject) for _ in range(encoder.rules.max_subjects + 1)]
    message = str(_rejection(encoder, event))
    assert message.startswith(f"subjects: {encoder.rules.max_subjects + 1} subjects > limit")
    assert "XBORDER_CONTRACT__MAX_SUBJECTS" in message
    event["subjects"] = [dict(subject) for _ in range(encoder.rules.max_subjects)]
    encoder.encode(event, now=NOW)  # the maximal event passes


def _distinct_subjects(template: dict[str, Any], count: int) -> list[dict[str, Any]]:
    return [
        {**template, "token": hashlib.sha256(f"subject {i}".encode()).hexdigest()}
        for i in range(count)
    ]


def test_more_blocking_keys_than_the_limit_are_refused_at_the_producer(
    encoder: EventEncoder, event: dict[str, Any]
) -> None:
    limit = encoder.rules.max_blocking_keys
    assert limit < encoder.rules.max_subjects  # else the subject limit would answer first
    event["subjects"] = _distinct_subjects(event["subjects"][0], limit + 1)
    message = str(_rejection(encoder, event))
    assert message == (
        f"subjects: {limit + 1} distinct subject tokens (blocking keys) > limit {limit} "
        "(XBORDER_CONTRACT__MAX_BLOCKING_KEYS); split the record or raise the limit"
    )
    event["subjects"] = _distinct_subjects(event["subjects"][0], limit)
    encoder.encode(event, now=NOW)  # the maximal event passes
    # repeated tokens are one key each: as many subjects as allowed, two distinct tokens
    event["subjects"] = _distinct_subjects(event["subjects"][0], 2) * (limit // 2 + 1)
    encoder.encode(event, now=NOW)


def test_the_worker_dead_letters_an_event_over_the_blocking_key_limit(
    encoder: EventEncoder, event: dict[str, Any]
) -> None:
    """The same rules in the worker's classify: the event is a dead letter with the reason,
    its position and its original bytes."""
    from streams.flows.ingest import Accepted, classify
    from xborder.deadletter import DeadLetter

    limit = encoder.rules.max_blocking_keys
    event["subjects"] = _distinct_subjects(event["subjects"][0], limit + 1)
    codec = encoder.codec
    payload = codec.encode("IncidentReported", codec.from_json("IncidentReported", event))
    now_ms = int(NOW.timestamp() * 1000)
    outcome = classify(codec, encoder.rules, b"k", payload, "incidents.cantho", 2, 41, now_ms)
    assert isinstance(outcome, DeadLetter)
    assert (outcome.reason, outcome.value, outcome.partition, outcome.offset) == (
        "invalid",
        payload,
        2,
        41,
    )
    assert "XBORDER_CONTRACT__MAX_BLOCKING_KEYS" in outcome.error
    event["subjects"] = _distinct_subjects(event["subjects"][0], limit)
    payload = codec.encode("IncidentReported", codec.from_json("IncidentReported", event))
    outcome = classify(codec, encoder.rules, b"k", payload, "incidents.cantho", 2, 42, now_ms)
    assert isinstance(outcome, Accepted)


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00Z", "1900-06-01T00:00:00Z"])
def test_an_occurrence_before_the_earliest_date_is_refused(
    encoder: EventEncoder, event: dict[str, Any], when: str
) -> None:
    event["occurred_at"] = when
    assert str(_rejection(encoder, event)) == (
        f"occurred_at: {when} is before the earliest accepted time 2000-01-01T00:00:00Z "
        "(XBORDER_CONTRACT__MIN_OCCURRED_AT); check the date (a missing value sent as 0 or "
        "a default year), or lower the bound"
    )


def test_the_earliest_date_is_a_setting_and_binds_every_timestamp(
    event: dict[str, Any],
) -> None:
    settings = load_settings(**{"contract.min_occurred_at": "1990-01-01"})
    rules = EventRules.from_settings(
        settings.contract, load_agencies(settings.agencies_config).region
    )
    assert rules.min_time == datetime(1990, 1, 1, tzinfo=UTC)
    codec = AvroCodec(SchemaStore(settings.schemas_dir))
    event["occurred_at"] = "1995-01-01T00:00:00Z"
    rules.check_incident(codec.from_json("IncidentReported", event), NOW)
    event["reported_at"] = "1989-12-31T00:00:00Z"
    event["occurred_at"] = "1989-12-30T00:00:00Z"
    with pytest.raises(InvalidRecordError, match=r"^occurred_at: 1989-12-30T00:00:00Z is before"):
        rules.check_incident(codec.from_json("IncidentReported", event), NOW)
    # in milliseconds, as the worker decodes: the same verdict
    plain = {"occurred_at": -(10**18), "reported_at": int(NOW.timestamp() * 1000)}
    with pytest.raises(InvalidRecordError, match="ms from the epoch is before"):
        rules.check_incident(plain, NOW)


@pytest.mark.parametrize("field", ["incident_id", "agency", "source_system"])
@pytest.mark.parametrize("blank", ["", "   "])
def test_blank_ids_are_refused(field: str, blank: str, event: dict[str, Any]) -> None:
    settings = load_settings()
    rules = EventRules.from_settings(
        settings.contract, load_agencies(settings.agencies_config).region
    )
    event[field] = blank
    with pytest.raises(InvalidRecordError, match=f"^{field}: is empty"):
        rules.check_incident(event, NOW)


def test_the_worker_refuses_an_event_id_that_is_no_uuid(
    encoder: EventEncoder, event: dict[str, Any]
) -> None:
    """Another Avro producer can send any string where the library sends a UUID; the
    worker sees it as a plain string."""
    for bad in ("", "not-a-uuid"):
        plain = {**event, "event_id": bad}
        with pytest.raises(InvalidRecordError, match=r"^event_id: "):
            encoder.rules.check_incident(plain, NOW)


def test_an_empty_key_id_is_refused(encoder: EventEncoder, event: dict[str, Any]) -> None:
    event["subjects"][0]["key_id"] = ""
    assert str(_rejection(encoder, event)).startswith("subjects[0].key_id: is empty")
