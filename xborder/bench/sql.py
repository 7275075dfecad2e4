"""``xborder bench sql``: the two benchmark targets of the analysts' SQL (issue 13).

It starts its own local broker (a free port, a data directory under ``--out``), generates
one looped scenario (:class:`xborder.bench.latency_load.Corpus`) and measures:

**T1, insert rate**: the same ``--events`` incident events, ``--repeat`` times, alternating:

- *sink end to end*: ``python -m xborder sink`` drains them from a Kafka backlog on
  ``incidents.accepted`` (as the worker forwards them, with the source header) into a
  fresh embedded directory (:func:`sinks.bench.run_variant`: warmed up, stopped, backlog
  published, resumed, timed until its group committed everything; CPU of the process);
- *sink insert only*: in one process, the sink's writer
  (:class:`sinks.clickhouse.ClickHouseIncidentSink`) writes those messages, already
  buffered, in batches of ``sink.batch_size``;
- *bare insert*: in that same process, engine and table, clickhouse-connect's
  ``client.insert(table, columns, column_oriented=True)`` of the same rows (decoded
  beforehand, not timed), in batches of the same size.

The table is truncated before each in-process run; CPU is the process's (chDB's threads
included) over the run. Reported: rows/s and CPU s per 1,000 rows each, and the two
ratios to the bare insert.

**T2, documented queries**: ``--incidents`` incidents (plus the alerts, links, cases,
verdicts and dead letters a pipeline would add) inserted columnar into a fresh embedded
directory by a child process, which then merges the incidents (``OPTIMIZE ... FINAL``)
and exits; then the sink starts on that directory with its SQL endpoint, a publisher
feeds it ``--rate`` new incidents/s through Kafka, and every SQL block of
``docs/analyst.md`` runs through the endpoint over HTTP: one warm-up round, then
``--runs`` rounds (the queries in turn). Reported per query: p50, p99 and max (s), the
rows it returned; and the insert rate the sink achieved (its committed offsets) over the
rounds.

The in-process parts run in forked children: chDB holds one directory per process.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import multiprocessing
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from streams.correlation.patterns import alert_id
from xborder.agencies import load_agencies
from xborder.bench.latency_load import Corpus
from xborder.bench.latency_math import summary
from xborder.local_kafka import free_port_pair
from xborder.settings import REPO_ROOT, Settings, to_env
from xborder.topics import Topics

DOC = REPO_ROOT / "docs" / "analyst.md"
FIELDS_ONLY_DEFAULTED = frozenset({"placement"})
"""Columns the sink sends as NULL so that ClickHouse computes their default: the bare
insert leaves them out, which has the same effect."""


# -- pure parts (tests/unit/test_bench_sql.py) ------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One timed run: rows written, wall-clock and CPU seconds."""

    variant: str
    rows: int
    wall_s: float
    cpu_s: float

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.wall_s if self.wall_s > 0 else float("nan")

    @property
    def cpu_per_1000(self) -> float:
        return self.cpu_s * 1000 / self.rows if self.rows else float("nan")


def doc_queries(text: str) -> list[tuple[str, str]]:
    """The SQL blocks of a Markdown text, each with a label: the start of the last text
    paragraph before it (what the doc says the query answers)."""
    out: list[tuple[str, str]] = []
    for match in re.finditer(r"```sql\n(.*?)```", text, re.S):
        before = re.sub(r"```.*?```", "", text[: match.start()], flags=re.S)
        paragraphs = [p for p in re.split(r"\n\s*\n", before) if p.strip()]
        label = " ".join(paragraphs[-1].split()) if paragraphs else ""
        label = re.sub(r"[`*]", "", label) or f"query {len(out) + 1}"
        out.append((label if len(label) <= 48 else label[:47] + "…", match.group(1).strip()))
    return out


