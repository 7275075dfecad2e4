"""The producer library agencies call: validate, encode and publish incident events.

Events go to ``incidents.<agency>`` keyed by the agency's incident id, with
``acks=all`` and idempotence, so a retried send never duplicates or reorders an event
within an incident.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError

from xborder.agencies import AgenciesConfig
from xborder.codec import AvroCodec
from xborder.errors import InvalidRecordError, ServiceUnavailableError
from xborder.kafka_admin import missing_topics
from xborder.settings import Settings
from xborder.topics import Topics

logger = logging.getLogger(__name__)

TIMESTAMP_FIELDS = ("occurred_at", "reported_at")


def parse_timestamp(value: Any, field: str) -> datetime:
    """Accept an aware ISO-8601 string, epoch milliseconds or a datetime; return UTC datetime."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, bool):
        raise InvalidRecordError(f"field {field!r}: expected a timestamp, got a boolean")
    elif isinstance(value, int):
        moment = datetime.fromtimestamp(value / 1000, tz=UTC)
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise InvalidRecordError(
                f"field {field!r}: {value!r} is not an ISO-8601 timestamp"
            ) from exc
    else:
        raise InvalidRecordError(
            f"field {field!r}: expected ISO-8601 text or epoch milliseconds, got "
            f"{type(value).__name__}"
        )
    if moment.tzinfo is None:
        raise InvalidRecordError(
            f"field {field!r}: {value!r} has no time zone; give UTC, e.g. '2026-03-19T08:00:00Z'"
        )
    return moment.astimezone(UTC)


def prepare_event(event: dict[str, Any]) -> dict[str, Any]:
    """Turn a JSON-shaped event into the values the Avro writer takes."""
    prepared = dict(event)
    for field in TIMESTAMP_FIELDS:
        if field in prepared:
            prepared[field] = parse_timestamp(prepared[field], field)
    return prepared


class IncidentPublisher:
    """Publishes one agency's events; create once, call :meth:`publish` many times."""

    def __init__(
        self, settings: Settings, agencies: AgenciesConfig, codec: AvroCodec, agency_id: str
    ) -> None:
        agencies.get(agency_id)  # fails early on an unknown agency
        self.agency_id = agency_id
        self.codec = codec
        self.topic = Topics.from_settings(settings, agencies).incidents(agency_id)
        missing = missing_topics(settings, [self.topic])
        if missing:
            raise ServiceUnavailableError(
                f"topic {self.topic} does not exist; create it with 'xborder topics create'"
            )
        self._producer = KafkaProducer(
            bootstrap_servers=settings.kafka.bootstrap_servers,
            client_id=f"{settings.kafka.client_id}-publisher-{agency_id}",
            acks="all",
            enable_idempotence=True,
            linger_ms=20,
            batch_size=256 * 1024,
            compression_type=None,
            request_timeout_ms=settings.kafka.request_timeout_ms,
        )

    def encode(self, event: dict[str, Any], record_name: str = "IncidentReported") -> bytes:
        """Validate and encode one event for this publisher's agency."""
        agency = event.get("agency")
        if agency != self.agency_id:
            raise InvalidRecordError(
                f"event agency {agency!r} differs from the publisher's agency "
                f"{self.agency_id!r}; an agency publishes only its own events"
            )
        return self.codec.encode(record_name, prepare_event(event))

    def publish(self, event: dict[str, Any], record_name: str = "IncidentReported") -> int:
        """Encode and send one event, waiting for the broker's acknowledgement; returns bytes."""
        payload = self.encode(event, record_name)
        self.send_encoded(event, payload).get(timeout=60)
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
            future.get(timeout=60)
        return sizes

    def send_encoded(self, event: dict[str, Any], payload: bytes) -> Any:
        try:
            return self._producer.send(
                self.topic, key=str(event["incident_id"]).encode(), value=payload
            )
        except KafkaError as exc:
            raise ServiceUnavailableError(f"sending to {self.topic} failed: {exc}") from exc

    def flush(self) -> None:
        self._producer.flush(timeout=60)

    def close(self) -> None:
        self._producer.close(timeout=30)

    def __enter__(self) -> IncidentPublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
