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
        settings.kafka.bootstrap_servers = "x:1"


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


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("XBORDER_KAFKA_BOOTSTRAP_SERVERS", "did you mean XBORDER_KAFKA__BOOTSTRAP_SERVERS?"),
        ("XBORDER_LOCAL_KAFKA_PORT", "did you mean XBORDER_LOCAL_KAFKA__PORT?"),
        ("XBORDER_KAFKAA__BOOTSTRAP_SERVERS", "did you mean XBORDER_KAFKA__BOOTSTRAP_SERVERS?"),
        ("XBORDER_CONTRACT__MAX_SUBJECT", "did you mean XBORDER_CONTRACT__MAX_SUBJECTS?"),
        ("XBORDER_DATADIR", "did you mean XBORDER_DATA_DIR?"),
        ("xborder_workr__batch_size", "did you mean XBORDER_WORKER__BATCH_SIZE?"),
        ("XBORDER_KAFKAA__X", "no group KAFKAA; KAFKA has the fields BOOTSTRAP_SERVERS"),
        ("XBORDER_SINK__NOPE", "group SINK has the fields GROUP_ID"),
        ("XBORDER_KAFKA", "is a group, not a setting"),
        ("XBORDER_ZZZ", "remove it"),
    ],
)
def test_unknown_names_are_refused_with_the_closest_setting(
    monkeypatch: pytest.MonkeyPatch, name: str, suggestion: str
) -> None:
    monkeypatch.setenv(name, "1")
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith(f"{name.upper()} is not a setting") or "is a group" in message
    assert suggestion in message


def test_names_are_case_insensitive_and_two_spellings_are_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("xborder_topics__prefix", "lower.")
    assert load_settings().topics.prefix == "lower."
    monkeypatch.setenv("XBORDER_TOPICS__PREFIX", "upper.")
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert str(caught.value) == (
        "XBORDER_TOPICS__PREFIX and xborder_topics__prefix are both set; names are "
        "case-insensitive, so they name the same setting: keep one"
    )


def test_a_bad_name_is_one_line_and_status_2_from_the_cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from xborder.cli import main

    monkeypatch.setenv("XBORDER_KAFKA_BOOTSTRAP_SERVERS", "h:1")
    assert main(["settings"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "xborder settings: error: XBORDER_KAFKA_BOOTSTRAP_SERVERS is not a setting; "
        "did you mean XBORDER_KAFKA__BOOTSTRAP_SERVERS?\n"
    )


def test_the_bootstrap_address_follows_the_local_broker_unless_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in known_env_vars():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XBORDER_LOCAL_KAFKA__PORT", "29092")
    assert load_settings().kafka.bootstrap_servers == "127.0.0.1:29092"
    # a later port change (a flag, a test fixture) moves the clients along
    moved = load_settings(**{"local_kafka.port": 29500})
    assert moved.kafka.bootstrap_servers == "127.0.0.1:29500"
    assert moved.with_overrides(**{"local_kafka.port": 29600}).kafka.bootstrap_servers == (
        "127.0.0.1:29600"
    )
    monkeypatch.setenv("XBORDER_KAFKA__BOOTSTRAP_SERVERS", "broker-a:9092")
    explicit = load_settings()
    assert explicit.kafka.bootstrap_servers == "broker-a:9092"
    assert explicit.with_overrides(**{"local_kafka.port": 29700}).kafka.bootstrap_servers == (
        "broker-a:9092"
    )
    both = load_settings(**{"local_kafka.port": 1234, "kafka.bootstrap_servers": "h:2"})
    assert both.kafka.bootstrap_servers == "h:2"


def test_the_earliest_occurrence_is_read_as_utc(monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import UTC, datetime

    assert load_settings().contract.min_occurred_at == datetime(2000, 1, 1, tzinfo=UTC)
    monkeypatch.setenv("XBORDER_CONTRACT__MIN_OCCURRED_AT", "1990-05-01")
    assert load_settings().contract.min_occurred_at == datetime(1990, 5, 1, tzinfo=UTC)
    monkeypatch.setenv("XBORDER_CONTRACT__MIN_OCCURRED_AT", "soon")
    with pytest.raises(ConfigurationError, match="XBORDER_CONTRACT__MIN_OCCURRED_AT"):
        load_settings()
