"""Joint verification flow: agency inputs and the clock join the case stage's log, and
the case lifecycle is applied in that one order.

The lifecycle (:mod:`streams.correlation.lifecycle`) needs a single order of its inputs
for its state to be reproducible: case events of the case stage, agencies' verdicts,
reports and releases, and the clock that makes verification overdue. The case stage
already has one: ``correlation.links``, a single-partition topic. So

1. **forward_inputs** (agent on every ``verdicts.<agency>``) checks that each message is
   a Verdict, CaseReport or IncidentRelease the codec can read and forwards its bytes,
   with its source position, to ``correlation.links``; anything else is dead-lettered
   there, at the door.
2. the **clock**: the worker that owns ``correlation.links`` writes the wall clock into it
   every ``XBORDER_VERIFICATION__TICK_S`` seconds. Escalations are due by wall-clock time
   (an overdue verification is a real-time duty, and event time stands still when the
   topics are quiet, which is when a case is forgotten); written into the log, that time
   becomes an input, so a replay of the log raises the same escalations at the same
   points whatever the clock says during the replay.
3. **build_cases** (the case stage's agent, :mod:`streams.flows.correlate`) applies each
   message in offset order: links through the case stage and its case events through the
   lifecycle; forwarded inputs and clock ticks through the lifecycle alone
   (:class:`LifecycleStage`).

Outputs: case events (STATUS_CHANGED, CONCLUDED) on ``cases``; the accepted inputs and
agreed conclusions on ``verification`` keyed by case id (a verdict about a correlation is
rewritten to name the case it counted for; a release carries its audience); escalation
alerts on the alert topics; every refused input on the dead-letter topic with the
lifecycle's reason, the original bytes and their position on ``verdicts.<agency>``.

State: the lifecycle's inputs that changed it (:attr:`LifecycleOutputs.log`) are stored in
a table of their own and replayed into a fresh machine after a restart or rebalance.
Unlike the case stage's links they are never evicted (the table grows with the number of
verification inputs, see docs/scaling.md); the machine's memory is bounded by its case
retention (``XBORDER_VERIFICATION__CASE_RETENTION_HOURS``): a case no input reached for
that long expires, and a replay expires it at the same tick.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from streams.correlation.lifecycle import CaseLifecycle, LifecycleConfig, Outcome
from xborder.codec import AvroCodec, Decoded
from xborder.deadletter import DeadLetter
from xborder.errors import InvalidRecordError
from xborder.topics import Topics
from xborder.validation import check_verification_input

log = logging.getLogger(__name__)

INPUT_RECORDS = frozenset(
    {"xborder.v1.Verdict", "xborder.v1.CaseReport", "xborder.v1.IncidentRelease"}
)
"""What an agency may write on its verdict topic."""


def encode_input(topic: str, partition: int, offset: int, key: bytes | None, value: bytes) -> bytes:
    """The ``correlation.links`` message forwarding one agency input with its position."""
    return orjson.dumps(
        {
            "input": {
                "topic": topic,
                "partition": partition,
                "offset": offset,
                "key": None if key is None else base64.b64encode(key).decode(),
                "value": base64.b64encode(value).decode(),
            }
        }
    )


def encode_tick(now_ms: int) -> bytes:
    """The ``correlation.links`` message carrying the wall clock to the lifecycle."""
    return orjson.dumps({"tick": now_ms})


def is_lifecycle_message(message: Mapping[str, Any]) -> bool:
    """Whether a parsed ``correlation.links`` message is for the lifecycle alone."""
    return "input" in message or "tick" in message


@dataclass(frozen=True)
class ForwardedInput:
    """An agency input as forwarded: where it was written, its key and bytes."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes

    @classmethod
    def parse(cls, message: Mapping[str, Any]) -> ForwardedInput:
        """From the ``input`` part of a links message; raises ValueError/KeyError/TypeError
        when it is malformed (a forged internal message)."""
        body = message["input"]
        topic, partition, offset = body["topic"], body["partition"], body["offset"]
        if not (type(topic) is str and type(partition) is int and type(offset) is int):
            raise ValueError("a forwarded input needs a topic name and integer position")
        key = body.get("key")
        return cls(
            topic,
            partition,
            offset,
            None if key is None else base64.b64decode(key, validate=True),
            base64.b64decode(body["value"], validate=True),
        )

    def dead_letter(self, reason: str, error: str) -> DeadLetter:
        return DeadLetter(
            self.key, self.value, reason, error, self.topic, self.partition, self.offset
        )


def read_input(
    codec: AvroCodec, names: Topics, topic: str, value: bytes | None
) -> tuple[str, Decoded] | tuple[str, str]:
    """A message of a verdict topic as (source agency, decoded lifecycle input), or why it
    is not one as (reason, error); tell them apart with ``isinstance(result[1], str)``."""
    agency = names.agency_of_verdicts(topic)
    if agency is None:
        return "unknown-topic", f"{topic} is not the verdict topic of a configured agency"
    if not value:
        return "empty", "an empty message carries no verdict, report or release"
    try:
        decoded = codec.decode(value, logical_types=False)
    except InvalidRecordError as exc:
        return exc.reason, str(exc)
    if decoded.record_name not in INPUT_RECORDS:
        return (
            "unexpected-record",
            f"{decoded.record_name} is not read from {topic}: an agency writes Verdict, "
            "CaseReport or IncidentRelease records there",
        )
    try:
        check_verification_input(decoded.record_name, decoded.value)  # raw identifiers
    except InvalidRecordError as exc:
        return exc.reason, str(exc)
    return agency, decoded


