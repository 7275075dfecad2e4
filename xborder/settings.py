"""The one settings object: typed, frozen, read from ``XBORDER_*`` environment variables.

Groups map to nested models; an environment variable names a field as
``XBORDER_<GROUP>__<FIELD>`` (for example ``XBORDER_KAFKA__BOOTSTRAP_SERVERS``).
CLI flags override the environment (see :func:`xborder.cli.settings_from_args`).
This is the only module that reads ``os.environ``.

Names are case-insensitive, and strict: an ``XBORDER_*`` variable that names no setting
is refused with the closest real name (a typo would otherwise be silently ignored), and
two spellings of one name (``XBORDER_DATA_DIR`` and ``xborder_data_dir``) are refused
rather than one silently winning. The clients' bootstrap address follows the local
broker (``XBORDER_LOCAL_KAFKA__PORT``) unless ``XBORDER_KAFKA__BOOTSTRAP_SERVERS`` is set.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
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
    security_protocol: Literal["PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    """PLAINTEXT, or SASL_SSL: TLS to the broker and a SASL principal (docs/security.md)."""
    sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256"] = "SCRAM-SHA-512"
    """SASL mechanism of the principal."""
    sasl_username: str | None = None
    """This process's principal; empty means 'admin' (the worker and the sink take their
    own, 'worker' and 'sink', when the credentials file holds them)."""
    sasl_password: SecretStr | None = None
    """The principal's password; empty means the one in ``credentials_file``."""
    credentials_file: Path | None = None
    """JSON file (mode 600) of SCRAM passwords by principal that 'xborder kafka certs'
    writes; empty means <data_dir>/kafka/security/credentials.json."""
    ssl_cafile: Path | None = None
    """PEM file of the CA the broker's certificate is checked against; empty means
    <data_dir>/kafka/security/ca.pem."""
    ssl_check_hostname: bool = True
    """Check that the broker's certificate names the host the client connects to."""


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
    """JVM heap for the broker (-Xms and -Xmx; committed and touched at start)."""
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


class SqlHttpSettings(_Group):
    """ClickHouse's HTTP interface, served by the sink in embedded mode (analysts' SQL)."""

    enabled: bool = True
    """Serve it while the sink runs (embedded mode only: a server answers for itself)."""
    host: str = "127.0.0.1"
    """Address it binds to."""
    port: int = Field(default=18123, ge=1, le=65535)
    """Port it listens on (ClickHouse's own HTTP port is 8123)."""
    users: SecretStr = SecretStr("default:")
    """Comma-separated user:password pairs; every user is read-only. An empty password is
    allowed on loopback only."""
    max_concurrent_queries: int = Field(default=4, ge=1)
    """Queries run at once; more wait for a slot."""
    queue_timeout_s: float = Field(default=10.0, ge=0)
    """How long a query waits for a slot before TOO_MANY_SIMULTANEOUS_QUERIES."""
    nice: int = Field(default=19, ge=0, le=19)
    """OS priority (nice) of analysts' query threads, so the sink's writes come first."""

    @field_validator("users", mode="after")
    @classmethod
    def _user_password_pairs(cls, value: SecretStr) -> SecretStr:
        items = [i.strip() for i in value.get_secret_value().split(",") if i.strip()]
        if not items or any(":" not in i or not i.partition(":")[0].strip() for i in items):
            raise ValueError("list user:password pairs, comma-separated (a password may be empty)")
        return value


class ContractSettings(_Group):
    """Rules every event must meet beyond its schema (checked by producer and worker)."""

    max_future_skew_s: float = Field(default=300.0, ge=0)
    """How far in the future an event's timestamps may lie (clock skew allowance)."""
    max_message_bytes: int = Field(default=1_000_000, gt=0)
    """Largest encoded event accepted."""
    max_subjects: int = Field(default=50, ge=1)
    """Most subjects one event may carry: each strong token is a blocking key and a routed
    item, so this bounds what one event can cost the correlator."""
    max_blocking_keys: int = Field(default=32, ge=1)
    """Most distinct subject tokens (kind, token) one event may carry: each is a blocking
    key, a routed item and an index entry in the correlator (the location adds at most 4
    spatial keys on top)."""
    min_occurred_at: datetime = datetime(2000, 1, 1, tzinfo=UTC)
    """Earliest accepted occurred_at (ISO 8601, UTC when no offset is given); no other
    timestamp of an event (reported_at, updated_at, closed_at) may be earlier either."""
    raw_identifiers: Literal["reject", "redact"] = "reject"
    """What the producer library and the worker do with a phone, national ID number, plate
    (or, where names are looked for, a name) in a free-text or identifier-like field:
    refuse the event, or replace each one with a marker such as [redacted:PHONE]. Incident
    ids, Kafka keys and tokens are always refused."""

    @field_validator("min_occurred_at", mode="after")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value if value.tzinfo else value.replace(tzinfo=UTC)


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
    """Same-occurrence score threshold; empty means the default (9.75)."""


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
    case_retention_hours: float = Field(default=720.0, gt=0)
    """How long (wall clock) the case lifecycle keeps a case that no link, verdict, report
    or release reached; then it expires (a last escalation if it was still waiting) and
    its memory is freed. Bounds the worker's memory by the cases active in that time."""


