"""Raw identifiers never leave the agency: after a run that tried every field, scan every
topic, ClickHouse table, log and data file for them.

Two kinds of attempt, each with its own random identifiers:

- through the producer library (redact policy): phones, national ID numbers and plates in
  every free-text and identifier-like field, a name in a descriptor, all of them as
  subjects (tokenised). None may appear anywhere, not even on the agency's own topic;
- around the library, as a producer of the agency's own that skips it: raw bytes on
  ``incidents.<agency>`` and ``verdicts.<agency>`` with an identifier in one field each,
  in an incident id, a Kafka key, a verdict's reason, a report's conclusion and released
  details. The worker refuses each to ``quarantine.<agency>``; they may appear only there
  and on the two topics that agency wrote itself.
"""

from __future__ import annotations

import copy
import random
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from tests.integration.kafka_read import topic_config
from xborder.agencies import load_agencies
from xborder.clickhouse import get_client
from xborder.codec import AvroCodec
from xborder.demo import publish_samples
from xborder.errors import InvalidRecordError
from xborder.kafka_admin import admin_client
from xborder.pipeline import Pipeline
from xborder.pseudonym import KeyRing, SharedKeyTokenizer, pseudonymise_subject, raw_forms
from xborder.samples import sample_events
from xborder.schemas import SchemaStore
from xborder.settings import Settings
from xborder.status import collect_status
from xborder.topics import Topics, ensure_project_topics
from xborder.verification import (
    Officer,
    release_record,
    released_details,
    report_record,
    verdict_record,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

AGENCY = "cantho"


def _raw_identifiers(rng: random.Random) -> list[tuple[str, str, dict[str, Any]]]:
    """(kind, raw value, extra) per identifier, random per run so no other test holds them."""
    plate = (
        f"{rng.randint(60, 69)}B{rng.randint(1, 9)}-{rng.randint(100, 999)}.{rng.randint(10, 99)}"
    )
    phone = f"09{rng.randint(10, 99)} {rng.randint(100, 999)} {rng.randint(100, 999)}"
    # a CCCD: province code 001-096, century digit 0-3, six random digits
    national_id = f"0{rng.randint(1, 96):02d}{rng.randint(0, 3)}{rng.randint(0, 10**8 - 1):08d}"
    name = rng.choice(["Trịnh Quỳnh Hoa", "Lâm Thị Xuyến", "Quách Văn Đởm"])
    return [
        ("VEHICLE", plate, {}),
        ("PHONE", phone, {}),
        ("PERSON", national_id, {}),
        (
            "PERSON",
            name,
            {"birth_date": f"19{rng.randint(60, 99)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}"},
        ),
    ]


def _needles(identifiers: list[tuple[str, str, dict[str, Any]]]) -> set[bytes]:
    forms: set[str] = set()
    for kind, raw, extra in identifiers:
        forms |= raw_forms(kind, raw, extra.get("birth_date"))
    needles = {f.encode("utf-8") for f in forms if len(f) >= 6}
    return needles | {f.lower().encode("utf-8") for f in forms if len(f) >= 6}


Put = Callable[[dict[str, Any], str], None]
FIELDS: list[tuple[str, Put]] = [
    ("narrative", lambda e, t: e.__setitem__("narrative", f"đối tượng gọi {t} rồi bỏ đi")),
    ("address", lambda e, t: e["location"].__setitem__("address", f"trước nhà {t}")),
    ("admin_unit_name", lambda e, t: e["location"].__setitem__("admin_unit_name", t)),
    ("modus_operandi", lambda e, t: e["modus_operandi"].append(t)),
    ("source_system", lambda e, t: e.__setitem__("source_system", f"app {t}")),
    ("descriptor", lambda e, t: e["subjects"][0]["descriptors"].__setitem__("note", t)),
]
"""The free-text and identifier-like fields, and how to write an identifier into each."""


def _library_events(
    identifiers: list[tuple[str, str, dict[str, Any]]], tokenizer: SharedKeyTokenizer
) -> list[dict[str, Any]]:
    """Events of both agencies with every identifier in every field (and as subjects)."""
    events = copy.deepcopy(sample_events(2 * len(FIELDS)))  # its tag lists are shared
    for index, event in enumerate(events):
        event["subjects"] = [
            pseudonymise_subject(tokenizer, kind, raw, "SUSPECT", **extra)
            for kind, raw, extra in identifiers
        ]
        put = FIELDS[index % len(FIELDS)][1]
        put(event, ", ".join(raw for _, raw, _ in identifiers[:3]))  # phone, CCCD, plate
        # names are looked for in descriptors and ids only (docs/security.md)
        event["subjects"][0]["descriptors"]["alias"] = identifiers[3][1]
    return events


def _bypass_messages(
    identifiers: list[tuple[str, str, dict[str, Any]]],
    codec: AvroCodec,
    topics: Topics,
    tokenizer: SharedKeyTokenizer,
) -> list[tuple[str, bytes, bytes]]:
    """(topic, key, value) written around the library: one identifier in one field each."""
    template = copy.deepcopy(sample_events(1)[0])
    template["agency"] = AGENCY
    template["subjects"] = [pseudonymise_subject(tokenizer, "PHONE", "0912 000 111", "VICTIM")]
    raws = [raw for _, raw, _ in identifiers[:3]]  # phone, CCCD, plate
    messages = []
    for index, (_, put) in enumerate(FIELDS):
        event = copy.deepcopy(template)
        event["event_id"] = str(uuid.uuid4())
        put(event, raws[index % len(raws)])
        datum = codec.from_json("IncidentReported", event)
        messages.append(
            (
                topics.incidents(AGENCY),
                event["incident_id"].encode(),
                codec.encode("IncidentReported", datum),
            )
        )
    for key_kind, text in (("incident_id", f"VU-{raws[0]}"), ("key", raws[1])):
        event = copy.deepcopy(template)
        event["event_id"] = str(uuid.uuid4())
        if key_kind == "incident_id":
            event["incident_id"] = text
        datum = codec.from_json("IncidentReported", event)
        messages.append(
            (topics.incidents(AGENCY), text.encode(), codec.encode("IncidentReported", datum))
        )
    officer = Officer("c" * 64, "example-1")
    verdict = verdict_record(AGENCY, "a" * 64, "REJECT", "khác đối tượng", officer)
    verdict["reason"] = f"không phải chủ xe {raws[2]}"
    report = report_record(AGENCY, "a" * 64, "đã thống nhất", officer)
    report["conclusion"] = f"liên lạc qua {raws[0]}"
    datum = codec.from_json("IncidentReported", template)
    release = release_record(
        AGENCY, "a" * 64, template["incident_id"], template["event_id"],
        details=released_details(datum),
    )  # fmt: skip
    release["details"]["narrative"] = f"chủ xe {raws[1]}"
    verdicts = topics.verdicts(AGENCY)
    records = (("Verdict", verdict), ("CaseReport", report), ("IncidentRelease", release))
    for record_name, record in records:
        messages.append((verdicts, b"a" * 64, codec.encode(record_name, record)))
    return messages


def _topic_chunks(settings: Settings) -> list[tuple[str, bytes]]:
    """(topic, bytes) for every key, value and header of every message of this run: its
    prefixed topics and the worker's changelogs (other tests' topics on the shared session
    broker are theirs to check)."""
    admin = admin_client(settings.kafka.bootstrap_servers)
    try:
        topics = [
            t
            for t in admin.list_topics()
            if t.startswith((settings.topics.prefix, settings.worker.app_id))
        ]
    finally:
        admin.close()
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers)
    chunks: list[tuple[str, bytes]] = []
    try:
        partitions = [
            TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()
        ]
        ends = consumer.end_offsets(partitions)
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        remaining = {tp for tp, end in ends.items() if end > 0}
        for _ in range(200):
            if not remaining:
                break
            for tp, records in consumer.poll(timeout_ms=500).items():
                for record in records:
                    chunks.append((tp.topic, record.key or b""))
                    chunks.append((tp.topic, record.value or b""))
                    for name, value in record.headers or ():
                        chunks.append((tp.topic, name.encode() + b"=" + (value or b"")))
            remaining = {tp for tp in remaining if consumer.position(tp) < ends[tp]}
        assert not remaining, f"could not read to the end of {sorted(map(str, remaining))}"
    finally:
        consumer.close()
    return chunks


