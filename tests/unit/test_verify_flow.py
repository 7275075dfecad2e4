"""The verification flow's pure parts: what a verdict topic may carry, the lifecycle fed
from the case stage's log (accepted copies, dead letters with the original bytes and
position, the replay log) and the log's chunking."""

from __future__ import annotations

import logging
import uuid

import orjson
import pytest

from streams.correlation.lifecycle import LifecycleConfig
from streams.flows.verify import (
    ForwardedInput,
    LifecycleOutputs,
    LifecycleStage,
    check_input,
    chunk_log,
    encode_input,
    encode_tick,
    is_lifecycle_message,
)
from tests.unit.test_lifecycle import HOUR, T0, TOKEN, Stage
from xborder.codec import AvroCodec
from xborder.topics import Topics

NAMES = Topics(prefix="", agency_ids=("angiang", "cantho"))


def _verdict(agency: str, target: str, decision: str = "CONFIRM", kind: str = "CASE") -> dict:
    return {
        "event_id": str(uuid.uuid4()),
        "agency": agency,
        "target_kind": kind,
        "target_id": target,
        "decision": decision,
        "reason": "",
        "officer_token": TOKEN,
        "officer_key_id": "example-key-1",
        "decided_at": T0 + HOUR,
    }


def _forward(codec: AvroCodec, record: str, value: dict, topic_agency: str, offset: int = 7):
    payload = encode_input(
        NAMES.verdicts(topic_agency), 1, offset, b"key", codec.encode(record, value)
    )
    return ForwardedInput.parse(orjson.loads(payload))


def _opened(life: LifecycleStage, out: LifecycleOutputs) -> str:
    events = Stage().link(("angiang", "A1"), ("cantho", "C1"))
    life.case_events(events, out)
    return str(events[0]["case_id"])


def test_only_inputs_a_verdict_topic_may_carry_pass_the_door(codec: AvroCodec) -> None:
    verdict = codec.encode("Verdict", _verdict("cantho", "x"))
    assert check_input(codec, NAMES, NAMES.verdicts("cantho"), verdict) is None
    assert check_input(codec, NAMES, "incidents.cantho", verdict)[0] == "unknown-topic"
    assert check_input(codec, NAMES, NAMES.verdicts("cantho"), b"")[0] == "empty"
    assert check_input(codec, NAMES, NAMES.verdicts("cantho"), b"junk")[0] == "undecodable"
    case_event = Stage().link(("angiang", "A1"), ("cantho", "C1"))[0]
    reason, error = check_input(
        codec, NAMES, NAMES.verdicts("cantho"), codec.encode("CaseEvent", case_event)
    )
    assert reason == "unexpected-record" and "Verdict, CaseReport or IncidentRelease" in error


def test_accepted_verdicts_are_copied_to_verification_naming_the_case(codec: AvroCodec) -> None:
    life, out = LifecycleStage(codec, NAMES), LifecycleOutputs()
    case_id = _opened(life, out)
    correlation = out.log[0][1]["correlation_ids"][0]
    life.agency_input(
        _forward(codec, "Verdict", _verdict("cantho", correlation, kind="CORRELATION"), "cantho"),
        out,
    )
    life.agency_input(_forward(codec, "Verdict", _verdict("angiang", case_id), "angiang"), out)
    names = [name for name, _, _ in out.verification]
    assert names == ["Verdict", "Verdict", "CaseConclusion"]
    first = out.verification[0][2]
    assert (first["target_kind"], first["target_id"]) == ("CASE", case_id)
    assert {key for _, key, _ in out.verification} == {case_id}
    assert [e["status"] for e in out.case_events] == ["CONFIRMED"]
    assert out.accepted == 2 and not out.rejected


def test_a_refused_input_is_dead_lettered_with_its_bytes_and_position(codec: AvroCodec) -> None:
    life, out = LifecycleStage(codec, NAMES), LifecycleOutputs()
    case_id = _opened(life, out)
    forwarded = _forward(codec, "Verdict", _verdict("angiang", case_id), "cantho", offset=42)
    life.agency_input(forwarded, out)
    [letter] = out.rejected
    assert letter.reason == "wrong-topic" and letter.value == forwarded.value
    assert letter.position == "verdicts.cantho[1]@42" and letter.key == b"key"
    assert not out.verification and out.accepted == 0