class TopicSettings(_Group):
    """Topic naming; every topic name is built from these."""

    prefix: str = ""
    """Prepended to every topic name (for example 'staging.')."""
    partitions: int = Field(default=4, ge=1)
    """Partitions of the topics the project creates."""
    replication_factor: int = Field(default=1, ge=1)
    """Replication factor of the topics the project creates."""
    quarantine_retention_hours: float = Field(default=168.0, gt=0)
    """How long quarantine.<agency> keeps the messages refused for a raw identifier."""


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
    stage_fetch_min_bytes: int = Field(default=1, ge=1)
    """Bytes the broker waits for before it answers a fetch of the stages' consumer (the
    blocks, links and verdicts topics, and the changelogs while recovering), holding it at
    most ``stage_fetch_max_wait_s``. 1 (the default) answers a fetch as soon as a message
    is there. More than 1 trades fewer fetches while messages arrive for an idle fetch
    every ``stage_fetch_max_wait_s``: measured at 600 events/s with 256 KiB and a 10 ms
    wait, the broker's CPU per event rose, so it is off."""
    stage_fetch_max_wait_s: float = Field(default=0.05, gt=0, le=30)
    """Longest the broker holds a fetch of the stages' consumer that found too few bytes.
    It also bounds how long a stage waits for the next fetch of a partition whose
    messages it has just taken: the consumer keeps one fetch in flight per broker, and
    while that one waits on idle partitions the others cannot be fetched again. Faust's
    1.5 s held links back by up to that long at 5,000 events/s; shorter costs an idle
    worker more (empty) fetches per second."""
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
    case_store_write_buffer_mb: int = Field(default=1, ge=1)
    """RocksDB memtable size of the case stage's two tables (``case-batches``,
    ``case-lifecycle``). They take a few KB per second: a large memtable would fill for
    many minutes (the worker's memory creeping up all that time) before its first flush."""
    case_store_block_cache_mb: int = Field(default=1, ge=1)
    """RocksDB block cache of the case stage's two tables; read once, in order, to rebuild."""
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
    fetch_min_bytes: int = Field(default=1024 * 1024, ge=1)
    """Bytes the broker waits for before it answers a fetch of the sink, holding it at most
    half the flush interval (at most 0.5 s): at a steady rate a few fetches a second, not
    one per produced batch. 1 answers every message at once."""

    @property
    def fetch_max_wait_ms(self) -> int:
        """How long the broker holds a sink fetch short of ``fetch_min_bytes``."""
        return max(1, int(min(self.flush_interval_s * 500, 500)))

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


