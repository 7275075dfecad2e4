"""The sink process: consume accepted events and the worker's outputs, write them to
ClickHouse, commit.

It reads ``incidents.accepted``, ``correlations``, ``cases`` and ``alerts.<agency>``
with aiokafka's batch API (``getmany``, large fetches) in its own consumer group, and
pays every cost per batch:

1. each fetched message is buffered per partition (:mod:`sinks.base`): as it is, when
   it was written with the current schema of its record (ClickHouse reads its Avro body
   itself, :mod:`sinks.avro`), else decoded into rows (:mod:`sinks.decode`,
   :mod:`sinks.rows`);
2. when the buffers hold ``batch_size`` items or the oldest has waited
   ``flush_interval_s``, they are taken and written, an insert or two per table
   (:mod:`sinks.clickhouse`), on a single ClickHouse thread: chDB and clickhouse-connect
   block, and the event loop keeps the group's heartbeats (and aiokafka's prefetching)
   going meanwhile;
3. only then are the batch's offsets committed.

A transient ClickHouse error drops the batch, seeks each of its partitions back to the
batch's first offset (the last committed one) and retries with backoff; a terminal one
stops the process with the reason. A commit the broker cannot take yet (restarting,
coordinator moving) is retried with backoff; a commit lost to a rebalance is logged,
and the partitions' new owner re-reads rows already written, which collapse by id
(at-least-once, idempotent rows). SIGTERM and SIGINT stop consuming, write and commit
what is buffered, and exit 0.

Nothing transient stops the sink: a broker or a ClickHouse it cannot reach at start-up
(an embedded directory held by another process, a server down) is waited for with
backoff and a log line per attempt, as are failed writes, fetches and commits later.
With ``group_instance_id`` set the sink is a static group member: restarted within the
session timeout, it gets its partitions back without a rebalance. A liveness watchdog
(:mod:`xborder.liveness`) exits with status 70 when the sink's partitions have lag while
its committed offsets stand still for ``stall_timeout_s`` and it is not knowingly
waiting: a hung consumer is restarted by its supervisor instead of idling unseen.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import uvloop
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from sinks.base import PartitionBuffer
from sinks.clickhouse import ClickHouseIncidentSink, Row
from sinks.decode import WriterSchemas
from sinks.rows import dead_letter_row, rows_for
from xborder import kafka_security
from xborder.agencies import load_agencies
from xborder.clickhouse import get_client
from xborder.deadletter import SOURCE_HEADER
from xborder.errors import InvalidRecordError, ServiceUnavailableError, TransientSinkError
from xborder.kafka_admin import ensure_topics
from xborder.liveness import Ownership, Watchdog
from xborder.metrics import SinkMetrics
from xborder.settings import Settings
from xborder.sql_http import start_sql_http
from xborder.topics import Topics
from xborder.wire import codec_for

logger = logging.getLogger(__name__)

MAX_BACKOFF_S = 30.0
IDLE_POLL_S = 0.5
"""Longest one fetch waits: how soon an idle sink notices a stop signal."""


class _TrackAssignments(ConsumerRebalanceListener):
    """Logs every assignment and keeps what the sink owns for the watchdog."""

    def __init__(self, runner: SinkRunner) -> None:
        self.runner = runner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        logger.info("sink partitions revoked: %s", _names(revoked))
        self.runner.owned = frozenset()

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        logger.info("sink partitions assigned: %s", _names(assigned))
        self.runner.owned = frozenset((tp.topic, tp.partition) for tp in assigned)


def _names(partitions: Any) -> list[str]:
    return sorted(f"{tp.topic}[{tp.partition}]" for tp in partitions)


class SinkRunner:
    """Owns the consumer, the ClickHouse client (on its own thread) and the batching sink."""

    def __init__(self, settings: Settings, on_stall: Callable[[str], None] | None = None) -> None:
        self.settings = settings
        self.on_stall = on_stall
        """What the watchdog does about a stall (default: log and exit with status 70)."""
        self.consumer: AIOKafkaConsumer | None = None
        self.topics = Topics.from_settings(settings, load_agencies(settings.agencies_config))
        self.codec = codec_for(settings)
        self.schemas = WriterSchemas(self.codec)
        self.metrics = SinkMetrics()
        self.stopping = asyncio.Event()
        self.skipped = 0
        self.owned: frozenset[tuple[str, int]] = frozenset()
        """Partitions assigned now (read by the watchdog's thread)."""
        self.waiting: str | None = None
        """What the sink is knowingly waiting for (ClickHouse, the broker), if anything."""

    def ownership(self) -> Ownership:
        return Ownership(self.owned, self.waiting)

    def stop(self) -> None:
        """Ask :meth:`run` to write and commit what is buffered, then return."""
        self.stopping.set()

    def _consumer(self) -> AIOKafkaConsumer:
        sink = self.settings.sink
        return AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka.bootstrap_servers,
            **kafka_security.aiokafka(self.settings),
            client_id=f"{self.settings.kafka.client_id}-sink",
            group_id=sink.group_id,
            group_instance_id=sink.group_instance_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=sink.batch_size,
            fetch_max_bytes=64 * 1024 * 1024,
            max_partition_fetch_bytes=8 * 1024 * 1024,
            # the broker holds a fetch until a flush's worth of bytes or half the flush
            # interval, instead of answering each produced batch with a fetch of its own
            fetch_min_bytes=sink.fetch_min_bytes,
            fetch_max_wait_ms=sink.fetch_max_wait_ms,
            session_timeout_ms=int(sink.session_timeout_s * 1000),
            heartbeat_interval_ms=int(sink.heartbeat_interval_s * 1000),
            request_timeout_ms=self.settings.kafka.request_timeout_ms,
        )

    async def run(self) -> None:
        """Consume until :meth:`stop`, then write and commit what is buffered."""
        loop = asyncio.get_running_loop()
        topics = self.topics.sunk()
        created = await self._until_available(
            "Kafka", lambda: loop.run_in_executor(None, ensure_topics, self.settings, topics)
        )
        if created is None:
            return
        # chDB and clickhouse-connect block: every ClickHouse call runs on this one thread
        with ThreadPoolExecutor(1, thread_name_prefix="clickhouse") as clickhouse:
            client = await self._until_available(
                "ClickHouse", lambda: loop.run_in_executor(clickhouse, get_client, self.settings)
            )
            if client is None:
                return
            sink = ClickHouseIncidentSink(
                client,
                self.schemas,
                self.settings.sink.batch_size,
                self.settings.sink.flush_interval_s,
                self.metrics,
                embedded=not self.settings.clickhouse.url,
            )
            watchdog = self._watchdog()
            consumer = None
            sql_http = start_sql_http(self.settings)  # analysts' SQL on this engine
            try:
                consumer = self.consumer = await self._start_consumer()
                if consumer is None:
                    return
                logger.info("sink consuming %s into ClickHouse", ", ".join(topics))
                if watchdog is not None:
                    watchdog.start()
                await self._consume(consumer, sink, clickhouse)
            finally:
                if watchdog is not None:
                    watchdog.stop()
                if consumer is not None:
                    await consumer.stop()
                if sql_http is not None:
                    sql_http.stop()
                await loop.run_in_executor(clickhouse, client.close)
                logger.info(
                    "sink stopped: %s rows written, %s undecodable skipped",
                    sum(self.metrics.rows_written.values()),
                    self.skipped + sink.skipped,
                )

    def _watchdog(self) -> Watchdog | None:
        stall_s = self.settings.sink.stall_timeout_s
        if not stall_s:
            return None
        return Watchdog(
            self.settings.kafka.bootstrap_servers,
            self.settings.sink.group_id,
            "sink",
            stall_s,
            self.ownership,
            on_stall=self.on_stall,
            security=kafka_security.kafka_python(self.settings),
        )

    async def _until_available(self, what: str, attempt: Any) -> Any:
        """``await attempt()`` until it does not raise ServiceUnavailableError; None when
        asked to stop meanwhile. Each failure is logged with its cause and fix."""
        backoff = self.settings.sink.retry_backoff_s
        failures = 0
        while not self.stopping.is_set():
            try:
                result = await attempt()
            except ServiceUnavailableError as exc:
                failures += 1
                self.waiting = what
                logger.warning("%s; retrying in %.1f s (attempt %s)", exc, backoff, failures)
                await self._sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                continue
            if failures:
                logger.info("%s available after %s failed attempts", what, failures)
            self.waiting = None
            return result
        return None

    async def _start_consumer(self) -> AIOKafkaConsumer | None:
        """A started consumer subscribed to the sunk topics; None when stopped meanwhile."""

        async def start() -> AIOKafkaConsumer:
            consumer = self._consumer()
            consumer.subscribe(self.topics.sunk(), listener=_TrackAssignments(self))
            try:
                await consumer.start()
            except KafkaError as exc:
                await consumer.stop()
                raise ServiceUnavailableError(
                    f"the sink cannot reach Kafka at {self.settings.kafka.bootstrap_servers}"
                    f" ({exc}); start it with 'xborder kafka up' or set "
                    "XBORDER_KAFKA__BOOTSTRAP_SERVERS"
                ) from exc
            return consumer

        consumer: AIOKafkaConsumer | None = await self._until_available("Kafka", start)
        return consumer

    async def _consume(
        self, consumer: AIOKafkaConsumer, sink: ClickHouseIncidentSink, clickhouse: Any
    ) -> None:
        backoff = self.settings.sink.retry_backoff_s
        while not self.stopping.is_set():
            due_in = sink.due_in()
            wait_s = IDLE_POLL_S if due_in is None else min(IDLE_POLL_S, due_in)
            try:
                fetched = await consumer.getmany(
                    timeout_ms=int(wait_s * 1000), max_records=self.settings.sink.batch_size
                )
            except KafkaError as exc:
                if not exc.retriable:
                    raise
                logger.warning("fetch failed (%s: %s); retrying", type(exc).__name__, exc)
                await self._sleep(self.settings.sink.retry_backoff_s)
                continue
            for tp, messages in fetched.items():
                self._buffer(sink, tp, messages)
            if sink.due():
                backoff = await self._flush(consumer, sink, clickhouse, backoff)
        while sink.buffered:  # a failed last write leaves nothing buffered: it is re-read
            backoff = await self._flush(consumer, sink, clickhouse, backoff)

    def _buffer(self, sink: ClickHouseIncidentSink, tp: TopicPartition, messages: Any) -> None:
        writer_of = self.schemas.writer
        topic, partition = tp.topic, tp.partition
        if topic == self.topics.dead_letters:  # headers and sizes only, never the bytes
            for message in messages:
                row = dead_letter_row(
                    message.headers, message.key, message.value, message.timestamp,
                    topic, partition, message.offset,
                )  # fmt: skip
                sink.add(tp, message.offset, Row("dead_letters", row))
            return
        for message in messages:
            offset: int = message.offset
            data: bytes | None = message.value
            try:
                if data is None:
                    raise InvalidRecordError("empty message (tombstone)", reason="undecodable")
                writer = writer_of(data)
                container = sink.container(writer)
                if container is not None:  # ClickHouse reads the body itself
                    if container.positioned:
                        source = source_position(message.headers, topic, partition, offset)
                        sink.add(tp, offset, (writer, data, *source))
                    else:
                        sink.add(tp, offset, (writer, data, topic, partition, offset))
                    continue
                record_name, value = self.schemas.decode(data, writer)
            except InvalidRecordError as exc:
                # The worker only forwards decodable events; reaching here means a schema
                # mismatch between worker and sink versions. Skip it loudly, keep going.
                self.skipped += 1
                logger.warning("%s[%s]@%s skipped: %s", topic, partition, offset, exc)
                sink.advance(tp, offset)
                continue
            rows = rows_for(
                record_name, value, *source_position(message.headers, topic, partition, offset)
            )
            if not rows:
                sink.advance(tp, offset)
            for table, row in rows:
                sink.add(tp, offset, Row(table, row))

    async def _flush(
        self,
        consumer: AIOKafkaConsumer,
        sink: ClickHouseIncidentSink,
        clickhouse: Any,
        backoff: float,
    ) -> float:
        """Write the buffers, then commit; returns the next backoff."""
        buffers = sink.take()
        try:
            await asyncio.get_running_loop().run_in_executor(
                clickhouse, sink.write_buffers, buffers
            )
        except TransientSinkError as exc:
            logger.warning("%s; rewinding, retrying in %.1f s", exc, backoff)
            self.waiting = "ClickHouse"
            self._rewind(consumer, buffers)
            await self._sleep(backoff)
            return min(backoff * 2, MAX_BACKOFF_S)
        if self.waiting == "ClickHouse":
            logger.info("ClickHouse writes succeed again")
        await self._commit(consumer, buffers)
        self.waiting = None
        return self.settings.sink.retry_backoff_s

    async def _commit(
        self, consumer: AIOKafkaConsumer, buffers: dict[TopicPartition, PartitionBuffer]
    ) -> None:
        """Commit the written batch, retrying while the broker cannot take it.

        aiokafka itself retries retriable errors (coordinator moving, connection lost)
        until the broker answers; the timeout bounds one attempt so a stop is noticed.
        """
        offsets = {tp: b.last_offset + 1 for tp, b in buffers.items()}
        backoff = self.settings.sink.retry_backoff_s
        timeout_s = self.settings.kafka.request_timeout_ms / 1000
        while True:
            assigned = consumer.assignment()
            lost = [tp for tp in offsets if tp not in assigned]
            if lost:
                logger.warning(
                    "commit of %s lost to a rebalance: their new owner re-reads rows "
                    "already written (same ids, collapsed by ClickHouse)",
                    _names(lost),
                )
                offsets = {tp: o for tp, o in offsets.items() if tp in assigned}
            if not offsets:
                return
            try:
                await asyncio.wait_for(consumer.commit(offsets), timeout_s)
                return
            except CommitFailedError as exc:
                logger.warning(
                    "commit lost to a rebalance (%s); the partitions' new owner re-reads "
                    "rows already written (same ids, collapsed by ClickHouse)",
                    exc,
                )
                return
            except (KafkaError, TimeoutError) as exc:
                if isinstance(exc, KafkaError) and not exc.retriable:
                    raise
                if self.stopping.is_set():
                    logger.error(
                        "stopping without committing %s (%s): the rows are written; the "
                        "next run re-reads them (same ids, collapsed by ClickHouse)",
                        _names(offsets),
                        type(exc).__name__,
                    )
                    return
                reason = (
                    f"no answer within {timeout_s:.0f} s"
                    if isinstance(exc, TimeoutError)
                    else f"{type(exc).__name__}: {exc}"
                )
                logger.warning("commit failed (%s); retrying in %.1f s", reason, backoff)
                self.waiting = "a commit"
                await self._sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)

    def _rewind(
        self, consumer: AIOKafkaConsumer, buffers: dict[TopicPartition, PartitionBuffer]
    ) -> None:
        """Seek each partition of a dropped batch back to the batch's first offset."""
        assigned = consumer.assignment()
        for tp, buffer in buffers.items():
            if tp in assigned:  # a revoked partition's new owner reads from the commit
                consumer.seek(tp, buffer.first_offset)

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake at once when asked to stop."""
        try:
            await asyncio.wait_for(self.stopping.wait(), seconds)
        except TimeoutError:
            pass


_ORIGINS: dict[bytes, str] = {}
"""Topic names seen in source headers, decoded once."""


def source_position(headers: Any, topic: str, partition: int, offset: int) -> tuple[str, int, int]:
    """Where the event was first published, from the worker's source header when present."""
    for name, value in headers or ():
        if name == SOURCE_HEADER:
            origin, _, rest = value.rpartition(b"[")
            part, _, off = rest.partition(b"]@")
            if origin and part.isdigit() and off.isdigit():
                origin_topic = _ORIGINS.get(origin)
                if origin_topic is None:
                    origin_topic = _ORIGINS[origin] = origin.decode("utf-8", "replace")
                return origin_topic, int(part), int(off)
    return topic, partition, offset


async def _run(runner: SinkRunner) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, _on_signal, runner, signum)
    await runner.run()


def _on_signal(runner: SinkRunner, signum: int) -> None:
    logger.info("signal %s received; flushing and stopping", signum)
    runner.stop()


def run_sink(settings: Settings) -> None:
    """Run the sink in the foreground until SIGTERM or SIGINT."""
    runner = SinkRunner(settings)
    started = time.monotonic()
    uvloop.run(_run(runner))
    logger.info("sink ran %.1f s", time.monotonic() - started)
