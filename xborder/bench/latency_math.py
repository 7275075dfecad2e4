"""The figures of ``xborder bench latency``, as pure functions of what was sent and seen.

No Kafka here: percentiles, least-squares trends of lag and memory, the FIFO estimate of
when rows reached ClickHouse, and which published incidents caused each output (the
rule per output kind is in :func:`alert_inputs` and :func:`output_latencies`). Times are
wall-clock seconds (``time.time()``) of one machine; latencies are milliseconds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

Ref = tuple[str, str]
"""(agency, incident_id): one incident."""
Point = tuple[float, float]
"""(time, value)."""

WARMUP_SHARE = 0.1
"""Share of the publish window left out of trends and thirds: workers warm up, groups
settle their fetch positions, the first batches fill."""


class CorrelationSeen(NamedTuple):
    """A ``Correlation`` as it arrived."""

    arrival: float
    topic: str
    correlation_id: str
    a: Ref
    b: Ref


class CaseSeen(NamedTuple):
    """A ``CaseEvent`` as it arrived."""

    arrival: float
    topic: str
    case_event_id: str
    case_id: str
    event_type: str
    incidents: tuple[Ref, ...]
    correlation_ids: tuple[str, ...]
    merged_case_ids: tuple[str, ...]


class AlertSeen(NamedTuple):
    """An ``Alert`` as it arrived on one ``alerts.<agency>`` topic."""

    arrival: float
    topic: str
    identifier: str
    kind: str
    correlation_ids: tuple[str, ...]
    case_id: str | None
    description: str


# -- distributions and trends -------------------------------------------------------------


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of sorted ``ordered`` (the smallest value with at least
    ``q`` percent of the values at or below it); NaN when empty."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summary(values: Iterable[float]) -> dict[str, float]:
    """count, p50, p95, p99 and max of ``values`` (ms, one decimal)."""
    ordered = sorted(values)
    out: dict[str, float] = {"count": len(ordered)}
    for name, q in (("p50", 50.0), ("p95", 95.0), ("p99", 99.0), ("max", 100.0)):
        out[name] = round(percentile(ordered, q), 1)
    return out


def slope(points: Sequence[Point]) -> float:
    """Least-squares slope of ``points`` (value per unit of time); NaN below two times."""
    if len(points) < 2:
        return math.nan
    mean_t = sum(t for t, _ in points) / len(points)
    mean_v = sum(v for _, v in points) / len(points)
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    if spread == 0:
        return math.nan
    return sum((t - mean_t) * (v - mean_v) for t, v in points) / spread


def steady(points: Sequence[Point], start: float, end: float) -> list[Point]:
    """The points of the publish window ``[start, end]`` after its warm-up share."""
    begin = start + WARMUP_SHARE * (end - start)
    return [(t, v) for t, v in points if begin <= t <= end]


def thirds(points: Sequence[Point], start: float, end: float) -> tuple[float, float]:
    """Mean value in the first and in the last third of the steady window (NaN if empty)."""
    begin = start + WARMUP_SHARE * (end - start)
    third = (end - begin) / 3
    first = [v for t, v in points if begin <= t <= begin + third]
    last = [v for t, v in points if end - third <= t <= end]
    return _mean(first), _mean(last)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def lag_trend(
    lags: Sequence[Point], inputs: Sequence[Point], start: float, end: float
) -> dict[str, float | None]:
    """A consumer group's lag over the publish window ``[start, end]``.

    ``lags`` are (time, uncommitted messages) samples, ``inputs`` (time, messages written
    to the group's topics so far). Gives the least-squares slope of the lag in messages/s
    over the steady window, the mean lag of its first and last thirds, the maximum lag
    anywhere, the input rate over the steady window and the seconds after ``end`` until
    the first sample with no lag (None: never seen drained).
    """
    window = steady(lags, start, end)
    first, last = thirds(lags, start, end)
    fed = steady(inputs, start, end)
    input_rate = (
        (fed[-1][1] - fed[0][1]) / (fed[-1][0] - fed[0][0])
        if len(fed) >= 2 and fed[-1][0] > fed[0][0]
        else math.nan
    )
    drained = next((t - end for t, v in lags if t >= end and v == 0), None)
    return {
        "slope_per_s": _round(slope(window), 2),
        "first_third_mean": _round(first, 1),
        "last_third_mean": _round(last, 1),
        "max": max((v for _, v in lags), default=0),
        "input_per_s": _round(input_rate, 1),
        "drain_s": None if drained is None else round(drained, 1),
    }


def _round(value: float, digits: int) -> float | None:
    return None if math.isnan(value) else round(value, digits)


def growing(trend: Mapping[str, float | None]) -> bool:
    """Whether a group's lag grows under the load (the group does not keep up).

    Both must hold: the slope leaves more than 2% of the group's input behind each
    second, and the last third's mean lag exceeds the first third's by more than one
    second of input. Either alone trips on the sawtooth of batched commits.
    """
    rate = trend.get("input_per_s") or 0.0
    rising = trend.get("slope_per_s")
    first, last = trend.get("first_third_mean"), trend.get("last_third_mean")
    if rising is None or first is None or last is None:
        return False
    return rising > 0.02 * rate and last - first > rate * 1.0


def sustained(run: Mapping[str, Any]) -> tuple[bool, list[str]]:
    """Whether a run held its rate, and why not: the publisher achieved at least 95% of
    the offered rate, no group's lag is :func:`growing`, the link p99 is at most 1 s
    (when links were measured), and every group drained within the timeout."""
    why: list[str] = []
    achieved = run["publisher"]["achieved_per_s"] or 0.0
    if achieved < 0.95 * run["rate"]:
        why.append(f"the publisher achieved only {achieved:,.0f}/s")
    for name, trend in run["lag"].items():
        if growing(trend):
            why.append(f"{name} lag grows {trend['slope_per_s']:,.0f}/s")
    link = run["latency_ms"].get("link", {})
    if link.get("count") and link["p99"] > 1000:
        why.append(f"link p99 {link['p99']:,.0f} ms > 1 s")
    if not run["drained"]:
        why.append("not drained within the timeout")
    return not why, why


def rss_trend(points: Sequence[Point], start: float, end: float) -> dict[str, float | None]:
    """Mean RSS (MiB) in the first and last thirds of the steady window and their ratio;
    flat when the ratio is within 10% of 1."""
    first, last = thirds(points, start, end)
    ratio = last / first if first and not math.isnan(first) and not math.isnan(last) else None
    return {
        "first_third_mb": _round(first, 1),
        "last_third_mb": _round(last, 1),
        "ratio": None if ratio is None else round(ratio, 3),
        "flat": None if ratio is None else abs(ratio - 1) <= 0.1,
    }


def above_idle(
    used_s: Mapping[str, float],
    idle_cores: Mapping[str, float],
    seconds: float,
    events: int,
) -> dict[str, float]:
    """CPU seconds per 1,000 events of each process beyond what it spends idle.

    ``used_s`` is the CPU each process used over a load window of ``seconds`` that carried
    ``events``; ``idle_cores`` the cores each used with no load (fetches held open,
    heartbeats, timers). At a low rate the idle share dominates the per-event figure;
    this one is what the events themselves cost. A process without an idle reading counts
    whole; none goes below zero (the machine's noise can put a reading under idle)."""
    if events <= 0:
        return {}
    out = {
        name: round(max(0.0, used - idle_cores.get(name, 0.0) * seconds) * 1000 / events, 4)
        for name, used in sorted(used_s.items())
    }
    out["total"] = round(sum(out.values()), 4)
    return out


def send_lateness_ms(sent: Sequence[float], rate: float) -> list[float]:
    """How late each message was sent after its due time on the fixed-rate schedule that
    starts at the first send (ms; the publisher keeps pace when these stay small)."""
    if not sent:
        return []
    t0 = sent[0]
    return [max(0.0, (t - t0 - n / rate) * 1000) for n, t in enumerate(sent)]


# -- ClickHouse rows ----------------------------------------------------------------------


def fifo_latencies(sent: Sequence[float], committed: Sequence[tuple[float, int]]) -> list[float]:
    """ms from publishing the k-th event to the first sample at which the sink's committed
    total on ``incidents.accepted`` reached k (the horizontal distance between the
    cumulative sent and committed curves).

    FIFO approximation: the k-th event published is taken as the k-th one committed;
    across partitions the order differs a little, and the figure is late by up to one
    sampling interval. Events never reached within the samples are left out.
    """
    out: list[float] = []
    reached = 0
    j = 0
    for k, at in enumerate(sent, start=1):
        while j < len(committed) and max(reached, committed[j][1]) < k:
            reached = max(reached, committed[j][1])
            j += 1
        if j == len(committed):
            break
        out.append((committed[j][0] - at) * 1000)
    return out


# -- which published incidents caused an output -------------------------------------------

_BOTH_SIDES = (
    r"appears in (?P<agency_a>\S+) incident (?P<id_a>\S+) \(.*\) and "
    r"(?P<agency_b>\S+) incident (?P<id_b>\S+) \("
)


def alert_inputs(
    alert: AlertSeen,
    correlations: Mapping[str, tuple[Ref, Ref]],
    case_members: Mapping[str, set[Ref]],
    border_refs: Callable[[str], Ref | None],
    pair_id: Callable[[Ref, Ref], str],
) -> tuple[Ref, ...] | None:
    """The incidents whose publication caused ``alert`` (None: cannot tell).

    - BORDER_ZONE_INCIDENT: its identifier is ``alert_id(kind, agency, incident_id)`` of
      one incident; ``border_refs`` looks it up among the incidents published.
    - an alert with ``correlation_ids`` (SUBJECT_BOTH_SIDES: the pair sharing a token;
      GROUP_FORMING: every link of the case): the incidents of those correlations, from
      the ``correlations`` topic. A SUBJECT_BOTH_SIDES pair that scored below the link
      threshold has no correlation; its description names both incidents, taken when
      ``pair_id`` of them gives the alert's correlation id.
    - otherwise, with a ``case_id``: the case's incidents named by case events so far.
    """
    import re

    if alert.kind == "BORDER_ZONE_INCIDENT":
        ref = border_refs(alert.identifier)
        return None if ref is None else (ref,)
    if alert.correlation_ids:
        refs: list[Ref] = []
        for cid in alert.correlation_ids:
            pair = correlations.get(cid)
            if pair is None and len(alert.correlation_ids) == 1:
                named = re.search(_BOTH_SIDES, alert.description)
                if named:
                    a = (named["agency_a"], named["id_a"])
                    b = (named["agency_b"], named["id_b"])
                    pair = (a, b) if pair_id(a, b) == cid else None
            if pair is None:
                return None
            refs.extend(pair)
        return tuple(dict.fromkeys(refs))
    if alert.case_id and case_members.get(alert.case_id):
        return tuple(sorted(case_members[alert.case_id]))
    return None


def first_arrivals(records: Iterable[tuple[str, str, float]]) -> tuple[dict[str, float], int]:
    """First arrival per id of (topic, id, arrival) records, and how many records repeated
    an id already seen on the same topic (duplicates; an alert's copies on the topics of
    its several target agencies are not duplicates)."""
    first: dict[str, float] = {}
    seen: set[tuple[str, str]] = set()
    duplicates = 0
    for topic, key, at in records:
        if (topic, key) in seen:
            duplicates += 1
        seen.add((topic, key))
        if key not in first or at < first[key]:
            first[key] = at
    return first, duplicates


def case_membership(cases: Iterable[CaseSeen]) -> dict[str, set[Ref]]:
    """Incidents named by each case's events, merged cases folded into the survivor."""
    members: dict[str, set[Ref]] = {}
    for case in sorted(cases, key=lambda c: c.arrival):
        into = members.setdefault(case.case_id, set())
        into.update(case.incidents)
        for merged in case.merged_case_ids:
            into.update(members.get(merged, ()))
    return members


def output_latencies(
    correlations: Sequence[CorrelationSeen],
    cases: Sequence[CaseSeen],
    alerts: Sequence[AlertSeen],
    published: Mapping[Ref, float],
    border_refs: Callable[[str], Ref | None],
    pair_id: Callable[[Ref, Ref], str],
) -> dict[str, dict[str, float]]:
    """Latency summary per output kind: ``link``, ``case``, ``alert <KIND>``.

    Each output counts once, at its first arrival, with latency = arrival minus the
    latest first-publish time among its input incidents: a link's two incidents; a case
    event's named incidents plus those of its correlations (a MERGED event names none);
    an alert's per :func:`alert_inputs`. Outputs with an input not published in this run
    (or that cannot be traced) are counted as ``unmapped``; ``duplicates`` counts repeats.
    """
    pairs = {c.correlation_id: (c.a, c.b) for c in correlations}

    def latency(at: float, refs: Iterable[Ref] | None) -> float | None:
        refs = list(refs or ())
        if not refs or any(r not in published for r in refs):
            return None
        return (at - max(published[r] for r in refs)) * 1000

    out: dict[str, dict[str, float]] = {}

    def add(
        name: str,
        firsts: dict[str, float],
        dups: int,
        inputs: Callable[[str], Iterable[Ref] | None],
    ) -> None:
        values: list[float] = []
        unmapped = 0
        for key, at in firsts.items():
            value = latency(at, inputs(key))
            if value is None:
                unmapped += 1
            else:
                values.append(value)
        out[name] = {**summary(values), "duplicates": dups, "unmapped": unmapped}

    firsts, dups = first_arrivals((c.topic, c.correlation_id, c.arrival) for c in correlations)
    add("link", firsts, dups, lambda key: pairs.get(key))

    by_case_event = {c.case_event_id: c for c in cases}
    firsts, dups = first_arrivals((c.topic, c.case_event_id, c.arrival) for c in cases)

    def case_inputs(key: str) -> list[Ref] | None:
        case = by_case_event[key]
        refs = list(case.incidents)
        for cid in case.correlation_ids:
            if cid not in pairs:
                return None
            refs.extend(pairs[cid])
        return refs

    add("case", firsts, dups, case_inputs)

    members = case_membership(cases)
    by_alert = {a.identifier: a for a in alerts}
    for kind in sorted({a.kind for a in alerts}):
        firsts, dups = first_arrivals(
            (a.topic, a.identifier, a.arrival) for a in alerts if a.kind == kind
        )
        add(
            f"alert {kind}",
            firsts,
            dups,
            lambda key: alert_inputs(by_alert[key], pairs, members, border_refs, pair_id),
        )
    return out
