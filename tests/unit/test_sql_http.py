"""The SQL endpoint's rules without an engine: which statements an analyst may run (on
the engine's ``EXPLAIN AST`` text), users, and ClickHouse's HTTP statuses."""

from __future__ import annotations

import pytest

from xborder.errors import ConfigurationError
from xborder.sql_http import (
    ACCESS_DENIED,
    INTO_OUTFILE_NOT_ALLOWED,
    READONLY,
    EngineError,
    _ast,
    check_statement,
    content_type,
    http_status,
    parse_users,
)

SELECT_FROM = """SelectWithUnionQuery (children {n})
 ExpressionList (children 1)
  SelectQuery (children 2)
   ExpressionList (children 1)
    Asterisk
   TablesInSelectQuery (children 1)
    TablesInSelectQueryElement (children 1)
     TableExpression (children 1)
      {table}
{tail}"""


def _select(table: str, tail: str = "") -> list[tuple[int, str]]:
    return _ast(SELECT_FROM.format(n=2 if tail else 1, table=table, tail=tail))


def _refusal(ast: list[tuple[int, str]]) -> EngineError:
    with pytest.raises(EngineError) as refused:
        check_statement(ast, "analyst")
    return refused.value


def test_reading_statements_pass_and_their_format_is_known() -> None:
    assert check_statement(_select("TableIdentifier incidents"), "analyst") is None
    assert check_statement(_select("Function numbers (children 1)"), "a") is None
    assert check_statement(_select("TableIdentifier t", " Identifier JSONEachRow"), "a") == (
        "JSONEachRow"
    )
    for root in ("ShowTables", "DescribeQuery (children 1)", "Set", "UseQuery system"):
        assert check_statement(_ast(root), "a") is None


def test_writes_ddl_and_system_commands_are_readonly_errors() -> None:
    for root in (
        "InsertQuery   (children 1)",
        "CreateQuery xborder t (children 1)",
        "DropQuery  t",
        "SystemQuery",
        "BackupQuery",
    ):
        error = _refusal(_ast(root))
        assert error.code == READONLY and error.name == "READONLY"
        assert error.text == (
            "Code: 164. DB::Exception: analyst: Cannot execute query in readonly mode. (READONLY)"
        )
        assert error.status == 500


def test_outside_reads_kill_and_outfile_are_refused() -> None:
    file_ = _refusal(_select("Function file (children 1)"))
    assert (file_.code, file_.name, file_.status) == (ACCESS_DENIED, "ACCESS_DENIED", 403)
    assert "READ ON FILE" in file_.text
    assert "READ ON URL" in _refusal(_select("Function url (alias u) (children 1)")).text
    assert "READ ON REMOTE" in _refusal(_select("Function remote (children 1)")).text
    assert _refusal(_select("Function Python (children 1)")).code == ACCESS_DENIED
    scalar_file = "SelectWithUnionQuery (children 1)\n Function file (children 1)"
    assert _refusal(_ast(scalar_file)).code == ACCESS_DENIED
    kill = _refusal(_ast("KillQueryQuery Literal_UInt64_1 ASYNC (children 1)"))
    assert kill.code == ACCESS_DENIED and "KILL QUERY" in kill.text
    outfile = _refusal(_select("TableIdentifier t", " Literal \\'/tmp/x\\'"))
    assert outfile.code == INTO_OUTFILE_NOT_ALLOWED


def test_users_and_statuses() -> None:
    assert parse_users("default:,analyst:pa:ss") == {"default": "", "analyst": "pa:ss"}
    for bad in ("", "analyst", ":pw"):
        with pytest.raises(ConfigurationError):
            parse_users(bad)
    assert [http_status(n) for n in ("SYNTAX_ERROR", "UNKNOWN_TABLE", "AUTHENTICATION_FAILED")] == [
        400,
        404,
        403,
    ]
    assert http_status("QUERY_WAS_CANCELLED") == 500
    error = EngineError.from_engine(
        RuntimeError("Code: 60. DB::Exception: Unknown table. (UNKNOWN_TABLE)")
    )
    assert (error.code, error.name, error.status) == (60, "UNKNOWN_TABLE", 404)
    assert content_type("JSONEachRow").startswith("application/x-ndjson")
    assert content_type("CSVWithNames") == "text/csv; charset=UTF-8; header=present"
    assert content_type("Native") == "application/octet-stream"
