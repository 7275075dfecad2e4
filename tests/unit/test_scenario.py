"""Scenario generator: same seed same bytes, and the truth is what the events say it is."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from xborder.agencies import AgenciesConfig, load_agencies
from xborder.codec import AvroCodec
from xborder.errors import ConfigurationError, InvalidRecordError
from xborder.geo import Jurisdictions, haversine_km, jurisdictions_for
from xborder.jsonavro import parse_timestamp
from xborder.producer import EventEncoder
from xborder.pseudonym import assert_descriptors, assert_subjects, pseudonymise_subject
from xborder.scenario import (
    MALFORMED_KINDS,
    TRUTH_FILE,
    Scenario,
    ScenarioConfig,
    ScenarioEvent,
    events_file_name,
    generate_scenario,
    iter_events,
    read_truth,
    scenario_tokenizer,
    write_scenario,
)
from xborder.scenario.identities import PERSON_DESCRIPTORS, VEHICLE_DESCRIPTORS
from xborder.scenario.rhythm import CATEGORIES, LOCAL_OFFSET, MODUS_OPERANDI
from xborder.scenario.truth import Ref
from xborder.schemas import SchemaStore
from xborder.settings import load_settings
from xborder.validation import EventRules

ROOT = Path(__file__).resolve().parents[2]
AGENCIES_FILE = ROOT / "deploy" / "agencies.example.json"
CONFIG = ScenarioConfig(
    seed=11,
    events=6000,
    days=12,
    groups=25,
    group_incidents=(4, 10),
    group_active_days=4,
    hard_negative_rate=0.02,
    lookalike_plate_rate=0.01,
    duplicate_rate=0.02,
    late_rate=0.03,
    out_of_order_rate=0.05,
    malformed_rate=0.01,
)
# After every event of the scenario (timestamps must not lie in the future).
NOW = CONFIG.end + timedelta(days=30)


@dataclass(frozen=True)
class Written:
    """One generated and written scenario, and what its files say."""

    scenario: Scenario
    out: Path
    lines: dict[str, list[str]]
    """Agency -> lines of its file."""


@pytest.fixture(scope="module")
def agencies() -> AgenciesConfig:
    return load_agencies(AGENCIES_FILE)


@pytest.fixture(scope="module")
def index(agencies: AgenciesConfig) -> Jurisdictions:
    return jurisdictions_for(agencies)


@pytest.fixture(scope="module")
def make(agencies: AgenciesConfig, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Factory: generate and write a scenario into a fresh directory."""

    def build(config: ScenarioConfig) -> Written:
        scenario = generate_scenario(config, agencies)
        out = tmp_path_factory.mktemp("scenario")
        files = write_scenario(scenario, out)
        lines = {
            agency: path.read_text(encoding="utf-8").splitlines()
            for agency, path in files.events.items()
        }
        return Written(scenario, out, lines)

    return build


@pytest.fixture(scope="module")
def written(make: Any) -> Written:
    built: Written = make(CONFIG)
    return built


@pytest.fixture(scope="module")
def events(written: Written) -> list[ScenarioEvent]:
    return list(iter_events(written.scenario))


@pytest.fixture(scope="module")
def incidents(events: list[ScenarioEvent]) -> dict[Ref, dict[str, Any]]:
    """Every valid incident's document by ref, as written."""
    found: dict[Ref, dict[str, Any]] = {}
    for event in events:
        if event.kind == "incident":
            assert event.document is not None
            found[(event.document["agency"], event.document["incident_id"])] = event.document
    return found


def occurred_ms(document: dict[str, Any]) -> int:
    return int(parse_timestamp(document["occurred_at"], "occurred_at").timestamp() * 1000)


def tokens(document: dict[str, Any]) -> set[str]:
    return {subject["token"] for subject in document["subjects"]}


def identifying_tokens(document: dict[str, Any]) -> set[str]:
    """The tokens that identify an entity: of an individual recorded with a national ID
    and a name, the national ID only (namesakes share the name, never the ID)."""
    with_id = {
        s["individual"]
        for s in document["subjects"]
        if s.get("person_key") == "NATIONAL_ID" and s.get("individual")
    }
    return {
        s["token"]
        for s in document["subjects"]
        if s.get("person_key") == "NATIONAL_ID" or s.get("individual") not in with_id
    }


# -- determinism --------------------------------------------------------------------------


