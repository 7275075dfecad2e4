"""``xborder bench latency``: what users see under sustained load, one offered rate at a time.

For each rate of ``--rates``, against a running broker and with fresh topics, consumer
groups and embedded ClickHouse directory (as ``xborder bench pipeline``), it starts
``--workers`` Faust workers and the sink, waits until their groups settle, and publishes
a looped scenario (:mod:`xborder.bench.latency_load`) at that fixed rate for
``--seconds``. A probe process (:mod:`xborder.bench.latency_probe`) started before the
first publish reads every output and samples consumer groups. Reported per rate:

- **latency** (ms; count, p50, p95, p99, max) from publish to what users see. Each input
  counts from its first send; each output once, at its first arrival:
  **link**, a ``Correlation`` on ``correlations``: arrival minus the later publish of its
  two incidents; **case**, a ``CaseEvent``: minus the latest publish among the incidents
  it names and those of its correlations; **alert <kind>**, on any ``alerts.<agency>``:
  minus the latest publish among the incidents that caused it (the rule per kind in
  :func:`xborder.bench.latency_math.alert_inputs`); **clickhouse rows**: the sink's
  committed total on ``incidents.accepted``, sampled every 200 ms (it commits only after
  its insert), read as a FIFO: the k-th event published is taken to be in ClickHouse when
  that total first reaches k (across partitions the order is approximate, and the figure
  is late by up to one sampling interval). Outputs whose inputs were not published in
  the run are counted apart (``unmapped``), as are repeated ids (``duplicates``);
- **lag** of each group every second (ingest; the Faust group on ``correlation.blocks``
  and on ``correlation.links``; the sink): least-squares slope over the publish window
  after its first 10%, mean of that steady window's first and last thirds, maximum, and
  seconds until drained after publishing stops (waiting up to 120 s). Committed offsets
  count, so a lag includes up to one commit interval of work already done;
- **CPU** seconds per 1,000 events of every process over the publish window, the events/s
  achieved and how late the publisher sent against its schedule;
- **RSS** of every process: mean over the steady window's first and last thirds, and
  their ratio (flat: within 10%).

``--rates`` may include ``max``: after the fixed rates it probes for the highest rate that
holds (:func:`xborder.bench.latency_math.sustained`): ``--probe-seconds`` runs starting
one step (x1.25) above the highest fixed rate that held, stepping up while they hold and
never at or above a fixed rate that failed (stepping down from the lowest fixed rate when
none held, or from 1,000/s without fixed rates), then runs the full ``--seconds`` at the
highest rate that held, unless that is a fixed rate already run. It prints a table per
run and writes ``latency.json`` and ``latency.html`` into ``--out``.
"""

from __future__ import annotations

import json
import math
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from xborder.agencies import AgenciesConfig, load_agencies
from xborder.bench.latency_load import Corpus, publish_paced
from xborder.bench.latency_math import (
    above_idle,
    fifo_latencies,
    lag_trend,
    output_latencies,
    rss_trend,
    send_lateness_ms,
    summary,
    sustained,
)
from xborder.bench.latency_probe import Probe, ProbeConfig, ProbeData
from xborder.bench.latency_report import format_run, format_summary, render_html
from xborder.bench.probes import CpuMeter, MemorySampler, machine, require_broker
from xborder.errors import ConfigurationError, ServiceUnavailableError
from xborder.kafka_admin import topic_sizes
from xborder.pipeline import Pipeline
from xborder.settings import Settings
from xborder.topics import Topics, ensure_project_topics

MAX = "max"
Rate = float | str
"""An offered rate in events/s, or ``max``."""


@dataclass(frozen=True)
class LatencyParams:
    """Everything that shapes the benchmark (all of it goes into the report)."""

    rates: tuple[Rate, ...] = (1000.0, 2000.0, 5000.0)
    seconds: float = 300.0
    workers: int = 2
    seed: int = 7
    probe_seconds: float = 60.0
    idle_seconds: float = 10.0
    """How long each run measures its processes' CPU with no load before publishing (0:
    not at all); the report splits each steady rate's CPU into that idle share and the
    events' own."""
    window_hours: float | None = None
    """Correlation window of the run (None: the configured one); a short one makes the
    correlator evict within a short run."""
    scenario_events: int = 200_000
    """Largest scenario generated; runs needing more events replay it in loops."""
    drain_timeout_s: float = 120.0
    step: float = 1.25
    """Factor between the rates the ``max`` search probes."""
    max_probes: int = 8

    @property
    def fixed_rates(self) -> list[float]:
        return [float(r) for r in self.rates if r != MAX]

    def most_events(self) -> int:
        """Most events any run may publish (the scenario is placed in time for them)."""
        fixed = self.fixed_rates
        most = max(fixed, default=0.0) * self.seconds
        if MAX in self.rates:
            top = max(fixed, default=1000.0) * self.step**self.max_probes
            most = max(most, top * max(self.seconds, self.probe_seconds))
        return max(1, math.ceil(most))


