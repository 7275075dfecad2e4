"""The operations guide's "Reading the topics without the project's code": its kcat lines
and its ten-line fastavro consumer, run as written against the worker's real output."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.incidents import incident_messages
from tests.integration.kafka_read import consume_all
from xborder.agencies import load_agencies
from xborder.bench.kafka_io import Message, publish
from xborder.pipeline import Pipeline
from xborder.samples import sample_events
from xborder.settings import Settings, to_env
from xborder.topics import Topics, ensure_project_topics
from xborder.wire import codec_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
SECTION = "## Reading the topics without the project's code"


def _blocks() -> list[tuple[str, str]]:
    """(language, code) of the section's fenced blocks, in order."""
    text = GUIDE.read_text(encoding="utf-8")
    section = text[text.index(SECTION) :]
    following = section.find("\n## ", len(SECTION))
    section = section if following < 0 else section[:following]
    return re.findall(r"```(\w+)\n(.*?)```", section, flags=re.S)


def _run(command: list[str], settings: Settings, cwd: Path) -> str:
    env = {
        **os.environ,
        **to_env(settings),
        "BOOTSTRAP": settings.kafka.bootstrap_servers,
        "PREFIX": settings.topics.prefix,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    result = subprocess.run(
        command, env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is not installed (deploy/dev.sh)")
def test_the_guides_kcat_lines_and_fastavro_consumer_read_the_outputs(
    make_settings, tmp_path: Path
) -> None:
    settings = make_settings()
    topics = Topics.from_settings(settings, load_agencies(settings.agencies_config))
    ensure_project_topics(settings, topics)
    codec = codec_for(settings)
    messages = incident_messages(settings, topics, sample_events(12))
    messages.append(Message(topics.incidents("cantho"), b"bad", b"not an event"))
    pipeline = Pipeline(settings, sink=False)
    with pipeline.running():
        publish(settings.kafka.bootstrap_servers, messages)
        pipeline.wait_until_drained(topics)
    alerts = consume_all(settings.kafka.bootstrap_servers, topics.alerts("cantho"), 1)
    assert alerts, "the sample events raise alerts for cantho"

    blocks = _blocks()
    assert [language for language, _ in blocks] == ["sh", "sh", "python"]
    _run(["bash", "-euc", blocks[0][1]], settings, tmp_path)  # xborder schemas export
    assert (tmp_path / "schemas-export" / "manifest.json").exists()
    lines = _run(["bash", "-euc", blocks[1][1]], settings, tmp_path).splitlines()
    assert len([line for line in lines if line.startswith("alert key=")]) == len(alerts)
    (dead,) = [line for line in lines if line.startswith("dead letter ")]
    assert "xborder-dlq-reason=undecodable" in dead
    assert f"xborder-dlq-topic={topics.incidents('cantho')}" in dead
    script = tmp_path / "read_alerts.py"
    script.write_text(blocks[2][1])
    printed = _run([sys.executable, str(script)], settings, tmp_path).splitlines()
    assert len(printed) == len(alerts)
    kinds = {codec.decode(m.value).value["alert_kind"] for m in alerts}
    assert {line.split(" ", 1)[0] for line in printed} == kinds
