"""Every schema file is documented and valid; every example validates and round-trips.

Also covers cross-file named-type references in the schema store, reading messages
written with released (history) schemas, and the plain-JSON conversion of
``xborder.jsonavro``.
"""

from __future__ import annotations

import io
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fastavro
import pytest
from fastavro.validation import validate

from xborder.codec import SINGLE_OBJECT_MAGIC, AvroCodec
from xborder.compat import load_examples, released_versions, top_level_records
from xborder.errors import ConfigurationError, InvalidRecordError
from xborder.jsonavro import from_json, to_json
from xborder.schemas import SchemaStore

SCHEMAS_DIR = Path(__file__).resolve().parents[2] / "schemas"
NAMESPACE = "xborder.v1"
MESSAGE_RECORDS = {
    "IncidentReported",
    "IncidentUpdated",
    "IncidentClosed",
    "Verdict",
    "Correlation",
    "CaseEvent",
    "CaseConclusion",
    "CaseReport",
    "IncidentRelease",
    "Alert",
    "DeadLetter",
}
EXAMPLES = load_examples(SCHEMAS_DIR)
SCHEMA_FILES = sorted(SCHEMAS_DIR.glob("*.avsc"))
RELEASED = [
    (version.name, name)
    for version in released_versions(SCHEMAS_DIR)
    for name in sorted(load_examples(version))
]
HEX_TOKEN = re.compile(r"[0-9a-f]{64}")
ISO_UTC_MILLIS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def _undocumented(node: Any, path: str) -> list[str]:
    """Paths of fields and named types in a raw schema that lack a non-empty doc."""
    missing = []
    if isinstance(node, list):
        for branch in node:
            missing += _undocumented(branch, path)
    elif isinstance(node, dict):
        kind = node.get("type")
        if kind in ("record", "enum", "fixed") and not str(node.get("doc", "")).strip():
            missing.append(f"{path} ({kind} {node['name']})")
        if kind == "record":
            for field in node["fields"]:
                if not str(field.get("doc", "")).strip():
                    missing.append(f"{path}.{field['name']}")
                missing += _undocumented(field["type"], f"{path}.{field['name']}")
        elif kind == "array":
            missing += _undocumented(node["items"], f"{path}[]")
        elif kind == "map":
            missing += _undocumented(node["values"], f"{path}{{}}")
        elif isinstance(kind, (dict, list)):
            missing += _undocumented(kind, path)
    return missing


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.stem)
def test_schema_file_is_one_documented_type_named_after_the_file(path: Path) -> None:
    raw = json.loads(path.read_text(encoding="utf-8"))
    assert raw["name"] == path.stem
    assert raw["namespace"] == NAMESPACE
    assert _undocumented(raw, raw["name"]) == []


def test_message_records_are_the_top_level_schemas_and_each_has_an_example(
    store: SchemaStore,
) -> None:
    top_level = {name.rpartition(".")[2] for name in top_level_records(store)}
    assert top_level == MESSAGE_RECORDS
    assert set(EXAMPLES) == MESSAGE_RECORDS


def test_shared_types_live_in_their_own_files(store: SchemaStore) -> None:
    for shared in ("Location", "Subject", "Category", "Severity", "SubjectRole", "SubjectKind"):
        assert (SCHEMAS_DIR / f"{shared}.avsc").is_file()
        assert store.current(shared).full_name == f"{NAMESPACE}.{shared}"


@pytest.mark.parametrize("name", sorted(MESSAGE_RECORDS))
def test_example_validates_against_its_schema(store: SchemaStore, name: str) -> None:
    schema = store.current(name).parsed
    assert validate(from_json(schema, EXAMPLES[name]), schema, raise_errors=True)