def _table_chunks(settings: Settings) -> list[tuple[str, bytes]]:
    """(table, its rows as text) for every table and view of the ClickHouse database."""
    client = get_client(settings)
    chunks = []
    try:
        names = client.query(
            "SELECT name FROM system.tables WHERE database = currentDatabase()"
        ).result_rows
        for (name,) in names:
            # as text: aggregate states too (their bytes hold the strings they aggregate)
            chunks.append((name, client.raw_query(f"SELECT * FROM `{name}` FORMAT TSVRaw")))
    finally:
        client.close()
    assert len(chunks) >= 5
    return chunks


def _file_chunks(data_dir: Path) -> list[tuple[str, bytes]]:
    """(path, bytes) of every file under the data directory: logs, the worker's RocksDB
    tables, chDB's parts (compressed: the table scan above reads those)."""
    return [(str(p), p.read_bytes()) for p in sorted(data_dir.rglob("*")) if p.is_file()]


def test_no_raw_identifier_reaches_any_topic_table_log_or_file(make_settings) -> None:
    settings = make_settings()  # the worker refuses raw identifiers (the default)
    redacting = settings.with_overrides(**{"contract.raw_identifiers": "redact"})
    topics = Topics.from_settings(settings, load_agencies(settings.agencies_config))
    ensure_project_topics(settings, topics)
    codec = AvroCodec(SchemaStore(settings.schemas_dir))
    tokenizer = SharedKeyTokenizer(KeyRing.generate())
    rng = random.Random()
    through_library = _raw_identifiers(rng)
    around_library = _raw_identifiers(rng)
    events = _library_events(through_library, tokenizer)
    bypass = _bypass_messages(around_library, codec, topics, tokenizer)

    # the verification client refuses what it would send
    officer = Officer("c" * 64, "example-1")
    phone = through_library[1][1]
    with pytest.raises(InvalidRecordError, match=r"^reason: "):
        verdict_record(AGENCY, "a" * 64, "REJECT", f"gọi {phone}", officer)
    with pytest.raises(InvalidRecordError, match=r"^conclusion: "):
        report_record(AGENCY, "a" * 64, f"gọi {phone}", officer)

    pipeline = Pipeline(settings)
    with pipeline.running():
        publish_samples(redacting, events)
        producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all")
        try:
            for topic, key, value in bypass:
                producer.send(topic, key=key, value=value)
            producer.flush(timeout=30)
        finally:
            producer.close()
        pipeline.wait_until_drained(topics, timeout_s=120)

    assert topic_config(
        settings.kafka.bootstrap_servers, topics.quarantine(AGENCY), "retention.ms"
    ) == str(7 * 24 * 3_600_000)
    topic_chunks = _topic_chunks(settings)
    quarantined = [c for t, c in topic_chunks if t == topics.quarantine(AGENCY)]
    assert len(quarantined) >= 2 * len(bypass)  # each bypass message: its key and value
    assert {t for t, _ in topic_chunks} >= {topics.accepted, topics.quarantine(AGENCY)}
    scanned = topic_chunks + _table_chunks(settings) + _file_chunks(settings.data_dir)
    logs = [where for where, _ in scanned if where.endswith(".log")]
    assert logs  # the worker's and the sink's logs were scanned

    library_needles = _needles(through_library)
    bypass_needles = _needles(around_library)
    assert len(library_needles) > 20 and len(bypass_needles) > 20
    own_inputs = {topics.incidents(AGENCY), topics.verdicts(AGENCY), topics.quarantine(AGENCY)}
    leaks = [(where, n) for where, chunk in scanned for n in library_needles if n in chunk]
    leaks += [
        (where, n)
        for where, chunk in scanned
        if where not in own_inputs
        for n in bypass_needles
        if n in chunk
    ]
    assert leaks == []
    # the bypass identifiers are there, in the agency's own quarantine
    assert all(any(n in key + value for n in bypass_needles) for _, key, value in bypass)
    assert sum(any(n in c for n in bypass_needles) for c in quarantined) >= len(bypass)
    # xborder status counts them by reason, without showing them
    assert collect_status(settings, topics).dead_letters.get("raw-identifier") == len(bypass)
    # the redacted events were accepted and stored
    accepted = [c for t, c in topic_chunks if t == topics.accepted]
    assert sum(b"[redacted:" in c for c in accepted) >= len(events)
