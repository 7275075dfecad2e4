"""The live demo: local Kafka up, worker and sink running, sample events through, joint
verification of two cases, queries.

The samples hold a cross-border pair sharing a vehicle and one brawl on the boundary road
reported by both agencies. Once the worker has opened a case for each, two example duty
officers (tokens generated per run) verify them through :mod:`xborder.verification`: the
double report is confirmed by both agencies, agreed and reported; the shared-vehicle case
is confirmed by one agency and rejected by the other, so disputed, and its report is
refused. Every outcome is compared with the expected one; the exit status is 1 when any
differs. The sink owns the embedded ClickHouse, so the tables are queried after it stops.

:func:`publish_samples` is also used by the end-to-end tests.
"""

from __future__ import annotations

import secrets
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from xborder.agencies import load_agencies
from xborder.clickhouse import get_client, query_rows
from xborder.errors import XborderError
from xborder.local_kafka import LocalKafka
from xborder.pipeline import Pipeline
from xborder.producer import IncidentPublisher
from xborder.samples import double_report, sample_events
from xborder.settings import Settings
from xborder.topics import Topics, ensure_project_topics
from xborder.verification import (
    VerificationClient,
    VerificationOutcome,
    find_case,
    fold_cases,
    outcome_positions,
    wait_for_outcome,
)
from xborder.wire import WireCodec, codec_for

DEMO_QUERY = """
SELECT agency, incident_id, category, severity,
       formatDateTime(occurred_at, '%Y-%m-%d %H:%i', 'UTC') AS occurred_utc,
       admin_unit_name, round(lat, 3) AS lat, round(lon, 3) AS lon,
       length(subject_tokens) AS subjects, source_topic
FROM incidents FINAL
WHERE event_id IN {ids:Array(UUID)}
ORDER BY occurred_at
"""

LINKS_QUERY = """
SELECT a_agency, a_incident_id, b_agency, b_incident_id, match_kind, round(score, 1) AS score,
       arrayStringConcat(evidence_kinds, ',') AS evidence, left(c.case_id, 12) AS case
FROM correlations FINAL
LEFT JOIN (SELECT agency, incident_id, case_id FROM case_members FINAL) AS c
       ON c.agency = a_agency AND c.incident_id = a_incident_id
WHERE a_incident_id IN {incidents:Array(String)} OR b_incident_id IN {incidents:Array(String)}
ORDER BY score DESC
"""

ALERTS_QUERY = """
SELECT alert_kind, count() AS alerts, any(headline) AS example
FROM alerts FINAL GROUP BY alert_kind ORDER BY alert_kind
"""

VERIFICATION_QUERIES = {
    "Cases verified in this run (cases_current)": """
SELECT left(case_id, 12) AS case, status, arrayStringConcat(agencies, ',') AS agencies,
       possible_double_report AS double_report, events
FROM cases_current WHERE case_id IN {cases:Array(String)} ORDER BY opened_at
""",
    "Their verdicts (verdicts)": """
SELECT left(case_id, 12) AS case, agency, decision, reason,
       formatDateTime(decided_at, '%H:%i:%S', 'UTC') AS decided_utc,
       concat(left(officer_token, 12), '…') AS officer, officer_key_id
FROM verdicts FINAL WHERE case_id IN {cases:Array(String)} ORDER BY decided_at
""",
    "Agreed conclusions (case_conclusions)": """
SELECT left(conclusion_id, 12) AS conclusion, left(case_id, 12) AS case, case_version,
       arrayStringConcat(verdict_agencies, ',') AS confirmed_by,
       possible_double_report AS double_report, length(incident_ids) AS incidents,
       formatDateTime(agreed_at, '%H:%i:%S', 'UTC') AS agreed_utc
FROM case_conclusions FINAL WHERE case_id IN {cases:Array(String)} ORDER BY agreed_at
""",
    "Reports to superiors (case_reports)": """
SELECT left(case_id, 12) AS case, agency, left(conclusion_id, 12) AS agreed_conclusion, conclusion
FROM case_reports FINAL WHERE case_id IN {cases:Array(String)} ORDER BY requested_at
""",
    "Time to agreement, from the case's opening (event time: the later report of the brawl)"
    " to each confirmation (time_to_agreement)": """
SELECT left(case_id, 12) AS case, agency, round(seconds_to_verdict, 1) AS seconds_to_verdict,
       round(seconds_to_agreement, 1) AS seconds_to_agreement
FROM time_to_agreement WHERE case_id IN {cases:Array(String)} ORDER BY case_id, agency
""",
}
"""Titles and queries of the verification tables printed after the run."""