@pytest.mark.parametrize("name", sorted(MESSAGE_RECORDS))
def test_example_round_trips_through_the_codec(
    store: SchemaStore, codec: AvroCodec, name: str
) -> None:
    datum = from_json(store.current(name).parsed, EXAMPLES[name])
    decoded = codec.decode(codec.encode(name, datum))
    assert decoded.record_name == f"{NAMESPACE}.{name}"
    assert decoded.writer.current
    # the examples spell out every field in canonical form, so the JSON comes back verbatim
    assert to_json(decoded.value) == EXAMPLES[name]


@pytest.mark.parametrize("name", sorted(MESSAGE_RECORDS))
def test_example_uses_example_tokens_and_utc_millisecond_timestamps(name: str) -> None:
    def walk(value: Any, key: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, k)
        elif isinstance(value, list):
            for item in value:
                walk(item, key)
        elif isinstance(value, str) and key.endswith("token"):
            assert HEX_TOKEN.fullmatch(value), f"{name}.{key}: {value!r} is not 64 hex chars"
        elif isinstance(value, str) and key.endswith(("_at", "sent", "expires")):
            assert ISO_UTC_MILLIS.fullmatch(value), f"{name}.{key}: {value!r}"

    walk(EXAMPLES[name], name)


@pytest.mark.parametrize(("version", "name"), RELEASED, ids=[f"{v}-{n}" for v, n in RELEASED])
def test_message_written_with_a_released_schema_is_read_by_the_current_reader(
    store: SchemaStore, codec: AvroCodec, version: str, name: str
) -> None:
    version_dir = SCHEMAS_DIR / "history" / version
    released = SchemaStore(version_dir).current(name)
    datum = from_json(released.parsed, load_examples(version_dir)[name])
    body = io.BytesIO()
    fastavro.schemaless_writer(body, released.parsed, datum)
    message = SINGLE_OBJECT_MAGIC + released.fingerprint + body.getvalue()

    decoded = codec.decode(message)

    assert decoded.record_name == store.current(name).full_name
    reader_fields = {field["name"] for field in store.current(name).parsed["fields"]}
    assert set(decoded.value) == reader_fields


def test_every_released_schema_is_known_to_the_store_by_fingerprint(store: SchemaStore) -> None:
    versions = released_versions(SCHEMAS_DIR)
    assert [v.name for v in versions][:1] == ["v1"]
    for version in versions:
        for name in SchemaStore(version).names():
            released = SchemaStore(version).current(name)
            known = store.by_fingerprint(released.fingerprint)
            assert known is not None and known.full_name == name, f"{version.name}/{name}"


# -- cross-file references in the schema store -------------------------------------------


