"""``xborder backfill``: correlate the events the live correlator refused as too late
(the flow is :mod:`streams.flows.backfill`; docs/operations.md, Late data and backfills)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from xborder.settings import Settings


def cmd_backfill(settings: Settings, args: argparse.Namespace) -> int:
    """Run one backfill and print what it did; 0 when it completed."""
    from streams.flows.backfill import run_backfill
    from streams.worker import correlator_config
    from xborder.agencies import load_agencies
    from xborder.geo import jurisdictions_for
    from xborder.topics import Topics
    from xborder.wire import codec_for

    agencies = load_agencies(settings.agencies_config)
    report = run_backfill(
        settings,
        Topics.from_settings(settings, agencies),
        codec_for(settings),
        jurisdictions_for(agencies),
        correlator_config(settings, agencies),
        from_start=args.from_start,
        dry_run=args.dry_run,
    )
    print(json.dumps(report.as_dict(), indent=2) if args.json else report.line())
    return 0


def add_backfill_parser(sub: Any) -> None:
    """The ``backfill`` subcommand."""
    backfill = sub.add_parser(
        "backfill",
        help="correlate the events that arrived too late for the live correlator",
    )
    backfill.add_argument(
        "--from-start",
        action="store_true",
        help="every late event still on the late topic, not only those not yet backfilled",
    )
    backfill.add_argument(
        "--dry-run", action="store_true", help="correlate and report, send and commit nothing"
    )
    backfill.add_argument("--json", action="store_true", help="print the report as JSON")
    backfill.set_defaults(handler=cmd_backfill)
