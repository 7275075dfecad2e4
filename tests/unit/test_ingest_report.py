"""The ingest task's periodic report: it must not fail while a delivery is in flight."""

from __future__ import annotations

import logging

from streams.flows.ingest import IngestLoop


def test_a_report_before_the_first_delivery_ends_counts_its_phases_as_zero(caplog) -> None:
    loop = IngestLoop.__new__(IngestLoop)
    loop.__post_init__()
    loop._count({"tp": [None] * 10}, 0.1, 0.02)  # type: ignore[dict-item]
    with caplog.at_level(logging.INFO, logger="streams.flows.ingest"):
        loop._report(31.0)  # the first batch's delivery has not finished yet
    line = caplog.records[-1].getMessage()
    assert "10 events in 1 batches" in line
    assert "collect 100, process 20, flush 0, commit 0" in line
    assert loop.metrics.batches == 0 and not loop.metrics.phase_s
