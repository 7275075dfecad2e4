"""Dead letters: what a rejected message carries so an operator can see why and replay it.

Most go to the shared ``deadletters`` topic. A message refused because it carries a raw
identifier (reason ``raw-identifier``), or a record refused for another reason whose
bytes hold one, goes instead to ``quarantine.<agency>`` of the agency that wrote it
(:func:`route`): only that agency reads it, and it keeps messages for a short time. Its
error text never quotes the value (:func:`xborder.pseudonym.detect.masked`).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from xborder.pseudonym.detect import RAW_IDENTIFIER, find_identifiers

if TYPE_CHECKING:
    from xborder.topics import Topics

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


_TEXT_BREAKS = re.compile(r"[\x00-\x1f\x7f\ufffd]+")
"""Where the text runs of Avro bytes end: lengths, numbers and other binary fields."""
_HEX_IDS = re.compile(r"[0-9a-fA-F]{32,}|[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")
"""Tokens and uuids: checked by the contract, and full of digit stretches."""


UNREAD_REASONS = frozenset({"undecodable", "unknown-schema", "oversized", "empty"})
"""Reasons of messages that were never read as records: their bytes are not swept (random
bytes hold digit runs that read as identifiers now and then)."""


def holds_raw_identifier(data: bytes | None) -> bool:
    """Whether the text runs of ``data`` (a key or Avro bytes) hold a phone, national ID
    number or plate: a dead letter refused for another reason may still carry one."""
    if not data:
        return False
    text = _HEX_IDS.sub(" ", data.decode("utf-8", "replace"))
    return any(find_identifiers(run) for run in _TEXT_BREAKS.split(text) if len(run) >= 6)


def route(letter: DeadLetter, topics: Topics) -> tuple[str, DeadLetter]:
    """Where ``letter`` goes, and what it carries there.

    A raw-identifier dead letter of an agency's own topic, or a record refused there for
    another reason whose key or bytes hold an identifier, goes whole to
    ``quarantine.<agency>``; one from another topic, where no single agency owns it, goes
    to ``deadletters`` without its key and bytes. Every other dead letter goes to
    ``deadletters`` as it is."""
    quarantined = letter.reason == RAW_IDENTIFIER or (
        letter.reason not in UNREAD_REASONS
        and (holds_raw_identifier(letter.key) or holds_raw_identifier(letter.value))
    )
    if not quarantined:
        return topics.dead_letters, letter
    agency = topics.agency_of_input(letter.topic)
    if agency is not None:
        return topics.quarantine(agency), letter
    return topics.dead_letters, dataclasses.replace(letter, key=None, value=None)
