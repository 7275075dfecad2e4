"""``xborder bench``: the pipeline as deployed on one machine, measured the same way every time.

Against a running broker (``xborder kafka up``), with fresh topics, consumer groups and
an embedded ClickHouse directory per run, it

1. generates a scenario with ground truth and pre-encodes its events;
2. **throughput**: starts the workers and the sink, publishes everything as fast as
   the producer goes, and times first publish to the sink having committed the last
   row (the sink commits only after its insert, so every row is then visible);
3. **raw floor**: a bare aiokafka consumer that only fetches and Avro-decodes the same
   incident topics on the same broker;
4. **latency**: publishes border-zone incidents at a fixed offered load and times each
   from its send to its BORDER_ZONE_INCIDENT alert arriving on the alert topic;
5. **quality**: stops the sink and scores the correlations and cases in ClickHouse
   against the ground truth;

sampling every process's memory throughout. It prints the figures and writes
``report.json`` and ``report.html`` (charts) into the output directory.
"""

from __future__ import annotations

import copy
import json
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer
from tqdm import tqdm

from xborder import kafka_security
from xborder.agencies import load_agencies
from xborder.bench import chart
from xborder.bench.kafka_io import Collector, Message, publish, raw_floor
from xborder.bench.probes import CpuMeter, MemorySampler, machine, require_broker
from xborder.clickhouse import get_client
from xborder.errors import ServiceUnavailableError
from xborder.geo import jurisdictions_for
from xborder.kafka_admin import committed_lag, end_offsets
from xborder.pipeline import Pipeline
from xborder.quality import evaluate_clickhouse, format_report
from xborder.scenario import ScenarioConfig, generate_scenario, iter_events, shuffled_within
from xborder.settings import Settings
from xborder.topics import Topics, ensure_project_topics
from xborder.wire import codec_for


@dataclass(frozen=True)
class BenchParams:
    """Everything that shapes a run (all of it goes into the report)."""

    events: int = 200_000
    seed: int = 7
    workers: int = 2
    latency_rate: float = 2_000.0
    latency_seconds: float = 15.0
    timeout_s: float = 1_800.0
    shuffled: bool = False
    """Publish the events shuffled within the correlator's allowed lateness instead of in
    the scenario's publish order (``xborder.scenario.shuffled_within``)."""


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


LATENCY_PREFIX = "LAT-"
"""Incident ids of the latency probe's incidents; the quality score leaves them out."""
_PROBE_CATEGORIES = ("TRAFFIC", "THEFT", "DRUGS", "GAMBLING")
"""Mutually unrelated categories: each agency's probe clones get one, so clones placed at
one time near the boundary never match another agency's as double reports."""


