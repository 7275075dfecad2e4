"""The Confluent wire format against a real schema registry (Apicurio, started by a fixture).

Each test that registers schemas builds its own schema directory with a uuid-named
namespace, so subjects never collide between tests sharing the session's registry.
"""

from __future__ import annotations

import io
import json
import socket
import struct
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fastavro
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from xborder.codec import AvroCodec
from xborder.errors import ConfigurationError, InvalidRecordError, ServiceUnavailableError
from xborder.jsonavro import to_json
from xborder.registry import SchemaRegistry, registrable_json
from xborder.samples import sample_events
from xborder.schemas import SchemaStore
from xborder.settings import REPO_ROOT
from xborder.wire import WireCodec, detect_format

pytestmark = pytest.mark.integration

PROBE_V1_FIELDS: list[dict[str, Any]] = [
    {"name": "id", "type": "string", "doc": "Probe id."},
    {"name": "count", "type": "int", "doc": "A number."},
]
PROBE_V2_FIELDS: list[dict[str, Any]] = [
    *PROBE_V1_FIELDS,
    {"name": "tags", "type": {"type": "array", "items": "string"}, "default": [], "doc": "New."},
]

StoreFactory = Callable[..., SchemaStore]


def _probe(namespace: str, fields: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "type": "record",
        "name": "Probe",
        "namespace": namespace,
        "doc": "A test record.",
        "fields": fields,
    }


@pytest.fixture
def namespace() -> str:
    """A namespace, hence registry subjects, no other test uses."""
    return f"xbtest.n{uuid.uuid4().hex[:12]}"


@pytest.fixture
def make_store(tmp_path: Path, namespace: str) -> StoreFactory:
    """Factory of schema stores holding record Probe: a current version and released ones."""

    def build(current: list[dict[str, Any]], *released: list[dict[str, Any]]) -> SchemaStore:
        root = tmp_path / f"schemas-{uuid.uuid4().hex[:8]}"
        root.mkdir()
        (root / "Probe.avsc").write_text(json.dumps(_probe(namespace, current)))
        for number, fields in enumerate(released, start=1):
            version = root / "history" / f"v{number}"
            version.mkdir(parents=True)
            (version / "Probe.avsc").write_text(json.dumps(_probe(namespace, fields)))
        return SchemaStore(root)

    return build


@pytest.fixture
def client(schema_registry_url: str) -> Iterator[SchemaRegistryClient]:
    """A plain registry client, to look at the registry from outside the codec."""
    sr = SchemaRegistryClient({"url": schema_registry_url})
    try:
        yield sr
    finally:
        sr.close()


def _codec(store: SchemaStore, url: str | None) -> WireCodec:
    return WireCodec.create(store, url)


def test_confluent_frame_round_trip_registers_the_schema_once(
    schema_registry_url: str,
    make_store: StoreFactory,
    client: SchemaRegistryClient,
    namespace: str,
) -> None:
    store = make_store(PROBE_V2_FIELDS)
    codec = _codec(store, schema_registry_url)
    value = {"id": "a", "count": 3, "tags": ["x"]}
    try:
        data = codec.encode("Probe", value)
        again = codec.encode("Probe", {"id": "b", "count": 4, "tags": []})
    finally:
        codec.close()

    assert codec.wire_format == "confluent"
    assert detect_format(data) == "confluent"
    magic, schema_id = struct.unpack(">bI", data[:5])
    assert magic == 0
    assert again[:5] == data[:5]
    subject = f"{namespace}.Probe"
    assert client.get_versions(subject) == [1]
    registered = client.get_schema(schema_id)
    assert json.loads(registered.schema_str or "{}")["fields"][2]["default"] == []

    # A fresh codec (empty caches) finds the same id and reads the message back.
    reader = _codec(store, schema_registry_url)
    try:
        decoded = reader.decode(data)
    finally:
        reader.close()
    assert decoded.record_name == subject
    assert decoded.value == value
    assert decoded.writer is store.current("Probe")


