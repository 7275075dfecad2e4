"""``xborder bench verification``: from the second confirming verdict to the agreed
conclusion, while incident events flow at a steady rate (issue 10: p99 <= 500 ms over at
least 1,000 cases at 2,000 events/s).

One run, on fresh topics, consumer groups and data directory (as ``xborder bench latency``):

1. starts ``--workers`` workers (the sink only with ``--sink``: nothing here reads
   ClickHouse) and waits until their groups settle;
2. publishes ``--cases`` cross-border pairs (:func:`xborder.samples.sample_events`: each
   pair shares a vehicle token of its own, so each is a new case) and reads ``cases``
   until every pair has its case;
3. starts a consumer of ``verification`` (librdkafka, in a thread; a record's arrival is
   ``time.time()`` when its fetch returned) and the background load: the looped scenario
   of the latency benchmark, sent at ``--rate`` by
   :func:`xborder.bench.latency_load.publish_paced` in another thread;
4. after ``--warmup-s``, at ``--pace`` cases per second, the case's first agency sends its
   CONFIRM and ``--lead-s`` later the second agency (so the first was applied before the
   second arrives, and the second is the one that completes the agreement);
5. waits for the conclusions, then reads ``correlation.links`` to find when the worker
   forwarded each second verdict into the case stage's log.

Reported in ms over the cases concluded, from the second verdict: to its CaseConclusion's
arrival at the consumer (the target's figure), the same from the broker's acknowledgement
of the verdict, and to the conclusion's Kafka timestamp (set by the worker's producer when
it sent the record); then the path in three legs: verdict sent -> forwarded on
``correlation.links`` (the ``forward_inputs`` agent), forwarded -> conclusion sent (the
``build_cases`` agent), conclusion sent -> received. Also the cases concluded, the load's
achieved rate and CPU seconds per 1,000 load events of each process over the load.

The scenario lies in the past (its last loop must end before now) and the pairs are dated
just before it, so the load never finds the watermark beyond its events; the lifecycle
would then see every case overdue at once, so the run sets
``XBORDER_VERIFICATION__TIMEOUT_HOURS`` to ten years: no escalation burst is measured.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from xborder.agencies import load_agencies
from xborder.bench.kafka_io import Message, publish
from xborder.bench.latency_load import Corpus, Published, publish_paced
from xborder.bench.latency_math import send_lateness_ms, summary
from xborder.bench.probes import CpuMeter, cpu_seconds, machine, require_broker
from xborder.errors import ConfigurationError, ServiceUnavailableError
from xborder.pipeline import Pipeline
from xborder.samples import sample_events
from xborder.settings import Settings
from xborder.topics import Topics, ensure_project_topics
from xborder.verification import Officer, verdict_record
from xborder.wire import WireCodec, codec_for

TARGET_P99_MS = 500.0
"""Issue 10: second confirming verdict to agreed conclusion, p99."""
TARGET_CASES = 1000
"""Issue 10: over at least this many cases."""
NO_ESCALATION_HOURS = 10 * 365 * 24.0
"""Verification timeout of the run (see the module docstring)."""
OFFICER = Officer("be" * 32, "bench-key-1")
"""A pseudonymous officer token: the benchmark holds no real identities."""
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
Position = tuple[str, int, int]
"""(topic, partition, offset) of a message."""


@dataclass(frozen=True)
class VerificationParams:
    """Everything that shapes the benchmark (all of it goes into the report)."""

    cases: int = TARGET_CASES
    rate: float = 2000.0
    """Background incident events per second."""
    workers: int = 1
    pace: float = 10.0
    """Cases per second whose verdicts are sent."""
    lead_s: float = 2.0
    """The first agency's CONFIRM goes out this long before the second's."""
    warmup_s: float = 10.0
    """Background load before the first verdict."""
    tail_s: float = 5.0
    """Background load after the last verdict."""
    seed: int = 7
    scenario_events: int = 200_000
    """Largest scenario generated; the load replays it in loops."""
    timeout_s: float = 120.0
    """Longest wait for the cases to open, and for the last conclusions."""
    sink: bool = False

    def duration_s(self) -> float:
        """Seconds the background load runs."""
        return self.warmup_s + self.lead_s + (self.cases - 1) / self.pace + self.tail_s

    def load_events(self) -> int:
        """Incident events the background load sends."""
        return max(2, math.ceil(self.rate * self.duration_s()))


class Send(NamedTuple):
    """One verdict of the schedule."""

    at_s: float
    """Due time, seconds after the first verdict."""
    case: int
    step: int
    """0: the first agency's CONFIRM; 1: the second's, which completes the agreement."""


def verdict_schedule(cases: int, pace: float, lead_s: float) -> list[Send]:
    """Every verdict in due order: case ``i``'s first at ``i / pace``, its second
    ``lead_s`` later."""
    sends = [Send(i / pace + step * lead_s, i, step) for i in range(cases) for step in (0, 1)]
    return sorted(sends)


@dataclass
class CaseRun:
    """What happened to one case of the run; times are ``time.time()`` seconds, None when
    not seen. Lists hold (first verdict, second verdict)."""

    case_id: str
    agencies: tuple[str, str]
    verdict_ids: list[str] = field(default_factory=lambda: ["", ""])
    sent: list[float | None] = field(default_factory=lambda: [None, None])
    acked: list[float | None] = field(default_factory=lambda: [None, None])
    position: list[Position | None] = field(default_factory=lambda: [None, None])
    accepted_ts: list[float | None] = field(default_factory=lambda: [None, None])
    """Kafka timestamp of the verdict's accepted copy on ``verification``."""
    forwarded_ts: list[float | None] = field(default_factory=lambda: [None, None])
    """Kafka timestamp of the verdict as forwarded onto ``correlation.links``."""
    conclusion_ts: float | None = None
    """Kafka timestamp of the CaseConclusion (the worker's producer sets it on send)."""
    conclusion_arrival: float | None = None


