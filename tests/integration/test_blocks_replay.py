"""The correlation stage's replay reader on the real broker: it reads a partition of
``correlation.blocks`` from a recorded offset to its end, starts at the oldest message
when retention removed the recorded one, and the topic is created with a retention
covering twice the window plus the allowed lateness."""

from __future__ import annotations

import asyncio

import pytest
from kafka import KafkaProducer
from kafka.structs import TopicPartition

from streams.flows.replay import kafka_reader
from tests.integration.kafka_read import topic_config
from xborder.agencies import load_agencies
from xborder.kafka_admin import admin_client
from xborder.settings import Settings
from xborder.topics import Topics, ensure_project_topics

pytestmark = pytest.mark.integration


def _blocks_topic(settings: Settings) -> str:
    names = Topics.from_settings(settings, load_agencies(settings.agencies_config))
    ensure_project_topics(settings, names)
    return names.blocks


def _produce(settings: Settings, topic: str, count: int) -> None:
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers)
    for n in range(count):
        producer.send(topic, f"m{n}".encode(), partition=1)
    producer.flush()
    producer.close()


def _read(settings: Settings, topic: str, first: int) -> list[tuple[int, bytes | None]]:
    async def run() -> list[tuple[int, bytes | None]]:
        return [pair async for pair in kafka_reader(settings, topic)(1, first)]

    return asyncio.run(run())


def test_the_reader_returns_a_partition_from_an_offset_to_its_end(make_settings) -> None:
    settings = make_settings()
    topic = _blocks_topic(settings)
    _produce(settings, topic, 30)
    assert _read(settings, topic, 25) == [(o, f"m{o}".encode()) for o in range(25, 30)]
    assert _read(settings, topic, 30) == []
    assert [o for o, _ in _read(settings, topic, 0)] == list(range(30))


def test_a_recorded_offset_removed_by_retention_reads_from_the_oldest_kept(make_settings) -> None:
    settings = make_settings()
    topic = _blocks_topic(settings)
    _produce(settings, topic, 20)
    admin = admin_client(settings.kafka.bootstrap_servers)
    try:
        admin.delete_records({TopicPartition(topic, 1): 12})  # as retention would
    finally:
        admin.close()
    assert [o for o, _ in _read(settings, topic, 3)] == list(range(12, 20))


def test_the_blocks_topic_keeps_twice_the_window_and_lateness_at_least_a_week(
    make_settings,
) -> None:
    settings = make_settings(
        **{"correlation.window_hours": 120.0, "correlation.allowed_lateness_hours": 6.0}
    )
    retention = topic_config(
        settings.kafka.bootstrap_servers, _blocks_topic(settings), "retention.ms"
    )
    assert int(retention) == 2 * 126 * 3_600_000
