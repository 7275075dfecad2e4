"""``xborder verify`` and ``xborder cases``: joint verification for duty officers.

``verify confirm|reject|need-info|release|report CASE_ID --agency A ...`` sends one input
to ``verdicts.<A>`` and, unless ``--wait 0``, waits for the worker's answer: it prints
``accepted: ...`` (exit 0) or ``rejected (<reason>): <message>`` (exit 1); no answer in
time is one line on stderr and exit 2. The officer's token and key id come from
``--officer-token`` / ``--officer-key-id`` or the environment variables named below
(they are the officer's, not the deployment's, so they are not settings).

``cases list`` and ``cases show`` fold the ``cases`` and ``verification`` topics (see
:mod:`xborder.case_fold`); an unknown case is one line on stderr and exit 1. A case id may
be given as a unique prefix, as ``cases list`` shows it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TextIO

from xborder.case_fold import WAITING, CaseSummary, iso
from xborder.errors import ConfigurationError, XborderError
from xborder.settings import Settings

ENV_OFFICER_TOKEN = "OFFICER_TOKEN"
"""Environment variable read when ``--officer-token`` is not given."""
ENV_OFFICER_KEY_ID = "OFFICER_KEY_ID"
"""Environment variable read when ``--officer-key-id`` is not given."""
DEFAULT_WAIT_S = 15.0
SHORT_ID = 12
"""Characters of a case id ``cases list`` shows."""
MIN_PREFIX = 6
STATUSES = ("OPEN", "PENDING_VERIFICATION", "CONFIRMED", "REJECTED", "DISPUTED", "CONCLUDED")
_FULL_ID = re.compile(r"[0-9a-f]{64}")

VerifyAction = Literal["confirm", "reject", "need-info", "release", "report"]


class UnknownCaseError(XborderError):
    """No case (or more than one) matches the id given."""


def match_case(case_ids: Sequence[str], given: str) -> str:
    """The case id ``given`` names: itself, or the one case id it is a prefix of."""
    wanted = given.rstrip("…").strip()
    if wanted in case_ids:
        return wanted
    if len(wanted) < MIN_PREFIX:
        raise UnknownCaseError(
            f"no case {given!r}; give the case id or at least {MIN_PREFIX} of its first "
            "characters (see 'xborder cases list')"
        )
    found = [c for c in case_ids if c.startswith(wanted)]
    if len(found) != 1:
        raise UnknownCaseError(
            f"no case {given!r}; see 'xborder cases list'"
            if not found
            else f"{given!r} is the start of {len(found)} case ids; give more of it"
        )
    return found[0]


# -- verify -------------------------------------------------------------------------------


def event_from_file(
    path: str, agency: str, incident_id: str, event_id: str | None = None
) -> dict[str, Any]:
    """The newest event of ``agency``'s ``incident_id`` in a JSON-lines file (the one with
    ``event_id`` when given): what a release with details copies them from."""
    found: dict[str, Any] | None = None
    try:
        with open(path, encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    event = json.loads(line)
                except ValueError as exc:
                    raise ConfigurationError(
                        f"{path}, line {number}: not a JSON event ({exc}); "
                        "give the JSON lines your agency published"
                    ) from exc
                if not isinstance(event, dict):
                    continue
                if event.get("agency") != agency or event.get("incident_id") != incident_id:
                    continue
                if event_id is None or event.get("event_id") == event_id:
                    found = event
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read --details-file {path}: {exc}") from exc
    if found is None:
        which = f"event {event_id} of " if event_id else ""
        raise ConfigurationError(
            f"--details-file {path} has no {which}{agency} incident {incident_id}; "
            "give the file of events your agency published"
        )
    return found


def cmd_verify(settings: Settings, args: argparse.Namespace) -> int:
    from xborder.agencies import load_agencies
    from xborder.verification import (
        VerificationClient,
        VerificationTimeout,
        fold_cases,
        outcome_positions,
        wait_for_outcome,
    )
    from xborder.wire import codec_for

    action: VerifyAction = args.action
    if not (args.officer_token and args.officer_key_id):
        raise ConfigurationError(
            "the deciding officer is needed: give --officer-token and --officer-key-id "
            f"(or set {ENV_OFFICER_TOKEN} and {ENV_OFFICER_KEY_ID})"
        )
    _check_before_connecting(args)
    released_event = None
    if action == "release" and args.details_file:
        released_event = event_from_file(
            args.details_file, args.agency, args.incident, args.incident_event_id
        )
    agencies = load_agencies(settings.agencies_config)
    codec = codec_for(settings)
    with VerificationClient(
        settings,
        agencies,
        codec,
        args.agency,
        officer_token=args.officer_token,
        officer_key_id=args.officer_key_id,
    ) as client:
        case_id = args.case_id
        if not _FULL_ID.fullmatch(case_id):  # a prefix from 'cases list'
            try:
                case_id = match_case(sorted(fold_cases(settings, codec)), case_id)
            except UnknownCaseError as exc:
                print(f"xborder verify: error: {exc}", file=sys.stderr)
                return 1
        # a retry's outcome may be older than now: then read both topics from the start
        fresh = args.wait > 0 and args.event_id is None
        since = outcome_positions(settings) if fresh else None
        if action == "release":
            event_id = client.release(
                case_id,
                args.incident,
                args.incident_event_id,
                event_id=args.event_id,
                event=released_event,
            )
        elif action == "report":
            event_id = client.report(
                case_id, args.conclusion, args.conclusion_id, event_id=args.event_id
            )
        else:
            event_id = client.verdict(case_id, args.decision, args.reason, event_id=args.event_id)
    if args.wait <= 0:
        print(f"sent: {event_id} to {client.topic} about case {case_id}")
        return 0
    try:
        outcome = wait_for_outcome(settings, codec, event_id, args.wait, since)
    except VerificationTimeout as exc:
        print(f"xborder verify: timeout: {exc}", file=sys.stderr)
        return 2
    print(outcome.line())
    return 0 if outcome.accepted else 1


def _check_before_connecting(args: argparse.Namespace) -> None:
    """Build the record once without Kafka, so a bad flag fails before any connection."""
    from xborder.verification import Officer, release_record, report_record, verdict_record

    officer = Officer(args.officer_token, args.officer_key_id)
    if args.action == "release":
        if args.incident_event_id is not None:
            release_record(
                args.agency, args.case_id, args.incident, args.incident_event_id, officer=officer
            )
        return
    if args.action == "report":
        report_record(
            args.agency, args.case_id, args.conclusion, officer, conclusion_id=args.conclusion_id
        )
    else:
        verdict_record(args.agency, args.case_id, args.decision, args.reason, officer)


# -- cases --------------------------------------------------------------------------------


def cmd_cases(settings: Settings, args: argparse.Namespace) -> int:
    from xborder.verification import fold_cases
    from xborder.wire import codec_for

    cases = fold_cases(settings, codec_for(settings))
    if args.action == "list":
        listed = select_cases(cases, args.status, args.agency, args.double_report)
        if args.format == "json":
            for case in listed:
                print(json.dumps(case.as_dict()))
        else:
            print_case_list(listed, sys.stdout)
        return 0
    try:
        case = cases[match_case(sorted(cases), args.case_id)]
    except UnknownCaseError as exc:
        print(f"xborder cases: error: {exc}", file=sys.stderr)
        return 1
    if args.format == "json":
        print(json.dumps(case.as_dict(), indent=2))
    else:
        print_case(case, sys.stdout)
    return 0


def select_cases(
    cases: Mapping[str, CaseSummary],
    status: str | None = None,
    agency: str | None = None,
    double_report: bool = False,
) -> list[CaseSummary]:
    """Live cases (not merged away) matching the filters, most recently changed first."""
    chosen = [
        c
        for c in cases.values()
        if c.merged_into is None
        and (status is None or c.status == status)
        and (agency is None or agency in c.agencies)
        and (not double_report or c.possible_double_report)
    ]
    return sorted(chosen, key=lambda c: (-c.sequence, c.case_id))


def short_id(case_id: str) -> str:
    return case_id if len(case_id) <= SHORT_ID else case_id[:SHORT_ID] + "…"


def print_case_list(cases: Sequence[CaseSummary], out: TextIO) -> None:
    from xborder.cli import print_table

    print_table(
        ["case", "status", "agencies", "incidents", "double", "awaiting"],
        [
            [
                short_id(c.case_id),
                c.status,
                ",".join(c.agencies),
                len(c.incidents),
                "yes" if c.possible_double_report else "",
                ",".join(c.awaiting),
            ]
            for c in cases
        ],
        out,
    )
    waiting = sum(c.status in WAITING for c in cases)
    out.write(f"{len(cases)} cases, {waiting} waiting for verification\n")


def print_case(case: CaseSummary, out: TextIO) -> None:
    """A case for a duty officer: facts, verdicts, conclusion, report, releases, timeline."""

    def line(text: str = "") -> None:
        out.write(text + "\n")

    line(f"case        {case.case_id}")
    merged = f" (merged into {case.merged_into})" if case.merged_into else ""
    line(f"status      {case.status}{merged}")
    line(f"agencies    {', '.join(case.agencies) or '-'}")
    line(f"awaiting    {', '.join(case.awaiting) or '-'}")
    if case.possible_double_report:
        line("double      possible double report: some incidents may be one occurrence")
    if case.absorbed:
        line(f"absorbed    {', '.join(case.absorbed)}")
    line(f"incidents   {len(case.incidents)}")
    for (agency, incident_id), event_id in sorted(case.incidents.items()):
        line(f"  {agency}  {incident_id}  (event {event_id})")
    line(f"evidence    {len(case.evidence)} of {len(case.correlation_ids)} links")
    for link in case.evidence:
        pair = " ~ ".join("/".join(ref) for ref in link["incidents"])
        line(f"  {link['match_kind']}  {pair}  score {link['score']:.1f} (>= {link['threshold']})")
        for e in link["evidence"]:
            line(f"    {e['kind']} {e['weight']:+.1f}  {e['detail']}")
    line(f"verdicts    {len(case.verdicts)}")
    for v in case.verdicts:
        reason = f"  {v['reason']!r}" if v.get("reason") else ""
        line(
            f"  {iso(v['decided_at'])}  {v['agency']}  {v['decision']}  "
            f"officer {v['officer_token'][:12]}… ({v['officer_key_id']}){reason}"
        )
    conclusion = case.conclusion
    if conclusion is not None:
        line(
            f"conclusion  {conclusion['conclusion_id']} (version {conclusion['case_version']}, "
            f"agreed {iso(conclusion['agreed_at'])})"
        )
    elif case.conclusions:
        line(f"conclusion  none standing ({len(case.conclusions)} earlier, reopened since)")
    report = case.report
    if report is not None:
        line(
            f"report      {iso(report['requested_at'])}  {report['agency']}: {report['conclusion']}"
        )
    if case.releases:
        line(f"releases    {len(case.releases)}")
        for r in case.releases:
            line(
                f"  {iso(r['released_at'])}  {r['agency']}  {r['incident']['incident_id']}  "
                f"to {', '.join(r.get('audience') or ()) or '-'}"
            )
    if case.escalations:
        last = iso(case.escalations[-1]["sent"])
        line(f"overdue     {len(case.escalations)} escalation(s), last {last}")
    line("timeline")
    for entry in case.timeline:
        line(f"  {iso(entry['at'])}  {_describe(entry)}")


def _describe(entry: Mapping[str, Any]) -> str:
    details = {k: v for k, v in entry.items() if k not in ("at", "what")}
    parts = [str(entry["what"])]
    for key, value in details.items():
        if isinstance(value, list):
            value = ", ".join("/".join(v) if isinstance(v, list) else str(v) for v in value)
        if value not in ("", None):
            parts.append(f"{key}={value}")
    return "  ".join(parts)


# -- parsers ------------------------------------------------------------------------------


def add_verify_parser(sub: Any) -> None:
    """``xborder verify ...`` on the main parser's subcommands ``sub``."""
    verify = sub.add_parser(
        "verify",
        help="joint verification for duty officers: confirm, reject or ask about a case, "
        "release an incident's details, report the agreed conclusion",
    )
    actions = verify.add_subparsers(dest="action", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "case_id", metavar="CASE_ID", help="case id, or a unique prefix of it ('cases list')"
    )
    common.add_argument("--agency", required=True, help="your agency id")
    common.add_argument(
        "--wait",
        type=float,
        default=DEFAULT_WAIT_S,
        metavar="SECONDS",
        help="wait this long for the worker's answer; 0 sends without waiting",
    )
    common.add_argument(
        "--event-id",
        help="send again with an earlier input's event_id (a retry the worker de-duplicates)",
    )
    officer = argparse.ArgumentParser(add_help=False)
    officer.add_argument(
        "--officer-token",
        default=os.environ.get(ENV_OFFICER_TOKEN),
        help=f"your pseudonymous token, 64 hex (default ${ENV_OFFICER_TOKEN})",
    )
    officer.add_argument(
        "--officer-key-id",
        default=os.environ.get(ENV_OFFICER_KEY_ID),
        help=f"id of the key behind the token (default ${ENV_OFFICER_KEY_ID})",
    )
    for name, decision, text in (
        ("confirm", "CONFIRM", "the link is real"),
        ("reject", "REJECT", "the link is not real (--reason required)"),
        ("need-info", "NEED_MORE_INFO", "cannot decide yet (--reason says what is needed)"),
    ):
        verdict = actions.add_parser(name, parents=[common, officer], help=text)
        verdict.add_argument("--reason", default="", help="why; no personal identifiers")
        verdict.set_defaults(decision=decision)
    release = actions.add_parser(
        "release", parents=[common, officer], help="release your incident's details to the case"
    )
    release.add_argument("--incident", required=True, help="your agency's incident id")
    release.add_argument(
        "--incident-event-id", help="the incident event released (default: the one the case linked)"
    )
    release.add_argument(
        "--details-file",
        help="JSON lines of your agency's events (as given to 'xborder publish'): the newest "
        "event of --incident (or --incident-event-id) is released with its details, which the "
        "case's agencies then read on the verification topic; without it the release only "
        "names the event",
    )
    report = actions.add_parser(
        "report", parents=[common, officer], help="report the agreed conclusion to superiors"
    )
    report.add_argument("--conclusion", required=True, help="the conclusion text, as agreed")
    report.add_argument(
        "--conclusion-id", help="the conclusion you read (rejected as stale if it changed)"
    )
    verify.set_defaults(handler=cmd_verify)


def add_cases_parser(sub: Any) -> None:
    """``xborder cases list|show`` on the main parser's subcommands ``sub``."""
    cases = sub.add_parser("cases", help="cross-border cases and their verification, from Kafka")
    actions = cases.add_subparsers(dest="action", required=True)
    fmt = argparse.ArgumentParser(add_help=False)
    fmt.add_argument("--format", choices=["table", "json"], default="table")
    listing = actions.add_parser("list", parents=[fmt], help="live cases, newest change first")
    listing.add_argument("--status", choices=STATUSES, help="only cases with this status")
    listing.add_argument("--agency", help="only cases this agency is involved in")
    listing.add_argument(
        "--double-report", action="store_true", help="only possible double reports"
    )
    show = actions.add_parser("show", parents=[fmt], help="one case in full")
    show.add_argument("case_id", metavar="CASE_ID", help="case id, or a unique prefix of it")
    cases.set_defaults(handler=cmd_cases)
