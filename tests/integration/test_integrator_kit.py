"""The integrators' kit against clients the project did not write: Java's Schema.Parser
reads every exported schema alone and computes the wire's fingerprints, and the Java
example producer (examples/java-producer, built with Maven) publishes events made with
``keys generate`` and ``pseudonymise`` that the real worker accepts and correlates."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration import java_client
from xborder.agencies import load_agencies
from xborder.cli import main
from xborder.clickhouse import get_client
from xborder.pipeline import Pipeline
from xborder.settings import Settings, to_env
from xborder.topics import Topics, ensure_project_topics

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "java-producer"
PARSE_SCHEMAS = ROOT / "tests" / "java" / "ParseSchemas.java"
GUIDE = ROOT / "docs" / "integration.md"
OLD_AVRO = Path.home() / ".m2" / "repository" / "org/apache/avro/avro/1.11.1/avro-1.11.1.jar"


def _export(settings: Settings, directory: Path) -> dict[str, dict[str, Any]]:
    assert main(["--agencies-config", str(settings.agencies_config), "schemas", "export",
                 str(directory)]) == 0  # fmt: skip
    manifest = json.loads((directory / "manifest.json").read_text())
    return {entry["file"]: entry for entry in manifest["schemas"]}


def _java(*args: str, timeout_s: float = 60) -> list[str]:
    result = subprocess.run(["java", *args], capture_output=True, text=True, timeout=timeout_s)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.splitlines()


def test_java_reads_each_exported_schema_alone_with_the_wire_fingerprint(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    entries = _export(kafka_settings, tmp_path)
    files = [str(tmp_path / name) for name in sorted(entries)]
    classpath = java_client.classpath(kafka_settings)
    variants = {"avro 1.12.0": classpath}
    if OLD_AVRO.exists():  # an older parser, when Maven has it (it resolves no references)
        jars = [j for j in classpath.split(":") if "/avro-1.12.0.jar" not in j]
        variants["avro 1.11.1"] = ":".join([str(OLD_AVRO), *jars])
    for variant, path in variants.items():
        parsed = [json.loads(line) for line in _java("-cp", path, str(PARSE_SCHEMAS), *files)]
        assert [p["file"] for p in parsed] == sorted(entries), variant
        for found in parsed:
            entry = entries[found["file"]]
            assert found["name"] == entry["name"], variant
            assert found["canonical_form"] == entry["canonical_form"], (variant, entry["name"])
            assert found["fingerprint"] == entry["fingerprint"], (variant, entry["name"])


def doc_blocks(text: str) -> list[tuple[str, str, str]]:
    """(section heading, language, code) of each fenced block of a Markdown page."""
    blocks, section = [], ""
    for match in re.finditer(r"^(## [^\n]*)$|^```(\w*)\n(.*?)^```$", text, re.M | re.S):
        if match.group(1):
            section = match.group(1)
        else:
            blocks.append((section, match.group(2), match.group(3)))
    return blocks


def _script(blocks: list[tuple[str, str, str]]) -> str:
    """One bash script running the shell and Python blocks in order, stopping at the
    first failure."""
    parts = ["set -euo pipefail"]
    for _, language, code in blocks:
        if language == "sh":
            parts.append(code)
        elif language == "python":
            parts.append(f"\"$DOC_PYTHON\" - <<'PYTHON_BLOCK'\n{code}PYTHON_BLOCK")
    return "\n".join(parts) + "\n"


def _bash(script: str, cwd: Path, env: dict[str, str], timeout_s: float = 300) -> str:
    done = subprocess.run(
        ["bash", "-c", script], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=timeout_s,
    )  # fmt: skip
    assert done.returncode == 0, f"{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done.stdout


def test_the_integration_guide_runs_and_its_events_are_accepted_and_correlated(
    make_settings: Any, tmp_path: Path
) -> None:
    """docs/integration.md, every command in order, on the real broker, worker and sink:
    the keys, pseudonymise, publish (command line), the Python library, the schemas
    export and the Java example producer (built with Maven, run with its defaults)."""
    settings = make_settings()
    topics = Topics.from_settings(settings, load_agencies(settings.agencies_config))
    ensure_project_topics(settings, topics)
    shutil.copytree(EXAMPLE, tmp_path / "examples" / EXAMPLE.name,
                    ignore=shutil.ignore_patterns("target"))  # fmt: skip
    env = {
        **os.environ,
        **to_env(settings),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "DOC_PYTHON": sys.executable,
        "MAVEN_OPTS": "-XX:TieredStopAtLevel=1",  # a short build: skip the slow JIT tiers
    }
    blocks = doc_blocks(GUIDE.read_text())
    publishing = [b for b in blocks if not b[0].startswith("## 6.")]
    checking = [b for b in blocks if b[0].startswith("## 6.")]
    assert len(publishing) == 7 and len(checking) == 1
    pipeline = Pipeline(settings)
    with pipeline.running():
        pipeline.wait_until_settled()
        out = _bash(_script(publishing), tmp_path, env)
        pipeline.wait_until_drained(topics, timeout_s=60)
        status = _bash(_script(checking), tmp_path / "walkthrough", env)

    work = tmp_path / "walkthrough"
    assert stat.S_IMODE((work / "example-keys.json").stat().st_mode) == 0o600
    published = {
        agency: json.loads((work / f"{agency}.jsonl").read_text()) for agency in topics.agency_ids
    }
    cantho, angiang = published["cantho"], published["angiang"]
    assert f"sent {angiang['event_id']} {topics.incidents('angiang')}[" in out  # from Java
    assert cantho["subjects"][0]["token"] == angiang["subjects"][0]["token"]  # one plate
    assert re.search(r"^\(none\)\s+0$", status, re.M), status  # no dead letters
    client = get_client(settings)
    try:
        rows = client.query(
            "SELECT agency, incident_id, toString(event_id), subject_tokens "
            "FROM incidents FINAL ORDER BY incident_id"
        ).result_rows
        links = client.query(
            "SELECT a_incident_id, b_incident_id, evidence_kinds FROM correlations FINAL"
        ).result_rows
    finally:
        client.close()
    by_incident = {row[1]: row for row in rows}
    assert set(by_incident) == {"AG-2026-004567", "CT-2026-000123", "CT-2026-000124"}
    for event in (cantho, angiang):
        row = by_incident[event["incident_id"]]
        assert (row[2], list(row[3])) == (
            event["event_id"],
            [s["token"] for s in event["subjects"]],
        )
    (evidence,) = [
        kinds for a, b, kinds in links
        if {a, b} == {cantho["incident_id"], angiang["incident_id"]}
    ]  # fmt: skip
    assert "SHARED_VEHICLE" in evidence, evidence
