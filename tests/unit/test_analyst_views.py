"""The analyst views in the real engine (embedded chDB): every record delivered twice
through the sink, with a restart between batches, and the ``_current`` views, the
materialized daily counts and the hot spots give exact answers without ``FINAL``,
before and after ClickHouse merged the duplicates."""

from __future__ import annotations

import copy
import json
import re
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition
from clickhouse_connect.driver.client import Client

from sinks.clickhouse import ClickHouseIncidentSink, Row
from sinks.decode import WriterSchemas
from sinks.rows import agency_of_topic, dead_letter_row, mask_error, rows_for
from streams.correlation.patterns import alert_id
from tests.unit.test_sink_verification import (
    MINUTE,
    PYTHON_ONLY,
    T0,
    case_event,
    verdict,
    verification,
)
from xborder.clickhouse import INCIDENT_CELLS_DAILY, INCIDENT_DAILY_COUNTS, get_client
from xborder.deadletter import DeadLetter
from xborder.metrics import SinkMetrics
from xborder.schemas import SchemaStore
from xborder.settings import REPO_ROOT, load_settings
from xborder.wire import WireCodec

EXAMPLES = REPO_ROOT / "schemas" / "examples"
DAY = date(2026, 3, 19)
Delivery = tuple[str, str, Any]
"""(topic, record name, value); record ``DeadLetter`` is a dead-letter message."""


def example(wire: WireCodec, record: str) -> dict[str, Any]:
    return wire.from_json(record, json.loads((EXAMPLES / f"{record}.json").read_text()))


def incident(
    wire: WireCodec, record: str, agency: str, incident_id: str, n: int, **fields: Any
) -> Delivery:
    value = copy.deepcopy(example(wire, record))
    value.update(agency=agency, incident_id=incident_id, event_id=str(uuid.UUID(int=n)))
    if record == "IncidentUpdated":
        value["supersedes_event_id"] = None
    for name, given in fields.items():
        if name in ("lat", "lon", "admin_unit_code", "admin_unit_name"):
            value["location"][name] = given
        else:
            value[name] = given
    return f"incidents.{agency}", record, value


def alert(wire: WireCodec, kind: str, identifier: str, target: str, sent: Any = None) -> Delivery:
    """An alert to ``target``; a BORDER_ZONE_INCIDENT is sent at its incident's time."""
    value = example(wire, "Alert")
    value.update(alert_kind=kind, identifier=identifier, case_id=None)
    if sent is not None:
        value["sent"] = sent
    return f"alerts.{target}", "Alert", value


