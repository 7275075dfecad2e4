"""``xborder bench stages``: the Faust worker timed on its own, without the sink.

For each worker count, on fresh topics and consumer groups of the running broker:

* **worker**: ingest, routing, correlation and cases together. The workers start and
  settle first; then the whole scenario is published at once, and the clock runs from
  the first publish until the case stage has committed the last links message.
* **correlation stage alone**: workers with ingest off (``XBORDER_WORKER__INGEST=false``).
  The benchmark routes the scenario itself, with the worker's own ``Router``, into
  ``correlation.blocks`` messages (one per target partition for each batch of
  ``batch_size`` events from one source partition, as the ingest agent sends them) and
  publishes them at once; the clock runs until the last links message is committed.
  Border-zone alerts are raised by routing, so they are not part of this stage.

Each reports events/s (scenario events over the drain time), the correlations and case
events written (one scenario gives the same counts in every run) and each worker's RSS.
The drain is seen through committed offsets, polled every 0.5 s with commits every
second, so a figure can be low by up to about 1.5 s over the run, never high.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
import zlib
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from streams.flows.correlate import Router, encode_blocks, source_id
from streams.worker import correlator_config
from xborder.agencies import load_agencies
from xborder.bench.kafka_io import Message, publish
from xborder.bench.malformed import EXPECTED_REASON, with_malformed
from xborder.bench.probes import CpuMeter, MemorySampler, broker_pid, machine
from xborder.errors import ServiceUnavailableError
from xborder.geo import jurisdictions_for
from xborder.kafka_admin import broker_accepts_requests, group_lag, topic_sizes
from xborder.pipeline import Pipeline
from xborder.scenario import ScenarioConfig, generate_scenario, iter_events
from xborder.settings import Settings
from xborder.status import collect_status
from xborder.topics import Topics, ensure_project_topics
from xborder.wire import codec_for

STAGES = ("worker", "correlation")


@dataclass(frozen=True)
class StageParams:
    """Everything that shapes a run (all of it goes into the report)."""

    events: int = 200_000
    seed: int = 7
    workers: tuple[int, ...] = (1, 2)
    stages: tuple[str, ...] = STAGES
    timeout_s: float = 1_800.0
    malformed: float = 0.0
    """Share of malformed messages (every kind of ``xborder.bench.malformed``) mixed into
    the worker stage's input; when set, the worker stage runs clean and then mixed."""


def _fresh(settings: Settings, out_dir: Path, ingest: bool) -> Settings:
    run = uuid.uuid4().hex[:8]
    return settings.with_overrides(
        **{
            "data_dir": out_dir / f"run-{run}",
            "topics.prefix": f"stages{run}.",
            "worker.app_id": f"xborder-stages-{run}",
            "worker.ingest": ingest,
        }
    )


def _incident_messages(
    settings: Settings, scenario: Any, topics: Topics
) -> tuple[list[Message], list[dict[str, Any]]]:
    """The scenario's valid events as messages, and their JSON documents."""
    codec = codec_for(settings)
    messages, documents = [], []
    for event in iter_events(scenario):
        if event.kind == "malformed" or event.document is None:
            continue  # the producer library rejects these before they reach Kafka
        value = codec.from_json("IncidentReported", event.document)
        messages.append(
            Message(
                topics.incidents(event.agency),
                event.document["incident_id"].encode(),
                codec.encode("IncidentReported", value),
            )
        )
        documents.append(event.document)
    return messages, documents


def _blocks_messages(
    settings: Settings, incidents: list[Message], topics: Topics, batch_size: int
) -> list[Message]:
    """The scenario as the ingest agent would route it into ``correlation.blocks``."""
    agencies = load_agencies(settings.agencies_config)
    partitions = settings.topics.partitions
    router = Router(jurisdictions_for(agencies), correlator_config(settings, agencies), partitions)
    codec = codec_for(settings)
    by_source: dict[str, list[Message]] = defaultdict(list)
    for message in incidents:
        partition = zlib.crc32(message.key or b"") % partitions
        by_source[source_id(message.topic, partition)].append(message)
    out: list[Message] = []
    cursors = dict.fromkeys(by_source, 0)
    while cursors:
        for source in list(cursors):
            start = cursors[source]
            chunk = by_source[source][start : start + batch_size]
            if not chunk:
                del cursors[source]
                continue
            cursors[source] = start + len(chunk)
            decoded = []
            for message in chunk:
                record = codec.decode(message.value)
                decoded.append((source, record.record_name, record.value))
            by_partition, progress, _alerts = router.route(decoded)
            for target in range(partitions):
                payload = encode_blocks(progress, by_partition.get(target, []))
                out.append(Message(topics.blocks, None, payload, target))
    return out


