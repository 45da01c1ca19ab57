"""A month's push: every statement of a month (or the given tenants') invoiced in a thread pool.

Invariants:

- one tenant's failure never stops the month: it becomes an outcome with ``error`` and is logged;
- each tenant is invoiced once per push (a tenant id given twice counts once), and the outcomes
  come back sorted by tenant id whatever order the pool finished them in;
- the pool does not pace requests itself: the workers share one gateway, whose rate limiter keeps
  the whole run under the Stripe cap.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed

from billing.invoicing.records import InvoiceOutcome, StatementSource
from billing.kernel.periods import Month
from billing.runtime.observability import logger


def push_month(
    invoice: Callable[[str, str], InvoiceOutcome],
    statements: StatementSource,
    month: str | Month,
    tenant_ids: Iterable[str] | None = None,
    *,
    workers: int = 8,
    on_done: Callable[[InvoiceOutcome], None] | None = None,
) -> list[InvoiceOutcome]:
    """``invoice(tenant_id, month)`` for each of ``tenant_ids`` (default: every statement of the
    month) on ``workers`` threads; ``on_done`` sees each outcome as it finishes."""
    month = str(month)
    ids = (
        sorted(set(tenant_ids))
        if tenant_ids is not None
        else [s.tenant_id for s in statements.list_month(month)]
    )

    def one(tenant_id: str) -> InvoiceOutcome:
        try:
            return invoice(tenant_id, month)
        except Exception as exc:  # noqa: BLE001 - one tenant's failure never stops the month
            logger.exception("invoicing failed", extra={"tenant_id": tenant_id, "month": month})
            return InvoiceOutcome(tenant_id, month, "error", 0, error=f"{type(exc).__name__}: {exc}")

    outcomes: list[InvoiceOutcome] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for future in as_completed([pool.submit(one, t) for t in ids]):
            outcome = future.result()
            outcomes.append(outcome)
            if on_done:
                on_done(outcome)
    return sorted(outcomes, key=lambda o: o.tenant_id)