def scenario(wire: WireCodec) -> list[Delivery]:
    """Three incidents (one updated, then closed), a link, a case, an alert sent to both
    agencies, the joint verification of the case, and dead letters."""
    vehicle = example(wire, "IncidentUpdated")["subjects"][:1]
    ct1, ag1 = "CT-1", "AG-1"
    correlation = example(wire, "Correlation")
    correlation["incident_a"] = {
        "agency": "angiang",
        "incident_id": ag1,
        "event_id": str(uuid.UUID(int=3)),
    }
    correlation["incident_b"] = {
        "agency": "cantho",
        "incident_id": ct1,
        "event_id": str(uuid.UUID(int=2)),
    }
    border = alert_id("BORDER_ZONE_INCIDENT", "angiang", ag1)
    border_time = example(wire, "IncidentReported")["occurred_at"]  # AG-1's
    refs = [{"agency": "cantho", "incident_id": ct1}, {"agency": "angiang", "incident_id": ag1}]
    closed = example(wire, "IncidentClosed")
    closed.update(agency="cantho", incident_id=ct1, event_id=str(uuid.UUID(int=9)))
    deliveries: list[Delivery] = [
        incident(wire, "IncidentReported", "cantho", ct1, 1, subjects=vehicle),
        incident(wire, "IncidentUpdated", "cantho", ct1, 2, category="ROBBERY"),
        incident(
            wire,
            "IncidentReported",
            "cantho",
            "CT-2",
            4,
            category="DRUGS",
            subjects=[],
            admin_unit_code="",
            admin_unit_name="",
        ),
        incident(
            wire,
            "IncidentReported",
            "angiang",
            ag1,
            3,
            subjects=vehicle,
            lat=10.61,
            lon=105.43,
            admin_unit_code="30589",
            admin_unit_name="Boundary ward",
        ),
        ("incidents.cantho", "IncidentClosed", closed),
        ("correlations", "Correlation", correlation),
        (
            "cases",
            *case_event(
                "case-a",
                "CREATED",
                1,
                "PENDING_VERIFICATION",
                T0,
                incidents=[{**refs[0], "event_id": str(uuid.UUID(int=1))}],
            ),
        ),
        (
            "cases",
            *case_event(
                "case-a",
                "INCIDENT_ADDED",
                2,
                "PENDING_VERIFICATION",
                T0 + MINUTE,
                incidents=[{**refs[1], "event_id": str(uuid.UUID(int=3))}],
            ),
        ),
        alert(wire, "BORDER_ZONE_INCIDENT", border, "cantho", border_time),
        alert(wire, "BORDER_ZONE_INCIDENT", border, "angiang", border_time),
        alert(wire, "SUBJECT_BOTH_SIDES", "f" * 64, "cantho"),
        ("verification", "Verdict", verdict("case-a", "angiang", "REJECT", T0 + 2 * MINUTE)),
        *[("verification", name, value) for name, value in verification("case-a")],
    ]
    letter = DeadLetter(
        b"CT-9", b"x" * 70, "raw-identifier", "subjects[0].token: 'Nguyen Van A 0912345678'",
        "incidents.cantho", 2, 41,
    )  # fmt: skip
    deliveries.append(("deadletters", "DeadLetter", letter))
    deliveries.append(("deadletters", "DeadLetter", letter))  # the worker replayed it
    return deliveries


def deliver(client: Client, wire: WireCodec, deliveries: list[Delivery]) -> None:
    """One sink's life: ``deliveries`` buffered and flushed once, at the offsets they have
    on their topics (the positions a redelivery repeats)."""
    schemas = WriterSchemas(wire)
    metrics = SinkMetrics()
    sink = ClickHouseIncidentSink(client, schemas, 10**6, 60.0, metrics, embedded=True)
    offsets: dict[str, int] = {}
    for topic, record, value in deliveries:
        tp = TopicPartition(topic, 0)
        offset = offsets[topic] = offsets.get(topic, -1) + 1
        if record == "DeadLetter":
            row = dead_letter_row(
                value.headers(), value.key, value.value, T0 + offset, topic, 0, offset
            )
            sink.add(tp, offset, Row("dead_letters", row))
            continue
        data = wire.encode(record, value)
        writer = schemas.writer(data)
        if record not in PYTHON_ONLY and sink.container(writer) is not None:
            sink.add(tp, offset, (writer, data, topic, 0, offset))
            continue
        name, decoded = schemas.decode(data, writer)
        for table, row in rows_for(name, decoded, topic, 0, offset):
            sink.add(tp, offset, Row(table, row))
    sink.flush()
    assert metrics.flushes == {"ok": 1}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The module's embedded ClickHouse directory (one per process): a database per test."""
    return tmp_path_factory.mktemp("chdb")


@pytest.fixture(scope="module")
def twice(data_dir: Path, store: SchemaStore) -> Iterator[Client]:
    """A database that received the scenario's first half, then (a restarted sink
    re-reading from the last commit it did not make) the whole scenario again."""
    settings = load_settings(data_dir=data_dir, **{"clickhouse.database": "twice"})
    client = get_client(settings)
    wire = WireCodec(store)
    try:
        deliveries = scenario(wire)
        half = len(deliveries) // 2
        deliver(client, wire, deliveries[:half])
        deliver(client, wire, deliveries)
        yield client
    finally:
        client.close()


def rows(client: Client, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in client.query(sql).result_rows]


