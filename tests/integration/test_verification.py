"""Joint verification through the real broker and worker: whole case lifecycles, refused
inputs dead-lettered with their reason, releases, overdue escalations across a restart,
and a rebuild of the lifecycle from the case stage's log."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.integration import java_client
from tests.integration.kafka_read import read_to_end
from xborder.agencies import load_agencies
from xborder.bench.kafka_io import Message, publish
from xborder.clickhouse import get_client
from xborder.deadletter import HEADER_ERROR, HEADER_REASON
from xborder.pipeline import Pipeline
from xborder.samples import sample_events
from xborder.settings import Settings
from xborder.topics import Topics, ensure_project_topics
from xborder.verification import fold_cases, released_details
from xborder.wire import WireCodec, codec_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXAMPLE_AGENCIES = Path(__file__).resolve().parents[2] / "deploy" / "agencies.example.json"
OFFICER = "ab" * 32
"""A pseudonymous officer token (64 hex); tests never hold real officer identities."""


class Harness:
    """Publishes incidents and agency inputs, reads back what the worker produced."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topics = Topics.from_settings(settings, load_agencies(settings.agencies_config))
        self.codec: WireCodec = codec_for(settings)
        self.bootstrap = settings.kafka.bootstrap_servers
        self.event_ids: dict[str, str] = {}
        """incident id -> event id of what was published"""
        self.events: dict[str, dict[str, Any]] = {}
        """incident id -> the JSON event published"""

    def publish_pair(self, now: datetime | None = None) -> list[tuple[str, str]]:
        """A cross-border pair sharing a vehicle (a case); returns both incident refs."""
        events = sample_events(2, now=now)
        publish(
            self.bootstrap,
            [
                Message(
                    self.topics.incidents(e["agency"]),
                    e["incident_id"].encode(),
                    self.codec.encode(
                        "IncidentReported", self.codec.from_json("IncidentReported", e)
                    ),
                )
                for e in events
            ],
        )
        self.event_ids.update((e["incident_id"], e["event_id"]) for e in events)
        self.events.update((e["incident_id"], e) for e in events)
        return [(e["agency"], e["incident_id"]) for e in events]

    def send(
        self, record: str, value: dict[str, Any], case_id: str, topic_agency: str | None = None
    ) -> str:
        """Write an agency input on ``verdicts.<topic_agency or its agency>``."""
        topic = self.topics.verdicts(topic_agency or value["agency"])
        publish(
            self.bootstrap, [Message(topic, case_id.encode(), self.codec.encode(record, value))]
        )
        return str(value["event_id"])

    def verdict(
        self, agency: str, case_id: str, decision: str, topic_agency: str | None = None
    ) -> str:
        value = {
            "event_id": str(uuid.uuid4()),
            "agency": agency,
            "target_kind": "CASE",
            "target_id": case_id,
            "decision": decision,
            "reason": f"{decision.lower()} after joint review",
            "officer_token": OFFICER,
            "officer_key_id": "example-key-1",
            "decided_at": _now_ms(),
        }
        return self.send("Verdict", value, case_id, topic_agency)

    def report(self, agency: str, case_id: str) -> str:
        return self.send(
            "CaseReport",
            {
                "event_id": str(uuid.uuid4()),
                "agency": agency,
                "case_id": case_id,
                "conclusion_id": None,
                "conclusion": "Same vehicle used in thefts on both sides; handled jointly.",
                "officer_token": OFFICER,
                "officer_key_id": "example-key-1",
                "requested_at": _now_ms(),
            },
            case_id,
        )

    def release(
        self, agency: str, case_id: str, incident: tuple[str, str], with_details: bool = False
    ) -> str:
        """``agency`` releases ``incident`` (owner, incident id) into ``case_id``, by
        reference or ``with_details`` of the published event (as the library copies them)."""
        owner, incident_id = incident
        details = None
        if with_details:
            details = self.codec.from_json(
                "ReleasedDetails", released_details(self.events[incident_id])
            )
        return self.send(
            "IncidentRelease",
            {
                "event_id": str(uuid.uuid4()),
                "agency": agency,
                "case_id": case_id,
                "incident": {
                    "agency": owner,
                    "incident_id": incident_id,
                    "event_id": self.event_ids[incident_id],
                },
                "released_at": _now_ms(),
                "audience": [],
                "details": details,
            },
            case_id,
        )

    def read(self, topic: str) -> list[tuple[str, dict[str, Any], dict[str, str]]]:
        """Every record of ``topic``: (record name, value, headers)."""
        out = []
        for message in read_to_end(self.bootstrap, [topic]):
            headers = {k: v.decode() for k, v in message.headers or []}
            if message.value and message.value[:1] in (b"\xc3", b"\x00"):
                decoded = self.codec.decode(message.value, logical_types=False)
                out.append((decoded.record_name.rpartition(".")[2], decoded.value, headers))
            else:
                out.append(("", {}, headers))
        return out

    def wait_for(self, what: str, check: Any, timeout_s: float = 60.0) -> Any:
        """Poll ``check()`` until it returns something truthy."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = check()
            if found:
                return found
            time.sleep(0.2)
        raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")

    def case_of(self, ref: tuple[str, str], timeout_s: float = 60.0) -> str:
        """The case a published incident joined (its CREATED or INCIDENT_ADDED event)."""

        def find() -> str | None:
            for name, value, _ in self.read(self.topics.cases):
                named = {(r["agency"], r["incident_id"]) for r in value.get("incidents", [])}
                if name == "CaseEvent" and ref in named:
                    return str(value["case_id"])
            return None

        return str(self.wait_for(f"the case of {ref}", find, timeout_s))

    def status(self, case_id: str) -> str | None:
        """The case's status by its highest-sequence case event."""
        events = [v for n, v, _ in self.read(self.topics.cases) if v.get("case_id") == case_id]
        return max(events, key=lambda v: v["sequence"])["status"] if events else None

    def verification(self, event_id: str) -> dict[str, Any] | None:
        for _, value, _ in self.read(self.topics.verification):
            if value.get("event_id") == event_id:
                return value
        return None

    def dead_letter(self, event_id: str) -> dict[str, str] | None:
        """Headers of the dead letter of an input, found by its event id."""
        for name, value, headers in self.read(self.topics.dead_letters):
            if name and value.get("event_id") == event_id:
                return headers
        return None

    def rejected(self, event_id: str, timeout_s: float = 60.0) -> tuple[str, str]:
        headers = self.wait_for(
            f"the dead letter of {event_id}", lambda: self.dead_letter(event_id), timeout_s
        )
        return headers[HEADER_REASON], headers[HEADER_ERROR]


