"""Send usage events to the billing API from the app that serves the tenants.

from usage_tracker import Tracker
tracker = Tracker(endpoint="http://127.0.0.1:8787", api_key="...", spool_dir="/var/spool/usage")
tracker.track(tenant_id="acme", type="query", model="gpt-4o-mini", input_tokens=1200, output_tokens=300)
with tracker.query("acme", model="gpt-4o-mini") as q:   # raises QuotaExceeded before the work
    q.record(input_tokens=..., output_tokens=...)
tracker.void("acme", event_id, reason="sent twice")        # applied once, however often called
payload = verify_signature(body, headers, "whsec_...")  # a webhook the billing service sent you
"""

from .errors import (
    Correction,
    CorrectionFailed,
    LimitReached,
    MetricLimit,
    Problem,
    Quota,
    QuotaExceeded,
    QuotaUnavailable,
    TenantSuspended,
    UsageRefused,
)
from .tracker import FlushResult, QueryScope, Stats, Tracker
from .webhooks import WebhookVerificationError, verify_signature

__all__ = [
    "Correction",
    "CorrectionFailed",
    "FlushResult",
    "LimitReached",
    "MetricLimit",
    "Problem",
    "Quota",
    "QueryScope",
    "QuotaExceeded",
    "QuotaUnavailable",
    "Stats",
    "TenantSuspended",
    "Tracker",
    "UsageRefused",
    "WebhookVerificationError",
    "verify_signature",
]
__version__ = "0.1.0"
