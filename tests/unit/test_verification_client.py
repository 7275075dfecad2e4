"""The duty officers' side of joint verification without a broker: the records the client
builds, the errors it gives before sending, and the fold behind ``xborder cases``."""

from __future__ import annotations

from typing import Any

import pytest

from xborder.agencies import load_agencies
from xborder.case_fold import fold_records, resolve
from xborder.cases_cli import UnknownCaseError, match_case, select_cases
from xborder.codec import AvroCodec
from xborder.errors import ConfigurationError, InvalidRecordError
from xborder.settings import load_settings
from xborder.verification import (
    Officer,
    VerificationClient,
    VerificationOutcome,
    release_record,
    report_record,
    verdict_record,
)

TOKEN = "c5" * 32
OFFICER = Officer(TOKEN, "key-2026-03")
CASE = "07" * 32
EVENT = "00000000-0000-4000-8000-000000000007"


def _round_trip(codec: AvroCodec, name: str, value: dict[str, Any]) -> dict[str, Any]:
    decoded = codec.decode(codec.encode(name, value), logical_types=False)
    assert decoded.record_name == f"xborder.v1.{name}"
    return decoded.value


# -- records ------------------------------------------------------------------------------


@pytest.mark.parametrize("decision", ["CONFIRM", "REJECT", "NEED_MORE_INFO"])
def test_a_verdict_is_about_the_case_and_survives_the_codec(codec, decision) -> None:
    value = verdict_record("cantho", CASE, decision, "same vehicle in our report", OFFICER)
    assert value["target_kind"] == "CASE" and value["target_id"] == CASE
    assert _round_trip(codec, "Verdict", value) == value


def test_each_record_gets_a_fresh_event_id_and_the_time_of_now(codec) -> None:
    first = verdict_record("cantho", CASE, "CONFIRM", "", OFFICER)
    second = verdict_record("cantho", CASE, "CONFIRM", "", OFFICER)
    assert first["event_id"] != second["event_id"]
    assert abs(first["decided_at"] - second["decided_at"]) < 5_000
    retried = verdict_record("cantho", CASE, "CONFIRM", "", OFFICER, event_id=first["event_id"])
    assert retried["event_id"] == first["event_id"]


def test_a_report_and_a_release_survive_the_codec(codec) -> None:
    report = report_record("cantho", CASE, "One theft ring.", OFFICER, conclusion_id="a9" * 32)
    assert _round_trip(codec, "CaseReport", report) == report
    release = release_record("angiang", CASE, "AG-7", EVENT, released_at_ms=1_700_000_000_000)
    assert release["incident"] == {"agency": "angiang", "incident_id": "AG-7", "event_id": EVENT}
    assert release["audience"] == []  # the lifecycle fills it in
    assert _round_trip(codec, "IncidentRelease", release) == release


@pytest.mark.parametrize(
    ("token", "says"),
    [
        ("C5" * 32, "upper-case hex"),
        ("c5" * 10, "20 hex characters, not 64"),
        ("0912 345 678", "phone number"),
        ("", "is empty"),
    ],
)
def test_an_officer_token_must_be_a_token(token, says) -> None:
    with pytest.raises(InvalidRecordError, match=f"^officer_token: .*{says}"):
        Officer(token, "key-2026-03")


def test_an_officer_needs_a_key_id() -> None:
    with pytest.raises(InvalidRecordError, match="officer_key_id: is empty"):
        Officer(TOKEN, " ")


@pytest.mark.parametrize("decision", ["REJECT", "NEED_MORE_INFO"])
def test_a_reject_or_question_says_why(decision) -> None:
    with pytest.raises(InvalidRecordError, match="reason: is empty"):
        verdict_record("cantho", CASE, decision, "  ", OFFICER)


