"""Raw identifiers in free-text and identifier-like fields: found, refused or redacted, at
the producer and at the worker, masked in messages, and quarantined when dead-lettered."""

from __future__ import annotations

import copy
import random
from datetime import UTC, datetime
from typing import Any

import pytest

from xborder.agencies import load_agencies
from xborder.codec import AvroCodec
from xborder.deadletter import DeadLetter, holds_raw_identifier, route
from xborder.errors import InvalidRecordError
from xborder.producer import EventEncoder
from xborder.pseudonym import raw_forms
from xborder.pseudonym.detect import find_identifiers, masked, quoted, redact
from xborder.samples import sample_events
from xborder.schemas import SchemaStore
from xborder.settings import Settings, load_settings
from xborder.topics import Topics
from xborder.validation import EventRules, check_raw_identifiers, check_verification_input

NOW = datetime(2026, 3, 19, 12, 0, tzinfo=UTC)
PHONE, CCCD, PLATE = "0912 345 678", "079123456789", "65B1-234.56"
RAWS = (PHONE, CCCD, PLATE)
# (field path as the message names it, how to put a text there)
TEXT_FIELDS: list[tuple[str, Any]] = [
    ("narrative", lambda e, t: e.__setitem__("narrative", f"gọi {t} lúc 9h")),
    ("location.address", lambda e, t: e["location"].__setitem__("address", f"gần nhà {t}")),
    ("location.admin_unit_name", lambda e, t: e["location"].__setitem__("admin_unit_name", t)),
    ("modus_operandi[1]", lambda e, t: e["modus_operandi"].__setitem__(1, t)),
    ("source_system", lambda e, t: e.__setitem__("source_system", f"app-{t}")),
    (
        "subjects[0].descriptors['colour']",
        lambda e, t: e["subjects"][0]["descriptors"].__setitem__("colour", f"đen {t}"),
    ),
]


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings()


@pytest.fixture(scope="module")
def codec(settings: Settings) -> AvroCodec:
    return AvroCodec(SchemaStore(settings.schemas_dir))


def _encoder(settings: Settings, codec: AvroCodec, policy: str) -> EventEncoder:
    changed = settings.with_overrides(**{"contract.raw_identifiers": policy})
    return EventEncoder(changed, load_agencies(changed.agencies_config), codec, "cantho")


@pytest.fixture
def event() -> dict[str, Any]:
    return copy.deepcopy(sample_events(1, now=NOW)[0])


@pytest.mark.parametrize("raw", RAWS)
@pytest.mark.parametrize(("path", "put"), TEXT_FIELDS, ids=[p for p, _ in TEXT_FIELDS])
def test_reject_names_the_field_and_never_the_value(
    settings: Settings, codec: AvroCodec, event: dict[str, Any], path: str, put: Any, raw: str
) -> None:
    put(event, raw)
    with pytest.raises(InvalidRecordError) as caught:
        _encoder(settings, codec, "reject").encode(event, now=NOW)
    message = str(caught.value)
    assert caught.value.reason == "raw-identifier"
    assert message.startswith(f"{path}: contains what looks like ")
    assert "XBORDER_CONTRACT__RAW_IDENTIFIERS=redact" in message or "descriptors" in path
    leaked = [f for f in raw_forms(_kind(raw), raw) if len(f) >= 6 and f in message]
    assert leaked == []


def _kind(raw: str) -> str:
    return {PHONE: "PHONE", CCCD: "PERSON", PLATE: "VEHICLE"}[raw]


def test_redact_replaces_each_identifier_with_a_marker(
    settings: Settings, codec: AvroCodec, event: dict[str, Any]
) -> None:
    for (_, put), raw in zip(TEXT_FIELDS, RAWS * 2, strict=True):
        put(event, raw)
    payload = _encoder(settings, codec, "redact").encode(event, now=NOW)
    decoded = codec.decode(payload).value
    assert decoded["narrative"] == "gọi [redacted:PHONE] lúc 9h"
    assert decoded["location"]["address"] == "gần nhà [redacted:NATIONAL_ID]"
    assert decoded["location"]["admin_unit_name"] == "[redacted:PLATE]"
    assert decoded["modus_operandi"][1] == "[redacted:PHONE]"
    assert decoded["source_system"] == "app-[redacted:NATIONAL_ID]"
    assert decoded["subjects"][0]["descriptors"]["colour"] == "đen [redacted:PLATE]"
    for raw in RAWS:
        assert not any(f.encode() in payload for f in raw_forms(_kind(raw), raw) if len(f) >= 6)


