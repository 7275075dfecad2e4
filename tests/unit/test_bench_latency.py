"""The latency benchmark's pure parts: percentiles, trends, the FIFO ClickHouse latency,
which incidents caused each output, the looped load. No broker."""

from __future__ import annotations

import math
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from streams.correlation.patterns import PatternConfig, alert_id, subject_both_sides
from streams.correlation.scoring import correlation_id
from tests.unit.test_correlation_support import (
    AGENCIES,
    ANGIANG_EDGE,
    CANTHO_EDGE,
    HOUR,
    T0,
    TOKEN_P,
    view,
)
from xborder.bench import chart
from xborder.bench.latency import LatencyParams, parse_rates
from xborder.bench.latency_load import loop_token, loop_value
from xborder.bench.latency_math import (
    AlertSeen,
    CaseSeen,
    CorrelationSeen,
    above_idle,
    alert_inputs,
    case_membership,
    fifo_latencies,
    first_arrivals,
    growing,
    lag_trend,
    output_latencies,
    percentile,
    rss_trend,
    send_lateness_ms,
    slope,
    summary,
    sustained,
)
from xborder.errors import ConfigurationError

A = ("cantho", "CT-1")
B = ("angiang", "AG-1")
C = ("angiang", "AG-2")


# -- distributions and trends -------------------------------------------------------------


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert [percentile(values, q) for q in (50, 95, 99, 100)] == [50, 95, 99, 100]
    assert percentile([7.0], 99) == 7.0
    assert percentile([1.0, 2.0], 50) == 1.0 and percentile([1.0, 2.0], 51) == 2.0
    assert math.isnan(percentile([], 50))


def test_summary_counts_and_rounds() -> None:
    assert summary([3.14159, 1.0, 2.0]) == {
        "count": 3,
        "p50": 2.0,
        "p95": 3.1,
        "p99": 3.1,
        "max": 3.1,
    }
    empty = summary([])
    assert empty["count"] == 0 and math.isnan(empty["p99"])


def test_slope_is_least_squares() -> None:
    assert slope([(t, 3 * t + 2) for t in range(10)]) == pytest.approx(3.0)
    assert slope([(t, 5.0) for t in range(10)]) == pytest.approx(0.0)
    noisy = [(t, 2 * t + (1 if t % 2 else -1)) for t in range(100)]
    assert slope(noisy) == pytest.approx(2.0, abs=0.01)
    assert math.isnan(slope([(1.0, 1.0)])) and math.isnan(slope([(1.0, 1.0), (1.0, 2.0)]))


def test_lag_trend_of_a_growing_lag_and_its_drain() -> None:
    # publishing from t=100 to t=200 at 1,000/s; the group leaves 50/s behind, drains at 212
    lags = [(100.0 + t, 50.0 * t) for t in range(101)] + [(205.0, 900.0), (212.0, 0.0)]
    inputs = [(100.0 + t, 1000.0 * t) for t in range(101)]
    trend = lag_trend(lags, inputs, 100.0, 200.0)
    assert trend["slope_per_s"] == pytest.approx(50.0)
    assert trend["input_per_s"] == pytest.approx(1000.0)
    # steady window 110..200, thirds 110..140 and 170..200
    assert trend["first_third_mean"] == pytest.approx(50 * 25)
    assert trend["last_third_mean"] == pytest.approx(50 * 85)
    assert trend["max"] == 5000.0 and trend["drain_s"] == 12.0
    assert growing(trend)
    assert lag_trend(lags[:101], inputs, 100.0, 200.0)["drain_s"] is None


def test_a_sawtooth_lag_that_keeps_up_is_not_growing() -> None:
    # batches commit every 2 s: lag climbs to 2 s of input and falls back, over and over
    lags = [(float(t), 1000.0 * (t % 2) + 500) for t in range(0, 61)]
    inputs = [(float(t), 1000.0 * t) for t in range(0, 61)]
    trend = lag_trend(lags, inputs, 0.0, 60.0)
    assert not growing(trend)
    # a slow creep below one second of input over the window is not growth either
    creeping = [(t, v + 10 * t) for t, v in lags]
    assert not growing(lag_trend(creeping, inputs, 0.0, 60.0))