def test_same_seed_gives_identical_files_and_another_seed_differs(
    written: Written, make: Any
) -> None:
    again: Written = make(CONFIG)
    names = [events_file_name(a) for a in written.scenario.agency_ids] + [TRUTH_FILE]
    for name in names:
        assert (written.out / name).read_bytes() == (again.out / name).read_bytes(), name
    other: Written = make(replace(CONFIG, seed=CONFIG.seed + 1))
    for name in names:
        assert (written.out / name).read_bytes() != (other.out / name).read_bytes(), name


def test_identical_across_processes_with_different_string_hashing(tmp_path: Path) -> None:
    script = (
        "import sys; from pathlib import Path; "
        "from xborder.scenario import ScenarioConfig, generate_scenario, write_scenario; "
        "config = ScenarioConfig(seed=5, events=1500, days=6, groups=6, group_active_days=3); "
        "scenario = generate_scenario(config, Path(sys.argv[2])); "
        "write_scenario(scenario, Path(sys.argv[1]))"
    )
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        subprocess.run(
            [sys.executable, "-c", script, str(tmp_path / hash_seed), str(AGENCIES_FILE)],
            env=env,
            check=True,
        )
    for path in sorted((tmp_path / "1").iterdir()):
        assert path.read_bytes() == (tmp_path / "2" / path.name).read_bytes(), path.name


# -- counts -------------------------------------------------------------------------------


def test_counts_match_parameters(written: Written, events: list[ScenarioEvent]) -> None:
    config, truth = CONFIG, written.scenario.truth
    kinds = Counter(event.kind for event in events)
    assert sum(len(lines) for lines in written.lines.values()) == config.events
    assert kinds == {
        "incident": config.incidents,
        "duplicate": round(config.events * config.duplicate_rate),
        "malformed": round(config.events * config.malformed_rate),
    }
    incidents = config.incidents
    assert sum(e.late for e in events if e.kind == "incident") == round(
        incidents * config.late_rate
    )
    assert sum(e.out_of_order for e in events if e.kind == "incident") == round(
        incidents * config.out_of_order_rate
    )
    counts = truth.counts
    assert counts["events"] == config.events
    assert counts["incidents"] == incidents
    assert counts["duplicates"] == kinds["duplicate"]
    assert counts["malformed"] == kinds["malformed"]
    assert counts["late"] == round(incidents * config.late_rate)
    assert counts["links"] == len(truth.links) > 0
    assert counts["cases"] == len(truth.cases) > 0
    assert counts["groups"] == len(truth.groups) == config.group_count == 25
    assert (
        counts["hard_negatives"]
        == len(truth.hard_negatives)
        == round(incidents * config.hard_negative_rate)
    )
    assert (
        counts["lookalikes"]
        == len(truth.lookalikes)
        == round(incidents * config.lookalike_plate_rate)
    )
    for agency, lines in written.lines.items():
        assert counts[f"events.{agency}"] == len(lines)


def test_border_share_and_every_incident_lies_in_its_agencys_jurisdiction(
    incidents: dict[Ref, dict[str, Any]], index: Jurisdictions
) -> None:
    in_zone = 0
    for (agency, _), document in incidents.items():
        placement = index.locate(document["location"]["lat"], document["location"]["lon"])
        assert placement.agency_id == agency
        in_zone += placement.in_border_zone
    assert abs(in_zone / len(incidents) - CONFIG.border_share) < 0.005


def test_theft_follows_the_night_and_traffic_the_rush_hour(
    incidents: dict[Ref, dict[str, Any]],
) -> None:
    by_hour: dict[str, Counter[int]] = defaultdict(Counter)
    for document in incidents.values():
        local = parse_timestamp(document["occurred_at"], "occurred_at") + LOCAL_OFFSET
        by_hour[document["category"]][local.hour] += 1
    theft, traffic = by_hour["THEFT"], by_hour["TRAFFIC"]
    assert sum(theft[h] for h in (22, 23, 0, 1)) > 2.5 * sum(theft[h] for h in (10, 11, 12, 13))
    assert sum(traffic[h] for h in (7, 8, 17, 18)) > 2 * sum(traffic[h] for h in (1, 2, 3, 4))


# -- contract -----------------------------------------------------------------------------


