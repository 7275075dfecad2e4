"""Schema evolution without a registry, on the real broker: writer schemas published on
the schema topic (by the CLI, the producer library and a Java producer) let consumers
read events of a newer schema with the current schema's defaults; a schema published
under a fingerprint that is not its own is ignored; an unpublished one is dead-lettered
as ``unknown-schema``."""

from __future__ import annotations

import io
import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import fastavro
import pytest

from tests.integration import java_client
from tests.integration.kafka_read import consume_all
from tests.integration.newer_schema import NEW_FIELD, NEW_SYMBOL, newer_incident_schema
from xborder.agencies import load_agencies
from xborder.cli import main
from xborder.clickhouse import get_client
from xborder.codec import SINGLE_OBJECT_MAGIC
from xborder.deadletter import HEADER_ERROR, HEADER_REASON
from xborder.errors import InvalidRecordError
from xborder.kafka_admin import wait_for_partitions
from xborder.pipeline import Pipeline
from xborder.producer import IncidentPublisher
from xborder.samples import sample_events
from xborder.schema_topic import PublishedSchemas, schema_json
from xborder.schemas import StoredSchema, writer_schema
from xborder.settings import Settings, to_env
from xborder.topics import Topics, ensure_project_topics
from xborder.wire import codec_for

pytestmark = pytest.mark.integration

NEWER_PRODUCER = Path(__file__).resolve().parents[1] / "java" / "NewerSchemaProducer.java"


def _schema_file(document: dict[str, Any], path: Path) -> StoredSchema:
    path.write_text(json.dumps(document))
    return writer_schema(document, path)


def _event(settings: Settings, symbol: str) -> dict[str, Any]:
    """A valid cantho event (current schema's datum) with ``symbol`` as its category and the
    newer schema's optional field set."""
    codec = codec_for(settings)
    event = {
        **sample_events(1)[0],
        "agency": "cantho",
        "event_id": str(uuid.uuid4()),
        "incident_id": f"CT-NEWER-{uuid.uuid4().hex[:8]}",
    }
    datum = codec.from_json("IncidentReported", event)
    codec.close()
    return {**datum, "category": symbol, NEW_FIELD: "river patrol unit 3"}


def _encoded(schema: StoredSchema, datum: dict[str, Any]) -> bytes:
    out = io.BytesIO(SINGLE_OBJECT_MAGIC + schema.fingerprint)
    out.seek(0, io.SEEK_END)
    fastavro.schemaless_writer(out, schema.parsed, datum)
    return out.getvalue()


def test_published_schemas_are_found_and_forged_ones_ignored(
    make_settings: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = make_settings()
    for name, value in to_env(settings).items():  # for the command line
        monkeypatch.setenv(name, value)
    topics = Topics.from_settings(settings, load_agencies(settings.agencies_config))
    ensure_project_topics(settings, topics)
    wait_for_partitions(settings, {topics.schemas: 1})
    codec = codec_for(settings)
    newer = _schema_file(newer_incident_schema(codec.store), tmp_path / "newer.avsc")
    forged_as = _schema_file(newer_incident_schema(codec.store, "FORGED"), tmp_path / "f.avsc")
    newer_message = _encoded(newer, _event(settings, NEW_SYMBOL))
    forged_message = _encoded(forged_as, _event(settings, "FORGED"))

    with pytest.raises(InvalidRecordError, match=f"fingerprint {newer.fingerprint.hex()}"):
        codec.decode(newer_message)  # nothing published yet (and the topic read once)

    args = ["--agencies-config", str(settings.agencies_config), "schemas", "publish"]
    assert main([*args, str(tmp_path / "newer.avsc")]) == 0
    assert f"{newer.fingerprint.hex()}  xborder.v1.IncidentReported" in capsys.readouterr().out
    assert main([*args, str(tmp_path / "missing.avsc")]) == 2
    assert "missing.avsc" in capsys.readouterr().err

    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all")
    try:  # the newer schema's JSON under another schema's fingerprint
        producer.send(
            topics.schemas,
            key=forged_as.fingerprint.hex().encode(),
            value=schema_json(newer).encode(),
        ).get(timeout=30)
    finally:
        producer.close()

    decoded = codec.decode(newer_message, logical_types=False)
    assert (decoded.value["category"], NEW_FIELD in decoded.value) == ("OTHER", False)
    with pytest.raises(InvalidRecordError) as refused:
        codec.decode(forged_message)
    assert refused.value.reason == "unknown-schema"
    codec.close()

    # the producer library publishes its own writer schemas when it starts
    with IncidentPublisher(settings, load_agencies(settings.agencies_config), codec, "cantho"):
        pass
    fresh = PublishedSchemas.from_settings(settings, codec.store)
    try:
        fresh._read_new()
        keys = {r.key.decode() for r in consume_all(settings.kafka.bootstrap_servers,
                                                    topics.schemas, 5, timeout_s=10)}  # fmt: skip
    finally:
        fresh.close()
    assert newer.fingerprint in fresh._found and forged_as.fingerprint not in fresh._found
    own = {codec.store.current(n).fingerprint.hex() for n in ("IncidentReported", "IncidentClosed")}
    assert own <= keys


@pytest.mark.slow
def test_a_java_event_of_a_newer_published_schema_is_accepted_with_the_defaults(
    make_settings: Any, tmp_path: Path
) -> None:
    """Java sends two events written with newer schemas (a new Category symbol, a new
    optional field): the one whose schema it published first is accepted, stored with
    category OTHER; the other is dead-lettered as unknown-schema."""
    settings = make_settings()
    topics = Topics.from_settings(settings, load_agencies(settings.agencies_config))
    ensure_project_topics(settings, topics)
    codec = codec_for(settings)
    store = codec.store
    codec.close()
    events = {}
    args = [settings.kafka.bootstrap_servers, topics.schemas, topics.incidents("cantho")]
    for action, symbol in (("skip", "UNPUBLISHED_KIND"), ("publish", NEW_SYMBOL)):
        schema = _schema_file(newer_incident_schema(store, symbol), tmp_path / f"{symbol}.avsc")
        events[action] = event = _event(settings, symbol)
        datum = tmp_path / f"{symbol}.json"
        with datum.open("w") as out:
            fastavro.json_writer(out, schema.parsed, [event])
        args += [action, str(schema.source), str(datum)]
    classpath = java_client.classpath(settings)

    pipeline = Pipeline(settings)
    with pipeline.running():
        pipeline.wait_until_settled()
        done = subprocess.run(
            ["java", "-cp", classpath, str(NEWER_PRODUCER), *args],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        pipeline.wait_until_drained(topics, timeout_s=60)

    sent = [json.loads(line) for line in done.stdout.splitlines()]
    assert [s["published"] for s in sent] == [False, True]
    (dead,) = consume_all(settings.kafka.bootstrap_servers, topics.dead_letters, 1)
    headers = dict(dead.headers)
    assert headers[HEADER_REASON] == b"unknown-schema"
    assert dead.value[2:10].hex() == sent[0]["fingerprint"]
    assert sent[0]["fingerprint"].encode() in headers[HEADER_ERROR]
    client = get_client(settings)
    try:
        rows = client.query(
            "SELECT incident_id, category FROM incidents FINAL ORDER BY incident_id"
        ).result_rows
    finally:
        client.close()
    assert rows == [(events["publish"]["incident_id"], "OTHER")]
