"""Every Kafka codec from independent producers, through every consumer of the project.

Agency systems compress: a Java producer with ``compression.type`` lz4, zstd or snappy
is common. One pipeline run takes incident events in record batches of each codec
(none, gzip, snappy, lz4, zstd) from librdkafka and from the Java kafka-clients
producer: the worker accepts all of them, the sink stores all of them, and a
cross-border pair sent in zstd and lz4 batches is correlated. The worker writes its own
outputs in zstd here, so the sink and the CLI's reader (``xborder cases``) read zstd
too, and kafka-python (the CLI's client) reads the agencies' batches back byte for byte.

A record batch the worker cannot decode (here: zstd while the codec is made unavailable,
as on a consumer without the library) is dead-lettered offset by offset with reason
``undecodable``; the records around it, on its partition and others, are accepted, and
the group's offsets move past it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import aiokafka
import aiokafka.codec
import pytest
from kafka import KafkaConsumer, TopicPartition

from streams.flows.ingest import IngestLoop
from tests.integration.compressed import codec_of_values, produce_java, produce_librdkafka
from tests.integration.kafka_read import consume_all, read_to_end
from xborder.agencies import load_agencies
from xborder.clickhouse import get_client
from xborder.codec import AvroCodec
from xborder.deadletter import (
    HEADER_ERROR,
    HEADER_OFFSET,
    HEADER_PARTITION,
    HEADER_REASON,
    HEADER_TOPIC,
)
from xborder.errors import ServiceUnavailableError
from xborder.kafka_admin import ensure_topics, wait_for_group
from xborder.pipeline import Pipeline
from xborder.samples import sample_events
from xborder.schemas import SchemaStore
from xborder.settings import Settings
from xborder.topics import Topics, ensure_project_topics
from xborder.undecodable import GuardedFetch, Undecodable
from xborder.validation import EventRules
from xborder.verification import fold_cases

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LIBRDKAFKA_CODECS = ("zstd", "lz4", "snappy", "gzip", "none")
"""Codec of sample event i is LIBRDKAFKA_CODECS[i % 5]: events 0 and 1, the cantho and
angiang reports sharing a vehicle, go in zstd and lz4 batches."""
JAVA_CODECS = ("zstd", "lz4", "snappy", "gzip")


def _encoded(settings: Settings, events: list[dict[str, Any]]) -> list[bytes]:
    codec = AvroCodec(SchemaStore(settings.schemas_dir))
    return [
        codec.encode("IncidentReported", codec.from_json("IncidentReported", e)) for e in events
    ]


def test_every_codec_from_librdkafka_and_java_is_accepted_stored_and_correlated(
    make_settings: Any,
) -> None:
    settings = make_settings(**{"worker.compression": "zstd"})
    topics = Topics.from_settings(settings, load_agencies(settings.agencies_config))
    ensure_project_topics(settings, topics)
    events = sample_events(10 + len(JAVA_CODECS))
    values = _encoded(settings, events)
    sent = [
        (
            LIBRDKAFKA_CODECS[i % 5] if i < 10 else JAVA_CODECS[i - 10],
            topics.incidents(e["agency"]),
            e["incident_id"].encode(),
            v,
        )
        for i, (e, v) in enumerate(zip(events, values, strict=True))
    ]
    bootstrap = settings.kafka.bootstrap_servers

    pipeline = Pipeline(settings)
    with pipeline.running():
        produce_librdkafka(bootstrap, sent[:10])
        produce_java(settings, sent[10:])
        pipeline.wait_until_drained(topics, timeout_s=120)
        pipeline.check_alive()
        cases = fold_cases(settings, AvroCodec(SchemaStore(settings.schemas_dir)))

    agency_topics = [topics.incidents("cantho"), topics.incidents("angiang")]
    # the log really holds each message in a batch of the codec it was sent with
    in_log = codec_of_values(bootstrap, agency_topics)
    assert {v: in_log[v] for _, _, _, v in sent} == {v: c for c, _, _, v in sent}
    # and the worker's outputs are zstd batches (what the sink and the CLI read)
    assert set(codec_of_values(bootstrap, [topics.accepted, topics.cases]).values()) == {"zstd"}

    # kafka-python, the client of the CLI's readers, reads every codec back
    read_back = [
        r.value
        for topic in agency_topics
        for r in consume_all(bootstrap, topic, sum(1 for m in sent if m[1] == topic))
    ]
    assert sorted(read_back) == sorted(values)

    accepted = consume_all(bootstrap, topics.accepted, len(sent))
    assert sorted(r.value for r in accepted) == sorted(values)
    assert consume_all(bootstrap, topics.dead_letters, 1, timeout_s=3) == []

    client = get_client(settings)
    try:
        stored = {
            r[0] for r in client.query("SELECT toString(event_id) FROM incidents FINAL").result_rows
        }
        pairs = client.query(
            "SELECT a_incident_id, b_incident_id FROM correlations FINAL"
        ).result_rows
    finally:
        client.close()
    assert stored == {e["event_id"] for e in events}
    pair = {events[0]["incident_id"], events[1]["incident_id"]}
    assert pair in [set(p) for p in pairs]

    # the CLI's case fold (kafka-python over zstd topics) shows the pair in one case
    assert any(pair <= {i for _, i in case.incidents} for case in cases.values())


@pytest.fixture
def zstd_unavailable() -> Iterator[None]:
    """aiokafka as on a consumer without the zstd library: it raises UnsupportedCodecError
    for every zstd record batch, as the issue saw for codecs it lacked."""
    saved = aiokafka.codec.has_zstd
    aiokafka.codec.has_zstd = lambda: False
    try:
        yield
    finally:
        aiokafka.codec.has_zstd = saved


def test_a_batch_the_worker_cannot_decode_is_dead_lettered_and_ingest_goes_on(
    make_settings: Any, zstd_unavailable: None
) -> None:
    settings = make_settings()
    agencies = load_agencies(settings.agencies_config)
    topics = Topics.from_settings(settings, agencies)
    ensure_project_topics(settings, topics)
    cantho, angiang = topics.incidents("cantho"), topics.incidents("angiang")
    events = sample_events(12)
    values = _encoded(settings, events)
    by_agency = {
        agency: [v for e, v in zip(events, values, strict=True) if e["agency"] == agency]
        for agency in ("cantho", "angiang")
    }
    # cantho[0]: 2 good, then 3 in one zstd batch, then 1 good; angiang[0]: 6 good, in the
    # same fetches, so the call that fails has drained them already
    ct = by_agency["cantho"]
    plan = [("none", ct[0:2]), ("zstd", ct[2:5]), ("none", ct[5:6])]
    bootstrap = settings.kafka.bootstrap_servers
    for name, batch in plan:
        produce_librdkafka(bootstrap, [(name, cantho, b"k", v) for v in batch])
    produce_librdkafka(bootstrap, [("none", angiang, b"k", v) for v in by_agency["angiang"]])
    key_partition = {
        r.value: (r.topic, r.partition, r.offset)
        for r in consume_all(bootstrap, cantho, 6) + consume_all(bootstrap, angiang, 6)
    }
    undecodable = sorted(key_partition[v] for v in ct[2:5])
    good = ct[0:2] + ct[5:6] + by_agency["angiang"]

    codec = AvroCodec(SchemaStore(settings.schemas_dir))
    rules = EventRules.from_settings(settings.contract, agencies.region)
    loop = IngestLoop(settings, topics, codec, rules)
    metrics = loop.metrics

    def loop_did() -> str:
        return (
            f"the loop accepted {dict(metrics.accepted)}, dead-lettered "
            f"{dict(metrics.dead_letters)} in {metrics.batches} batches"
        )

    async def run_until_committed() -> None:
        """Run the loop until its group has committed every record of the agency topics:
        it commits a batch only once the broker has acknowledged all the batch sent, so
        from then on the accepted events and the dead letters are all there to read."""
        task = asyncio.create_task(loop.run())
        committed = asyncio.create_task(
            asyncio.to_thread(
                wait_for_group, bootstrap, settings.worker.ingest_group_id, [cantho, angiang], 60
            )
        )
        try:
            await asyncio.wait({task, committed}, return_when=asyncio.FIRST_COMPLETED)
            assert not task.done(), task  # the loop is still running
            await committed  # raises if the group was still behind after 60 s
        finally:
            task.cancel()
            await asyncio.gather(task, committed, return_exceptions=True)

    # The reads used to run alongside the loop: consumers subscribed to still-empty topics,
    # polling for a count within 60 s counted from before the loop had joined its group,
    # then a fixed 1 s for the last commit; once, in a loaded CI run, they read nothing.
    # Now they start when the loop's own commit says everything is on the broker, and
    # read each topic from its beginning to the end offsets it has then.
    try:
        asyncio.run(run_until_committed())
    except ServiceUnavailableError as exc:
        raise AssertionError(f"{exc}; {loop_did()}") from exc
    accepted = read_to_end(bootstrap, [topics.accepted])
    dead = read_to_end(bootstrap, [topics.dead_letters])
    seen = f"{loop_did()}; read back {len(accepted)} accepted, {len(dead)} dead"
    assert sorted(r.value for r in accepted) == sorted(good), seen
    letters = sorted(
        (
            h[HEADER_TOPIC].decode(),
            int(h[HEADER_PARTITION]),
            int(h[HEADER_OFFSET]),
        )
        for h in (dict(r.headers) for r in dead)
    )
    assert letters == undecodable
    for record in dead:
        headers = dict(record.headers)
        assert headers[HEADER_REASON] == b"undecodable"
        assert b"zstd" in headers[HEADER_ERROR]
        assert b"UnsupportedCodecError" in headers[HEADER_ERROR]
        assert record.value is None
    assert loop.metrics.dead_letters["undecodable"] == 3

    # the group's committed offsets are past the undecodable batch and everything else
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=settings.worker.ingest_group_id)
    try:
        ends: dict[TopicPartition, int] = {}
        for topic, partition, offset in key_partition.values():
            tp = TopicPartition(topic, partition)
            ends[tp] = max(ends.get(tp, 0), offset + 1)
        assert {tp: consumer.committed(tp) for tp in ends} == ends
    finally:
        consumer.close()


def test_records_the_failing_fetch_drained_from_another_partition_are_not_lost(
    make_settings: Any, zstd_unavailable: None
) -> None:
    """aiokafka hands out partition after partition in one ``getmany``; when a later one
    raises, the records of the earlier ones are gone from the call while their positions
    moved past them (a plain consumer never sees them). The guard puts them back."""
    settings = make_settings()
    topic = f"{settings.topics.prefix}drained"
    bootstrap = settings.kafka.bootstrap_servers
    ensure_topics(settings, [topic], partitions=2)
    produce_librdkafka(bootstrap, [("zstd", topic, b"k", b"zstd %d" % i) for i in range(3)], 0)
    good = [b"good %d" % i for i in range(5)]
    produce_librdkafka(bootstrap, [("none", topic, b"k", v) for v in good], 1)

    async def read() -> dict[int, list[Any]]:
        consumer = aiokafka.AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, group_id=settings.worker.ingest_group_id,
            auto_offset_reset="earliest", enable_auto_commit=False,
        )  # fmt: skip
        await consumer.start()
        fetch = GuardedFetch(consumer, bootstrap, "test", 1 << 26, 1 << 23)
        try:
            await asyncio.sleep(2)  # both partitions fetched: one call meets both
            found: dict[int, list[Any]] = {0: [], 1: []}
            for _ in range(10):
                for tp, records in (await fetch.getmany(500, 100)).items():
                    found[tp.partition].extend(records)
                if len(found[0]) + len(found[1]) >= 8:
                    break
            await asyncio.sleep(0.5)
            for tp, records in (await fetch.getmany(500, 100)).items():  # nothing more
                found[tp.partition].extend(records)
            return found
        finally:
            await fetch.close()
            await consumer.stop()

    found = asyncio.run(read())
    assert [(type(r), r.offset) for r in found[0]] == [(Undecodable, o) for o in range(3)]
    assert [r.value for r in found[1]] == good
