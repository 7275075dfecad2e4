"""Sink micro-benchmark: how fast, and at what CPU cost, the sink drains a backlog.

``python -m sinks.bench --events 100000`` builds a realistic sink load once: accepted
incident events (Avro, with the worker's source header) and, per event, the alerts,
correlations and case events a pipeline run produces (about 0.4 alerts per event: most
are border-zone alerts, sent only to the other agency's alert topic; the few for both
agencies go to both topics; each case comes with its joint verification: a verdict per
agency, the agreed conclusion, its report and a release). For each sink variant it then:

1. creates fresh topics, consumer group and ClickHouse directory;
2. starts ``python -m xborder sink`` and waits until it has committed a small warm-up
   (so start-up, migrations and the group join are not measured);
3. stops the sink (SIGSTOP), publishes the backlog, resumes it (SIGCONT), and times it
   until its group has committed every message; CPU is the sink process's user + system
   time over that drain (chDB runs inside it: the split by thread shows the engine's
   share), and the local broker's, when it runs, over the same time;
4. stops it with SIGTERM (it must exit 0), counts the rows it wrote, and deletes the
   run's topics and ClickHouse data (``--keep`` keeps them; the log stays in ``--out``).

``--baseline DIR`` runs a second sink first, from another ``sinks`` package in ``DIR``
(``git archive HEAD sinks | tar -x -C DIR``), on the same load: before and after in one
run. ``--repeat`` alternates the variants. ``--profile`` samples each drain with py-spy
and prints the heaviest frames.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from xborder import kafka_security
from xborder.agencies import load_agencies
from xborder.bench.probes import broker_pid, cpu_seconds
from xborder.clickhouse import get_client
from xborder.deadletter import SOURCE_HEADER
from xborder.errors import ServiceUnavailableError
from xborder.kafka_admin import admin_client, ensure_topics
from xborder.settings import REPO_ROOT, Settings, load_settings, to_env
from xborder.topics import Topics
from xborder.wire import codec_for

POOL_EVENTS = 20_000
"""Distinct scenario events generated; larger loads repeat them with new ids."""
WARMUP_EVENTS = 200


@dataclass(frozen=True)
class Message:
    """One pre-encoded message, its topic named relative to the topic prefix."""

    topic: str
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True)
class Load:
    """The messages of a run and the distinct rows they must become, per table."""

    messages: list[Message]
    rows: dict[str, int]


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def build_load(
    settings: Settings,
    events: int,
    alerts_per_event: float,
    both_sides_share: float,
    correlations_per_event: float,
    case_events_per_event: float,
    seed: int,
    tag: str,
) -> Load:
    """``events`` accepted incident events plus the outputs a pipeline run would add."""
    from xborder.scenario.config import ScenarioConfig
    from xborder.scenario.generator import generate_scenario
    from xborder.scenario.output import iter_events

    agencies = load_agencies(settings.agencies_config)
    names = Topics(prefix="", agency_ids=tuple(agencies.ids))
    codec = codec_for(settings)
    scenario = generate_scenario(
        ScenarioConfig(seed=seed, events=min(events, POOL_EVENTS)), agencies
    )
    pool = [e.document for e in iter_events(scenario) if e.kind == "incident" and e.document]
    examples = settings.schemas_dir / "examples"
    import json

    templates = {
        record: codec.from_json(record, json.loads((examples / f"{record}.json").read_text()))
        for record in ("Alert", "Correlation", "CaseEvent", *VERIFICATION_RECORDS)
    }
    rng = random.Random(seed)
    messages: list[Message] = []
    rows: Counter[str] = Counter()
    refs: list[dict[str, str]] = []
    members: set[tuple[str, str]] = set()
    partitions = settings.topics.partitions
    for n in range(events):
        document = dict(pool[n % len(pool)])
        if n >= len(pool):  # a repeat: new identity, same shape
            document["event_id"] = str(uuid.UUID(_digest(tag, str(n))[:32], version=4))
            document["incident_id"] = f"{document['incident_id']}-r{n // len(pool)}"
        agency = document["agency"]
        value = codec.from_json("IncidentReported", document)
        source = f"{names.incidents(agency)}[{n % partitions}]@{n // partitions}"
        messages.append(
            Message(
                names.accepted,
                document["incident_id"].encode(),
                codec.encode("IncidentReported", value),
                ((SOURCE_HEADER, source.encode()),),
            )
        )
        rows["incidents"] += 1
        ref = {"agency": agency, "incident_id": document["incident_id"]}
        refs.append({**ref, "event_id": document["event_id"]})
        if rng.random() < alerts_per_event:
            alert = dict(templates["Alert"])
            alert["identifier"] = _digest(tag, "alert", str(n))
            if rng.random() < both_sides_share:
                alert["alert_kind"] = "SUBJECT_BOTH_SIDES"
                alert["target_agencies"] = list(agencies.ids)
            else:  # an incident in the border zone, for every agency but the reporter
                alert["alert_kind"] = "BORDER_ZONE_INCIDENT"
                alert["case_id"] = None
                alert["correlation_ids"] = []
                alert["headline"] = f"{document['category']} reported by {agency} in the zone"
                alert["target_agencies"] = [a for a in agencies.ids if a != agency]
            encoded = codec.encode("Alert", alert)
            for target in alert["target_agencies"]:  # as the worker: one copy per target
                messages.append(
                    Message(names.alerts(target), alert["identifier"].encode(), encoded)
                )
            rows["alerts"] += 1
        if n and rng.random() < correlations_per_event:
            correlation = dict(templates["Correlation"])
            correlation["correlation_id"] = _digest(tag, "correlation", str(n))
            correlation["incident_a"], correlation["incident_b"] = refs[n - 1], refs[n]
            messages.append(
                Message(
                    names.correlations,
                    correlation["correlation_id"].encode(),
                    codec.encode("Correlation", correlation),
                )
            )
            rows["correlations"] += 1
        if n and rng.random() < case_events_per_event:
            case = dict(templates["CaseEvent"])
            case["case_event_id"] = _digest(tag, "case-event", str(n))
            case["case_id"] = _digest(tag, "case", str(n))
            case["incidents"] = [refs[n - 1], refs[n]]
            messages.append(
                Message(names.cases, case["case_id"].encode(), codec.encode("CaseEvent", case))
            )
            rows["case_events"] += 1
            members.update((r["agency"], r["incident_id"]) for r in case["incidents"])
            for record, value in _verification(
                templates, tag, n, case["case_id"], case["incidents"]
            ):
                messages.append(
                    Message(
                        names.verification, case["case_id"].encode(), codec.encode(record, value)
                    )
                )
                rows[VERIFICATION_RECORDS[record]] += 1
    rows["case_members"] = len(members)
    return Load(messages, dict(rows))


VERIFICATION_RECORDS = {
    "Verdict": "verdicts",
    "CaseConclusion": "case_conclusions",
    "CaseReport": "case_reports",
    "IncidentRelease": "incident_releases",
}
"""What the case lifecycle publishes on ``verification``, and the table each becomes."""


def _uuid(*parts: str) -> str:
    return str(uuid.UUID(_digest(*parts)[:32], version=4))


def _verification(
    templates: dict[str, dict[str, Any]],
    tag: str,
    n: int,
    case_id: str,
    refs: list[dict[str, str]],
) -> list[tuple[str, dict[str, Any]]]:
    """A case's joint verification as the lifecycle stage publishes it: one confirming
    verdict per agency, the agreed conclusion, its report and a release."""
    agencies = sorted({r["agency"] for r in refs})
    verdicts = []
    for agency in agencies:
        verdict = dict(templates["Verdict"])
        verdict.update(
            event_id=_uuid(tag, "verdict", str(n), agency),
            agency=agency,
            target_kind="CASE",
            target_id=case_id,
        )
        verdicts.append(verdict)
    conclusion = dict(templates["CaseConclusion"])
    conclusion.update(
        conclusion_id=_digest(tag, "conclusion", str(n)),
        case_id=case_id,
        agencies=agencies,
        incidents=refs,
        verdicts=[
            {**template, "event_id": v["event_id"], "agency": v["agency"]}
            for template, v in zip(conclusion["verdicts"], verdicts, strict=False)
        ],
    )
    report = dict(templates["CaseReport"])
    report.update(
        event_id=_uuid(tag, "report", str(n)),
        agency=refs[-1]["agency"],
        case_id=case_id,
        conclusion_id=conclusion["conclusion_id"],
    )
    release = dict(templates["IncidentRelease"])
    release.update(
        event_id=_uuid(tag, "release", str(n)),
        agency=refs[-1]["agency"],
        case_id=case_id,
        incident=refs[-1],
        audience=agencies,
    )
    return [
        *(("Verdict", v) for v in verdicts),
        ("CaseConclusion", conclusion),
        ("CaseReport", report),
        ("IncidentRelease", release),
    ]


async def _publish(
    bootstrap: str, prefix: str, messages: list[Message], security: dict[str, Any] | None = None
) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=20,
        max_batch_size=256 * 1024,
        **(security or {}),
    )
    await producer.start()
    try:
        for m in messages:
            await producer.send(prefix + m.topic, m.value, key=m.key, headers=list(m.headers))
        await producer.flush()
    finally:
        await producer.stop()


def publish(settings: Settings, messages: list[Message]) -> None:
    security = kafka_security.aiokafka(settings)
    asyncio.run(
        _publish(settings.kafka.bootstrap_servers, settings.topics.prefix, messages, security)
    )


class Progress:
    """Reads the sink group's committed total and the topics' end offsets."""

    def __init__(self, settings: Settings, topics: list[str]) -> None:
        self.group = settings.sink.group_id
        security = kafka_security.kafka_python(settings)
        self.admin = admin_client(settings.kafka.bootstrap_servers, security=security)
        self.consumer = KafkaConsumer(
            bootstrap_servers=settings.kafka.bootstrap_servers, **security
        )
        self.partitions = [
            TopicPartition(t, p)
            for t in topics
            for p in sorted(self.consumer.partitions_for_topic(t) or ())
        ]

    def end(self) -> int:
        return sum(self.consumer.end_offsets(self.partitions).values())

    def committed(self) -> int:
        offsets = self.admin.list_group_offsets({self.group: None}).get(self.group, {})
        return sum(meta.offset for meta in offsets.values() if meta.offset > 0)

    def wait(self, target: int, timeout_s: float, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + timeout_s
        while (done := self.committed()) < target:
            if process.poll() is not None:
                raise ServiceUnavailableError(f"the sink exited with {process.returncode}")
            if time.monotonic() > deadline:
                raise ServiceUnavailableError(
                    f"the sink committed {done} of {target} messages in {timeout_s:.0f} s"
                )
            time.sleep(0.05)

    def close(self) -> None:
        self.admin.close()
        self.consumer.close()


def run_variant(
    base: Settings, name: str, sink_dir: Path, load: Load, warmup: Load, args: argparse.Namespace
) -> dict[str, Any]:
    """One sink variant on fresh topics: warm up, drain the backlog, stop, count rows."""
    run = uuid.uuid4().hex[:8]
    broker = broker_pid(base)  # the local broker (xborder kafka up), when it is the one used
    settings = base.with_overrides(
        **{
            "data_dir": args.out / f"{name}-{run}",
            "topics.prefix": f"sinkbench{run}.",
            "sink.group_id": f"sinkbench-{run}",
        }
    )
    topics = Topics.from_settings(settings, load_agencies(settings.agencies_config))
    ensure_topics(settings, topics.sunk())
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    log_path = settings.data_dir / "sink.log"
    env = {**os.environ, **to_env(settings)}
    with open(log_path, "ab") as log:
        # the working directory comes first on the module path: it chooses the sinks package
        process = subprocess.Popen(
            [sys.executable, "-m", "xborder", "sink"],
            cwd=sink_dir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    progress = Progress(settings, topics.sunk())
    try:
        publish(settings, warmup.messages)
        progress.wait(progress.end(), args.timeout, process)
        process.send_signal(signal.SIGSTOP)
        published = time.monotonic()
        publish(settings, load.messages)
        published_s = time.monotonic() - published
        target = progress.end()
        cpu0 = cpu_seconds(process.pid) or 0.0
        threads0 = thread_cpu(process.pid)
        broker0 = cpu_seconds(broker) if broker else None
        started = time.monotonic()
        process.send_signal(signal.SIGCONT)
        gil = getattr(args, "profile_gil", False)  # callers may build their own args
        profiler = (
            _start_profiler(process.pid, settings.data_dir, gil) if args.profile or gil else None
        )
        progress.wait(target, args.timeout, process)
        elapsed = time.monotonic() - started
        cpu = (cpu_seconds(process.pid) or 0.0) - cpu0
        threads = {n: s - threads0.get(n, 0.0) for n, s in thread_cpu(process.pid).items()}
        broker1 = cpu_seconds(broker) if broker else None
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            profiler.wait(timeout=60)
    finally:
        progress.close()
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)
            process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
    client = get_client(settings)
    try:
        counts = {
            table: int(client.query(f"SELECT uniqExact({key}) FROM {table}").result_rows[0][0])
            for table, key in TABLE_KEYS.items()
        }
    finally:
        client.close()
        if not args.keep:
            _delete_topics(settings, topics.sunk())
            shutil.rmtree(settings.data_dir / "clickhouse", ignore_errors=True)
    expected = {t: load.rows.get(t, 0) + warmup.rows.get(t, 0) for t in TABLE_KEYS}
    events = load.rows["incidents"]
    return {
        "variant": name,
        "messages": len(load.messages),
        "events": events,
        "rows": sum(load.rows.values()),
        "publish_s": round(published_s, 2),
        "drain_s": round(elapsed, 2),
        "rows_per_s": round(sum(load.rows.values()) / elapsed),
        "events_per_s": round(events / elapsed),
        "cpu_s": round(cpu, 2),
        "broker_cpu_s_per_1000_events": (
            round((broker1 - broker0) * 1000 / events, 4)
            if broker0 is not None and broker1 is not None
            else None
        ),
        "cpu_s_by_thread": {
            name: round(s, 2) for name, s in sorted(threads.items(), key=lambda t: -t[1])[:6]
        },
        "cpu_s_per_1000_events": round(cpu * 1000 / events, 4),
        "cpu_s_per_1000_messages": round(cpu * 1000 / len(load.messages), 4),
        "exit_code": code,
        "rows_ok": counts == expected,
        "counts": counts if counts != expected else None,
        "expected": expected if counts != expected else None,
        "log": str(log_path),
        "profile": (
            str(settings.data_dir / "profile.txt")
            if args.profile or getattr(args, "profile_gil", False)
            else None
        ),
    }


TABLE_KEYS = {
    "incidents": "event_id",
    "alerts": "identifier",
    "correlations": "correlation_id",
    "case_events": "case_event_id",
    "case_members": "(agency, incident_id)",
    "verdicts": "event_id",
    "case_conclusions": "conclusion_id",
    "case_reports": "event_id",
    "incident_releases": "event_id",
}


def _delete_topics(settings: Settings, names: list[str]) -> None:
    admin = admin_client(settings.kafka.bootstrap_servers)
    try:
        admin.delete_topics(names)
    except KafkaError as exc:
        print(f"could not delete the run's topics {names}: {exc}", file=sys.stderr)
    finally:
        admin.close()


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of each thread of ``pid`` so far, summed by thread name: Python's
    threads are all named after the interpreter, ClickHouse's after their pools."""
    ticks = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # the thread ended
        name = text[text.index("(") + 1 : text.rindex(")")]
        fields = text[text.rindex(")") + 2 :].split()
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    return out