def _now_ms() -> int:
    return int(time.time() * 1000)


@pytest.fixture
def harness(make_settings: Any) -> Iterator[tuple[Harness, Pipeline]]:
    # ticks often enough to be seen, rarely enough for the case stage to be caught up
    settings = make_settings(**{"verification.tick_s": 3.0})
    h = Harness(settings)
    ensure_project_topics(settings, h.topics)
    pipeline = Pipeline(settings)
    with pipeline.running():
        pipeline.wait_until_settled()
        yield h, pipeline


def _clickhouse(settings: Settings, sql: str) -> list[tuple[Any, ...]]:
    client = get_client(settings)
    try:
        return [tuple(row) for row in client.query(sql).result_rows]
    finally:
        client.close()


def test_whole_lifecycles_and_refused_inputs(harness: tuple[Harness, Pipeline]) -> None:
    h, pipeline = harness
    agreed_pair, disputed_pair, early_pair = h.publish_pair(), h.publish_pair(), h.publish_pair()
    # before the hit there is no case to release into
    early_release = h.release("cantho", "no-such-case", early_pair[0])
    agreed, disputed, early = (h.case_of(p[0]) for p in (agreed_pair, disputed_pair, early_pair))
    assert len({agreed, disputed, early}) == 3
    assert h.status(agreed) == "PENDING_VERIFICATION"

    # confirm / confirm -> agreed (a conclusion naming both verdicts) -> reported
    first = h.verdict("cantho", agreed, "CONFIRM")
    assert h.wait_for("the first verdict accepted", lambda: h.verification(first))
    assert h.status(agreed) == "PENDING_VERIFICATION"
    second = h.verdict("angiang", agreed, "CONFIRM")
    h.wait_for("the second verdict accepted", lambda: h.verification(second))

    def conclusion() -> dict[str, Any] | None:
        for name, value, _ in h.read(h.topics.verification):
            if name == "CaseConclusion" and value["case_id"] == agreed:
                return value
        return None

    agreed_record = h.wait_for("the agreed conclusion", conclusion)
    assert {v["event_id"] for v in agreed_record["verdicts"]} == {first, second}
    assert {(i["agency"], i["incident_id"]) for i in agreed_record["incidents"]} == set(agreed_pair)
    assert h.status(agreed) == "CONFIRMED"
    reported = h.report("cantho", agreed)
    assert h.wait_for("the report accepted", lambda: h.verification(reported))
    h.wait_for("the case concluded", lambda: h.status(agreed) == "CONCLUDED")
    again = h.report("angiang", agreed)
    assert h.rejected(again)[0] == "already-reported"

    # confirm / reject -> disputed; a report of a disputed case is refused
    h.verdict("cantho", disputed, "CONFIRM")
    h.verdict("angiang", disputed, "REJECT")
    h.wait_for("the dispute", lambda: h.status(disputed) == "DISPUTED")
    reason, error = h.rejected(h.report("cantho", disputed))
    assert reason == "case-disputed" and "angiang" in error

    # a report before agreement, a verdict on another agency's topic, an unknown case
    reason, error = h.rejected(h.report("angiang", early))
    assert reason == "case-pending" and "waiting for" in error
    assert h.rejected(h.verdict("angiang", early, "CONFIRM", topic_agency="cantho"))[0] == (
        "wrong-topic"
    )
    assert h.rejected(h.verdict("cantho", "f" * 64, "CONFIRM"))[0] == "unknown-case"
    assert h.rejected(early_release)[0] == "unknown-case"

    # after the hit the owner releases its incident: the accepted copy names the audience
    # and carries the details, which is how angiang reads them on the topic
    released = h.release("cantho", early, early_pair[0], with_details=True)
    record = h.wait_for("the release accepted", lambda: h.verification(released))
    assert record["audience"] == ["angiang", "cantho"]
    published = h.events[early_pair[0][1]]
    assert record["details"]["location"]["lat"] == published["location"]["lat"]
    assert [s["token"] for s in record["details"]["subjects"]] == [
        s["token"] for s in published["subjects"]
    ]
    assert h.rejected(h.release("angiang", early, early_pair[0]))[0] == "not-own-incident"
    assert h.status(early) == "PENDING_VERIFICATION"  # a release changes no status

    # the analysts' tables, once the sink has stored everything (it owns embedded ClickHouse)
    pipeline.wait_until_drained(h.topics)
    pipeline.stop()
    s = h.settings
    statuses = dict(_clickhouse(s, "SELECT case_id, status FROM cases_current"))
    assert statuses == {
        agreed: "CONCLUDED",
        disputed: "DISPUTED",
        early: "PENDING_VERIFICATION",
    }
    verdicts = _clickhouse(
        s, "SELECT case_id, agency, decision FROM verdicts FINAL ORDER BY case_id, agency"
    )
    assert sorted(verdicts) == sorted(
        [
            (agreed, "angiang", "CONFIRM"),
            (agreed, "cantho", "CONFIRM"),
            (disputed, "angiang", "REJECT"),
            (disputed, "cantho", "CONFIRM"),
        ]
    )
    [(conclusion_id, case_id, agencies)] = _clickhouse(
        s, "SELECT conclusion_id, case_id, verdict_agencies FROM case_conclusions FINAL"
    )
    assert (case_id, agencies) == (agreed, ["angiang", "cantho"])
    assert _clickhouse(s, "SELECT case_id, agency, conclusion_id FROM case_reports FINAL") == [
        (agreed, "cantho", conclusion_id)
    ]
    assert {a for _, a in _clickhouse(s, "SELECT case_id, agency FROM time_to_agreement")} == {
        "angiang",
        "cantho",
    }
    # hit, then release: angiang sees cantho's incident in the early case, released; the
    # details of nothing else
    hits = _clickhouse(
        s,
        f"SELECT owner, incident_id, released FROM case_hits "
        f"WHERE viewer = 'angiang' AND case_id = '{early}'",
    )
    assert hits == [("cantho", early_pair[0][1], True)]
    released = _clickhouse(
        s,
        "SELECT case_id, viewer, owner, incident_id, category, details_from, "
        "length(subject_tokens) FROM released_incidents",
    )
    assert released == [
        (
            early,
            "angiang",
            "cantho",
            early_pair[0][1],
            "THEFT",
            "release",
            len(published["subjects"]),
        )
    ]
    not_released = _clickhouse(
        s,
        f"SELECT count() FROM case_hits WHERE case_id = '{agreed}' AND released",
    )
    assert not_released == [(0,)]


