"""The usage page's "Corrections" block: each correction of the period's usage (billing.metering
.corrections), when, removed or corrected, the event id, the reason given, and what it changed in
usage and metered cost, in the customer's words.

Which corrections: those whose rows are dated in the period shown (a UTC month, or a period of the
tenant's calendar), i.e. corrections of the period's events (a correction is dated like the event it
corrects), read as ids from ClickHouse (corrections are rare next to events: one small read of the
month's partition, or of the tenant's rows in the period) and as audit-trail records from
DynamoDB (one batched read). Only applied corrections are shown, newest first, at most
``MAX_SHOWN``; the block is left out when there are none."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from html import escape
from typing import Any, Protocol

from billing.kernel.calendar import DEFAULT_TIME_ZONE, Period, zone
from billing.kernel.periods import Month, parse_instant
from billing.metering.corrections import CorrectionRecord
from billing.metering.receipt_corrections import difference
from billing.metering.receipt_views import CorrectionRow

MAX_SHOWN = 50


class MonthCorrectionRows(Protocol):
    def month_corrections(self, tenant_id: str, month: Month) -> list[CorrectionRow]: ...

    def period_corrections(self, tenant_id: str, start: datetime, end: datetime) -> list[CorrectionRow]: ...


class CorrectionRecords(Protocol):
    def records(self, tenant_id: str, correction_ids: Sequence[str]) -> dict[str, CorrectionRecord]: ...


class MonthCorrections:
    """The applied corrections of a tenant's month or period, as the page's JSON shows them."""

    def __init__(self, rows: MonthCorrectionRows, records: CorrectionRecords):
        self.rows, self.records = rows, records

    def __call__(self, tenant_id: str, month: Month | Period) -> list[dict[str, Any]]:
        rows = (
            self.rows.month_corrections(tenant_id, month)
            if isinstance(month, Month)
            else self.rows.period_corrections(tenant_id, month.start, month.end)
        )
        ids = sorted({r.correction_id for r in rows})
        if not ids:
            return []
        found = self.records.records(tenant_id, ids)
        shown = []
        for correction_id, record in found.items():
            if not record.applied:
                continue
            entry = record.entry
            shown.append(
                {
                    "correction_id": correction_id,
                    "action": entry["action"],
                    "event_id": record.event_id,
                    "at": entry["at"],
                    "reason": entry["reason"],
                    "difference": difference(entry["before"], entry["after"]),
                }
            )
        shown.sort(key=lambda c: (parse_instant(c["at"]), c["correction_id"]), reverse=True)
        return shown[:MAX_SHOWN]


_QUANTITIES = {"input_tokens": "input tokens", "output_tokens": "output tokens", "bytes": "bytes"}


def _signed(n: int) -> str:
    return f"{'+' if n > 0 else '-'}{abs(n):,}"


def usage_change(change: Mapping[str, Any]) -> str:
    """What a correction changed in usage, in words: "1 event removed", "+400 input tokens"."""
    parts = []
    if change.get("events", 0) < 0:
        parts.append("1 event removed")
    for field, words in _QUANTITIES.items():
        if change.get(field) and not (change.get("events", 0) < 0):
            parts.append(f"{_signed(int(change[field]))} {words}")
    if "model" in change:
        parts.append(f"model {change['model']['before'] or 'none'} → {change['model']['after'] or 'none'}")
    return ", ".join(parts) or "no change in quantities"


def corrections_block(
    corrections: Sequence[Mapping[str, Any]],
    title: str,
    money: Callable[[Decimal], str],
    time_zone: str = DEFAULT_TIME_ZONE,
) -> str:
    """``corrections``: ``MonthCorrections`` rows; ``money`` formats a metered amount; each
    correction's day is the one it was made on in ``time_zone``."""
    if not corrections:
        return ""
    rows = []
    for c in corrections:
        cost = Decimal(c["difference"]["cost_usd"])
        when = parse_instant(c["at"]).astimezone(zone(time_zone)).strftime("%d %b %Y")
        change = "Removed" if c["action"] == "void" else "Corrected"
        rows.append(
            f'<tr data-correction="{escape(c["correction_id"])}">'
            f'<th scope="row">{escape(c["event_id"])}</th>'
            f'<td data-label="When">{when}</td>'
            f'<td data-label="Change">{change}</td>'
            f'<td data-label="Reason">{escape(c["reason"])}</td>'
            f'<td data-label="Usage">{escape(usage_change(c["difference"]))}</td>'
            f'<td class="num" data-label="Metered cost">{"+" if cost > 0 else ""}{money(cost)}</td></tr>'
        )
    return (
        f'<h2 id="corrections-h">{escape(title)}</h2>'
        '<p class="sub">Usage corrected at your request, at the prices in force when it happened. '
        "A correction made after a month's statement appears as an adjustment on the next statement.</p>"
        '<div class="scroll"><table id="corrections" class="stack" aria-labelledby="corrections-h">'
        '<thead><tr><th scope="col">Event</th><th scope="col">When</th><th scope="col">Change</th>'
        '<th scope="col">Reason</th><th scope="col">Usage</th><th scope="col" class="num">Metered cost</th>'
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )
