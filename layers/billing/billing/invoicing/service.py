"""``InvoicingService``: the invoicing parts wired together behind the calls handlers, the CLI and
the container make (``invoice``, ``push``, ``ensure_customer``).

It owns no rule of its own. What it guarantees is that its parts share one gateway, built on first
use (building it fetches the provider's secret key, which a tenant already linked or a statement
already done never needs), and one ``Drafts`` (so the synced product ids are read once).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime

from billing.catalog.plans import PlanCatalog
from billing.dunning.notices import NoticePublisher
from billing.invoicing.customers import CustomerLinker
from billing.invoicing.drafts import Drafts
from billing.invoicing.push import push_month
from billing.invoicing.records import InvoiceOutcome, InvoiceRecords, StatementSource
from billing.invoicing.state_machine import InvoiceStateMachine
from billing.kernel.periods import Month
from billing.payments.provider import PaymentGateway, RequestPlanner
from billing.tenants.tenant import TenantStore


class InvoicingService:
    def __init__(
        self,
        *,
        statements: StatementSource,
        tenants: TenantStore,
        catalog: PlanCatalog,
        records: InvoiceRecords,
        gateway: Callable[[], PaymentGateway],
        planner: RequestPlanner,
        clock: Callable[[], datetime] | None = None,
        products: Callable[[], Mapping[str, str]] | None = None,
        notices: NoticePublisher | None = None,
    ):
        """``gateway`` is called once, on first use. ``products`` gives the recorded
        ``billing_key -> Stripe product`` ids (catalog sync), read once per service (a lost race on a
        record is ``InvoiceRecords.save`` answering None)."""
        self.statements = statements
        self.records = records
        self.planner = planner
        self.clock = clock or (lambda: datetime.now(UTC))
        self._gateway_factory = gateway
        self._gateway: PaymentGateway | None = None
        self._lock = threading.Lock()
        self.customers = CustomerLinker(tenants=tenants, gateway=lambda: self.gateway)
        self.drafts = Drafts(catalog, products)
        self.machine = InvoiceStateMachine(
            statements=statements,
            records=records,
            customers=self.customers,
            drafts=self.drafts,
            gateway=lambda: self.gateway,
            clock=self.clock,
            notices=notices,
        )

    @property
    def gateway(self) -> PaymentGateway:
        with self._lock:
            if self._gateway is None:
                self._gateway = self._gateway_factory()
            return self._gateway

    @property
    def notices(self) -> NoticePublisher | None:
        return self.machine.notices

    @notices.setter
    def notices(self, publisher: NoticePublisher | None) -> None:
        self.machine.notices = publisher

    def invoice(self, tenant_id: str, month: str | Month) -> InvoiceOutcome:
        """Bring the statement's invoice as far as it goes: created, itemized, finalized, charged once."""
        return self.machine.invoice(tenant_id, month)

    def push(
        self,
        month: str | Month,
        tenant_ids: Iterable[str] | None = None,
        *,
        workers: int = 8,
        on_done: Callable[[InvoiceOutcome], None] | None = None,
    ) -> list[InvoiceOutcome]:
        """Invoice the month's statements (or the given tenants') in parallel; failures are outcomes
        with ``error`` (``push.push_month``)."""
        return push_month(self.invoice, self.statements, month, tenant_ids, workers=workers, on_done=on_done)

    def ensure_customer(self, tenant_id: str) -> str:
        """The tenant's Stripe customer id, creating the customer once (signup, card on file, invoicing)."""
        return self.customers.ensure(tenant_id)
