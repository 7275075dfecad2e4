"""``xborder publish`` on the real broker: line-numbered rejections, summary, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition

from xborder.agencies import load_agencies
from xborder.samples import sample_events
from xborder.settings import Settings, to_env
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
