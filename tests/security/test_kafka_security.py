"""Kafka in secure mode, on its own broker: TLS on every listener, SCRAM principals, ACLs.

Each attack an outsider or a cooperating agency could try fails with the broker's own
authentication or authorisation error (the broker's log says the same), and the
legitimate flows still work: the agencies publish under their own principals, the worker
and the sink run as theirs, and an agency reads its alerts.
"""

from __future__ import annotations

import asyncio
import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.conn import create_conn
from aiokafka.errors import KafkaConnectionError, SaslAuthenticationFailed
from aiokafka.protocol.metadata import MetadataRequest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError, TopicAuthorizationFailedError

from tests.conftest import free_port_pair
from xborder import kafka_security
from xborder.agencies import load_agencies
from xborder.clickhouse import get_client
from xborder.local_kafka import LocalKafka
from xborder.pipeline import Pipeline
from xborder.producer import IncidentPublisher
from xborder.samples import sample_events
from xborder.settings import Settings, load_settings
from xborder.topics import Topics, ensure_project_topics
from xborder.wire import codec_for

pytestmark = [pytest.mark.integration, pytest.mark.secure, pytest.mark.slow]


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A secure local broker (fresh CA, passwords, users and ACLs) with the project's
    topics; the settings are the operator's (``admin``)."""
    port = free_port_pair()
    settings = load_settings(
        **{
            "data_dir": tmp_path_factory.mktemp("xborder-secure"),
            "local_kafka.port": port,
            "kafka.bootstrap_servers": f"127.0.0.1:{port}",
            "kafka.security_protocol": "SASL_SSL",
            "local_kafka.heap": "512m",
            "topics.prefix": f"s{uuid.uuid4().hex[:8]}.",
            "sink.flush_interval_s": 0.3,
        }
    )
    agency_ids = list(load_agencies(settings.agencies_config).ids)
    broker = kafka_security.local_broker(settings, agency_ids)
    kafka = LocalKafka(settings.local_kafka, settings.kafka_data_dir, broker)
    try:
        kafka.up()
        kafka_security.provision(settings, agency_ids)
        ensure_project_topics(
            settings, Topics.from_settings(settings, load_agencies(settings.agencies_config))
        )
    except Exception as exc:
        kafka.down()
        pytest.fail(f"the secure local Kafka did not start: {exc}", pytrace=False)
    try:
        yield settings
    finally:
        kafka.down()


def as_principal(settings: Settings, name: str, password: str | None = None) -> Settings:
    return settings.with_overrides(**{"kafka.sasl_username": name, "kafka.sasl_password": password})


def topics_of(settings: Settings) -> Topics:
    return Topics.from_settings(settings, load_agencies(settings.agencies_config))


def broker_log(settings: Settings) -> str:
    return (settings.kafka_data_dir / "server.log").read_text(errors="replace")


def _connect(settings: Settings, **options: object) -> None:
    """Open one connection to the broker (TLS handshake, SASL), ask for the cluster's
    metadata on it, and close it."""
    host, port = settings.kafka.bootstrap_servers.rsplit(":", 1)

    async def run() -> None:
        conn = await create_conn(host, int(port), request_timeout_ms=10_000, **options)
        try:
            await conn.send(MetadataRequest([]))
        finally:
            conn.close()

    asyncio.run(run())


# -- authentication -------------------------------------------------------------------


def test_a_wrong_password_is_refused_by_the_broker(secure: Settings) -> None:
    options = kafka_security.aiokafka(as_principal(secure, "cantho", "not-the-password"))
    with pytest.raises(SaslAuthenticationFailed, match="invalid credentials"):
        _connect(secure, **options)
    assert "invalid credentials with SASL mechanism SCRAM-SHA-512" in broker_log(secure)


def test_an_unknown_principal_is_refused_by_the_broker(secure: Settings) -> None:
    options = kafka_security.aiokafka(as_principal(secure, "mallory", "guess"))
    with pytest.raises(SaslAuthenticationFailed):
        _connect(secure, **options)


def test_a_client_without_credentials_is_disconnected(secure: Settings) -> None:
    # TLS with the right CA, but no SASL: the broker takes nothing but the SASL handshake
    context = kafka_security.ssl_context(secure.kafka)
    with pytest.raises(KafkaConnectionError):
        _connect(secure, security_protocol="SSL", ssl_context=context)
    assert "during SASL handshake" in broker_log(secure)


def test_a_plaintext_client_on_the_tls_port_fails(secure: Settings) -> None:
    with pytest.raises(KafkaConnectionError):
        _connect(secure, security_protocol="PLAINTEXT")
    assert "(SSL handshake failed)" in broker_log(secure)


