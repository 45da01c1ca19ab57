"""The in-memory stores ``billing simulate`` runs on answer exactly as the DynamoDB adapters do: the
same calls against both (moto for DynamoDB) give the same results."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from billing import container
from billing.adapters.billing_store import PeriodRepository, StatementRepository
from billing.adapters.tenant_store import TenantRepository
from billing.adapters.usage_ledger import UsageLedger
from billing.exactly_once import Claim, ClaimState, TenantBusy
from billing.statements import Statement, StatementLine
from billing.tenants import Tenant
from billing_local import memory


@pytest.fixture(params=["dynamodb", "memory"])
def stores(request, env):
    if request.param == "memory":
        return {
            "ledger": memory.MemoryLedger(lock_wait_seconds=0.2),
            "tenants": memory.MemoryTenants(),
            "periods": memory.MemoryPeriods(),
            "statements": memory.MemoryStatements(),
        }
    s = env.settings
    return {
        "ledger": UsageLedger(s.ledger_table, lock_wait_seconds=0.2),
        "tenants": TenantRepository(s.tenants_table),
        "periods": PeriodRepository(s.billing_table),
        "statements": StatementRepository(s.billing_table),
    }


EXPIRES = 2_000_000_000


def test_claims_become_duplicates_once_their_batch_commits(stores):
    ledger = stores["ledger"]
    claims = [Claim("acme", "e1"), Claim("acme", "e2")]
    expiry = dict.fromkeys([*claims, Claim("acme", "e3")], EXPIRES)
    # Given a batch that claimed two events but has not committed
    ledger.claim(claims, "b1", expiry)
    assert ledger.lookup(claims) == dict.fromkeys(claims, ClaimState("b1", False, None))
    assert ledger.stored(claims) == set()
    # When a later batch takes the uncommitted claims over and commits
    ledger.claim(claims, "b2", expiry)
    ledger.commit_batch("b2", EXPIRES, events=2, queued=False)
    # Then both are stored: duplicates for anyone else
    assert ledger.stored([*claims, Claim("acme", "e3")]) == set(claims)
    assert ledger.lookup([Claim("acme", "e3"), claims[0]]) == {claims[0]: ClaimState("b2", True, None)}
    # And a released claim is gone
    ledger.claim([Claim("acme", "e3")], "b3", expiry)
    ledger.release([Claim("acme", "e3")], "b3")
    assert ledger.lookup([Claim("acme", "e3")]) == {}


def test_counted_claims_move_the_quota_counter_all_or_nothing(stores):
    ledger = stores["ledger"]
    q1, q2, q3 = Claim("acme", "q1"), Claim("acme", "q2"), Claim("acme", "q3")
    expiry = dict.fromkeys([q1, q2, q3], EXPIRES)

    def counted(claims, batch, used_after, version, previous=None):
        return ledger.claim_counted(
            "acme",
            "2025-11",
            claims,
            batch,
            expiry,
            used_after=used_after,
            expected_version=version,
            counter_expires_at=EXPIRES,
            previous=previous or {},
        )

    assert ledger.quota_used("acme", "2025-11") == (0, None)
    # Given two queries counted in one step
    assert counted([q1, q2], "b1", 2, None)
    assert ledger.quota_used("acme", "2025-11") == (2, 1)
    assert ledger.lookup([q1])[q1] == ClaimState("b1", False, "2025-11")
    # Then a stale counter version, or a claim someone else holds, changes nothing
    assert not counted([q3], "b2", 3, None)
    assert not counted([q1, q3], "b2", 4, 1)
    assert ledger.quota_used("acme", "2025-11") == (2, 1) and ledger.lookup([q3]) == {}
    # And an uncommitted claim is taken over when its holder is named
    assert counted([q1, q3], "b2", 3, 1, previous={q1: "b1"})
    assert ledger.quota_used("acme", "2025-11") == (3, 2)
    assert ledger.lookup([q1])[q1].batch_id == "b2"
    # When a counted claim is released, its query is taken off the counter with it
    ledger.release([q3], "b2", {q3: "2025-11"})
    assert ledger.quota_used("acme", "2025-11") == (2, 3) and ledger.lookup([q3]) == {}
    # And the plain compare-and-set of the counter
    assert not ledger.quota_set("acme", "2025-11", 9, 1, EXPIRES)
    assert ledger.quota_set("acme", "2025-11", 9, 3, EXPIRES)
    assert ledger.quota_used("acme", "2025-11") == (9, 4)
    assert ledger.quota_used("acme", "2025-12") == (0, None)


def test_a_tenant_lock_is_held_by_one_batch(stores):
    ledger = stores["ledger"]
    refused: list[str] = []

    def other_batch() -> None:
        try:
            with ledger.locked(["a"], "owner-2"):
                pass
        except TenantBusy as busy:
            refused.append(str(busy))

    # Given a batch holding tenants a and b
    with ledger.locked(["b", "a"], "owner-1"):
        # When another batch wants a meanwhile, then it gives up after its wait
        thread = threading.Thread(target=other_batch)
        thread.start()
        thread.join()
    assert refused == ["a"]
    # And once released, a is free
    with ledger.locked(["a"], "owner-2"):
        pass


def test_tenants_are_created_once_and_saved_optimistically(stores):
    tenants = stores["tenants"]
    tenant = Tenant(id="acme", plans=[{"plan": "starter", "effective_at": "2025-10-01T00:00:00Z"}])
    assert tenants.create(tenant)
    assert not tenants.create(tenant)
    stored = tenants.get("acme")
    assert stored is not None and stored.version == 1 and stored.plans == tenant.plans
    assert set(tenants.get_many(["acme", "nobody"])) == {"acme"}
    saved = tenants.save(stored.model_copy(update={"name": "Acme"}))
    assert saved.version == 2 and tenants.get("acme").name == "Acme"
    with pytest.raises(Exception) as stale:
        tenants.save(stored)  # read at version 1, saved since
    assert container.is_conflict(stale.value)
    assert [t.id for t in tenants.list_all()] == ["acme"]


def test_the_first_close_wins_and_statements_are_stored_once(stores):
    periods, statements = stores["periods"], stores["statements"]
    first = datetime(2025, 12, 1, 0, 15, 0, 123000, tzinfo=UTC)
    assert periods.closed_at("2025-11") is None
    assert periods.close("2025-11", first) == first
    assert periods.close("2025-11", datetime(2025, 12, 2, tzinfo=UTC)) == first
    assert periods.closed_at("2025-11") == first
    line = StatementLine(
        line_id="usage",
        kind="usage_cost",
        description="usage",
        quantity=Decimal(3),
        amount_exact=Decimal("0.004999999"),
        amount=Decimal("0.00"),
        period_start=datetime(2025, 11, 1, tzinfo=UTC),
        period_end=datetime(2025, 12, 1, tzinfo=UTC),
    )
    statement = Statement(
        statement_id="acme:2025-11",
        tenant_id="acme",
        month="2025-11",
        period_start=datetime(2025, 11, 1, tzinfo=UTC),
        period_end=datetime(2025, 12, 1, tzinfo=UTC),
        invoice_date="2025-11-30",
        lines=[line],
        total=Decimal("0.00"),
    )
    assert statements.put_if_absent(statement)
    assert not statements.put_if_absent(statement.model_copy(update={"total": Decimal(1)}))
    assert statements.get("acme", "2025-11") == statement
    assert [s.statement_id for s in statements.list_month("2025-11")] == ["acme:2025-11"]
    assert statements.list_month("2025-10") == []
