"""Border scenarios with ground truth: realistic incident streams whose links are known.

``generate_scenario(ScenarioConfig(...), agencies)`` plans incidents of the configured
agencies (groups operating on both sides of the boundary, repeat offenders, hard
negatives, lookalike plates, duplicates, late, out-of-order and malformed events);
``iter_events`` replays them in publish order; ``write_scenario`` writes JSON lines for
the ``publish`` CLI and ``truth.json``. The ground truth's definition is in
:mod:`xborder.scenario.truth`. Same seed and parameters, same bytes.
"""

from xborder.scenario.config import DEFAULT_START, ScenarioConfig
from xborder.scenario.generator import generate_scenario
from xborder.scenario.identities import scenario_key_ring, scenario_tokenizer
from xborder.scenario.malformed import MALFORMED_KINDS, MalformedKind
from xborder.scenario.model import (
    Incident,
    Lookalike,
    MalformedLine,
    Progress,
    Scenario,
    ScenarioEvent,
)
from xborder.scenario.output import (
    TRUTH_FILE,
    ScenarioFiles,
    events_file_name,
    iter_events,
    shuffled_within,
    write_scenario,
)
from xborder.scenario.truth import (
    DEFINITION,
    Pair,
    Ref,
    TrueCase,
    Truth,
    pair,
    read_truth,
    true_cases,
    true_links,
)

__all__ = [
    "DEFAULT_START",
    "DEFINITION",
    "MALFORMED_KINDS",
    "TRUTH_FILE",
    "Incident",
    "Lookalike",
    "MalformedKind",
    "MalformedLine",
    "Pair",
    "Progress",
    "Ref",
    "Scenario",
    "ScenarioConfig",
    "ScenarioEvent",
    "ScenarioFiles",
    "TrueCase",
    "Truth",
    "events_file_name",
    "generate_scenario",
    "iter_events",
    "pair",
    "read_truth",
    "scenario_key_ring",
    "scenario_tokenizer",
    "shuffled_within",
    "true_cases",
    "true_links",
    "write_scenario",
]
