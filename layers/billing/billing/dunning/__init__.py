"""Dunning: per-invoice payment state, the tenant's standing derived from it, and the audit trail.

Pure domain: no AWS, no Stripe. Storage and the payment gateway come in through Protocols.
Where things are: ``facts`` (facts and the per-invoice record), ``schedule`` (when each retry is
due, and when retries end), ``timeline`` (standing and audit trail), ``notices`` (transitions as
events), ``service`` (the service and the storage protocol it needs).

Model (order-independent by construction)
-----------------------------------------
Everything we learn about an invoice is a dated *fact* (a ``Mark``: the Stripe event's ``created``
time and its id, or our retry's time and ``retry:{invoice}:{n}``). A per-invoice record keeps only
commutative, idempotent aggregates of those facts:

- ``first_failure``: the earliest failed payment that happened *before* the invoice was closed;
- ``closed``: the earliest resolution of any kind (paid, void, uncollectible) - it ends dunning;
- ``resolution``: the strongest resolution (paid/void beat uncollectible; earliest wins a tie);
- ``attempts``: our own retries, by number.

Applying the same facts in any order, any number of times, gives the same record. Hence the
invoice state never moves backwards (a ``payment_failed`` dated after ``paid`` changes nothing)
and a shuffled, duplicated stream ends where the ordered one does.

The tenant's standing and its audit trail are a pure function of its invoice records (plus the
date its Stripe customer was deleted, if it was): ``timeline()`` walks the facts in time order and
emits every change of state, so the stored trail is the same whatever order events arrived in.

- tenant ``past_due`` while any invoice has failed and is not closed;
- tenant ``suspended`` while any such invoice also had its last retry fail (or the customer was
  deleted in Stripe, so it cannot be collected);
- otherwise ``active``.

Retries run at ``first_failure + retry_days[k]`` (default 3, 7, 14 days) for k = retries made, until
``len(retry_days)`` were made (``schedule``: the one place that formula is written).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from billing.dunning.facts import (
    Attempt,
    Attempted,
    Fact,
    Failed,
    Finalized,
    InvoiceDunning,
    InvoiceState,
    Mark,
    Resolution,
    ResolutionMark,
    Resolved,
    apply,
)
from billing.dunning.timeline import AuditEntry, Standing, timeline

if TYPE_CHECKING:
    from billing.dunning.service import (
        ConcurrentUpdate,
        DueRetry,
        DunningRepository,
        DunningService,
        Outcome,
        RunReport,
        StatusView,
        TenantStanding,
    )

# The service's names are imported on first use, not with the package: Settings imports
# ``billing.dunning.schedule`` for its default and every function reads Settings on a cold start,
# so importing this package must not bring in the service (with the notices and the payment
# protocols it imports). A lazy name must never be a submodule's name too: importing that
# submodule would bind the module over it.
_SERVICE_NAMES = frozenset(
    {
        "ConcurrentUpdate",
        "DueRetry",
        "DunningRepository",
        "DunningService",
        "Outcome",
        "RunReport",
        "StatusView",
        "TenantStanding",
    }
)


def __getattr__(name: str) -> Any:
    if name not in _SERVICE_NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module("billing.dunning.service"), name)
    globals()[name] = value
    return value


__all__ = [
    "Attempt",
    "Attempted",
    "AuditEntry",
    "ConcurrentUpdate",
    "DueRetry",
    "DunningRepository",
    "DunningService",
    "Fact",
    "Failed",
    "Finalized",
    "InvoiceDunning",
    "InvoiceState",
    "Mark",
    "Outcome",
    "Resolution",
    "Resolved",
    "ResolutionMark",
    "RunReport",
    "Standing",
    "StatusView",
    "TenantStanding",
    "apply",
    "timeline",
]
