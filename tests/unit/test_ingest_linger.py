"""How long an ingest batch's first message already waited, by its broker append time."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any, cast

from aiokafka import TopicPartition

from streams.flows.ingest import LOG_APPEND_TIME, behind, waited_s
from xborder.undecodable import Undecodable


def _record(age_s: float, timestamp_type: int = LOG_APPEND_TIME) -> SimpleNamespace:
    return SimpleNamespace(
        timestamp=int((time.time() - age_s) * 1000), timestamp_type=timestamp_type
    )


def test_the_oldest_appended_message_sets_the_wait() -> None:
    fetched = [[_record(0.03), _record(0.01)], [_record(0.06)]]
    assert 0.05 <= waited_s(fetched, 0.1) < 0.08


def test_the_wait_is_capped_at_the_linger_and_never_negative() -> None:
    assert waited_s([[_record(5.0)]], 0.1) == 0.1
    assert waited_s([[_record(-2.0)]], 0.1) == 0.0  # the broker's clock runs ahead


class _Highwaters:
    def __init__(self, **highwaters: int) -> None:
        self.highwaters = highwaters

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.highwaters.get(tp.topic)


def _at(*offsets: int) -> list[SimpleNamespace]:
    return [SimpleNamespace(offset=offset) for offset in offsets]


def test_behind_when_a_partition_holds_more_than_was_taken() -> None:
    a, b = TopicPartition("a", 0), TopicPartition("b", 0)
    consumer = cast(Any, _Highwaters(a=10, b=8))
    assert not behind(consumer, {a: _at(8, 9), b: _at(7)})  # both taken to the end
    assert behind(consumer, {a: _at(7, 8), b: _at(7)})  # offset 9 of a is there already
    assert not behind(cast(Any, _Highwaters()), {a: _at(3)})  # no highwater known yet
    assert not behind(consumer, {a: []})


def test_producer_timestamps_and_placeholders_count_nothing() -> None:
    assert waited_s([[_record(5.0, timestamp_type=0)]], 0.1) == 0.0
    assert waited_s([[Undecodable(offset=3, error="bad crc")], []], 0.1) == 0.0