@pytest.mark.parametrize("policy", ["reject", "redact"])
def test_incident_ids_and_tokens_are_refused_under_either_policy(
    settings: Settings, codec: AvroCodec, event: dict[str, Any], policy: str
) -> None:
    encoder = _encoder(settings, codec, policy)
    for put in (
        lambda e: e.__setitem__("incident_id", "CT-0912345678-01"),
        lambda e: e.__setitem__("incident_id", "vu Nguyễn Văn An"),
        lambda e: e["subjects"][0].__setitem__("token", PLATE),
    ):
        changed = copy.deepcopy(event)
        put(changed)
        with pytest.raises(InvalidRecordError) as caught:
            encoder.encode(changed, now=NOW)
        assert caught.value.reason == "raw-identifier"
        assert "0912345678" not in str(caught.value) and "Nguyễn" not in str(caught.value)


def test_names_are_looked_for_in_descriptors_and_ids_not_in_addresses() -> None:
    event: dict[str, Any] = {
        "location": {"address": "số 12 đường Nguyễn Trãi"},
        "subjects": [],
        "source_system": "cantho-case-mgmt",
    }
    assert check_raw_identifiers(copy.deepcopy(event), "reject") == 0
    event["subjects"] = [
        {"token": "a" * 64, "descriptors": {"alias": "Trần Thị Bích"}, "individual": ""}
    ]
    assert check_raw_identifiers(event, "redact") == 1
    assert event["subjects"][0]["descriptors"]["alias"] == "[redacted:NAME]"


def test_sample_events_are_never_flagged() -> None:
    """The project's own ids (date, sequence, hex) and texts are no false positives."""
    for event in sample_events(1000, now=NOW):
        assert check_raw_identifiers(event, "reject") == 0


def test_uuids_and_hashes_are_no_plates() -> None:
    """Upper-case uuids (a common incident id) hold plate-like stretches (``45F7-4561``)."""
    import uuid

    for _ in range(500):
        value = str(uuid.uuid4()).upper()
        for text in (value, f"CT-{value}", value.replace("-", ""), "a1" * 32):
            assert find_identifiers(text, names=True) == [], text


def test_every_written_form_of_an_identifier_is_found_in_text() -> None:
    rng = random.Random(7)
    for _ in range(2):
        plate = f"{rng.randint(60, 69)}B{rng.randint(1, 9)}-{rng.randint(100, 999)}.{rng.randint(10, 99)}"  # noqa: E501
        phone = f"09{rng.randint(10, 99)} {rng.randint(100, 999)} {rng.randint(100, 999)}"
        cccd = f"0{rng.randint(1, 96):02d}{rng.randint(0, 3)}{rng.randint(0, 10**8 - 1):08d}"
        for kind, raw in (("VEHICLE", plate), ("PHONE", phone), ("PERSON", cccd)):
            for form in raw_forms(kind, raw):
                if len(form) < 6:
                    continue
                for text in (f"ghi chú {form}, xx", f"({form})", f"CT-{form}"):
                    found = find_identifiers(text)
                    assert found and form not in redact(text, found), (kind, text)


def test_masked_and_quoted_never_show_an_identifier() -> None:
    assert masked(PHONE) == "<text, 12 chars>"
    assert quoted("MURDER") == "'MURDER'"
    assert quoted(PHONE) == masked(PHONE)
    assert quoted("Nguyễn Văn An") == masked("Nguyễn Văn An")


