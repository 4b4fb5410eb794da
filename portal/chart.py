"""This period's use per day, as an SVG bar chart drawn on the server (no JavaScript). No I/O."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from html import escape

from tollway.usage_report import Row

DAY_S = 86400
WIDTH, HEIGHT, PAD = 600, 160, 24


def per_day(rows: dict[str, Row], meter: str, start: int, end: int) -> list[tuple[str, int]]:
    """(UTC day, units) for each day of the period [start, end) up to today, from ``meter``'s
    windows (by day: a window that began just before the period starts counts too)."""
    first = start // DAY_S
    last = (max(start + 1, min(end, int(datetime.now(UTC).timestamp()) + 1)) - 1) // DAY_S
    days: Counter[int] = Counter()
    for field, row in rows.items():
        name, window = field.split("|", 1)
        if name == meter and window.isdigit() and first <= int(window) // DAY_S <= last:
            days[int(window) // DAY_S] += row["counting"] + row["pending"] + row["sent"]
    return [
        (datetime.fromtimestamp(d * DAY_S, UTC).strftime("%m-%d"), days[d])
        for d in range(first, last + 1)
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