EXAMPLE_OFFICER_KEY_ID = "example-demo-key"
"""Key id of the example officers' tokens: random per run, nobody's pseudonym."""
WAIT_S = 30.0
"""How long the demo waits for a case or an outcome before calling the step failed."""


def publish_samples(settings: Settings, events: list[dict[str, Any]]) -> None:
    """Publish each event through its own agency's publisher."""
    agencies = load_agencies(settings.agencies_config)
    codec = codec_for(settings)
    by_agency: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        by_agency[event["agency"]].append(event)
    for agency_id, batch in by_agency.items():
        with IncidentPublisher(settings, agencies, codec, agency_id) as publisher:
            publisher.publish_batch(batch)


def _step(out: TextIO, started: float, text: str) -> None:
    out.write(f"[{time.monotonic() - started:6.1f} s] {text}\n")
    out.flush()


def _short(case_id: str) -> str:
    """The first 12 characters: enough for 'xborder cases show' and the tables."""
    return case_id[:12]


class JointVerification:
    """Two example duty officers, one per agency, walking the demo's cases through joint
    verification; each outcome that differs from the expected one is kept in ``failures``."""

    def __init__(self, settings: Settings, out: TextIO, started: float) -> None:
        self.settings = settings
        self.codec: WireCodec = codec_for(settings)
        self.out, self.started = out, started
        self.failures: list[str] = []
        self.case_ids: dict[str, str] = {}
        """Expected final status -> case id."""
        agencies = load_agencies(settings.agencies_config)
        self.clients = {
            agency: VerificationClient(
                settings,
                agencies,
                self.codec,
                agency,
                officer_token=secrets.token_hex(32),
                officer_key_id=EXAMPLE_OFFICER_KEY_ID,
            )
            for agency in ("cantho", "angiang")
        }

    def close(self) -> None:
        for client in self.clients.values():
            client.close()

    def _step(self, text: str) -> None:
        _step(self.out, self.started, text)

    def _expect(self, ok: bool, what: str) -> bool:
        if not ok:
            self.failures.append(what)
            self._step(f"  UNEXPECTED: {what}")
        return ok

    def _case(self, event: dict[str, Any], other: dict[str, Any], kind: str) -> str:
        """The case holding both incidents, announced; kind is how they were linked."""
        case_id = find_case(
            self.settings, self.codec, event["agency"], event["incident_id"], WAIT_S
        )
        case = fold_cases(self.settings, self.codec)[case_id]
        both = {(e["agency"], e["incident_id"]) for e in (event, other)}
        self._expect(both <= set(case.incidents), f"case {_short(case_id)} lacks {both}")
        double = kind == "possible double report"
        self._expect(
            case.possible_double_report == double,
            f"case {_short(case_id)}: possible_double_report is {case.possible_double_report}",
        )
        self._step(
            f"joint case {_short(case_id)} opened ({kind}): "
            f"{event['agency']} {event['incident_id']} + {other['agency']} {other['incident_id']}"
        )
        return case_id

    def _send(self, agency: str, send: Callable[[VerificationClient], str]) -> VerificationOutcome:
        """Send one input of ``agency``'s officer and wait for the lifecycle's outcome."""
        since = outcome_positions(self.settings)
        event_id = send(self.clients[agency])
        return wait_for_outcome(self.settings, self.codec, event_id, WAIT_S, since)

    def _conclusion(self, case_id: str, outcome: VerificationOutcome) -> dict[str, Any] | None:
        """The conclusion the last confirmation completed: from its outcome, or (published
        a moment after the verdict) from the topics."""
        deadline = time.monotonic() + WAIT_S
        conclusion = outcome.conclusion
        while conclusion is None and time.monotonic() < deadline:
            conclusion = fold_cases(self.settings, self.codec)[case_id].conclusion
            if conclusion is None:
                time.sleep(0.5)
        return conclusion

    def agree(self, brawl: Sequence[dict[str, Any]]) -> None:
        """The double report: both agencies confirm, the conclusion is agreed and reported."""
        case_id = self._case(brawl[0], brawl[1], "possible double report")
        self.case_ids["CONCLUDED"] = case_id
        first = self._send("cantho", lambda c: c.confirm(case_id))
        self._expect(first.accepted, f"cantho's CONFIRM {first.line()}")
        self._step("  cantho CONFIRM: accepted, waiting for angiang")
        second = self._send("angiang", lambda c: c.confirm(case_id))
        conclusion = self._conclusion(case_id, second) if second.accepted else None
        if not self._expect(conclusion is not None, f"no agreed conclusion: {second.line()}"):
            return
        assert conclusion is not None
        self._step(
            f"  angiang CONFIRM: accepted; agreed conclusion {_short(conclusion['conclusion_id'])}"
            f" (case version {conclusion['case_version']}, confirmed by "
            f"{', '.join(v['agency'] for v in conclusion['verdicts'])})"
        )
        text = "One brawl on the boundary road, reported by both agencies; handled jointly."
        report = self._send(
            "cantho", lambda c: c.report(case_id, text, conclusion["conclusion_id"])
        )
        if self._expect(report.accepted, f"cantho's report {report.line()}"):
            self._step("  cantho reports the agreed conclusion to its superiors: accepted")

    def dispute(self, pair: Sequence[dict[str, Any]]) -> None:
        """The shared-vehicle pair: cantho confirms, angiang rejects, the report is refused."""
        case_id = self._case(pair[0], pair[1], "shared vehicle")
        self.case_ids["DISPUTED"] = case_id
        first = self._send("cantho", lambda c: c.confirm(case_id))
        self._expect(first.accepted, f"cantho's CONFIRM {first.line()}")
        self._step("  cantho CONFIRM: accepted, waiting for angiang")
        reason = "On review the two vehicles differ; not one series of thefts."
        second = self._send("angiang", lambda c: c.reject(case_id, reason))
        if self._expect(
            second.accepted and second.conclusion is None, f"angiang's REJECT {second.line()}"
        ):
            self._step(f'  angiang REJECT ("{reason}"): accepted, the case is disputed')
        text = "Same vehicle in thefts on both sides; handled jointly."
        report = self._send("cantho", lambda c: c.report(case_id, text))
        self._step(f"  cantho tries to report it anyway: {report.line()}")
        self._expect(
            not report.accepted and report.reason == "case-disputed",
            f"the report on the disputed case was not refused as case-disputed: {report.line()}",
        )