def test_rss_trend_flat_or_growing() -> None:
    flat = rss_trend([(float(t), 100.0 + (t % 3)) for t in range(100)], 0.0, 100.0)
    assert flat["flat"] and flat["ratio"] == pytest.approx(1.0, abs=0.02)
    leak = rss_trend([(float(t), 100.0 + 2 * t) for t in range(100)], 0.0, 100.0)
    assert leak["flat"] is False and leak["ratio"] > 1.5
    assert rss_trend([], 0.0, 10.0)["ratio"] is None


def test_cpu_above_idle_takes_off_each_process_idle_share() -> None:
    # 60 s carrying 6,000 events; the broker idles at 0.1 core, the worker at 0.05
    used = {"broker": 9.0, "worker-0": 15.0, "sink": 2.0}
    idle = {"broker": 0.1, "worker-0": 0.05}
    above = above_idle(used, idle, 60.0, 6_000)
    assert above == {"broker": 0.5, "sink": pytest.approx(0.3333), "worker-0": 2.0, "total": 2.8333}
    # a reading under idle (noise) counts as nothing, not as a negative cost
    assert above_idle({"broker": 1.0}, {"broker": 0.5}, 60.0, 1_000)["broker"] == 0.0
    assert above_idle(used, idle, 60.0, 0) == {}


def test_send_lateness_against_the_fixed_schedule() -> None:
    sent = [10.0, 10.01, 10.02, 10.05]  # at 100/s the last was due at 10.03
    assert send_lateness_ms(sent, 100.0) == pytest.approx([0.0, 0.0, 0.0, 20.0])
    assert send_lateness_ms([], 100.0) == []


# -- ClickHouse rows: horizontal distance between the sent and committed curves -------------


def test_fifo_latency_is_the_horizontal_distance() -> None:
    sent = [0.0, 1.0, 2.0, 3.0]
    commits = [(0.5, 0), (1.5, 2), (3.5, 4)]
    assert fifo_latencies(sent, commits) == pytest.approx([1500.0, 500.0, 1500.0, 500.0])


def test_fifo_latency_ignores_dips_and_leaves_out_unreached_events() -> None:
    sent = [0.0, 0.1, 0.2]
    commits = [(1.0, 1), (1.2, 0), (1.4, 1), (2.0, 2)]  # a sample read before a commit landed
    assert fifo_latencies(sent, commits) == pytest.approx([1000.0, 1900.0])
    assert fifo_latencies(sent, []) == []


# -- which incidents caused an output ------------------------------------------------------


def _alert(kind: str, identifier: str, **fields: Any) -> AlertSeen:
    defaults: dict[str, Any] = {
        "arrival": 10.0,
        "topic": "alerts.cantho",
        "correlation_ids": (),
        "case_id": None,
        "description": "",
    }
    return AlertSeen(**{**defaults, **fields, "identifier": identifier, "kind": kind})


def test_border_zone_alert_maps_to_its_incident_by_identifier() -> None:
    index = {alert_id("BORDER_ZONE_INCIDENT", *ref): ref for ref in (A, B)}
    alert = _alert("BORDER_ZONE_INCIDENT", alert_id("BORDER_ZONE_INCIDENT", *B))
    assert alert_inputs(alert, {}, {}, index.get, correlation_id) == (B,)
    stranger = _alert("BORDER_ZONE_INCIDENT", alert_id("BORDER_ZONE_INCIDENT", *C))
    assert alert_inputs(stranger, {}, {}, index.get, correlation_id) is None


def test_alerts_with_correlations_map_to_the_linked_incidents() -> None:
    ab, bc = correlation_id(A, B), correlation_id(B, C)
    pairs = {ab: (A, B), bc: (B, C)}
    group = _alert("GROUP_FORMING", "g", correlation_ids=(ab, bc), case_id="case-1")
    assert alert_inputs(group, pairs, {}, lambda _: None, correlation_id) == (A, B, C)
    unknown = _alert("GROUP_FORMING", "g", correlation_ids=(ab, "nope"))
    assert alert_inputs(unknown, pairs, {}, lambda _: None, correlation_id) is None
    by_case = _alert("OTHER", "o", case_id="case-1")
    members = {"case-1": {A, C}}
    assert alert_inputs(by_case, pairs, members, lambda _: None, correlation_id) == (C, A)


