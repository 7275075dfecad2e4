"""``xborder publish`` on the real broker: line-numbered rejections, summary, exit codes,
resuming a partly published file, and Kafka failing part-way."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition

from tests.conftest import free_port_pair
from xborder.agencies import load_agencies
from xborder.local_kafka import LocalKafka
from xborder.samples import sample_events
from xborder.settings import Settings, load_settings, to_env
from xborder.topics import Topics, ensure_project_topics

pytestmark = pytest.mark.integration


def _messages_in(settings: Settings, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        return sum(consumer.end_offsets(partitions).values())
    finally:
        consumer.close()


def _input_file(tmp_path: Path) -> Path:
    good = [e for e in sample_events(12) if e["agency"] == "cantho"]
    bad_enum = {**good[1], "category": "MURDER"}
    raw_plate = json.loads(json.dumps(good[2]))
    raw_plate["subjects"][0]["token"] = "65B1-234.56"
    lines = [
        json.dumps(good[0]),
        "{not json",
        json.dumps(bad_enum),
        "",
        json.dumps(good[3]),
        json.dumps(raw_plate),
        json.dumps(good[4]),
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def _publish(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "xborder", "publish", "--agency", "cantho", *args],
        env={**os.environ, **to_env(settings)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def ready(make_settings) -> tuple[Settings, str]:
    settings = make_settings()
    topics = Topics.from_settings(settings, load_agencies(settings.agencies_config))
    ensure_project_topics(settings, topics)
    return settings, topics.incidents("cantho")


def test_every_rejected_line_is_reported_and_publishing_stops(ready, tmp_path: Path) -> None:
    settings, topic = ready
    path = _input_file(tmp_path)
    result = _publish(settings, str(path))
    assert result.returncode == 1
    errors = result.stderr.splitlines()
    assert f"{path}:2: rejected: not valid JSON: Expecting property name" in errors[0]
    assert errors[1].startswith(
        f"{path}:3: rejected: IncidentReported.category: 'MURDER' is not one of"
    )
    assert errors[2].startswith(f"{path}:6: rejected: subjects[0].token: ")
    assert len([e for e in errors if ": rejected: " in e]) == 3
    assert "accepted 3, rejected 3, published 1," in result.stdout
    assert _messages_in(settings, topic) == 1  # only the line before the first rejection


def test_keep_going_publishes_every_valid_line(ready, tmp_path: Path) -> None:
    settings, topic = ready
    result = _publish(settings, "--keep-going", str(_input_file(tmp_path)))
    assert result.returncode == 0, result.stderr
    assert "accepted 3, rejected 3, published 3," in result.stdout
    assert _messages_in(settings, topic) == 3


def test_dry_run_publishes_nothing(ready, tmp_path: Path) -> None:
    settings, topic = ready
    result = _publish(settings, "--dry-run", "--keep-going", str(_input_file(tmp_path)))
    assert result.returncode == 0
    assert "accepted 3, rejected 3, published 0," in result.stdout
    assert _messages_in(settings, topic) == 0


def test_missing_input_file_is_a_clear_error(ready, tmp_path: Path) -> None:
    settings, _ = ready
    result = _publish(settings, str(tmp_path / "nope.jsonl"))
    assert result.returncode == 2
    assert "cannot read" in result.stderr and "nope.jsonl" in result.stderr


def _unique_events(count: int) -> list[dict[str, object]]:
    """``count`` valid cantho events, each with its own event id."""
    template = [e for e in sample_events(12) if e["agency"] == "cantho"]
    return [{**template[i % len(template)], "event_id": str(uuid.uuid4())} for i in range(count)]


def _event_ids_in(settings: Settings, topic: str) -> list[str]:
    from xborder.wire import codec_for

    codec = codec_for(settings)
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        ids: list[str] = []
        while any(consumer.position(tp) < end for tp, end in ends.items()):
            for records in consumer.poll(timeout_ms=2000).values():
                ids.extend(codec.decode(r.value).value["event_id"] for r in records)
        return [str(i) for i in ids]
    finally:
        consumer.close()


def test_a_line_that_is_not_utf8_is_rejected_and_the_others_go(ready, tmp_path: Path) -> None:
    settings, topic = ready
    events = _unique_events(3)
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(
        json.dumps(events[0]).encode()
        + b'\n\xff\xfe{"agency": "cantho"}\n'
        + json.dumps(events[1], ensure_ascii=False).encode()
        + b"\n"
        + json.dumps(events[2]).encode()
        + b"\n"
    )
    result = _publish(settings, "--keep-going", str(path))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert f"{path}:2: rejected: not UTF-8: byte 0xff at byte 1" in result.stderr
    assert "accepted 3, rejected 1, published 3," in result.stdout
    assert _messages_in(settings, topic) == 3


def test_a_partly_published_file_resumes_without_duplicates(ready, tmp_path: Path) -> None:
    """What a broken run left on the topic (here: its first 40 lines, and 5 lines further
    on, as partitions acknowledged out of line order) is skipped by --skip-delivered."""
    settings, topic = ready
    events = _unique_events(100)
    lines = [json.dumps(e) for e in events]
    path = tmp_path / "all.jsonl"
    path.write_text("\n".join(lines) + "\n")
    partial = tmp_path / "partial.jsonl"
    partial.write_text("\n".join(lines[:40] + lines[60:65]) + "\n")
    assert _publish(settings, str(partial)).returncode == 0
    assert _messages_in(settings, topic) == 45

    result = _publish(settings, "--skip-delivered", str(path))
    assert result.returncode == 0, result.stderr
    assert f"45 events already on {topic}" in result.stderr
    assert "accepted 100, rejected 0, published 55, skipped 45 already delivered" in (result.stdout)
    ids = _event_ids_in(settings, topic)
    assert sorted(ids) == sorted(str(e["event_id"]) for e in events)  # each once

    again = _publish(settings, "--skip-delivered", str(path))
    assert "published 0, skipped 100 already delivered" in again.stdout
    assert _messages_in(settings, topic) == 100


def test_from_line_starts_part_way(ready, tmp_path: Path) -> None:
    settings, topic = ready
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(json.dumps(e) for e in _unique_events(10)) + "\n")
    result = _publish(settings, "--from-line", "8", str(path))
    assert result.returncode == 0, result.stderr
    assert "accepted 3, rejected 0, published 3," in result.stdout
    assert _messages_in(settings, topic) == 3
    bad = _publish(settings, "--from-line", "0", str(path))
    assert bad.returncode == 2 and "expected a line number" in bad.stderr
    dry = _publish(settings, "--dry-run", "--skip-delivered", str(path))
    assert dry.returncode == 2
    assert dry.stderr.strip().splitlines() == [
        "xborder publish: error: --skip-delivered reads the topic; it cannot go with --dry-run"
    ]


@pytest.mark.slow
def test_kafka_failing_mid_file_gives_a_summary_and_status_3(tmp_path: Path) -> None:
    """A broker of its own, stopped while ``publish`` reads stdin: the events acknowledged
    before stay, the summary says up to where, no traceback."""
    port = free_port_pair()
    settings = load_settings(
        **{
            "data_dir": tmp_path / "data",
            "local_kafka.port": port,
            "local_kafka.heap": "384m",
            "kafka.request_timeout_ms": 1500,  # a send fails after 4 of these
        }
    )
    kafka = LocalKafka(settings.local_kafka, settings.kafka_data_dir)
    try:
        kafka.up()
        topics = Topics.from_settings(settings, load_agencies(settings.agencies_config))
        ensure_project_topics(settings, topics)
        topic = topics.incidents("cantho")
        lines = [json.dumps(e).encode() + b"\n" for e in _unique_events(60)]
        process = subprocess.Popen(
            [sys.executable, "-m", "xborder", "publish", "--agency", "cantho", "-"],
            env={**os.environ, **to_env(settings)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert process.stdin is not None
        process.stdin.write(b"".join(lines[:30]))
        process.stdin.flush()
        deadline = time.monotonic() + 30
        while _messages_in(settings, topic) < 30:
            assert time.monotonic() < deadline, "the first 30 events were not published"
            time.sleep(0.2)
        kafka.down()
        process.stdin.write(b"".join(lines[30:]))
        process.stdin.close()
        stdout, stderr = (s.read().decode() for s in (process.stdout, process.stderr))  # type: ignore[union-attr]
        assert process.wait(timeout=60) == 3
    finally:
        kafka.down()
    assert "Traceback" not in stderr
    assert "accepted 60, rejected 0, published 30," in stdout
    (error,) = stderr.strip().splitlines()
    assert error.startswith("xborder publish: error: Kafka did not acknowledge an event (")
    assert (
        "stopped after line 60; delivered 30 of 60 events sent (60 lines read); every event "
        "before line 31 is delivered; last delivered line 30; run the same command again "
        "with --skip-delivered to publish the rest without duplicates"
    ) in error
