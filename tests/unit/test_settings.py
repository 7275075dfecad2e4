"""Settings: environment parsing, CLI overrides, errors that name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from xborder.cli import build_parser, settings_from_args
from xborder.errors import ConfigurationError
from xborder.settings import known_env_vars, load_settings, to_env


def test_defaults_bind_to_loopback_and_embedded_clickhouse(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in known_env_vars():
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert settings.kafka.bootstrap_servers == "127.0.0.1:19092"
    assert settings.local_kafka.host == "127.0.0.1"
    assert settings.worker.web_host == "127.0.0.1"
    assert settings.clickhouse.url is None
    assert settings.local_kafka.effective_controller_port == 19093


def test_environment_variables_fill_nested_groups(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XBORDER_KAFKA__BOOTSTRAP_SERVERS", "broker-a:9092,broker-b:9092")
    monkeypatch.setenv("XBORDER_CLICKHOUSE__URL", "https://u:p@ch.example:8443/analytics")
    monkeypatch.setenv("XBORDER_TOPICS__PREFIX", "staging.")
    monkeypatch.setenv("XBORDER_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("XBORDER_LOCAL_KAFKA__PORT", "29092")
    settings = load_settings()
    assert settings.kafka.bootstrap_servers == "broker-a:9092,broker-b:9092"
    assert settings.clickhouse.url == "https://u:p@ch.example:8443/analytics"
    assert settings.topics.prefix == "staging."
    assert settings.data_dir == tmp_path
    assert settings.kafka_data_dir == tmp_path / "kafka"
    assert settings.local_kafka.port == 29092


def test_cli_flags_override_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XBORDER_KAFKA__BOOTSTRAP_SERVERS", "from-env:1")
    monkeypatch.setenv("XBORDER_TOPICS__PREFIX", "env.")
    args = build_parser().parse_args(
        ["--bootstrap-servers", "from-flag:2", "--data-dir", str(tmp_path), "topics", "list"]
    )
    settings = settings_from_args(args)
    assert settings.kafka.bootstrap_servers == "from-flag:2"
    assert settings.topics.prefix == "env."
    assert settings.data_dir == tmp_path


def test_kafka_port_flag_points_clients_at_that_broker(tmp_path: Path) -> None:
    args = build_parser().parse_args(
        ["--data-dir", str(tmp_path), "kafka", "up", "--port", "31000"]
    )
    settings = settings_from_args(args)
    assert settings.local_kafka.port == 31000
    assert settings.kafka.bootstrap_servers == "127.0.0.1:31000"
    assert settings.local_kafka.effective_controller_port == 31001


def test_invalid_value_names_the_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XBORDER_LOCAL_KAFKA__PORT", "not-a-port")
    with pytest.raises(ConfigurationError, match="XBORDER_LOCAL_KAFKA__PORT"):
        load_settings()


def test_out_of_range_value_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XBORDER_SINK__BATCH_SIZE", "0")
    with pytest.raises(ConfigurationError, match="XBORDER_SINK__BATCH_SIZE"):
        load_settings()


def test_settings_are_frozen() -> None:
    settings = load_settings()
    with pytest.raises(Exception, match="frozen"):
        settings.kafka.bootstrap_servers = "x:1"  # type: ignore[misc]


def test_to_env_round_trips_through_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    original = load_settings(
        **{"data_dir": tmp_path, "topics.prefix": "p.", "clickhouse.url": "http://h:8123/db"}
    )
    env = to_env(original)
    assert set(env) <= known_env_vars()
    for name in known_env_vars():
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert load_settings() == original


def test_worker_gc_tuning_raises_the_young_generation_threshold() -> None:
    import gc

    from streams.worker import tune_gc

    before = gc.get_threshold()
    try:
        tune_gc(load_settings(**{"worker.gc_gen0_threshold": 12_345}).worker.gc_gen0_threshold)
        assert gc.get_threshold() == (12_345, before[1], before[2])
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
