"""Builds the Faust application from the project's settings (never hard-coded addresses)."""

from __future__ import annotations

import faust

from xborder import kafka_security
from xborder.settings import Settings


def faust_broker_url(bootstrap_servers: str) -> str:
    """Faust's broker URL form of a comma-separated bootstrap list."""
    hosts = [h.strip() for h in bootstrap_servers.split(",") if h.strip()]
    return ";".join(f"kafka://{h}" for h in hosts)


def build_app(settings: Settings) -> faust.App:
    """A Faust app whose broker, store, web listener and topic defaults come from settings."""
    settings.worker_data_dir.mkdir(parents=True, exist_ok=True)
    return faust.App(
        settings.worker.app_id,
        broker=faust_broker_url(settings.kafka.bootstrap_servers),
        store="rocksdb://",
        datadir=str(settings.worker_data_dir),
        # Faust's worker binds a web server even with the web disabled: keep it on loopback.
        web_enabled=False,
        web_bind=settings.worker.web_host,
        web_host=settings.worker.web_host,
        web_port=settings.worker.web_port,
        topic_partitions=settings.topics.partitions,
        topic_replication_factor=settings.topics.replication_factor,
        producer_acks=-1,
        producer_linger_ms=5,
        producer_compression_type=settings.worker.compression_type,
        table_standby_replicas=settings.worker.standby_replicas,
        consumer_auto_offset_reset="earliest",
        stream_wait_empty=False,
        broker_commit_interval=1.0,
        broker_session_timeout=settings.worker.session_timeout_s,
        broker_heartbeat_interval=settings.worker.heartbeat_interval_s,
        **kafka_security.faust_credentials(settings),
    )
