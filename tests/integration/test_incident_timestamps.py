"""The worker's "not in the future" check runs against the broker's clock: the agency
topics keep the append time, so a client that sets its own record timestamp (as far ahead
as its event) cannot pass an event from the future."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from streams.flows.ingest import Accepted, classify
from xborder.agencies import load_agencies
from xborder.deadletter import DeadLetter
from xborder.samples import sample_events
from xborder.topics import Topics, ensure_project_topics
from xborder.validation import EventRules
from xborder.wire import codec_for

pytestmark = pytest.mark.integration

LOG_APPEND_TIME = 1


def test_a_client_set_timestamp_does_not_move_the_future_check(make_settings) -> None:
    settings = make_settings()
    agencies = load_agencies(settings.agencies_config)
    topics = Topics.from_settings(settings, agencies)
    ensure_project_topics(settings, topics)
    topic = topics.incidents("cantho")
    codec = codec_for(settings)
    rules = EventRules.from_settings(settings.contract, agencies.region)

    ahead = datetime.now(UTC) + timedelta(minutes=59)
    event = next(e for e in sample_events(4, now=ahead) if e["agency"] == "cantho")
    event["occurred_at"] = event["reported_at"] = ahead.isoformat()
    payload = codec.encode("IncidentReported", codec.from_json("IncidentReported", event))
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers)
    try:
        sent_ms = int(ahead.timestamp() * 1000)  # the client's clock claims the event's time
        producer.send(topic, key=b"k", value=payload, partition=0, timestamp_ms=sent_ms)
        producer.flush(timeout=30)
    finally:
        producer.close()

    consumer = KafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers)
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        records: list = []
        deadline = time.monotonic() + 30
        while not records and time.monotonic() < deadline:
            records = consumer.poll(timeout_ms=1000).get(tp, [])
    finally:
        consumer.close()
    (record,) = records
    assert record.timestamp_type == LOG_APPEND_TIME
    assert abs(record.timestamp - time.time() * 1000) < 60_000  # the broker's, not the client's

    outcome = classify(
        codec, rules, record.key, record.value, topic, 0, record.offset, record.timestamp
    )
    assert isinstance(outcome, DeadLetter)
    assert outcome.error.startswith("occurred_at: is in the future by 5")
    # the same event with a time the broker has reached is accepted
    outcome = classify(codec, rules, record.key, record.value, topic, 0, 0, sent_ms)
    assert isinstance(outcome, Accepted)
