"""Joint verification from a duty officer's side: send verdicts, reports and releases, and
read back what the worker's case lifecycle made of them.

An agency writes its inputs (Avro Verdict, CaseReport, IncidentRelease) to its own topic
``verdicts.<agency>``, keyed by case id, with ``acks=all`` and idempotence. The lifecycle
publishes each accepted input on ``verification`` (keyed by case id; a verdict rewritten to
target the case) or dead-letters the original bytes with the rejection reason in the
headers (:mod:`xborder.deadletter`). :class:`VerificationClient` builds, checks and sends;
the ``*_record`` functions build the records without Kafka.

Reading back uses kafka-python consumers without a group (nothing is committed):

- :func:`wait_for_outcome` finds one input by its event_id on ``verification`` and the
  dead-letter topic. It reads from positions taken before the send
  (:func:`outcome_positions`), so it reads only what came after, however long the topics
  are, and cannot miss an outcome written between the send and the wait; without them it
  reads both topics from the beginning (to check an older input).
- :func:`find_case` and :func:`fold_cases` read ``cases`` (and ``verification``) from the
  beginning. They read Kafka, not ClickHouse, because in embedded mode the sink process
  holds the chDB directory and chDB allows one process.
"""

from __future__ import annotations

import copy
import dataclasses
import heapq
import logging
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from xborder import kafka_security
from xborder.agencies import AgenciesConfig, load_agencies
from xborder.case_fold import CaseFold, CaseSummary, resolve
from xborder.codec import AvroCodec
from xborder.deadletter import HEADER_ERROR, HEADER_REASON
from xborder.errors import (
    ConfigurationError,
    InvalidRecordError,
    ServiceUnavailableError,
    XborderError,
)
from xborder.kafka_admin import missing_topics
from xborder.pseudonym.detect import assert_token, find_identifier_in_text, quoted
from xborder.settings import Settings
from xborder.topics import Topics
from xborder.validation import check_verification_input

logger = logging.getLogger(__name__)

Decision = Literal["CONFIRM", "REJECT", "NEED_MORE_INFO"]
"""Verdict decisions (the Avro enum Decision)."""
InputRecord = Literal["Verdict", "CaseReport", "IncidentRelease"]
"""Records an agency sends for joint verification."""
SEND_TIMEOUT_S = 60.0
"""How long a send waits for the broker's acknowledgement."""
_POLL_S = 0.5


class VerificationTimeout(XborderError):
    """No outcome of an input, or no case, appeared in time; the worker may be down."""


@dataclass(frozen=True)
class Officer:
    """A deciding officer, pseudonymous: a 64-hex token and the id of the key behind it."""

    token: str
    key_id: str

    def __post_init__(self) -> None:
        assert_token(self.token, "officer_token")
        if not isinstance(self.key_id, str) or not self.key_id.strip():
            raise InvalidRecordError("officer_key_id: is empty; give the id of the token's key")
        if self.key_id != self.key_id.strip():
            raise InvalidRecordError("officer_key_id: has white space around the key id")


@dataclass(frozen=True)
class VerificationOutcome:
    """What the lifecycle did with one input: accepted (with the record it published) or
    rejected (with the dead letter's reason and message)."""

    event_id: str
    accepted: bool
    record_name: str
    """Short schema name of the input (Verdict, CaseReport, IncidentRelease)."""
    record: dict[str, Any]
    """The accepted record as published on ``verification``, or the rejected input."""
    position: str
    """topic[partition]@offset where the outcome was found."""
    reason: str | None = None
    """The lifecycle's reject reason (``case-pending``, ``not-involved``, ...)."""
    message: str | None = None
    """Readable: what is wrong and what to do."""
    conclusion: dict[str, Any] | None = None
    """The CaseConclusion this verdict completed, when it was already published."""

    def line(self) -> str:
        """One line for the officer: ``accepted: ...`` or ``rejected (reason): message``."""
        if not self.accepted:
            return f"rejected ({self.reason}): {self.message}"
        value = self.record
        what = {
            "Verdict": f"{value.get('decision')} by {value.get('agency')}",
            "CaseReport": f"report by {value.get('agency')}",
            "IncidentRelease": (
                f"release of {value.get('agency')} incident "
                f"{(value.get('incident') or {}).get('incident_id')} to "
                f"{', '.join(value.get('audience') or ())}"
            ),
        }.get(self.record_name, self.record_name)
        case_id = value.get("case_id") or value.get("target_id")
        text = f"accepted: {what} on case {case_id} (event {self.event_id})"
        if self.conclusion is not None:
            text += f"; case agreed, conclusion {self.conclusion['conclusion_id']}"
        return text