def test_garbage_on_a_verdict_topic_is_dead_lettered_at_the_door(
    harness: tuple[Harness, Pipeline],
) -> None:
    h, _ = harness
    incident = h.codec.encode(
        "IncidentReported", h.codec.from_json("IncidentReported", sample_events(1)[0])
    )
    publish(
        h.bootstrap,
        [
            Message(h.topics.verdicts("cantho"), b"k1", b"not avro at all"),
            Message(h.topics.verdicts("cantho"), b"k2", incident),
        ],
    )

    def letters() -> list[str] | None:
        found = [
            headers[HEADER_REASON]
            for _, _, headers in h.read(h.topics.dead_letters)
            if headers.get("xborder-dlq-topic") == h.topics.verdicts("cantho")
        ]
        return found if len(found) >= 2 else None

    assert sorted(h.wait_for("two dead letters", letters)) == ["undecodable", "unexpected-record"]


def test_java_agency_clients_confirm_a_case_and_read_the_agreed_conclusion(
    harness: tuple[Harness, Pipeline], tmp_path: Path
) -> None:
    """The boundary with clients the project did not write: each agency's Java system
    (Apache Avro's BinaryMessageEncoder, kafka-clients with its defaults) confirms the case
    on its own verdict topic, and reads the agreed conclusion with BinaryMessageDecoder."""
    h, _ = harness
    pair = h.publish_pair()
    case_id = h.case_of(pair[0])
    verdict_schema = java_client.schema_file(h.codec, "Verdict", tmp_path)
    sent = {}
    for agency in ("cantho", "angiang"):
        sent[agency] = str(uuid.uuid4())
        java_client.run(
            h.settings, "send-verdict", h.bootstrap, h.topics.verdicts(agency),
            str(verdict_schema), case_id, agency, "CONFIRM", OFFICER, "example-key-1",
            sent[agency],
        )  # fmt: skip
    h.wait_for("the case agreed", lambda: h.status(case_id) == "CONFIRMED")
    conclusion_schema = java_client.schema_file(h.codec, "CaseConclusion", tmp_path)
    lines = java_client.run(
        h.settings, "read", h.bootstrap, h.topics.verification, str(conclusion_schema), "4000"
    )
    (conclusion,) = [c for c in map(json.loads, lines) if c["case_id"] == case_id]
    assert {v["event_id"]: v["agency"] for v in conclusion["verdicts"]} == {
        sent["cantho"]: "cantho",
        sent["angiang"]: "angiang",
    }
    assert {(i["agency"], i["incident_id"]) for i in conclusion["incidents"]} == set(pair)


