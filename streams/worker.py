"""Runs the Faust worker with every flow registered, configured from settings.

A liveness watchdog (:mod:`xborder.liveness`) watches the correlation agents' group: when
partitions this worker owns have lag while the group's committed offsets on them stand
still for ``XBORDER_WORKER__STALL_TIMEOUT_S`` (outside a rebalance or a table recovery),
the worker exits with status 70 and its supervisor (``xborder.pipeline.Pipeline`` with
``supervise``, systemd, Kubernetes) restarts it. That is the faust-streaming hang of
upstream issues #175, #523 and #532, where a consumer stops fetching without an error.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import time

import faust
import mode.loop

from streams.app import build_app
from streams.correlation.engine import CorrelatorConfig
from streams.correlation.lifecycle import LifecycleConfig
from streams.correlation.occurrence import OccurrenceConfig
from streams.correlation.patterns import PatternConfig
from streams.correlation.scoring import ScoringConfig
from streams.flows import correlate, ingest
from streams.flows.replay import kafka_reader
from xborder import kafka_security
from xborder.agencies import AgenciesConfig, load_agencies
from xborder.geo import jurisdictions_for
from xborder.kafka_admin import ensure_topics, wait_for_partitions
from xborder.liveness import Ownership, Watchdog
from xborder.memory import release_free_memory
from xborder.settings import Settings
from xborder.topics import Topics, ensure_project_topics
from xborder.validation import EventRules
from xborder.wire import codec_for

logger = logging.getLogger(__name__)


def create_worker_app(settings: Settings) -> faust.App:
    """The Faust app with all flows attached (topics must exist, see ``xborder topics``)."""
    agencies = load_agencies(settings.agencies_config)
    names = Topics.from_settings(settings, agencies)
    app = build_app(settings)
    codec = codec_for(settings)
    rules = EventRules.from_settings(settings.contract, agencies.region)
    router = None
    if settings.correlation.enabled:
        config = correlator_config(settings, agencies)
        router = correlate.Router(
            jurisdictions_for(agencies), config, partitions=settings.topics.partitions
        )
        correlate.register(
            app,
            names,
            codec,
            config,
            partitions=settings.topics.partitions,
            store_options=correlate.store_options(
                settings.worker.store_write_buffer_mb, settings.worker.store_block_cache_mb
            ),
            case_store_options=correlate.store_options(
                settings.worker.case_store_write_buffer_mb,
                settings.worker.case_store_block_cache_mb,
            ),
            stage_batch_size=settings.worker.stage_batch_size,
            stage_linger_s=settings.worker.stage_linger_s,
            case_linger_s=settings.verification.linger_s,
            lifecycle=lifecycle_config(settings),
            tick_s=settings.verification.tick_s,
            read_blocks=kafka_reader(settings, names.blocks),
        )
        watch_liveness(app, settings, names)
    if not settings.worker.ingest:
        return app
    ingest.register(app, settings, names, codec, rules, router=router)
    return app


def watch_liveness(app: faust.App, settings: Settings, names: Topics) -> Watchdog | None:
    """Start the agents' liveness watchdog with the worker; None when it is turned off.

    A timer copies the agents' assignment (and whether a rebalance or a recovery is under
    way) from the event loop; the watchdog's thread reads that copy, so a loop that no
    longer runs leaves the last assignment in place and still counts as stalled."""
    stall_s = settings.worker.stall_timeout_s
    if not stall_s:
        return None
    watched = {names.blocks, names.links, *names.all_verdicts}
    state = {"owned": Ownership(frozenset())}
    watchdog = Watchdog(
        settings.kafka.bootstrap_servers,
        settings.worker.app_id,
        "worker",
        stall_s,
        lambda: state["owned"],
        security=kafka_security.kafka_python(settings),
    )

    @app.timer(interval=watchdog.check_s)
    async def note_assignment() -> None:
        try:
            assigned = app.consumer.assignment()
        except Exception:  # no consumer yet, or it is being replaced in a rebalance
            assigned = set()
        waiting = (
            "a rebalance"
            if app.rebalancing
            else "table recovery"
            if getattr(app, "in_recovery", False)
            else None
        )
        state["owned"] = Ownership(
            frozenset((tp.topic, tp.partition) for tp in assigned if tp.topic in watched),
            waiting,
        )

    @app.task
    async def start_watchdog() -> None:
        watchdog.start()

    return watchdog


def correlator_config(settings: Settings, agencies: AgenciesConfig) -> CorrelatorConfig:
    """The correlation engine's configuration from the settings and the agencies config."""
    hour_ms = 3_600_000
    scoring = ScoringConfig()
    if settings.correlation.threshold is not None:
        scoring = dataclasses.replace(scoring, threshold=settings.correlation.threshold)
    correlation = settings.correlation
    occurrence = OccurrenceConfig(
        enabled=correlation.same_occurrence,
        radius_km=correlation.same_occurrence_radius_km,
        window_min=correlation.same_occurrence_window_min,
    )
    if correlation.same_occurrence_threshold is not None:
        occurrence = dataclasses.replace(
            occurrence, threshold=correlation.same_occurrence_threshold
        )
    return CorrelatorConfig(
        window_ms=int(settings.correlation.window_hours * hour_ms),
        allowed_lateness_ms=int(settings.correlation.allowed_lateness_hours * hour_ms),
        emit_border_alerts=False,  # the routing stage raises them, once per event
        scoring=scoring,
        patterns=PatternConfig(agencies=tuple(agencies.ids)),
        occurrence=occurrence,
    )


