"""Evidence scoring of a candidate pair, Fellegi-Sunter style, and the Correlation record.

Each comparison contributes a log-likelihood weight, in bits: log2 of how much more likely
the observation is for two incidents that belong together (the same subjects or group)
than for two unrelated incidents among the candidates. Weights add up; the pair is linked
when the sum reaches the threshold. Every contribution is kept as evidence with a
human-readable detail, so an officer sees why (``Correlation.evidence``).

Default weights (``ScoringConfig``) and why:

- **Shared strong token** (same pseudonymised person, vehicle or phone; counted once per
  kind): PERSON 12, VEHICLE 10, PHONE 10. Related incidents share a recorded identifier
  often (m ~ 0.5); unrelated candidates share one only by a data-entry collision or a
  reused plate or SIM (u ~ 1e-3 for vehicles and phones, rarer for a person's id), so
  log2(m/u) is about 9-12 bits.
- **Person keys** (``Subject.person_key``; the weaker of the two sides' declared keys).
  m is the chance that two records of one individual agree on the key, u the chance that
  two different individuals among the candidates do (72 h, cross-border; about 9,000
  distinct Vietnamese full names are common enough to matter, the commonest carrying ~1 %
  of a province's people):

  - NATIONAL_ID 12: m ~ 0.5, u ~ 1e-4 (a mistyped digit): log2 ~ 12.
  - NAME_BIRTH_DATE 10: m ~ 0.5 (names are spelt many ways; normalisation folds most);
    u ~ 1e-3 (a common name, ~1 %) x 1/20,000 (a birth date over 55 years) ~ 5e-8, but a
    date typo or a pair of namesakes born the same day happens: held at 10, under the
    national ID, over the threshold.
  - NAME_BIRTH_YEAR 5: u ~ 1 % x 1/55 ~ 2e-4 for common names, and namesakes of one year
    are what the issue found falsely linked: 5, so it links only with space and time.
  - NAME 3: u ~ 1 % for the commonest names: weak evidence that never links alone.
  - NATIONAL_ID_MISMATCH -7: two individuals who agree on a name key but whose national-ID
    tokens (sent for the same ``individual``) differ: m ~ 0.01 (a typo), u ~ 1, so the name
    agreement is not counted and log2(0.01) ~ -7 is added.

  A PERSON token without a declared key (UNSPECIFIED, older producers) weighs 12 as before.
- **Distance** decays exponentially, ``2.0 * exp(-km / 3)``, and **time**
  ``2.0 * exp(-hours / 6)``: being at the same place and hour makes a link at most about
  4 times likelier each; far apart is no evidence either way (a group travels), so the
  weights decay to 0 rather than turn negative.
- **Category**: the same +1.0; related (theft and robbery, drugs and smuggling, organised
  group with the crimes groups commit...) +0.5; unrelated -0.5; OTHER says nothing (0).
- **Modus operandi**: ``1.5 * Jaccard`` of the tag sets, when both have tags.
- **Border zone**: +1.0 when both incidents are in the border zone, +0.5 when one is.

Threshold 8.0. Everything but a token adds up to at most 2 + 2 + 1 + 1.5 + 1 = 7.5 < 8.0:
unrelated incidents close in space and time, same category and modus operandi, both in the
border zone but without a shared subject (the hard negatives) never link. A shared token
alone, with everything else against it (far apart, days apart, unrelated categories), still
scores at least 10 - 0.5 = 9.5 >= 8.0: a subject seen on both sides always links.
``max_without_token`` gives that bound for any configuration: lower the threshold below it
to let space-time proximity alone link incidents.

Only cross-jurisdiction pairs are scored: different agencies, or one agency's incidents
located in two different jurisdictions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from xborder.geo import haversine_km

from .model import IncidentView, Ref, stable_id

EvidenceKind = Literal[
    "SHARED_PERSON",
    "SHARED_VEHICLE",
    "SHARED_PHONE",
    "DISTANCE",
    "TIME",
    "CATEGORY",
    "MODUS_OPERANDI",
    "BORDER_ZONE",
    "OTHER",
    "SHARED_NATIONAL_ID",
    "SHARED_NAME_BIRTH_DATE",
    "SHARED_NAME_BIRTH_YEAR",
    "SHARED_NAME",
    "NATIONAL_ID_MISMATCH",
]
"""The EvidenceKind symbols of schemas/Correlation.avsc."""
MatchKind = Literal["IDENTITY", "SAME_OCCURRENCE"]
"""The MatchKind symbols of schemas/Correlation.avsc: the same subject on both sides, or
two agencies' reports of one occurrence (``streams.correlation.occurrence``)."""
SHARED_KIND: dict[str, EvidenceKind] = {
    "PERSON": "SHARED_PERSON",
    "VEHICLE": "SHARED_VEHICLE",
    "PHONE": "SHARED_PHONE",
}
SHARED_PERSON_KEY: dict[str, EvidenceKind] = {
    "NATIONAL_ID": "SHARED_NATIONAL_ID",
    "NAME_BIRTH_DATE": "SHARED_NAME_BIRTH_DATE",
    "NAME_BIRTH_YEAR": "SHARED_NAME_BIRTH_YEAR",
    "NAME": "SHARED_NAME",
}
"""Evidence of a shared PERSON token by the person key it was made from."""
_KEY_STRENGTH = ("NAME", "NAME_BIRTH_YEAR", "NAME_BIRTH_DATE", "NATIONAL_ID")
_HOUR_MS = 3_600_000
_DIGITS = 4  # weights are rounded so the record's score is exactly the sum it shows

