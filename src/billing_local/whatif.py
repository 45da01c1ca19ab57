"""Pricing what-ifs: the same month simulated under the current and a proposed catalog, compared.

Generic over statement lines: lines are matched by ``line_id`` (a line only one side has counts as
0.00 on the other), so any line a rater produces (base fees, tiers, usage, whatever a catalog adds)
is compared without knowing what it is. Amounts are the statements' rounded line amounts; a
tenant's difference is the difference of its statement totals. Admission is compared per tenant
(events and queries accepted, events refused by reason), since a proposal's quota is enforced at
ingest: a lower quota refuses queries the current one accepted, and those are neither stored nor
billed under the proposal.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from billing.kernel.money import ZERO
from billing.statements.statement import Statement
from billing_local.simulation import SimulationReport, TenantCounts

ALL = "*"  # the grand-total row of the diff CSV (not a valid tenant id, so it cannot collide)


@dataclass(frozen=True)
class LineChange:
    line_id: str
    current: Decimal
    proposed: Decimal

    @property
    def difference(self) -> Decimal:
        return self.proposed - self.current


@dataclass(frozen=True)
class AdmissionChange:
    """How ingest treated one tenant's events under each catalog (only built when they differ)."""

    current: TenantCounts
    proposed: TenantCounts

    @property
    def queries(self) -> int:
        """Queries accepted under the proposal minus under the current catalog."""
        return self.proposed.accepted_queries - self.current.accepted_queries

    def describe(self) -> str:
        parts = []
        if self.queries < 0:
            parts.append(f"{-self.queries:,} queries the current catalog accepts are refused")
        elif self.queries > 0:
            parts.append(f"{self.queries:,} queries the current catalog refuses are accepted")
        other = (self.proposed.accepted - self.proposed.accepted_queries) - (
            self.current.accepted - self.current.accepted_queries
        )
        if other:
            parts.append(f"{other:+,} other events accepted")
        reasons = Counter(self.proposed.rejected)
        reasons.subtract(self.current.rejected)
        for reason, delta in sorted(reasons.items()):
            if delta and reason != "quota":
                parts.append(f"{delta:+,} refused ({reason})")
        return "; ".join(parts) or "admission differs"


@dataclass(frozen=True)
class TenantChange:
    tenant_id: str
    current: Decimal | None  # None: no statement on that side
    proposed: Decimal | None
    lines: tuple[LineChange, ...]  # every line whose amount moved, largest change first
    admission: AdmissionChange | None = None
    note: str = ""

    @property
    def difference(self) -> Decimal:
        return (self.proposed or ZERO) - (self.current or ZERO)


@dataclass
class Comparison:
    month: str
    tenants: list[TenantChange] = field(default_factory=list)  # largest absolute change first

    @property
    def current_total(self) -> Decimal:
        return sum((t.current or ZERO for t in self.tenants), ZERO)

    @property
    def proposed_total(self) -> Decimal:
        return sum((t.proposed or ZERO for t in self.tenants), ZERO)

    @property
    def difference(self) -> Decimal:
        return self.proposed_total - self.current_total

    @property
    def admission_changed(self) -> list[TenantChange]:
        return [t for t in self.tenants if t.admission is not None]

    @property
    def changed(self) -> list[TenantChange]:
        return [t for t in self.tenants if t.difference or t.lines or t.admission]


def _amounts(statement: Statement | None) -> dict[str, Decimal]:
    amounts: dict[str, Decimal] = {}
    for line in statement.lines if statement else ():
        amounts[line.line_id] = amounts.get(line.line_id, ZERO) + line.amount
    return amounts


def _counts_differ(a: TenantCounts, b: TenantCounts) -> bool:
    return (a.accepted, a.accepted_queries, +a.rejected) != (b.accepted, b.accepted_queries, +b.rejected)


def compare(current: SimulationReport, proposed: SimulationReport) -> Comparison:
    """Per tenant: both totals, the difference, the lines that moved and any change of admission."""
    before = {s.tenant_id: s for s in current.statements}
    after = {s.tenant_id: s for s in proposed.statements}
    tenants = sorted(set(before) | set(after) | set(current.per_tenant) | set(proposed.per_tenant))
    changes = []
    for tenant_id in tenants:
        a, b = before.get(tenant_id), after.get(tenant_id)
        amounts_a, amounts_b = _amounts(a), _amounts(b)
        lines = [
            LineChange(line_id, amounts_a.get(line_id, ZERO), amounts_b.get(line_id, ZERO))
            for line_id in _ordered(amounts_a, amounts_b)
        ]
        moved = sorted((l for l in lines if l.difference), key=lambda l: (-abs(l.difference), l.line_id))
        counts_a = current.per_tenant.get(tenant_id, TenantCounts())
        counts_b = proposed.per_tenant.get(tenant_id, TenantCounts())
        admission = AdmissionChange(counts_a, counts_b) if _counts_differ(counts_a, counts_b) else None
        note = ""
        if a and b and a.currency != b.currency:
            note = f"currency {a.currency} -> {b.currency}: amounts are not converted"
        changes.append(
            TenantChange(
                tenant_id,
                a.total if a else None,
                b.total if b else None,
                tuple(moved),
                admission,
                note,
            )
        )
    changes.sort(key=lambda t: (-abs(t.difference), t.tenant_id))
    return Comparison(current.month, changes)


def _ordered(*amounts: dict[str, Decimal]) -> Iterable[str]:
    seen: dict[str, None] = {}
    for mapping in amounts:
        seen.update(dict.fromkeys(mapping))
    return seen


DIFF_HEADER = ["tenant_id", "item", "current", "proposed", "difference", "admission"]


def _money(value: Decimal | None) -> str:
    """Two decimals, or all of them for a currency with more minor digits (KWD: 3): never rounded."""
    if value is None:
        return ""
    exponent = value.as_tuple().exponent
    return f"{value:f}" if isinstance(exponent, int) and exponent < -2 else f"{value:.2f}"


def diff_csv(comparison: Comparison) -> bytes:
    """Tenants by largest absolute change; per tenant a ``total`` row (with how admission changed,
    if it did) then each line that moved; a last ``*`` row for the whole month. LF line ends."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(DIFF_HEADER)
    for t in comparison.tenants:
        admission = t.admission.describe() if t.admission else ""
        note = "; ".join(x for x in (admission, t.note) if x)
        writer.writerow(
            [t.tenant_id, "total", _money(t.current), _money(t.proposed), _money(t.difference), note]
        )
        for l in t.lines:
            writer.writerow(
                [t.tenant_id, l.line_id, _money(l.current), _money(l.proposed), _money(l.difference), ""]
            )
    affected = len(comparison.admission_changed)
    writer.writerow(
        [
            ALL,
            "total",
            _money(comparison.current_total),
            _money(comparison.proposed_total),
            _money(comparison.difference),
            f"admission differs for {affected} tenant(s)" if affected else "",
        ]
    )
    return out.getvalue().encode()
