"""Ingest flow: decode each agency's incident events, forward the good, dead-letter the bad."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import faust

from streams.flows.correlate import Router, publish_alerts, publish_blocks, source_id
from streams.topics import StreamTopics
from xborder.codec import AvroCodec
from xborder.deadletter import SOURCE_HEADER, DeadLetter
from xborder.errors import InvalidRecordError
from xborder.metrics import IngestMetrics
from xborder.topics import Topics
from xborder.validation import EventRules

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Accepted:
    key: bytes | None
    value: bytes
    source: str
    """Position of the original message, topic[partition]@offset."""
    record_name: str
    decoded: dict[str, Any]


INCIDENT_RECORDS = frozenset(
    {"xborder.v1.IncidentReported", "xborder.v1.IncidentUpdated", "xborder.v1.IncidentClosed"}
)


def classify(
    codec: AvroCodec,
    rules: EventRules,
    key: bytes | None,
    value: bytes | None,
    topic: str,
    partition: int,
    offset: int,
    timestamp_ms: int,
) -> Accepted | DeadLetter:
    """Decide what happens to one raw message: accepted as is, or a dead letter with a reason.

    Time rules are checked against the message's Kafka timestamp, not the wall clock,
    so a replay classifies every message exactly as the first run did.
    """
    max_bytes = rules.max_bytes
    position = f"{topic}[{partition}]@{offset}"
    if value is None:
        return DeadLetter(
            key, value, "undecodable", "empty message (tombstone)", topic, partition, offset
        )
    if len(value) > max_bytes:
        return DeadLetter(
            key,
            value,
            "oversized",
            f"{len(value)} bytes > limit {max_bytes}",
            topic,
            partition,
            offset,
        )
    try:
        decoded = codec.decode(value)
        if decoded.record_name not in INCIDENT_RECORDS:
            raise InvalidRecordError(
                f"{decoded.record_name} is not an incident event; only IncidentReported, "
                "IncidentUpdated and IncidentClosed belong on incidents.<agency>",
                reason="invalid",
            )
        agency = decoded.value.get("agency")
        if topic.rpartition("incidents.")[2] != agency:
            raise InvalidRecordError(
                f"agency {agency!r} published on {topic}; an agency writes only its own topic",
                reason="invalid",
            )
        rules.check_incident(decoded.value, datetime.fromtimestamp(timestamp_ms / 1000, tz=UTC))
    except InvalidRecordError as exc:
        return DeadLetter(key, value, exc.reason, str(exc), topic, partition, offset)
    return Accepted(key, value, position, decoded.record_name, decoded.value)


def register(
    app: faust.App,
    topics: StreamTopics,
    names: Topics,
    codec: AvroCodec,
    rules: EventRules,
    batch_size: int,
    within_s: float,
    router: Router | None = None,
) -> IngestMetrics:
    """Attach the ingest agent to ``app``; returns its counters."""
    metrics = IngestMetrics()
    producer = app.producer
    accepted_topic = topics.accepted.get_topic_name()

    @app.agent(topics.incidents, name="accept_incidents")
    async def accept_incidents(stream: faust.StreamT) -> None:
        # take_events is on the concrete Stream, not on the StreamT protocol
        async for events in stream.take_events(batch_size, within=within_s):  # type: ignore[attr-defined]
            accepted: list[tuple[str, str, dict[str, Any]]] = []
            for event in events:
                message = event.message
                outcome = classify(
                    codec,
                    rules,
                    message.key,
                    message.value,
                    message.topic,
                    message.partition,
                    message.offset,
                    int(message.timestamp * 1000),
                )
                if isinstance(outcome, Accepted):
                    metrics.accepted[message.topic] += 1
                    source = source_id(message.topic, message.partition)
                    accepted.append((source, outcome.record_name, outcome.decoded))
                    # The raw producer skips Faust's per-message send machinery; the
                    # consumer flushes it before every offset commit, so nothing is lost.
                    await producer.send(
                        accepted_topic,
                        outcome.key,
                        outcome.value,
                        None,
                        None,
                        [(SOURCE_HEADER, outcome.source.encode())],
                    )
                else:
                    metrics.dead_letters[outcome.reason] += 1
                    logger.warning(
                        "%s rejected (%s): %s", outcome.position, outcome.reason, outcome.error
                    )
                    await topics.dead_letters.send(
                        key=outcome.key, value=outcome.value, headers=outcome.headers()
                    )
            if router is not None and accepted:
                by_partition, progress, alerts = router.route(accepted)
                if progress:
                    await publish_blocks(producer, names, router.partitions, progress, by_partition)
                await publish_alerts(producer, codec, names, alerts)

    return metrics
