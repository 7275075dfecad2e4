"""``xborder wait``: return when everything published so far has been processed and sunk.

The stages are waited for in the order data flows through them, each until its consumer
group has committed every message its input topics held when the wait for it began:

1. ingest (``<app_id>-ingest``) on the agencies' incident topics;
2. the correlation stage (the Faust group ``<app_id>``) on ``correlation.blocks``, then
   on the agencies' verdict topics (forwarded into the case stage), then the case stage
   on ``correlation.links``: each stage writes its outputs before it commits its input,
   so what the previous stage produced is in the next one's input by then;
3. the sink (``<sink group>``) on every topic it stores: it commits after its insert, so
   the rows are in ClickHouse.

The verification clock writes a tick on ``correlation.links`` every
``XBORDER_VERIFICATION__TICK_S``; a tick written after the wait began is not waited for.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from kafka import KafkaConsumer
from kafka.errors import KafkaError

from xborder import kafka_security
from xborder.agencies import load_agencies
from xborder.errors import ServiceUnavailableError, XborderError
from xborder.kafka_admin import committed_lag, end_offsets
from xborder.settings import Settings
from xborder.topics import Topics

_POLL_S = 0.25


class NotProcessedError(XborderError):
    """A stage did not catch up within the timeout."""


@dataclass(frozen=True)
class Stage:
    """One consumer group and the topics it must have committed."""

    name: str
    group: str
    topics: tuple[str, ...]
    runs: str
    """The process that runs it, for the error message."""


def stages(settings: Settings, topics: Topics, sink: bool = True) -> list[Stage]:
    """The stages in the order data flows through them."""
    worker = settings.worker.app_id
    found = [
        Stage("ingest", settings.worker.ingest_group_id, tuple(topics.all_incidents), "worker"),
        Stage("correlation", worker, (topics.blocks,), "worker"),
        Stage("verification inputs", worker, tuple(topics.all_verdicts), "worker"),
        Stage("cases", worker, (topics.links,), "worker"),
    ]
    if sink:
        found.append(Stage("sink", settings.sink.group_id, tuple(topics.sunk()), "sink"))
    return found


def _consumer(settings: Settings, group: str) -> KafkaConsumer:
    try:
        return KafkaConsumer(
            bootstrap_servers=settings.kafka.bootstrap_servers,
            **kafka_security.kafka_python(settings),
            client_id="xborder-wait",
            group_id=group,
            enable_auto_commit=False,
        )
    except KafkaError as exc:
        raise ServiceUnavailableError(
            f"Kafka at {settings.kafka.bootstrap_servers} is not reachable ({type(exc).__name__});"
            " start it with 'xborder kafka up' or set XBORDER_KAFKA__BOOTSTRAP_SERVERS"
        ) from exc


def wait_until_processed(
    settings: Settings,
    timeout_s: float = 120.0,
    sink: bool = True,
    progress: Callable[[Stage, int], None] | None = None,
) -> None:
    """Block until every stage has committed what its input held when its turn came;
    raise NotProcessedError naming the stage still behind after ``timeout_s``."""
    topics = Topics.from_settings(settings, load_agencies(settings.agencies_config))
    deadline = time.monotonic() + timeout_s
    for stage in stages(settings, topics, sink):
        consumer = _consumer(settings, stage.group)
        try:
            targets = end_offsets(consumer, stage.topics)
            while True:
                lag = committed_lag(consumer, targets)
                if progress is not None:
                    progress(stage, lag)
                if lag == 0:
                    break
                if time.monotonic() > deadline:
                    raise NotProcessedError(
                        f"not processed within {timeout_s:g} s: {stage.name} (consumer group "
                        f"{stage.group}) still has {lag:,} uncommitted messages in "
                        f"{', '.join(stage.topics)}; is the {stage.runs} running? see "
                        "'xborder status', or wait longer with --timeout"
                    )
                time.sleep(_POLL_S)
        except KafkaError as exc:
            raise ServiceUnavailableError(
                f"Kafka at {settings.kafka.bootstrap_servers} failed during the wait "
                f"({type(exc).__name__}: {exc}); check the broker with 'xborder status'"
            ) from exc
        finally:
            consumer.close(autocommit=False)
