"""CaseLifecycle: verdicts to an agreed conclusion, disputes, reports, releases, re-asking
on new links and merges, escalation timers, rejections that change nothing, and replay.

Case events come from the real ``CaseTracker`` (the case stage's fold), so the lifecycle is
tested on what the stage emits, renames included. Every emitted record is encoded with the
real codec, and the three new schemas are checked like the others.
"""

from __future__ import annotations

import dataclasses
import json
import random
import uuid
from datetime import UTC, datetime
from itertools import count
from pathlib import Path
from typing import Any

import pytest
from fastavro.validation import validate

from streams.correlation.cases import CaseTracker, case_id_of
from streams.correlation.lifecycle import (
    CaseLifecycle,
    Emit,
    LifecycleConfig,
    Outcome,
)
from streams.correlation.model import Ref, stable_id
from tests.unit.test_schemas import _undocumented
from xborder.codec import AvroCodec
from xborder.compat import load_examples
from xborder.errors import ConfigurationError
from xborder.jsonavro import from_json, to_json
from xborder.schemas import SchemaStore

SCHEMAS_DIR = Path(__file__).resolve().parents[2] / "schemas"
NEW_SCHEMAS = ("CaseConclusion", "CaseReport", "IncidentRelease")
T0 = 1_773_900_000_000  # 2026-03-19
MIN = 60_000
HOUR = 3_600_000
TOKEN = "d4" * 32

A1, A2, A3 = ("angiang", "A1"), ("angiang", "A2"), ("angiang", "A3")
C1, C2, C3 = ("cantho", "C1"), ("cantho", "C2"), ("cantho", "C3")
V1 = ("vinhlong", "V1")

_ids = count(1)


# -- input factories ----------------------------------------------------------------------


def uid() -> str:
    return str(uuid.UUID(int=next(_ids)))


def corr(x: Ref, y: Ref) -> str:
    return stable_id("correlation", *sorted((x, y))[0], *sorted((x, y))[1])


class Stage:
    """The case stage: a real CaseTracker, its events numbered like the stage's sequence."""

    def __init__(self) -> None:
        self.tracker = CaseTracker()
        self.seq = count(1)

    def link(self, x: Ref, y: Ref, at: int = T0) -> list[dict[str, Any]]:
        ids = (str(uuid.uuid5(uuid.NAMESPACE_OID, x[1])), str(uuid.uuid5(uuid.NAMESPACE_OID, y[1])))
        events = self.tracker.link(x, y, corr(x, y), at, ids)
        return [dict(e, sequence=next(self.seq) * 1_000_000) for e in events]


def verdict(
    agency: str,
    case_id: str,
    decision: str = "CONFIRM",
    at: int = T0 + HOUR,
    kind: str = "CASE",
    event_id: str | None = None,
) -> dict[str, Any]:
    return {
        "event_id": event_id or uid(),
        "agency": agency,
        "target_kind": kind,
        "target_id": case_id,
        "decision": decision,
        "reason": f"{agency} says {decision.lower()}",
        "officer_token": TOKEN,
        "officer_key_id": "key-1",
        "decided_at": at,
    }


def report(agency: str, case_id: str, at: int = T0 + 2 * HOUR, **extra: Any) -> dict[str, Any]:
    return {
        "event_id": uid(),
        "agency": agency,
        "case_id": case_id,
        "conclusion_id": None,
        "conclusion": "One brawl on the boundary road, reported by both agencies.",
        "officer_token": TOKEN,
        "officer_key_id": "key-1",
        "requested_at": at,
        **extra,
    }


def release(agency: str, case_id: str, ref: Ref, at: int = T0 + HOUR) -> dict[str, Any]:
    return {
        "event_id": uid(),
        "agency": agency,
        "case_id": case_id,
        "incident": {
            "agency": ref[0],
            "incident_id": ref[1],
            "event_id": str(uuid.uuid5(uuid.NAMESPACE_OID, ref[1])),
        },
        "released_at": at,
        "audience": [],
    }


def feed(machine: CaseLifecycle, events: list[dict[str, Any]]) -> list[Emit]:
    out: list[Emit] = []
    for event in events:
        out += machine.apply_case_event(event).emitted
    return out


def statuses(emitted: tuple[Emit, ...] | list[Emit]) -> list[str]:
    return [e.value["status"] for e in emitted if e.record == "CaseEvent"]


def opened(
    *pairs: tuple[Ref, Ref], config: LifecycleConfig | None = None
) -> tuple[CaseLifecycle, Stage]:
    machine, stage = CaseLifecycle(config), Stage()
    for x, y in pairs:
        feed(machine, stage.link(x, y))
    return machine, stage


def agree(machine: CaseLifecycle, case_id: str, at: int = T0 + HOUR) -> Outcome:
    """Every awaited agency confirms; the last outcome."""
    outcome = Outcome()
    for agency in machine.awaiting(case_id):
        outcome = machine.apply_verdict(verdict(agency, case_id, at=at), agency)
        assert outcome.accepted
    return outcome


CASE = case_id_of(A1)  # the case of A1-C1 (A1 is its smallest member)


# -- schemas ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NEW_SCHEMAS)
def test_new_schema_is_documented_and_named_after_its_file(name: str) -> None:
    raw = json.loads((SCHEMAS_DIR / f"{name}.avsc").read_text(encoding="utf-8"))
    assert raw["name"] == name and raw["namespace"] == "xborder.v1"
    assert _undocumented(raw, name) == []