def test_verification_state_moves_with_its_partitions_when_a_worker_joins_and_leaves(
    make_settings: Any,
) -> None:
    """The first verdicts land on one worker; a second worker joins (the cases' lifecycle
    partitions move and their state is restored from the changelog), the second verdicts
    agree every case; it leaves again, and the reports are accepted on the first worker."""
    settings = make_settings(**{"verification.tick_s": 3.0})
    h = Harness(settings)
    ensure_project_topics(settings, h.topics)
    pipeline = Pipeline(settings, workers=1, sink=False)
    with pipeline.running():
        pipeline.wait_until_settled()
        pairs = [h.publish_pair() for _ in range(6)]  # all six, then their cases
        cases = [h.case_of(pair[0]) for pair in pairs]
        first = [h.verdict("cantho", case_id, "CONFIRM") for case_id in cases]
        for event_id in first:
            h.wait_for("the first verdict accepted", lambda e=event_id: h.verification(e))

        pipeline.workers = 2
        pipeline.start_worker(1)
        pipeline.wait_until_settled()
        second = [h.verdict("angiang", case_id, "CONFIRM") for case_id in cases]
        for event_id in second:
            h.wait_for("the second verdict accepted", lambda e=event_id: h.verification(e))
        for case_id in cases:
            h.wait_for("the case agreed", lambda c=case_id: h.status(c) == "CONFIRMED")
        conclusions = {
            v["case_id"]: {x["event_id"] for x in v["verdicts"]}
            for name, v, _ in h.read(h.topics.verification)
            if name == "CaseConclusion"
        }
        assert conclusions == {c: {f, s} for c, f, s in zip(cases, first, second, strict=True)}

        leaving = pipeline.processes.pop("worker-1")
        leaving.terminate()
        leaving.wait(timeout=60)
        pipeline.workers = 1
        pipeline.wait_until_settled()
        reports = [h.report("cantho", case_id) for case_id in cases]
        for event_id in reports:
            h.wait_for("the report accepted", lambda e=event_id: h.verification(e))
        assert {h.status(case_id) for case_id in cases} == {"CONCLUDED"}
        # nothing was applied twice or refused on the way
        assert not [
            headers
            for _, _, headers in h.read(h.topics.dead_letters)
            if headers.get("xborder-dlq-topic", "").startswith("verdicts")
        ]


