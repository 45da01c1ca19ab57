"""Helpers every test area shares."""

from __future__ import annotations

from typing import Any

from billing import container
from billing.tenants import PlanAssignment, Tenant


def create_tenant(
    tenant_id: str, plans: list[tuple[str, Any]] | list[PlanAssignment] | None = None, **fields: Any
) -> Tenant:
    """Store a tenant (name and email derived from its id unless given) and return it as stored.

    ``plans``: ``[(plan, effective_at), ...]`` or assignments; each area wraps this with its defaults."""
    fields.setdefault("name", tenant_id.title())
    fields.setdefault("email", f"billing@{tenant_id}.example")
    assignments = [
        p if isinstance(p, PlanAssignment) else PlanAssignment(plan=p[0], effective_at=p[1])
        for p in plans or []
    ]
    tenant = Tenant(id=tenant_id, plans=assignments, **fields)
    assert container.tenants().create(tenant), f"tenant {tenant_id} exists already"
    stored = container.tenants().get(tenant_id)
    assert stored is not None
    return stored
