"""The README's first command as a fresh user runs it: ``xborder demo`` starts its own Kafka,
publishes the samples, walks two cases through joint verification and prints the tables.

It runs on a broker of its own (a free port, a fresh data directory), not the session's,
because the demo starts and stops Kafka itself.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from tests.conftest import free_port_pair
from xborder.clickhouse import get_client
from xborder.demo import run_demo
from xborder.settings import load_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_the_demo_agrees_one_case_and_leaves_one_disputed(tmp_path: Path) -> None:
    port = free_port_pair()
    settings = load_settings(
        **{
            "data_dir": tmp_path / "demo",
            "local_kafka.port": port,
            "local_kafka.heap": "768m",
            "kafka.bootstrap_servers": f"127.0.0.1:{port}",
            "worker.web_port": free_port_pair(),
            "sink.flush_interval_s": 0.3,
        }
    )
    out = io.StringIO()
    status = run_demo(settings, out=out)
    text = out.getvalue()
    assert status == 0, text

    found = re.findall(r"joint case (\w{12}) opened \(([^)]+)\)", text)
    opened = {kind: case for case, kind in found}
    assert set(opened) == {"possible double report", "shared vehicle"}, text
    assert "agreed conclusion" in text
    assert "reports the agreed conclusion to its superiors: accepted" in text
    refused = re.search(r"cantho tries to report it anyway: rejected \(([\w-]+)\): (.+)", text)
    assert refused is not None, text
    assert refused.group(1) == "case-disputed"
    assert "is disputed (rejected by angiang)" in refused.group(2)
    assert "unexpected" not in text.lower()

    client = get_client(settings)
    try:
        rows = client.query("SELECT left(case_id, 12), status FROM cases_current").result_rows
        statuses = {case: status for case, status in rows}
        verdicts = client.query(
            "SELECT left(case_id, 12), agency, decision FROM verdicts FINAL ORDER BY decided_at"
        ).result_rows
        conclusions = client.query(
            "SELECT left(case_id, 12), verdict_agencies, possible_double_report"
            " FROM case_conclusions FINAL"
        ).result_rows
        reports = client.query(
            "SELECT left(case_id, 12), agency FROM case_reports FINAL"
        ).result_rows
        agreement = client.query(
            "SELECT left(case_id, 12), agency FROM time_to_agreement ORDER BY agency"
        ).result_rows
    finally:
        client.close()
    agreed, disputed = opened["possible double report"], opened["shared vehicle"]
    assert statuses == {agreed: "CONCLUDED", disputed: "DISPUTED"}
    assert verdicts == [
        (agreed, "cantho", "CONFIRM"),
        (agreed, "angiang", "CONFIRM"),
        (disputed, "cantho", "CONFIRM"),
        (disputed, "angiang", "REJECT"),
    ]
    assert conclusions == [(agreed, ["angiang", "cantho"], True)]
    assert reports == [(agreed, "cantho")]
    assert agreement == [(agreed, "angiang"), (agreed, "cantho")]
    # the tables the demo printed for the analyst
    for title in ("cases_current", "verdicts", "case_conclusions", "case_reports"):
        assert f"({title}):" in text
