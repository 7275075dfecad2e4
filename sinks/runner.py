"""The sink process: consume accepted events and the worker's outputs, write them to
ClickHouse, commit.

It reads ``incidents.accepted``, ``correlations``, ``cases`` and ``alerts.<agency>`` in
its own consumer group with confluent-kafka's ``Consumer`` (librdkafka), a batch
``consume()`` at a time, and pays every cost per batch:

1. each fetched message is buffered per partition (:mod:`sinks.base`, one call per
   partition and fetch): as it is, when it was written with the current schema of its
   record (ClickHouse reads its Avro body itself, :mod:`sinks.avro`), else decoded into
   rows (:mod:`sinks.decode`, :mod:`sinks.rows`);
2. when the buffers hold ``batch_size`` items or the oldest has waited
   ``flush_interval_s``, they are taken and written, an insert or two per table
   (:mod:`sinks.clickhouse`), on a single ClickHouse thread: chDB and clickhouse-connect
   block. Meanwhile the event loop goes on consuming the next batch (one write in flight
   at most: the next is taken only when the previous one is written and committed);
3. only then are the batch's offsets committed.

Why librdkafka (issue 11 asked to fix the client or move to one that holds up): aiokafka
builds a Python record object per message and runs its fetcher, coordinator and
heartbeats on the event loop, competing with the sink's own work; a profile of the
sink draining a backlog found a quarter of its time in aiokafka's consumer. librdkafka
fetches, decompresses (none, gzip, snappy, lz4, zstd), heartbeats and rejoins on threads
of its own, in C, and ``consume(n)`` hands over a whole batch in one call. Its calls
block, so every call of the consumer runs on one thread of its own (:class:`SinkConsumer`,
which also keeps them in order); rebalance callbacks run there, inside ``consume()``.
librdkafka's log lines go through Python logging (logger ``librdkafka``): its warnings
and errors as warnings, the rest at debug; connection failures, which it also reports as
errors, are logged by the sink once per outage (again at most every 30 s).

A transient ClickHouse error drops the batch (and what was consumed meanwhile), seeks
each of its partitions back to the batch's first offset (the last committed one) and
retries with backoff; a terminal one stops the process with the reason. A commit the
broker cannot take yet (restarting, coordinator moving) is retried with backoff; a commit
lost to a rebalance is logged, and the partitions' new owner re-reads rows already
written, which collapse by id (at-least-once, idempotent rows). The buffers of revoked
partitions are dropped unwritten and never committed: their new owner reads them from
the last commit. SIGTERM and SIGINT stop consuming, write and commit what is buffered,
and exit 0.

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
import contextlib
import gc
import logging
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import uvloop
from aiokafka import TopicPartition
from confluent_kafka import Consumer, KafkaError, KafkaException, Message
from confluent_kafka import TopicPartition as KafkaPartition

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
librdkafka_logger = logging.getLogger("librdkafka")

MAX_BACKOFF_S = 30.0
IDLE_POLL_S = 0.5
"""Longest one fetch waits: how soon an idle sink notices a stop signal."""
WRITING_POLL_S = 0.02
"""Longest one fetch waits while a write is in flight: the consumer's calls run in turn on
its thread, so the write's commit waits for the fetch before it."""
MAX_CONSUME = 1_000_000
"""Most messages librdkafka's ``consume()`` takes in one call."""
REPEAT_LOG_S = 30.0
"""The same client error is logged again after this long at the earliest."""

REBALANCED = frozenset(
    {
        KafkaError.REBALANCE_IN_PROGRESS,
        KafkaError.ILLEGAL_GENERATION,
        KafkaError.UNKNOWN_MEMBER_ID,
        KafkaError._ASSIGNMENT_LOST,
        KafkaError._MAX_POLL_EXCEEDED,
    }
)
"""Commit errors that mean the partitions may belong to another member now."""
TRANSIENT = frozenset(
    {
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._TIMED_OUT,
        KafkaError._WAIT_COORD,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError.NETWORK_EXCEPTION,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.BROKER_NOT_AVAILABLE,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
    }
)
"""Errors a retry can outlive, besides those librdkafka marks retriable."""
CONNECTION = frozenset({KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN})
"""Errors librdkafka reports both in its log and to the error callback."""