def _query_verification(settings: Settings, verification: JointVerification, out: TextIO) -> None:
    """Print the verification tables for this run's cases; check their statuses."""
    cases = list(verification.case_ids.values())
    client = get_client(settings)
    try:
        tables = {
            title: query_rows(client, sql, {"cases": cases})
            for title, sql in VERIFICATION_QUERIES.items()
        }
        _, statuses = query_rows(
            client,
            "SELECT case_id, status FROM cases_current WHERE case_id IN {cases:Array(String)}",
            {"cases": cases},
        )
    finally:
        client.close()
    from xborder.cli import print_table

    for title, (columns, rows) in tables.items():
        out.write(f"\n{title}:\n")
        print_table(columns, rows, out)
    stored = dict(statuses)
    for expected, case_id in verification.case_ids.items():
        if stored.get(case_id) != expected:
            verification.failures.append(
                f"case {_short(case_id)} is {stored.get(case_id)} in ClickHouse, not {expected}"
            )


def run_demo(
    settings: Settings, events: int = 6, keep_running: bool = False, out: TextIO = sys.stdout
) -> int:
    """The main job of the README's first command."""
    started = time.monotonic()
    kafka = LocalKafka(settings.local_kafka, settings.kafka_data_dir)
    _step(
        out,
        started,
        f"fetching Apache Kafka {settings.local_kafka.version} (cached after the first run)",
    )
    kafka.fetch()
    _step(out, started, f"starting Kafka on {kafka.bootstrap} (data in {kafka.data_dir})")
    was_running = kafka.status().running
    kafka.up()
    try:
        topics = Topics.from_settings(settings, load_agencies(settings.agencies_config))
        ensure_project_topics(settings, topics)
        pipeline = Pipeline(settings)
        _step(out, started, "starting the Faust worker and the ClickHouse sink")
        with pipeline.running():
            samples = sample_events(events)
            brawl = double_report()
            batch = samples + brawl
            _step(
                out,
                started,
                f"publishing {len(batch)} sample incident events ({len(samples)} samples, and "
                "a brawl on the boundary road reported by both agencies)",
            )
            publish_samples(settings, batch)
            _step(out, started, "waiting for the worker and the sink to commit them")
            pipeline.wait_until_drained(topics)
            _step(
                out,
                started,
                "joint verification by two example duty officers (officer tokens generated "
                f"for this run, key id {EXAMPLE_OFFICER_KEY_ID})",
            )
            verification = JointVerification(settings, out, started)
            try:
                verification.agree(brawl)
                if len(samples) >= 2:
                    verification.dispute(samples[:2])
                else:
                    _step(out, started, "(fewer than 2 samples: no shared-vehicle case)")
            except XborderError as exc:  # a timeout: what came before is still shown
                verification.failures.append(str(exc))
                _step(out, started, f"  UNEXPECTED: {exc}")
            finally:
                verification.close()
            _step(out, started, "waiting for the sink to store the verification")
            pipeline.wait_until_drained(topics)
            _step(out, started, "stopping worker and sink (the sink owns embedded ClickHouse)")
        client = get_client(settings)
        try:
            columns, rows = query_rows(client, DEMO_QUERY, {"ids": [e["event_id"] for e in batch]})
            _, totals = query_rows(
                client,
                "SELECT agency, category, count() FROM incidents FINAL "
                "GROUP BY agency, category ORDER BY agency, category",
            )
            ids = {"incidents": [e["incident_id"] for e in batch]}
            link_columns, links = query_rows(client, LINKS_QUERY, ids)
            alert_columns, alerts = query_rows(client, ALERTS_QUERY)
        finally:
            client.close()
        _step(out, started, f"analyst query returned {len(rows)} of {len(batch)} events:")
        from xborder.cli import print_table

        out.write("\n" + DEMO_QUERY.strip() + "\n\n")
        print_table(columns, rows, out)
        out.write("\nAll incidents stored so far, by agency and category:\n")
        print_table(["agency", "category", "incidents"], totals, out)
        out.write(f"\nCross-border links among this run's incidents ({len(links)}):\n")
        print_table(link_columns, links, out)
        out.write("\nAlerts sent to the agencies' monitoring topics so far:\n")
        print_table(alert_columns, alerts, out)
        _query_verification(settings, verification, out)
        out.write("\n")
        if len(rows) != len(batch):
            verification.failures.append(f"{len(rows)} of {len(batch)} events in ClickHouse")
        for failure in verification.failures:
            out.write(f"unexpected: {failure}\n")
        return 1 if verification.failures else 0
    finally:
        if not keep_running and not was_running:
            _step(out, started, "stopping Kafka")
            kafka.down()
        _step(out, started, "done")
