"""Fast Kafka I/O for the benchmark (aiokafka): bulk or paced publishing, the raw floor."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import fastavro
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from xborder.codec import SINGLE_OBJECT_HEADER_LEN


@dataclass(frozen=True)
class Message:
    """One pre-encoded message to publish."""

    topic: str
    key: bytes | None
    value: bytes
    partition: int | None = None
    """Explicit partition; None lets the key choose."""


async def _publish(
    bootstrap: str,
    messages: Sequence[Message],
    rate: float | None,
    progress: Callable[[int], None] | None,
    security: dict[str, Any] | None = None,
) -> list[float]:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        **(security or {}),
        acks="all",
        enable_idempotence=True,
        linger_ms=10 if rate else 20,
        max_batch_size=256 * 1024,
    )
    await producer.start()
    sent_at: list[float] = []
    try:
        started = time.monotonic()
        for n, message in enumerate(messages):
            if rate:
                due = started + n / rate
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            sent_at.append(time.time())
            await producer.send(
                message.topic, message.value, key=message.key, partition=message.partition
            )
            if progress and n % 5000 == 0:
                progress(n)
        await producer.flush()
    finally:
        await producer.stop()
    return sent_at


def publish(
    bootstrap: str,
    messages: Sequence[Message],
    rate: float | None = None,
    progress: Callable[[int], None] | None = None,
    security: dict[str, Any] | None = None,
) -> list[float]:
    """Publish all messages (as fast as possible, or at ``rate`` per second); send times
    (``security``: aiokafka options from :mod:`xborder.kafka_security`)."""
    return asyncio.run(_publish(bootstrap, messages, rate, progress, security))


FIRST_FETCH_TIMEOUT_S = 60.0
"""How long the raw-floor read waits for its first records."""


async def _raw_floor(
    bootstrap: str,
    topics: Sequence[str],
    partitions: int,
    total: int,
    schema: Any,
    security: dict[str, Any] | None = None,
) -> float:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        **(security or {}),
        enable_auto_commit=False,
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await consumer.start()
    try:
        assigned = [TopicPartition(t, p) for t in topics for p in range(partitions)]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        seen = 0
        started = time.monotonic()
        while seen < total:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            if not batches:
                # a quiet second ends the read once it has started; before the first
                # records a loaded broker may take longer to answer the first fetch
                if seen or time.monotonic() - started > FIRST_FETCH_TIMEOUT_S:
                    break
                continue
            for records in batches.values():
                for record in records:
                    body = io.BytesIO(record.value)
                    body.seek(SINGLE_OBJECT_HEADER_LEN)
                    try:
                        fastavro.schemaless_reader(body, schema, None)
                    except Exception:  # malformed messages cost a decode attempt too
                        pass
                    seen += 1
        elapsed = time.monotonic() - started
    finally:
        await consumer.stop()
    return seen / elapsed if elapsed > 0 else 0.0


def raw_floor(
    bootstrap: str,
    topics: Sequence[str],
    partitions: int,
    total: int,
    schema: Any,
    security: dict[str, Any] | None = None,
) -> float:
    """Events/s of a bare consumer that only fetches and Avro-decodes ``topics``."""
    return asyncio.run(_raw_floor(bootstrap, topics, partitions, total, schema, security))


async def _collect(
    bootstrap: str,
    topics: Sequence[str],
    stop: asyncio.Event,
    out: list[tuple[float, bytes]],
    security: dict[str, Any] | None = None,
) -> None:
    consumer = AIOKafkaConsumer(
        *topics, bootstrap_servers=bootstrap, auto_offset_reset="latest", **(security or {})
    )
    await consumer.start()
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=100)
            now = time.time()
            for records in batches.values():
                out.extend((now, r.key or b"") for r in records)
    finally:
        await consumer.stop()


class Collector:
    """Receives the key of every message of ``topics`` (from now on), with its arrival time."""

    def __init__(
        self, bootstrap: str, topics: Sequence[str], security: dict[str, Any] | None = None
    ) -> None:
        self.bootstrap = bootstrap
        self.security = security
        self.topics = list(topics)
        self.received: list[tuple[float, bytes]] = []
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._thread: Any = None

    def start(self) -> None:
        import threading

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(
                _collect(self.bootstrap, self.topics, self._stop, self.received, self.security)
            )

        self._thread = threading.Thread(target=run, name="collector", daemon=True)
        self._thread.start()
        time.sleep(2.0)  # let the consumer join and position itself at the end

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)
