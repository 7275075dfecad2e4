"""The one settings object: typed, frozen, read from ``XBORDER_*`` environment variables.

Groups map to nested models; an environment variable names a field as
``XBORDER_<GROUP>__<FIELD>`` (for example ``XBORDER_KAFKA__BOOTSTRAP_SERVERS``).
CLI flags override the environment (see :func:`xborder.cli.settings_from_args`).
This is the only module that reads ``os.environ``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from xborder.errors import ConfigurationError

ENV_PREFIX = "XBORDER_"
ENV_NESTED_DELIMITER = "__"
REPO_ROOT = Path(__file__).resolve().parent.parent


def _default_home() -> Path:
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "share") / "xborder"


def _default_cache() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "xborder"


class _Group(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaSettings(_Group):
    """How every client reaches Kafka."""

    bootstrap_servers: str = "127.0.0.1:19092"
    """Comma-separated host:port list of brokers."""
    client_id: str = "xborder"
    """Client id prefix reported to the broker."""
    request_timeout_ms: int = Field(default=30_000, gt=0)
    """Upper bound for one client request to the broker."""
    schema_registry_url: str | None = None
    """Confluent-API schema registry; when set, messages use the Confluent framing."""


class LocalKafkaSettings(_Group):
    """The single-node Apache Kafka that ``xborder kafka up`` runs without Docker."""

    version: str = "4.4.0"
    """Apache Kafka release fetched from Maven Central (org.apache.kafka:kafka_2.13)."""
    host: str = "127.0.0.1"
    """Address the broker and controller listeners bind to."""
    port: int = Field(default=19092, ge=1, le=65535)
    """Broker (client) listener port."""
    controller_port: int | None = Field(default=None, ge=1, le=65535)
    """KRaft controller listener port; empty means broker port + 1."""
    cache_dir: Path = Field(default_factory=lambda: _default_cache() / "kafka")
    """Where downloaded Kafka jars are kept, shared by all data directories."""
    heap: str = "1g"
    """JVM maximum heap for the broker (-Xmx)."""
    start_timeout_s: float = Field(default=90.0, gt=0)
    """How long ``up`` waits for the broker to accept requests."""
    partitions: int = Field(default=4, ge=1)
    """Default partition count for topics the project creates."""

    @property
    def effective_controller_port(self) -> int:
        return self.controller_port or self.port + 1


class ClickHouseSettings(_Group):
    """Where analytic tables live: embedded chDB by default, a server when ``url`` is set."""

    url: str | None = None
    """Server URL http(s)://user:password@host:port/database; empty means embedded chDB."""
    database: str = "xborder"
    """Database for the project's tables."""
    embedded_dir: Path | None = None
    """chDB data directory; empty means <data_dir>/clickhouse."""


class ContractSettings(_Group):
    """Rules every event must meet beyond its schema (checked by producer and worker)."""

    max_future_skew_s: float = Field(default=300.0, ge=0)
    """How far in the future an event's timestamps may lie (clock skew allowance)."""
    max_message_bytes: int = Field(default=1_000_000, gt=0)
    """Largest encoded event accepted."""
    max_subjects: int = Field(default=50, ge=1)
    """Most subjects one event may carry: each strong token is a blocking key and a routed
    item, so this bounds what one event can cost the correlator."""


class CorrelationSettings(_Group):
    """The cross-border correlator."""

    enabled: bool = True
    """Run the correlation stages in the worker."""
    window_hours: float = Field(default=72.0, gt=0)
    """Incidents further apart in event time than this are never compared."""
    allowed_lateness_hours: float = Field(default=6.0, ge=0)
    """How late (in event time) an event may arrive and still be correlated."""
    threshold: float | None = None
    """Link score threshold; empty means the scoring default."""
    same_occurrence: bool = True
    """Match two agencies' reports of one occurrence (double reports) without a shared
    token; off, only identity links are made and space-time items are not routed."""
    same_occurrence_radius_km: float = Field(default=0.4, gt=0.3, le=3.0)
    """Reports further apart are never one occurrence (more than the 300 m of full
    distance weight, at most the 3 km blocking radius)."""
    same_occurrence_window_min: float = Field(default=30.0, gt=15)
    """Reports whose occurrence times differ more are never one occurrence (more than the
    15 min of full time weight)."""
    same_occurrence_threshold: float | None = None
    """Same-occurrence score threshold; empty means the default (9.5)."""


