"""The schema topic: writer schemas producers publish, so evolution needs no registry.

A producer whose schema is newer (or older) than the deployment's ``schemas/`` publishes
it before its events to the compacted topic ``<prefix>schemas``: key the hex of the
schema's CRC-64-AVRO fingerprint in wire order (the 8 bytes after ``C3 01`` in Avro
single-object encoding), value the schema's self-contained JSON (named types inlined,
as ``xborder schemas export`` writes them and Java's ``Schema.toString()`` does).
Publishing the same schema again writes the same key and value, so it is idempotent;
the project's producer library publishes its own writer schemas once per process.

Consumers (the worker's ingest, the sink, every tool built on :func:`xborder.wire.codec_for`)
look a fingerprint up here only when ``schemas/`` does not know it: the topic is read
from its start on the first miss, then from where it was on later misses, at most
:data:`REFRESH_BURST` times in a row and then :data:`REFRESH_PER_S` times a second (a
flood of garbage fingerprints costs a few reads, not one per message; the sink, which
sees only events the worker accepted, reads on every miss). A read is
bounded by :data:`READ_TIMEOUT_S`; a broker that does not answer raises
ServiceUnavailableError (the message is retried, not dead-lettered). Every record is
checked before it is used: the fingerprint of the value's Parsing Canonical Form must
equal the key, and the record must be one of this deployment's, so a schema published
under another fingerprint is ignored (and logged), never used to read a message. The
first valid value of a key wins: later values can differ only in what the canonical
form leaves out (docs, defaults, logical types).

Because producers publish before they send, a read that starts after a message arrived
sees that message's schema.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from xborder import kafka_security
from xborder.errors import ConfigurationError, ServiceUnavailableError
from xborder.schemas import SchemaStore, StoredSchema, writer_schema
from xborder.settings import Settings

logger = logging.getLogger(__name__)

READ_TIMEOUT_S = 10.0
"""Longest a read of the schema topic may take before it fails."""
REFRESH_BURST = 10
"""Reads on a miss allowed back to back ..."""
REFRESH_PER_S = 2.0
"""... and how many a second after that (a token bucket)."""


def schema_json(stored: StoredSchema) -> str:
    """The JSON a producer publishes for ``stored``: self-contained, docs and defaults kept."""
    from xborder.registry import registrable_json

    return registrable_json(stored)


def verify(key: bytes | None, value: bytes | None) -> StoredSchema:
    """The writer schema of one schema-topic record; raises ValueError saying why it is
    not usable (a bad key, a value that is not a schema, or a fingerprint that differs
    from the key)."""
    if key is None or value is None:
        raise ValueError("no key or no value")
    try:
        expected = bytes.fromhex(key.decode("ascii"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"key {key[:40]!r} is not a hex fingerprint") from exc
    if len(expected) != 8:
        raise ValueError(f"key {key[:40]!r} is not 8 bytes of hex")
    try:
        document = json.loads(value)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"value is not JSON: {exc}") from exc
    stored = writer_schema(document, Path(f"schema-topic-{expected.hex()}"))
    if stored.fingerprint != expected:
        raise ValueError(
            f"the schema's fingerprint is {stored.fingerprint.hex()}, not the key "
            f"{expected.hex()}; a schema is published under its own fingerprint only"
        )
    return stored


class _TokenBucket:
    def __init__(self, burst: int, per_s: float) -> None:
        self.burst = burst
        self.per_s = per_s
        self.tokens = float(burst)
        self.at = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.per_s)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class PublishedSchemas:
    """Writer schemas of the schema topic, read on demand and cached for the process."""

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        store: SchemaStore,
        *,
        client_id: str = "xborder-schemas",
        timeout_s: float = READ_TIMEOUT_S,
        security: dict[str, Any] | None = None,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.security = security  # kafka-python options (xborder.kafka_security)
        self.topic = topic
        self.where = f"schema topic {topic}"
        self.store = store
        self.client_id = client_id
        self.timeout_s = timeout_s
        self._found: dict[bytes, StoredSchema] = {}
        self._consumer: KafkaConsumer | None = None
        self._partitions: list[TopicPartition] = []
        self._lock = threading.Lock()
        self._refreshes = _TokenBucket(REFRESH_BURST, REFRESH_PER_S)

    @classmethod
    def from_settings(cls, settings: Settings, store: SchemaStore) -> PublishedSchemas:
        from xborder.topics import Topics

        return cls(
            settings.kafka.bootstrap_servers,
            Topics(prefix=settings.topics.prefix, agency_ids=()).schemas,
            store,
            client_id=f"{settings.kafka.client_id}-schemas",
            timeout_s=min(READ_TIMEOUT_S, settings.kafka.request_timeout_ms / 1000),
            security=kafka_security.kafka_python(settings),
        )

    def lookup(self, fingerprint: bytes, force: bool = False) -> StoredSchema | None:
        """The published writer schema with ``fingerprint``, or None.

        Reads what was published since the last read when the fingerprint is not cached
        and the refresh budget allows (always with ``force``: the sink, whose messages the
        worker accepted); raises ServiceUnavailableError when the broker does not answer
        within the timeout.
        """
        found = self._found.get(fingerprint)
        if found is not None:
            return found
        with self._lock:
            found = self._found.get(fingerprint)
            if found is None and (self._refreshes.take() or force):
                self._read_new()
                found = self._found.get(fingerprint)
        return found

    def close(self) -> None:
        with self._lock:
            if self._consumer is not None:
                self._consumer.close(autocommit=False)
                self._consumer = None

    def _read_new(self) -> None:
        """Read the topic from where the last read stopped to its current end."""
        try:
            if self._consumer is None:
                self._consumer = KafkaConsumer(
                    bootstrap_servers=self.bootstrap_servers,
                    **(self.security or {}),
                    client_id=self.client_id,
                    enable_auto_commit=False,
                    allow_auto_create_topics=False,
                    request_timeout_ms=int(self.timeout_s * 1000) + 1000,
                    fetch_max_wait_ms=100,
                )
            consumer = self._consumer
            if not self._partitions:
                numbers = sorted(consumer.partitions_for_topic(self.topic))
                if not numbers:
                    logger.warning(
                        "%s does not exist; create it with 'xborder topics create'", self.where
                    )
                    return
                self._partitions = [TopicPartition(self.topic, n) for n in numbers]
                consumer.assign(self._partitions)
                consumer.seek_to_beginning(*self._partitions)
            ends = consumer.end_offsets(self._partitions, timeout_ms=int(self.timeout_s * 1000))
            deadline = time.monotonic() + self.timeout_s
            while any(consumer.position(tp) < end for tp, end in ends.items()):
                if time.monotonic() > deadline:
                    raise ServiceUnavailableError(
                        f"reading {self.where} took over {self.timeout_s:.0f} s; check the "
                        f"broker at {self.bootstrap_servers}"
                    )
                for records in consumer.poll(timeout_ms=200).values():
                    for record in records:
                        self._add(record)
        except KafkaError as exc:
            raise ServiceUnavailableError(
                f"cannot read {self.where} ({type(exc).__name__}: {exc}); check the broker "
                f"at {self.bootstrap_servers}"
            ) from exc

    def _add(self, record: Any) -> None:
        position = f"{record.topic}[{record.partition}]@{record.offset}"
        try:
            stored = verify(record.key, record.value)
        except ValueError as exc:
            logger.warning("%s: schema ignored: %s", position, exc)
            return
        if stored.fingerprint in self._found or self.store.by_fingerprint(stored.fingerprint):
            return
        if stored.full_name not in self.store.names():
            logger.warning(
                "%s: schema ignored: record %s is not one of %s",
                position,
                stored.full_name,
                ", ".join(self.store.names()),
            )
            return
        self._found[stored.fingerprint] = stored
        logger.info(
            "%s: writer schema %s of %s published by a producer; read as the current version",
            position,
            stored.fingerprint.hex(),
            stored.full_name,
        )


# -- publishing ---------------------------------------------------------------------------

_published: set[tuple[str, str, bytes]] = set()
"""(bootstrap servers, topic, fingerprint) this process has published already."""
_published_lock = threading.Lock()


def publish_schemas(
    settings: Settings,
    schemas: list[StoredSchema],
    producer: KafkaProducer | None = None,
    *,
    once: bool = False,
) -> list[str]:
    """Publish writer schemas on the schema topic and wait for the acknowledgements;
    returns the fingerprints (hex) sent.

    ``producer`` is borrowed (a new one is made and closed otherwise); with ``once``, a
    schema this process has published before is skipped. Raises ServiceUnavailableError
    when the topic does not exist or the broker does not acknowledge.
    """
    from xborder.kafka_admin import missing_topics
    from xborder.topics import Topics

    bootstrap = settings.kafka.bootstrap_servers
    topic = Topics(prefix=settings.topics.prefix, agency_ids=()).schemas
    with _published_lock:
        todo = [
            s for s in schemas if not (once and (bootstrap, topic, s.fingerprint) in _published)
        ]
        if not todo:
            return []
        if missing_topics(settings, [topic]):
            raise ServiceUnavailableError(
                f"schema topic {topic} does not exist; create it with 'xborder topics create'"
            )
        own = producer is None
        request_ms = settings.kafka.request_timeout_ms
        try:
            if producer is None:
                producer = KafkaProducer(
                    bootstrap_servers=bootstrap,
                    **kafka_security.kafka_python(settings),
                    client_id=f"{settings.kafka.client_id}-schemas",
                    acks="all",
                    request_timeout_ms=request_ms,
                    max_block_ms=2 * request_ms,
                )
            futures = [
                producer.send(
                    topic, key=s.fingerprint.hex().encode(), value=schema_json(s).encode("utf-8")
                )
                for s in todo
            ]
            for future in futures:
                future.get(timeout=4 * request_ms / 1000 + 5)
        except KafkaError as exc:
            raise ServiceUnavailableError(
                f"publishing schemas on {topic} failed ({type(exc).__name__}); check the "
                f"broker at {bootstrap}"
            ) from exc
        finally:
            if own and producer is not None:
                producer.close(timeout=10)
        for s in todo:
            _published.add((bootstrap, topic, s.fingerprint))
            logger.debug(
                "published writer schema %s of %s on %s", s.fingerprint.hex(), s.full_name, topic
            )
    return [s.fingerprint.hex() for s in todo]


PUBLISHER_RECORDS = ("IncidentReported", "IncidentUpdated", "IncidentClosed")
"""What the producer library sends, so what it publishes the writer schemas of."""


def publish_own_schemas(settings: Settings, codec: Any, producer: KafkaProducer) -> None:
    """The producer library's start: publish the current schemas of the incident records
    once per process (Avro single-object encoding only: with a registry, the registry
    holds them). A deployment without the schema topic gets a warning, not an error."""
    from xborder.kafka_admin import missing_topics
    from xborder.topics import Topics

    if getattr(codec, "registry", None) is not None:
        return
    topic = Topics(prefix=settings.topics.prefix, agency_ids=()).schemas
    schemas = [codec.store.current(name) for name in PUBLISHER_RECORDS]
    key = settings.kafka.bootstrap_servers, topic
    if all((*key, s.fingerprint) in _published for s in schemas):
        return
    if missing_topics(settings, [topic]):
        logger.warning(
            "schema topic %s does not exist, writer schemas not published; create it with "
            "'xborder topics create'",
            topic,
        )
        return
    publish_schemas(settings, schemas, producer, once=True)


def read_schema_file(path: Path, store: SchemaStore) -> StoredSchema:
    """A self-contained ``.avsc`` of one of this deployment's records, as a writer schema;
    raises ConfigurationError naming the file and the problem."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        stored = writer_schema(document, path)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ConfigurationError(
            f"{path}: not a self-contained Avro schema ({exc}); write named types inline, "
            "as 'xborder schemas export' does"
        ) from exc
    if stored.full_name not in store.names():
        raise ConfigurationError(
            f"{path}: record {stored.full_name} is not one of {', '.join(store.names())}; "
            "only versions of this deployment's records can be read"
        )
    return stored


# -- command line -------------------------------------------------------------------------


def cmd_schemas_publish(settings: Settings, args: Any) -> int:
    """``xborder schemas publish FILE.avsc ...``: publish writer schemas on the schema topic."""
    store = SchemaStore(settings.schemas_dir)
    schemas = [read_schema_file(path, store) for path in args.files]
    publish_schemas(settings, schemas)
    for path, stored in zip(args.files, schemas, strict=True):
        print(f"{stored.fingerprint.hex()}  {stored.full_name}  {path}")
    return 0


def add_publish_parser(schemas_sub: Any) -> None:
    """Register ``publish`` under the CLI's ``schemas`` command."""
    publish = schemas_sub.add_parser(
        "publish",
        help="publish writer schemas (self-contained .avsc) on the schema topic, so that "
        "consumers read events written with them",
    )
    publish.add_argument("files", nargs="+", type=Path, help="self-contained .avsc files")
    publish.set_defaults(handler=cmd_schemas_publish)
