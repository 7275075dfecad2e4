"""The producer library agencies call: validate, encode and publish incident events.

Events go to ``incidents.<agency>`` keyed by the agency's incident id, with
``acks=all`` and idempotence, so a retried send never duplicates or reorders an event
within an incident. A send the broker does not acknowledge within four request timeouts
(``XBORDER_KAFKA__REQUEST_TIMEOUT_MS``; 2 min by default, long enough to ride out a
broker restart) fails instead of waiting for ever. Across runs, event ids are what make
a repeated event recognisable: :meth:`IncidentPublisher.delivered_event_ids` reads the
ones already on the topic.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from xborder import kafka_security
from xborder.agencies import AgenciesConfig
from xborder.codec import AvroCodec
from xborder.errors import InvalidRecordError, ServiceUnavailableError
from xborder.geo import PLACEMENT_OTHER, PLACEMENT_OUTSIDE, PLACEMENT_OWN, jurisdictions_for
from xborder.kafka_admin import missing_topics
from xborder.pseudonym.detect import masked
from xborder.schema_topic import publish_own_schemas
from xborder.settings import Settings
from xborder.topics import Topics
from xborder.validation import EventRules

logger = logging.getLogger(__name__)

LINGER_MS = 20
DELIVERY_TIMEOUTS = 4
"""Request timeouts a send may take, retries included, before it fails."""


class EventEncoder:
    """Validates and encodes one agency's events (no Kafka needed: also the dry run)."""

    def __init__(
        self, settings: Settings, agencies: AgenciesConfig, codec: AvroCodec, agency_id: str
    ) -> None:
        agencies.get(agency_id)  # fails early on an unknown agency
        self.agency_id = agency_id
        self.codec = codec
        self.rules = EventRules.from_settings(settings.contract, agencies.region)
        self.jurisdictions = None if agencies.jurisdictions is None else jurisdictions_for(agencies)

    def placement(self, event: dict[str, Any]) -> str | None:
        """Where the event's location lies (``own``, ``other-jurisdiction:<agency>``,
        ``outside``; :meth:`xborder.geo.Jurisdictions.placement`), as the sink will store it;
        None without configured jurisdictions."""
        location = event.get("location")
        if self.jurisdictions is None or not isinstance(location, dict):
            return None
        return self.jurisdictions.placement(self.agency_id, location["lat"], location["lon"])

    def encode(
        self,
        event: dict[str, Any],
        record_name: str = "IncidentReported",
        now: datetime | None = None,
    ) -> bytes:
        """Validate and encode one event; raises InvalidRecordError naming the field."""
        agency = event.get("agency")
        if agency != self.agency_id:
            raise InvalidRecordError(
                f"agency: {masked(agency)} differs from the publisher's agency "
                f"{self.agency_id!r}; an agency publishes only its own events"
            )
        prepared = self.codec.from_json(record_name, event)
        # raw identifiers refused, or redacted in ``prepared`` (XBORDER_CONTRACT__RAW_IDENTIFIERS)
        self.rules.check_incident(prepared, now or datetime.now(UTC))
        placement = self.placement(prepared)
        if placement not in (None, PLACEMENT_OWN):
            # accepted, and stored with its placement for analysts to see: tell the integrator
            logger.warning(
                "%s %s: location (%s, %s) is %s, not in %s's jurisdiction; the event is "
                "accepted and stored with placement %r: check the coordinates",
                record_name,
                prepared.get("incident_id"),
                prepared["location"]["lat"],
                prepared["location"]["lon"],
                "outside every configured jurisdiction"
                if placement == PLACEMENT_OUTSIDE
                else "in the jurisdiction of " + str(placement).removeprefix(PLACEMENT_OTHER),
                self.agency_id,
                placement,
            )
        payload = self.codec.encode(record_name, prepared)
        if len(payload) > self.rules.max_bytes:
            raise InvalidRecordError(
                f"event is {len(payload)} bytes encoded, over the limit of "
                f"{self.rules.max_bytes} (XBORDER_CONTRACT__MAX_MESSAGE_BYTES); shorten the "
                "narrative or split the subjects",
                reason="oversized",
            )
        return payload


