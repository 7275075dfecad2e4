"""Confluent schema references on the registry path (Apicurio, started by a fixture): a
writer schema whose enum lives in another subject is fetched with its reference,
inlined, and resolved to the current reader with the enum's default."""

from __future__ import annotations

import io
import json
import struct
import uuid
from pathlib import Path
from typing import Any

import fastavro
import pytest
from confluent_kafka.schema_registry import Schema, SchemaReference, SchemaRegistryClient

from xborder.schemas import SchemaStore
from xborder.wire import WireCodec

pytestmark = pytest.mark.integration


def _kind(namespace: str, symbols: list[str]) -> dict[str, Any]:
    return {"type": "enum", "name": "Kind", "namespace": namespace, "symbols": symbols,
            "default": "OTHER"}  # fmt: skip


def _probe(namespace: str) -> dict[str, Any]:
    return {
        "type": "record",
        "name": "Probe",
        "namespace": namespace,
        "fields": [{"name": "id", "type": "string"}, {"name": "kind", "type": "Kind"}],
    }


def test_a_writer_schema_with_references_is_resolved(
    schema_registry_url: str, tmp_path: Path
) -> None:
    namespace = f"xbtest.r{uuid.uuid4().hex[:12]}"
    (tmp_path / "Probe.avsc").write_text(json.dumps(_probe(namespace)))
    (tmp_path / "Kind.avsc").write_text(json.dumps(_kind(namespace, ["A", "OTHER"])))
    newer_kind = _kind(namespace, ["A", "NEW", "OTHER"])
    client = SchemaRegistryClient({"url": schema_registry_url})
    codec = WireCodec.create(SchemaStore(tmp_path), schema_registry_url)
    try:
        client.register_schema(f"{namespace}.Kind", Schema(json.dumps(newer_kind), "AVRO"))
        reference = SchemaReference(f"{namespace}.Kind", f"{namespace}.Kind", 1)
        schema_id = client.register_schema(
            f"{namespace}.Probe", Schema(json.dumps(_probe(namespace)), "AVRO", [reference])
        )
        expanded = {**_probe(namespace), "fields": [
            {"name": "id", "type": "string"}, {"name": "kind", "type": newer_kind}]}  # fmt: skip
        body = io.BytesIO()
        fastavro.schemaless_writer(
            body, fastavro.parse_schema(expanded), {"id": "x", "kind": "NEW"}
        )
        decoded = codec.decode(struct.pack(">bI", 0, schema_id) + body.getvalue())
    finally:
        codec.close()
        client.close()
    assert decoded.record_name == f"{namespace}.Probe"
    assert decoded.value == {"id": "x", "kind": "OTHER"}
