"""What ``xborder bench latency`` watches while the load runs, in a process of its own.

A child process (so that neither its fetching nor its sampling competes with the paced
publisher for the benchmark's interpreter lock) that

- reads every output topic from its beginning (the run's topics are fresh) and keeps
  each message with its arrival time (``time.time()`` when the fetch returned it);
- every ``commit_interval_s`` records the total the sink's group has committed on
  ``incidents.accepted`` (the sink commits only after its insert: rows are in ClickHouse);
- every ``lag_interval_s`` records each consumer group's lag on its topics (end offsets
  minus committed offsets, as :func:`xborder.kafka_admin.group_lag` counts it, on clients
  kept open between samples instead of one new consumer per call) and the messages
  written to those topics so far; and prints a progress line every 10 s.

Messages are decoded only after :meth:`Probe.stop`, so decoding costs nothing during the
measurement; the parent gets compact records (:mod:`xborder.bench.latency_math`).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import pickle
import sys
import time
from dataclasses import dataclass, field
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any

from xborder.bench.latency_math import AlertSeen, CaseSeen, CorrelationSeen, Ref
from xborder.errors import ServiceUnavailableError
from xborder.settings import Settings

GroupSpec = tuple[str, tuple[str, ...]]
"""(consumer group id, topics it consumes)."""


@dataclass(frozen=True)
class ProbeConfig:
    """What to watch (everything picklable: it crosses into the child process)."""

    settings: Settings
    correlations: str
    cases: str
    alerts: tuple[str, ...]
    partitions: dict[str, int]
    """Partition count of every topic named here."""
    groups: dict[str, GroupSpec]
    """Report name -> the group and topics whose lag is sampled."""
    sink_commits: GroupSpec
    """The sink's group and ``incidents.accepted``: the committed total sampled often."""
    label: str = ""
    """Prefix of the progress lines."""
    lag_interval_s: float = 1.0
    commit_interval_s: float = 0.2
    progress_interval_s: float = 10.0


@dataclass
class ProbeData:
    """Everything the probe saw; times are ``time.time()`` seconds."""

    correlations: list[CorrelationSeen] = field(default_factory=list)
    cases: list[CaseSeen] = field(default_factory=list)
    alerts: list[AlertSeen] = field(default_factory=list)
    undecodable: int = 0
    commits: list[tuple[float, int]] = field(default_factory=list)
    """(time, committed total of the sink's group on incidents.accepted)."""
    lags: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    """Group name -> (time, lag) samples."""
    inputs: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    """Group name -> (time, messages written to its topics so far)."""


class Probe:
    """The parent's handle on the probe process."""

    def __init__(self, config: ProbeConfig, out_path: Path) -> None:
        self.config = config
        self.out_path = out_path
        context = multiprocessing.get_context("spawn")
        self._ready = context.Event()
        self._stop = context.Event()
        self._publish_start: Synchronized[float] = context.Value("d", 0.0)
        self._process = context.Process(
            target=_child,
            args=(config, self._ready, self._stop, self._publish_start, str(out_path)),
            name="latency-probe",
            daemon=True,
        )

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def start(self, timeout_s: float = 60.0) -> None:
        """Start the process; return once its consumers are positioned."""
        self._process.start()
        deadline = time.monotonic() + timeout_s
        while not self._ready.wait(0.2):
            if not self._process.is_alive() or time.monotonic() > deadline:
                self._process.kill()
                raise ServiceUnavailableError(
                    "the latency probe did not connect to "
                    f"{self.config.settings.kafka.bootstrap_servers} within {timeout_s:.0f} s "
                    f"(exit code {self._process.exitcode})"
                )

    def publishing_from(self, at: float) -> None:
        """Tell the probe when publishing started (for its progress lines)."""
        self._publish_start.value = at

    def stop(self, timeout_s: float = 600.0) -> ProbeData:
        """Stop sampling, let the child decode what it collected, and return it."""
        self._stop.set()
        self._process.join(timeout_s)
        if self._process.is_alive():
            self._process.kill()
            raise ServiceUnavailableError(f"the latency probe did not stop within {timeout_s} s")
        if self._process.exitcode != 0 or not self.out_path.exists():
            raise ServiceUnavailableError(
                f"the latency probe failed (exit code {self._process.exitcode}); see stderr above"
            )
        with self.out_path.open("rb") as handle:
            data: ProbeData = pickle.load(handle)
        self.out_path.unlink()
        return data


def _child(config: ProbeConfig, ready: Any, stop: Any, publish_start: Any, out_path: str) -> None:
    data = asyncio.run(_watch(config, ready, stop, publish_start))
    with open(out_path, "wb") as handle:
        pickle.dump(data, handle, protocol=pickle.HIGHEST_PROTOCOL)


_BY_TEXT = "SUBJECT_BOTH_SIDES"
"""The alert kind whose description :func:`~xborder.bench.latency_math.alert_inputs` may read."""

Raw = tuple[float, str, bytes]
"""(arrival, topic, value) of one collected message."""


