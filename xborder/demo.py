"""The live demo: local Kafka up, worker and sink running, sample events through, a query.

Also the building block of the end-to-end test: :class:`Pipeline` starts the worker and
the sink as child processes configured with the same settings, and waits until both
have committed everything published.
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from typing import Any, TextIO

from xborder.agencies import load_agencies
from xborder.clickhouse import get_client, query_rows
from xborder.local_kafka import LocalKafka
from xborder.pipeline import Pipeline
from xborder.producer import IncidentPublisher
from xborder.samples import sample_events
from xborder.settings import Settings
from xborder.topics import Topics, ensure_project_topics
from xborder.wire import codec_for

DEMO_QUERY = """
SELECT agency, incident_id, category, severity,
       formatDateTime(occurred_at, '%Y-%m-%d %H:%i', 'UTC') AS occurred_utc,
       admin_unit_name, round(lat, 3) AS lat, round(lon, 3) AS lon,
       length(subject_tokens) AS subjects, source_topic
FROM incidents FINAL
WHERE event_id IN {ids:Array(UUID)}
ORDER BY occurred_at
"""

LINKS_QUERY = """
SELECT a_agency, a_incident_id, b_agency, b_incident_id, round(score, 1) AS score,
       arrayStringConcat(evidence_kinds, ',') AS evidence, c.case_id AS case_id
FROM correlations FINAL
LEFT JOIN (SELECT agency, incident_id, case_id FROM case_members FINAL) AS c
       ON c.agency = a_agency AND c.incident_id = a_incident_id
WHERE a_incident_id IN {incidents:Array(String)} OR b_incident_id IN {incidents:Array(String)}
ORDER BY score DESC
"""

ALERTS_QUERY = """
SELECT alert_kind, count() AS alerts, any(headline) AS example
FROM alerts FINAL GROUP BY alert_kind ORDER BY alert_kind
"""


def publish_samples(settings: Settings, events: list[dict[str, Any]]) -> None:
    """Publish each event through its own agency's publisher."""
    agencies = load_agencies(settings.agencies_config)
    codec = codec_for(settings)
    by_agency: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        by_agency[event["agency"]].append(event)
    for agency_id, batch in by_agency.items():
        with IncidentPublisher(settings, agencies, codec, agency_id) as publisher:
            publisher.publish_batch(batch)


def _step(out: TextIO, started: float, text: str) -> None:
    out.write(f"[{time.monotonic() - started:6.1f} s] {text}\n")
    out.flush()


def run_demo(
    settings: Settings, events: int = 6, keep_running: bool = False, out: TextIO = sys.stdout
) -> int:
    """The main job of the README's first command."""
    started = time.monotonic()
    kafka = LocalKafka(settings.local_kafka, settings.kafka_data_dir)
    _step(
        out,
        started,
        f"fetching Apache Kafka {settings.local_kafka.version} (cached after the first run)",
    )
    kafka.fetch()
    _step(out, started, f"starting Kafka on {kafka.bootstrap} (data in {kafka.data_dir})")
    was_running = kafka.status().running
    kafka.up()
    try:
        topics = Topics.from_settings(settings, load_agencies(settings.agencies_config))
        ensure_project_topics(settings, topics)
        pipeline = Pipeline(settings)
        _step(out, started, "starting the Faust worker and the ClickHouse sink")
        with pipeline.running():
            batch = sample_events(events)
            _step(out, started, f"publishing {len(batch)} sample incident events")
            publish_samples(settings, batch)
            _step(out, started, "waiting for the worker and the sink to commit them")
            pipeline.wait_until_drained(topics)
            _step(out, started, "stopping worker and sink (the sink owns embedded ClickHouse)")
        client = get_client(settings)
        try:
            columns, rows = query_rows(client, DEMO_QUERY, {"ids": [e["event_id"] for e in batch]})
            _, totals = query_rows(
                client,
                "SELECT agency, category, count() FROM incidents FINAL "
                "GROUP BY agency, category ORDER BY agency, category",
            )
            ids = {"incidents": [e["incident_id"] for e in batch]}
            link_columns, links = query_rows(client, LINKS_QUERY, ids)
            alert_columns, alerts = query_rows(client, ALERTS_QUERY)
        finally:
            client.close()
        _step(out, started, f"analyst query returned {len(rows)} of {len(batch)} events:")
        from xborder.cli import print_table

        out.write("\n" + DEMO_QUERY.strip() + "\n\n")
        print_table(columns, rows, out)
        out.write("\nAll incidents stored so far, by agency and category:\n")
        print_table(["agency", "category", "incidents"], totals, out)
        out.write(f"\nCross-border links among this run's incidents ({len(links)}):\n")
        print_table(link_columns, links, out)
        out.write("\nAlerts sent to the agencies' monitoring topics so far:\n")
        print_table(alert_columns, alerts, out)
        out.write("\n")
        return 0 if len(rows) == len(batch) else 1
    finally:
        if not keep_running and not was_running:
            _step(out, started, "stopping Kafka")
            kafka.down()
        _step(out, started, "done")