# -- records ------------------------------------------------------------------------------


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _case_id(case_id: str) -> str:
    if not isinstance(case_id, str) or not case_id.strip() or case_id != case_id.strip():
        raise InvalidRecordError(
            f"case_id: {quoted(case_id)} is not a case id; copy it from 'xborder cases list'"
        )
    return case_id


def _free_text(value: str, field_path: str, required: bool) -> str:
    """``value`` if it may be shared: not empty when ``required``, no personal identifier."""
    if not isinstance(value, str):
        raise InvalidRecordError(f"{field_path}: expected text, got {type(value).__name__}")
    if required and not value.strip():
        raise InvalidRecordError(f"{field_path}: is empty; say why, without personal identifiers")
    found = find_identifier_in_text(value)
    if found is not None:
        raise InvalidRecordError(
            f"{field_path}: {found}; free text must not identify anyone "
            "(refer to the incident or the case instead)",
            "raw-identifier",
        )
    return value


def _uuid(value: str, field_path: str) -> str:
    try:
        return str(uuid.UUID(value))
    except (ValueError, TypeError, AttributeError) as exc:
        raise InvalidRecordError(f"{field_path}: {quoted(value)} is not a UUID") from exc


def verdict_record(
    agency: str,
    case_id: str,
    decision: Decision,
    reason: str,
    officer: Officer,
    *,
    event_id: str | None = None,
    decided_at_ms: int | None = None,
) -> dict[str, Any]:
    """A Verdict about case ``case_id``; REJECT and NEED_MORE_INFO need a reason."""
    if decision not in ("CONFIRM", "REJECT", "NEED_MORE_INFO"):
        raise InvalidRecordError(
            f"decision: {decision!r} is not one of CONFIRM, REJECT, NEED_MORE_INFO"
        )
    return {
        "event_id": _uuid(event_id, "event_id") if event_id else str(uuid.uuid4()),
        "agency": agency,
        "target_kind": "CASE",
        "target_id": _case_id(case_id),
        "decision": decision,
        "reason": _free_text(reason, "reason", required=decision != "CONFIRM"),
        "officer_token": officer.token,
        "officer_key_id": officer.key_id,
        "decided_at": _now_ms() if decided_at_ms is None else decided_at_ms,
    }


def report_record(
    agency: str,
    case_id: str,
    conclusion: str,
    officer: Officer,
    *,
    conclusion_id: str | None = None,
    event_id: str | None = None,
    requested_at_ms: int | None = None,
) -> dict[str, Any]:
    """A CaseReport of the agreed conclusion; ``conclusion_id`` pins the conclusion read."""
    if conclusion_id is not None and not conclusion_id.strip():
        raise InvalidRecordError("conclusion_id: is empty; leave it out to report what is agreed")
    return {
        "event_id": _uuid(event_id, "event_id") if event_id else str(uuid.uuid4()),
        "agency": agency,
        "case_id": _case_id(case_id),
        "conclusion_id": conclusion_id,
        "conclusion": _free_text(conclusion, "conclusion", required=True),
        "officer_token": officer.token,
        "officer_key_id": officer.key_id,
        "requested_at": _now_ms() if requested_at_ms is None else requested_at_ms,
    }


RELEASED_FIELDS = (
    "occurred_at",
    "location",
    "category",
    "severity",
    "subjects",
    "modus_operandi",
    "narrative",
)
"""The fields of an incident event that a release carries as its details."""


def released_details(event: Mapping[str, Any]) -> dict[str, Any]:
    """The ReleasedDetails of an IncidentReported or IncidentUpdated event (as published,
    JSON or decoded): its time, place, category, severity, subjects with their descriptors,
    modus operandi and narrative. Edit the result to release less."""
    missing = [name for name in RELEASED_FIELDS[:4] if name not in event]
    if missing:
        raise InvalidRecordError(
            f"details: the event has no {', '.join(missing)}; give the IncidentReported or "
            "IncidentUpdated event whose details are released"
        )
    return {name: event[name] for name in RELEASED_FIELDS if name in event}


