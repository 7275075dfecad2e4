"""The wire codec: both message formats of the contract behind one encode/decode.

Encoding follows the configuration: Avro single-object encoding without a schema
registry, the Confluent framing (magic ``0``, 4-byte schema id) with one. Decoding
accepts both whatever is configured, telling them apart by the first byte (``C3`` then
``01`` for single-object, ``00`` for Confluent), and resolves the writer schema to the
current reader schema of the same record in both cases. A single-object fingerprint
outside ``schemas/`` is looked up on the schema topic, where producers publish their
writer schemas (:mod:`xborder.schema_topic`).
"""

from __future__ import annotations

from typing import Any, Literal

from xborder.codec import SINGLE_OBJECT_MAGIC, AvroCodec, Decoded, WriterLookup
from xborder.errors import InvalidRecordError
from xborder.registry import (
    CONFLUENT_MAGIC,
    SchemaRegistry,
    confluent_schema_id,
    decode_confluent,
    encode_confluent,
)
from xborder.schemas import SchemaStore
from xborder.settings import Settings

WireFormat = Literal["single-object", "confluent"]


def detect_format(data: bytes) -> WireFormat | None:
    """Which framing a message uses, from its first bytes; None when it is neither."""
    if data[:2] == SINGLE_OBJECT_MAGIC:
        return "single-object"
    if data[:1] == bytes([CONFLUENT_MAGIC]):
        return "confluent"
    return None


class WireCodec(AvroCodec):
    """An AvroCodec that writes the configured format and reads both.

    A drop-in for :class:`AvroCodec`: ``from_json`` is inherited, ``encode`` and
    ``decode`` keep their signatures and errors.
    """

    def __init__(
        self,
        store: SchemaStore,
        registry: SchemaRegistry | None = None,
        published: WriterLookup | None = None,
    ) -> None:
        super().__init__(store, published)
        self.registry = registry

    @classmethod
    def create(
        cls, store: SchemaStore, registry_url: str | None, published: WriterLookup | None = None
    ) -> WireCodec:
        """The codec for a deployment: Confluent framing when ``registry_url`` is set;
        ``published`` resolves single-object fingerprints the store does not know."""
        registry = SchemaRegistry(registry_url, store) if registry_url else None
        return cls(store, registry, published)

    @property
    def wire_format(self) -> WireFormat:
        """The format :meth:`encode` writes."""
        return "confluent" if self.registry is not None else "single-object"

    def encode(self, record_name: str, value: dict[str, Any]) -> bytes:
        """Encode ``value`` with the current schema of ``record_name`` in the configured format.

        Raises InvalidRecordError when the value does not fit the schema. With a
        registry, the first call per record registers (or looks up) the schema; that
        call raises ServiceUnavailableError when the registry cannot be reached and
        ConfigurationError when it rejects the schema.
        """
        if self.registry is None:
            return super().encode(record_name, value)
        schema = self.store.current(record_name)
        return encode_confluent(self.registry.id_for(schema), schema, value)

    def decode(self, data: bytes, logical_types: bool = True) -> Decoded:
        """Decode a message in either format; raises InvalidRecordError naming why not.

        ``reason`` is ``unknown-schema`` for a fingerprint or schema id that cannot be
        resolved to one of this deployment's records, ``undecodable`` otherwise. A
        registry that cannot be reached raises ServiceUnavailableError instead: the
        message is fine, so it must not go to the dead-letter topic.
        """
        kind = detect_format(data)
        if kind == "single-object":
            return super().decode(data, logical_types)
        if kind is None:
            raise InvalidRecordError(
                f"message starts with {data[:2].hex() or 'nothing'}: neither Avro "
                "single-object (c301) nor Confluent framing (00)",
                reason="undecodable",
            )
        schema_id = confluent_schema_id(data)
        if self.registry is None:
            raise InvalidRecordError(
                f"message is in the Confluent framing (schema id {schema_id}) but no schema "
                "registry is configured to resolve the id; set XBORDER_KAFKA__SCHEMA_REGISTRY_URL",
                reason="unknown-schema",
            )
        writer = self.registry.writer(schema_id)
        reader = self.store.current(writer.full_name)
        value = decode_confluent(data, writer, reader, logical_types)
        return Decoded(record_name=writer.full_name, value=value, writer=writer)

    def close(self) -> None:
        """Release the registry client's and the schema topic reader's connections."""
        if self.registry is not None:
            self.registry.close()
        if self.published is not None:
            self.published.close()


def codec_for(settings: Settings) -> WireCodec:
    """The codec every process uses: schemas from settings, registry when configured, the
    schema topic for writer schemas published by producers (read on the first miss)."""
    from xborder.schema_topic import PublishedSchemas

    store = SchemaStore(settings.schemas_dir)
    published = PublishedSchemas.from_settings(settings, store)
    return WireCodec.create(store, settings.kafka.schema_registry_url, published)
