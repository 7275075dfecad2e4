"""Correlator and CaseStage: links, duplicates, updates, lateness, one vs two partitions,
determinism, bounded state, and every output encoding with the real codec."""

from __future__ import annotations

import zlib
from dataclasses import replace
from typing import Any

from streams.correlation.bench import Generator
from streams.correlation.blocking import blocking_keys
from streams.correlation.engine import HOUR_MS, CaseStage, Correlator, CorrelatorConfig, Outputs
from streams.correlation.model import IncidentView, Ref, to_wire
from streams.correlation.occurrence import OccurrenceConfig
from streams.correlation.patterns import PatternConfig
from streams.correlation.scoring import ScoringConfig, correlation_id
from tests.unit.test_correlation_support import (
    AGENCIES,
    ANGIANG_DEEP,
    ANGIANG_EDGE,
    CANTHO_DEEP,
    CANTHO_EDGE,
    HOUR,
    T0,
    TOKEN_H,
    TOKEN_P,
    TOKEN_V,
    codec,
    encodes,
    jurisdictions,
    view,
)

CONFIG = CorrelatorConfig(patterns=PatternConfig(agencies=AGENCIES))
SPATIAL = replace(CONFIG, scoring=ScoringConfig(threshold=6.0))
V, P, H = ("VEHICLE", TOKEN_V), ("PHONE", TOKEN_P), ("PERSON", TOKEN_H)


def items(*views: IncidentView, cfg: CorrelatorConfig = CONFIG) -> list[tuple[str, IncidentView]]:
    return [(key, v) for v in views for key in blocking_keys(v, cfg.blocking)]


def linked(out: Outputs) -> list[set[str]]:
    return [{r["incident_a"]["incident_id"], r["incident_b"]["incident_id"]}
            for r in out.correlations]  # fmt: skip


def test_a_shared_token_across_the_boundary_links_once() -> None:
    a = view("cantho", "CT-1", at=CANTHO_DEEP, t=T0, tokens=(V, P))
    b = view("angiang", "AG-1", at=ANGIANG_DEEP, t=T0 + 20 * HOUR, tokens=(V, P))
    same_side = view("cantho", "CT-2", at=CANTHO_DEEP, t=T0 + HOUR, tokens=(V,))
    correlator = Correlator(CONFIG)
    out = correlator.process(items(a, same_side, b))
    # CT-1/AG-1 share two tokens (two keys): emitted once; CT-1/CT-2 are on one side
    assert linked(out) == [{"CT-1", "AG-1"}, {"CT-2", "AG-1"}]
    record = out.correlations[0]
    assert record["correlation_id"] == correlation_id(a.ref, b.ref)
    assert record["created_at"] == b.occurred_ms
    kinds = [e["kind"] for e in record["evidence"]]
    assert kinds[:2] == ["SHARED_PHONE", "SHARED_VEHICLE"]
    assert not linked(correlator.process(items(b)))  # the same pair again: not re-emitted
    assert correlator.counters["correlations"] == 2


def test_hard_negatives_are_not_linked_and_space_time_is_not_scored_for_identity() -> None:
    tags = ("motorbike", "night")
    a = view("cantho", "CT-1", at=CANTHO_EDGE, t=T0, mo=tags, tokens=(V,))
    b = view("angiang", "AG-1", at=ANGIANG_EDGE, t=T0 + HOUR, mo=tags, tokens=(P,))
    correlator = Correlator(CONFIG)
    out = correlator.process(items(a, b))
    assert out.correlations == []
    # the space-time items are searched for double reports only: no identity pair scored
    assert correlator.counters["pairs_scored"] == 0
    assert correlator.counters["spatial_skipped"] == 0

    without_occurrences = replace(CONFIG, occurrence=OccurrenceConfig(enabled=False))
    assert not without_occurrences.routes_spatial()
    correlator = Correlator(without_occurrences)
    assert correlator.process(items(a, b)).correlations == []
    assert correlator.counters["spatial_skipped"] >= 2 and correlator.counters["pairs_scored"] == 0


def test_space_time_links_when_the_threshold_allows_it() -> None:
    tags = ("motorbike", "night")
    a = view("cantho", "CT-1", at=CANTHO_EDGE, t=T0, mo=tags)
    b = view("angiang", "AG-1", at=ANGIANG_EDGE, t=T0 + HOUR, mo=tags)
    far = view("angiang", "AG-2", at=ANGIANG_DEEP, t=T0 + HOUR, mo=tags)
    assert SPATIAL.spatial_can_link() and not CONFIG.spatial_can_link()
    correlator = Correlator(SPATIAL)
    out = correlator.process(items(a, b, far, cfg=SPATIAL))
    assert linked(out) == [{"CT-1", "AG-1"}]
    assert out.correlations[0]["evidence"][0]["kind"] == "DISTANCE"
    # beyond the span in which the time weight can still matter: not even compared
    assert SPATIAL.spatial_search_span_ms() < SPATIAL.spatial_span_ms
    late = view("angiang", "AG-3", at=ANGIANG_EDGE, t=T0 + 11 * HOUR, mo=tags)
    before = correlator.counters["pairs_scored"]
    correlator.process(items(late, cfg=SPATIAL))
    assert correlator.counters["pairs_scored"] == before