def release_record(
    agency: str,
    case_id: str,
    incident_id: str,
    incident_event_id: str,
    *,
    event_id: str | None = None,
    released_at_ms: int | None = None,
    details: Mapping[str, Any] | None = None,
    officer: Officer | None = None,
) -> dict[str, Any]:
    """An IncidentRelease of the agency's own incident ``incident_id`` to case ``case_id``
    (the audience is left empty: the lifecycle fills it in). ``details`` (see
    :func:`released_details`) travel with the release to the case's agencies; without
    them the release only names the event. ``officer``, who released it, goes to the
    audit."""
    if not isinstance(incident_id, str) or not incident_id.strip():
        raise InvalidRecordError("incident.incident_id: is empty; give the agency's incident id")
    record = {
        "event_id": _uuid(event_id, "event_id") if event_id else str(uuid.uuid4()),
        "agency": agency,
        "case_id": _case_id(case_id),
        "incident": {
            "agency": agency,
            "incident_id": incident_id,
            "event_id": _uuid(incident_event_id, "incident.event_id"),
        },
        "released_at": _now_ms() if released_at_ms is None else released_at_ms,
        "audience": [],
        "officer_token": "" if officer is None else officer.token,
        "officer_key_id": "" if officer is None else officer.key_id,
        "details": None if details is None else copy.deepcopy(dict(details)),
    }
    check_verification_input("IncidentRelease", record)  # raw identifiers: as the worker does
    return record


# -- sending ------------------------------------------------------------------------------


class VerificationClient:
    """Sends one agency's verification inputs; create once, call the methods many times.

    The officer (token and key id) is set once; a release records it when given. Each
    method builds the record with a new event_id (or the one given, to retry a send),
    encodes it (raises InvalidRecordError when it does not fit the schema), sends it keyed
    by case id and returns the event_id, which :func:`wait_for_outcome` looks for.
    """

    def __init__(
        self,
        settings: Settings,
        agencies: AgenciesConfig,
        codec: AvroCodec,
        agency_id: str,
        *,
        officer_token: str | None = None,
        officer_key_id: str | None = None,
    ) -> None:
        agencies.get(agency_id)  # fails early on an unknown agency
        self.officer = (
            None
            if officer_token is None and officer_key_id is None
            else Officer(officer_token or "", officer_key_id or "")
        )
        self.settings = settings
        self.codec = codec
        self.agency_id = agency_id
        self.topic = Topics.from_settings(settings, agencies).verdicts(agency_id)
        if missing_topics(settings, [self.topic]):
            raise ServiceUnavailableError(
                f"topic {self.topic} does not exist; create it with 'xborder topics create'"
            )
        try:
            self._producer = KafkaProducer(
                bootstrap_servers=settings.kafka.bootstrap_servers,
                **kafka_security.kafka_python(settings),
                client_id=f"{settings.kafka.client_id}-verify-{agency_id}",
                acks="all",
                enable_idempotence=True,
                linger_ms=5,
                request_timeout_ms=settings.kafka.request_timeout_ms,
            )
        except (KafkaError, OSError) as exc:
            raise _unreachable(settings, exc) from exc

    def _officer(self) -> Officer:
        if self.officer is None:
            raise ConfigurationError(
                "no officer given: verdicts and reports name the deciding officer; pass "
                "officer_token and officer_key_id (--officer-token, --officer-key-id)"
            )
        return self.officer

    def confirm(self, case_id: str, reason: str = "", *, event_id: str | None = None) -> str:
        """The agency confirms case ``case_id``; returns the verdict's event_id."""
        return self.verdict(case_id, "CONFIRM", reason, event_id=event_id)

    def reject(self, case_id: str, reason: str, *, event_id: str | None = None) -> str:
        """The agency rejects case ``case_id`` (the link is not real), saying why."""
        return self.verdict(case_id, "REJECT", reason, event_id=event_id)

    def need_info(self, case_id: str, reason: str, *, event_id: str | None = None) -> str:
        """The agency cannot decide yet; ``reason`` says what it needs."""
        return self.verdict(case_id, "NEED_MORE_INFO", reason, event_id=event_id)

    def verdict(
        self, case_id: str, decision: Decision, reason: str, *, event_id: str | None = None
    ) -> str:
        """Send a Verdict; returns its event_id."""
        value = verdict_record(
            self.agency_id, case_id, decision, reason, self._officer(), event_id=event_id
        )
        return self.send("Verdict", value)

    def report(
        self,
        case_id: str,
        conclusion: str,
        conclusion_id: str | None = None,
        *,
        event_id: str | None = None,
    ) -> str:
        """Ask to report the case's agreed conclusion to superiors; returns the event_id."""
        value = report_record(
            self.agency_id,
            case_id,
            conclusion,
            self._officer(),
            conclusion_id=conclusion_id,
            event_id=event_id,
        )
        return self.send("CaseReport", value)

    def release(
        self,
        case_id: str,
        incident_id: str,
        incident_event_id: str | None = None,
        *,
        event_id: str | None = None,
        event: Mapping[str, Any] | None = None,
    ) -> str:
        """Release the details of the agency's incident to the case's agencies.

        With ``event`` (the IncidentReported or IncidentUpdated event as the agency
        published it), the release names that event and carries its details, so the
        audience reads them on ``verification``; otherwise it names ``incident_event_id``,
        or the incident event the case linked (read from ``cases``), by reference only."""
        details = None
        if event is not None:
            details = released_details(event)
            if event.get("agency") != self.agency_id or event.get("incident_id") != incident_id:
                raise InvalidRecordError(
                    f"details: the event is {event.get('agency')}'s incident "
                    f"{event.get('incident_id')}, not {self.agency_id}'s {incident_id}"
                )
            incident_event_id = str(event.get("event_id", ""))
            if isinstance(details["occurred_at"], str):  # as published in JSON lines
                details = self.codec.from_json("ReleasedDetails", details)
        if incident_event_id is None:
            incident_event_id = incident_event_in_case(
                self.settings, self.codec, case_id, self.agency_id, incident_id
            )
        value = release_record(
            self.agency_id,
            case_id,
            incident_id,
            incident_event_id,
            event_id=event_id,
            details=details,
            officer=self.officer,
        )
        return self.send("IncidentRelease", value)

    def send(self, record_name: InputRecord, value: dict[str, Any]) -> str:
        """Encode ``value`` and send it keyed by its case id, waiting for the broker's
        acknowledgement; returns its event_id."""
        payload = self.codec.encode(record_name, value)
        key = str(value.get("case_id") or value["target_id"]).encode()
        try:
            self._producer.send(self.topic, key=key, value=payload).get(timeout=SEND_TIMEOUT_S)
        except KafkaError as exc:
            raise ServiceUnavailableError(f"sending to {self.topic} failed: {exc}") from exc
        logger.debug("sent %s %s to %s", record_name, value["event_id"], self.topic)
        return str(value["event_id"])

    def close(self) -> None:
        self._producer.close(timeout=30)

    def __enter__(self) -> VerificationClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- reading back -------------------------------------------------------------------------


