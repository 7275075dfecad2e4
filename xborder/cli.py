"""The ``xborder`` command: local services, topics, worker, sink, publishing, queries, demo."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from xborder.backfill_cli import add_backfill_parser
from xborder.cases_cli import add_cases_parser, add_verify_parser
from xborder.clickhouse_access import add_clickhouse_parser
from xborder.errors import XborderError
from xborder.integrator_cli import add_integrator_parsers
from xborder.logs import setup_logging
from xborder.settings import Settings, load_settings
from xborder.status import add_status_parser

logger = logging.getLogger(__name__)

# CLI flag -> dotted settings field; flags override XBORDER_* environment variables.
GLOBAL_FLAGS: dict[str, str] = {
    "bootstrap_servers": "kafka.bootstrap_servers",
    "clickhouse_url": "clickhouse.url",
    "agencies_config": "agencies_config",
    "data_dir": "data_dir",
    "topic_prefix": "topics.prefix",
}
KAFKA_FLAGS: dict[str, str] = {
    "port": "local_kafka.port",
    "controller_port": "local_kafka.controller_port",
}


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Environment first, then every flag the user gave."""
    overrides: dict[str, Any] = {}
    for flag, field in {**GLOBAL_FLAGS, **KAFKA_FLAGS}.items():
        value = getattr(args, flag, None)
        if value is not None:
            overrides[field] = value
    # Changing the local broker's port without a bootstrap override means "use that broker".
    if "local_kafka.port" in overrides and "kafka.bootstrap_servers" not in overrides:
        overrides["kafka.bootstrap_servers"] = f"127.0.0.1:{overrides['local_kafka.port']}"
    return load_settings(**overrides)


