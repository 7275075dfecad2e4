"""Events located outside their agency's jurisdiction, or outside every one, are accepted and
stored with their placement; an event without administrative unit takes the unit polygon's.

Through the real worker and sink on the local broker, and through both of the sink's write
paths (Avro containers ClickHouse reads, rows decoded in Python) on the real engine.
"""

from __future__ import annotations

import copy
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition

from sinks.clickhouse import ClickHouseIncidentSink, Row
from sinks.decode import WriterSchemas
from sinks.rows import rows_for
from tests.unit.test_location import (
    ANGIANG_UNIT,
    CANTHO_UNIT,
    IN_ANGIANG_HOLE,
    INSIDE_ANGIANG,
    INSIDE_CANTHO,
    OUTSIDE_ALL,
    write_units_config,
)
from xborder.agencies import load_agencies
from xborder.clickhouse import apply_jurisdictions, get_client
from xborder.codec import AvroCodec
from xborder.metrics import SinkMetrics
from xborder.pipeline import Pipeline
from xborder.producer import IncidentPublisher
from xborder.samples import sample_events
from xborder.schemas import SchemaStore
from xborder.settings import Settings, load_settings
from xborder.topics import Topics, ensure_project_topics
from xborder.wire import codec_for

pytestmark = pytest.mark.integration

GIVEN = {"admin_unit_code": "X-1", "admin_unit_name": "Given by the agency"}


def _events() -> list[tuple[dict[str, Any], tuple[str, ...]]]:
    """Events and the (placement, unit code, unit name) each must be stored with."""
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    base = sample_events(1, now=now)[0]
    cases = [
        ("cantho", INSIDE_CANTHO, GIVEN, ("own", *GIVEN.values())),
        ("cantho", INSIDE_ANGIANG, GIVEN, ("other-jurisdiction:angiang", *GIVEN.values())),
        ("cantho", OUTSIDE_ALL, GIVEN, ("outside", *GIVEN.values())),
        ("cantho", INSIDE_CANTHO, {}, ("own", *CANTHO_UNIT)),  # derived from the unit polygon
        ("angiang", INSIDE_ANGIANG, {}, ("own", *ANGIANG_UNIT)),
        ("angiang", IN_ANGIANG_HOLE, {}, ("own", "", "")),  # in no unit polygon: stays empty
        ("angiang", OUTSIDE_ALL, {}, ("outside", "", "")),
    ]
    out = []
    for n, (agency, (lat, lon), unit, expected) in enumerate(cases):
        event = copy.deepcopy(base)
        event.update(
            event_id=str(uuid.uuid4()), agency=agency, incident_id=f"PLACE-{n}", subjects=[]
        )
        event["location"] = {"lat": lat, "lon": lon, **unit}
        out.append((event, expected))
    return out


def _stored(settings: Settings) -> dict[str, tuple[str, ...]]:
    client = get_client(settings)
    try:
        rows = client.query(
            "SELECT incident_id, placement, admin_unit_code, admin_unit_name FROM incidents FINAL"
        ).result_rows
    finally:
        client.close()
    return {r[0]: tuple(r[1:]) for r in rows}


@pytest.mark.slow
def test_the_worker_and_sink_store_every_event_with_its_placement(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings(agencies_config=write_units_config(tmp_path / "config"))
    agencies = load_agencies(settings.agencies_config)
    topics = Topics.from_settings(settings, agencies)
    ensure_project_topics(settings, topics)
    events = _events()
    codec = AvroCodec(SchemaStore(settings.schemas_dir))
    pipeline = Pipeline(settings)
    with pipeline.running():
        for agency in ("cantho", "angiang"):
            with IncidentPublisher(settings, agencies, codec, agency) as publisher:
                publisher.publish_batch(e for e, _ in events if e["agency"] == agency)
        pipeline.wait_until_drained(topics, timeout_s=60)
    assert _stored(settings) == {e["incident_id"]: expected for e, expected in events}
    # the analyst guide's summary query counts them
    guide = (Path(__file__).resolve().parents[2] / "docs" / "analyst.md").read_text()
    query = next(q for q in re.findall(r"```sql\n(.*?)```", guide, re.S) if "placement" in q)
    client = get_client(settings)
    try:
        (summary,) = client.query(query).result_rows
    finally:
        client.close()
    assert summary[:4] == (4, 1, 2, 2)
    assert sorted(summary[4]) == ["angiang", "cantho"]


def test_both_sink_paths_store_the_same_placement_and_units(tmp_path: Path) -> None:
    base = load_settings(data_dir=tmp_path, agencies_config=write_units_config(tmp_path / "cfg"))
    codec = codec_for(base)
    schemas = WriterSchemas(codec)
    events = _events()
    messages = [
        codec.encode("IncidentReported", codec.from_json("IncidentReported", e)) for e, _ in events
    ]
    expected = {e["incident_id"]: want for e, want in events}
    for database, containers in (("python_rows", False), ("containers", True)):
        settings = base.with_overrides(**{"clickhouse.database": database})
        client = get_client(settings)
        try:
            sink = ClickHouseIncidentSink(client, schemas, 10**6, 60.0, SinkMetrics(), True)
            tp = TopicPartition("accepted", 0)
            for offset, data in enumerate(messages):
                writer = schemas.writer(data)
                if containers:
                    assert sink.container(writer) is not None
                    sink.add(tp, offset, (writer, data, "incidents.x", 0, offset))
                    continue
                record, value = schemas.decode(data, writer)
                for table, row in rows_for(record, value, "incidents.x", 0, offset):
                    sink.add(tp, offset, Row(table, row))
            sink.flush()
        finally:
            client.close()
        assert _stored(settings) == expected, database


def test_the_defaults_follow_the_configured_polygons(tmp_path: Path) -> None:
    plain = load_settings(data_dir=tmp_path)
    client = get_client(plain)  # the example config: no unit polygons
    try:
        assert apply_jurisdictions(client, load_agencies(plain.agencies_config)) is False
        with_units = load_agencies(write_units_config(tmp_path / "cfg"))
        assert apply_jurisdictions(client, with_units) is True
        assert apply_jurisdictions(client, with_units) is False
        client.command(
            "INSERT INTO incidents (event_id, agency, incident_id, event_type, occurred_at,"
            " reported_at, lat, lon, admin_unit_code, admin_unit_name, placement, category,"
            " severity, source_system, source_topic, source_partition, source_offset)"
            f" SELECT generateUUIDv4(), 'angiang', 'Q', 'IncidentReported', now(), now(),"
            f" {INSIDE_CANTHO[0]}, {INSIDE_CANTHO[1]}, NULL, NULL, NULL, 'THEFT', 'LOW', 's',"
            " 't', 0, 0"
        )
        row = client.query(
            "SELECT placement, admin_unit_code, admin_unit_name FROM incidents"
        ).result_rows
    finally:
        client.close()
    assert [tuple(r) for r in row] == [("other-jurisdiction:cantho", *CANTHO_UNIT)]
