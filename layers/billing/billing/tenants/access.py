"""Who is calling, and what it may do: the one place the API-key rule for tenants is decided.

Invariants: a platform key may act for every tenant (an unknown tenant is a 404 for it); any other key
only for tenants whose record lists it, and for such a key a missing tenant and someone else's tenant
get the very same 403, so a key cannot tell which tenants exist. No API key at all is a 401.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from billing.kernel.errors import Forbidden, Unauthorized
from billing.tenants.tenant import Tenant, unknown_tenant


@dataclass(frozen=True)
class Principal:
    """Who is calling: the API Gateway API key id, and whether it is a platform key (the SaaS's own
    backend, ``PLATFORM_API_KEY_IDS``). The one place the API-key rule for tenants is decided:

    - a platform key may act for every tenant; an unknown tenant is a 404 for it;
    - any other key may act only for tenants whose record lists it in ``api_key_ids``; for such a key a
      tenant that does not exist and a tenant of someone else get the very same 403, so a tenant's key
      cannot tell which tenants exist."""

    api_key_id: str | None
    platform: bool = False

    def may_act_for(self, tenant: Tenant) -> bool:
        return self.platform or (self.api_key_id is not None and self.api_key_id in tenant.api_key_ids)

    def authorize(self, tenant_ids: Iterable[str], found: Mapping[str, Tenant], action: str) -> None:
        """Raise unless this caller may ``action`` (e.g. "write usage for") every tenant named;
        ``found`` holds the tenants that exist."""
        ids = sorted(set(tenant_ids))
        if self.platform:
            missing = [t for t in ids if t not in found]
            if missing:
                raise unknown_tenant(missing)
            return
        refused = [t for t in ids if t not in found or not self.may_act_for(found[t])]
        if refused:
            raise Forbidden(
                f"this API key may not {action} tenant(s): {', '.join(refused)}",
                details=[
                    {"field": "tenant_id", "tenant_id": t, "reason": "not this key's tenant"} for t in refused
                ],
            )

    def require(self, tenant_id: str, tenant: Tenant | None, action: str) -> Tenant:
        """The tenant, if this caller may ``action`` it (see ``authorize``)."""
        self.authorize([tenant_id], {tenant_id: tenant} if tenant is not None else {}, action)
        assert tenant is not None
        return tenant

    def require_platform(self, action: str) -> None:
        if not self.platform:
            raise Forbidden(
                f"this API key may not {action}",
                details=[{"field": "x-api-key", "reason": "not a platform key"}],
            )


PLATFORM = Principal(api_key_id=None, platform=True)


def principal_for(api_key_id: str | None, platform_key_ids: Iterable[str]) -> Principal:
    """The caller behind an API Gateway API key id (None or empty: refused with a 401)."""
    if not api_key_id:
        raise Unauthorized("an API key is required (x-api-key header)")
    return Principal(api_key_id=api_key_id, platform=api_key_id in platform_key_ids)
