"""Late data: each too-late event reported once over the partitions, the rate-limited
report, the backfill's correlation in event-time order, the status table."""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import replace

import orjson

from streams.correlation.engine import Correlator, CorrelatorConfig
from streams.correlation.model import IncidentView
from streams.correlation.patterns import PatternConfig
from streams.flows.backfill import correlate, links_messages
from streams.flows.correlate import Router, decode_blocks, decode_links
from tests.unit.test_correlation_support import (
    AGENCIES,
    ANGIANG_DEEP,
    ANGIANG_EDGE,
    CANTHO_DEEP,
    CANTHO_EDGE,
    HOUR,
    T0,
    TOKEN_P,
    TOKEN_V,
    codec,
    jurisdictions,
    view,
)
from xborder.metrics import LateMetrics
from xborder.status import GroupStatus, Status, format_status

CONFIG = CorrelatorConfig(
    window_ms=10 * HOUR, allowed_lateness_ms=HOUR, patterns=PatternConfig(agencies=AGENCIES)
)
V, P = ("VEHICLE", TOKEN_V), ("PHONE", TOKEN_P)
PARTITIONS = 4


def _route(router: Router, views: list[IncidentView]) -> dict[int, list[tuple[str, IncidentView]]]:
    """The items each partition gets, as the worker routes them (through the wire)."""
    events = [("src", "xborder.v1.IncidentReported", _event_of(v)) for v in views]
    by_partition, progress, _ = router.route(events)
    return {
        partition: decode_blocks(orjson.dumps({"s": progress, "i": items}))[1]
        for partition, items in by_partition.items()
    }


def _event_of(v: IncidentView) -> dict[str, object]:
    return {
        "event_id": v.event_id,
        "agency": v.agency,
        "incident_id": v.incident_id,
        "occurred_at": v.occurred_ms,
        "reported_at": v.occurred_ms,
        "location": {"lat": v.lat, "lon": v.lon},
        "category": v.category,
        "severity": v.severity,
        "subjects": [{"kind": k, "token": t} for k, t in v.tokens],
        "modus_operandi": sorted(v.modus_operandi),
    }


def test_a_too_late_event_is_reported_once_over_all_partitions() -> None:
    router = Router(jurisdictions(), CONFIG, PARTITIONS)
    engines = {p: Correlator(CONFIG) for p in range(PARTITIONS)}
    now = [
        view("cantho", at=CANTHO_EDGE, t=T0 + 20 * HOUR, tokens=(V,)),
        view("angiang", at=ANGIANG_EDGE, t=T0 + 20 * HOUR, tokens=(P,)),
    ]
    late = [
        view("cantho", "CT-OLD", at=CANTHO_EDGE, t=T0, tokens=(V, P)),
        view("angiang", "AG-OLD", at=ANGIANG_EDGE, t=T0 + HOUR, tokens=(V, P)),
    ]
    # every partition hears the sources' progress: the watermark is the same everywhere
    for batch, watermark in ((now, T0 + 19 * HOUR), (late, T0 + 19 * HOUR)):
        routed = _route(router, batch)
        reported: list[IncidentView] = []
        too_late = 0
        for partition, engine in engines.items():
            out = engine.process(routed.get(partition, []), watermark)
            reported += out.late
            too_late += out.too_late
    # each old event came to several partitions (two tokens, spatial cells): too late at
    # each, reported by one
    assert too_late > len(late)
    assert sorted(v.incident_id for v in reported) == ["AG-OLD", "CT-OLD"]


def test_the_late_report_is_rate_limited_and_keeps_the_totals() -> None:
    metrics = LateMetrics()
    assert metrics.due(0.0, 30.0) is None  # nothing to say
    metrics.add("incidents.cantho", 2)
    assert metrics.due(0.0, 30.0) == Counter({"incidents.cantho": 2})  # the first at once
    metrics.add("incidents.angiang")
    metrics.add("incidents.cantho")
    assert metrics.due(10.0, 30.0) is None  # within the interval: held back
    assert metrics.due(30.0, 30.0) == Counter({"incidents.angiang": 1, "incidents.cantho": 1})
    assert metrics.too_late == Counter({"incidents.cantho": 3, "incidents.angiang": 1})