def parse_rates(text: str) -> tuple[Rate, ...]:
    """``1000,2000,max`` -> (1000.0, 2000.0, 'max'); raises ConfigurationError."""
    rates: list[Rate] = []
    for item in (part.strip() for part in text.split(",") if part.strip()):
        if item.lower() == MAX:
            rates.append(MAX)
            continue
        try:
            value = float(item)
        except ValueError:
            value = math.nan
        if not value > 0:
            raise ConfigurationError(f"--rates: {item!r} is neither a positive rate nor 'max'")
        rates.append(value)
    if not rates:
        raise ConfigurationError("--rates: give at least one rate, e.g. 1000,2000,max")
    return tuple(rates)


@dataclass
class _Bench:
    settings: Settings
    params: LatencyParams
    agencies: AgenciesConfig
    corpus: Corpus
    broker: int | None
    out_dir: Path
    say: Callable[[str], None]
    series: dict[str, dict[str, Any]] = field(default_factory=dict)


def run_latency(settings: Settings, params: LatencyParams, out_dir: Path) -> dict[str, Any]:
    """Every run of ``params``; returns the report (also written to ``out_dir``)."""
    broker = require_broker(settings)
    if params.window_hours is not None:
        settings = settings.with_overrides(**{"correlation.window_hours": params.window_hours})
    out_dir.mkdir(parents=True, exist_ok=True)
    agencies = load_agencies(settings.agencies_config)
    most = params.most_events()
    corpus = Corpus.generate(
        settings, agencies, params.seed, min(params.scenario_events, most), capacity=most
    )
    bench = _Bench(settings, params, agencies, corpus, broker, out_dir, _say)
    runs = [_run_rate(bench, rate, params.seconds, "fixed") for rate in params.fixed_rates]
    search = _search_max(bench, runs) if MAX in params.rates else None
    if search is not None:
        runs.extend(search.pop("runs"))
    report = {
        "machine": machine(),
        "parameters": {
            **asdict(params),
            "rates": [str(r) for r in params.rates],
            "window_hours": settings.correlation.window_hours,
        },
        "scenario": corpus.scenario,
        "prep": {
            **corpus.timings,
            "events_encoded": len(corpus),
            "loops": corpus.loops,
            "corpus_mb": corpus.megabytes(),
        },
        "runs": runs,
        "max_rate": search,
    }
    (out_dir / "latency.json").write_text(json.dumps(report, indent=2))
    (out_dir / "latency.html").write_text(render_html(report, bench.series))
    return report


