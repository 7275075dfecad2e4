"""Worker faults while events flow: SIGKILL at random points, a second worker joining and
leaving, SIGTERM. Each run ends with the same rows as the fault-free run."""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.faults.harness import FaultRun, Outcome, record
from xborder.settings import Settings

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.slow]

SEED = 20261201
"""Seed of the random fault points (a failure names the same points when run again)."""


def test_worker_sigkill_at_three_random_points(
    fault_settings: Callable[..., Settings], fault_documents: list[Any], baseline: Outcome
) -> None:
    rng = random.Random(SEED)
    run = FaultRun(fault_settings(), fault_documents)
    try:
        run.start()
        run.publish_paced(seconds=20)
        last = 0.0
        for kill in range(1, 4):
            time.sleep(rng.uniform(0.5, 2.5))  # a random point of the worker's processing
            status, _ = run.signal("worker-0", signal.SIGKILL)
            assert status == -signal.SIGKILL
            last = time.monotonic()
            run.pipeline.check_alive()  # the supervisor starts it again
            run.wait_ready("worker-0", kill + 1)
        run.join_publisher()
        run.drain(timeout_s=240)
        recovery_s = time.monotonic() - last
        assert run.pipeline.restarts["worker-0"] == [-signal.SIGKILL] * 3
        lags, outcome = run.finish()
    finally:
        run.pipeline.stop()
    record("worker SIGKILL at random points", 3, baseline, outcome, lags, recovery_s)
    # the restarted worker re-reads what it applied before the kill: duplicates, not late
    # data (the input has no late events: the fault-free run sets none aside)
    assert outcome.too_late == baseline.too_late, (
        f"{outcome.too_late} events set aside as too late after the kills, "
        f"{baseline.too_late} in the fault-free run"
    )


def test_a_second_worker_joins_and_leaves(
    fault_settings: Callable[..., Settings], fault_documents: list[Any], baseline: Outcome
) -> None:
    run = FaultRun(fault_settings(), fault_documents)
    try:
        run.start()
        run.publish_paced(seconds=14)
        time.sleep(1.5)
        run.pipeline.workers = 2
        run.pipeline.start_worker(1)  # joins while events flow: a rebalance mid-stream
        run.wait_ready("worker-1", 1)
        time.sleep(3)
        leaving = run.pipeline.processes.pop("worker-1")
        leaving.send_signal(signal.SIGTERM)  # a clean leave: another rebalance mid-stream
        assert leaving.wait(timeout=60) == 0
        left = time.monotonic()
        run.pipeline.workers = 1
        run.join_publisher()
        run.drain(timeout_s=240)
        recovery_s = time.monotonic() - left
        lags, outcome = run.finish()
    finally:
        run.pipeline.stop()
    record("second worker joins, then leaves", 2, baseline, outcome, lags, recovery_s)


EXIT_BOUND_S = 30.0
"""Longest a process may take to finish its in-flight work and exit after SIGTERM."""


def test_sigterm_of_worker_and_sink_finishes_commits_and_exits_in_bound(
    fault_settings: Callable[..., Settings], fault_documents: list[Any], baseline: Outcome
) -> None:
    run = FaultRun(fault_settings(), fault_documents)
    exits: dict[str, tuple[int, float]] = {}
    try:
        run.start()
        run.publish_paced(seconds=10)
        time.sleep(1.5)
        for name in ("worker-0", "sink"):
            exits[name] = run.signal(name, signal.SIGTERM)
            last = time.monotonic()
            run.pipeline.check_alive()  # the supervisor starts it again
            run.wait_ready(name, 2)
        run.join_publisher()
        run.drain(timeout_s=240)
        recovery_s = time.monotonic() - last
        lags, outcome = run.finish()
    finally:
        run.pipeline.stop()
    for name, (status, seconds) in exits.items():
        assert status == 0, f"the {name} exited with {status} on SIGTERM"
        assert seconds <= EXIT_BOUND_S, f"the {name} took {seconds:.1f} s to exit"
    assert "flushing and stopping" in run.log("sink")
    record("SIGTERM of the worker, then the sink", 2, baseline, outcome, lags, recovery_s)