@pytest.mark.parametrize("name", NEW_SCHEMAS)
def test_new_example_validates_and_round_trips(
    store: SchemaStore, codec: AvroCodec, name: str
) -> None:
    example = load_examples(SCHEMAS_DIR)[name]
    schema = store.current(name).parsed
    datum = from_json(schema, example)
    assert validate(datum, schema, raise_errors=True)
    decoded = codec.decode(codec.encode(name, datum))
    assert decoded.record_name == f"xborder.v1.{name}"
    assert to_json(decoded.value) == example


def test_every_emitted_record_fits_its_schema(codec: AvroCodec) -> None:
    machine, stage = opened((A1, C1))
    emitted = list(machine.apply_release(release("angiang", CASE, A1), "angiang").emitted)
    emitted += machine.due_escalations(T0 + 30 * HOUR)
    emitted += agree(machine, CASE).emitted
    emitted += machine.apply_report(report("cantho", CASE), "cantho").emitted
    emitted += feed(machine, stage.link(C1, A2, T0 + 40 * HOUR))  # reopens
    kinds = {e.record for e in emitted}
    assert kinds == {"CaseEvent", "CaseConclusion", "IncidentRelease", "Alert"}
    for emit in emitted:
        decoded = codec.decode(codec.encode(emit.record, emit.value), logical_types=False)
        assert decoded.record_name == f"xborder.v1.{emit.record}"
        assert emit.key == emit.value["case_id"]


def test_reported_request_and_release_examples_are_accepted_by_the_machine(
    store: SchemaStore,
) -> None:
    # decoded records carry datetimes and UUID strings: the machine takes them as they come
    examples = load_examples(SCHEMAS_DIR)
    machine = CaseLifecycle()
    created = from_json(store.current("CaseEvent").parsed, examples["CaseEvent"])
    assert machine.apply_case_event(created).accepted
    case_id = created["case_id"]
    rel = from_json(store.current("IncidentRelease").parsed, examples["IncidentRelease"])
    (emit,) = machine.apply_release(rel, "angiang").emitted
    released = datetime(2026, 3, 19, 11, 10, tzinfo=UTC)
    assert emit.value["released_at"] == int(released.timestamp() * 1000)
    assert emit.value["audience"] == ["angiang", "cantho"]
    for agency in ("angiang", "cantho"):
        v = dict(verdict(agency, case_id), decided_at=datetime(2026, 3, 19, 11, tzinfo=UTC))
        machine.apply_verdict(v, agency)
    assert machine.status(case_id) == "CONFIRMED"
    rep = from_json(store.current("CaseReport").parsed, examples["CaseReport"])
    outcome = machine.apply_report(dict(rep, conclusion_id=None), "cantho")
    assert outcome.accepted and machine.status(case_id) == "CONCLUDED"


# -- the main path ------------------------------------------------------------------------


def test_confirm_confirm_agrees_then_report_concludes() -> None:
    machine, _ = opened((A1, C1))
    assert machine.status(CASE) == "PENDING_VERIFICATION"
    assert machine.awaiting(CASE) == ["angiang", "cantho"]

    first = machine.apply_verdict(verdict("angiang", CASE, at=T0 + HOUR), "angiang")
    assert first.accepted and first.emitted == ()
    assert machine.awaiting(CASE) == ["cantho"]
    v2 = verdict("cantho", CASE, at=T0 + 2 * HOUR)
    second = machine.apply_verdict(v2, "cantho")

    changed, conclusion = second.emitted
    assert changed.record == "CaseEvent" and changed.value["event_type"] == "STATUS_CHANGED"
    assert changed.value["status"] == "CONFIRMED" and changed.value["at"] == T0 + 2 * HOUR
    assert changed.value["agencies"] == ["angiang", "cantho"]
    assert conclusion.record == "CaseConclusion"
    c = conclusion.value
    assert c["case_id"] == CASE and c["case_version"] == 1 and c["agreed_at"] == T0 + 2 * HOUR
    assert [(i["agency"], i["incident_id"]) for i in c["incidents"]] == [A1, C1]
    assert c["correlation_ids"] == [corr(A1, C1)]
    assert [(v["agency"], v["officer_token"]) for v in c["verdicts"]] == [
        ("angiang", TOKEN),
        ("cantho", TOKEN),
    ]
    assert c["verdicts"][1]["event_id"] == v2["event_id"]
    assert c["verdicts"][1]["decided_at"] == T0 + 2 * HOUR

    done = machine.apply_report(
        report("angiang", CASE, conclusion_id=c["conclusion_id"]), "angiang"
    )
    (concluded,) = done.emitted
    assert concluded.value["event_type"] == "CONCLUDED"
    assert concluded.value["status"] == "CONCLUDED"
    assert concluded.value["conclusion"].startswith("One brawl")
    assert machine.status(CASE) == "CONCLUDED"


def test_confirm_reject_disputes_and_reverification_agrees() -> None:
    machine, _ = opened((A1, C1))
    machine.apply_verdict(verdict("angiang", CASE), "angiang")
    disputed = machine.apply_verdict(verdict("cantho", CASE, "REJECT"), "cantho")
    assert statuses(disputed.emitted) == ["DISPUTED"]
    assert machine.awaiting(CASE) == ["cantho"]
    again = machine.apply_verdict(verdict("cantho", CASE, at=T0 + 3 * HOUR), "cantho")
    assert statuses(again.emitted) == ["CONFIRMED"]
    assert [e.record for e in again.emitted] == ["CaseEvent", "CaseConclusion"]


