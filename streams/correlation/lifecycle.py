"""Joint verification: the case lifecycle as a pure, deterministic, event-sourced machine.

``CaseLifecycle`` folds four kinds of input, one ``apply_*`` method each, into per-case
state and returns what to emit. It reads no clock, draws no random number and imports
nothing of Kafka or Faust: the same inputs in the same order give the same outputs and the
same ``snapshot()``, which ``restore`` turns back into a machine.

States (CaseStatus symbols; OPEN and REJECTED are never set here):

- PENDING_VERIFICATION: waiting for a valid CONFIRM of every involved agency (an agency
  with an incident in the case). A verdict is valid when it was given on or after the
  case version at which the agency was last asked (``asked_at``).
- DISPUTED: some involved agency's valid verdict is REJECT. New verdicts are taken.
- CONFIRMED (agreed): every involved agency's valid verdict is CONFIRM; a CaseConclusion
  naming each verdict and the agreed facts (incidents, correlations, version) is emitted.
- CONCLUDED (reported): a CaseReport of an involved agency was accepted after agreement.

Inputs and transitions:

- ``apply_case_event`` (topic ``cases``): CREATED, INCIDENT_ADDED and MERGED from the case
  stage change the membership, so the version. A link to an agreed or reported case
  reopens it (the conclusion and report go to ``past_conclusions``). The stage's
  STATUS_CHANGED (it names the correlation that marked the case a possible double report)
  records the mark and correlation, no new facts. CONCLUDED, and STATUS_CHANGED naming no
  correlation, are this machine's own outputs read back: ignored.
- ``apply_verdict`` (``verdicts.<agency>``): records the agency's latest verdict, then
  PENDING/DISPUTED -> CONFIRMED | DISPUTED | PENDING_VERIFICATION by the valid verdicts.
  NEED_MORE_INFO is recorded and keeps (or puts) the case pending.
- ``apply_report``: CONFIRMED -> CONCLUDED, with a CaseEvent CONCLUDED.
- ``apply_release``: records that an owner released an incident's details to the case's
  agencies of that moment (the audience); status unchanged.
- ``due_escalations(now_ms)``: VERIFICATION_OVERDUE alerts for waiting cases.

Rejections (``Rejection.reason``; a rejected input never changes state):
wrong-topic (the record's agency is not the agency of the topic it came from),
unknown-case, case-merged (the target was absorbed: the message names the surviving case),
unknown-target (unknown correlation or target kind), correlation-in-case (a verdict on one
correlation of a case with several links: send it about the case), not-involved (the agency
has no incident in the case), case-agreed and case-reported (verdicts are closed until a
new link reopens the case), case-pending, case-disputed, already-reported, stale-conclusion
(the report names a conclusion that is no longer the current one), empty-conclusion,
not-own-incident, incident-not-in-case, already-released. An input whose id
(``case_event_id`` or ``event_id``) the case already applied is a duplicate (at-least-once
delivery): ``Outcome.duplicate``, no output, no change.

Outputs (``Emit``: schema name, key = case id, Avro data): CaseEvent STATUS_CHANGED when the
status moves, or when a stage event wrote a status the machine does not hold (the stage
always writes PENDING_VERIFICATION; a consumer folding ``cases`` must end right), and
CaseEvent CONCLUDED; CaseConclusion; IncidentRelease (the accepted copy, audience filled
in); Alert (VERIFICATION_OVERDUE). Ids are ``stable_id`` hashes of the case and the input
that caused the record; ``at`` is that input's event time; ``sequence`` is the newest
stage sequence of the case, so a status sorts after the membership it judged.

Rules where the issue leaves a choice:

- Ask again only what changed: on INCIDENT_ADDED (or CREATED growing a known case) the
  agencies whose own incidents were added are asked again; the others keep their verdicts,
  because the new incident is another record of an agency already in the case, which that
  agency vouches for. When the link brings a newly involved agency, everyone is asked again:
  a joint conclusion binds the parties, and the parties changed.
- MERGED: two sets of facts verified separately were joined, and nobody verified the
  combination: everyone is asked again, the absorbed case's verdicts do not carry over (its
  state goes to the survivor's history). Its releases carry over with their audience.
  Exception: the stage's rename (CREATED under a new id, then MERGED absorbing the old id
  with no incidents listed) is an incident added, so the old case's state carries over and
  the rule above applies to the newcomer.
- A verdict about a CORRELATION counts for the case holding it when that correlation is the
  case's only link; otherwise it is rejected (correlation-in-case) naming the case.
- Verdicts on an agreed or reported case are rejected: the conclusion stands until a new
  link reopens the case.
- A release reaches the agencies in the case when it is accepted; an agency joining later
  sees the details only after the owner releases again (secrecy first). The details the
  owner attached (``details``) pass through on the accepted copy, which is how they reach
  the audience on the topic; a release naming a newer event of the same incident is
  accepted again (updated details), one naming the same event to the same audience is
  already-released.

Clock: a case starts waiting at the event time of the input that opened (or reopened) it;
a new link to a waiting case does not restart the wait (a trickle of links must not delay
escalation for ever), agreement stops it. ``due_escalations`` compares with the ``now_ms``
its caller passes. The worker should pass the wall clock: an overdue verification is a
real-time duty, and event time stands still when the topics are quiet, which is when a case
is forgotten. A rebuild or a test passes the newest event time so its run is reproducible.
Either way an escalation's id (case id and its number), ``sent`` (its due time) and content
do not depend on ``now_ms``, and the escalations issued are in the state, so a restart from a
snapshot neither repeats nor skips one.

Replay: identical outputs need identical input order. Inputs come from several topics, so
the flow must fix one order for a rebuild to reproduce (for example by forwarding every
input to one single-partition topic before applying it, as ``correlation.links`` does for
the case stage).

Retention: a case that no input reached for ``case_retention_ms`` of the lifecycle's clock is
expired: dropped from the state, with its correlations and merge aliases. The clock is the
wall clock the worker writes into the log (``advance``), so a backfill of old events is
kept as long as a live case. A case still waiting for verification when it expires gets a
last VERIFICATION_OVERDUE alert saying so; a verdict about it is then ``unknown-case``, and
a later link to its incidents opens a new case. Until it expires, a link to a case reported
long ago reopens it. The clock moves in steps of a 64th of the retention (a state change
the log must record), so a case expires up to that much early. A case also waits until its
newest link is ``stage_horizon_ms`` (event time) behind the newest link seen: the case
stage forgets a case by event time, and must do so first.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from xborder.errors import ConfigurationError

from .model import stable_id, to_ms
from .patterns import PatternConfig, alert_id, make_alert

Status = Literal["PENDING_VERIFICATION", "DISPUTED", "CONFIRMED", "CONCLUDED"]
"""The CaseStatus symbols this machine sets."""
InputKind = Literal["Verdict", "CaseReport", "IncidentRelease"]
"""Agency-written inputs, by record name."""
RecordName = Literal["CaseEvent", "CaseConclusion", "IncidentRelease", "Alert"]
"""Schemas of the records the machine emits."""
RejectReason = Literal[
    "wrong-topic",
    "unknown-case",
    "case-merged",
    "unknown-target",
    "correlation-in-case",
    "not-involved",
    "case-agreed",
    "case-reported",
    "case-pending",
    "case-disputed",
    "already-reported",
    "stale-conclusion",
    "empty-conclusion",
    "not-own-incident",
    "incident-not-in-case",
    "already-released",
]
"""Why an input was rejected (a dead-letter reason and counter label)."""

SNAPSHOT_FORMAT = 1
"""``snapshot()["format"]``; bump it when the layout changes."""
_WAITING = ("PENDING_VERIFICATION", "DISPUTED")
_CLOSED = ("CONFIRMED", "CONCLUDED")
_HOUR_MS = 3_600_000
_CLOCK_STEPS = 64
"""The lifecycle's clock advances in steps of ``case_retention_ms / _CLOCK_STEPS``."""