def test_free_text_must_not_identify_anyone() -> None:
    with pytest.raises(InvalidRecordError, match=r"reason: .*phone number") as err:
        verdict_record("cantho", CASE, "REJECT", "owner answers at 0912 345 678", OFFICER)
    assert err.value.reason == "raw-identifier"
    with pytest.raises(InvalidRecordError, match=r"conclusion: .*plate"):
        report_record("cantho", CASE, "the bike 65B1-234.56 was stolen twice", OFFICER)


def test_an_empty_conclusion_is_refused_before_sending() -> None:
    with pytest.raises(InvalidRecordError, match="conclusion: is empty"):
        report_record("cantho", CASE, " \n", OFFICER)


def test_bad_ids_are_named() -> None:
    with pytest.raises(InvalidRecordError, match="case_id: ''"):
        verdict_record("cantho", "", "CONFIRM", "", OFFICER)
    with pytest.raises(InvalidRecordError, match=r"incident\.event_id: 'latest' is not a UUID"):
        release_record("angiang", CASE, "AG-7", "latest")
    with pytest.raises(InvalidRecordError, match="decision: 'MAYBE'"):
        verdict_record("cantho", CASE, "MAYBE", "", OFFICER)  # type: ignore[arg-type]


def test_the_client_refuses_an_unknown_agency_or_a_bad_token_before_kafka(codec) -> None:
    settings = load_settings(**{"kafka.bootstrap_servers": "127.0.0.1:1"})  # nothing there
    agencies = load_agencies(settings.agencies_config)
    with pytest.raises(ConfigurationError, match="unknown agency 'nowhere'"):
        VerificationClient(
            settings, agencies, codec, "nowhere", officer_token=TOKEN, officer_key_id="k"
        )
    with pytest.raises(InvalidRecordError, match="officer_token"):
        VerificationClient(
            settings, agencies, codec, "cantho", officer_token="Nguyen Van A", officer_key_id="k"
        )


def test_an_outcome_reads_as_one_line() -> None:
    verdict = verdict_record("cantho", CASE, "CONFIRM", "", OFFICER, event_id=EVENT)
    accepted = VerificationOutcome(EVENT, True, "Verdict", verdict, "verification[0]@3")
    assert accepted.line() == f"accepted: CONFIRM by cantho on case {CASE} (event {EVENT})"
    rejected = VerificationOutcome(
        EVENT,
        False,
        "Verdict",
        verdict,
        "deadletters[1]@9",
        reason="case-pending",
        message="case x is not agreed yet",
    )
    assert rejected.line() == "rejected (case-pending): case x is not agreed yet"


# -- the fold behind 'xborder cases' ------------------------------------------------------


def _ref(agency: str, incident_id: str) -> dict[str, str]:
    return {"agency": agency, "incident_id": incident_id, "event_id": EVENT}


def _case_event(
    case_id: str,
    kind: str,
    sequence: int,
    status: str = "PENDING_VERIFICATION",
    incidents: tuple[tuple[str, str], ...] = (),
    agencies: tuple[str, ...] = ("angiang", "cantho"),
    merged: tuple[str, ...] = (),
    double: bool = False,
) -> tuple[str, dict[str, Any]]:
    return (
        "xborder.v1.CaseEvent",
        {
            "case_event_id": f"{case_id}-{sequence}-{kind}",
            "case_id": case_id,
            "event_type": kind,
            "incidents": [_ref(a, i) for a, i in incidents],
            "correlation_ids": [f"corr-{sequence}"] if kind != "STATUS_CHANGED" else [],
            "merged_case_ids": list(merged),
            "status": status,
            "agencies": list(agencies),
            "conclusion": None,
            "at": 1_000 + sequence,
            "sequence": sequence,
            "possible_double_report": double,
        },
    )


def _verdict(case_id: str, agency: str, decision: str = "CONFIRM") -> tuple[str, dict[str, Any]]:
    return ("xborder.v1.Verdict", verdict_record(agency, case_id, decision, "why", OFFICER))


