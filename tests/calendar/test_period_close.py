"""The close per tenant period (billing.statements.period_close) with the real stores (moto, chdb):
each ended period closed once, beside the month close and never billed by it; the fallback refusal;
late events on the right period's adjustment lines; ingest's and the plan change's 409 per period."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import boto3
import pytest

from billing.invoicing.drafts import Drafts
from billing.kernel.calendar import Calendar
from billing.kernel.errors import Conflict
from billing.kernel.periods import Month
from billing.metering.events import UsageEvent
from billing.runtime import container
from billing.statements.close import FallbackNotDrained
from billing.tenants.calendar_settings import CalendarSetting
from billing.tenants.requests import PlanChangeRequest
from billing.tenants.service import CancelRequest
from billing_local.runner import LocalContext, load_module
from tests.conftest import PROJECT_ROOT
from tests.rating.helpers import event, make_tenant

KOLKATA_NOVEMBER = "2025-10-31T18:30:00Z/2025-11-30T18:30:00Z"
ANNA_FEBRUARY = "2025-01-31T10:00:00Z/2025-02-28T10:00:00Z"
ANNA_MARCH = "2025-02-28T10:00:00Z/2025-03-31T10:00:00Z"


def _jobs(env) -> list[dict]:
    sqs, found = boto3.client("sqs"), []
    while batch := sqs.receive_message(
        QueueUrl=env.settings.invoicing_queue_url, MaxNumberOfMessages=10, VisibilityTimeout=60
    ).get("Messages", []):
        found += [json.loads(m["Body"]) for m in batch]
    return sorted(found, key=lambda m: m["tenant_id"])


def _calendar(time_zone: str, anchor: datetime | None = None) -> list[CalendarSetting]:
    return [CalendarSetting.of(Calendar(time_zone, anchor), None)]


def _usage(event_id: str, tenant_id: str, ts: str) -> UsageEvent:
    return UsageEvent.model_validate(
        {
            "event_id": event_id,
            "tenant_id": tenant_id,
            "timestamp": ts,
            "type": "query",
            "model": "gpt-4o-mini",
        }
    )


def test_a_kolkata_period_is_closed_once_by_the_hourly_run_and_never_by_the_month_close(env):
    # Given a Kolkata calendar-monthly tenant signed up at its local midnight on 1 November, and a
    # default tenant, each with queries; the Kolkata one on both sides of its 1 December midnight
    make_tenant("india", [("starter", "2025-10-31T18:30:00Z")], calendars=_calendar("Asia/Kolkata"))
    make_tenant("acme", [("starter", "2025-10-01T00:00:00Z")])
    env.store.insert_events(
        [
            event("india", "in-nov", "2025-11-30T18:29:59.999Z"),
            event("india", "in-dec", "2025-11-30T18:30:00Z"),
            event("acme", "acme-nov", "2025-11-15T00:00:00Z"),
        ]
    )
    closer = container.tenant_period_close()
    # When the hourly run goes at 00:15 UTC on 1 December, twice, and the month close of November runs
    first = closer.close_due(datetime(2025, 12, 1, 0, 15, tzinfo=UTC))
    month = container.billing_cycle().close(Month(2025, 11))
    second = closer.close_due(datetime(2025, 12, 1, 1, 15, tzinfo=UTC))
    # Then the tenant's November (31 Oct 18:30 to 30 Nov 18:30 UTC) was closed once, with its one
    # query of the local 30 November: one whole 29.00 fee plus 1 x 0.01
    assert [(r.tenant_id, r.period, r.created) for r in first.closed] == [("india", KOLKATA_NOVEMBER, True)]
    statement = first.closed[0].statement
    assert statement is not None and statement.month == KOLKATA_NOVEMBER
    assert (statement.total, statement.total_queries, statement.invoice_date) == (
        Decimal("29.01"),
        1,
        "2025-11-30",
    )
    assert [l.description for l in statement.lines if l.kind == "base_fee"] == ["Starter plan, 1-30 Nov 2025"]
    # And the month close billed only the default tenant; the re-run rated nothing
    assert [s.tenant_id for s in month.statements] == ["acme"]
    assert second.closed == []
    assert container.statements().get("india", KOLKATA_NOVEMBER) == statement
    # And its Stripe invoice names the period in the tenant's zone, the month key kept for lookups
    draft = Drafts.invoice_draft(statement, "cus_1")
    assert draft.description == "Statement 2025-11 (Asia/Kolkata) for india"
    assert {k: draft.metadata[k] for k in ("month", "period", "time_zone")} == {
        "month": KOLKATA_NOVEMBER,
        "period": "2025-11 (Asia/Kolkata)",
        "time_zone": "Asia/Kolkata",
    }
    assert "period" not in Drafts.invoice_draft(month.statements[0], "cus_2").metadata
    # And one invoicing job per statement
    assert _jobs(env) == [
        {"month": "2025-11", "tenant_id": "acme"},
        {"month": KOLKATA_NOVEMBER, "tenant_id": "india"},
    ]


def test_a_tenant_period_is_not_closed_while_the_fallback_queue_holds_messages(env):
    # Given a Kolkata tenant whose November has ended, and a fallback queue that is not drained
    make_tenant("india", [("starter", "2025-10-31T18:30:00Z")], calendars=_calendar("Asia/Kolkata"))
    closer = container.tenant_period_close()
    closer.cycle.fallback_depth = lambda: 3
    # When the hourly run goes
    with pytest.raises(FallbackNotDrained):
        closer.close_due(datetime(2025, 12, 1, 0, 15, tzinfo=UTC))
    # Then nothing was closed or stored
    assert container.periods().closed_at(f"india@{KOLKATA_NOVEMBER}") is None
    assert container.statements().get("india", KOLKATA_NOVEMBER) is None


def test_a_late_event_for_an_anniversary_tenant_lands_on_the_next_period_s_adjustment_lines(env):
    # Given a UTC tenant anchored on its signup, 31 January 2025 10:00, with one query in its first
    # period (31 January 10:00 to 28 February 10:00), which the hourly run has closed
    signup = datetime(2025, 1, 31, 10, tzinfo=UTC)
    make_tenant("anna", [("starter", "2025-01-31T10:00:00Z")], calendars=_calendar("UTC", signup))
    env.store.insert_events([event("anna", "on-time", "2025-02-10T00:00:00Z")])
    closer = container.tenant_period_close()
    first = closer.close_due(datetime(2025, 3, 1, tzinfo=UTC))
    assert [r.period for r in first.closed] == [ANNA_FEBRUARY]
    assert first.closed[0].statement.total == Decimal("29.01")
    # When ingest is sent an event of the closed period and one of the open one
    ingest = container.ingest_service()
    with pytest.raises(Conflict) as refused:
        ingest.ingest([_usage("late-api", "anna", "2025-02-28T09:59:59.999Z")])
    assert refused.value.details[0]["month"] == ANNA_FEBRUARY
    ingest.ingest([_usage("march", "anna", "2025-02-28T10:00:00Z")])
    # And a plan change is asked inside the closed period, then inside the open one
    tenants = container.tenant_service()
    with pytest.raises(Conflict, match="31 Jan 2025 10:00 – 28 Feb 2025 10:00"):
        tenants.change_plan(
            "anna", PlanChangeRequest(plan="pro", effective_at=datetime(2025, 2, 20, tzinfo=UTC))
        )
    # And an event of the closed period is stored late (as a fallback replay would) and the
    # month close of February runs, then the hourly run after the second period ends
    env.store.insert_events([event("anna", "late", "2025-02-20T00:00:00Z", cost="0.50")])
    february = container.billing_cycle().close(Month(2025, 2))
    second = closer.close_due(datetime(2025, 3, 31, 10, 15, tzinfo=UTC))
    # Then the ingest 409 named the closed period and stored nothing; the open period's event counts
    assert [r.period for r in second.closed] == [ANNA_MARCH]
    march = second.closed[0].statement
    assert march.total_queries == 1
    # And the late event is an adjustment of the first period on the second's statement: the second
    # query of that period (tier 1, 0.01) and its 0.50 of usage, named in the tenant's own words
    adjustments = [
        (l.line_id, l.amount, l.adjustment_month, l.description)
        for l in march.lines
        if l.kind == "adjustment"
    ]
    assert adjustments == [
        (
            f"adj:{ANNA_FEBRUARY}:queries:starter:t1",
            Decimal("0.01"),
            ANNA_FEBRUARY,
            "Late usage from 31 Jan 2025 10:00 – 28 Feb 2025 10:00: Queries 1-1,000 at $0.01 (1 query)",
        ),
        (
            f"adj:{ANNA_FEBRUARY}:usage",
            Decimal("0.50"),
            ANNA_FEBRUARY,
            adjustments[1][3],
        ),
    ]
    assert march.inputs["late_months"] == [ANNA_FEBRUARY]
    # And the month close billed the anniversary tenant nothing, and the first statement is unchanged
    assert february.statements == []
    assert container.statements().get("anna", ANNA_FEBRUARY) == first.closed[0].statement


def test_a_cancellation_at_a_kolkata_midnight_ends_the_period_before_in_one_final_statement(env):
    # Given a Kolkata tenant signed up at its local midnight on 1 November, with a query on the local
    # 30 November
    make_tenant("india", [("starter", "2025-10-31T18:30:00Z")], calendars=_calendar("Asia/Kolkata"))
    env.store.insert_events([event("india", "in-nov", "2025-11-30T18:29:59.999Z")])
    tenants = container.tenant_service()
    # When it is cancelled at 00:00 on 1 December in Kolkata (30 November 18:30 UTC), twice
    tenant, final = tenants.cancel("india", CancelRequest(at=datetime(2025, 11, 30, 18, 30, tzinfo=UTC)))
    _, again = tenants.cancel("india", CancelRequest())
    # Then its final statement is its whole local November, stored once: one 29.00 fee plus 1 x 0.01
    assert (final.month, final.is_final, final.total, final.invoice_date) == (
        KOLKATA_NOVEMBER,
        True,
        Decimal("29.01"),
        "2025-11-30",
    )
    assert again == final == container.statements().get("india", KOLKATA_NOVEMBER)
    # And the hourly run only records its November's close (no second statement), nor does the
    # month close bill it
    closed = container.tenant_period_close().close_due(datetime(2025, 12, 1, 0, 15, tzinfo=UTC)).closed
    assert [(r.period, r.created, r.statement) for r in closed] == [(KOLKATA_NOVEMBER, False, final)]
    assert container.billing_cycle().close(Month(2025, 11)).statements == []


def test_the_hourly_schedule_closes_the_month_on_the_1st_and_tenant_periods_every_hour(env):
    # Given a default tenant and a Kolkata tenant, both on starter since November
    make_tenant("india", [("starter", "2025-10-31T18:30:00Z")], calendars=_calendar("Asia/Kolkata"))
    make_tenant("acme", [("starter", "2025-11-01T00:00:00Z")])
    close = load_module("monthly_close").handler
    scheduled = json.loads((PROJECT_ROOT / "events" / "monthly_close.json").read_text())
    # When the schedule fires at 19:15 UTC on 30 November, then at 00:15 UTC on 1 and 3 December
    evening = close({**scheduled, "time": "2025-11-30T19:15:00Z"}, LocalContext())
    first = close(scheduled, LocalContext())
    later = close({**scheduled, "time": "2025-12-03T00:15:00Z"}, LocalContext())
    # Then the Kolkata November was closed at the first run after its end (18:30 UTC), the UTC
    # November on the 1st, and nothing was closed twice or after the month's first days
    assert evening == {"tenant_periods": {"periods_closed": 1, "statements_created": 1, "jobs_enqueued": 1}}
    assert first["month"] == "2025-11" and first["statements_created"] == 1
    assert first["tenant_periods"]["periods_closed"] == 0
    assert later == {"tenant_periods": {"periods_closed": 0, "statements_created": 0, "jobs_enqueued": 0}}


def test_one_tenant_s_failing_close_does_not_hold_back_the_others(env):
    # Given two Kolkata tenants whose November has ended, one on a plan the catalog does not know
    make_tenant("broken", [("ghost", "2025-10-31T18:30:00Z")], calendars=_calendar("Asia/Kolkata"))
    make_tenant("india", [("starter", "2025-10-31T18:30:00Z")], calendars=_calendar("Asia/Kolkata"))
    # When the hourly run goes
    with pytest.raises(Exception):  # noqa: B017 - whatever the rater raises, the run fails (alarmed)
        container.tenant_period_close().close_due(datetime(2025, 12, 1, 0, 15, tzinfo=UTC))
    # Then the other tenant's period was closed and billed all the same; the failing one is retried
    assert container.statements().get("india", KOLKATA_NOVEMBER).total == Decimal("29.00")
    assert container.statements().get("broken", KOLKATA_NOVEMBER) is None
