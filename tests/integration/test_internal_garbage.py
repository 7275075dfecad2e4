"""Internal topics are validated like external ones: a message a stage cannot parse is
dead-lettered with its position and reason, and the stage goes on."""

from __future__ import annotations

import time

import orjson
import pytest

from tests.integration.kafka_read import consume_all
from tests.integration.test_stage_batches import _linked_pairs
from xborder.agencies import load_agencies
from xborder.bench.kafka_io import Message, publish
from xborder.deadletter import HEADER_ERROR, HEADER_OFFSET, HEADER_REASON, HEADER_TOPIC
from xborder.pipeline import Pipeline
from xborder.topics import Topics, ensure_project_topics
from xborder.wire import codec_for

pytestmark = pytest.mark.integration

GARBAGE = (
    b"not json at all",
    b'{"s": {"x": "late"}, "i": []}',  # progress of the wrong type (a forged watermark)
    orjson.dumps({"s": {}, "i": [["t:PHONE:x", [2, "e", "a", "i", "not a time"]]]}),
)


def test_garbage_on_blocks_and_links_is_dead_lettered_and_correlation_goes_on(
    make_settings,
) -> None:
    settings = make_settings()
    topics = Topics.from_settings(settings, load_agencies(settings.agencies_config))
    ensure_project_topics(settings, topics)
    codec = codec_for(settings)
    bootstrap = settings.kafka.bootstrap_servers
    (first, second), *_ = _linked_pairs(settings, 1)
    garbage = [Message(topics.blocks, None, value, 0) for value in GARBAGE]
    garbage.append(Message(topics.links, None, b'{"w": {"0": "soon"}}', 0))
    pipeline = Pipeline(settings, workers=1, sink=False)
    with pipeline.running():
        pipeline.wait_until_settled()
        publish(bootstrap, garbage)
        time.sleep(2.0)
        publish(
            bootstrap,
            [
                Message(
                    topics.incidents(doc["agency"]),
                    doc["incident_id"].encode(),
                    codec.encode("IncidentReported", codec.from_json("IncidentReported", doc)),
                )
                for doc in (first, second)
            ],
        )
        links = consume_all(bootstrap, topics.correlations, 1, timeout_s=60)
        letters = consume_all(bootstrap, topics.dead_letters, len(garbage), timeout_s=60)
        assert pipeline.processes["worker-0"].poll() is None, "the worker died"
    refs = {(codec.decode(r.value).value["incident_a"]["incident_id"]) for r in links} | {
        codec.decode(r.value).value["incident_b"]["incident_id"] for r in links
    }
    assert {first["incident_id"], second["incident_id"]} <= refs  # correlation went on
    assert sorted(r.value for r in letters) == sorted(m.value for m in garbage)
    for record in letters:
        headers = {k: v.decode() for k, v in record.headers}
        assert headers[HEADER_REASON] == "undecodable"
        assert headers[HEADER_TOPIC] in (topics.blocks, topics.links)
        assert headers[HEADER_OFFSET].isdigit()
        assert headers[HEADER_ERROR].startswith("not a message of this stage")