@dataclass(frozen=True)
class LifecycleConfig:
    """Timers and the CAP fields of escalation alerts."""

    verification_timeout_ms: int = 24 * _HOUR_MS
    """How long a case may wait for verification before the first escalation."""
    escalation_interval_ms: int = 12 * _HOUR_MS
    """Time between repeated escalations of a case still waiting."""
    case_retention_ms: int = 30 * 24 * _HOUR_MS
    """How long a case no input reached is kept before it expires (wall clock)."""
    stage_horizon_ms: int = 0
    """How far behind the newest link (event time) the case stage still holds a case: the
    correlation window plus the allowed lateness. A case expires only once its newest link
    is that far behind too, so the stage has forgotten it first and a later link opens a
    new case in both (never adds to a case the lifecycle dropped)."""
    sender: str = "xborder@xborder.local"
    """CAP sender of escalation alerts; no spaces, commas, '<' or '&'."""
    alert_status: Literal["Actual", "Exercise", "System", "Test", "Draft"] = "Actual"
    """CAP status of escalation alerts."""
    restriction: str = "Duty officers of the cooperating agencies only"
    """CAP restriction (the scope is Restricted)."""

    def __post_init__(self) -> None:
        if self.stage_horizon_ms < 0:
            raise ConfigurationError(
                f"lifecycle: stage_horizon_ms must not be negative, got {self.stage_horizon_ms}"
            )
        for name in ("verification_timeout_ms", "escalation_interval_ms", "case_retention_ms"):
            if getattr(self, name) <= 0:
                raise ConfigurationError(
                    f"lifecycle: {name} must be a positive number of milliseconds, "
                    f"got {getattr(self, name)}"
                )


@dataclass(frozen=True)
class Emit:
    """A record to send: ``value`` is Avro data of schema ``record``, keyed by case id."""

    record: RecordName
    key: str
    value: dict[str, Any]


@dataclass(frozen=True)
class Advance:
    """What a clock tick did (:meth:`CaseLifecycle.advance`)."""

    emitted: tuple[Emit, ...]
    """Escalation alerts, and the last alert of each case that expired while waiting."""
    changed: bool
    """The state changed: a replay must apply this tick again."""
    expired: tuple[tuple[str, str], ...]
    """(case id, status) of the cases expired, sorted by id."""


@dataclass(frozen=True)
class Rejection:
    """An input refused with its reason; the caller dead-letters the original bytes with
    ``reason`` as the DeadLetter reason and ``message`` as its error."""

    input_kind: InputKind
    input_id: str
    """event_id of the refused input."""
    agency: str
    """The agency named in the input."""
    source_agency: str
    """The agency of the topic the input came from."""
    case_id: str | None
    """The case it was about, when known."""
    reason: RejectReason
    message: str
    """Readable: what is wrong and what to do."""


@dataclass(frozen=True)
class Outcome:
    """What one input did: records to emit, or why it was refused."""

    emitted: tuple[Emit, ...] = ()
    rejection: Rejection | None = None
    duplicate: bool = False
    """The input was accepted before (a redelivery): nothing to do."""

    @property
    def accepted(self) -> bool:
        """The input was applied (it may still have changed nothing visible)."""
        return self.rejection is None and not self.duplicate


class Reject(Protocol):
    """Refuses the input being applied: ``reject(reason, message, case_id=None)``."""

    def __call__(
        self, reason: RejectReason, message: str, case_id: str | None = None
    ) -> Outcome: ...


def _rejecter(input_kind: InputKind, event_id: str, agency: str, source_agency: str) -> Reject:
    """The ``Reject`` of one input: every refusal names the input and where it came from."""

    def reject(reason: RejectReason, message: str, case_id: str | None = None) -> Outcome:
        return Outcome(
            rejection=Rejection(
                input_kind, event_id, agency, source_agency, case_id, reason, message
            )
        )

    return reject


# -- state --------------------------------------------------------------------------------


