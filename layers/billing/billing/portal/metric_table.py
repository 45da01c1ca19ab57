"""The usage page's "Usage by metric" table (``billing.portal.metrics`` computes its figures).

Invariants: one row per metric, or per group of a grouped charge, the group in the words the
statement lines use; the exact quantity in each cell's ``data-value``, the text rounded for reading
only beyond six decimals; every value from data HTML-escaped; the table stacks on a phone like the
page's other ``table.stack`` tables (each cell labelled by its column).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal
from html import escape

from billing.portal.metrics import MetricUsage

# How each aggregation reads to a customer, from the metric's property (or counter) name.
_MEASURES = {
    "count": "events counted",
    "sum": "total {what}",
    "max": "highest {what}",
    "latest": "latest {what}",
    "unique_count": "distinct {what} values",
    "time_weighted_sum": "{what} held over time, per {per}",
}
HELD = "time_weighted_sum"  # a gauge: what is held, counted over the time it is held
# Under the table when a running period shows a gauge: the statement preview bills a gauge as the
# close will (its last value kept to the period's end, billing.catalog.metrics), the table what was
# held until its figures were read; both are right, and the reader is told which is which.
HELD_NOTE = (
    "A quantity held over time counts what was held so far. The statement preview bills the last "
    "value held as if kept until the period ends, so its line is larger while the period runs."
)
QUANTITY_PLACES = 6  # a quantity shown with more decimals is rounded for reading (exact in data-value)


def quantity_text(value: Decimal | None, unit: str) -> str:
    """``1,234.5 GPU-seconds``; beyond six decimals ``about 12.345679 GB-hours``; no value yet for a
    max or latest nothing has set."""
    if value is None:
        return "no value yet"
    shown = value.normalize()
    exponent = shown.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -QUANTITY_PLACES:
        rounded = value.quantize(Decimal(1).scaleb(-QUANTITY_PLACES), rounding=ROUND_HALF_UP)
        return f"about {_grouped(rounded)} {unit}"
    return f"{_grouped(shown)} {unit}"


def _grouped(value: Decimal) -> str:
    """1,234,567 or 1,234.5: thousands separated, no padding zeros."""
    return f"{value.normalize():,f}" if value != value.to_integral_value() else f"{int(value):,}"


def _measure(usage: MetricUsage, current: bool) -> str:
    metric = usage.metric
    what = (metric.property or metric.field or "").replace("_", " ")
    measure = _MEASURES[metric.aggregation].format(what=what, per=metric.per or "")
    return f"{measure}, so far" if current and metric.aggregation == HELD else measure


def metrics_section(
    metrics: Sequence[MetricUsage], period: str, time_zone: str = "UTC", *, current: bool = False
) -> str:
    """Usage per catalog metric the month's plans charge: one row per metric, or per group when the
    charge bills by a property (its values in words, as the statement lines say them); ``time_zone``
    names the days the figures are counted in. In a ``current`` period a gauge's rows say "so far"
    and a note under the table says why the statement preview's line for it is larger."""
    if not metrics:
        return ""
    rows = []
    for usage in metrics:
        measure = escape(_measure(usage, current))
        groups = usage.groups or []
        if usage.group_by and not groups:
            rows.append(
                f'<tr data-metric="{escape(usage.metric.id)}" data-group=""><th scope="row">'
                f"{escape(usage.metric.name)}"
                f'<span class="group">No usage yet</span></th>'
                f'<td class="num" data-label="Quantity" data-value="0">0 {escape(usage.metric.unit)}</td>'
                f'<td data-label="Measured as">{measure}</td></tr>'
            )
        for group in groups:
            words = group.words(usage.group_by) if usage.group_by else ""
            value = "" if group.quantity is None else f"{group.quantity.normalize():f}"
            rows.append(
                f'<tr data-metric="{escape(usage.metric.id)}" data-group="{escape(words)}"><th scope="row">'
                f"{escape(usage.metric.name)}"
                + (f'<span class="group">{escape(words)}</span>' if words else "")
                + f'</th><td class="num" data-label="Quantity" data-value="{value}">'
                f"{escape(quantity_text(group.quantity, usage.metric.unit))}</td>"
                f'<td data-label="Measured as">{measure}</td></tr>'
            )
    held = current and any(u.metric.aggregation == HELD for u in metrics)
    # The days are named by their zone, once: an "as of" time names it already.
    named = period.endswith(f" {time_zone}")
    days = "" if named else f" ({time_zone} days)"
    return (
        '<h2 id="metrics-h">Usage by metric</h2>'
        f'<p class="sub">What your plan charges for, {escape(period)}{escape(days)}. A charge billed per '
        "property value has one row per value; <em>none</em> is usage without that property.</p>"
        '<div class="scroll"><table id="metrics" class="stack" aria-labelledby="metrics-h"><thead><tr>'
        '<th scope="col">Metric</th><th scope="col" class="num">Quantity</th>'
        f'<th scope="col">Measured as</th></tr></thead><tbody>{"".join(rows)}</tbody></table></div>'
        + (f'<p class="sub" id="metrics-held">{HELD_NOTE}</p>' if held else "")
    )
