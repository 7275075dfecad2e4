"""The schema registry adapter and the Confluent wire framing.

With a registry configured, messages carry the Confluent framing that the Kafka
ecosystem's tools and connectors read: magic byte ``0``, the writer schema's 4-byte
big-endian registry id, then the Avro binary body. Schemas are registered and looked up
through confluent-kafka's ``SchemaRegistryClient`` (any registry speaking the Confluent
REST API: Confluent's, Apicurio's ``/apis/ccompat/v7``, Karapace, Redpanda).

Subjects follow the record-name strategy (subject = the record's full name, for example
``xborder.v1.IncidentReported``): the codec encodes by record, not by topic, and one
record type may travel on several per-agency topics. Registry ids never change, so ids
are cached both ways for the life of the process; only a cache miss reaches the registry.
A writer schema registered with schema references (named types in other subjects) is
fetched with the subject versions it references, which are inlined to make it
self-contained before it is resolved.
"""

from __future__ import annotations

import functools
import json
import logging
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

from xborder.codec import read_body, write_body
from xborder.errors import ConfigurationError, InvalidRecordError, ServiceUnavailableError
from xborder.schemas import SchemaStore, StoredSchema, inline_references, without_logical_types

if TYPE_CHECKING:
    from confluent_kafka.schema_registry import SchemaRegistryClient

logger = logging.getLogger(__name__)

CONFLUENT_MAGIC = 0
CONFLUENT_HEADER = struct.Struct(">bI")
"""Magic byte, then the schema id as an unsigned 32-bit big-endian integer."""
CONFLUENT_HEADER_LEN = CONFLUENT_HEADER.size
MAX_REFERENCES = 100
"""Schemas one registry schema may reference, directly or not."""


def registrable_json(stored: StoredSchema) -> str:
    """The schema as JSON to register: self-contained, with docs, defaults and logical types.

    The Parsing Canonical Form would drop defaults, and the registry needs them to check
    compatibility; fastavro's parsed form keeps them but adds private ``__`` keys.
    """

    def clean(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: clean(v) for k, v in node.items() if not k.startswith("__")}
        if isinstance(node, list):
            return [clean(item) for item in node]
        return node

    return json.dumps(clean(stored.parsed), ensure_ascii=False, separators=(",", ":"))


def encode_confluent(schema_id: int, schema: StoredSchema, value: dict[str, Any]) -> bytes:
    """Frame ``value`` as magic 0 + ``schema_id`` + Avro body written with ``schema``.

    Raises InvalidRecordError (reason ``invalid``) when the value does not fit the schema.
    """
    return write_body(CONFLUENT_HEADER.pack(CONFLUENT_MAGIC, schema_id), schema, value)


def confluent_schema_id(data: bytes) -> int:
    """The schema id of a Confluent-framed message; raises InvalidRecordError if not framed."""
    if len(data) < CONFLUENT_HEADER_LEN or data[0] != CONFLUENT_MAGIC:
        raise InvalidRecordError(
            "message is not in the Confluent framing (no magic byte 0 and 4-byte schema id)",
            reason="undecodable",
        )
    _, schema_id = CONFLUENT_HEADER.unpack_from(data)
    return int(schema_id)


def decode_confluent(
    data: bytes, writer: StoredSchema, reader: StoredSchema | None, logical_types: bool = True
) -> dict[str, Any]:
    """Read the body of a Confluent-framed message written with ``writer`` as ``reader``.

    ``reader`` None (or the writer itself) reads with the writer schema. Raises
    InvalidRecordError (reason ``undecodable``) on a corrupt or over-long body.
    """
    return read_body(data, CONFLUENT_HEADER_LEN, writer, reader, logical_types)