def _conclusion(case_id: str, version: int = 1) -> tuple[str, dict[str, Any]]:
    return (
        "xborder.v1.CaseConclusion",
        {
            "conclusion_id": f"concl-{version}",
            "case_id": case_id,
            "case_version": version,
            "agreed_at": 5_000,
            "agencies": ["angiang", "cantho"],
            "incidents": [],
            "correlation_ids": [],
            "possible_double_report": False,
            "verdicts": [],
        },
    )


A, B = "a" * 64, "b" * 64
OPENED = _case_event(A, "CREATED", 1_000, incidents=(("angiang", "AG-1"), ("cantho", "CT-1")))


def test_a_case_waits_for_every_agency_then_is_agreed_and_reported() -> None:
    records = [OPENED, _verdict(A, "angiang")]
    assert fold_records(records)[A].awaiting == ["cantho"]
    records += [
        _verdict(A, "cantho"),
        _conclusion(A),
        _case_event(A, "STATUS_CHANGED", 1_000, status="CONFIRMED"),  # a tie: later wins
    ]
    case = fold_records(records)[A]
    assert (case.status, case.awaiting) == ("CONFIRMED", [])
    assert case.conclusion is not None and case.conclusion["conclusion_id"] == "concl-1"
    assert case.report is None
    report = report_record("cantho", A, "One ring.", OFFICER)
    records += [("xborder.v1.CaseReport", report), _case_event(A, "CONCLUDED", 1_000, "CONCLUDED")]
    case = fold_records(records)[A]
    assert case.status == "CONCLUDED" and case.report == report
    assert [e["what"] for e in case.timeline] == [
        "CREATED",
        "verdict",
        "verdict",
        "agreed",
        "STATUS_CHANGED",
        "reported",
        "CONCLUDED",
    ]
    assert case.as_dict()["timeline"][0]["at"] == "1970-01-01T00:00:02.000Z"


def test_the_status_is_the_one_of_the_highest_sequence_whatever_the_order() -> None:
    later = _case_event(A, "STATUS_CHANGED", 2_000, status="DISPUTED")
    assert fold_records([later, OPENED])[A].status == "DISPUTED"


def test_an_added_incident_asks_again_only_its_agency() -> None:
    records = [OPENED, _verdict(A, "angiang"), _verdict(A, "cantho")]
    added = _case_event(A, "INCIDENT_ADDED", 2_000, incidents=(("cantho", "CT-2"),))
    case = fold_records([*records, added])[A]
    assert case.awaiting == ["cantho"] and len(case.incidents) == 3
    joined = _case_event(
        A,
        "INCIDENT_ADDED",
        2_000,
        incidents=(("kiengiang", "KG-1"),),
        agencies=("angiang", "cantho", "kiengiang"),
    )
    assert fold_records([*records, joined])[A].awaiting == ["angiang", "cantho", "kiengiang"]


def test_a_merge_hands_the_incidents_to_the_survivor_and_asks_everyone() -> None:
    other = _case_event(B, "CREATED", 1_500, incidents=(("angiang", "AG-9"), ("cantho", "CT-9")))
    merged = _case_event(
        A, "MERGED", 3_000, incidents=(("angiang", "AG-9"), ("cantho", "CT-9")), merged=(B,)
    )
    records = [OPENED, other, _verdict(A, "angiang"), _verdict(A, "cantho"), merged]
    cases = fold_records(records)
    assert cases[B].merged_into == A and resolve(cases, B) == A
    assert cases[A].absorbed == [B] and len(cases[A].incidents) == 4
    assert cases[A].awaiting == ["angiang", "cantho"]
    assert [c.case_id for c in select_cases(cases)] == [A]  # merged cases are not listed