def check_input(
    codec: AvroCodec, names: Topics, topic: str, value: bytes | None
) -> tuple[str, str] | None:
    """Why a message on ``topic`` (a verdict topic) is not a lifecycle input, as (reason,
    error); None when it is one."""
    reason, result = read_input(codec, names, topic, value)
    return (reason, result) if isinstance(result, str) else None


@dataclass
class LifecycleOutputs:
    """What the lifecycle produced for one stage batch, in order."""

    case_events: list[dict[str, Any]] = field(default_factory=list)
    """CaseEvent records (STATUS_CHANGED, CONCLUDED) for ``cases``; ``sequence`` unset."""
    verification: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    """(record name, case id, value) for ``verification``, keyed by the case id."""
    alerts: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[DeadLetter] = field(default_factory=list)
    log: list[list[Any]] = field(default_factory=list)
    """JSON-able entries of the inputs that changed the state, for :meth:`LifecycleStage.replay`."""
    accepted: int = 0
    """Agency inputs applied."""
    expired: int = 0
    """Cases expired by the clock."""


def chunk_log(entries: Sequence[Any], max_bytes: int = 512 * 1024) -> list[bytes]:
    """Log entries as JSON lists of at most ``max_bytes`` each (a larger entry alone), in
    order; table values stay well under the changelog's record size limit."""
    chunks: list[bytes] = []
    encoded: list[bytes] = []
    size = 1  # "[", then each entry and its "," or "]"
    for entry in entries:
        text = orjson.dumps(entry)
        if encoded and size + len(text) + 1 > max_bytes:
            chunks.append(b"[" + b",".join(encoded) + b"]")
            encoded, size = [], 1
        encoded.append(text)
        size += len(text) + 1
    if encoded:
        chunks.append(b"[" + b",".join(encoded) + b"]")
    return chunks


class LifecycleStage:
    """The case lifecycle fed from the case stage's log (see the module docstring)."""

    def __init__(
        self, codec: AvroCodec, names: Topics, config: LifecycleConfig | None = None
    ) -> None:
        self.codec = codec
        self.names = names
        self.machine = CaseLifecycle(config)

    def case_events(self, events: Sequence[dict[str, Any]], out: LifecycleOutputs) -> None:
        """Fold the case stage's events (``sequence`` already set) into the lifecycle."""
        for event in events:
            outcome = self.machine.apply_case_event(event)
            if not outcome.duplicate:
                out.log.append(["c", event])
            self._collect(outcome, out)

    def agency_input(self, forwarded: ForwardedInput, out: LifecycleOutputs) -> None:
        """Apply one forwarded input; a refused one becomes a dead letter."""
        source_agency, decoded = read_input(
            self.codec, self.names, forwarded.topic, forwarded.value
        )
        if isinstance(decoded, str):
            out.rejected.append(forwarded.dead_letter(source_agency, decoded))
            return
        value = decoded.value
        outcome = self.machine.apply_record(decoded.record_name, value, source_agency)
        if outcome.rejection is not None:
            rejection = outcome.rejection
            out.rejected.append(forwarded.dead_letter(rejection.reason, rejection.message))
            return
        if outcome.duplicate:
            return
        out.accepted += 1
        out.log.append(["i", decoded.record_name, value, source_agency])
        short = decoded.record_name.rpartition(".")[2]
        if short == "Verdict":
            case_id = self.machine.case_for_target(value["target_kind"], value["target_id"])
            if case_id is not None:  # accepted, so it counted for a live case
                accepted = dict(value, target_kind="CASE", target_id=case_id)
                out.verification.append(("Verdict", case_id, accepted))
        elif short == "CaseReport":
            # the accepted copy names the conclusion it reported, pinned or not
            case_id = self.machine.resolve(value["case_id"]) or value["case_id"]
            accepted = dict(value, case_id=case_id)
            accepted["conclusion_id"] = self.machine.conclusion_id(case_id)
            out.verification.append(("CaseReport", case_id, accepted))
        self._collect(outcome, out)

    def tick(self, now_ms: int, out: LifecycleOutputs) -> None:
        """The wall clock reached ``now_ms``: raise the escalations that are due and expire
        the cases no input reached for the retention."""
        advance = self.machine.advance(now_ms)
        if advance.changed:
            out.log.append(["t", now_ms])
        if advance.expired:
            waiting = sum(s in ("PENDING_VERIFICATION", "DISPUTED") for _, s in advance.expired)
            out.expired += len(advance.expired)
            log.info(
                "case lifecycle: %d cases expired after %g h without news (%d still waiting "
                "for verification, each with a last escalation alert); %d cases live",
                len(advance.expired),
                self.machine.config.case_retention_ms / 3_600_000,
                waiting,
                self.machine.case_count,
            )
        self._collect(Outcome(advance.emitted), out)

    def replay(self, entries: Sequence[Sequence[Any]]) -> int:
        """Apply logged entries again (outputs were sent before); returns how many."""
        for entry in entries:
            if entry[0] == "c":
                self.machine.apply_case_event(entry[1])
            elif entry[0] == "i":
                self.machine.apply_record(entry[1], entry[2], entry[3])
            elif entry[0] == "t":
                self.machine.advance(entry[1])
            else:
                raise ValueError(f"unknown lifecycle log entry {entry[0]!r}")
        return len(entries)

    @staticmethod
    def _collect(outcome: Outcome, out: LifecycleOutputs) -> None:
        for emit in outcome.emitted:
            if emit.record == "CaseEvent":
                out.case_events.append(emit.value)
            elif emit.record == "Alert":
                out.alerts.append(emit.value)
            else:
                out.verification.append((emit.record, emit.key, emit.value))