def lifecycle_config(settings: Settings) -> LifecycleConfig:
    """The case lifecycle's timers from the settings."""
    hour_ms = 3_600_000
    return LifecycleConfig(
        verification_timeout_ms=int(settings.verification.timeout_hours * hour_ms),
        escalation_interval_ms=int(settings.verification.escalation_interval_hours * hour_ms),
        case_retention_ms=max(int(settings.verification.case_retention_hours * hour_ms), 1),
        stage_horizon_ms=int(
            (settings.correlation.window_hours + settings.correlation.allowed_lateness_hours)
            * hour_ms
        ),
    )


def ensure_changelog_topics(settings: Settings, app: faust.App) -> list[str]:
    """Create the tables' changelog topics before the worker joins its group.

    Faust creates them itself at start-up, but its consumer then joins with a metadata
    snapshot in which a topic created a moment ago can have 0 partitions; the first
    table write then fails with ``PartitionsMismatch`` and the agent stops. Created
    here, they are complete before Faust looks."""
    expected = {
        table.changelog_topic.get_topic_name(): table.partitions or settings.topics.partitions
        for table in app.tables.values()
    }
    created = []
    for name, partitions in expected.items():
        created += ensure_topics(
            settings, [name], partitions=partitions, configs={"cleanup.policy": "compact"}
        )
    wait_for_partitions(settings, expected)
    return created


def tune_gc(gen0_threshold: int) -> None:
    """Fewer collections for a process that allocates fast and keeps a large heap: the
    objects built at start-up move to the permanent generation, never scanned again.
    Full collections that pause the event loop for long are logged."""
    gc.collect()
    gc.freeze()
    if gen0_threshold:
        _, gen1, gen2 = gc.get_threshold()
        gc.set_threshold(gen0_threshold, gen1, gen2)
    gc.callbacks.append(_time_full_collections)


SLOW_COLLECTION_S = 0.05
_collection_started = 0.0


def _time_full_collections(phase: str, info: dict[str, int]) -> None:
    global _collection_started
    if info.get("generation") != 2:
        return
    if phase == "start":
        _collection_started = time.perf_counter()
        return
    took = time.perf_counter() - _collection_started
    _release_after_collection()
    if took >= SLOW_COLLECTION_S:
        logger.info(
            "full garbage collection paused the worker %.0f ms (%s objects tracked)",
            took * 1000,
            len(gc.get_objects(2)),
        )


RELEASE_INTERVAL_S = 60.0
"""At most one return of free memory to the OS per this many seconds (see
:mod:`xborder.memory`): a full collection is when freed objects pile up, and the return
pauses the event loop for some milliseconds."""
_released_at = 0.0


def _release_after_collection() -> None:
    global _released_at
    now = time.monotonic()
    if now - _released_at >= RELEASE_INTERVAL_S:
        _released_at = now
        release_free_memory()


def run_worker(settings: Settings) -> None:
    """Create missing topics, then run the worker until SIGTERM/SIGINT."""
    names = Topics.from_settings(settings, load_agencies(settings.agencies_config))
    ensure_project_topics(settings, names)
    mode.loop.use("uvloop")
    app = create_worker_app(settings)
    ensure_changelog_topics(settings, app)
    tune_gc(settings.worker.gc_gen0_threshold)
    worker = faust.Worker(app, loglevel=settings.worker.log_level, quiet=True)
    worker.execute_from_commandline()
