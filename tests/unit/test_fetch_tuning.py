"""Fetch sizes of the worker's Faust consumer and of the sink: bounded by the lingers."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sinks.runner import SinkRunner
from streams.app import build_app
from xborder.settings import Settings


def _settings(tmp_path: Path, **env: object) -> Settings:
    return Settings(data_dir=tmp_path, **env)  # type: ignore[arg-type]


def test_the_faust_consumer_is_built_with_the_tuned_fetch(tmp_path: Path) -> None:
    tuned = _settings(
        tmp_path, worker={"stage_fetch_min_bytes": 12345, "stage_fetch_max_wait_s": 0.2}
    )

    async def built(settings: Settings) -> tuple[int, int]:
        app = build_app(settings)
        thread = app.consumer._thread  # type: ignore[attr-defined]
        consumer = thread._create_worker_consumer(app.transport)
        try:  # the values aiokafka hands its fetcher when the consumer starts
            return consumer._fetch_min_bytes, consumer._fetch_max_wait_ms
        finally:
            await consumer.stop()

    assert asyncio.run(built(tuned)) == (12345, 200)
    # by default answered at once, held 50 ms when idle (Faust's own: 1 byte, 1.5 s)
    assert asyncio.run(built(_settings(tmp_path))) == (1, 50)


def test_sink_fetch_waits_half_the_flush_interval_at_most_half_a_second(
    tmp_path: Path,
) -> None:
    assert _settings(tmp_path).sink.fetch_max_wait_ms == 500
    short = _settings(tmp_path, sink={"flush_interval_s": 0.2, "fetch_min_bytes": 4096})
    assert short.sink.fetch_max_wait_ms == 100

    config = SinkRunner(short)._config()  # what librdkafka's Consumer is built with
    assert (config["fetch.min.bytes"], config["fetch.wait.max.ms"]) == (4096, 100)
