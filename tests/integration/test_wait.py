"""``xborder wait`` on the real stack: it returns only once the rows are in ClickHouse,
and names the stage still behind when it times out."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from tests.integration.incidents import incident_messages
from xborder.agencies import load_agencies
from xborder.bench.kafka_io import publish
from xborder.clickhouse import get_client
from xborder.pipeline import Pipeline
from xborder.samples import sample_events
from xborder.settings import Settings, to_env
from xborder.topics import Topics, ensure_project_topics

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _wait(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "xborder", "wait", *args],
        env={**os.environ, **to_env(settings)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _publish(settings: Settings, topics: Topics, count: int) -> int:
    events = sample_events(count)
    publish(settings.kafka.bootstrap_servers, incident_messages(settings, topics, events))
    return len(events)


def test_wait_returns_after_the_rows_are_in_clickhouse(make_settings) -> None:
    settings = make_settings()
    topics = Topics.from_settings(settings, load_agencies(settings.agencies_config))
    ensure_project_topics(settings, topics)
    pipeline = Pipeline(settings)
    with pipeline.running():
        pipeline.wait_until_settled()
        published = _publish(settings, topics, 40)
        result = _wait(settings, "--timeout", "120")
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("processed: ")
        assert "sink" in result.stderr and "done" in result.stderr
        # the sink gets no chance to flush anything more: what is stored was stored before
        pipeline.processes["sink"].send_signal(signal.SIGKILL)
        pipeline.processes["sink"].wait(timeout=30)
        pipeline.processes.pop("sink")
    client = get_client(settings)
    try:
        stored = client.query("SELECT uniqExact(event_id) FROM incidents").result_rows[0][0]
    finally:
        client.close()
    assert stored == published


def test_wait_without_a_worker_names_the_stage_behind(make_settings) -> None:
    settings = make_settings()
    topics = Topics.from_settings(settings, load_agencies(settings.agencies_config))
    ensure_project_topics(settings, topics)
    _publish(settings, topics, 4)
    result = _wait(settings, "--timeout", "2", "--quiet")
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("xborder wait: not processed within 2 s: ingest (consumer group ")
    assert "uncommitted messages in" in line and "is the worker running?" in line
