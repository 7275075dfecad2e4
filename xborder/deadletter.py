"""Dead letters: what a rejected message carries so an operator can see why and replay it."""

from __future__ import annotations

from dataclasses import dataclass

SOURCE_HEADER = "xborder-source"
"""Header the worker puts on forwarded events: original topic[partition]@offset."""
HEADER_REASON = "xborder-dlq-reason"
HEADER_ERROR = "xborder-dlq-error"
HEADER_TOPIC = "xborder-dlq-topic"
HEADER_PARTITION = "xborder-dlq-partition"
HEADER_OFFSET = "xborder-dlq-offset"
MAX_ERROR_LEN = 1000


@dataclass(frozen=True)
class DeadLetter:
    """One rejected message: the original key and bytes, and where and why it failed."""

    key: bytes | None
    value: bytes | None
    reason: str
    error: str
    topic: str
    partition: int
    offset: int

    def headers(self) -> list[tuple[str, bytes]]:
        """Kafka headers naming the reason, the error text and the source position."""
        return [
            (HEADER_REASON, self.reason.encode()),
            (HEADER_ERROR, self.error[:MAX_ERROR_LEN].encode("utf-8", "replace")),
            (HEADER_TOPIC, self.topic.encode()),
            (HEADER_PARTITION, str(self.partition).encode()),
            (HEADER_OFFSET, str(self.offset).encode()),
        ]

    @property
    def position(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"