def test_subject_both_sides_below_the_threshold_maps_by_its_verified_description() -> None:
    cfg = PatternConfig(agencies=AGENCIES)
    a = view("cantho", "CT-9", CANTHO_EDGE, T0, tokens=(("PERSON", TOKEN_P),))
    b = view("angiang", "AG-9", ANGIANG_EDGE, T0 + HOUR, tokens=(("PERSON", TOKEN_P),))
    made = subject_both_sides(a, b, ("PERSON", TOKEN_P), cfg, 72 * HOUR)
    assert made is not None
    alert = _alert(
        "SUBJECT_BOTH_SIDES",
        made["identifier"],
        correlation_ids=tuple(made["correlation_ids"]),
        description=made["description"],
    )
    # no Correlation was written for the pair: the description names it, the id confirms
    found = alert_inputs(alert, {}, {}, lambda _: None, correlation_id)
    assert found is not None and set(found) == {("cantho", "CT-9"), ("angiang", "AG-9")}
    forged = alert._replace(description=re.sub("AG-9", "AG-8", alert.description))
    assert alert_inputs(forged, {}, {}, lambda _: None, correlation_id) is None


def test_case_membership_follows_merges() -> None:
    cases = [
        CaseSeen(1.0, "cases", "e1", "k1", "CREATED", (A, B), ("ab",), ()),
        CaseSeen(2.0, "cases", "e2", "k2", "CREATED", (C,), (), ()),
        CaseSeen(3.0, "cases", "e3", "k1", "MERGED", (), ("bc",), ("k2",)),
    ]
    assert case_membership(cases)["k1"] == {A, B, C}


def test_first_arrivals_count_repeats_per_topic_not_copies_per_agency() -> None:
    records = [("alerts.a", "x", 2.0), ("alerts.b", "x", 1.5), ("alerts.a", "x", 3.0)]
    first, duplicates = first_arrivals(records)
    assert first == {"x": 1.5} and duplicates == 1


def test_output_latencies_from_the_latest_input_publish() -> None:
    ab, ac = correlation_id(A, B), correlation_id(A, C)
    published = {A: 100.0, B: 101.0}  # C was not published in this run
    correlations = [
        CorrelationSeen(101.25, "correlations", ab, A, B),
        CorrelationSeen(101.5, "correlations", ab, A, B),  # the same link again
        CorrelationSeen(102.0, "correlations", ac, A, C),
    ]
    cases = [CaseSeen(101.3, "cases", "e1", "k1", "CREATED", (A, B), (ab,), ())]
    alerts = [
        _alert("BORDER_ZONE_INCIDENT", "bz-a", arrival=100.05, topic="alerts.angiang"),
        _alert("BORDER_ZONE_INCIDENT", "bz-a", arrival=100.08, topic="alerts.cantho"),
        _alert("GROUP_FORMING", "g1", arrival=101.4, correlation_ids=(ab,)),
    ]
    border = {"bz-a": A}
    figures = output_latencies(correlations, cases, alerts, published, border.get, correlation_id)
    assert figures["link"]["count"] == 1 and figures["link"]["p50"] == 250.0
    assert figures["link"]["duplicates"] == 1 and figures["link"]["unmapped"] == 1
    assert figures["case"]["p99"] == pytest.approx(300.0)
    assert figures["alert BORDER_ZONE_INCIDENT"]["max"] == pytest.approx(50.0)
    assert figures["alert BORDER_ZONE_INCIDENT"]["duplicates"] == 0
    assert figures["alert GROUP_FORMING"]["p50"] == pytest.approx(400.0)


def test_sustained_names_every_reason() -> None:
    steady = {
        "slope_per_s": 0.5,
        "first_third_mean": 10,
        "last_third_mean": 11,
        "input_per_s": 1000.0,
    }
    run: dict[str, Any] = {
        "rate": 1000.0,
        "publisher": {"achieved_per_s": 999.0},
        "lag": {"ingest": steady},
        "latency_ms": {"link": {"count": 5, "p99": 300.0}},
        "drained": True,
    }
    assert sustained(run) == (True, [])
    run["publisher"]["achieved_per_s"] = 800.0
    run["lag"]["blocks"] = {
        "slope_per_s": 120.0,
        "first_third_mean": 100,
        "last_third_mean": 5000,
        "input_per_s": 1000.0,
    }
    run["latency_ms"]["link"]["p99"] = 1500.0
    run["drained"] = False
    held, why = sustained(run)
    assert not held and len(why) == 4 and "blocks lag grows 120/s" in why


# -- the looped load and the flags --------------------------------------------------------


