"""The usage page's small block of the month's active alerts (billing.alerts.evaluation): each
threshold crossed and not resolved, with the usage when it fired."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from html import escape
from typing import Any

_WHAT = {"spend": "Spend so far"}


def _figure(value: str) -> str:
    number = Decimal(value)
    return (
        f"{number.quantize(Decimal('0.01')):,}" if number != number.to_integral_value() else f"{number:,.0f}"
    )


def alerts_block(alerts: Sequence[Mapping[str, Any]]) -> str:
    """``alerts``: ``AlertState.to_json()`` of the active thresholds; nothing when there are none."""
    if not alerts:
        return ""
    items = []
    for a in alerts:
        what = _WHAT.get(a["metric"], f"Usage of {a['metric']}")
        threshold = a["threshold"]
        reached = f"reached {escape(threshold)}" + (
            f" of the plan's limit ({_figure(a['level'])})" if threshold.endswith("%") else ""
        )
        items.append(
            f'<li data-alert="{escape(a["alert_id"])}" data-threshold="{escape(threshold)}">'
            f"{escape(what)} {reached}: {_figure(a['value'])} on {escape(a['fired_at'][:10])}</li>"
        )
    return f'<h2 id="alerts-h">Alerts</h2><ul id="alerts">{"".join(items)}</ul>'