@dataclass
class _Verdict:
    event_id: str
    agency: str
    decision: str
    reason: str
    officer_token: str
    officer_key_id: str
    decided_at: int
    version: int
    """Case version when the verdict was accepted: it counts while >= ``asked_at``."""


@dataclass
class _Release:
    event_id: str
    event_ref: str
    """event_id of the incident's event named in the release."""
    released_at: int
    audience: list[str]
    """Agencies the details are released to (sorted)."""


@dataclass
class _Case:
    case_id: str
    status: str
    version: int
    members: dict[str, dict[str, str]]
    """agency -> incident_id -> event_id (the incident event the case stage linked)."""
    correlation_ids: list[str]
    asked_at: dict[str, int]
    """agency -> version from which its verdict counts."""
    last_sequence: int
    waiting_since: int | None
    """Event time the current wait for verification started; None while agreed or reported."""
    verdicts: dict[str, _Verdict] = field(default_factory=dict)
    """Latest accepted verdict per agency."""
    releases: dict[str, dict[str, _Release]] = field(default_factory=dict)
    """agency -> incident_id -> release."""
    conclusion: dict[str, Any] | None = None
    """The current CaseConclusion, while CONFIRMED or CONCLUDED."""
    report: dict[str, Any] | None = None
    """The accepted report, while CONCLUDED."""
    past_conclusions: list[dict[str, Any]] = field(default_factory=list)
    """Conclusions (with their report, if any) of earlier versions and absorbed cases."""
    escalations: int = 0
    """Escalations issued over the case's life (numbers their ids)."""
    period_escalations: int = 0
    """Escalations issued in the current wait (schedules the next one)."""
    possible_double_report: bool = False
    """The case stage marked the case (a SAME_OCCURRENCE link); sticky, as there."""
    input_ids: set[str] = field(default_factory=set)
    """Applied inputs (case_event_id of stage events, event_id of verdicts, reports and
    releases), carried through merges: a redelivery is a no-op."""
    timeline: list[dict[str, Any]] = field(default_factory=list)
    """What happened, in order: links, verdicts, status changes, escalations, ..."""
    touched: int | None = None
    """The lifecycle's clock when an input last reached the case (None: before its first
    tick); the case expires ``case_retention_ms`` after it."""
    newest_link: int = 0
    """Event time of the newest case event of the stage that reached the case."""

    @property
    def agencies(self) -> list[str]:
        return sorted(a for a, incidents in self.members.items() if incidents)

    def note(self, at: int, what: str, **details: Any) -> None:
        self.timeline.append({"at": at, "what": what, **details})


def _case_to_json(case: _Case) -> dict[str, Any]:
    data = dataclasses.asdict(case)
    data["input_ids"] = sorted(case.input_ids)
    return data


def _case_from_json(data: Mapping[str, Any]) -> _Case:
    values = copy.deepcopy(dict(data))  # the machine must not share lists with the caller
    values["verdicts"] = {a: _Verdict(**v) for a, v in values["verdicts"].items()}
    values["releases"] = {
        a: {i: _Release(**r) for i, r in by_incident.items()}
        for a, by_incident in values["releases"].items()
    }
    values["input_ids"] = set(values["input_ids"])
    return _Case(**values)


def _str(value: Any) -> str:
    return "" if value is None else str(value)


def _short(case_id: str) -> str:
    return f"{case_id[:12]}…"


# -- the machine --------------------------------------------------------------------------