CURRENT_VIEWS = {
    "incidents_current": ("agency, incident_id", 3),
    "incident_closures_current": ("agency, incident_id", 1),
    "incident_subjects": ("agency, incident_id, token, role", 3),
    "correlations_current": ("correlation_id", 1),
    "correlation_evidence": ("correlation_id, evidence_kind", 4),
    "case_members_current": ("agency, incident_id", 2),
    "alerts_current": ("identifier", 2),
    "verdicts_current": ("case_id, agency", 2),
    "case_conclusions_current": ("conclusion_id", 1),
    "case_reports_current": ("event_id", 1),
    "dead_letters_current": ("source_topic, source_partition, source_offset", 1),
}


@pytest.mark.parametrize("merged", [False, True], ids=["unmerged", "merged"])
def test_every_current_view_has_one_row_per_entity_without_final(
    twice: Client, merged: bool
) -> None:
    if merged:
        for table in (
            "incidents",
            "incident_closures",
            "correlations",
            "case_members",
            "alerts",
            "dead_letters",
            "verdicts",
            "case_conclusions",
            "case_reports",
        ):
            twice.command(f"OPTIMIZE TABLE {table} FINAL")
    else:  # the duplicates are there for a plain SELECT to see
        assert rows(twice, "SELECT count() FROM incidents") > [(4,)]
    for view, (key, expected) in CURRENT_VIEWS.items():
        found = rows(twice, f"SELECT count(), uniqExact({key}) FROM {view}")
        assert found == [(expected, expected)], view


def test_incidents_current_is_the_latest_event_with_the_closure(twice: Client) -> None:
    found = rows(
        twice,
        "SELECT agency, incident_id, event_id, event_type, category, length(subject_tokens),"
        " closed FROM incidents_current ORDER BY agency, incident_id",
    )
    assert found == [
        ("angiang", "AG-1", uuid.UUID(int=3), "IncidentReported", "THEFT", 1, False),
        ("cantho", "CT-1", uuid.UUID(int=2), "IncidentUpdated", "ROBBERY", 2, True),
        ("cantho", "CT-2", uuid.UUID(int=4), "IncidentReported", "DRUGS", 0, False),
    ]
    assert rows(twice, "SELECT agency, incident_id, outcome FROM incident_closures_current") == [
        ("cantho", "CT-1", "SOLVED")
    ]
    both_sides = rows(
        twice,
        "SELECT token FROM incident_subjects GROUP BY token HAVING uniqExact(agency) > 1",
    )
    assert both_sides == [("a1" * 32,)]


def test_newest_verdict_and_current_case(twice: Client) -> None:
    assert rows(
        twice, "SELECT agency, decision, verdicts FROM verdicts_current ORDER BY agency"
    ) == [("angiang", "CONFIRM", 2), ("cantho", "CONFIRM", 1)]
    assert rows(
        twice,
        "SELECT agency, incident_id, case_id, sequence FROM case_members_current ORDER BY agency",
    ) == [("angiang", "AG-1", "case-a", 2), ("cantho", "CT-1", "case-a", 1)]


def test_dead_letters_keep_reason_position_and_size_not_bytes(twice: Client) -> None:
    found = rows(
        twice,
        "SELECT agency, reason, error, source_topic, source_partition, source_offset,"
        " key_bytes, value_bytes, rejections FROM dead_letters_current",
    )
    assert found == [
        (
            "cantho",
            "raw-identifier",
            "subjects[0].token: <23 chars>",
            "incidents.cantho",
            2,
            41,
            4,
            70,
            2,
        )
    ]
    columns = {r[0] for r in rows(twice, "DESCRIBE TABLE dead_letters")}
    assert not columns & {"key", "value", "headers"}