async def _watch(config: ProbeConfig, ready: Any, stop: Any, publish_start: Any) -> ProbeData:
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    from xborder import kafka_security

    bootstrap = config.settings.kafka.bootstrap_servers
    outputs = [config.correlations, config.cases, *config.alerts]
    collector = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        fetch_max_wait_ms=100,
        client_id="xborder-latency-collector",
        **(security := kafka_security.aiokafka(config.settings)),
    )
    offsets = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, client_id="xborder-latency-offsets", **security
    )
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, client_id="xborder-latency-admin", **security
    )
    await collector.start()
    await offsets.start()
    await admin.start()
    raw: list[Raw] = []
    data = ProbeData()
    try:
        assigned = [TopicPartition(t, p) for t in outputs for p in range(config.partitions[t])]
        collector.assign(assigned)
        await collector.seek_to_beginning(*assigned)
        ready.set()
        sampler = asyncio.create_task(_sample(config, offsets, admin, data, stop, publish_start))
        while not stop.is_set():
            batches = await collector.getmany(timeout_ms=100)
            now = time.time()
            for tp, records in batches.items():
                raw.extend((now, tp.topic, r.value) for r in records if r.value is not None)
        await sampler
    finally:
        await collector.stop()
        await offsets.stop()
        await admin.close()
    _decode(config, raw, data)
    return data


async def _sample(
    config: ProbeConfig, offsets: Any, admin: Any, data: ProbeData, stop: Any, publish_start: Any
) -> None:
    from aiokafka import TopicPartition
    from aiokafka.errors import KafkaError

    coordinators: dict[str, int] = {}

    async def committed(group: str) -> dict[Any, int]:
        if group not in coordinators:
            coordinators[group] = await admin.find_coordinator(group)
        found = await admin.list_consumer_group_offsets(group, coordinators[group])
        return {tp: meta.offset for tp, meta in found.items() if meta.offset >= 0}

    partitions = {
        name: [TopicPartition(t, p) for t in topics for p in range(config.partitions[t])]
        for name, (_, topics) in config.groups.items()
    }
    every = sorted({tp for tps in partitions.values() for tp in tps})
    sink_group, (accepted, *_) = config.sink_commits
    last_lags = 0.0
    shown = (0.0, 0)  # (time, published) of the last progress line
    while not stop.is_set():
        now = time.time()
        try:
            done = await committed(sink_group)
            data.commits.append(
                (time.time(), sum(o for tp, o in done.items() if tp.topic == accepted))
            )
            if now - last_lags >= config.lag_interval_s:
                last_lags = now
                ends = await offsets.end_offsets(every)
                by_group: dict[str, dict[Any, int]] = {}
                for group, _ in config.groups.values():
                    if group not in by_group:
                        by_group[group] = await committed(group)
                at = time.time()
                for name, (group, _) in config.groups.items():
                    tps = partitions[name]
                    lag = sum(max(0, ends[tp] - by_group[group].get(tp, 0)) for tp in tps)
                    data.lags.setdefault(name, []).append((at, lag))
                    data.inputs.setdefault(name, []).append((at, sum(ends[tp] for tp in tps)))
                started = publish_start.value
                if started and now - max(shown[0], started) >= config.progress_interval_s:
                    shown = _progress(config, data, now - started, shown)
        except KafkaError as exc:  # a slow coordinator: skip this sample, keep going
            print(f"{config.label}: sample skipped ({type(exc).__name__})", file=sys.stderr)
        await asyncio.sleep(max(0.0, config.commit_interval_s - (time.time() - now)))


def _progress(
    config: ProbeConfig, data: ProbeData, elapsed: float, shown: tuple[float, int]
) -> tuple[float, int]:
    """Print one progress line: published so far (the first group's input) and its rate
    since the last line, and every group's lag."""
    at, published = next(iter(data.inputs.values()))[-1] if data.inputs else (0.0, 0)
    since = shown if shown[0] else (at - elapsed, 0)  # the first line: since publishing began
    rate = (published - since[1]) / (at - since[0]) if at > since[0] else 0.0
    lags = ", ".join(f"{name} {int(points[-1][1]):,}" for name, points in data.lags.items())
    print(
        f"{config.label}: {elapsed:5.0f} s, published {int(published):,} ({rate:,.0f}/s), "
        f"lag {lags}",
        file=sys.stderr,
        flush=True,
    )
    return at, int(published)


def _decode(config: ProbeConfig, raw: list[Raw], data: ProbeData) -> None:
    from xborder.errors import InvalidRecordError
    from xborder.wire import codec_for

    codec = codec_for(config.settings)

    def ref(value: dict[str, Any]) -> Ref:
        return (value["agency"], value["incident_id"])

    try:
        for at, topic, payload in raw:
            try:
                value = codec.decode(payload).value
            except InvalidRecordError:
                data.undecodable += 1
                continue
            if topic == config.correlations:
                data.correlations.append(
                    CorrelationSeen(
                        at,
                        topic,
                        value["correlation_id"],
                        ref(value["incident_a"]),
                        ref(value["incident_b"]),
                    )
                )
            elif topic == config.cases:
                data.cases.append(
                    CaseSeen(
                        at,
                        topic,
                        value["case_event_id"],
                        value["case_id"],
                        value["event_type"],
                        tuple(ref(r) for r in value["incidents"]),
                        tuple(value["correlation_ids"]),
                        tuple(value["merged_case_ids"]),
                    )
                )
            else:
                data.alerts.append(
                    AlertSeen(
                        at,
                        topic,
                        value["identifier"],
                        value["alert_kind"],
                        tuple(value["correlation_ids"]),
                        value["case_id"],
                        # only a pair that did not link is traced by its description
                        (value["description"] or "") if value["alert_kind"] == _BY_TEXT else "",
                    )
                )
    finally:
        codec.close()