class VerificationSettings(_Group):
    """Joint verification: the case lifecycle's timers."""

    timeout_hours: float = Field(default=24.0, gt=0)
    """How long a case may wait for every involved agency's verdict before the first
    VERIFICATION_OVERDUE escalation."""
    escalation_interval_hours: float = Field(default=12.0, gt=0)
    """Time between repeated escalations of a case still waiting."""
    linger_s: float = Field(default=0.02, gt=0)
    """Longest the case stage and the forwarding of verdicts wait to fill a batch (instead
    of ``XBORDER_WORKER__STAGE_LINGER_S``): verification traffic is small, and a verdict
    crosses both on its way to the agreed conclusion."""
    tick_s: float = Field(default=10.0, gt=0)
    """How often the worker that owns the case stage writes the wall clock into its log;
    an escalation is raised at most this long after it is due."""


class TopicSettings(_Group):
    """Topic naming; every topic name is built from these."""

    prefix: str = ""
    """Prepended to every topic name (for example 'staging.')."""
    partitions: int = Field(default=4, ge=1)
    """Partitions of the topics the project creates."""
    replication_factor: int = Field(default=1, ge=1)
    """Replication factor of the topics the project creates."""


class WorkerSettings(_Group):
    """The Faust worker."""

    app_id: str = "xborder-correlator"
    """Faust application id (also its consumer group)."""
    web_host: str = "127.0.0.1"
    """Address the worker's web server binds to."""
    web_port: int = Field(default=16066, ge=1, le=65535)
    """Port of the worker's web server."""
    batch_size: int = Field(default=1000, ge=1)
    """Most events in one ingest batch."""
    session_timeout_s: float = Field(default=15.0, gt=0)
    """How long a silent worker keeps its partitions before the group reassigns them."""
    ingest_linger_s: float = Field(default=0.1, gt=0)
    """Longest an ingest batch collects after its first event before it is processed: a
    batch ends when it holds ``batch_size`` events or has lingered this long, so at any
    arrival rate the Kafka costs are paid per batch and an event waits at most this long."""
    stage_batch_size: int = Field(default=200, ge=1)
    """Most messages the correlation and case stages take from their topic per batch."""
    stage_linger_s: float = Field(default=0.1, gt=0)
    """Longest the correlation and case stages wait to fill a batch before processing
    what they have. Publish to link is bounded by ``ingest_linger_s`` plus this plus the
    processing; to the case event, by this once more."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """Worker log level."""
    gc_gen0_threshold: int = Field(default=50_000, ge=0)
    """Allocations between young-generation garbage collections (CPython's default is
    700). The worker allocates many short-lived containers per batch while its window
    index holds millions of objects; a higher threshold makes collections rarer. 0 keeps
    the interpreter's default."""
    store_write_buffer_mb: int = Field(default=8, ge=1)
    """RocksDB memtable size of each table partition (Faust's default is 64 MB, times 3
    buffers, times every partition a worker holds)."""
    store_block_cache_mb: int = Field(default=16, ge=1)
    """RocksDB block cache of each table partition (Faust's default is 2 GiB); the
    correlator reads its tables only to rebuild after a restart or rebalance."""
    standby_replicas: int = Field(default=0, ge=0)
    """Standby copies of each table partition kept by other workers. A standby makes a
    failover faster, but every worker then reads and stores the changelogs of the
    partitions it does not own, all the time (Faust's default is 1)."""
    compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "snappy"
    """Codec of the record batches the worker produces. aiokafka compresses lz4 at the
    high-compression level 9 with no way to lower it: 9x the CPU of snappy for 15% fewer
    bytes on the routed JSON, the largest single cost of a worker using it."""
    ingest: bool = True
    """Run the ingest task. Off, the worker only correlates already-routed blocks: the
    stages then scale apart, and ``xborder bench stages`` times correlation alone."""
    stall_timeout_s: float = Field(default=120.0, ge=0)
    """Liveness watchdog: how long the correlation agents' committed offsets may stand
    still while their partitions have lag (outside rebalances and table recovery) before
    the worker exits with status 70 for its supervisor to restart it; 0 turns it off."""

    @property
    def heartbeat_interval_s(self) -> float:
        """Consumer heartbeat: a third of the session timeout, at most 3 s."""
        return min(3.0, self.session_timeout_s / 3)

    @property
    def compression_type(self) -> str | None:
        """``compression`` as the Kafka clients take it (None for no compression)."""
        return None if self.compression == "none" else self.compression

    @property
    def ingest_group_id(self) -> str:
        """Consumer group of the ingest task (the Faust agents' group is ``app_id``)."""
        return f"{self.app_id}-ingest"


