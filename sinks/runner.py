"""The sink process: consume accepted incident events, write them to ClickHouse, commit.

Offsets are committed only after the rows of everything up to them are written. A
transient ClickHouse error rewinds to the first unwritten offset and retries with
backoff; a terminal one stops the process with the reason.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from types import FrameType
from typing import Any

from kafka import KafkaConsumer, OffsetAndMetadata, TopicPartition

from sinks.base import PartitionBuffer
from sinks.clickhouse import ClickHouseIncidentSink
from sinks.rows import rows_for
from xborder.agencies import load_agencies
from xborder.clickhouse import get_client
from xborder.deadletter import SOURCE_HEADER
from xborder.errors import InvalidRecordError, TransientSinkError
from xborder.kafka_admin import ensure_topics
from xborder.metrics import SinkMetrics
from xborder.settings import Settings
from xborder.topics import Topics
from xborder.wire import codec_for

logger = logging.getLogger(__name__)

MAX_BACKOFF_S = 30.0


class SinkRunner:
    """Owns the consumer, the ClickHouse client and the batching sink."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topics = Topics.from_settings(settings, load_agencies(settings.agencies_config))
        self.codec = codec_for(settings)
        self.metrics = SinkMetrics()
        self.stopping = threading.Event()
        self.skipped = 0

    def _consumer(self) -> KafkaConsumer:
        consumer = KafkaConsumer(
            bootstrap_servers=self.settings.kafka.bootstrap_servers,
            client_id=f"{self.settings.kafka.client_id}-sink",
            group_id=self.settings.sink.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self.settings.sink.batch_size,
            fetch_max_bytes=64 * 1024 * 1024,
            max_partition_fetch_bytes=8 * 1024 * 1024,
        )
        consumer.subscribe(self.topics.sunk())
        return consumer

    def run(self) -> None:
        """Consume until :attr:`stopping` is set, then flush and commit what is buffered."""
        ensure_topics(self.settings, self.topics.sunk())
        client = get_client(self.settings)
        sink = ClickHouseIncidentSink(
            client,
            self.settings.sink.batch_size,
            self.settings.sink.flush_interval_s,
            self.metrics,
        )
        consumer = self._consumer()
        backoff = self.settings.sink.retry_backoff_s
        logger.info("sink consuming %s into ClickHouse", ", ".join(self.topics.sunk()))
        try:
            while not self.stopping.is_set():
                for tp, messages in consumer.poll(timeout_ms=200).items():
                    for message in messages:
                        self._buffer(sink, tp, message)
                if sink.due():
                    backoff = self._flush(sink, consumer, backoff)
            while sink.pending:
                backoff = self._flush(sink, consumer, backoff)
        finally:
            consumer.close(autocommit=False)
            client.close()
            logger.info(
                "sink stopped: %s rows written, %s undecodable skipped",
                sum(self.metrics.rows_written.values()),
                self.skipped,
            )

    def _buffer(self, sink: ClickHouseIncidentSink, tp: TopicPartition, message: Any) -> None:
        value: bytes = message.value
        offset: int = message.offset
        try:
            decoded = self.codec.decode(value)
        except InvalidRecordError as exc:
            # The worker only forwards decodable events; reaching here means a schema
            # mismatch between worker and sink versions. Skip it loudly, keep going.
            self.skipped += 1
            logger.warning("%s[%s]@%s skipped: %s", tp.topic, tp.partition, offset, exc)
            sink.advance(tp, offset)
            return
        topic, partition, source_offset = source_position(
            message.headers,
            tp.topic,
            tp.partition,
            offset,
        )
        rows = rows_for(decoded.record_name, decoded.value, topic, partition, source_offset)
        if not rows:
            sink.advance(tp, offset)
        for row in rows:
            sink.add(tp, offset, row)

    def _flush(
        self, sink: ClickHouseIncidentSink, consumer: KafkaConsumer, backoff: float
    ) -> float:
        try:
            buffers = sink.flush()
        except TransientSinkError as exc:
            logger.warning("%s; retrying in %.1f s", exc, backoff)
            self._rewind(consumer)
            self.stopping.wait(backoff)
            return min(backoff * 2, MAX_BACKOFF_S)
        self._commit(consumer, buffers)
        return self.settings.sink.retry_backoff_s

    def _commit(
        self, consumer: KafkaConsumer, buffers: dict[TopicPartition, PartitionBuffer]
    ) -> None:
        if buffers:
            consumer.commit(
                {tp: OffsetAndMetadata(b.last_offset + 1, "", -1) for tp, b in buffers.items()}
            )

    def _rewind(self, consumer: KafkaConsumer) -> None:
        """Seek every assigned partition back to its last committed offset."""
        for tp in consumer.assignment():
            committed = consumer.committed(tp)
            if committed is None:
                consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, committed)


def source_position(
    headers: list[tuple[str, bytes]] | None, topic: str, partition: int, offset: int
) -> tuple[str, int, int]:
    """Where the event was first published, from the worker's source header when present."""
    for name, value in headers or ():
        if name == SOURCE_HEADER:
            text = value.decode("utf-8", "replace")
            origin, _, rest = text.rpartition("[")
            part, _, off = rest.partition("]@")
            if origin and part.isdigit() and off.isdigit():
                return origin, int(part), int(off)
    return topic, partition, offset


def run_sink(settings: Settings) -> None:
    """Run the sink in the foreground until SIGTERM or SIGINT."""
    runner = SinkRunner(settings)

    def stop(signum: int, frame: FrameType | None) -> None:
        logger.info("signal %s received; flushing and stopping", signum)
        runner.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    started = time.monotonic()
    runner.run()
    logger.info("sink ran %.1f s", time.monotonic() - started)