RELATED_CATEGORIES: frozenset[frozenset[str]] = frozenset(
    frozenset(pair)
    for pair in (
        ("THEFT", "ROBBERY"),
        ("DRUGS", "SMUGGLING"),
        ("GAMBLING", "FRAUD"),
        ("SMUGGLING", "FRAUD"),
        ("PUBLIC_DISORDER", "HOSTILE_ACTIVITY"),
        *(
            ("ORGANISED_GROUP", other)
            for other in (
                "THEFT",
                "ROBBERY",
                "DRUGS",
                "SMUGGLING",
                "GAMBLING",
                "FRAUD",
                "PUBLIC_DISORDER",
                "HOSTILE_ACTIVITY",
            )
        ),
    )
)
"""Unordered category pairs that often go together (the same actors, different reports)."""


@dataclass(frozen=True)
class ScoringConfig:
    """Evidence weights (bits), decay scales and the link threshold; see the module
    docstring for the defaults' reasoning."""

    token_weights: Mapping[str, float] = field(
        default_factory=lambda: {"PERSON": 12.0, "VEHICLE": 10.0, "PHONE": 10.0}
    )
    """Weight of sharing at least one token of a kind; kinds not listed are not compared.
    A PERSON token whose person key is declared takes ``person_key_weights`` instead."""
    person_key_weights: Mapping[str, float] = field(
        default_factory=lambda: {
            "NATIONAL_ID": 12.0,
            "NAME_BIRTH_DATE": 10.0,
            "NAME_BIRTH_YEAR": 5.0,
            "NAME": 3.0,
        }
    )
    """Weight of a shared PERSON token by its person key (see the module docstring)."""
    national_id_mismatch: float = -7.0
    """A name token agrees while the same individuals' national-ID tokens differ: the name
    agreement is not counted and this is added instead."""
    distance_weight: float = 2.0
    """Weight at 0 km; decays as exp(-km / distance_scale_km)."""
    distance_scale_km: float = 3.0
    time_weight: float = 2.0
    """Weight at 0 h apart; decays as exp(-hours / time_scale_h)."""
    time_scale_h: float = 6.0
    category_same: float = 1.0
    category_related: float = 0.5
    category_unrelated: float = -0.5
    related_categories: frozenset[frozenset[str]] = RELATED_CATEGORIES
    neutral_category: str = "OTHER"
    """A category that says nothing about relatedness (weight 0)."""
    mo_weight: float = 1.5
    """Times the Jaccard overlap of the modus-operandi tags (when both have tags)."""
    border_both: float = 1.0
    border_one: float = 0.5
    threshold: float = 8.0
    """Linked when the sum of the weights is at least this."""

    def __post_init__(self) -> None:
        if not (self.distance_scale_km > 0 and self.time_scale_h > 0):
            raise ValueError("distance_scale_km and time_scale_h must be positive")

    def max_without_token(self) -> float:
        """The highest score a pair can reach without a shared token."""
        return (
            max(self.distance_weight, 0.0)
            + max(self.time_weight, 0.0)
            + max(self.category_same, self.category_related, self.category_unrelated, 0.0)
            + max(self.mo_weight, 0.0)
            + max(self.border_both, self.border_one, 0.0)
        )