def test_loops_give_new_ids_tokens_and_later_times() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    token = "ab" * 32
    value = {
        "event_id": "27f92748-79d4-41ee-be62-2fa5048a7703",
        "incident_id": "CT-1",
        "occurred_at": t0,
        "reported_at": t0 + timedelta(minutes=5),
        "subjects": [{"role": "SUSPECT", "kind": "PERSON", "token": token, "key_id": "k"}],
    }
    assert loop_value(value, 0, timedelta(0)) is value
    shift = timedelta(days=40)
    one, two = loop_value(value, 1, shift), loop_value(value, 2, 2 * shift)
    assert one["incident_id"] == "CT-1-L1" and two["incident_id"] == "CT-1-L2"
    assert uuid.UUID(one["event_id"]) != uuid.UUID(two["event_id"])
    assert loop_value(value, 1, shift)["event_id"] == one["event_id"]  # duplicates stay so
    assert one["occurred_at"] == t0 + shift and one["reported_at"] == t0 + shift + timedelta(
        minutes=5
    )
    tokens = {token, one["subjects"][0]["token"], two["subjects"][0]["token"]}
    assert len(tokens) == 3 and all(re.fullmatch("[0-9a-f]{64}", t) for t in tokens)
    assert loop_token(token, 0) == token and value["subjects"][0]["token"] == token


def test_parse_rates_and_the_events_a_plan_may_need() -> None:
    assert parse_rates("1000, 2000,max") == (1000.0, 2000.0, "max")
    for bad in ("", "fast", "-5", "0"):
        with pytest.raises(ConfigurationError):
            parse_rates(bad)
    assert LatencyParams(rates=(200.0,), seconds=20).most_events() == 4000
    searching = LatencyParams(rates=(1000.0, "max"), seconds=10, probe_seconds=5, max_probes=2)
    assert searching.most_events() == math.ceil(1000 * 1.25**2 * 10)


def test_bar_chart_and_table_render() -> None:
    svg = chart.bar_chart("Latency: link", {"1,000/s": {"p50": 10.0, "p99": 90.0}}, "ms")
    assert svg.count("<rect") == 2 and "p99" in svg
    assert "no data" in chart.bar_chart("empty", {}, "ms")
    assert "<td>-</td>" in chart.table(["a", "b"], [[1, None]])


@pytest.mark.parametrize(
    ("fixed", "holds_up_to", "probed", "highest", "final"),
    [
        # from the highest fixed rate that held, up by x1.25 until a probe fails
        ({1000: True, 2000: True, 5000: False}, 3000, [2500, 3125], 2500, 2500),
        # never at or above a fixed rate that failed
        ({1000: True, 1200: False}, 3000, [], 1000, None),
        # the first step up fails: the fixed run already is the full run at the best rate
        ({2000: True}, 2200, [2500], 2000, None),
        # nothing held: down from the lowest fixed rate until a probe holds
        ({1000: False}, 700, [800, 640], 640, 640),
        # no fixed rates: from 1,000/s
        ({}, 2000, [1000, 1250, 1562, 1952, 2440], 1952, 1952),
    ],
)
def test_max_search_steps_and_stops(
    monkeypatch: pytest.MonkeyPatch,
    fixed: dict[int, bool],
    holds_up_to: float,
    probed: list[int],
    highest: float,
    final: float | None,
) -> None:
    from types import SimpleNamespace

    from xborder.bench import latency

    calls: list[tuple[float, float, str]] = []

    def fake_run(bench: Any, rate: float, seconds: float, purpose: str) -> dict[str, Any]:
        calls.append((rate, seconds, purpose))
        return {"rate": rate, "purpose": purpose, "sustained": rate <= holds_up_to}

    monkeypatch.setattr(latency, "_run_rate", fake_run)
    params = LatencyParams(rates=(*map(float, fixed), "max"), seconds=300, probe_seconds=60)
    runs = [{"rate": float(r), "sustained": held} for r, held in fixed.items()]
    found = latency._search_max(SimpleNamespace(params=params), runs)  # type: ignore[arg-type]

    assert [rate for rate, _, purpose in calls if purpose == "probe"] == probed
    assert all(seconds == 60 for _, seconds, purpose in calls if purpose == "probe")
    assert found["highest_held_per_s"] == highest
    finals = [(rate, seconds) for rate, seconds, purpose in calls if purpose == "max"]
    assert finals == ([] if final is None else [(final, 300)])
    assert len(found["runs"]) == len(calls)