def _unreachable(settings: Settings, exc: BaseException) -> ServiceUnavailableError:
    return ServiceUnavailableError(
        f"Kafka at {settings.kafka.bootstrap_servers} is not reachable "
        f"({type(exc).__name__}); start it with 'xborder kafka up' or set "
        "XBORDER_KAFKA__BOOTSTRAP_SERVERS"
    )


def _topics(settings: Settings) -> Topics:
    """Topic names of the deployment (the agencies config names the per-agency ones)."""
    return Topics.from_settings(settings, load_agencies(settings.agencies_config))


class _Reader:
    """Reads whole topics without a consumer group (nothing committed), from ``start``
    positions where given and from the beginning elsewhere."""

    def __init__(
        self,
        settings: Settings,
        topics: Sequence[str],
        start: Mapping[TopicPartition, int] | None = None,
    ) -> None:
        try:
            self.consumer = KafkaConsumer(
                bootstrap_servers=settings.kafka.bootstrap_servers,
                **kafka_security.kafka_python(settings),
                client_id=f"{settings.kafka.client_id}-verify-read",
                enable_auto_commit=False,
                request_timeout_ms=settings.kafka.request_timeout_ms,
            )
        except (KafkaError, OSError) as exc:
            raise _unreachable(settings, exc) from exc
        try:
            self.partitions = _partitions(self.consumer, topics)
            self.consumer.assign(self.partitions)
            self.end = dict(self.consumer.end_offsets(self.partitions))
            for tp in self.partitions:
                if start is not None and tp in start:
                    self.consumer.seek(tp, start[tp])
                else:
                    self.consumer.seek_to_beginning(tp)
        except BaseException:
            self.consumer.close(autocommit=False)
            raise

    def poll(self, timeout_s: float) -> dict[TopicPartition, list[Any]]:
        polled: dict[TopicPartition, list[Any]] = self.consumer.poll(
            timeout_ms=max(0, int(timeout_s * 1000))
        )
        return polled

    def caught_up(self) -> bool:
        """Every partition read up to its end when the reader started."""
        return all(self.consumer.position(tp) >= end for tp, end in self.end.items())

    def read_to_end(self) -> dict[TopicPartition, list[Any]]:
        """Every record up to the ends taken at start, per partition in offset order."""
        records: dict[TopicPartition, list[Any]] = {tp: [] for tp in self.partitions}
        while not self.caught_up():
            for tp, batch in self.poll(_POLL_S).items():
                records[tp] += [r for r in batch if r.offset < self.end[tp]]
        return records

    def close(self) -> None:
        self.consumer.close(autocommit=False)


