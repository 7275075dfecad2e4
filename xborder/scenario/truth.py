"""Ground truth of a scenario: the links and cases the correlator is scored against.

Definition (the scenario generator plants it; ``xborder.quality`` scores against it):

- An incident is referenced as ``(agency, incident_id)``. Its agency is the jurisdiction
  in which it is located (``Jurisdictions.locate`` of its written coordinates).
- A true **link** is an unordered pair of incidents that

  1. are located in **different** jurisdictions,
  2. occurred at most ``window_hours`` apart (``|occurred_at_a - occurred_at_b| <=
     window_hours``, default 72 h), and
  3. share at least one real-world entity: the same person, vehicle or phone.

  Every entity taking part in an incident is recorded as one of its subjects, and every
  entity is recorded with at least one token its agency's person-key policy makes (see
  ``xborder.scenario.identities``), so a true link shares a token in the published events
  when both agencies record a key in common; two incidents that share a national-ID,
  vehicle or phone token share the entity. Lookalike plates are different vehicles with
  different tokens, and namesakes (the same name and birth year or date, or twins) are
  different persons: no link.
- A true **double report** is a pair of two agencies' reports of one occurrence on the
  boundary (planted by the generator: < 300 m and < 15 min apart, the same category or
  one side's OTHER), whether or not they record a subject. Its near misses (the same place
  on another day, an unrelated category next door, one agency's second report) are not.
- True **cases** are the connected components of the true links and double reports, with
  the id of the cross-border group whose entities made them (``None`` for a case no group
  made).
- Duplicate events (the same event published again, same ``event_id``) are the same
  incident and add nothing; malformed lines are not incidents and are not in the truth.
  Late and out-of-order publication changes nothing: the truth depends on ``occurred_at``.

The truth file also lists, for diagnosis, each group's incidents and the planted
negatives: hard-negative pairs (close in space and time, same category, no shared
entity) and lookalike pairs (a lookalike plate's incident and the group incident whose
plate it resembles). None of them is a link.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from xborder.errors import ConfigurationError

Ref = tuple[str, str]
"""An incident: (agency, incident_id)."""
Pair = tuple[Ref, Ref]
"""An unordered pair of incidents, stored smaller ref first."""

TRUTH_FORMAT: Final = "xborder-truth/1"
DEFINITION: Final = (
    "link: unordered pair of incidents (agency, incident_id) in different jurisdictions, "
    "occurred_at at most window_hours apart, sharing at least one real-world entity "
    "(person, vehicle, phone; namesakes are different persons); double report: two agencies' "
    "reports of one occurrence; case: connected component of the links and double "
    "reports; duplicates add nothing, malformed lines are not incidents"
)


def pair(a: Ref, b: Ref) -> Pair:
    """The canonical (sorted) form of an unordered pair of incidents."""
    return (a, b) if a <= b else (b, a)


def true_links(
    incidents: Iterable[tuple[Ref, int, Iterable[Hashable]]], window_ms: int
) -> set[Pair]:
    """Links among ``(ref, occurred_ms, entities)`` by the definition above.

    Entities are any hashable keys (entity ids, or tokens read back from the events).
    """
    seen: dict[Hashable, list[tuple[int, Ref]]] = defaultdict(list)
    for ref, occurred_ms, entities in incidents:
        for entity in set(entities):
            seen[entity].append((occurred_ms, ref))
    links: set[Pair] = set()
    for sightings in seen.values():
        if len({ref[0] for _, ref in sightings}) < 2:
            continue  # one jurisdiction only: a repeat offender, or a one-off
        sightings.sort()
        for n, (moment, ref) in enumerate(sightings):
            for other_moment, other in sightings[n + 1 :]:
                if other_moment - moment > window_ms:
                    break
                if other[0] != ref[0]:
                    links.add(pair(ref, other))
    return links


@dataclass(frozen=True)
class TrueCase:
    """A connected component of the true links."""

    case_id: str
    group_id: str | None
    incidents: tuple[Ref, ...]


def true_cases(links: Iterable[Pair], group_of: Mapping[Ref, str]) -> list[TrueCase]:
    """Connected components of ``links``, ordered by their smallest incident, ids C00001..."""
    parent: dict[Ref, Ref] = {}

    def find(ref: Ref) -> Ref:
        root = ref
        while parent[root] != root:
            root = parent[root]
        while parent[ref] != root:
            parent[ref], ref = root, parent[ref]
        return root

    for a, b in sorted(links):
        parent.setdefault(a, a)
        parent.setdefault(b, b)
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    members: dict[Ref, list[Ref]] = defaultdict(list)
    for ref in parent:
        members[find(ref)].append(ref)
    cases = []
    for number, component in enumerate(sorted(sorted(m) for m in members.values()), start=1):
        groups = sorted({group_of[ref] for ref in component if ref in group_of})
        cases.append(
            TrueCase(f"C{number:05d}", "+".join(groups) if groups else None, tuple(component))
        )
    return cases


@dataclass(frozen=True)
class Truth:
    """The ground truth of one scenario (see the module docstring)."""

    window_hours: float
    links: frozenset[Pair]
    cases: tuple[TrueCase, ...]
    groups: Mapping[str, tuple[Ref, ...]] = field(default_factory=dict)
    hard_negatives: tuple[Pair, ...] = ()
    lookalikes: tuple[Pair, ...] = ()
    double_reports: frozenset[Pair] = frozenset()
    """Pairs of two agencies' reports of one occurrence (the SAME_OCCURRENCE truth)."""
    near_misses: Mapping[str, tuple[Pair, ...]] = field(default_factory=dict)
    """Pairs that look like double reports but are not, by kind (another_day,
    another_category, same_agency)."""
    namesakes: Mapping[str, tuple[Pair, ...]] = field(default_factory=dict)
    """Pairs of incidents recording two different persons who look alike by name, by
    variant (same_year, same_date, twin): never identity links."""
    counts: Mapping[str, int] = field(default_factory=dict)
    parameters: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """The truth file's text: stable key order, one link, case or pair per line."""

        def compact(value: Any) -> str:
            return json.dumps(value, separators=(",", ":"), ensure_ascii=False)

        def block(items: list[Any]) -> str:
            if not items:
                return "[]"
            return "[\n    " + ",\n    ".join(compact(item) for item in items) + "\n  ]"

        parts = [
            f'  "format": {compact(TRUTH_FORMAT)}',
            f'  "definition": {compact(DEFINITION)}',
            f'  "window_hours": {compact(self.window_hours)}',
            f'  "parameters": {compact(dict(self.parameters))}',
            f'  "counts": {compact(dict(self.counts))}',
            f'  "links": {block([_pair_json(p) for p in sorted(self.links)])}',
            '  "cases": '
            + block(
                [
                    {"case_id": c.case_id, "group_id": c.group_id, "incidents": _refs(c.incidents)}
                    for c in self.cases
                ]
            ),
            '  "groups": '
            + block(
                [
                    {"group_id": g, "incidents": _refs(refs)}
                    for g, refs in sorted(self.groups.items())
                ]
            ),
            f'  "hard_negatives": {block([_pair_json(p) for p in self.hard_negatives])}',
            f'  "lookalikes": {block([_pair_json(p) for p in self.lookalikes])}',
            '  "double_reports": ' + block([_pair_json(p) for p in sorted(self.double_reports)]),
            '  "near_misses": '
            + block(
                [
                    {"kind": kind, "pairs": [_pair_json(p) for p in pairs]}
                    for kind, pairs in sorted(self.near_misses.items())
                ]
            ),
            '  "namesakes": '
            + block(
                [
                    {"variant": variant, "pairs": [_pair_json(p) for p in pairs]}
                    for variant, pairs in sorted(self.namesakes.items())
                ]
            ),
        ]
        return "{\n" + ",\n".join(parts) + "\n}\n"

    @classmethod
    def from_json(cls, text: str, source: str = "truth") -> Truth:
        """Parse a truth file's text; errors name the source and what is wrong."""
        try:
            raw = json.loads(text)
            if raw.get("format") != TRUTH_FORMAT:
                raise ConfigurationError(
                    f"{source}: not a truth file (format {raw.get('format')!r}, expected "
                    f"{TRUTH_FORMAT!r}); give the truth.json the scenario generator wrote"
                )
            return cls(
                window_hours=float(raw["window_hours"]),
                links=frozenset(pair(_ref(a), _ref(b)) for a, b in raw["links"]),
                cases=tuple(
                    TrueCase(
                        c["case_id"], c.get("group_id"), tuple(_ref(r) for r in c["incidents"])
                    )
                    for c in raw["cases"]
                ),
                groups={
                    g["group_id"]: tuple(_ref(r) for r in g["incidents"])
                    for g in raw.get("groups", [])
                },
                hard_negatives=tuple(
                    pair(_ref(a), _ref(b)) for a, b in raw.get("hard_negatives", [])
                ),
                lookalikes=tuple(pair(_ref(a), _ref(b)) for a, b in raw.get("lookalikes", [])),
                double_reports=frozenset(
                    pair(_ref(a), _ref(b)) for a, b in raw.get("double_reports", [])
                ),
                near_misses={
                    m["kind"]: tuple(pair(_ref(a), _ref(b)) for a, b in m["pairs"])
                    for m in raw.get("near_misses", [])
                },
                namesakes={
                    m["variant"]: tuple(pair(_ref(a), _ref(b)) for a, b in m["pairs"])
                    for m in raw.get("namesakes", [])
                },
                counts=dict(raw.get("counts", {})),
                parameters=dict(raw.get("parameters", {})),
            )
        except ConfigurationError:
            raise
        except (json.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError) as exc:
            raise ConfigurationError(f"{source}: not a valid truth file: {exc!r}") from exc


def read_truth(path: Path) -> Truth:
    """Read a truth file written by ``write_scenario``."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read the truth file {path}: {exc.strerror}; generate a scenario first"
        ) from exc
    return Truth.from_json(text, source=str(path))


def _ref(value: Any) -> Ref:
    agency, incident_id = value
    return str(agency), str(incident_id)


def _refs(refs: Iterable[Ref]) -> list[list[str]]:
    return [[agency, incident_id] for agency, incident_id in refs]


def _pair_json(value: Pair) -> list[list[str]]:
    return _refs(value)
