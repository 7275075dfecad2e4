"""Correlation flow: views routed by blocking key, correlated per partition, folded into cases.

Every Kafka cost is paid once per batch, never once per event (PERFORMANCE.md):

1. **route** (called by the ingest task for each batch of accepted events): each
   incident becomes a compact view; each (blocking key, view) item goes to partition
   ``crc32(key) % P`` of ``correlation.blocks``, one message per target partition per
   batch. Border-zone alerts are raised here, where each event is seen exactly once.
2. **correlate_blocks** (agent on ``correlation.blocks``): one :class:`Correlator` per
   partition scores the candidates that share a key and emits the links to
   ``correlations`` and, with both incidents' views, to ``correlation.links``.
3. **build_cases** (agent on ``correlation.links``, one partition): folds links into
   cases (``cases``) and raises group alerts.

Both agents take their topic in **stage batches** (``stream.take_events``: up to
``stage_batch_size`` messages, or what arrived within ``stage_linger_s``). Each message
still goes through its engine on its own, in offset order, so the results do not depend
on where a batch happens to end; the Kafka and state costs are paid per stage batch: one
send per output record (joined into record batches by the producer), one links message,
one table write per partition (a changelog record), then the acks. At a trickle a stage
batch is one message; from a backlog it is hundreds. The latency a stage adds is bounded
by its linger plus its processing.

State is event-sourced: each stage records what it applied in a Faust Table (one record
per partition per stage batch, RocksDB locally), deletes the records once they fall out
of the window, and after a restart or rebalance replays them into a fresh engine before
going on, so a restarted worker continues with the same results. The correlation stage
records the offsets of the blocks messages and reads them back from
``correlation.blocks`` (:mod:`streams.flows.replay`); the case stage records the links
messages themselves (they are few).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
import weakref
import zlib
from collections import deque
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import faust
import faust.streams as faust_streams
import orjson
from faust.types import TP

from streams.correlation.blocking import blocking_keys
from streams.correlation.engine import CaseStage, Correlator, CorrelatorConfig
from streams.correlation.lifecycle import LifecycleConfig
from streams.correlation.model import IncidentView, from_wire, to_wire, view_from_event
from streams.flows.replay import BlocksReplay, PartitionReader, applied_offsets
from streams.flows.verify import (
    ForwardedInput,
    LifecycleOutputs,
    LifecycleStage,
    check_input,
    chunk_log,
    encode_input,
    encode_tick,
    is_lifecycle_message,
)
from xborder.codec import AvroCodec
from xborder.deadletter import DeadLetter, route
from xborder.geo import Jurisdictions
from xborder.metrics import LATE_SOURCE_HEADER, LateMetrics, StageMetrics
from xborder.topics import Topics

logger = logging.getLogger(__name__)

INCIDENT_VIEW_RECORDS = frozenset({"xborder.v1.IncidentReported", "xborder.v1.IncidentUpdated"})


SEQUENCE_STRIDE = 1_000_000
"""A case event's ``sequence`` is its links message's offset times this plus its index
among that message's case events (a message carries a whole stage batch's links)."""

NO_WATERMARK = -(2**62)
"""Passed to the engines while the watermark cannot move: they must not fall back to
their own newest-event-seen watermark, which a source running ahead would push on."""


def source_id(topic: str, partition: int) -> str:
    """How a source partition is named in blocks messages."""
    return f"{topic}[{partition}]"


LATE_REPORT_INTERVAL_S = 30.0
"""At most one warning line per this interval about events too late to correlate."""


def late_message(names: Topics, view: IncidentView) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """Key, value and headers of a too-late event on the late topic: its view (the wire
    list that blocks messages carry), keyed by event id."""
    source = names.incidents(view.agency)
    return (
        view.event_id.encode(),
        orjson.dumps(to_wire(view)),
        [(LATE_SOURCE_HEADER, source.encode())],
    )


def log_late(late: LateMetrics, names: Topics, now: float) -> None:
    """The rate-limited warning about too-late events, per source topic."""
    counts = late.due(now, LATE_REPORT_INTERVAL_S)
    if counts is None:
        return
    logger.warning(
        "correlation: %s events too late to correlate (%s; since start: %s); they are older "
        "than the watermark minus the window, kept on %s: correlate them with 'xborder "
        "backfill' (docs/operations.md, Late data and backfills)",
        sum(counts.values()),
        ", ".join(f"{source} {n}" for source, n in sorted(counts.items())),
        ", ".join(f"{source} {n}" for source, n in sorted(late.too_late.items())),
        names.late,
    )


def partition_of(key: str, partitions: int) -> int:
    """Stable partition of a blocking key (crc32, the same in every process)."""
    return zlib.crc32(key.encode("utf-8")) % partitions


@dataclass
class Router:
    """Stage 1: turns accepted incident events into per-partition batches of items."""

    jurisdictions: Jurisdictions
    config: CorrelatorConfig
    partitions: int
    _alerts: Correlator = field(init=False)
    _tokens_only: bool = field(init=False)
    _spatial_radius: float = field(init=False)

    def __post_init__(self) -> None:
        self._alerts = Correlator(self.config)
        self._tokens_only = not self.config.routes_spatial()
        self._spatial_radius = self.config.spatial_radius_km()

    def route(
        self, decoded: Sequence[tuple[str, str, dict[str, Any]]]
    ) -> tuple[dict[int, list[list[Any]]], dict[str, int], list[dict[str, Any]]]:
        """Items per target partition, each source's newest event time, and the
        border-zone alerts of one batch of (source, record name, value)."""
        by_partition: dict[int, list[list[Any]]] = {}
        progress: dict[str, int] = {}
        views: list[IncidentView] = []
        blocking, tokens_only = self.config.blocking, self._tokens_only
        radius = self._spatial_radius
        for source, record_name, value in decoded:
            if record_name not in INCIDENT_VIEW_RECORDS:
                continue
            view = view_from_event(value, self.jurisdictions)
            views.append(view)
            if view.occurred_ms > progress.get(source, -(2**62)):
                progress[source] = view.occurred_ms
            wire = to_wire(view)
            # space-time items that cannot reach the threshold are not worth sending
            for key in blocking_keys(view, blocking, not tokens_only, radius):
                by_partition.setdefault(partition_of(key, self.partitions), []).append([key, wire])
        return by_partition, progress, self._alerts.border_alerts(views)


def encode_blocks(progress: dict[str, int], items: list[list[Any]]) -> bytes:
    """A blocks message: the sources' progress (newest event time) and the (key, view wire)
    items (JSON, by orjson: the correlation stage parses one per batch, and the stdlib is
    3x slower). An incident routed to one partition under several keys is written once:
    ``v`` holds each event's wire list once (the first one given for its event id), ``k``
    the items' keys and ``n`` the position in ``v`` of each item's view."""
    wires: list[list[Any]] = []
    keys: list[str] = []
    refs: list[int] = []
    position: dict[Any, int] = {}
    for key, wire in items:
        event_id = wire[1]
        n = position.get(event_id)
        if n is None:
            n = position[event_id] = len(wires)
            wires.append(wire)
        keys.append(key)
        refs.append(n)
    return orjson.dumps({"s": progress, "v": wires, "k": keys, "n": refs})


def decode_blocks(payload: bytes) -> tuple[dict[str, int], list[tuple[str, IncidentView]]]:
    """Progress and (key, view) items of one blocks message."""
    return _blocks_message(orjson.loads(payload))


def _blocks_message(
    message: dict[str, Any],
) -> tuple[dict[str, int], list[tuple[str, IncidentView]]]:
    """Progress and items of a parsed blocks message (either layout: views written once,
    or, as written before, each item with its own wire list); an incident sent under
    several keys to one partition becomes one view object."""
    progress = message["s"]
    if not isinstance(progress, dict) or not all(
        isinstance(source, str) and type(moment) is int for source, moment in progress.items()
    ):
        raise ValueError("a blocks message's progress must map sources to event times")
    items = []
    if "v" in message:
        views = [from_wire(wire) for wire in message["v"]]
        keys, refs = message["k"], message["n"]
        if len(keys) != len(refs):
            raise ValueError("a blocks message has as many view positions as keys")
        for key, n in zip(keys, refs, strict=True):
            if not isinstance(key, str):
                raise ValueError(f"a blocking key must be a string, got {key!r:.80}")
            if type(n) is not int or n < 0:
                raise ValueError(f"a view position must be a non-negative int, got {n!r:.80}")
            items.append((key, views[n]))
        return progress, items
    by_event: dict[str, IncidentView] = {}
    for key, wire in message["i"]:
        if not isinstance(key, str):
            raise ValueError(f"a blocking key must be a string, got {key!r:.80}")
        view = by_event.get(wire[1])  # by event_id: one event, one view
        if view is None:
            view = by_event[wire[1]] = from_wire(wire)
        items.append((key, view))
    return progress, items


MAX_PACKED_BYTES = 512 * 1024
"""Largest table value or links message the stages write; the broker refuses records
over 1 MB by default, and a stage batch from a backlog holds several MB."""


def pack_applied(payloads: Sequence[bytes]) -> bytes:
    """One table value for messages a stage batch applied to one partition, in order:
    the JSON payloads joined into one document without parsing them again."""
    return b'{"b":[' + b",".join(payloads) + b"]}"


def chunk_applied(
    events: Sequence[faust.EventT], max_bytes: int = MAX_PACKED_BYTES
) -> list[tuple[faust.EventT, bytes]]:
    """The messages of ``events`` packed into table values of at most ``max_bytes`` (a
    single larger message stays alone), each with the last event it holds."""
    chunks: list[tuple[faust.EventT, bytes]] = []
    values: list[bytes] = []
    size = 0
    for n, event in enumerate(events):
        value = event.message.value
        if value is None:
            continue  # an empty message has nothing to replay
        if values and size + len(value) > max_bytes:
            chunks.append((events[n - 1], pack_applied(values)))
            values, size = [], 0
        values.append(value)
        size += len(value) + 1
    if values:
        chunks.append((events[-1], pack_applied(values)))
    return chunks


def unpack_applied(value: bytes) -> list[dict[str, Any]]:
    """The parsed messages of a table value (:func:`pack_applied`, or a single message as
    stored before stage batches)."""
    document = orjson.loads(value)
    return document["b"] if "b" in document else [document]


def encode_links(
    codec: AvroCodec,
    watermarks: Mapping[int, int | None],
    correlations: Sequence[dict[str, Any]],
    views: Mapping[tuple[str, str], list[Any]],
    max_bytes: int = MAX_PACKED_BYTES,
) -> list[bytes]:
    """The links messages of one correlation stage batch: the new correlations (Avro,
    base64) with their incidents' views, split so that each message stays under
    ``max_bytes``; the last one carries each correlating partition's watermark."""
    encoded = [base64.b64encode(codec.encode("Correlation", c)).decode() for c in correlations]
    pieces: list[tuple[list[str], dict[tuple[str, str], list[Any]]]] = [([], {})]
    size = 0
    for record, text in zip(correlations, encoded, strict=True):
        refs = [
            (record[s]["agency"], record[s]["incident_id"]) for s in ("incident_a", "incident_b")
        ]
        wires = {ref: views[ref] for ref in refs if ref in views}
        grows = len(text) + len(orjson.dumps(list(wires.values())))
        if pieces[-1][0] and size + grows > max_bytes:
            pieces.append(([], {}))
            size = 0
        pieces[-1][0].append(text)
        pieces[-1][1].update(wires)
        size += grows
    last = len(pieces) - 1
    return [
        orjson.dumps(
            {
                "w": {str(p): w for p, w in watermarks.items()} if n == last else {},
                "correlations": texts,
                "views": list(wires.values()),
            }
        )
        for n, (texts, wires) in enumerate(pieces)
    ]