def _run_rate(bench: _Bench, rate: float, seconds: float, purpose: str) -> dict[str, Any]:
    """One run at ``rate`` for ``seconds`` on fresh topics, groups and ClickHouse."""
    params, corpus = bench.params, bench.corpus
    run_id = uuid.uuid4().hex[:8]
    settings = bench.settings.with_overrides(
        **{
            "data_dir": bench.out_dir / f"run-{run_id}",
            "topics.prefix": f"lat{run_id}.",
            "worker.app_id": f"xborder-latency-{run_id}",
            "sink.group_id": f"xborder-latency-sink-{run_id}",
        }
    )
    topics = Topics.from_settings(settings, bench.agencies)
    ensure_project_topics(settings, topics)
    count = max(2, round(rate * seconds))
    corpus.ensure(count)
    label = f"{rate:,.0f}/s"
    bench.say(
        f"{label}: {purpose} run, {count:,} events over {seconds:.0f} s, "
        f"{params.workers} workers, topics {settings.topics.prefix}*"
    )
    app, sink = settings.worker.app_id, settings.sink.group_id
    probe = Probe(
        ProbeConfig(
            settings=settings,
            correlations=topics.correlations,
            cases=topics.cases,
            alerts=tuple(topics.all_alerts),
            partitions={
                **dict.fromkeys(topics.created_by_project(), settings.topics.partitions),
                topics.links: 1,
            },
            groups={
                "ingest": (settings.worker.ingest_group_id, tuple(topics.all_incidents)),
                "blocks": (app, (topics.blocks,)),
                "links": (app, (topics.links,)),
                "sink": (sink, tuple(topics.sunk())),
            },
            sink_commits=(sink, (topics.accepted,)),
            label=label,
        ),
        settings.data_dir / "probe.pickle",
    )
    bootstrap = settings.kafka.bootstrap_servers
    pipeline = Pipeline(settings, workers=params.workers)
    with pipeline.running():
        pipeline.wait_until_settled()
        probe.start()
        try:
            pids = {**pipeline.pids(), **({"broker": bench.broker} if bench.broker else {})}
            system = CpuMeter(pids)
            harness = CpuMeter({"publisher": os.getpid(), "probe": probe.pid or 0})
            memory = MemorySampler(pids)
            memory_t0 = time.time()
            memory.start()
            idle_cores = _idle_cores(pids, params.idle_seconds)
            probe.publishing_from(time.time())
            system.start()
            harness.start()
            published = publish_paced(
                bootstrap, [topics.incidents(a) for a in corpus.agency_ids], corpus, count, rate
            )
            system.stop()
            harness.stop()
            bench.say(f"{label}: published; draining (up to {params.drain_timeout_s:.0f} s)")
            drained = _drain(pipeline, topics, params.drain_timeout_s)
            time.sleep(1.5)  # the probe fetches the last outputs
            memory.stop()
        except BaseException:
            _stop_quietly(probe)
            raise
        data = probe.stop()
    dead_letters = topic_sizes(bootstrap, [topics.dead_letters])[topics.dead_letters]
    sent = published.sent
    start, end = sent[0], sent[-1]
    rss = {name: [(memory_t0 + t, v) for t, v in points] for name, points in memory.samples.items()}
    run: dict[str, Any] = {
        "purpose": purpose,
        "rate": rate,
        "seconds": seconds,
        "events": count,
        "topics_prefix": settings.topics.prefix,
        "publisher": {
            "achieved_per_s": round((count - 1) / (end - start), 1) if end > start else None,
            "send_late_ms": summary(send_lateness_ms(sent, rate)),
            "failed": published.failed,
        },
        "latency_ms": {
            **_output_latencies(data, corpus, count, sent),
            "clickhouse rows": summary(fifo_latencies(sent, data.commits)),
        },
        "outputs": {
            "correlations": len(data.correlations),
            "case_events": len(data.cases),
            "alerts": len(data.alerts),
            "undecodable": data.undecodable,
            "dead_letters": dead_letters,
        },
        "lag": {
            name: {
                "group": group,
                **lag_trend(data.lags.get(name, []), data.inputs.get(name, []), start, end),
            }
            for name, (group, _) in probe.config.groups.items()
        },
        "drained": drained,
        "cpu_seconds_per_1000_events": system.per_thousand(count),
        "idle_cores": idle_cores,
        "cpu_seconds_per_1000_events_above_idle": (
            above_idle(system.used, idle_cores, system.seconds, count) if idle_cores else {}
        ),
        "harness_cpu_seconds_per_1000_events": harness.per_thousand(count),
        "rss": {name: rss_trend(points, start, end) for name, points in rss.items()},
    }
    run["sustained"], run["why_not"] = sustained(run)
    bench.series[f"{label} {purpose}"] = {
        "lag": _since(start, data.lags),
        "rss": _since(start, rss),
    }
    bench.say(format_run(run))
    return run


def _idle_cores(pids: dict[str, int], seconds: float) -> dict[str, float]:
    """Cores each process uses over ``seconds`` with nothing published (empty when 0)."""
    if seconds <= 0:
        return {}
    meter = CpuMeter(pids)
    meter.start()
    time.sleep(seconds)
    meter.stop()
    return meter.cores()


def _since(start: float, series: dict[str, list[tuple[float, float]]]) -> dict[str, Any]:
    """The series' points from ``start`` on, in seconds since then (for the charts)."""
    return {n: [(t - start, v) for t, v in points if t >= start] for n, points in series.items()}


def _output_latencies(
    data: ProbeData, corpus: Corpus, count: int, sent: Any
) -> dict[str, dict[str, float]]:
    from streams.correlation.patterns import alert_id
    from streams.correlation.scoring import correlation_id

    published: dict[tuple[str, str], float] = {}
    for n in range(count):
        published.setdefault(corpus.ref(n), sent[n])
    border: dict[str, tuple[str, str]] = {}
    if any(a.kind == "BORDER_ZONE_INCIDENT" for a in data.alerts):
        border = {alert_id("BORDER_ZONE_INCIDENT", *ref): ref for ref in published}
    return output_latencies(
        data.correlations, data.cases, data.alerts, published, border.get, correlation_id
    )


