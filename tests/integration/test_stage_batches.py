"""Stage batches on the real broker: a trickle is emitted within the linger bound, fetches
join into one ingest batch, and a stage batch in flight during a rebalance loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams.correlation.patterns import alert_id
from streams.flows.ingest import collect_batch
from tests.integration.test_correlation import _messages, _outcome
from xborder.agencies import load_agencies
from xborder.bench.kafka_io import Collector, Message, publish
from xborder.geo import jurisdictions_for
from xborder.kafka_admin import ensure_topics
from xborder.pipeline import Pipeline
from xborder.scenario import ScenarioConfig, generate_scenario, iter_events
from xborder.settings import Settings
from xborder.topics import INCIDENT_TOPIC_CONFIGS, Topics, ensure_project_topics
from xborder.wire import codec_for

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def _client_pair(
    bootstrap: str, topic: str
) -> AsyncIterator[tuple[AIOKafkaProducer, AIOKafkaConsumer]]:
    """A producer and a consumer of ``topic``, the consumer positioned at its end."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await producer.start()
    await consumer.start()
    try:
        await consumer.getmany(timeout_ms=500)  # joined and positioned: nothing there yet
        yield producer, consumer
    finally:
        await consumer.stop()
        await producer.stop()


async def _collect_after_trickle(bootstrap: str, topic: str) -> tuple[list[int], float, float]:
    """Five messages 50 ms apart, then one ingest batch collected with a 1 s linger and
    another with a cap of 2 records; (batch sizes, seconds from the first send to the
    first batch, seconds the capped batch took)."""
    async with _client_pair(bootstrap, topic) as (producer, consumer):
        started = time.monotonic()
        for n in range(5):
            await producer.send_and_wait(topic, f"m{n}".encode())
            await asyncio.sleep(0.05)
        first = await collect_batch(consumer, max_records=1000, linger_s=1.0)
        first_s = time.monotonic() - started
        for n in range(5):
            await producer.send_and_wait(topic, f"n{n}".encode())
        capped_started = time.monotonic()
        capped = await collect_batch(consumer, max_records=2, linger_s=5.0)
        capped_s = time.monotonic() - capped_started
        sizes = [sum(len(m) for m in first.values()), sum(len(m) for m in capped.values())]
        return sizes, first_s, capped_s


def test_fetches_join_into_one_batch_until_the_linger_or_the_cap(make_settings) -> None:
    settings = make_settings()
    topic = f"{settings.topics.prefix}trickle"
    ensure_topics(settings, [topic], partitions=1)
    sizes, first_s, capped_s = asyncio.run(
        _collect_after_trickle(settings.kafka.bootstrap_servers, topic)
    )
    # the five trickled messages arrive in separate fetches but make one batch, which
    # ends about a linger after the first of them
    assert sizes == [5, 2]
    assert 1.0 <= first_s < 2.5
    # a full batch does not wait for the linger
    assert capped_s < 2.0


async def _collect_after_a_wait(bootstrap: str, topic: str, waited_s: float) -> float:
    """One message sent, ``waited_s`` seconds of sleep, then one batch collected with a
    1 s linger; seconds from the send to the batch."""
    async with _client_pair(bootstrap, topic) as (producer, consumer):
        started = time.monotonic()
        await producer.send_and_wait(topic, b"late")
        await asyncio.sleep(waited_s)  # as if the previous batch were being processed
        batch = await collect_batch(consumer, max_records=1000, linger_s=1.0)
        assert sum(len(m) for m in batch.values()) == 1
        return time.monotonic() - started


def test_time_waited_in_the_broker_counts_against_the_linger(make_settings) -> None:
    settings = make_settings()
    appended = f"{settings.topics.prefix}appended"
    ensure_topics(settings, [appended], partitions=1, configs=INCIDENT_TOPIC_CONFIGS)
    created = f"{settings.topics.prefix}created"
    ensure_topics(settings, [created], partitions=1)
    bootstrap = settings.kafka.bootstrap_servers
    # the agency topics keep the broker's append time: a message that waited 0.7 s is
    # batched 1 s after it arrived, not 1 s after the batch began
    assert 0.95 <= asyncio.run(_collect_after_a_wait(bootstrap, appended, 0.7)) < 1.4
    # a producer's timestamp says nothing of the arrival: a whole linger from receipt
    assert asyncio.run(_collect_after_a_wait(bootstrap, created, 0.7)) >= 1.65


def _linked_pairs(settings: Settings, pairs: int) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """``pairs`` true links of a generated scenario: both incidents' documents, re-timed to
    now so the correlator's watermark moves with the trickle."""
    agencies = load_agencies(settings.agencies_config)
    generated = generate_scenario(ScenarioConfig(seed=5, events=2_000), agencies)
    documents = {
        (e.document["agency"], e.document["incident_id"]): e.document
        for e in iter_events(generated)
        if e.kind == "incident" and e.document is not None
    }
    chosen: list[tuple[dict[str, Any], dict[str, Any]]] = []
    used: set[tuple[str, str]] = set()
    for a, b in sorted(generated.truth.links):
        if a in used or b in used or a not in documents or b not in documents:
            continue
        used |= {a, b}
        chosen.append((documents[a], documents[b]))
        if len(chosen) == pairs:
            break
    now_ms = int(time.time() * 1000)
    retimed = []
    for n, pair in enumerate(chosen):
        out = []
        for doc in pair:
            copy = dict(doc, event_id=str(uuid.uuid4()))
            copy["occurred_at"] = now_ms - 3_600_000 + n * 1000
            copy["reported_at"] = now_ms - 1_800_000 + n * 1000
            out.append(copy)
        retimed.append((out[0], out[1]))
    return retimed


