"""Late data on the real worker: too-late events counted per source in the log, on the
late topic and in ``xborder status``; ``xborder backfill`` correlates the old pair."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kafka import KafkaProducer

from streams.correlation.scoring import correlation_id
from tests.integration.kafka_read import consume_all
from xborder.agencies import load_agencies
from xborder.kafka_admin import topic_sizes
from xborder.pipeline import Pipeline
from xborder.samples import sample_events
from xborder.settings import Settings, to_env
from xborder.status import collect_status
from xborder.topics import Topics, ensure_project_topics
from xborder.wire import codec_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _send(settings: Settings, topics: Topics, events: list[tuple[dict[str, Any], int]]) -> None:
    """Publish (event, partition) pairs on their agencies' topics."""
    codec = codec_for(settings)
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all")
    try:
        for event, partition in events:
            value = codec.encode("IncidentReported", codec.from_json("IncidentReported", event))
            producer.send(
                topics.incidents(event["agency"]),
                key=event["incident_id"].encode(),
                value=value,
                partition=partition,
            )
        producer.flush()
    finally:
        producer.close()


def _read_all(settings: Settings, topic: str) -> list[Any]:
    """Every record of ``topic`` now."""
    bootstrap = settings.kafka.bootstrap_servers
    return consume_all(bootstrap, topic, topic_sizes(bootstrap, [topic])[topic], 10)


def _backfill(settings: Settings) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "xborder", "backfill", "--json"],
        env={**os.environ, **to_env(settings)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def test_too_late_events_are_reported_per_source_and_backfilled(make_settings) -> None:
    settings = make_settings()
    topics = Topics.from_settings(settings, load_agencies(settings.agencies_config))
    ensure_project_topics(settings, topics)
    partitions = settings.topics.partitions
    now = datetime.now(UTC)
    # every source partition (agency topic x partition) sees a recent event, so the
    # watermark moves: to an hour or so ago minus the allowed lateness
    recent = sample_events(2 * partitions, now=now)
    spread = [(event, n // 2) for n, event in enumerate(recent)]
    # the linked pair (a shared vehicle), five days older: beyond the watermark - window
    old = sample_events(2, now=now - timedelta(days=5))
    old_refs = sorted((e["agency"], e["incident_id"]) for e in old)
    old_id = correlation_id(old_refs[0], old_refs[1])

    pipeline = Pipeline(settings, sink=False)
    with pipeline.running():
        pipeline.wait_until_settled()
        _send(settings, topics, spread)
        pipeline.wait_until_drained(topics, timeout_s=60)
        _send(settings, topics, [(event, 0) for event in old])
        pipeline.wait_until_drained(topics, timeout_s=60)

        late = consume_all(settings.kafka.bootstrap_servers, topics.late, 2, timeout_s=10)
        assert sorted(r.key.decode() for r in late) == sorted(e["event_id"] for e in old)
        status = collect_status(settings, topics)
        assert status.too_late == {topics.incidents("cantho"): 1, topics.incidents("angiang"): 1}
        backfill = next(g for g in status.groups if g.role == "backfill")
        assert backfill.lag == 2

        log = pipeline.log_dir / "worker-0.log"
        deadline = time.monotonic() + 15
        while "too late to correlate" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.5)
        warnings = [line for line in log.read_text().splitlines() if "too late" in line]
        assert warnings and "WARNING" in warnings[0], warnings
        assert (
            topics.incidents("cantho") in warnings[0]
            or topics.incidents("angiang") in (warnings[0])
        )

        # the live worker did not link them; the backfill does, and the case stage folds it
        codec = codec_for(settings)
        correlations = _read_all(settings, topics.correlations)
        assert old_id not in {codec.decode(r.value).value["correlation_id"] for r in correlations}
        report = _backfill(settings)
        assert report["late"] == status.too_late
        assert report["correlations"] == [old_id] and report["sent"]
        found = _read_all(settings, topics.correlations)
        assert old_id in {codec.decode(r.value).value["correlation_id"] for r in found}
        deadline = time.monotonic() + 20
        case = None
        while case is None and time.monotonic() < deadline:
            time.sleep(0.2)
            for record in _read_all(settings, topics.cases):
                value = codec.decode(record.value).value
                if old_id in value["correlation_ids"]:
                    case = value
        assert case is not None, "the backfilled correlation made no case event"
        assert sorted((i["agency"], i["incident_id"]) for i in case["incidents"]) == old_refs

        # backfilled: nothing left for the next run
        after = collect_status(settings, topics)
        assert next(g for g in after.groups if g.role == "backfill").lag == 0
        assert _backfill(settings)["correlations"] == []
        pipeline.check_alive()