def test_need_more_info_keeps_the_case_pending_and_is_recorded() -> None:
    machine, _ = opened((A1, C1))
    machine.apply_verdict(verdict("angiang", CASE), "angiang")
    asked = machine.apply_verdict(verdict("cantho", CASE, "NEED_MORE_INFO"), "cantho")
    assert asked.accepted and asked.emitted == ()
    assert machine.status(CASE) == "PENDING_VERIFICATION"
    view = machine.case_view(CASE)
    assert view is not None and view["verdicts"]["cantho"]["decision"] == "NEED_MORE_INFO"
    assert [t["decision"] for t in view["timeline"] if t["what"] == "verdict"] == [
        "CONFIRM",
        "NEED_MORE_INFO",
    ]
    # a request for information after a reject ends the dispute: pending again
    machine.apply_verdict(verdict("angiang", CASE, "REJECT"), "angiang")
    assert machine.status(CASE) == "DISPUTED"
    back = machine.apply_verdict(verdict("angiang", CASE, "NEED_MORE_INFO"), "angiang")
    assert statuses(back.emitted) == ["PENDING_VERIFICATION"]


def test_own_status_events_read_back_from_the_cases_topic_are_ignored() -> None:
    machine, _ = opened((A1, C1))
    machine.apply_verdict(verdict("angiang", CASE), "angiang")
    emitted = machine.apply_verdict(verdict("cantho", CASE), "cantho").emitted
    before = machine.snapshot()
    for emit in emitted:
        if emit.record == "CaseEvent":
            assert machine.apply_case_event(emit.value) == Outcome()
    assert machine.snapshot() == before


def test_the_stages_double_report_mark_is_recorded_and_its_status_corrected() -> None:
    # the case stage marks a case with a STATUS_CHANGED naming the SAME_OCCURRENCE link
    # that joined two of its incidents; it always writes PENDING_VERIFICATION
    machine, _ = opened((A1, C1))
    agree(machine, CASE)
    mark = {
        "case_event_id": stable_id("case-event", CASE, "STATUS_CHANGED", "same-occurrence"),
        "case_id": CASE,
        "event_type": "STATUS_CHANGED",
        "incidents": [],
        "correlation_ids": ["5a" * 32],
        "merged_case_ids": [],
        "status": "PENDING_VERIFICATION",
        "agencies": ["angiang", "cantho"],
        "conclusion": None,
        "at": T0 + 3 * HOUR,
        "sequence": 9_000_000,
        "possible_double_report": True,
    }

    (correction,) = machine.apply_case_event(mark).emitted

    assert correction.value["status"] == "CONFIRMED"  # no new facts: the agreement stands
    assert correction.value["possible_double_report"] is True
    assert correction.value["sequence"] == 9_000_000
    view = machine.case_view(CASE)
    assert view is not None and view["version"] == 1 and "5a" * 32 in view["correlation_ids"]
    assert machine.apply_case_event(mark).duplicate


def test_a_possible_double_report_is_named_in_the_conclusion() -> None:
    machine, stage = CaseLifecycle(), Stage()
    (created,) = stage.link(A1, C1)
    machine.apply_case_event(dict(created, possible_double_report=True))
    conclusion = agree(machine, CASE).emitted[1].value
    assert conclusion["possible_double_report"] is True


def test_apply_record_dispatches_by_schema_name() -> None:
    machine, stage = CaseLifecycle(), Stage()
    (created,) = stage.link(A1, C1)
    assert machine.apply_record("xborder.v1.CaseEvent", created).accepted
    assert machine.apply_record("Verdict", verdict("cantho", CASE), "cantho").accepted
    with pytest.raises(ValueError, match="needs the agency of the topic"):
        machine.apply_record("Verdict", verdict("cantho", CASE))
    with pytest.raises(ValueError, match="does not consume Alert"):
        machine.apply_record("Alert", {}, "cantho")


# -- rejections ---------------------------------------------------------------------------


def _agreed() -> CaseLifecycle:
    machine, _ = opened((A1, C1))
    agree(machine, CASE)
    return machine


def _disputed() -> CaseLifecycle:
    machine, _ = opened((A1, C1))
    machine.apply_verdict(verdict("cantho", CASE, "REJECT"), "cantho")
    return machine


def _reported() -> CaseLifecycle:
    machine = _agreed()
    assert machine.apply_report(report("cantho", CASE), "cantho").accepted
    return machine


def _pending() -> CaseLifecycle:
    return opened((A1, C1))[0]


def _merged() -> CaseLifecycle:
    machine, _ = opened((A1, C1), (A3, C3), (C3, C1))  # case of A3 absorbed into A1's
    return machine


def _two_links() -> CaseLifecycle:
    return opened((A1, C1), (C1, A2))[0]


REJECTIONS = [
    # (state, method, input, source agency, reason, words in the message)
    (_pending, "verdict", verdict("angiang", CASE), "cantho", "wrong-topic", "own topic"),
    (_pending, "verdict", verdict("cantho", "f" * 64), "cantho", "unknown-case", "f" * 64),
    (_pending, "verdict", verdict("vinhlong", CASE), "vinhlong", "not-involved", "no incident"),
    (_merged, "verdict", verdict("cantho", case_id_of(A3)), "cantho", "case-merged", CASE),
    (_pending, "verdict", dict(verdict("cantho", CASE), target_kind="SUBJECT"), "cantho",
     "unknown-target", "SUBJECT"),
    (_pending, "verdict", verdict("cantho", "e" * 64, kind="CORRELATION"), "cantho",
     "unknown-target", "no known case"),
    (_two_links, "verdict", verdict("cantho", corr(A1, C1), kind="CORRELATION"), "cantho",
     "correlation-in-case", f"target_id {CASE}"),
    (_agreed, "verdict", verdict("cantho", CASE, "REJECT"), "cantho", "case-agreed", "agreed"),
    (_reported, "verdict", verdict("cantho", CASE), "cantho", "case-reported", "reported"),
    (_pending, "report", report("cantho", CASE), "cantho", "case-pending", "waiting for"),
    (_disputed, "report", report("angiang", CASE), "angiang", "case-disputed", "cantho"),
    (_pending, "report", report("cantho", "f" * 64), "cantho", "unknown-case", "unknown"),
    (_reported, "report", report("angiang", CASE), "angiang", "already-reported", "cantho"),
    (_agreed, "report", report("vinhlong", CASE), "vinhlong", "not-involved", "vinhlong"),
    (_agreed, "report", report("cantho", CASE), "angiang", "wrong-topic", "'angiang'"),
    (_agreed, "report", report("cantho", CASE, conclusion_id="0" * 64), "cantho",
     "stale-conclusion", "report again"),
    (_agreed, "report", report("cantho", CASE, conclusion="  "), "cantho", "empty-conclusion",
     "no conclusion text"),
    (_pending, "release", release("cantho", CASE, A1), "cantho", "not-own-incident", "A1"),
    (_pending, "release", release("cantho", CASE, C2), "cantho", "incident-not-in-case", "C2"),
    (_pending, "release", release("vinhlong", CASE, V1), "vinhlong", "not-involved", "vinhlong"),
    (_pending, "release", release("cantho", CASE, C1), "angiang", "wrong-topic", "own topic"),
    (_merged, "release", release("cantho", case_id_of(A3), C3), "cantho", "case-merged", CASE),
]  # fmt: skip