LEGS: dict[str, Callable[[CaseRun], tuple[float | None, float | None]]] = {
    "received - verdict sent": lambda c: (c.sent[1], c.conclusion_arrival),
    "received - verdict acked": lambda c: (c.acked[1], c.conclusion_arrival),
    "conclusion sent - verdict sent": lambda c: (c.sent[1], c.conclusion_ts),
    "  leg 1: verdict sent -> forwarded": lambda c: (c.sent[1], c.forwarded_ts[1]),
    "  leg 2: forwarded -> conclusion sent": lambda c: (c.forwarded_ts[1], c.conclusion_ts),
    "  leg 3: conclusion sent -> received": lambda c: (c.conclusion_ts, c.conclusion_arrival),
}
"""Figure name -> (from, to) of a case; the first is the target's figure."""


def latency_figures(cases: Sequence[CaseRun]) -> dict[str, dict[str, float]]:
    """Summary (ms) of every figure of :data:`LEGS` over the cases where both ends were seen."""
    out = {}
    for name, ends in LEGS.items():
        values = []
        for case in cases:
            start, end = ends(case)
            if start is not None and end is not None:
                values.append((end - start) * 1000)
        out[name] = summary(values)
    return out


def late_firsts(cases: Sequence[CaseRun]) -> int:
    """Cases whose first verdict was not yet accepted (its copy on ``verification``) when
    the second was sent: their conclusion also waited for the first."""
    return sum(
        1
        for c in cases
        if c.sent[1] is not None and (c.accepted_ts[0] is None or c.accepted_ts[0] > c.sent[1])
    )


def case_rows(cases: Sequence[CaseRun]) -> dict[str, Any]:
    """Each case's times (``time.time()`` seconds, 3 decimals) for the JSON report, to see
    when slow cases happened."""
    columns = {
        "first_sent": lambda c: c.sent[0],
        "first_accepted_ts": lambda c: c.accepted_ts[0],
        "second_sent": lambda c: c.sent[1],
        "second_acked": lambda c: c.acked[1],
        "second_forwarded_ts": lambda c: c.forwarded_ts[1],
        "conclusion_ts": lambda c: c.conclusion_ts,
        "conclusion_arrival": lambda c: c.conclusion_arrival,
    }
    return {
        "columns": ["case_id", *columns],
        "rows": [
            [
                c.case_id,
                *(None if (t := get(c)) is None else round(t, 3) for get in columns.values()),
            ]
            for c in cases
        ],
    }