class SinkSettings(_Group):
    """The ClickHouse sink."""

    group_id: str = "xborder-clickhouse-sink"
    """Consumer group of the sink."""
    batch_size: int = Field(default=20_000, ge=1)
    """Messages buffered (over all partitions) before a flush; also the most one fetch
    returns. Each flush makes a part per table (and month) that ClickHouse merges later:
    from a backlog, 20,000 cost a fifth less CPU per event than 5,000."""
    flush_interval_s: float = Field(default=1.0, gt=0)
    """Longest time a row waits in the buffer."""
    retry_backoff_s: float = Field(default=1.0, gt=0)
    """First backoff after a transient ClickHouse error or a failed commit (doubles,
    capped at 30 s)."""
    session_timeout_s: float = Field(default=15.0, gt=0)
    """How long a silent sink keeps its partitions before the group reassigns them."""
    group_instance_id: str | None = None
    """Static group membership (KIP-345): a sink restarted with the same id within the
    session timeout gets its partitions back at once, without a rebalance. Unique per sink
    instance; a stopped static member keeps its partitions for the session timeout.
    Empty: dynamic membership (a stop hands the partitions over at once)."""
    stall_timeout_s: float = Field(default=120.0, ge=0)
    """Liveness watchdog: how long the sink's committed offsets may stand still while its
    partitions have lag and it is not knowingly waiting (ClickHouse or the broker away)
    before it exits with status 70 for its supervisor to restart it; 0 turns it off."""

    @property
    def heartbeat_interval_s(self) -> float:
        """Consumer heartbeat: a third of the session timeout, at most 3 s."""
        return min(3.0, self.session_timeout_s / 3)


class Settings(BaseSettings):
    """Everything configurable in xborder."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
        frozen=True,
        extra="forbid",
    )

    data_dir: Path = Field(default_factory=_default_home)
    """Root of local state: Kafka logs, worker stores, embedded ClickHouse."""
    agencies_config: Path = REPO_ROOT / "deploy" / "agencies.example.json"
    """JSON file naming the agencies and their jurisdictions."""
    schemas_dir: Path = REPO_ROOT / "schemas"
    """Directory holding the .avsc files."""
    kafka: KafkaSettings = KafkaSettings()
    local_kafka: LocalKafkaSettings = LocalKafkaSettings()
    clickhouse: ClickHouseSettings = ClickHouseSettings()
    contract: ContractSettings = ContractSettings()
    correlation: CorrelationSettings = CorrelationSettings()
    verification: VerificationSettings = VerificationSettings()
    topics: TopicSettings = TopicSettings()
    worker: WorkerSettings = WorkerSettings()
    sink: SinkSettings = SinkSettings()

    @field_validator("data_dir", "agencies_config", "schemas_dir", mode="after")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @property
    def kafka_data_dir(self) -> Path:
        return self.data_dir / "kafka"

    @property
    def worker_data_dir(self) -> Path:
        return self.data_dir / "worker"

    @property
    def clickhouse_dir(self) -> Path:
        return self.clickhouse.embedded_dir or self.data_dir / "clickhouse"

    def with_overrides(self, **changes: Any) -> Settings:
        """Return a copy with dotted-path overrides, e.g. ``{"kafka.bootstrap_servers": "h:1"}``."""
        data = self.model_dump()
        for dotted, value in changes.items():
            target = data
            *parents, leaf = dotted.split(".")
            for part in parents:
                target = target[part]
            target[leaf] = value
        return _validated(lambda: Settings.model_validate(data))


def _validated(build: Any) -> Settings:
    try:
        settings: Settings = build()
    except ValidationError as exc:
        problems = "; ".join(
            f"{ENV_PREFIX}{ENV_NESTED_DELIMITER.join(str(p).upper() for p in err['loc'])}: "
            f"{err['msg']}"
            for err in exc.errors()
        )
        raise ConfigurationError(f"invalid settings: {problems}") from exc
    return settings


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment, then apply dotted-path ``overrides`` (CLI flags)."""
    base = _validated(Settings)
    return base.with_overrides(**overrides) if overrides else base


def known_env_vars() -> set[str]:
    """Every environment variable name the settings object reads."""
    names: set[str] = set()
    for name, field in Settings.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            for sub in annotation.model_fields:
                names.add(f"{ENV_PREFIX}{name}{ENV_NESTED_DELIMITER}{sub}".upper())
        else:
            names.add(f"{ENV_PREFIX}{name}".upper())
    return names


def to_env(settings: Settings) -> dict[str, str]:
    """The environment variables that reproduce ``settings`` in a child process."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump(mode="json").items():
        if isinstance(value, dict):
            for sub, sub_value in value.items():
                if sub_value is not None:
                    env[f"{ENV_PREFIX}{name}{ENV_NESTED_DELIMITER}{sub}".upper()] = str(sub_value)
        elif value is not None:
            env[f"{ENV_PREFIX}{name}".upper()] = str(value)
    return env
