"""The sink's pure parts: Avro containers, the schema-to-ClickHouse mapping, source
positions, buffering, and the commit and rewind rules (against a stand-in consumer)."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import fastavro
import pytest
from aiokafka import TopicPartition
from confluent_kafka import KafkaError, KafkaException

from sinks.avro import POSITION_FIELDS, SELECTS, Container, clickhouse_type, encode_long
from sinks.base import BatchingSink, PartitionBuffer
from sinks.decode import WriterSchemas
from sinks.rows import TABLE_COLUMNS, rows_for
from sinks.runner import SinkRunner, source_position
from xborder.codec import AvroCodec
from xborder.deadletter import SOURCE_HEADER
from xborder.schemas import SchemaStore
from xborder.settings import REPO_ROOT, load_settings
from xborder.wire import WireCodec

SCHEMAS = REPO_ROOT / "schemas"


def example(codec: AvroCodec, record: str) -> dict[str, Any]:
    document = json.loads((SCHEMAS / "examples" / f"{record}.json").read_text())
    return codec.from_json(record, document)


@pytest.mark.parametrize("n", [0, 1, -1, 63, -64, 64, 300, 2**31 - 1, -(2**31), 2**62, -(2**63)])
def test_encode_long_is_avro_zigzag(n: int) -> None:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, {"type": "long"}, n)
    assert encode_long(n) == out.getvalue()


def test_every_table_select_reads_only_fields_of_the_current_schema() -> None:
    store = SchemaStore(SCHEMAS)
    for record, selects in SELECTS.items():
        fields = {f["name"] for f in store.current(record).parsed["fields"]}
        for select in selects:
            assert set(select.reads) - set(POSITION_FIELDS) <= fields, (record, select.table)
            assert select.table in TABLE_COLUMNS


@pytest.mark.parametrize("record", sorted(SELECTS))
def test_every_sunk_record_takes_the_container_path_and_python_rows_fill_every_column(
    record: str,
) -> None:
    store = SchemaStore(SCHEMAS)
    container = Container(store.current(record))  # raises UnsupportedSchema otherwise
    for select, statement in container.statements("input({structure})"):
        for name, _ in TABLE_COLUMNS[select.table]:
            assert f"`{name}`" in statement, (record, select.table, name)
    codec = WireCodec(store)
    short = record.rpartition(".")[2]
    data = codec.encode(short, example(codec, short))
    name, value = WriterSchemas(codec).decode(data)
    rows = rows_for(name, value, "t", 0, 1)
    assert {table for table, _ in rows} == {s.table for s in SELECTS[record]}
    for table, row in rows:
        assert len(row) == len(TABLE_COLUMNS[table]), table


def test_container_holds_the_bodies_and_their_positions_as_avro_reads_them() -> None:
    codec = AvroCodec(SchemaStore(SCHEMAS))
    value = example(codec, "IncidentReported")
    data = codec.encode("IncidentReported", value)
    container = Container(codec.store.current("IncidentReported"))
    assert container.positioned
    parts = [data[10:], container.position("incidents.cantho", 3, 1042)]
    parts += [data[10:], container.position("incidents.angiang", 0, 7)]
    records = list(fastavro.reader(io.BytesIO(container.frame(parts, 2))))
    assert [r["incident_id"] for r in records] == [value["incident_id"]] * 2
    assert [tuple(r[f] for f in POSITION_FIELDS) for r in records] == [
        ("incidents.cantho", 3, 1042),
        ("incidents.angiang", 0, 7),
    ]
    assert records[0]["subjects"] == value["subjects"]


def test_container_statements_name_every_column_and_the_source() -> None:
    store = SchemaStore(SCHEMAS)
    container = Container(store.current("CaseEvent"))
    statements = {s.table: sql for s, sql in container.statements("input({structure})")}
    assert set(statements) == {"case_events", "case_members"}
    assert "ARRAY JOIN incidents AS member" in statements["case_members"]
    for table, statement in statements.items():
        for name, _ in TABLE_COLUMNS[table]:
            assert f"`{name}`" in statement
        assert "FROM input('`" in statement


def test_clickhouse_types_of_avro_types() -> None:
    named: dict[str, Any] = {}
    record = {
        "type": "record",
        "name": "R",
        "fields": [
            {"name": "u", "type": {"type": "string", "logicalType": "uuid"}},
            {"name": "t", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A"]}},
            {"name": "again", "type": "E"},
            {"name": "n", "type": ["null", "string"]},
            {"name": "m", "type": {"type": "map", "values": "double"}},
        ],
    }
    assert clickhouse_type({"type": "array", "items": record}, named) == (
        "Array(Tuple(`u` UUID, `t` DateTime64(3), `e` String, `again` String,"
        " `n` Nullable(String), `m` Map(String, Float64)))"
    )


def test_source_position_reads_the_worker_header() -> None:
    headers = [(SOURCE_HEADER, b"incidents.cantho[3]@1042")]
    assert source_position(headers, "accepted", 0, 5) == ("incidents.cantho", 3, 1042)
    assert source_position([], "accepted", 1, 5) == ("accepted", 1, 5)
    assert source_position([(SOURCE_HEADER, b"garbage")], "accepted", 1, 5) == ("accepted", 1, 5)


def test_old_writer_versions_are_decoded_in_python_with_reader_defaults() -> None:
    store = SchemaStore(SCHEMAS)
    codec = WireCodec(store)
    v1 = SchemaStore(SCHEMAS / "history" / "v1").current("CaseEvent")  # before 'sequence'
    value = example(codec, "CaseEvent")
    del value["sequence"]
    out = io.BytesIO()
    out.write(b"\xc3\x01" + v1.fingerprint)
    fastavro.schemaless_writer(out, v1.parsed, value)
    schemas = WriterSchemas(codec)
    writer = schemas.writer(out.getvalue())
    assert writer.record_name == "xborder.v1.CaseEvent" and not writer.current
    record, decoded = schemas.decode(out.getvalue(), writer)
    assert record == "xborder.v1.CaseEvent"
    assert decoded["sequence"] == 0  # the reader's default
    assert decoded["at"] == 1773917400000  # milliseconds, as encoded: no datetime
    assert decoded["incidents"][0]["event_id"] == "00000000-0000-4000-8000-000000000007"
    current = schemas.writer(codec.encode("CaseEvent", example(codec, "CaseEvent")))
    assert current.current and current.raw_reader is None


class _Sink(BatchingSink):
    def __init__(self) -> None:
        super().__init__(batch_size=3, flush_interval_s=60.0)
        self.written: list[Any] = []

    def write(self, items: Any, buffers: Any) -> None:
        self.written.extend(items)


def test_buffers_are_due_by_size_and_taken_whole() -> None:
    sink = _Sink()
    a, b = TopicPartition("t", 0), TopicPartition("t", 1)
    assert sink.due_in() is None and not sink.buffered
    sink.add(a, 10, "x")
    sink.advance(b, 4)  # a message without rows still moves the offset to commit
    sink.add(a, 11, "y")
    assert not sink.due() and 0 < (sink.due_in() or 0) <= 60
    sink.add(b, 5, "z")
    assert sink.due()
    buffers = sink.flush()
    assert sink.written == ["x", "y", "z"] and not sink.buffered
    assert (buffers[a].first_offset, buffers[a].last_offset) == (10, 11)
    assert (buffers[b].first_offset, buffers[b].last_offset) == (4, 5)


def test_a_partition_run_is_buffered_in_one_call_and_a_reread_starts_the_buffer_over() -> None:
    sink = _Sink()
    a, b = TopicPartition("t", 0), TopicPartition("t", 1)
    sink.extend(a, 10, 12, ["x", "y"])  # offset 11 made no item: its offset still counts
    sink.extend(b, 4, 4, [])
    sink.extend(a, 13, 14, ["z"])
    assert sink.pending == 3 and sink.due()
    # assigned again, the consumer reads the partition from its commit (8): start over
    sink.extend(a, 8, 9, ["v", "w"])
    assert sink.pending == 2 and not sink.due()
    dropped = sink.drop([b, TopicPartition("t", 2)])  # revoked: dropped, never written
    assert list(dropped) == [b] and sink.pending == 2
    buffers = sink.flush()
    assert sink.written == ["v", "w"] and list(buffers) == [a]
    assert (buffers[a].first_offset, buffers[a].last_offset) == (8, 9)


class _Consumer:
    """Stands in for the SinkConsumer's assignment, commit and seek."""

    def __init__(self, assigned: set[TopicPartition], failures: list[Exception]) -> None:
        self.assigned = assigned
        self.failures = failures
        self.commits: list[dict[TopicPartition, int]] = []
        self.seeks: list[tuple[TopicPartition, int]] = []

    def assignment(self) -> set[TopicPartition]:
        return self.assigned

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.commits.append(dict(offsets))

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))


