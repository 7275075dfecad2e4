"""The correlator's two stages as plain objects the Faust agents call once per batch.

``Correlator`` owns one partition's share of blocking keys. ``process`` takes the
(blocking key, view) items routed to it, in order, and for each item:

1. admits the view against the incident's current version (``WindowIndex.admit``): too
   late (counted, not correlated; ``Outputs.late`` holds it when the item came under the
   view's first blocking key, so that over all partitions each too-late event is reported
   once), an event admitted before and redelivered after it left the window (a restart
   re-reads; ignored, not too late), a stale older version (ignored), or current;
2. token key: stores it, looks up the views under the same key within the window, scores
   the cross-jurisdiction pairs and runs the token detectors (SUBJECT_BOTH_SIDES);
3. spatial key: if the view lies in the border zone and this is its own coarse cell (each
   view has exactly one, so exactly one partition does this), runs the event detectors
   (BORDER_ZONE_INCIDENT); then files the view in the partition's fine grid and scores the
   cross-jurisdiction views within ``radius_km`` and ``spatial_span_ms``.

A pair found under several keys is scored once per call, and a linked pair is emitted once
(the emitted pairs are remembered until both incidents leave the window). After the items,
the watermark moves to the newest event time seen minus the allowed lateness, and the index
evicts what fell out of the window.

Space-time candidates that cannot reach the threshold without a shared token are not
searched at all (``prune_spatial``): with the default weights that is always so (see
``scoring``), and a pair that shares a token is found under the token's key anyway.

``CaseStage`` is the single-partition stage after it: it folds correlations into cases
(``CaseTracker``), emits the CaseEvents and runs the case detectors (GROUP_FORMING).

Updates: route an IncidentUpdated under the blocking keys of the incident's previous view
AND of its new one (the router keeps the previous keys, or view, by ref for the window).
The partitions that only held the old keys then learn that the old view is superseded; an
item under a key the new view no longer has is harmless (scoring reads the views' own
tokens and places). Without that, a partition holding only an old key keeps matching the
old view until it leaves the window.

Same items in the same order and batches give identical outputs: nothing depends on the
wall clock, on hash order or on when eviction ran. Across partitions, a pair sharing keys
that live in two partitions is emitted by both with the same record and id (downstream
de-duplicates by id; ``CaseStage`` does).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from xborder.geo import KM_PER_DEGREE

from .blocking import BlockingConfig, blocking_keys, fine_cell, near_cells, spatial_key
from .cases import CaseTracker
from .index import Admission, WindowIndex
from .model import IncidentView, Ref, Token, to_ms
from .occurrence import OccurrenceConfig, score_occurrence
from .patterns import (
    CASE_DETECTORS,
    EVENT_DETECTORS,
    TOKEN_DETECTORS,
    CaseSnapshot,
    PatternConfig,
    border_alerts,
)
from .scoring import (
    ScoredPair,
    ScoringConfig,
    cross_jurisdiction,
    quick_score,
    score_pair,
    to_correlation_record,
)

HOUR_MS = 3_600_000


@dataclass(frozen=True)
class CorrelatorConfig:
    """Settings of both stages."""

    window_ms: int = 72 * HOUR_MS
    """Correlation window: incidents further apart in event time are never compared."""
    allowed_lateness_ms: int = 6 * HOUR_MS
    """How far the watermark lags the newest event time seen."""
    spatial_span_ms: int = 12 * HOUR_MS
    """Time span of space-time candidates (token candidates use the whole window)."""
    prune_spatial: bool = True
    """Skip space-time candidates when they cannot reach the threshold without a token."""
    emit_border_alerts: bool = True
    """Raise BORDER_ZONE_INCIDENT here (False when the routing stage calls ``border_alerts``)."""
    blocking: BlockingConfig = field(default_factory=BlockingConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    patterns: PatternConfig = field(default_factory=PatternConfig)
    occurrence: OccurrenceConfig = field(default_factory=OccurrenceConfig)
    """Same-occurrence matching (double reports), searched among the space-time items."""

    def __post_init__(self) -> None:
        if self.window_ms <= 0 or self.allowed_lateness_ms < 0 or self.spatial_span_ms < 0:
            raise ValueError("window_ms must be positive, lateness and spatial span >= 0")
        if self.occurrence.enabled and self.occurrence.radius_km > self.blocking.radius_km:
            raise ValueError(
                f"the same-occurrence radius ({self.occurrence.radius_km} km) must be at most "
                f"the blocking radius ({self.blocking.radius_km} km) that finds its candidates"
            )

    def identity_searches_space(self) -> bool:
        """Whether identity scoring searches the space-time candidates: unpruned, or some
        pair without a shared token can reach its threshold."""
        return not self.prune_spatial or self.spatial_can_link()

    def spatial_radius_km(self) -> float:
        """The largest distance a space-time search covers: the blocking radius when
        identity scoring searches space, else the same-occurrence radius."""
        if self.identity_searches_space():
            return self.blocking.radius_km
        return self.occurrence.radius_km

    def routes_spatial(self) -> bool:
        """Whether space-time items are worth routing: some pair without a shared token
        can link (identity scoring or same-occurrence matching)."""
        return self.identity_searches_space() or self.occurrence.enabled

    def spatial_can_link(self) -> bool:
        """Whether a pair without a shared blocked token can reach the threshold."""
        s = self.scoring
        unblocked = sum(
            max(w, 0.0) for kind, w in s.token_weights.items()
            if kind not in self.blocking.strong_kinds
        )  # fmt: skip
        return s.max_without_token() + unblocked >= s.threshold

    def spatial_search_span_ms(self) -> int:
        """``spatial_span_ms``, narrowed to the time gap beyond which a pair without a shared
        token cannot reach the threshold even with every other weight at its maximum."""
        s = self.scoring
        if s.time_weight <= 0:
            return self.spatial_span_ms
        rest = s.max_without_token() - s.time_weight + sum(
            max(w, 0.0) for kind, w in s.token_weights.items()
            if kind not in self.blocking.strong_kinds
        )  # fmt: skip
        needed = s.threshold - rest  # what the time weight must still bring
        if needed <= 0:
            return self.spatial_span_ms
        if needed > s.time_weight:
            return 0
        hours = s.time_scale_h * math.log(s.time_weight / needed)
        return min(self.spatial_span_ms, math.ceil(hours * HOUR_MS))


@dataclass
class Outputs:
    """What a stage emits for one batch (Avro data, in emission order)."""

    correlations: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    too_late: int = 0
    """Events (distinct event ids) of the batch that were too late to correlate."""
    late: list[IncidentView] = field(default_factory=list)
    """The too-late views this partition reports: each event's view comes here only under
    its first blocking key, so over all partitions each too-late event is reported once."""
    case_events: list[dict[str, Any]] = field(default_factory=list)


def _unseen(
    view: IncidentView, candidates: Iterable[IncidentView], seen: set[tuple[str, str]]
) -> Iterator[IncidentView]:
    """The candidates not yet paired with ``view`` in this batch (pairs by event id, in
    either order), each noted in ``seen``."""
    own = view.event_id
    for c in candidates:
        other = c.event_id
        pair = (own, other) if own < other else (other, own)
        if pair not in seen:
            seen.add(pair)
            yield c


class _Expiring:
    """A set of hashables, each forgotten once the cutoff passes the time it was noted at."""

    def __init__(self, bucket_ms: int) -> None:
        self.bucket_ms = bucket_ms
        self._items: set[Hashable] = set()
        self._buckets: dict[int, list[Hashable]] = {}

    def __contains__(self, item: Hashable) -> bool:
        return item in self._items

    def __len__(self) -> int:
        return len(self._items)

    def add(self, item: Hashable, at_ms: int) -> None:
        self._items.add(item)
        self._buckets.setdefault(at_ms // self.bucket_ms, []).append(item)

    def expire(self, cutoff_ms: int) -> None:
        limit = cutoff_ms // self.bucket_ms
        for bucket in [b for b in self._buckets if b < limit]:
            self._items.difference_update(self._buckets.pop(bucket))


class Correlator:
    """One partition's correlation state and logic (see the module docstring)."""

    def __init__(self, config: CorrelatorConfig | None = None) -> None:
        self.config = cfg = config or CorrelatorConfig()
        self.index = WindowIndex(cfg.window_ms, cfg.allowed_lateness_ms)
        bucket = self.index.bucket_ms
        self._emitted_pairs = _Expiring(bucket)
        self._emitted_alerts = _Expiring(bucket)
        self._max_seen: int | None = None
        self._spatial = cfg.identity_searches_space()
        # the router's arguments of ``blocking_keys``: the first key names a too-late
        # event's reporting partition
        self._routes_spatial = cfg.routes_spatial()
        self._routed_radius_km = cfg.spatial_radius_km()
        self._occurrence = cfg.occurrence if cfg.occurrence.enabled else None
        # the fine grid's cell: the largest radius searched (the same-occurrence radius is
        # much smaller than the identity search's; small cells hold few candidates)
        self._fine_km = cfg.spatial_radius_km()
        self._spatial_span = max(
            cfg.spatial_search_span_ms() if self._spatial else 0,
            cfg.occurrence.window_ms if self._occurrence is not None else 0,
        )
        self._cell_groups: dict[tuple[int, int], list[tuple[str, str | None]]] = {}
        self._cross: dict[tuple[tuple[str, str | None], tuple[str, str | None]], bool] = {}
        enabled = cfg.patterns.enabled
        self._event_detectors = [
            d for k, d in EVENT_DETECTORS.items() if k in enabled and cfg.emit_border_alerts
        ]
        self._token_detectors = [d for k, d in TOKEN_DETECTORS.items() if k in enabled]
        self.counters = {
            "items": 0,
            "too_late": 0,
            "stale": 0,
            "duplicates": 0,
            "pairs_scored": 0,
            "correlations": 0,
            "alerts": 0,
            "spatial_skipped": 0,
            "occurrence_matches": 0,
        }
        """Running totals: items seen, too-late events, stale or duplicate items, pairs
        scored, outputs, spatial items not searched because they cannot link."""

    @property
    def watermark_ms(self) -> int:
        """Newest event time seen minus the allowed lateness."""
        return self.index.watermark_ms

    def process(
        self, items: Sequence[tuple[str, IncidentView]], watermark_ms: int | None = None
    ) -> Outputs:
        """Correlate one batch of (blocking key, view) items routed to this partition.

        ``watermark_ms``, when given, is the caller's event-time watermark (for example
        the minimum over several upstream sources, so that a source running ahead does
        not make another's events too late); by default it is the newest event time seen
        minus the allowed lateness.
        """
        cfg = self.config
        index = self.index
        out = Outputs()
        too_late: set[str] = set()
        late_reported: set[str] = set()
        late_keys: dict[str, list[str]] = {}
        seen_pairs: set[tuple[str, str]] = set()
        seen_occurrences: set[tuple[str, str]] = set()
        max_seen = self._max_seen
        spatial = self._spatial
        occurrence = self._occurrence
        counters = self.counters
        duplicates = 0
        for key, view in items:
            t = view.occurred_ms
            if max_seen is None or t > max_seen:
                max_seen = t
            admission = index.admit(view)
            if admission is Admission.TOO_LATE:
                event_id = view.event_id
                too_late.add(event_id)
                if event_id not in late_reported and self._reports_late(key, view, late_keys):
                    late_reported.add(event_id)
                    out.late.append(view)
                continue
            if admission is Admission.STALE:
                counters["stale"] += 1
                continue
            if admission is Admission.REDELIVERED:
                duplicates += 1  # applied before it left the window: not late data
                continue
            if key.startswith("t:"):
                if not index.add(key, view):
                    duplicates += 1
                    continue
                candidates = index.candidates(key, view)
                if candidates:
                    self._pairs(view, candidates, seen_pairs, out)
                    if self._token_detectors:
                        self._token_alerts(key, view, candidates, out)
            else:
                if (
                    view.in_border_zone
                    and self._event_detectors
                    and key == spatial_key(view.lat, view.lon, cfg.blocking)
                ):
                    self._event_alerts(view, out)
                if not spatial and occurrence is None:
                    counters["spatial_skipped"] += 1
                    continue
                if not (math.isfinite(view.lat) and math.isfinite(view.lon)):
                    continue
                near = self._file_spatial(view)
                if near is None:
                    duplicates += 1  # a redelivery, or the view came under another key here
                elif near:
                    if spatial:
                        self._pairs(view, near, seen_pairs, out)
                    if occurrence is not None:
                        self._occurrence_pairs(view, near, occurrence, seen_occurrences, out)
        counters["items"] += len(items)
        counters["too_late"] += len(too_late)
        counters["duplicates"] += duplicates
        counters["correlations"] += len(out.correlations)
        counters["alerts"] += len(out.alerts)
        out.too_late = len(too_late)
        if max_seen is not None:
            self._max_seen = max_seen
        if watermark_ms is not None:
            self._advance(watermark_ms)
        elif max_seen is not None:
            self._advance(max_seen - cfg.allowed_lateness_ms)
        return out

    def _reports_late(self, key: str, view: IncidentView, known: dict[str, list[str]]) -> bool:
        """Whether this partition reports the too-late ``view``: the item came under the
        view's first blocking key, which the router sends to exactly one partition (or
        under a key the router would not give it: routed by hand, reported here).
        ``known`` keeps each event's keys for the batch."""
        keys = known.get(view.event_id)
        if keys is None:
            keys = known[view.event_id] = blocking_keys(
                view, self.config.blocking, self._routes_spatial, self._routed_radius_km
            )
        return key == keys[0] or key not in keys if keys else True

    def _file_spatial(self, view: IncidentView) -> list[IncidentView] | None:
        """File a view in the fine grid; the cross-jurisdiction views within the radius and
        the spatial span, or None if it was filed already.

        The fine grid is keyed by (cell, agency, jurisdiction) and each cell lists the
        groups it holds, so a search only reads the groups that can pair with the view:
        inside a jurisdiction, away from other agencies' reports, it reads nothing.
        """
        index = self.index
        cx, cy = fine_cell(view.lat, view.lon, self._fine_km)
        group = (view.agency, view.jurisdiction)
        if not index.add((cx, cy, *group), view):
            return None
        groups = self._cell_groups.get((cx, cy))
        if groups is None:
            self._cell_groups[(cx, cy)] = [group]
        elif group not in groups:
            groups.append(group)
        keys = []
        for cell in near_cells((cx, cy)):
            for other in self._cell_groups.get(cell, ()):
                if self._crosses(group, other):
                    keys.append((*cell, *other))
        if not keys:
            return []
        found = index.candidates_in(keys, view, self._spatial_span)
        radius = self._fine_km * 1.001  # the flat test gets a little slack:
        r2 = radius * radius  # the scoring measures the great-circle distance
        lat, lon = view.lat, view.lon
        kx = KM_PER_DEGREE * math.cos(math.radians(lat))
        near = []
        for c in found:
            dy = (c.lat - lat) * KM_PER_DEGREE
            dx = (c.lon - lon) * kx
            if dx * dx + dy * dy <= r2:
                near.append(c)
        return near

    def _crosses(self, g: tuple[str, str | None], h: tuple[str, str | None]) -> bool:
        known = self._cross.get((g, h))
        if known is None:
            known = self._cross[(g, h)] = g[0] != h[0] or (
                g[1] is not None and h[1] is not None and g[1] != h[1]
            )
        return known

    def _pairs(
        self,
        view: IncidentView,
        candidates: Iterable[IncidentView],
        seen: set[tuple[str, str]],
        out: Outputs,
    ) -> None:
        scoring = self.config.scoring
        threshold = scoring.threshold
        scored = 0
        for c in _unseen(view, candidates, seen):
            score = quick_score(view, c, scoring)
            if score is None:
                continue
            scored += 1
            if score < threshold:
                continue
            a, b = (view, c) if (view.agency, view.incident_id) < (c.agency, c.incident_id) else (
                c, view)  # fmt: skip
            refs = (a.agency, a.incident_id, b.agency, b.incident_id)
            if refs in self._emitted_pairs:
                continue  # scored in full only when it is new
            full = score_pair(a, b, scoring)
            assert full is not None
            self._emit_once(full, refs, out)
        self.counters["pairs_scored"] += scored

    def _occurrence_pairs(
        self,
        view: IncidentView,
        near: Iterable[IncidentView],
        cfg: OccurrenceConfig,
        seen: set[tuple[str, str]],
        out: Outputs,
    ) -> None:
        """Score ``view`` against the reports near it as possible double reports."""
        for c in _unseen(view, near, seen):
            scored = score_occurrence(view, c, cfg)
            if scored is None or not scored.linked:
                continue
            a, b = scored.a, scored.b
            refs = (a.agency, a.incident_id, b.agency, b.incident_id, "SAME_OCCURRENCE")
            if self._emit_once(scored, refs, out):
                self.counters["occurrence_matches"] += 1

    def _emit_once(self, scored: ScoredPair, refs: Hashable, out: Outputs) -> bool:
        """Emit a linked pair's Correlation unless ``refs`` (its incidents and kind) was
        emitted within the window; whether it was emitted now."""
        if refs in self._emitted_pairs:
            return False
        created = scored.created_ms
        self._emitted_pairs.add(refs, created)
        out.correlations.append(to_correlation_record(scored, created))
        return True

    def _emit_alert(self, alert: dict[str, Any] | None, at_ms: int, out: Outputs) -> None:
        if alert is None or alert["identifier"] in self._emitted_alerts:
            return
        self._emitted_alerts.add(alert["identifier"], at_ms)
        out.alerts.append(alert)

    def _event_alerts(self, view: IncidentView, out: Outputs) -> None:
        cfg = self.config
        for detect in self._event_detectors:
            self._emit_alert(detect(view, cfg.patterns, cfg.window_ms), view.occurred_ms, out)

    def _token_alerts(
        self, key: str, view: IncidentView, candidates: list[IncidentView], out: Outputs
    ) -> None:
        kind, _, value = key[2:].partition(":")
        token: Token = (kind, value)
        if token not in view.tokens:
            return  # routed under a key the view no longer has (an update's old keys)
        cfg = self.config
        for c in candidates:
            if token in c.tokens and cross_jurisdiction(view, c):
                at = max(view.occurred_ms, c.occurred_ms)
                for detect in self._token_detectors:
                    self._emit_alert(detect(view, c, token, cfg.patterns, cfg.window_ms), at, out)

    def _advance(self, watermark_ms: int) -> None:
        index = self.index
        index.advance(watermark_ms)
        # a pair or an alert can come back only while one of its incidents is in the window
        self._emitted_pairs.expire(index.cutoff_ms)
        self._emitted_alerts.expire(index.cutoff_ms - self.config.window_ms)

    def border_alerts(self, views: Sequence[IncidentView]) -> list[dict[str, Any]]:
        """BORDER_ZONE_INCIDENT (and other event detectors) for a batch of views, for a
        routing stage that sees each event once; does not touch this correlator's state."""
        return border_alerts(views, self.config.patterns, self.config.window_ms)

    def stats(self) -> dict[str, int]:
        """Counters and index sizes, for metrics."""
        index = self.index
        return {
            **self.counters,
            "incidents": len(index),
            "keys": index.keys(),
            "stored": index.stored,
            "evicted": index.evicted,
            "emitted_pairs_remembered": len(self._emitted_pairs),
            "event_ids_remembered": index.remembered(),
        }