def _start_profiler(pid: int, directory: Path, gil: bool = False) -> subprocess.Popen[bytes]:
    """py-spy on ``pid``; ``gil``: only the thread holding the GIL (Python's CPU, without
    the threads that wait for it)."""
    py_spy = Path(sys.executable).with_name("py-spy")
    return subprocess.Popen(
        [str(py_spy), "record", "--pid", str(pid), "--format", "raw", "--rate", "200",
         "--nonblocking", *(["--gil"] if gil else []), "-o", str(directory / "profile.txt")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


def summarise_profile(path: Path, top: int = 25) -> str:
    """The heaviest frames of a py-spy raw (collapsed) profile: self and inclusive share."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    if not total:
        return "(no samples)"
    lines = [f"{total} samples; self:"]
    lines += [f"  {n * 100 / total:5.1f}%  {f}" for f, n in own.most_common(top)]
    lines.append("inclusive:")
    lines += [f"  {n * 100 / total:5.1f}%  {f}" for f, n in inclusive.most_common(top)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sinks.bench", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--alerts-per-event", type=float, default=0.4)
    parser.add_argument(
        "--both-sides-share",
        type=float,
        default=0.018,
        help="share of alerts for both agencies (one copy on each agency's topic); the "
        "rest are border-zone alerts, for the other agency only",
    )
    parser.add_argument("--correlations-per-event", type=float, default=0.011)
    parser.add_argument("--case-events-per-event", type=float, default=0.005)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--baseline", type=Path, help="directory holding another sinks package")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each variant, alternated")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--profile", action="store_true", help="py-spy each drain")
    parser.add_argument(
        "--profile-gil", action="store_true", help="py-spy each drain, GIL holder only"
    )
    parser.add_argument("--out", type=Path, default=Path("/tmp/xborder-sinkbench"))
    parser.add_argument(
        "--keep", action="store_true", help="keep each run's topics and ClickHouse data"
    )
    args = parser.parse_args(argv)
    base = load_settings()
    tag = uuid.uuid4().hex[:8]
    print(f"building the load: {args.events} events ...", file=sys.stderr)
    load = build_load(
        base, args.events, args.alerts_per_event, args.both_sides_share,
        args.correlations_per_event, args.case_events_per_event, args.seed, tag,
    )  # fmt: skip
    warmup = build_load(base, WARMUP_EVENTS, 0.4, 0.1, 0.02, 0.02, args.seed + 1, tag + "w")
    print(f"load: {len(load.messages)} messages, rows {load.rows}", file=sys.stderr)
    variants = [("after", REPO_ROOT)]
    if args.baseline:
        if not (args.baseline / "sinks" / "runner.py").exists():
            parser.error(f"{args.baseline} holds no sinks/runner.py")
        variants.insert(0, ("before", args.baseline.resolve()))
    results = []
    for _ in range(args.repeat):
        for name, sink_dir in variants:
            result = run_variant(base, name, sink_dir, load, warmup, args)
            results.append(result)
            print(_format(result))
            if result["profile"] and Path(result["profile"]).exists():
                print(summarise_profile(Path(result["profile"])))
    return 0 if all(r["exit_code"] == 0 and r["rows_ok"] for r in results) else 1


def _format(r: dict[str, Any]) -> str:
    text = (
        f"{r['variant']:>6}: {r['messages']} messages ({r['events']} events, {r['rows']} rows) "
        f"drained in {r['drain_s']} s: {r['rows_per_s']} rows/s, {r['events_per_s']} events/s, "
        f"{r['cpu_s']} CPU s = {r['cpu_s_per_1000_events']} per 1,000 events "
        f"({r['cpu_s_per_1000_messages']} per 1,000 messages); exit {r['exit_code']}, "
        f"rows {'ok' if r['rows_ok'] else 'MISMATCH'}; published in {r['publish_s']} s"
        f"\n        CPU s by thread: {r['cpu_s_by_thread']}; the broker's CPU s per 1,000 "
        f"events meanwhile: {r['broker_cpu_s_per_1000_events']}"
    )
    if not r["rows_ok"]:
        text += f"\n        counts {r['counts']} expected {r['expected']}"
    return text


if __name__ == "__main__":
    raise SystemExit(main())