def _refused(code: int) -> KafkaException:
    """What librdkafka raises for a commit the broker refused with ``code``."""
    return KafkaException(KafkaError(code))


def _runner(tmp_path: Path) -> SinkRunner:
    return SinkRunner(load_settings(data_dir=tmp_path, **{"sink.retry_backoff_s": 0.01}))


def _buffers(*spans: tuple[TopicPartition, int, int]) -> dict[TopicPartition, PartitionBuffer]:
    return {tp: PartitionBuffer(first, last) for tp, first, last in spans}


def test_commit_is_retried_while_the_broker_is_unavailable(tmp_path: Path) -> None:
    a = TopicPartition("t", 0)
    consumer = _Consumer(
        {a}, [_refused(KafkaError._TRANSPORT), _refused(KafkaError.NOT_COORDINATOR)]
    )
    asyncio.run(_runner(tmp_path)._commit(consumer, _buffers((a, 5, 9))))  # type: ignore[arg-type]
    assert consumer.commits == [{a: 10}]


def test_commit_lost_to_a_rebalance_is_logged_not_fatal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = TopicPartition("t", 0), TopicPartition("t", 1)
    consumer = _Consumer({a}, [])
    runner = _runner(tmp_path)
    asyncio.run(runner._commit(consumer, _buffers((a, 5, 9), (b, 1, 2))))  # type: ignore[arg-type]
    assert consumer.commits == [{a: 10}]  # the revoked partition is not committed
    consumer = _Consumer({a}, [_refused(KafkaError.ILLEGAL_GENERATION)])
    asyncio.run(runner._commit(consumer, _buffers((a, 5, 9))))  # type: ignore[arg-type]
    assert consumer.commits == []
    assert caplog.text.count("lost to a rebalance") == 2


