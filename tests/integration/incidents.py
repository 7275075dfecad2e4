"""Incident events as the messages an agency publishes, for tests that need some on Kafka."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from xborder.bench.kafka_io import Message
from xborder.settings import Settings
from xborder.topics import Topics
from xborder.wire import codec_for


def incident_messages(
    settings: Settings, topics: Topics, events: Iterable[dict[str, Any]]
) -> list[Message]:
    """Each JSON IncidentReported on its agency's topic, keyed by incident id, Avro-encoded."""
    codec = codec_for(settings)
    return [
        Message(
            topics.incidents(e["agency"]),
            e["incident_id"].encode(),
            codec.encode("IncidentReported", codec.from_json("IncidentReported", e)),
        )
        for e in events
    ]
