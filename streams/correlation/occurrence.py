"""Same-occurrence matching: two agencies' reports of one event near the boundary.

A brawl on the boundary road is reported by both agencies, minutes and metres apart,
often with no subject recorded: no token links the reports, yet they are one occurrence
that the agreement asks both agencies to verify together. This is the second kind of
match (``match_kind`` ``SAME_OCCURRENCE``), next to the identity correlation, with its
own candidates, evidence weights and threshold.

Candidates: two reports of **different agencies** (one agency's two reports are two
incidents, however close), at most ``radius_km`` and ``window_min`` apart, with
**compatible categories** (the same, a related pair, or one of them ``OTHER``); any other
pair is not scored. The evidence, in bits (log2 of how much likelier the observation is
for two reports of one occurrence than for two unrelated reports that passed the
candidate rules), with the assumptions behind the defaults:

- **Distance**: ``distance_weight`` (4) up to ``near_km`` (300 m), then linearly down to
  0 at ``radius_km`` (400 m). Reports of one occurrence sit within a few hundred metres
  (the scene, a street address, a GPS fix on arrival), evenly; unrelated candidates
  spread over the area, so within 300 m of a 1 km neighbourhood the likelihood ratio is
  about (1 / 0.3)^2 = 11 (3.5 bits), and it falls fast beyond.
- **Time**: ``time_weight`` (4) up to ``soon_min`` (15 min), then linearly down to 0 at
  ``window_min`` (30 min): the two occurred_at times of one occurrence differ by each
  side's reporting lag; unrelated ones spread over hours (15 min of 2 h: 3 bits).
- **Category**: the same +2 (categories of two reports of one event agree in most cases,
  of unrelated reports in a few); related +0.5; ``OTHER`` says nothing (0).
- **Border zone**: +1 when both reports lie in the border zone, +0.5 when one does: the
  occurrences both agencies respond to are the ones on the boundary.
- **Subjects**: a shared token of any kind +4 (the same person, vehicle or phone at the
  same place and hour); both record subjects of one kind and share none of that kind
  -2: tokens are keyed identities, so when both sides record the victim, the driver or
  the vehicle of one event they usually record the same one; each side may record other
  participants too, which keeps it from being strong evidence (a likelihood ratio of 1/4).
- **Modus operandi**: both tagged and sharing tags: +1.5 x Jaccard; both tagged with no
  tag in common: -1, unless one report is ``OTHER`` (an unclassified report does not use
  the category's vocabulary of tags, so differing tags say nothing).

Threshold 9.75: place, time and border zone alone (4 + 4 + 1 = 9 for reports within
300 m and 15 min on the boundary) do not link; something about the event itself must
agree as well. The same category (+2) links them even with disjoint tags (10); one
side's OTHER links them when tags are shared enough (OTHER's differing tags are not held
against it, but say nothing for it either); a shared subject links anything compatible.
Two unrelated same-category reports 350 m or 22 minutes apart with disjoint tags stay
below (2 + 4 + 2 + 1 - 1 = 8); reports of another category next door (not compatible),
the same place on another day (outside the window) and one agency's two reports (not a
candidate) are never scored.
What cannot be told apart is two unrelated reports inside the 300 m / 15 min box with
the same category and tags alike: that is what a double report looks like, and joint
verification decides. Such coincidences grow with the square of the density. On the
default generated scenario (200,000 events, ``xborder scenario``, persons recorded by
both keys, namesakes planted), scored in process (``xborder bench identity --events
200000 --seeds 1,3``): seed 1 precision 0.984, recall 0.970; seed 3 precision 0.981,
recall 0.968. Threshold 9.5 gave 0.980 / 0.990 and 0.976 / 0.989, 10.0 gave 0.985 /
0.957 and 0.984 / 0.950: 9.75 keeps both seeds above 0.98 precision and 0.95 recall
(with threshold 9 and -1 for differing subjects an earlier scenario gave 0.965 and
0.966 at recall 1.0); the recall given up is reports just outside the full-weight box
and reports one side left as OTHER with few tags in common.
"""

from __future__ import annotations

from dataclasses import dataclass

from xborder.geo import haversine_km

from .model import IncidentView
from .scoring import (
    RELATED_CATEGORIES,
    SHARED_KIND,
    Evidence,
    ScoredPair,
    jaccard,
    shared_tokens,
)

_MINUTE_MS = 60_000
_DIGITS = 4


