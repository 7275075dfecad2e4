"""Backfill: correlate the events the live correlator refused as too late.

The live correlator admits an event only while it is newer than the watermark (the
slowest source's newest event time minus the allowed lateness) minus the window; an
older one cannot be compared with what it would have met, which the window has already
evicted. Such an event is still forwarded and stored; the correlating partition that
holds its first blocking key writes its view to ``correlation.late`` (keyed by event id,
the source topic in a header), and the worker logs a rate-limited warning.

``xborder backfill`` correlates them later, in one process and with its own state:

1. read ``correlation.late`` from the backfill group's committed offsets (``<app_id>-
   backfill``; ``--from-start`` reads it all again) up to its current end;
2. read the events of ``incidents.accepted`` whose event time lies within one window of
   the late ones (from the offset of that time minus the skew allowance: a message is
   never forwarded before its event happened), as their views;
3. run a fresh :class:`Correlator` over all of them in event-time order, so its
   watermark follows the history and nothing is too late, and keep the correlations
   that involve a late incident (the others the live worker emitted already);
4. send those to ``correlations`` and, with both incidents' views, to the case stage's
   log (``correlation.links``, no watermark), so the live worker folds them into cases
   and their joint verification as if they had been found live; then commit the late
   topic's offsets for the group.

Correlation ids are deterministic, so a second run, or a pair the live worker had
found, produces the same ids (de-duplicated downstream). Token alerts of the late
events (SUBJECT_BOTH_SIDES) are not raised again; border-zone alerts were raised at
ingest, where lateness does not matter.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from streams.correlation.blocking import blocking_keys
from streams.correlation.engine import Correlator, CorrelatorConfig
from streams.correlation.model import IncidentView, Ref, from_wire, to_wire, view_from_event
from streams.flows.correlate import INCIDENT_VIEW_RECORDS, MAX_PACKED_BYTES, encode_links
from xborder import kafka_security
from xborder.codec import AvroCodec
from xborder.errors import InvalidRecordError, ServiceUnavailableError
from xborder.geo import Jurisdictions
from xborder.metrics import LATE_SOURCE_HEADER
from xborder.settings import Settings
from xborder.topics import Topics

logger = logging.getLogger(__name__)

CHUNK = 2_000
"""Views the backfill correlator takes per call (its watermark moves between calls)."""
POLL_MS = 1_000
SIDES = ("incident_a", "incident_b")


def backfill_group_id(settings: Settings) -> str:
    """Consumer group whose committed offsets on the late topic mark what was backfilled."""
    return f"{settings.worker.app_id}-backfill"


@dataclass
class BackfillReport:
    """What one backfill run read and sent."""

    late: Counter[str] = field(default_factory=Counter)
    """Late events read, per source topic."""
    context: int = 0
    """Events of ``incidents.accepted`` correlated with them (the late ones included)."""
    correlations: list[dict[str, Any]] = field(default_factory=list)
    """The correlations involving a late incident, as sent."""
    sent: bool = False

    def line(self) -> str:
        sources = ", ".join(f"{s} {n}" for s, n in sorted(self.late.items())) or "none"
        verb = "sent" if self.sent else "found (dry run, nothing sent)"
        return (
            f"backfill: {sum(self.late.values())} late events ({sources}), {self.context} "
            f"events within their window correlated, {len(self.correlations)} "
            f"correlations {verb}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "late": dict(self.late),
            "context": self.context,
            "correlations": [c["correlation_id"] for c in self.correlations],
            "sent": self.sent,
        }


def _consumer(settings: Settings, group_id: str | None = None) -> KafkaConsumer:
    try:
        return KafkaConsumer(
            bootstrap_servers=settings.kafka.bootstrap_servers,
            **kafka_security.kafka_python(settings),
            client_id=f"{settings.kafka.client_id}-backfill",
            group_id=group_id,
            enable_auto_commit=False,
            request_timeout_ms=settings.kafka.request_timeout_ms,
        )
    except (KafkaError, OSError) as exc:
        raise ServiceUnavailableError(
            f"Kafka at {settings.kafka.bootstrap_servers} is not reachable "
            f"({type(exc).__name__}); start it with 'xborder kafka up' or set "
            "XBORDER_KAFKA__BOOTSTRAP_SERVERS"
        ) from exc


def _read_to_end(
    consumer: KafkaConsumer, starts: dict[TopicPartition, int], ends: dict[TopicPartition, int]
) -> Iterator[Any]:
    """Every record of the assigned partitions from ``starts`` up to ``ends`` (the ends
    as they were when the run began: what arrives meanwhile is for the next run)."""
    todo = {tp for tp in starts if starts[tp] < ends[tp]}
    consumer.assign(sorted(todo, key=lambda tp: (tp.topic, tp.partition)))
    for tp in todo:
        consumer.seek(tp, starts[tp])
    idle_deadline = time.monotonic() + 30.0
    while todo:
        fetched = consumer.poll(timeout_ms=POLL_MS, max_records=5_000)
        if fetched:
            idle_deadline = time.monotonic() + 30.0
        elif time.monotonic() > idle_deadline:
            raise ServiceUnavailableError(
                f"reading {sorted(str(tp) for tp in todo)} stalled for 30 s; is the broker up?"
            )
        for tp, records in fetched.items():
            for record in records:
                if record.offset < ends[tp]:
                    yield record
            if consumer.position(tp) >= ends[tp]:
                todo.discard(tp)
                consumer.pause(tp)


def _partitions(consumer: KafkaConsumer, topic: str) -> list[TopicPartition]:
    return [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]


def read_late(
    settings: Settings, names: Topics, from_start: bool
) -> tuple[dict[str, IncidentView], Counter[str], dict[TopicPartition, int]]:
    """The late events not yet backfilled (all with ``from_start``): views by event id,
    counts per source topic, and the offsets to commit once they are correlated."""
    consumer = _consumer(settings, backfill_group_id(settings))
    try:
        partitions = _partitions(consumer, names.late)
        if not partitions:
            raise ServiceUnavailableError(
                f"topic {names.late} does not exist; create the topics with 'xborder topics "
                "create' (the worker does at start)"
            )
        ends = dict(consumer.end_offsets(partitions))
        begins = dict(consumer.beginning_offsets(partitions))
        starts = {}
        for tp in partitions:
            committed = None if from_start else consumer.committed(tp)
            starts[tp] = max(begins[tp], committed or 0)
        views: dict[str, IncidentView] = {}
        counts: Counter[str] = Counter()
        for record in _read_to_end(consumer, starts, ends):
            try:
                view = from_wire(orjson.loads(record.value))
            except (ValueError, TypeError) as exc:
                logger.warning(
                    "%s[%s]@%s is not a late event's view, skipped: %s",
                    record.topic,
                    record.partition,
                    record.offset,
                    exc,
                )
                continue
            if view.event_id in views:
                continue  # reported again after a worker restart
            views[view.event_id] = view
            source = dict(record.headers or ()).get(LATE_SOURCE_HEADER, b"").decode()
            counts[source or names.incidents(view.agency)] += 1
        return views, counts, ends
    finally:
        consumer.close(autocommit=False)


def read_context(
    settings: Settings,
    names: Topics,
    codec: AvroCodec,
    jurisdictions: Jurisdictions,
    lo_ms: int,
    hi_ms: int,
) -> list[IncidentView]:
    """Views of the accepted incident events whose event time is in [lo_ms, hi_ms]."""
    consumer = _consumer(settings)
    try:
        partitions = _partitions(consumer, names.accepted)
        ends = dict(consumer.end_offsets(partitions)) if partitions else {}
        # forwarded at or after publication, published at most the skew before the event
        since = max(0, lo_ms - int(settings.contract.max_future_skew_s * 1000) - 60_000)
        found = consumer.offsets_for_times(dict.fromkeys(partitions, since)) if partitions else {}
        starts = {tp: (found[tp].offset if found.get(tp) else ends[tp]) for tp in partitions}
        views = []
        for record in _read_to_end(consumer, starts, ends):
            try:
                decoded = codec.decode(record.value, logical_types=False)
            except InvalidRecordError:
                continue  # the worker forwarded it, so it decoded then: a schema since removed
            if decoded.record_name not in INCIDENT_VIEW_RECORDS:
                continue
            view = view_from_event(decoded.value, jurisdictions)
            if lo_ms <= view.occurred_ms <= hi_ms:
                views.append(view)
        return views
    finally:
        consumer.close(autocommit=False)


def correlate(
    config: CorrelatorConfig, views: Iterable[IncidentView], late_refs: set[Ref]
) -> tuple[list[dict[str, Any]], dict[Ref, list[Any]]]:
    """The correlations involving an incident of ``late_refs`` among ``views``, correlated
    in event-time order by a fresh correlator, and the views of their incidents (wire)."""
    ordered = sorted(views, key=lambda v: (v.occurred_ms, v.version_ms, v.event_id))
    correlator = Correlator(config)
    spatial, radius = config.routes_spatial(), config.spatial_radius_km()
    kept: list[dict[str, Any]] = []
    wires: dict[Ref, list[Any]] = {}
    for start in range(0, len(ordered), CHUNK):
        chunk = ordered[start : start + CHUNK]
        items = [(k, v) for v in chunk for k in blocking_keys(v, config.blocking, spatial, radius)]
        for record in correlator.process(items).correlations:
            refs = [
                (record[s]["agency"], record[s]["incident_id"])
                for s in ("incident_a", "incident_b")
            ]
            if not late_refs.intersection(refs):
                continue
            kept.append(record)
            for ref in refs:
                current = correlator.index.current(ref)
                if current is not None:
                    wires[ref] = to_wire(current)
    return kept, wires


def links_messages(
    codec: AvroCodec,
    correlations: Sequence[dict[str, Any]],
    wires: dict[Ref, list[Any]],
    max_bytes: int = MAX_PACKED_BYTES,
) -> list[bytes]:
    """The case stage's links messages for backfilled correlations, without a watermark
    (the case stage's own follows the live stages). The correlations of one future case
    (incidents connected by them) go in one message where they fit: the case stage may
    evict a case older than its window after any message, and a case cut in two would
    then become two cases."""
    parent: dict[Ref, Ref] = {}

    def root(ref: Ref) -> Ref:
        while parent.setdefault(ref, ref) != ref:
            parent[ref] = parent[parent[ref]]
            ref = parent[ref]
        return ref

    for record in correlations:
        a, b = (root((record[s]["agency"], record[s]["incident_id"])) for s in SIDES)
        parent[a] = b
    groups: dict[Ref, list[dict[str, Any]]] = {}
    for record in correlations:
        groups.setdefault(
            root((record["incident_a"]["agency"], record["incident_a"]["incident_id"])), []
        ).append(record)
    messages: list[bytes] = []
    pack: list[dict[str, Any]] = []
    size = 0
    for group in groups.values():
        grows = sum(len(m) for m in encode_links(codec, {}, group, wires, max_bytes))
        if pack and size + grows > max_bytes:
            messages += encode_links(codec, {}, pack, wires, max_bytes)
            pack, size = [], 0
        pack += group
        size += grows
    if pack:
        messages += encode_links(codec, {}, pack, wires, max_bytes)
    return messages


def send(
    settings: Settings,
    names: Topics,
    codec: AvroCodec,
    correlations: Sequence[dict[str, Any]],
    wires: dict[Ref, list[Any]],
) -> None:
    """Send the correlations and the case stage's links messages; wait for the acks."""
    producer = KafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        **kafka_security.kafka_python(settings),
        client_id=f"{settings.kafka.client_id}-backfill",
        acks="all",
        linger_ms=5,
        compression_type=settings.worker.compression_type,
    )
    try:
        futures = [
            producer.send(
                names.correlations,
                key=record["correlation_id"].encode(),
                value=codec.encode("Correlation", record),
            )
            for record in correlations
        ]
        for payload in links_messages(codec, correlations, wires):
            futures.append(producer.send(names.links, value=payload, partition=0))
        timeout = settings.kafka.request_timeout_ms / 1000
        for future in futures:
            future.get(timeout=timeout)
    except KafkaError as exc:
        raise ServiceUnavailableError(
            f"sending the backfilled correlations failed ({type(exc).__name__}: {exc}); "
            "nothing was committed, run 'xborder backfill' again (the ids are the same)"
        ) from exc
    finally:
        producer.close()