def _latency_events(documents: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """``count`` fresh border-zone incidents cloned from ``documents``: new ids, times now,
    no subjects and an unrelated category per agency (they raise border-zone alerts and
    must link neither to the scenario's nor to each other)."""
    now_ms = int(time.time() * 1000)
    agencies = sorted({doc["agency"] for doc in documents})
    out = []
    for n in range(count):
        doc = copy.deepcopy(documents[n % len(documents)])
        doc["category"] = _PROBE_CATEGORIES[agencies.index(doc["agency"]) % 4]
        doc["event_id"] = str(uuid.uuid4())
        doc["incident_id"] = f"{LATENCY_PREFIX}{n:07d}-{uuid.uuid4().hex[:6]}"
        doc["subjects"] = []  # no shared tokens: these must not link to anything
        doc["occurred_at"] = now_ms - 600_000
        doc["reported_at"] = now_ms - 300_000
        out.append(doc)
    return out


def run_bench(settings: Settings, params: BenchParams, out_dir: Path) -> dict[str, Any]:
    """One full benchmark run; returns the report (also written to ``out_dir``)."""
    broker = require_broker(settings)
    run = uuid.uuid4().hex[:8]
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = settings.with_overrides(
        **{
            "data_dir": out_dir / f"run-{run}",
            "topics.prefix": f"bench{run}.",
            "worker.app_id": f"xborder-bench-{run}",
            "sink.group_id": f"xborder-bench-sink-{run}",
        }
    )
    agencies = load_agencies(settings.agencies_config)
    jurisdictions = jurisdictions_for(agencies)
    topics = Topics.from_settings(settings, agencies)
    if kafka_security.is_secure(settings):  # this run's topics, groups and app id
        kafka_security.provision(settings, list(agencies.ids))
    ensure_project_topics(settings, topics)
    codec = codec_for(settings)
    bootstrap = settings.kafka.bootstrap_servers
    security = kafka_security.aiokafka(settings)
    say = _printer()

    # 1. scenario
    config = ScenarioConfig(seed=params.seed, events=params.events)
    with tqdm(total=config.events, desc="generating", unit="ev", file=sys.stderr) as bar:
        scenario = generate_scenario(config, agencies, lambda done, _: bar.update(done - bar.n))
    messages: list[Message] = []
    border_docs: list[dict[str, Any]] = []
    skipped = 0
    events = iter_events(scenario)
    if params.shuffled:
        lateness = timedelta(hours=settings.correlation.allowed_lateness_hours)
        events = iter(shuffled_within(events, lateness, seed=params.seed))
    for event in tqdm(events, desc="encoding", unit="ev", file=sys.stderr):
        if event.kind == "malformed" or event.document is None:
            skipped += 1  # the producer library rejects these before they reach Kafka
            continue
        value = codec.from_json("IncidentReported", event.document)
        messages.append(
            Message(
                topics.incidents(event.agency),
                event.document["incident_id"].encode(),
                codec.encode("IncidentReported", value),
            )
        )
        if len(border_docs) < 500 and event.kind == "incident":
            location = event.document["location"]
            if jurisdictions.locate(location["lat"], location["lon"]).in_border_zone:
                border_docs.append(event.document)
    say(f"scenario: {len(messages)} events to publish, {skipped} malformed lines left out")

    pipeline = Pipeline(settings, workers=params.workers)
    sampler: MemorySampler | None = None
    throughput_series: list[tuple[float, float]] = []
    with pipeline.running():
        pipeline.wait_until_settled()  # no rebalance while the load arrives
        # one lag reader for the whole run: a client per poll would make the broker do a
        # connection's set-up (in secure mode a TLS handshake and a SCRAM exchange) twice
        # a second, which it would then count as the pipeline's CPU
        lag_reader = KafkaConsumer(
            bootstrap_servers=bootstrap,
            client_id="xborder-bench-lag",
            group_id=settings.worker.ingest_group_id,
            enable_auto_commit=False,
            **security,
        )
        sampler = MemorySampler(pipeline.pids())
        sampler.start()
        cpu = CpuMeter({**pipeline.pids(), **({"broker": broker} if broker else {})})
        # 2. throughput
        cpu.start()
        started = time.monotonic()
        with tqdm(total=len(messages), desc="publishing", unit="ev", file=sys.stderr) as bar:
            publish(bootstrap, messages, None, lambda n: bar.update(n - bar.n), security)
            bar.update(len(messages) - bar.n)
        published_s = time.monotonic() - started
        last = (started, 0)
        deadline = started + params.timeout_s
        while True:
            pipeline.check_alive()
            lag = committed_lag(lag_reader, end_offsets(lag_reader, topics.all_incidents))
            done = len(messages) - lag
            now = time.monotonic()
            if now > last[0]:
                throughput_series.append((now - started, (done - last[1]) / (now - last[0])))
            last = (now, done)
            if lag == 0:
                break
            if now > deadline:
                raise ServiceUnavailableError(f"the workers still lag {lag} after the timeout")
            time.sleep(0.5)
        pipeline.wait_until_drained(topics, timeout_s=params.timeout_s)
        end_to_end_s = time.monotonic() - started
        cpu.stop()
        lag_reader.close(autocommit=False)
        say(f"end to end: {len(messages)} events in {end_to_end_s:.1f} s")
        # 3. raw floor on the same broker and topics
        floor = raw_floor(
            bootstrap,
            topics.all_incidents,
            settings.topics.partitions,
            len(messages),
            codec.store.current("IncidentReported").parsed,
            security,
        )
        # 4. latency at a fixed offered load
        latency_ms = _measure_latency(settings, topics, codec, border_docs, params)
        pipeline.wait_until_drained(topics, timeout_s=params.timeout_s)
        sampler.stop()
    # 5. quality (the sink has stopped: the embedded ClickHouse is free)
    client = get_client(settings)
    try:
        quality = evaluate_clickhouse(
            client, scenario.truth, ignore=lambda ref: ref[1].startswith(LATENCY_PREFIX)
        )
        alert_counts: dict[str, int] = {
            str(kind): int(n)
            for kind, n in client.query(
                "SELECT alert_kind, count() FROM alerts FINAL GROUP BY alert_kind"
            ).result_rows
        }
        rows = client.query("SELECT count() FROM incidents").result_rows[0][0]
    finally:
        client.close()

    report = {
        "machine": machine(),
        "parameters": {**asdict(params), "scenario": config.as_json()},
        "events_published": len(messages),
        "publish_seconds": round(published_s, 2),
        "raw_floor_events_per_s": round(floor),
        "end_to_end_events_per_s": round(len(messages) / end_to_end_s),
        "end_to_end_ratio_to_floor": (
            round(len(messages) / end_to_end_s / floor, 3) if floor else None
        ),
        "sink_rows_per_s": round(rows / end_to_end_s),
        "cpu_seconds_per_1000_events": cpu.per_thousand(len(messages)),
        "latency_ms": {
            "offered_events_per_s": params.latency_rate,
            "alerts_measured": len(latency_ms),
            "p50": round(_percentile(latency_ms, 50), 1),
            "p95": round(_percentile(latency_ms, 95), 1),
            "p99": round(_percentile(latency_ms, 99), 1),
        },
        "memory": sampler.summary() if sampler else {},
        "quality": quality.as_dict(),
        "alerts_by_kind": alert_counts,
    }
    (out_dir / "report.json").write_text(json.dumps(report, indent=2))
    memory_series = dict(sampler.samples) if sampler else {}
    (out_dir / "report.html").write_text(
        chart.render(
            report,
            {
                "throughput": {"workers (events/s)": throughput_series},
                "latency_ms": latency_ms,
                "memory": memory_series,
            },
        )
    )
    say(format_report(quality))
    return report


def _measure_latency(
    settings: Settings,
    topics: Topics,
    codec: Any,
    documents: list[dict[str, Any]],
    params: BenchParams,
) -> list[float]:
    """Send border-zone incidents at the offered load; ms from send to their alert."""
    from streams.correlation.patterns import alert_id

    count = int(params.latency_rate * params.latency_seconds)
    fresh = _latency_events(documents, count)
    messages = [
        Message(
            topics.incidents(doc["agency"]),
            doc["incident_id"].encode(),
            codec.encode("IncidentReported", codec.from_json("IncidentReported", doc)),
        )
        for doc in fresh
    ]
    security = kafka_security.aiokafka(settings)
    collector = Collector(settings.kafka.bootstrap_servers, topics.all_alerts, security)
    collector.start()
    sent_at = publish(
        settings.kafka.bootstrap_servers, messages, rate=params.latency_rate, security=security
    )
    expected = {
        alert_id("BORDER_ZONE_INCIDENT", doc["agency"], doc["incident_id"]).encode(): t
        for doc, t in zip(fresh, sent_at, strict=True)
    }
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        arrived = {key for _, key in list(collector.received)}
        if all(key in arrived for key in expected):
            break
        time.sleep(0.5)
    collector.stop()
    first_arrival: dict[bytes, float] = {}
    for at, key in collector.received:
        first_arrival.setdefault(key, at)
    return [
        (first_arrival[key] - sent) * 1000 for key, sent in expected.items() if key in first_arrival
    ]


def _printer() -> Any:
    def say(text: str) -> None:
        print(text, flush=True)

    return say


def main(settings: Settings, argv: list[str] | None = None) -> int:
    """``xborder bench pipeline [--events N] [--workers N] ... [--out DIR]``."""
    import argparse

    defaults = BenchParams()
    parser = argparse.ArgumentParser(prog="xborder bench pipeline", description=__doc__)
    parser.add_argument("--events", type=int, default=defaults.events)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--workers", type=int, default=defaults.workers)
    parser.add_argument("--latency-rate", type=float, default=defaults.latency_rate)
    parser.add_argument("--latency-seconds", type=float, default=defaults.latency_seconds)
    parser.add_argument(
        "--shuffled",
        action="store_true",
        help="publish the events shuffled within the allowed lateness, not in publish order",
    )
    parser.add_argument("--out", type=Path, default=settings.data_dir / "bench")
    args = parser.parse_args(argv)
    params = BenchParams(
        events=args.events,
        seed=args.seed,
        workers=args.workers,
        latency_rate=args.latency_rate,
        latency_seconds=args.latency_seconds,
        shuffled=args.shuffled,
    )
    report = run_bench(settings, params, args.out)
    print(json.dumps({k: v for k, v in report.items() if k not in ("parameters",)}, indent=2))
    print(f"report: {args.out / 'report.json'}, charts: {args.out / 'report.html'}")
    return 0
