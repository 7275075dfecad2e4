"""One event end to end: publish -> Kafka -> Faust worker -> sink -> ClickHouse row."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from xborder.agencies import load_agencies
from xborder.clickhouse import get_client
from xborder.demo import publish_samples
from xborder.pipeline import Pipeline
from xborder.samples import sample_events
from xborder.settings import Settings
from xborder.topics import Topics, ensure_project_topics

pytestmark = [pytest.mark.integration, pytest.mark.slow]


RECORDS = ("IncidentReported", "IncidentUpdated", "IncidentClosed")


@pytest.fixture(scope="module")
def delivered(
    make_module_settings,
) -> tuple[Settings, Topics, list[dict[str, Any]], dict[str, Any]]:
    """One pipeline run for the module: sample events from both agencies, and the example
    lifecycle of one cantho incident (reported, updated, closed), published, processed and
    stored. Each test reads its own incidents; between them they account for every row."""
    from xborder.codec import AvroCodec
    from xborder.producer import IncidentPublisher
    from xborder.schemas import SchemaStore

    settings = make_module_settings()
    agencies = load_agencies(settings.agencies_config)
    topics = Topics.from_settings(settings, agencies)
    ensure_project_topics(settings, topics)
    events = sample_events(4)
    examples = settings.schemas_dir / "examples"
    documents = {r: json.loads((examples / f"{r}.json").read_text()) for r in RECORDS}

    pipeline = Pipeline(settings)
    with pipeline.running():
        publish_samples(settings, events)
        codec = AvroCodec(SchemaStore(settings.schemas_dir))
        with IncidentPublisher(settings, agencies, codec, "cantho") as publisher:
            for record in RECORDS:
                publisher.publish(documents[record], record)
        pipeline.wait_until_drained(topics, timeout_s=120)
    return settings, topics, events, documents


def test_published_events_arrive_in_clickhouse_with_their_fields(delivered) -> None:
    settings, topics, events, documents = delivered
    example = documents["IncidentReported"]["incident_id"]

    client = get_client(settings)
    try:
        result = client.query(
            "SELECT toString(event_id), agency, incident_id, occurred_at, lat, lon, category,"
            " severity, subject_tokens, modus_operandi, source_topic, source_system"
            " FROM incidents FINAL ORDER BY incident_id"
        )
        # every row but the example lifecycle's, which the other test accounts for
        rows = {r[0]: r for r in result.result_rows if r[2] != example}
    finally:
        client.close()

    assert len(rows) == len(events)
    for event in events:
        row = rows[event["event_id"]]
        assert row[1] == event["agency"]
        assert row[2] == event["incident_id"]
        stored = row[3] if row[3].tzinfo else row[3].replace(tzinfo=UTC)  # chDB returns naive UTC
        assert stored == datetime.fromisoformat(event["occurred_at"])
        assert row[4] == pytest.approx(event["location"]["lat"])
        assert row[5] == pytest.approx(event["location"]["lon"])
        assert row[6] == event["category"]
        assert row[7] == event["severity"]
        assert row[8] == [s["token"] for s in event["subjects"]]
        assert row[9] == event["modus_operandi"]
        assert row[10] == topics.incidents(event["agency"])
        assert row[11] == event["source_system"]


def test_reported_updated_and_closed_events_land_in_their_tables(delivered) -> None:
    settings, _, events, documents = delivered
    samples = {e["incident_id"] for e in events}

    client = get_client(settings)
    try:
        incidents = client.query(
            "SELECT event_type, severity, incident_id FROM incidents FINAL ORDER BY event_type"
        ).result_rows
        closures = client.query(
            "SELECT incident_id, outcome, reason FROM incident_closures FINAL"
        ).result_rows
    finally:
        client.close()
    # every row but the sample events', which the other test accounts for
    incidents = [(t, severity) for t, severity, incident in incidents if incident not in samples]
    assert incidents == [
        ("IncidentReported", documents["IncidentReported"]["severity"]),
        ("IncidentUpdated", documents["IncidentUpdated"]["severity"]),
    ]
    closed = documents["IncidentClosed"]
    assert closures == [(closed["incident_id"], closed["outcome"], closed["reason"])]