def test_a_certificate_from_another_ca_is_not_trusted(secure: Settings, tmp_path: Path) -> None:
    kafka_security.make_certs(tmp_path / "kafka" / "security", ["127.0.0.1"])
    impostor = secure.with_overrides(
        **{"kafka.ssl_cafile": tmp_path / "kafka" / "security" / "ca.pem"}
    )
    with pytest.raises((ssl.SSLError, KafkaConnectionError)):
        _connect(secure, **kafka_security.aiokafka(impostor))


def test_the_controller_listener_wants_the_brokers_certificate(secure: Settings) -> None:
    controller = secure.with_overrides(
        **{"kafka.bootstrap_servers": f"127.0.0.1:{secure.local_kafka.effective_controller_port}"}
    )
    context = kafka_security.ssl_context(secure.kafka)  # trusts the CA, shows no certificate
    with pytest.raises((ssl.SSLError, KafkaConnectionError, ConnectionError)):
        _connect(controller, security_protocol="SSL", ssl_context=context)


# -- authorisation --------------------------------------------------------------------


def _publish_as_admin(settings: Settings, topic: str) -> None:
    producer = KafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap_servers, **kafka_security.kafka_python(settings)
    )
    try:
        producer.send(topic, b"secret", partition=0).get(timeout=30)
    finally:
        producer.close()


@pytest.mark.parametrize("victim", ["incidents.angiang", "deadletters", "correlations"])
def test_an_agency_cannot_read_what_is_not_shared_with_it(secure: Settings, victim: str) -> None:
    topic = f"{secure.topics.prefix}{victim}"
    _publish_as_admin(secure, topic)
    cantho = as_principal(secure, "cantho")
    consumer = KafkaConsumer(
        bootstrap_servers=secure.kafka.bootstrap_servers, **kafka_security.kafka_python(cantho)
    )
    try:
        assert topic not in consumer.topics()  # not even listed
        tp = TopicPartition(topic, 0)
        with pytest.raises(TopicAuthorizationFailedError):
            consumer.end_offsets([tp])
        consumer.assign([tp])
        consumer.seek(tp, 0)
        assert consumer.poll(timeout_ms=2_000) == {}  # the admin's message stays unread
    finally:
        consumer.close(autocommit=False)


@pytest.mark.parametrize(
    "victim",
    ["incidents.angiang", "verdicts.angiang", "alerts.cantho", "correlations",
     "correlation.blocks", "incidents.accepted", "cases", "verification"],
)  # fmt: skip
def test_an_agency_cannot_write_anything_but_its_own_topics(secure: Settings, victim: str) -> None:
    producer = KafkaProducer(
        bootstrap_servers=secure.kafka.bootstrap_servers,
        max_block_ms=10_000,
        **kafka_security.kafka_python(as_principal(secure, "cantho")),
    )
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            producer.send(f"{secure.topics.prefix}{victim}", b"forged").get(timeout=15)
    finally:
        producer.close()


def test_an_agency_writes_its_own_topics(secure: Settings) -> None:
    producer = KafkaProducer(
        bootstrap_servers=secure.kafka.bootstrap_servers,
        **kafka_security.kafka_python(as_principal(secure, "cantho")),
    )
    try:
        for own in ("incidents.cantho", "verdicts.cantho"):
            metadata = producer.send(f"{secure.topics.prefix}{own}", b"x").get(timeout=15)
            assert metadata.offset >= 0
    finally:
        producer.close()


def test_the_sink_cannot_write_and_the_worker_cannot_create_project_topics(
    secure: Settings,
) -> None:
    producer = KafkaProducer(
        bootstrap_servers=secure.kafka.bootstrap_servers,
        max_block_ms=10_000,
        **kafka_security.kafka_python(as_principal(secure, "sink")),
    )
    try:
        # no WRITE anywhere: the idempotent producer is refused its producer id already
        with pytest.raises(KafkaError, match=r"(Topic|Cluster)AuthorizationFailed"):
            producer.send(f"{secure.topics.prefix}alerts.cantho", b"forged").get(timeout=15)
    finally:
        producer.close()
    from xborder.kafka_admin import admin_client

    admin = admin_client(
        secure.kafka.bootstrap_servers,
        security=kafka_security.kafka_python(as_principal(secure, "worker")),
    )
    try:
        from kafka.admin import NewTopic
        from kafka.errors import TopicAuthorizationFailedError as Denied

        with pytest.raises(Denied):
            admin.create_topics([NewTopic(f"{secure.topics.prefix}rogue", 1, 1)])
    finally:
        admin.close()


def test_an_agency_waits_for_verification_outcomes_without_the_dead_letters(
    secure: Settings,
) -> None:
    from xborder.verification import outcome_positions

    seen = {tp.topic for tp in outcome_positions(as_principal(secure, "cantho"))}
    assert seen == {topics_of(secure).verification}
    assert topics_of(secure).dead_letters in {tp.topic for tp in outcome_positions(secure)}


