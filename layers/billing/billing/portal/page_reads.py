"""What one request of the usage page reads from DynamoDB by key, asked for in one batched read
(``PageReads``; the adapter ``billing.adapters.dynamodb.page_reads`` makes it one BatchGetItem).

Invariants:
- every item is read with strong consistency, as the single reads it replaces were;
- the keys depend on the tenant's record (its calendar names the period and the quota window), so
  the page asks first for the keys it expects (``PageKeys``: those of its last request for the same
  tenant and month text, else a UTC tenant's) together with the tenant, and asks again only for
  the keys the record shows were missing; nothing is ever served for a key that was not read.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from billing.portal.metric_cache import CachedFigures
from billing.portal.preview_cache import CachedPreview
from billing.portal.usage_cache import CachedUsage
from billing.statements.statement import Statement
from billing.tenants.tenant import Tenant


@dataclass(frozen=True)
class PageKeys:
    """The keyed items a page of one period needs besides the tenant record."""

    period: str  # the period's key: stored statement, cached preview, metric and usage figures
    quota: str  # the quota window's key
    invoice_months: tuple[str, ...]  # the periods offered (their invoice records)

    def missing(self, read: PageKeys | None) -> PageKeys | None:
        """The keys of ``self`` that ``read`` did not cover (None: all covered)."""
        if read is None:
            return self
        months = tuple(m for m in self.invoice_months if m not in read.invoice_months)
        period = self.period if self.period != read.period else ""
        quota = self.quota if self.quota != read.quota else ""
        if not (months or period or quota):
            return None
        return PageKeys(period, quota, months)


@dataclass
class PageItems:
    """The items found (a key without an item is absent from its dict)."""

    tenant: Tenant | None = None
    quota_used: dict[str, int] = field(default_factory=dict)  # window key -> queries used
    stored: dict[str, Statement] = field(default_factory=dict)  # period key -> issued statement
    invoices: dict[str, Any] = field(default_factory=dict)  # period key -> InvoiceRecord
    previews: dict[str, CachedPreview] = field(default_factory=dict)
    metrics: dict[str, CachedFigures] = field(default_factory=dict)
    usage: dict[str, CachedUsage] = field(default_factory=dict)

    def merge(self, other: PageItems) -> PageItems:
        for name in ("quota_used", "stored", "invoices", "previews", "metrics", "usage"):
            getattr(self, name).update(getattr(other, name))
        return self

    def invoice_records(self, months: Iterable[str]) -> list[Any]:
        return [self.invoices[m] for m in months if m in self.invoices]


class PageReads(Protocol):
    def read(self, tenant_id: str, keys: PageKeys, *, tenant: bool = True) -> PageItems:
        """The tenant's record (when ``tenant``) and the items of ``keys`` (empty keys skipped),
        each strongly consistent, in as few requests as the store allows."""
        ...
