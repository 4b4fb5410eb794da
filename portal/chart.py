"""This period's use per day, as an SVG bar chart drawn on the server (no JavaScript). No I/O."""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape

from tollway import usage_report
from tollway.usage_report import Row

WIDTH, HEIGHT, PAD = 600, 160, 24


def per_day(rows: dict[str, Row], meter: str, start: int, end: int) -> list[tuple[str, int]]:
    """(UTC day as "MM-DD", units) for each day of the period [start, end) up to today, from
    ``meter``'s windows (``usage_report.per_day``: the API's usage shows the same days)."""
    return [
        (datetime.fromtimestamp(d, UTC).strftime("%m-%d"), n)
        for d, n in usage_report.per_day(rows, meter, start, end)
    ]


def svg(days: list[tuple[str, int]], title: str) -> str:
    """Bars with a text alternative: the title and each day's value, for screen readers."""
    top = max((n for _, n in days), default=0) or 1
    width = (WIDTH - 2 * PAD) / max(1, len(days))
    bars = []
    for i, (day, n) in enumerate(days):
        h = (HEIGHT - 2 * PAD) * n / top
        x, y = PAD + i * width, HEIGHT - PAD - h
        bars.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(1.0, width - 2):.1f}" '
            f'height="{h:.1f}"><title>{escape(day)}: {n:,}</title></rect>'
        )
    label = escape(f"{title}: " + ", ".join(f"{d} {n:,}" for d, n in days))
    return (
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{label}">'
        f'<text x="{PAD}" y="16">{escape(title)} (max {top:,} a day)</text>'
        + "".join(bars)
        + "</svg>"
    )
