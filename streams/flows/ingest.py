"""Ingest flow: decode each agency's incident events, forward the good, dead-letter the bad.

The agency topics carry one event per message, so ingest is where per-message costs
would multiply. Faust's stream machinery costs about 130 us per message on this machine
(PERFORMANCE.md: 7,600 events/s with an agent that only decodes), more than decoding,
validating and routing an event together. Ingest therefore runs as a task of the Faust
worker that reads the agency topics with aiokafka's batch API (``getmany``) in its own
consumer group (``<app_id>-ingest``), and pays every Kafka cost per batch:

1. collect fetches into one batch until it holds ``batch_size`` messages or
   ``ingest_linger_s`` has passed since its first message reached the broker
   (:func:`collect_batch`), so a trickle of events makes batches as few and as large as
   a backlog does, and no event waits for a batch much longer than the linger;
2. classify each (decode, validate); queue the accepted for ``incidents.accepted`` and
   the rejected for ``deadletters`` (raw identifiers: ``quarantine.<agency>``), route
   the batch into ``correlation.blocks`` messages and raise its border-zone alerts;
3. send everything the batch produced as one record batch per topic partition
   (:class:`~streams.flows.outbox.Outbox`), wait for the acknowledgements, then commit
   the batch's offsets.

Nothing is committed before its outputs are acknowledged, so a crash re-reads the batch
(at-least-once; every output has a deterministic id). A failed batch is retried from
its first offsets with backoff instead of being skipped. A record batch the consumer
cannot decode (a codec it lacks, a bad CRC) is not a failed batch: each of its offsets
is dead-lettered as ``undecodable`` and skipped (:mod:`xborder.undecodable`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from streams.flows.correlate import Router, publish_alerts, publish_blocks, source_id
from streams.flows.outbox import Outbox
from xborder import kafka_security
from xborder.codec import AvroCodec
from xborder.deadletter import SOURCE_HEADER, DeadLetter, route
from xborder.errors import InvalidRecordError, ServiceUnavailableError
from xborder.metrics import IngestMetrics
from xborder.pseudonym.detect import masked
from xborder.pseudonym.tokens import check_key_ids
from xborder.settings import Settings
from xborder.topics import Topics
from xborder.undecodable import GuardedFetch, Undecodable
from xborder.validation import EventRules

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Accepted:
    key: bytes | None
    value: bytes
    source: str
    """Position of the original message, topic[partition]@offset."""
    record_name: str
    decoded: dict[str, Any]


INCIDENT_RECORDS = frozenset(
    {"xborder.v1.IncidentReported", "xborder.v1.IncidentUpdated", "xborder.v1.IncidentClosed"}
)


def classify(
    codec: AvroCodec,
    rules: EventRules,
    key: bytes | None,
    value: bytes | None,
    topic: str,
    partition: int,
    offset: int,
    timestamp_ms: int,
    accepted_key_ids: frozenset[str] = frozenset(),
) -> Accepted | DeadLetter:
    """Decide what happens to one raw message: accepted as is, or a dead letter with a reason.

    Time rules are checked against the message's Kafka timestamp, not the wall clock,
    so a replay classifies every message exactly as the first run did.
    """
    max_bytes = rules.max_bytes
    position = f"{topic}[{partition}]@{offset}"
    if value is None:
        return DeadLetter(
            key, value, "undecodable", "empty message (tombstone)", topic, partition, offset
        )
    if len(value) > max_bytes:
        return DeadLetter(
            key,
            value,
            "oversized",
            f"{len(value)} bytes > limit {max_bytes}",
            topic,
            partition,
            offset,
        )
    try:
        decoded = codec.decode(value, logical_types=False)  # the rules and routing take ints
        if decoded.record_name not in INCIDENT_RECORDS:
            raise InvalidRecordError(
                f"{decoded.record_name} is not an incident event; only IncidentReported, "
                "IncidentUpdated and IncidentClosed belong on incidents.<agency>",
                reason="invalid",
            )
        agency = decoded.value.get("agency")
        if topic.rpartition("incidents.")[2] != agency:
            raise InvalidRecordError(
                f"agency {masked(agency)} published on {topic}; an agency writes only its "
                "own topic",
                reason="invalid",
            )
        rules.check_key(key)
        if rules.check_incident(decoded.value, timestamp_ms):  # raw identifiers redacted
            value = codec.encode(decoded.record_name, decoded.value)
        check_key_ids(decoded.value.get("subjects"), accepted_key_ids)  # unknown-key
    except InvalidRecordError as exc:
        return DeadLetter(key, value, exc.reason, str(exc), topic, partition, offset)
    return Accepted(key, value, position, decoded.record_name, decoded.value)


MAX_RETRY_BACKOFF_S = 30.0
FETCH_MAX_BYTES = 64 * 1024 * 1024
MAX_PARTITION_FETCH_BYTES = 8 * 1024 * 1024
FETCH_MIN_BYTES = 256 * 1024
"""Bytes a fetch waits for (up to half the linger) before the broker answers it."""
REPORT_INTERVAL_S = 30.0
"""How often the ingest task logs what its batch cycle did."""
PHASES = ("collect", "process", "flush", "commit")
IDLE_POLL_S = 1.0
"""How long one fetch waits while no batch has started (an idle worker's wake-up rate)."""


async def collect_batch(
    consumer: AIOKafkaConsumer | GuardedFetch, max_records: int, linger_s: float
) -> dict[TopicPartition, list[Any]]:
    """The next ingest batch: fetches joined until ``max_records`` messages or until
    ``linger_s`` after the first message arrived, whichever comes first.

    aiokafka returns a fetch as soon as any message is there, so at a steady trickle
    each fetch holds a handful of events; joining them is what makes the per-batch
    costs (a produce request per topic partition, a blocks message per correlation
    partition, a commit) independent of the arrival rate.

    A message's arrival is its broker append time where the topic keeps one (the agency
    topics do): the time it already waited (in the broker for a fetch, in the consumer
    while the previous batch was processed) counts against the linger. Under load, a
    batch therefore takes what is waiting and goes, instead of lingering again, and its
    size follows the processing time; idle, it is a linger from the first message; from
    a backlog (:func:`behind`), a linger from the first fetch, to fill it."""
    loop = asyncio.get_running_loop()
    batch: dict[TopicPartition, list[Any]] = {}
    count = 0
    deadline: float | None = None
    while count < max_records:
        if deadline is None:
            wait_s = IDLE_POLL_S
        else:
            wait_s = deadline - loop.time()
            if wait_s <= 0:
                break
        fetched = await consumer.getmany(
            timeout_ms=max(1, int(wait_s * 1000)), max_records=max_records - count
        )
        for tp, messages in fetched.items():
            batch.setdefault(tp, []).extend(messages)
            count += len(messages)
        if count and deadline is None:
            waited = 0.0 if behind(consumer, fetched) else waited_s(fetched.values(), linger_s)
            deadline = loop.time() + linger_s - waited
    return batch


def behind(
    consumer: AIOKafkaConsumer | GuardedFetch, fetched: Mapping[TopicPartition, Sequence[Any]]
) -> bool:
    """Whether more messages than ``fetched`` were already there: a partition's highwater
    (as its last fetch reported it) lies past the last message taken. Ingest is then
    working off a backlog, where every event is late already and full batches catch up
    fastest."""
    for tp, messages in fetched.items():
        if messages:
            highwater = consumer.highwater(tp)
            if highwater is not None and highwater > messages[-1].offset + 1:
                return True
    return False


LOG_APPEND_TIME = 1
"""Kafka's timestamp type of a message stamped by the broker when it appended it."""


def waited_s(fetched: Iterable[Sequence[Any]], limit_s: float) -> float:
    """How long the oldest of ``fetched`` (lists of consumer records) has been in the
    broker, by its append time, at most ``limit_s``; 0 for records stamped by their
    producer, whose clock (or a replay's old timestamps) says nothing of the arrival.
    Where the broker's clock runs behind this host's, a batch lingers less."""
    oldest_ms = min(
        (
            messages[0].timestamp
            for messages in fetched
            if messages and getattr(messages[0], "timestamp_type", None) == LOG_APPEND_TIME
        ),
        default=None,
    )
    if oldest_ms is None:
        return 0.0
    return min(limit_s, max(0.0, time.time() - oldest_ms / 1000))


ASSIGNED_LOG = "ingest partitions assigned"
"""Logged on every assignment of the ingest group: ``Pipeline.wait_until_settled`` counts it."""


class _LogAssignments(ConsumerRebalanceListener):
    def __init__(self, fetch: GuardedFetch) -> None:
        self.fetch = fetch

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        logger.info("ingest partitions revoked: %s", _names(revoked))
        self.fetch.forget(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        logger.info("%s: %s", ASSIGNED_LOG, _names(assigned))


def _names(partitions: set[TopicPartition]) -> list[str]:
    return sorted(f"{tp.topic}[{tp.partition}]" for tp in partitions)


@dataclass
class IngestLoop:
    """Reads the agency topics in batches and sends what each batch gives."""

    settings: Settings
    names: Topics
    codec: AvroCodec
    rules: EventRules
    router: Router | None = None

    def __post_init__(self) -> None:
        self.metrics = IngestMetrics()

    @functools.cached_property
    def accepted_key_ids(self) -> frozenset[str]:
        """Key ids a subject may carry (empty: any); others are dead-lettered as unknown-key."""
        accepted = self.settings.tokenizer.accepted_ids
        if not accepted:
            logger.info(
                "XBORDER_TOKENIZER__ACCEPTED_KEY_IDS is empty: subjects under any key id are "
                "accepted ('xborder keys show-ids' prints the line to set)"
            )
        return accepted

    def _consumer(self) -> AIOKafkaConsumer:
        worker = self.settings.worker
        return AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka.bootstrap_servers,
            **kafka_security.aiokafka(self.settings),
            client_id=f"{self.settings.kafka.client_id}-ingest",
            group_id=worker.ingest_group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=worker.batch_size,
            fetch_max_bytes=FETCH_MAX_BYTES,
            max_partition_fetch_bytes=MAX_PARTITION_FETCH_BYTES,
            # At a trickle, a fetch that returns as soon as one message is there makes a
            # request (and a response to parse) per few messages, on both sides. The broker
            # holds each fetch until a batch's worth of bytes or half the linger instead.
            fetch_min_bytes=FETCH_MIN_BYTES,
            fetch_max_wait_ms=max(1, int(worker.ingest_linger_s * 500)),
            session_timeout_ms=int(worker.session_timeout_s * 1000),
            heartbeat_interval_ms=int(worker.heartbeat_interval_s * 1000),
        )

    def _producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka.bootstrap_servers,
            **kafka_security.aiokafka(self.settings),
            client_id=f"{self.settings.kafka.client_id}-ingest",
            acks="all",
            linger_ms=5,
            max_batch_size=512 * 1024,  # well under the broker's 1 MB record-batch limit
            # the routed views are JSON that compresses about 2x: fewer bytes for the
            # broker to take, store and serve
            compression_type=self.settings.worker.compression_type,
        )

    async def run(self) -> None:
        """Consume until cancelled (the worker stopping).

        A batch's delivery (waiting for the broker's acknowledgements, then the commit)
        overlaps the collection of the next batch, which is mostly waiting too; the next
        batch is processed only once the previous one is delivered, so commits stay in
        order and a failed delivery is retried from its first offsets."""
        consumer = self._consumer()
        # a record batch the consumer cannot decode comes back as placeholders to
        # dead-letter instead of an exception that would crash-loop the worker
        fetch = GuardedFetch(
            consumer,
            self.settings.kafka.bootstrap_servers,
            f"{self.settings.kafka.client_id}-ingest",
            FETCH_MAX_BYTES,
            MAX_PARTITION_FETCH_BYTES,
        )
        consumer.subscribe(self.names.all_incidents, listener=_LogAssignments(fetch))
        producer = self._producer()
        await producer.start()
        await consumer.start()
        outbox = Outbox(producer)
        worker = self.settings.worker
        backoff = 0.5
        delivering: asyncio.Task[None] | None = None
        undelivered: dict[TopicPartition, int] = {}  # first offsets of the batch in delivery
        clock = asyncio.get_running_loop().time
        reported = clock()
        try:
            while True:
                started = clock()
                batch = await collect_batch(fetch, worker.batch_size, worker.ingest_linger_s)
                try:
                    if delivering is not None:
                        task, delivering = delivering, None
                        await task
                    undelivered = {}
                    collected = clock()  # with any wait for the previous batch's delivery
                    await self.process(batch, outbox)
                except (KafkaError, OSError, ServiceUnavailableError) as exc:
                    logger.error(
                        "ingest batch failed (%s: %s); retrying it in %.1f s",
                        type(exc).__name__,
                        exc,
                        backoff,
                    )
                    outbox.discard()
                    firsts = {tp: messages[0].offset for tp, messages in batch.items()}
                    for tp, offset in undelivered.items():
                        firsts[tp] = min(offset, firsts.get(tp, offset))
                    assigned = consumer.assignment()
                    for tp, offset in firsts.items():
                        if tp in assigned:  # a revoked partition's new owner re-reads it
                            fetch.seek(tp, offset)
                    undelivered = {}
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, MAX_RETRY_BACKOFF_S)
                    continue
                backoff = 0.5
                self._count(batch, collected - started, clock() - collected)
                undelivered = {tp: messages[0].offset for tp, messages in batch.items()}
                offsets = {tp: messages[-1].offset + 1 for tp, messages in batch.items()}
                delivering = asyncio.create_task(self._deliver(consumer, outbox, offsets))
                now = clock()
                if now - reported >= REPORT_INTERVAL_S:
                    self._report(now - reported)
                    reported = now
        finally:
            if delivering is not None:
                delivering.cancel()
            await consumer.stop()
            await fetch.close()
            await producer.stop()

    async def _deliver(
        self, consumer: AIOKafkaConsumer, outbox: Outbox, offsets: dict[TopicPartition, int]
    ) -> None:
        """Send what the batch queued, wait for the acknowledgements, commit its offsets."""
        clock = asyncio.get_running_loop().time
        started = clock()
        await outbox.flush()
        flushed = clock()
        try:
            await consumer.commit(offsets)
        except CommitFailedError as exc:
            # a rebalance took the partitions: their next owner re-reads the batch, whose
            # outputs are already sent (same ids, de-duplicated downstream)
            logger.warning("ingest commit lost to a rebalance: %s", exc)
        self.metrics.add_phase("flush", flushed - started)
        self.metrics.add_phase("commit", clock() - flushed)

    def _count(
        self, batch: Mapping[TopicPartition, Sequence[Any]], collect_s: float, process_s: float
    ) -> None:
        metrics = self.metrics
        metrics.batches += 1
        metrics.events += sum(len(messages) for messages in batch.values())
        metrics.add_phase("collect", collect_s)
        metrics.add_phase("process", process_s)

    def _report(self, interval_s: float) -> None:
        """One line on what the batch cycle did since the last report, then start over."""
        metrics = self.metrics
        if metrics.batches:
            logger.info(
                "ingest: %s events in %s batches over %.0f s (%.0f per batch); ms per batch: %s",
                metrics.events,
                metrics.batches,
                interval_s,
                metrics.events / metrics.batches,
                ", ".join(
                    # a delivery still running has not added its flush and commit yet
                    f"{name} {metrics.phase_s.get(name, 0.0) * 1000 / metrics.batches:.0f}"
                    for name in PHASES
                ),
            )
        metrics.batches = metrics.events = 0
        metrics.phase_s.clear()

    async def process(self, batch: Mapping[TopicPartition, Sequence[Any]], outbox: Outbox) -> None:
        """Classify, forward, dead-letter and route one batch into ``outbox`` (not yet
        flushed)."""
        names = self.names
        metrics = self.metrics
        accepted: list[tuple[str, str, dict[str, Any]]] = []
        for tp, messages in batch.items():
            source = source_id(tp.topic, tp.partition)
            for message in messages:
                if isinstance(message, Undecodable):  # logged once per batch when found
                    metrics.dead_letters["undecodable"] += 1
                    letter = DeadLetter(
                        None, None, "undecodable", message.error, tp.topic, tp.partition,
                        message.offset,
                    )  # fmt: skip
                    await outbox.send(names.dead_letters, None, None, None, None, letter.headers())
                    continue
                outcome = classify(
                    self.codec,
                    self.rules,
                    message.key,
                    message.value,
                    tp.topic,
                    tp.partition,
                    message.offset,
                    message.timestamp,
                    self.accepted_key_ids,
                )
                if isinstance(outcome, Accepted):
                    metrics.accepted[tp.topic] += 1
                    accepted.append((source, outcome.record_name, outcome.decoded))
                    await outbox.send(
                        names.accepted,
                        outcome.key,
                        outcome.value,
                        None,
                        None,
                        [(SOURCE_HEADER, outcome.source.encode())],
                    )
                else:
                    metrics.dead_letters[outcome.reason] += 1
                    logger.warning(
                        "%s rejected (%s): %s", outcome.position, outcome.reason, outcome.error
                    )
                    topic, letter = route(outcome, names)  # raw identifiers: quarantine
                    await outbox.send(topic, letter.key, letter.value, None, None, letter.headers())
        if self.router is not None and accepted:
            by_partition, progress, alerts = self.router.route(accepted)
            if progress:
                await publish_blocks(outbox, names, self.router.partitions, progress, by_partition)
            await publish_alerts(outbox, self.codec, names, alerts)


def register(
    app: faust.App,
    settings: Settings,
    names: Topics,
    codec: AvroCodec,
    rules: EventRules,
    router: Router | None = None,
) -> IngestMetrics:
    """Attach the ingest task to ``app``; returns its counters."""
    loop = IngestLoop(settings, names, codec, rules, router)

    @app.task
    async def ingest_incidents() -> None:
        try:
            await loop.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.exception("ingest stopped")
            await app.crash(exc)  # the worker exits; its supervisor restarts it

    return loop.metrics
