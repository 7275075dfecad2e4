"""Bounds on one event through the real worker: a maximal event (the most subjects and
distinct tokens the contract allows) is accepted and correlated, events over either
limit are dead-lettered with the reason and the setting, and later events flow."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from kafka import KafkaProducer

from streams.correlation.scoring import correlation_id
from tests.integration.kafka_read import consume_all
from xborder.agencies import load_agencies
from xborder.deadletter import HEADER_ERROR, HEADER_REASON
from xborder.pipeline import Pipeline
from xborder.pseudonym import KeyRing, SharedKeyTokenizer, pseudonymise_subject
from xborder.samples import sample_events
from xborder.settings import Settings
from xborder.topics import Topics, ensure_project_topics
from xborder.wire import codec_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _with_subjects(event: dict[str, Any], subjects: int, distinct: int) -> dict[str, Any]:
    """``event`` with ``subjects`` subjects of which ``distinct`` distinct tokens (its own
    first subject, then phones; repeats fill up to ``subjects``)."""
    tokenizer = SharedKeyTokenizer(KeyRing.generate())
    phones = [
        pseudonymise_subject(tokenizer, "PHONE", f"0912{n:06d}", "SUSPECT")
        for n in range(distinct - 1)
    ]
    own = event["subjects"]
    grown = copy.deepcopy(event)
    grown["subjects"] = (own + phones + (phones or own) * subjects)[:subjects]
    assert len({(s["kind"], s["token"]) for s in grown["subjects"]}) == distinct
    return grown


def _ref_pair(events: list[dict[str, Any]]) -> str:
    a, b = ((e["agency"], e["incident_id"]) for e in events)
    return correlation_id(a, b)


def _send(settings: Settings, topics: Topics, events: list[dict[str, Any]]) -> None:
    codec = codec_for(settings)
    producer = KafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        acks="all",
        max_request_size=4 * 1024 * 1024,
    )
    try:
        for event in events:
            value = codec.encode("IncidentReported", codec.from_json("IncidentReported", event))
            producer.send(topics.incidents(event["agency"]), value=value)
        producer.flush()
    finally:
        producer.close()


def test_a_maximal_event_flows_and_one_over_a_limit_is_dead_lettered(make_settings) -> None:
    settings = make_settings()
    topics = Topics.from_settings(settings, load_agencies(settings.agencies_config))
    ensure_project_topics(settings, topics)
    most, keys = settings.contract.max_subjects, settings.contract.max_blocking_keys
    # the linked sample pair (a shared vehicle), its first event made maximal
    first_pair = sample_events(2)
    first_pair[0] = _with_subjects(first_pair[0], most, min(keys, most))
    too_many = _with_subjects(sample_events(1)[0], most + 1, min(keys, most))
    too_many_keys = _with_subjects(sample_events(1)[0], min(keys + 1, most), min(keys + 1, most))
    later_pair = sample_events(2)

    pipeline = Pipeline(settings, sink=False)
    with pipeline.running():
        pipeline.wait_until_settled()
        _send(settings, topics, first_pair)
        _send(settings, topics, [too_many, too_many_keys])
        _send(settings, topics, later_pair)
        pipeline.wait_until_drained(topics, timeout_s=60)
        pipeline.check_alive()

    bootstrap = settings.kafka.bootstrap_servers
    codec = codec_for(settings)
    accepted = consume_all(bootstrap, topics.accepted, 4, timeout_s=10)
    ids = sorted(str(codec.decode(r.value).value["event_id"]) for r in accepted)
    assert ids == sorted(str(e["event_id"]) for e in first_pair + later_pair)

    dead = consume_all(bootstrap, topics.dead_letters, 2, timeout_s=10)
    letters = {
        str(codec.decode(r.value).value["event_id"]): dict(r.headers) for r in dead
    }  # the bytes are the original event
    assert set(letters) == {str(too_many["event_id"]), str(too_many_keys["event_id"])}
    over = letters[str(too_many["event_id"])]
    assert over[HEADER_REASON] == b"invalid"
    assert f"{most + 1} subjects > limit {most}".encode() in over[HEADER_ERROR]
    assert b"XBORDER_CONTRACT__MAX_SUBJECTS" in over[HEADER_ERROR]
    if keys < most:
        over_keys = letters[str(too_many_keys["event_id"])]
        assert over_keys[HEADER_REASON] == b"invalid"
        assert b"XBORDER_CONTRACT__MAX_BLOCKING_KEYS" in over_keys[HEADER_ERROR]

    correlations = consume_all(bootstrap, topics.correlations, 2, timeout_s=10)
    linked = {codec.decode(r.value).value["correlation_id"] for r in correlations}
    assert {_ref_pair(first_pair), _ref_pair(later_pair)} <= linked