def test_valid_lines_pass_the_contract_and_malformed_lines_are_rejected(
    events: list[ScenarioEvent], agencies: AgenciesConfig
) -> None:
    settings = load_settings()
    codec = AvroCodec(SchemaStore(settings.schemas_dir))
    rules = EventRules(region=agencies.region, max_future_skew=timedelta(minutes=5))
    encoders = {a: EventEncoder(settings, agencies, codec, a) for a in agencies.ids}
    rejected: Counter[str] = Counter()
    for event in events:
        if event.kind != "malformed":
            assert event.document is not None and json.loads(event.line) == event.document
            prepared = codec.from_json("IncidentReported", event.document)
            rules.check_incident(prepared, NOW)
            assert_subjects(event.document["subjects"])
            encoders[event.agency].encode(event.document, now=NOW)  # what `publish` runs
            continue
        assert event.malformed_kind is not None
        with pytest.raises((InvalidRecordError, json.JSONDecodeError)):
            encoders[event.agency].encode(json.loads(event.line), now=NOW)
        if event.malformed_kind not in ("foreign_agency", "not_json"):
            # the codec, the rules or the token check alone rejects it
            assert event.document is not None
            with pytest.raises(InvalidRecordError):
                prepared = codec.from_json("IncidentReported", event.document)
                rules.check_incident(prepared, NOW)
        rejected[event.malformed_kind] += 1
    assert set(rejected) == set(MALFORMED_KINDS)


def test_vocabularies_fit_the_schema_and_identify_no_one() -> None:
    store = SchemaStore(ROOT / "schemas")
    category = store.current("Category").parsed
    assert tuple(category["symbols"]) == CATEGORIES
    for descriptors in (*PERSON_DESCRIPTORS, *VEHICLE_DESCRIPTORS):
        assert_descriptors(descriptors, "descriptors")
    for tags in MODUS_OPERANDI.values():
        assert len(tags) >= 6 and all(tag == tag.lower() for tag in tags)


# -- truth --------------------------------------------------------------------------------


def test_truth_is_exactly_the_shared_identifying_tokens_across_jurisdictions_within_the_window(
    written: Written, incidents: dict[Ref, dict[str, Any]]
) -> None:
    truth = written.scenario.truth
    window_ms = CONFIG.window_hours * 3_600_000
    for a, b in truth.links:
        assert a[0] != b[0]
        assert abs(occurred_ms(incidents[a]) - occurred_ms(incidents[b])) <= window_ms
        assert identifying_tokens(incidents[a]) & identifying_tokens(incidents[b])
    # and every such pair is a link: recompute from the written tokens alone
    by_token: dict[str, list[Ref]] = defaultdict(list)
    for ref, document in incidents.items():
        for token in identifying_tokens(document):
            by_token[token].append(ref)
    expected = set()
    for refs in by_token.values():
        for n, a in enumerate(refs):
            for b in refs[n + 1 :]:
                close = abs(occurred_ms(incidents[a]) - occurred_ms(incidents[b])) <= window_ms
                if a[0] != b[0] and close:
                    expected.add((a, b) if a < b else (b, a))
    assert expected == set(truth.links)


def test_namesakes_look_alike_by_name_and_are_never_links(
    written: Written, incidents: dict[Ref, dict[str, Any]]
) -> None:
    truth = written.scenario.truth
    assert set(truth.namesakes) == {"same_year", "same_date", "twin"}
    assert all(truth.namesakes.values())
    for variant, pairs in truth.namesakes.items():
        for a, b in pairs:
            assert (a, b) not in truth.links and a[0] != b[0]
            shared = tokens(incidents[a]) & tokens(incidents[b])
            keys = {
                s["person_key"] for s in incidents[a]["subjects"] if s["token"] in shared
            }  # the documented recipe ("both"): the same name and date is the only overlap
            assert keys == ({"NAME_BIRTH_DATE"} if variant == "same_date" else set())
            ids = [
                {s["token"] for s in incidents[r]["subjects"] if s["person_key"] == "NATIONAL_ID"}
                for r in (a, b)
            ]
            assert ids[0] and ids[1] and not ids[0] & ids[1]


def test_cases_are_the_components_of_the_links_and_double_reports(written: Written) -> None:
    truth = written.scenario.truth
    member_of = {ref: case.case_id for case in truth.cases for ref in case.incidents}
    assert sum(len(case.incidents) for case in truth.cases) == len(member_of)
    joined = set(truth.links) | set(truth.double_reports)
    for a, b in joined:
        assert member_of[a] == member_of[b]
    assert set(member_of) == {ref for link in joined for ref in link}
    group_of = {ref: group for group, refs in truth.groups.items() for ref in refs}
    for case in truth.cases:
        assert len(case.incidents) >= 2
        if any(ref in group_of for ref in case.incidents):
            assert case.group_id == group_of[next(r for r in case.incidents if r in group_of)]
        else:  # only a double report (or two) makes a case no group made
            assert case.group_id is None
            assert any(pair in truth.double_reports for pair in _pairs_of(case.incidents))
        assert len({agency for agency, _ in case.incidents}) >= 2


def _pairs_of(refs: tuple[tuple[str, str], ...]) -> list[tuple[tuple[str, str], ...]]:
    return [(a, b) for n, a in enumerate(refs) for b in refs[n + 1 :]]