def commit(settings: Settings, offsets: dict[TopicPartition, int]) -> None:
    """Mark the late topic read up to ``offsets`` for the backfill group."""
    consumer = _consumer(settings, backfill_group_id(settings))
    try:
        consumer.commit({tp: OffsetAndMetadata(end, "", -1) for tp, end in offsets.items()})
    finally:
        consumer.close(autocommit=False)


def run_backfill(
    settings: Settings,
    names: Topics,
    codec: AvroCodec,
    jurisdictions: Jurisdictions,
    config: CorrelatorConfig,
    from_start: bool = False,
    dry_run: bool = False,
) -> BackfillReport:
    """Correlate the late events not yet backfilled (see the module docstring)."""
    late, counts, offsets = read_late(settings, names, from_start)
    report = BackfillReport(late=counts)
    if late:
        times = [v.occurred_ms for v in late.values()]
        lo, hi = min(times) - config.window_ms, max(times) + config.window_ms
        around = read_context(settings, names, codec, jurisdictions, lo, hi)
        context = {v.event_id: v for v in around}
        for event_id, view in late.items():
            context.setdefault(event_id, view)  # even if the accepted topic lost it
        report.context = len(context)
        late_refs = {(v.agency, v.incident_id) for v in late.values()}
        report.correlations, wires = correlate(config, context.values(), late_refs)
        if dry_run:
            return report
        if report.correlations:
            send(settings, names, codec, report.correlations, wires)
    if not dry_run:
        commit(settings, offsets)
        report.sent = True
    return report
