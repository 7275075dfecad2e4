"""The audit_log view in the real engine (embedded chDB): every accepted verdict, report
and release once (also when the sink wrote it twice) with who, what and when, and every
refused verification input with its reason; refusals of other topics stay out."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

from xborder.clickhouse import get_client
from xborder.settings import load_settings

T = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def test_audit_log_says_who_did_what_and_when(tmp_path: Path) -> None:
    client = get_client(load_settings(data_dir=tmp_path, **{"clickhouse.database": "audit"}))
    verdict, report, release = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    for _ in range(2):  # at least once: every row delivered twice
        client.insert(
            "verdicts",
            [[verdict, "case-1", "cantho", "REJECT", "not the same car", "tok-a", "k1", T]],
            column_names=["event_id", "case_id", "agency", "decision", "reason",
                          "officer_token", "officer_key_id", "decided_at"],
        )  # fmt: skip
        client.insert(
            "case_reports",
            [[report, "case-1", "angiang", "conc-1", "agreed", "tok-b", "k1", T]],
            column_names=["event_id", "case_id", "agency", "conclusion_id", "conclusion",
                          "officer_token", "officer_key_id", "requested_at"],
        )  # fmt: skip
        client.insert(
            "incident_releases",
            [[release, "case-1", "angiang", "AG-7", uuid.uuid4(), T, ["cantho"], False]],
            column_names=["event_id", "case_id", "agency", "incident_id", "incident_event_id",
                          "released_at", "audience", "has_details"],
        )  # fmt: skip
    columns = [
        "failed_at", "agency", "reason", "error", "source_topic", "source_partition",
        "source_offset", "deadletter_topic", "deadletter_partition", "deadletter_offset",
    ]  # fmt: skip
    client.insert(
        "dead_letters",
        [
            [T, "cantho", "not-involved", "agency cantho is not in case-9", "verdicts.cantho",
             0, 41, "deadletters", 0, 3],
            [T, "cantho", "invalid", "bad field", "incidents.cantho", 0, 5, "deadletters", 0, 4],
        ],
        column_names=columns,
    )  # fmt: skip

    rows = client.query(
        "SELECT action, outcome, agency, officer_token, officer_key_id, case_id, event_id,"
        " detail, source FROM audit_log ORDER BY source"
    ).result_rows
    assert rows == [
        ("report", "accepted", "angiang", "tok-b", "k1", "case-1", str(report),
         "conclusion conc-1", "case_reports"),
        ("refused input", "refused: not-involved", "cantho", "", "", "", "verdicts.cantho[0]@41",
         "agency cantho is not in case-9", "dead_letters"),
        ("release", "accepted", "angiang", "", "", "case-1", str(release),
         "incident AG-7 to cantho (by reference)", "incident_releases"),
        ("verdict", "accepted", "cantho", "tok-a", "k1", "case-1", str(verdict),
         "REJECT: not the same car", "verdicts"),
    ]  # fmt: skip
    (at,) = client.query("SELECT DISTINCT at FROM audit_log").result_rows[0]
    assert at.replace(tzinfo=UTC) == T
    client.close()
