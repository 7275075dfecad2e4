"""Quality scores on a tiny hand-made truth, with every expected value worked out by hand."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from xborder.errors import ConfigurationError, XborderError
from xborder.quality import (
    CASE_MEMBERS_SQL,
    CORRELATIONS_SQL,
    case_scores,
    evaluate,
    evaluate_clickhouse,
    format_report,
    link_scores,
    load_truth,
)
from xborder.scenario.truth import TrueCase, Truth, pair

# Incidents: A1..A3, A9 in An Giang; C1..C3, C9 in Can Tho.
A1, A2, A3, A9 = (("angiang", f"AG-{n}") for n in (1, 2, 3, 9))
C1, C2, C3, C9 = (("cantho", f"CT-{n}") for n in (1, 2, 3, 9))

# True links: A1-C1, A1-C2, C1-A2 (group G1) and A3-C3 (group G2).
TRUE_LINKS = [(A1, C1), (A1, C2), (C1, A2), (A3, C3)]
# True cases, the components: X = {A1, C1, C2, A2}, Y = {A3, C3}.
TRUE_CASES = [[A1, C1, C2, A2], [A3, C3]]

# Predicted: A1-C1 (true), C2-A1 (true, reversed), C1-A1 (the first again, reversed),
# A2-C3 (false: a planted hard negative), A3-C3 (true), C9-A9 (false: a lookalike pair),
# A1-A1 (a self-pair: ignored).
PREDICTED_LINKS = [(A1, C1), (C2, A1), (C1, A1), (A2, C3), (A3, C3), (C9, A9), (A1, A1)]
# Distinct predicted: 5. tp = 3 (A1-C1, A1-C2, A3-C3), fp = 2 (A2-C3, A9-C9),
# fn = 1 (C1-A2). precision = 3/5, recall = 3/4, F1 = 2 * 0.6 * 0.75 / 1.35 = 2/3.

# Predicted cases: P1 = {A1, C1, C2}, P2 = {A2, C3, A3}, P3 = {A9, C9}.
PREDICTED_CASES = [[A1, C1, C2], [A2, C3, A3], [A9, C9]]
# purity: P1 -> 3 in X; P2 -> 2 in Y (A2 is in X); P3 -> 0 (in no true case).
#   (3 + 2 + 0) / (3 + 3 + 2) = 5/8
# completeness: X -> 3 in P1 (A2 is in P2); Y -> 2 in P2.  (3 + 2) / (4 + 2) = 5/6


def tiny_truth() -> Truth:
    return Truth(
        window_hours=72.0,
        links=frozenset(pair(a, b) for a, b in TRUE_LINKS),
        cases=(
            TrueCase("C00001", "G1", tuple(sorted(TRUE_CASES[0]))),
            TrueCase("C00002", "G2", tuple(sorted(TRUE_CASES[1]))),
        ),
        groups={"G1": tuple(sorted([A1, C1, C2, A2])), "G2": (A3, C3)},
        hard_negatives=(pair(A2, C3),),
        lookalikes=(pair(A9, C9),),
        counts={"links": 4, "cases": 2},
    )


def test_link_scores_by_hand() -> None:
    scores = link_scores(PREDICTED_LINKS, TRUE_LINKS)
    assert (scores.tp, scores.fp, scores.fn) == (3, 2, 1)
    assert scores.precision == pytest.approx(3 / 5)
    assert scores.recall == pytest.approx(3 / 4)
    assert scores.f1 == pytest.approx(2 / 3)
    assert (scores.predicted, scores.true) == (5, 4)


def test_link_scores_on_empty_sides() -> None:
    nothing = link_scores([], TRUE_LINKS)
    assert (nothing.precision, nothing.recall, nothing.f1, nothing.fn) == (0.0, 0.0, 0.0, 4)
    assert link_scores([], []).f1 == 1.0
    perfect = link_scores([(b, a) for a, b in TRUE_LINKS], TRUE_LINKS)
    assert (perfect.precision, perfect.recall, perfect.f1) == (1.0, 1.0, 1.0)


def test_case_scores_by_hand() -> None:
    scores = case_scores(PREDICTED_CASES, TRUE_CASES)
    assert scores.purity == pytest.approx(5 / 8)
    assert scores.completeness == pytest.approx(5 / 6)
    assert (scores.predicted_cases, scores.true_cases, scores.exact_matches) == (3, 2, 0)
    assert (scores.predicted_members, scores.true_members) == (8, 6)
    assert (scores.stray_members, scores.missed_members) == (2, 0)


def test_case_scores_perfect_split_and_merged() -> None:
    perfect = case_scores([list(reversed(c)) for c in TRUE_CASES], TRUE_CASES)
    assert (perfect.purity, perfect.completeness, perfect.exact_matches) == (1.0, 1.0, 2)
    # everything in one case: purity (4 of 6 in X) = 4/6, completeness 1
    merged = case_scores([[*TRUE_CASES[0], *TRUE_CASES[1]]], TRUE_CASES)
    assert merged.purity == pytest.approx(4 / 6)
    assert merged.completeness == 1.0
    # every incident alone in its own case: pure, but X keeps 1 of 4 and Y 1 of 2: 2/6
    split = case_scores([[ref] for case in TRUE_CASES for ref in case], TRUE_CASES)
    assert split.purity == 1.0
    assert split.completeness == pytest.approx(2 / 6)
    missing = case_scores([], TRUE_CASES)
    assert (missing.purity, missing.completeness, missing.missed_members) == (0.0, 0.0, 6)


def test_evaluate_counts_planted_negatives_and_groups() -> None:
    report = evaluate([*PREDICTED_LINKS, (A1, A2)], PREDICTED_CASES, tiny_truth())
    assert (report.links.tp, report.links.fp, report.links.fn) == (3, 3, 1)
    assert report.hard_negative_links == 1  # A2-C3
    assert report.lookalike_links == 1  # A9-C9
    assert report.same_agency_links == 1  # A1-A2
    assert (report.groups_found, report.groups_total) == (2, 2)
    assert report.cases.purity == pytest.approx(5 / 8)
    assert report.as_dict()["links"]["precision"] == pytest.approx(3 / 6)
    text = format_report(report)
    assert "precision    0.5000" in text and "purity       0.6250" in text


@dataclass
class FakeResult:
    result_rows: list[tuple[Any, ...]]


class FakeClient:
    """Answers the two queries ``evaluate_clickhouse`` runs, as ClickHouse would."""

    def __init__(self, tables: dict[str, list[tuple[Any, ...]]]) -> None:
        self.tables = tables
        self.queries: list[str] = []

    def query(self, sql: str) -> FakeResult:
        self.queries.append(sql)
        table = {CORRELATIONS_SQL: "correlations", CASE_MEMBERS_SQL: "case_members"}[sql]
        if table not in self.tables:
            raise DatabaseError(f"Code: 60. Unknown table {table} (UNKNOWN_TABLE)", code=60)
        return FakeResult(self.tables[table])


def test_evaluate_clickhouse_reads_correlations_and_case_members() -> None:
    client = FakeClient(
        {
            "correlations": [(*a, *b, "IDENTITY") for a, b in PREDICTED_LINKS]
            + [(*A9, *C1, "SAME_OCCURRENCE"), (*A3, *C9, "SAME_OCCURRENCE")],
            "case_members": [
                (f"case-{n}", agency, incident_id)
                for n, case in enumerate(PREDICTED_CASES)
                for agency, incident_id in case
            ],
        }
    )
    truth = replace(
        tiny_truth(),
        double_reports=frozenset({pair(A9, C1)}),
        near_misses={"same_agency": (pair(A1, A2),), "another_day": (pair(A3, C9),)},
    )
    report = evaluate_clickhouse(client, truth)  # type: ignore[arg-type]
    assert client.queries == [CORRELATIONS_SQL, CASE_MEMBERS_SQL]
    # the same-occurrence rows are scored apart from the identity links
    assert report.links.precision == pytest.approx(3 / 5)
    assert report.cases.completeness == pytest.approx(5 / 6)
    assert report.double_reports is not None
    assert (report.double_reports.tp, report.double_reports.fp) == (1, 1)
    assert report.near_miss_links == {"another_day": 1, "same_agency": 0}
    text = format_report(report)
    assert "double reports (same occurrence)" in text and "1 another_day" in text
    assert load_truth_text(truth) == truth


def load_truth_text(truth: Truth) -> Truth:
    """``truth`` written as a truth file and read back."""
    return Truth.from_json(truth.to_json())


def test_evaluate_clickhouse_without_the_tables_says_what_to_do() -> None:
    with pytest.raises(XborderError, match=r"no table 'correlations'.*xborder migrate"):
        evaluate_clickhouse(FakeClient({}), tiny_truth())  # type: ignore[arg-type]


def test_load_truth_round_trip_and_bad_files(tmp_path: Path) -> None:
    path = tmp_path / "truth.json"
    path.write_text(tiny_truth().to_json(), encoding="utf-8")
    assert load_truth(path) == tiny_truth()
    with pytest.raises(ConfigurationError, match="cannot read the truth file"):
        load_truth(tmp_path / "missing.json")
    path.write_text('{"format": "something-else"}', encoding="utf-8")
    with pytest.raises(ConfigurationError, match="not a truth file"):
        load_truth(path)
    path.write_text('{"format": "xborder-truth/1", "links": 3}', encoding="utf-8")
    with pytest.raises(ConfigurationError, match="not a valid truth file"):
        load_truth(path)


def test_evaluate_clickhouse_leaves_out_ignored_incidents() -> None:
    probe = ("angiang", "LAT-0000001")
    client = FakeClient(
        {
            "correlations": [(*a, *b, "IDENTITY") for a, b in PREDICTED_LINKS]
            + [(*probe, *C1, "SAME_OCCURRENCE")],
            "case_members": [("case-x", *probe), ("case-x", *C1)],
        }
    )
    report = evaluate_clickhouse(
        client,  # type: ignore[arg-type]
        tiny_truth(),
        ignore=lambda ref: ref[1].startswith("LAT-"),
    )
    assert report.double_reports is not None and report.double_reports.predicted == 0
    assert report.cases.predicted_members == 1  # C1 stays, the probe incident is gone
