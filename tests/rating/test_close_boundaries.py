"""Property tests of the close at month boundaries: plan changes, trial ends, cancellations and credit
grants exactly at 00:00 of a month, at the last millisecond before it, and in a leap February. Every
stored event is billed exactly once across the month's statement, the final statement and later
adjustment lines, whenever it is stored, and no statement is missing.

Each example runs the production close, final statements and ClickHouse reads on in-memory stores of
its own (one tenant id per example, so the examples' rows never meet in ClickHouse)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from billing.kernel.periods import Month
from billing.metering.events import StoredEvent
from billing.runtime import container
from billing.statements.statement import Statement
from billing.tenants.requests import CancelRequest, CreditGrantRequest
from billing.tenants.tenant import PlanAssignment, Tenant
from billing_local import memory

MS = timedelta(milliseconds=1)
PLANS = ["starter", "pro", "payg", "free"]  # one currency: a tenant never mixes currencies
# How each event is stored: with its month's usage; after the final statement (before the close);
# after its month's close (a fallback replay); or at the cancellation, whatever its month.
PHASES = ["on_time", "after_final", "after_close", "at_cancellation"]


def boundaries(year: int) -> list[datetime]:
    """00:00 of February to May, the millisecond before each, and 00:00 of February's last two days
    (the 28th and, in a leap year, the 29th)."""
    starts = [datetime(year, m, 1, tzinfo=UTC) for m in range(2, 6)]
    days = [datetime(year, 2, 28, tzinfo=UTC)]
    if Month(year, 3).start - Month(year, 2).start == timedelta(days=29):
        days.append(datetime(year, 2, 29, tzinfo=UTC))
    return sorted({*starts, *(s - MS for s in starts), *days})


@dataclass(frozen=True)
class Scenario:
    year: int
    first: datetime
    first_plan: str
    changes: list[tuple[str, datetime]]
    trial_ends_at: datetime | None
    canceled_at: datetime | None
    grant: tuple[datetime, Decimal, datetime | None] | None
    events: list[tuple[datetime, str, Decimal, str]]  # timestamp, type, cost, phase


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    year = draw(st.sampled_from([2024, 2025]))  # 2024: a leap February
    instants = boundaries(year)
    first = draw(st.sampled_from([datetime(year, 1, 1, tzinfo=UTC), datetime(year, 2, 1, tzinfo=UTC) - MS]))
    first_plan = draw(st.sampled_from(PLANS))
    later = [b for b in instants if b > first]
    changes = draw(st.lists(st.tuples(st.sampled_from(PLANS), st.sampled_from(later)), max_size=2))
    changes = list({at: (plan, at) for plan, at in changes}.values())
    trial_ends_at = draw(st.none() | st.sampled_from(later))
    canceled_at = draw(st.sampled_from([None, *later]))
    grant = draw(
        st.none()
        | st.tuples(
            st.sampled_from(instants),
            st.integers(1, 150).map(Decimal),
            st.none() | st.sampled_from(instants),
        )
    )
    if grant is not None and grant[2] is not None and grant[2] <= grant[0]:
        grant = (grant[0], grant[1], None)
    stamps = sorted({*instants, *(b + MS for b in instants), first, first + MS})
    # Events crowd around this tenant's own instants: at each, and the millisecond before.
    cuts = [canceled_at, trial_ends_at, *(at for _, at in changes), grant[0] if grant else None]
    near = sorted({x for at in cuts if at is not None for x in (at - MS, at)})
    events = draw(
        st.lists(
            st.tuples(
                st.sampled_from(near) | st.sampled_from(stamps) if near else st.sampled_from(stamps),
                st.sampled_from(["query", "query", "embedding"]),
                st.sampled_from([Decimal("0"), Decimal("0.125"), Decimal("0.3"), Decimal("2.5")]),
                st.sampled_from(PHASES),
            ),
            max_size=14,
        )
    )
    # Ingest refuses events before the first plan and from the cancellation on.
    events = [e for e in events if e[0] >= first and (canceled_at is None or e[0] < canceled_at)]
    return Scenario(year, first, first_plan, changes, trial_ends_at, canceled_at, grant, events)


def final_month(canceled_at: datetime) -> Month:
    """The month holding the last billed instant (the millisecond before the cancellation)."""
    return Month.of(canceled_at - MS)


def has_period(s: Scenario, month: Month) -> bool:
    return s.first < month.end and (s.canceled_at is None or s.canceled_at > month.start)


def paid(s: Scenario, at: datetime) -> bool:
    return s.trial_ends_at is None or at >= s.trial_ends_at


def stored_event(tenant_id: str, n: int, event: tuple[datetime, str, Decimal, str]) -> StoredEvent:
    at, kind, cost, _ = event
    return StoredEvent(
        tenant_id=tenant_id,
        event_id=f"e{n:03d}",
        timestamp=at,
        type=kind,
        model="",
        queries=1 if kind == "query" else 0,
        input_tokens=0,
        output_tokens=0,
        bytes=0,
        cost_usd=cost,
        price_version="v1",
        accepted_at=at,
    )


def run(s: Scenario, store) -> tuple[str, list[Statement]]:
    """Every month from January to June in order, as production runs it: usage stored, a cancellation
    (its final statement issued at once), the month's close, then replays of the month's usage.
    Returns the tenant id and the statements in the order they were issued."""
    tenant_id = f"b{uuid.uuid4().hex[:12]}"
    container.override(
        tenants=memory.MemoryTenants(),
        ledger=memory.MemoryLedger(),
        periods=memory.MemoryPeriods(),
        statements=memory.MemoryStatements(),
        invoicing_jobs=memory.MemoryJobs(),
        invoice_archive=memory.MemoryArchive(),
        fallback_depth=memory.MemoryQueue(),
        credit_ledger=memory.MemoryCredits(),
    )
    plans = [PlanAssignment(plan=s.first_plan, effective_at=s.first)]
    plans += [PlanAssignment(plan=p, effective_at=at) for p, at in s.changes]
    assert container.tenants().create(
        Tenant(id=tenant_id, name="B", email="b@b.example", plans=plans, trial_ends_at=s.trial_ends_at)
    )
    service, cycle = container.tenant_service(), container.billing_cycle()
    if s.grant is not None:
        granted_at, amount, expires_at = s.grant
        service.grant_credit(
            tenant_id,
            CreditGrantRequest(grant_id="g1", amount=amount, granted_at=granted_at, expires_at=expires_at),
        )
    events = [(stored_event(tenant_id, n, e), e[3]) for n, e in enumerate(s.events)]
    final = final_month(s.canceled_at) if s.canceled_at is not None else None

    def replayable(event: StoredEvent) -> bool:
        """Stored at the cancellation, the event is billed by the next month's close only if its month
        is among the 3 that close looks back at (docs/design/known-problems.md: later ones are a known limit); others are
        stored after their own month's close instead."""
        return final is not None and final.previous().previous() <= Month.of(event.timestamp)

    def store_now(chosen: list[StoredEvent]) -> None:
        if chosen:
            store.insert_events(chosen)
            time.sleep(0.002)  # stored_at is to the millisecond: after any watermark taken before

    issued: list[Statement] = []
    for month in [Month(s.year, m) for m in range(1, 7)]:
        store_now([e for e, phase in events if month.contains(e.timestamp) and phase == "on_time"])
        if month == final:
            _, statement = service.cancel(tenant_id, CancelRequest(at=s.canceled_at))
            issued.append(statement)
            time.sleep(0.002)
            store_now([e for e, phase in events if phase == "at_cancellation" and replayable(e)])
        store_now([e for e, phase in events if month.contains(e.timestamp) and phase == "after_final"])
        result = cycle.close(month)
        issued += [x for x in result.statements if x.tenant_id in result.created]
        time.sleep(0.002)
        after_close = [e for e, phase in events if month.contains(e.timestamp) and phase == "after_close"]
        after_close += [
            e
            for e, phase in events
            if month.contains(e.timestamp) and phase == "at_cancellation" and not replayable(e)
        ]
        store_now(after_close)
    return tenant_id, issued


