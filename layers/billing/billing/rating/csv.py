"""The month's invoice CSV (a contract: header and meaning never change) and the statement lines CSV.

``total_cost_usd`` is the statement total (every line, coupons and credits included) in the
statement's currency with that currency's decimals: USD tenants read exactly as always; a JPY
tenant's total is whole yen (the column keeps its historical name).

The periods CSV covers statements of periods of any shape (a tenant calendar's: any time zone,
anchor and interval; UTC months too): the month CSV's six columns first, in the same order and
meaning (``month`` is the statement's key: ``YYYY-MM`` for a UTC month, ``{start}/{end}`` for any
other period), then the period's UTC bounds, its label as the customer reads it, its time zone, the
currency of ``total_cost_usd`` and whether the statement is final.

The lines CSV is the audit view: every line's id, kind, exact and rounded amounts, the customer's
words (``description``) and, for a base fee, the seconds it charged of the month's seconds.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from billing.kernel.money import fmt_minor
from billing.kernel.periods import Month, iso, parse_instant
from billing.statements.statement import Statement

CSV_HEADER = "tenant_id,month,total_queries,total_tokens,total_cost_usd,invoice_date"


def invoices_csv(statements: Iterable[Statement]) -> bytes:
    """The month's CSV: one row per statement, sorted by tenant_id, LF line ends."""
    rows = [CSV_HEADER]
    for s in sorted(statements, key=lambda s: s.tenant_id):
        rows.append(
            f"{_csv_field(s.tenant_id)},{s.month},{s.total_queries},{s.total_tokens},"
            f"{fmt_minor(s.total, s.currency)},{s.invoice_date}"
        )
    return ("\n".join(rows) + "\n").encode()


PERIODS_CSV_HEADER = CSV_HEADER + ",period_start,period_end,period_label,time_zone,currency,is_final"


def period_bounds(key: str) -> tuple[datetime, datetime]:
    """The UTC ``[start, end)`` a statement key names: ``YYYY-MM`` or ``{start}/{end}``."""
    if "/" in key:
        start, end = key.split("/", 1)
        return parse_instant(start), parse_instant(end)
    month = Month.parse(key)
    return month.start, month.end


def periods_csv(statements: Iterable[Statement]) -> bytes:
    """One row per statement, sorted by tenant_id then period start, LF line ends."""
    rows = [PERIODS_CSV_HEADER]
    for s in sorted(statements, key=lambda s: (s.tenant_id, period_bounds(s.month)[0])):
        start, end = period_bounds(s.month)
        named = s.inputs.get("period") or {}
        rows.append(
            ",".join(
                (
                    _csv_field(s.tenant_id),
                    s.month,
                    str(s.total_queries),
                    str(s.total_tokens),
                    fmt_minor(s.total, s.currency),
                    s.invoice_date,
                    iso(start),
                    iso(end),
                    _csv_field(named.get("label") or s.month),
                    named.get("time_zone") or "UTC",
                    s.currency,
                    "true" if s.is_final else "false",
                )
            )
        )
    return ("\n".join(rows) + "\n").encode()


LINES_HEADER = (
    "tenant_id,month,line_id,kind,plan,quantity,unit_price,amount_exact,amount,adjustment_month,description,"
    "prorated_seconds,month_seconds"
)


def lines_csv(statements: Iterable[Statement]) -> bytes:
    rows = [LINES_HEADER]
    for s in sorted(statements, key=lambda s: s.tenant_id):
        for line in s.lines:
            rows.append(
                ",".join(
                    _csv_field(v)
                    for v in (
                        s.tenant_id,
                        s.month,
                        line.line_id,
                        line.kind,
                        line.plan or "",
                        f"{line.quantity:f}",
                        "" if line.unit_price is None else f"{line.unit_price:f}",
                        f"{line.amount_exact:f}",
                        fmt_minor(line.amount, s.currency),
                        line.adjustment_month or "",
                        line.description,
                        "" if line.prorated_seconds is None else f"{line.prorated_seconds:f}",
                        "" if line.month_seconds is None else str(line.month_seconds),
                    )
                )
            )
    return ("\n".join(rows) + "\n").encode()


def _csv_field(value: str) -> str:
    if any(c in value for c in ',"\n\r'):
        return '"' + value.replace('"', '""') + '"'
    return value