def print_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], out: TextIO) -> None:
    """Aligned plain-text table."""
    cells = [[str(c) for c in columns]] + [["" if v is None else str(v) for v in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    for n, row in enumerate(cells):
        out.write("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() + "\n")
        if n == 0:
            out.write("  ".join("-" * w for w in widths) + "\n")


# -- commands ---------------------------------------------------------------------------


def cmd_kafka(settings: Settings, args: argparse.Namespace) -> int:
    from xborder import kafka_security
    from xborder.agencies import load_agencies
    from xborder.local_kafka import LocalKafka

    if args.action in ("certs", "acls", "credentials"):
        return kafka_security.command(settings, args.action, args.apply, args.show)
    security = kafka_security.local_broker(
        settings, list(load_agencies(settings.agencies_config).ids)
    )
    kafka = LocalKafka(settings.local_kafka, settings.kafka_data_dir, security)
    if args.action == "fetch":
        print(f"Kafka {settings.local_kafka.version} jars in {kafka.fetch()}")
        return 0
    if args.action == "up":
        started = time.monotonic()
        status = kafka.up()
        print(f"Kafka {status.describe()} ({time.monotonic() - started:.1f} s)")
        if security is not None:  # SASL_SSL: the principals and ACLs from the agencies config
            return kafka_security.command(settings, "acls", apply=True)
        return 0
    if args.action == "down":
        print("Kafka stopped" if kafka.down() else "Kafka was not running")
        return 0
    status = kafka.status()
    print(f"Kafka {status.describe()}")
    return 0 if status.running and status.accepts_requests else 3


def cmd_topics(settings: Settings, args: argparse.Namespace) -> int:
    from xborder.agencies import load_agencies
    from xborder.kafka_admin import missing_topics
    from xborder.topics import Topics, ensure_project_topics

    names = Topics.from_settings(settings, load_agencies(settings.agencies_config))
    wanted = [
        *names.created_by_project(),
        names.schemas,
        *names.single_partition(),
        *names.all_quarantine,
    ]
    if args.action == "create":
        created = ensure_project_topics(settings, names)
        print(f"created {len(created)} topics: {', '.join(created) or '-'}")
        return 0
    missing = set(missing_topics(settings, wanted))
    for name in wanted:
        print(f"{name}\t{'MISSING' if name in missing else 'ok'}")
    return 1 if missing else 0


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    from streams.worker import run_worker
    from xborder.kafka_security import as_service

    run_worker(as_service(settings, "worker"))  # its own Kafka principal in secure mode
    return 0


def cmd_sink(settings: Settings, args: argparse.Namespace) -> int:
    from sinks.runner import run_sink
    from xborder.kafka_security import as_service

    run_sink(as_service(settings, "sink"))
    return 0


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from xborder.clickhouse import get_client

    client = get_client(settings)
    client.close()
    print("ClickHouse tables are up to date")
    return 0


def cmd_query(settings: Settings, args: argparse.Namespace) -> int:
    from clickhouse_connect.driver.exceptions import DatabaseError

    from xborder.sql_http import EngineError, query

    try:
        answer = query(settings, args.sql, args.format)
    except (DatabaseError, EngineError) as exc:
        print(f"xborder query: error: {clickhouse_error(exc)}", file=sys.stderr)
        return 1
    sys.stdout.buffer.write(answer)
    sys.stdout.flush()
    return 0


MAX_ERROR_CHARS = 400


def clickhouse_error(exc: Exception) -> str:
    """ClickHouse's error code, name and message in one line, without the driver's framing,
    the server's version or a stack trace."""
    text = " ".join(str(exc).split())
    code: Any = getattr(exc, "code", None)
    name: Any = getattr(exc, "name", None)
    match = re.search(r"DB::Exception: (.*)", text)
    message = match.group(1) if match else text
    message = re.sub(r"\s*\(version .*$", "", message)  # the server's version ends it
    message = message.replace(" FORMAT Native", "")  # added by the driver, not the user's
    if name:
        message = message.replace(f"({name})", "").strip()
    message = message.rstrip(". ")
    if len(message) > MAX_ERROR_CHARS:
        message = message[: MAX_ERROR_CHARS - 3].rstrip() + "..."
    label = f"ClickHouse error {code}" if code is not None else "ClickHouse error"
    if name:
        label += f" ({name})"
    return f"{label}: {message}; check the SQL (docs/analyst.md lists the tables and views)"


def cmd_publish(settings: Settings, args: argparse.Namespace) -> int:
    from xborder.agencies import load_agencies
    from xborder.producer import EventEncoder, IncidentPublisher
    from xborder.publish_cli import exit_status, open_source, publish_lines, with_progress
    from xborder.wire import codec_for

    if args.dry_run and args.skip_delivered:
        raise XborderError("--skip-delivered reads the topic; it cannot go with --dry-run")
    agencies = load_agencies(settings.agencies_config)
    codec = codec_for(settings)
    encoder = EventEncoder(settings, agencies, codec, args.agency)
    name, stream, size = open_source(args.file)
    with contextlib.ExitStack() as stack:
        if stream is not sys.stdin.buffer:
            stack.callback(stream.close)
        publisher = None
        skip: set[str] | None = None
        if not args.dry_run:
            publisher = stack.enter_context(
                IncidentPublisher(settings, agencies, codec, args.agency)
            )
            if args.skip_delivered:
                skip = publisher.delivered_event_ids()
                print(f"{len(skip)} events already on {publisher.topic}", file=sys.stderr)
        summary = publish_lines(
            encoder,
            publisher,
            with_progress(stream, size),
            name,
            args.record,
            args.keep_going,
            sys.stderr,
            skip_event_ids=skip,
            from_line=args.from_line,
        )
    print(summary.line())
    if summary.failure is not None:
        resume = "run the same command again with --skip-delivered to publish the rest"
        print(
            f"xborder publish: error: {summary.failure}; stopped after line {summary.lines}; "
            f"{summary.delivery()}; {resume} without duplicates",
            file=sys.stderr,
        )
    return exit_status(summary, args.keep_going)


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from xborder.demo import run_demo

    return run_demo(settings, events=args.events, keep_running=args.keep_running)


def cmd_bench(settings: Settings, args: argparse.Namespace) -> int:
    if args.what == "pipeline":
        from xborder.bench.run import main as bench_main

        return bench_main(settings, args.rest)
    if args.what == "stages":
        from xborder.bench.stages import main as stages_main

        return stages_main(settings, args.rest)
    if args.what == "latency":
        from xborder.bench.latency import main as latency_main

        return latency_main(settings, args.rest)
    if args.what == "verification":
        from xborder.bench.verification import main as verification_main

        return verification_main(settings, args.rest)
    if args.what == "identity":
        from xborder.bench.identity import main as identity_main

        return identity_main(settings, args.rest)
    if args.what == "sql":
        from xborder.bench.sql import main as sql_main

        return sql_main(settings, args.rest)
    if args.what == "geo":
        from xborder import geo_bench

        geo_bench.main(args.rest)
        return 0
    from xborder import codec_bench

    codec_bench.main(settings, args.rest)
    return 0


def cmd_scenario(settings: Settings, args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from xborder.agencies import load_agencies
    from xborder.scenario import ScenarioConfig, generate_scenario, write_scenario

    config = ScenarioConfig(seed=args.seed, events=args.events, person_keys=args.person_keys)
    with tqdm(total=config.events, desc="generating", unit="ev", file=sys.stderr) as bar:
        scenario = generate_scenario(
            config,
            load_agencies(settings.agencies_config),
            lambda done, _: bar.update(done - bar.n),
        )
    files = write_scenario(scenario, args.out)
    for path in files.paths:
        print(path)
    return 0


def cmd_evaluate(settings: Settings, args: argparse.Namespace) -> int:
    from xborder.clickhouse import get_client
    from xborder.quality import evaluate_clickhouse, format_report, load_truth

    truth = load_truth(args.truth)
    client = get_client(settings)
    try:
        report = evaluate_clickhouse(client, truth)
    finally:
        client.close()
    print(json.dumps(report.as_dict(), indent=2) if args.json else format_report(report))
    return 0


def cmd_wait(settings: Settings, args: argparse.Namespace) -> int:
    from xborder.wait import NotProcessedError, Stage, wait_until_processed

    shown: dict[str, int] = {}

    def progress(stage: Stage, lag: int) -> None:
        if args.quiet or shown.get(stage.name) == lag:
            return
        shown[stage.name] = lag
        state = "done" if lag == 0 else f"{lag:,} messages to go"
        print(f"  {stage.name:20} {state}", file=sys.stderr, flush=True)

    try:
        wait_until_processed(settings, args.timeout, sink=not args.no_sink, progress=progress)
    except NotProcessedError as exc:
        print(f"xborder wait: {exc}", file=sys.stderr)
        return 1
    print("processed: everything published before the wait began is through every stage"
          + ("" if args.no_sink else " and in ClickHouse"))  # fmt: skip
    return 0


def cmd_settings(settings: Settings, args: argparse.Namespace) -> int:
    from xborder.settings import printable_env

    for key, value in sorted(printable_env(settings).items()):  # passwords never printed
        print(f"{key}={value}")
    return 0


# -- parser -----------------------------------------------------------------------------


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a line number (1 or more), got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xborder",
        description="Cross-border incident exchange. Settings come from XBORDER_* environment "
        "variables (see 'xborder settings'); these flags override them.",
    )
    parser.add_argument("--bootstrap-servers", help="Kafka bootstrap servers (host:port,...)")
    parser.add_argument("--clickhouse-url", help="ClickHouse server URL; default embedded chDB")
    parser.add_argument("--agencies-config", type=Path, help="agencies JSON config file")
    parser.add_argument("--data-dir", type=Path, help="root of local state")
    parser.add_argument("--topic-prefix", help="prefix of every topic name")
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    sub = parser.add_subparsers(dest="command", required=True)

    kafka = sub.add_parser("kafka", help="run a local Apache Kafka (KRaft) without Docker")
    kafka.add_argument(
        "action", choices=["fetch", "up", "down", "status", "certs", "acls", "credentials"]
    )
    kafka.add_argument("--apply", action="store_true", help="acls: create the missing ones")
    kafka.add_argument("--show", metavar="PRINCIPAL", help="credentials: print its password")
    kafka.add_argument("--port", type=int, help="broker port")
    kafka.add_argument("--controller-port", type=int, help="controller port (default port+1)")
    kafka.set_defaults(handler=cmd_kafka)

    topics = sub.add_parser("topics", help="create or check the project's topics")
    topics.add_argument("action", choices=["create", "list"])
    topics.set_defaults(handler=cmd_topics)

    sub.add_parser("worker", help="run the Faust worker").set_defaults(handler=cmd_worker)
    sub.add_parser("sink", help="run the ClickHouse sink").set_defaults(handler=cmd_sink)
    sub.add_parser("migrate", help="create or upgrade ClickHouse tables").set_defaults(
        handler=cmd_migrate
    )

    query = sub.add_parser("query", help="run SQL against ClickHouse and print the result")
    query.add_argument("sql")
    query.add_argument(
        "--format",
        default="table",
        help="table, csv, json (JSON lines), tsv or any ClickHouse output format; a FORMAT "
        "clause in the SQL wins",
    )
    query.set_defaults(handler=cmd_query)

    publish = sub.add_parser("publish", help="validate and publish JSON-lines events")
    publish.add_argument("file", nargs="?", default="-", help="JSON-lines file, '-' for stdin")
    publish.add_argument("--agency", required=True, help="publishing agency id")
    publish.add_argument("--record", default="IncidentReported", help="record schema name")
    publish.add_argument(
        "--keep-going",
        action="store_true",
        help="publish every valid line and exit 0 even if some are rejected",
    )
    publish.add_argument("--dry-run", action="store_true", help="validate only, publish nothing")
    publish.add_argument(
        "--skip-delivered",
        action="store_true",
        help="resume a partly published file: first read the event ids already on the "
        "agency's topic, then skip the lines that carry them",
    )
    publish.add_argument(
        "--from-line",
        type=_positive,
        default=1,
        metavar="N",
        help="start at line N (lines before it are not read as events)",
    )
    publish.set_defaults(handler=cmd_publish)

    demo = sub.add_parser("demo", help="the live demo: stack up, events through, query, down")
    demo.add_argument("--events", type=int, default=6, help="sample events to publish")
    demo.add_argument("--keep-running", action="store_true", help="leave Kafka running")
    demo.set_defaults(handler=cmd_demo)

    scenario = sub.add_parser(
        "scenario", help="generate a border scenario with ground truth (JSON lines + truth)"
    )
    scenario.add_argument("--seed", type=int, default=7)
    scenario.add_argument("--events", type=int, default=200_000)
    scenario.add_argument(
        "--person-keys",
        default="both",
        help="what agencies record of a person: both, name_birth_date, name_birth_year or "
        "unspecified, for all or per agency (cantho=both,angiang=name_birth_date)",
    )
    scenario.add_argument("--out", type=Path, required=True, help="output directory")
    scenario.set_defaults(handler=cmd_scenario)

    evaluate = sub.add_parser(
        "evaluate", help="score the correlations in ClickHouse against a ground truth"
    )
    evaluate.add_argument("--truth", type=Path, required=True, help="truth.json of a scenario")
    evaluate.add_argument("--json", action="store_true", help="print the report as JSON")
    evaluate.set_defaults(handler=cmd_evaluate)

    bench = sub.add_parser(
        "bench",
        help="benchmarks that print figures: the whole pipeline, the worker's stages, "
        "latency under sustained load, verdict to conclusion, identity quality by person key, "
        "the codec, geo lookups, analysts' SQL (insert rate, documented queries)",
    )
    bench.add_argument(
        "what",
        choices=[
            "pipeline",
            "stages",
            "latency",
            "verification",
            "identity",
            "codec",
            "geo",
            "sql",
        ],
    )
    bench.add_argument("rest", nargs=argparse.REMAINDER, help="the benchmark's own flags")
    bench.set_defaults(handler=cmd_bench)

    add_verify_parser(sub)
    add_cases_parser(sub)
    add_status_parser(sub)
    add_backfill_parser(sub)
    add_integrator_parsers(sub)
    add_clickhouse_parser(sub)

    wait = sub.add_parser(
        "wait",
        help="return when everything published so far is processed and in ClickHouse "
        "(exit 1 when a stage is still behind at the timeout)",
    )
    wait.add_argument("--timeout", type=float, default=120.0, help="seconds (default 120)")
    wait.add_argument("--no-sink", action="store_true", help="do not wait for the sink")
    wait.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    wait.set_defaults(handler=cmd_wait)

    sub.add_parser(
        "settings", help="print the effective settings as XBORDER_* variables"
    ).set_defaults(handler=cmd_settings)
    return parser


def os_error(exc: OSError) -> str:
    """An operating-system error as one line naming the path and what to do."""
    what = exc.strerror or str(exc)
    if exc.filename is None:
        return f"{what}"
    path = exc.filename if exc.filename2 is None else f"{exc.filename} -> {exc.filename2}"
    return f"cannot use {path}: {what}; choose a path this user can write (or fix its permissions)"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``xborder`` console script."""
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    handler: Callable[[Settings, argparse.Namespace], int] = args.handler
    try:
        return handler(settings_from_args(args), args)
    except XborderError as exc:
        print(f"xborder {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        # a path the command must read or write: unwritable, missing, a file in the way
        print(f"xborder {args.command}: error: {os_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
