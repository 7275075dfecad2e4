"""The broker stops and starts while producers, the worker and the sink run: on a broker of
the test's own (the session broker serves the other tests), the run ends with the same
rows as the fault-free run."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import free_port_pair
from tests.faults.harness import FaultRun, Outcome, record
from xborder.local_kafka import LocalKafka
from xborder.settings import Settings

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.slow]

DOWN_S = 3.0
"""How long the broker stays down (on top of its shutdown and start-up)."""


def test_broker_stop_and_start_while_everything_runs(
    fault_settings: Callable[..., Settings], fault_documents: list[Any], baseline: Outcome
) -> None:
    port = free_port_pair()
    settings = fault_settings(
        **{
            "local_kafka.port": port,
            "kafka.bootstrap_servers": f"127.0.0.1:{port}",
            "local_kafka.heap": "512m",
        }
    )
    kafka = LocalKafka(settings.local_kafka, settings.kafka_data_dir)
    kafka.up()
    run = None
    try:
        run = FaultRun(settings, fault_documents)
        run.start()
        run.publish_paced(seconds=8)
        time.sleep(2)
        kafka.down()  # a clean broker shutdown, as a rolling restart does
        time.sleep(DOWN_S)
        kafka.up()
        back = time.monotonic()
        run.join_publisher(timeout_s=180)
        run.drain(timeout_s=240)
        recovery_s = time.monotonic() - back
        lags, outcome = run.finish()
    finally:
        if run is not None:
            run.pipeline.stop()
        kafka.down()
    restarts = {name: codes for name, codes in run.pipeline.restarts.items() if codes}
    assert not restarts, f"processes exited during the broker restart: {restarts}\n" + "\n".join(
        _error_lines(name, run.log(name)) for name in restarts
    )
    record("broker stop/start under load", 1, baseline, outcome, lags, recovery_s)


def _error_lines(name: str, log: str, limit: int = 40) -> str:
    """The lines of a child's log that say why it exited (its log is gone with the
    test's temporary directory)."""
    marks = ("ERROR", "CRITICAL", "Traceback", "Error", "exit")
    lines = [line for line in log.splitlines() if any(mark in line for mark in marks)]
    return f"--- {name}: error lines\n" + "\n".join(lines[-limit:])
