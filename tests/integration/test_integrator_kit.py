"""The integrators' kit against clients the project did not write: Java's Schema.Parser
reads every exported schema alone and computes the wire's fingerprints, and the Java
example producer (examples/java-producer, built with Maven) publishes events made with
``keys generate`` and ``pseudonymise`` that the real worker accepts and correlates."""

from __future__ import annotations

import json
import os
import shutil
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
from xborder.samples import sample_events
from xborder.settings import Settings, to_env
from xborder.topics import Topics, ensure_project_topics

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "java-producer"
PARSE_SCHEMAS = ROOT / "tests" / "java" / "ParseSchemas.java"
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


def _build_example(work: Path) -> Path:
    """``mvn package`` of a copy of the example (offline first: the ~/.m2 cache)."""
    project = work / "java-producer"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("target"))
    command = ["mvn", "-B", "-q", "-Dmaven.test.skip=true", "package"]
    offline = [command[0], "-o", *command[1:]]
    built = subprocess.run(offline, cwd=project, capture_output=True, text=True, timeout=300)
    if built.returncode != 0:  # something is missing from the cache: fetch it
        built = subprocess.run(command, cwd=project, capture_output=True, text=True, timeout=300)
        assert built.returncode == 0, built.stdout[-3000:]
    jar = project / "target" / "xborder-java-producer.jar"
    assert jar.exists()
    return jar


def _raw_pair() -> list[dict[str, Any]]:
    """A cross-border pair (cantho, angiang) with raw identifiers, each agency spelling
    them its own way: one vehicle, and one person that cantho knows by national ID and
    name with birth date and angiang by name with birth date only."""
    cantho, angiang = sample_events(2)
    cantho["subjects"] = [
        {"kind": "VEHICLE", "raw": "65B1-234.56", "role": "SUSPECT"},
        {"kind": "PERSON", "national_id": "092 190 004 321", "name": "Trần Văn Bình",
         "birth_date": "1990-03-12", "role": "SUSPECT"},
    ]  # fmt: skip
    angiang["subjects"] = [
        {"kind": "VEHICLE", "raw": "65 B1 234 56", "role": "SUSPECT",
         "descriptors": {"colour": "black"}},
        {"kind": "PERSON", "name": "TRAN VAN BINH", "birth_date": "12/03/1990", "role": "SUSPECT"},
    ]  # fmt: skip
    return [cantho, angiang]


def test_the_java_example_producer_publishes_events_the_worker_accepts_and_correlates(
    make_settings: Any, tmp_path: Path
) -> None:
    settings = make_settings()
    topics = Topics.from_settings(settings, load_agencies(settings.agencies_config))
    ensure_project_topics(settings, topics)
    pipeline = Pipeline(settings)
    env = {**os.environ, **to_env(settings)}
    xborder = [sys.executable, "-m", "xborder"]
    with pipeline.running():
        jar = _build_example(tmp_path)  # while the worker starts
        keys = tmp_path / "keys.json"
        subprocess.run([*xborder, "keys", "generate", str(keys), "--example"], env=env, check=True)
        raw = _raw_pair()
        tokens: dict[str, list[dict[str, Any]]] = {}
        for event in raw:
            source = tmp_path / f"{event['agency']}-raw.jsonl"
            source.write_text(json.dumps(event, ensure_ascii=False) + "\n")
            done = subprocess.run(
                [*xborder, "pseudonymise", str(source), "--key-file", str(keys),
                 "-o", str(tmp_path / f"{event['agency']}.jsonl")],
                env=env, capture_output=True, text=True,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            (published,) = map(json.loads, (tmp_path / f"{event['agency']}.jsonl").open())
            tokens[event["agency"]] = published["subjects"]
        schema = tmp_path / "avsc" / "xborder.v1.IncidentReported.avsc"
        _export(settings, schema.parent)
        pipeline.wait_until_settled()
        for event in raw:
            agency = event["agency"]
            lines = _java(
                "-jar",
                str(jar),
                settings.kafka.bootstrap_servers,
                topics.incidents(agency),
                str(schema),
                str(tmp_path / f"{agency}.jsonl"),
            )
            assert lines[-1].startswith(f"sent {event['event_id']} {topics.incidents(agency)}[")
        pipeline.wait_until_drained(topics, timeout_s=60)

    cantho, angiang = raw
    assert tokens["cantho"][0]["token"] == tokens["angiang"][0]["token"]  # one plate
    client = get_client(settings)
    try:
        rows = client.query(
            "SELECT toString(event_id), subject_tokens FROM incidents FINAL ORDER BY agency"
        ).result_rows
        links = client.query(
            "SELECT toString(a_event_id), toString(b_event_id), evidence_kinds "
            "FROM correlations FINAL"
        ).result_rows
    finally:
        client.close()
    assert sorted(map(tuple, rows)) == sorted(
        (e["event_id"], [s["token"] for s in tokens[e["agency"]]]) for e in raw
    )
    pair = {cantho["event_id"], angiang["event_id"]}
    (link,) = [r for r in links if {r[0], r[1]} == pair]
    assert "SHARED_VEHICLE" in link[2], link