def medians(samples: Sequence[Sample]) -> dict[str, Sample]:
    """Per variant, a sample of the median rows/s and the median CPU per row."""
    out: dict[str, Sample] = {}
    for variant in dict.fromkeys(s.variant for s in samples):
        runs = [s for s in samples if s.variant == variant]
        rows = runs[0].rows
        rate = statistics.median(s.rows_per_s for s in runs)
        cpu = statistics.median(s.cpu_per_1000 for s in runs)
        out[variant] = Sample(variant, rows, rows / rate, cpu * rows / 1000)
    return out


def to_columns(
    rows: Sequence[Sequence[Any]], columns: Sequence[tuple[str, str]], leave_out: frozenset[str]
) -> tuple[list[str], list[str], list[list[Any]]]:
    """``rows`` (as :mod:`sinks.rows` makes them, for the JSON path) as clickhouse-connect
    columns: names, types and values, ``DateTime64(3)`` as integer milliseconds (the
    rows hold seconds), without the ``leave_out`` columns."""
    names: list[str] = []
    types: list[str] = []
    values: list[list[Any]] = []
    for i, (name, kind) in enumerate(columns):
        if name in leave_out:
            continue
        column = [row[i] for row in rows]
        if kind.startswith(("DateTime64(3", "Nullable(DateTime64(3")):
            column = [None if v is None else round(v * 1000) for v in column]
        elif kind.startswith("Array(DateTime64(3"):
            column = [[round(v * 1000) for v in a] for a in column]
        names.append(name)
        types.append(kind)
        values.append(column)
    return names, types, values


def format_t1(samples: Sequence[Sample]) -> str:
    """The runs of T1 and, per variant, the medians and their ratio to the bare insert."""
    lines = [
        f"{'run':>3}  {'variant':<20} {'rows':>8} {'wall s':>7} {'rows/s':>9} "
        f"{'CPU s':>7} {'CPU s/1000 rows':>15}"
    ]
    for n, s in enumerate(samples, 1):
        lines.append(
            f"{n:>3}  {s.variant:<20} {s.rows:>8} {s.wall_s:>7.2f} {s.rows_per_s:>9,.0f} "
            f"{s.cpu_s:>7.2f} {s.cpu_per_1000:>15.4f}"
        )
    best = medians(samples)
    bare = best.get("bare insert")
    lines.append("medians:")
    for variant, s in best.items():
        ratio = ""
        if bare is not None and variant != "bare insert":
            ratio = (
                f"   rate {s.rows_per_s / bare.rows_per_s:.2f}x bare,"
                f" CPU/row {s.cpu_per_1000 / bare.cpu_per_1000:.2f}x bare"
            )
        lines.append(
            f"     {variant:<20} {s.rows_per_s:>9,.0f} rows/s {s.cpu_per_1000:>8.4f} CPU s/1000"
            + ratio
        )
    return "\n".join(lines)


def format_t2(results: Sequence[dict[str, Any]]) -> str:
    lines = [f"{'#':>2}  {'query':<48} {'p50 s':>7} {'p99 s':>7} {'max s':>7} {'rows':>6}  ok"]
    for n, r in enumerate(results, 1):
        ok = "yes" if r["errors"] == 0 and r["p50_s"] < 1.0 else "NO"
        if r["errors"]:
            ok += f" ({r['errors']} errors)"
        lines.append(
            f"{n:>2}  {r['label']:<48} {r['p50_s']:>7.3f} {r['p99_s']:>7.3f} "
            f"{r['max_s']:>7.3f} {r['rows']:>6}  {ok}"
        )
    return "\n".join(lines)


# -- the broker and the load ------------------------------------------------------------


@contextlib.contextmanager
def local_broker(settings: Settings, out: Path) -> Iterator[Settings]:
    """A broker of our own on free ports (never the default one), stopped on the way out."""
    from xborder.local_kafka import LocalKafka, free_port_pair

    port = free_port_pair()
    ours = settings.with_overrides(
        **{
            "data_dir": out,
            "local_kafka.port": port,
            "local_kafka.controller_port": port + 1,
            "local_kafka.heap": "768m",
            "kafka.bootstrap_servers": f"127.0.0.1:{port}",
            "sql_http.port": free_port_pair(),
        }
    )
    kafka = LocalKafka(ours.local_kafka, ours.kafka_data_dir)
    try:
        kafka.up()
        _wait_for_coordinator(ours)
        print(f"local broker on 127.0.0.1:{port} ({ours.kafka_data_dir})", file=sys.stderr)
        yield ours
    finally:
        kafka.down()


