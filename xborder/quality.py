"""Correlation quality against a scenario's ground truth: pairwise links and cases.

The truth is defined in :mod:`xborder.scenario.truth`. An incident is a ref
``(agency, incident_id)``; a link is an unordered pair of refs.

**Links** (pairwise). Predicted and true links are sets of unordered pairs (a pair given
twice, in either order, counts once; a ref paired with itself is ignored).
``tp`` = predicted and true, ``fp`` = predicted, not true, ``fn`` = true, not predicted;
precision = tp / (tp + fp), recall = tp / (tp + fn), F1 = 2 P R / (P + R).

**Cases** (clusters of incidents), both weighted by case size:

- *purity*: for each predicted case, the largest number of its members that belong to one
  true case; summed over predicted cases and divided by the number of predicted members.
  A member in no true case belongs to none (so a case of unrelated incidents has purity 0).
- *completeness*: for each true case, the largest number of its members found in one
  predicted case; summed over true cases and divided by the number of true members.
  A member in no predicted case is found in none.

Formally, with predicted cases P_i and true cases T_j:
purity = sum_i max_j |P_i & T_j| / sum_i |P_i|;
completeness = sum_j max_i |P_i & T_j| / sum_j |T_j|.

Empty denominators: a score whose denominator is empty is 1.0 when the other side is
empty too (nothing to find, nothing claimed), else 0.0 (for example precision with no
predictions but true links: nothing correct was claimed).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from xborder.errors import ServiceUnavailableError, XborderError
from xborder.scenario.truth import Pair, Ref, Truth, pair, read_truth

CORRELATIONS_SQL: Final = (
    "SELECT a_agency, a_incident_id, b_agency, b_incident_id, match_kind FROM correlations FINAL"
)
"""Predicted links: one row per correlated pair (either order) and match kind."""
CASE_MEMBERS_SQL: Final = "SELECT case_id, agency, incident_id FROM case_members FINAL"
"""Predicted cases: one row per (case, member incident)."""
UNKNOWN_TABLE: Final = 60
"""ClickHouse error code of a missing table."""


@dataclass(frozen=True)
class LinkScores:
    """Pairwise link quality."""

    precision: float
    recall: float
    f1: float
    tp: int
    fp: int
    fn: int

    @property
    def predicted(self) -> int:
        """Distinct predicted links."""
        return self.tp + self.fp

    @property
    def true(self) -> int:
        """True links."""
        return self.tp + self.fn


@dataclass(frozen=True)
class CaseScores:
    """Case (cluster) quality; see the module docstring for the definitions."""

    purity: float
    completeness: float
    predicted_cases: int
    true_cases: int
    exact_matches: int
    """Predicted cases whose members are exactly those of a true case."""
    predicted_members: int
    true_members: int
    stray_members: int
    """Predicted members in no true case."""
    missed_members: int
    """True members in no predicted case."""


@dataclass(frozen=True)
class Report:
    """Quality of one correlator run against one truth."""

    links: LinkScores
    cases: CaseScores
    hard_negative_links: int
    """Predicted links that are planted hard negatives (close in space and time, unrelated)."""
    lookalike_links: int
    """Predicted links between a lookalike plate's incident and the group incident it mimics."""
    same_agency_links: int
    """Predicted links within one agency (never true: links cross the boundary); in ``fp``."""
    groups_total: int
    groups_found: int
    """Groups with at least one true link predicted."""
    truth_counts: Mapping[str, int] = field(default_factory=dict)
    double_reports: LinkScores | None = None
    """SAME_OCCURRENCE matches against the true double reports (None when not scored)."""
    near_miss_links: Mapping[str, int] = field(default_factory=dict)
    """SAME_OCCURRENCE matches that are planted near misses, by kind."""
    hard_negative_double_reports: int = 0
    """SAME_OCCURRENCE matches that are planted hard negatives."""
    namesake_links: Mapping[str, int] = field(default_factory=dict)
    """Predicted identity links between planted namesakes, by variant."""

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON values (for the benchmark's report)."""
        values = asdict(self)
        values["truth_counts"] = dict(self.truth_counts)
        values["near_miss_links"] = dict(self.near_miss_links)
        values["namesake_links"] = dict(self.namesake_links)
        return values


def _score(hits: int, claimed: int, expected: int) -> float:
    if claimed:
        return hits / claimed
    return 1.0 if not expected else 0.0


def _ref(value: Iterable[Any]) -> Ref:
    agency, incident_id = value
    return str(agency), str(incident_id)


def _pairs(pairs: Iterable[tuple[Iterable[Any], Iterable[Any]]]) -> set[Pair]:
    found = set()
    for a, b in pairs:
        ra, rb = _ref(a), _ref(b)
        if ra != rb:
            found.add(pair(ra, rb))
    return found


def link_scores(
    predicted_pairs: Iterable[tuple[Iterable[Any], Iterable[Any]]],
    truth_pairs: Iterable[tuple[Iterable[Any], Iterable[Any]]],
) -> LinkScores:
    """Precision, recall and F1 of predicted links (unordered pairs of refs) against the truth."""
    predicted, truth = _pairs(predicted_pairs), _pairs(truth_pairs)
    tp = len(predicted & truth)
    fp, fn = len(predicted) - tp, len(truth) - tp
    precision = _score(tp, tp + fp, tp + fn)
    recall = _score(tp, tp + fn, tp + fp)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return LinkScores(precision, recall, f1, tp, fp, fn)


def case_scores(
    predicted_cases: Iterable[Iterable[Iterable[Any]]],
    truth_cases: Iterable[Iterable[Iterable[Any]]],
) -> CaseScores:
    """Purity and completeness of predicted cases (sets of refs) against the true cases."""
    predicted = [frozenset(_ref(r) for r in case) for case in predicted_cases]
    predicted = [case for case in predicted if case]
    truth = [frozenset(_ref(r) for r in case) for case in truth_cases]
    truth = [case for case in truth if case]
    true_case_of: dict[Ref, int] = {}
    for number, case in enumerate(truth):
        for ref in case:
            true_case_of[ref] = number
    predicted_cases_of: dict[Ref, list[int]] = defaultdict(list)
    for number, case in enumerate(predicted):
        for ref in case:
            predicted_cases_of[ref].append(number)

    pure = 0
    for case in predicted:
        shares = Counter(true_case_of[ref] for ref in case if ref in true_case_of)
        pure += max(shares.values(), default=0)
    complete = 0
    for case in truth:
        shares = Counter(n for ref in case for n in predicted_cases_of.get(ref, ()))
        complete += max(shares.values(), default=0)

    predicted_members = sum(len(case) for case in predicted)
    true_members = sum(len(case) for case in truth)
    truth_set = set(truth)
    return CaseScores(
        purity=_score(pure, predicted_members, true_members),
        completeness=_score(complete, true_members, predicted_members),
        predicted_cases=len(predicted),
        true_cases=len(truth),
        exact_matches=sum(case in truth_set for case in predicted),
        predicted_members=predicted_members,
        true_members=true_members,
        stray_members=sum(ref not in true_case_of for case in predicted for ref in case),
        missed_members=sum(ref not in predicted_cases_of for case in truth for ref in case),
    )


def evaluate(
    predicted_pairs: Iterable[tuple[Iterable[Any], Iterable[Any]]],
    predicted_cases: Iterable[Iterable[Iterable[Any]]],
    truth: Truth,
    predicted_double_reports: Iterable[tuple[Iterable[Any], Iterable[Any]]] | None = None,
) -> Report:
    """Score predicted identity links, same-occurrence matches (double reports, when given)
    and cases against ``truth``, with diagnostics."""
    predicted = _pairs(predicted_pairs)
    doubles = None if predicted_double_reports is None else _pairs(predicted_double_reports)
    links = link_scores(predicted, truth.links)
    cases = case_scores(predicted_cases, (case.incidents for case in truth.cases))
    group_of = {ref: group for group, refs in truth.groups.items() for ref in refs}
    found = {group_of[a] for a, b in predicted & truth.links if a in group_of}
    return Report(
        links=links,
        cases=cases,
        hard_negative_links=len(predicted & set(truth.hard_negatives)),
        lookalike_links=len(predicted & set(truth.lookalikes)),
        same_agency_links=sum(a[0] == b[0] for a, b in predicted),
        groups_total=len(truth.groups),
        groups_found=len(found),
        truth_counts=dict(truth.counts),
        double_reports=None if doubles is None else link_scores(doubles, truth.double_reports),
        near_miss_links={
            kind: len(set(pairs) & (doubles or set()))
            for kind, pairs in sorted(truth.near_misses.items())
        },
        hard_negative_double_reports=len(set(truth.hard_negatives) & (doubles or set())),
        namesake_links={
            variant: len(set(pairs) & predicted)
            for variant, pairs in sorted(truth.namesakes.items())
        },
    )


def load_truth(path: Path) -> Truth:
    """Read the ``truth.json`` a scenario run wrote."""
    return read_truth(path)


def _rows(client: Client, sql: str, table: str) -> list[tuple[Any, ...]]:
    try:
        return [tuple(row) for row in client.query(sql).result_rows]
    except ClickHouseError as exc:
        if getattr(exc, "code", None) == UNKNOWN_TABLE:
            raise XborderError(
                f"ClickHouse has no table {table!r}: run 'xborder migrate' and let the "
                "correlator and the sink process the scenario before evaluating"
            ) from exc
        raise ServiceUnavailableError(
            f"reading {table} from ClickHouse failed: {exc}; is the stack running?"
        ) from exc


def read_predictions(client: Client) -> tuple[set[Pair], list[list[Ref]], set[Pair]]:
    """Predicted identity links, cases and same-occurrence matches as stored in ClickHouse
    (``CORRELATIONS_SQL``, ``CASE_MEMBERS_SQL``)."""
    rows = _rows(client, CORRELATIONS_SQL, "correlations")
    links = _pairs(((a, ai), (b, bi)) for a, ai, b, bi, kind in rows if kind != "SAME_OCCURRENCE")
    doubles = _pairs(((a, ai), (b, bi)) for a, ai, b, bi, kind in rows if kind == "SAME_OCCURRENCE")
    members: dict[str, list[Ref]] = defaultdict(list)
    for case_id, agency, incident_id in _rows(client, CASE_MEMBERS_SQL, "case_members"):
        members[str(case_id)].append((str(agency), str(incident_id)))
    return links, [members[case_id] for case_id in sorted(members)], doubles


def evaluate_clickhouse(
    client: Client, truth: Truth, ignore: Callable[[Ref], bool] | None = None
) -> Report:
    """Score the correlations and cases stored in ClickHouse against ``truth``; ``ignore``
    drops incidents that are not part of the scenario (with their links and case
    memberships), such as a benchmark's own probe incidents."""
    links, cases, doubles = read_predictions(client)
    if ignore is not None:
        links = {p for p in links if not (ignore(p[0]) or ignore(p[1]))}
        doubles = {p for p in doubles if not (ignore(p[0]) or ignore(p[1]))}
        cases = [kept for case in cases if (kept := [r for r in case if not ignore(r)])]
    return evaluate(links, cases, truth, doubles)


def format_report(report: Report) -> str:
    """A short plain-text report for the terminal."""
    links, cases = report.links, report.cases
    lines = [
        "links (pairwise)",
        f"  precision    {links.precision:.4f}   ({links.tp} of {links.predicted} predicted)",
        f"  recall       {links.recall:.4f}   ({links.tp} of {links.true} true)",
        f"  f1           {links.f1:.4f}",
        f"  false        {links.fp} positives, {links.fn} negatives",
        f"  planted      {report.hard_negative_links} hard-negative and "
        f"{report.lookalike_links} lookalike pairs linked; "
        f"{report.same_agency_links} same-agency links",
        "  namesakes    "
        + (
            ", ".join(f"{n} {variant}" for variant, n in report.namesake_links.items())
            or "none planted"
        )
        + " pairs linked",
        "cases",
        f"  purity       {cases.purity:.4f}   ({cases.predicted_cases} predicted, "
        f"{cases.predicted_members} members, {cases.stray_members} in no true case)",
        f"  completeness {cases.completeness:.4f}   ({cases.true_cases} true, "
        f"{cases.true_members} members, {cases.missed_members} in no predicted case)",
        f"  exact        {cases.exact_matches} predicted cases equal a true case",
        f"groups         {report.groups_found} of {report.groups_total} with a true link found",
    ]
    doubles = report.double_reports
    if doubles is not None:
        misses = ", ".join(f"{n} {kind}" for kind, n in report.near_miss_links.items())
        lines[6:6] = [
            "double reports (same occurrence)",
            f"  precision    {doubles.precision:.4f}   ({doubles.tp} of {doubles.predicted} "
            "predicted)",
            f"  recall       {doubles.recall:.4f}   ({doubles.tp} of {doubles.true} true)",
            f"  planted      {report.hard_negative_double_reports} hard-negative pairs and "
            f"near misses ({misses or 'none'}) matched",
        ]
    return "\n".join(lines) + "\n"