class TokenizerSettings(_Group):
    """Tokenisation of identifiers: shared-key HMAC, or an oblivious-PRF service (RFC 9497)."""

    mode: Literal["hmac", "oprf"] = "hmac"
    """hmac: every agency holds the shared key ring; oprf: the tokenisation service holds
    the key and agencies send it blinded identifiers only."""
    key_ring: SecretStr | None = None
    """The HMAC key-ring JSON itself, instead of ``XBORDER_KEY_FILE`` (e.g. from a secrets
    manager); masked in 'xborder settings'."""
    accepted_key_ids: str = ""
    """Comma-separated key ids the worker accepts on subjects (ids, never secrets; 'xborder
    keys show-ids' prints them); a subject under another id is dead-lettered as
    unknown-key. Empty accepts any id."""
    url: str | None = None
    """Tokenisation service the agency client calls; empty means http://<host>:<port>."""
    api_token: SecretStr | None = None
    """The agency's API token for the tokenisation service."""
    timeout_s: float = Field(default=10.0, gt=0)
    """Longest the agency client waits for one evaluation request."""
    batch_size: int = Field(default=1000, ge=1, le=10_000)
    """Most blinded elements in one evaluation request (client) or accepted (service)."""
    host: str = "127.0.0.1"
    """Address the tokenisation service binds to."""
    port: int = Field(default=18093, ge=1, le=65535)
    """Port of the tokenisation service."""
    service_key_file: Path | None = None
    """The service's OPRF key ring (key-ring JSON, owner-only); only the service reads it."""
    agencies_file: Path | None = None
    """The service's agency credentials (JSON: agency -> SHA-256 of its API token)."""
    rate_per_s: float = Field(default=1000.0, gt=0)
    """Evaluations per second each agency may sustain (token bucket refill)."""
    burst: int = Field(default=100_000, ge=1)
    """Evaluations an agency may make at once (token bucket size)."""
    audit_file: Path | None = None
    """JSON lines of evaluations per agency per minute; empty means
    <data_dir>/tokenizer/audit.jsonl."""

    @property
    def accepted_ids(self) -> frozenset[str]:
        """``accepted_key_ids`` as a set (empty: any id is accepted)."""
        return frozenset(k.strip() for k in self.accepted_key_ids.split(",") if k.strip())

    @property
    def service_url(self) -> str:
        """Where the agency client reaches the service."""
        return (self.url or f"http://{local_broker_address(self.host, self.port)}").rstrip("/")


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
    key_file: Path | None = None
    """Pseudonymisation key-ring file (JSON, owner-only) that 'xborder pseudonymise' reads."""
    kafka: KafkaSettings = KafkaSettings()
    local_kafka: LocalKafkaSettings = LocalKafkaSettings()
    clickhouse: ClickHouseSettings = ClickHouseSettings()
    sql_http: SqlHttpSettings = SqlHttpSettings()
    contract: ContractSettings = ContractSettings()
    correlation: CorrelationSettings = CorrelationSettings()
    verification: VerificationSettings = VerificationSettings()
    topics: TopicSettings = TopicSettings()
    worker: WorkerSettings = WorkerSettings()
    sink: SinkSettings = SinkSettings()
    tokenizer: TokenizerSettings = TokenizerSettings()

    @field_validator("data_dir", "agencies_config", "schemas_dir", mode="after")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @model_validator(mode="before")
    @classmethod
    def _bootstrap_follows_the_local_broker(cls, data: Any) -> Any:
        """Without an explicit bootstrap address, clients talk to the local broker, on
        whatever port it was given (``XBORDER_LOCAL_KAFKA__PORT`` alone moves both)."""
        if not isinstance(data, dict):
            return data
        kafka, local = data.get("kafka"), data.get("local_kafka")
        if not isinstance(local, dict) or not ({"host", "port"} & local.keys()):
            return data
        if isinstance(kafka, BaseModel) or (
            isinstance(kafka, dict) and "bootstrap_servers" in kafka
        ):
            return data
        defaults = LocalKafkaSettings.model_fields
        address = local_broker_address(
            str(local.get("host", defaults["host"].default)),
            local.get("port", defaults["port"].default),
        )
        return {**data, "kafka": {**(kafka or {}), "bootstrap_servers": address}}

    @model_validator(mode="before")
    @classmethod
    def _kafka_secrets_under_the_data_dir(cls, data: Any) -> Any:
        """In SASL_SSL mode the CA and credentials files default to
        <data_dir>/kafka/security/, resolved once: a child given another data directory
        (a pipeline's worker) keeps them."""
        if not isinstance(data, dict):
            return data
        kafka = data.get("kafka")
        if not isinstance(kafka, dict) or kafka.get("security_protocol") != "SASL_SSL":
            return data
        home = Path(data.get("data_dir") or _default_home()).expanduser()
        secrets = home / "kafka" / "security"
        filled = {
            "credentials_file": secrets / "credentials.json",
            "ssl_cafile": secrets / "ca.pem",
        }
        defaults = {k: v for k, v in filled.items() if not kafka.get(k)}
        return {**data, "kafka": {**kafka, **defaults}} if defaults else data

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
        local = self.local_kafka
        follows = self.kafka.bootstrap_servers == local_broker_address(local.host, local.port)
        for dotted, value in changes.items():
            target = data
            *parents, leaf = dotted.split(".")
            for part in parents:
                target = target[part]
            target[leaf] = value
        if follows and "kafka.bootstrap_servers" not in changes:
            # the clients talked to the local broker: they follow it to its new address
            moved = data["local_kafka"]
            data["kafka"]["bootstrap_servers"] = local_broker_address(
                str(moved["host"]), moved["port"]
            )
        return _validated(lambda: Settings.model_validate(data))


def local_broker_address(host: str, port: Any) -> str:
    """Where clients reach the local broker (loopback when it listens on every address)."""
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"{host}:{port}"


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
    check_environment(os.environ)
    # a data directory from the command line is known before the defaults that follow it
    # (the Kafka CA and credentials files) are resolved
    first = {"data_dir": overrides["data_dir"]} if "data_dir" in overrides else {}
    base = _validated(lambda: Settings(**first))
    return base.with_overrides(**overrides) if overrides else base


def _groups() -> dict[str, list[str]]:
    """Each settings group (upper case) and its fields (upper case)."""
    groups: dict[str, list[str]] = {}
    for name, field in Settings.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            groups[name.upper()] = [sub.upper() for sub in annotation.model_fields]
    return groups