def _wait_for_coordinator(settings: Settings, timeout_s: float = 120.0) -> None:
    """Wait until a fresh broker can coordinate consumer groups (it creates its offsets
    topic on the first request), so that committed offsets can be read."""
    from kafka.errors import KafkaError

    from xborder.kafka_admin import admin_client

    admin = admin_client(settings.kafka.bootstrap_servers)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                admin.list_group_offsets({"sqlbench-probe": None})
                return
            except KafkaError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    finally:
        admin.close()


def _source(agency: str, n: int, partitions: int) -> tuple[str, int, int]:
    """Where event ``n`` was first published, as the worker's source header says."""
    return f"incidents.{agency}", n % partitions, n // partitions


def incident_messages(
    settings: Settings, corpus: Corpus, first: int, count: int, topic: str
) -> list[Any]:
    """Corpus events ``first`` to ``first + count`` as the worker forwards them."""
    from sinks.bench import Message
    from xborder.deadletter import SOURCE_HEADER

    partitions = settings.topics.partitions
    out = []
    for n in range(first, first + count):
        origin, part, offset = _source(corpus.agency_ids[corpus.agencies[n]], n, partitions)
        header = f"{origin}[{part}]@{offset}".encode()
        out.append(Message(topic, corpus.keys[n], corpus.values[n], ((SOURCE_HEADER, header),)))
    return out


def decoded_rows(
    settings: Settings, values: Sequence[bytes], positions: Sequence[tuple[str, int, int]]
) -> dict[str, list[list[Any]]]:
    """Rows per table of encoded records, as the sink's Python path makes them."""
    from sinks.decode import WriterSchemas
    from sinks.rows import rows_for
    from xborder.wire import codec_for

    schemas = WriterSchemas(codec_for(settings))
    out: dict[str, list[list[Any]]] = {}
    for value, (topic, partition, offset) in zip(values, positions, strict=True):
        record, datum = schemas.decode(value)
        for table, row in rows_for(record, datum, topic, partition, offset):
            out.setdefault(table, []).append(row)
    return out


def insert_columns(client: Any, table: str, rows: Sequence[Sequence[Any]]) -> None:
    """The bare clickhouse-connect columnar insert of ``rows`` into ``table``."""
    from sinks.rows import TABLE_COLUMNS

    leave_out = FIELDS_ONLY_DEFAULTED if table == "incidents" else frozenset()
    names, types, columns = to_columns(rows, TABLE_COLUMNS[table], leave_out)
    client.insert(table, columns, column_names=names, column_type_names=types, column_oriented=True)


# -- T1 ---------------------------------------------------------------------------------


class ForkServer:
    """A process forked before this one opens any chDB engine (the sink runs' row counts
    do), holding the corpus; each :meth:`call` runs in a fresh child forked from it, so
    each has an engine of its own and the corpus without copying it through a pipe."""

    def __init__(self, corpus: Corpus) -> None:
        context = multiprocessing.get_context("fork")
        self._requests, child_end = context.Pipe()
        self.process = context.Process(target=self._serve, args=(child_end, corpus))
        self.process.start()
        child_end.close()

    @staticmethod
    def _serve(requests: Connection, corpus: Corpus) -> None:
        context = multiprocessing.get_context("fork")
        while True:
            try:
                job = requests.recv()
            except EOFError:
                break
            if job is None:
                break
            target, args = job
            receive, send = context.Pipe(duplex=False)
            child = context.Process(target=_child_main, args=(send, target, (corpus, *args)))
            child.start()
            send.close()
            try:
                answer = receive.recv()
            except EOFError:
                answer = ("error", f"the child exited with {child.exitcode} without an answer")
            child.join()
            requests.send(answer)
        os._exit(0)

    def call(self, target: Callable[..., Any], *args: Any) -> Any:
        """``target(corpus, *args)`` in a fresh child; its result, or RuntimeError."""
        self._requests.send((target, args))
        outcome, value = self._requests.recv()
        if outcome == "error":
            raise RuntimeError(value)
        return value

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._requests.send(None)
        self.process.join(timeout=30)


