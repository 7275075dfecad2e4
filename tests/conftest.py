"""Session fixtures: a real local Apache Kafka on a free port, fresh per-test settings."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.registry_fixture import schema_registry_url  # noqa: F401 (fixture)
from xborder.local_kafka import LocalKafka, free_port_pair
from xborder.settings import Settings, load_settings


@pytest.fixture(scope="session")
def kafka_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Start a local Kafka for the whole session (fresh data dir) and stop it afterwards."""
    port = free_port_pair()
    data_dir = tmp_path_factory.mktemp("xborder-session")
    settings = load_settings(
        **{
            "data_dir": data_dir,
            "local_kafka.port": port,
            "kafka.bootstrap_servers": f"127.0.0.1:{port}",
            "local_kafka.heap": "768m",
        }
    )
    kafka = LocalKafka(settings.local_kafka, settings.kafka_data_dir)
    try:
        kafka.up()
    except Exception as exc:
        kafka.down()
        pytest.fail(f"the local Kafka for the test session did not start: {exc}", pytrace=False)
    try:
        yield settings
    finally:
        kafka.down()


def fresh_settings(kafka_settings: Settings, data_root: Path, **overrides: object) -> Settings:
    """Settings on the session broker with a unique topic prefix, groups, app id, ports and
    a data dir under ``data_root``: runs never see each other's data."""
    run = uuid.uuid4().hex[:10]
    base = {
        "data_dir": data_root / f"data-{run}",
        "topics.prefix": f"t{run}.",
        "worker.app_id": f"xborder-test-{run}",
        "worker.web_port": free_port_pair(),
        "sql_http.port": free_port_pair(),  # each test sink serves SQL on its own port
        "sink.group_id": f"xborder-sink-{run}",
        "sink.flush_interval_s": 0.3,
    }
    base.update({k: v for k, v in overrides.items()})
    return kafka_settings.with_overrides(**base)


@pytest.fixture
def make_settings(kafka_settings: Settings, tmp_path: Path) -> object:
    """Factory of per-test settings: unique topic prefix, groups, app id and data dir."""

    def build(**overrides: object) -> Settings:
        return fresh_settings(kafka_settings, tmp_path, **overrides)

    return build


@pytest.fixture(scope="module")
def make_module_settings(
    kafka_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> object:
    """The same factory for module-scoped fixtures (one run shared by a module's tests)."""
    root = tmp_path_factory.mktemp("module")

    def build(**overrides: object) -> Settings:
        return fresh_settings(kafka_settings, root, **overrides)

    return build
