"""The user docs say what the code does: every setting they name exists, and the log
lines they quote are the ones the worker writes."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from xborder.settings import known_env_vars

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _documents() -> list[Path]:
    return sorted(DOCS.glob("*.md"))


def test_there_are_docs() -> None:
    assert {p.name for p in _documents()} >= {"operations.md", "scaling.md"}


@pytest.mark.parametrize("path", _documents(), ids=lambda p: p.name)
def test_every_setting_named_in_the_docs_exists(path: Path) -> None:
    known = known_env_vars()
    named = set(re.findall(r"XBORDER_[A-Z0-9_]+[A-Z0-9]", path.read_text()))
    assert named, f"{path.name} names no setting"
    assert named <= known, f"{path.name} names unknown settings: {sorted(named - known)}"


@pytest.mark.parametrize("path", _documents(), ids=lambda p: p.name)
def test_links_between_docs_resolve(path: Path) -> None:
    for target in re.findall(r"\]\(([a-z_]+\.md)\)", path.read_text()):
        assert (DOCS / target).exists(), f"{path.name} links to missing {target}"


def test_the_ingest_report_line_is_the_one_operations_quotes(caplog) -> None:
    from streams.flows.ingest import IngestLoop

    quoted = re.search(r"^  (ingest: .*)$", (DOCS / "operations.md").read_text(), re.M)
    assert quoted is not None
    loop = IngestLoop.__new__(IngestLoop)
    loop.__post_init__()
    loop._count({"tp": [None] * 370}, 0.131, 0.173)  # type: ignore[dict-item]
    loop.metrics.phase_s |= {"flush": 0.065, "commit": 0.015}
    with caplog.at_level(logging.INFO, logger="streams.flows.ingest"):
        loop._report(30.0)
    logged = caplog.records[-1].getMessage()
    shape = re.sub(r"\d+", "N", quoted.group(1))
    assert re.sub(r"\d+", "N", logged) == shape
