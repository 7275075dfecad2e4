"""Raw identifiers never leave the agency: scan every byte of every topic for them."""

from __future__ import annotations

import random
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition

from xborder.agencies import load_agencies
from xborder.demo import publish_samples
from xborder.kafka_admin import admin_client
from xborder.pipeline import Pipeline
from xborder.pseudonym import KeyRing, SharedKeyTokenizer, pseudonymise_subject, raw_forms
from xborder.samples import sample_events
from xborder.settings import Settings
from xborder.topics import Topics, ensure_project_topics

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _raw_identifiers(rng: random.Random) -> list[tuple[str, str, dict[str, Any]]]:
    """(kind, raw value, extra) per subject, random per run so no other test holds them."""
    plate = (
        f"{rng.randint(60, 69)}B{rng.randint(1, 9)}-{rng.randint(100, 999)}.{rng.randint(10, 99)}"
    )
    phone = f"09{rng.randint(10, 99)} {rng.randint(100, 999)} {rng.randint(100, 999)}"
    national_id = "".join(str(rng.randint(0, 9)) for _ in range(12))
    name = rng.choice(["Trịnh Quỳnh Hoa", "Lâm Thị Xuyến", "Quách Văn Đởm"])
    return [
        ("VEHICLE", plate, {}),
        ("PHONE", phone, {}),
        ("PERSON", national_id, {}),
        (
            "PERSON",
            name,
            {"birth_date": f"19{rng.randint(60, 99)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}"},
        ),
    ]


def _all_bytes(settings: Settings) -> list[tuple[str, bytes]]:
    """(topic, bytes) for every key, value and header of every message of this run: its
    prefixed topics and the worker's changelogs (other tests' topics on the shared session
    broker are theirs to check)."""
    admin = admin_client(settings.kafka.bootstrap_servers)
    try:
        topics = [
            t
            for t in admin.list_topics()
            if t.startswith((settings.topics.prefix, settings.worker.app_id))
        ]
    finally:
        admin.close()
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers)
    chunks: list[tuple[str, bytes]] = []
    try:
        partitions = [
            TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()
        ]
        ends = consumer.end_offsets(partitions)
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        remaining = {tp for tp, end in ends.items() if end > 0}
        for _ in range(200):
            if not remaining:
                break
            for tp, records in consumer.poll(timeout_ms=500).items():
                for record in records:
                    chunks.append((tp.topic, record.key or b""))
                    chunks.append((tp.topic, record.value or b""))
                    for name, value in record.headers or ():
                        chunks.append((tp.topic, name.encode() + b"=" + (value or b"")))
            remaining = {tp for tp in remaining if consumer.position(tp) < ends[tp]}
        assert not remaining, f"could not read to the end of {sorted(map(str, remaining))}"
    finally:
        consumer.close()
    return chunks


def test_no_raw_identifier_reaches_any_topic(make_settings) -> None:
    settings = make_settings()
    topics = Topics.from_settings(settings, load_agencies(settings.agencies_config))
    ensure_project_topics(settings, topics)
    rng = random.Random()
    tokenizer = SharedKeyTokenizer(KeyRing.generate())
    identifiers = _raw_identifiers(rng)
    events = sample_events(6)
    for event in events:
        event["subjects"] = [
            pseudonymise_subject(tokenizer, kind, raw, "SUSPECT", **extra)
            for kind, raw, extra in identifiers
        ]

    pipeline = Pipeline(settings)
    with pipeline.running():
        publish_samples(settings, events)
        pipeline.wait_until_drained(topics, timeout_s=120)

    chunks = _all_bytes(settings)
    ours = [c for t, c in chunks if t.startswith(settings.topics.prefix)]
    assert len(ours) >= 2 * len(events) * 2  # the events on the agency and accepted topics
    forms: set[str] = set()
    for kind, raw, extra in identifiers:
        forms |= raw_forms(kind, raw, extra.get("birth_date"))
    needles = {f.encode("utf-8") for f in forms if len(f) >= 6}
    needles |= {f.lower().encode("utf-8") for f in forms if len(f) >= 6}
    assert len(needles) > 20
    leaks = [(topic, n) for topic, chunk in chunks for n in needles if n in chunk]
    assert leaks == []
