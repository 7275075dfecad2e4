"""The benchmarks' CPU meter: CPU seconds and cores of named processes over a window."""

from __future__ import annotations

import os
import time

from xborder.bench.probes import CpuMeter


def test_cpu_meter_reads_a_busy_process_as_about_one_core() -> None:
    meter = CpuMeter({"me": os.getpid()})
    meter.start()
    until = time.monotonic() + 0.3
    while time.monotonic() < until:  # one thread spinning: one core
        pass
    meter.stop()
    assert meter.seconds >= 0.3
    assert 0.1 < meter.used["me"] <= meter.seconds + 0.05
    assert 0.3 < meter.cores()["me"] <= 1.2


def test_cpu_meter_reports_no_cores_before_a_window_closed() -> None:
    assert CpuMeter({"me": os.getpid()}).cores() == {}