def _drain(
    pipeline: Pipeline,
    settings: Settings,
    topics: Topics,
    messages: list[Message],
    total_events: int,
    timeout_s: float,
    label: str,
) -> tuple[float, list[tuple[float, float]]]:
    """Publish ``messages`` and wait until every stage has committed everything; the
    seconds taken and the input's progress in events/s over time."""
    bootstrap = settings.kafka.bootstrap_servers
    groups = {"incidents": settings.worker.ingest_group_id, "rest": settings.worker.app_id}
    input_topics = sorted({m.topic for m in messages})
    started = time.monotonic()
    publish(bootstrap, messages)
    series: list[tuple[float, float]] = []
    total = len(messages)
    last = (started, 0)
    with tqdm(total=total, desc=label, unit="msg", file=sys.stderr) as bar:
        for stage in (topics.all_incidents, [topics.blocks], [topics.links]):
            group = groups["incidents" if stage == topics.all_incidents else "rest"]
            while (lag := group_lag(bootstrap, group, stage)) > 0:
                pipeline.check_alive()
                now = time.monotonic()
                if now - started > timeout_s:
                    raise ServiceUnavailableError(
                        f"{label}: consumer group {group} still lags {lag} on {stage} after "
                        f"{timeout_s:.0f} s\n{pipeline.log_tails()}"
                    )
                if stage == input_topics:
                    done = total - lag
                    rate = (done - last[1]) / max(now - last[0], 1e-6) * total_events / total
                    series.append((now - started, rate))
                    last = (now, done)
                    bar.update(max(0, done - bar.n))
                time.sleep(0.5)
        bar.update(total - bar.n)
    return time.monotonic() - started, series


def run_stage(
    settings: Settings,
    stage: str,
    workers: int,
    incidents: list[Message],
    out_dir: Path,
    timeout_s: float,
    malformed: tuple[list[dict[str, Any]], float] | None = None,
) -> dict[str, Any]:
    """One stage with ``workers`` workers on fresh topics; its figures. ``malformed``
    (documents of ``incidents``, share) mixes malformed messages into the worker's input
    and reports the dead letters by reason."""
    broker = broker_pid(settings)
    run_settings = _fresh(settings, out_dir, ingest=stage == "worker")
    agencies = load_agencies(run_settings.agencies_config)
    topics = Topics.from_settings(run_settings, agencies)
    ensure_project_topics(run_settings, topics)
    # this run's topic names: the correlator's watermark expects exactly these sources
    messages = [
        Message(topics.incidents(m.topic.rpartition("incidents.")[2]), m.key, m.value)
        for m in incidents
    ]
    injected: dict[str, int] = {}
    if stage == "correlation":
        messages = _blocks_messages(run_settings, messages, topics, run_settings.worker.batch_size)
    elif malformed is not None:
        documents, share = malformed
        messages, injected = with_malformed(messages, documents, codec_for(run_settings), share)
    pipeline = Pipeline(run_settings, workers=workers, sink=False)
    with pipeline.running():
        pipeline.wait_until_settled()
        sampler = MemorySampler(pipeline.pids())
        sampler.start()
        cpu = CpuMeter({**pipeline.pids(), **({"broker": broker} if broker else {})})
        cpu.start()
        label = f"{stage} x{workers}"
        seconds, series = _drain(
            pipeline, run_settings, topics, messages, len(incidents), timeout_s, label
        )
        cpu.stop()
        sampler.stop()
    sizes = topic_sizes(
        run_settings.kafka.bootstrap_servers, [topics.correlations, topics.cases, topics.blocks]
    )
    dead_letters: dict[str, int] = {}
    if injected:
        dead_letters = collect_status(run_settings, topics).dead_letters
    return {
        "stage": stage if not injected else f"{stage}+malformed",
        "malformed_injected": injected,
        "malformed_expected_reasons": {
            reason: sum(n for kind, n in injected.items() if EXPECTED_REASON[kind] == reason)
            for reason in sorted({EXPECTED_REASON[k] for k in injected})
        },
        "dead_letters": dead_letters,
        "workers": workers,
        "events": len(incidents),
        "messages_published": len(messages),
        "seconds": round(seconds, 2),
        "events_per_s": round(len(incidents) / seconds),
        "correlations": sizes[topics.correlations],
        "case_events": sizes[topics.cases],
        "blocks_messages": sizes[topics.blocks],
        "cpu_seconds_per_1000_events": cpu.per_thousand(len(incidents)),
        "memory": sampler.summary(),
        "series": series,
    }


