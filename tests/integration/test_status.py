"""``xborder status`` on the real broker: lag per consumer group before and after the
worker ran, dead letters by reason after known bad messages, an unreachable broker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
from kafka import KafkaProducer

from tests.conftest import free_port_pair
from xborder.agencies import load_agencies
from xborder.kafka_admin import topic_sizes
from xborder.pipeline import Pipeline
from xborder.samples import sample_events
from xborder.settings import Settings, to_env
from xborder.status import collect_status
from xborder.topics import Topics, ensure_project_topics
from xborder.wire import codec_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _status_cli(settings: Settings, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "xborder", "status", *flags],
        env={**os.environ, **to_env(settings)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def _groups(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {g["role"]: g for g in report["groups"]}


def test_status_reports_lag_and_dead_letters_by_reason(make_settings) -> None:
    settings = make_settings()
    topics = Topics.from_settings(settings, load_agencies(settings.agencies_config))
    ensure_project_topics(settings, topics)
    codec = codec_for(settings)
    good = [
        codec.encode("IncidentReported", codec.from_json("IncidentReported", event))
        for event in sample_events(4)
    ]
    cantho_event = sample_events(1)[0]
    on_wrong_topic = codec.encode(
        "IncidentReported", codec.from_json("IncidentReported", cantho_event)
    )
    bad = {
        "undecodable": [b"not avro", b"\xff\xfe", b"{}"],
        "unknown-schema": [b"\xc3\x01" + bytes(8) + good[0][10:]] * 2,
    }
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all")
    for n, value in enumerate(good):
        producer.send(topics.incidents("cantho" if n % 2 == 0 else "angiang"), value=value)
    for values in bad.values():
        for value in values:
            producer.send(topics.incidents("cantho"), value=value)
    producer.send(topics.incidents("angiang"), value=on_wrong_topic)  # invalid: not its topic
    producer.flush()
    producer.close()
    published = len(good) + sum(len(v) for v in bad.values()) + 1

    before = collect_status(settings, topics)
    initial = {g.role: g for g in before.groups}
    assert initial["worker ingest"].lag == published
    assert initial["worker ingest"].state == "absent"
    assert initial["worker ingest"].committed_through is None
    assert initial["sink"].lag == 0 and before.dead_letters == {} and before.too_late == {}

    pipeline = Pipeline(settings, sink=False)
    with pipeline.running():
        pipeline.wait_until_settled()
        pipeline.wait_until_drained(topics, timeout_s=60)
        done = _status_cli(settings, "--json")
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        text = _status_cli(settings)
    groups = _groups(report)
    assert report["broker"]["reachable"] and report["broker"]["brokers"] == 1
    assert groups["worker ingest"]["lag"] == 0
    assert groups["worker ingest"]["state"] == "Stable" and groups["worker ingest"]["members"] == 1
    assert groups["worker ingest"]["committed_through"] is not None
    assert groups["worker stages"]["lag"] == 0 and groups["worker stages"]["members"] == 1
    # no sink ran: everything it reads is its lag
    sunk = topic_sizes(settings.kafka.bootstrap_servers, topics.sunk())
    assert sunk[topics.accepted] == len(good)
    assert groups["sink"]["lag"] == sum(sunk.values())
    assert groups["sink"]["lag_by_topic"][topics.accepted] == len(good)
    assert report["dead_letters"] == {"undecodable": 3, "unknown-schema": 2, "invalid": 1}
    assert report["too_late"] == {}
    assert text.returncode == 0
    assert f"worker ingest  {settings.worker.ingest_group_id}" in text.stdout
    assert "unknown-schema" in text.stdout


def test_status_says_in_one_line_when_the_broker_is_unreachable(make_settings) -> None:
    closed = free_port_pair()
    settings = make_settings(**{"kafka.bootstrap_servers": f"127.0.0.1:{closed}"})
    done = _status_cli(settings)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "not reachable" in lines[0] and "xborder kafka up" in lines[0]
    assert "Traceback" not in done.stderr and done.stdout == ""
