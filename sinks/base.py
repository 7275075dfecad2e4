"""A batching sink: one buffer per topic-partition, one abstract ``write``.

The runner adds decoded items; when a buffer is due it takes every buffer
(:meth:`BatchingSink.take`, which drops them from the sink whatever happens next) and
writes them (:meth:`BatchingSink.write_buffers`); :meth:`BatchingSink.flush` does
both. Offsets are committed by the runner only after a successful write; after a
failed one it seeks back to the first offset of each dropped buffer, so nothing is
lost and nothing is skipped.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition


@dataclass
class PartitionBuffer:
    """Items of one topic-partition waiting to be written, with their offset range."""

    first_offset: int
    last_offset: int
    items: list[Any] = field(default_factory=list)


class BatchingSink(abc.ABC):
    """Buffers items per partition and writes them in batches."""

    def __init__(self, batch_size: int, flush_interval_s: float) -> None:
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self._buffers: dict[TopicPartition, PartitionBuffer] = {}
        self._oldest = 0.0
        self._pending = 0

    def add(self, tp: TopicPartition, offset: int, item: Any) -> None:
        """Buffer one item read at ``tp``@``offset``."""
        buffer = self._buffers.get(tp)
        if buffer is None:
            if not self._buffers:
                self._oldest = time.monotonic()
            buffer = self._buffers[tp] = PartitionBuffer(offset, offset)
        buffer.items.append(item)
        buffer.last_offset = offset
        self._pending += 1

    def extend(
        self, tp: TopicPartition, first_offset: int, last_offset: int, items: list[Any]
    ) -> None:
        """Buffer the items of the messages read at ``tp`` from ``first_offset`` to
        ``last_offset`` (messages of that range that make no item included): one call per
        partition and fetch instead of one per message. ``items`` becomes the sink's.

        Items from an offset the buffer already holds mean the consumer reads the partition
        again from its last commit (assigned anew): the buffer starts over from there."""
        buffer = self._buffers.get(tp)
        if buffer is not None and first_offset <= buffer.last_offset:
            self._pending -= len(buffer.items)
            buffer = self._buffers[tp] = PartitionBuffer(first_offset, last_offset, items)
            self._pending += len(items)
            return
        if buffer is None:
            if not self._buffers:
                self._oldest = time.monotonic()
            self._buffers[tp] = PartitionBuffer(first_offset, last_offset, items)
        else:
            buffer.items.extend(items)
            buffer.last_offset = last_offset
        self._pending += len(items)

    def advance(self, tp: TopicPartition, offset: int) -> None:
        """Note a message consumed that produces no row (so its offset can be committed)."""
        buffer = self._buffers.get(tp)
        if buffer is None:
            if not self._buffers:
                self._oldest = time.monotonic()
            self._buffers[tp] = PartitionBuffer(offset, offset)
        else:
            buffer.last_offset = offset

    @property
    def pending(self) -> int:
        """Items buffered over all partitions."""
        return self._pending

    def due(self) -> bool:
        """True when a buffer is full or the oldest item has waited the flush interval."""
        if not self._buffers:
            return False
        return (
            self.pending >= self.batch_size
            or time.monotonic() - self._oldest >= self.flush_interval_s
        )

    def due_in(self) -> float | None:
        """Seconds until the oldest item has waited the flush interval; None when empty."""
        if not self._buffers:
            return None
        return max(0.0, self._oldest + self.flush_interval_s - time.monotonic())

    @property
    def buffered(self) -> bool:
        """True while a consumed message is neither written nor dropped."""
        return bool(self._buffers)

    def take(self) -> dict[TopicPartition, PartitionBuffer]:
        """Remove and return every buffer: the next write's batch."""
        buffers, self._buffers = self._buffers, {}
        self._pending = 0
        return buffers

    def drop(self, partitions: Collection[TopicPartition]) -> dict[TopicPartition, PartitionBuffer]:
        """Remove and return the buffers of ``partitions`` (revoked: their new owner reads
        them from the last commit)."""
        dropped = {tp: b for tp in partitions if (b := self._buffers.pop(tp, None)) is not None}
        self._pending -= sum(len(b.items) for b in dropped.values())
        return dropped

    def write_buffers(self, buffers: dict[TopicPartition, PartitionBuffer]) -> None:
        """Write the items of ``buffers`` (from :meth:`take`) as one batch."""
        items = [item for b in buffers.values() for item in b.items]
        if items:
            self.write(items, buffers)

    def flush(self) -> dict[TopicPartition, PartitionBuffer]:
        """Write all buffers and drop them; returns them so the caller can commit or rewind.

        Raises whatever :meth:`write` raises; the buffers are dropped either way.
        """
        buffers = self.take()
        self.write_buffers(buffers)
        return buffers

    @abc.abstractmethod
    def write(self, items: Sequence[Any], buffers: dict[TopicPartition, PartitionBuffer]) -> None:
        """Write one batch; raise TransientSinkError to retry it, anything else to stop."""
