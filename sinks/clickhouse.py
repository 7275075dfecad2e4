"""The ClickHouse sink: incident events to the ``incidents`` table.

It owns its client, its column list (names and types passed explicitly, so an insert
needs no server round-trip) and the translation of ClickHouse errors into transient
(retry) and terminal (stop) by error code.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import (
    ClickHouseError,
    DatabaseError,
    OperationalError,
)
from kafka import TopicPartition

from sinks.base import BatchingSink, PartitionBuffer
from xborder.errors import TerminalSinkError, TransientSinkError
from xborder.metrics import SinkMetrics

logger = logging.getLogger(__name__)

# ClickHouse error codes that a retry can outlive: timeouts, network, memory pressure,
# too many parts or queries, read-only or missing replicas, unknown insert status.
TRANSIENT_CODES = frozenset({3, 159, 164, 202, 203, 209, 210, 241, 242, 252, 285, 319, 425, 999})

INCIDENT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("event_id", "UUID"),
    ("agency", "LowCardinality(String)"),
    ("incident_id", "String"),
    ("event_type", "LowCardinality(String)"),
    ("occurred_at", "DateTime64(3, 'UTC')"),
    ("reported_at", "DateTime64(3, 'UTC')"),
    ("lat", "Float64"),
    ("lon", "Float64"),
    ("admin_unit_code", "String"),
    ("admin_unit_name", "String"),
    ("address", "Nullable(String)"),
    ("category", "LowCardinality(String)"),
    ("severity", "LowCardinality(String)"),
    ("subject_kinds", "Array(LowCardinality(String))"),
    ("subject_roles", "Array(LowCardinality(String))"),
    ("subject_tokens", "Array(String)"),
    ("modus_operandi", "Array(String)"),
    ("narrative", "Nullable(String)"),
    ("source_system", "LowCardinality(String)"),
    ("source_topic", "LowCardinality(String)"),
    ("source_partition", "UInt16"),
    ("source_offset", "UInt64"),
)


CLOSURE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("event_id", "UUID"),
    ("agency", "LowCardinality(String)"),
    ("incident_id", "String"),
    ("closed_at", "DateTime64(3, 'UTC')"),
    ("outcome", "LowCardinality(String)"),
    ("reason", "Nullable(String)"),
    ("source_topic", "LowCardinality(String)"),
    ("source_partition", "UInt16"),
    ("source_offset", "UInt64"),
)

TABLE_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "incidents": INCIDENT_COLUMNS,
    "incident_closures": CLOSURE_COLUMNS,
}


def closure_row(value: dict[str, Any], topic: str, partition: int, offset: int) -> list[Any]:
    """One ``incident_closures`` row from a decoded IncidentClosed event."""
    return [
        value["event_id"],
        value["agency"],
        value["incident_id"],
        value["closed_at"],
        value["outcome"],
        value.get("reason"),
        topic,
        partition,
        offset,
    ]


def table_row(
    record_name: str, value: dict[str, Any], topic: str, partition: int, offset: int
) -> tuple[str, list[Any]]:
    """The table and row an accepted incident event becomes."""
    if record_name.endswith(".IncidentClosed"):
        return "incident_closures", closure_row(value, topic, partition, offset)
    return "incidents", incident_row(record_name, value, topic, partition, offset)


def incident_row(
    record_name: str, value: dict[str, Any], topic: str, partition: int, offset: int
) -> list[Any]:
    """One ``incidents`` row from a decoded incident event, in INCIDENT_COLUMNS order."""
    location = value["location"]
    subjects = value.get("subjects", [])
    return [
        value["event_id"],
        value["agency"],
        value["incident_id"],
        record_name.rpartition(".")[2],
        value["occurred_at"],
        value["reported_at"],
        location["lat"],
        location["lon"],
        location["admin_unit_code"],
        location["admin_unit_name"],
        location.get("address"),
        value["category"],
        value["severity"],
        [s["kind"] for s in subjects],
        [s["role"] for s in subjects],
        [s["token"] for s in subjects],
        list(value.get("modus_operandi", [])),
        value.get("narrative"),
        value["source_system"],
        topic,
        partition,
        offset,
    ]


def translate_error(exc: Exception, table: str) -> Exception:
    """Map a ClickHouse client error to TransientSinkError or TerminalSinkError."""
    code = getattr(exc, "code", None)
    if isinstance(exc, OperationalError) or code in TRANSIENT_CODES:
        return TransientSinkError(f"insert into {table} failed (code {code}), will retry: {exc}")
    hint = ""
    if isinstance(exc, DatabaseError) and code in (16, 47, 60):
        hint = "; the table or a column is missing: run 'xborder migrate'"
    return TerminalSinkError(f"insert into {table} failed (code {code}): {exc}{hint}")


class ClickHouseIncidentSink(BatchingSink):
    """Writes (table, row) items to ClickHouse in batches, one insert per table."""

    def __init__(
        self, client: Client, batch_size: int, flush_interval_s: float, metrics: SinkMetrics
    ) -> None:
        super().__init__(batch_size, flush_interval_s)
        self.client = client
        self.metrics = metrics

    def write(self, items: Sequence[Any], buffers: dict[TopicPartition, PartitionBuffer]) -> None:
        by_table: dict[str, list[list[Any]]] = {}
        for table, row in items:
            by_table.setdefault(table, []).append(row)
        for table, rows in by_table.items():
            columns = TABLE_COLUMNS[table]
            try:
                self.client.insert(
                    table,
                    rows,
                    column_names=[name for name, _ in columns],
                    column_type_names=[kind for _, kind in columns],
                )
            except ClickHouseError as exc:
                error = translate_error(exc, table)
                outcome = "transient" if isinstance(error, TransientSinkError) else "terminal"
                self.metrics.flushes[outcome] += 1
                raise error from exc
            self.metrics.rows_written[table] += len(rows)
        self.metrics.flushes["ok"] += 1