@dataclass(frozen=True)
class OccurrenceConfig:
    """Candidate rules, evidence weights (bits) and threshold of same-occurrence matches;
    see the module docstring for the defaults' reasoning."""

    enabled: bool = True
    near_km: float = 0.3
    """Reports this close are as close as two reports of one occurrence usually are: the
    distance evidence is at its full weight up to here."""
    radius_km: float = 0.4
    """... and decays linearly to 0 here; reports further apart are never one occurrence."""
    soon_min: float = 15.0
    """Occurrence times this close get the full time weight (two agencies' reporting
    lags) ..."""
    window_min: float = 30.0
    """... decaying linearly to 0 here; reports further apart in time are never one
    occurrence."""
    distance_weight: float = 4.0
    time_weight: float = 4.0
    category_same: float = 2.0
    category_related: float = 0.5
    related_categories: frozenset[frozenset[str]] = RELATED_CATEGORIES
    neutral_category: str = "OTHER"
    border_both: float = 1.0
    border_one: float = 0.5
    shared_subject: float = 4.0
    different_subjects: float = -2.0
    mo_weight: float = 1.5
    mo_disjoint: float = -1.0
    threshold: float = 9.75

    def __post_init__(self) -> None:
        if not (0 <= self.near_km < self.radius_km and 0 <= self.soon_min < self.window_min):
            raise ValueError(
                "same-occurrence windows must satisfy 0 <= near_km < radius_km and "
                "0 <= soon_min < window_min"
            )

    @property
    def window_ms(self) -> int:
        """``window_min`` in milliseconds."""
        return int(self.window_min * _MINUTE_MS)

    def compatible(self, x: str, y: str) -> bool:
        """The same category, a related pair, or one of them neutral."""
        return (
            x == y
            or x == self.neutral_category
            or y == self.neutral_category
            or frozenset((x, y)) in self.related_categories
        )


def is_candidate(a: IncidentView, b: IncidentView, cfg: OccurrenceConfig) -> bool:
    """Whether two reports may be one occurrence: other agencies, within the radius and
    window, compatible categories."""
    return (
        a.agency != b.agency
        and abs(a.occurred_ms - b.occurred_ms) <= cfg.window_ms
        and cfg.compatible(a.category, b.category)
        and haversine_km(a.lat, a.lon, b.lat, b.lon) <= cfg.radius_km
    )


def _plateau(value: float, full: float, zero: float) -> float:
    """1 up to ``full``, then linearly down to 0 at ``zero``."""
    if value <= full:
        return 1.0
    return max(0.0, (zero - value) / (zero - full))


def _kinds(view: IncidentView) -> dict[str, set[str]]:
    kinds: dict[str, set[str]] = {}
    for kind, token in view.tokens:
        kinds.setdefault(kind, set()).add(token)
    return kinds


def score_occurrence(a: IncidentView, b: IncidentView, cfg: OccurrenceConfig) -> ScoredPair | None:
    """The same-occurrence score of two reports with its evidence, in canonical order;
    None when the pair is not a candidate."""
    if not is_candidate(a, b, cfg):
        return None
    if b.ref < a.ref:
        a, b = b, a
    evidence: list[Evidence] = []
    km = haversine_km(a.lat, a.lon, b.lat, b.lon)
    near = _plateau(km, cfg.near_km, cfg.radius_km)
    evidence.append(
        Evidence("DISTANCE", round(cfg.distance_weight * near, _DIGITS),
                 f"{km * 1000:.0f} m apart")
    )  # fmt: skip
    minutes = abs(a.occurred_ms - b.occurred_ms) / _MINUTE_MS
    soon = _plateau(minutes, cfg.soon_min, cfg.window_min)
    evidence.append(
        Evidence("TIME", round(cfg.time_weight * soon, _DIGITS), f"{minutes:.0f} min apart")
    )
    if a.category == b.category:
        evidence.append(Evidence("CATEGORY", cfg.category_same, f"same category {a.category}"))
    elif cfg.neutral_category in (a.category, b.category):
        evidence.append(Evidence("CATEGORY", 0.0, f"neutral category {a.category} / {b.category}"))
    else:
        evidence.append(
            Evidence("CATEGORY", cfg.category_related,
                     f"related categories {a.category} / {b.category}")
        )  # fmt: skip
    if a.in_border_zone or b.in_border_zone:
        both = a.in_border_zone and b.in_border_zone
        evidence.append(
            Evidence("BORDER_ZONE", cfg.border_both if both else cfg.border_one,
                     "both in the border zone" if both else "one in the border zone")
        )  # fmt: skip
    shared = shared_tokens(a, b)
    if shared:
        kinds = sorted({kind for kind, _ in shared})
        evidence.append(
            Evidence(SHARED_KIND.get(kinds[0], "OTHER"), cfg.shared_subject,
                     f"same subject recorded by both ({', '.join(kinds)})")
        )  # fmt: skip
    else:
        ka, kb = _kinds(a), _kinds(b)
        both_recorded = sorted(set(ka) & set(kb))
        if both_recorded:
            evidence.append(
                Evidence("OTHER", cfg.different_subjects,
                         f"different subjects recorded ({', '.join(both_recorded)})")
            )  # fmt: skip
    if a.modus_operandi and b.modus_operandi:
        common = sorted(a.modus_operandi & b.modus_operandi)
        if common:
            j = jaccard(a.modus_operandi, b.modus_operandi)
            evidence.append(
                Evidence("MODUS_OPERANDI", round(cfg.mo_weight * j, _DIGITS),
                         f"shared tags: {', '.join(common)} (Jaccard {j:.2f})")
            )  # fmt: skip
        elif cfg.neutral_category not in (a.category, b.category):
            # only reports classified alike use one vocabulary of tags: an unclassified
            # report's tags say nothing by differing
            evidence.append(
                Evidence("MODUS_OPERANDI", cfg.mo_disjoint, "no shared modus-operandi tags")
            )
    score = round(sum(e.weight for e in evidence), _DIGITS)
    return ScoredPair(a, b, score, cfg.threshold, tuple(evidence), "SAME_OCCURRENCE")
