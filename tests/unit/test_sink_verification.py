"""Joint verification in ClickHouse: the sink's rows for verdicts, conclusions, reports
and releases, and the case views, in the real engine (embedded chDB, one fresh database
per test).

Records go through the sink as it runs: bodies of the current schemas as Avro
containers ClickHouse reads itself, or rows decoded in Python; both must give the same
rows. The analyst guide's queries run against the same data.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition
from clickhouse_connect.driver.client import Client

from sinks.clickhouse import ClickHouseIncidentSink, Row
from sinks.decode import WriterSchemas
from sinks.rows import TABLE_COLUMNS, rows_for
from xborder.clickhouse import get_client
from xborder.metrics import SinkMetrics
from xborder.schemas import SchemaStore
from xborder.settings import load_settings
from xborder.wire import WireCodec

DOCS = Path(__file__).resolve().parents[2] / "docs"
T0 = 1_773_914_400_000
"""2026-03-19T10:00:00Z in milliseconds."""
MINUTE = 60_000
ANGIANG = {"agency": "angiang", "incident_id": "AG-1", "event_id": str(uuid.UUID(int=1))}
CANTHO = {"agency": "cantho", "incident_id": "CT-1", "event_id": str(uuid.UUID(int=2))}
RELEASED_DETAILS = {
    "occurred_at": T0 - 10 * MINUTE,
    "location": {
        "lat": 10.61,
        "lon": 105.43,
        "admin_unit_code": "30589",
        "admin_unit_name": "Boundary ward",
        "address": None,
    },
    "category": "PUBLIC_DISORDER",
    "severity": "LOW",
    "subjects": [
        {
            "role": "SUSPECT",
            "kind": "VEHICLE",
            "token": "c3" * 32,
            "key_id": "key-1",
            "descriptors": {"colour": "red"},
        }
    ],
    "modus_operandi": ["brawl"],
    "narrative": "Two groups fought on the boundary road.",
}
NEW_TABLES = ("verdicts", "case_conclusions", "case_reports", "incident_releases")

Records = list[tuple[str, dict[str, Any]]]


def at(ms: int) -> datetime:
    """A time as the client returns a DateTime64(3, 'UTC'): naive, in UTC."""
    return datetime.fromtimestamp(ms / 1000, UTC).replace(tzinfo=None)


@pytest.fixture(scope="module")
def codec(store: SchemaStore) -> WireCodec:
    """The sink's codec over the working tree's schemas."""
    return WireCodec(store)


@pytest.fixture(scope="module")
def make_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[], Client]]:
    """Factory of clients on fresh, migrated databases of one embedded chDB directory."""
    data_dir = tmp_path_factory.mktemp("chdb")
    clients: list[Client] = []

    def make() -> Client:
        name = f"t_{uuid.uuid4().hex[:10]}"
        settings = load_settings(data_dir=data_dir, **{"clickhouse.database": name})
        clients.append(get_client(settings))
        return clients[-1]

    try:
        yield make
    finally:
        for client in clients:
            client.close()


PYTHON_ONLY = {"IncidentRelease"}
"""Records the sink always decodes in Python (a release's details are a nullable record)."""


def write(client: Client, codec: WireCodec, records: Records, containers: bool = True) -> None:
    """Write ``records`` through the sink: as Avro containers, or as rows decoded in Python."""
    schemas = WriterSchemas(codec)
    metrics = SinkMetrics()
    sink = ClickHouseIncidentSink(client, schemas, 10**6, 60.0, metrics, embedded=True)
    tp = TopicPartition("verification", 0)
    for offset, (record, value) in enumerate(records):
        data = codec.encode(record, value)
        writer = schemas.writer(data)
        if containers and record not in PYTHON_ONLY:
            assert sink.container(writer) is not None, record
            sink.add(tp, offset, (writer, data, tp.topic, tp.partition, offset))
            continue
        name, decoded = schemas.decode(data, writer)
        for table, row in rows_for(name, decoded, tp.topic, tp.partition, offset):
            sink.add(tp, offset, Row(table, row))
    sink.flush()
    assert metrics.flushes == {"ok": 1}


def case_event(
    case_id: str,
    event_type: str,
    sequence: int,
    status: str,
    at_ms: int,
    **fields: Any,
) -> tuple[str, dict[str, Any]]:
    value: dict[str, Any] = {
        "case_event_id": f"{case_id}/{event_type}/{sequence}/{status}/{at_ms}",
        "case_id": case_id,
        "event_type": event_type,
        "incidents": [],
        "correlation_ids": [],
        "merged_case_ids": [],
        "status": status,
        "agencies": ["angiang", "cantho"],
        "conclusion": None,
        "at": at_ms,
        "sequence": sequence,
        "possible_double_report": False,
    }
    value.update(fields)
    return "CaseEvent", value


def verdict(case_id: str, agency: str, decision: str, decided_ms: int) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{case_id}/{agency}/{decided_ms}")),
        "agency": agency,
        "target_kind": "CASE",
        "target_id": case_id,
        "decision": decision,
        "reason": "" if decision == "CONFIRM" else "the plates differ",
        "officer_token": f"officer-{agency}",
        "officer_key_id": "key-1",
        "decided_at": decided_ms,
    }


