"""The latency benchmark on a short, slow run: every figure it promises is measured."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from xborder.bench.latency import LatencyParams, run_latency

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_short_latency_run_measures_what_users_see(make_settings, tmp_path: Path) -> None:
    params = LatencyParams(
        rates=(200.0,), seconds=20.0, workers=1, seed=3, drain_timeout_s=60, idle_seconds=3.0
    )
    report = run_latency(make_settings(), params, tmp_path / "latency")

    written = json.loads((tmp_path / "latency" / "latency.json").read_text())
    assert written["runs"][0]["events"] == 4_000
    html = (tmp_path / "latency" / "latency.html").read_text()
    assert "<svg" in html and "Latency: link" in html and "Lag over time" in html

    (run,) = report["runs"]
    assert run["publisher"]["failed"] == 0 and run["publisher"]["achieved_per_s"] > 150
    assert run["outputs"]["dead_letters"] == 0 and run["outputs"]["undecodable"] == 0
    latency = run["latency_ms"]
    for kind in ("link", "case", "alert BORDER_ZONE_INCIDENT"):
        assert latency[kind]["count"] > 0, kind
        assert 0 < latency[kind]["p50"] <= latency[kind]["p99"] < math.inf, kind
        assert latency[kind]["unmapped"] == 0, kind
    rows = latency["clickhouse rows"]
    assert rows["count"] == 4_000 and 0 < rows["p50"] <= rows["p99"] < math.inf
    assert set(run["lag"]) == {"ingest", "blocks", "links", "sink"}
    assert all(trend["slope_per_s"] is not None for trend in run["lag"].values())
    assert all(trend["input_per_s"] > 0 for trend in run["lag"].values())
    cpu = run["cpu_seconds_per_1000_events"]
    assert {"worker-0", "sink", "total"} <= set(cpu) and all(v > 0 for v in cpu.values())
    idle = run["idle_cores"]  # an idle worker still fetches and heartbeats
    assert {"worker-0", "sink"} <= set(idle) and 0 < idle["worker-0"] < 1
    above = run["cpu_seconds_per_1000_events_above_idle"]
    assert set(above) == set(cpu)
    assert 0 < above["worker-0"] < cpu["worker-0"] and above["total"] < cpu["total"]
    assert run["rss"]["worker-0"]["ratio"] > 0
