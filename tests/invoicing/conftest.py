"""Invoicing fixtures: a Stripe double the real SDK talks to, the key in (moto) Secrets Manager,
tenants and stored statements built the way the rating stage stores them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from billing.invoicing import InvoicingService
from billing.kernel.money import round_cents
from billing.kernel.periods import Month
from billing.runtime import container
from billing.runtime.container import invoice_records, invoicing_service
from billing.statements.statement import Statement, StatementLine
from billing.tenants.tenant import Tenant
from billing_local.runner import load_module
from billing_local.stripe_double import StripeDouble, put_secret
from tests.conftest import Env
from tests.support import create_tenant

MONTH = "2025-11"


def load_handler(function_dir: str) -> Any:
    return load_module(function_dir)


@dataclass
class Billing:
    env: Env
    stripe: StripeDouble

    @property
    def service(self) -> InvoicingService:
        return invoicing_service()

    @property
    def records(self) -> Any:
        return invoice_records()


_DOUBLES: list[StripeDouble] = []


@pytest.fixture
def stripe_double() -> Iterator[StripeDouble]:
    with StripeDouble(timeout_hang_s=0.6) as double:
        _DOUBLES.append(double)
        try:
            yield double
        finally:
            _DOUBLES.remove(double)


@pytest.fixture
def billing(env: Env, stripe_double: StripeDouble, monkeypatch: pytest.MonkeyPatch) -> Iterator[Billing]:
    """Given the local AWS account, the Stripe double as API base and the key in Secrets Manager."""
    from aws_lambda_powertools.utilities import parameters

    for key, value in {
        "STRIPE_API_BASE": stripe_double.api_base,
        "STRIPE_TIMEOUT_S": "0.3",
        "STRIPE_RETRY_BASE_DELAY_S": "0.01",
        "STRIPE_MAX_REQUESTS_PER_SECOND": "1000",
        "STRIPE_ENDPOINT_REQUESTS_PER_SECOND": "1000",
        "STRIPE_SEARCH_REQUESTS_PER_SECOND": "1000",
        "STRIPE_MAX_ATTEMPTS": "4",
    }.items():
        monkeypatch.setenv(key, value)
    container.reset()
    put_secret(container.settings().stripe_secret_name)
    parameters.clear_caches()
    yield Billing(env, stripe_double)
    parameters.clear_caches()
    container.reset()


def make_tenant(
    tenant_id: str, *, plan: str = "starter", customer: str | None = None, card: bool = True
) -> Tenant:
    """A tenant; with ``card`` its Stripe customer has a default card from creation on (as after the
    setup session), without it the tenant never saved one."""
    mirror: dict[str, Any] = {}
    if card and _DOUBLES:
        _DOUBLES[-1].card_at_signup(tenant_id)
        # what the webhook mirrors once the setup session completes
        mirror = {"payment_method_id": "pm_card_visa", "payment_method_at": datetime(2025, 1, 1, tzinfo=UTC)}
    plans = [(plan, datetime(2025, 1, 1, tzinfo=UTC))]
    return create_tenant(tenant_id, plans, stripe_customer_id=customer, **mirror)


def make_statement(
    tenant_id: str,
    exact_amounts: list[str | Decimal],
    *,
    month: str = MONTH,
    plan: str | None = "starter",
    is_final: bool = False,
    store: bool = True,
) -> Statement:
    """A statement whose lines are the exact amounts rounded half-up to cents once (the rating rule)."""
    m = Month.parse(month)
    lines = []
    for n, exact in enumerate(exact_amounts, start=1):
        exact = Decimal(str(exact))
        lines.append(
            StatementLine(
                line_id=f"usage:{n}",
                kind="usage_cost" if n > 1 else "base_fee",
                plan=plan,
                description=f"line {n}: 1 x {exact} USD",
                quantity=Decimal(1),
                unit_price=exact,
                amount_exact=exact,
                amount=round_cents(exact),
                period_start=m.start,
                period_end=m.end,
            )
        )
    statement = Statement(
        statement_id=Statement.make_id(tenant_id, month),
        tenant_id=tenant_id,
        month=month,
        period_start=m.start,
        period_end=m.end,
        is_final=is_final,
        invoice_date=m.end.date().isoformat(),
        lines=lines,
        total=sum((line.amount for line in lines), Decimal(0)),
    )
    if store:
        assert container.statements().put_if_absent(statement)
    return statement


def cents(statement: Statement) -> int:
    return int(statement.total * 100)


class Published:
    """A NoticePublisher that keeps what it is given."""

    def __init__(self) -> None:
        self.notices: list = []

    def publish(self, notices) -> None:
        self.notices.extend(notices)