def test_double_reports_and_near_misses_are_what_the_truth_says(written: Written) -> None:
    scenario = written.scenario
    truth = scenario.truth
    by_ref = {inc.ref: inc for inc in scenario.incidents}
    assert truth.double_reports and truth.counts["double_reports"] == len(truth.double_reports)
    for a, b in truth.double_reports:
        x, y = by_ref[a], by_ref[b]
        assert x.agency != y.agency
        assert abs(x.occurred_ms - y.occurred_ms) < 15 * 60_000
        assert haversine_km(x.spot.lat, x.spot.lon, y.spot.lat, y.spot.lon) < 0.3
        assert x.category == y.category or "OTHER" in (x.category, y.category)
    misses = truth.near_misses
    assert set(misses) == {"another_day", "another_category", "same_agency"}
    assert all(misses.values())
    for a, b in misses["same_agency"]:
        assert a[0] == b[0]
    for a, b in misses["another_day"]:
        assert abs(by_ref[a].occurred_ms - by_ref[b].occurred_ms) >= 24 * 3_600_000
    for a, b in misses["another_category"]:
        assert "TRAFFIC" in (by_ref[a].category, by_ref[b].category)
        assert by_ref[a].category != by_ref[b].category


def test_every_group_operates_on_both_sides_and_makes_a_link(written: Written) -> None:
    truth = written.scenario.truth
    linked = {ref for link in truth.links for ref in link}
    for group, refs in truth.groups.items():
        assert len({agency for agency, _ in refs}) == 2, group
        assert linked & set(refs), group


def test_hard_negatives_are_close_alike_and_unrelated(
    written: Written, incidents: dict[Ref, dict[str, Any]]
) -> None:
    truth = written.scenario.truth
    assert truth.hard_negatives
    for a, b in truth.hard_negatives:
        da, db = incidents[a], incidents[b]
        assert a[0] != b[0]
        km = haversine_km(
            da["location"]["lat"],
            da["location"]["lon"],
            db["location"]["lat"],
            db["location"]["lon"],
        )
        assert km < 2.0
        assert abs(occurred_ms(da) - occurred_ms(db)) < 3 * 3_600_000
        assert da["category"] == db["category"]
        assert not tokens(da) & tokens(db)
        assert not set(da["modus_operandi"]) & set(db["modus_operandi"])
        assert (a, b) not in truth.links


def test_lookalike_plates_differ_by_one_character_and_never_link(
    written: Written, incidents: dict[Ref, dict[str, Any]]
) -> None:
    scenario, truth = written.scenario, written.scenario.truth
    tokenizer = scenario_tokenizer(CONFIG.seed)
    seen = Counter(token for document in incidents.values() for token in tokens(document))
    assert scenario.lookalikes
    for look in scenario.lookalikes:
        assert len(look.plate) == len(look.original_plate)
        assert sum(x != y for x, y in zip(look.plate, look.original_plate, strict=True)) == 1
        assert look.token != look.original_token
        for plate, token in ((look.plate, look.token), (look.original_plate, look.original_token)):
            assert pseudonymise_subject(tokenizer, "VEHICLE", plate, "SUSPECT")["token"] == token
        assert look.token in tokens(incidents[look.incident])
        assert look.original_token in tokens(incidents[look.mimics])
        assert look.incident[0] != look.mimics[0]
        assert seen[look.token] == 1
        pair = tuple(sorted((look.incident, look.mimics)))
        assert pair in truth.lookalikes and pair not in truth.links


def test_duplicates_repeat_the_event_unchanged(written: Written) -> None:
    repeats = 0
    for lines in written.lines.values():
        by_id: dict[str, list[str]] = defaultdict(list)
        for line in lines:
            try:
                document = json.loads(line)
            except json.JSONDecodeError:
                continue  # a malformed line
            by_id[str(document.get("event_id"))].append(line)
        for event_id, copies in by_id.items():
            if len(copies) > 1:
                assert len(set(copies)) == 1, event_id
                repeats += len(copies) - 1
    assert repeats == written.scenario.truth.counts["duplicates"]


