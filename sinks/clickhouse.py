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
    """Writes decoded incident rows to ClickHouse in batches."""

    table = "incidents"

    def __init__(
        self, client: Client, batch_size: int, flush_interval_s: float, metrics: SinkMetrics
    ) -> None:
        super().__init__(batch_size, flush_interval_s)
        self.client = client
        self.metrics = metrics
        self._names = [name for name, _ in INCIDENT_COLUMNS]
        self._types = [kind for _, kind in INCIDENT_COLUMNS]

    def write(self, items: Sequence[Any], buffers: dict[TopicPartition, PartitionBuffer]) -> None:
        try:
            self.client.insert(
                self.table, list(items), column_names=self._names, column_type_names=self._types
            )
        except ClickHouseError as exc:
            error = translate_error(exc, self.table)
            outcome = "transient" if isinstance(error, TransientSinkError) else "terminal"
            self.metrics.flushes[outcome] += 1
            raise error from exc
        self.metrics.flushes["ok"] += 1
        self.metrics.rows_written[self.table] += len(items)
