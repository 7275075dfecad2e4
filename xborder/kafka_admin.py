"""Small Kafka admin helpers on kafka-python: readiness, topic creation, consumer lag."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import (
    ClusterAuthorizationFailedError,
    KafkaError,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
)

from xborder.errors import ServiceUnavailableError
from xborder.kafka_security import kafka_python
from xborder.settings import Settings

logger = logging.getLogger(__name__)


def admin_client(
    bootstrap_servers: str, timeout_ms: int = 10_000, security: dict[str, Any] | None = None
) -> KafkaAdminClient:
    """Connect an admin client, or raise ServiceUnavailableError with what to do
    (``security``: kafka-python options from :mod:`xborder.kafka_security`)."""
    try:
        return KafkaAdminClient(
            bootstrap_servers=bootstrap_servers,
            client_id="xborder-admin",
            request_timeout_ms=timeout_ms,
            **(security or {}),
        )
    except (KafkaError, OSError) as exc:
        raise ServiceUnavailableError(
            f"Kafka at {bootstrap_servers} is not reachable ({type(exc).__name__}); "
            "start it with 'xborder kafka up' or set XBORDER_KAFKA__BOOTSTRAP_SERVERS"
        ) from exc


def broker_accepts_requests(
    bootstrap_servers: str, timeout_ms: int = 2_000, security: dict[str, Any] | None = None
) -> bool:
    """True when a broker answers a metadata request (``security``: kafka-python options)."""
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap_servers,
            client_id="xborder-probe",
            request_timeout_ms=timeout_ms,
            **(security or {}),
        )
    except (KafkaError, OSError, ValueError):
        return False
    try:
        admin.describe_cluster()
        return True
    except (KafkaError, OSError):
        return False
    finally:
        admin.close()


def ensure_topics(
    settings: Settings,
    names: Iterable[str],
    partitions: int | None = None,
    configs: dict[str, str] | None = None,
) -> list[str]:
    """Create the topics that do not exist yet; returns the names created.

    ``partitions`` overrides the configured partition count (one-partition topics);
    ``configs`` are topic configs such as ``{"cleanup.policy": "compact"}``.
    """
    admin = admin_client(settings.kafka.bootstrap_servers, security=kafka_python(settings))
    try:
        existing = set(admin.list_topics())
        missing = [n for n in dict.fromkeys(names) if n not in existing]
        if missing:
            try:
                admin.create_topics(
                    [
                        NewTopic(
                            name,
                            num_partitions=partitions or settings.topics.partitions,
                            replication_factor=settings.topics.replication_factor,
                            topic_configs=dict(configs or {}),
                        )
                        for name in missing
                    ]
                )
            except TopicAlreadyExistsError:
                pass  # a concurrent creator won the race; the topic is there
            except (TopicAuthorizationFailedError, ClusterAuthorizationFailedError) as exc:
                raise ServiceUnavailableError(
                    f"the broker refused to create {', '.join(missing)} "
                    f"({type(exc).__name__}): in secure mode only the operator ('admin') "
                    "creates the project's topics; run 'xborder topics create' as admin"
                ) from exc
            logger.info("created topics %s", ", ".join(missing))
        return missing
    finally:
        admin.close()


def wait_for_partitions(
    settings: Settings, expected: dict[str, int], timeout_s: float = 15.0
) -> None:
    """Block until the broker's metadata shows each topic with its expected partition
    count (a topic just created can be missing or empty there for a moment)."""
    deadline = time.monotonic() + timeout_s
    while True:
        consumer = KafkaConsumer(  # a fresh client: fresh metadata
            bootstrap_servers=settings.kafka.bootstrap_servers,
            client_id="xborder-metadata",
            **kafka_python(settings),
        )
        try:
            seen = {n: len(consumer.partitions_for_topic(n) or ()) for n in expected}
        finally:
            consumer.close(autocommit=False)
        if seen == expected:
            return
        if time.monotonic() > deadline:
            raise ServiceUnavailableError(
                f"topics not complete in the broker's metadata after {timeout_s:.0f} s: "
                f"expected partitions {expected}, seen {seen}"
            )
        time.sleep(0.2)


def missing_topics(settings: Settings, names: Iterable[str]) -> list[str]:
    """Which of ``names`` the cluster does not have."""
    admin = admin_client(settings.kafka.bootstrap_servers, security=kafka_python(settings))
    try:
        existing = set(admin.list_topics())
    finally:
        admin.close()
    return [n for n in names if n not in existing]


def group_lag(
    bootstrap_servers: str,
    group_id: str,
    topics: Iterable[str],
    security: dict[str, Any] | None = None,
) -> int:
    """Messages in ``topics`` not yet committed by consumer group ``group_id``.

    Reads the group's committed offsets without joining the group.
    """
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        client_id="xborder-lag",
        group_id=group_id,
        enable_auto_commit=False,
        **(security or {}),
    )
    try:
        return committed_lag(consumer, end_offsets(consumer, topics))
    finally:
        consumer.close(autocommit=False)


def topic_sizes(
    bootstrap_servers: str, topics: Iterable[str], security: dict[str, Any] | None = None
) -> dict[str, int]:
    """Messages written to each topic so far (sum of its partitions' end offsets)."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap_servers, client_id="xborder-sizes", **(security or {})
    )
    try:
        sizes = dict.fromkeys(topics, 0)
        for tp, end in end_offsets(consumer, sizes).items():
            sizes[tp.topic] += end
        return sizes
    finally:
        consumer.close(autocommit=False)


def committed_lag(consumer: KafkaConsumer, ends: Mapping[TopicPartition, int]) -> int:
    """Messages before ``ends`` that the consumer's group has not committed."""
    return sum(max(0, end - (consumer.committed(tp) or 0)) for tp, end in ends.items())


def end_offsets(consumer: KafkaConsumer, topics: Iterable[str]) -> dict[TopicPartition, int]:
    """End offset of every partition of ``topics`` (topics the cluster lacks have none)."""
    partitions = [
        TopicPartition(topic, p)
        for topic in topics
        for p in sorted(consumer.partitions_for_topic(topic) or ())
    ]
    return dict(consumer.end_offsets(partitions)) if partitions else {}


def wait_for_group(
    bootstrap_servers: str,
    group_id: str,
    topics: Iterable[str],
    timeout_s: float,
    security: dict[str, Any] | None = None,
) -> None:
    """Block until ``group_id`` has committed everything in ``topics``, or raise."""
    topics = list(topics)
    deadline = time.monotonic() + timeout_s
    lag = -1
    while time.monotonic() < deadline:
        lag = group_lag(bootstrap_servers, group_id, topics, security)
        if lag == 0:
            return
        time.sleep(0.5)
    raise ServiceUnavailableError(
        f"consumer group {group_id!r} still has {lag} uncommitted messages in "
        f"{', '.join(topics)} after {timeout_s:.0f} s; is its process running? check its log"
    )
