"""The sink's view of a message: which writer schema, and its value without logical types.

Messages written with the current schema of a record go to ClickHouse as they are
(:mod:`sinks.avro`); the sink only needs to know their writer, from the framing's
fingerprint or registry id, cached. The others (older writer versions, after a schema
change) are decoded here and written as rows (:mod:`sinks.rows`).

Decoding reads with copies of the writer and reader schemas stripped of their
``logicalType`` annotations: the sink hands ClickHouse UUIDs as their text and
timestamps as numbers, which is how they are encoded (an Avro ``uuid`` is a string, a
``timestamp-millis`` a long), and fastavro's ``uuid.UUID`` and ``datetime`` objects
cost about a third of a decode only to be undone. Framing, schema lookup, resolution
and errors are the wire codec's.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import fastavro

from xborder.codec import SINGLE_OBJECT_HEADER_LEN, SINGLE_OBJECT_MAGIC, read_body
from xborder.errors import InvalidRecordError
from xborder.registry import CONFLUENT_HEADER_LEN, confluent_schema_id
from xborder.schemas import StoredSchema
from xborder.wire import WireCodec, detect_format


def strip_logical_types(schema: StoredSchema) -> StoredSchema:
    """A copy of ``schema`` whose values read as their underlying Avro types."""

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                k: strip(v)
                for k, v in node.items()
                if k != "logicalType" and not k.startswith("__")
            }
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    return dataclasses.replace(schema, parsed=fastavro.parse_schema(strip(schema.parsed)))


@dataclass(frozen=True)
class Writer:
    """One writer schema as the sink uses it."""

    schema: StoredSchema
    header_len: int
    """Bytes of framing before the Avro body."""
    current: bool
    """Written with the current schema of its record: the body reads without resolution."""
    raw_writer: StoredSchema
    raw_reader: StoredSchema | None
    """The reader to resolve to; None when the writer is current."""

    @property
    def record_name(self) -> str:
        return self.schema.full_name


class WriterSchemas:
    """Finds the writer of a message in either framing and decodes it without logical types."""

    def __init__(self, codec: WireCodec) -> None:
        self.codec = codec
        self._by_fingerprint: dict[bytes, Writer] = {}
        self._by_header: dict[bytes, Writer] = {}
        """Single-object writers by their whole header (magic and fingerprint): one slice
        and one lookup per message."""
        self._by_id: dict[int, Writer] = {}

    def _writer(self, schema: StoredSchema, header_len: int) -> Writer:
        reader = self.codec.store.current(schema.full_name)
        current = reader is schema
        return Writer(
            schema,
            header_len,
            current,
            strip_logical_types(schema),
            None if current else strip_logical_types(reader),
        )

    def writer(self, data: bytes) -> Writer:
        """The writer of ``data``; raises InvalidRecordError naming why it cannot be read."""
        found = self._by_header.get(data[:SINGLE_OBJECT_HEADER_LEN])
        if found is not None:
            return found
        if data[:2] == SINGLE_OBJECT_MAGIC and len(data) >= SINGLE_OBJECT_HEADER_LEN:
            fingerprint = data[2:SINGLE_OBJECT_HEADER_LEN]
            found = self._by_fingerprint.get(fingerprint)
            if found is not None:
                self._by_header[data[:SINGLE_OBJECT_HEADER_LEN]] = found
                return found
            schema = self.codec.store.by_fingerprint(fingerprint)
            if schema is None and self.codec.published is not None:
                # the worker accepted it, so its schema is published: read the schema topic
                # even when misses come fast (a skipped event would be missing in ClickHouse)
                schema = self.codec.published.lookup(fingerprint, force=True)
            if schema is not None:
                found = self._writer(schema, SINGLE_OBJECT_HEADER_LEN)
                self._by_fingerprint[fingerprint] = found
                self._by_header[data[:SINGLE_OBJECT_HEADER_LEN]] = found
                return found
        elif detect_format(data) == "confluent" and self.codec.registry is not None:
            schema_id = confluent_schema_id(data)
            found = self._by_id.get(schema_id)
            if found is None:
                schema = self.codec.registry.writer(schema_id)
                found = self._by_id[schema_id] = self._writer(schema, CONFLUENT_HEADER_LEN)
            return found
        self.codec.decode(data)  # raises InvalidRecordError naming why it cannot be read
        raise InvalidRecordError("message cannot be decoded", reason="undecodable")

    def decode(self, data: bytes, writer: Writer | None = None) -> tuple[str, dict[str, Any]]:
        """The record's full name and value; raises InvalidRecordError as the codec does."""
        writer = writer or self.writer(data)
        value = read_body(data, writer.header_len, writer.raw_writer, writer.raw_reader)
        return writer.record_name, value
