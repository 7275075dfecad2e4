"""The ingest outbox on the real broker: every message delivered once, keyed messages on
the partition the producer's own partitioner picks, big batches split, discard drops."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from aiokafka import AIOKafkaProducer

from streams.flows.outbox import Outbox
from tests.integration.kafka_read import consume_all
from xborder.kafka_admin import ensure_topics

pytestmark = pytest.mark.integration


async def _send_through_outbox(
    bootstrap: str, topic: str, other: str, twin: str
) -> dict[bytes, int]:
    """Queue keyed, explicit-partition and large messages; returns the partition the
    producer's own ``send`` chose for each key on ``twin`` (same partition count)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_batch_size=16_384)
    await producer.start()
    try:
        outbox = Outbox(producer)
        await outbox.send(topic, b"dropped", b"never sent", None, None, None)
        outbox.discard()
        for n in range(300):
            key = f"key-{n}".encode()
            await outbox.send(topic, key, b"v" * 200, None, None, [("h", str(n).encode())])
        for n in range(10):
            await outbox.send(other, None, f"explicit-{n}".encode(), 2, None, None)
        assert outbox.pending == 310
        await outbox.flush()
        assert outbox.pending == 0
        reference = {}
        for n in range(300):
            key = f"key-{n}".encode()
            metadata = await (await producer.send(twin, b"x", key=key))
            reference[key] = metadata.partition
        return reference
    finally:
        await producer.stop()


def test_outbox_delivers_each_message_once_where_the_producer_would(make_settings) -> None:
    settings = make_settings()
    bootstrap = settings.kafka.bootstrap_servers
    topic, other, twin = (f"{settings.topics.prefix}outbox{s}" for s in ("", ".other", ".twin"))
    ensure_topics(settings, [topic, other, twin])

    # 300 x 200-byte values overflow a 16 KiB batch: the outbox must split them
    reference = asyncio.run(_send_through_outbox(bootstrap, topic, other, twin))

    records = consume_all(bootstrap, topic, 300)
    assert Counter(r.key for r in records) == Counter(reference.keys())  # each exactly once
    # murmur2 like the producer: each key lands where send() put its twin
    assert {r.key: r.partition for r in records} == reference
    assert all(dict(r.headers)["h"] == r.key[4:] for r in records)
    assert not any(r.key == b"dropped" for r in records)
    explicit = consume_all(bootstrap, other, 10)
    assert sorted(r.value for r in explicit) == sorted(f"explicit-{n}".encode() for n in range(10))
    assert {r.partition for r in explicit} == {2}