def verification(case_id: str) -> Records:
    """Case ``case_id`` agreed (angiang after 5 minutes, cantho after 20), reported by
    cantho, and angiang's incident released to both."""
    verdicts = [
        verdict(case_id, "angiang", "CONFIRM", T0 + 5 * MINUTE),
        verdict(case_id, "cantho", "CONFIRM", T0 + 20 * MINUTE),
    ]
    conclusion = {
        "conclusion_id": f"conclusion-{case_id}",
        "case_id": case_id,
        "case_version": 1,
        "agreed_at": T0 + 20 * MINUTE,
        "agencies": ["angiang", "cantho"],
        "incidents": [ANGIANG, CANTHO],
        "correlation_ids": [f"corr-{case_id}"],
        "possible_double_report": True,
        "verdicts": [
            {
                "event_id": v["event_id"],
                "agency": v["agency"],
                "officer_token": v["officer_token"],
                "officer_key_id": v["officer_key_id"],
                "decided_at": v["decided_at"],
                "reason": v["reason"],
            }
            for v in verdicts
        ],
    }
    report = {
        "event_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{case_id}/report")),
        "agency": "cantho",
        "case_id": case_id,
        "conclusion_id": conclusion["conclusion_id"],
        "conclusion": "One theft ring on both sides of the boundary.",
        "officer_token": "officer-cantho",
        "officer_key_id": "key-1",
        "requested_at": T0 + 30 * MINUTE,
    }
    release = {
        "event_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{case_id}/release")),
        "agency": "angiang",
        "case_id": case_id,
        "incident": ANGIANG,
        "released_at": T0 + 25 * MINUTE,
        "audience": ["angiang", "cantho"],
    }
    with_details = {
        "event_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{case_id}/release-details")),
        "agency": "cantho",
        "case_id": case_id,
        "incident": CANTHO,
        "released_at": T0 + 26 * MINUTE,
        "audience": ["angiang", "cantho"],
        "officer_token": "e5" * 32,
        "officer_key_id": "key-1",
        "details": RELEASED_DETAILS,
    }
    return [
        *(("Verdict", v) for v in verdicts),
        ("CaseConclusion", conclusion),
        ("CaseReport", report),
        ("IncidentRelease", release),
        ("IncidentRelease", with_details),
    ]


def cases() -> Records:
    """Case events covering the ways the current status and liveness are decided."""
    double = {"possible_double_report": True, "correlation_ids": ["corr-double"]}
    created = case_event(
        "case-a", "CREATED", 1, "PENDING_VERIFICATION", T0, incidents=[ANGIANG, CANTHO]
    )
    return [
        # the brief's example, its CREATED delivered twice
        created,
        created,
        case_event("case-a", "STATUS_CHANGED", 2, "CONFIRMED", T0 + 20 * MINUTE),
        # ties on sequence (the lifecycle machine alone stamps its statuses with that of
        # the change they judged): the stage's change first, then the statuses
        case_event("case-b", "CREATED", 3_000_000, "PENDING_VERIFICATION", T0),
        case_event("case-b", "STATUS_CHANGED", 3_000_000, "DISPUTED", T0 + 60 * MINUTE),
        # an officer's clock behind the other's: CONFIRMED still ends the dispute
        case_event("case-b", "STATUS_CHANGED", 3_000_000, "CONFIRMED", T0 + 30 * MINUTE),
        case_event(
            "case-b", "CONCLUDED", 3_000_000, "CONCLUDED", T0 + 40 * MINUTE, conclusion="agreed"
        ),
        # the case stage marks a double report (writing its default status), the
        # lifecycle restates the status it holds
        case_event("case-b", "STATUS_CHANGED", 4_000_000, "PENDING_VERIFICATION", T0, **double),
        case_event(
            "case-b",
            "STATUS_CHANGED",
            4_000_000,
            "CONCLUDED",
            T0 + 120 * MINUTE,
            possible_double_report=True,
        ),
        # case-c opened a day earlier and was absorbed by case-d; case-e was absorbed,
        # then opened again under the same id
        case_event("case-c", "CREATED", 5_000_000, "PENDING_VERIFICATION", T0 - 1440 * MINUTE),
        case_event("case-e", "CREATED", 5_000_001, "PENDING_VERIFICATION", T0 - 60 * MINUTE),
        case_event("case-d", "CREATED", 6_000_000, "PENDING_VERIFICATION", T0),
        case_event(
            "case-d",
            "MERGED",
            7_000_000,
            "PENDING_VERIFICATION",
            T0 + 60 * MINUTE,
            merged_case_ids=["case-c", "case-e"],
        ),
        case_event("case-e", "CREATED", 8_000_000, "PENDING_VERIFICATION", T0 + 90 * MINUTE),
        # agreed, then reopened by a new link (whose event time is earlier)
        case_event("case-f", "CREATED", 9_000_000, "PENDING_VERIFICATION", T0),
        case_event("case-f", "STATUS_CHANGED", 9_000_001, "CONFIRMED", T0 + 60 * MINUTE),
        case_event("case-f", "INCIDENT_ADDED", 9_000_002, "PENDING_VERIFICATION", T0 + 30 * MINUTE),
    ]


