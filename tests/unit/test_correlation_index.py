"""WindowIndex: time-ordered lookups, bulk eviction, too-late events, duplicates, updates."""

from __future__ import annotations

import random

from streams.correlation.index import Admission, WindowIndex
from tests.unit.test_correlation_support import HOUR, T0, view

WINDOW, LATENESS = 72 * HOUR, 6 * HOUR


def test_candidates_are_live_within_the_span_in_time_order_without_self() -> None:
    index = WindowIndex(WINDOW, LATENESS)
    views = [view(t=T0 + h * HOUR) for h in (5, 0, 100, 3, -80)]
    for v in views:
        assert index.admit(v) is Admission.NEW
        assert index.add("k", v)
    probe = views[0]  # T0 + 5 h
    assert (
        [c.occurred_ms for c in index.candidates("k", probe)]
        == [
            T0 + h * HOUR
            for h in (0, 3, 100)  # -80 h and +100 h: 85 h and 95 h away
        ][:2]
    )
    assert [c.occurred_ms for c in index.candidates("k", probe, span_ms=3 * HOUR)] == [
        T0 + 3 * HOUR
    ]
    assert index.candidates("other", probe) == []
    assert probe not in index.candidates("k", probe)
    both = index.candidates_in(["k", "other", "k"], probe, span_ms=5 * HOUR)
    assert [c.occurred_ms for c in both] == [T0, T0 + 3 * HOUR] * 2


def test_advance_evicts_in_bulk_and_lookups_respect_the_cutoff_at_once() -> None:
    index = WindowIndex(WINDOW, LATENESS)
    old, new = view(t=T0), view(t=T0 + 50 * HOUR)
    for v in (old, new):
        index.admit(v)
        index.add("k", v)
        index.add(("cell", 1), v)
    assert index.stored == 4
    index.advance(T0 + WINDOW + HOUR)  # cutoff: T0 + 1 h
    assert index.cutoff_ms == T0 + HOUR
    probe = view(t=T0 + 60 * HOUR)
    assert index.candidates("k", probe) == [new]  # invisible at once...
    assert not index.is_live(old) and index.is_live(new)
    assert index.evicted == 0  # ...evicted when its whole time bucket is behind the cutoff
    index.advance(T0 + WINDOW + 2 * index.bucket_ms)
    assert index.evicted == 2 and index.stored == 2
    assert index.current(old.ref) is None and index.current(new.ref) is new
    index.advance(T0 + 200 * HOUR)
    assert index.stored == 0 and index.keys() == 0 and len(index) == 0
    assert index.advance(T0) == 0 and index.watermark_ms == T0 + 200 * HOUR  # never back


def test_too_late_views_are_flagged_counted_and_not_stored() -> None:
    index = WindowIndex(WINDOW, LATENESS)
    index.advance(T0 + WINDOW)  # cutoff T0
    late = view(t=T0 - 1)
    assert index.admit(late) is Admission.TOO_LATE
    assert not index.add("k", late)
    assert index.too_late == 1 and index.stored == 0 and len(index) == 0
    assert index.admit(view(t=T0)) is Admission.NEW  # exactly at the cutoff: still in


def test_a_redelivered_event_is_stored_once_per_key() -> None:
    index = WindowIndex(WINDOW, LATENESS)
    v = view(t=T0)
    twin = v._replace()  # same event, another object (decoded twice)
    neighbour = view(t=T0)  # same time, another event
    assert index.admit(v) is Admission.NEW and index.add("k", v)
    assert index.admit(neighbour) is Admission.NEW and index.add("k", neighbour)
    assert index.admit(twin) is Admission.CURRENT
    assert not index.add("k", twin)
    assert index.add("k2", twin)  # another key of the same event is fine
    assert index.duplicates == 1 and index.stored == 3
    assert index.candidates("k", view(t=T0 + 1)) == [v, neighbour]


def test_an_update_replaces_the_view_and_an_older_version_is_ignored() -> None:
    index = WindowIndex(WINDOW, LATENESS)
    report = view(incident="CT-1", t=T0, version_ms=T0 + HOUR)
    update = report._replace(event_id="upd", occurred_ms=T0 - HOUR, version_ms=T0 + 2 * HOUR)
    index.admit(report)
    index.add("k", report)
    assert index.admit(update) is Admission.UPDATED
    index.add("k", update)
    probe = view(agency="angiang", t=T0)
    assert index.candidates("k", probe) == [update]  # the report is no longer live
    assert index.current(report.ref) is update
    assert index.admit(report) is Admission.STALE and index.stale == 1
    assert index.current(report.ref) is update


def test_late_views_are_inserted_in_time_order() -> None:
    index = WindowIndex(WINDOW, LATENESS)
    rng = random.Random(1)
    times = [T0 + rng.randrange(0, 10 * HOUR) for _ in range(500)]
    for t in times:
        v = view(t=t)
        index.admit(v)
        index.add("k", v)
    got = [c.occurred_ms for c in index.candidates("k", view(t=T0 + 5 * HOUR))]
    assert got == sorted(times)


def test_state_stays_bounded_over_a_long_history() -> None:
    index = WindowIndex(10 * HOUR, HOUR)
    peak = 0
    for n in range(20_000):
        t = T0 + n * 60_000  # one event a minute, 333 hours in all
        v = view(t=t)
        index.admit(v)
        index.add(f"k{n % 50}", v)
        index.add(("cell", n % 7), v)
        if n % 100 == 99:
            index.advance(t - HOUR)
            peak = max(peak, index.stored)
    assert index.evicted > 30_000
    # 10 h of events (600) under two keys each, plus at most one bucket of slack
    assert peak <= 2 * (600 + 60 + 100)
    assert len(index) <= 600 + 60 + 100