@dataclass(frozen=True, slots=True)
class Evidence:
    """One scored comparison."""

    kind: EvidenceKind
    weight: float
    detail: str


@dataclass(frozen=True, slots=True)
class ScoredPair:
    """A scored cross-jurisdiction pair, in canonical order (``a.ref < b.ref``)."""

    a: IncidentView
    b: IncidentView
    score: float
    threshold: float
    evidence: tuple[Evidence, ...]
    match_kind: MatchKind = "IDENTITY"

    @property
    def linked(self) -> bool:
        """The score reaches the threshold."""
        return self.score >= self.threshold

    @property
    def correlation_id(self) -> str:
        """Deterministic id of the pair and match kind (``correlation_id``)."""
        return correlation_id(self.a.ref, self.b.ref, self.match_kind)

    @property
    def created_ms(self) -> int:
        """Event time of the link: the later of the two incidents' times."""
        return max(self.a.occurred_ms, self.b.occurred_ms)


def correlation_id(x: Ref, y: Ref, match_kind: MatchKind = "IDENTITY") -> str:
    """Hex SHA-256 of the two refs in canonical order (and the match kind, unless
    IDENTITY, whose ids predate the kinds): replays and both orders agree."""
    a, b = (x, y) if x <= y else (y, x)
    if match_kind == "IDENTITY":
        return stable_id("correlation", a[0], a[1], b[0], b[1])
    return stable_id("correlation", a[0], a[1], b[0], b[1], match_kind)


def cross_jurisdiction(a: IncidentView, b: IncidentView) -> bool:
    """Different agencies, or the same agency's incidents located in two jurisdictions."""
    if a.agency != b.agency:
        return True
    ja, jb = a.jurisdiction, b.jurisdiction
    return ja is not None and jb is not None and ja != jb


def shared_tokens(a: IncidentView, b: IncidentView) -> list[tuple[str, str]]:
    """Tokens both views carry, sorted."""
    if not a.tokens or not b.tokens:
        return []
    if len(a.tokens) > len(b.tokens):
        a, b = b, a
    other = b.tokens
    return [t for t in a.tokens if t in other]


def category_weight(x: str, y: str, cfg: ScoringConfig) -> float:
    """Category compatibility weight."""
    if x == cfg.neutral_category or y == cfg.neutral_category:
        return 0.0
    if x == y:
        return cfg.category_same
    if frozenset((x, y)) in cfg.related_categories:
        return cfg.category_related
    return cfg.category_unrelated


def jaccard(x: frozenset[str], y: frozenset[str]) -> float:
    """|x & y| / |x | y|; 0 when either is empty."""
    if not x or not y:
        return 0.0
    inter = len(x & y)
    return inter / (len(x) + len(y) - inter) if inter else 0.0


def _person_key(token: str, a: IncidentView, b: IncidentView) -> str:
    """The person key of a shared PERSON token: the weaker of the two sides' declared keys
    (UNSPECIFIED when neither declares one)."""
    declared = [k for view in (a, b) for t, k in view.person_keys if t == token]
    if not declared:
        return "UNSPECIFIED"
    return min(declared, key=lambda k: _KEY_STRENGTH.index(k) if k in _KEY_STRENGTH else 0)