def test_an_agency_cannot_create_topics(secure: Settings) -> None:
    from xborder.errors import ServiceUnavailableError
    from xborder.kafka_admin import ensure_topics

    rogue = f"{secure.topics.prefix}incidents.rogue"
    with pytest.raises(ServiceUnavailableError, match=r"refused to create .*only the operator"):
        ensure_topics(as_principal(secure, "cantho"), [rogue])


def test_the_acl_command_is_idempotent_and_matches_the_plan(secure: Settings) -> None:
    agency_ids = list(load_agencies(secure.agencies_config).ids)
    added, created = kafka_security.provision(secure, agency_ids)
    assert (added, created) == ([], [])
    client = kafka_security.admin(secure)
    try:
        effective = set(kafka_security.effective_acls(client))
    finally:
        client.close()
    assert set(kafka_security.acl_plan(secure, agency_ids)) <= effective
    writers = {
        g.principal
        for g in effective
        if g.operation in ("WRITE", "ALL") and g.name == f"{secure.topics.prefix}correlations"
    }
    assert writers == {"worker"}


# -- the legitimate flows, end to end ---------------------------------------------------


def test_agencies_publish_the_worker_correlates_the_sink_stores_an_agency_reads_its_alerts(
    secure: Settings, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:8]
    settings = secure.with_overrides(
        **{
            "data_dir": tmp_path / "data",
            "worker.app_id": f"xborder-secure-{run}",
            "worker.web_port": free_port_pair(),
            "sink.group_id": f"xborder-sink-{run}",
        }
    )
    agency_ids = list(load_agencies(settings.agencies_config).ids)
    kafka_security.provision(settings, agency_ids)  # the ACLs name the app id and group
    topics = topics_of(settings)
    events = sample_events(4)
    agencies = load_agencies(settings.agencies_config)
    codec = codec_for(settings)

    pipeline = Pipeline(settings)  # the worker and the sink take their own principals
    with pipeline.running():
        for agency in agency_ids:
            mine = [e for e in events if e["agency"] == agency]
            with IncidentPublisher(as_principal(settings, agency), agencies, codec, agency) as p:
                p.publish_batch(mine)
        pipeline.wait_until_drained(topics, timeout_s=150)

    client = get_client(settings)
    try:
        incidents = client.query("SELECT count() FROM incidents FINAL").result_rows[0][0]
        correlations = client.query("SELECT count() FROM correlations FINAL").result_rows[0][0]
    finally:
        client.close()
    assert incidents == len(events)
    assert correlations >= 1
    logs = settings.data_dir / "logs"
    assert (
        "the worker's Kafka clients authenticate as 'worker'" in (logs / "worker-0.log").read_text()
    )
    assert "the sink's Kafka clients authenticate as 'sink'" in (logs / "sink.log").read_text()

    assert_no_password_leaked(settings, secure)

    cantho = as_principal(settings, "cantho")
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap_servers, **kafka_security.kafka_python(cantho)
    )
    try:
        alerts = topics.alerts("cantho")
        partitions = [TopicPartition(alerts, p) for p in consumer.partitions_for_topic(alerts)]
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        end = consumer.end_offsets(partitions)
        assert sum(end.values()) >= 1
        read = 0
        for _ in range(20):
            read += sum(len(batch) for batch in consumer.poll(timeout_ms=500).values())
            if read >= sum(end.values()):
                break
        assert read == sum(end.values())
    finally:
        consumer.close(autocommit=False)


def assert_no_password_leaked(settings: Settings, broker: Settings) -> None:
    """No password of any principal in any log, store, table or topic file of the run or
    of the broker, but in the credentials file and the broker's own config (both 600)."""
    secrets = kafka_security.read_credentials(kafka_security.credentials_path(settings))
    needles = [p.encode() for p in secrets.values()]
    allowed = {
        kafka_security.credentials_path(settings),
        broker.kafka_data_dir / "server.properties",
    }
    roots = [settings.data_dir, broker.kafka_data_dir]
    leaks = [
        str(path)
        for root in roots
        for path in root.rglob("*")
        if path.is_file() and path not in allowed
        and any(n in path.read_bytes() for n in needles)
    ]  # fmt: skip
    assert leaks == []
    for path in allowed:
        assert path.stat().st_mode & 0o077 == 0


def test_each_service_takes_its_own_principal(secure: Settings) -> None:
    assert kafka_security.as_service(secure, "worker").kafka.sasl_username == "worker"
    assert kafka_security.as_service(secure, "sink").kafka.sasl_username == "sink"
    assert kafka_security.principal(secure.kafka).username == "admin"
