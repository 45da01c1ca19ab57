"""quota_schedule answers as quota_limit does, for any plan history and instant."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from billing.catalog.plans import PlanCatalog
from billing.metering.quotas import quota_limit, quota_schedule
from billing.tenants.tenant import PlanAssignment, Tenant

CATALOG = PlanCatalog.model_validate(
    {
        "plans": [
            {
                "id": p,
                "name": p,
                "base_fee": "0",
                "query_quota": q,
                "query_tiers": [{"up_to": None, "unit_price": "0"}],
            }
            for p, q in [("a", 10), ("b", 20), ("c", None)]
        ]
    }
)
START = datetime(2025, 11, 1, tzinfo=UTC)
_hours = st.integers(0, 24 * 30)


@settings(deadline=None)  # a shared machine: timings vary, the property does not
@given(
    st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), _hours), max_size=6),
    st.one_of(st.none(), st.integers(0, 100)),
    st.lists(_hours, min_size=1, max_size=20),
)
def test_the_schedule_gives_quota_limits_answer(history, legacy_quota, instants):
    # Given a plan history in any order (assignments at the same instant included) and a legacy quota
    tenant = Tenant(
        id="t",
        query_quota=legacy_quota,
        plans=[PlanAssignment(plan=p, effective_at=START + timedelta(hours=h)) for p, h in history],
    )
    limit_at = quota_schedule(tenant, CATALOG)
    # When the limit is asked at any instant (on a change included), Then it is quota_limit's
    for hour in instants:
        at = START + timedelta(hours=hour)
        assert limit_at(at) == quota_limit(tenant, CATALOG, at)
