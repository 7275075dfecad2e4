"""``xborder status``: what an operator checks first, read from Kafka alone.

- the broker: reachable or not (one line and exit status 1 when not);
- the project's consumer groups, each with its state, members, lag over the topics it
  reads, and the time of the newest message it has committed (Kafka keeps no commit
  times: the log time of the message before each committed offset says how far the group
  has come): the worker's ingest (``<app_id>-ingest``), its correlation, case and
  verification stages (``<app_id>``, Faust's group), the ClickHouse sink, and the
  backfill (``<app_id>-backfill``, whose lag is the late events not yet backfilled);
- dead letters by reason (the ``xborder-dlq-reason`` header of every message on the
  dead-letter topic) and events too late to correlate by source topic (the late topic,
  one message per event, counted once by key).

The last two read their topics whole: a second or two per 100,000 messages.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError

from xborder import kafka_security
from xborder.agencies import load_agencies
from xborder.deadletter import HEADER_REASON
from xborder.errors import ServiceUnavailableError
from xborder.metrics import LATE_SOURCE_HEADER
from xborder.settings import Settings
from xborder.topics import Topics

PROBE_TIMEOUT_MS = 3_000
"""How long the first contact with the broker may take before it counts as unreachable."""
SCAN_STALL_S = 10.0
RETRY_S = 15.0
"""How long a retriable answer (no group coordinator yet, a leader moving) is retried."""


@dataclass
class GroupStatus:
    """One consumer group of the project."""

    role: str
    group_id: str
    topics: list[str]
    state: str
    """The broker's view: Stable, Empty (no member), PreparingRebalance, ...; absent when
    the broker does not know the group (it never committed)."""
    members: int
    lag: int
    """Messages in ``topics`` after the group's committed offsets."""
    lag_by_topic: dict[str, int] = field(default_factory=dict)
    committed_through: str | None = None
    """Log time (UTC, ISO 8601) of the newest message the group has committed."""


@dataclass
class Status:
    """Everything ``xborder status`` shows."""

    bootstrap_servers: str
    brokers: int
    groups: list[GroupStatus]
    dead_letters: dict[str, int]
    """Dead letters by reason."""
    too_late: dict[str, int]
    """Events too late to correlate, by source topic."""

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        broker = {"reachable": True, "bootstrap_servers": data.pop("bootstrap_servers")}
        broker["brokers"] = data.pop("brokers")
        return {"broker": broker, **data}


def project_groups(settings: Settings, names: Topics) -> list[tuple[str, str, list[str]]]:
    """(role, group id, topics it reads) of every consumer group the project runs."""
    worker = settings.worker
    return [
        ("worker ingest", worker.ingest_group_id, names.all_incidents),
        ("worker stages", worker.app_id, [names.blocks, names.links, *names.all_verdicts]),
        ("sink", settings.sink.group_id, names.sunk()),
        ("backfill", f"{worker.app_id}-backfill", [names.late]),
    ]


def unreachable(settings: Settings, why: str) -> ServiceUnavailableError:
    return ServiceUnavailableError(
        f"Kafka at {settings.kafka.bootstrap_servers} is not reachable ({why}); start it "
        "with 'xborder kafka up' or set XBORDER_KAFKA__BOOTSTRAP_SERVERS"
    )


def collect_status(settings: Settings, names: Topics) -> Status:
    """Read the status from the broker; ServiceUnavailableError when it cannot be reached."""
    bootstrap = settings.kafka.bootstrap_servers
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            **kafka_security.kafka_python(settings),
            client_id="xborder-status",
            request_timeout_ms=settings.kafka.request_timeout_ms,
            bootstrap_timeout_ms=PROBE_TIMEOUT_MS,
        )
    except (KafkaError, OSError, ValueError) as exc:
        raise unreachable(settings, type(exc).__name__) from exc
    roles = project_groups(settings, names)
    ids = [group_id for _, group_id, _ in roles]
    deadline = time.monotonic() + RETRY_S
    try:
        while True:
            try:
                brokers = len(admin.describe_cluster().get("brokers") or ())
                described = admin.describe_groups(ids)
                committed = admin.list_group_offsets(dict.fromkeys(ids))
                break
            except KafkaError as exc:
                # a fresh cluster has no group coordinator until its offsets topic exists
                if not exc.retriable or time.monotonic() > deadline:
                    raise unreachable(settings, type(exc).__name__) from exc
                time.sleep(0.5)
            except OSError as exc:
                raise unreachable(settings, type(exc).__name__) from exc
    finally:
        admin.close()
    consumer = _consumer(settings)
    try:
        topics = sorted({t for _, _, group_topics in roles for t in group_topics})
        partitions = [
            TopicPartition(t, p)
            for t in topics
            for p in sorted(consumer.partitions_for_topic(t) or ())
        ]
        ends = dict(consumer.end_offsets(partitions)) if partitions else {}
        begins = dict(consumer.beginning_offsets(partitions)) if partitions else {}
        groups = []
        for role, group_id, group_topics in roles:
            info = described.get(group_id) or {}
            offsets = {tp: o.offset for tp, o in (committed.get(group_id) or {}).items()}
            by_topic: dict[str, int] = {}
            last: dict[TopicPartition, int] = {}
            for tp in partitions:
                if tp.topic not in group_topics:
                    continue
                position = offsets.get(tp)
                if position is None or position < 0:
                    position = begins[tp]  # no commit: the group starts at the beginning
                elif position > begins[tp]:
                    last[tp] = position - 1
                by_topic[tp.topic] = by_topic.get(tp.topic, 0) + max(0, ends[tp] - position)
            groups.append(
                GroupStatus(
                    role=role,
                    group_id=group_id,
                    topics=list(group_topics),
                    # a group that never committed is unknown to the broker ("Dead")
                    state="absent" if info.get("error") else str(info.get("group_state")),
                    members=len(info.get("members") or ()),
                    lag=sum(by_topic.values()),
                    lag_by_topic={t: n for t, n in by_topic.items() if n},
                    committed_through=_iso(max(_log_times(consumer, last).values(), default=None)),
                )
            )
        dead = _count_headers(consumer, names.dead_letters, HEADER_REASON, by_key=False)
        for quarantine in names.all_quarantine:  # raw-identifier refusals: counted, not shown
            dead += _count_headers(consumer, quarantine, HEADER_REASON, by_key=False)
        late = _count_headers(consumer, names.late, LATE_SOURCE_HEADER, by_key=True)
    except KafkaError as exc:
        raise unreachable(settings, type(exc).__name__) from exc
    finally:
        consumer.close(autocommit=False)
    return Status(bootstrap, brokers, groups, dict(dead), dict(late))


