"""ClickHouse access control (deploy/clickhouse/, 'xborder clickhouse access').

chDB refuses access-control statements (its session user has no access management), so
what runs here is: every rendered statement through ClickHouse's own parser
(``formatQuery``), every table of the migrated database covered by the policies, and each
agency's row-policy condition run as a filter over real tables in chDB: it keeps exactly
the agency's own rows plus the cross-border records it is part of."""

from __future__ import annotations

import re
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from xborder.cli import main
from xborder.clickhouse import get_client
from xborder.clickhouse_access import (
    AUDITOR,
    WRITER,
    agency_role,
    agency_user,
    load_passwords,
    render,
    users_of,
)
from xborder.settings import load_settings

AGENCIES = ["cantho", "angiang"]
DB = "access"
POLICY = re.compile(
    r"^CREATE ROW POLICY OR REPLACE (\w+) ON \w+\.(\w+) FOR SELECT USING (.*) TO (.*)$"
)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    data_dir = tmp_path_factory.mktemp("access")
    client = get_client(load_settings(data_dir=data_dir, **{"clickhouse.database": DB}))
    yield client
    client.close()


@pytest.fixture(scope="module")
def statements(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    path = tmp_path_factory.mktemp("pw") / "clickhouse-access.json"
    return render(DB, AGENCIES, load_passwords(path, users_of(AGENCIES)))


def policies(statements: list[str]) -> dict[str, dict[str, tuple[str, str]]]:
    """policy name -> table -> (condition, grantees)."""
    found: dict[str, dict[str, tuple[str, str]]] = {}
    for statement in statements:
        if match := POLICY.match(statement):
            name, table, condition, grantees = match.groups()
            found.setdefault(name, {})[table] = (condition, grantees)
    return found


def test_every_statement_parses_in_clickhouse(client: Client, statements: list[str]) -> None:
    assert len(statements) > 40
    for statement in statements:
        (formatted,) = client.query(
            "SELECT formatQuery({q:String})", parameters={"q": statement}
        ).result_rows[0]
        assert formatted.split()[:2] == statement.split()[:2], statement


def test_every_table_is_covered_for_every_agency_and_the_writer(
    client: Client, statements: list[str]
) -> None:
    tables = {
        row[0]
        for row in client.query(
            "SELECT name FROM system.tables WHERE database = {db:String}"
            " AND engine LIKE '%MergeTree%'",
            parameters={"db": DB},
        ).result_rows
    }
    found = policies(statements)
    assert set(found["xborder_all"]) == tables
    assert "xborder_writer, xborder_auditor" in found["xborder_all"]["incidents"][1]
    for agency in AGENCIES:
        assert set(found[f"xborder_{agency}"]) == tables - {"schema_migrations"}
        assert {grantees for _, grantees in found[f"xborder_{agency}"].values()} == {
            agency_role(agency)
        }


def test_analysts_get_no_file_url_or_write_grants(statements: list[str]) -> None:
    grants = [s for s in statements if s.startswith("GRANT ") and " TO xborder_read" in s]
    assert grants and all(s.startswith("GRANT SELECT ON ") for s in grants), grants
    assert not [s for s in statements if re.search(r"\b(FILE|URL|S3|REMOTE|SOURCES)\b", s)]
    profile = next(s for s in statements if "PROFILE xborder_readonly SETTINGS" in s)
    assert "readonly = 2 CONST" in profile and "log_queries = 1 CONST" in next(
        s for s in statements if "PROFILE xborder_logged SETTINGS" in s
    )


ROWS = [
    "INSERT INTO incidents (event_id, agency, incident_id) VALUES"
    " ('00000000-0000-0000-0000-0000000000c1', 'cantho', 'C1'),"
    " ('00000000-0000-0000-0000-0000000000a1', 'angiang', 'A1'),"
    " ('00000000-0000-0000-0000-0000000000a2', 'angiang', 'A2')",
    "INSERT INTO incident_closures (agency, incident_id) VALUES ('angiang', 'A2')",
    "INSERT INTO correlations (correlation_id, a_agency, b_agency) VALUES"
    " ('x1', 'cantho', 'angiang'), ('x2', 'angiang', 'angiang')",
    "INSERT INTO case_events (case_id, case_event_id, agencies, incident_agencies) VALUES"
    " ('K1', 'k1', ['angiang', 'cantho'], ['angiang', 'cantho']),"
    " ('K2', 'k2', ['angiang'], ['angiang'])",
    "INSERT INTO case_members (agency, incident_id, case_id) VALUES"
    " ('cantho', 'C1', 'K1'), ('angiang', 'A1', 'K1'), ('angiang', 'A2', 'K2')",
    "INSERT INTO alerts (identifier, target_agencies) VALUES ('l1', ['cantho']),"
    " ('l2', ['angiang'])",
    "INSERT INTO verdicts (event_id, case_id, agency) VALUES"
    " (generateUUIDv4(), 'K1', 'cantho'), (generateUUIDv4(), 'K1', 'angiang'),"
    " (generateUUIDv4(), 'K2', 'angiang')",
    "INSERT INTO case_conclusions (conclusion_id, case_id, agencies) VALUES"
    " ('c1', 'K1', ['angiang', 'cantho'])",
    "INSERT INTO case_reports (event_id, case_id, agency) VALUES (generateUUIDv4(), 'K1',"
    " 'angiang')",
    "INSERT INTO incident_releases (event_id, case_id, agency, incident_id,"
    " incident_event_id, audience) VALUES (generateUUIDv4(), 'K1', 'angiang', 'A1',"
    " '00000000-0000-0000-0000-0000000000a1', ['cantho'])",
    "INSERT INTO dead_letters (agency, reason, source_topic) VALUES ('cantho', 'x', 't'),"
    " ('angiang', 'x', 't')",
]
VISIBLE = {
    "cantho": {
        "incidents": 2,  # its own and the released one of angiang
        "incident_closures": 0,
        "correlations": 1,
        "case_events": 1,
        "case_members": 2,  # its own and the hit of angiang in K1
        "alerts": 1,
        "verdicts": 2,  # both of K1, none of K2
        "case_conclusions": 1,
        "case_reports": 1,
        "incident_releases": 1,
        "dead_letters": 1,
    },
    "angiang": {
        "incidents": 2,
        "incident_closures": 1,
        "correlations": 2,
        "case_events": 2,
        "case_members": 3,
        "alerts": 1,
        "verdicts": 3,
        "case_conclusions": 1,
        "case_reports": 1,
        "incident_releases": 1,
        "dead_letters": 1,
    },
}


def test_row_policies_keep_own_rows_and_shared_records(
    client: Client, statements: list[str]
) -> None:
    for insert in ROWS:
        client.command(insert)
    found = policies(statements)
    for agency, expected in VISIBLE.items():
        seen = {
            table: client.query(
                f"SELECT count() FROM {table} FINAL WHERE {found[f'xborder_{agency}'][table][0]}"
            ).result_rows[0][0]
            for table in expected
        }
        assert seen == expected, agency


def test_passwords_are_generated_once_mode_600_and_never_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XBORDER_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("XBORDER_CLICKHOUSE__URL", raising=False)
    assert main(["clickhouse", "access"]) == 0
    printed = capsys.readouterr().out
    path = tmp_path / "clickhouse-access.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    passwords = load_passwords(path, [])
    assert set(passwords) == {WRITER, AUDITOR, agency_user("cantho"), agency_user("angiang")}
    assert not [p for p in passwords.values() if p in printed]
    assert "IDENTIFIED WITH sha256_hash BY" in printed
    assert main(["clickhouse", "access", "--show-passwords"]) == 0
    shown = capsys.readouterr().out
    assert all(f"{user} {password}" in shown for user, password in passwords.items())
    assert load_passwords(path, users_of(AGENCIES)) == passwords  # kept, not regenerated
    assert main(["clickhouse", "access", "--apply"]) == 2  # embedded: no users to manage
    assert "needs a ClickHouse server" in capsys.readouterr().err


def test_server_config_is_well_formed_xml() -> None:
    from xml.etree import ElementTree

    from xborder.clickhouse_access import DEPLOY_DIR

    root = ElementTree.parse(DEPLOY_DIR / "config.d" / "xborder-access.xml").getroot()
    improvements = root.find("access_control_improvements")
    assert improvements is not None
    assert improvements.findtext("users_without_row_policies_can_read_rows") == "false"
    assert improvements.findtext("select_from_system_db_requires_grant") == "true"
    assert root.find("query_log") is not None and root.find("session_log") is not None
