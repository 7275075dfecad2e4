"""ClickHouse errors the sink retries and those that stop it, by error code."""

from __future__ import annotations

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

from sinks.clickhouse import translate_error
from xborder.errors import TerminalSinkError, TransientSinkError


def _error(code: int | None) -> DatabaseError:
    exc = DatabaseError(f"Code: {code}. DB::Exception: injected")
    exc.code = code
    return exc


@pytest.mark.parametrize("code", [1001, 76, 75, 243, 209, 210, 252, 999])
def test_filesystem_network_and_pressure_errors_are_retried(code: int) -> None:
    # 1001: chDB's filesystem errors (a read-only or full data directory)
    assert isinstance(translate_error(_error(code), "incidents"), TransientSinkError)


def test_a_lost_connection_is_retried() -> None:
    error = translate_error(OperationalError("connection refused"), "alerts")
    assert isinstance(error, TransientSinkError)


@pytest.mark.parametrize("code", [60, 16, 62])
def test_a_missing_table_or_bad_query_stops_the_sink_with_the_fix(code: int) -> None:
    error = translate_error(_error(code), "alerts")
    assert isinstance(error, TerminalSinkError)
    if code in (60, 16):
        assert "xborder migrate" in str(error)
