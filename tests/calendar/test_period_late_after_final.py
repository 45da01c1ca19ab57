"""Late events of a cancelled calendar tenant's last period, stored after its final statement, with
the real stores (moto, chdb): billed once by the hourly close of the periods after it, as adjustment
lines of the last period on a statement of adjustment lines only, within the lookback of 3 periods."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from decimal import Decimal

import boto3
import pytest

from billing.kernel.calendar import Calendar
from billing.kernel.errors import Conflict
from billing.metering.events import UsageEvent
from billing.runtime import container
from billing.tenants.calendar_settings import CalendarSetting
from billing.tenants.service import CancelRequest
from tests.rating.helpers import event, make_tenant, queries

KOLKATA_NOVEMBER = "2025-10-31T18:30:00Z/2025-11-30T18:30:00Z"
KOLKATA_DECEMBER = "2025-11-30T18:30:00Z/2025-12-31T18:30:00Z"
KOLKATA_JANUARY = "2025-12-31T18:30:00Z/2026-01-31T18:30:00Z"
KOLKATA_FEBRUARY = "2026-01-31T18:30:00Z/2026-02-28T18:30:00Z"
NOVEMBER_LABEL = "Late usage from 2025-11 (Asia/Kolkata)"


def _kolkata_leaver() -> None:
    """A Kolkata tenant on starter since its local 1 November, 5 queries on 2 November, cancelled
    mid-period on 16 November 00:00 UTC: its final statement is issued at once."""
    make_tenant(
        "leaver",
        [("starter", "2025-10-31T18:30:00Z")],
        calendars=[CalendarSetting.of(Calendar("Asia/Kolkata"), None)],
    )
    container.usage_store().insert_events(queries("leaver", 5, "2025-11-02T00:00:00Z", prefix="a"))


def _jobs() -> list[dict]:
    sqs, queue, found = boto3.client("sqs"), container.settings().invoicing_queue_url, []
    while batch := sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, VisibilityTimeout=60).get(
        "Messages", []
    ):
        found += [json.loads(m["Body"]) for m in batch]
    return found


def _adjustments(statement) -> dict[str, Decimal]:
    return {l.line_id: l.amount for l in statement.lines if l.kind == "adjustment"}


def test_late_events_of_the_last_period_are_billed_once_after_the_final_statement(env):
    # Given a Kolkata tenant cancelled mid-November, whose final statement billed its 5 queries
    _kolkata_leaver()
    _, final = container.tenant_service().cancel("leaver", CancelRequest(at="2025-11-16T00:00:00Z"))
    assert (final.month, final.is_final, final.total_queries) == (KOLKATA_NOVEMBER, True, 5)
    time.sleep(0.01)
    # When 2 queries of its November from before the cancellation are stored after the final
    # statement (one with 0.50 of usage), the hourly run goes after its November ends, then a replay
    # stores one more November query after that close
    env.store.insert_events(
        [
            event("leaver", "late-1", "2025-11-10T00:00:00Z", cost="0.50"),
            event("leaver", "late-2", "2025-11-15T23:59:59.999Z"),
        ]
    )
    closer = container.tenant_period_close()
    november = closer.close_due(datetime(2025, 12, 1, 0, 15, tzinfo=UTC))
    time.sleep(0.01)
    env.store.insert_events([event("leaver", "replayed", "2025-11-12T00:00:00Z")])
    # And the hourly run goes after its (cancelled) December ends, twice
    december = closer.close_due(datetime(2025, 12, 31, 19, 15, tzinfo=UTC))
    again = closer.close_due(datetime(2025, 12, 31, 20, 15, tzinfo=UTC))
    # Then its November's close was recorded without a second statement: ingest refuses its events
    assert [(r.period, r.created, r.enqueued) for r in november.closed] == [(KOLKATA_NOVEMBER, False, False)]
    assert container.statements().get("leaver", KOLKATA_NOVEMBER) == final
    with pytest.raises(Conflict):
        container.ingest_service().ingest(
            [
                UsageEvent.model_validate(
                    {
                        "event_id": "refused",
                        "tenant_id": "leaver",
                        "timestamp": "2025-11-14T00:00:00Z",
                        "type": "query",
                        "model": "gpt-4o-mini",
                    }
                )
            ]
        )
    # And December's statement holds adjustment lines of November alone: its queries 6-8 (0.01 each)
    # and the 0.50 of usage, named in the tenant's own words, dated its local 31 December
    [closed] = december.closed
    statement = closed.statement
    assert (closed.period, closed.created, closed.enqueued) == (KOLKATA_DECEMBER, True, True)
    assert _adjustments(statement) == {
        f"adj:{KOLKATA_NOVEMBER}:queries:starter:t1": Decimal("0.03"),
        f"adj:{KOLKATA_NOVEMBER}:usage": Decimal("0.50"),
    }
    assert [l.kind for l in statement.lines] == ["adjustment", "adjustment"]
    assert all(l.adjustment_month == KOLKATA_NOVEMBER for l in statement.lines)
    assert all(l.description.startswith(NOVEMBER_LABEL) for l in statement.lines), statement.lines
    assert (statement.total, statement.total_queries, statement.is_final, statement.invoice_date) == (
        Decimal("0.53"),
        0,
        False,
        "2025-12-31",
    )
    assert statement.inputs["late_months"] == [KOLKATA_NOVEMBER]
    # And its invoicing jobs were sent once each (final, then December); the re-run closed nothing
    assert again.closed == []
    assert _jobs() == [
        {"tenant_id": "leaver", "month": KOLKATA_NOVEMBER},
        {"tenant_id": "leaver", "month": KOLKATA_DECEMBER},
    ]
    assert container.statements().get("leaver", KOLKATA_DECEMBER) == statement
    # And January, with nothing late, closes with no statement, and is not rated again
    january = closer.close_due(datetime(2026, 1, 31, 19, 15, tzinfo=UTC))
    assert [(r.period, r.statement) for r in january.closed] == [(KOLKATA_JANUARY, None)]
    assert closer.close_due(datetime(2026, 1, 31, 20, 15, tzinfo=UTC)).closed == []
    assert container.statements().get("leaver", KOLKATA_JANUARY) is None


def test_late_events_are_billed_for_three_periods_after_the_last_one_and_not_after(env):
    # Given the same Kolkata tenant cancelled mid-November, with its November, December and January
    # closed by the hourly runs (nothing late in them)
    _kolkata_leaver()
    container.tenant_service().cancel("leaver", CancelRequest(at="2025-11-16T00:00:00Z"))
    closer = container.tenant_period_close()
    for run in [(2025, 12, 1), (2026, 1, 1), (2026, 2, 1)]:
        closer.close_due(datetime(*run, tzinfo=UTC))
    time.sleep(0.01)
    # When a replay stores a November query before February's close, the hourly run closes
    # February, then another replay stores one after it and the hourly runs go for 3 more months
    env.store.insert_events([event("leaver", "in-lookback", "2025-11-03T00:00:00Z")])
    february = closer.close_due(datetime(2026, 3, 1, tzinfo=UTC))
    time.sleep(0.01)
    env.store.insert_events([event("leaver", "too-late", "2025-11-04T00:00:00Z")])
    later = [closer.close_due(datetime(2026, m, 1, tzinfo=UTC)) for m in (4, 5, 6)]
    # Then February, the third period after November, billed the first as November's 6th query
    [closed] = february.closed
    assert closed.period == KOLKATA_FEBRUARY
    assert _adjustments(closed.statement) == {
        f"adj:{KOLKATA_NOVEMBER}:queries:starter:t1": Decimal("0.01"),
        f"adj:{KOLKATA_NOVEMBER}:usage": Decimal("0.00"),
    }
    # And the one stored after February's close is billed nowhere: the lookback is 3 periods
    assert [r.closed for r in later] == [[], [], []]
    assert container.statements().get("leaver", "2026-02-28T18:30:00Z/2026-03-31T18:30:00Z") is None


def test_an_anniversary_tenant_cancelled_at_a_boundary_has_its_last_period_s_late_events_billed_next(env):
    # Given a UTC tenant anchored on its signup, 31 January 2025 10:00, with 2 queries in its first
    # period, cancelled at that period's end (28 February 10:00): the first period is its last, whole
    anna_february = "2025-01-31T10:00:00Z/2025-02-28T10:00:00Z"
    anna_march = "2025-02-28T10:00:00Z/2025-03-31T10:00:00Z"
    signup = datetime(2025, 1, 31, 10, tzinfo=UTC)
    make_tenant(
        "anna",
        [("starter", "2025-01-31T10:00:00Z")],
        calendars=[CalendarSetting.of(Calendar("UTC", signup), None)],
    )
    env.store.insert_events(queries("anna", 2, "2025-02-10T00:00:00Z"))
    _, final = container.tenant_service().cancel("anna", CancelRequest(at="2025-02-28T10:00:00Z"))
    assert (final.month, final.is_final, final.total) == (anna_february, True, Decimal("29.02"))
    time.sleep(0.01)
    # When a query of its last millisecond is stored after the final statement, and the hourly runs
    # go after its last period ends and after the next one ends
    env.store.insert_events([event("anna", "last-ms", "2025-02-28T09:59:59.999Z", cost="0.25")])
    closer = container.tenant_period_close()
    closer.close_due(datetime(2025, 2, 28, 10, 15, tzinfo=UTC))
    [closed] = closer.close_due(datetime(2025, 3, 31, 10, 15, tzinfo=UTC)).closed
    # Then the next period's statement bills it alone, as the third query of the last period
    assert closed.period == anna_march
    assert _adjustments(closed.statement) == {
        f"adj:{anna_february}:queries:starter:t1": Decimal("0.01"),
        f"adj:{anna_february}:usage": Decimal("0.25"),
    }
    assert (closed.statement.total, closed.statement.invoice_date) == (Decimal("0.26"), "2025-03-31")
    assert container.statements().get("anna", anna_february) == final
