"""A scenario's publications: in memory for the benchmark, or as files for the publish CLI.

``iter_events`` yields every publication in publish order across agencies, with the time
the agency publishes it; late and out-of-order incidents come after incidents that
occurred later, duplicates a little after their original. ``write_scenario`` writes the
same lines as one JSON-lines file per agency (``events.<agency>.jsonl``, in that agency's
publish order, malformed lines included) and the ground truth (``truth.json``).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from xborder.scenario.malformed import dumps
from xborder.scenario.model import (
    PUBLISH_INCIDENT,
    PUBLISH_MALFORMED,
    Progress,
    Scenario,
    ScenarioEvent,
)

TRUTH_FILE = "truth.json"


def shuffled_within(
    events: Iterable[ScenarioEvent], lateness: timedelta, seed: int = 0
) -> list[ScenarioEvent]:
    """The events in a random arrival order in which none arrives after an event that
    occurred more than ``lateness`` later than it (so none is too late for a correlator
    that allows that lateness).

    Each event is ordered by its occurrence time plus a random delay below ``lateness``
    (lines without a parsable ``occurred_at`` use their publish time): event A can only
    follow B if ``occurred(A) + delay(A) > occurred(B) + delay(B)``, so B occurred less
    than ``lateness`` after A. The scenario's own publish delays are replaced.
    """
    rng = random.Random(seed)
    span_ms = lateness.total_seconds() * 1000 * 0.999  # strictly below the lateness
    keyed = []
    for n, event in enumerate(events):
        at_ms: float = event.publish_at_ms
        occurred = (event.document or {}).get("occurred_at")
        if isinstance(occurred, str):
            try:
                at_ms = datetime.fromisoformat(occurred).timestamp() * 1000
            except ValueError:
                pass
        keyed.append((at_ms + rng.random() * span_ms, n, event))
    keyed.sort(key=lambda k: (k[0], k[1]))
    return [event for _, _, event in keyed]


def events_file_name(agency: str) -> str:
    """File name of one agency's events: ``events.<agency>.jsonl``."""
    return f"events.{agency}.jsonl"


def iter_events(scenario: Scenario) -> Iterator[ScenarioEvent]:
    """Every publication in publish order across agencies (duplicates and malformed included)."""
    if not scenario.publications:
        return
    first = scenario.publications[0][0]
    for publish_ms, rank, _, code, index in scenario.publications:
        agency = scenario.agency_ids[rank]
        offset = (publish_ms - first) / 1000
        if code == PUBLISH_MALFORMED:
            bad = scenario.malformed[index]
            try:
                document = json.loads(bad.line)
            except json.JSONDecodeError:
                document = None
            yield ScenarioEvent(
                agency, "malformed", bad.line, document, publish_ms, offset, False, False, bad.kind
            )
            continue
        incident = scenario.incidents[index]
        document = scenario.document(incident)
        yield ScenarioEvent(
            agency,
            "incident" if code == PUBLISH_INCIDENT else "duplicate",
            dumps(document),
            document,
            publish_ms,
            offset,
            incident.delay == "late",
            incident.delay == "out_of_order",
        )


@dataclass(frozen=True)
class ScenarioFiles:
    """What ``write_scenario`` wrote."""

    events: dict[str, Path]
    """Agency id -> its JSON-lines file."""
    truth: Path

    @property
    def paths(self) -> list[Path]:
        """Every file, events first in agency order, then the truth."""
        return [*self.events.values(), self.truth]


def write_scenario(
    scenario: Scenario, out_dir: Path, progress: Progress | None = None
) -> ScenarioFiles:
    """Write ``events.<agency>.jsonl`` per agency and ``truth.json`` into ``out_dir``.

    Same scenario, same bytes. ``progress(n_written, n_total)`` as lines are written.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {agency: out_dir / events_file_name(agency) for agency in scenario.agency_ids}
    total = scenario.lines
    handles = {
        agency: path.open("w", encoding="utf-8", newline="\n") for agency, path in paths.items()
    }
    try:
        for n, event in enumerate(iter_events(scenario), start=1):
            handles[event.agency].write(event.line + "\n")
            if progress is not None and (n % 5000 == 0 or n == total):
                progress(n, total)
    finally:
        for handle in handles.values():
            handle.close()
    truth = out_dir / TRUTH_FILE
    truth.write_text(scenario.truth.to_json(), encoding="utf-8", newline="\n")
    return ScenarioFiles(events=paths, truth=truth)