def test_the_worker_refuses_a_raw_key_and_re_encodes_a_redacted_event(
    settings: Settings, codec: AvroCodec, event: dict[str, Any]
) -> None:
    from streams.flows.ingest import Accepted, classify

    agencies = load_agencies(settings.agencies_config)
    topic = Topics.from_settings(settings, agencies).incidents("cantho")
    prepared = codec.from_json("IncidentReported", event)
    prepared["narrative"] = f"gọi {PHONE}"  # as a producer without the library sends it
    raw_bytes = codec.encode("IncidentReported", prepared)
    now_ms = int(NOW.timestamp() * 1000)
    key = event["incident_id"].encode()
    key_ids = frozenset(s["key_id"] for s in event["subjects"])

    rules = EventRules.from_settings(settings.contract, agencies.region)
    refused = classify(codec, rules, b"0912345678", raw_bytes, topic, 0, 5, now_ms, key_ids)
    assert isinstance(refused, DeadLetter) and refused.reason == "raw-identifier"
    assert refused.error.startswith("key: ") and "0912345678" not in refused.error
    refused = classify(codec, rules, key, raw_bytes, topic, 0, 5, now_ms, key_ids)
    assert isinstance(refused, DeadLetter) and refused.error.startswith("narrative: ")

    redacting = EventRules.from_settings(
        settings.contract.model_copy(update={"raw_identifiers": "redact"}), agencies.region
    )
    accepted = classify(codec, redacting, key, raw_bytes, topic, 0, 5, now_ms, key_ids)
    assert isinstance(accepted, Accepted)
    assert accepted.decoded["narrative"] == "gọi [redacted:PHONE]"
    assert codec.decode(accepted.value).value["narrative"] == "gọi [redacted:PHONE]"
    assert b"912 345 678" not in accepted.value


def test_raw_identifier_dead_letters_go_to_the_agencys_quarantine(settings: Settings) -> None:
    topics = Topics.from_settings(settings, load_agencies(settings.agencies_config))
    source = topics.incidents("angiang")
    raw = b"\x00" + "gọi 0912345678".encode()
    letter = DeadLetter(b"k", raw, "raw-identifier", "narrative: ...", source, 0, 1)
    assert route(letter, topics) == (topics.quarantine("angiang"), letter)
    # refused for another reason, but its bytes hold a phone: quarantined all the same
    other = DeadLetter(b"k", raw, "invalid", "occurred_at: ...", source, 0, 1)
    assert route(other, topics)[0] == topics.quarantine("angiang")
    verdicts = topics.verdicts("cantho")
    verdict = DeadLetter(None, b"x", "raw-identifier", "reason: ...", verdicts, 0, 1)
    assert route(verdict, topics)[0] == topics.quarantine("cantho")
    clean = DeadLetter(b"k", b"\x00\x01abc", "invalid", "occurred_at: ...", source, 0, 1)
    assert route(clean, topics) == (topics.dead_letters, clean)
    # no single agency owns an internal topic: shared dead letters, without the bytes
    internal = DeadLetter(b"0912345678", b"v", "raw-identifier", "key: ...", topics.blocks, 0, 1)
    destination, stripped = route(internal, topics)
    assert destination == topics.dead_letters and stripped.key is None and stripped.value is None
    assert not holds_raw_identifier(b"\xc3\x01" + ("ab12" * 16).encode())


def test_verification_inputs_are_refused_never_redacted() -> None:
    officer = {"officer_token": "b" * 64}
    with pytest.raises(InvalidRecordError, match=r"^reason: contains what looks like a phone"):
        check_verification_input("xborder.v1.Verdict", {**officer, "reason": f"gọi {PHONE}"})
    with pytest.raises(InvalidRecordError, match=r"^conclusion: .*national ID"):
        check_verification_input("CaseReport", {**officer, "conclusion": f"CCCD {CCCD}"})
    release = {"incident": {"incident_id": "CT-1"}, "details": {"narrative": f"xe {PLATE}"}}
    with pytest.raises(InvalidRecordError, match=r"^details: narrative: .*plate") as caught:
        check_verification_input("IncidentRelease", release)
    assert caught.value.reason == "raw-identifier"
    check_verification_input("Verdict", {**officer, "reason": "đã xác minh tại hiện trường"})
