"""Avro encoding and decoding of the project's records.

Default wire format: Avro single-object encoding (magic ``C3 01``, the writer schema's
8-byte CRC-64-AVRO fingerprint, the body). The decoder finds the writer schema by
fingerprint among the current and released schemas, then among the schemas producers
published on the schema topic (:mod:`xborder.schema_topic`), and resolves it to the
current reader schema of the same record by Avro's rules (an unknown enum symbol reads
as the enum's default, a field the reader lacks is skipped).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Protocol

import fastavro

from xborder.errors import InvalidRecordError
from xborder.jsonavro import from_json
from xborder.schemas import SchemaStore, StoredSchema

SINGLE_OBJECT_MAGIC = b"\xc3\x01"
SINGLE_OBJECT_HEADER_LEN = 10


@dataclass(frozen=True)
class Decoded:
    """A decoded message: which record it is and its fields (reader schema applied)."""

    record_name: str
    value: dict[str, Any]
    writer: StoredSchema


class WriterLookup(Protocol):
    """Writer schemas found outside the store (the schema topic), by fingerprint."""

    where: str
    """Where they are looked up, for error messages."""

    def lookup(self, fingerprint: bytes, force: bool = False) -> StoredSchema | None:
        """The writer schema with ``fingerprint``, or None; ``force`` reads what was
        published since the last read even when misses have used up the read budget."""
        ...

    def close(self) -> None: ...


class AvroCodec:
    """Encodes records as single-object Avro and decodes any version the store knows,
    or ``published`` (when given) finds."""

    def __init__(self, store: SchemaStore, published: WriterLookup | None = None) -> None:
        self.store = store
        self.published = published

    def writer_by_fingerprint(self, fingerprint: bytes) -> StoredSchema | None:
        """The writer schema with this fingerprint: the store's, else a published one."""
        found = self.store.by_fingerprint(fingerprint)
        if found is None and self.published is not None:
            found = self.published.lookup(fingerprint)
        return found

    def from_json(self, record_name: str, document: dict[str, Any]) -> dict[str, Any]:
        """Convert a plain-JSON event (ISO timestamps, untagged unions) to an Avro datum.

        Checks types, enums, required and unknown fields; raises InvalidRecordError
        naming the field path.
        """
        converted: dict[str, Any] = from_json(self.store.current(record_name).parsed, document)
        return converted

    def encode(self, record_name: str, value: dict[str, Any]) -> bytes:
        """Encode ``value`` with the current schema of ``record_name``.

        Raises InvalidRecordError when the value does not fit the schema.
        """
        schema = self.store.current(record_name)
        return write_body(SINGLE_OBJECT_MAGIC + schema.fingerprint, schema, value)

    def decode(self, data: bytes, logical_types: bool = True) -> Decoded:
        """Decode one message; raises InvalidRecordError naming why it cannot be read.

        ``logical_types`` False leaves timestamps as milliseconds and uuids as strings
        (faster; for code that takes either, like the worker's ingest)."""
        if len(data) < SINGLE_OBJECT_HEADER_LEN or data[:2] != SINGLE_OBJECT_MAGIC:
            raise InvalidRecordError(
                "message is not Avro single-object encoded (no C3 01 header)",
                reason="undecodable",
            )
        writer = self.store.by_fingerprint(data[2:SINGLE_OBJECT_HEADER_LEN])
        if writer is None and self.published is not None:  # not in the hot path: a miss
            writer = self.published.lookup(data[2:SINGLE_OBJECT_HEADER_LEN])
        if writer is None:
            published = (
                "" if self.published is None else f" nor published on {self.published.where}"
            )
            raise InvalidRecordError(
                f"unknown writer schema fingerprint {data[2:10].hex()}: not among the "
                f"current or released schemas{published}; the producer publishes its "
                "schema first ('xborder schemas publish FILE.avsc')",
                reason="unknown-schema",
            )
        reader = self.store.current(writer.full_name)
        value = read_body(data, SINGLE_OBJECT_HEADER_LEN, writer, reader, logical_types)
        return Decoded(record_name=writer.full_name, value=value, writer=writer)


def write_body(header: bytes, schema: StoredSchema, value: dict[str, Any]) -> bytes:
    """``header`` followed by ``value``'s Avro body written with ``schema``.

    Raises InvalidRecordError (reason ``invalid``) when the value does not fit the schema.
    """
    out = io.BytesIO()
    out.write(header)
    try:
        fastavro.schemaless_writer(out, schema.parsed, value)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise InvalidRecordError(
            f"{schema.full_name}: value does not match the schema: {exc}", reason="invalid"
        ) from exc
    return out.getvalue()


def read_body(
    data: bytes,
    header_len: int,
    writer: StoredSchema,
    reader: StoredSchema | None,
    logical_types: bool = True,
) -> dict[str, Any]:
    """Read the Avro body after ``header_len`` bytes, written with ``writer``, as ``reader``.

    ``reader`` None (or the writer itself) reads with the writer schema; ``logical_types``
    False reads the underlying types (ints, strings). Raises InvalidRecordError (reason
    ``undecodable``) on a corrupt or over-long body.
    """
    body = io.BytesIO(data)
    body.seek(header_len)
    if reader is writer:
        reader = None
    try:
        if logical_types:
            value = fastavro.schemaless_reader(
                body, writer.parsed, None if reader is None else reader.parsed
            )
        else:
            value = fastavro.schemaless_reader(
                body, writer.plain, None if reader is None else reader.plain
            )
    except Exception as exc:  # fastavro raises many kinds on corrupt bodies
        raise InvalidRecordError(
            f"{writer.full_name}: body cannot be decoded: {type(exc).__name__}: {exc}",
            reason="undecodable",
        ) from exc
    if body.tell() != len(data):
        raise InvalidRecordError(
            f"{writer.full_name}: {len(data) - body.tell()} trailing bytes after the record",
            reason="undecodable",
        )
    if not isinstance(value, dict):
        raise InvalidRecordError(f"{writer.full_name}: not a record", reason="undecodable")
    return value