def decode_links(
    codec: AvroCodec, payload: bytes
) -> tuple[dict[int, int | None], list[dict[str, Any]], dict[tuple[str, str], IncidentView]]:
    """Watermarks by partition, correlations and views of one links message."""
    return _links_message(codec, orjson.loads(payload))


def _links_message(
    codec: AvroCodec, message: dict[str, Any]
) -> tuple[dict[int, int | None], list[dict[str, Any]], dict[tuple[str, str], IncidentView]]:
    if "p" in message:  # one partition's message, as written before stage batches
        watermarks = {int(message["p"]): message["w"]}
    else:
        watermarks = {int(p): w for p, w in message["w"].items()}
    if not all(w is None or type(w) is int for w in watermarks.values()):
        raise ValueError("a links message's watermarks must be event times or null")
    records = [codec.decode(base64.b64decode(c)).value for c in message["correlations"]]
    views = {}
    for wire in message["views"]:
        view = from_wire(wire)
        views[(view.agency, view.incident_id)] = view
    return watermarks, records, views


INTERNAL_DECODE_ERRORS = (ValueError, KeyError, TypeError, IndexError, AttributeError)
"""What a malformed internal message raises while it is parsed (orjson's JSONDecodeError
and the codec's InvalidRecordError are ValueErrors)."""


