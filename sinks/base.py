"""A batching sink: one buffer per topic-partition, one abstract ``write``.

The runner adds decoded items; when a buffer is due it calls :meth:`BatchingSink.flush`,
which writes every buffer and then drops it whatever the outcome. Offsets are
committed by the runner only after a successful write; after a failed one it seeks
back to the first buffered offset, so nothing is lost and nothing is skipped.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kafka import TopicPartition


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

    def add(self, tp: TopicPartition, offset: int, item: Any) -> None:
        """Buffer one item read at ``tp``@``offset``."""
        buffer = self._buffers.get(tp)
        if buffer is None:
            if not self._buffers:
                self._oldest = time.monotonic()
            buffer = self._buffers[tp] = PartitionBuffer(offset, offset)
        buffer.items.append(item)
        buffer.last_offset = offset

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
        return sum(len(b.items) for b in self._buffers.values())

    def due(self) -> bool:
        """True when a buffer is full or the oldest item has waited the flush interval."""
        if not self._buffers:
            return False
        return (
            self.pending >= self.batch_size
            or time.monotonic() - self._oldest >= self.flush_interval_s
        )

    def flush(self) -> dict[TopicPartition, PartitionBuffer]:
        """Write all buffers and drop them; returns them so the caller can commit or rewind.

        Raises whatever :meth:`write` raises; the buffers are dropped either way.
        """
        buffers, self._buffers = self._buffers, {}
        items = [item for b in buffers.values() for item in b.items]
        if items:
            self.write(items, buffers)
        return buffers

    @abc.abstractmethod
    def write(self, items: Sequence[Any], buffers: dict[TopicPartition, PartitionBuffer]) -> None:
        """Write one batch; raise TransientSinkError to retry it, anything else to stop."""