def _partitions(consumer: KafkaConsumer, topics: Sequence[str]) -> list[TopicPartition]:
    partitions = []
    for topic in topics:
        found = consumer.partitions_for_topic(topic)
        if not found:
            raise ServiceUnavailableError(
                f"topic {topic} does not exist; create it with 'xborder topics create'"
            )
        partitions += [TopicPartition(topic, p) for p in sorted(found)]
    return partitions


def _decode(codec: AvroCodec, data: bytes | None, where: str) -> tuple[str, dict[str, Any]] | None:
    """(short record name, value) of a message; None (logged) when it cannot be read."""
    if data is None:
        return None
    try:
        decoded = codec.decode(data, logical_types=False)
    except InvalidRecordError as exc:
        logger.debug("%s: skipped, not a record of ours: %s", where, exc)
        return None
    return decoded.record_name.rpartition(".")[2], decoded.value


def _position(record: Any) -> str:
    return f"{record.topic}[{record.partition}]@{record.offset}"


def _outcome_topics(settings: Settings) -> list[str]:
    """``verification`` and the dead letters; in secure mode an agency may not read the
    shared dead letters (docs/security.md, "Kafka"), so it waits on ``verification`` only
    and a refused input shows as a timeout."""
    names = _topics(settings)
    if (
        kafka_security.is_secure(settings)
        and (settings.kafka.sasl_username or kafka_security.DEFAULT_PRINCIPAL)
        not in kafka_security.SUPER_USERS
    ):
        return [names.verification]
    return [names.verification, names.dead_letters]


def outcome_positions(settings: Settings) -> dict[TopicPartition, int]:
    """The current ends of ``verification`` and the dead-letter topic: take them before
    sending, pass them to :func:`wait_for_outcome` as ``since``."""
    reader = _Reader(settings, _outcome_topics(settings))
    try:
        return dict(reader.end)
    finally:
        reader.close()


def wait_for_outcome(
    settings: Settings,
    codec: AvroCodec,
    event_id: str,
    timeout_s: float,
    since: Mapping[TopicPartition, int] | None = None,
) -> VerificationOutcome:
    """Wait until the lifecycle accepted (``verification``) or rejected (dead letters) the
    input ``event_id``; reads from ``since`` (see :func:`outcome_positions`), else from the
    beginning. Raises VerificationTimeout after ``timeout_s``."""
    names = _topics(settings)
    needle = event_id.encode()  # Avro writes strings as raw UTF-8: a cheap filter first
    deadline = time.monotonic() + timeout_s
    reader = _Reader(settings, _outcome_topics(settings), since)
    found: VerificationOutcome | None = None
    conclusion: dict[str, Any] | None = None
    try:
        while True:
            remaining = deadline - time.monotonic()
            for batch in reader.poll(min(_POLL_S, max(remaining, 0))).values():
                for record in batch:
                    if record.value is None or needle not in record.value:
                        continue
                    decoded = _decode(codec, record.value, _position(record))
                    if decoded is None:
                        continue
                    name, value = decoded
                    if name == "CaseConclusion":
                        if any(v["event_id"] == event_id for v in value["verdicts"]):
                            conclusion = value
                    elif found is None and str(value.get("event_id")) == event_id:
                        found = _outcome(record, names, event_id, name, value)
                        # a confirmation may complete the case: read on to what is
                        # written now, so the conclusion is shown when it is there
                        reader.end = dict(reader.consumer.end_offsets(reader.partitions))
            if found is not None:
                if found.record_name != "Verdict" or conclusion is not None:
                    break
                if reader.caught_up() or remaining <= 0:
                    break
            elif remaining <= 0:
                raise VerificationTimeout(
                    f"no outcome of {event_id} on {names.verification} or "
                    f"{names.dead_letters} after {timeout_s:g} s; is the worker running "
                    "('xborder worker')? The input stays on the agency's verdicts topic and "
                    "is applied when the worker catches up: check with 'xborder cases show'"
                )
    finally:
        reader.close()
    if conclusion is not None and found.accepted:
        found = dataclasses.replace(found, conclusion=conclusion)
    return found


