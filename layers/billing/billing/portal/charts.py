"""The usage page's charts: inline SVG bars on a value axis of round ticks.

Invariants:
- the axis starts at 0 and rises in equal steps of 1, 2, 2.5 or 5 times a power of ten to the first
  tick at or above the highest value; a series of zeros has the single tick 0 (no full-height bar
  labelled $0.00), and counts get whole ticks only;
- each chart has exactly one point (``<rect class="point">``) per day shown, with its exact value in
  ``data-value``; every label is HTML-escaped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import ROUND_CEILING, Decimal
from html import escape

from billing.portal.view import DayUsage

CHART_W, CHART_H, CHART_TOP, CHART_BOTTOM = 480, 220, 14, 30
CHART_FONT_MAX = 18  # the phone font size of chart text (CSS), in viewBox units: margins are sized for it
# (axis top from which ticks are abbreviated, divisor, suffix): below 100,000 the digits are short enough
SCALES = (
    (Decimal(10) ** 9, Decimal(10) ** 9, "B"),
    (Decimal(10) ** 6, Decimal(10) ** 6, "M"),
    (Decimal(10) ** 5, Decimal(10) ** 3, "k"),
)


def axis_ticks(peak: Decimal, *, whole: bool) -> list[Decimal]:
    """Evenly spaced round ticks (1, 2, 2.5 or 5 times a power of ten) from 0 to the first tick at or
    above ``peak``: 3 to 5 of them (counts under 4 may have 2: ``whole`` keeps every tick an
    integer, there is no half query). A series of zeros has the single tick 0: nothing to scale to."""
    if peak <= 0:
        return [Decimal(0)]
    raw = peak / 4
    magnitude = Decimal(1).scaleb(raw.adjusted())
    steps = [magnitude * m for m in (Decimal(1), Decimal(2), Decimal("2.5"), Decimal(5), Decimal(10))]
    if whole:
        steps = [s for s in steps if s >= 1 and s == s.to_integral_value()] or [Decimal(1)]
    step = next(s for s in steps if s >= raw)
    intervals = int((peak / step).to_integral_value(rounding=ROUND_CEILING))
    return [step * i for i in range(intervals + 1)]


def tick_label(value: Decimal, step: Decimal, top: Decimal, prefix: str = "") -> str:
    """A tick of an axis rising by ``step`` to ``top``, as short as that allows: $0.0003, $0.75, 40,
    2,500, 250k, $15M, 1.5M (every tick of one axis with the same decimals and unit, so they read as
    one scale and no two print alike; 0 is plain 0)."""
    if value == 0:
        return f"{prefix}0"
    divisor, suffix = next(((d, s) for at, d, s in SCALES if top >= at), (Decimal(1), ""))
    exponent = (step / divisor).normalize().as_tuple().exponent
    decimals = max(0, -exponent) if isinstance(exponent, int) else 0
    return f"{prefix}{value / divisor:,.{decimals}f}{suffix}"


def bar_chart(
    chart_id: str,
    title: str,
    days: Sequence[DayUsage],
    value: Callable[[DayUsage], Decimal],
    fmt: Callable[[Decimal], str],
    *,
    prefix: str = "",
    whole: bool = False,
) -> str:
    """An inline SVG bar chart, one ``<rect class="point">`` per day (a zero day too: a 1px bar), on a
    value axis of round ticks from 0 (``text.tick``, each with its ``data-value``) whose top tick is at
    or above the highest day. A month of zeros has only the 0 tick and says nothing was recorded."""
    values = [value(d) for d in days]
    peak = max(values, default=Decimal(0))
    ticks = axis_ticks(peak, whole=whole)
    step = ticks[1] if len(ticks) > 1 else Decimal(1)
    labels = [tick_label(t, step, ticks[-1], prefix) for t in ticks]
    # room for the longest tick label at the largest font the CSS uses (digits ~0.6 em wide)
    left = 12 + round(max(len(label) for label in labels) * CHART_FONT_MAX * 0.62)
    width, height, top, bottom = CHART_W, CHART_H, CHART_TOP, CHART_BOTTOM
    plot_w, plot_h = width - left - 8, height - bottom - top
    base = top + plot_h
    scale = ticks[-1] if ticks[-1] > 0 else Decimal(1)
    slot = Decimal(plot_w) / max(len(days), 1)
    bar = max(slot * Decimal("0.7"), Decimal(1))
    summary = f"highest {fmt(peak)}, axis 0 to {labels[-1]}" if peak > 0 else "nothing recorded"
    parts = [
        f'<svg id="{chart_id}" viewBox="0 0 {width} {height}" role="img" aria-labelledby="{chart_id}-t {chart_id}-d" '
        f'focusable="false" preserveAspectRatio="xMidYMid meet">',
        f'<title id="{chart_id}-t">{escape(title)}</title>',
        f'<desc id="{chart_id}-d">{len(days)} days; {escape(summary)}. The table below lists every day.</desc>',
    ]
    for tick, label in zip(ticks, labels, strict=True):
        y = Decimal(base) - Decimal(plot_h) * tick / scale
        if tick > 0:
            parts.append(f'<line class="grid" x1="{left}" y1="{y:.1f}" x2="{width - 8}" y2="{y:.1f}"/>')
        parts.append(
            f'<text class="tick" data-value="{tick}" x="{left - 6}" y="{y:.1f}" text-anchor="end" '
            f'dominant-baseline="middle">{escape(label)}</text>'
        )
    parts += [
        f'<line class="axis" x1="{left}" y1="{base}" x2="{width - 8}" y2="{base}"/>',
        f'<line class="axis" x1="{left}" y1="{top}" x2="{left}" y2="{base}"/>',
    ]
    if peak <= 0:
        parts.append(
            f'<text class="empty" x="{left + plot_w / 2:.1f}" y="{top + plot_h / 2:.1f}" text-anchor="middle">'
            "Nothing recorded</text>"
        )
    for i, (day, v) in enumerate(zip(days, values, strict=True)):
        h = max(Decimal(plot_h) * v / scale, Decimal(1))
        x = Decimal(left) + slot * i + (slot - bar) / 2
        y = Decimal(base) - h
        parts.append(
            f'<rect class="point" data-day="{day.day.isoformat()}" data-value="{v}" x="{x:.1f}" y="{y:.1f}" '
            f'width="{bar:.1f}" height="{h:.1f}"><title>{day.day:%d %b}: {escape(fmt(v))}</title></rect>'
        )
        if day.day.day in (1, 8, 15, 22, 29):
            parts.append(
                f'<text class="day" x="{x + bar / 2:.1f}" y="{height - 6}" text-anchor="middle">{day.day.day}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)
