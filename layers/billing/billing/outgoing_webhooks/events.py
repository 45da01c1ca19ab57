"""The event types we send, a closed list: a receiver can rely on each name and its meaning, and an
endpoint can only subscribe to these.

A type's meaning never changes within a ``version``; a change that would break a receiver is a new
``version`` (sent in every payload), never a silent change of the same one.
"""

from __future__ import annotations

from typing import Final

EVENT_VERSION: Final = 1

EVENT_TYPES: Final[dict[str, str]] = {
    "statement.issued": "A tenant's statement for a closed month is stored (its final amounts).",
    "invoice.finalized": "The statement's invoice is finalized at the payment provider.",
    "invoice.paid": "An invoice is paid.",
    "invoice.payment_failed": "A payment of an invoice failed (dunning retries follow).",
    "tenant.past_due": "A tenant has an unpaid invoice past its failed payment.",
    "tenant.suspended": "A tenant is suspended for non-payment: ingest refuses its usage (402).",
    "tenant.reinstated": "A suspended or past-due tenant is back in good standing.",
    "alert.triggered": "A tenant's usage or spend crossed an alert threshold this period.",
    "alert.resolved": "A tenant's usage or spend went back under a threshold it had crossed.",
    "usage.late_adjusted": "Usage that arrived after its month closed adjusted that month.",
    "event.corrected": "A usage event was corrected (amended or voided).",
    "webhook_endpoint.disabled": "An endpoint whose every attempt failed for days was disabled.",
}
"""Every type we send, and what it means (docs/guides/webhooks-to-your-app.md lists the same)."""
