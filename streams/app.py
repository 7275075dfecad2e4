"""Builds the Faust application from the project's settings (never hard-coded addresses)."""

from __future__ import annotations

from typing import Any

import aiokafka
import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

from xborder import kafka_security
from xborder.settings import Settings


def faust_broker_url(bootstrap_servers: str) -> str:
    """Faust's broker URL form of a comma-separated bootstrap list."""
    hosts = [h.strip() for h in bootstrap_servers.split(",") if h.strip()]
    return ";".join(f"kafka://{h}" for h in hosts)


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread, with the fetch sizes of the app's ``fetch_tuning``.

    Faust builds its aiokafka consumer with ``fetch_min_bytes`` 1 (the broker answers a
    fetch as soon as one message is there) and ``fetch_max_wait_ms`` 1500, and has no
    setting for either. aiokafka keeps one fetch in flight per broker: while a fetch of
    idle partitions is held, a partition whose messages the stage just took is not
    fetched again, so the hold must be short (``worker.stage_fetch_max_wait_s``)."""

    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        tune_fetch(consumer, **getattr(self.app, "fetch_tuning", {}))
        return consumer


def tune_fetch(
    consumer: aiokafka.AIOKafkaConsumer, fetch_min_bytes: int = 1, fetch_max_wait_ms: int = 1500
) -> None:
    """Set the fetch sizes of a consumer not yet started (aiokafka passes them to its
    fetcher in ``start``); fails loudly if aiokafka stops keeping them there."""
    for name, value in (
        ("_fetch_min_bytes", fetch_min_bytes),
        ("_fetch_max_wait_ms", fetch_max_wait_ms),
    ):
        if not hasattr(consumer, name) or getattr(consumer, "_fetcher", None) is not None:
            raise RuntimeError(
                f"cannot set {name} on this aiokafka version ({aiokafka.__version__})"
            )
        setattr(consumer, name, value)


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(faust_aiokafka.Transport):
    Consumer = _Consumer


class XborderApp(faust.App):
    """A Faust app whose consumer takes the fetch sizes in ``fetch_tuning``
    (``fetch_min_bytes``, ``fetch_max_wait_ms``; empty keeps Faust's)."""

    fetch_tuning: dict[str, int] = {}

    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)


def build_app(settings: Settings) -> faust.App:
    """A Faust app whose broker, store, web listener and topic defaults come from settings."""
    settings.worker_data_dir.mkdir(parents=True, exist_ok=True)
    app = XborderApp(
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
    app.fetch_tuning = {
        "fetch_min_bytes": settings.worker.stage_fetch_min_bytes,
        "fetch_max_wait_ms": max(1, round(settings.worker.stage_fetch_max_wait_s * 1000)),
    }
    return app