def test_overdue_escalation_survives_a_worker_restart(make_settings: Any) -> None:
    # a case waits from its link's event time: the pair below is reported now, and the
    # timeout makes it overdue 25 s later, while the worker is being restarted
    timeout_s = 25.0
    settings = make_settings(
        **{
            "verification.tick_s": 0.5,
            "verification.timeout_hours": timeout_s / 3600,
            "verification.escalation_interval_hours": 3600 / 3600,
        }
    )
    h = Harness(settings)
    ensure_project_topics(settings, h.topics)
    pipeline = Pipeline(settings, sink=False)
    with pipeline.running():
        pipeline.wait_until_settled()
        # sample events are reported 40 min after they occur, 2 h before ``now``
        started = datetime.now(UTC)
        pair = h.publish_pair(now=started + timedelta(minutes=80))
        case_id = h.case_of(pair[0])
        worker = pipeline.processes.pop("worker-0")
        worker.terminate()
        worker.wait()
        time.sleep(2)
        pipeline.start_worker(0)
        pipeline.wait_until_settled()

        def escalations() -> list[dict[str, Any]]:
            return [
                v
                for topic in h.topics.all_alerts
                for name, v, _ in h.read(topic)
                if v.get("alert_kind") == "VERIFICATION_OVERDUE" and v["case_id"] == case_id
            ]

        def sent_to_both() -> list[dict[str, Any]] | None:
            found = escalations()  # one record per agency's alert topic, written one by one
            return found if len(found) >= 2 else None

        alerts = h.wait_for("the escalation", sent_to_both, timeout_s=timeout_s + 60)
        # one escalation, sent to both agencies' alert topics, due at the timeout
        assert {a["identifier"] for a in alerts} == {alerts[0]["identifier"]}
        assert {tuple(a["target_agencies"]) for a in alerts} == {("angiang", "cantho")}
        assert len(alerts) == 2
        assert "awaiting angiang, cantho" in alerts[0]["headline"]
        time.sleep(3)  # more ticks pass: the escalation is not repeated
        assert len(escalations()) == 2
        # and it shows on the case, as a duty officer reads it
        case = fold_cases(settings, h.codec)[case_id]
        assert [e["identifier"] for e in case.escalations] == [alerts[0]["identifier"]]
        assert case.status == "PENDING_VERIFICATION" and case.awaiting == ["angiang", "cantho"]