def test_backfill_links_the_late_pair_and_leaves_the_live_pairs() -> None:
    live_a = view("cantho", "CT-LIVE", at=CANTHO_DEEP, t=T0 + 30 * HOUR, tokens=(P,))
    live_b = view("angiang", "AG-LIVE", at=ANGIANG_DEEP, t=T0 + 31 * HOUR, tokens=(P,))
    old_a = view("cantho", "CT-OLD", at=CANTHO_DEEP, t=T0, tokens=(V,))
    old_b = view("angiang", "AG-OLD", at=ANGIANG_DEEP, t=T0 + 2 * HOUR, tokens=(V,))
    config = replace(CONFIG, window_ms=72 * HOUR)
    # arrival order does not matter: the backfill correlates in event-time order
    records, wires = correlate(config, [live_a, old_b, live_b, old_a], {old_b.ref})
    assert [{r["incident_a"]["incident_id"], r["incident_b"]["incident_id"]} for r in records] == [
        {"CT-OLD", "AG-OLD"}
    ]
    assert set(wires) == {old_a.ref, old_b.ref}


def test_the_status_table_names_groups_lag_dead_letters_and_late_events() -> None:
    status = Status(
        "127.0.0.1:19092",
        1,
        [
            GroupStatus(
                "worker ingest",
                "app-ingest",
                ["incidents.cantho"],
                "Stable",
                1,
                5,
                {"incidents.cantho": 5},
                "2026-12-01T00:00:00+00:00",
            ),
            GroupStatus("backfill", "app-backfill", ["correlation.late"], "absent", 0, 2),
        ],
        {"invalid": 3, "undecodable": 1},
        {"incidents.cantho": 2},
    )
    out = io.StringIO()
    format_status(status, out)
    text = out.getvalue()
    assert "broker: reachable at 127.0.0.1:19092 (1 broker)" in text
    assert "worker ingest  app-ingest" in text and "2026-12-01T00:00:00+00:00" in text
    assert "invalid" in text and "incidents.cantho" in text
    assert "2 late events not yet backfilled: run 'xborder backfill'" in text
    assert status.as_dict()["broker"] == {
        "reachable": True,
        "bootstrap_servers": "127.0.0.1:19092",
        "brokers": 1,
    }


def test_backfilled_links_keep_each_future_case_in_one_message() -> None:
    # two future cases: CT-1/AG-1 (a vehicle), and CT-2/AG-2/AG-3 (a phone)
    views = [
        view("cantho", "CT-1", at=CANTHO_DEEP, t=T0, tokens=(V,)),
        view("angiang", "AG-1", at=ANGIANG_DEEP, t=T0 + HOUR, tokens=(V,)),
        view("cantho", "CT-2", at=CANTHO_DEEP, t=T0 + 2 * HOUR, tokens=(P,)),
        view("angiang", "AG-2", at=ANGIANG_DEEP, t=T0 + 3 * HOUR, tokens=(P,)),
        view("angiang", "AG-3", at=ANGIANG_DEEP, t=T0 + 4 * HOUR, tokens=(P,)),
    ]
    config = replace(CONFIG, window_ms=72 * HOUR)
    records, wires = correlate(config, views, {v.ref for v in views})
    assert len(records) == 3
    # a limit between the size of the larger case and that of both together
    (one_case,) = links_messages(codec(), records[1:], wires)
    (both,) = links_messages(codec(), records, wires)
    messages = links_messages(codec(), records, wires, (len(one_case) + len(both)) // 2)
    placed = {}
    for n, message in enumerate(messages):
        watermarks, decoded, _ = decode_links(codec(), message)
        assert watermarks == {}  # the case stage's watermark is left to the live stages
        for record in decoded:
            placed[record["correlation_id"]] = n
    assert len(messages) == 2 and len(placed) == 3
    by_message = Counter(placed.values())
    assert sorted(by_message.values()) == [1, 2]