def test_commit_refused_for_good_stops_the_sink(tmp_path: Path) -> None:
    a = TopicPartition("t", 0)
    consumer = _Consumer({a}, [_refused(KafkaError.TOPIC_AUTHORIZATION_FAILED)])
    with pytest.raises(KafkaException) as refused:
        asyncio.run(_runner(tmp_path)._commit(consumer, _buffers((a, 5, 9))))  # type: ignore[arg-type]
    assert refused.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_rewind_seeks_assigned_partitions_to_the_dropped_batch_start(tmp_path: Path) -> None:
    a, b = TopicPartition("t", 0), TopicPartition("t", 1)
    consumer = _Consumer({a}, [])
    _runner(tmp_path)._rewind(consumer, _buffers((a, 5, 9), (b, 1, 2)))  # type: ignore[arg-type]
    assert consumer.seeks == [(a, 5)]


def test_a_type_without_clickhouse_mapping_matters_only_where_a_select_reads_it() -> None:
    import dataclasses

    from sinks.avro import UnsupportedSchema

    alert = SchemaStore(SCHEMAS).current("Alert")
    decimal = {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}
    unread = {**alert.parsed, "fields": [*alert.parsed["fields"], {"name": "x", "type": decimal}]}
    Container(dataclasses.replace(alert, parsed=unread))  # no SELECT reads 'x'
    fields = [
        {**f, "type": decimal} if f["name"] == "headline" else f for f in alert.parsed["fields"]
    ]
    with pytest.raises(UnsupportedSchema, match="headline"):
        Container(dataclasses.replace(alert, parsed={**alert.parsed, "fields": fields}))