def run_stages(settings: Settings, params: StageParams, out_dir: Path) -> dict[str, Any]:
    """Every (stage, worker count) of ``params``; the report (also written to ``out_dir``)."""
    if not broker_accepts_requests(settings.kafka.bootstrap_servers):
        raise ServiceUnavailableError(
            f"no Kafka broker answers at {settings.kafka.bootstrap_servers}; start one with "
            "'xborder kafka up' (or set XBORDER_KAFKA__BOOTSTRAP_SERVERS)"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    agencies = load_agencies(settings.agencies_config)
    config = ScenarioConfig(seed=params.seed, events=params.events)
    with tqdm(total=config.events, desc="generating", unit="ev", file=sys.stderr) as bar:
        scenario = generate_scenario(config, agencies, lambda done, _: bar.update(done - bar.n))
    incidents, documents = _incident_messages(
        settings, scenario, Topics.from_settings(settings, agencies)
    )
    print(f"scenario: {len(incidents)} events", flush=True)
    runs = []
    variants: list[tuple[str, tuple[list[dict[str, Any]], float] | None]] = []
    for stage in params.stages:
        variants.append((stage, None))
        if stage == "worker" and params.malformed > 0:
            variants.append((stage, (documents, params.malformed)))
    for stage, malformed in variants:
        for workers in params.workers:
            result = run_stage(
                settings, stage, workers, incidents, out_dir, params.timeout_s, malformed
            )
            if malformed is not None:
                print(
                    f"  malformed: {sum(result['malformed_injected'].values())} injected, "
                    f"expected dead letters {result['malformed_expected_reasons']}, "
                    f"got {result['dead_letters']}",
                    flush=True,
                )
            print(
                f"{result['stage']:>17} x{workers}: {result['events_per_s']:>7,} events/s "
                f"({result['seconds']} s; {result['correlations']} correlations, "
                f"{result['case_events']} case events); CPU s per 1,000 events: "
                + ", ".join(f"{k} {v}" for k, v in result["cpu_seconds_per_1000_events"].items()),
                flush=True,
            )
            runs.append(result)
    report = {
        "machine": machine(),
        "parameters": {**asdict(params), "scenario": config.as_json()},
        "worker_settings": {
            "batch_size": settings.worker.batch_size,
            "ingest_linger_s": settings.worker.ingest_linger_s,
            "stage_batch_size": settings.worker.stage_batch_size,
            "stage_linger_s": settings.worker.stage_linger_s,
            "event_loop": "uvloop",
            "commit_interval_s": 1.0,
            "producer_linger_ms": 5,
            "partitions": settings.topics.partitions,
        },
        "runs": runs,
    }
    (out_dir / "stages.json").write_text(json.dumps(report, indent=2))
    return report


def main(settings: Settings, argv: list[str] | None = None) -> int:
    """``xborder bench stages [--events N] [--workers 1,2] [--stages worker,correlation]``."""
    import argparse

    defaults = StageParams()
    parser = argparse.ArgumentParser(prog="xborder bench stages", description=__doc__)
    parser.add_argument("--events", type=int, default=defaults.events)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--workers", default=",".join(map(str, defaults.workers)), help="comma-separated counts"
    )
    parser.add_argument("--stages", default=",".join(defaults.stages), help="worker,correlation")
    parser.add_argument("--out", type=Path, default=settings.data_dir / "bench-stages")
    parser.add_argument(
        "--malformed",
        type=float,
        default=0.0,
        help="share of malformed messages of every kind mixed into the worker stage's input "
        "(e.g. 0.05); the worker stage then runs clean and mixed, side by side",
    )
    args = parser.parse_args(argv)
    stages = tuple(s.strip() for s in args.stages.split(",") if s.strip())
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        parser.error(f"unknown stage(s) {', '.join(unknown)}; choose from {', '.join(STAGES)}")
    try:
        workers = tuple(int(w) for w in args.workers.split(","))
    except ValueError:
        parser.error(f"--workers takes comma-separated counts such as 1,2, not {args.workers!r}")
    params = StageParams(
        events=args.events,
        seed=args.seed,
        workers=workers,
        stages=stages,
        malformed=args.malformed,
    )
    report = run_stages(settings, params, args.out)
    for run in report["runs"]:
        run.pop("series")
    print(json.dumps(report["runs"], indent=2))
    print(f"report: {args.out / 'stages.json'}")
    return 0
