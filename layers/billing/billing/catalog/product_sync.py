"""Our plans and usage kinds as Stripe Products, so Stripe's reports, revenue recognition and tax
codes work per product. Amounts stay ours: invoice lines name a product through an inline price of
exactly the line's cents (``price_data.product``), never a Stripe price list.

Invariants:
- one Product per (plan, line kind) we bill a plan for (``base_fee``, ``queries``) and one per
  usage kind billed across plans (``usage_cost``), each identified by ``metadata.billing_key``;
- ``sync`` is idempotent: it lists the products (strongly consistent, never search), creates only
  the missing keys (idempotency key ``catalog:{key}``), updates only the ones whose name or
  description changed, and records ``billing_key -> product id``; a second run changes nothing;
- ``--dry-run`` computes the same plan and sends no write.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

from billing.catalog.plans import PlanCatalog

USAGE_KINDS = {"usage_cost": ("Model and storage usage", "Tokens, embeddings and storage, priced per event")}
PLAN_KINDS = {
    "base_fee": ("{name} plan - base fee", "Monthly base fee of the {name} plan"),
    "queries": ("{name} plan - queries", "Queries of the {name} plan, graduated tiers"),
}


@dataclass(frozen=True)
class ProductSpec:
    key: str  # metadata.billing_key, e.g. "plan:starter:base_fee"
    name: str
    description: str


@dataclass(frozen=True)
class StripeProduct:
    id: str
    key: str
    name: str
    description: str | None


@dataclass
class SyncPlan:
    create: list[ProductSpec] = field(default_factory=list)
    update: list[tuple[StripeProduct, ProductSpec]] = field(default_factory=list)
    unchanged: list[StripeProduct] = field(default_factory=list)

    def rows(self) -> list[tuple[str, Literal["create", "update", "unchanged"], str]]:
        return (
            [(s.key, "create", "-") for s in self.create]
            + [(s.key, "update", p.id) for p, s in self.update]
            + [(p.key, "unchanged", p.id) for p in self.unchanged]
        )


class ProductDirectory(Protocol):
    def list_products(self) -> list[StripeProduct]: ...

    def create_product(self, spec: ProductSpec) -> StripeProduct: ...

    def update_product(self, product_id: str, spec: ProductSpec) -> StripeProduct: ...


class ProductIds(Protocol):
    """Where the ``billing_key -> product id`` mapping is recorded (and read by invoicing)."""

    def get(self) -> dict[str, str]: ...

    def put(self, ids: Mapping[str, str]) -> None: ...


def product_specs(catalog: PlanCatalog) -> list[ProductSpec]:
    specs = []
    for plan in catalog.plans:
        for kind, (name, description) in PLAN_KINDS.items():
            specs.append(
                ProductSpec(
                    f"plan:{plan.id}:{kind}", name.format(name=plan.name), description.format(name=plan.name)
                )
            )
    for kind, (name, description) in USAGE_KINDS.items():
        specs.append(ProductSpec(f"usage:{kind}", name, description))
    return specs


def product_key(plan: str | None, kind: str) -> str:
    """The product of a statement line: its plan's for plan kinds, else the usage kind's."""
    return f"plan:{plan}:{kind}" if plan and kind in PLAN_KINDS else f"usage:{kind}"


def plan_sync(specs: list[ProductSpec], existing: list[StripeProduct]) -> SyncPlan:
    by_key: dict[str, StripeProduct] = {}
    for product in existing:
        by_key.setdefault(product.key, product)  # the first listed (newest) wins a duplicate key
    plan = SyncPlan()
    for spec in specs:
        found = by_key.get(spec.key)
        if found is None:
            plan.create.append(spec)
        elif (found.name, found.description or "") != (spec.name, spec.description):
            plan.update.append((found, spec))
        else:
            plan.unchanged.append(found)
    return plan


def sync_catalog(
    catalog: PlanCatalog, products: ProductDirectory, ids: ProductIds, *, dry_run: bool = False
) -> tuple[SyncPlan, dict[str, str]]:
    """Bring Stripe's products in line with the catalog and record their ids (see module doc)."""
    plan = plan_sync(product_specs(catalog), products.list_products())
    recorded = {p.key: p.id for p in plan.unchanged}
    recorded.update({p.key: p.id for p, _ in plan.update})
    if dry_run:
        return plan, recorded
    for product, spec in plan.update:
        products.update_product(product.id, spec)
    for spec in plan.create:
        recorded[spec.key] = products.create_product(spec).id
    ids.put(recorded)
    return plan, recorded
