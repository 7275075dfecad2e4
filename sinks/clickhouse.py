"""The ClickHouse writer: a batch of buffered items, a few inserts per table.

Items are of two kinds. A :class:`Body` is a message written with the current schema
of its record: the batch's bodies of one record go out as one Avro container that
ClickHouse reads itself (:mod:`sinks.avro`). A :class:`Row` is a row decoded in Python
(an older writer version, :mod:`sinks.rows`): a table's rows go out as
``JSONCompactEachRow`` lines (one ``orjson.dumps`` per row) through ``raw_insert``
with the columns named, which the engine parses in C++ too; clickhouse-connect's
``insert`` would build the Native format column by column in Python instead.

Both work on both targets. Embedded chDB reads a container from a temporary file
(``INSERT ... SELECT ... FROM file(...)``) and rows through ``raw_insert`` (``INSERT
... FROM INFILE``); a server receives the container as the body of ``INSERT ...
SELECT ... FROM input(...) FORMAT Avro`` and the rows as the body of ``INSERT INTO t
(cols) FORMAT JSONCompactEachRow``.

The writer owns its client and translates ClickHouse errors into transient (retry)
and terminal (stop) by error code. A container ClickHouse refuses for good (a body it
cannot read) is written once more through the Python decoder, which skips a message it
cannot decode with a warning, as it always has.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from typing import Any, NamedTuple

import orjson
from aiokafka import TopicPartition
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import (
    ClickHouseError,
    DatabaseError,
    OperationalError,
)

from sinks.avro import INPUT_SOURCE, Container, TableSelect, UnsupportedSchema, file_source
from sinks.base import BatchingSink, PartitionBuffer
from sinks.decode import Writer, WriterSchemas
from sinks.rows import TABLE_COLUMNS, rows_for
from xborder.errors import InvalidRecordError, TerminalSinkError, TransientSinkError
from xborder.metrics import SinkMetrics

logger = logging.getLogger(__name__)

# ClickHouse error codes that a retry can outlive: timeouts, network, memory pressure,
# too many parts or queries, read-only or missing replicas, unknown insert status, and
# files that cannot be read, written or opened (a full or read-only disk, a directory
# another process holds: chDB reports a filesystem error as 1001, STD_EXCEPTION).
TRANSIENT_CODES = frozenset(
    {3, 74, 75, 76, 159, 164, 202, 203, 209, 210, 236, 241, 242, 243, 252, 285, 319, 425}
    | {439, 999, 1000, 1001}
)

ROWS_FORMAT = "JSONCompactEachRow"
COLUMN_NAMES: dict[str, list[str]] = {
    table: [name for name, _ in columns] for table, columns in TABLE_COLUMNS.items()
}


Body = tuple[Writer, bytes, str, int, int]
"""A message whose Avro body ClickHouse reads itself: its writer, its bytes, and where
the event was first published (topic, partition, offset). A plain tuple: one is made
per message, and a NamedTuple costs ten times as much to make."""


class Row(NamedTuple):
    """A row decoded in Python."""

    table: str
    row: list[Any]


def translate_error(exc: Exception, table: str) -> Exception:
    """Map a ClickHouse client error to TransientSinkError or TerminalSinkError."""
    code = getattr(exc, "code", None)
    if isinstance(exc, OperationalError) or code in TRANSIENT_CODES:
        return TransientSinkError(f"insert into {table} failed (code {code}), will retry: {exc}")
    hint = ""
    if isinstance(exc, DatabaseError) and code in (16, 47, 60):
        hint = "; the table or a column is missing: run 'xborder migrate'"
    return TerminalSinkError(f"insert into {table} failed (code {code}): {exc}{hint}")


def encode_rows(rows: Sequence[Sequence[Any]]) -> bytes:
    """``rows`` as JSONCompactEachRow: one JSON array per line."""
    return b"\n".join(map(orjson.dumps, rows))


class ClickHouseIncidentSink(BatchingSink):
    """Writes buffered bodies and rows to ClickHouse in batches."""

    def __init__(
        self,
        client: Client,
        schemas: WriterSchemas,
        batch_size: int,
        flush_interval_s: float,
        metrics: SinkMetrics,
        embedded: bool,
    ) -> None:
        super().__init__(batch_size, flush_interval_s)
        self.client = client
        self.schemas = schemas
        self.metrics = metrics
        self.embedded = embedded
        """chDB in this process: containers go through a temporary file."""
        self._containers: dict[str, Container | None] = {}
        self.skipped = 0
        """Messages the Python decoder could not read after ClickHouse refused their batch."""

    def container(self, writer: Writer) -> Container | None:
        """How ClickHouse reads bodies of ``writer`` itself; None: decode them in Python."""
        if not writer.current:
            return None
        name = writer.record_name
        if name not in self._containers:
            try:
                self._containers[name] = Container(writer.schema)
            except UnsupportedSchema as exc:
                logger.info("%s is decoded in Python: %s", name, exc)
                self._containers[name] = None
        return self._containers[name]

    def write(self, items: Sequence[Any], buffers: dict[TopicPartition, PartitionBuffer]) -> None:
        rows: dict[str, list[list[Any]]] = {}
        bodies: dict[str, list[Body]] = {}
        for item in items:
            if type(item) is tuple:  # a Body; a Row is a NamedTuple
                bodies.setdefault(item[0].record_name, []).append(item)
            else:
                rows.setdefault(item.table, []).append(item.row)
        for record, batch in bodies.items():
            try:
                self._insert_bodies(record, batch)
            except TerminalSinkError as exc:
                logger.warning(
                    "%s; writing those %s %s messages through the Python decoder",
                    exc,
                    len(batch),
                    record,
                )
                for body in batch:
                    self._decode_into(body, rows)
        for table, table_rows in rows.items():
            self._run(table, self._insert_rows, table, table_rows)
            self.metrics.rows_written[table] += len(table_rows)
        self.metrics.flushes["ok"] += 1

    def _insert_bodies(self, record: str, batch: list[Body]) -> None:
        container = self._containers[record]
        assert container is not None  # only bodies of a supported record are buffered
        parts: list[Any] = []
        if container.positioned:
            position = container.position
            for writer, data, topic, partition, offset in batch:
                parts.append(memoryview(data)[writer.header_len :])
                parts.append(position(topic, partition, offset))
        else:  # the framing (and so the header's length) may differ message by message
            parts = [memoryview(data)[writer.header_len :] for writer, data, *_ in batch]
        blob = container.frame(parts, len(batch))
        if self.embedded:
            fd, path = tempfile.mkstemp(prefix="xborder-sink-", suffix=".avro")
            try:
                with os.fdopen(fd, "wb") as file:
                    file.write(blob)
                for select, statement in container.statements(file_source(path)):
                    self._run(select.table, self.client.command, statement)
                    self._count(select, len(batch))
            finally:
                os.unlink(path)
        else:
            for select, statement in container.statements(INPUT_SOURCE):
                self._run(select.table, self.client.command, f"{statement} FORMAT Avro", data=blob)
                self._count(select, len(batch))

    def _count(self, select: TableSelect, messages: int) -> None:
        if not select.array_join:  # an ARRAY JOIN makes rows the sink does not see
            self.metrics.rows_written[select.table] += messages

    def _insert_rows(self, table: str, rows: list[list[Any]]) -> None:
        self.client.raw_insert(table, COLUMN_NAMES[table], encode_rows(rows), fmt=ROWS_FORMAT)

    def _run(self, table: str, call: Any, *args: Any, **kwargs: Any) -> None:
        try:
            call(*args, **kwargs)
        except ClickHouseError as exc:
            error = translate_error(exc, table)
            outcome = "transient" if isinstance(error, TransientSinkError) else "terminal"
            self.metrics.flushes[outcome] += 1
            raise error from exc

    def _decode_into(self, body: Body, rows: dict[str, list[list[Any]]]) -> None:
        writer, data, topic, partition, offset = body
        try:
            record, value = self.schemas.decode(data, writer)
        except InvalidRecordError as exc:
            logger.warning(
                "%s first published at %s[%s]@%s skipped: %s",
                writer.record_name,
                topic,
                partition,
                offset,
                exc,
            )
            self.skipped += 1
            return
        for table, row in rows_for(record, value, topic, partition, offset):
            rows.setdefault(table, []).append(row)
