"""Reading a topic back in tests: every record from the start, until enough arrived.

Reads stop on an event, not on a quiet period: when the records wanted have arrived and
every partition has been read up to the end offset it had then. (A consumer iterated
with ``consumer_timeout_ms`` only stops after that many idle milliseconds, which every
read paid again.)
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType

from xborder.kafka_admin import admin_client, end_offsets

_POLL_MS = 100


def _poll_into(consumer: KafkaConsumer, records: list[Any]) -> None:
    for batch in consumer.poll(timeout_ms=_POLL_MS).values():
        records.extend(batch)


def _read_up_to(
    consumer: KafkaConsumer,
    ends: dict[TopicPartition, int],
    records: list[Any],
    deadline: float,
) -> None:
    """Poll until the consumer's position in each of ``ends`` has reached its end offset."""
    while any(consumer.position(tp) < end for tp, end in ends.items()):
        if time.monotonic() > deadline:
            raise AssertionError(f"could not read up to the end offsets {ends} in time")
        _poll_into(consumer, records)


def consume_all(bootstrap: str, topic: str, expected: int, timeout_s: float = 30.0) -> list[Any]:
    """Records of ``topic`` from the beginning, read until ``expected`` have arrived or
    ``timeout_s`` has passed (the caller asserts the count); once ``expected`` have
    arrived, also every other record the topic holds at that moment."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    records: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(records) < expected and time.monotonic() < deadline:
            _poll_into(consumer, records)
        if len(records) >= expected:
            ends = dict(consumer.end_offsets(list(consumer.assignment())))
            _read_up_to(consumer, ends, records, time.monotonic() + timeout_s)
    finally:
        consumer.close()
    return records


def read_to_end(bootstrap: str, topics: Iterable[str], timeout_s: float = 30.0) -> list[Any]:
    """Every record ``topics`` hold now: from the beginning up to the end offsets they
    have when the read starts."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    records: list[Any] = []
    try:
        ends = end_offsets(consumer, topics)
        if not ends:
            return records
        consumer.assign(list(ends))
        consumer.seek_to_beginning(*ends)
        _read_up_to(consumer, ends, records, time.monotonic() + timeout_s)
    finally:
        consumer.close()
    return records


def topic_config(bootstrap_servers: str, topic: str, name: str) -> str:
    """The value of one configuration entry of ``topic`` as the broker describes it."""
    admin = admin_client(bootstrap_servers)
    try:
        described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        admin.close()
    found = [entry for by_name in described.values() for entry in by_name.get(topic, {}).items()]
    return str(dict(found)[name]["value"])
