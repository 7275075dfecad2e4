"""Identity-matching quality by person-key policy: ``xborder bench identity``.

For each policy (what the agencies record of a person: ``both`` keys, only the name with
birth date, ...), it generates the same scenario (seed, size) with namesakes and twins,
correlates it in this process with the worker's engine (one partition, events in
publication order, the default weights), and scores the identity links against the
truth: precision, recall, and the planted namesake pairs linked by variant (and, next to
them, the same-occurrence matches against the planted double reports). No Kafka: the
figures measure the evidence and weights, not the transport.

    xborder bench identity --events 20000 --seeds 1,2
    xborder bench identity --policies both,name_birth_date,cantho=both;angiang=name_birth_date
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any

from streams.correlation.blocking import blocking_keys
from streams.correlation.engine import Correlator, CorrelatorConfig
from streams.correlation.model import IncidentView, Ref, view_from_event
from xborder.agencies import load_agencies
from xborder.geo import jurisdictions_for
from xborder.jsonavro import parse_timestamp
from xborder.quality import evaluate
from xborder.scenario import ScenarioConfig, generate_scenario, iter_events
from xborder.scenario.model import EPOCH
from xborder.settings import Settings

DEFAULT_POLICIES = (
    "both",
    "name_birth_date",
    "cantho=both;angiang=name_birth_date",
    "name_birth_year",
    "unspecified",
)
_BATCH = 500
_MS = timedelta(milliseconds=1)


def _components(pairs: Iterable[tuple[Ref, Ref]]) -> list[list[Ref]]:
    parent: dict[Ref, Ref] = {}

    def root(x: Ref) -> Ref:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        parent[root(a)] = root(b)
    groups: dict[Ref, list[Ref]] = {}
    for x in list(parent):
        groups.setdefault(root(x), []).append(x)
    return list(groups.values())


def run_policy(policy: str, events: int, seed: int, settings: Settings) -> dict[str, Any]:
    """Generate, correlate and score one scenario under one person-key policy."""
    agencies = load_agencies(settings.agencies_config)
    config = ScenarioConfig(seed=seed, events=events, person_keys=policy.replace(";", ","))
    scenario = generate_scenario(config, agencies)
    jurisdictions = jurisdictions_for(agencies)
    correlator = Correlator(CorrelatorConfig())
    blocking = correlator.config.blocking
    identity: set[tuple[Ref, Ref]] = set()
    doubles: set[tuple[Ref, Ref]] = set()
    started = time.process_time()
    batch: list[tuple[str, IncidentView]] = []

    def flush() -> None:
        for record in correlator.process(batch).correlations:
            a, b = record["incident_a"], record["incident_b"]
            found = ((a["agency"], a["incident_id"]), (b["agency"], b["incident_id"]))
            if record.get("match_kind", "IDENTITY") == "IDENTITY":
                identity.add(found)
            else:
                doubles.add(found)
        batch.clear()

    for event in iter_events(scenario):
        if event.kind == "malformed" or not event.document:
            continue
        view = view_from_event(_as_avro(event.document), jurisdictions)
        batch.extend((key, view) for key in blocking_keys(view, blocking))
        if len(batch) >= _BATCH:
            flush()
    flush()
    cpu_s = time.process_time() - started
    report = evaluate(identity, _components(identity), scenario.truth, doubles)
    links, same = report.links, report.double_reports
    assert same is not None
    return {
        "policy": policy,
        "seed": seed,
        "events": events,
        "precision": round(links.precision, 4),
        "recall": round(links.recall, 4),
        "true_links": links.true,
        "false_positives": links.fp,
        "false_negatives": links.fn,
        "namesake_links": dict(report.namesake_links),
        "namesake_pairs": {k: len(v) for k, v in scenario.truth.namesakes.items()},
        "same_occurrence_precision": round(same.precision, 4),
        "same_occurrence_recall": round(same.recall, 4),
        "cpu_s": round(cpu_s, 2),
    }


def _as_avro(document: dict[str, Any]) -> dict[str, Any]:
    """The scenario's JSON document with its times as epoch milliseconds (what the view
    reads from a decoded event)."""
    out = dict(document)
    for name in ("occurred_at", "reported_at", "updated_at"):
        if isinstance(out.get(name), str):
            moment = parse_timestamp(out[name], name)
            out[name] = (moment - EPOCH) // _MS
    return out


def main(settings: Settings, argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="xborder bench identity",
        description="identity-link quality per person-key policy, on generated scenarios "
        "with namesakes and twins (in-process engine, no Kafka)",
    )
    parser.add_argument("--events", type=int, default=20_000, help="events per scenario")
    parser.add_argument("--seeds", default="1", help="comma-separated seeds")
    parser.add_argument(
        "--policies",
        default=",".join(DEFAULT_POLICIES),
        help="comma-separated person-key policies (per agency: a=both;b=name_birth_date)",
    )
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    results = []
    head = f"{'policy':40} {'seed':>4} {'precision':>9} {'recall':>7} {'fp':>5} {'fn':>5}"
    print(f"{head}  namesakes linked; same-occurrence precision/recall")
    for policy in (p for p in args.policies.split(",") if p.strip()):
        for seed in seeds:
            row = run_policy(policy.strip(), args.events, seed, settings)
            results.append(row)
            linked = ", ".join(
                f"{row['namesake_links'][k]}/{row['namesake_pairs'][k]} {k}"
                for k in sorted(row["namesake_pairs"])
            )
            print(
                f"{row['policy']:40} {seed:>4} {row['precision']:>9.4f} {row['recall']:>7.4f} "
                f"{row['false_positives']:>5} {row['false_negatives']:>5}  {linked}; "
                f"{row['same_occurrence_precision']:.3f}/{row['same_occurrence_recall']:.3f}",
                flush=True,
            )
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
        print(f"figures written to {args.out}", file=sys.stderr)
    return 0
