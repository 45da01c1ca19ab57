"""What the tracker raises (only at the call: a bad argument, or the quota gate) and reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Dict, List, Optional, Tuple


class TransportError(Exception):
    """The request got no HTTP answer (refused, reset, timed out, DNS...)."""


@dataclass(frozen=True)
class MetricLimit:
    """One hard limit of the tenant's plan (``limits`` of the quota answer): exact decimals, the
    very counter ingest enforces it on."""

    metric: str
    limit: Decimal
    used: Decimal
    remaining: Decimal

    @property
    def exhausted(self) -> bool:
        return self.remaining <= 0


@dataclass(frozen=True)
class Quota:
    """A tenant's quota as ``GET /v1/tenants/{tenant_id}/quota`` returns it; ``limit`` and
    ``remaining`` are None for an unlimited plan."""

    tenant_id: str
    limit: Optional[int]
    used: int
    remaining: Optional[int]
    resets_at: Optional[str]
    plan: Optional[str]
    payment_status: Optional[str]
    raw: Dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    limits: Tuple[MetricLimit, ...] = ()  # every hard limit of the plan, queries included

    @property
    def exhausted(self) -> bool:
        return self.remaining is not None and self.remaining <= 0

    def limit_on(self, metric: str) -> Optional[MetricLimit]:
        """The plan's hard limit on ``metric``; None: it has none."""
        return next((m for m in self.limits if m.metric == metric), None)


class UsageRefused(Exception):
    """The quota gate refused the work before it started (base class)."""

    def __init__(self, message: str, quota: Quota) -> None:
        super().__init__(message)
        self.quota = quota


class QuotaExceeded(UsageRefused):
    """The tenant's monthly query quota is used up (``remaining`` is 0): do not do the work."""


class LimitReached(QuotaExceeded):
    """A hard limit of the tenant's plan on a metric the work adds to is used up: do not do the
    work (``metric`` names it)."""

    def __init__(self, message: str, quota: Quota, metric: str) -> None:
        super().__init__(message, quota)
        self.metric = metric


class TenantSuspended(UsageRefused):
    """The tenant is suspended for non-payment: ingest would refuse its usage with 402."""


class CorrectionFailed(Exception):
    """A correction was not applied: ``status`` is the API's answer for it (404 no such stored event,
    409 already voided or its id reused, 422 older than the correction window, 400 a bad value), or
    None when no answer came (sending the same correction again is safe: it is applied once)."""

    def __init__(self, message: str, status: Optional[int] = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Correction:
    """An applied correction: ``status`` is ``applied`` or ``already_applied`` (sent before);
    ``entry`` the audit trail's line (who, when, why, before and after)."""

    correction_id: str
    tenant_id: str
    event_id: str
    status: str
    entry: Dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


class QuotaUnavailable(Exception):
    """The quota could not be read (network, 5xx, unexpected answer) and ``fail_open`` is False."""


@dataclass(frozen=True)
class Problem:
    """Something the tracker reports through ``on_error`` and logging instead of raising.

    kind: ``rejected`` (the server refused these events as final; never retried), ``dropped``
    (track() could not keep them: spool full, tracker closed, unreadable spool line), ``retry``
    (a send failed and will be retried), ``auth`` (401/403 for the whole batch: kept and retried,
    fix the key), ``config`` (404/405/415 naming no event: a wrong endpoint path; kept and
    retried), ``held`` (a 404 naming an unknown tenant: its events are kept and retried for
    ``unknown_tenant_retention``, then refused), ``quota_check`` (the quota gate could not read
    the quota), ``internal``.
    """

    kind: str
    message: str
    status: Optional[int] = None
    events: List[Dict[str, Any]] = field(default_factory=list)
    reason: Optional[str] = None
