"""The local Kafka command: error paths and restart with kept data, on the real broker."""

from __future__ import annotations

import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from kafka import KafkaProducer

from tests.conftest import free_port_pair
from tests.integration.kafka_read import consume_all
from xborder.errors import LocalKafkaError
from xborder.kafka_admin import ensure_topics
from xborder.local_kafka import LocalKafka
from xborder.settings import load_settings

pytestmark = pytest.mark.integration


def _settings(tmp_path: Path, port: int):
    return load_settings(
        **{
            "data_dir": tmp_path,
            "local_kafka.port": port,
            "kafka.bootstrap_servers": f"127.0.0.1:{port}",
            "local_kafka.heap": "512m",
        }
    )


def test_up_on_a_port_in_use_says_so_and_how_to_fix(tmp_path: Path) -> None:
    port = free_port_pair()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        settings = _settings(tmp_path, port)
        with pytest.raises(LocalKafkaError) as caught:
            LocalKafka(settings.local_kafka, settings.kafka_data_dir).up()
    message = str(caught.value)
    assert f"port {port} on 127.0.0.1 is already in use" in message
    assert "XBORDER_LOCAL_KAFKA__PORT" in message


def test_cli_reports_the_busy_port_and_exits_non_zero(tmp_path: Path) -> None:
    port = free_port_pair()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "xborder",
                "--data-dir",
                str(tmp_path),
                "kafka",
                "up",
                "--port",
                str(port),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert result.returncode == 2
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr


def test_status_and_down_tell_the_truth_when_nothing_runs(tmp_path: Path) -> None:
    settings = _settings(tmp_path, free_port_pair())
    kafka = LocalKafka(settings.local_kafka, settings.kafka_data_dir)
    assert kafka.status().running is False
    assert kafka.down() is False
    result = subprocess.run(
        [sys.executable, "-m", "xborder", "--data-dir", str(tmp_path), "kafka", "status"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 3
    assert "stopped" in result.stdout


@pytest.mark.slow
def test_second_up_after_down_keeps_the_data(tmp_path: Path) -> None:
    settings = _settings(tmp_path, free_port_pair())
    kafka = LocalKafka(settings.local_kafka, settings.kafka_data_dir)
    topic = f"keep-{uuid.uuid4().hex[:8]}"
    try:
        assert kafka.up().accepts_requests
        ensure_topics(settings, [topic])
        producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers)
        producer.send(topic, b"survives restart").get(timeout=30)
        producer.close()
        assert kafka.down() is True
        assert kafka.status().running is False

        status = kafka.up()
        assert status.running and status.accepts_requests
        records = consume_all(settings.kafka.bootstrap_servers, topic, 1, timeout_s=15)
        values = [m.value for m in records]
        assert values == [b"survives restart"]
    finally:
        kafka.down()