Failed = tuple[dict[TopicPartition, PartitionBuffer], TransientSinkError]
"""A batch ClickHouse did not take, and why."""


def _transient(error: KafkaError) -> bool:
    return error.retriable() or error.code() in TRANSIENT


class ConsumerFenced(Exception):
    """librdkafka declared the consumer unusable (a fatal error): after a broker restart
    a static member whose session timed out can be fenced by its own rejoin
    (``FENCED_INSTANCE_ID``). The sink closes it and rejoins with a new one."""

    def __init__(self, error: KafkaError) -> None:
        super().__init__(error.str())
        self.error = error


def _fenced(exc: BaseException) -> KafkaError | None:
    """The fatal error ``exc`` carries, if it is a KafkaException that ends the consumer."""
    error = exc.args[0] if isinstance(exc, KafkaException) and exc.args else None
    if isinstance(error, KafkaError) and (
        error.fatal() or error.code() == KafkaError.FENCED_INSTANCE_ID
    ):
        return error
    return None


def _names(partitions: Iterable[Any]) -> list[str]:
    return sorted(f"{tp.topic}[{tp.partition}]" for tp in partitions)


class _LibrdkafkaLog:
    """librdkafka's logger: its lines into Python logging without the noise.

    Warnings and errors become warnings, the rest debug; connection failures (facility
    FAIL) are debug too, since librdkafka also reports them to the error callback, which
    the sink logs once per change."""

    def log(self, level: int, msg: str, *args: Any) -> None:
        facility = args[0] if args else ""
        if level >= logging.WARNING and facility != "FAIL":
            level = logging.WARNING
        else:
            level = logging.DEBUG
        librdkafka_logger.log(level, msg, *args)


class Collector:
    """Garbage collection by the fetch while the sink consumes, not by the allocation.

    A fetch hands over thousands of message objects at once, each with its headers list,
    alive together until they are buffered; Python's automatic collector, triggered every
    700 allocations, traversed them again and again and promoted them to the old
    generations, whose full collections then traversed every object of the process: a
    third of the sink's Python time on a backlog (measured on 200,000 messages: 13.5 µs
    per message consumed and buffered with it, 3.8 µs without). So while the sink consumes,
    what was alive at start-up is frozen out of the collector (``gc.freeze``), automatic
    collection is off, the young generations are collected after a fetch is buffered (its
    messages already freed by reference counting) at most every ``YOUNG_EVERY_S`` and
    everything every ``FULL_EVERY_S``. Nothing the sink does makes much cyclic garbage;
    this bounds it."""

    YOUNG_EVERY_S = 1.0
    FULL_EVERY_S = 30.0

    def __init__(self) -> None:
        self._enabled = gc.isenabled()
        self._young_at = self._full_at = 0.0

    def __enter__(self) -> Collector:
        self._enabled = gc.isenabled()
        gc.collect()
        gc.freeze()
        gc.disable()
        now = time.monotonic()
        self._young_at = now + self.YOUNG_EVERY_S
        self._full_at = now + self.FULL_EVERY_S
        return self

    def __exit__(self, *exc: object) -> None:
        gc.unfreeze()
        if self._enabled:
            gc.enable()

    def after_fetch(self, buffered: bool) -> None:
        """Collect after a fetch: the young generations every ``YOUNG_EVERY_S`` while
        messages come, all of them every ``FULL_EVERY_S``. What a collection traverses is
        what is alive (the buffers), so its cost is per collection, not per message."""
        if gc.isenabled():
            return
        now = time.monotonic()
        if now >= self._full_at:
            gc.collect()
            self._full_at = now + self.FULL_EVERY_S
            self._young_at = now + self.YOUNG_EVERY_S
        elif buffered and now >= self._young_at:
            gc.collect(1)
            self._young_at = now + self.YOUNG_EVERY_S


