"""Helpers for rating tests: tenants and stored events written straight to the stores."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from billing.kernel.periods import parse_instant
from billing.metering.events import StoredEvent
from billing.tenants.tenant import Tenant
from tests.support import create_tenant


def at(text: str) -> datetime:
    return parse_instant(text)


def make_tenant(tenant_id: str, plans: list[tuple[str, str]], **extra: Any) -> Tenant:
    return create_tenant(tenant_id, plans, **extra)


def event(
    tenant_id: str, event_id: str, timestamp: str, *, type: str = "query", cost: str = "0", tokens: int = 0
) -> StoredEvent:
    return StoredEvent(
        tenant_id=tenant_id,
        event_id=event_id,
        timestamp=at(timestamp),
        type=type,
        model="gpt-4o-mini" if tokens else "",
        queries=1 if type == "query" else 0,
        input_tokens=tokens,
        output_tokens=0,
        bytes=0,
        cost_usd=Decimal(cost),
        price_version="2025-01-01T00:00:00Z",
        accepted_at=at(timestamp),
    )


def queries(
    tenant_id: str, n: int, start: str, *, prefix: str = "q", step_s: int = 1, cost: str = "0"
) -> list[StoredEvent]:
    base = at(start)
    from datetime import timedelta

    return [
        StoredEvent(
            tenant_id=tenant_id,
            event_id=f"{prefix}{i:07d}",
            timestamp=base + timedelta(seconds=i * step_s),
            type="query",
            model="",
            queries=1,
            input_tokens=0,
            output_tokens=0,
            bytes=0,
            cost_usd=Decimal(cost),
            price_version="v1",
            accepted_at=base,
        )
        for i in range(n)
    ]
