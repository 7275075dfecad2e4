"""The verification benchmark's pure parts: the verdict schedule, the load's length, the
latency legs of each case, the forwarded inputs found on ``correlation.links``. No broker."""

from __future__ import annotations

import math
from typing import Any

import pytest

from streams.flows.verify import encode_input, encode_tick
from xborder.bench.verification import (
    CaseRun,
    Send,
    VerificationParams,
    case_rows,
    forwarded_position,
    late_firsts,
    latency_figures,
    target_met,
    verdict_schedule,
)


def test_each_case_gets_its_first_verdict_then_the_second_lead_s_later() -> None:
    sends = verdict_schedule(3, pace=10.0, lead_s=0.15)
    assert sends == [
        Send(0.0, 0, 0),
        Send(0.1, 1, 0),
        Send(0.15, 0, 1),
        Send(0.2, 2, 0),
        Send(0.25, 1, 1),
        Send(0.35, 2, 1),
    ]
    assert [s.at_s for s in sends] == sorted(s.at_s for s in sends)


def test_the_load_covers_warmup_every_case_and_the_tail() -> None:
    params = VerificationParams(cases=1000, rate=2000, pace=10, lead_s=2, warmup_s=10, tail_s=5)
    assert params.duration_s() == pytest.approx(10 + 2 + 99.9 + 5)
    assert params.load_events() == math.ceil(2000 * 116.9)
    assert VerificationParams(cases=1, rate=0.1, warmup_s=0, lead_s=0, tail_s=0).load_events() == 2


def _case(
    sent: float, acked: float, forwarded: float | None, written: float | None, arrival: float | None
) -> CaseRun:
    case = CaseRun("c", ("cantho", "angiang"))
    case.sent = [sent - 2, sent]
    case.acked = [sent - 1.99, acked]
    case.accepted_ts = [sent - 1.5, sent + 0.1]
    case.forwarded_ts = [sent - 1.9, forwarded]
    case.conclusion_ts, case.conclusion_arrival = written, arrival
    return case


def test_every_leg_is_measured_from_the_second_verdict_where_both_ends_were_seen() -> None:
    cases = [
        _case(100.0, 100.004, 100.05, 100.2, 100.25),
        _case(200.0, 200.010, 200.10, 200.4, 200.5),
        _case(300.0, 300.002, None, None, None),  # never concluded
    ]
    figures = latency_figures(cases)
    target = figures["received - verdict sent"]
    assert (target["count"], target["p50"], target["max"]) == (2, 250.0, 500.0)
    assert figures["received - verdict acked"]["max"] == pytest.approx(490.0)
    assert figures["conclusion sent - verdict sent"]["p50"] == pytest.approx(200.0)
    assert figures["  leg 1: verdict sent -> forwarded"]["max"] == pytest.approx(100.0)
    assert figures["  leg 2: forwarded -> conclusion sent"]["p50"] == pytest.approx(150.0)
    assert figures["  leg 3: conclusion sent -> received"]["max"] == pytest.approx(100.0)


def test_a_first_verdict_accepted_after_the_second_was_sent_is_counted() -> None:
    on_time = _case(100.0, 100.004, 100.05, 100.2, 100.25)
    late = _case(200.0, 200.010, 200.10, 200.4, 200.5)
    late.accepted_ts[0] = 200.3
    missing = _case(300.0, 300.002, None, None, None)
    missing.accepted_ts[0] = None
    assert late_firsts([on_time, late, missing]) == 2


def test_forwarded_inputs_are_found_by_the_position_they_were_written_at() -> None:
    payload = encode_input("p.verdicts.cantho", 3, 1042, b"case-1", b"\xc3\x01avro")
    assert forwarded_position(payload) == ("p.verdicts.cantho", 3, 1042)
    assert forwarded_position(encode_tick(1_700_000_000_000)) is None
    assert forwarded_position(b'{"w":{},"correlations":[],"views":[]}') is None
    assert forwarded_position(None) is None


def _report(published: int, concluded: int, achieved: float, p99: float) -> dict[str, Any]:
    return {
        "cases": {"published": published, "concluded": concluded},
        "load": {"offered_per_s": 2000.0, "achieved_per_s": achieved},
        "latency_ms": {"received - verdict sent": {"p99": p99}},
    }


def test_the_target_needs_a_thousand_cases_all_concluded_the_load_held_and_the_p99() -> None:
    assert target_met(_report(1000, 1000, 1990.0, 480.0)) == (True, [])
    met, why = target_met(_report(20, 19, 1500.0, 520.0))
    assert not met
    assert why == [
        "20 cases run, the target needs 1,000",
        "only 19 of 20 cases concluded",
        "the load achieved only 1,500/s",
        "p99 520 ms > 500 ms",
    ]
    assert not target_met(_report(1000, 1000, 2000.0, math.nan))[0]


def test_the_report_keeps_each_case_s_times_to_find_when_slow_cases_happened() -> None:
    rows = case_rows(
        [_case(100.0, 100.0041, 100.05, 100.2, 100.25), _case(300.0, 300.0, None, None, None)]
    )
    assert rows["columns"][0] == "case_id" and len(rows["columns"]) == 8
    assert rows["rows"][0][1:] == [98.0, 98.5, 100.0, 100.004, 100.05, 100.2, 100.25]
    assert rows["rows"][1][-3:] == [None, None, None]