def _contradicted(token: str, a: IncidentView, b: IncidentView) -> bool:
    """A shared name token whose individuals carry national IDs on both sides, none equal."""
    ids_a = {national for name, national in a.individuals if name == token}
    if not ids_a:
        return False
    ids_b = {national for name, national in b.individuals if name == token}
    return bool(ids_b) and ids_a.isdisjoint(ids_b)


def token_evidence(
    a: IncidentView, b: IncidentView, cfg: ScoringConfig
) -> list[tuple[EvidenceKind, str, float, list[str]]]:
    """The shared-token evidence of a pair: (evidence kind, subject kind, weight, tokens),
    counted once per evidence kind, sorted by evidence kind; a national-ID mismatch comes
    as NATIONAL_ID_MISMATCH with the contradicted name tokens."""
    groups: dict[EvidenceKind, tuple[str, float, list[str]]] = {}
    contradicted: list[str] = []
    for kind, token in shared_tokens(a, b):
        if kind not in cfg.token_weights:
            continue
        evidence: EvidenceKind = SHARED_KIND.get(kind, "OTHER")
        weight = cfg.token_weights[kind]
        if kind == "PERSON" and (a.person_keys or b.person_keys):
            key = _person_key(token, a, b)
            if key in cfg.person_key_weights:
                if key != "NATIONAL_ID" and _contradicted(token, a, b):
                    contradicted.append(token)
                    continue
                evidence, weight = SHARED_PERSON_KEY[key], cfg.person_key_weights[key]
        groups.setdefault(evidence, (kind, weight, []))[2].append(token)
    out = [(e, kind, round(w, _DIGITS), tokens) for e, (kind, w, tokens) in sorted(groups.items())]
    if contradicted:
        out.append(
            ("NATIONAL_ID_MISMATCH", "PERSON", round(cfg.national_id_mismatch, _DIGITS),
             contradicted)
        )  # fmt: skip
    return out


def quick_score(a: IncidentView, b: IncidentView, cfg: ScoringConfig) -> float | None:
    """The score of ``score_pair`` without building the evidence (the hot path); None for a
    pair that is not cross-jurisdiction."""
    if not cross_jurisdiction(a, b):
        return None
    total = 0.0
    if a.tokens and b.tokens:
        if a.person_keys or b.person_keys:
            for _, _, weight, _ in token_evidence(a, b, cfg):
                total += weight
        else:
            weights = cfg.token_weights
            kinds = {kind for kind, _ in shared_tokens(a, b)}
            for kind in kinds:
                total += round(weights.get(kind, 0.0), _DIGITS)
    km = haversine_km(a.lat, a.lon, b.lat, b.lon)
    total += round(cfg.distance_weight * math.exp(-km / cfg.distance_scale_km), _DIGITS)
    hours = abs(a.occurred_ms - b.occurred_ms) / _HOUR_MS
    total += round(cfg.time_weight * math.exp(-hours / cfg.time_scale_h), _DIGITS)
    total += round(category_weight(a.category, b.category, cfg), _DIGITS)
    if a.modus_operandi and b.modus_operandi:
        total += round(cfg.mo_weight * jaccard(a.modus_operandi, b.modus_operandi), _DIGITS)
    if a.in_border_zone or b.in_border_zone:
        total += round(cfg.border_both if a.in_border_zone and b.in_border_zone
                       else cfg.border_one, _DIGITS)  # fmt: skip
    return round(total, _DIGITS)


_TOKEN_WHAT: dict[str, str] = {
    "SHARED_NATIONAL_ID": "PERSON national-ID",
    "SHARED_NAME_BIRTH_DATE": "PERSON name-and-birth-date",
    "SHARED_NAME_BIRTH_YEAR": "PERSON name-and-birth-year",
    "SHARED_NAME": "PERSON name-only",
    "NATIONAL_ID_MISMATCH": "PERSON name",
}


def _hours(ms: int) -> str:
    minutes = round(ms / 60_000)
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 48 * 60:
        return f"{minutes / 60:.1f} h"
    return f"{minutes / 1440:.1f} days"


