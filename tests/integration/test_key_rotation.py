"""A key rotation on the real broker and worker: an event published before the rotation
(old key only) and one published during it (every accepted key) correlate; a subject
under a key the worker does not accept is dead-lettered as unknown-key."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.integration.kafka_read import consume_all
from xborder.agencies import load_agencies
from xborder.codec import AvroCodec
from xborder.deadletter import HEADER_REASON
from xborder.demo import publish_samples
from xborder.pipeline import Pipeline
from xborder.pseudonym import KeyRing, SharedKeyTokenizer, pseudonymise_subjects
from xborder.samples import sample_events
from xborder.schemas import SchemaStore
from xborder.topics import Topics, ensure_project_topics

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PLATE = "65B1-234.56"


def test_rotation_keeps_matching_and_unknown_keys_are_dead_lettered(make_settings: Any) -> None:
    old_ring = KeyRing.generate(1, prefix="k-old-")
    new_ring = old_ring.rotate("k-new", KeyRing.generate(1).secret("example-1"))
    settings = make_settings(**{"tokenizer.accepted_key_ids": "k-new,k-old-1"})
    topics = Topics.from_settings(settings, load_agencies(settings.agencies_config))
    ensure_project_topics(settings, topics)

    before, during = sample_events(2)  # two agencies, near each other, one plate
    assert before["agency"] != during["agency"]
    before["subjects"] = pseudonymise_subjects(
        SharedKeyTokenizer(old_ring), "VEHICLE", PLATE, "SUSPECT"
    )
    during["subjects"] = pseudonymise_subjects(
        SharedKeyTokenizer(new_ring), "VEHICLE", PLATE, "SUSPECT"
    )
    rogue = {
        **during,
        "event_id": str(uuid.uuid4()),
        "incident_id": f"{during['incident_id']}-r",
        "subjects": pseudonymise_subjects(
            SharedKeyTokenizer(KeyRing.generate(1, prefix="rogue-")), "VEHICLE", PLATE, "SUSPECT"
        ),
    }

    pipeline = Pipeline(settings, sink=False)
    with pipeline.running():
        publish_samples(settings, [before, during, rogue])
        pipeline.wait_until_drained(topics, timeout_s=120)

    bootstrap = settings.kafka.bootstrap_servers
    accepted = consume_all(bootstrap, topics.accepted, 2, timeout_s=30)
    dead = consume_all(bootstrap, topics.dead_letters, 1, timeout_s=30)
    correlations = consume_all(bootstrap, topics.correlations, 1, timeout_s=30)
    assert len(accepted) == 2
    assert [dict(r.headers)[HEADER_REASON] for r in dead] == [b"unknown-key"]
    codec = AvroCodec(SchemaStore(settings.schemas_dir))
    pairs = [codec.decode(r.value).value for r in correlations]
    linked = [{p["incident_a"]["incident_id"], p["incident_b"]["incident_id"]} for p in pairs]
    assert {before["incident_id"], during["incident_id"]} in linked, pairs
    assert all(rogue["incident_id"] not in pair for pair in linked)