def _child_main(send: Connection, target: Callable[..., Any], args: tuple[Any, ...]) -> None:
    try:
        send.send(("ok", target(*args)))
    except BaseException as exc:
        import traceback

        send.send(("error", f"{exc!r}\n{traceback.format_exc()}"))
    finally:
        send.close()
        os._exit(0)  # no atexit of the parent's objects in the fork


def _truncate(client: Any) -> None:
    for table in ("incidents", "incident_daily_counts", "incident_cells_daily"):
        client.command(f"TRUNCATE TABLE IF EXISTS {table}")


def insert_runs(
    corpus: Corpus, settings: Settings, count: int, topic: str, order: Sequence[str]
) -> list[dict[str, Any]]:
    """In this process: the sink's writer and the bare insert of the first ``count``
    corpus events, in ``order``, into one engine and table (truncated before each)."""
    from sinks.clickhouse import ClickHouseIncidentSink
    from sinks.decode import WriterSchemas
    from sinks.runner import source_position
    from xborder.clickhouse import get_client
    from xborder.metrics import SinkMetrics
    from xborder.wire import codec_for

    messages = incident_messages(settings, corpus, 0, count, topic)
    batch = settings.sink.batch_size
    client = get_client(settings)
    schemas = WriterSchemas(codec_for(settings))
    sink = ClickHouseIncidentSink(client, schemas, batch, 1.0, SinkMetrics(), embedded=True)
    bodies: list[Any] = []
    positions = []
    for m in messages:  # what the runner buffers (not timed here)
        writer = schemas.writer(m.value)
        if sink.container(writer) is None:
            raise RuntimeError(f"{writer.record_name} would take the Python path")
        position = source_position(m.headers, m.topic, 0, 0)
        positions.append(position)
        bodies.append((writer, m.value, *position))
    rows = decoded_rows(settings, [m.value for m in messages], positions)["incidents"]
    results = []
    distinct = set()
    for variant in order:
        _truncate(client)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for start in range(0, len(messages), batch):
            if variant == "sink insert only":
                sink.write(bodies[start : start + batch], {})
            else:
                insert_columns(client, "incidents", rows[start : start + batch])
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        stored = client.query("SELECT uniqExact(event_id) FROM incidents").result_rows[0][0]
        distinct.add(stored)
        if len(distinct) > 1:
            raise RuntimeError(f"the variants stored different events: {sorted(distinct)}")
        results.append(asdict(Sample(variant, len(messages), wall, cpu)))
    client.close()
    return results


def _distinct_events(settings: Settings, messages: Sequence[Any]) -> int:
    """Distinct event ids among ``messages`` (a scenario repeats some events)."""
    rows = decoded_rows(settings, [m.value for m in messages], [("", 0, 0)] * len(messages))
    return len({row[0] for row in rows["incidents"]})