def test_duplicate_events_do_not_duplicate_links() -> None:
    a = view("cantho", "CT-1", at=CANTHO_DEEP, t=T0, tokens=(V,))
    b = view("angiang", "AG-1", at=ANGIANG_DEEP, t=T0 + HOUR, tokens=(V,))
    again = b._replace()
    correlator = Correlator(SPATIAL)
    out = correlator.process(items(a, b, again, cfg=SPATIAL))
    out2 = correlator.process(items(again, a, cfg=SPATIAL))
    assert len(out.correlations) == 1 and out2.correlations == []
    assert correlator.counters["duplicates"] >= 4


def test_an_update_replaces_the_incident_view() -> None:
    a = view("cantho", "CT-1", at=CANTHO_DEEP, t=T0, tokens=(V,), version_ms=T0)
    b = view("angiang", "AG-1", at=ANGIANG_DEEP, t=T0 + HOUR, tokens=(P,))
    correlator = Correlator(CONFIG)
    assert correlator.process(items(a, b)).correlations == []
    # the update names the phone: routed under the old keys and the new ones, it links
    upd = a._replace(event_id="00000000-0000-4000-8000-00000000aaaa", tokens=(P,),
                  version_ms=T0 + 2 * HOUR)  # fmt: skip
    keys = dict.fromkeys(blocking_keys(a, CONFIG.blocking) + blocking_keys(upd, CONFIG.blocking))
    out = correlator.process([(key, upd) for key in keys])
    assert linked(out) == [{"CT-1", "AG-1"}]
    assert out.correlations[0]["incident_b"]["event_id"] == upd.event_id
    # the old version (with the vehicle) no longer matches a new vehicle sighting
    c = view("angiang", "AG-2", at=ANGIANG_DEEP, t=T0 + 3 * HOUR, tokens=(V,))
    assert correlator.process(items(c)).correlations == []
    # and a redelivered report (older version) is ignored
    assert correlator.process(items(a)).correlations == []
    assert correlator.counters["stale"] >= 1


def test_too_late_events_are_counted_not_correlated() -> None:
    cfg = replace(CONFIG, window_ms=10 * HOUR, allowed_lateness_ms=HOUR)
    correlator = Correlator(cfg)
    a = view("cantho", "CT-1", at=CANTHO_DEEP, t=T0, tokens=(V,))
    now = view("cantho", "CT-2", at=CANTHO_DEEP, t=T0 + 20 * HOUR)
    correlator.process(items(a, now))
    assert correlator.watermark_ms == T0 + 19 * HOUR
    late = view("angiang", "AG-1", at=ANGIANG_DEEP, t=T0 + 8 * HOUR, tokens=(V,))
    out = correlator.process(items(late))
    assert out.too_late == 1 and out.correlations == [] and out.alerts == []
    assert correlator.counters["too_late"] == 1
    ok = view("angiang", "AG-2", at=ANGIANG_DEEP, t=T0 + 10 * HOUR, tokens=(V,))
    assert correlator.process(items(ok)).too_late == 0


def test_border_zone_alert_once_per_incident_whatever_the_fan_out() -> None:
    v = view("cantho", "CT-1", at=CANTHO_EDGE, tokens=(V,))
    keys = items(v)
    correlator = Correlator(CONFIG)
    alerts = correlator.process(keys + keys).alerts
    assert [a["alert_kind"] for a in alerts] == ["BORDER_ZONE_INCIDENT"]
    assert correlator.border_alerts([v]) == alerts
    update = v._replace(event_id="00000000-0000-4000-8000-00000000bbbb", version_ms=T0 + 1)
    assert correlator.process(items(update)).alerts == []  # same incident: same identifier
    off = replace(CONFIG, emit_border_alerts=False)
    assert Correlator(off).process(keys).alerts == []


def generated(n: int, seed: int = 5) -> list[IncidentView]:
    gen = Generator(jurisdictions(), rate_per_hour=300, seed=seed)
    stream = gen.events(T0)
    return [next(stream) for _ in range(n)]


def run(correlator: Correlator, all_items: list[tuple[str, IncidentView]]) -> Outputs:
    total = Outputs()
    for start in range(0, len(all_items), 500):
        out = correlator.process(all_items[start : start + 500])
        total.correlations += out.correlations
        total.alerts += out.alerts
        total.too_late += out.too_late
    return total