def _write(directory: Path, name: str, schema: dict[str, Any]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.avsc").write_text(json.dumps(schema), encoding="utf-8")


POINT = {
    "type": "record",
    "name": "Point",
    "namespace": "test.v1",
    "fields": [{"name": "x", "type": "double"}, {"name": "y", "type": "double"}],
}
COLOUR = {"type": "enum", "name": "Colour", "namespace": "test.v1", "symbols": ["RED", "BLUE"]}


def _shape(point: Any, colour: Any, point_ref: Any) -> dict[str, Any]:
    return {
        "type": "record",
        "name": "Shape",
        "namespace": "test.v1",
        "fields": [
            {"name": "origin", "type": point},
            {"name": "vertices", "type": {"type": "array", "items": point_ref}},
            {"name": "colour", "type": colour},
            {"name": "hint", "type": ["null", point_ref], "default": None},
        ],
    }


def test_store_inlines_references_to_types_of_other_files(tmp_path: Path) -> None:
    split = tmp_path / "split"
    _write(split, "Point", POINT)
    _write(split, "Colour", COLOUR)
    _write(split, "Shape", _shape("test.v1.Point", "test.v1.Colour", "test.v1.Point"))
    whole = tmp_path / "whole"
    _write(whole, "Shape", _shape(POINT, COLOUR, "test.v1.Point"))

    shape = SchemaStore(split).current("Shape")
    # the same wire fingerprint as the self-contained file: moving a type out changes nothing
    assert shape.fingerprint == SchemaStore(whole).current("Shape").fingerprint
    value = {
        "origin": {"x": 1.0, "y": 2.0},
        "vertices": [{"x": 0.0, "y": 0.0}],
        "colour": "BLUE",
        "hint": {"x": 3.0, "y": 4.0},
    }
    codec = AvroCodec(SchemaStore(split))
    assert codec.decode(codec.encode("Shape", value)).value == value


def test_released_incident_reported_kept_its_single_file_fingerprint() -> None:
    # 42df8e06f4347181 is what producers wrote before Location, Subject and the enums
    # moved into their own files; the split must not have changed the wire contract
    released = SchemaStore(SCHEMAS_DIR / "history" / "v1").current("IncidentReported")
    assert released.fingerprint.hex() == "42df8e06f4347181"


def test_store_rejects_a_reference_to_an_undefined_type(tmp_path: Path) -> None:
    _write(tmp_path, "Shape", _shape("test.v1.Point", "test.v1.Colour", "test.v1.Point"))
    with pytest.raises(ConfigurationError, match=r"test\.v1\.Point"):
        SchemaStore(tmp_path)


def test_store_names_the_file_of_an_unreadable_schema(tmp_path: Path) -> None:
    (tmp_path / "Broken.avsc").write_text("{not json", encoding="utf-8")
    with pytest.raises(ConfigurationError, match=r"Broken\.avsc"):
        SchemaStore(tmp_path)


# -- xborder.jsonavro ---------------------------------------------------------------------


def test_from_json_converts_every_timestamp_field_including_nested_and_nullable(
    store: SchemaStore,
) -> None:
    alert = from_json(store.current("Alert").parsed, EXAMPLES["Alert"])
    assert alert["sent"] == datetime(2026, 3, 19, 10, 50, tzinfo=UTC)
    assert alert["expires"] == datetime(2026, 3, 22, 10, 50, tzinfo=UTC)
    closed = from_json(store.current("IncidentClosed").parsed, EXAMPLES["IncidentClosed"])
    assert isinstance(closed["closed_at"], datetime)


def test_from_json_turns_iso_timestamps_into_utc_datetimes(store: SchemaStore) -> None:
    example = EXAMPLES["IncidentReported"]
    converted = from_json(store.current("IncidentReported").parsed, example)
    for field in ("occurred_at", "reported_at"):
        expected = datetime.fromisoformat(example[field].replace("Z", "+00:00"))
        assert converted[field] == expected
        assert converted[field].tzinfo is not None


def test_from_json_accepts_offsets_and_epoch_millis(store: SchemaStore) -> None:
    doc = dict(EXAMPLES["IncidentClosed"], closed_at="2026-03-25T23:30:00+07:00")
    closed = from_json(store.current("IncidentClosed").parsed, doc)
    assert closed["closed_at"] == datetime(2026, 3, 25, 16, 30, tzinfo=UTC)
    doc = dict(EXAMPLES["IncidentClosed"], closed_at=1_774_456_200_000)
    assert from_json(store.current("IncidentClosed").parsed, doc)["closed_at"] == 1_774_456_200_000


def test_from_json_decodes_base64_bytes(store: SchemaStore) -> None:
    letter = from_json(store.current("DeadLetter").parsed, EXAMPLES["DeadLetter"])
    assert letter["key"] == b"EXAMPLE-CANTHO-0002"
    assert letter["headers"] == {"content-type": b"application/json"}


def test_from_json_fills_defaults_of_missing_fields(store: SchemaStore) -> None:
    doc = {k: v for k, v in EXAMPLES["IncidentReported"].items() if k != "narrative"}
    doc.pop("subjects")
    doc["location"] = {k: v for k, v in doc["location"].items() if k != "address"}
    value = from_json(store.current("IncidentReported").parsed, doc)
    assert value["narrative"] is None
    assert value["subjects"] == []
    assert value["location"]["address"] is None


@pytest.mark.parametrize(
    ("record", "change", "message"),
    [
        ("IncidentClosed", {"closed_at": None}, r"IncidentClosed\.closed_at: expected an ISO"),
        ("IncidentClosed", {"closed_at": "yesterday"}, r"closed_at: 'yesterday' is not an ISO"),
        ("IncidentClosed", {"closed_at": "2026-03-25T16:30:00"}, r"closed_at: .* no time zone"),
        ("IncidentClosed", {"outcome": "MAYBE"}, r"IncidentClosed\.outcome: 'MAYBE' is not one"),
        ("IncidentClosed", {"event_id": "not-a-uuid"}, r"event_id: 'not-a-uuid' is not a UUID"),
        ("IncidentClosed", {"colour": "red"}, r"IncidentClosed: unknown field\(s\) colour"),
        ("IncidentClosed", {"reason": 42}, r"IncidentClosed\.reason: 42 fits no branch"),
        ("DeadLetter", {"value": "%%%"}, r"DeadLetter\.value: .*not valid base64"),
        ("Alert", {"area": {"polygon": []}}, r"Alert\.area\.areaDesc: required field is missing"),
        (
            "IncidentReported",
            {"location": dict(EXAMPLES["IncidentReported"]["location"], lat="north")},
            r"IncidentReported\.location\.lat: expected a number",
        ),
    ],
)
def test_from_json_names_the_field_that_does_not_fit(
    store: SchemaStore, record: str, change: dict[str, Any], message: str
) -> None:
    doc = {**EXAMPLES[record], **change}
    with pytest.raises(InvalidRecordError, match=message):
        from_json(store.current(record).parsed, doc)


def test_from_json_reports_a_missing_required_field(store: SchemaStore) -> None:
    doc = {k: v for k, v in EXAMPLES["Verdict"].items() if k != "decided_at"}
    with pytest.raises(InvalidRecordError, match=r"Verdict\.decided_at: required field"):
        from_json(store.current("Verdict").parsed, doc)


def test_to_json_formats_timestamps_as_utc_milliseconds() -> None:
    moment = datetime(2026, 3, 19, 8, 0, 0, 123000, tzinfo=UTC)
    assert to_json({"at": moment, "raw": b"\x00\xff", "xs": [moment]}) == {
        "at": "2026-03-19T08:00:00.123Z",
        "raw": "AP8=",
        "xs": ["2026-03-19T08:00:00.123Z"],
    }


def _ms(value: Any) -> Any:
    """``value`` with datetimes as epoch milliseconds and UUIDs as strings."""
    if isinstance(value, dict):
        return {k: _ms(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_ms(v) for v in value]
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    if type(value).__name__ == "UUID":
        return str(value)
    return value


@pytest.mark.parametrize("name", sorted(MESSAGE_RECORDS))
def test_decoding_without_logical_types_gives_the_same_values_as_ms_and_strings(
    store: SchemaStore, codec: AvroCodec, name: str
) -> None:
    message = codec.encode(name, from_json(store.current(name).parsed, EXAMPLES[name]))

    plain = codec.decode(message, logical_types=False).value

    assert plain == _ms(codec.decode(message).value)
    assert not any(isinstance(v, datetime) for v in plain.values())


@pytest.mark.parametrize(("version", "name"), RELEASED, ids=[f"{v}-{n}" for v, n in RELEASED])
def test_released_writer_resolves_to_the_current_reader_without_logical_types(
    codec: AvroCodec, version: str, name: str
) -> None:
    version_dir = SCHEMAS_DIR / "history" / version
    released = SchemaStore(version_dir).current(name)
    body = io.BytesIO()
    datum = from_json(released.parsed, load_examples(version_dir)[name])
    fastavro.schemaless_writer(body, released.parsed, datum)
    message = SINGLE_OBJECT_MAGIC + released.fingerprint + body.getvalue()

    assert codec.decode(message, logical_types=False).value == _ms(codec.decode(message).value)