def run_t1(
    settings: Settings, corpus: Corpus, server: ForkServer, args: argparse.Namespace
) -> list[Sample]:
    from sinks.bench import Load, run_variant, summarise_profile

    run = uuid.uuid4().hex[:6]
    topics = Topics.from_settings(settings, load_agencies(settings.agencies_config))
    accepted = topics.accepted.removeprefix(topics.prefix)
    messages = incident_messages(settings, corpus, 0, args.events, accepted)
    warm = incident_messages(settings, corpus, args.events, 200, accepted)
    distinct = _distinct_events(settings, messages)
    load = Load(messages, {"incidents": distinct})
    # a scenario's duplicate may straddle the two: count the warm-up's new events only
    warmup = Load(warm, {"incidents": _distinct_events(settings, messages + warm) - distinct})
    inproc = settings.with_overrides(data_dir=args.out / f"t1-inproc-{run}")
    variant_args = argparse.Namespace(
        out=args.out, timeout=args.timeout, profile=args.profile, keep=False
    )
    samples: list[Sample] = []
    for r in range(args.repeat):
        result = run_variant(settings, "sink", REPO_ROOT, load, warmup, variant_args)
        if result["exit_code"] != 0 or not result["rows_ok"]:
            raise RuntimeError(f"the sink run failed: {result}")
        samples.append(Sample("sink end to end", len(messages), result["drain_s"], result["cpu_s"]))
        if result["profile"] and Path(result["profile"]).exists():
            print(summarise_profile(Path(result["profile"])), file=sys.stderr)
        print(format_t1(samples[-1:]).splitlines()[1], file=sys.stderr)
        order = ["sink insert only", "bare insert"][:: 1 if r % 2 == 0 else -1]
        for result in server.call(insert_runs, inproc, args.events, accepted, order):
            samples.append(Sample(**result))
            print(format_t1(samples[-1:]).splitlines()[1], file=sys.stderr)
    shutil.rmtree(inproc.data_dir, ignore_errors=True)
    return samples


# -- T2 ---------------------------------------------------------------------------------


def output_records(
    settings: Settings, refs: Sequence[dict[str, Any]], seed: int
) -> list[tuple[str, dict[str, Any]]]:
    """What a pipeline run adds to incidents ``refs`` (each with agency, incident_id,
    event_id, occurred_at in ms): a border-zone alert for one in five, a link for about
    one in a hundred, a case with its joint verification for one in two hundred."""
    import random

    from sinks.bench import VERIFICATION_RECORDS, _verification
    from xborder.wire import codec_for

    codec = codec_for(settings)
    agency_ids = list(load_agencies(settings.agencies_config).ids)
    examples = settings.schemas_dir / "examples"
    templates = {
        record: codec.from_json(record, json.loads((examples / f"{record}.json").read_text()))
        for record in ("Alert", "Correlation", "CaseEvent", *VERIFICATION_RECORDS)
    }
    rng = random.Random(seed)
    out: list[tuple[str, dict[str, Any]]] = []
    for n, ref in enumerate(refs):
        incident = {k: ref[k] for k in ("agency", "incident_id", "event_id")}
        if rng.random() < 0.2:
            alert = dict(templates["Alert"])
            alert.update(
                identifier=alert_id("BORDER_ZONE_INCIDENT", ref["agency"], ref["incident_id"]),
                alert_kind="BORDER_ZONE_INCIDENT",
                case_id=None,
                correlation_ids=[],
                sent=ref["occurred_at"],
                target_agencies=[a for a in agency_ids if a != ref["agency"]],
            )
            out.append(("Alert", alert))
        if n and rng.random() < 0.011:
            other = {k: refs[n - 1][k] for k in ("agency", "incident_id", "event_id")}
            correlation = dict(templates["Correlation"])
            correlation.update(
                correlation_id=hashlib.sha256(f"c{n}".encode()).hexdigest(),
                incident_a=other,
                incident_b=incident,
            )
            out.append(("Correlation", correlation))
        if n and rng.random() < 0.005:
            other = {k: refs[n - 1][k] for k in ("agency", "incident_id", "event_id")}
            case = dict(templates["CaseEvent"])
            case_id = hashlib.sha256(f"case{n}".encode()).hexdigest()
            case.update(
                case_event_id=hashlib.sha256(f"ce{n}".encode()).hexdigest(),
                case_id=case_id,
                incidents=[other, incident],
                sequence=n,
            )
            out.append(("CaseEvent", case))
            if rng.random() < 0.5:  # half the cases have been verified and reported
                out.extend(_verification(templates, "sqlbench", n, case_id, [other, incident]))
    return out


