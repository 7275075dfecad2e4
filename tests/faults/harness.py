"""What every fault test shares: one scenario, a supervised pipeline on the real broker and
the real chDB, the analysts' tables read back, and a comparison with a fault-free run.

A run publishes the same scenario into fresh topics, groups and ClickHouse directory,
injects its fault, waits until every consumer group has committed everything, stops the
pipeline and reads every table the sink writes (``FINAL``) and every analysts' view. Two
runs agree when each table holds the same rows by id, the columns that depend on where
and when a run happened left out (source positions, ingestion and sending times).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.integration.test_correlation import _messages
from xborder.agencies import load_agencies
from xborder.bench.kafka_io import Message, publish
from xborder.clickhouse import get_client
from xborder.kafka_admin import group_lag, topic_sizes
from xborder.pipeline import Pipeline
from xborder.scenario import ScenarioConfig, generate_scenario, iter_events
from xborder.settings import Settings
from xborder.topics import Topics, ensure_project_topics

EVENTS = 3_000
"""Lines of the generated scenario (malformed ones left out): small enough for the suite's
budget, large enough to make cases, links and alerts on every partition."""

TABLES = {
    "incidents": "event_id",
    "incident_closures": "event_id",
    "correlations": "correlation_id",
    "case_events": "case_event_id",
    "case_members": "(agency, incident_id)",
    "alerts": "identifier",
    "verdicts": "event_id",
    "case_conclusions": "conclusion_id",
    "case_reports": "event_id",
    "incident_releases": "event_id",
}
"""Every table the sink writes, with the id its rows collapse on."""

VIEWS = {
    "cases_current": "case_id",
    "case_timeline": "case_event_id",
    "case_hits": "(case_id, viewer, owner, incident_id)",
    "released_incidents": "(case_id, viewer, owner, incident_id)",
    "time_to_agreement": "(conclusion_id, agency)",
    "case_escalations": "case_id",
    "incidents_current": "(agency, incident_id)",
    "incident_closures_current": "(agency, incident_id)",
    "correlations_current": "correlation_id",
    "case_members_current": "(agency, incident_id)",
    "alerts_current": "identifier",
    "verdicts_current": "(case_id, agency)",
    "case_conclusions_current": "(case_id, conclusion_id)",
    "case_reports_current": "event_id",
}
"""The analysts' current-state views (no FINAL needed), with what makes a row unique."""

RUN_DEPENDENT = frozenset({"ingested_at", "source_topic", "source_partition", "source_offset"})
"""Columns that differ between two correct runs: where the input was published, and when
the sink wrote it."""

ORDER_INDEPENDENT: dict[str, str] = {
    "case_members": "SELECT concat(agency, '/', incident_id), case_id FROM case_members FINAL",
    "cases_current": "SELECT case_id, status, agencies, possible_double_report FROM cases_current",
    "alert ids": (
        "SELECT identifier, alert_kind FROM alerts FINAL WHERE alert_kind != 'GROUP_FORMING'"
    ),
    "border-zone alerts": (
        "SELECT identifier, * EXCEPT (identifier, ingested_at) FROM alerts FINAL"
        " WHERE alert_kind = 'BORDER_ZONE_INCIDENT'"
    ),
}
"""What two fault-free runs of one input agree on where a table as a whole does not.

The case stage reads the links of four correlation partitions in the order they happen
to arrive, so two fault-free runs build the same cases (ids, members, status) through
different histories: ``case_events`` ids and sequences, ``case_members.sequence`` and
``at``, ``cases_current.last_sequence`` and ``events``, the content of pattern alerts
(which links raised them first) and whether an intermediate case raised a GROUP_FORMING
alert (2 of 919 alerts in one pair of runs) depend on that order. Those are compared
through these projections; the rest of the tables and views row by row."""

ORDER_DEPENDENT = frozenset(
    {
        "case_events",
        "case_members",
        "alerts",
        "cases_current",
        "case_timeline",
        "case_members_current",
        "alerts_current",
    }
)
"""Tables and views compared only through :data:`ORDER_INDEPENDENT`."""

Rows = dict[str, dict[str, tuple[Any, ...]]]


@dataclass
class Outcome:
    """What a run left in ClickHouse: rows by id per table and view, and duplicates."""

    rows: Rows
    view_duplicates: dict[str, int]
    """Rows an analysts' view, or a table read with FINAL, shows more than once."""
    raw_duplicates: dict[str, int]
    """Rows a plain SELECT (no FINAL) shows beyond one per id, not yet merged away."""
    too_late: int = 0
    """Events the correlator refused as too late (messages on ``correlation.late``)."""