def forwarded_position(payload: bytes | None) -> Position | None:
    """Where a forwarded agency input was written, from its ``correlation.links`` message;
    None for other messages (links, clock ticks)."""
    if not payload or not payload.startswith(b'{"input"'):
        return None
    body = orjson.loads(payload)["input"]
    return (body["topic"], body["partition"], body["offset"])


def target_met(report: Mapping[str, Any]) -> tuple[bool, list[str]]:
    """Whether a run meets issue 10's target, and why not."""
    why = []
    cases = report["cases"]
    if cases["published"] < TARGET_CASES:
        why.append(f"{cases['published']:,} cases run, the target needs {TARGET_CASES:,}")
    if cases["concluded"] < cases["published"]:
        why.append(f"only {cases['concluded']:,} of {cases['published']:,} cases concluded")
    load = report["load"]
    if (load["achieved_per_s"] or 0) < 0.95 * load["offered_per_s"]:
        why.append(f"the load achieved only {load['achieved_per_s']:,.0f}/s")
    p99 = report["latency_ms"]["received - verdict sent"]["p99"]
    if not p99 <= TARGET_P99_MS:
        why.append(f"p99 {p99:,.0f} ms > {TARGET_P99_MS:,.0f} ms")
    return not why, why


# -- the run ------------------------------------------------------------------------------


def run_verification(
    settings: Settings, params: VerificationParams, out_dir: Path, say: Callable[[str], None]
) -> dict[str, Any]:
    """One run of ``params``; returns the report (also written to ``out_dir``)."""
    broker = require_broker(settings)
    out_dir.mkdir(parents=True, exist_ok=True)
    agencies = load_agencies(settings.agencies_config)
    count = params.load_events()
    corpus = Corpus.generate(
        settings, agencies, params.seed, min(params.scenario_events, count), capacity=count
    )
    corpus.ensure(count)
    run_id = uuid.uuid4().hex[:8]
    settings = settings.with_overrides(
        **{
            "data_dir": out_dir / f"run-{run_id}",
            "topics.prefix": f"ver{run_id}.",
            "worker.app_id": f"xborder-verification-{run_id}",
            "sink.group_id": f"xborder-verification-sink-{run_id}",
            "verification.timeout_hours": NO_ESCALATION_HOURS,
        }
    )
    topics = Topics.from_settings(settings, agencies)
    ensure_project_topics(settings, topics)
    codec = codec_for(settings)
    dated = datetime.fromisoformat(corpus.scenario["start"].replace("Z", "+00:00"))
    say(
        f"{params.cases:,} cases, load {params.rate:,.0f}/s for {params.duration_s():.0f} s "
        f"({count:,} events), {params.workers} worker(s), topics {settings.topics.prefix}*"
    )
    pipeline = Pipeline(settings, workers=params.workers, sink=params.sink)
    with pipeline.running():
        pipeline.wait_until_settled()
        cases = open_cases(settings, topics, codec, params.cases, dated, params.timeout_s, say)
        pids = {**pipeline.pids(), **({"broker": broker} if broker else {})}
        measured = _measure(settings, topics, codec, params, corpus, cases, pids, say)
    forwarded = read_forwarded(settings.kafka.bootstrap_servers, topics.links)
    for case in cases:
        for step in (0, 1):
            at = case.position[step]
            case.forwarded_ts[step] = None if at is None else forwarded.get(at)
    published = measured.pop("published")
    sent = published.sent
    concluded = sum(1 for c in cases if c.conclusion_arrival is not None)
    report: dict[str, Any] = {
        "machine": machine(),
        "parameters": asdict(params),
        "settings": {
            "worker.stage_linger_s": settings.worker.stage_linger_s,
            "worker.stage_batch_size": settings.worker.stage_batch_size,
            "worker.ingest_linger_s": settings.worker.ingest_linger_s,
            "verification.linger_s": settings.verification.linger_s,
            "verification.tick_s": settings.verification.tick_s,
        },
        "topics_prefix": settings.topics.prefix,
        "cases": {
            "published": params.cases,
            "opened": len({c.case_id for c in cases}),
            "concluded": concluded,
            "first_not_accepted_before_second": late_firsts(cases),
            "concluded_after_load_ended": sum(
                1 for c in cases if (c.conclusion_arrival or 0) > sent[-1]
            ),
        },
        "latency_ms": latency_figures(cases),
        "load": {
            "offered_per_s": params.rate,
            "events": len(sent),
            "achieved_per_s": round((len(sent) - 1) / (sent[-1] - sent[0]), 1)
            if sent[-1] > sent[0]
            else None,
            "send_late_ms": summary(send_lateness_ms(sent, params.rate)),
            "failed": published.failed,
        },
        **measured,
        "per_case": case_rows(cases),
    }
    report["target_met"], report["why_not"] = target_met(report)
    (out_dir / "verification.json").write_text(json.dumps(report, indent=2))
    return report


