"""The duty officers' view of cases: a pure fold of ``cases`` and ``verification`` records.

:func:`fold_records` takes decoded records as ``(record_name, value)`` pairs, in the order
the worker wrote them, and returns one :class:`CaseSummary` per case id. It reads no Kafka
and no clock, so it is tested on synthetic records; :func:`xborder.verification.fold_cases`
feeds it from the topics. Values are decoded without logical types: timestamps are
milliseconds, uuids strings.

What it takes from each record:

- CaseEvent (``cases``): the status is the status of the case's event with the highest
  ``sequence`` (a later record wins a tie: the lifecycle's status events carry the sequence
  of the membership they judged); agencies from that event; incidents from CREATED and
  INCIDENT_ADDED; MERGED marks the absorbed cases and gives their incidents to the survivor.
- Verdict, CaseReport, IncidentRelease, CaseConclusion (``verification``): the inputs the
  case lifecycle accepted and the conclusions it reached, keyed by case id.

``awaiting`` (agencies whose confirmation is still needed) follows the lifecycle's rules for
asking again (an added incident asks its agency again, a new agency or a merge asks everyone)
in record order. The two topics have no common order, so it is exact only when the records
come in the order the lifecycle applied them; the Kafka reader merges them by broker
timestamp, which is that order unless the lifecycle lagged behind the case stage.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

WAITING = ("PENDING_VERIFICATION", "DISPUTED", "OPEN")
"""Statuses in which a case waits for verdicts."""
TIME_FIELDS = frozenset({"at", "decided_at", "requested_at", "released_at", "agreed_at", "sent"})
"""Timestamp fields (milliseconds) that :meth:`CaseSummary.as_dict` writes as ISO-8601."""


@dataclass
class CaseSummary:
    """One case as the topics describe it (see the module docstring)."""

    case_id: str
    status: str = "OPEN"
    sequence: int = -1
    """``sequence`` of the case event that gave ``status``."""
    agencies: list[str] = field(default_factory=list)
    incidents: dict[tuple[str, str], str] = field(default_factory=dict)
    """(agency, incident_id) -> event_id of the incident event the case stage linked."""
    possible_double_report: bool = False
    merged_into: str | None = None
    """The case that absorbed this one (it gets no more events); None while live."""
    absorbed: list[str] = field(default_factory=list)
    """Cases merged into this one."""
    correlation_ids: list[str] = field(default_factory=list)
    evidence: list[dict[str, Any]] = field(default_factory=list)
    """The case's correlations when the fold read them (``correlations``): match kind,
    score, threshold and each piece of evidence, in ``correlation_ids`` order."""
    verdicts: list[dict[str, Any]] = field(default_factory=list)
    """Accepted verdicts, in order."""
    conclusions: list[dict[str, Any]] = field(default_factory=list)
    """CaseConclusions, in order (earlier ones were reopened by a new link)."""
    reports: list[dict[str, Any]] = field(default_factory=list)
    """Accepted CaseReports, in order."""
    releases: list[dict[str, Any]] = field(default_factory=list)
    """Accepted IncidentReleases (with their audience), in order."""
    escalations: list[dict[str, Any]] = field(default_factory=list)
    """VERIFICATION_OVERDUE alerts raised for the case (once each, whatever the number of
    alert topics they went to): ``identifier``, ``sent``, ``headline``."""
    timeline: list[dict[str, Any]] = field(default_factory=list)
    """What happened, in record order: ``{"at": ms, "what": ..., ...}``."""
    asked: dict[str, int] = field(default_factory=dict)
    """agency -> step at which it was last asked (again) for a verdict."""
    verdict_steps: dict[str, int] = field(default_factory=dict)
    """agency -> step of its latest accepted verdict."""

    @property
    def latest_verdicts(self) -> dict[str, dict[str, Any]]:
        """The latest accepted verdict of each agency."""
        return {v["agency"]: v for v in self.verdicts}

    @property
    def awaiting(self) -> list[str]:
        """Involved agencies without a CONFIRM given since they were last asked (sorted);
        empty unless the case waits for verdicts."""
        if self.status not in WAITING or self.merged_into is not None:
            return []
        latest = self.latest_verdicts
        return [
            a
            for a in self.agencies
            if a not in latest
            or latest[a]["decision"] != "CONFIRM"
            or self.verdict_steps.get(a, -1) < self.asked.get(a, 0)
        ]

    @property
    def conclusion(self) -> dict[str, Any] | None:
        """The agreed conclusion that stands (while CONFIRMED or CONCLUDED)."""
        if self.status in ("CONFIRMED", "CONCLUDED") and self.conclusions:
            return self.conclusions[-1]
        return None

    @property
    def report(self) -> dict[str, Any] | None:
        """The accepted report of the standing conclusion (while CONCLUDED)."""
        return self.reports[-1] if self.status == "CONCLUDED" and self.reports else None

    def as_dict(self) -> dict[str, Any]:
        """JSON-able, timestamps as ISO-8601 UTC."""
        data = {
            "case_id": self.case_id,
            "status": self.status,
            "merged_into": self.merged_into,
            "agencies": self.agencies,
            "awaiting": self.awaiting,
            "possible_double_report": self.possible_double_report,
            "incidents": [
                {"agency": a, "incident_id": i, "event_id": e}
                for (a, i), e in sorted(self.incidents.items())
            ],
            "correlation_ids": self.correlation_ids,
            "evidence": self.evidence,
            "absorbed": self.absorbed,
            "verdicts": self.verdicts,
            "conclusion": self.conclusion,
            "report": self.report,
            "past_conclusions": [c for c in self.conclusions if c is not self.conclusion],
            "releases": self.releases,
            "escalations": self.escalations,
            "timeline": self.timeline,
        }
        return {k: _iso_times(v) for k, v in data.items()}


def iso(ms: int) -> str:
    """Milliseconds since the epoch as ISO-8601 UTC, e.g. ``2026-03-19T08:00:00.000Z``."""
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _iso_times(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _iso_times(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_iso_times(v) for v in value]
    if key in TIME_FIELDS and isinstance(value, int):
        return iso(value)
    return value


def _short_name(record_name: str) -> str:
    return record_name.rpartition(".")[2]


class CaseFold:
    """An incremental fold: :meth:`apply` one record at a time, read :attr:`cases`."""

    def __init__(self) -> None:
        self.cases: dict[str, CaseSummary] = {}
        self.case_of_correlation: dict[str, str] = {}
        self.correlations: dict[str, dict[str, Any]] = {}
        self.step = 0

    def case(self, case_id: str) -> CaseSummary:
        if case_id not in self.cases:
            self.cases[case_id] = CaseSummary(case_id)
        return self.cases[case_id]

    def apply(self, record_name: str, value: Mapping[str, Any]) -> None:
        self.step += 1
        kind = _short_name(record_name)
        if kind == "CaseEvent":
            self.case_event(value)
        elif kind == "Correlation":
            cid = value["correlation_id"]
            self.correlations[cid] = {
                "correlation_id": cid,
                "match_kind": value.get("match_kind", "IDENTITY"),
                "score": value["score"],
                "threshold": value["threshold"],
                "incidents": [
                    [value[side]["agency"], value[side]["incident_id"]]
                    for side in ("incident_a", "incident_b")
                ],
                "evidence": [dict(e) for e in value.get("evidence") or ()],
            }
            for holder in {self.case_of_correlation.get(cid)} - {None}:
                self.attach_evidence(self.cases[str(holder)])
        elif kind == "Verdict":
            self.verdict(value)
        elif kind == "CaseConclusion":
            case = self.case(value["case_id"])
            case.conclusions.append(dict(value))
            case.timeline.append(
                {
                    "at": value["agreed_at"],
                    "what": "agreed",
                    "conclusion_id": value["conclusion_id"],
                    "case_version": value["case_version"],
                }
            )
        elif kind == "CaseReport":
            case = self.case(value["case_id"])
            case.reports.append(dict(value))
            case.timeline.append(
                {"at": value["requested_at"], "what": "reported", "agency": value["agency"]}
            )
        elif kind == "IncidentRelease":
            case = self.case(value["case_id"])
            case.releases.append(dict(value))
            case.timeline.append(
                {
                    "at": value["released_at"],
                    "what": "released",
                    "agency": value["agency"],
                    "incident_id": value["incident"]["incident_id"],
                    "audience": list(value.get("audience") or ()),
                }
            )
        elif kind == "Alert" and value.get("alert_kind") == "VERIFICATION_OVERDUE":
            case = self.case(str(value["case_id"]))
            if all(e["identifier"] != value["identifier"] for e in case.escalations):
                case.escalations.append({k: value[k] for k in ("identifier", "sent", "headline")})
                case.timeline.append(
                    {"at": value["sent"], "what": "escalated", "alert": value["identifier"]}
                )
        # anything else on these topics is not about a case's verification: skipped

    def attach_evidence(self, case: CaseSummary) -> None:
        """The case's correlations read so far, in ``correlation_ids`` order."""
        case.evidence = [
            self.correlations[c] for c in case.correlation_ids if c in self.correlations
        ]

    def case_event(self, event: Mapping[str, Any]) -> None:
        case = self.case(event["case_id"])
        kind, sequence = event["event_type"], int(event.get("sequence") or 0)
        if sequence >= case.sequence:
            case.status, case.sequence = event["status"], sequence
            case.agencies = sorted(event.get("agencies") or ())
        case.possible_double_report |= bool(event.get("possible_double_report"))
        for cid in event.get("correlation_ids") or ():
            self.case_of_correlation.setdefault(cid, case.case_id)
            if cid not in case.correlation_ids:
                case.correlation_ids.append(cid)
        if self.correlations:
            self.attach_evidence(case)
        entry: dict[str, Any] = {"at": event["at"], "what": kind, "status": event["status"]}
        refs = {(r["agency"], r["incident_id"]): str(r["event_id"]) for r in event["incidents"]}
        if kind == "MERGED":
            entry["merged_case_ids"] = list(event.get("merged_case_ids") or ())
            self.merge(case, entry["merged_case_ids"], refs)
        elif kind in ("CREATED", "INCIDENT_ADDED"):
            self.link(case, refs)
        if refs:
            entry["incidents"] = [list(r) for r in sorted(refs)]
        if kind == "CONCLUDED" and event.get("conclusion") is not None:
            entry["conclusion"] = event["conclusion"]
        case.timeline.append(entry)

    def link(self, case: CaseSummary, refs: Mapping[tuple[str, str], str]) -> None:
        """Add incidents; ask again as the lifecycle does: the agencies whose incidents
        were added, or everyone when an agency joins."""
        involved = {a for a, _ in case.incidents}
        added = {ref: e for ref, e in refs.items() if ref not in case.incidents}
        case.incidents.update(added)
        now = {a for a, _ in case.incidents}
        self.ask(case, now if not now <= involved else {a for a, _ in added})

    def merge(
        self,
        survivor: CaseSummary,
        absorbed_ids: Iterable[str],
        refs: Mapping[tuple[str, str], str],
    ) -> None:
        absorbed = [
            self.cases[cid] for cid in absorbed_ids if cid in self.cases and cid != survivor.case_id
        ]
        for old in absorbed:
            old.merged_into = survivor.case_id
            if old.case_id not in survivor.absorbed:
                survivor.absorbed.append(old.case_id)
            survivor.releases += [r for r in old.releases if r not in survivor.releases]
            survivor.possible_double_report |= old.possible_double_report
        if not refs and len(absorbed) == 1:
            # the stage's rename: the old case's state carries over, the newcomers are added
            old = absorbed[0]
            newcomers = {r: e for r, e in survivor.incidents.items() if r not in old.incidents}
            survivor.incidents = dict(old.incidents)
            survivor.verdicts = old.verdicts + survivor.verdicts
            survivor.verdict_steps = {**old.verdict_steps, **survivor.verdict_steps}
            survivor.asked = dict(old.asked)
            survivor.conclusions = old.conclusions + survivor.conclusions
            survivor.reports = old.reports + survivor.reports
            self.link(survivor, newcomers)
            return
        for old in absorbed:
            for ref, event_id in old.incidents.items():
                survivor.incidents.setdefault(ref, event_id)
        survivor.incidents.update(refs)
        self.ask(survivor, {a for a, _ in survivor.incidents})

    def ask(self, case: CaseSummary, agencies: Iterable[str]) -> None:
        for agency in agencies:
            case.asked[agency] = self.step

    def verdict(self, verdict: Mapping[str, Any]) -> None:
        target = verdict["target_id"]
        if verdict["target_kind"] != "CASE":
            target = self.case_of_correlation.get(target, target)
        case = self.case(target)
        case.verdicts.append({k: v for k, v in verdict.items() if not k.startswith("target_")})
        case.verdict_steps[verdict["agency"]] = self.step
        case.timeline.append(
            {
                "at": verdict["decided_at"],
                "what": "verdict",
                "agency": verdict["agency"],
                "decision": verdict["decision"],
                "reason": verdict["reason"],
            }
        )


def fold_records(records: Iterable[tuple[str, Mapping[str, Any]]]) -> dict[str, CaseSummary]:
    """Every case the records name, by case id (merged ones too, with ``merged_into``)."""
    folder = CaseFold()
    for record_name, value in records:
        folder.apply(record_name, value)
    return folder.cases


def resolve(cases: Mapping[str, CaseSummary], case_id: str) -> str:
    """The live case ``case_id`` is now: itself, or the case it was merged into."""
    seen: set[str] = set()
    while case_id in cases and cases[case_id].merged_into and case_id not in seen:
        seen.add(case_id)
        case_id = cases[case_id].merged_into or case_id
    return case_id