@dataclass
class Diff:
    lost: int
    extra: int
    differing: int
    examples: list[str] = field(default_factory=list)


def scenario_documents(settings: Settings, events: int = EVENTS, seed: int = 11) -> list[Any]:
    """The documents of a generated scenario, in publish order, malformed lines left out."""
    generated = generate_scenario(
        ScenarioConfig(seed=seed, events=events), load_agencies(settings.agencies_config)
    )
    return [e.document for e in iter_events(generated) if e.kind != "malformed" and e.document]


def read_outcome(settings: Settings) -> Outcome:
    """Every table (FINAL) and view by id, and the order-independent projections; the sink
    must be stopped (chDB lets one process own the directory)."""
    client = get_client(settings)
    try:
        rows: Rows = {}
        raw: dict[str, int] = {}
        views: dict[str, int] = {}
        queries = dict(ORDER_INDEPENDENT)
        for name, key in {**TABLES, **VIEWS}.items():
            is_view = name in VIEWS
            count, unique = client.query(
                f"SELECT count(), uniqExact({key}) FROM {name}"
            ).result_rows[0]
            (views if is_view else raw)[name] = int(count) - int(unique)
            if not is_view:  # FINAL must show each id once
                count, unique = client.query(
                    f"SELECT count(), uniqExact({key}) FROM {name} FINAL"
                ).result_rows[0]
                views[f"{name} FINAL"] = int(count) - int(unique)
            if name in ORDER_DEPENDENT:
                continue
            columns = [
                r[0]
                for r in client.query(f"DESCRIBE TABLE {name}").result_rows
                if r[0] not in RUN_DEPENDENT
            ]
            final = "" if is_view else " FINAL"
            queries[name] = f"SELECT toString({key}), {', '.join(columns)} FROM {name}{final}"
        for name, sql in queries.items():
            rows[name] = {str(r[0]): tuple(r[1:]) for r in client.query(sql).result_rows}
        return Outcome(rows, views, raw)
    finally:
        client.close()


def compare(baseline: Outcome, run: Outcome) -> Diff:
    """Rows of ``baseline`` missing from ``run``, rows only in ``run``, rows that differ."""
    diff = Diff(0, 0, 0)
    for name, expected in baseline.rows.items():
        got = run.rows.get(name, {})
        lost = expected.keys() - got.keys()
        extra = got.keys() - expected.keys()
        differing = [k for k in expected.keys() & got.keys() if expected[k] != got[k]]
        diff.lost += len(lost)
        diff.extra += len(extra)
        diff.differing += len(differing)
        for label, keys in (("lost", lost), ("extra", extra), ("differs", differing)):
            for key in sorted(keys)[:2]:
                diff.examples.append(f"{name} {label} {key}: {expected.get(key)} -> {got.get(key)}")
    return diff


@dataclass
class FaultRecord:
    """One line of the fault table."""

    fault: str
    injected: int
    lost: int
    duplicated: int
    """Rows shown twice by an analysts' view or left twice after FINAL, plus extra ids."""
    differing: int
    recovery_s: float
    """From the end of the (last) fault to every group having committed everything."""
    raw_duplicates: int
    """Rows a plain SELECT shows twice until ClickHouse merges them (informational)."""
    too_late: int
    """Events the correlator set aside as too late (messages on ``correlation.late``); events
    re-read after a fault are duplicates, not late (the SIGKILL test asserts the baseline's
    count)."""


RECORDS: list[FaultRecord] = []
"""The session's fault table, printed at the end of the run (conftest)."""