class SchemaRegistry:
    """Registers the store's schemas and resolves registry ids to writer schemas, cached."""

    def __init__(
        self,
        url: str,
        store: SchemaStore,
        *,
        auto_register: bool = True,
        timeout_s: float = 10.0,
        max_retries: int = 2,
        client: SchemaRegistryClient | None = None,
    ) -> None:
        """Connect lazily to the registry at ``url`` (credentials may sit in its userinfo).

        With ``auto_register`` the current schema of a record is registered on first use
        (the registry answers with the existing id when it is already there); without it,
        the schema must have been registered beforehand and is only looked up.
        """
        self.url = url
        self.store = store
        self.auto_register = auto_register
        self._client = client or _make_client(url, timeout_s, max_retries)
        self._id_by_fingerprint: dict[bytes, int] = {}
        self._writer_by_id: dict[int, StoredSchema] = {}
        self._lock = threading.Lock()

    @staticmethod
    def subject(schema: StoredSchema) -> str:
        """The subject a record's schemas live under (record-name strategy)."""
        return schema.full_name

    def id_for(self, schema: StoredSchema) -> int:
        """The registry id of ``schema``, registering it first when auto-register is on."""
        cached = self._id_by_fingerprint.get(schema.fingerprint)
        if cached is not None:
            return cached
        from confluent_kafka.schema_registry import Schema

        subject = self.subject(schema)
        candidate = Schema(registrable_json(schema), "AVRO")
        if self.auto_register:
            schema_id = int(
                self._call(
                    lambda: self._client.register_schema(subject, candidate),
                    f"register {subject}",
                    missing="not-registered",
                )
            )
        else:
            registered = self._call(
                lambda: self._client.lookup_schema(subject, candidate),
                f"look up {subject}",
                missing="not-registered",
            )
            schema_id = int(registered.schema_id)
        with self._lock:
            self._id_by_fingerprint[schema.fingerprint] = schema_id
            self._writer_by_id.setdefault(schema_id, schema)
        logger.info("schema %s has registry id %s at %s", subject, schema_id, self.url)
        return schema_id

    def writer(self, schema_id: int) -> StoredSchema:
        """The writer schema registered as ``schema_id``.

        A schema the store knows (current or released) is returned as stored; another one
        (a version registered by a newer or older producer) is parsed from the registry.
        Raises InvalidRecordError (reason ``unknown-schema``) when the registry has no such
        id, or when the record is not one of this deployment's records.
        """
        cached = self._writer_by_id.get(schema_id)
        if cached is not None:
            return cached
        registered = self._call(
            lambda: self._client.get_schema(schema_id), f"fetch id {schema_id}", missing="bad-id"
        )
        writer = self._to_stored(schema_id, registered)
        # Not cached as this schema's id for encoding: it may sit under another subject.
        with self._lock:
            self._writer_by_id[schema_id] = writer
        return writer

    def close(self) -> None:
        """Close the HTTP session of the underlying client."""
        self._client.close()

    def _to_stored(self, schema_id: int, registered: Any) -> StoredSchema:
        kind = registered.schema_type or "AVRO"
        if kind != "AVRO":
            raise InvalidRecordError(
                f"registry schema id {schema_id} is a {kind} schema; only Avro is read here",
                reason="unknown-schema",
            )
        try:
            document = json.loads(registered.schema_str)
            if registered.references:
                referenced = self._referenced(schema_id, registered.references)
                document = inline_references(document, referenced)
            parsed = fastavro.parse_schema(document)
            plain = fastavro.parse_schema(without_logical_types(document))
            canonical = to_parsing_canonical_form(parsed)
        except (
            ValueError,
            TypeError,
            KeyError,
            ConfigurationError,
            fastavro.schema.SchemaParseException,
        ) as exc:
            with_references = " (its schema references resolved)" if registered.references else ""
            raise InvalidRecordError(
                f"registry schema id {schema_id}{with_references} is not a valid Avro "
                f"schema: {exc}",
                reason="unknown-schema",
            ) from exc
        fp = bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))
        known = self.store.by_fingerprint(fp)
        if known is not None:
            return known
        full_name = parsed.get("name") if isinstance(parsed, dict) else None
        if not isinstance(full_name, str) or full_name not in self.store.names():
            raise InvalidRecordError(
                f"registry schema id {schema_id} is record {full_name!r}, not one of "
                f"{', '.join(self.store.names())}",
                reason="unknown-schema",
            )
        logger.info(
            "registry schema id %s is a version of %s not in %s; resolving it as writer",
            schema_id,
            full_name,
            self.store.directory,
        )
        return StoredSchema(
            full_name=full_name,
            fingerprint=fp,
            parsed=parsed,
            plain=plain,
            canonical=canonical,
            source=Path(f"schema-registry-id-{schema_id}"),
            current=False,
        )

    def _referenced(self, schema_id: int, references: list[Any]) -> list[Any]:
        """The schema documents ``references`` name, and those they reference in turn,
        fetched from the registry (each subject version once, at most
        :data:`MAX_REFERENCES`)."""
        documents: list[Any] = []
        seen: set[tuple[str, int]] = set()
        pending = list(references)
        while pending:
            ref = pending.pop()
            if (ref.subject, ref.version) in seen:
                continue
            seen.add((ref.subject, ref.version))
            if len(seen) > MAX_REFERENCES:
                raise InvalidRecordError(
                    f"registry schema id {schema_id} references over {MAX_REFERENCES} "
                    "schemas; register it with fewer (or self-contained)",
                    reason="unknown-schema",
                )
            found = self._call(
                functools.partial(self._client.get_version, ref.subject, ref.version),
                f"fetch {ref.subject} version {ref.version}, referenced as {ref.name} by "
                f"schema id {schema_id}",
                missing="bad-id",
            )
            documents.append(json.loads(found.schema.schema_str))
            pending.extend(found.schema.references or [])
        return documents

    def _call(
        self,
        request: Callable[[], Any],
        what: str,
        *,
        missing: Literal["bad-id", "not-registered"],
    ) -> Any:
        """Run one registry request, translating its errors into the project's.

        A 404 means a bad record when a message names the id (``bad-id``), and a
        deployment step not done when our own schema is looked up (``not-registered``).
        """
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        try:
            return request()
        except SchemaRegistryError as exc:
            status = exc.http_status_code
            if status == 404 and missing == "bad-id":
                raise InvalidRecordError(
                    f"schema registry {self.url}: {what}: no such schema id ({exc})",
                    reason="unknown-schema",
                ) from exc
            if status == 404:
                raise ConfigurationError(
                    f"schema registry {self.url}: {what}: the schema is not registered ({exc}); "
                    "register it or enable auto-registration"
                ) from exc
            if status == 409 or status == 422:
                raise ConfigurationError(
                    f"schema registry {self.url}: {what}: rejected ({exc}); the schema in "
                    "schemas/ is incompatible with the registered versions or invalid there"
                ) from exc
            if status in (401, 403):
                raise ConfigurationError(
                    f"schema registry {self.url}: {what}: not authorised ({exc}); put "
                    "credentials in the registry URL (https://user:password@host/...)"
                ) from exc
            raise ServiceUnavailableError(
                f"schema registry {self.url}: {what} failed: {exc}"
            ) from exc
        except Exception as exc:  # transport errors of the HTTP library the client uses
            raise ServiceUnavailableError(
                f"schema registry {self.url} is not reachable ({what}): "
                f"{type(exc).__name__}: {exc}; start it or fix the registry URL"
            ) from exc


def _make_client(url: str, timeout_s: float, max_retries: int) -> SchemaRegistryClient:
    try:
        from confluent_kafka.schema_registry import SchemaRegistryClient
    except ImportError as exc:
        raise ConfigurationError(
            "a schema registry URL is set but confluent-kafka's schema registry client is "
            "not installed: pip install 'confluent-kafka[schemaregistry]' (or unset the URL "
            "to use Avro single-object encoding)"
        ) from exc
    try:
        return SchemaRegistryClient({"url": url, "timeout": timeout_s, "max.retries": max_retries})
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"invalid schema registry URL {url!r}: {exc}") from exc
