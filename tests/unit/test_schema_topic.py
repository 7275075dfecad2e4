"""Writer schemas from the schema topic: records checked against their key, and events
written with a newer schema read with the current one's defaults."""

from __future__ import annotations

import io
import json
from pathlib import Path

import fastavro
import pytest

from tests.integration.newer_schema import NEW_FIELD, NEW_SYMBOL, newer_incident_schema
from xborder.codec import SINGLE_OBJECT_MAGIC, AvroCodec
from xborder.errors import InvalidRecordError
from xborder.samples import sample_events
from xborder.schema_topic import schema_json, verify
from xborder.schemas import SchemaStore, StoredSchema, writer_schema

ROOT = Path(__file__).resolve().parents[2]


class Published:
    """Schemas a schema topic would hold, in memory (the codec's side of the lookup)."""

    where = "test schemas"

    def __init__(self, *schemas: StoredSchema) -> None:
        self.found = {s.fingerprint: s for s in schemas}
        self.lookups = 0

    def lookup(self, fingerprint: bytes, force: bool = False) -> StoredSchema | None:
        self.lookups += 1
        return self.found.get(fingerprint)

    def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def store() -> SchemaStore:
    return SchemaStore(ROOT / "schemas")


def _newer_message(store: SchemaStore) -> tuple[StoredSchema, bytes, dict]:
    newer = writer_schema(newer_incident_schema(store), Path("newer.avsc"))
    codec = AvroCodec(store)
    event = codec.from_json("IncidentReported", {**sample_events(1)[0], "agency": "cantho"})
    event = {**event, "category": NEW_SYMBOL, NEW_FIELD: "unit 7"}
    out = io.BytesIO()
    out.write(SINGLE_OBJECT_MAGIC + newer.fingerprint)
    fastavro.schemaless_writer(out, newer.parsed, event)
    return newer, out.getvalue(), event


def test_an_event_of_a_newer_published_schema_reads_with_the_defaults(store) -> None:
    newer, message, event = _newer_message(store)
    with pytest.raises(InvalidRecordError) as refused:
        AvroCodec(store).decode(message)
    assert refused.value.reason == "unknown-schema"
    assert newer.fingerprint.hex() in str(refused.value)

    published = Published(newer)
    decoded = AvroCodec(store, published).decode(message, logical_types=False)
    assert decoded.record_name == "xborder.v1.IncidentReported"
    assert decoded.value["category"] == "OTHER"  # Category's declared default
    assert NEW_FIELD not in decoded.value
    assert decoded.value["incident_id"] == event["incident_id"]
    assert published.lookups == 1


def test_a_schema_topic_record_is_used_only_under_its_own_fingerprint(store) -> None:
    newer = writer_schema(newer_incident_schema(store), Path("newer.avsc"))
    value = schema_json(newer).encode()
    assert verify(newer.fingerprint.hex().encode(), value).fingerprint == newer.fingerprint
    assert verify(newer.fingerprint.hex().upper().encode(), value).canonical == newer.canonical

    other = store.current("IncidentReported").fingerprint.hex().encode()
    with pytest.raises(ValueError, match="not the key"):
        verify(other, value)  # a forged schema under another fingerprint
    for key, bad, why in [
        (b"zz" * 8, value, "not a hex fingerprint"),
        (b"00" * 4, value, "not 8 bytes"),
        (other, b"{not json", "not JSON"),
        (other, json.dumps({"type": "record", "name": "R", "fields": [{"name": "x"}]}).encode(),
         "invalid Avro schema"),
        (None, value, "no key"),
    ]:  # fmt: skip
        with pytest.raises(ValueError, match=why):
            verify(key, bad)
