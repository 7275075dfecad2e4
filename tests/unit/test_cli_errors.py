"""Expected errors reach the operator as one line and an exit status, never a traceback:
SQL errors of ``xborder query``, paths that cannot be written, and ``publish`` input that
is not UTF-8 or not JSON (a rejected line, the others still go)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from xborder.agencies import load_agencies
from xborder.cli import clickhouse_error, main
from xborder.codec import AvroCodec
from xborder.producer import EventEncoder
from xborder.publish_cli import decode_line, publish_lines
from xborder.samples import sample_events
from xborder.schemas import SchemaStore
from xborder.settings import load_settings


def _xborder(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "xborder", *args],
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _errors(stderr: str) -> list[str]:
    """stderr without the log lines of the run (migrations and the like)."""
    return [line for line in stderr.splitlines() if " INFO " not in line]


def test_sql_errors_are_one_line_with_clickhouse_code_and_status_1(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    syntax = _xborder("--data-dir", data, "query", "SELEC 1")
    unknown = _xborder("--data-dir", data, "query", "SELECT nope FROM incidents")
    for result in (syntax, unknown):
        assert result.returncode == 1
        assert result.stdout == ""
        assert "Traceback" not in result.stderr
        assert len(_errors(result.stderr)) == 1
    assert _errors(syntax.stderr)[0].startswith(
        "xborder query: error: ClickHouse error 62 (SYNTAX_ERROR): Syntax error: failed at "
        "position 7"
    )
    assert "FORMAT Native" not in syntax.stderr  # the driver's suffix, not the user's SQL
    assert _errors(unknown.stderr)[0] == (
        "xborder query: error: ClickHouse error 47 (UNKNOWN_IDENTIFIER): Unknown expression "
        "identifier `nope`. In scope SELECT nope FROM incidents; check the SQL "
        "(docs/analyst.md lists the tables and views)"
    )


def test_a_server_error_text_is_cut_to_the_message() -> None:
    from clickhouse_connect.driver.exceptions import DatabaseError

    error = DatabaseError(
        "HTTPDriver for http://127.0.0.1:8123 received ClickHouse error code 60\n"
        " Code: 60. DB::Exception: Unknown table expression identifier 'nope' in scope "
        "SELECT * FROM nope. (UNKNOWN_TABLE) (version 25.3.1.1 (official build))\n",
        code=60,
        name="UNKNOWN_TABLE",
    )
    assert clickhouse_error(error) == (
        "ClickHouse error 60 (UNKNOWN_TABLE): Unknown table expression identifier 'nope' in "
        "scope SELECT * FROM nope; check the SQL (docs/analyst.md lists the tables and views)"
    )


def test_a_path_that_cannot_be_written_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    status = main(["scenario", "--events", "10", "--out", str(blocker / "out")])
    assert status == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert errors == [
        f"xborder scenario: error: cannot use {blocker / 'out'}: Not a directory; choose a "
        "path this user can write (or fix its permissions)"
    ]


@pytest.fixture(scope="module")
def encoder() -> EventEncoder:
    settings = load_settings()
    return EventEncoder(
        settings,
        load_agencies(settings.agencies_config),
        AvroCodec(SchemaStore(settings.schemas_dir)),
        "cantho",
    )


def _lines() -> list[bytes]:
    good = [e for e in sample_events(12) if e["agency"] == "cantho"]
    return [
        json.dumps(good[0]).encode(),
        '{"narrative": "Cần Thơ"}'.encode("utf-16"),  # not UTF-8
        json.dumps(good[1], ensure_ascii=False).encode() + b"\xff",  # one stray byte
        b"[1, 2]",
        b"",
        json.dumps(good[2], ensure_ascii=False).encode(),
        json.dumps(good[3]).encode(),
    ]


def test_each_line_is_decoded_on_its_own(encoder: EventEncoder) -> None:
    lines = _lines()
    err = io.StringIO()
    summary = publish_lines(encoder, None, lines, "in.jsonl", "IncidentReported", True, err)
    assert (summary.accepted, summary.rejected, summary.published, summary.lines) == (3, 3, 0, 7)
    assert err.getvalue().splitlines() == [
        "in.jsonl:2: rejected: not UTF-8: byte 0xff at byte 1; save the file as UTF-8",
        f"in.jsonl:3: rejected: not UTF-8: byte 0xff at byte {len(lines[2])}; save the file "
        "as UTF-8",
        "in.jsonl:4: rejected: a line must hold one JSON object",
    ]


def test_lines_before_the_start_line_and_delivered_ids_are_skipped(
    encoder: EventEncoder,
) -> None:
    lines = _lines()
    delivered = {str(json.loads(lines[5])["event_id"]).lower()}
    err = io.StringIO()
    summary = publish_lines(
        encoder, None, lines, "in", "IncidentReported", True, err, delivered, from_line=4
    )
    assert (summary.accepted, summary.rejected, summary.skipped) == (2, 1, 1)
    assert err.getvalue().startswith("in:4: rejected")
    assert "skipped 1 already delivered" in summary.line()


def test_decode_line_names_the_json_error() -> None:
    with pytest.raises(Exception, match="not valid JSON: Expecting property name"):
        decode_line(b"{not json")