def quantity(statements: list[Statement], wanted) -> Decimal:
    return sum((l.quantity for x in statements for l in x.lines if wanted(l.line_id)), Decimal(0))


def exact(statements: list[Statement], wanted) -> Decimal:
    return sum((l.amount_exact for x in statements for l in x.lines if wanted(l.line_id)), Decimal(0))


def is_paid_queries(line_id: str) -> bool:
    parts = line_id.split(":")
    return (parts[0] == "queries" and parts[1] != "trial") or (parts[0] == "adj" and parts[2] == "queries")


def is_paid_usage(line_id: str) -> bool:
    return line_id == "usage" or (line_id.startswith("adj:") and line_id.endswith(":usage"))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(s=scenarios())
def test_every_event_is_billed_once_whatever_boundary_a_tenant_changes_at(env, s):
    # Given a tenant whose plan changes, trial end, cancellation and credit grant fall at month
    # boundaries, and events around them stored on time, after its final statement or after the close
    # When every month from January to June is closed (the final statement issued at the cancellation)
    note(repr(s))
    tenant_id, issued = run(s, env.store)
    statements = container.statements()
    by_month = {m: statements.get(tenant_id, m) for m in (Month(s.year, k) for k in range(1, 7))}
    final = final_month(s.canceled_at) if s.canceled_at is not None else None
    # Then no statement is missing: one per month with a period, final exactly for the final month
    for month, statement in by_month.items():
        if has_period(s, month):
            assert statement is not None, f"{month}: no statement"
            assert statement.is_final == (month == final), month
            if statement.is_final:  # the cancellation date; a cancellation at 00:00 on the 1st: the last day
                day = s.canceled_at if s.canceled_at < month.end else month.last_day
                assert statement.invoice_date == day.date().isoformat()
        elif statement is not None:  # after the final month: late usage, adjustment lines only
            assert any(l.kind == "adjustment" for l in statement.lines), month
            assert {l.kind for l in statement.lines} <= {"adjustment", "credit"}, month
    stored = [x for x in by_month.values() if x is not None]
    assert sorted(x.statement_id for x in issued) == sorted(x.statement_id for x in stored)
    # And every non-trial event stored is billed exactly once (its query and its event-time cost)
    billable = [e for e in s.events if paid(s, e[0])]
    assert quantity(stored, is_paid_queries) == sum(1 for e in billable if e[1] == "query")
    assert quantity(stored, is_paid_usage) == len(billable)
    assert exact(stored, is_paid_usage) == sum((e[2] for e in billable), Decimal(0))
    # And the base fee runs exactly over the paid time, from the first plan to the cancellation
    end = s.canceled_at or Month(s.year, 7).start
    paid_from = max(s.first, s.trial_ends_at or s.first)
    seconds = max(Decimal(0), Decimal((end - paid_from) // MS) / 1000)
    base = [l for x in stored for l in x.lines if l.kind == "base_fee"]
    assert sum((l.prorated_seconds or Decimal(0) for l in base), Decimal(0)) == seconds
    assert all(l.quantity == 1 for l in base)  # the customer counts one fee per line
    # And a credit grant is burnt once, on the statements issued from its grant on, never beyond it
    burnt = -exact(stored, lambda i: i.startswith("credit:"))
    if s.grant is None:
        assert burnt == 0
    else:
        granted_at, amount, expires_at = s.grant
        left = amount
        for x in issued:
            before = sum((l.amount for l in x.lines if l.kind != "credit"), Decimal(0))
            usable = granted_at < x.period_end and (expires_at is None or expires_at > x.period_start)
            burn = min(left, before) if usable and before > 0 else Decimal(0)
            assert -sum((l.amount for l in x.lines if l.kind == "credit"), Decimal(0)) == burn, x.month
            left -= burn
        assert burnt == amount - left