def test_late_and_out_of_order_events_arrive_after_later_incidents(
    events: list[ScenarioEvent],
) -> None:
    offsets = [event.offset_s for event in events]
    assert offsets[0] == 0 and offsets == sorted(offsets)
    latest = 0
    overtaken = Counter[str]()
    for event in events:
        if event.kind != "incident":
            continue
        assert event.document is not None
        occurred = occurred_ms(event.document)
        delay = parse_timestamp(event.document["reported_at"], "r") - parse_timestamp(
            event.document["occurred_at"], "o"
        )
        if event.late:
            assert timedelta(hours=1) <= delay <= CONFIG.max_lateness
        elif event.out_of_order:
            assert timedelta(minutes=10) <= delay <= timedelta(hours=1)
        else:
            assert delay < timedelta(minutes=10)
        if occurred < latest:
            overtaken["late" if event.late else "ooo" if event.out_of_order else "normal"] += 1
        latest = max(latest, occurred)
    late = sum(e.late for e in events)
    assert overtaken["late"] >= 0.9 * late  # a late event is published after later incidents


def test_truth_file_round_trips(written: Written) -> None:
    loaded = read_truth(written.out / TRUTH_FILE)
    assert loaded == written.scenario.truth
    raw = json.loads((written.out / TRUTH_FILE).read_text(encoding="utf-8"))
    assert raw["parameters"]["seed"] == CONFIG.seed
    assert raw["links"] == sorted(raw["links"])
    assert all(isinstance(link, list) and len(link) == 2 for link in raw["links"])


def test_progress_reaches_the_total(agencies: AgenciesConfig) -> None:
    calls: list[tuple[int, int]] = []
    config = replace(CONFIG, events=800, groups=3)
    generate_scenario(config, agencies, progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (800, 800)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"border_share": 1.5}, "border_share must lie in [0, 1]"),
        ({"start": datetime(2026, 3, 1)}, "timezone-aware UTC"),
        ({"group_size": (4, 2)}, "group_size must be a range"),
        ({"max_lateness": timedelta(minutes=30)}, "max_lateness must exceed 1 hour"),
    ],
)
def test_bad_parameters_are_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message.replace("[", r"\[").replace("]", r"\]")):
        replace(CONFIG, **changes)


def test_a_small_scenario_with_default_rates_still_plants_a_group(
    agencies: AgenciesConfig,
) -> None:
    scenario = generate_scenario(ScenarioConfig(seed=3, events=400), agencies)
    assert scenario.lines == 400
    assert scenario.truth.counts["groups"] == 1 and scenario.truth.links


def test_too_many_groups_for_the_events_is_refused(agencies: AgenciesConfig) -> None:
    with pytest.raises(ConfigurationError, match="lower groups"):
        generate_scenario(replace(CONFIG, events=300, groups=60), agencies)


def test_defaults_start_on_a_fixed_day_and_scale_groups_with_size() -> None:
    assert ScenarioConfig().start == datetime(2026, 3, 2, tzinfo=UTC)
    assert ScenarioConfig().group_count == 197  # one per 1,000 of the 197,000 incidents
    assert ScenarioConfig(events=300).group_count == 1


def test_shuffled_within_the_lateness_never_lets_an_event_arrive_too_late() -> None:
    from xborder.scenario import shuffled_within

    config = ScenarioConfig(seed=5, events=1_500)
    events = list(iter_events(generate_scenario(config, load_agencies(AGENCIES_FILE))))
    lateness = timedelta(hours=6)
    arrived = shuffled_within(events, lateness, seed=1)
    assert sorted(map(id, arrived)) == sorted(map(id, events))  # a permutation
    assert arrived != events and shuffled_within(events, lateness, seed=1) == arrived
    newest = float("-inf")
    moved = 0
    for event in arrived:
        if event.document is None or not isinstance(event.document.get("occurred_at"), str):
            continue
        occurred = datetime.fromisoformat(event.document["occurred_at"]).timestamp() * 1000
        assert occurred > newest - lateness.total_seconds() * 1000
        moved += occurred < newest
        newest = max(newest, occurred)
    assert moved > len(arrived) // 10  # really out of order, not just the publish order


def test_identity_quality_by_person_key_policy() -> None:
    """The documented recipe links every true pair and no namesakes; an agency that sends
    only names with birth dates links the planted same-date namesakes (it cannot know
    their national IDs differ), and nothing else wrongly."""
    from xborder.bench.identity import run_policy
    from xborder.settings import load_settings

    settings = load_settings()
    both = run_policy("both", 6_000, 3, settings)
    assert both["precision"] >= 0.98 and both["recall"] >= 0.95
    assert sum(both["namesake_links"].values()) == 0
    assert both["namesake_pairs"] == {"same_date": 1, "same_year": 8, "twin": 3}
    names = run_policy("name_birth_date", 6_000, 3, settings)
    assert names["recall"] >= 0.95
    assert names["namesake_links"] == {"same_date": 1, "same_year": 0, "twin": 0}
    assert names["false_positives"] == 1