def test_a_rebuild_from_the_log_equals_the_live_outputs(
    harness: tuple[Harness, Pipeline],
) -> None:
    from streams.flows.rebuild import rebuild_case_log
    from streams.worker import correlator_config, lifecycle_config

    h, _ = harness
    agreed_pair, disputed_pair = h.publish_pair(), h.publish_pair()
    agreed, disputed = h.case_of(agreed_pair[0]), h.case_of(disputed_pair[0])
    h.verdict("cantho", agreed, "CONFIRM")
    h.verdict("angiang", agreed, "CONFIRM")
    h.wait_for("agreement", lambda: h.status(agreed) == "CONFIRMED")
    h.report("angiang", agreed)
    h.verdict("angiang", disputed, "REJECT")
    h.wait_for("the report", lambda: h.status(agreed) == "CONCLUDED")
    h.wait_for("the dispute", lambda: h.status(disputed) == "DISPUTED")

    agencies = load_agencies(h.settings.agencies_config)
    log, malformed = rebuild_case_log(
        h.settings,
        h.topics,
        h.codec,
        correlator_config(h.settings, agencies),
        lifecycle_config(h.settings),
    )
    live_cases = {
        (v["case_event_id"], v["status"], v["sequence"])
        for name, v, _ in h.read(h.topics.cases)
        if name == "CaseEvent"
    }
    rebuilt_cases = {(e["case_event_id"], e["status"], e["sequence"]) for e in log.case_events}
    assert malformed == 0
    assert rebuilt_cases == live_cases and len(live_cases) == 5
    live_verification = {
        (name, v.get("event_id") or v.get("conclusion_id"))
        for name, v, _ in h.read(h.topics.verification)
    }
    rebuilt = {
        (name, v.get("event_id") or v.get("conclusion_id")) for name, _, v in log.lives.verification
    }
    assert rebuilt == live_verification
    assert {name for name, _ in rebuilt} == {"Verdict", "CaseConclusion", "CaseReport"}
    assert log.life.machine.status(agreed) == "CONCLUDED"
    assert log.life.machine.status(disputed) == "DISPUTED"


def _three_agencies(directory: Path) -> Path:
    """The example agencies plus a third whose jurisdiction lies away from the boundary."""
    example = json.loads(EXAMPLE_AGENCIES.read_text())
    example["agencies"].append({"id": "vinhlong", "name": "Cong an tinh Vinh Long (example)"})
    shapes = json.loads((EXAMPLE_AGENCIES.parent / example["jurisdictions"]).read_text())
    box = [[105.90, 9.70], [105.98, 9.70], [105.98, 9.80], [105.90, 9.80], [105.90, 9.70]]
    shapes["features"].append(
        {
            "type": "Feature",
            "properties": {"agency": "vinhlong", "approximate": True},
            "geometry": {"type": "Polygon", "coordinates": [box]},
        }
    )
    (directory / "jurisdictions.geojson").write_text(json.dumps(shapes))
    example["jurisdictions"] = "jurisdictions.geojson"
    path = directory / "agencies.json"
    path.write_text(json.dumps(example))
    return path


def test_a_verdict_about_a_case_the_agency_is_not_in_is_refused(
    make_settings: Any, tmp_path: Path
) -> None:
    settings = make_settings(agencies_config=_three_agencies(tmp_path))
    h = Harness(settings)
    ensure_project_topics(settings, h.topics)
    pipeline = Pipeline(settings, sink=False)
    with pipeline.running():
        pipeline.wait_until_settled()
        case_id = h.case_of(h.publish_pair()[0])
        reason, error = h.rejected(h.verdict("vinhlong", case_id, "CONFIRM"))
        assert reason == "not-involved" and "vinhlong" in error
        report = h.report("vinhlong", case_id)
        assert h.rejected(report)[0] == "not-involved"
        assert h.status(case_id) == "PENDING_VERIFICATION"
