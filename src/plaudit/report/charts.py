"""The report's charts, drawn here as inline SVG: no script, no library, nothing to fetch.
Each is an image with a title and a description for screen readers; the numbers are in a
table beside it too (the templates)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date
from html import escape

from markupsafe import Markup

BAR = "#2f6f9f"  # 5.6:1 on white: a bar reads as a shape where text would (WCAG 1.4.11)
GRID = "#d0d7de"
INK = "#1f2328"  # axis labels: 15.8:1 on white


def nice_ceiling(value: int) -> int:
    """The axis maximum: `value` rounded up to 1, 2 or 5 times a power of ten."""
    if value <= 0:
        return 1
    power: int = 10 ** math.floor(math.log10(value))
    return next(step * power for step in (1, 2, 5, 10) if step * power >= value)


def short(value: int) -> str:
    """An axis label: 950, 1.5k, 12k, 3M."""
    for size, suffix in ((1_000_000, "M"), (1_000, "k")):
        if value >= size:
            text = f"{value / size:.1f}".removesuffix(".0")
            return text + suffix
    return str(value)


def weekly_chart(
    weeks: Sequence[tuple[date, int]], chart_id: str, width: int = 720, height: int = 240,
    font: int = 12,
) -> Markup:
    """Grants per week as bars, one per week, oldest left. Each bar's own title tells its
    week and count (a tooltip); the axis is labelled at years, quarters or months, whichever
    leaves room."""
    left, right, top, bottom = 8 + font * 3, 8, 10, font * 2 + 6
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = nice_ceiling(max((n for _, n in weeks), default=0))
    total = sum(n for _, n in weeks)
    first, last = (weeks[0][0], weeks[-1][0]) if weeks else (None, None)
    parts = [
        f'<svg class="chart" id="{chart_id}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="{chart_id}-title {chart_id}-desc" '
        f'xmlns="http://www.w3.org/2000/svg" font-family="sans-serif" font-size="{font}">',
        f'<title id="{chart_id}-title">Grants per week</title>',
        f'<desc id="{chart_id}-desc">{_describe(len(weeks), total, first, last)}</desc>',
    ]
    for fraction in (0.0, 0.5, 1.0):
        y = top + plot_h * (1 - fraction)
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" '
                     f'stroke="{GRID}" stroke-width="1"/>')
        if fraction == 0.5 and peak % 2:
            continue  # a half of 5 or 1 would read as 2 or 0: the line alone
        parts.append(f'<text x="{left - 4}" y="{y + font / 3:.1f}" text-anchor="end" '
                     f'fill="{INK}">{short(int(peak * fraction))}</text>')
    step = plot_w / max(len(weeks), 1)
    gap = min(1.0, step / 4)
    for i, (week, count) in enumerate(weeks):
        bar_h = plot_h * count / peak
        parts.append(
            f'<rect x="{left + i * step + gap / 2:.2f}" y="{top + plot_h - bar_h:.2f}" '
            f'width="{max(step - gap, 0.5):.2f}" height="{bar_h:.2f}" fill="{BAR}">'
            f'<title>Week of {week:%Y-%m-%d}: {count:,} grant{"s" if count != 1 else ""}'
            '</title></rect>')
    last_x = -math.inf
    for i, label in _ticks([w for w, _ in weeks], plot_w / (font * 4)):
        x = left + i * step
        if x - last_x < font * 4:
            continue
        last_x = x
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top + plot_h}" '
                     f'y2="{top + plot_h + 4}" stroke="{INK}"/>')
        parts.append(f'<text x="{x:.1f}" y="{top + plot_h + 6 + font}" fill="{INK}">'
                     f'{escape(label)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _describe(count: int, total: int, first: date | None, last: date | None) -> str:
    if first is None or last is None:
        return "No grants yet."
    return (f"{total:,} grants over {count:,} weeks, from the week of {first:%Y-%m-%d} "
            f"to the week of {last:%Y-%m-%d}.")


def _ticks(weeks: Sequence[date], room: float) -> list[tuple[int, str]]:
    """The weeks to label: where a year, else a quarter, else a month begins: the coarsest
    that gives four labels or more and fits `room` of them."""
    def starts(new: tuple[int, ...], label: str) -> list[tuple[int, str]]:
        found, seen = [], None
        for i, week in enumerate(weeks):
            key = (week.year, *((week.month - 1) // m for m in new))
            if seen is not None and key != seen:
                found.append((i, week.strftime(label)))
            seen = key
        return found

    choices = [starts((), "%Y"), starts((3,), "%b %Y"), starts((1,), "%b")]
    fitting = [c for c in choices if len(c) <= room]
    return next((c for c in fitting if len(c) >= 4), fitting[-1] if fitting else [])


def share_bar(percent: float) -> Markup:
    """A level's holders as a share of the badge's players: a bar in a table cell, beside
    the numbers it draws (hidden from screen readers, which read those)."""
    width = max(0.0, min(100.0, percent))
    return Markup(
        '<svg class="share" viewBox="0 0 100 8" preserveAspectRatio="none" aria-hidden="true" '
        'focusable="false" xmlns="http://www.w3.org/2000/svg">'
        f'<rect width="100" height="8" fill="{GRID}"/>'
        f'<rect width="{width:.2f}" height="8" fill="{BAR}"/></svg>')
