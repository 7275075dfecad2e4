"""A self-contained HTML report with inline SVG charts (no plotting dependency)."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from typing import Any

WIDTH, HEIGHT, PAD = 640, 220, 40
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def _line_chart(title: str, series: dict[str, Sequence[tuple[float, float]]], unit: str) -> str:
    points = [p for values in series.values() for p in values]
    if not points:
        return f"<h3>{html.escape(title)}</h3><p>no data</p>"
    max_x = max(x for x, _ in points) or 1.0
    max_y = max(y for _, y in points) or 1.0
    parts = [
        f'<svg width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{html.escape(title)}">'
    ]
    parts.append(
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - 10}" y2="{HEIGHT - PAD}" '
        'stroke="#888"/>'
        f'<line x1="{PAD}" y1="10" x2="{PAD}" y2="{HEIGHT - PAD}" stroke="#888"/>'
        f'<text x="{PAD}" y="{HEIGHT - 10}" font-size="11">0</text>'
        f'<text x="{WIDTH - 60}" y="{HEIGHT - 10}" font-size="11">{max_x:.0f} s</text>'
        f'<text x="2" y="18" font-size="11">{max_y:,.0f} {html.escape(unit)}</text>'
    )
    for n, (name, values) in enumerate(series.items()):
        colour = COLOURS[n % len(COLOURS)]
        coords = " ".join(
            f"{PAD + x / max_x * (WIDTH - PAD - 10):.1f},"
            f"{HEIGHT - PAD - y / max_y * (HEIGHT - PAD - 10):.1f}"
            for x, y in values
        )
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{coords}"/>'
        )
        parts.append(
            f'<text x="{WIDTH - 150}" y="{20 + 14 * n}" font-size="11" fill="{colour}">'
            f"{html.escape(name)}</text>"
        )
    parts.append("</svg>")
    return f"<h3>{html.escape(title)}</h3>" + "".join(parts)


def _histogram(title: str, values: Sequence[float], unit: str, bins: int = 30) -> str:
    if not values:
        return f"<h3>{html.escape(title)}</h3><p>no data</p>"
    top = max(values) or 1.0
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, int(v / top * bins))] += 1
    peak = max(counts) or 1
    bar = (WIDTH - PAD - 10) / bins
    parts = [
        f'<svg width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{html.escape(title)}">'
    ]
    for i, count in enumerate(counts):
        h = count / peak * (HEIGHT - PAD - 10)
        parts.append(
            f'<rect x="{PAD + i * bar:.1f}" y="{HEIGHT - PAD - h:.1f}" width="{bar - 1:.1f}" '
            f'height="{h:.1f}" fill="#1f77b4"/>'
        )
    parts.append(
        f'<text x="{PAD}" y="{HEIGHT - 10}" font-size="11">0</text>'
        f'<text x="{WIDTH - 80}" y="{HEIGHT - 10}" font-size="11">'
        f"{top:,.0f} {html.escape(unit)}</text>"
        f'<text x="2" y="18" font-size="11">{peak} events</text></svg>'
    )
    return f"<h3>{html.escape(title)}</h3>" + "".join(parts)


def line_chart(title: str, series: dict[str, Sequence[tuple[float, float]]], unit: str) -> str:
    """An SVG line chart of named (x seconds, y) series, under an ``<h3>`` title."""
    return _line_chart(title, series, unit)


def bar_chart(title: str, groups: dict[str, dict[str, float]], unit: str) -> str:
    """An SVG grouped bar chart: one group per key of ``groups``, one bar per inner key
    (the same inner keys, in the same colours, in every group), values labelled."""
    names = list(dict.fromkeys(name for bars in groups.values() for name in bars))
    values = [v for bars in groups.values() for v in bars.values() if v == v]  # not NaN
    if not groups or not values:
        return f"<h3>{html.escape(title)}</h3><p>no data</p>"
    top = max(values) or 1.0
    slot = (WIDTH - PAD - 10) / len(groups)
    bar = slot * 0.8 / max(1, len(names))
    parts = [
        f'<svg width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{html.escape(title)}">',
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - 10}" y2="{HEIGHT - PAD}" '
        'stroke="#888"/>',
        f'<text x="2" y="18" font-size="11">{top:,.0f} {html.escape(unit)}</text>',
    ]
    for g, (group, bars) in enumerate(groups.items()):
        left = PAD + g * slot + slot * 0.1
        for n, name in enumerate(names):
            value = bars.get(name)
            if value is None or value != value:
                continue
            h = value / top * (HEIGHT - PAD - 30)
            x = left + n * bar
            parts.append(
                f'<rect x="{x:.1f}" y="{HEIGHT - PAD - h:.1f}" width="{bar - 1:.1f}" '
                f'height="{h:.1f}" fill="{COLOURS[n % len(COLOURS)]}"/>'
                f'<text x="{x:.1f}" y="{HEIGHT - PAD - h - 2:.1f}" font-size="9">'
                f"{value:,.0f}</text>"
            )
        parts.append(
            f'<text x="{left:.1f}" y="{HEIGHT - PAD + 14}" font-size="11">'
            f"{html.escape(group)}</text>"
        )
    for n, name in enumerate(names):
        parts.append(
            f'<text x="{WIDTH - 60}" y="{20 + 14 * n}" font-size="11" '
            f'fill="{COLOURS[n % len(COLOURS)]}">{html.escape(name)}</text>'
        )
    parts.append("</svg>")
    return f"<h3>{html.escape(title)}</h3>" + "".join(parts)


def table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """An HTML table (cells escaped; None shows as a dash)."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join(
        "<tr>"
        + "".join(f"<td>{html.escape('-' if v is None else str(v))}</td>" for v in row)
        + "</tr>"
        for row in rows
    )
    return (
        "<table style='border-collapse:collapse;font-size:12px' border='1' cellpadding='3'>"
        f"<tr>{head}</tr>{body}</table>"
    )


def page(title: str, sections: Sequence[str], report: dict[str, Any]) -> str:
    """A whole HTML page: the title, the sections (HTML), then the report as JSON."""
    return "\n".join(
        [
            f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>",
            "<body style='font-family:sans-serif;max-width:900px;margin:auto'>",
            f"<h1>{html.escape(title)}</h1>",
            *sections,
            "<h3>Report</h3><pre>",
            html.escape(json.dumps(report, indent=2)),
            "</pre></body>",
        ]
    )


def render(report: dict[str, Any], series: dict[str, Any]) -> str:
    """The HTML page: throughput over time, latency histogram, memory over time, the JSON."""
    body = [
        "<!doctype html><meta charset='utf-8'><title>xborder benchmark</title>",
        "<body style='font-family:sans-serif;max-width:700px;margin:auto'>",
        "<h1>xborder benchmark</h1>",
        _line_chart("Throughput over time", series.get("throughput", {}), "events/s"),
        _histogram("Produce-to-alert latency", series.get("latency_ms", []), "ms"),
        _line_chart("Memory (RSS) over time", series.get("memory", {}), "MiB"),
        "<h3>Report</h3><pre>",
        html.escape(json.dumps(report, indent=2)),
        "</pre></body>",
    ]
    return "\n".join(body)