@pytest.mark.parametrize(
    ("state", "method", "value", "source", "reason", "words"),
    REJECTIONS,
    ids=[f"{r[1]}-{r[4]}-{i}" for i, r in enumerate(REJECTIONS)],
)
def test_rejected_input_names_the_reason_and_changes_nothing(
    state: Any, method: str, value: dict[str, Any], source: str, reason: str, words: str
) -> None:
    machine: CaseLifecycle = state()
    before = json.dumps(machine.snapshot(), sort_keys=True)

    outcome: Outcome = getattr(machine, f"apply_{method}")(value, source)

    assert not outcome.accepted and outcome.emitted == ()
    assert outcome.rejection is not None
    assert outcome.rejection.reason == reason
    assert words in outcome.rejection.message
    assert outcome.rejection.input_id == value["event_id"]
    assert outcome.rejection.source_agency == source
    assert json.dumps(machine.snapshot(), sort_keys=True) == before


def test_release_already_released_to_everyone_is_rejected() -> None:
    machine = _pending()
    assert machine.apply_release(release("cantho", CASE, C1), "cantho").accepted
    before = machine.snapshot()
    again = machine.apply_release(release("cantho", CASE, C1), "cantho")
    assert again.rejection is not None and again.rejection.reason == "already-released"
    assert machine.snapshot() == before


def test_redelivered_inputs_are_duplicates_without_output_or_change() -> None:
    machine, _ = opened((A1, C1))
    machine.apply_verdict(verdict("angiang", CASE), "angiang")
    last = verdict("cantho", CASE)
    assert machine.apply_verdict(last, "cantho").emitted  # agreed
    before = machine.snapshot()
    redelivered = machine.apply_verdict(last, "cantho")
    assert redelivered.duplicate and not redelivered.accepted and redelivered.emitted == ()
    rep = report("cantho", CASE)
    machine.apply_report(rep, "cantho")
    assert machine.apply_report(rep, "cantho") == Outcome(duplicate=True)
    rel = release("angiang", CASE, A1)
    machine.apply_release(rel, "angiang")
    assert machine.apply_release(rel, "angiang") == Outcome(duplicate=True)
    assert before != machine.snapshot()  # the first copies did change it


def test_redelivered_case_events_change_nothing() -> None:
    machine, stage = CaseLifecycle(), Stage()
    events = stage.link(A1, C1) + stage.link(C1, A2) + stage.link(A3, C3) + stage.link(C3, C1)
    feed(machine, events)
    before = machine.snapshot()
    for event in events:
        assert machine.apply_case_event(event) == Outcome(duplicate=True)
    assert machine.snapshot() == before


def test_a_verdict_on_a_correlation_counts_for_its_single_link_case() -> None:
    machine, _ = opened((A1, C1))
    machine.apply_verdict(verdict("angiang", corr(A1, C1), kind="CORRELATION"), "angiang")
    outcome = machine.apply_verdict(verdict("cantho", CASE), "cantho")
    assert statuses(outcome.emitted) == ["CONFIRMED"]


# -- new links: ask again only what changed -----------------------------------------------


def test_incident_added_asks_again_only_its_owner_and_reopens_an_agreed_case() -> None:
    machine, stage = opened((A1, C1))
    first = agree(machine, CASE).emitted[1].value

    reopened = feed(machine, stage.link(C1, A2, T0 + 5 * HOUR))

    assert statuses(reopened) == ["PENDING_VERIFICATION"]
    assert reopened[0].value["at"] == T0 + 5 * HOUR
    assert machine.awaiting(CASE) == ["angiang"]  # cantho's part did not change
    view = machine.case_view(CASE)
    assert view is not None and view["version"] == 2
    assert view["past_conclusions"] == [{"conclusion": first, "report": None}]
    assert view["waiting_since"] == T0 + 5 * HOUR
    outcome = machine.apply_verdict(verdict("angiang", CASE, at=T0 + 6 * HOUR), "angiang")
    second = outcome.emitted[1].value
    assert second["case_version"] == 2 and second["conclusion_id"] != first["conclusion_id"]
    assert [i["incident_id"] for i in second["incidents"]] == ["A1", "A2", "C1"]
    # cantho's verdict of version 1 still stands in the new conclusion
    assert [v["event_id"] for v in second["verdicts"]][1] == first["verdicts"][1]["event_id"]


