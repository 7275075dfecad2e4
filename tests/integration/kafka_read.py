"""Reading a topic back in tests: every record from the start, until enough arrived."""

from __future__ import annotations

import time
from typing import Any

from kafka import KafkaConsumer


def consume_all(bootstrap: str, topic: str, expected: int, timeout_s: float = 30.0) -> list[Any]:
    """Records of ``topic`` from the beginning, read until ``expected`` have arrived or
    ``timeout_s`` has passed (the caller asserts the count)."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=2_000,
    )
    records: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(records) < expected and time.monotonic() < deadline:
            records.extend(consumer)
    finally:
        consumer.close()
    return records