def open_cases(
    settings: Settings,
    topics: Topics,
    codec: WireCodec,
    count: int,
    dated: datetime,
    timeout_s: float,
    say: Callable[[str], None],
) -> list[CaseRun]:
    """Publish ``count`` cross-border pairs dated ``dated`` and wait until each is a case."""
    pairs, messages = [], []
    for n in range(count):
        events = sample_events(2, now=dated)
        for event in events:  # the samples' 6 random hex digits collide in 1,000s of pairs
            event["incident_id"] = f"{event['agency'].upper()}-BENCH-{n:06d}-{uuid.uuid4().hex}"
        pairs.append(tuple((e["agency"], e["incident_id"]) for e in events))
        messages += [
            Message(
                topics.incidents(e["agency"]),
                e["incident_id"].encode(),
                codec.encode("IncidentReported", codec.from_json("IncidentReported", e)),
            )
            for e in events
        ]
    publish(settings.kafka.bootstrap_servers, messages)
    say(f"published {count:,} cross-border pairs; waiting for their cases")
    case_of: dict[tuple[str, str], str] = {}

    def take(_: float, __: float, value: dict[str, Any]) -> None:
        for ref in value.get("incidents", ()):
            case_of[(ref["agency"], ref["incident_id"])] = value["case_id"]

    def opened() -> int:
        return sum(a in case_of and b in case_of for a, b in pairs)

    with _Reader(settings.kafka.bootstrap_servers, topics.cases, codec, {"CaseEvent": take}):
        deadline, shown = time.monotonic() + timeout_s, time.monotonic()
        while opened() < count:
            if time.monotonic() > deadline:
                raise ServiceUnavailableError(
                    f"only {opened():,} of {count:,} pairs became "
                    f"cases within {timeout_s:.0f} s; see the worker log in "
                    f"{settings.data_dir / 'logs'}"
                )
            if time.monotonic() - shown > 5:
                shown = time.monotonic()
                say(f"  {opened():,} of {count:,} cases open")
            time.sleep(0.2)
    split = [(a, b) for a, b in pairs if case_of[a] != case_of[b]]
    if split:
        raise ServiceUnavailableError(f"{len(split)} pairs ended in two cases, e.g. {split[0]}")
    return [CaseRun(case_of[a], (a[0], b[0])) for a, b in pairs]