def test_the_report_copy_names_the_conclusion_it_reported(codec: AvroCodec) -> None:
    life, out = LifecycleStage(codec, NAMES), LifecycleOutputs()
    case_id = _opened(life, out)
    for agency in ("angiang", "cantho"):
        life.agency_input(_forward(codec, "Verdict", _verdict(agency, case_id), agency), out)
    report = {
        "event_id": str(uuid.uuid4()),
        "agency": "cantho",
        "case_id": case_id,
        "conclusion_id": None,
        "conclusion": "One theft, reported by both sides.",
        "officer_token": TOKEN,
        "officer_key_id": "example-key-1",
        "requested_at": T0 + 2 * HOUR,
    }
    life.agency_input(_forward(codec, "CaseReport", report, "cantho"), out)
    conclusion = next(v for n, _, v in out.verification if n == "CaseConclusion")
    copy = next(v for n, _, v in out.verification if n == "CaseReport")
    assert copy["conclusion_id"] == conclusion["conclusion_id"]
    assert out.case_events[-1]["event_type"] == "CONCLUDED"


def test_replaying_the_log_rebuilds_the_same_state(codec: AvroCodec) -> None:
    life, out = LifecycleStage(codec, NAMES), LifecycleOutputs()
    case_id = _opened(life, out)
    life.agency_input(
        _forward(codec, "Verdict", _verdict("angiang", case_id, "REJECT"), "angiang"), out
    )
    life.agency_input(_forward(codec, "Verdict", _verdict("angiang", "nope"), "angiang"), out)
    life.tick(T0 + 1000 * HOUR, out)  # overdue: escalations are raised and logged
    life.tick(T0 + 1000 * HOUR, out)  # nothing more is due: not logged
    assert [entry[0] for entry in out.log] == ["c", "i", "t"]
    assert [a["alert_kind"] for a in out.alerts][:1] == ["VERIFICATION_OVERDUE"]
    again = LifecycleStage(codec, NAMES)
    assert again.replay(orjson.loads(b"".join(chunk_log(out.log)))) == 3
    assert again.machine.snapshot() == life.machine.snapshot()


def test_log_chunks_keep_order_and_size() -> None:
    entries = [["t", n] for n in range(1000)]
    chunks = chunk_log(entries, max_bytes=500)
    assert len(chunks) > 10 and all(len(c) <= 500 for c in chunks)
    assert [e for c in chunks for e in orjson.loads(c)] == entries


def test_lifecycle_messages_are_told_apart_from_links() -> None:
    assert is_lifecycle_message(orjson.loads(encode_tick(5)))
    assert is_lifecycle_message(orjson.loads(encode_input("t", 0, 1, None, b"x")))
    assert not is_lifecycle_message({"w": {}, "correlations": [], "views": []})
    with pytest.raises((ValueError, KeyError)):
        ForwardedInput.parse({"input": {"topic": "t", "partition": "0", "offset": 1, "value": ""}})


def test_an_expiring_tick_is_logged_and_replayed_to_the_same_state(
    codec: AvroCodec, caplog: pytest.LogCaptureFixture
) -> None:
    config = LifecycleConfig(case_retention_ms=64 * HOUR)
    life, out = LifecycleStage(codec, NAMES, config), LifecycleOutputs()
    life.tick(T0, out)  # the clock's first tick
    case_id = _opened(life, out)
    life.tick(T0 + 30 * HOUR, out)  # escalation due, nothing expires yet
    with caplog.at_level(logging.INFO, logger="streams.flows.verify"):
        life.tick(T0 + 66 * HOUR, out)
    assert out.expired == 1 and life.machine.case_count == 0
    assert "1 cases expired after 64 h without news (1 still waiting" in caplog.text
    assert [entry[0] for entry in out.log] == ["t", "c", "t", "t"]
    last = [a for a in out.alerts if a["case_id"] == case_id][-1]
    assert last["event"] == "Joint verification expired"
    again = LifecycleStage(codec, NAMES, config)
    again.replay(orjson.loads(b"".join(chunk_log(out.log))))
    assert again.machine.snapshot() == life.machine.snapshot()
