"""The in-memory stores ``billing simulate`` runs on answer exactly as the DynamoDB adapters do: the
same calls against both (moto for DynamoDB) give the same results."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from billing.adapters.dynamodb.statements import DynamoPeriodStore, DynamoStatementStore
from billing.adapters.dynamodb.tenants import DynamoTenantStore
from billing.adapters.dynamodb.usage_ledger import DynamoUsageLedger
from billing.metering.events import StoredEvent
from billing.metering.exactly_once import Claim, ClaimState
from billing.metering.fallback import blocks
from billing.metering.storing import store_rows
from billing.runtime import container
from billing.statements.statement import Statement, StatementLine
from billing.tenants.tenant import Tenant
from billing_local import memory


@pytest.fixture(params=["dynamodb", "memory"])
def stores(request, env):
    if request.param == "memory":
        return {
            "ledger": memory.MemoryLedger(),
            "tenants": memory.MemoryTenants(),
            "periods": memory.MemoryPeriods(),
            "statements": memory.MemoryStatements(),
        }
    s = env.settings
    return {
        "ledger": DynamoUsageLedger(s.ledger_table),
        "tenants": DynamoTenantStore(s.tenants_table),
        "periods": DynamoPeriodStore(s.billing_table),
        "statements": DynamoStatementStore(s.billing_table),
    }


EXPIRES = 2_000_000_000
LEASE = 4_000_000_000.0


def test_claims_become_duplicates_once_their_batch_commits(stores):
    ledger = stores["ledger"]
    claims = [Claim("acme", "e1"), Claim("acme", "e2")]
    e3 = Claim("acme", "e3")
    expiry = dict.fromkeys([*claims, e3], EXPIRES)
    # Given a batch that claimed two events but has not committed
    assert ledger.claim(claims, "b1", expiry, lease_until=LEASE).written
    assert ledger.lookup(claims) == dict.fromkeys(claims, ClaimState("b1", False, None, LEASE))
    assert ledger.stored(claims) == set()
    # Then another batch cannot write them, unless it names their holder (a take-over); each claim
    # is written on its own condition, so the free one next to them is written
    refused = ledger.claim([*claims, e3], "b2", expiry, lease_until=LEASE)
    assert (refused.written, refused.conflicts) == (False, frozenset(claims))
    assert ledger.lookup([e3]) == {e3: ClaimState("b2", False, None, LEASE)}
    ledger.release([e3], "b2")
    assert ledger.claim(claims, "b2", expiry, lease_until=LEASE, previous=dict.fromkeys(claims, "b1")).written
    # When that batch commits, both are stored: duplicates for anyone else
    ledger.commit_batch("b2", EXPIRES, events=2, queued=False)
    assert ledger.stored([*claims, e3]) == set(claims)
    assert ledger.lookup([e3, claims[0]]) == {claims[0]: ClaimState("b2", True, None, LEASE)}
    # And a released claim is gone
    assert ledger.claim([e3], "b3", expiry, lease_until=LEASE).written
    ledger.release([e3], "b3")
    assert ledger.lookup([e3]) == {}


def test_counted_claims_grow_the_quota_counter_within_bounds_all_or_nothing(stores):
    ledger = stores["ledger"]
    q1, q2, q3 = Claim("acme", "q1"), Claim("acme", "q2"), Claim("acme", "q3")
    expiry = dict.fromkeys([q1, q2, q3], EXPIRES)

    def counted(claims, batch, max_used, previous=None, min_used=None):
        return ledger.claim_counted(
            "acme",
            "2025-11",
            claims,
            batch,
            expiry,
            lease_until=LEASE,
            max_used=max_used,
            min_used=min_used,
            counter_expires_at=EXPIRES,
            previous=previous or {},
        )

    assert ledger.quota_used("acme", "2025-11") == (0, None)
    # Given two queries counted in one step (room: the counter is at most 3)
    assert counted([q1, q2], "b1", 3).written
    assert ledger.quota_used("acme", "2025-11") == (2, 1)
    assert ledger.lookup([q1])[q1] == ClaimState("b1", False, "2025-11", LEASE)
    # Then no room, or a claim someone else holds, changes nothing
    no_room = counted([q3], "b2", 1)
    assert (no_room.written, no_room.used) == (False, 2)
    contested = counted([q1, q3], "b2", None)
    assert (contested.written, contested.conflicts) == (False, frozenset({q1}))
    assert ledger.quota_used("acme", "2025-11") == (2, 1) and ledger.lookup([q3]) == {}
    # And an uncommitted claim is taken over when its holder is named
    assert counted([q1, q3], "b2", None, previous={q1: "b1"}).written
    assert ledger.quota_used("acme", "2025-11") == (4, 2)
    assert ledger.lookup([q1])[q1].batch_id == "b2"
    # When a counted claim is released, its query is taken off the counter with it
    ledger.release([q3], "b2", {q3: "2025-11"})
    assert ledger.quota_used("acme", "2025-11") == (3, 3) and ledger.lookup([q3]) == {}
    assert ledger.quota_used("acme", "2025-12") == (0, None)


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


def test_the_block_store_takes_a_batch_whole_and_clickhouse_gets_every_row(env):
    # Given the simulation's block store over the production ClickHouse store, and a batch of rows
    # too large for one fallback-queue message (so production would insert it in several blocks)
    store = memory.BlockStore(env.store, block_rows=10_000)
    fallback = memory.MemoryQueue()
    at = datetime(2025, 11, 3, 12, tzinfo=UTC)
    rows = [
        StoredEvent(
            "acme", f"e{i:05d}-{'x' * 100}", at, "query", "", 1, 0, 0, 0, Decimal("0.001"), "v1", at, {}
        )
        for i in range(3000)
    ]
    assert len(blocks(rows)) > 1
    # When ingest stores them
    outcome = store_rows(rows, "batch-1", store, fallback)
    # Then every row is kept, in order, none queued; and once flushed ClickHouse holds each of them
    assert (outcome.kept, outcome.queued, outcome.failed) == (rows, False, None)
    assert fallback.messages == []
    store.flush()
    ids = [r.event_id for r in rows]
    assert env.store.existing_event_ids("acme", ids) == set(ids)
    assert store.rows == len(rows)