def _closest(word: str, candidates: list[str]) -> str | None:
    found = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return found[0] if found else None


def _unknown(name: str, known: set[str]) -> str:
    """Why ``name`` (upper case, with the prefix) is no setting, with the closest one."""
    groups = _groups()
    rest = name[len(ENV_PREFIX) :]
    group, sep, field = rest.partition(ENV_NESTED_DELIMITER)
    guess: str | None = None
    if sep:
        fixed = group if group in groups else _closest(group, list(groups))
        if fixed is not None:
            sub = field if field in groups[fixed] else _closest(field, groups[fixed])
            guess = f"{ENV_PREFIX}{fixed}{ENV_NESTED_DELIMITER}{sub}" if sub else None
            if guess is None:
                where = f"group {fixed}" if fixed == group else f"no group {group}; {fixed}"
                fields = ", ".join(groups[fixed])
                return (
                    f"{name} is not a setting: {where} has the fields {fields} "
                    f"(set as {ENV_PREFIX}{fixed}{ENV_NESTED_DELIMITER}<FIELD>)"
                )
    elif rest in groups:
        return (
            f"{name} is a group, not a setting: set its fields one by one, as "
            f"{ENV_PREFIX}{rest}{ENV_NESTED_DELIMITER}<FIELD>"
        )
    else:
        # a single underscore where the group ends is the usual slip
        for candidate in groups:
            if rest.startswith(candidate + "_") and rest[len(candidate) + 1 :] in groups[candidate]:
                guess = f"{ENV_PREFIX}{candidate}{ENV_NESTED_DELIMITER}{rest[len(candidate) + 1 :]}"
                break
    if guess is None or guess not in known:
        guess = _closest(name, sorted(known))
    hint = (
        f"did you mean {guess}?"
        if guess
        else "remove it (README.md's settings table lists every setting)"
    )
    return f"{name} is not a setting; {hint}"


def check_environment(environ: Mapping[str, str]) -> None:
    """Refuse ``XBORDER_*`` variables that name no setting, and two spellings of one name.

    Names are case-insensitive (as the settings object reads them), so ``xborder_data_dir``
    sets ``data_dir``; with both it and ``XBORDER_DATA_DIR`` set, neither silently wins.
    """
    known = known_env_vars()
    spellings: dict[str, list[str]] = {}
    for name in environ:
        upper = name.upper()
        if upper.startswith(ENV_PREFIX):
            spellings.setdefault(upper, []).append(name)
    problems = []
    for upper, names in sorted(spellings.items()):
        if upper not in known:
            problems.append(_unknown(upper, known))
        elif len(names) > 1:
            problems.append(
                f"{' and '.join(sorted(names))} are both set; names are case-insensitive, "
                "so they name the same setting: keep one"
            )
    if problems:
        raise ConfigurationError("; ".join(problems))


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


def secret_env_vars(settings: Settings) -> set[str]:
    """The variables of :func:`to_env` that hold secrets (masked when printed)."""
    return {
        f"{ENV_PREFIX}{name}{ENV_NESTED_DELIMITER}{sub}".upper()
        for name in type(settings).model_fields
        if isinstance(group := getattr(settings, name), BaseModel)
        for sub in type(group).model_fields
        if isinstance(getattr(group, sub), SecretStr)
    }


def mask_url(url: str) -> str:
    """``url`` with the password of its user part replaced by ``**********`` (a
    ClickHouse URL carries it: http://user:password@host:port/database)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    authority, slash, path = rest.partition("/")
    userinfo, at, host = authority.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return f"{scheme}{sep}{user}:**********@{host}{slash}{path}"


def printable_env(settings: Settings) -> dict[str, str]:
    """:func:`to_env` for printing: secrets masked, and the password of the ClickHouse
    URL."""
    hidden = secret_env_vars(settings)
    url_var = f"{ENV_PREFIX}clickhouse{ENV_NESTED_DELIMITER}url".upper()
    return {
        key: "**********" if key in hidden else mask_url(value) if key == url_var else value
        for key, value in to_env(settings).items()
    }


def to_env(settings: Settings) -> dict[str, str]:
    """The environment variables that reproduce ``settings`` in a child process."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump(mode="json").items():
        if isinstance(value, dict):
            for sub, sub_value in value.items():
                secret = getattr(getattr(settings, name), sub)
                if isinstance(secret, SecretStr):  # the dump masks it; a child needs it
                    sub_value = secret.get_secret_value()
                if sub_value is not None:
                    env[f"{ENV_PREFIX}{name}{ENV_NESTED_DELIMITER}{sub}".upper()] = str(sub_value)
        elif value is not None:
            env[f"{ENV_PREFIX}{name}".upper()] = str(value)
    return env
