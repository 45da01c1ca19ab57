"""The payment settings page's configuration at the provider (Stripe's Billing Portal
configuration), kept by ``billing stripe sync-catalog``.

Stripe creates a Billing Portal session only with a saved configuration: the one the session names
(``configuration``), else the account's default, which only saving the portal settings in the
Dashboard makes (a configuration created through the API is never the default). Without either,
every ``POST /v1/tenants/{id}/billing/portal`` would fail. So the sync keeps one configuration of
ours, named by ``metadata.billing_key``, records its id, and every session names it.

Invariants:
- idempotent: the configurations are listed (strongly consistent, never search); ours is created
  only when missing and updated only when the digest of what we send differs from the one it
  carries, or when it was deactivated; a second run sends no write;
- ``dry_run`` computes the same plan and writes nothing, neither at the provider nor the record.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Literal, Protocol

PAGE_KEY = "payment_settings_page"  # metadata.billing_key of our configuration

PageAction = Literal["create", "update", "unchanged"]


@dataclass(frozen=True)
class PageSpec:
    """What the page offers: the invoices (see and pay them), updating the card, and the customer
    details a tenant may change itself."""

    default_return_url: str
    invoice_history: bool = True
    payment_method_update: bool = True
    customer_updates: tuple[str, ...] = ("email", "address", "tax_id")

    def digest(self) -> str:
        """Stored with the configuration, so a changed spec is seen without comparing Stripe's
        nested objects field by field."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class ProviderPage:
    """A configuration as the provider lists it."""

    id: str
    key: str | None  # metadata.billing_key (None: not ours)
    digest: str | None  # metadata.billing_digest
    active: bool
    is_default: bool  # the account's default (saved in the Dashboard)


@dataclass(frozen=True)
class PagePlan:
    action: PageAction
    spec: PageSpec
    found: ProviderPage | None  # ours, when there is one
    account_default: ProviderPage | None  # the Dashboard's, used by sessions that name none

    @property
    def config_id(self) -> str | None:
        return self.found.id if self.found else None


class PageDirectory(Protocol):
    def list_page_configs(self) -> list[ProviderPage]: ...

    def create_page_config(self, spec: PageSpec) -> ProviderPage: ...

    def update_page_config(self, config_id: str, spec: PageSpec) -> ProviderPage: ...


class PageConfigId(Protocol):
    """Where the id of our configuration is recorded (and read by every session)."""

    def get(self) -> str | None: ...

    def put(self, config_id: str) -> None: ...


def plan_page(spec: PageSpec, existing: list[ProviderPage]) -> PagePlan:
    ours = [c for c in existing if c.key == PAGE_KEY]
    default = next((c for c in existing if c.is_default and c.active), None)
    # The first listed (newest) wins, preferring an active one: an older duplicate is left alone.
    found = next((c for c in ours if c.active), ours[0] if ours else None)
    if found is None:
        return PagePlan("create", spec, None, default)
    if found.digest != spec.digest() or not found.active:
        return PagePlan("update", spec, found, default)
    return PagePlan("unchanged", spec, found, default)


def sync_page(
    spec: PageSpec, directory: PageDirectory, ids: PageConfigId, *, dry_run: bool = False
) -> tuple[PagePlan, str | None]:
    """Bring our configuration in line with ``spec`` and record its id (see the module doc).
    Returns the plan and the id sessions will name (None on a dry run that would create it)."""
    plan = plan_page(spec, directory.list_page_configs())
    if dry_run:
        return plan, plan.config_id
    config_id: str | None
    if plan.action == "create":
        config_id = directory.create_page_config(spec).id
    elif plan.action == "update" and plan.found is not None:
        config_id = directory.update_page_config(plan.found.id, spec).id
    else:
        config_id = plan.config_id
    if config_id is not None and ids.get() != config_id:
        ids.put(config_id)
    return plan, config_id