def undecodable(event: faust.EventT, exc: Exception) -> DeadLetter:
    """The dead letter of an internal message a stage cannot parse: nothing the worker
    wrote, so a forged or corrupted record, kept with its position and reason."""
    message = event.message
    return DeadLetter(
        message.key,
        message.value,
        "undecodable",
        f"not a message of this stage: {type(exc).__name__}: {exc}",
        message.topic,
        message.partition,
        message.offset,
    )


@dataclass
class _PartitionState:
    """One partition's engine and the stored batches it was built from (oldest first)."""

    engine: Any
    stored: deque[tuple[bytes, int]] = field(default_factory=deque)
    """(table key, newest event time in the batch)."""
    progress: dict[Any, int] = field(default_factory=dict)
    """Newest event time per upstream source; the watermark follows the slowest."""
    expected: frozenset[Any] = frozenset()
    """Every upstream source: until each has reported, the watermark does not move."""
    idle_after_s: float = 300.0
    """A source silent this long (processing time) no longer holds the watermark back."""
    applied_offset: int = -1
    """Offset of the last message the state was rebuilt from (its stored batches): Faust
    commits offsets after the table writes, so after a crash the consumer re-reads
    messages the rebuilt state holds already; they are skipped, not applied twice."""
    _heard: dict[Any, float] = field(default_factory=dict)

    def advance(self, progress: Mapping[Any, int | None], lateness_ms: int) -> int | None:
        """Merge upstream progress; the event-time watermark, or None while it cannot move.

        The watermark is the slowest source's newest event time minus the lateness, so a
        source (a partition, a worker) running ahead never makes another's events too
        late. Sources not heard from yet hold it back, unless silent for ``idle_after_s``
        (an empty partition must not stop eviction for ever).
        """
        now = time.monotonic()
        for source, newest in progress.items():
            self._heard[source] = now
            if newest is not None and newest > self.progress.get(source, -(2**62)):
                self.progress[source] = newest
        if not self._heard:
            return None
        first = min(self._heard.values())
        for source in self.expected:
            if source not in self.progress and now - self._heard.get(source, first) < (
                self.idle_after_s
            ):
                return None
        live = [
            newest
            for source, newest in self.progress.items()
            if now - self._heard[source] < self.idle_after_s or source not in self.expected
        ]
        if not live:
            return None
        return min(live) - lateness_ms


