"""The liveness watchdog on the real broker: a sink whose consumer stops fetching without an
error (what faust-streaming #523 and kafka-python's poll did here) is reported stuck
within the stall timeout; a sink that is knowingly waiting for ClickHouse is not."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import sinks.runner
from sinks.bench import build_load, publish
from sinks.runner import SinkRunner
from tests.integration.test_sink import FlakyClient
from xborder.agencies import load_agencies
from xborder.clickhouse import get_client
from xborder.kafka_admin import ensure_topics, wait_for_group
from xborder.settings import Settings
from xborder.topics import Topics

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.slow]

STALL_S = 3.0


class _Running:
    """A SinkRunner on a thread of its own, its stalls recorded instead of exiting."""

    def __init__(self, settings: Settings) -> None:
        self.stalls: list[tuple[float, str]] = []
        self.runner = SinkRunner(settings, on_stall=self._stalled)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_until_complete, args=(self.runner.run(),)
        )

    def _stalled(self, message: str) -> None:
        self.stalls.append((time.monotonic(), message))

    def __enter__(self) -> _Running:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.runner.owned:
            assert time.monotonic() < deadline, "the sink got no partitions"
            time.sleep(0.1)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.loop.call_soon_threadsafe(self.runner.stop)
        self.thread.join(60)
        self.loop.close()
        assert not self.thread.is_alive()

    def call(self, function: Callable[[], Any]) -> None:
        self.loop.call_soon_threadsafe(function)


def _settings(make_settings: Callable[..., Settings]) -> tuple[Settings, list[str]]:
    settings = make_settings(
        **{
            "sink.stall_timeout_s": STALL_S,
            "sink.retry_backoff_s": 0.2,
            "sink.flush_interval_s": 0.2,
        }
    )
    topics = Topics.from_settings(settings, load_agencies(settings.agencies_config)).sunk()
    ensure_topics(settings, topics)
    return settings, topics


def test_a_consumer_that_stops_fetching_is_reported_stuck(make_settings: Any) -> None:
    settings, _ = _settings(make_settings)
    load = build_load(settings, 200, 0.5, 0.3, 0.1, 0.1, seed=3, tag=settings.topics.prefix)
    with _Running(settings) as running:
        consumer = running.runner.consumer
        assert consumer is not None
        # the consumer stays in its group and keeps heartbeating, but fetches nothing
        running.call(lambda: consumer.pause(*consumer.assignment()))
        time.sleep(0.5)
        published = time.monotonic()
        publish(settings, load.messages)
        deadline = published + STALL_S + 15
        while not running.stalls and time.monotonic() < deadline:
            time.sleep(0.2)
        assert running.stalls, "the stuck sink was not noticed"
        noticed, message = running.stalls[0]
        assert noticed - published <= STALL_S + 10  # a check every second, a slow broker
        assert "sink is stuck" in message and "lag" in message and "status 70" in message
        assert settings.topics.prefix in message  # names the stalled partitions


def test_a_sink_waiting_for_clickhouse_is_not_stuck(
    make_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, topics = _settings(make_settings)
    load = build_load(settings, 200, 0.5, 0.3, 0.1, 0.1, seed=4, tag=settings.topics.prefix)
    flaky: list[FlakyClient] = []

    def get_flaky_client(settings: Settings) -> FlakyClient:
        client = FlakyClient(get_client(settings))
        client.failing.set()
        flaky.append(client)
        return client

    monkeypatch.setattr(sinks.runner, "get_client", get_flaky_client)
    with _Running(settings) as running:
        publish(settings, load.messages)
        time.sleep(STALL_S * 2)  # ClickHouse refuses every write for two stall timeouts
        assert flaky[0].failures >= 3
        assert not running.stalls, running.stalls
        flaky[0].failing.clear()
        wait_for_group(settings.kafka.bootstrap_servers, settings.sink.group_id, topics, 60)
        assert not running.stalls, running.stalls
