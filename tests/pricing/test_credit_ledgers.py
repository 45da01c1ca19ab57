"""The in-memory credit ledger ``billing simulate`` runs on answers exactly as the DynamoDB adapter:
the same calls against both (moto for DynamoDB) give the same results."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from billing.adapters.dynamodb.credit_ledger import DynamoCreditLedger
from billing.tenants.credits import CreditBurn, CreditGrant
from billing_local import memory


@pytest.fixture(params=["dynamodb", "memory"])
def ledger(request, env):
    if request.param == "memory":
        return memory.MemoryCredits()
    return DynamoCreditLedger(env.settings.billing_table)


def grant(tenant: str, grant_id: str, amount: str, **fields) -> CreditGrant:
    return CreditGrant(
        tenant_id=tenant,
        grant_id=grant_id,
        amount=Decimal(amount),
        currency="usd",
        granted_at=datetime(2025, 10, 1, tzinfo=UTC),
        **fields,
    )


def test_grants_and_burns_are_written_once_and_read_back_in_key_order(ledger):
    # Given two grants of one tenant and one of another, written out of order
    b = grant("acme", "b", "10.00", priority=1, expires_at=datetime(2026, 1, 1, tzinfo=UTC))
    a = grant("acme", "a", "5.50", description="welcome")
    assert ledger.add_grant(b) and ledger.add_grant(a)
    assert ledger.add_grant(grant("zeta", "a", "1"))
    # Then the same grant id again writes nothing, even with other details
    assert not ledger.add_grant(grant("acme", "a", "99"))
    assert ledger.get_grant("acme", "a") == a
    assert ledger.get_grant("acme", "missing") is None
    # When statements burn them (one burn twice)
    burns = [
        CreditBurn(tenant_id="acme", grant_id="b", statement_id="s2", amount=Decimal("1.25")),
        CreditBurn(tenant_id="acme", grant_id="a", statement_id="s1", amount=Decimal("5.50")),
    ]
    assert [ledger.add_burn(x) for x in burns] == [True, True]
    assert not ledger.add_burn(burns[0].model_copy(update={"amount": Decimal("3")}))
    # Then each tenant's entries come back in sort-key order, exactly as written the first time
    grants, read = ledger.entries("acme")
    assert grants == [a, b]
    assert read == [burns[1], burns[0]]
    assert ledger.entries("nobody") == ([], [])
    assert ledger.tenants_with_grants() == {"acme", "zeta"}
