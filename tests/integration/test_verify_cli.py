"""``xborder verify`` and ``xborder cases`` on the real broker, without a worker: what they
send, their one-line errors and exit codes, and reading outcomes back from the topics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest
from kafka import KafkaProducer

from tests.integration.kafka_read import consume_all
from xborder.agencies import load_agencies
from xborder.deadletter import DeadLetter
from xborder.samples import sample_events
from xborder.settings import Settings, to_env
from xborder.topics import Topics, ensure_project_topics
from xborder.verification import (
    Officer,
    verdict_record,
    wait_for_outcome,
)
from xborder.wire import codec_for

pytestmark = pytest.mark.integration

TOKEN = "c5" * 32
CASE = "07" * 32
OFFICER_FLAGS = ("--officer-token", TOKEN, "--officer-key-id", "key-2026-03")


def _xborder(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "xborder", *args],
        env={**os.environ, **to_env(settings)},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def _topics(settings: Settings) -> Topics:
    return Topics.from_settings(settings, load_agencies(settings.agencies_config))


def _produce(
    settings: Settings,
    topic: str,
    key: str,
    value: bytes,
    headers: list[tuple[str, bytes]] | None = None,
) -> None:
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers)
    try:
        producer.send(topic, key=key.encode(), value=value, headers=headers or []).get(60)
    finally:
        producer.close()


@pytest.fixture
def ready(make_settings) -> Settings:
    settings: Settings = make_settings()
    ensure_project_topics(settings, _topics(settings))
    return settings


def test_without_topics_verify_says_how_to_create_them(make_settings) -> None:
    settings = make_settings()
    result = _xborder(settings, "verify", "confirm", CASE, "--agency", "cantho", *OFFICER_FLAGS)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"xborder verify: error: topic {_topics(settings).verdicts('cantho')} does not exist; "
        "create it with 'xborder topics create'"
    ]


def test_without_a_worker_the_verdict_is_sent_and_the_wait_ends_in_one_line(ready) -> None:
    result = _xborder(
        ready, "verify", "reject", CASE, "--agency", "cantho", "--reason", "another bike",
        *OFFICER_FLAGS, "--wait", "1",
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xborder verify: timeout: no outcome of ")
    assert "is the worker running" in lines[0]
    sent = consume_all(ready.kafka.bootstrap_servers, _topics(ready).verdicts("cantho"), 1)
    assert len(sent) == 1 and sent[0].key == CASE.encode()
    verdict = codec_for(ready).decode(sent[0].value, logical_types=False)
    assert verdict.record_name == "xborder.v1.Verdict"
    assert verdict.value["target_id"] == CASE and verdict.value["decision"] == "REJECT"
    assert verdict.value["officer_token"] == TOKEN and verdict.value["agency"] == "cantho"


def test_wait_zero_only_sends_and_prints_the_event_id(ready) -> None:
    result = _xborder(
        ready, "verify", "confirm", CASE, "--agency", "cantho", *OFFICER_FLAGS, "--wait", "0"
    )
    assert result.returncode == 0, result.stderr
    event_id = result.stdout.split()[1]
    assert str(uuid.UUID(event_id)) == event_id
    assert result.stdout.startswith(f"sent: {event_id} to {_topics(ready).verdicts('cantho')}")


def test_release_with_details_file_carries_the_events_details(ready, tmp_path) -> None:
    event = dict(sample_events(2)[1], narrative="Example: two groups on the boundary road.")
    older = dict(event, event_id=str(uuid.uuid4()), narrative="an older version")
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(json.dumps(e) for e in (older, sample_events(2)[0], event)) + "\n")
    agency, incident = event["agency"], event["incident_id"]
    result = _xborder(
        ready, "verify", "release", CASE, "--agency", agency, "--incident", incident,
        "--details-file", str(events), "--wait", "0", *OFFICER_FLAGS,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    codec = codec_for(ready)
    (message,) = consume_all(ready.kafka.bootstrap_servers, _topics(ready).verdicts(agency), 1)
    release = codec.decode(message.value).value
    assert str(release["incident"]["event_id"]) == event["event_id"]  # the newest one
    assert release["details"]["narrative"] == event["narrative"]
    assert release["details"]["location"]["lat"] == event["location"]["lat"]
    assert (release["officer_token"], release["officer_key_id"]) == (TOKEN, "key-2026-03")

    missing = _xborder(
        ready, "verify", "release", CASE, "--agency", agency, "--incident", "NO-SUCH",
        "--details-file", str(events), "--wait", "0", *OFFICER_FLAGS,
    )  # fmt: skip
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        f"xborder verify: error: --details-file {events} has no {agency} incident NO-SUCH; "
        "give the file of events your agency published"
    ]


def test_outcomes_are_found_on_verification_and_in_the_dead_letters(ready) -> None:
    codec, names = codec_for(ready), _topics(ready)
    officer = Officer(TOKEN, "key-2026-03")
    accepted = verdict_record("cantho", CASE, "CONFIRM", "", officer)
    _produce(ready, names.verification, CASE, codec.encode("Verdict", accepted))
    refused = verdict_record("angiang", CASE, "CONFIRM", "", officer)
    original = codec.encode("Verdict", refused)
    letter = DeadLetter(
        CASE.encode(), original, "case-agreed", "case is agreed", names.verdicts("angiang"), 0, 3
    )
    _produce(ready, names.dead_letters, CASE, original, letter.headers())

    found = wait_for_outcome(ready, codec, accepted["event_id"], 20)
    assert found.accepted and found.record["decision"] == "CONFIRM"
    assert found.line().startswith(f"accepted: CONFIRM by cantho on case {CASE}")
    found = wait_for_outcome(ready, codec, refused["event_id"], 20)
    assert not found.accepted
    assert found.line() == "rejected (case-agreed): case is agreed"


def test_cases_lists_from_the_topic_and_an_unknown_case_is_one_line(ready) -> None:
    codec = codec_for(ready)
    event = {
        "case_event_id": "e" * 64,
        "case_id": CASE,
        "event_type": "CREATED",
        "incidents": [
            {"agency": "angiang", "incident_id": "AG-1", "event_id": str(uuid.uuid4())},
            {"agency": "cantho", "incident_id": "CT-1", "event_id": str(uuid.uuid4())},
        ],
        "correlation_ids": ["c" * 64],
        "merged_case_ids": [],
        "status": "PENDING_VERIFICATION",
        "agencies": ["angiang", "cantho"],
        "conclusion": None,
        "at": 1_700_000_000_000,
        "sequence": 1_000_000,
        "possible_double_report": False,
    }
    _produce(ready, _topics(ready).cases, CASE, codec.encode("CaseEvent", event))

    listed = _xborder(ready, "cases", "list")
    assert listed.returncode == 0, listed.stderr
    assert f"{CASE[:12]}…  PENDING_VERIFICATION  angiang,cantho" in listed.stdout
    shown = _xborder(ready, "cases", "show", CASE[:8])
    assert shown.returncode == 0 and "  cantho  CT-1  " in shown.stdout
    unknown = _xborder(ready, "cases", "show", "ffffffff")
    assert unknown.returncode == 1
    assert unknown.stderr.strip().splitlines() == [
        "xborder cases: error: no case 'ffffffff'; see 'xborder cases list'"
    ]