class FaultRun:
    """One supervised pipeline run of the scenario on fresh topics, groups and tables."""

    def __init__(self, settings: Settings, documents: list[Any], workers: int = 1) -> None:
        self.settings = settings
        self.topics = Topics.from_settings(settings, load_agencies(settings.agencies_config))
        ensure_project_topics(settings, self.topics)
        self.messages: list[Message] = _messages(settings, documents)
        self.pipeline = Pipeline(settings, workers=workers, supervise=True)

    @property
    def bootstrap(self) -> str:
        return self.settings.kafka.bootstrap_servers

    def start(self) -> None:
        self.pipeline.start()
        self.pipeline.wait_until_settled(quiet_s=1.5)

    def publish(self, messages: list[Message]) -> None:
        publish(self.bootstrap, messages)

    def publish_paced(self, seconds: float) -> None:
        """Publish every message evenly over ``seconds`` from a thread: the producers keep
        running through the faults. :meth:`join_publisher` waits for it."""
        rate = len(self.messages) / seconds
        errors: list[BaseException] = []

        def target() -> None:
            try:
                publish(self.bootstrap, self.messages, rate=rate)
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=target, name="publisher", daemon=True)
        thread.start()
        self._publisher = (thread, errors)

    def publishing(self) -> bool:
        """True while the paced publisher still sends."""
        return self._publisher[0].is_alive()

    def join_publisher(self, timeout_s: float = 120.0) -> None:
        thread, errors = self._publisher
        thread.join(timeout_s)
        assert not thread.is_alive(), "the publisher did not finish"
        if errors:
            raise errors[0]

    READY = {"worker": "[^Worker]: Ready", "sink": "sink partitions assigned"}

    def ready_count(self, name: str) -> int:
        """How often ``name`` (worker-N, sink) has become ready so far, from its log."""
        return self.log(name).count(self.READY[name.partition("-")[0]])

    def wait_ready(self, name: str, times: int, timeout_s: float = 90.0) -> None:
        self.wait_for(
            lambda: self.ready_count(name) >= times, timeout_s, f"the {name} was not ready again"
        )

    def signal(self, name: str, signum: int = signal.SIGKILL) -> tuple[int, float]:
        """Send ``signum`` to a child and wait for it to exit: (exit status, seconds to exit).
        The supervisor restarts it at the next check."""
        process = self.pipeline.processes[name]
        started = time.monotonic()
        process.send_signal(signum)
        status = process.wait(timeout=60)
        return status, time.monotonic() - started

    def drain(self, timeout_s: float = 180.0) -> float:
        """Wait until every group has committed everything; seconds it took."""
        started = time.monotonic()
        self.pipeline.wait_until_drained(self.topics, timeout_s=timeout_s)
        return time.monotonic() - started

    def lags(self, settle_s: float = 5.0) -> dict[str, int]:
        """Uncommitted messages of the ingest, correlation and sink groups, once all are 0
        or ``settle_s`` has passed (a commit can trail the drained check by a moment)."""
        worker = self.settings.worker
        stages = [self.topics.blocks, self.topics.links, *self.topics.all_verdicts]
        deadline = time.monotonic() + settle_s
        while True:
            lags = {
                "ingest": group_lag(
                    self.bootstrap, worker.ingest_group_id, self.topics.all_incidents
                ),
                "correlation": group_lag(self.bootstrap, worker.app_id, stages),
                "sink": group_lag(self.bootstrap, self.settings.sink.group_id, self.topics.sunk()),
            }
            if not any(lags.values()) or time.monotonic() > deadline:
                return lags
            time.sleep(0.5)

    def wait_for(self, condition: Callable[[], bool], timeout_s: float, what: str) -> None:
        """Poll ``condition`` (the supervisor restarting exited children meanwhile)."""
        deadline = time.monotonic() + timeout_s
        while not condition():
            self.pipeline.check_alive()
            if time.monotonic() > deadline:
                tails = self.pipeline.log_tails()
                raise AssertionError(f"{what} within {timeout_s:.0f} s\n{tails}")
            time.sleep(0.2)

    def log(self, name: str) -> str:
        path = self.pipeline.log_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def finish(self) -> tuple[dict[str, int], Outcome]:
        """Lags after the drain, then stop everything and read what ClickHouse holds."""
        lags = self.lags()
        late = sum(topic_sizes(self.bootstrap, [self.topics.late]).values())
        self.pipeline.stop()
        outcome = read_outcome(self.settings)
        outcome.too_late = late
        return lags, outcome


def record(
    fault: str,
    injected: int,
    baseline: Outcome,
    outcome: Outcome,
    lags: dict[str, int],
    recovery_s: float,
) -> FaultRecord:
    """Compare with the fault-free run, add the line to the table, assert it is clean."""
    diff = compare(baseline, outcome)
    duplicated = diff.extra + sum(outcome.view_duplicates.values())
    line = FaultRecord(
        fault,
        injected,
        diff.lost,
        duplicated,
        diff.differing,
        round(recovery_s, 1),
        sum(outcome.raw_duplicates.values()),
        outcome.too_late,
    )
    RECORDS.append(line)
    assert lags == {"ingest": 0, "correlation": 0, "sink": 0}, lags
    assert (diff.lost, diff.extra, diff.differing) == (0, 0, 0), diff.examples
    assert not any(outcome.view_duplicates.values()), outcome.view_duplicates
    return line