def _measure(
    settings: Settings,
    topics: Topics,
    codec: WireCodec,
    params: VerificationParams,
    corpus: Corpus,
    cases: list[CaseRun],
    pids: dict[str, int],
    say: Callable[[str], None],
) -> dict[str, Any]:
    """Load, verdicts and conclusions (step 3 to 4 of the module docstring)."""
    from confluent_kafka import Producer

    bootstrap = settings.kafka.bootstrap_servers
    by_id = {c.case_id: c for c in cases}
    by_event: dict[str, tuple[CaseRun, int]] = {}

    def accepted(_: float, ts: float, value: dict[str, Any]) -> None:
        found = by_event.get(value["event_id"])
        if found is not None and found[0].accepted_ts[found[1]] is None:
            found[0].accepted_ts[found[1]] = ts

    def concluded(arrival: float, ts: float, value: dict[str, Any]) -> None:
        case = by_id.get(value["case_id"])
        if case is not None and case.conclusion_arrival is None:
            case.conclusion_arrival, case.conclusion_ts = arrival, ts

    def progress(started: float, done: int) -> str:
        n = sum(1 for c in cases if c.conclusion_arrival is not None)
        elapsed = time.time() - started
        due = min(params.load_events(), int(elapsed * params.rate))
        return f"  {elapsed:4.0f} s: load {due:,} due, {done:,} cases verdicted, {n:,} concluded"

    load = _Load(bootstrap, [topics.incidents(a) for a in corpus.agency_ids], corpus, params)
    producer = Producer(
        {"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 0}
    )
    handlers = {"Verdict": accepted, "CaseConclusion": concluded}
    cpu = CpuMeter(pids)
    sampler = BusySampler({**pids, "benchmark": os.getpid()})
    with _Reader(bootstrap, topics.verification, codec, handlers), sampler:
        busy = machine_busy_s()
        harness = cpu_seconds(os.getpid()) or 0.0
        cpu.start()
        load.start()
        started = time.time()
        shown, verdicted = started, 0
        first = started + params.warmup_s
        for send in verdict_schedule(len(cases), params.pace, params.lead_s):
            while (wait := first + send.at_s - time.time()) > 0:
                producer.poll(min(wait, 0.05))
                if time.time() - shown >= 10:
                    shown = time.time()
                    say(progress(started, verdicted))
            case = cases[send.case]
            value = verdict_record(case.agencies[send.step], case.case_id, "CONFIRM", "", OFFICER)
            by_event[value["event_id"]] = (case, send.step)
            case.verdict_ids[send.step] = value["event_id"]
            case.sent[send.step] = time.time()
            producer.produce(
                topics.verdicts(case.agencies[send.step]),
                codec.encode("Verdict", value),
                case.case_id.encode(),
                on_delivery=_on_delivery(case, send.step),
            )
            producer.poll(0)
            verdicted += send.step
        if producer.flush(30):
            raise ServiceUnavailableError("verdicts not acknowledged within 30 s")
        say(progress(started, len(cases)) + "; all verdicts sent")
        load.join()
        cpu.stop()
        busy = machine_busy_s() - busy
        harness = (cpu_seconds(os.getpid()) or 0.0) - harness
        load_s = time.time() - started
        deadline = time.monotonic() + params.timeout_s
        while time.monotonic() < deadline and any(c.conclusion_arrival is None for c in cases):
            time.sleep(0.2)
        say(progress(started, len(cases)))
    if load.error is not None:
        raise load.error
    assert load.published is not None
    return {
        "published": load.published,
        "cpu_seconds_per_1000_events": cpu.per_thousand(params.load_events()),
        "cpu_seconds": {n: round(s, 1) for n, s in cpu.used.items()},
        "load_seconds": round(load_s, 1),
        "machine_cores_busy": {
            "all": round(busy / load_s, 2),
            "benchmark": round(harness / load_s, 2),
            "others": round(max(0.0, busy - harness - sum(cpu.used.values())) / load_s, 2),
        },
        "others_cores_by_second": [[round(t - started, 1), v] for t, v in sampler.others],
    }


def machine_busy_s() -> float:
    """CPU seconds all cores of the machine have been busy since boot (``/proc/stat``:
    everything but idle and iowait), to tell how much other processes took during a run."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / _CLOCK_TICKS


class BusySampler:
    """Every second, the cores that processes other than ``pids`` kept busy: a run on a
    shared machine tells which of its cases met another load."""

    def __init__(self, pids: Mapping[str, int], interval_s: float = 1.0) -> None:
        self.pids, self.interval_s = dict(pids), interval_s
        self.others: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-busy", daemon=True)

    def _used(self) -> tuple[float, float]:
        ours = sum(cpu_seconds(p) or 0.0 for p in self.pids.values())
        return machine_busy_s(), ours

    def _run(self) -> None:
        before, at = self._used(), time.time()
        while not self._stop.wait(self.interval_s):
            now, moment = self._used(), time.time()
            others = (now[0] - before[0]) - (now[1] - before[1])
            self.others.append((moment, round(max(0.0, others) / (moment - at), 2)))
            before, at = now, moment

    def __enter__(self) -> BusySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def _on_delivery(case: CaseRun, step: int) -> Callable[[Any, Any], None]:
    def delivered(error: Any, message: Any) -> None:
        if error is None:
            case.acked[step] = time.time()
            case.position[step] = (message.topic(), message.partition(), message.offset())

    return delivered


class _Load(threading.Thread):
    """The background load (:func:`publish_paced`) in a thread; librdkafka's produce is a
    few microseconds from Python, so it hardly competes with the verdicts for the GIL."""

    def __init__(
        self, bootstrap: str, topics: list[str], corpus: Corpus, params: VerificationParams
    ) -> None:
        super().__init__(name="bench-load", daemon=True)
        self.args = (bootstrap, topics, corpus, params.load_events(), params.rate)
        self.published: Published | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.published = publish_paced(*self.args)
        except BaseException as exc:  # re-raised by the main thread
            self.error = exc


Handler = Callable[[float, float, dict[str, Any]], None]
"""Called with (arrival, Kafka timestamp, value) of each record of one schema."""


class _Reader:
    """Reads a topic from its beginning in a thread (librdkafka, no group, nothing
    committed) and hands each record of the named schemas to its handler."""

    def __init__(
        self, bootstrap: str, topic: str, codec: WireCodec, handlers: Mapping[str, Handler]
    ) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"xborder-bench-verification-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 100,
            }
        )
        partitions = self.consumer.list_topics(topic, timeout=10).topics[topic].partitions
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        self.codec, self.handlers = codec, handlers
        self._stop = threading.Event()
        self._polled = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-reader", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            # poll returns as soon as a message is there; consume(n, timeout) would wait
            # for n messages or the whole timeout, and delay the arrival times
            first = self.consumer.poll(0.1)
            arrival = time.time()
            self._polled.set()
            if first is None:
                continue
            for message in [first, *self.consumer.consume(500, 0)]:
                value = message.value()
                if message.error() is not None or not value:
                    continue
                decoded = self.codec.decode(value, logical_types=False)
                handler = self.handlers.get(decoded.record_name.rpartition(".")[2])
                if handler is not None:
                    handler(arrival, message.timestamp()[1] / 1000, decoded.value)

    def __enter__(self) -> _Reader:
        self._thread.start()
        self._polled.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self.consumer.close()


def read_forwarded(bootstrap: str, links: str) -> dict[Position, float]:
    """Kafka timestamp (s) of every agency input forwarded onto ``correlation.links``, by
    where the input was written."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"xborder-bench-verification-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
        }
    )
    try:
        end = consumer.get_watermark_offsets(TopicPartition(links, 0), timeout=10)[1]
        consumer.assign([TopicPartition(links, 0, OFFSET_BEGINNING)])
        out: dict[Position, float] = {}
        position = 0
        while position < end:
            messages = consumer.consume(1000, 1.0)
            for message in messages:
                if message.error() is not None:
                    continue
                position = (message.offset() or 0) + 1
                at = forwarded_position(message.value())
                if at is not None:
                    out[at] = message.timestamp()[1] / 1000
        return out
    finally:
        consumer.close()


