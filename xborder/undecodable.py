"""Record batches a consumer cannot decode: find them, skip them, dead-letter their offsets.

aiokafka decompresses and checks a record batch only when ``getmany`` hands its records
out, and raises there without naming the partition or the offset: ``UnsupportedCodecError``
for a codec it has no library for or does not know, ``CorruptRecordException`` for a bad
CRC or record structure, the codec library's own error for a payload that does not
decompress. The position does not move, so every later call raises again, and the
records the failing call had already drained from other partitions are lost from it
while their positions moved on. A consumer that lets the error escape crash-loops.

:class:`GuardedFetch` wraps ``getmany``. When the call raises one of those errors, it

1. seeks every assigned partition back to where it stood before the call: the offset
   after the last record handed out, else the committed offset, else the beginning;
2. fetches from those positions raw (a Fetch request per leader, with the consumer's
   byte limits, so it sees at least the data the consumer saw) and decodes each record
   batch with aiokafka's own record classes, to find each partition's first batch that
   cannot be decoded;
3. takes the records before that batch through the consumer as usual, seeks past the
   batch, and returns one :class:`Undecodable` placeholder per offset the batch held,
   so the caller dead-letters each with its position and the error and commits past it.

This costs nothing while fetches decode; the raw fetch runs only after an error.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import zlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import cramjam
from aiokafka import AIOKafkaClient, AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CorruptRecordException, KafkaError, UnsupportedCodecError
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.record.memory_records import MemoryRecords

logger = logging.getLogger(__name__)

DECODE_ERRORS: tuple[type[Exception], ...] = (
    UnsupportedCodecError,
    CorruptRecordException,
    cramjam.DecompressionError,  # snappy, lz4, zstd payloads
    zlib.error,  # gzip payloads
    gzip.BadGzipFile,
    EOFError,
)
"""What ``getmany`` raises for a record batch it cannot decode."""

CODECS = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}
"""Kafka's codec ids (the low 3 bits of a record batch's attributes)."""
RETRY_PAUSE_S = 1.0
"""Pause after an error the raw fetch could not place (it may have been in transit)."""
RECOVER_TIMEOUT_S = 10.0
"""Longest the good records before an undecodable batch may take to come back."""


@dataclass(frozen=True)
class Undecodable:
    """Stands in for the record at ``offset`` of a record batch that cannot be decoded."""

    offset: int
    error: str
    key: None = None
    value: None = None
    timestamp: int = -1


@dataclass(frozen=True)
class BadBatch:
    """The first undecodable record batch of a partition, from ``first`` (at or after the
    fetch position) up to ``end`` (the offset after its last record)."""

    first: int
    end: int
    error: str


def scan(raw: bytes, start: int, position: str) -> tuple[int, BadBatch | None]:
    """Records at or after ``start`` before the first record batch of ``raw`` (a fetch
    response's record set) that cannot be decoded, and that batch if there is one."""
    records = MemoryRecords(raw)
    good = 0
    while records.has_next():
        batch = records.next_batch()
        try:
            if not batch.validate_crc():  # before iterating, which decompresses
                raise CorruptRecordException("CRC mismatch")
            offsets = [record.offset for record in batch]
        except Exception as exc:  # whatever the decoder raises, the consumer raises too
            codec = CODECS.get(batch.attributes & 0x07, "unknown")
            text = str(exc)  # aiokafka's errors start with their class name, others do not
            if not text.startswith(type(exc).__name__):
                text = f"{type(exc).__name__}: {text}"
            first = max(batch.base_offset, start)
            last = batch.next_offset - 1
            error = (
                f"{position}: record batch {batch.base_offset}..{last} ({codec}) cannot be "
                f"decoded ({text}); its offsets {first}..{last} are skipped"
            )
            return good, BadBatch(first, batch.next_offset, error)
        if not batch.is_control_batch:  # the consumer hands out no control records
            good += sum(1 for offset in offsets if offset >= start)
    return good, None


class GuardedFetch:
    """``getmany`` that returns :class:`Undecodable` placeholders for record batches the
    consumer cannot decode instead of raising (see the module docstring)."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        bootstrap_servers: str,
        client_id: str,
        fetch_max_bytes: int,
        max_partition_fetch_bytes: int,
    ) -> None:
        self.consumer = consumer
        self.bootstrap_servers = bootstrap_servers
        self.client_id = client_id
        self.fetch_max_bytes = fetch_max_bytes
        self.max_partition_fetch_bytes = max_partition_fetch_bytes
        self.next_offsets: dict[TopicPartition, int] = {}
        """Offset after the last record handed out, per partition, since its assignment."""
        self._client: AIOKafkaClient | None = None

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        """Drop what is known of revoked partitions (their next owner starts from the
        committed offsets)."""
        for tp in partitions:
            self.next_offsets.pop(tp, None)

    def highwater(self, tp: TopicPartition) -> int | None:
        """The consumer's last known highwater offset of ``tp`` (None before a fetch)."""
        return self.consumer.highwater(tp)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        """Move the consumer's position (use this instead of ``consumer.seek``)."""
        self.consumer.seek(tp, offset)
        self.next_offsets[tp] = offset

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[Any]]:
        """The consumer's ``getmany``, with undecodable batches replaced by placeholders."""
        try:
            fetched = await self.consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        except DECODE_ERRORS as exc:
            return await self.salvage(exc)
        for tp, records in fetched.items():
            if records:
                self.next_offsets[tp] = records[-1].offset + 1
        return fetched

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def salvage(self, exc: Exception) -> dict[TopicPartition, list[Any]]:
        """After ``getmany`` raised ``exc``: the records of each partition before its
        first undecodable batch, then a placeholder per offset of that batch."""
        starts = await self._starts()
        for tp, start in starts.items():
            self.seek(tp, start)  # also drops what the consumer buffered for it
        try:
            bad = await self._find_bad_batches(starts)
        except (TimeoutError, KafkaError, OSError) as error:
            logger.warning("reading the undecodable fetch raw failed: %r", error)
            bad = {}
        if not bad:
            logger.warning(
                "a fetch could not be decoded (%s: %s) and a raw read of the assigned "
                "partitions found no undecodable batch; reading them again in %.0f s",
                type(exc).__name__,
                exc,
                RETRY_PAUSE_S,
            )
            await asyncio.sleep(RETRY_PAUSE_S)
            return {}
        salvaged: dict[TopicPartition, list[Any]] = {}
        for tp, (good, batch) in bad.items():
            records = await self._take(tp, good)
            if len(records) < good:  # the consumer did not bring them back: read again
                logger.warning(
                    "%s[%s]: %s of %s records before an undecodable batch came back; reading again",
                    tp.topic,
                    tp.partition,
                    len(records),
                    good,
                )
                self.seek(tp, records[-1].offset + 1 if records else starts[tp])
                if records:
                    salvaged[tp] = records
                continue
            logger.warning("%s", batch.error)
            self.seek(tp, batch.end)
            salvaged[tp] = [
                *records,
                *(Undecodable(offset, batch.error) for offset in range(batch.first, batch.end)),
            ]
        return salvaged

    async def _starts(self) -> dict[TopicPartition, int]:
        """Where each assigned partition stood before the failed call. Retried until the
        coordinator answers: a partition whose records the call drained and lost must
        not be left past them."""
        consumer = self.consumer
        backoff = RETRY_PAUSE_S
        while True:
            try:
                starts: dict[TopicPartition, int] = {}
                for tp in consumer.assignment():
                    start = self.next_offsets.get(tp)
                    if start is None:
                        start = await consumer.committed(tp)
                    if start is None:
                        start = (await consumer.beginning_offsets([tp]))[tp]
                    starts[tp] = start
                return starts
            except KafkaError as exc:
                logger.warning("committed offsets unavailable (%r); again in %.0f s", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)

    async def _take(self, tp: TopicPartition, count: int) -> list[Any]:
        """The next ``count`` records of ``tp`` through the consumer (which stops handing
        out records, and so decoding, after ``count``)."""
        records: list[Any] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RECOVER_TIMEOUT_S
        while len(records) < count and loop.time() < deadline:
            try:
                fetched = await self.consumer.getmany(
                    tp, timeout_ms=500, max_records=count - len(records)
                )
            except DECODE_ERRORS:  # the broker's log changed under us: the caller reads again
                break
            records.extend(fetched.get(tp, []))
        if records:
            self.next_offsets[tp] = records[-1].offset + 1
        return records

    async def _find_bad_batches(
        self, starts: dict[TopicPartition, int]
    ) -> dict[TopicPartition, tuple[int, BadBatch]]:
        """Per partition with an undecodable batch after its start: the records before
        the batch, and the batch."""
        if self._client is None:
            self._client = AIOKafkaClient(
                bootstrap_servers=self.bootstrap_servers, client_id=f"{self.client_id}-salvage"
            )
            await self._client.bootstrap()
        client = self._client
        cluster = await client.fetch_all_metadata()
        by_leader: dict[int, dict[str, list[tuple[int, int, int]]]] = defaultdict(
            lambda: defaultdict(list)
        )
        for tp, start in starts.items():
            leader = cluster.leader_for_partition(tp)
            if leader is None or leader < 0:
                continue  # no leader now: the consumer cannot read it either
            by_leader[leader][tp.topic].append(
                (tp.partition, start, self.max_partition_fetch_bytes)
            )
        bad: dict[TopicPartition, tuple[int, BadBatch]] = {}
        for leader, topics in by_leader.items():
            request = FetchRequest(0, 1, self.fetch_max_bytes, 0, list(topics.items()))
            try:
                response = await client.send(leader, request)
            except KafkaError as exc:
                logger.warning("raw fetch from broker %s failed: %s", leader, exc)
                continue
            for topic, partitions in response.topics:
                for partition, error_code, _highwater, *data in partitions:
                    tp = TopicPartition(topic, partition)
                    if error_code or tp not in starts:
                        continue
                    good, batch = scan(data[-1], starts[tp], f"{topic}[{partition}]")
                    if batch is not None:
                        bad[tp] = (good, batch)
        return bad