class SinkConsumer:
    """confluent-kafka's ``Consumer`` with every call on one thread of its own.

    librdkafka's calls block (``consume()`` for up to its timeout, ``commit()`` for a
    round trip): the event loop awaits them instead. The thread is a daemon, so a call
    stuck on an unreachable broker cannot hold the process at exit. ``seek`` and
    ``pause`` are queued on that thread in order (an error surfaces at the next call);
    ``assignment`` is what the rebalance callbacks last set."""

    def __init__(
        self, config: dict[str, Any], on_assigned: Callable[[frozenset[TopicPartition]], None]
    ) -> None:
        self._consumer = Consumer(config)
        self._on_assigned = on_assigned
        self._assigned: frozenset[TopicPartition] = frozenset()
        self.revoked: set[TopicPartition] = set()
        """Partitions revoked, and not assigned again, since the loop last looked (it
        drops their buffers)."""
        self._calls: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, name="kafka", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            call = self._calls.get()
            if call is None:
                return
            function, args, loop, future = call
            try:
                result = function(*args)
            except BaseException as exc:  # handed to the caller
                if future is None:
                    self._failure = exc
                else:
                    loop.call_soon_threadsafe(_settle, future, None, exc)
                continue
            if future is not None:
                loop.call_soon_threadsafe(_settle, future, result, None)

    def _queue(self, function: Callable[..., Any], *args: Any) -> None:
        self._calls.put((function, args, None, None))

    async def _call(self, function: Callable[..., Any], *args: Any) -> Any:
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._calls.put((function, args, loop, future))
        return await future

    # -- on the consumer's thread, inside consume() --

    def _assign(self, _: Consumer, partitions: list[KafkaPartition]) -> None:
        assigned = frozenset(TopicPartition(p.topic, p.partition) for p in partitions)
        logger.info("sink partitions assigned: %s", _names(assigned))
        self._assigned = assigned
        self.revoked -= assigned  # read again from the commit: a reset, not a drop (extend)
        self._on_assigned(assigned)

    def _revoke(self, _: Consumer, partitions: list[KafkaPartition], how: str = "revoked") -> None:
        revoked = {TopicPartition(p.topic, p.partition) for p in partitions}
        logger.info("sink partitions %s: %s", how, _names(revoked))
        self.revoked |= revoked
        self._assigned = self._assigned - revoked
        self._on_assigned(self._assigned)

    def _lose(self, consumer: Consumer, partitions: list[KafkaPartition]) -> None:
        self._revoke(consumer, partitions, "lost")

    # -- from the event loop --

    async def start(self, topics: list[str], timeout_s: float) -> None:
        """Subscribe; raises KafkaException when no broker answers within ``timeout_s``."""
        await self._call(
            lambda: self._consumer.subscribe(
                topics, on_assign=self._assign, on_revoke=self._revoke, on_lost=self._lose
            )
        )
        await self._call(self._consumer.list_topics, None, timeout_s)

    def assignment(self) -> frozenset[TopicPartition]:
        return self._assigned

    async def consume(self, messages: int, timeout_s: float) -> list[Message]:
        return await self._call(
            self._consumer.consume, min(max(messages, 1), MAX_CONSUME), timeout_s
        )

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        """Commit ``offsets`` (the next offset to read); raises KafkaException."""
        partitions = [KafkaPartition(tp.topic, tp.partition, o) for tp, o in offsets.items()]
        result = await self._call(self._commit, partitions)
        for partition in result or ():
            if partition.error is not None:
                raise KafkaException(partition.error)

    def _commit(self, partitions: list[KafkaPartition]) -> Any:
        return self._consumer.commit(offsets=partitions, asynchronous=False)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self._queue(self._consumer.seek, KafkaPartition(tp.topic, tp.partition, offset))

    def pause(self, *partitions: TopicPartition) -> None:
        self._queue(self._consumer.pause, [KafkaPartition(t, p) for t, p in partitions])

    async def close(self, timeout_s: float) -> None:
        """Leave the group (a static member stays in it for the session timeout)."""
        try:
            await asyncio.wait_for(self._call(self._consumer.close), timeout_s)
        except (KafkaException, RuntimeError, TimeoutError) as exc:
            logger.warning("closing the consumer failed (%s); exiting anyway", exc)
        finally:
            self._calls.put(None)


