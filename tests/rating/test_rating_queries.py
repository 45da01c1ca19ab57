"""ClickHouse reads for rating against a brute-force count of the same rows."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from billing.adapters.clickhouse.rating_queries import ClickHouseRatingQueries
from billing.kernel.periods import Month
from billing.metering.events import StoredEvent
from billing.rating import Usage, pricing_segments
from billing.runtime import container
from billing.tenants.tenant import PlanAssignment, Tenant

NOV = Month(2025, 11)


def brute_force(tenant: Tenant, events: list[StoredEvent]) -> tuple[Usage, ...]:
    segments = pricing_segments(tenant, NOV)
    out = [Usage() for _ in segments]
    for e in {(x.tenant_id, x.event_id): x for x in events}.values():
        for i, seg in enumerate(segments):
            if seg.start <= e.timestamp < seg.end:
                out[i] += Usage(1, e.queries, e.input_tokens + e.output_tokens, e.cost_usd)
    return tuple(out)


def random_events(rng: random.Random, tenant_id: str, n: int, prefix: str) -> list[StoredEvent]:
    events = []
    for i in range(n):
        at = NOV.start + timedelta(milliseconds=rng.randrange(NOV.seconds * 1000))
        kind = rng.choice(["query", "query", "embedding"])
        events.append(
            StoredEvent(
                tenant_id=tenant_id,
                event_id=f"{prefix}{i}",
                timestamp=at,
                type=kind,
                model="m",
                queries=int(kind == "query"),
                input_tokens=rng.randrange(1000),
                output_tokens=7,
                bytes=0,
                cost_usd=Decimal(rng.randrange(10**6)) / 10**9,
                price_version="v",
                accepted_at=at,
            )
        )
    return events


def test_segment_usage_matches_a_brute_force_count_at_unaligned_boundaries(env):
    # Given tenants whose plans change, trials end and cancellations fall at arbitrary milliseconds
    rng = random.Random(20251116)
    tenants, events = [], {}
    for k in range(6):
        cuts = sorted(NOV.start + timedelta(milliseconds=rng.randrange(NOV.seconds * 1000)) for _ in range(4))
        history = [
            PlanAssignment(plan="starter", effective_at=NOV.start - timedelta(days=1)),
            PlanAssignment(plan="pro", effective_at=cuts[0]),
            PlanAssignment(plan="starter", effective_at=cuts[2]),
        ]
        tenant = Tenant(
            id=f"t{k}", plans=history, trial_ends_at=cuts[1], canceled_at=cuts[3] if k % 2 else None
        )
        tenants.append(tenant)
        events[tenant.id] = random_events(rng, tenant.id, 400, "e")
        # events exactly at each boundary and one millisecond before it
        for j, cut in enumerate(cuts):
            for delta, tag in ((timedelta(0), "at"), (timedelta(milliseconds=-1), "before")):
                e = random_events(rng, tenant.id, 1, f"{tag}{j}-")[0]
                events[tenant.id].append(
                    e._replace(timestamp=cut.replace(microsecond=cut.microsecond // 1000 * 1000) + delta)
                )
        env.store.insert_events(events[tenant.id])
    # And one duplicate row written in a separate block (the rollup counts it twice, FINAL once)
    env.store.insert_events([events["t0"][5]])
    cutoff = datetime.now(UTC)
    time.sleep(0.01)
    # And rows stored after the cutoff (late data) for t1
    late = random_events(rng, "t1", 30, "late")
    env.store.insert_events(late)
    queries = ClickHouseRatingQueries(container.usage_store())
    exact_reads: list[str] = []
    original = queries.segment_usage
    queries.segment_usage = lambda tenant_id, *a: exact_reads.append(tenant_id) or original(tenant_id, *a)  # type: ignore[method-assign]
    # When the month is read with the cutoff, and without
    segments = {t.id: pricing_segments(t, NOV) for t in tenants}
    with_cutoff = queries.month_usage(segments, NOV, cutoff)
    without = queries.month_usage(segments, NOV, None)
    # Then only the tenant with the duplicate row was re-read exactly (the others came from the rollup)
    assert set(exact_reads) == {"t0"}
    # And every segment equals the brute-force count over the rows stored by then
    for tenant in tenants:
        assert with_cutoff[tenant.id].segments == brute_force(tenant, events[tenant.id]), tenant.id
        assert without[tenant.id].segments == brute_force(
            tenant, events[tenant.id] + (late if tenant.id == "t1" else [])
        )
