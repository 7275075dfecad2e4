"""What the worker prepares on the broker before it joins its consumer group."""

from __future__ import annotations

import pytest
from kafka import KafkaConsumer

from streams.worker import create_worker_app, ensure_changelog_topics

pytestmark = pytest.mark.integration


def test_changelog_topics_exist_with_their_tables_partitions_before_faust_starts(
    make_settings,
) -> None:
    settings = make_settings()
    app = create_worker_app(settings)
    expected = {
        table.changelog_topic.get_topic_name(): table.partitions or settings.topics.partitions
        for table in app.tables.values()
    }
    # correlation-batches (one per partition), case-batches and case-lifecycle (one each)
    assert len(expected) == 3

    assert sorted(ensure_changelog_topics(settings, app)) == sorted(expected)
    ensure_changelog_topics(settings, app)  # a second worker starting: no error

    consumer = KafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers)
    try:
        found = {name: len(consumer.partitions_for_topic(name) or ()) for name in expected}
    finally:
        consumer.close()
    assert found == expected
    assert sorted(found.values()) == [1, 1, settings.topics.partitions]
