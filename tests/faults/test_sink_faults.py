"""Sink faults while events flow: SIGKILL mid-batch, and the embedded ClickHouse held by
another process while the sink restarts. Each run ends with the same rows as the
fault-free run."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.faults.harness import FaultRun, Outcome, record
from xborder.kafka_admin import group_lag
from xborder.settings import Settings

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.slow]

SEED = 20261202

HOLD_S = 10.0
"""How long another process holds the embedded ClickHouse directory: long enough for the
sink to fail, back off and retry several times (XBORDER_SINK__RETRY_BACKOFF_S=0.5,
doubling), short enough for the suite's budget. The sink behaves the same for 60 s or 60
minutes: its backoff stops growing at 30 s."""

HOLDER = """
import sys, time
import clickhouse_connect
client = clickhouse_connect.get_client(dsn="chdb://" + sys.argv[1])
client.command("SELECT 1")
print("holding", flush=True)
time.sleep(float(sys.argv[2]))
"""
"""Another process (an analyst's ad-hoc chDB session) that owns the directory a while."""


def test_sink_sigkill_mid_batch(
    fault_settings: Callable[..., Settings], fault_documents: list[Any], baseline: Outcome
) -> None:
    rng = random.Random(SEED)
    # a session timeout the restarts must not wait for: the sink is a static member
    run = FaultRun(fault_settings(**{"sink.session_timeout_s": 45.0}), fault_documents)
    behind: list[int] = []
    rejoin_s: list[float] = []
    try:
        run.start()
        run.publish_paced(seconds=14)
        for kill in range(1, 3):
            time.sleep(rng.uniform(1.0, 2.5))
            assert run.publishing(), "the load ended before the kill: nothing in flight"
            status, _ = run.signal("sink", signal.SIGKILL)
            assert status == -signal.SIGKILL
            behind.append(group_lag(run.bootstrap, run.settings.sink.group_id, run.topics.sunk()))
            last = time.monotonic()
            run.pipeline.check_alive()  # the supervisor starts it again
            run.wait_ready("sink", kill + 1)
            rejoin_s.append(time.monotonic() - last)
        run.join_publisher()
        run.drain(timeout_s=240)
        recovery_s = time.monotonic() - last
        lags, outcome = run.finish()
    finally:
        run.pipeline.stop()
    assert any(behind), f"no kill found rows in flight (uncommitted: {behind})"
    # a dynamic member's partitions would stay with the dead one for the session timeout
    assert max(rejoin_s) < 20, rejoin_s
    record("sink SIGKILL mid-batch", 2, baseline, outcome, lags, recovery_s)


def test_clickhouse_held_by_another_process_while_the_sink_restarts(
    fault_settings: Callable[..., Settings], fault_documents: list[Any], baseline: Outcome
) -> None:
    run = FaultRun(fault_settings(), fault_documents)
    holder = None
    try:
        run.start()
        run.publish_paced(seconds=6)
        time.sleep(1.5)
        status, _ = run.signal("sink", signal.SIGTERM)
        assert status == 0
        run.pipeline.processes.pop("sink")
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(run.settings.clickhouse_dir), str(HOLD_S)],
            stdout=subprocess.PIPE,
        )
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"holding"
        run.pipeline.start_sink()  # cannot open the directory: waits, retrying
        assert holder.wait(timeout=HOLD_S + 30) == 0
        released = time.monotonic()
        log = run.log("sink")
        assert "retrying in" in log and "Another server instance" in log, log[-2000:]
        assert run.pipeline.processes["sink"].poll() is None, "the sink exited"
        run.join_publisher()
        run.drain(timeout_s=240)
        recovery_s = time.monotonic() - released
        assert "ClickHouse available after" in run.log("sink")
        lags, outcome = run.finish()
    finally:
        if holder is not None and holder.poll() is None:
            holder.kill()
            holder.wait()
        run.pipeline.stop()
    assert not run.pipeline.restarts.get("sink"), "the sink exited while it waited"
    record(f"ClickHouse held {HOLD_S:.0f} s at sink start", 1, baseline, outcome, lags, recovery_s)
