"""Fixtures of the fault suite: per-run settings, the scenario, one fault-free baseline run
shared by every test, and the fault table printed at the end of the session."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import free_port_pair
from tests.faults.harness import RECORDS, FaultRecord, FaultRun, Outcome, scenario_documents
from xborder.settings import Settings

FAULT_SETTINGS: dict[str, Any] = {
    "sink.flush_interval_s": 0.3,
    "sink.retry_backoff_s": 0.5,
    # a killed worker's partitions go to its restarted self (or the other worker) sooner
    "worker.session_timeout_s": 6.0,
    "sink.session_timeout_s": 6.0,
    # the scenario's cases opened months before the wall clock: with the default timeout
    # every tick of the lifecycle would raise escalations, as many as the run is long
    "verification.timeout_hours": 1_000_000.0,
    # and its wall-clock ticks would add a message to the case stage's input after a drain
    "verification.tick_s": 3_600.0,
}


@pytest.fixture(scope="session")
def fault_settings(
    kafka_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., Settings]:
    """Factory of run settings: fresh topics, groups, app id and data dir on ``base``
    (the session broker unless another is given)."""

    def build(base: Settings | None = None, **overrides: Any) -> Settings:
        run = uuid.uuid4().hex[:10]
        values: dict[str, Any] = {
            "data_dir": tmp_path_factory.mktemp(f"fault-{run}"),
            "topics.prefix": f"f{run}.",
            "worker.app_id": f"xborder-fault-{run}",
            "worker.web_port": free_port_pair(),
            "sql_http.port": free_port_pair(),
            "sink.group_id": f"xborder-fault-sink-{run}",
            **FAULT_SETTINGS,
            **overrides,
        }
        return (base or kafka_settings).with_overrides(**values)

    return build


@pytest.fixture(scope="session")
def fault_documents(kafka_settings: Settings) -> list[Any]:
    return scenario_documents(kafka_settings)


@pytest.fixture(scope="session")
def baseline(fault_settings: Callable[..., Settings], fault_documents: list[Any]) -> Outcome:
    """The fault-free run every fault test compares with."""
    run = FaultRun(fault_settings(), fault_documents)
    try:
        run.start()
        run.publish(run.messages)
        drain_s = run.drain()
        lags, outcome = run.finish()
    finally:
        run.pipeline.stop()
    assert lags == {"ingest": 0, "correlation": 0, "sink": 0}, lags
    assert outcome.rows["correlations"] and outcome.rows["cases_current"]
    assert outcome.rows["alert ids"] and len(outcome.rows["incidents"]) > 1_000
    raw = sum(outcome.raw_duplicates.values())
    RECORDS.append(
        FaultRecord("none (the baseline; drain time)", 0, 0, 0, 0, drain_s, raw, outcome.too_late)
    )
    return outcome


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RECORDS:
        return
    write = terminalreporter.write_line
    terminalreporter.section("fault table")
    write(
        f"{'fault':<44} {'injected':>8} {'lost':>5} {'dup':>4} {'diff':>5} "
        f"{'recovery s':>10} {'raw dup':>8} {'too late':>8}"
    )
    for r in RECORDS:
        write(
            f"{r.fault:<44} {r.injected:>8} {r.lost:>5} {r.duplicated:>4} {r.differing:>5} "
            f"{r.recovery_s:>10.1f} {r.raw_duplicates:>8} {r.too_late:>8}"
        )
