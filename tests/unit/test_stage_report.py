"""The correlation stage's periodic log line: per-batch phases and input age."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any, cast

from streams.flows.correlate import oldest_age_s
from xborder.metrics import StageMetrics


def test_the_line_averages_phases_per_batch_and_then_starts_over() -> None:
    metrics = StageMetrics("correlation")
    assert metrics.line(30.0) is None  # nothing to report

    metrics.add_batch(4, 0.2, {"wait": 0.1, "apply": 0.05})
    metrics.add_batch(6, 0.6, {"wait": 0.3, "apply": 0.15})

    assert metrics.line(30.0) == (
        "correlation stage: 10 messages in 2 batches over 30 s; ms per batch: wait 200, "
        "apply 100; oldest message when taken 400 ms on average, 600 max"
    )
    assert metrics.line(30.0) is None
    metrics.add_batch(1, 0.01, {"wait": 0.002})
    assert metrics.line(30.0) == (
        "correlation stage: 1 messages in 1 batches over 30 s; ms per batch: wait 2; "
        "oldest message when taken 10 ms on average, 10 max"
    )


def _events(*timestamps: float | None) -> Any:
    return cast(Any, [SimpleNamespace(message=SimpleNamespace(timestamp=t)) for t in timestamps])


def test_the_age_is_the_oldest_timestamped_message() -> None:
    now = time.time()
    assert 1.9 < oldest_age_s(_events(now - 1, None, now - 2)) < 2.5
    assert oldest_age_s(_events(None)) == 0.0
    assert oldest_age_s(_events(now + 5)) == 0.0  # a clock ahead is no negative age