def test_daily_counts_are_exact_through_duplicates_and_backfill(twice: Client) -> None:
    query = (
        "SELECT day, agency, category, admin_unit_code, incidents, events"
        " FROM daily_incident_counts ORDER BY agency, category"
    )
    (derived_unit,) = rows(
        twice,
        f"SELECT admin_unit_code FROM incidents WHERE event_id = '{uuid.UUID(int=4)}' LIMIT 1",
    )[0]
    expected = [
        (DAY, "angiang", "THEFT", "30589", 1, 1),
        (DAY, "cantho", "DRUGS", derived_unit, 1, 1),
        (DAY, "cantho", "ROBBERY", "31117", 1, 1),
        (DAY, "cantho", "THEFT", "31117", 1, 1),
    ]
    assert rows(twice, query) == expected
    # the migration's backfill over rows already counted changes nothing
    twice.command(f"INSERT INTO incident_daily_counts {INCIDENT_DAILY_COUNTS}")
    twice.command(f"INSERT INTO incident_cells_daily {INCIDENT_CELLS_DAILY}")
    assert rows(twice, query) == expected
    cells = rows(
        twice,
        "SELECT cell_lat, cell_lon, round(centre_lat, 3), round(centre_lon, 3), agency,"
        " placement, sum(incidents) FROM daily_cell_counts GROUP BY ALL ORDER BY agency",
    )
    assert cells == [  # placement as ClickHouse computed it from the configured polygons
        (1061, 10543, 10.615, 105.435, "angiang", "own", 1),
        (1008, 10566, 10.085, 105.665, "cantho", "own", 3),
    ]


def test_border_hotspots_are_the_incidents_the_correlator_placed_in_the_zone(
    twice: Client,
) -> None:
    assert rows(
        twice, "SELECT day, cell_lat, cell_lon, incidents, agencies FROM border_hotspots"
    ) == [(DAY, 1061, 10543, 1, ["angiang"])]


def test_dead_letter_rows_mask_values_and_name_the_agency() -> None:
    assert mask_error("agency 'cantho' published on incidents.angiang") == (
        "agency 'cantho' published on incidents.angiang"
    )
    assert mask_error('call 0912345678 or mail a.b@c.vn; given "Nguyen Van A"') == (
        "call <10 digits> or mail <e-mail>; given <12 chars>"
    )
    case, event = "9b728d0123456789d0016e2f40a1c3b5", "123e4567-e89b-42d3-a456-426614174000"
    assert mask_error(f"case {case} of event {event} refused") == (
        f"case {case} of event {event} refused"
    )
    assert mask_error("id 12345678901234567890 or x0912345678") == (
        "id <20 digits> or x<10 digits>"
    )
    assert [agency_of_topic(t) for t in ("incidents.cantho", "p.verdicts.angiang")] == [
        "cantho",
        "angiang",
    ]
    assert agency_of_topic("incidents.accepted") == agency_of_topic("correlation.blocks") == ""
    row = dead_letter_row([], None, None, T0, "deadletters", 1, 5)
    assert row[1:4] == ["", "unknown", ""] and row[5:9] == [-1, -1, None, None]


def test_the_analyst_guide_queries_answer_on_the_scenario(twice: Client) -> None:
    """Every query of the guide returns rows here (those of the cases part also run in
    test_sink_verification), and those over the views do without FINAL."""
    blocks = re.findall(r"```sql\n(.*?)```", (REPO_ROOT / "docs" / "analyst.md").read_text(), re.S)
    assert len(blocks) >= 12
    for sql in blocks:
        assert twice.query(sql).result_rows, sql


def test_an_existing_database_gets_its_incidents_counted_when_it_migrates(
    data_dir: Path, store: SchemaStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Migration 10 fills the materialized counts from the rows already stored."""
    from xborder import clickhouse

    settings = load_settings(data_dir=data_dir, **{"clickhouse.database": "upgraded"})
    released = clickhouse.MIGRATIONS
    before = tuple(m for m in released if m.version < 10)
    monkeypatch.setattr(clickhouse, "MIGRATIONS", before)
    client = get_client(settings)
    try:
        wire = WireCodec(store)
        deliver(client, wire, [d for d in scenario(wire) if d[0].startswith("incidents.")])
        monkeypatch.setattr(clickhouse, "MIGRATIONS", released)
        assert clickhouse.migrate(client) == [m.version for m in released if m.version >= 10]
        assert rows(client, "SELECT sum(incidents), sum(events) FROM daily_incident_counts") == [
            (4, 4)
        ]
        assert rows(client, "SELECT sum(incidents) FROM daily_cell_counts") == [(4,)]
        assert rows(client, "SELECT count() FROM incidents_current") == [(3,)]
    finally:
        client.close()
