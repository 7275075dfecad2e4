"""The worker under hostile input: 10,000 messages, good and bad, every one accounted for."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest
from kafka import KafkaProducer

from tests.integration.kafka_read import consume_all
from xborder.agencies import load_agencies
from xborder.clickhouse import get_client
from xborder.codec import SINGLE_OBJECT_HEADER_LEN, AvroCodec
from xborder.deadletter import HEADER_OFFSET, HEADER_PARTITION, HEADER_REASON, HEADER_TOPIC
from xborder.pipeline import Pipeline
from xborder.samples import sample_events
from xborder.schemas import SchemaStore
from xborder.settings import Settings
from xborder.topics import Topics, ensure_project_topics

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOTAL = 10_000


def _build_messages(settings: Settings, rng: random.Random) -> list[tuple[bytes, str | None]]:
    """(message bytes, expected dead-letter reason or None for valid), shuffled."""
    codec = AvroCodec(SchemaStore(settings.schemas_dir))
    valid = [
        codec.encode(
            "IncidentReported", codec.from_json("IncidentReported", {**e, "agency": "cantho"})
        )
        for e in sample_events(4_000)
    ]
    messages: list[tuple[bytes, str | None]] = [(m, None) for m in valid]
    for _ in range(1_000):
        noise = rng.randbytes(rng.randint(1, 400))
        if noise[:1] in (b"\x00", b"\xc3"):  # would read as a framing's magic byte
            noise = b"\xff" + noise[1:]
        messages.append((noise, "undecodable"))
    for _ in range(200):  # Confluent framing, but no registry is configured
        messages.append((b"\x00" + rng.randbytes(rng.randint(4, 300)), "unknown-schema"))
    for original in rng.sample(valid, 1_200):  # truncated bodies
        cut = rng.randint(SINGLE_OBJECT_HEADER_LEN, len(original) - 1)
        messages.append((original[:cut], "undecodable"))
    for original in rng.sample(valid, 1_200):  # one bit flipped in the fingerprint
        flipped = bytearray(original)
        flipped[rng.randint(2, 9)] ^= 1 << rng.randint(0, 7)
        messages.append((bytes(flipped), "unknown-schema"))
    for original in rng.sample(valid, 800):  # one bit flipped in the magic bytes
        flipped = bytearray(original)
        flipped[rng.randint(0, 1)] ^= 1 << rng.randint(0, 7)
        messages.append((bytes(flipped), "undecodable"))
    for original in rng.sample(valid, 800):  # a valid record followed by garbage
        messages.append((original + rng.randbytes(rng.randint(1, 20)), "undecodable"))
    unknown = b"\xc3\x01" + rng.randbytes(8)
    for original in rng.sample(valid, 800):  # a schema nobody knows
        messages.append((unknown + original[SINGLE_OBJECT_HEADER_LEN:], "unknown-schema"))
    assert len(messages) == TOTAL
    rng.shuffle(messages)
    return messages


def test_every_message_is_forwarded_or_dead_lettered_with_its_reason(
    make_settings, tmp_path: Path
) -> None:
    settings = make_settings()
    topics = Topics.from_settings(settings, load_agencies(settings.agencies_config))
    ensure_project_topics(settings, topics)
    messages = _build_messages(settings, random.Random(20260319))
    expected_reason = {value: reason for value, reason in messages}
    source = topics.incidents("cantho")

    pipeline = Pipeline(settings)
    with pipeline.running():
        producer = KafkaProducer(
            bootstrap_servers=settings.kafka.bootstrap_servers, linger_ms=20, acks="all"
        )
        for i, (value, _) in enumerate(messages):
            producer.send(source, key=f"k{i % 97}".encode(), value=value)
        producer.flush()
        producer.close()
        pipeline.wait_until_drained(topics, timeout_s=240)
        pipeline.check_alive()  # the worker survived all of it

    valid_count = sum(1 for _, reason in messages if reason is None)
    accepted = consume_all(
        settings.kafka.bootstrap_servers, topics.accepted, valid_count, timeout_s=60
    )
    dead = consume_all(
        settings.kafka.bootstrap_servers, topics.dead_letters, TOTAL - valid_count, timeout_s=60
    )

    assert len(accepted) == valid_count
    assert len(dead) == TOTAL - valid_count
    assert len(accepted) + len(dead) == TOTAL
    assert Counter(m.value for m in accepted) == Counter(
        v for v, reason in messages if reason is None
    )
    reasons: Counter[str] = Counter()
    for record in dead:
        headers = dict(record.headers)
        reason = headers[HEADER_REASON].decode()
        assert reason == expected_reason[record.value], headers
        assert headers[HEADER_TOPIC].decode() == source
        assert int(headers[HEADER_PARTITION]) >= 0
        assert int(headers[HEADER_OFFSET]) >= 0
        reasons[reason] += 1
    assert reasons == Counter(reason for _, reason in messages if reason is not None)
    # the analysts' table holds each dead letter once, with its reason and sizes, no bytes
    client = get_client(settings)
    try:
        stored = client.query(
            "SELECT reason, count(), countIf(source_topic = {t:String}), "
            "sum(value_bytes) FROM dead_letters_current GROUP BY reason",
            parameters={"t": source},
        ).result_rows
    finally:
        client.close()
    assert {r: n for r, n, _, _ in stored} == dict(reasons)
    assert all(from_source == n for _, n, from_source, _ in stored)
    assert sum(size for *_, size in stored) == sum(len(record.value or b"") for record in dead)
