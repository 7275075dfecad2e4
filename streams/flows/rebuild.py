"""Rebuild the case stage and the case lifecycle from their log, outside the worker.

``correlation.links`` is the single ordered log of everything the case stage and the
lifecycle apply (links, forwarded agency inputs, clock ticks). Reading it from the start
through the same :class:`~streams.flows.correlate.CaseLog` the worker uses gives the same
case events, verification records, alerts and dead letters the worker produced; an
operator compares them with the live topics or tables (``xborder cases rebuild``), and a
new deployment of the stage could start from them.
"""

from __future__ import annotations

from kafka import KafkaConsumer, TopicPartition

from streams.correlation.engine import CaseStage, CorrelatorConfig
from streams.correlation.lifecycle import LifecycleConfig
from streams.flows.correlate import (
    INTERNAL_DECODE_ERRORS,
    CaseLog,
    _PartitionState,
)
from streams.flows.verify import LifecycleStage
from xborder import kafka_security
from xborder.codec import AvroCodec
from xborder.settings import Settings
from xborder.topics import Topics


def rebuild_case_log(
    settings: Settings,
    names: Topics,
    codec: AvroCodec,
    config: CorrelatorConfig,
    lifecycle: LifecycleConfig | None = None,
) -> tuple[CaseLog, int]:
    """Apply ``correlation.links`` from its first to its current last message; returns
    the filled :class:`CaseLog` and how many messages were malformed (skipped, as the
    worker dead-letters them)."""
    partition = TopicPartition(names.links, 0)
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        **kafka_security.kafka_python(settings),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    state = _PartitionState(
        CaseStage(config), expected=frozenset(range(settings.topics.partitions))
    )
    log = CaseLog(codec, state, LifecycleStage(codec, names, lifecycle))
    malformed = 0
    try:
        consumer.assign([partition])
        consumer.seek_to_beginning(partition)
        end = consumer.end_offsets([partition])[partition]
        while consumer.position(partition) < end:
            for message in consumer.poll(timeout_ms=1_000).get(partition, []):
                if message.offset >= end or message.value is None:
                    continue
                try:
                    log.apply(message.value, message.offset)
                except INTERNAL_DECODE_ERRORS:
                    malformed += 1
    finally:
        consumer.close()
    return log, malformed