def test_same_input_same_outputs() -> None:
    views = generated(3000)
    for cfg in (CONFIG, SPATIAL):
        first = run(Correlator(cfg), items(*views, cfg=cfg))
        second = run(Correlator(cfg), items(*views, cfg=cfg))
        assert first.correlations and first.alerts
        assert first == second


def test_one_partition_and_two_partitions_give_the_same_results() -> None:
    views = generated(3000)
    every = items(*views)
    one = run(Correlator(CONFIG), every)
    parts = [Correlator(CONFIG), Correlator(CONFIG)]
    outs = [
        run(parts[p], [(k, v) for k, v in every if zlib.crc32(k.encode()) % 2 == p]) for p in (0, 1)
    ]
    by_id = {r["correlation_id"]: r for out in outs for r in out.correlations}
    assert by_id == {r["correlation_id"]: r for r in one.correlations}
    two_alerts = [a["identifier"] for out in outs for a in out.alerts]
    assert sorted(two_alerts) == sorted(a["identifier"] for a in one.alerts)
    assert len(two_alerts) == len(set(two_alerts))  # border alerts come from one partition
    # the case stage ends with the same cases, links arriving in either interleaving
    by_ref: dict[Ref, IncidentView] = {v.ref: v for v in views}
    stage_one, stage_two = CaseStage(CONFIG), CaseStage(CONFIG)
    stage_one.process(one.correlations, by_ref)
    stage_two.process(outs[1].correlations + outs[0].correlations + outs[1].correlations, by_ref)
    assert stage_one.tracker.cases() == stage_two.tracker.cases() != {}


def test_case_stage_reads_decoded_records_and_ignores_repeats() -> None:
    views = generated(2000)
    out = run(Correlator(CONFIG), items(*views))
    by_ref = {v.ref: v for v in views}
    raw = CaseStage(CONFIG).process(out.correlations, by_ref)
    c = codec()
    decoded = [c.decode(c.encode("Correlation", r)).value for r in out.correlations]
    again = CaseStage(CONFIG)
    from_avro = again.process(decoded + decoded, by_ref)
    assert from_avro.case_events == raw.case_events
    assert [a["identifier"] for a in from_avro.alerts] == [a["identifier"] for a in raw.alerts]
    assert again.process(decoded, by_ref).case_events == []


def planted_group() -> list[IncidentView]:
    """Four incidents of one group: a vehicle on both sides, a different person each time."""
    places = [CANTHO_EDGE, ANGIANG_EDGE, CANTHO_DEEP, ANGIANG_DEEP]
    return [
        view(AGENCIES[i % 2], at=places[i], t=T0 + (i + 1) * HOUR, tokens=(V, ("PERSON", f"p{i}")))
        for i in range(4)
    ]


def test_every_output_encodes_with_the_real_codec() -> None:
    views = sorted(generated(2000) + planted_group(), key=lambda v: v.occurred_ms)
    out = run(Correlator(SPATIAL), items(*views, cfg=SPATIAL))
    stage = CaseStage(SPATIAL).process(out.correlations, {v.ref: v for v in views})
    kinds = {a["alert_kind"] for a in out.alerts + stage.alerts}
    assert kinds == {"BORDER_ZONE_INCIDENT", "SUBJECT_BOTH_SIDES", "GROUP_FORMING"}
    assert {e["event_type"] for e in stage.case_events} >= {"CREATED", "INCIDENT_ADDED"}
    records: list[tuple[str, list[dict[str, Any]]]] = [
        ("Correlation", out.correlations),
        ("Alert", out.alerts + stage.alerts),
        ("CaseEvent", stage.case_events),
    ]
    for name, values in records:
        for value in values:
            encodes(name, value)


def test_state_stays_bounded_as_history_grows() -> None:
    cfg = replace(CONFIG, window_ms=24 * HOUR_MS, allowed_lateness_ms=HOUR_MS)
    correlator = Correlator(cfg)
    gen = Generator(jurisdictions(), rate_per_hour=300, seed=9).events(T0)
    sizes = []
    for _ in range(12):  # 12 x 3,000 events at 300/h: 120 hours, five windows
        batch = [next(gen) for _ in range(3000)]
        run(correlator, items(*batch))
        sizes.append(correlator.stats()["incidents"])
    assert max(sizes[3:]) < 1.25 * 24 * 300  # a window's worth plus a bucket and lateness
    assert correlator.stats()["evicted"] > 0
    assert correlator.stats()["emitted_pairs_remembered"] < correlator.counters["correlations"]


def test_views_travel_in_wire_form() -> None:
    views = generated(500)
    wire = [(k, to_wire(v)) for k, v in items(*views)]
    from streams.correlation.model import from_wire

    back = [(k, from_wire(w)) for k, w in wire]
    assert run(Correlator(CONFIG), back) == run(Correlator(CONFIG), items(*views))