def _drain(pipeline: Pipeline, topics: Topics, timeout_s: float) -> bool:
    """Wait until every stage has committed everything; False after ``timeout_s``."""
    try:
        pipeline.wait_until_drained(topics, timeout_s=timeout_s)
        return True
    except ServiceUnavailableError:
        pipeline.check_alive()  # a dead process is an error, not a slow drain
        return False


def _stop_quietly(probe: Probe) -> None:
    try:
        probe.stop(timeout_s=30)
    except ServiceUnavailableError:
        pass


def _search_max(bench: _Bench, fixed: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``max`` search (rule in the module docstring); its probes and final run."""
    params = bench.params
    held = [r["rate"] for r in fixed if r["sustained"]]
    failed = [r["rate"] for r in fixed if not r["sustained"]]
    best: float | None = max(held) if held else None
    ceiling = min((r for r in failed if best is None or r > best), default=math.inf)
    if best is not None:
        rate, direction = best * params.step, "up"
    elif fixed:
        rate, direction = min(failed) / params.step, "down"
    else:
        rate, direction = 1000.0, ""
    found_by_probe = False
    runs: list[dict[str, Any]] = []
    for _ in range(params.max_probes):
        rate = float(round(rate))
        if rate < 1 or (direction == "up" and rate >= ceiling):
            break
        run = _run_rate(bench, rate, params.probe_seconds, "probe")
        runs.append(run)
        if run["sustained"]:
            best, found_by_probe = rate, True
            if direction == "down":
                break
            rate, direction = rate * params.step, "up"
        else:
            if direction == "up":
                break
            rate, direction = rate / params.step, "down"
    if best is not None and found_by_probe:
        runs.append(_run_rate(bench, best, params.seconds, "max"))
    return {
        "highest_held_per_s": best,
        "rule": "held: the publisher achieved 95% of the rate, no group's lag grows "
        "(slope above 2% of its input and last third above the first by 1 s of input), "
        "link p99 at most 1 s, drained within the timeout",
        "runs": runs,
    }


def _say(text: str) -> None:
    print(text, flush=True)


def main(settings: Settings, argv: list[str] | None = None) -> int:
    """``xborder bench latency [--rates 1000,2000,5000,max] [--seconds N] ... [--out DIR]``."""
    import argparse

    defaults = LatencyParams()
    parser = argparse.ArgumentParser(
        prog="xborder bench latency",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--rates",
        default=",".join(f"{r:g}" for r in defaults.fixed_rates),
        help="offered rates in events/s, comma-separated; 'max' searches the highest that holds",
    )
    parser.add_argument("--seconds", type=float, default=defaults.seconds)
    parser.add_argument("--workers", type=int, default=defaults.workers)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--probe-seconds", type=float, default=defaults.probe_seconds)
    parser.add_argument(
        "--idle-seconds",
        type=float,
        default=defaults.idle_seconds,
        help="CPU measured with no load before each run, to split off the idle share (0: off)",
    )
    parser.add_argument(
        "--window-hours",
        type=float,
        default=None,
        help="correlation window of the runs (default: XBORDER_CORRELATION__WINDOW_HOURS)",
    )
    parser.add_argument(
        "--scenario-events",
        type=int,
        default=defaults.scenario_events,
        help="largest scenario to generate; longer runs replay it in loops",
    )
    parser.add_argument("--out", type=Path, default=settings.data_dir / "bench-latency")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.probe_seconds <= 0 or args.workers < 1:
        raise ConfigurationError("--seconds and --probe-seconds must be positive, --workers >= 1")
    if not 0 <= args.idle_seconds <= 600:
        raise ConfigurationError("--idle-seconds must be between 0 and 600 (0: no idle reading)")
    if args.window_hours is not None and args.window_hours <= 0:
        raise ConfigurationError("--window-hours must be positive")
    params = LatencyParams(
        rates=parse_rates(args.rates),
        seconds=args.seconds,
        workers=args.workers,
        seed=args.seed,
        probe_seconds=args.probe_seconds,
        idle_seconds=args.idle_seconds,
        window_hours=args.window_hours,
        scenario_events=args.scenario_events,
    )
    report = run_latency(settings, params, args.out)
    print(format_summary(report))
    print(f"report: {args.out / 'latency.json'}, charts: {args.out / 'latency.html'}")
    return 0 if all(r["publisher"]["failed"] == 0 for r in report["runs"]) else 1