class _Replayable:
    """Engines per partition, rebuilt from a Faust Table of applied batches when needed."""

    def __init__(self, name: str, table: faust.types.TableT, keep_ms: int) -> None:
        self.name = name
        self.table = table
        self.keep_ms = keep_ms
        self.states: dict[int, _PartitionState] = {}

    @staticmethod
    def key(partition: int, offset: int) -> bytes:
        """Table key of a batch: sorts by partition, then offset (raw bytes on the wire)."""
        return f"{partition:05d}:{offset:015d}".encode()

    @staticmethod
    def offset_of(key: bytes) -> int:
        """The offset a table key of :meth:`key` names."""
        return int(key.partition(b":")[2])

    def forget(self, partitions: set[int]) -> None:
        for partition in partitions:
            self.states.pop(partition, None)

    def evict(self, partition: int, watermark_ms: int) -> None:
        """Delete stored batches whose newest event fell out of the window."""
        state = self.states[partition]
        cutoff = watermark_ms - self.keep_ms
        while state.stored and state.stored[0][1] < cutoff:
            key, _ = state.stored.popleft()
            self.table.pop(key, None)


async def publish_alerts(
    producer: Any, codec: AvroCodec, names: Topics, alerts: Sequence[dict[str, Any]]
) -> list[Any]:
    """Send each alert to the alert topic of every agency it targets (all when none);
    returns the delivery futures."""
    pending = []
    for alert in alerts:
        payload = codec.encode("Alert", alert)
        key = alert["identifier"].encode()
        for agency in alert.get("target_agencies") or names.agency_ids:
            pending.append(
                await producer.send(names.alerts(agency), key, payload, None, None, None)
            )
    return pending


async def publish_blocks(
    producer: Any,
    names: Topics,
    partitions: int,
    progress: dict[str, int],
    by_partition: dict[int, list[list[Any]]],
) -> None:
    """One ``correlation.blocks`` message per partition per batch: every partition hears
    every source's progress, so its watermark never waits on a source it got no item from."""
    for partition in range(partitions):
        for payload in split_blocks(progress, by_partition.get(partition, [])):
            await producer.send(names.blocks, None, payload, partition, None, None)


def split_blocks(
    progress: dict[str, int], items: list[list[Any]], max_bytes: int = MAX_PACKED_BYTES
) -> list[bytes]:
    """One partition's blocks messages for a batch: one message, or several of at most
    about ``max_bytes`` when the items are larger (the broker refuses records over 1 MB).
    Only the last carries the sources' progress, so the watermark moves after every item
    of the batch has been applied, as with a single message."""
    payload = encode_blocks(progress, items)
    if len(payload) <= max_bytes or len(items) < 2:
        return [payload]
    half = len(items) // 2
    return split_blocks({}, items[:half], max_bytes) + split_blocks(
        progress, items[half:], max_bytes
    )


def store_options(write_buffer_mb: int, block_cache_mb: int) -> dict[str, int]:
    """RocksDB options of the batch tables. They are written once per batch and read only
    to rebuild, so small memtables and cache keep a worker's memory bounded; Faust's
    defaults (3 x 64 MB memtables, a 2 GiB cache per partition) grow it to hundreds of MB."""
    mb = 1024 * 1024
    return {
        "write_buffer_size": write_buffer_mb * mb,
        "max_write_buffer_number": 2,
        "block_cache_size": block_cache_mb * mb,
        "block_cache_compressed_size": block_cache_mb * mb,
    }


async def stage_batches(
    stream: faust.StreamT, size: int, linger_s: float
) -> AsyncIterator[Sequence[faust.EventT]]:
    """The stream's events in batches of up to ``size``, or what arrived within
    ``linger_s``. Faust acknowledges a batch's events when the next one is asked for, so
    their offsets are committed only after the batch was applied."""
    async for events in cast(faust.Stream, stream).take_events(size, within=linger_s):
        yield events


@contextlib.contextmanager
def writing_for(event: faust.EventT) -> Iterator[None]:
    """Table writes inside belong to ``event``'s partition.

    A Faust table sends a write to the changelog partition of the event being processed,
    which its per-event iteration keeps in a context variable; a stage batch is applied
    after its events were taken, so the variable is set here to the last event of the
    partition whose state is written (faust-streaming has no public setter)."""
    token = faust_streams._current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        faust_streams._current_event.reset(token)


STAGE_REPORT_INTERVAL_S = 30.0
"""How often a stage logs where its batch cycle spent its time."""


def oldest_age_s(events: Sequence[faust.EventT]) -> float:
    """Seconds since the Kafka timestamp of the oldest message of ``events`` (0 without
    timestamps): how long the batch's first input waited before the stage took it."""
    stamps = [event.message.timestamp for event in events if event.message.timestamp]
    return max(0.0, time.time() - min(stamps)) if stamps else 0.0