async def _finish_write(writing: asyncio.Task[Any] | None) -> None:
    """Let a write in flight end before its consumer is replaced (its rows are written;
    its commit fails with the same fatal error, and the new consumer re-reads them)."""
    if writing is not None:
        with contextlib.suppress(ConsumerFenced):
            await writing


def _settle(future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if future.cancelled():
        return
    if exc is None:
        future.set_result(result)
    else:
        future.set_exception(exc)


class SinkRunner:
    """Owns the consumer, the ClickHouse client (on its own thread) and the batching sink."""

    def __init__(self, settings: Settings, on_stall: Callable[[str], None] | None = None) -> None:
        self.settings = settings
        self.on_stall = on_stall
        """What the watchdog does about a stall (default: log and exit with status 70)."""
        self.consumer: SinkConsumer | None = None
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
        self._fatal: KafkaError | None = None
        self._last_error: tuple[str, float] = ("", 0.0)

    def ownership(self) -> Ownership:
        return Ownership(self.owned, self.waiting)

    def stop(self) -> None:
        """Ask :meth:`run` to write and commit what is buffered, then return."""
        self.stopping.set()

    def _config(self) -> dict[str, Any]:
        sink = self.settings.sink
        kafka = self.settings.kafka
        config: dict[str, Any] = {
            "bootstrap.servers": kafka.bootstrap_servers,
            **kafka_security.librdkafka(self.settings),
            "client.id": f"{kafka.client_id}-sink",
            "group.id": sink.group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "fetch.max.bytes": 64 * 1024 * 1024,
            "max.partition.fetch.bytes": 8 * 1024 * 1024,
            # the broker holds a fetch until a flush's worth of bytes or half the flush
            # interval, instead of answering each produced batch with a fetch of its own
            "fetch.min.bytes": sink.fetch_min_bytes,
            "fetch.wait.max.ms": sink.fetch_max_wait_ms,
            "session.timeout.ms": int(sink.session_timeout_s * 1000),
            "heartbeat.interval.ms": int(sink.heartbeat_interval_s * 1000),
            "socket.timeout.ms": kafka.request_timeout_ms,
            "log.connection.close": False,  # the broker closing idle connections is no news
            "logger": _LibrdkafkaLog(),
            "error_cb": self._on_error,
        }
        if sink.group_instance_id:
            config["group.instance.id"] = sink.group_instance_id
        return config

    def _on_error(self, error: KafkaError) -> None:
        """librdkafka's error callback (on the consumer's thread, inside a call)."""
        if error.fatal():
            self._fatal = error
            return
        # one line per broker outage, not one per connection and reconnect
        connection = error.code() in CONNECTION
        key = "connection" if connection else error.str()
        last, at = self._last_error
        now = time.monotonic()
        if key == last and now - at < REPEAT_LOG_S:
            return
        self._last_error = (key, now)
        if connection:
            logger.warning("Kafka: %s; the client reconnects by itself", error.str())
        else:
            logger.warning("Kafka client error: %s", error.str())

    def _on_assigned(self, partitions: frozenset[TopicPartition]) -> None:
        self.owned = frozenset((tp.topic, tp.partition) for tp in partitions)

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
                with Collector() as collector:
                    while consumer is not None:
                        try:
                            await self._consume(consumer, sink, clickhouse, collector)
                            break
                        except ConsumerFenced as exc:
                            consumer = self.consumer = await self._replace_consumer(
                                consumer, sink, exc
                            )
            finally:
                if watchdog is not None:
                    watchdog.stop()
                if consumer is not None:
                    await consumer.close(self.settings.kafka.request_timeout_ms / 1000)
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

    async def _replace_consumer(
        self, consumer: SinkConsumer, sink: ClickHouseIncidentSink, exc: ConsumerFenced
    ) -> SinkConsumer | None:
        """Close a consumer librdkafka has given up and rejoin the group with a new one,
        which reads every partition from its last commit: what was buffered is dropped,
        and rows written but not committed are read again (same ids, collapsed by
        ClickHouse). None when asked to stop meanwhile."""
        logger.warning(
            "the Kafka consumer stopped for good (%s); rejoining the group with a new one "
            "from the last committed offsets",
            exc,
        )
        await consumer.close(self.settings.kafka.request_timeout_ms / 1000)
        sink.take()
        self._fatal = None
        self.owned = frozenset()
        await self._sleep(self.settings.sink.retry_backoff_s)
        return await self._start_consumer()

    async def _start_consumer(self) -> SinkConsumer | None:
        """A consumer subscribed to the sunk topics; None when stopped meanwhile."""
        timeout_s = self.settings.kafka.request_timeout_ms / 1000

        async def start() -> SinkConsumer:
            consumer = SinkConsumer(self._config(), self._on_assigned)
            try:
                await consumer.start(self.topics.sunk(), min(timeout_s, 10.0))
            except KafkaException as exc:
                await consumer.close(timeout_s)
                raise ServiceUnavailableError(
                    f"the sink cannot reach Kafka at {self.settings.kafka.bootstrap_servers}"
                    f" ({exc.args[0].str() if exc.args else exc}); start it with 'xborder "
                    "kafka up' or set XBORDER_KAFKA__BOOTSTRAP_SERVERS"
                ) from exc
            return consumer

        consumer: SinkConsumer | None = await self._until_available("Kafka", start)
        return consumer

    async def _consume(
        self,
        consumer: SinkConsumer,
        sink: ClickHouseIncidentSink,
        clickhouse: Any,
        collector: Collector,
    ) -> None:
        batch_size = self.settings.sink.batch_size
        backoff = self.settings.sink.retry_backoff_s
        writing: asyncio.Task[Failed | None] | None = None
        while not self.stopping.is_set():
            due_in = sink.due_in()
            wait_s = IDLE_POLL_S if writing is None else WRITING_POLL_S
            if due_in is not None:
                wait_s = min(wait_s, due_in)
            try:
                fetched = await consumer.consume(batch_size - sink.pending, wait_s)
            except KafkaException as exc:
                error = exc.args[0] if exc.args else None
                if (fatal := _fenced(exc)) is not None:
                    await _finish_write(writing)
                    raise ConsumerFenced(fatal) from exc
                if not isinstance(error, KafkaError) or not (
                    _transient(error) or error.code() in REBALANCED
                ):
                    raise
                # a rebalance (a session lost while the broker restarted) is waited out too:
                # librdkafka rejoins, and the partitions' buffers are dropped when revoked
                logger.warning("fetch failed (%s); retrying", error.str())
                await self._sleep(self.settings.sink.retry_backoff_s)
                continue
            if self._fatal is not None:
                await _finish_write(writing)
                raise ConsumerFenced(self._fatal)
            buffered = bool(fetched)
            if buffered:
                self._buffer(sink, fetched)
                fetched = []  # its messages freed now, never traversed by the collector
            collector.after_fetch(buffered)
            if consumer.revoked:  # and not assigned again: the new owner reads from the commit
                sink.drop(consumer.revoked)
                consumer.revoked.clear()
            if writing is not None and writing.done():
                backoff = await self._settled(writing, consumer, sink, backoff)
                writing = None
            if sink.due():
                if writing is not None:  # one write in flight at most
                    backoff = await self._settled(writing, consumer, sink, backoff)
                    writing = None
                    if not sink.due():
                        continue
                writing = asyncio.ensure_future(self._write(consumer, sink, clickhouse))
        if writing is not None:
            backoff = await self._settled(writing, consumer, sink, backoff)
        while sink.buffered:  # a failed last write leaves nothing buffered: it is re-read
            writing = asyncio.ensure_future(self._write(consumer, sink, clickhouse))
            backoff = await self._settled(writing, consumer, sink, backoff)

    async def _write(
        self, consumer: SinkConsumer, sink: ClickHouseIncidentSink, clickhouse: Any
    ) -> Failed | None:
        """Write the buffers, then commit; returns the buffers and the error when the write
        failed transiently (the caller rewinds), None when they are written and committed."""
        buffers = sink.take()
        try:
            await asyncio.get_running_loop().run_in_executor(
                clickhouse, sink.write_buffers, buffers
            )
        except TransientSinkError as exc:
            self.waiting = "ClickHouse"
            return buffers, exc
        if self.waiting == "ClickHouse":
            logger.info("ClickHouse writes succeed again")
            self.waiting = None
        await self._commit(consumer, buffers)
        return None

    async def _settled(
        self,
        writing: asyncio.Task[Failed | None],
        consumer: SinkConsumer,
        sink: ClickHouseIncidentSink,
        backoff: float,
    ) -> float:
        """Wait for a write in flight; after a failed one, drop what was consumed since,
        rewind to the failed batch's start and back off. Returns the next backoff."""
        result = await writing
        if result is None:
            return self.settings.sink.retry_backoff_s
        failed, exc = result
        logger.warning("%s; rewinding, retrying in %.1f s", exc, backoff)
        since = sink.take()  # consumed after the failed batch: read again after the rewind
        rewind = dict(failed)
        for tp, buffer in since.items():
            if tp not in rewind or buffer.first_offset < rewind[tp].first_offset:
                rewind[tp] = buffer  # a partition assigned again restarts at its commit
        self._rewind(consumer, rewind)
        await self._sleep(backoff)
        return min(backoff * 2, MAX_BACKOFF_S)

    async def _commit(
        self, consumer: SinkConsumer, buffers: dict[TopicPartition, PartitionBuffer]
    ) -> None:
        """Commit the written batch, retrying while the broker cannot take it.

        The timeout bounds one attempt so that a stop is noticed.
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
                if self.waiting == "a commit":
                    self.waiting = None
                return
            except (KafkaException, TimeoutError) as exc:
                error = exc.args[0] if isinstance(exc, KafkaException) and exc.args else None
                if (fatal := _fenced(exc)) is not None:
                    raise ConsumerFenced(fatal) from exc
                if isinstance(error, KafkaError) and error.code() in REBALANCED:
                    logger.warning(
                        "commit lost to a rebalance (%s); the partitions' new owner re-reads "
                        "rows already written (same ids, collapsed by ClickHouse)",
                        error.str(),
                    )
                    return
                if isinstance(exc, KafkaException) and not (
                    isinstance(error, KafkaError) and _transient(error)
                ):
                    raise
                if self.stopping.is_set():
                    logger.error(
                        "stopping without committing %s (%s): the rows are written; the "
                        "next run re-reads them (same ids, collapsed by ClickHouse)",
                        _names(offsets),
                        type(exc).__name__ if error is None else error.name(),
                    )
                    return
                reason = f"no answer within {timeout_s:.0f} s" if error is None else error.str()
                logger.warning("commit failed (%s); retrying in %.1f s", reason, backoff)
                self.waiting = "a commit"
                await self._sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)

    def _rewind(
        self, consumer: SinkConsumer, buffers: dict[TopicPartition, PartitionBuffer]
    ) -> None:
        """Seek each partition of a dropped batch back to the batch's first offset."""
        assigned = consumer.assignment()
        for tp, buffer in buffers.items():
            if tp in assigned:  # a revoked partition's new owner reads from the commit
                consumer.seek(tp, buffer.first_offset)

    def _buffer(self, sink: ClickHouseIncidentSink, messages: list[Message]) -> None:
        """Buffer a fetch: its messages in runs of one partition, one sink call per run."""
        start, end, count = 0, 0, len(messages)
        while start < count:
            first = messages[start]
            if first.error() is not None:
                self._fetch_error(first)
                start += 1
                continue
            topic, partition = first.topic(), first.partition()
            end = start + 1
            while end < count:
                message = messages[end]
                if (
                    message.partition() != partition
                    or message.topic() != topic
                    or message.error() is not None
                ):
                    break
                end += 1
            assert topic is not None and partition is not None
            self._buffer_run(sink, TopicPartition(topic, partition), messages[start:end])
            start = end

    def _fetch_error(self, message: Message) -> None:
        error = message.error()
        assert error is not None
        if error.code() == KafkaError._PARTITION_EOF:
            return
        if error.fatal():
            raise KafkaException(error)
        logger.warning(
            "fetch from %s[%s] failed (%s); the client retries",
            message.topic(),
            message.partition(),
            error.str(),
        )

    def _buffer_run(
        self, sink: ClickHouseIncidentSink, tp: TopicPartition, messages: list[Message]
    ) -> None:
        topic, partition = tp
        items: list[Any] = []
        add = items.append
        if topic == self.topics.dead_letters:  # headers and sizes only, never the bytes
            for message in messages:
                offset: int = message.offset()  # type: ignore[assignment]
                headers: Any = message.headers()
                row = dead_letter_row(
                    headers, message.key(), message.value(), message.timestamp()[1],
                    topic, partition, offset,
                )  # fmt: skip
                add(Row("dead_letters", row))
            self._extend(sink, tp, messages, items)
            return
        writer_of = self.schemas.writer
        writer = container = None
        positioned = False
        for message in messages:
            data = message.value()
            try:
                if data is None:
                    raise InvalidRecordError("empty message (tombstone)", reason="undecodable")
                found = writer_of(data)
                if found is not writer:
                    writer, container = found, sink.container(found)
                    positioned = container is not None and container.positioned
                if container is not None:  # ClickHouse reads the body itself
                    if positioned:  # the offset is read only when there is no source header
                        headers = message.headers()
                        source = _source_of(headers) if headers else None
                        add((writer, data, *(source or (topic, partition, message.offset()))))
                    else:
                        add((writer, data, topic, partition, message.offset()))
                    continue
                record_name, value = self.schemas.decode(data, found)
            except InvalidRecordError as exc:
                # The worker only forwards decodable events; reaching here means a schema
                # mismatch between worker and sink versions. Skip it loudly, keep going.
                self.skipped += 1
                logger.warning("%s[%s]@%s skipped: %s", topic, partition, message.offset(), exc)
                continue
            position = source_position(
                message.headers(),
                topic,
                partition,
                message.offset(),  # type: ignore[arg-type]
            )
            for table, row in rows_for(record_name, value, *position):
                add(Row(table, row))
        self._extend(sink, tp, messages, items)

    @staticmethod
    def _extend(
        sink: ClickHouseIncidentSink, tp: TopicPartition, messages: list[Message], items: list[Any]
    ) -> None:
        """Buffer a run's items; its messages without items still move the offset."""
        first, last = messages[0].offset(), messages[-1].offset()
        assert first is not None and last is not None
        sink.extend(tp, first, last, items)

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake at once when asked to stop."""
        try:
            await asyncio.wait_for(self.stopping.wait(), seconds)
        except TimeoutError:
            pass


_ORIGINS: dict[bytes, tuple[str, int]] = {}
"""Topic and partition of the source headers seen, by the part before ``]@``: parsed
and decoded once per partition, not once per message."""
MAX_ORIGINS = 100_000


def source_position(headers: Any, topic: str, partition: int, offset: int) -> tuple[str, int, int]:
    """Where the event was first published, from the worker's source header when present
    (``topic[partition]@offset``)."""
    return (_source_of(headers) if headers else None) or (topic, partition, offset)


def _source_of(headers: Any) -> tuple[str, int, int] | None:
    """The position in the worker's source header of ``headers``; None without one."""
    for name, value in headers:
        if name == SOURCE_HEADER:
            head, found, off = value.rpartition(b"]@")
            if not (found and off.isdigit()):
                return None
            origin = _ORIGINS.get(head)
            if origin is None:
                origin_topic, _, part = head.rpartition(b"[")
                if not (origin_topic and part.isdigit()):
                    return None
                if len(_ORIGINS) >= MAX_ORIGINS:
                    _ORIGINS.clear()
                origin = _ORIGINS[head] = (origin_topic.decode("utf-8", "replace"), int(part))
            return origin[0], origin[1], int(off)
    return None


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