def test_a_rename_keeps_the_old_cases_verdicts() -> None:
    # the stage renames A to B when a smaller incident joins: CREATED B, MERGED B <- A
    created = _case_event(
        B,
        "CREATED",
        2_000,
        incidents=(("angiang", "AG-0"), ("angiang", "AG-1"), ("cantho", "CT-1")),
    )
    renamed = _case_event(B, "MERGED", 2_001, merged=(A,))
    records = [OPENED, _verdict(A, "angiang"), _verdict(A, "cantho"), created, renamed]
    case = fold_records(records)[B]
    assert len(case.verdicts) == 2 and len(case.incidents) == 3
    assert case.awaiting == ["angiang"]  # only the agency whose incident joined


def test_lists_filter_by_status_agency_and_double_report() -> None:
    other = _case_event(
        B,
        "CREATED",
        1_500,
        incidents=(("angiang", "AG-9"), ("kiengiang", "KG-9")),
        agencies=("angiang", "kiengiang"),
        double=True,
    )
    cases = fold_records([OPENED, other])
    assert [c.case_id for c in select_cases(cases)] == [B, A]  # newest change first
    assert [c.case_id for c in select_cases(cases, agency="cantho")] == [A]
    assert [c.case_id for c in select_cases(cases, double_report=True)] == [B]
    assert select_cases(cases, status="CONFIRMED") == []


def test_a_case_id_may_be_given_as_a_unique_prefix() -> None:
    ids = sorted([A, B, "aaaaaa" + "0" * 58])
    assert match_case(ids, A) == A
    assert match_case(ids, "bbbbbbbbbbbb…") == B  # as 'cases list' shows it
    with pytest.raises(UnknownCaseError, match="start of 2 case ids"):
        match_case(ids, "aaaaaa")
    with pytest.raises(UnknownCaseError, match="at least 6"):
        match_case(ids, "bbb")
    with pytest.raises(UnknownCaseError, match="no case 'cccccc'"):
        match_case(ids, "cccccc")


def _correlation(cid: str) -> tuple[str, dict[str, Any]]:
    return (
        "xborder.v1.Correlation",
        {
            "correlation_id": cid,
            "incident_a": _ref("angiang", "A1"),
            "incident_b": _ref("cantho", "C1"),
            "score": 9.5,
            "threshold": 9.0,
            "evidence": [{"kind": "SAME_PLACE", "weight": 4.0, "detail": "within 120 m"}],
            "match_kind": "SAME_OCCURRENCE",
        },
    )


@pytest.mark.parametrize("correlation_first", [True, False])
def test_a_case_shows_the_evidence_of_its_links_whatever_the_order(correlation_first) -> None:
    created = _case_event("k1", "CREATED", 1, incidents=(("angiang", "A1"), ("cantho", "C1")))
    records = [_correlation("corr-1"), _correlation("unrelated"), created]
    if not correlation_first:
        records = records[::-1]
    case = fold_records(records)["k1"]
    assert [link["correlation_id"] for link in case.evidence] == ["corr-1"]
    assert case.evidence[0]["match_kind"] == "SAME_OCCURRENCE"
    assert case.as_dict()["evidence"][0]["evidence"][0]["detail"] == "within 120 m"


def test_escalations_show_on_the_case_once_whatever_the_alert_topics() -> None:
    created = _case_event("k1", "CREATED", 1, incidents=(("angiang", "A1"), ("cantho", "C1")))
    alert = {
        "identifier": "esc-1",
        "alert_kind": "VERIFICATION_OVERDUE",
        "case_id": "k1",
        "sent": 5_000,
        "headline": "Case k1 waiting for verification for 24.0 h; awaiting angiang",
    }
    other = dict(alert, alert_kind="SUBJECT_ACROSS_BORDER", identifier="x")
    case = fold_records([created, ("xborder.v1.Alert", alert), ("xborder.v1.Alert", alert),
                         ("xborder.v1.Alert", other)])["k1"]  # fmt: skip
    assert [e["identifier"] for e in case.escalations] == ["esc-1"]
    assert case.as_dict()["escalations"][0]["sent"].startswith("1970-01-01T00:00:05")
    assert [t["what"] for t in case.timeline] == ["CREATED", "escalated"]
