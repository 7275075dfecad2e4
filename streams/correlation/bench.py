"""Hot-path benchmark: ``Correlator.process`` items/s with 100k and 1M events in the window.

Run ``python -m streams.correlation.bench`` (``--help`` for sizes and modes). Synthetic
events are placed in the example jurisdictions (deploy/agencies.example.json); each has
0-4 subject tokens (2 on average): most are one-off, 15 % belong to recurring subjects
active for a few days (mostly on their home side, sometimes across), so token keys hold
a few views each whatever the history. Events arrive in time order with up to 30 min of
jitter and 2 % up to 6 h late. Items are (blocking key, view) pairs, in batches of 1,000,
all routed to one correlator (one partition holding every key, one core).

Two ways to put N events in the window:

- ``history``: a fixed rate (300 events/h, about the default scenario's) and a window
  sized to hold N events: the per-event cost must not grow with the history held;
- ``density``: the default 72 h window and the rate that fills it with N events (recurring
  subjects scale with the rate, so token keys hold the same few views).

Modes: ``default`` (default weights: space-time candidates cannot reach the threshold
without a token, so they are not searched) and ``spatial`` (threshold lowered to 6.0 so
they can: every spatial item is filed and searched in the fine grid). The spatial mode's
cost depends on how many events lie within the radius and time span, so it is measured in
the history setting only.

The window is filled first (timed separately), then the next events are timed.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from xborder.agencies import load_agencies
from xborder.geo import Jurisdictions, jurisdictions_for

from .blocking import blocking_keys
from .engine import HOUR_MS, Correlator, CorrelatorConfig
from .model import IncidentView, from_wire, to_wire
from .patterns import PatternConfig
from .scoring import ScoringConfig

AGENCIES = Path(__file__).resolve().parents[2] / "deploy" / "agencies.example.json"
CATEGORIES = ("THEFT", "ROBBERY", "DRUGS", "SMUGGLING", "GAMBLING", "FRAUD", "TRAFFIC", "OTHER")
SEVERITIES = ("LOW", "MEDIUM", "MEDIUM", "HIGH", "CRITICAL")
TAGS = ("motorbike", "night", "group", "knife", "online", "river", "market", "cash", "car")
KINDS = ("PERSON", "VEHICLE", "PHONE")
BATCH = 1000


@dataclass(frozen=True)
class Setting:
    """One benchmark run."""

    events_in_window: int
    rate_per_hour: float
    window_ms: int
    mode: str  # default | spatial


class Generator:
    """Deterministic synthetic incident views (see the module docstring)."""

    def __init__(self, jurisdictions: Jurisdictions, rate_per_hour: float, seed: int) -> None:
        self.rng = random.Random(seed)
        self.rate = rate_per_hour
        self.points: dict[str, list[tuple[float, float, bool, float | None]]] = {}
        rng = self.rng
        while sum(len(p) for p in self.points.values()) < 50_000:
            lat, lon = rng.uniform(9.9, 10.95), rng.uniform(104.8, 105.85)
            placed = jurisdictions.locate(lat, lon)
            if placed.agency_id is not None:
                self.points.setdefault(placed.agency_id, []).append(
                    (lat, lon, placed.in_border_zone, placed.distance_to_boundary_km)
                )
        self.agencies = sorted(self.points)
        # recurring subjects: each is active for about 3 days, seen about 4 times
        self.generation_ms = 3 * 24 * HOUR_MS
        per_generation = rate_per_hour * 72 * 2 * 0.15 / 4
        self.recurring = max(int(per_generation), 1)

    def events(self, start_ms: int) -> Iterator[IncidentView]:
        """An endless stream of views in (roughly) time order."""
        rng = self.rng
        step = HOUR_MS / self.rate
        n = 0
        while True:
            base = start_ms + int(n * step)
            occurred = base - int(rng.random() * 30 * 60_000)
            if rng.random() < 0.02:
                occurred -= int(rng.random() * 6 * HOUR_MS)
            tokens = set()
            home = None
            for _ in range(rng.choice((0, 1, 1, 2, 2, 2, 3, 4, 3, 2))):
                if rng.random() < 0.15:
                    subject = rng.randrange(self.recurring)
                    # each subject's 3-day lives are staggered, so the mix is stationary
                    phase = subject * self.generation_ms // self.recurring
                    generation = (occurred + phase) // self.generation_ms
                    kind = KINDS[subject % len(KINDS)]
                    home = self.agencies[subject // len(KINDS) % len(self.agencies)]
                    tokens.add((kind, f"r{generation:06d}{kind[:2]}{subject:08d}".ljust(64, "0")))
                else:
                    kind = rng.choice(KINDS)
                    tokens.add((kind, f"u{n:012d}{rng.getrandbits(64):016x}".ljust(64, "0")))
            side = home if home is not None and rng.random() < 0.9 else rng.choice(self.agencies)
            lat, lon, border, distance = rng.choice(self.points[side])
            agency = side if rng.random() < 0.98 else rng.choice(self.agencies)
            yield IncidentView(
                event_id=f"{n:08x}-0000-4000-8000-{rng.getrandbits(48):012x}",
                agency=agency,
                incident_id=f"{agency.upper()}-{n}",
                occurred_ms=occurred,
                lat=lat,
                lon=lon,
                category=rng.choice(CATEGORIES),
                severity=rng.choice(SEVERITIES),
                tokens=tuple(sorted(tokens)),
                modus_operandi=frozenset(rng.sample(TAGS, rng.randrange(0, 3))),
                jurisdiction=side,
                in_border_zone=border,
                distance_km=distance,
                version_ms=base,
            )
            n += 1


def _batches(
    events: Iterator[IncidentView], count: int, cfg: CorrelatorConfig
) -> list[list[tuple[str, IncidentView]]]:
    batches: list[list[tuple[str, IncidentView]]] = []
    batch: list[tuple[str, IncidentView]] = []
    for _ in range(count):
        view = next(events)
        for key in blocking_keys(view, cfg.blocking):
            batch.append((key, view))
        if len(batch) >= BATCH:
            batches.append(batch)
            batch = []
    if batch:
        batches.append(batch)
    return batches


def run(setting: Setting, measure_events: int, jurisdictions: Jurisdictions) -> dict[str, Any]:
    """Fill the window, then time ``measure_events`` more; the figures as a dict."""
    patterns = PatternConfig(agencies=tuple(jurisdictions.agency_ids))
    cfg = CorrelatorConfig(window_ms=setting.window_ms, patterns=patterns)
    if setting.mode == "spatial":
        cfg = replace(cfg, scoring=ScoringConfig(threshold=6.0))
    gen = Generator(jurisdictions, setting.rate_per_hour, seed=7)
    events = gen.events(start_ms=1_767_225_600_000)  # 2026-01-01
    correlator = Correlator(cfg)
    fill_items = 0
    started = time.perf_counter()
    remaining = setting.events_in_window
    while remaining > 0:  # generate and process in chunks to keep memory flat
        chunk = min(remaining, 50_000)
        for batch in _batches(events, chunk, cfg):
            correlator.process(batch)
            fill_items += len(batch)
        remaining -= chunk
    fill_s = time.perf_counter() - started
    held = len(correlator.index)
    batches = _batches(events, measure_events, cfg)
    items = sum(len(b) for b in batches)
    outputs = {"correlations": 0, "alerts": 0, "too_late": 0}
    gc.collect()
    scored = correlator.counters["pairs_scored"]
    started = time.perf_counter()
    for batch in batches:
        out = correlator.process(batch)
        outputs["correlations"] += len(out.correlations)
        outputs["alerts"] += len(out.alerts)
        outputs["too_late"] += out.too_late
    elapsed = time.perf_counter() - started
    stats = correlator.stats()
    return {
        "mode": setting.mode,
        "events_in_window": held,
        "window_h": round(setting.window_ms / HOUR_MS, 1),
        "rate_per_hour": round(setting.rate_per_hour),
        "fill_items_per_s": round(fill_items / fill_s),
        "items": items,
        "items_per_event": round(items / measure_events, 2),
        "items_per_s": round(items / elapsed),
        "us_per_event": round(elapsed / measure_events * 1e6, 2),
        "pairs_scored_per_event": round((stats["pairs_scored"] - scored) / measure_events, 3),
        **outputs,
        "stored_entries": stats["stored"],
    }


def wire_figures(jurisdictions: Jurisdictions, n: int = 100_000) -> dict[str, float]:
    """to_wire + json.dumps and json.loads + from_wire per view, in µs."""
    gen = Generator(jurisdictions, 300, seed=3).events(0)
    views = [next(gen) for _ in range(n)]
    started = time.perf_counter()
    text = json.dumps([to_wire(v) for v in views], separators=(",", ":"))
    encode = time.perf_counter() - started
    started = time.perf_counter()
    back = [from_wire(item) for item in json.loads(text)]
    decode = time.perf_counter() - started
    assert back == views
    return {
        "encode_us": round(encode / n * 1e6, 2),
        "decode_us": round(decode / n * 1e6, 2),
        "bytes_per_view": round(len(text) / n),
    }


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000,1000000", help="events in the window")
    parser.add_argument("--measure", type=int, default=100_000, help="events timed per run")
    parser.add_argument("--modes", default="default,spatial")
    parser.add_argument("--settings", default="history,density")
    parser.add_argument("--rate", type=float, default=300.0, help="events/h (history)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    jurisdictions = jurisdictions_for(load_agencies(AGENCIES))
    sizes = [int(s) for s in args.sizes.split(",")]
    results: list[dict[str, Any]] = []
    print(f"wire form: {wire_figures(jurisdictions)}", flush=True)
    for kind in args.settings.split(","):
        for mode in args.modes.split(","):
            if kind == "density" and mode == "spatial":
                continue  # density-bound by construction (see the module docstring)
            rows = []
            for size in sizes:
                if kind == "history":
                    rate, window = args.rate, int(size / args.rate * HOUR_MS)
                else:
                    window = 72 * HOUR_MS
                    rate = size / 72
                row = run(Setting(size, rate, window, mode), args.measure, jurisdictions)
                row["setting"] = kind
                rows.append(row)
                results.append(row)
                print(
                    f"{kind:8s} {mode:8s} window {row['events_in_window']:>9,} events "
                    f"({row['window_h']:>7} h at {row['rate_per_hour']:>6}/h): "
                    f"{row['items_per_s']:>9,} items/s, {row['us_per_event']:>6} µs/event, "
                    f"{row['items_per_event']} items/event, "
                    f"{row['pairs_scored_per_event']} pairs scored/event, "
                    f"{row['correlations']} links, {row['alerts']} alerts",
                    flush=True,
                )
                del row
                gc.collect()
            if len(rows) > 1:
                ratio = rows[-1]["us_per_event"] / rows[0]["us_per_event"]
                print(f"{kind:8s} {mode:8s} time/event ratio largest/smallest: {ratio:.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