def score_pair(a: IncidentView, b: IncidentView, cfg: ScoringConfig) -> ScoredPair | None:
    """Score a pair with its evidence; None unless it is cross-jurisdiction. The pair comes
    back in canonical order whatever the argument order."""
    if not cross_jurisdiction(a, b):
        return None
    if b.ref < a.ref:
        a, b = b, a
    evidence: list[Evidence] = []
    km = haversine_km(a.lat, a.lon, b.lat, b.lon)
    dt_ms = abs(a.occurred_ms - b.occurred_ms)
    where = f"{km:.1f} km apart; {_hours(dt_ms)} apart"
    for kind_of_evidence, kind, weight, tokens in token_evidence(a, b, cfg):
        shown = ", ".join(f"{t[:4]}…" for t in tokens)
        what = _TOKEN_WHAT.get(kind_of_evidence, kind)
        if kind_of_evidence == "NATIONAL_ID_MISMATCH":
            detail = f"same {what} {shown} but different national ID tokens; {where}"
        elif len(tokens) > 1:
            detail = f"{len(tokens)} shared {what} tokens {shown}; {where}"
        else:
            detail = f"same {what} token {shown}; {where}"
        evidence.append(Evidence(kind_of_evidence, weight, detail))
    evidence.append(
        Evidence(
            "DISTANCE",
            round(cfg.distance_weight * math.exp(-km / cfg.distance_scale_km), _DIGITS),
            f"{km:.1f} km apart",
        )
    )
    evidence.append(
        Evidence(
            "TIME",
            round(cfg.time_weight * math.exp(-dt_ms / _HOUR_MS / cfg.time_scale_h), _DIGITS),
            f"{_hours(dt_ms)} apart",
        )
    )
    weight = round(category_weight(a.category, b.category, cfg), _DIGITS)
    if a.category == b.category:
        detail = f"same category {a.category}"
    else:
        relation = "neutral" if weight == 0 else "related" if weight > 0 else "unrelated"
        detail = f"{relation} categories {a.category} / {b.category}"
    evidence.append(Evidence("CATEGORY", weight, detail))
    if a.modus_operandi and b.modus_operandi:
        j = jaccard(a.modus_operandi, b.modus_operandi)
        common = sorted(a.modus_operandi & b.modus_operandi)
        detail = (
            f"shared tags: {', '.join(common)} (Jaccard {j:.2f})" if common
            else "no shared modus-operandi tags"
        )  # fmt: skip
        evidence.append(Evidence("MODUS_OPERANDI", round(cfg.mo_weight * j, _DIGITS), detail))
    if a.in_border_zone or b.in_border_zone:
        both = a.in_border_zone and b.in_border_zone
        if both:
            detail = "both in the border zone"
        else:
            inside = a if a.in_border_zone else b
            detail = f"{inside.agency} incident {inside.incident_id} in the border zone"
        evidence.append(
            Evidence("BORDER_ZONE", round(cfg.border_both if both else cfg.border_one, _DIGITS),
                     detail)
        )  # fmt: skip
    score = round(sum(e.weight for e in evidence), _DIGITS)
    return ScoredPair(a, b, score, cfg.threshold, tuple(evidence))


def _incident_ref(view: IncidentView) -> dict[str, str]:
    return {"agency": view.agency, "incident_id": view.incident_id, "event_id": view.event_id}


def to_correlation_record(pair: ScoredPair, created_ms: int | None = None) -> dict[str, Any]:
    """The pair as a ``Correlation`` Avro datum; ``created_ms`` defaults to the later of the
    two incidents' event times (never the wall clock)."""
    return {
        "correlation_id": pair.correlation_id,
        "incident_a": _incident_ref(pair.a),
        "incident_b": _incident_ref(pair.b),
        "score": pair.score,
        "threshold": pair.threshold,
        "evidence": [
            {"kind": e.kind, "weight": e.weight, "detail": e.detail} for e in pair.evidence
        ],
        "created_at": pair.created_ms if created_ms is None else created_ms,
        "match_kind": pair.match_kind,
    }