def test_a_newly_involved_agency_makes_everyone_verify_again() -> None:
    machine, stage = opened((A1, C1))
    agree(machine, CASE)
    feed(machine, stage.link(C1, V1, T0 + 5 * HOUR))
    assert machine.awaiting(CASE) == ["angiang", "cantho", "vinhlong"]


def test_a_link_to_a_disputed_case_keeps_the_dispute_and_corrects_the_stage_status() -> None:
    machine, stage = opened((A1, C1))
    machine.apply_verdict(verdict("cantho", CASE, "REJECT"), "cantho")
    (event,) = stage.link(C1, A2, T0 + 5 * HOUR)
    assert event["status"] == "PENDING_VERIFICATION"  # what the stage writes
    outcome = machine.apply_case_event(event)
    assert statuses(outcome.emitted) == ["DISPUTED"]  # cantho's reject still stands
    # the rejecting agency's own part changing asks it again: the dispute is over
    emitted = feed(machine, stage.link(A1, C2, T0 + 6 * HOUR))
    assert statuses(emitted) == ["PENDING_VERIFICATION"]


def test_a_link_to_a_reported_case_reopens_it_and_it_can_be_reported_again() -> None:
    machine, stage = opened((A1, C1))
    agree(machine, CASE)
    rep = report("cantho", CASE)
    machine.apply_report(rep, "cantho")
    reopened = feed(machine, stage.link(C1, A2, T0 + 5 * HOUR))
    assert statuses(reopened) == ["PENDING_VERIFICATION"]
    view = machine.case_view(CASE)
    assert view is not None and view["report"] is None
    assert view["past_conclusions"][0]["report"]["event_id"] == rep["event_id"]
    early = machine.apply_report(report("cantho", CASE), "cantho")
    assert early.rejection is not None and early.rejection.reason == "case-pending"
    agree(machine, CASE, at=T0 + 6 * HOUR)
    assert machine.apply_report(report("cantho", CASE), "cantho").accepted


def test_merge_asks_everyone_again_and_drops_the_absorbed_verdicts() -> None:
    machine, stage = opened((A1, C1), (A3, C3))
    absorbed = case_id_of(A3)
    agree(machine, CASE)
    agree(machine, absorbed)
    machine.apply_release(release("cantho", absorbed, C3), "cantho")

    (merged,) = stage.link(C3, C1, T0 + 5 * HOUR)
    assert merged["event_type"] == "MERGED" and merged["merged_case_ids"] == [absorbed]
    outcome = machine.apply_case_event(merged)

    assert statuses(outcome.emitted) == ["PENDING_VERIFICATION"]
    assert machine.case_ids() == [CASE] and machine.resolve(absorbed) == CASE
    assert machine.awaiting(CASE) == ["angiang", "cantho"]
    view = machine.case_view(CASE)
    assert view is not None
    assert len(view["past_conclusions"]) == 2  # the survivor's and the absorbed case's
    assert [t["case_id"] for t in view["timeline"] if t["what"] == "absorbed"] == [absorbed]
    # the absorbed case's release keeps its audience
    assert ("cantho", "C3") in machine.released_to(CASE, "angiang")
    late = machine.apply_verdict(verdict("cantho", absorbed), "cantho")
    assert late.rejection is not None and late.rejection.reason == "case-merged"
    assert agree(machine, CASE).emitted[1].value["case_version"] == 2


def test_the_stages_rename_carries_the_case_over_as_an_added_incident() -> None:
    # Z0 < A1: the case of A1-C1 is renamed after its new smallest member
    machine, stage = opened((A1, C1))
    agree(machine, CASE)
    machine.apply_release(release("cantho", CASE, C1), "cantho")
    z0 = ("angiang", "0-first")
    created, merged = stage.link(z0, C1, T0 + 5 * HOUR)
    renamed = case_id_of(z0)
    assert created["case_id"] == renamed and merged["merged_case_ids"] == [CASE]

    outcome = Outcome(
        machine.apply_case_event(created).emitted + machine.apply_case_event(merged).emitted
    )

    assert machine.case_ids() == [renamed]
    assert statuses(outcome.emitted) == ["PENDING_VERIFICATION"]  # reopened under the new id
    assert machine.awaiting(renamed) == ["angiang"]  # only the newcomer's owner
    view = machine.case_view(renamed)
    assert view is not None and view["version"] == 2 and len(view["past_conclusions"]) == 1
    assert ("cantho", "C1") in machine.released_to(renamed, "angiang")
    old = machine.apply_verdict(verdict("angiang", CASE), "angiang")
    assert old.rejection is not None and renamed in old.rejection.message


# -- releases -----------------------------------------------------------------------------


def test_release_shows_details_to_the_case_agencies_of_that_moment() -> None:
    machine, stage = opened((A1, C1))
    assert machine.released_to(CASE, "cantho") == [C1]  # the hit only: A1 stays hidden
    (emit,) = machine.apply_release(release("angiang", CASE, A1), "angiang").emitted
    assert emit.record == "IncidentRelease" and emit.value["audience"] == ["angiang", "cantho"]
    assert machine.released_to(CASE, "cantho") == [A1, C1]
    feed(machine, stage.link(A1, V1, T0 + 5 * HOUR))
    assert machine.released_to(CASE, "vinhlong") == [V1]  # joined later: not released to it
    again = machine.apply_release(release("angiang", CASE, A1, T0 + 6 * HOUR), "angiang")
    assert again.emitted[0].value["audience"] == ["angiang", "cantho", "vinhlong"]
    assert machine.released_to(CASE, "vinhlong") == [A1, V1]


