"""The sink's two write paths give the same rows in the real ClickHouse engine (chDB).

Messages of the current schemas go to ClickHouse as Avro containers it reads itself
(sinks.avro); the others are decoded in Python and sent as JSON rows (sinks.rows). The
same messages written both ways must leave identical tables.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition

from sinks.bench import build_load
from sinks.clickhouse import ClickHouseIncidentSink, Row
from sinks.decode import WriterSchemas
from sinks.rows import TABLE_COLUMNS, rows_for
from sinks.runner import source_position
from xborder.clickhouse import get_client
from xborder.metrics import SinkMetrics
from xborder.schemas import SchemaStore, StoredSchema
from xborder.settings import Settings, load_settings
from xborder.wire import WireCodec, codec_for

pytestmark = pytest.mark.integration


class StubRegistry:
    """Ids for the store's current schemas, as a schema registry would hand them out."""

    def __init__(self, store: SchemaStore) -> None:
        self.schemas = [store.current(name) for name in store.names()]

    def id_for(self, schema: StoredSchema) -> int:
        return 100 + self.schemas.index(schema)

    def writer(self, schema_id: int) -> StoredSchema:
        return self.schemas[schema_id - 100]

    def close(self) -> None:
        pass


def _messages(settings: Settings) -> tuple[WireCodec, list[tuple[bytes, list[Any]]]]:
    load = build_load(settings, 300, 0.5, 0.3, 0.1, 0.1, seed=3, tag="paths")
    messages = [(m.value, list(m.headers)) for m in load.messages]
    store = SchemaStore(settings.schemas_dir)
    codec = WireCodec(store, StubRegistry(store))  # type: ignore[arg-type]
    header = [("xborder-source", b"incidents.cantho[2]@77")]
    for record in ("IncidentReported", "IncidentUpdated", "IncidentClosed"):
        document = json.loads((settings.schemas_dir / "examples" / f"{record}.json").read_text())
        # the Confluent framing (5 header bytes) among single-object messages (10)
        messages.append((codec.encode(record, codec.from_json(record, document)), header))
    return codec, messages


def _write(
    settings: Settings, schemas: WriterSchemas, containers: bool, messages: Any
) -> SinkMetrics:
    client = get_client(settings)
    metrics = SinkMetrics()
    try:
        sink = ClickHouseIncidentSink(client, schemas, 10**6, 60.0, metrics, embedded=True)
        tp = TopicPartition("accepted", 0)
        for offset, (data, headers) in enumerate(messages):
            writer = schemas.writer(data)
            position = source_position(headers, tp.topic, tp.partition, offset)
            if containers and sink.container(writer) is not None:
                sink.add(tp, offset, (writer, data, *position))
                continue
            record, value = schemas.decode(data, writer)
            for table, row in rows_for(record, value, *position):
                sink.add(tp, offset, Row(table, row))
        sink.flush()
    finally:
        client.close()
    return metrics


def _tables(settings: Settings) -> dict[str, list[tuple[Any, ...]]]:
    client = get_client(settings)
    try:
        out = {}
        for table, columns in TABLE_COLUMNS.items():
            names = ", ".join(f"`{name}`" for name, _ in columns)
            out[table] = client.query(f"SELECT {names} FROM {table} ORDER BY {names}").result_rows
        return out
    finally:
        client.close()


def test_containers_and_python_rows_write_the_same_tables(tmp_path: Path) -> None:
    base = load_settings(data_dir=tmp_path)
    in_python = base.with_overrides(**{"clickhouse.database": "python_rows"})
    in_clickhouse = base.with_overrides(**{"clickhouse.database": "containers"})
    codec, messages = _messages(base)
    schemas = WriterSchemas(codec)
    _write(in_python, schemas, containers=False, messages=messages)
    metrics = _write(in_clickhouse, schemas, containers=True, messages=messages)
    assert metrics.flushes == {"ok": 1}, "ClickHouse refused a container"
    expected, written = _tables(in_python), _tables(in_clickhouse)
    for table in TABLE_COLUMNS.keys() - {"dead_letters"}:  # no record: headers and sizes
        assert expected[table], f"the load wrote no {table} rows"
        assert written[table] == expected[table], table


def test_a_body_clickhouse_refuses_is_skipped_and_the_rest_written(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path)
    schemas = WriterSchemas(codec_for(settings))
    load = build_load(settings, 100, 1.0, 0.0, 0.0, 0.0, seed=5, tag="corrupt")
    alerts = [m.value for m in load.messages if m.topic.startswith("alerts.")][:20]
    alerts[7] = alerts[7][:-5]  # truncated: the container no longer reads
    metrics = SinkMetrics()
    client = get_client(settings)
    try:
        sink = ClickHouseIncidentSink(client, schemas, 10**6, 60.0, metrics, embedded=True)
        tp = TopicPartition("alerts.cantho", 0)
        for offset, data in enumerate(alerts):
            writer = schemas.writer(data)
            assert sink.container(writer) is not None
            sink.add(tp, offset, (writer, data, tp.topic, tp.partition, offset))
        sink.flush()
        written = client.query("SELECT count() FROM alerts").result_rows[0][0]
    finally:
        client.close()
    assert metrics.flushes == {"terminal": 1, "ok": 1}
    assert sink.skipped == 1
    assert written == 19


def test_column_lists_match_the_migrated_tables(tmp_path: Path) -> None:
    client = get_client(load_settings(data_dir=tmp_path))
    try:
        for table, columns in TABLE_COLUMNS.items():
            described = client.query(f"DESCRIBE TABLE {table}").result_rows
            migrated = [(row[0], row[1]) for row in described if row[0] != "ingested_at"]
            assert migrated == list(columns), table
    finally:
        client.close()