def test_project_schema_round_trip_and_both_formats_decode(
    schema_registry_url: str,
) -> None:
    store = SchemaStore(REPO_ROOT / "schemas")
    registry_codec = _codec(store, schema_registry_url)
    plain_codec = AvroCodec(store)
    event = registry_codec.from_json("IncidentReported", sample_events(1)[0])
    try:
        framed = registry_codec.encode("IncidentReported", event)
        single = plain_codec.encode("IncidentReported", event)
        assert detect_format(single) == "single-object"
        expected = plain_codec.decode(single).value  # logical types applied (uuid, datetimes)
        assert expected["incident_id"] == event["incident_id"]
        assert registry_codec.decode(framed).value == expected
        assert registry_codec.decode(single).value == expected
    finally:
        registry_codec.close()

    # Without a registry, single-object still reads; a Confluent frame says what is missing.
    no_registry = _codec(store, None)
    assert no_registry.wire_format == "single-object"
    assert no_registry.encode("IncidentReported", event)[:2] == b"\xc3\x01"
    assert no_registry.decode(single).value == expected
    with pytest.raises(InvalidRecordError) as caught:
        no_registry.decode(framed)
    assert caught.value.reason == "unknown-schema"
    assert "SCHEMA_REGISTRY_URL" in str(caught.value)


def test_older_writer_in_history_resolves_to_current_reader(
    schema_registry_url: str,
    make_store: StoreFactory,
    client: SchemaRegistryClient,
    namespace: str,
) -> None:
    old_producer = _codec(make_store(PROBE_V1_FIELDS), schema_registry_url)
    consumer_store = make_store(PROBE_V2_FIELDS, PROBE_V1_FIELDS)
    consumer = _codec(consumer_store, schema_registry_url)
    new_producer = _codec(consumer_store, schema_registry_url)
    try:
        old = old_producer.encode("Probe", {"id": "old", "count": 1})
        new = new_producer.encode("Probe", {"id": "new", "count": 2, "tags": ["t"]})
        from_old = consumer.decode(old)
        from_new = consumer.decode(new)
    finally:
        for codec in (old_producer, consumer, new_producer):
            codec.close()

    assert old[1:5] != new[1:5]
    assert client.get_versions(f"{namespace}.Probe") == [1, 2]
    assert from_old.value == {"id": "old", "count": 1, "tags": []}
    assert not from_old.writer.current
    assert "history" in from_old.writer.source.parts
    assert from_new.value == {"id": "new", "count": 2, "tags": ["t"]}


def test_writer_only_the_registry_knows_is_fetched_and_resolved(
    schema_registry_url: str,
    make_store: StoreFactory,
    namespace: str,
) -> None:
    old_producer = _codec(make_store(PROBE_V1_FIELDS), schema_registry_url)
    consumer = _codec(make_store(PROBE_V2_FIELDS), schema_registry_url)  # no history
    try:
        old = old_producer.encode("Probe", {"id": "old", "count": 7})
        decoded = consumer.decode(old)
    finally:
        old_producer.close()
        consumer.close()

    assert decoded.record_name == f"{namespace}.Probe"
    assert decoded.value == {"id": "old", "count": 7, "tags": []}
    schema_id = struct.unpack(">I", old[1:5])[0]
    assert decoded.writer.source.name == f"schema-registry-id-{schema_id}"


def test_unknown_and_foreign_schema_ids_are_unknown_schema(
    schema_registry_url: str,
    make_store: StoreFactory,
    client: SchemaRegistryClient,
    namespace: str,
) -> None:
    foreign = {
        "type": "record",
        "name": "Other",
        "namespace": namespace,
        "fields": [{"name": "x", "type": "int"}],
    }
    foreign_id = client.register_schema(f"{namespace}.Other", Schema(json.dumps(foreign), "AVRO"))
    foreign_body = _body(foreign, {"x": 1})
    codec = _codec(make_store(PROBE_V2_FIELDS), schema_registry_url)
    try:
        with pytest.raises(InvalidRecordError) as unknown:
            codec.decode(struct.pack(">bI", 0, 2_000_000_000) + foreign_body)
        with pytest.raises(InvalidRecordError) as other:
            codec.decode(struct.pack(">bI", 0, foreign_id) + foreign_body)
    finally:
        codec.close()

    assert unknown.value.reason == "unknown-schema"
    assert "2000000000" in str(unknown.value)
    assert other.value.reason == "unknown-schema"
    assert f"{namespace}.Other" in str(other.value)


def test_corrupt_messages_are_undecodable(
    schema_registry_url: str,
    make_store: StoreFactory,
) -> None:
    codec = _codec(make_store(PROBE_V2_FIELDS), schema_registry_url)
    try:
        good = codec.encode("Probe", {"id": "a" * 40, "count": 5, "tags": ["x", "y"]})
        bad = {
            "empty": b"",
            "short header": b"\x00\x00\x01",
            "other magic": b"\x07" + good[1:],
            "truncated body": good[:-6],
            "trailing bytes": good + b"\x00\x00",
        }
        reasons = {}
        for label, data in bad.items():
            with pytest.raises(InvalidRecordError) as caught:
                codec.decode(data)
            reasons[label] = caught.value.reason
    finally:
        codec.close()
    assert set(reasons.values()) == {"undecodable"}, reasons


