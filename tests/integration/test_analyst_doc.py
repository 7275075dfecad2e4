"""Every query of docs/analyst.md gives the result printed under it, on the demo scenario.

The demo's events and joint verification, pinned (tests/integration/demo_scenario.py), go
through the real broker, worker and sink; each ```sql block of the guide then runs as an
analyst runs it, through the sink's SQL endpoint (``xborder query``'s path) while the
pipeline is up, and its answer in PrettyCompactMonoBlock must equal the ```text block that
follows it, whitespace aside.

After a deliberate change of the scenario or of a query, rewrite the result blocks with
``UPDATE_ANALYST_DOC=1 pytest tests/integration/test_analyst_doc.py`` and review
the diff (the test still fails that run if they differed).
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator

import pytest

from tests.conftest import free_port_pair
from tests.integration.demo_scenario import OVERRIDES, prepare_topics, run_demo_scenario
from xborder.pipeline import Pipeline
from xborder.settings import REPO_ROOT, Settings
from xborder.sql_http import query

pytestmark = [pytest.mark.integration, pytest.mark.slow]

GUIDE = REPO_ROOT / "docs" / "analyst.md"
BLOCK = re.compile(r"```sql\n(?P<sql>.*?)```(?:\n\n```text\n(?P<result>.*?)```)?", re.S)
"""A query and the result block right after it (missing: no result documented)."""
FORMAT = "PrettyCompactMonoBlock"
MIN_QUERIES = 12


def normalised(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def demo(kafka_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A pipeline fed the demo scenario, still running (its sink serves the SQL)."""
    run = uuid.uuid4().hex[:10]
    settings = kafka_settings.with_overrides(
        **{
            "data_dir": tmp_path_factory.mktemp("analyst-doc"),
            "topics.prefix": f"t{run}.",
            "worker.app_id": f"xborder-test-{run}",
            "worker.web_port": free_port_pair(),
            "sql_http.port": free_port_pair(),
            "sink.group_id": f"xborder-sink-{run}",
            "sink.flush_interval_s": 0.3,
            **OVERRIDES,
        }
    )
    prepare_topics(settings)
    pipeline = Pipeline(settings)
    with pipeline.running():
        run_demo_scenario(settings, pipeline)
        yield settings


def test_every_query_of_the_guide_gives_its_documented_result(demo: Settings) -> None:
    text = GUIDE.read_text()
    blocks = list(BLOCK.finditer(text))
    assert len(blocks) >= MIN_QUERIES, f"the guide has {len(blocks)} queries"
    answers = [query(demo, m["sql"], FORMAT).decode() for m in blocks]
    differ = [
        f"query:\n{m['sql']}\ndocumented:\n{m['result']}\nanswered:\n{answer}"
        for m, answer in zip(blocks, answers, strict=True)
        if m["result"] is None or normalised(m["result"]) != normalised(answer)
    ]
    if differ and os.environ.get("UPDATE_ANALYST_DOC") == "1":
        answers_left = iter(answers)
        GUIDE.write_text(
            BLOCK.sub(lambda m: f"```sql\n{m['sql']}```\n\n```text\n{next(answers_left)}```", text)
        )
    assert not differ, "\n\n".join(differ)