def test_release_details_pass_through_and_a_newer_event_is_released_again(
    codec: AvroCodec,
) -> None:
    machine, _ = opened((A1, C1))
    details = {
        "occurred_at": T0,
        "location": {
            "lat": 10.6,
            "lon": 105.4,
            "admin_unit_code": "30589",
            "admin_unit_name": "Ward",
            "address": None,
        },
        "category": "PUBLIC_DISORDER",
        "severity": "LOW",
        "subjects": [],
        "modus_operandi": ["brawl"],
        "narrative": "two groups on the boundary road",
    }
    first = dict(release("angiang", CASE, A1), details=details)
    (emit,) = machine.apply_release(first, "angiang").emitted
    assert emit.value["details"] == details
    decoded = codec.decode(codec.encode("IncidentRelease", emit.value), logical_types=False)
    assert decoded.value["details"]["narrative"] == "two groups on the boundary road"
    newer = release("angiang", CASE, A1, T0 + 2 * HOUR)
    newer["incident"]["event_id"] = str(uuid.uuid5(uuid.NAMESPACE_OID, "A1 updated"))
    again = machine.apply_release(newer, "angiang")
    assert again.accepted and again.emitted[0].value["details"] is None
    assert again.emitted[0].value["incident"]["event_id"] == newer["incident"]["event_id"]


# -- timers -------------------------------------------------------------------------------


CFG = LifecycleConfig(verification_timeout_ms=24 * HOUR, escalation_interval_ms=6 * HOUR)


def test_escalations_fall_due_after_the_timeout_and_repeat_at_the_interval() -> None:
    machine, _ = opened((A1, C1), config=CFG)
    assert machine.due_escalations(T0 + 24 * HOUR - 1) == []
    (first,) = machine.due_escalations(T0 + 24 * HOUR)
    alert = first.value
    assert first.record == "Alert" and alert["alert_kind"] == "VERIFICATION_OVERDUE"
    assert alert["identifier"] == stable_id("alert", "VERIFICATION_OVERDUE", CASE, "1")
    assert alert["sent"] == T0 + 24 * HOUR and alert["case_id"] == CASE
    assert alert["target_agencies"] == ["angiang", "cantho"]
    assert machine.due_escalations(T0 + 30 * HOUR - 1) == []
    machine.apply_verdict(verdict("angiang", CASE), "angiang")
    # a late call catches up with one alert, the newest due (not one per missed interval:
    # a worker down for a day, or an old case, must not flood the alert topics)
    late = machine.due_escalations(T0 + 43 * HOUR)
    assert [e.value["sent"] for e in late] == [T0 + 42 * HOUR]
    assert "awaiting cantho" in late[0].value["headline"]
    assert machine.due_escalations(T0 + 48 * HOUR - 1) == []
    assert [e.value["sent"] for e in machine.due_escalations(T0 + 48 * HOUR)] == [T0 + 48 * HOUR]
    view = machine.case_view(CASE)
    assert view is not None and view["escalations"] == 3


def test_an_old_case_raises_one_escalation_not_one_per_missed_interval() -> None:
    machine, _ = opened((A1, C1), config=CFG)
    (only,) = machine.due_escalations(T0 + 365 * 24 * HOUR)
    assert only.value["identifier"] == stable_id("alert", "VERIFICATION_OVERDUE", CASE, "1")
    assert machine.due_escalations(T0 + 365 * 24 * HOUR + HOUR) == []


def test_agreement_stops_the_timer_and_a_reopening_starts_a_new_wait() -> None:
    machine, stage = opened((A1, C1), config=CFG)
    machine.due_escalations(T0 + 24 * HOUR)
    agree(machine, CASE, at=T0 + 25 * HOUR)
    assert machine.due_escalations(T0 + 100 * HOUR) == []
    feed(machine, stage.link(C1, A2, T0 + 200 * HOUR))
    assert machine.due_escalations(T0 + 224 * HOUR - 1) == []
    (again,) = machine.due_escalations(T0 + 224 * HOUR)
    assert again.value["identifier"] == stable_id("alert", "VERIFICATION_OVERDUE", CASE, "2")


def test_a_dispute_is_still_overdue() -> None:
    machine, _ = opened((A1, C1), config=CFG)
    machine.apply_verdict(verdict("cantho", CASE, "REJECT"), "cantho")
    (alert,) = machine.due_escalations(T0 + 24 * HOUR)
    assert "disputed" in alert.value["headline"]


def test_a_restart_neither_repeats_nor_skips_an_escalation() -> None:
    machine, _ = opened((A1, C1), config=CFG)
    issued = machine.due_escalations(T0 + 24 * HOUR) + machine.due_escalations(T0 + 30 * HOUR)
    restarted = CaseLifecycle.restore(json.loads(json.dumps(machine.snapshot())), CFG)
    assert restarted.due_escalations(T0 + 30 * HOUR) == []  # not repeated
    nxt = restarted.due_escalations(T0 + 36 * HOUR)
    numbers = [e.value["identifier"] for e in issued + nxt]
    assert numbers == [stable_id("alert", "VERIFICATION_OVERDUE", CASE, str(n)) for n in (1, 2, 3)]


def test_a_merge_keeps_the_earliest_wait() -> None:
    machine, stage = opened((A1, C1), config=CFG)
    feed(machine, stage.link(A3, C3, T0 + 10 * HOUR))
    machine.due_escalations(T0 + 24 * HOUR)  # the older case escalated once
    feed(machine, stage.link(C3, C1, T0 + 25 * HOUR))
    (nxt,) = machine.due_escalations(T0 + 30 * HOUR)
    assert nxt.value["sent"] == T0 + 30 * HOUR
    assert nxt.value["identifier"] == stable_id("alert", "VERIFICATION_OVERDUE", CASE, "2")