class IncidentPublisher:
    """Publishes one agency's events; create once, call :meth:`publish` many times."""

    def __init__(
        self, settings: Settings, agencies: AgenciesConfig, codec: AvroCodec, agency_id: str
    ) -> None:
        self.encoder = EventEncoder(settings, agencies, codec, agency_id)
        self.agency_id = agency_id
        self.topic = Topics.from_settings(settings, agencies).incidents(agency_id)
        missing = missing_topics(settings, [self.topic])
        if missing:
            raise ServiceUnavailableError(
                f"topic {self.topic} does not exist; create it with 'xborder topics create'"
            )
        self.settings = settings
        request_ms = settings.kafka.request_timeout_ms
        self.delivery_timeout_s = DELIVERY_TIMEOUTS * request_ms / 1000
        self._producer = KafkaProducer(
            bootstrap_servers=settings.kafka.bootstrap_servers,
            **kafka_security.kafka_python(settings),
            client_id=f"{settings.kafka.client_id}-publisher-{agency_id}",
            acks="all",
            enable_idempotence=True,
            linger_ms=LINGER_MS,
            batch_size=256 * 1024,
            request_timeout_ms=request_ms,
            delivery_timeout_ms=DELIVERY_TIMEOUTS * request_ms + LINGER_MS,
            max_block_ms=2 * request_ms,
        )
        publish_own_schemas(settings, codec, self._producer)  # once per process

    def encode(self, event: dict[str, Any], record_name: str = "IncidentReported") -> bytes:
        """Validate and encode one event (see :meth:`EventEncoder.encode`)."""
        return self.encoder.encode(event, record_name)

    def publish(self, event: dict[str, Any], record_name: str = "IncidentReported") -> int:
        """Encode and send one event, waiting for the broker's acknowledgement; returns bytes."""
        payload = self.encode(event, record_name)
        self._acknowledged(self.send_encoded(event, payload))
        return len(payload)

    def publish_batch(
        self, events: Iterable[dict[str, Any]], record_name: str = "IncidentReported"
    ) -> int:
        """Encode and send many events, then wait for all acknowledgements; returns bytes."""
        sizes = 0
        futures = []
        for event in events:
            payload = self.encode(event, record_name)
            futures.append(self.send_encoded(event, payload))
            sizes += len(payload)
        self.flush()
        for future in futures:
            self._acknowledged(future)
        return sizes

    def _acknowledged(self, future: Any) -> None:
        """Wait for one send's acknowledgement; a failed send is ServiceUnavailableError."""
        try:
            future.get(timeout=self.delivery_timeout_s + 5)
        except KafkaError as exc:
            raise ServiceUnavailableError(
                f"an event for {self.topic} was not acknowledged ({type(exc).__name__}); "
                f"check the broker at {self.settings.kafka.bootstrap_servers}"
            ) from exc

    def send_encoded(self, event: dict[str, Any], payload: bytes) -> Any:
        try:
            return self._producer.send(
                self.topic, key=str(event["incident_id"]).encode(), value=payload
            )
        except KafkaError as exc:
            raise ServiceUnavailableError(f"sending to {self.topic} failed: {exc}") from exc

    def flush(self) -> None:
        """Wait until every event sent so far is acknowledged or has failed."""
        try:
            # each send completes (acknowledged or failed) within its delivery timeout
            self._producer.flush(timeout=self.delivery_timeout_s + 5)
        except KafkaError as exc:
            raise ServiceUnavailableError(
                f"events for {self.topic} were not acknowledged within "
                f"{self.delivery_timeout_s:.0f} s ({type(exc).__name__}); check the broker "
                f"at {self.settings.kafka.bootstrap_servers}"
            ) from exc

    def delivered_event_ids(self) -> set[str]:
        """Event ids (lower case) of this agency's events already on its topic: what a
        resumed publish skips. Reads the whole topic once."""
        return read_event_ids(self.settings, self.encoder.codec, self.topic, self.agency_id)

    def close(self) -> None:
        self._producer.close(timeout=30)

    def __enter__(self) -> IncidentPublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_event_ids(settings: Settings, codec: AvroCodec, topic: str, agency_id: str) -> set[str]:
    """Event ids (lower case) of ``agency_id``'s events on ``topic``, from its start to its
    current end; messages that do not decode are passed over (the worker dead-letters
    them)."""
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        **kafka_security.kafka_python(settings),
        client_id=f"{settings.kafka.client_id}-publisher-{agency_id}-resume",
        enable_auto_commit=False,
        request_timeout_ms=settings.kafka.request_timeout_ms,
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=16 * 1024 * 1024,
        max_poll_records=50_000,
    )
    ids: set[str] = set()
    try:
        partitions = [
            TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        remaining = {tp: end for tp, end in consumer.end_offsets(partitions).items() if end > 0}
        deadline = time.monotonic() + settings.kafka.request_timeout_ms / 1000
        while remaining:
            batch = consumer.poll(timeout_ms=1000)
            if batch:
                deadline = time.monotonic() + settings.kafka.request_timeout_ms / 1000
            elif time.monotonic() > deadline:
                raise ServiceUnavailableError(
                    f"reading the event ids on {topic} stalled; check the broker at "
                    f"{settings.kafka.bootstrap_servers}"
                )
            for tp, records in batch.items():
                for record in records:
                    event_id = _event_id(codec, record.value, agency_id)
                    if event_id is not None:
                        ids.add(event_id)
                if tp in remaining and consumer.position(tp) >= remaining[tp]:
                    del remaining[tp]
    except KafkaError as exc:
        raise ServiceUnavailableError(
            f"cannot read the event ids on {topic} ({type(exc).__name__}); check the broker "
            f"at {settings.kafka.bootstrap_servers}"
        ) from exc
    finally:
        consumer.close()
    return ids


def _event_id(codec: AvroCodec, value: bytes | None, agency_id: str) -> str | None:
    if value is None:
        return None
    try:
        decoded = codec.decode(value, logical_types=False).value
    except InvalidRecordError:  # not an event this publisher sent (the worker dead-letters it)
        return None
    if decoded.get("agency") != agency_id:
        return None
    return str(decoded.get("event_id", "")).lower() or None
