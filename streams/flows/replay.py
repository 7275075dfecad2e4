"""The correlation stage's state is rebuilt from ``correlation.blocks`` itself.

The stage's table (``correlation-batches``) records, per partition and stage batch, the
offsets of the blocks messages it applied (``{"o": [...]}``), not the messages: the topic
already holds them, so copying every routed view into a table and its changelog would
make the broker take, store and serve each view twice and the worker write it twice. A
restarted worker reads the recorded offsets back from the topic, in order, and replays
them into a fresh engine.

The topic must therefore keep a message as long as the window may need it:
``correlation.blocks`` is created with a retention of at least twice the window plus
the allowed lateness (:func:`xborder.topics.blocks_topic_configs`). A recorded message
the topic no longer has is counted and logged, not waited for.

Tables written by earlier releases hold the messages themselves (``{"b": [...]}``, or one
message per value): those are replayed as they are.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from xborder import kafka_security
from xborder.settings import Settings

logger = logging.getLogger(__name__)

PartitionReader = Callable[[int, int], AsyncIterator[tuple[int, bytes | None]]]
"""``reader(partition, first_offset)``: the partition's (offset, value) pairs from
``first_offset`` (or the oldest the topic still has) up to its end when asked."""

REPLAY_FETCH_BYTES = 16 * 1024 * 1024


def applied_offsets(offsets: list[int]) -> bytes:
    """The table value recording the blocks messages a stage batch applied to one partition."""
    return orjson.dumps({"o": offsets})


def kafka_reader(settings: Settings, topic: str) -> PartitionReader:
    """A :data:`PartitionReader` of ``topic`` on the configured brokers (no consumer group)."""

    async def read(partition: int, first_offset: int) -> AsyncIterator[tuple[int, bytes | None]]:
        tp = TopicPartition(topic, partition)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka.bootstrap_servers,
            **kafka_security.aiokafka(settings),
            client_id=f"{settings.kafka.client_id}-replay",
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",  # a recorded offset the retention removed
            fetch_max_bytes=REPLAY_FETCH_BYTES,
            max_partition_fetch_bytes=REPLAY_FETCH_BYTES,
        )
        await consumer.start()
        try:
            consumer.assign([tp])
            end = (await consumer.end_offsets([tp]))[tp]
            if first_offset >= end:
                return
            consumer.seek(tp, first_offset)
            while await consumer.position(tp) < end:
                fetched = await consumer.getmany(tp, timeout_ms=1000)
                for message in fetched.get(tp, ()):
                    if message.offset >= end:
                        return
                    yield message.offset, message.value
        finally:
            await consumer.stop()

    return read


class BlocksReplay:
    """The messages of one partition's table values, in offset order: read back from the
    topic for recorded offsets, taken as they are from values of earlier releases."""

    def __init__(self, reader: PartitionReader, partition: int) -> None:
        self.reader = reader
        self.partition = partition
        self.missing = 0
        """Recorded offsets the topic no longer had."""
        self._stream: AsyncIterator[tuple[int, bytes | None]] | None = None
        self._ahead: tuple[int, bytes | None] | None = None

    async def messages(self, value: bytes) -> list[dict[str, Any]]:
        """The parsed blocks messages one table value stands for."""
        document = orjson.loads(value)
        if "o" in document:
            return [orjson.loads(payload) for payload in await self._read(document["o"])]
        return document["b"] if "b" in document else [document]

    async def _read(self, offsets: list[int]) -> list[bytes]:
        """The payloads at ``offsets`` (ascending, and above any read before)."""
        payloads = []
        for offset in offsets:
            found = await self._at(offset)
            if found is None:
                self.missing += 1
            else:
                payloads.append(found)
        return payloads

    async def _at(self, offset: int) -> bytes | None:
        if self._stream is None:
            self._stream = aiter(self.reader(self.partition, offset))
        while True:
            if self._ahead is None:
                try:
                    self._ahead = await anext(self._stream)
                except StopAsyncIteration:
                    return None
            got, payload = self._ahead
            if got > offset:
                return None  # gone from the topic; ``got`` may be the next one asked for
            self._ahead = None
            if got == offset:
                return payload

    async def close(self) -> None:
        if self._stream is not None:
            await self._stream.aclose()  # type: ignore[attr-defined]