def test_a_trickle_of_one_event_per_second_is_linked_within_the_linger_bound(
    make_settings,
) -> None:
    """Each pair's second incident, sent alone, yields its correlation within the two
    lingers plus processing, and each border-zone incident its alert within the ingest
    linger plus processing: nothing waits for a batch to fill."""
    settings = make_settings(**{"worker.ingest_linger_s": 0.2, "worker.stage_linger_s": 0.2})
    bound_s = settings.worker.ingest_linger_s + 2 * settings.worker.stage_linger_s + 1.0
    topics = Topics.from_settings(settings, load_agencies(settings.agencies_config))
    ensure_project_topics(settings, topics)
    codec = codec_for(settings)
    jurisdictions = jurisdictions_for(load_agencies(settings.agencies_config))
    pairs = _linked_pairs(settings, 6)
    assert len(pairs) == 6
    links = Collector(settings.kafka.bootstrap_servers, [topics.correlations])
    alerts = Collector(settings.kafka.bootstrap_servers, topics.all_alerts)
    pipeline = Pipeline(settings, workers=1, sink=False)
    with pipeline.running():
        pipeline.wait_until_settled()
        links.start()
        alerts.start()
        sent: dict[tuple[str, str], float] = {}
        for first, second in pairs:
            for doc in (first, second):
                message = Message(
                    topics.incidents(doc["agency"]),
                    doc["incident_id"].encode(),
                    codec.encode("IncidentReported", codec.from_json("IncidentReported", doc)),
                )
                sent[(doc["agency"], doc["incident_id"])] = publish(
                    settings.kafka.bootstrap_servers, [message]
                )[0]
                time.sleep(1.0)  # one event per second
        time.sleep(bound_s)
        links.stop()
        alerts.stop()
    link_arrivals = [at for at, _ in links.received]
    assert link_arrivals, "no correlation arrived at all"
    link_delays = []
    for _, second in pairs:
        # the pairs are sent one after another: the first link after a pair's second
        # incident is that pair's own
        last_sent = sent[(second["agency"], second["incident_id"])]
        after = [at - last_sent for at in link_arrivals if at >= last_sent]
        link_delays.append(min(after) if after else float("inf"))
    assert max(link_delays) <= bound_s, link_delays
    arrivals: dict[bytes, float] = {}
    for at, key in alerts.received:
        arrivals.setdefault(key, at)
    border = [
        (doc, sent[(doc["agency"], doc["incident_id"])])
        for pair in pairs
        for doc in pair
        if jurisdictions.locate(doc["location"]["lat"], doc["location"]["lon"]).in_border_zone
    ]
    alert_bound_s = settings.worker.ingest_linger_s + 1.0
    for doc, at in border:
        key = alert_id("BORDER_ZONE_INCIDENT", doc["agency"], doc["incident_id"]).encode()
        assert key in arrivals, f"no border-zone alert for {doc['incident_id']}"
        assert arrivals[key] - at <= alert_bound_s


@pytest.mark.slow
def test_stage_batches_in_flight_during_a_rebalance_lose_and_double_nothing(make_settings) -> None:
    """A second worker joins while long stage batches are being taken, then leaves: the
    links and cases equal a run without either, and every correlation is stored once."""
    agencies = load_agencies(make_settings().agencies_config)
    generated = generate_scenario(ScenarioConfig(seed=11, events=3_000), agencies)
    documents = [e.document for e in iter_events(generated) if e.kind != "malformed" and e.document]
    batching = {"worker.stage_linger_s": 1.0, "worker.stage_batch_size": 5_000}

    def run(rebalance: bool) -> Any:
        settings = make_settings(**batching)
        topics = Topics.from_settings(settings, agencies)
        ensure_project_topics(settings, topics)
        messages = _messages(settings, documents)
        third = len(messages) // 3
        pipeline = Pipeline(settings, workers=1)
        with pipeline.running():
            pipeline.wait_until_settled()
            publish(settings.kafka.bootstrap_servers, messages[:third])
            if rebalance:
                pipeline.workers = 2
                pipeline.start_worker(1)  # joins while batches are being taken
            publish(settings.kafka.bootstrap_servers, messages[third : 2 * third])
            if rebalance:
                pipeline.wait_until_settled()
                leaving = pipeline.processes.pop("worker-1")
                leaving.terminate()  # a clean leave: another rebalance mid-stream
                leaving.wait(timeout=60)
                pipeline.workers = 1
            publish(settings.kafka.bootstrap_servers, messages[2 * third :])
            pipeline.wait_until_drained(topics, timeout_s=240)
        return settings, _outcome(settings)

    _, steady = run(rebalance=False)
    settings, rebalanced = run(rebalance=True)
    assert steady[0] and steady[1]
    assert rebalanced == steady
    from xborder.clickhouse import get_client

    client = get_client(settings)
    try:
        stored_once = client.query(
            "SELECT count(), uniqExact(correlation_id) FROM correlations FINAL"
        ).result_rows[0]
    finally:
        client.close()
    assert stored_once[0] == stored_once[1] == len(steady[0])