def test_timer_settings_must_be_positive() -> None:
    with pytest.raises(ConfigurationError, match="verification_timeout_ms"):
        LifecycleConfig(verification_timeout_ms=0)
    with pytest.raises(ConfigurationError, match="escalation_interval_ms"):
        LifecycleConfig(escalation_interval_ms=-1)


# -- retention ----------------------------------------------------------------------------


DAY = 24 * HOUR
KEEP = LifecycleConfig(
    verification_timeout_ms=24 * HOUR, escalation_interval_ms=6 * HOUR, case_retention_ms=64 * DAY
)
STEP = KEEP.case_retention_ms // 64  # the clock's step


def test_a_case_nothing_reaches_expires_with_a_last_alert_and_its_ids_are_freed() -> None:
    machine, stage = opened((A1, C1), config=KEEP)
    assert machine.advance(T0).changed  # the clock's first tick starts every retention
    escalated = machine.advance(T0 + 24 * HOUR)
    assert [e.value["sent"] for e in escalated.emitted] == [T0 + 24 * HOUR]
    assert machine.advance(T0 + 64 * DAY).expired == ()  # not yet: touched at T0
    gone = machine.advance(T0 + 64 * DAY + STEP + 1)
    assert gone.expired == ((CASE, "PENDING_VERIFICATION"),) and gone.changed
    (last,) = [e for e in gone.emitted if "expired" in e.value["headline"]]
    assert last.value["identifier"] == stable_id(
        "alert", "VERIFICATION_OVERDUE", CASE, "expired", "1"
    )
    assert last.value["target_agencies"] == ["angiang", "cantho"] and last.value["case_id"] == CASE
    assert machine.case_count == 0 and machine.expired == 1
    snap = machine.snapshot()
    assert snap["cases"] == {} and snap["case_of_correlation"] == {} and snap["merged_into"] == {}
    refused = machine.apply_verdict(verdict("angiang", CASE), "angiang")
    assert refused.rejection is not None and refused.rejection.reason == "unknown-case"
    assert "expired after 1536 h without news" in refused.rejection.message
    # the case stage forgot it first; a later link to its incidents opens a new case,
    # waiting for every agency again
    stage.tracker.evict(T0 + DAY)
    assert statuses(feed(machine, stage.link(A1, C2, T0 + 70 * DAY))) == []
    assert machine.status(CASE) == "PENDING_VERIFICATION"
    assert machine.awaiting(CASE) == ["angiang", "cantho"]


def test_every_input_restarts_the_retention_and_a_closed_case_expires_silently() -> None:
    machine, _ = opened((A1, C1), config=KEEP)
    machine.advance(T0)
    machine.advance(T0 + 40 * DAY)
    agree(machine, CASE, at=T0 + 40 * DAY)  # touched at the clock of T0 + 40 days
    assert machine.advance(T0 + 70 * DAY).expired == ()
    assert machine.status(CASE) == "CONFIRMED"
    gone = machine.advance(T0 + 105 * DAY)
    assert gone.expired == ((CASE, "CONFIRMED"),)
    assert gone.emitted == ()  # agreed: nothing was waiting, no alert


def test_a_merged_case_expires_with_its_aliases() -> None:
    machine, stage = opened((A1, C1), (A3, C3), config=KEEP)
    machine.advance(T0)
    feed(machine, stage.link(C3, C1, T0 + HOUR))
    assert len(machine.snapshot()["merged_into"]) == 1
    machine.advance(T0 + 80 * DAY)
    snap = machine.snapshot()
    assert snap["cases"] == {} and snap["merged_into"] == {} and snap["case_of_correlation"] == {}


def test_a_tick_that_changes_nothing_is_not_logged_and_replay_expires_alike() -> None:
    machine, stage = opened((A1, C1), config=KEEP)
    assert machine.advance(T0).changed
    assert not machine.advance(T0 + STEP - 1).changed  # within a step: a replay may skip it
    feed(machine, stage.link(A2, C2, T0 + DAY))
    logged = [T0 + n * STEP for n in range(1, 140)]
    for now in logged:
        machine.advance(now)
    replayed, stage2 = opened((A1, C1), config=KEEP)
    replayed.advance(T0)
    feed(replayed, stage2.link(A2, C2, T0 + DAY))
    for now in logged:
        replayed.advance(now)
    assert replayed.snapshot() == machine.snapshot()
    assert machine.case_count == 0 and replayed.expired == machine.expired == 2


def test_a_case_the_stage_may_still_hold_does_not_expire() -> None:
    # event time stood still (quiet topics): the stage keeps the case, so must the lifecycle,
    # or a new link would add to a case the lifecycle no longer knows
    config = dataclasses.replace(KEEP, stage_horizon_ms=78 * HOUR)
    machine, stage = opened((A1, C1), config=config)
    machine.advance(T0)
    assert machine.advance(T0 + 100 * DAY).expired == ()
    feed(machine, stage.link(A2, C2, T0 + 3 * DAY + 6 * HOUR + 1))  # newest link moves on
    gone = machine.advance(T0 + 100 * DAY + STEP)
    assert [case_id for case_id, _ in gone.expired] == [CASE]
    assert machine.status(case_id_of(A2)) == "PENDING_VERIFICATION"  # the new one stays


def test_retention_must_be_positive() -> None:
    with pytest.raises(ConfigurationError, match="case_retention_ms"):
        LifecycleConfig(case_retention_ms=0)
    with pytest.raises(ConfigurationError, match="stage_horizon_ms"):
        LifecycleConfig(stage_horizon_ms=-1)


# -- determinism, snapshot, replay --------------------------------------------------------


