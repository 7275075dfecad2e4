"""Outbox: a batch's outgoing messages, sent as one record batch per topic partition.

A producer ``send`` per message costs a delivery future, a partitioner call and an
accumulator append each (about 20 us here, PERFORMANCE.md). The ingest task produces
several messages per event (the forward, border alerts, dead letters), so it collects
them here and hands each topic partition's messages to the producer as one batch with
one future. Keyed messages go to the partition the default partitioner (murmur2) would
choose, so a key keeps its partition whichever way it was sent; keyless ones to any.
"""

from __future__ import annotations

import asyncio
import random
import struct
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer

Headers = Sequence[tuple[str, bytes]]

_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash of ``data`` (as Java's ``Utils.murmur2``, unsigned). aiokafka's
    version reads a byte at a time; reading 4-byte words costs 40% less per key, and the
    worker hashes the key of every message it forwards or alerts."""
    length = len(data)
    h = 0x9747B28C ^ length
    words = length >> 2
    for k in struct.unpack_from(f"<{words}I", data):
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    tail = length & 3
    if tail:
        i = words << 2
        if tail == 3:
            h ^= data[i + 2] << 16
        if tail >= 2:
            h ^= data[i + 1] << 8
        h = ((h ^ data[i]) * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    return h ^ (h >> 15)


def default_partition(key: bytes, partitions: Sequence[int]) -> int:
    """The partition Kafka's default partitioner gives a keyed message."""
    return partitions[(murmur2(key) & 0x7FFFFFFF) % len(partitions)]


class Outbox:
    """Collects messages with :meth:`send` (Faust's ``Producer.send`` signature) and
    delivers them all with :meth:`flush`."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer
        self._partitions: dict[str, list[int]] = {}
        self._pending: dict[tuple[str, int], list[tuple[bytes | None, bytes | None, Headers]]]
        self._pending = defaultdict(list)

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None,
        timestamp: float | None,
        headers: Headers | None,
    ) -> None:
        """Queue one message (``timestamp`` is ignored: the batch's send time is used)."""
        if partition is None:
            partitions = self._partitions.get(topic)
            if partitions is None:
                partitions = sorted(await self.producer.partitions_for(topic))
                self._partitions[topic] = partitions
            if key is None:  # as the default partitioner: any available partition
                partition = random.choice(partitions)
            else:
                partition = default_partition(key, partitions)
        self._pending[(topic, partition)].append((key, value, headers or ()))

    @property
    def pending(self) -> int:
        """Messages queued and not yet flushed."""
        return sum(len(messages) for messages in self._pending.values())

    def discard(self) -> None:
        """Drop everything queued (the batch that produced it will be processed again)."""
        self._pending.clear()
        self._partitions.clear()

    async def flush(self) -> None:
        """Send everything queued, one record batch per topic partition (more when a
        partition's messages exceed the producer's batch size), and wait until the broker
        has acknowledged all of it."""
        deliveries: list[Any] = []
        producer = self.producer
        for (topic, partition), messages in self._pending.items():
            batch = producer.create_batch()
            for key, value, headers in messages:
                if batch.append(key=key, value=value, timestamp=None, headers=list(headers)):
                    continue
                if batch.record_count():
                    deliveries.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = producer.create_batch()
                    if batch.append(key=key, value=value, timestamp=None, headers=list(headers)):
                        continue
                # larger than a whole batch: the producer's own path (and its size error)
                deliveries.append(
                    await producer.send(
                        topic, value, key=key, partition=partition, headers=list(headers)
                    )
                )
            if batch.record_count():
                deliveries.append(await producer.send_batch(batch, topic, partition=partition))
        self.discard()  # partition counts can grow too: looked up again next batch
        await asyncio.gather(*deliveries)
