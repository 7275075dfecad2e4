"""The ClickHouse writer: batches of (table, row) items, one insert per table.

It owns its client, passes column names and types explicitly (so an insert needs no
server round-trip; the columns live in :mod:`sinks.rows`) and translates ClickHouse
errors into transient (retry) and terminal (stop) by error code.
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
from sinks.rows import TABLE_COLUMNS
from xborder.errors import TerminalSinkError, TransientSinkError
from xborder.metrics import SinkMetrics

logger = logging.getLogger(__name__)

# ClickHouse error codes that a retry can outlive: timeouts, network, memory pressure,
# too many parts or queries, read-only or missing replicas, unknown insert status.
TRANSIENT_CODES = frozenset({3, 159, 164, 202, 203, 209, 210, 241, 242, 252, 285, 319, 425, 999})


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