def _script(seed: int) -> list[tuple[str, Any, str | None]]:
    """A long, varied input sequence: links (with merges and renames), verdicts of every
    kind (some wrong), reports, releases and timer ticks, in event-time order."""
    rng = random.Random(seed)
    stage = Stage()
    ids = count(1)
    refs = [(a, f"{a[0].upper()}{n:02d}") for a in ("angiang", "cantho", "vinhlong")
            for n in range(12)]  # fmt: skip
    inputs: list[tuple[str, Any, str | None]] = []
    known: list[str] = []
    t = T0
    for _ in range(300):
        t += rng.randrange(1, 4 * HOUR)
        roll = rng.random()
        if roll < 0.25 or not known:
            x, y = rng.sample(refs, 2)
            if x[0] == y[0]:
                continue
            for event in stage.link(x, y, t):
                inputs.append(("case", event, None))
                known.append(event["case_id"])
            continue
        case_id = rng.choice(known)
        agency = rng.choice(("angiang", "cantho", "vinhlong"))
        source = agency if rng.random() < 0.9 else "cantho"
        event_id = str(uuid.UUID(int=next(ids)))
        if roll < 0.75:
            decision = rng.choice(("CONFIRM", "CONFIRM", "CONFIRM", "REJECT", "NEED_MORE_INFO"))
            inputs.append(("verdict", verdict(agency, case_id, decision, t, event_id=event_id),
                           source))  # fmt: skip
        elif roll < 0.85:
            inputs.append(("report", dict(report(agency, case_id, t), event_id=event_id), source))
        elif roll < 0.93:
            ref = (agency, f"{agency[0].upper()}{rng.randrange(12):02d}")
            inputs.append(("release", dict(release(agency, case_id, ref, t), event_id=event_id),
                           source))  # fmt: skip
        else:
            inputs.append(("tick", t, None))
        if rng.random() < 0.05 and inputs[-1][0] != "tick":
            inputs.append(inputs[-1])  # a redelivery
    return inputs


def _run(machine: CaseLifecycle, inputs: list[tuple[str, Any, str | None]]) -> list[Any]:
    out: list[Any] = []
    for kind, value, source in inputs:
        if kind == "tick":
            out.append(machine.due_escalations(value))
        elif kind == "case":
            out.append(machine.apply_case_event(value))
        else:
            assert source is not None
            out.append(getattr(machine, f"apply_{kind}")(value, source))
    return out


def test_the_script_reaches_every_outcome() -> None:
    outcomes = [o for o in _run(CaseLifecycle(CFG), _script(7)) if isinstance(o, Outcome)]
    reasons = {o.rejection.reason for o in outcomes if o.rejection}
    emitted = {e.value.get("status") for o in outcomes for e in o.emitted}
    assert {"wrong-topic", "not-involved", "case-pending"} <= reasons
    assert {"CONFIRMED", "DISPUTED", "CONCLUDED"} <= emitted
    assert any(o.duplicate for o in outcomes)


@pytest.mark.parametrize("seed", [1, 7, 42])
def test_replaying_the_same_inputs_gives_the_same_outputs_and_state(seed: int) -> None:
    inputs = _script(seed)
    first, second = CaseLifecycle(CFG), CaseLifecycle(CFG)
    assert _run(first, inputs) == _run(second, inputs)
    assert first.snapshot() == second.snapshot()


@pytest.mark.parametrize("seed", [1, 7])
def test_snapshot_restore_and_continue_equals_one_run(seed: int) -> None:
    inputs = _script(seed)
    whole = CaseLifecycle(CFG)
    expected = _run(whole, inputs)
    for split in range(0, len(inputs) + 1, 37):
        part = CaseLifecycle(CFG)
        head = _run(part, inputs[:split])
        snapshot = json.loads(json.dumps(part.snapshot()))  # through JSON, as stored
        resumed = CaseLifecycle.restore(snapshot, CFG)
        assert resumed.snapshot() == part.snapshot()
        assert head + _run(resumed, inputs[split:]) == expected, f"split at {split}"
        assert resumed.snapshot() == whole.snapshot()


def test_snapshot_is_json_and_restore_does_not_share_it() -> None:
    machine, _ = opened((A1, C1))
    machine.apply_release(release("angiang", CASE, A1), "angiang")
    snapshot = machine.snapshot()
    assert json.loads(json.dumps(snapshot)) == snapshot
    restored = CaseLifecycle.restore(snapshot)
    copy_before = json.dumps(snapshot, sort_keys=True)
    agree(restored, CASE)
    assert json.dumps(snapshot, sort_keys=True) == copy_before
    with pytest.raises(ConfigurationError, match="format"):
        CaseLifecycle.restore(dict(snapshot, format=99))


def test_emitted_records_do_not_alias_the_state() -> None:
    machine, _ = opened((A1, C1))
    conclusion = agree(machine, CASE).emitted[1].value
    before = machine.snapshot()
    conclusion["incidents"].clear()
    conclusion["agencies"].append("x")
    assert machine.snapshot() == before


def test_ids_are_deterministic_hashes_of_the_inputs() -> None:
    def run() -> list[str]:
        machine, _ = opened((A1, C1))
        verdicts = [
            verdict("angiang", CASE, event_id="00000000-0000-4000-8000-000000000001"),
            verdict("cantho", CASE, event_id="00000000-0000-4000-8000-000000000002"),
        ]
        out = [e for v in verdicts for e in machine.apply_verdict(v, v["agency"]).emitted]
        return [e.value.get("case_event_id") or e.value["conclusion_id"] for e in out]

    ids = run()
    assert ids == run()
    assert ids[1] == stable_id(
        "case-conclusion",
        CASE,
        "1",
        "00000000-0000-4000-8000-000000000001",
        "00000000-0000-4000-8000-000000000002",
    )
