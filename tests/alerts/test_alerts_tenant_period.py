"""Alerts and the usage page's quota of a tenant with its own billing calendar (Asia/Kolkata calendar
months): usage is read over its own period, each threshold fires once per tenant period and starts
afresh at the period's start (00:00 on the 1st in Kolkata, 18:30 UTC), and the page's quota block
shows that period's counter and reset instant."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from billing.catalog.plans import PlanCatalog
from billing.kernel.calendar import Calendar
from billing.kernel.periods import iso
from billing.runtime import container
from billing.tenants.calendar_settings import CalendarSetting
from tests.alerts.test_alerts import Notices, Webhooks, catalog, ingest_one
from tests.support import create_tenant

KOLKATA = [CalendarSetting.of(Calendar("Asia/Kolkata"), None)]
BEFORE_MIDNIGHT = datetime(2025, 11, 30, 18, 10, tzinfo=UTC)  # 23:40 on 30 November in Kolkata
AFTER_MIDNIGHT = datetime(2025, 11, 30, 19, 0, tzinfo=UTC)  # 00:30 on 1 December in Kolkata
NOVEMBER = Calendar("Asia/Kolkata").period_of(BEFORE_MIDNIGHT)
DECEMBER = Calendar("Asia/Kolkata").period_of(AFTER_MIDNIGHT)


@pytest.fixture
def world(env):
    notices, webhooks = Notices(), Webhooks()
    container.override(
        plan_catalog=catalog(),
        fact_notices=notices,
        webhook_publisher=webhooks,
        clock=lambda: BEFORE_MIDNIGHT,
    )
    create_tenant("india", [("metered", "2025-01-01T00:00:00Z")], calendars=KOLKATA)
    return notices, webhooks


def query(i: int, at: datetime) -> dict:
    return {
        "event_id": f"q-{i}",
        "tenant_id": "india",
        "timestamp": iso(at.replace(second=i % 60)),
        "type": "query",
        "model": "gpt-4o-mini",
        "input_tokens": 10,
        "output_tokens": 0,
    }


def fired(webhooks: Webhooks) -> list[tuple[str, str, str]]:
    return sorted(
        (d["period"], d["alert_id"], d["threshold"]) for t, _, d in webhooks.sent if t == "alert.triggered"
    )


def test_a_kolkata_tenants_alert_fires_once_per_its_own_period(env, world):
    _, webhooks = world
    # Given a Kolkata tenant with 5 queries late on 30 November UTC, still its November in Kolkata
    # (50% of its hard limit of 10)
    for i in range(5):
        assert ingest_one(query(i, BEFORE_MIDNIGHT.replace(minute=0))) == 202
    # When its alerts are evaluated, twice
    container.alert_evaluator().evaluate()
    container.alert_evaluator().evaluate()
    # Then the 50% threshold fired once, recorded under its Kolkata November
    assert ("2025-10-31T18:30:00Z/2025-11-30T18:30:00Z", "queries", "50%") in fired(webhooks)
    assert NOVEMBER.key == "2025-10-31T18:30:00Z/2025-11-30T18:30:00Z"
    assert [p for p, a, _ in fired(webhooks) if a == "queries"] == [NOVEMBER.key]
    # When a query arrives at 19:00 UTC on the last day of the UTC month (00:30 on 1 December in
    # Kolkata) and the alerts are evaluated then
    container.override(clock=lambda: AFTER_MIDNIGHT)
    assert ingest_one(query(5, AFTER_MIDNIGHT)) == 202
    container.alert_evaluator().evaluate()
    # Then it counts in the tenant's December, not in the UTC month's November
    assert container.ledger().quota_used("india", DECEMBER.key)[0] == 1
    assert container.ledger().quota_used("india", NOVEMBER.key)[0] == 5
    # And no query alert fires in December at 1 of 10: the threshold started afresh
    assert [p for p, a, _ in fired(webhooks) if a == "queries"] == [NOVEMBER.key]
    # When four more queries bring December to 5, evaluated at ingest and by the scheduled run
    for i in range(6, 10):
        assert ingest_one(query(i, AFTER_MIDNIGHT)) == 202
    container.alert_evaluator().evaluate()
    container.alert_evaluator().evaluate()
    # Then the 50% threshold fires once more, in December's period, and once only (spend too:
    # December's base fee and 5 queries)
    assert [p for p, a, t in fired(webhooks) if a == "queries"] == [NOVEMBER.key, DECEMBER.key]
    assert [p for p, a, _ in fired(webhooks) if a == "spend"] == [NOVEMBER.key, DECEMBER.key]
    states = container.alert_states().of_period("india", DECEMBER.key)
    assert [(s.alert_id, s.threshold, s.state) for s in states if s.alert_id == "queries"] == [
        ("queries", "50%", "active")
    ]
    assert len({source for _, source, _ in webhooks.sent}) == len(webhooks.sent)


def test_the_usage_pages_quota_block_shows_the_kolkata_periods_counter_and_reset(env, world):
    # Given a Kolkata tenant with 3 queries in its November, evaluated
    for i in range(3):
        assert ingest_one(query(i, BEFORE_MIDNIGHT.replace(minute=0))) == 202
    # When it opens its usage page for November at 18:10 UTC on 30 November
    view = container.portal_service().view("india", "2025-11").to_json()
    # Then the quota block shows its period's count and resets at 00:00 on 1 December in Kolkata:
    # 18:30 UTC, not the UTC month's end
    assert view["quota"] == {"used": 3, "limit": 10, "resets_at": "2025-11-30T18:30:00Z"}
    # When it opens the page at 19:00 UTC, its December in Kolkata, after one more query
    container.override(clock=lambda: AFTER_MIDNIGHT)
    assert ingest_one(query(3, AFTER_MIDNIGHT)) == 202
    view = container.portal_service().view("india").to_json()
    # Then the page's current period is its December: the block shows December's counter,
    # resetting at 18:30 UTC on 31 December
    assert view["quota"] == {"used": 1, "limit": 10, "resets_at": "2025-12-31T18:30:00Z"}


def metric_catalog() -> PlanCatalog:
    """A plan with a catalog-metric charge (active users at 5.00) and a spend alert at 14.00."""
    return PlanCatalog.model_validate(
        {
            "metrics": [
                {
                    "id": "active_users",
                    "name": "Active users",
                    "unit": "users",
                    "event_types": ["query"],
                    "aggregation": "unique_count",
                    "property": "user",
                }
            ],
            "plans": [
                {
                    "id": "users",
                    "name": "Users",
                    "base_fee": "10.00",
                    "query_quota": None,
                    "charges": [
                        {
                            "id": "users",
                            "name": "Active users",
                            "metric": "active_users",
                            "charge_model": "per_unit",
                            "unit_price": "5.00",
                        }
                    ],
                    "alerts": [{"id": "spend", "metric": "spend", "thresholds": ["14.00"]}],
                }
            ],
        }
    )


def test_a_kolkata_tenants_spend_alert_rates_its_catalog_metric_charges(env):
    # Given a Kolkata tenant on a plan of 10.00 plus 5.00 per active user, spend alert at 14.00,
    # with one user's query on the evening of 30 November UTC: still its November in Kolkata
    webhooks = Webhooks()
    container.override(
        plan_catalog=metric_catalog(),
        fact_notices=Notices(),
        webhook_publisher=webhooks,
        clock=lambda: BEFORE_MIDNIGHT,
    )
    create_tenant("india", [("users", "2025-01-01T00:00:00Z")], calendars=KOLKATA)
    body = {**query(0, BEFORE_MIDNIGHT.replace(minute=0)), "properties": {"user": "u1"}}
    assert ingest_one(body) == 202
    # When the scheduled evaluation runs
    container.alert_evaluator().evaluate()
    # Then the period-to-date statement is rated with its charge (10.00 + 5.00 = 15.00) and the
    # spend alert fires once, in the tenant's Kolkata November
    assert container.tenant_period_close().rate(
        container.tenants().get("india"), NOVEMBER, None
    ).total == Decimal("15.00")
    assert fired(webhooks) == [(NOVEMBER.key, "spend", "14")]
