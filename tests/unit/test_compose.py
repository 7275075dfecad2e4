"""docker-compose.yml cannot run here; check it speaks only the settings object's language."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from xborder.settings import ENV_PREFIX, known_env_vars

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"


def _environments(compose: dict[str, Any]) -> dict[str, dict[str, str]]:
    found = {}
    for name, service in compose["services"].items():
        env = service.get("environment") or {}
        if isinstance(env, list):
            env = dict(item.split("=", 1) for item in env)
        found[name] = {str(k): str(v) for k, v in env.items()}
    return found


def test_every_xborder_variable_in_compose_is_a_known_setting() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    known = known_env_vars()
    used = {
        (service, key)
        for service, env in _environments(compose).items()
        for key in env
        if key.startswith(ENV_PREFIX)
    }
    assert used, "compose passes no XBORDER_* settings at all"
    unknown = sorted(f"{service}: {key}" for service, key in used if key not in known)
    assert unknown == []


def test_compose_runs_kafka_clickhouse_worker_and_sink() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["clickhouse"]["image"].startswith("clickhouse/clickhouse-server")
    assert services["worker"]["command"] == ["xborder", "worker"]
    assert services["sink"]["command"] == ["xborder", "sink"]
    assert "XBORDER_CLICKHOUSE__URL" in services["sink"]["environment"]