def _or_none(watermark: int | None) -> int:
    return NO_WATERMARK if watermark is None else watermark


def _newest_ms(items: Sequence[tuple[str, IncidentView]]) -> int:
    return max((view.occurred_ms for _, view in items), default=0)


class CaseLog:
    """Applies messages of the case stage's log (``correlation.links``) in offset order and
    collects what they produce: links through the case stage and then the lifecycle,
    forwarded agency inputs and clock ticks through the lifecycle alone. The agent and
    :func:`streams.flows.verify.rebuild` share it, so a rebuild is the same computation."""

    def __init__(self, codec: AvroCodec, state: _PartitionState, life: LifecycleStage) -> None:
        self.codec = codec
        self.state = state
        self.life = life
        self.case_events: list[dict[str, Any]] = []
        """Every CaseEvent to send, in order, ``sequence`` set."""
        self.alerts: list[dict[str, Any]] = []
        self.lives = LifecycleOutputs()
        self.newest = 0
        """Newest event time among the links applied."""
        self.watermark: int | None = None

    def apply(self, value: bytes, offset: int) -> bool:
        """Apply one message; True when it was a links message (the case stage stores
        those). Raises one of INTERNAL_DECODE_ERRORS, before any change, when malformed."""
        parsed = orjson.loads(value)
        if not isinstance(parsed, dict):
            raise ValueError("a case stage message is a JSON object")
        first = len(self.lives.case_events)
        position = offset * SEQUENCE_STRIDE
        is_links = not is_lifecycle_message(parsed)
        if not is_links:
            forwarded = ForwardedInput.parse(parsed) if "input" in parsed else None
            if forwarded is not None:
                self.life.agency_input(forwarded, self.lives)
            elif type(parsed.get("tick")) is int:
                self.life.tick(parsed["tick"], self.lives)
            else:
                raise ValueError("a clock tick carries the wall clock in ms")
        else:
            upstream, records, views = _links_message(self.codec, parsed)
            self.watermark = self.state.advance(upstream, 0)
            outputs = self.state.engine.process(records, views, _or_none(self.watermark))
            for index, case_event in enumerate(outputs.case_events):
                case_event["sequence"] = position + index
            self.case_events.extend(outputs.case_events)
            self.alerts.extend(outputs.alerts)
            self.life.case_events(outputs.case_events, self.lives)
            self.newest = max(self.newest, _newest_link_ms(records), *_known(upstream))
            position += len(outputs.case_events)
        # the lifecycle's status events sort after the membership they judged
        for index, case_event in enumerate(self.lives.case_events[first:]):
            case_event["sequence"] = position + index
        self.case_events.extend(self.lives.case_events[first:])
        return is_links