def test_values_that_do_not_fit_are_invalid_and_not_registered_twice(
    schema_registry_url: str,
    make_store: StoreFactory,
    client: SchemaRegistryClient,
    namespace: str,
) -> None:
    codec = _codec(make_store(PROBE_V2_FIELDS), schema_registry_url)
    try:
        with pytest.raises(InvalidRecordError) as caught:
            codec.encode("Probe", {"id": "a", "count": "three", "tags": []})
        codec.encode("Probe", {"id": "a", "count": 3, "tags": []})
    finally:
        codec.close()
    assert caught.value.reason == "invalid"
    assert client.get_versions(f"{namespace}.Probe") == [1]


def test_lookup_only_mode_needs_the_schema_registered(
    schema_registry_url: str,
    make_store: StoreFactory,
    client: SchemaRegistryClient,
    namespace: str,
) -> None:
    store = make_store(PROBE_V2_FIELDS)
    registry = SchemaRegistry(schema_registry_url, store, auto_register=False)
    codec = WireCodec(store, registry)
    try:
        with pytest.raises(ConfigurationError) as caught:
            codec.encode("Probe", {"id": "a", "count": 1, "tags": []})
        assert "not registered" in str(caught.value)
        schema_id = client.register_schema(
            f"{namespace}.Probe", Schema(registrable_json(store.current("Probe")), "AVRO")
        )
        data = codec.encode("Probe", {"id": "a", "count": 1, "tags": []})
    finally:
        codec.close()
    assert struct.unpack(">I", data[1:5])[0] == schema_id


def test_interoperates_with_confluent_serializers(
    schema_registry_url: str,
    make_store: StoreFactory,
    client: SchemaRegistryClient,
    namespace: str,
) -> None:
    store = make_store(PROBE_V2_FIELDS)
    codec = _codec(store, schema_registry_url)
    context = SerializationContext(f"{namespace}.topic", MessageField.VALUE)
    serializer = AvroSerializer(client, registrable_json(store.current("Probe")))
    deserializer = AvroDeserializer(client)
    value = {"id": "z", "count": 9, "tags": ["a", "b"]}
    try:
        theirs = serializer(value, context)
        assert theirs is not None
        assert codec.decode(theirs).value == value
        assert deserializer(codec.encode("Probe", value), context) == value
    finally:
        codec.close()


def test_unreachable_registry_is_a_service_error_not_a_bad_record(
    make_store: StoreFactory,
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again before use: nothing listens there
    store = make_store(PROBE_V2_FIELDS)
    registry = SchemaRegistry(f"http://127.0.0.1:{port}", store, timeout_s=2, max_retries=0)
    codec = WireCodec(store, registry)
    try:
        with pytest.raises(ServiceUnavailableError) as on_encode:
            codec.encode("Probe", {"id": "a", "count": 1, "tags": []})
        with pytest.raises(ServiceUnavailableError):
            codec.decode(struct.pack(">bI", 0, 1) + b"\x02a\x02")
    finally:
        codec.close()
    assert f"127.0.0.1:{port}" in str(on_encode.value)


def _body(schema: dict[str, Any], value: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), value)
    return out.getvalue()


@pytest.mark.parametrize(
    "record",
    sorted(p.stem for p in (REPO_ROOT / "schemas" / "examples").glob("*.json")),
)
def test_every_example_round_trips_through_both_wire_formats(
    schema_registry_url: str, record: str
) -> None:
    store = SchemaStore(REPO_ROOT / "schemas")
    document = json.loads((REPO_ROOT / "schemas" / "examples" / f"{record}.json").read_text())
    confluent = WireCodec.create(store, schema_registry_url)
    single_object = WireCodec.create(store, None)
    try:
        value = confluent.from_json(record, document)
        framed = confluent.encode(record, value)
        plain = single_object.encode(record, value)
        assert detect_format(framed) == "confluent"
        assert detect_format(plain) == "single-object"
        for message in (framed, plain):
            decoded = confluent.decode(message)
            assert decoded.record_name.endswith(f".{record}")
            assert to_json(decoded.value) == to_json(value)  # UUIDs decode as uuid.UUID
    finally:
        confluent.close()
        single_object.close()
