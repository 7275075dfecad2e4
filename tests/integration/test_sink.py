"""The sink on the real broker and the real ClickHouse engine: nothing is committed
before its rows are written, a transient insert failure is retried until the rows are
there, and SIGTERM writes and commits what is buffered and exits 0."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
from clickhouse_connect.driver.exceptions import OperationalError

import sinks.runner
from sinks.bench import TABLE_KEYS, Load, build_load, publish
from sinks.runner import SinkRunner
from xborder.agencies import load_agencies
from xborder.clickhouse import get_client
from xborder.kafka_admin import ensure_topics, group_lag, wait_for_group
from xborder.settings import Settings, to_env
from xborder.topics import Topics

pytestmark = pytest.mark.integration


def _load(settings: Settings) -> Load:
    return build_load(settings, 300, 0.5, 0.3, 0.1, 0.1, seed=11, tag=settings.topics.prefix)


def _topics(settings: Settings) -> list[str]:
    topics = Topics.from_settings(settings, load_agencies(settings.agencies_config)).sunk()
    ensure_topics(settings, topics)
    return topics


def _distinct_rows(settings: Settings) -> dict[str, int]:
    client = get_client(settings)
    try:
        return {
            table: int(client.query(f"SELECT uniqExact({key}) FROM {table}").result_rows[0][0])
            for table, key in TABLE_KEYS.items()
        }
    finally:
        client.close()


class FlakyClient:
    """A ClickHouse client whose inserts fail as a lost connection does while ``failing``."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.failing = threading.Event()
        self.failures = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def _maybe_fail(self) -> None:
        if self.failing.is_set():
            self.failures += 1
            raise OperationalError("connection refused (injected by the test)")

    def command(self, *args: Any, **kwargs: Any) -> Any:
        self._maybe_fail()
        return self._client.command(*args, **kwargs)

    def raw_insert(self, *args: Any, **kwargs: Any) -> Any:
        self._maybe_fail()
        return self._client.raw_insert(*args, **kwargs)


def test_transient_insert_failures_commit_nothing_until_the_rows_are_written(
    make_settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(**{"sink.retry_backoff_s": 0.1, "sink.flush_interval_s": 0.2})
    topics = _topics(settings)
    load = _load(settings)
    publish(settings, load.messages)
    flaky: list[FlakyClient] = []

    def get_flaky_client(settings: Settings) -> FlakyClient:
        client = FlakyClient(get_client(settings))  # migrations run unharmed
        client.failing.set()
        flaky.append(client)
        return client

    monkeypatch.setattr(sinks.runner, "get_client", get_flaky_client)
    runner = SinkRunner(settings)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(runner.run(),))
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not (flaky and flaky[0].failures >= 3) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert flaky and flaky[0].failures >= 3, "the sink did not retry the failed insert"
        bootstrap = settings.kafka.bootstrap_servers
        assert group_lag(bootstrap, settings.sink.group_id, topics) == len(load.messages)
        flaky[0].failing.clear()
        wait_for_group(bootstrap, settings.sink.group_id, topics, timeout_s=60)
    finally:
        loop.call_soon_threadsafe(runner.stop)
        thread.join(60)
        loop.close()
    assert not thread.is_alive()
    assert runner.metrics.flushes["transient"] >= 3
    assert _distinct_rows(settings) == load.rows


@pytest.mark.slow
def test_sigterm_writes_and_commits_what_is_buffered_and_exits_0(make_settings) -> None:
    # a flush interval and batch size the test never reaches: only the stop writes
    settings = make_settings(**{"sink.flush_interval_s": 600.0, "sink.batch_size": 1_000_000})
    topics = _topics(settings)
    load = _load(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    log_path = settings.data_dir / "sink.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "xborder", "sink"],
            env={**os.environ, **to_env(settings)},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        deadline = time.monotonic() + 60
        while "sink partitions assigned" not in log_path.read_text():
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
        publish(settings, load.messages)
        time.sleep(3)  # the sink fetches and buffers them; nothing is due
        lag = group_lag(settings.kafka.bootstrap_servers, settings.sink.group_id, topics)
        assert lag == len(load.messages), "committed before writing"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0, log_path.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert group_lag(settings.kafka.bootstrap_servers, settings.sink.group_id, topics) == 0
    assert _distinct_rows(settings) == load.rows


@pytest.mark.slow
def test_a_fenced_static_member_rejoins_with_a_new_consumer_and_loses_nothing(
    make_settings, caplog: pytest.LogCaptureFixture
) -> None:
    """After a broker restart, librdkafka can fence the sink's static member by its own
    rejoin (FENCED_INSTANCE_ID, a fatal error). Here another client with the same
    group.instance.id fences it: the sink replaces its consumer instead of exiting."""
    from confluent_kafka import Consumer

    settings = make_settings(**{"sink.flush_interval_s": 0.2})
    instance = f"{settings.sink.group_id}-static"
    settings = settings.with_overrides(**{"sink.group_instance_id": instance})
    topics = _topics(settings)
    load = _load(settings)
    half = len(load.messages) // 2
    bootstrap = settings.kafka.bootstrap_servers
    runner = SinkRunner(settings)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(runner.run(),))
    thread.start()
    try:
        publish(settings, load.messages[:half])
        wait_for_group(bootstrap, settings.sink.group_id, topics, timeout_s=60)
        intruder = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": settings.sink.group_id,
                "group.instance.id": instance,
                "enable.auto.commit": False,
            }
        )
        intruder.subscribe(topics)
        deadline = time.monotonic() + 30
        while not intruder.assignment() and time.monotonic() < deadline:
            intruder.poll(0.2)
        assert intruder.assignment(), "the second member never joined"
        intruder.close()
        publish(settings, load.messages[half:])
        with caplog.at_level("WARNING", logger="sinks.runner"):
            wait_for_group(bootstrap, settings.sink.group_id, topics, timeout_s=90)
        assert thread.is_alive(), "the sink exited after being fenced"
    finally:
        loop.call_soon_threadsafe(runner.stop)
        thread.join(60)
        loop.close()
    assert not thread.is_alive()
    assert _distinct_rows(settings) == load.rows
    assert "rejoining the group with a new one" in caplog.text