class CaseLifecycle:
    """The joint-verification state of every case (see the module docstring)."""

    def __init__(self, config: LifecycleConfig | None = None) -> None:
        self.config = config or LifecycleConfig()
        cfg = self.config
        # the CAP sender fields of the escalation alerts, in the form make_alert takes
        self._cap = PatternConfig(
            sender=cfg.sender, status=cfg.alert_status, restriction=cfg.restriction
        )
        self._cases: dict[str, _Case] = {}
        self._merged_into: dict[str, str] = {}
        self._case_of_correlation: dict[str, str] = {}
        self._clock: int | None = None
        self._newest_link = 0
        self.expired = 0
        """Cases expired by this machine (a counter, not state: a restored machine starts
        at 0)."""

    # -- snapshot -------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The whole state as a JSON-able dict (keys and sets sorted, so equal states give
        equal snapshots)."""
        return {
            "format": SNAPSHOT_FORMAT,
            "cases": {cid: _case_to_json(self._cases[cid]) for cid in sorted(self._cases)},
            "merged_into": dict(sorted(self._merged_into.items())),
            "case_of_correlation": dict(sorted(self._case_of_correlation.items())),
            "clock": self._clock,
            "newest_link": self._newest_link,
        }

    @classmethod
    def restore(
        cls, snapshot: Mapping[str, Any], config: LifecycleConfig | None = None
    ) -> CaseLifecycle:
        """A machine in the state ``snapshot`` describes."""
        if snapshot.get("format") != SNAPSHOT_FORMAT:
            raise ConfigurationError(
                f"lifecycle snapshot format {snapshot.get('format')!r} is not "
                f"{SNAPSHOT_FORMAT}; rebuild the state by replaying the inputs"
            )
        machine = cls(config)
        machine._cases = {cid: _case_from_json(c) for cid, c in snapshot["cases"].items()}
        machine._merged_into = dict(snapshot["merged_into"])
        machine._case_of_correlation = dict(snapshot["case_of_correlation"])
        machine._clock = snapshot.get("clock")
        machine._newest_link = snapshot.get("newest_link", 0)
        return machine

    # -- queries --------------------------------------------------------------------------

    def resolve(self, case_id: str) -> str | None:
        """The live case ``case_id`` is now (itself, or the case it was merged into)."""
        seen = 0
        while case_id in self._merged_into and seen <= len(self._merged_into):
            case_id, seen = self._merged_into[case_id], seen + 1
        return case_id if case_id in self._cases else None

    def status(self, case_id: str) -> str | None:
        """Status of a live case; None if unknown or merged."""
        case = self._cases.get(case_id)
        return None if case is None else case.status

    def awaiting(self, case_id: str) -> list[str]:
        """Involved agencies without a valid CONFIRM on the case (sorted)."""
        case = self._cases.get(case_id)
        return (
            [] if case is None else [a for a in case.agencies if self._valid(case, a) != "CONFIRM"]
        )

    def released_to(self, case_id: str, agency: str) -> list[tuple[str, str]]:
        """Incidents of the case whose details ``agency`` may see: its own and those
        released to it (sorted refs)."""
        case = self._cases.get(case_id)
        if case is None:
            return []
        seen = [(agency, i) for i in case.members.get(agency, {})]
        for owner, by_incident in case.releases.items():
            seen += [(owner, i) for i, r in by_incident.items() if agency in r.audience]
        return sorted(set(seen))

    def case_view(self, case_id: str) -> dict[str, Any] | None:
        """One live case as a JSON-able dict (status, members, verdicts, timeline, ...)."""
        case = self._cases.get(case_id)
        if case is None:
            return None
        view = _case_to_json(case)
        view["agencies"] = case.agencies
        view["awaiting"] = self.awaiting(case_id)
        return view

    def conclusion_id(self, case_id: str) -> str | None:
        """Id of the live case's current agreed conclusion; None when it has none."""
        case = self._cases.get(case_id)
        return None if case is None or case.conclusion is None else case.conclusion["conclusion_id"]

    def case_for_target(self, target_kind: str, target_id: str) -> str | None:
        """The live case a verdict about ``target_id`` counts for (a CASE, or the case
        holding a CORRELATION); None when there is none."""
        if target_kind == "CORRELATION":
            holder = self._case_of_correlation.get(target_id)
            return None if holder is None else self.resolve(holder)
        return self.resolve(target_id)

    @property
    def case_count(self) -> int:
        """How many live cases the machine holds."""
        return len(self._cases)

    def case_ids(self) -> list[str]:
        """Ids of the live cases, sorted."""
        return sorted(self._cases)

    # -- inputs ---------------------------------------------------------------------------

    def apply_record(
        self, record_name: str, value: Mapping[str, Any], source_agency: str | None = None
    ) -> Outcome:
        """Dispatch a decoded record by its (short or full) schema name; agency inputs need
        the agency of the topic they came from."""
        short = record_name.rpartition(".")[2]
        if short == "CaseEvent":
            return self.apply_case_event(value)
        if source_agency is None:
            raise ValueError(f"{short} needs the agency of the topic it was read from")
        if short == "Verdict":
            return self.apply_verdict(value, source_agency)
        if short == "CaseReport":
            return self.apply_report(value, source_agency)
        if short == "IncidentRelease":
            return self.apply_release(value, source_agency)
        raise ValueError(f"the case lifecycle does not consume {record_name} records")

    def apply_case_event(self, event: Mapping[str, Any]) -> Outcome:
        """Fold one CaseEvent of the case stage; returns the STATUS_CHANGED event when the
        case's verification status differs from before or from what the event says."""
        kind = event["event_type"]
        correlations = list(event.get("correlation_ids") or ())
        if kind == "CONCLUDED" or (kind == "STATUS_CHANGED" and not correlations):
            return Outcome()  # our own outputs read back: they name no correlation
        case_id, at = event["case_id"], to_ms(event["at"])
        incidents = [
            (r["agency"], r["incident_id"], _str(r.get("event_id"))) for r in event["incidents"]
        ]
        input_id = event["case_event_id"]
        live = self.resolve(case_id)
        if live is not None and input_id in self._cases[live].input_ids:
            return Outcome(duplicate=True)
        case = self._cases.get(case_id)
        opened = case is None
        if kind == "STATUS_CHANGED":  # the stage marks a case (a link inside it): no new facts
            if case is None:
                return Outcome()
            changed = False
        elif case is None:
            self._merged_into.pop(case_id, None)  # a case id can come back after eviction
            case = self._open(case_id, incidents, at)
            if kind == "MERGED":  # first sight of the survivor: take over what it absorbs
                self._merge(case, event["merged_case_ids"], incidents, at)
            changed = True
        elif kind == "MERGED":
            changed = self._merge(case, event["merged_case_ids"], incidents, at)
        else:
            changed = self._link(case, incidents, at, merge=False)
        case = self._cases[case_id]  # a rename puts the absorbed case's state under case_id
        self._applied(case, input_id)
        for cid in correlations:
            self._case_of_correlation.setdefault(cid, case_id)
            if cid not in case.correlation_ids:
                case.correlation_ids.append(cid)
        case.last_sequence = max(case.last_sequence, int(event.get("sequence") or 0))
        case.newest_link = max(case.newest_link, at)
        self._newest_link = max(self._newest_link, at)
        case.possible_double_report |= bool(event.get("possible_double_report"))
        if not changed:  # the stage still wrote a status: correct it when it is not ours
            told = event.get("status")
            if told is not None and told != case.status:
                return Outcome((self._status_event(case, at, input_id),))
            return Outcome()
        before = None if opened else case.status
        return Outcome(self._settle(case, before, at, input_id, event.get("status")))

    def apply_verdict(self, verdict: Mapping[str, Any], source_agency: str) -> Outcome:
        """Take an agency's verdict read from ``verdicts.<source_agency>``; returns the status
        change and, when it completes agreement, the CaseConclusion."""
        event_id, agency = _str(verdict["event_id"]), verdict["agency"]
        reject = _rejecter("Verdict", event_id, agency, source_agency)
        if agency != source_agency:
            return reject("wrong-topic", self._wrong_topic("verdict", agency, source_agency))
        kind, target = verdict["target_kind"], verdict["target_id"]
        if kind == "CASE":
            found = self._find(target)
            if isinstance(found, tuple):
                return reject(*found, case_id=target)
            case = found
        elif kind == "CORRELATION":
            holder = self._case_of_correlation.get(target)
            live = None if holder is None else self.resolve(holder)
            if live is None:
                return reject(
                    "unknown-target",
                    f"verdict {event_id}: correlation {target} "
                    "is in no known case; send the verdict about its case",
                )
            case = self._cases[live]
            if case.correlation_ids != [target]:
                return reject(
                    "correlation-in-case",
                    f"verdict {event_id}: correlation {_short(target)} is one of "
                    f"{len(case.correlation_ids)} links of case {live}; a verdict is about "
                    f"the whole case: send target_kind CASE with target_id {live}",
                    live,
                )
        else:
            return reject(
                "unknown-target",
                f"verdict {event_id}: target kind {kind!r} is not CASE or CORRELATION",
            )
        refused = self._admit(case, event_id, agency, reject)
        if refused is not None:
            return refused
        if case.status == "CONFIRMED":
            return reject(
                "case-agreed",
                f"case {case.case_id} is agreed at version "
                f"{case.version}; verdicts are closed until a new link reopens it",
                case.case_id,
            )
        if case.status == "CONCLUDED":
            return reject(
                "case-reported",
                f"case {case.case_id} was reported to superiors; "
                "verdicts are closed until a new link reopens it",
                case.case_id,
            )
        decided_at = to_ms(verdict["decided_at"])
        record = _Verdict(
            event_id,
            agency,
            verdict["decision"],
            verdict.get("reason") or "",
            verdict["officer_token"],
            verdict["officer_key_id"],
            decided_at,
            case.version,
        )
        self._applied(case, event_id)
        case.verdicts[agency] = record
        case.note(
            decided_at,
            "verdict",
            agency=agency,
            decision=record.decision,
            event_id=event_id,
            version=case.version,
            reason=record.reason,
            officer_token=record.officer_token,
        )
        return Outcome(self._settle(case, case.status, decided_at, event_id))

    def apply_report(self, report: Mapping[str, Any], source_agency: str) -> Outcome:
        """Take a report-to-superiors request; accepted only for an agreed case, it
        concludes the case (CaseEvent CONCLUDED with the conclusion text)."""
        event_id, agency = _str(report["event_id"]), report["agency"]
        reject = _rejecter("CaseReport", event_id, agency, source_agency)
        admitted = self._case_input("report", report, source_agency, reject)
        if isinstance(admitted, Outcome):
            return admitted
        case = admitted
        if case.status == "CONCLUDED":
            assert case.report is not None
            return reject(
                "already-reported",
                f"case {case.case_id} was already reported by "
                f"{case.report['agency']} (report {case.report['event_id']})",
                case.case_id,
            )
        if case.status != "CONFIRMED":
            waiting = ", ".join(self.awaiting(case.case_id)) or "nobody"
            if case.status == "DISPUTED":
                rejecting = ", ".join(a for a in case.agencies if self._valid(case, a) == "REJECT")
                return reject(
                    "case-disputed",
                    f"case {case.case_id} is disputed (rejected by "
                    f"{rejecting}); a report needs every agency's confirmation",
                    case.case_id,
                )
            return reject(
                "case-pending",
                f"case {case.case_id} is not agreed yet (waiting for "
                f"{waiting}); report after every agency confirmed",
                case.case_id,
            )
        assert case.conclusion is not None
        pinned = report.get("conclusion_id")
        if pinned is not None and pinned != case.conclusion["conclusion_id"]:
            return reject(
                "stale-conclusion",
                f"report names conclusion {_short(pinned)} but "
                f"case {case.case_id} is agreed as conclusion "
                f"{case.conclusion['conclusion_id']}; review it and report again",
                case.case_id,
            )
        text = str(report.get("conclusion") or "").strip()
        if not text:
            return reject(
                "empty-conclusion",
                f"report {event_id} has no conclusion text; write the agreed conclusion to report",
                case.case_id,
            )
        at = to_ms(report["requested_at"])
        self._applied(case, event_id)
        case.report = {
            "event_id": event_id,
            "agency": agency,
            "requested_at": at,
            "conclusion": text,
            "officer_token": report["officer_token"],
            "officer_key_id": report["officer_key_id"],
        }
        case.status = "CONCLUDED"
        case.note(at, "reported", agency=agency, event_id=event_id)
        event = self._case_event(case, "CONCLUDED", at, event_id, conclusion=text)
        return Outcome((Emit("CaseEvent", case.case_id, event),))

    def apply_release(self, release: Mapping[str, Any], source_agency: str) -> Outcome:
        """Take an owner's release of its incident's details to a case; returns the accepted
        IncidentRelease with its audience (the agencies that may now see the details)."""
        event_id, agency = _str(release["event_id"]), release["agency"]
        reject = _rejecter("IncidentRelease", event_id, agency, source_agency)
        admitted = self._case_input("release", release, source_agency, reject)
        if isinstance(admitted, Outcome):
            return admitted
        case = admitted
        ref = release["incident"]
        owner, incident_id = ref["agency"], ref["incident_id"]
        if owner != agency:
            return reject(
                "not-own-incident",
                f"release {event_id}: {agency} may release only "
                f"its own incidents, not {owner}'s {incident_id}",
                case.case_id,
            )
        if incident_id not in case.members.get(agency, {}):
            return reject(
                "incident-not-in-case",
                f"release {event_id}: {agency} incident "
                f"{incident_id} is not in case {case.case_id}",
                case.case_id,
            )
        previous = case.releases.get(agency, {}).get(incident_id)
        audience = sorted(set(case.agencies) | set(previous.audience if previous else ()))
        incident_event_id = _str(ref.get("event_id"))
        if (
            previous is not None
            and previous.audience == audience
            and previous.event_ref == incident_event_id
        ):
            return reject(
                "already-released",
                f"{agency} incident {incident_id} (event {incident_event_id}) is already "
                f"released to {', '.join(audience)} in case {case.case_id}",
                case.case_id,
            )
        at = to_ms(release["released_at"])
        self._applied(case, event_id)
        case.releases.setdefault(agency, {})[incident_id] = _Release(
            event_id, incident_event_id, at, audience
        )
        case.note(at, "released", agency=agency, incident_id=incident_id, audience=audience)
        value = {
            "event_id": event_id,
            "agency": agency,
            "case_id": case.case_id,
            "incident": {
                "agency": owner,
                "incident_id": incident_id,
                "event_id": incident_event_id,
            },
            "released_at": at,
            "audience": audience,
            "officer_token": release.get("officer_token") or "",
            "officer_key_id": release.get("officer_key_id") or "",
            "details": release.get("details"),
        }
        return Outcome((Emit("IncidentRelease", case.case_id, value),))

    def due_escalations(self, now_ms: int) -> list[Emit]:
        """VERIFICATION_OVERDUE alerts due at ``now_ms`` and not yet issued: the n-th of a
        wait is due ``verification_timeout_ms + (n - 1) * escalation_interval_ms`` after the
        wait started. Records them, so each is issued once. When several fell due since the
        last tick (the worker was down, or the case is old: a backfill, a replayed
        history), only the newest is issued: one alert per case says it is overdue, not
        one per missed interval."""
        cfg, out = self.config, []
        for case_id in sorted(self._cases):
            case = self._cases[case_id]
            if case.waiting_since is None or case.status not in _WAITING:
                continue
            first_due = case.waiting_since + cfg.verification_timeout_ms
            if first_due > now_ms:
                continue
            # escalations due by now in this wait: 1 at first_due, one more per interval
            due_count = 1 + (now_ms - first_due) // max(cfg.escalation_interval_ms, 1)
            if due_count <= case.period_escalations:
                continue
            case.period_escalations = due_count
            case.escalations += 1
            due = first_due + (due_count - 1) * cfg.escalation_interval_ms
            alert = self._escalation(case, due)
            case.note(due, "escalated", number=case.escalations, alert_id=alert["identifier"])
            out.append(Emit("Alert", case_id, alert))
        return out

    def advance(self, now_ms: int) -> Advance:
        """The wall clock reached ``now_ms`` (a tick of the log): raise the escalations
        due, move the lifecycle's clock when a step has passed, and expire the cases no
        input reached for the retention. ``changed`` says whether the state changed, i.e.
        whether a replay must apply this tick again."""
        emitted = self.due_escalations(now_ms)
        step = max(self.config.case_retention_ms // _CLOCK_STEPS, 1)
        if self._clock is not None and now_ms - self._clock < step:
            return Advance(tuple(emitted), bool(emitted), ())
        self._clock = now_ms
        cutoff = now_ms - self.config.case_retention_ms
        horizon = self.config.stage_horizon_ms
        forgotten = self._newest_link - horizon  # older links: the case stage forgot them
        expired: list[tuple[str, str]] = []
        for case_id in sorted(self._cases):
            case = self._cases[case_id]
            if case.touched is None:  # reached before the clock's first tick
                case.touched = now_ms
            elif case.touched < cutoff and (horizon == 0 or case.newest_link < forgotten):
                if case.status in _WAITING and case.waiting_since is not None:
                    emitted.append(Emit("Alert", case_id, self._expiry(case, now_ms)))
                expired.append((case_id, case.status))
        if expired:
            self._expire({case_id for case_id, _ in expired})
        return Advance(tuple(emitted), True, tuple(expired))

    def _expire(self, case_ids: set[str]) -> None:
        for case_id in case_ids:
            case = self._cases.pop(case_id)
            for cid in case.correlation_ids:  # carried through merges: all resolve here
                self._case_of_correlation.pop(cid, None)
        self._merged_into = {
            old: new for old, new in self._merged_into.items() if self.resolve(old) is not None
        }
        self.expired += len(case_ids)

    def _applied(self, case: _Case, input_id: str) -> None:
        """Record an accepted input: a redelivery of it is a duplicate, and the case's
        retention starts again."""
        case.input_ids.add(input_id)
        case.touched = self._clock

    # -- transitions ----------------------------------------------------------------------

    def _open(self, case_id: str, incidents: Iterable[tuple[str, str, str]], at: int) -> _Case:
        members: dict[str, dict[str, str]] = {}
        for agency, incident_id, event_id in incidents:
            members.setdefault(agency, {}).setdefault(incident_id, event_id)
        case = _Case(
            case_id, "PENDING_VERIFICATION", 1, members, [], {a: 1 for a in members}, 0, at
        )
        case.note(at, "opened", incidents=sorted([a, i] for a in members for i in members[a]))
        self._cases[case_id] = case
        return case

    def _link(
        self, case: _Case, incidents: Iterable[tuple[str, str, str]], at: int, merge: bool
    ) -> bool:
        """Add incidents to a case; True when its membership changed. Asks again the
        agencies the rule names (all of them for a merge or a newly involved agency)."""
        before = set(case.agencies)
        added: dict[str, list[str]] = {}
        for agency, incident_id, event_id in incidents:
            own = case.members.setdefault(agency, {})
            if incident_id not in own:
                own[incident_id] = event_id
                added.setdefault(agency, []).append(incident_id)
        if not added and not merge:
            return False
        case.version += 1
        ask = case.agencies if merge or not set(case.agencies) <= before else sorted(added)
        for agency in ask:
            case.asked_at[agency] = case.version
        case.note(
            at,
            "merged" if merge else "linked",
            version=case.version,
            asked=ask,
            incidents=sorted([a, i] for a in added for i in added[a]),
        )
        if case.status in _CLOSED:
            self._reopen(case, at)
        return True

    def _reopen(self, case: _Case, at: int) -> None:
        if case.conclusion is not None:
            case.past_conclusions.append({"conclusion": case.conclusion, "report": case.report})
        case.conclusion, case.report = None, None
        case.waiting_since, case.period_escalations = at, 0
        case.note(at, "reopened", version=case.version)

    def _merge(
        self,
        survivor: _Case,
        absorbed_ids: Iterable[str],
        incidents: list[tuple[str, str, str]],
        at: int,
    ) -> bool:
        absorbed = [
            self._cases[cid]
            for cid in absorbed_ids
            if cid in self._cases and cid != survivor.case_id
        ]
        if not absorbed:
            return self._link(survivor, incidents, at, merge=False)  # a redelivery, or nothing
        if not incidents and len(absorbed) == 1:
            return self._rename(absorbed[0], survivor, at)
        waits = [
            (p.waiting_since, -p.period_escalations)
            for p in (survivor, *absorbed)
            if p.waiting_since is not None
        ]
        for old in absorbed:
            del self._cases[old.case_id]
            self._merged_into[old.case_id] = survivor.case_id
            self._carry(old, survivor)
            survivor.note(
                at,
                "absorbed",
                case_id=old.case_id,
                status=old.status,
                version=old.version,
                verdicts={a: v.decision for a, v in sorted(old.verdicts.items())},
            )
            incidents = incidents + [
                (a, i, e) for a, own in old.members.items() for i, e in own.items()
            ]
        self._link(survivor, incidents, at, merge=True)  # reopens a closed survivor
        if waits:  # nobody escapes escalation by being merged: the earliest wait goes on
            since, minus_count = min(waits)
            survivor.waiting_since, survivor.period_escalations = since, -minus_count
        return True

    def _carry(self, old: _Case, into: _Case) -> None:
        """What survives a merge: releases (with their audience), accepted input ids,
        earlier conclusions, correlations, escalation numbering."""
        for agency, by_incident in old.releases.items():
            for incident_id, release in by_incident.items():
                into.releases.setdefault(agency, {}).setdefault(incident_id, release)
        into.input_ids |= old.input_ids
        into.past_conclusions += old.past_conclusions
        if old.conclusion is not None:
            into.past_conclusions.append({"conclusion": old.conclusion, "report": old.report})
        for cid in old.correlation_ids:
            if cid not in into.correlation_ids:
                into.correlation_ids.append(cid)
        into.escalations += old.escalations
        into.newest_link = max(into.newest_link, old.newest_link)
        into.possible_double_report |= old.possible_double_report

    def _rename(self, old: _Case, new: _Case, at: int) -> bool:
        """The stage renamed ``old`` to ``new`` (a smaller incident joined): ``new`` takes
        over ``old``'s state, and the newcomer is an incident added."""
        del self._cases[old.case_id]
        self._merged_into[old.case_id] = new.case_id
        for cid in new.correlation_ids:
            if cid not in old.correlation_ids:
                old.correlation_ids.append(cid)
        newcomers = [
            (a, i, e)
            for a, own in new.members.items()
            for i, e in own.items()
            if i not in old.members.get(a, {})
        ]
        old.input_ids |= new.input_ids
        old.possible_double_report |= new.possible_double_report
        old.note(at, "renamed", from_case_id=old.case_id, to_case_id=new.case_id)
        old.case_id = new.case_id
        old.last_sequence = max(old.last_sequence, new.last_sequence)
        old.newest_link = max(old.newest_link, new.newest_link)
        self._cases[new.case_id] = old
        self._link(old, newcomers, at, merge=False)
        return True

    # -- judgement and records ------------------------------------------------------------

    def _valid(self, case: _Case, agency: str) -> str | None:
        """The agency's decision that counts now, or None if it must (still) decide."""
        verdict = case.verdicts.get(agency)
        if verdict is None or verdict.version < case.asked_at.get(agency, case.version):
            return None
        return verdict.decision

    def _judge(self, case: _Case) -> Status:
        """The status the case's valid verdicts give (CONCLUDED stays until reopened)."""
        if case.report is not None:
            return "CONCLUDED"
        decisions = [self._valid(case, a) for a in case.agencies]
        if "REJECT" in decisions:
            return "DISPUTED"
        if decisions and all(d == "CONFIRM" for d in decisions):
            return "CONFIRMED"
        return "PENDING_VERIFICATION"

    def _settle(
        self, case: _Case, before: str | None, at: int, input_id: str, told: str | None = None
    ) -> tuple[Emit, ...]:
        """Re-judge the case after an input; STATUS_CHANGED when the status moved (or
        differs from ``told``, the status the case stage wrote), and on agreement the
        CaseConclusion, the timer stopped."""
        case.status = self._judge(case)
        moved = before is not None and case.status != before
        stale = told is not None and case.status != told  # a folding consumer must follow
        if not (moved or stale):
            return ()
        emitted = [self._status_event(case, at, input_id)]
        if case.status == "CONFIRMED" and case.conclusion is None:
            case.conclusion = self._conclusion(case, at)
            case.waiting_since, case.period_escalations = None, 0
            case.note(at, "agreed", conclusion_id=case.conclusion["conclusion_id"])
            emitted.append(Emit("CaseConclusion", case.case_id, copy.deepcopy(case.conclusion)))
        return tuple(emitted)

    def _case_input(
        self, what: str, record: Mapping[str, Any], source_agency: str, reject: Reject
    ) -> _Case | Outcome:
        """The case a report or release is about, or the outcome that ends it: read from
        another agency's topic, about an unknown or merged case, a duplicate, or from an
        agency not in the case."""
        agency = record["agency"]
        if agency != source_agency:
            return reject("wrong-topic", self._wrong_topic(what, agency, source_agency))
        found = self._find(record["case_id"])
        if isinstance(found, tuple):
            return reject(*found, case_id=record["case_id"])
        return self._admit(found, _str(record["event_id"]), agency, reject) or found

    def _admit(self, case: _Case, event_id: str, agency: str, reject: Reject) -> Outcome | None:
        """None when an agency's input may act on ``case``; else its outcome: a redelivery
        (duplicate), or a rejection because the agency has no incident in the case."""
        if event_id in case.input_ids:
            return Outcome(duplicate=True)
        if agency not in case.agencies:
            return reject("not-involved", self._not_involved(case, agency), case.case_id)
        return None

    def _find(self, case_id: str) -> _Case | tuple[RejectReason, str]:
        case = self._cases.get(case_id)
        if case is not None:
            return case
        live = self.resolve(case_id)
        if live is not None:
            return (
                "case-merged",
                f"case {case_id} was merged into case {live}; send it about {live}",
            )
        return (
            "unknown-case",
            f"case {case_id} is unknown (never opened, expired after "
            f"{self.config.case_retention_ms / _HOUR_MS:g} h without news, or not yet seen "
            "by the lifecycle stage); check the case id",
        )

    @staticmethod
    def _wrong_topic(what: str, agency: str, source_agency: str) -> str:
        return (
            f"a {what} of agency {agency!r} was read from the topic of {source_agency!r}; "
            f"an agency writes only its own topic"
        )

    @staticmethod
    def _not_involved(case: _Case, agency: str) -> str:
        return (
            f"agency {agency!r} has no incident in case {case.case_id} (agencies: "
            f"{', '.join(case.agencies)}); only involved agencies act on a case"
        )

    def _case_event(
        self, case: _Case, kind: str, at: int, input_id: str, conclusion: str | None = None
    ) -> dict[str, Any]:
        return {
            "case_event_id": stable_id("case-event", case.case_id, kind, case.status, input_id),
            "case_id": case.case_id,
            "event_type": kind,
            "incidents": [],
            "correlation_ids": [],
            "merged_case_ids": [],
            "status": case.status,
            "agencies": case.agencies,
            "conclusion": conclusion,
            "at": at,
            "sequence": case.last_sequence,
            "possible_double_report": case.possible_double_report,
        }

    def _status_event(self, case: _Case, at: int, input_id: str) -> Emit:
        case.note(at, "status", status=case.status, version=case.version)
        return Emit(
            "CaseEvent", case.case_id, self._case_event(case, "STATUS_CHANGED", at, input_id)
        )

    def _conclusion(self, case: _Case, agreed_at: int) -> dict[str, Any]:
        verdicts = [case.verdicts[a] for a in case.agencies]
        return {
            "conclusion_id": stable_id(
                "case-conclusion", case.case_id, str(case.version), *(v.event_id for v in verdicts)
            ),
            "case_id": case.case_id,
            "case_version": case.version,
            "agreed_at": agreed_at,
            "agencies": case.agencies,
            "incidents": [
                {"agency": a, "incident_id": i, "event_id": case.members[a][i]}
                for a in case.agencies
                for i in sorted(case.members[a])
            ],
            "correlation_ids": list(case.correlation_ids),
            "possible_double_report": case.possible_double_report,
            "verdicts": [
                {
                    "event_id": v.event_id,
                    "agency": v.agency,
                    "officer_token": v.officer_token,
                    "officer_key_id": v.officer_key_id,
                    "decided_at": v.decided_at,
                    "reason": v.reason,
                }
                for v in verdicts
            ],
        }

    def _expiry(self, case: _Case, now_ms: int) -> dict[str, Any]:
        """The last VERIFICATION_OVERDUE alert of a case that expires still waiting."""
        assert case.touched is not None
        days = (now_ms - case.touched) / (24 * _HOUR_MS)
        who, state = self._waiting_for(case)
        return self._overdue_alert(
            case,
            alert_id("VERIFICATION_OVERDUE", case.case_id, "expired", str(case.version)),
            now_ms,
            event="Joint verification expired",
            urgency="Expected",
            headline=f"Case {_short(case.case_id)} expired {state} after {days:.1f} days "
            f"without news; awaiting {who}",
            description=(
                f"Cross-border case {case.case_id} (version {case.version}, agencies "
                f"{', '.join(case.agencies)}) received no link, verdict, report or release "
                f"for {days:.1f} days and was dropped from joint verification while "
                f"{state} ({case.escalations} escalations). Verdicts about it are now "
                "refused as unknown-case; a new link to its incidents opens a new case."
            ),
            instruction="Nothing more will be escalated for this case. If it still needs "
            "a joint verification, link its incidents again or record it outside the system.",
        )

    def _escalation(self, case: _Case, due: int) -> dict[str, Any]:
        assert case.waiting_since is not None
        hours = f"{(due - case.waiting_since) / _HOUR_MS:.1f} h"
        who, state = self._waiting_for(case)
        return self._overdue_alert(
            case,
            alert_id("VERIFICATION_OVERDUE", case.case_id, str(case.escalations)),
            due,
            event="Joint verification overdue",
            urgency="Immediate",
            headline=f"Case {_short(case.case_id)} {state} for {hours}; awaiting {who}",
            description=(
                f"Cross-border case {case.case_id} (version {case.version}, agencies "
                f"{', '.join(case.agencies)}) has been {state} since its wait started "
                f"{hours} ago; escalation {case.escalations}. Awaiting a confirmation from "
                f"{who}."
            ),
            instruction="Record a verdict on the case (confirm, reject or need more "
            "information) or resolve the dispute with the other agency.",
        )

    def _waiting_for(self, case: _Case) -> tuple[str, str]:
        """(who the case awaits, in words; what it is doing: waiting or disputed)."""
        awaiting = self.awaiting(case.case_id)
        who = ", ".join(awaiting) if awaiting else "nobody"
        state = "disputed" if case.status == "DISPUTED" else "waiting for verification"
        return who, state

    def _overdue_alert(
        self,
        case: _Case,
        identifier: str,
        sent_ms: int,
        *,
        event: str,
        urgency: str,
        headline: str,
        description: str,
        instruction: str,
    ) -> dict[str, Any]:
        """A VERIFICATION_OVERDUE alert about ``case`` to its agencies."""
        return make_alert(
            "VERIFICATION_OVERDUE",
            identifier,
            sent_ms,
            self._cap,
            event=event,
            urgency=urgency,
            severity="Moderate",
            certainty="Observed",
            headline=headline,
            description=description,
            instruction=instruction,
            area_desc=f"Incidents of cross-border case {_short(case.case_id)}",
            circle=None,
            targets=case.agencies,
            expires_ms=None,
            case_id=case.case_id,
            correlation_ids=case.correlation_ids,
        )