class CaseStage:
    """The single-partition stage folding correlations into cases (see the module
    docstring); ``views_by_ref`` must hold the views of the correlations' incidents."""

    def __init__(self, config: CorrelatorConfig | None = None) -> None:
        self.config = cfg = config or CorrelatorConfig()
        self.tracker = CaseTracker()
        self._views: dict[Ref, IncidentView] = {}
        self._seen = _Expiring(max(cfg.window_ms // 32, 1))
        self._alerted = _Expiring(max(cfg.window_ms // 32, 1))
        self._max_seen: int | None = None
        self._last_sweep = -(2**62)
        self._detectors = [d for k, d in CASE_DETECTORS.items() if k in cfg.patterns.enabled]

    def process(
        self,
        correlations: Sequence[Mapping[str, Any]],
        views_by_ref: Mapping[Ref, IncidentView],
        watermark_ms: int | None = None,
    ) -> Outputs:
        """Fold a batch of Correlation records (as emitted, or decoded from Avro) into cases.

        ``watermark_ms``, when given, is the upstream event-time watermark (the minimum
        over the correlating partitions); cases older than it minus the window are
        evicted. By default it follows the newest link seen minus the allowed lateness.
        """
        cfg = self.config
        out = Outputs()
        max_seen = self._max_seen
        for record in correlations:
            cid = record["correlation_id"]
            if cid in self._seen:
                continue  # the same link from another partition, or a replay
            at = to_ms(record["created_at"])
            self._seen.add(cid, at)
            if max_seen is None or at > max_seen:
                max_seen = at
            ia, ib = record["incident_a"], record["incident_b"]
            a, b = (ia["agency"], ia["incident_id"]), (ib["agency"], ib["incident_id"])
            for ref in (a, b):
                view = views_by_ref.get(ref)
                known = self._views.get(ref)
                if view is not None and (
                    known is None
                    or (view.version_ms, view.event_id) > (known.version_ms, known.event_id)
                ):
                    self._views[ref] = view
            events = self.tracker.link(
                a, b, cid, at, (str(ia["event_id"]), str(ib["event_id"])),
                record.get("match_kind", "IDENTITY"),
            )  # fmt: skip
            out.case_events.extend(events)
            if events and self._detectors:
                self._case_alerts(events[-1]["case_id"], at, out)
        if watermark_ms is not None:
            self._max_seen = max_seen
            self._evict(watermark_ms - cfg.window_ms)
        elif max_seen is not None and max_seen != self._max_seen:
            self._max_seen = max_seen
            self._evict(max_seen - cfg.allowed_lateness_ms - cfg.window_ms)
        return out

    def _evict(self, cutoff: int) -> None:
        """Drop cases, views and remembered ids older than ``cutoff`` (event time)."""
        sweep = cutoff // self._seen.bucket_ms  # a full sweep of the cases per bucket
        if sweep > self._last_sweep:
            self._last_sweep = sweep
            for members in self.tracker.evict(cutoff).values():
                for ref in members:  # nothing is emitted for an evicted case (cases.py)
                    self._views.pop(ref, None)
        self._seen.expire(cutoff)
        self._alerted.expire(cutoff - self.config.window_ms)

    def _case_alerts(self, case_id: str, at_ms: int, out: Outputs) -> None:
        cfg = self.config
        members = sorted(self.tracker.members(case_id))
        views = [self._views[ref] for ref in members if ref in self._views]
        snapshot = CaseSnapshot(case_id, views, self.tracker.correlation_ids(case_id), at_ms)
        for detect in self._detectors:
            alert = detect(snapshot, cfg.patterns, cfg.window_ms)
            if alert is not None and alert["identifier"] not in self._alerted:
                self._alerted.add(alert["identifier"], at_ms)
                out.alerts.append(alert)