def _outcome(
    record: Any, names: Topics, event_id: str, name: str, value: dict[str, Any]
) -> VerificationOutcome:
    if record.topic == names.verification:
        return VerificationOutcome(event_id, True, name, value, _position(record))
    headers = {k: v for k, v in record.headers or ()}
    return VerificationOutcome(
        event_id,
        False,
        name,
        value,
        _position(record),
        reason=headers.get(HEADER_REASON, b"unknown").decode("utf-8", "replace"),
        message=headers.get(HEADER_ERROR, b"").decode("utf-8", "replace"),
    )


def _in_timestamp_order(records: Mapping[TopicPartition, list[Any]]) -> Iterator[Any]:
    """Records of several partitions merged by broker timestamp, each partition's own
    order kept (the order the worker wrote them, as near as the topics tell)."""
    return heapq.merge(*records.values(), key=lambda r: r.timestamp)


def _fold_topics(
    settings: Settings, codec: AvroCodec, topics: Sequence[str], fold: CaseFold | None = None
) -> CaseFold:
    fold = fold or CaseFold()
    reader = _Reader(settings, topics)
    try:
        records = reader.read_to_end()
    finally:
        reader.close()
    for record in _in_timestamp_order(records):
        decoded = _decode(codec, record.value, _position(record))
        if decoded is not None:
            fold.apply(*decoded)
    return fold


def fold_cases(settings: Settings, codec: AvroCodec) -> dict[str, CaseSummary]:
    """Every case of ``cases`` with its evidence (``correlations``), verification
    (``verification``) and escalations (``alerts.<agency>``), read to the end: by case id,
    merged ones included (``merged_into`` set)."""
    names = _topics(settings)
    topics = [names.correlations, names.cases, names.verification, *names.all_alerts]
    return _fold_topics(settings, codec, topics).cases


def incident_event_in_case(
    settings: Settings, codec: AvroCodec, case_id: str, agency: str, incident_id: str
) -> str:
    """event_id of the incident event through which the case stage linked ``agency``'s
    ``incident_id`` into case ``case_id`` (or the case that absorbed it)."""
    cases = _fold_topics(settings, codec, [_topics(settings).cases]).cases
    case = cases.get(resolve(cases, case_id))
    event_id = None if case is None else case.incidents.get((agency, incident_id))
    if event_id is None:
        raise InvalidRecordError(
            f"incident: {agency} incident {incident_id} is not in case {case_id}; check the ids "
            "with 'xborder cases show', or give the incident event's id (--incident-event-id)"
        )
    return event_id


def find_case(
    settings: Settings, codec: AvroCodec, agency: str, incident_id: str, timeout_s: float
) -> str:
    """The live case holding ``agency``'s incident ``incident_id`` (a case that was merged
    resolves to its survivor); waits up to ``timeout_s`` for one to appear."""
    deadline = time.monotonic() + timeout_s
    reader = _Reader(settings, [_topics(settings).cases])
    fold = CaseFold()
    try:
        while True:
            remaining = deadline - time.monotonic()
            for batch in reader.poll(min(_POLL_S, max(remaining, 0))).values():
                for record in batch:
                    decoded = _decode(codec, record.value, _position(record))
                    if decoded is not None:
                        fold.apply(*decoded)
            if reader.caught_up():
                holders = [
                    c
                    for c in fold.cases.values()
                    if c.merged_into is None and (agency, incident_id) in c.incidents
                ]
                if holders:
                    return max(holders, key=lambda c: c.sequence).case_id
            if remaining <= 0:
                raise VerificationTimeout(
                    f"no case holds {agency} incident {incident_id} on {_topics(settings).cases} "
                    f"after {timeout_s:g} s; was it published, and is the worker running "
                    "('xborder worker')? A case needs a cross-border link"
                )
    finally:
        reader.close()