# -- output -------------------------------------------------------------------------------


def format_report(report: Mapping[str, Any]) -> str:
    """The plain-text table of one run."""
    import io

    from xborder.cli import print_table

    out = io.StringIO()
    cases, load = report["cases"], report["load"]
    out.write(
        f"== {cases['concluded']:,} of {cases['published']:,} cases concluded "
        f"({cases['first_not_accepted_before_second']} with the first verdict not yet "
        f"accepted when the second was sent, {cases['concluded_after_load_ended']} after the "
        f"load ended); load {load['offered_per_s']:,.0f}/s offered, "
        f"{load['achieved_per_s'] or 0:,.0f}/s achieved ({load['events']:,} events, "
        f"{load['failed']} failed, sent late p99 {load['send_late_ms']['p99']} ms)\n"
    )
    print_table(
        ["ms from the second verdict", "count", "p50", "p95", "p99", "max"],
        [
            [name, int(s["count"]), s["p50"], s["p95"], s["p99"], s["max"]]
            for name, s in report["latency_ms"].items()
        ],
        out,
    )
    cpu = report["cpu_seconds_per_1000_events"]
    out.write("cpu s/1000 load events: " + ", ".join(f"{n} {v:.3f}" for n, v in cpu.items()))
    cores = report["machine_cores_busy"]
    others = [v for _, v in report["others_cores_by_second"]]
    busy = sum(v > 0.25 for v in others) / len(others) if others else 0.0
    out.write(
        f"\ncores busy during the load: {cores['all']} of {os.cpu_count()} (this benchmark's "
        f"process {cores['benchmark']}, other processes of the machine {cores['others']}; "
        f"they took more than 0.25 cores in {busy:.0%} of its seconds)"
    )
    settings = ", ".join(f"{k} {v}" for k, v in report["settings"].items())
    verdict = "met" if report["target_met"] else "NOT met: " + "; ".join(report["why_not"])
    out.write(f"\nsettings: {settings}\ntarget (p99 <= {TARGET_P99_MS:.0f} ms): {verdict}\n")
    return out.getvalue()