def load_t2(corpus: Corpus, settings: Settings, skip: int, count: int, seed: int) -> dict[str, Any]:
    """In this process: ``count`` corpus incidents from the ``skip``-th, and their outputs,
    columnar, then merge."""
    from sinks.rows import dead_letter_row
    from xborder.clickhouse import get_client
    from xborder.deadletter import (
        HEADER_ERROR,
        HEADER_OFFSET,
        HEADER_PARTITION,
        HEADER_REASON,
        HEADER_TOPIC,
    )
    from xborder.wire import codec_for

    started = time.perf_counter()
    client = get_client(settings)
    partitions = settings.topics.partitions
    refs: list[dict[str, Any]] = []
    step = 100_000
    for first in range(skip, skip + count, step):
        last = min(skip + count, first + step)
        positions = [
            _source(corpus.agency_ids[corpus.agencies[n]], n, partitions)
            for n in range(first, last)
        ]
        rows = decoded_rows(settings, corpus.values[first:last], positions)["incidents"]
        insert_columns(client, "incidents", rows)
        refs.extend(
            {
                "event_id": r[0],
                "agency": r[1],
                "incident_id": r[2],
                "occurred_at": round(r[4] * 1000),
            }
            for r in rows
        )
        print(f"  loaded {last - skip:,} incidents", file=sys.stderr)
    codec = codec_for(settings)
    outputs = output_records(settings, refs, seed)
    values = [codec.encode(record, value) for record, value in outputs]
    tables = decoded_rows(settings, values, [("bench", 0, n) for n in range(len(values))])
    dead = [
        dead_letter_row(
            [
                (HEADER_REASON, ("invalid", "undecodable", "unknown-schema")[n % 3].encode()),
                (HEADER_ERROR, b"field 'occurred_at' is in the future by 2 days"),
                (HEADER_TOPIC, f"incidents.{corpus.agency_ids[n % 2]}".encode()),
                (HEADER_PARTITION, b"1"),
                (HEADER_OFFSET, str(n).encode()),
            ],
            b"key",
            b"x" * 300,
            1_770_000_000_000 + n * 1000,
            "deadletters",
            0,
            n,
        )
        for n in range(count // 200)
    ]
    tables["dead_letters"] = dead
    for table, rows in tables.items():
        for first in range(0, len(rows), step):
            insert_columns(client, table, rows[first : first + step])
    inserted = time.perf_counter()
    client.command("OPTIMIZE TABLE incidents FINAL")
    merged = time.perf_counter()
    counts = {
        table: client.query(f"SELECT count() FROM {table}").result_rows[0][0]
        for table in ("incidents", *tables)
    }
    client.close()
    return {
        "insert_s": round(inserted - started, 1),
        "optimize_s": round(merged - inserted, 1),
        "rows": counts,
    }


@dataclass
class Feeder:
    """Publishes corpus events at a fixed rate on one topic until stopped."""

    bootstrap: str
    topic: str
    corpus: Corpus
    first: int
    last: int
    rate: float
    sent: int = 0
    looped: int = 0
    failed: int = 0

    def __post_init__(self) -> None:
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join()

    def _run(self) -> None:
        from confluent_kafka import Producer

        def delivered(error: Any, message: Any) -> None:
            if error is not None:
                self.failed += 1

        producer = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 5, "acks": "all"})
        span = self.last - self.first
        started = time.monotonic()
        while not self.stopping.is_set():
            due = int((time.monotonic() - started) * self.rate) + 1
            while self.sent < due:
                loop, at = divmod(self.sent, span)
                self.looped = max(self.looped, loop)
                n = self.first + at
                try:
                    producer.produce(
                        self.topic, self.corpus.values[n], self.corpus.keys[n],
                        on_delivery=delivered,
                    )  # fmt: skip
                except BufferError:
                    producer.poll(0.01)
                    continue
                self.sent += 1
            producer.poll(0)
            time.sleep(max(0.005, started + self.sent / self.rate - time.monotonic()))
        producer.flush(30)


def http_query(url: str, sql: str, timeout_s: float = 120.0) -> tuple[float, int, str | None]:
    """Seconds to the last byte of the answer, lines returned, error text if any."""
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(url, data=sql.encode(), timeout=timeout_s) as answer:
            body = answer.read()
    except urllib.error.HTTPError as exc:
        return time.perf_counter() - started, 0, exc.read().decode("utf-8", "replace")[:300]
    return time.perf_counter() - started, body.count(b"\n"), None