def select(client: Client, sql: str) -> list[dict[str, Any]]:
    result = client.query(sql)
    return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]


def table_rows(client: Client, table: str) -> list[tuple[Any, ...]]:
    names = ", ".join(f"`{name}`" for name, _ in TABLE_COLUMNS[table])
    return [
        tuple(r) for r in client.query(f"SELECT {names} FROM {table} ORDER BY {names}").result_rows
    ]


def test_both_write_paths_give_the_same_verification_rows(
    make_database: Callable[[], Client], codec: WireCodec
) -> None:
    records = [*verification("case-a"), *cases()]
    in_containers, in_python = make_database(), make_database()
    write(in_containers, codec, records, containers=True)
    write(in_python, codec, records, containers=False)
    for table in (*NEW_TABLES, "case_events"):
        rows = table_rows(in_containers, table)
        assert rows, table
        assert rows == table_rows(in_python, table), table


def test_verification_rows_hold_the_record_fields(
    make_database: Callable[[], Client], codec: WireCodec
) -> None:
    client = make_database()
    records = verification("case-a")
    write(client, codec, records)
    angiang = records[0][1]

    verdicts = select(client, "SELECT * FROM verdicts FINAL ORDER BY agency")
    assert [(v["case_id"], v["agency"], v["decision"]) for v in verdicts] == [
        ("case-a", "angiang", "CONFIRM"),
        ("case-a", "cantho", "CONFIRM"),
    ]
    assert str(verdicts[0]["event_id"]) == angiang["event_id"]
    assert verdicts[0]["decided_at"] == at(T0 + 5 * MINUTE)
    assert verdicts[0]["officer_token"] == "officer-angiang"

    (conclusion,) = select(client, "SELECT * FROM case_conclusions FINAL")
    assert conclusion["agreed_at"] == at(T0 + 20 * MINUTE)
    assert conclusion["incident_agencies"] == ["angiang", "cantho"]
    assert conclusion["incident_ids"] == ["AG-1", "CT-1"]
    assert [str(e) for e in conclusion["incident_event_ids"]] == [
        ANGIANG["event_id"],
        CANTHO["event_id"],
    ]
    assert conclusion["possible_double_report"] is True
    assert str(conclusion["verdict_event_ids"][0]) == angiang["event_id"]
    assert conclusion["verdict_decided_at"] == [at(T0 + 5 * MINUTE), at(T0 + 20 * MINUTE)]

    (report,) = select(client, "SELECT * FROM case_reports FINAL")
    assert (report["case_id"], report["agency"], report["conclusion_id"]) == (
        "case-a",
        "cantho",
        "conclusion-case-a",
    )
    assert report["requested_at"] == at(T0 + 30 * MINUTE)

    release, detailed = select(client, "SELECT * FROM incident_releases FINAL ORDER BY agency")
    assert (release["agency"], release["incident_id"], str(release["incident_event_id"])) == (
        "angiang",
        "AG-1",
        ANGIANG["event_id"],
    )
    assert release["audience"] == ["angiang", "cantho"]
    assert release["released_at"] == at(T0 + 25 * MINUTE)
    assert not release["has_details"] and release["details_narrative"] is None
    assert detailed["has_details"] and detailed["details_category"] == "PUBLIC_DISORDER"
    assert detailed["details_subject_descriptors"] == [{"colour": "red"}]
    assert detailed["details_occurred_at"] == at(T0 - 10 * MINUTE)
    assert (detailed["officer_token"], detailed["officer_key_id"]) == ("e5" * 32, "key-1")
    assert release["officer_token"] == ""  # an older producer's release names no officer
    (audited,) = select(
        client, "SELECT officer_token FROM audit_log WHERE action = 'release' AND agency = 'cantho'"
    )
    assert audited["officer_token"] == "e5" * 32
    # the audience other than the owner reads the attached details in the view
    (seen,) = select(client, "SELECT * FROM released_incidents WHERE owner = 'cantho'")
    assert (seen["viewer"], seen["details_from"], seen["narrative"]) == (
        "angiang",
        "release",
        RELEASED_DETAILS["narrative"],
    )
    assert seen["subject_descriptors"] == [{"colour": "red"}]