def _say(text: str) -> None:
    print(text, flush=True)


def main(settings: Settings, argv: list[str] | None = None) -> int:
    """``xborder bench verification [--cases 1000] [--rate 2000] [--workers 1] ...``."""
    import argparse

    defaults = VerificationParams()
    parser = argparse.ArgumentParser(
        prog="xborder bench verification",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--cases", type=int, default=defaults.cases)
    parser.add_argument("--rate", type=float, default=defaults.rate, help="load events/s")
    parser.add_argument("--workers", type=int, default=defaults.workers)
    parser.add_argument("--pace", type=float, default=defaults.pace, help="cases/s verdicted")
    parser.add_argument("--lead-s", type=float, default=defaults.lead_s)
    parser.add_argument("--warmup-s", type=float, default=defaults.warmup_s)
    parser.add_argument("--tail-s", type=float, default=defaults.tail_s)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--scenario-events", type=int, default=defaults.scenario_events)
    parser.add_argument("--timeout-s", type=float, default=defaults.timeout_s)
    parser.add_argument("--sink", action="store_true", help="run the ClickHouse sink too")
    parser.add_argument("--out", type=Path, default=settings.data_dir / "bench-verification")
    args = parser.parse_args(argv)
    if args.cases < 1 or args.workers < 1 or min(args.rate, args.pace, args.timeout_s) <= 0:
        raise ConfigurationError(
            "--cases and --workers must be at least 1; --rate, --pace and --timeout-s positive"
        )
    if min(args.lead_s, args.warmup_s, args.tail_s) < 0:
        raise ConfigurationError("--lead-s, --warmup-s and --tail-s must not be negative")
    params = VerificationParams(
        cases=args.cases,
        rate=args.rate,
        workers=args.workers,
        pace=args.pace,
        lead_s=args.lead_s,
        warmup_s=args.warmup_s,
        tail_s=args.tail_s,
        seed=args.seed,
        scenario_events=args.scenario_events,
        timeout_s=args.timeout_s,
        sink=args.sink,
    )
    report = run_verification(settings, params, args.out, _say)
    print(format_report(report))
    print(f"report: {args.out / 'verification.json'}")
    return 0 if report["target_met"] else 1