def run_t2(
    settings: Settings, corpus: Corpus, server: ForkServer, args: argparse.Namespace
) -> dict[str, Any]:
    from sinks.bench import Progress, publish
    from xborder.bench.probes import cpu_seconds
    from xborder.kafka_admin import ensure_topics

    run = uuid.uuid4().hex[:6]
    t2 = settings.with_overrides(
        **{
            "data_dir": args.out / f"t2-{run}",
            "topics.prefix": f"sqlbench{run}.",
            "sink.group_id": f"sqlbench-{run}",
            "sql_http.port": free_port_pair(),
            **({"sql_http.nice": args.nice} if args.nice is not None else {}),
        }
    )
    print(f"T2: loading {args.incidents:,} incidents into {t2.clickhouse_dir} ...", file=sys.stderr)
    # the fed incidents come first in the corpus, so earlier in event time: the doc's "last
    # N days of data" windows stay over the loaded incidents and their alerts and cases
    loaded = server.call(load_t2, t2, args.feed + 200, args.incidents, args.seed)
    print(f"T2: loaded {loaded}", file=sys.stderr)
    topics = Topics.from_settings(t2, load_agencies(t2.agencies_config))
    ensure_topics(t2, topics.sunk())
    log_path = t2.data_dir / "sink.log"
    with open(log_path, "ab") as log:
        sink = subprocess.Popen(
            [sys.executable, "-m", "xborder", "sink"],
            cwd=REPO_ROOT, env={**os.environ, **to_env(t2)},
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    url = f"http://127.0.0.1:{t2.sql_http.port}/"
    progress = Progress(t2, [topics.accepted])
    feeder = Feeder(
        t2.kafka.bootstrap_servers, topics.accepted, corpus, 200, 200 + args.feed, args.rate
    )
    queries = doc_queries(DOC.read_text())
    try:
        deadline = time.monotonic() + args.timeout
        while True:  # the endpoint answers once the sink opened and migrated the engine
            if sink.poll() is not None:
                raise RuntimeError(f"the sink exited with {sink.returncode}; see {log_path}")
            try:
                with urllib.request.urlopen(url + "ping", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the SQL endpoint did not answer; see {log_path}")
            time.sleep(0.5)
        warm = incident_messages(t2, corpus, 0, 200, topics.accepted)
        publish(t2.with_overrides(**{"topics.prefix": ""}), warm)
        progress.wait(progress.end(), args.timeout, sink)
        feeder.start()
        time.sleep(5.0)  # the sink settles into the paced load
        committed0, at0, cpu0 = progress.committed(), time.monotonic(), cpu_seconds(sink.pid)
        for label, sql in queries:  # warm-up round, not counted
            seconds, _, error = http_query(url, sql)
            print(f"  warm-up {seconds:6.3f} s  {label}{'  ' + error if error else ''}",
                  file=sys.stderr)  # fmt: skip
        timings: dict[str, list[float]] = {label: [] for label, _ in queries}
        answers: dict[str, int] = {}
        errors: dict[str, list[str]] = {label: [] for label, _ in queries}
        for _ in range(args.runs):
            for label, sql in queries:
                seconds, lines, error = http_query(url, sql)
                timings[label].append(seconds)
                answers[label] = lines
                if error:
                    errors[label].append(error)
        committed1, at1, cpu1 = progress.committed(), time.monotonic(), cpu_seconds(sink.pid)
        feeder.stop()
    finally:
        progress.close()
        if feeder.thread.is_alive():
            feeder.stop()
        if sink.poll() is None:
            sink.send_signal(signal.SIGTERM)
        try:
            sink.wait(timeout=120)
        except subprocess.TimeoutExpired:
            sink.kill()
            sink.wait()
    results = []
    for label, _ in queries:
        stats = summary(s * 1000 for s in timings[label])
        results.append(
            {
                "label": label,
                "p50_s": stats["p50"] / 1000,
                "p99_s": stats["p99"] / 1000,
                "max_s": stats["max"] / 1000,
                "rows": answers.get(label, 0),
                "errors": len(errors[label]),
                "first_error": errors[label][0] if errors[label] else None,
            }
        )
    window = at1 - at0
    inserted = committed1 - committed0
    sink_cpu = (cpu1 or 0.0) - (cpu0 or 0.0)
    return {
        "loaded": loaded,
        "queries": results,
        "window_s": round(window, 1),
        "rows_inserted": inserted,
        "insert_rows_per_s": round(inserted / window, 1),
        "offered_rows_per_s": args.rate,
        "feed_sent": feeder.sent,
        "feed_loops": feeder.looped,
        "feed_failed": feeder.failed,
        "sink_cpu_s": round(sink_cpu, 1),
        "sink_exit": sink.returncode,
        "log": str(log_path),
        "nice": t2.sql_http.nice,
    }


# -- the command ------------------------------------------------------------------------


def main(settings: Settings, argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="xborder bench sql", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000, help="T1: incident events")
    parser.add_argument("--repeat", type=int, default=3, help="T1: runs of each variant")
    parser.add_argument("--incidents", type=int, default=1_000_000, help="T2: incidents loaded")
    parser.add_argument("--rate", type=float, default=2000.0, help="T2: new incidents/s fed")
    parser.add_argument("--runs", type=int, default=20, help="T2: timed runs of each query")
    parser.add_argument(
        "--feed", type=int, default=400_000, help="T2: distinct new incidents to feed (looped)"
    )
    parser.add_argument(
        "--nice", type=int, help="T2: the endpoint's query priority (default: the setting)"
    )
    parser.add_argument("--scenario-events", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--only", choices=["t1", "t2"])
    parser.add_argument(
        "--profile", action="store_true", help="T1: py-spy each end-to-end drain of the sink"
    )
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--out", type=Path, default=Path("/tmp/xborder-sqlbench"))
    args = parser.parse_args(argv)
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}}
    with local_broker(settings, args.out / f"broker-{uuid.uuid4().hex[:6]}") as ours:
        need = max(
            args.events + 200 if args.only != "t2" else 0,
            args.incidents + 200 + args.feed if args.only != "t1" else 0,
        )
        agencies = load_agencies(ours.agencies_config)
        corpus = Corpus.generate(ours, agencies, args.seed, args.scenario_events, need)
        corpus.ensure(need)
        server = ForkServer(corpus)
        try:
            _measure(ours, corpus, server, args, report)
        finally:
            server.close()
    (args.out / "sql.json").write_text(json.dumps(report, indent=2, default=str))
    return 0


def _measure(
    ours: Settings,
    corpus: Corpus,
    server: ForkServer,
    args: argparse.Namespace,
    report: dict[str, Any],
) -> None:
    if args.only != "t2":
        samples = run_t1(ours, corpus, server, args)
        report["t1"] = [asdict(s) for s in samples]
        print(f"\nT1: {args.events:,} incident events, batches of {ours.sink.batch_size:,}")
        print(format_t1(samples), flush=True)
    if args.only != "t1":
        t2 = run_t2(ours, corpus, server, args)
        report["t2"] = t2
        print(
            f"\nT2: {t2['loaded']['rows']['incidents']:,} incidents loaded "
            f"(insert {t2['loaded']['insert_s']} s, OPTIMIZE {t2['loaded']['optimize_s']} s);"
            f" {args.runs} runs per query over {t2['window_s']} s through the HTTP "
            f"endpoint (nice {t2['nice']}), while the sink inserted "
            f"{t2['insert_rows_per_s']:,} rows/s (offered {args.rate:,.0f}/s; sink CPU "
            f"{t2['sink_cpu_s']} s, queries included)"
        )
        print(format_t2(t2["queries"]))
        for r in t2["queries"]:
            if r["first_error"]:
                print(f"  {r['label']}: {r['first_error']}")
