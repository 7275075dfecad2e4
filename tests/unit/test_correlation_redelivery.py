"""Redeliveries after the window: an event applied, evicted, then read again (a worker
restarted before its consumer committed) is a duplicate, not too late; an old event the
index never saw is still too late; the memory of applied ids stays bounded."""

from __future__ import annotations

from streams.correlation.blocking import blocking_keys
from streams.correlation.engine import Correlator, CorrelatorConfig
from streams.correlation.index import Admission, WindowIndex
from streams.correlation.model import IncidentView
from streams.correlation.patterns import PatternConfig
from tests.unit.test_correlation_support import (
    AGENCIES,
    ANGIANG_DEEP,
    CANTHO_DEEP,
    HOUR,
    T0,
    TOKEN_V,
    view,
)

WINDOW, LATENESS = 72 * HOUR, 6 * HOUR
CONFIG = CorrelatorConfig(
    window_ms=10 * HOUR, allowed_lateness_ms=HOUR, patterns=PatternConfig(agencies=AGENCIES)
)
V = ("VEHICLE", TOKEN_V)


def items(*views: IncidentView) -> list[tuple[str, IncidentView]]:
    return [(key, v) for v in views for key in blocking_keys(v, CONFIG.blocking)]


def test_an_applied_then_evicted_event_redelivered_is_a_duplicate_not_too_late() -> None:
    index = WindowIndex(WINDOW, LATENESS)
    applied = view(t=T0)
    assert index.admit(applied) is Admission.NEW and index.add("k", applied)
    index.advance(T0 + WINDOW + 2 * index.bucket_ms)  # the cutoff passed its whole bucket
    assert index.evicted == 1 and index.current(applied.ref) is None
    again = applied._replace()  # the same event decoded again
    assert index.admit(again) is Admission.REDELIVERED
    assert not index.add("k", again)
    never_seen = view(t=T0)  # as old, another event
    assert index.admit(never_seen) is Admission.TOO_LATE
    assert (index.too_late, index.redelivered, index.stored) == (1, 1, 0)


def test_a_superseded_or_stale_version_redelivered_after_the_window_is_a_duplicate() -> None:
    index = WindowIndex(WINDOW, LATENESS)
    report = view(incident="CT-1", t=T0, version_ms=T0 + HOUR)
    update = report._replace(event_id="upd", version_ms=T0 + 2 * HOUR)
    older = report._replace(event_id="older", version_ms=T0)
    assert index.admit(report) is Admission.NEW
    assert index.admit(update) is Admission.UPDATED
    assert index.admit(older) is Admission.STALE
    index.advance(T0 + WINDOW + 2 * index.bucket_ms)
    for v in (report, update, older):
        assert index.admit(v) is Admission.REDELIVERED
    assert index.too_late == 0


def test_applied_ids_are_forgotten_remember_ms_past_the_cutoff() -> None:
    index = WindowIndex(WINDOW, LATENESS, remember_ms=24 * HOUR)
    index.advance(T0)
    applied = view(t=T0)
    index.admit(applied)
    index.advance(T0 + HOUR)  # stamped with its own time: ahead of the cutoff
    index.advance(T0 + WINDOW + 24 * HOUR - 1)  # cutoff + remember_ms: not past T0 yet
    assert index.remembered() == 1 and index.admit(applied) is Admission.REDELIVERED
    index.advance(T0 + WINDOW + 24 * HOUR + 2 * index.bucket_ms)
    assert index.remembered() == 0
    assert index.admit(applied) is Admission.TOO_LATE  # forgotten: counted as late data