def test_cases_current_shows_each_live_case_with_its_newest_status(
    make_database: Callable[[], Client], codec: WireCodec
) -> None:
    client = make_database()
    write(client, codec, cases())
    current = {row["case_id"]: row for row in select(client, "SELECT * FROM cases_current")}

    assert set(current) == {"case-a", "case-b", "case-d", "case-e", "case-f"}  # not case-c
    assert current["case-a"]["status"] == "CONFIRMED"
    assert current["case-a"]["events"] == 2  # the redelivered CREATED counts once
    assert current["case-a"]["opened_at"] == at(T0)
    assert current["case-a"]["last_change_at"] == at(T0 + 20 * MINUTE)
    assert current["case-b"]["status"] == "CONCLUDED"
    assert current["case-b"]["possible_double_report"] is True
    assert current["case-b"]["last_sequence"] == 4_000_000
    assert not current["case-a"]["possible_double_report"]
    assert current["case-d"]["opened_at"] == at(T0 - 1440 * MINUTE)  # case-c's opening
    assert current["case-e"]["status"] == "PENDING_VERIFICATION"
    assert current["case-e"]["agencies"] == ["angiang", "cantho"]
    assert current["case-f"]["status"] == "PENDING_VERIFICATION"


def test_case_timeline_lists_each_event_once_in_status_order(
    make_database: Callable[[], Client], codec: WireCodec
) -> None:
    client = make_database()
    write(client, codec, cases())
    timeline = select(
        client, "SELECT event_type, status, conclusion FROM case_timeline WHERE case_id = 'case-b'"
    )
    assert [(e["event_type"], e["status"]) for e in timeline] == [
        ("CREATED", "PENDING_VERIFICATION"),
        ("STATUS_CHANGED", "DISPUTED"),
        ("STATUS_CHANGED", "CONFIRMED"),
        ("CONCLUDED", "CONCLUDED"),
        ("STATUS_CHANGED", "PENDING_VERIFICATION"),
        ("STATUS_CHANGED", "CONCLUDED"),
    ]
    assert timeline[3]["conclusion"] == "agreed"
    assert len(select(client, "SELECT * FROM case_timeline WHERE case_id = 'case-a'")) == 2


def test_time_to_agreement_measures_each_agency_from_the_case_opening(
    make_database: Callable[[], Client], codec: WireCodec
) -> None:
    client = make_database()
    records = [*cases(), *verification("case-a")]
    write(client, codec, [*records, *verification("case-a")])  # redelivered
    rows = select(client, "SELECT * FROM time_to_agreement ORDER BY agency")
    assert [
        (r["case_id"], r["agency"], r["seconds_to_verdict"], r["seconds_to_agreement"])
        for r in rows
    ] == [("case-a", "angiang", 300.0, 1200.0), ("case-a", "cantho", 1200.0, 1200.0)]
    assert rows[0]["opened_at"] == at(T0)
    assert rows[0]["agreed_at"] == at(T0 + 20 * MINUTE)
    assert rows[0]["conclusion_id"] == "conclusion-case-a"


def test_the_analyst_guide_queries_run_and_find_the_cases(
    make_database: Callable[[], Client], codec: WireCodec
) -> None:
    client = make_database()
    write(client, codec, [*cases(), *verification("case-a")])
    guide = (DOCS / "analyst.md").read_text().split("## Current state, counts and dead")[0]
    blocks = re.findall(r"```sql\n(.*?)```", guide, re.S)  # the rest: test_analyst_views
    assert len(blocks) >= 4
    for sql in blocks:
        assert client.query(sql).result_rows, sql
