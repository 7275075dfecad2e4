"""Analysts' SQL on live data in embedded mode: the sink serves ClickHouse's HTTP
interface while events flow through a real worker, and stock clients use it
(clickhouse-connect, curl, the official JavaScript client); writes, DDL, ``file()`` and
a wrong password are refused with ClickHouse's codes; ``xborder query`` goes through it."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import clickhouse_connect
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from tests.integration.incidents import incident_messages
from xborder.agencies import load_agencies
from xborder.bench.kafka_io import publish
from xborder.pipeline import Pipeline
from xborder.samples import sample_events
from xborder.settings import Settings, to_env
from xborder.topics import Topics, ensure_project_topics

pytestmark = [pytest.mark.integration, pytest.mark.slow]

USER, PASSWORD = "analyst", "s3cret-for-tests"
JS_CLIENT = "@clickhouse/client@1.23.1"
"""The official JavaScript client, installed once into the user's cache (not the repo)."""

JS_QUERY = """
const { createClient } = require('@clickhouse/client');
(async () => {
  const [url, username, password] = process.argv.slice(2);
  const client = createClient({ url, username, password });
  const rs = await client.query({
    query: 'SELECT agency, count() AS n FROM incidents GROUP BY agency ORDER BY agency',
    format: 'JSONEachRow',
  });
  console.log(JSON.stringify(await rs.json()));
  try {
    await client.command({ query: 'DROP TABLE incidents' });
  } catch (e) {
    console.log(JSON.stringify({ refused: e.code }));
  }
  await client.close();
})();
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _publish(settings: Settings, topics: Topics, count: int) -> None:
    publish(
        settings.kafka.bootstrap_servers,
        incident_messages(settings, topics, sample_events(count)),
    )


def _wait_for_endpoint(port: int, pipeline: Pipeline, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pipeline.check_alive()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"the sink's SQL endpoint did not listen\n{pipeline.log_tails()}")


def _count(client: Any) -> int:
    return int(client.query("SELECT uniqExact(event_id) FROM incidents").result_rows[0][0])


def _curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["curl", "-sS", *args], capture_output=True, text=True, timeout=60, check=False
    )


HEAVY_S = 12
"""How long each heavy query runs (ClickHouse stops it: max_execution_time)."""


def _heavy_query(port: int) -> None:
    """A query that burns CPU until ClickHouse stops it after HEAVY_S."""
    heavy = clickhouse_connect.get_client(
        host="127.0.0.1", port=port, username=USER, password=PASSWORD
    )
    try:
        heavy.query(
            "SELECT count() FROM numbers(100000000000) WHERE sipHash64(number) % 7 = 1",
            settings={"max_execution_time": HEAVY_S, "timeout_overflow_mode": "break"},
        )
    finally:
        heavy.close()


def _js_client() -> Path | None:
    """Where the JavaScript client is installed; None without node and npm (or offline)."""
    if not (shutil.which("node") and shutil.which("npm")):
        return None
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "xborder"
    prefix = cache / "node-clickhouse"
    if not (prefix / "node_modules" / "@clickhouse" / "client").is_dir():
        prefix.mkdir(parents=True, exist_ok=True)
        installed = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(prefix), JS_CLIENT],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if installed.returncode != 0:
            return None
    return prefix


def test_stock_clients_query_live_data_read_only(make_settings) -> None:
    port = _free_port()
    settings = make_settings(
        **{
            "sql_http.port": port,
            "sql_http.users": f"{USER}:{PASSWORD},default:",
            "sql_http.max_concurrent_queries": 5,  # four heavy ones and the checks
        }
    )
    topics = Topics.from_settings(settings, load_agencies(settings.agencies_config))
    ensure_project_topics(settings, topics)
    url = f"http://127.0.0.1:{port}"
    pipeline = Pipeline(settings)
    with pipeline.running():
        _wait_for_endpoint(port, pipeline)
        pipeline.wait_until_settled()
        client = clickhouse_connect.get_client(
            host="127.0.0.1", port=port, username=USER, password=PASSWORD
        )
        try:
            # while events flow, every answer is a consistent count that only grows
            seen = [_count(client)]
            for _ in range(3):
                _publish(settings, topics, 20)
            deadline = time.monotonic() + 90
            while seen[-1] < 60 and time.monotonic() < deadline:
                seen.append(_count(client))
                time.sleep(0.2)
            assert seen[-1] == 60, pipeline.log_tails()
            assert seen == sorted(seen)

            frame = client.query_df(
                "SELECT agency, count() AS n FROM incidents WHERE category != {skip:String}"
                " GROUP BY agency ORDER BY agency",
                parameters={"skip": "none-such"},
            )
            assert int(frame["n"].sum()) == 60
            agencies = load_agencies(settings.agencies_config).agencies
            assert set(frame["agency"]) <= {a.id for a in agencies}

            # refused by ClickHouse's rules, with its codes
            refusals = {
                "INSERT INTO incidents (incident_id) VALUES ('x')": 164,
                "DROP TABLE incidents": 164,
                "SELECT * FROM file('/etc/passwd', 'LineAsString')": 497,
                "SELECT file('/etc/hostname')": 497,
                "SYSTEM FLUSH LOGS": 164,
            }
            for sql, code in refusals.items():
                with pytest.raises(DatabaseError) as refused:
                    client.command(sql)
                assert refused.value.code == code, (sql, refused.value)
            assert _count(client) == 60

            # four heavy queries at once do not stall the sink: new events land meanwhile
            heavy = [threading.Thread(target=_heavy_query, args=(port,)) for _ in range(4)]
            for thread in heavy:
                thread.start()
            time.sleep(1)
            _publish(settings, topics, 20)
            deadline = time.monotonic() + HEAVY_S
            while _count(client) < 80 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert _count(client) == 80
            assert all(thread.is_alive() for thread in heavy), "the heavy queries ended early"
            for thread in heavy:
                thread.join(HEAVY_S + 30)
        finally:
            client.close()

        with pytest.raises(DatabaseError) as wrong:
            clickhouse_connect.get_client(
                host="127.0.0.1", port=port, username=USER, password="wrong"
            )
        assert "516" in str(wrong.value) and "AUTHENTICATION_FAILED" in str(wrong.value)

        # curl: ?query=, FORMAT JSONEachRow, basic auth; errors as ClickHouse sends them
        ok = _curl(
            "-u",
            f"{USER}:{PASSWORD}",
            f"{url}/?query=SELECT%20count()%20AS%20n%20FROM%20incidents%20FORMAT%20JSONEachRow",
        )
        assert ok.returncode == 0 and json.loads(ok.stdout) == {"n": 80}
        denied = _curl("-i", "-u", f"{USER}:wrong", f"{url}/?query=SELECT%201")
        assert denied.stdout.startswith("HTTP/1.1 403")
        assert "X-ClickHouse-Exception-Code: 516" in denied.stdout
        assert "Code: 516. DB::Exception: analyst: Authentication failed" in denied.stdout
        missing = _curl("-i", "--data-binary", "SELECT * FROM nope", f"{url}/")
        assert missing.stdout.startswith("HTTP/1.1 404")
        assert "Code: 60. DB::Exception:" in missing.stdout
        assert _curl(f"{url}/ping").stdout == "Ok.\n"

        # a client from another ecosystem: the official JavaScript client
        prefix = _js_client()
        if prefix is not None:
            script = prefix / "query.js"
            script.write_text(JS_QUERY)
            ran = subprocess.run(
                ["node", str(script), url, USER, PASSWORD],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
                cwd=prefix,
            )
            assert ran.returncode == 0, ran.stderr
            rows, refusal = (json.loads(line) for line in ran.stdout.splitlines())
            assert sum(int(r["n"]) for r in rows) == 80
            assert refusal == {"refused": "164"}

        # xborder query goes through the endpoint: the sink holds the engine directory
        env = {**os.environ, **to_env(settings)}
        table = subprocess.run(
            [sys.executable, "-m", "xborder", "query", "SELECT count() AS n FROM incidents"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert table.returncode == 0, table.stderr
        assert "80" in table.stdout and "─n─" in table.stdout
        lines = subprocess.run(
            [
                sys.executable,
                "-m",
                "xborder",
                "query",
                "SELECT agency FROM incidents ORDER BY agency LIMIT 2",
                "--format",
                "json",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert lines.returncode == 0, lines.stderr
        assert [set(json.loads(line)) for line in lines.stdout.splitlines()] == [{"agency"}] * 2
        error = subprocess.run(
            [sys.executable, "-m", "xborder", "query", "DROP TABLE incidents"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert error.returncode == 1
        assert error.stderr.strip().splitlines() == [
            "xborder query: error: ClickHouse error 164 (READONLY): analyst: Cannot execute "
            "query in readonly mode; check the SQL (docs/analyst.md lists the tables and views)"
        ]
