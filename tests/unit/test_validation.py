"""Every rejection path of the producer library, with the message a user sees."""

from __future__ import annotations

import copy
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