def test_a_batch_spanning_days_is_remembered_from_where_it_moved_the_watermark() -> None:
    """One batch from a backlog reaches further back than the window and the memory: its
    oldest events are evicted by the advance that follows it, and a re-read of the batch
    (routed again after a crash) still finds every id."""
    index = WindowIndex(WINDOW, LATENESS, remember_ms=24 * HOUR)
    batch = [view(t=T0 + h * HOUR) for h in range(0, 200, 2)]  # 200 h of event time
    for v in batch:
        assert index.admit(v) is Admission.NEW
    index.advance(T0 + 200 * HOUR - LATENESS)  # cutoff T0 + 122 h: 61 views out at once
    again = [index.admit(v) for v in batch]
    assert again.count(Admission.REDELIVERED) == 61 and Admission.TOO_LATE not in again
    index.advance(T0 + 200 * HOUR - LATENESS + 24 * HOUR - index.bucket_ms)
    assert index.admit(batch[0]) is Admission.REDELIVERED
    index.advance(T0 + 200 * HOUR - LATENESS + 24 * HOUR + 2 * index.bucket_ms)
    assert index.admit(batch[0]) is Admission.TOO_LATE  # the stream moved on: forgotten
    assert index.too_late == 1


def test_the_memory_of_applied_ids_stays_bounded_over_a_long_history() -> None:
    index = WindowIndex(10 * HOUR, HOUR)  # remembered for another window: 20 h in all
    peak = 0
    for n in range(20_000):
        t = T0 + n * 60_000  # one event a minute, 333 hours in all
        index.admit(view(t=t))
        if n % 100 == 99:
            index.advance(t - HOUR)
            peak = max(peak, index.remembered())
    # the window and remember_ms behind the watermark (1,200 events), the lateness (60),
    # a bucket of slack (19) and the batch between advances (100)
    assert peak <= 1_200 + 60 + 20 + 100


def test_the_correlator_counts_a_redelivered_batch_as_duplicates_and_old_news_as_late() -> None:
    correlator = Correlator(CONFIG)
    a = view("cantho", "CT-1", at=CANTHO_DEEP, t=T0, tokens=(V,))
    b = view("angiang", "AG-1", at=ANGIANG_DEEP, t=T0 + HOUR, tokens=(V,))
    first = correlator.process(items(a, b))
    assert len(first.correlations) == 1
    newer = view("cantho", "CT-2", at=CANTHO_DEEP, t=T0 + 15 * HOUR)
    correlator.process(items(newer))  # cutoff T0 + 4 h: a and b evicted, still remembered
    assert correlator.index.cutoff_ms > T0 + HOUR and correlator.index.evicted > 0
    duplicates = correlator.counters["duplicates"]
    again = correlator.process(items(a, b))  # read again after a restart
    assert (again.too_late, again.late, again.correlations) == (0, [], [])
    assert correlator.counters["too_late"] == 0
    assert correlator.counters["duplicates"] == duplicates + len(items(a, b))
    late = view("angiang", "AG-2", at=ANGIANG_DEEP, t=T0 + 2 * HOUR, tokens=(V,))
    out = correlator.process(items(late))  # never seen, as old: genuinely late
    assert out.too_late == 1 and out.late == [late] and out.correlations == []
    assert correlator.counters["too_late"] == 1


def test_without_redeliveries_the_outputs_are_unchanged() -> None:
    """The memory only answers for events older than the cutoff: the same stream with and
    without an extra copy of an evicted batch gives the same links."""
    views = [
        view(agency, f"{agency}-{n}", at=at, t=T0 + n * HOUR, tokens=(V,) if n % 3 else ())
        for n in range(30)
        for agency, at in (("cantho", CANTHO_DEEP), ("angiang", ANGIANG_DEEP))
    ]
    plain, redelivered = Correlator(CONFIG), Correlator(CONFIG)
    links_plain, links_redelivered = [], []
    for n in range(0, len(views), 4):
        batch = items(*views[n : n + 4])
        links_plain += plain.process(batch).correlations
        links_redelivered += redelivered.process(batch).correlations
        if n >= 24:  # a batch 12 h behind the newest event, 1 h behind the cutoff
            out = redelivered.process(items(*views[n - 24 : n - 20]))
            assert out.too_late == 0 and out.correlations == []
    assert links_plain == links_redelivered and links_plain
