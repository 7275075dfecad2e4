"""What ``xborder bench latency`` prints and draws: a table per run, a summary, the HTML."""

from __future__ import annotations

import io
from typing import Any

from xborder.bench import chart
from xborder.cli import print_table


def format_run(run: dict[str, Any]) -> str:
    """The compact text table of one run."""
    out = io.StringIO()
    pub = run["publisher"]
    out.write(
        f"== {run['rate']:,.0f}/s offered, {pub['achieved_per_s'] or 0:,.0f}/s achieved "
        f"({run['events']:,} events, {run['purpose']} run): "
        f"{'sustained' if run['sustained'] else 'NOT sustained: ' + '; '.join(run['why_not'])}\n"
        f"publisher: sent late p99 {pub['send_late_ms']['p99']} ms, max "
        f"{pub['send_late_ms']['max']} ms, {pub['failed']} failed; dead letters "
        f"{run['outputs']['dead_letters']}\n"
    )
    print_table(
        ["latency ms", "count", "p50", "p95", "p99", "max", "dup", "unmapped"],
        [
            [
                name,
                int(s["count"]),
                s["p50"],
                s["p95"],
                s["p99"],
                s["max"],
                s.get("duplicates", "-"),
                s.get("unmapped", "-"),
            ]
            for name, s in run["latency_ms"].items()
        ],
        out,
    )
    print_table(
        ["lag (messages)", "slope/s", "first 1/3", "last 1/3", "max", "input/s", "drain s"],
        [
            [
                name,
                t["slope_per_s"],
                t["first_third_mean"],
                t["last_third_mean"],
                t["max"],
                t["input_per_s"],
                t["drain_s"],
            ]
            for name, t in run["lag"].items()
        ],
        out,
    )
    cpu = run["cpu_seconds_per_1000_events"]
    harness = run["harness_cpu_seconds_per_1000_events"]
    out.write(
        "cpu s/1000 events: "
        + ", ".join(f"{n} {v:.3f}" for n, v in cpu.items())
        + " (harness: "
        + ", ".join(f"{n} {v:.3f}" for n, v in harness.items() if n != "total")
        + ")\n"
        + _idle_line(run)
        + "rss MiB first->last third: "
        + ", ".join(
            f"{n} {r['first_third_mb']}->{r['last_third_mb']} ({r['ratio']}"
            f"{', flat' if r['flat'] else ''})"
            for n, r in run["rss"].items()
        )
        + "\n"
    )
    return out.getvalue()


def _idle_line(run: dict[str, Any]) -> str:
    """The idle cores and the CPU above them, or nothing when the run took no idle reading."""
    idle = run.get("idle_cores") or {}
    if not idle:
        return ""
    above = run["cpu_seconds_per_1000_events_above_idle"]
    return (
        "idle cores: "
        + ", ".join(f"{n} {v:.3f}" for n, v in idle.items())
        + "; cpu s/1000 events above idle: "
        + ", ".join(f"{n} {v:.3f}" for n, v in above.items())
        + "\n"
    )


def render_html(report: dict[str, Any], series: dict[str, dict[str, Any]]) -> str:
    runs = report["runs"]
    labels = [f"{r['rate']:,.0f}/s {r['purpose']}" for r in runs]
    kinds = list(dict.fromkeys(k for r in runs for k in r["latency_ms"]))
    sections = [
        chart.table(
            ["run", "achieved/s", *(f"{k} p99 ms" for k in kinds), "sustained"],
            [
                [
                    label,
                    r["publisher"]["achieved_per_s"],
                    *(r["latency_ms"].get(k, {}).get("p99") for k in kinds),
                    r["sustained"],
                ]
                for label, r in zip(labels, runs, strict=True)
            ],
        )
    ]
    for kind in kinds:
        groups = {
            label: {q: r["latency_ms"][kind][q] for q in ("p50", "p95", "p99")}
            for label, r in zip(labels, runs, strict=True)
            if kind in r["latency_ms"]
        }
        sections.append(chart.bar_chart(f"Latency: {kind}", groups, "ms"))
    for label, figures in series.items():
        sections.append(chart.line_chart(f"Lag over time, {label}", figures["lag"], "messages"))
        sections.append(chart.line_chart(f"RSS over time, {label}", figures["rss"], "MiB"))
    return chart.page("xborder latency under sustained load", sections, report)


def format_summary(report: dict[str, Any]) -> str:
    """One line per run: rate offered and achieved, the p99s users see, the verdict."""
    out = io.StringIO()
    rows = []
    for run in report["runs"]:
        latency = run["latency_ms"]
        rows.append(
            [
                f"{run['rate']:,.0f}/s",
                run["purpose"],
                f"{run['publisher']['achieved_per_s'] or 0:,.0f}/s",
                latency.get("link", {}).get("p99"),
                latency.get("case", {}).get("p99"),
                latency.get("alert BORDER_ZONE_INCIDENT", {}).get("p99"),
                latency["clickhouse rows"]["p99"],
                "yes" if run["sustained"] else "no",
            ]
        )
    print_table(
        [
            "offered",
            "run",
            "achieved",
            "link p99",
            "case p99",
            "border alert p99",
            "rows p99",
            "held",
        ],
        rows,
        out,
    )
    found = report.get("max_rate")
    if found is not None:
        out.write(f"highest rate that held: {found['highest_held_per_s']}/s ({found['rule']})\n")
    return out.getvalue()
