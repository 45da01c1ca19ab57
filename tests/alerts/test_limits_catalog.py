"""A plan's limits and alerts (billing.catalog.limits): written in YAML, validated when the catalog
loads with errors naming the plan and what is wrong; query_quota is the hard limit on queries and
ingest enforces either spelling alike."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import ValidationError

from billing.catalog.limits import alert_rules, limit_on
from billing.catalog.plans import Plan, PlanCatalog


def catalog(*plans: dict, metrics: list[dict] | None = None) -> PlanCatalog:
    return PlanCatalog.model_validate({"plans": list(plans), "metrics": metrics or []})


def plan(**keys) -> dict:
    return {"id": "p", "name": "P", **keys}


def refusal(*plans: dict, metrics: list[dict] | None = None) -> str:
    with pytest.raises(ValidationError) as caught:
        catalog(*plans, metrics=metrics)
    return str(caught.value)


def test_query_quota_and_a_hard_limit_on_queries_are_the_same_limit():
    # Given one plan with query_quota and one with the same hard limit under limits
    c = catalog(
        plan(id="a", query_quota=100),
        plan(id="b", limits=[{"metric": "queries", "value": 100, "enforcement": "hard"}]),
    )
    # Then ingest's limit is 100 for both, and each has a limit of 100 on queries
    for plan_id in ("a", "b"):
        assert c.get(plan_id).hard_query_limit == 100
        assert limit_on(c.get(plan_id).query_quota, c.get(plan_id).limits, "queries") == Decimal(100)


def test_a_plan_without_the_new_keys_digests_as_before():
    before = Plan.model_validate(plan(query_quota=5)).digest_document()
    assert "limits" not in before and "alerts" not in before


def test_a_soft_limit_alerts_at_100_percent_unless_an_alert_watches_it():
    c = catalog(
        plan(
            limits=[
                {"metric": "tokens", "value": "1000", "enforcement": "soft"},
                {"metric": "bytes", "value": 10, "enforcement": "soft"},
            ],
            alerts=[{"id": "b", "metric": "bytes", "thresholds": ["50%", "9"]}],
        )
    )
    rules = {r.id: [t.text for t in r.thresholds] for r in alert_rules(c.get("p").limits, c.get("p").alerts)}
    assert rules == {"b": ["50%", "9"], "tokens-limit": ["100%"]}


@pytest.mark.parametrize(
    ("keys", "metrics", "says"),
    [
        ({"limits": [{"metric": "nope", "value": 5, "enforcement": "soft"}]}, None, "unknown metric"),
        ({"limits": [{"metric": "tokens", "value": 0.5, "enforcement": "soft"}]}, None, "never a float"),
        (
            {"limits": [{"metric": "tokens", "value": 1, "enforcement": "soft"}] * 2},
            None,
            "the metric has two limits",
        ),
        (
            {"query_quota": 5, "limits": [{"metric": "queries", "value": 5, "enforcement": "hard"}]},
            None,
            "not both",
        ),
        ({"alerts": [{"id": "a", "metric": "tokens", "thresholds": ["80%"]}]}, None, "no limit on tokens"),
        ({"alerts": [{"id": "a", "metric": "spend", "thresholds": ["80%"]}]}, None, "spend has no limit"),
        ({"alerts": [{"id": "a", "metric": "spend", "thresholds": ["10", "10.0"]}]}, None, "twice"),
        ({"alerts": [{"id": "a", "metric": "spend", "thresholds": ["-1"]}]}, None, "greater than 0"),
        (
            {"limits": [{"metric": "peak", "value": 1, "enforcement": "soft"}]},
            [
                {
                    "id": "peak",
                    "name": "Peak",
                    "unit": "x",
                    "event_types": ["query"],
                    "aggregation": "max",
                    "property": "n",
                }
            ],
            "count or sum",
        ),
    ],
)
def test_a_wrong_limit_or_alert_is_refused_when_the_catalog_loads(keys, metrics, says):
    message = refusal(plan(**keys), metrics=metrics)
    assert says in message


def test_the_shipped_catalog_loads_and_keeps_its_quotas():
    from billing.runtime import container

    c = container.plan_catalog()
    assert c.get("free").hard_query_limit == 100 and c.get("starter").hard_query_limit == 10000