def register(
    app: faust.App,
    names: Topics,
    codec: AvroCodec,
    config: CorrelatorConfig,
    partitions: int,
    store_options: Mapping[str, Any] | None = None,
    case_store_options: Mapping[str, Any] | None = None,
    stage_batch_size: int = 200,
    stage_linger_s: float = 0.1,
    case_linger_s: float = 0.02,
    lifecycle: LifecycleConfig | None = None,
    tick_s: float = 10.0,
    *,
    read_blocks: PartitionReader,
) -> dict[str, int]:
    """Attach the correlate, case and verification agents, their tables and the lifecycle
    clock; returns live counters. ``store_options`` go to the correlation stage's RocksDB
    store and ``case_store_options`` (default: the same) to the case stage's two tables (see
    :func:`store_options`); each agent takes up to ``stage_batch_size`` messages or what
    arrived in ``stage_linger_s`` (``case_linger_s`` for the case stage and the forwarding
    of verdicts, which a verdict crosses on its way to the conclusion); the clock ticks
    every ``tick_s`` seconds. ``read_blocks`` reads ``correlation.blocks`` back to rebuild
    a partition's state from the offsets its table recorded."""
    incident_sources = frozenset(
        source_id(topic, p) for topic in names.all_incidents for p in range(partitions)
    )
    counters = dict.fromkeys(
        (
            "correlations",
            "case_events",
            "alerts",
            "too_late",
            "replayed",
            "replay_missing",
            "redelivered",
            "dead_letters",
            "blocks_batches",
            "links_batches",
            "verification_inputs",
            "lifecycle_replayed",
            "cases_expired",
            "skipped_unowned",
        ),
        0,
    )
    producer = app.producer
    late_metrics = LateMetrics()
    blocks_metrics = StageMetrics("correlation")
    keep_ms = config.window_ms + config.allowed_lateness_ms
    blocks = app.topic(names.blocks, key_serializer="raw", value_serializer="raw")
    links = app.topic(names.links, key_serializer="raw", value_serializer="raw", partitions=1)

    def bytes_table(
        name: str, table_partitions: int, about: str, options: Mapping[str, Any] | None
    ) -> faust.types.TableT:
        """A table of raw keys and values in RocksDB with ``options``."""
        return app.Table(
            name,
            default=None,
            partitions=table_partitions,
            help=about,
            key_type=bytes,
            value_type=bytes,
            options=dict(options or {}),
        )

    block_table = bytes_table(
        "correlation-batches",
        partitions,
        "offsets of the applied correlation.blocks messages",
        store_options,
    )
    case_options = store_options if case_store_options is None else case_store_options
    link_table = bytes_table("case-batches", 1, "applied correlation.links messages", case_options)
    lifecycle_table = bytes_table(
        "case-lifecycle",
        1,
        "inputs that changed the case lifecycle, in the order applied (never evicted)",
        case_options,
    )
    blocks_state = _Replayable("correlate", block_table, keep_ms)
    links_state = _Replayable("cases", link_table, keep_ms)
    lifecycles: dict[int, LifecycleStage] = {}

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def _revoked(sender: Any, revoked: set[Any], **kwargs: Any) -> None:
        logger.info(
            "partitions revoked: %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in revoked)
        )
        blocks_state.forget({tp.partition for tp in revoked if tp.topic == names.blocks})
        links_state.forget({tp.partition for tp in revoked if tp.topic == names.links})
        if any(tp.topic == names.links for tp in revoked):
            lifecycles.clear()

    def owns(topic: str, partition: int) -> bool:
        """Whether this worker is assigned ``topic[partition]`` now."""
        return TP(topic, partition) in app.consumer.assignment()

    async def send_records(
        topic: str, record_name: str, key_field: str, records: Sequence[dict[str, Any]]
    ) -> list[Any]:
        """Send each record Avro-encoded, keyed by its id field; the delivery futures."""
        return [
            await producer.send(
                topic, r[key_field].encode(), codec.encode(record_name, r), None, None, None
            )
            for r in records
        ]

    async def send_dead_letters(rejected: Sequence[DeadLetter]) -> list[Any]:
        """Dead-letter internal messages a stage could not parse; the stage goes on."""
        pending = []
        for letter in rejected:
            logger.warning(
                "%s dead-lettered (%s): %s", letter.position, letter.reason, letter.error
            )
            counters["dead_letters"] += 1
            topic, letter = route(letter, names)  # raw identifiers: quarantine.<agency>
            pending.append(
                await producer.send(topic, letter.key, letter.value, None, None, letter.headers())
            )
        return pending

    async def send_alerts(alerts: list[dict[str, Any]]) -> list[Any]:
        counters["alerts"] += len(alerts)
        return await publish_alerts(producer, codec, names, alerts)

    async def correlator_for(partition: int) -> _PartitionState:
        state = blocks_state.states.get(partition)
        if state is not None:
            return state
        state = blocks_state.states[partition] = _PartitionState(
            Correlator(config), expected=incident_sources
        )
        prefix = f"{partition:05d}:".encode()
        replay = BlocksReplay(read_blocks, partition)
        try:
            for key in sorted(k for k in block_table.keys() if k.startswith(prefix)):
                newest = 0
                for message in await replay.messages(block_table[key]):
                    progress, items = _blocks_message(message)
                    watermark = state.advance(progress, config.allowed_lateness_ms)
                    # outputs were emitted before the restart
                    state.engine.process(items, _or_none(watermark))
                    newest = max(newest, _newest_ms(items))
                    counters["replayed"] += 1
                state.stored.append((key, newest))
                state.applied_offset = _Replayable.offset_of(key)  # keys sort by offset
        finally:
            await replay.close()
        logger.info(
            "correlation partition %s: rebuilt from %s stored batches (up to offset %s)",
            partition,
            len(state.stored),
            state.applied_offset,
        )
        if replay.missing:
            counters["replay_missing"] += replay.missing
            logger.error(
                "correlation partition %s: %s applied blocks messages are gone from %s, so "
                "their incidents are missing from the rebuilt window; keep the topic's "
                "retention.ms above twice the window plus the allowed lateness",
                partition,
                replay.missing,
                names.blocks,
            )
        return state

    async def apply_blocks(
        events: Sequence[faust.EventT], phases: dict[str, float] | None = None
    ) -> None:
        """Correlate one stage batch of blocks messages (any partitions, offset order);
        adds the seconds it spent applying, sending and recording them to ``phases``."""
        started = time.perf_counter()
        by_partition: dict[int, list[faust.EventT]] = {}
        for event in events:
            by_partition.setdefault(event.message.partition, []).append(event)
        correlations: list[dict[str, Any]] = []
        alerts: list[dict[str, Any]] = []
        views: dict[tuple[str, str], list[Any]] = {}
        applied = []
        rejected: list[DeadLetter] = []
        late: list[IncidentView] = []
        for partition, batch in by_partition.items():
            if not owns(names.blocks, partition):
                # taken before a rebalance gave the partition to another worker, which
                # applies these messages from its committed offset; applying them here
                # would build a state from this worker's stale table, used if the
                # partition comes back
                counters["skipped_unowned"] += len(batch)
                continue
            state = await correlator_for(partition)
            newest = 0
            watermark = None
            good = []
            redelivered = 0
            for event in batch:
                if event.message.value is None:
                    continue  # an empty message has nothing to apply
                if event.message.offset <= state.applied_offset:
                    redelivered += 1  # in the rebuilt state, its outputs sent already
                    continue
                try:
                    progress, items = decode_blocks(event.message.value)
                except INTERNAL_DECODE_ERRORS as exc:
                    rejected.append(undecodable(event, exc))
                    continue
                good.append(event)
                watermark = state.advance(progress, config.allowed_lateness_ms)
                outputs = state.engine.process(items, _or_none(watermark))
                for record in outputs.correlations:
                    for side in ("incident_a", "incident_b"):
                        ref = (record[side]["agency"], record[side]["incident_id"])
                        current = state.engine.index.current(ref)
                        if current is not None:
                            views[ref] = to_wire(current)
                correlations.extend(outputs.correlations)
                alerts.extend(outputs.alerts)
                late.extend(outputs.late)
                newest = max(newest, _newest_ms(items))
            if redelivered:
                counters["redelivered"] += redelivered
                logger.info(
                    "correlation partition %s: %s redelivered messages skipped (the state "
                    "rebuilt from the table holds them, up to offset %s)",
                    partition,
                    redelivered,
                    state.applied_offset,
                )
            applied.append((partition, state, batch, good, newest, watermark))
        applied_at = time.perf_counter()
        # every stage batch sends the case stage each partition's watermark, with or
        # without new correlations, so its eviction never waits on a quiet partition
        watermarks = {partition: watermark for partition, *_, watermark in applied}
        pending = await send_records(
            names.correlations, "Correlation", "correlation_id", correlations
        )
        for links_payload in encode_links(codec, watermarks, correlations, views):
            pending.append(await producer.send(names.links, None, links_payload, 0, None, None))
        pending.extend(await send_alerts(alerts))
        pending.extend(await send_dead_letters(rejected))
        for view in late:
            key, value, headers = late_message(names, view)
            pending.append(await producer.send(names.late, key, value, None, None, headers))
        # Outputs must be durable before the batch is recorded as applied: a crash in
        # between then replays the batch and re-emits (same ids), never loses them.
        await asyncio.gather(*pending)
        sent_at = time.perf_counter()
        counters["correlations"] += len(correlations)
        counters["too_late"] += len(late)
        counters["blocks_batches"] += 1
        for view in late:
            late_metrics.add(names.incidents(view.agency))
        log_late(late_metrics, names, time.monotonic())
        for partition, state, batch, good, newest, watermark in applied:
            if blocks_state.states.get(partition) is not state:
                # revoked while the outputs were being sent. Given to another worker: the
                # batch is not recorded, this worker can no longer commit its offsets, and
                # the next owner applies it again. Given back to this worker in the same
                # (eager) rebalance: Faust commits the batch's offsets when it is
                # acknowledged, so it must be recorded, or it would be lost from the state
                # rebuilt from the table (the state is rebuilt when next needed)
                if owns(names.blocks, partition) and good:
                    with writing_for(good[-1]):
                        block_table[_Replayable.key(partition, good[-1].message.offset)] = (
                            applied_offsets([event.message.offset for event in good])
                        )
                continue
            if good:
                key = _Replayable.key(partition, good[-1].message.offset)
                with writing_for(good[-1]):
                    block_table[key] = applied_offsets([event.message.offset for event in good])
                state.stored.append((key, newest))
            if watermark is not None:
                with writing_for(batch[-1]):
                    blocks_state.evict(partition, watermark)
        if phases is not None:
            phases["apply"] = applied_at - started
            phases["send"] = sent_at - applied_at
            phases["record"] = time.perf_counter() - sent_at

    @app.agent(blocks, name="correlate_blocks")
    async def correlate_blocks(stream: faust.StreamT) -> None:
        reported = done = time.perf_counter()
        async for events in stage_batches(stream, stage_batch_size, stage_linger_s):
            taken = time.perf_counter()
            age_s = oldest_age_s(events)
            phases = {"wait": taken - done}
            await apply_blocks(events, phases)
            done = time.perf_counter()
            blocks_metrics.add_batch(len(events), age_s, phases)
            if done - reported >= STAGE_REPORT_INTERVAL_S:
                line = blocks_metrics.line(done - reported)
                if line:
                    logger.info("%s", line)
                reported = done

    def cases_state() -> _PartitionState:
        state = links_state.states.get(0)
        if state is not None:
            return state
        state = links_state.states[0] = _PartitionState(
            CaseStage(config), expected=frozenset(range(partitions))
        )
        for key in sorted(link_table.keys()):
            newest = 0
            for message in unpack_applied(link_table[key]):
                upstream, records, views = _links_message(codec, message)
                watermark = state.advance(upstream, 0)
                state.engine.process(records, views, _or_none(watermark))
                newest = max(newest, _newest_link_ms(records), *_known(upstream))
                counters["replayed"] += 1
            state.stored.append((key, newest))
        return state

    def lifecycle_state() -> LifecycleStage:
        stage = lifecycles.get(0)
        if stage is not None:
            return stage
        stage = lifecycles[0] = LifecycleStage(codec, names, lifecycle)
        for key in sorted(lifecycle_table.keys()):
            counters["lifecycle_replayed"] += stage.replay(orjson.loads(lifecycle_table[key]))
        logger.info(
            "case lifecycle: rebuilt %s cases from %s stored inputs",
            len(stage.machine.case_ids()),
            counters["lifecycle_replayed"],
        )
        return stage

    async def apply_links(events: Sequence[faust.EventT]) -> None:
        """Apply one stage batch of the case stage's log in offset order: links messages
        through the case stage and then the lifecycle, forwarded agency inputs and clock
        ticks through the lifecycle (:mod:`streams.flows.verify`)."""
        if not owns(names.links, 0):
            counters["skipped_unowned"] += len(events)
            return  # taken before a rebalance gave the case stage to another worker
        state = cases_state()
        life = lifecycle_state()
        log = CaseLog(codec, state, life)
        rejected: list[DeadLetter] = []
        good = []
        for event in events:
            message = event.message
            if message.value is None:
                continue  # an empty message has nothing to apply
            try:
                if log.apply(message.value, message.offset):
                    good.append(event)
            except INTERNAL_DECODE_ERRORS as exc:
                rejected.append(undecodable(event, exc))
        case_events, alerts, lives = log.case_events, log.alerts, log.lives
        newest, watermark = log.newest, log.watermark
        pending = await send_records(names.cases, "CaseEvent", "case_id", case_events)
        for record_name, case_id, value in lives.verification:
            pending.append(
                await producer.send(
                    names.verification,
                    case_id.encode(),
                    codec.encode(record_name, value),
                    None,
                    None,
                    None,
                )
            )
        pending.extend(await send_alerts(alerts + lives.alerts))
        pending.extend(await send_dead_letters(rejected + lives.rejected))
        await asyncio.gather(*pending)  # durable before the batch is recorded as applied
        counters["case_events"] += len(case_events)
        counters["verification_inputs"] += lives.accepted
        counters["cases_expired"] += lives.expired
        counters["links_batches"] += 1
        revoked = links_state.states.get(0) is not state or lifecycles.get(0) is not life
        if revoked and not owns(names.links, 0):
            return  # given to another worker meanwhile: it applies the batch again
        # (revoked and given back in one rebalance: recorded, as in apply_blocks, and the
        # state and lifecycle are rebuilt from the tables when next needed)
        for last, packed in chunk_applied(good):
            key = _Replayable.key(0, last.message.offset)
            with writing_for(last):
                link_table[key] = packed
            if not revoked:
                state.stored.append((key, newest))
        for n, chunk in enumerate(chunk_log(lives.log)):
            key = _Replayable.key(0, events[-1].message.offset) + f":{n:04d}".encode()
            with writing_for(events[-1]):
                lifecycle_table[key] = chunk
        if revoked:
            return
        if watermark is not None:
            with writing_for(events[-1]):
                links_state.evict(0, watermark)

    @app.agent(links, name="build_cases")
    async def build_cases(stream: faust.StreamT) -> None:
        async for events in stage_batches(stream, stage_batch_size, case_linger_s):
            await apply_links(events)

    verdicts = app.topic(*names.all_verdicts, key_serializer="raw", value_serializer="raw")

    @app.agent(verdicts, name="forward_inputs")
    async def forward_inputs(stream: faust.StreamT) -> None:
        """Agencies' verification inputs join the case stage's log (or are dead-lettered)."""
        async for events in stage_batches(stream, stage_batch_size, case_linger_s):
            pending, refused = [], []
            for event in events:
                m = event.message
                problem = check_input(codec, names, m.topic, m.value)
                if problem is not None:
                    refused.append(
                        DeadLetter(m.key, m.value, *problem, m.topic, m.partition, m.offset)
                    )
                    continue
                message = encode_input(m.topic, m.partition, m.offset, m.key, m.value or b"")
                pending.append(await producer.send(names.links, None, message, 0, None, None))
            pending.extend(await send_dead_letters(refused))
            await asyncio.gather(*pending)  # forwarded before the offsets are committed

    @app.timer(interval=LATE_REPORT_INTERVAL_S / 3)
    async def report_late() -> None:
        """Log the too-late events counted since the last line (rate-limited)."""
        log_late(late_metrics, names, time.monotonic())

    @app.timer(interval=tick_s)
    async def lifecycle_clock() -> None:
        """The owner of the case stage writes the wall clock into its log (see
        :mod:`streams.flows.verify` for why the clock is an input)."""
        try:
            owner = owns(names.links, 0)
        except Exception:  # the consumer is not ready yet: the next tick asks again
            return
        if owner:
            now_ms = int(time.time() * 1000)
            await producer.send(names.links, None, encode_tick(now_ms), 0, None, None)

    return counters


def _known(watermarks: Mapping[int, int | None]) -> list[int]:
    return [w for w in watermarks.values() if w is not None]


def _newest_link_ms(records: Sequence[dict[str, Any]]) -> int:
    from streams.correlation.model import to_ms

    return max((to_ms(r["created_at"]) for r in records), default=0)
