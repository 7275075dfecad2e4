"""How long an ingest batch's first message already waited, by its broker append time."""

from __future__ import annotations

import time
from types import SimpleNamespace

from streams.flows.ingest import LOG_APPEND_TIME, waited_s
from xborder.undecodable import Undecodable


def _record(age_s: float, timestamp_type: int = LOG_APPEND_TIME) -> SimpleNamespace:
    return SimpleNamespace(
        timestamp=int((time.time() - age_s) * 1000), timestamp_type=timestamp_type
    )


def test_the_oldest_appended_message_sets_the_wait() -> None:
    fetched = [[_record(0.03), _record(0.01)], [_record(0.06)]]
    assert 0.05 <= waited_s(fetched, 0.1) < 0.08


def test_the_wait_is_capped_at_the_linger_and_never_negative() -> None:
    assert waited_s([[_record(0.15)]], 0.1) == 0.1
    assert waited_s([[_record(-2.0)]], 0.1) == 0.0  # the broker's clock runs ahead


def test_from_a_backlog_the_batch_fills_for_a_whole_linger() -> None:
    assert waited_s([[_record(5.0)]], 0.1) == 0.0  # far behind: full batches catch up
    assert waited_s([[_record(0.25)], [_record(0.05)]], 0.1) == 0.0  # the oldest decides


def test_producer_timestamps_and_placeholders_count_nothing() -> None:
    assert waited_s([[_record(5.0, timestamp_type=0)]], 0.1) == 0.0
    assert waited_s([[Undecodable(offset=3, error="bad crc")], []], 0.1) == 0.0
