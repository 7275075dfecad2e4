"""The correlator on the real broker: ground truth, one worker vs two, a crash mid-stream."""

from __future__ import annotations

import signal
import time
from datetime import timedelta
from typing import Any

import pytest

from tests.integration.incidents import incident_messages
from xborder.agencies import load_agencies
from xborder.bench.kafka_io import Message, publish
from xborder.clickhouse import get_client
from xborder.pipeline import Pipeline
from xborder.quality import read_predictions
from xborder.scenario import ScenarioConfig, generate_scenario, iter_events, shuffled_within
from xborder.scenario.truth import Truth
from xborder.settings import Settings
from xborder.topics import Topics, ensure_project_topics

pytestmark = [pytest.mark.integration, pytest.mark.slow]

Outcome = tuple[set[str], dict[str, frozenset[tuple[str, str]]]]


@pytest.fixture(scope="module")
def scenario(kafka_settings: Settings) -> tuple[Truth, list[dict[str, Any]]]:
    """A small scenario: its truth and the documents to publish, in publish order."""
    agencies = load_agencies(kafka_settings.agencies_config)
    generated = generate_scenario(ScenarioConfig(seed=11, events=3_000), agencies)
    documents = [
        e.document
        for e in iter_events(generated)
        if e.kind != "malformed" and e.document is not None
    ]
    return generated.truth, documents


@pytest.fixture(scope="module")
def shuffled_scenario(kafka_settings: Settings) -> tuple[Truth, list[dict[str, Any]]]:
    """The same scenario arriving shuffled within the correlator's allowed lateness."""
    agencies = load_agencies(kafka_settings.agencies_config)
    generated = generate_scenario(ScenarioConfig(seed=11, events=3_000), agencies)
    lateness = timedelta(hours=kafka_settings.correlation.allowed_lateness_hours)
    documents = [
        e.document
        for e in shuffled_within(iter_events(generated), lateness, seed=4)
        if e.kind != "malformed" and e.document is not None
    ]
    return generated.truth, documents


def _messages(settings: Settings, documents: list[dict[str, Any]]) -> list[Message]:
    topics = Topics.from_settings(settings, load_agencies(settings.agencies_config))
    return incident_messages(settings, topics, documents)


def _outcome(settings: Settings) -> Outcome:
    """Correlation ids and cases (id -> members) in ClickHouse after a run."""
    client = get_client(settings)
    try:
        ids = {r[0] for r in client.query("SELECT correlation_id FROM correlations").result_rows}
        members: dict[str, set[tuple[str, str]]] = {}
        for case_id, agency, incident in client.query(
            "SELECT case_id, agency, incident_id FROM case_members FINAL"
        ).result_rows:
            members.setdefault(case_id, set()).add((agency, incident))
        return ids, {k: frozenset(v) for k, v in members.items()}
    finally:
        client.close()


def _run(
    settings: Settings, documents: list[dict[str, Any]], workers: int = 1, crash: bool = False
) -> Outcome:
    """Publish the scenario in two halves; with ``crash``, SIGKILL the worker while it
    takes the second half (its state holds the first) and start it again."""
    topics = Topics.from_settings(settings, load_agencies(settings.agencies_config))
    ensure_project_topics(settings, topics)
    messages = _messages(settings, documents)
    half = len(messages) // 2
    pipeline = Pipeline(settings, workers=workers)
    with pipeline.running():
        pipeline.wait_until_settled()  # no rebalance while the load arrives
        publish(settings.kafka.bootstrap_servers, messages[:half])
        if crash:
            pipeline.wait_until_drained(topics, timeout_s=240)
        publish(settings.kafka.bootstrap_servers, messages[half:])
        if crash:
            time.sleep(0.3)  # mid-stream: the second half is being processed
            worker = pipeline.processes.pop("worker-0")
            worker.send_signal(signal.SIGKILL)  # no goodbye: uncommitted work is redone
            worker.wait()
            pipeline.start_worker(0)
            pipeline.wait_until_settled()
        pipeline.wait_until_drained(topics, timeout_s=240)
    return _outcome(settings)


def _assert_ground_truth(settings: Settings, truth: Truth) -> None:
    """ClickHouse holds exactly the true links, double reports and cases."""
    client = get_client(settings)
    try:
        links, cases, doubles = read_predictions(client)
    finally:
        client.close()
    assert links == set(truth.links)
    assert doubles == set(truth.double_reports) and doubles
    assert sorted(sorted(c) for c in cases) == sorted(sorted(c.incidents) for c in truth.cases)


@pytest.fixture(scope="module")
def one_worker_run(make_module_settings, scenario) -> tuple[Settings, Outcome]:
    """The scenario through one worker, uninterrupted: its settings and outcome. Three tests
    check or compare with this same run, so it runs once."""
    settings = make_module_settings()
    return settings, _run(settings, scenario[1])


def test_links_and_cases_are_exactly_the_ground_truth(one_worker_run, scenario) -> None:
    truth, _ = scenario
    settings, _ = one_worker_run
    _assert_ground_truth(settings, truth)


def test_events_shuffled_within_the_allowed_lateness_give_the_same_truth(
    make_settings, shuffled_scenario
) -> None:
    truth, documents = shuffled_scenario
    settings = make_settings()
    _run(settings, documents)
    _assert_ground_truth(settings, truth)


def test_one_worker_and_two_workers_give_the_same_links_and_cases(
    make_settings, scenario, one_worker_run
) -> None:
    _, documents = scenario
    _, one = one_worker_run
    two = _run(make_settings(), documents, workers=2)
    assert one[0] and one[1]
    assert two == one


def test_a_worker_killed_mid_stream_resumes_with_the_same_results(
    make_settings, scenario, one_worker_run
) -> None:
    _, documents = scenario
    _, uninterrupted = one_worker_run
    restarted = _run(make_settings(), documents, crash=True)
    assert restarted == uninterrupted