def _consumer(settings: Settings) -> KafkaConsumer:
    return KafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        **kafka_security.kafka_python(settings),
        client_id="xborder-status",
        enable_auto_commit=False,
        request_timeout_ms=settings.kafka.request_timeout_ms,
        bootstrap_timeout_ms=PROBE_TIMEOUT_MS,
    )


def _partitions(consumer: KafkaConsumer, topic: str) -> list[TopicPartition]:
    return [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


def _read(
    consumer: KafkaConsumer, starts: dict[TopicPartition, int], ends: dict[TopicPartition, int]
) -> Iterable[Any]:
    """Records of the partitions from ``starts`` (inclusive) to ``ends`` (exclusive)."""
    todo = {tp for tp in starts if starts[tp] < ends[tp]}
    if not todo:
        return
    consumer.assign(sorted(todo, key=lambda tp: (tp.topic, tp.partition)))
    consumer.resume(*consumer.paused())  # a partition assigned again stays paused
    for tp in todo:
        consumer.seek(tp, starts[tp])
    stalled = time.monotonic() + SCAN_STALL_S
    while todo:
        fetched = consumer.poll(timeout_ms=500, max_records=10_000)
        if fetched:
            stalled = time.monotonic() + SCAN_STALL_S
        elif time.monotonic() > stalled:
            raise ServiceUnavailableError(
                f"reading {', '.join(sorted(str(tp) for tp in todo))} stalled for "
                f"{SCAN_STALL_S:.0f} s; is the broker overloaded?"
            )
        for tp, records in fetched.items():
            for record in records:
                if record.offset < ends[tp]:
                    yield record
            if tp in todo and consumer.position(tp) >= ends[tp]:
                todo.discard(tp)
                consumer.pause(tp)


def _log_times(
    consumer: KafkaConsumer, offsets: dict[TopicPartition, int]
) -> dict[TopicPartition, int]:
    """Log time (ms) of the message at each offset."""
    times: dict[TopicPartition, int] = {}
    for record in _read(consumer, offsets, {tp: o + 1 for tp, o in offsets.items()}):
        times[TopicPartition(record.topic, record.partition)] = record.timestamp
    return times


def _count_headers(consumer: KafkaConsumer, topic: str, header: str, by_key: bool) -> Counter[str]:
    """Messages of ``topic`` per value of ``header`` (each key once with ``by_key``)."""
    partitions = [
        TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())
    ]
    if not partitions:
        return Counter()
    ends = dict(consumer.end_offsets(partitions))
    begins = dict(consumer.beginning_offsets(partitions))
    counts: Counter[str] = Counter()
    seen: set[bytes] = set()
    for record in _read(consumer, begins, ends):
        if by_key and record.key is not None:
            if record.key in seen:
                continue
            seen.add(record.key)
        value = dict(record.headers or ()).get(header)
        counts[value.decode("utf-8", "replace") if value else "(none)"] += 1
    return counts


def format_status(status: Status, out: TextIO) -> None:
    """The plain-text report."""
    from xborder.cli import print_table

    out.write(
        f"broker: reachable at {status.bootstrap_servers} ({status.brokers} "
        f"broker{'s' if status.brokers != 1 else ''})\n\n"
    )
    print_table(
        ["group", "id", "state", "members", "lag", "committed through"],
        [
            (g.role, g.group_id, g.state, g.members, g.lag, g.committed_through or "-")
            for g in status.groups
        ],
        out,
    )
    lagging = [(g.role, t, n) for g in status.groups for t, n in sorted(g.lag_by_topic.items())]
    if lagging:
        out.write("\n")
        print_table(["lag of", "topic", "messages"], lagging, out)
    out.write("\n")
    dead = sorted(status.dead_letters.items())
    print_table(["dead letters by reason", "messages"], dead or [("(none)", 0)], out)
    out.write("\n")
    late = sorted(status.too_late.items())
    print_table(["too late to correlate, by source", "events"], late or [("(none)", 0)], out)
    backfill = next((g for g in status.groups if g.role == "backfill"), None)
    if late and backfill is not None and backfill.lag:
        out.write(
            f"\n{backfill.lag} late events not yet backfilled: run 'xborder backfill' "
            "(docs/operations.md, Late data and backfills)\n"
        )


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    """``xborder status``: 0 when the broker answered, 1 with one line when it did not."""
    names = Topics.from_settings(settings, load_agencies(settings.agencies_config))
    try:
        status = collect_status(settings, names)
    except ServiceUnavailableError as exc:
        print(f"xborder status: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(status.as_dict(), indent=2))
    else:
        format_status(status, sys.stdout)
    return 0


def add_status_parser(sub: Any) -> None:
    """The ``status`` subcommand."""
    status = sub.add_parser(
        "status",
        help="broker, consumer groups with lag, dead letters by reason, too-late events",
    )
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.set_defaults(handler=cmd_status)
