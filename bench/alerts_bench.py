"""Alert freshness: how soon after the event that crosses a threshold its alert fires.

- Alerts on queries fire at ingest, in the request that moves ingest's counter across the threshold
  (functions/ingest/app.py): measured from sending that request to the notice being published,
  through the real handler (AWS in moto in-process, embedded ClickHouse).
- Alerts on other metrics and on spend fire from the scheduled evaluation (AlertEvaluationFunction,
  rate(5 minutes)): their bound is the schedule's period plus one run's duration, measured here for
  ``--tenants`` tenants that each cross every threshold (ClickHouse metric, month-to-date statement).

    .venv/bin/python bench/alerts_bench.py [--tenants 100] [--events 20]

Prints figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")

SCHEDULE_S = 300  # template.yaml: AlertEvaluationFunction rate(5 minutes)


class Timed:
    """Notices and webhooks, each kept with the instant it was published."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}

    def publish(self, notices) -> None:
        for n in notices:
            self.at.setdefault(n.id, time.perf_counter())


class Quiet:
    def publish(self, *args, **kwargs) -> None:
        pass


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tenants", type=int, default=100)
    parser.add_argument(
        "--events", type=int, default=20, help="events per tenant (the limit on queries is this)"
    )
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="No application metrics to publish")

    from billing.catalog.plans import PlanCatalog
    from billing.metering.events import UsageEvent
    from billing.runtime import container
    from billing.tenants.tenant import PlanAssignment, Tenant
    from billing_local.aws import local_aws, resource_environment
    from billing_local.runner import LocalContext, api_gateway_event, load_function

    now = datetime.now(UTC)
    catalog = PlanCatalog.model_validate(
        {
            "plans": [
                {
                    "id": "metered",
                    "name": "Metered",
                    "base_fee": "10.00",
                    "query_tiers": [{"up_to": None, "unit_price": "0.50"}],
                    "limits": [
                        {"metric": "queries", "value": args.events, "enforcement": "hard"},
                        {"metric": "tokens", "value": 100 * args.events // 2, "enforcement": "soft"},
                    ],
                    "alerts": [
                        {"id": "queries", "metric": "queries", "thresholds": ["50%", "100%"]},
                        {"id": "spend", "metric": "spend", "thresholds": ["12.00"]},
                    ],
                }
            ]
        }
    )
    with tempfile.TemporaryDirectory(prefix="alerts-bench-") as tmp, local_aws(prefix="ab") as resources:
        os.environ.update(
            {**resource_environment(resources), "CLICKHOUSE_URL": f"chdb://{Path(tmp) / 'chdb'}"}
        )
        os.environ["PLATFORM_API_KEY_IDS"] = "platform-key"
        container.reset()
        container.usage_store().migrate()
        notices = Timed()
        container.override(plan_catalog=catalog, fact_notices=notices, webhook_publisher=Quiet())
        ids = [f"tenant-{i:03d}" for i in range(args.tenants)]
        for tenant_id in ids:
            container.tenants().create(
                Tenant(
                    id=tenant_id,
                    name=tenant_id,
                    email=f"{tenant_id}@example.com",
                    plans=[PlanAssignment(plan="metered", effective_at="2025-01-01T00:00:00Z")],
                )
            )
        handler = load_function("ingest").handler
        context = LocalContext(function_name="ingest")
        half = args.events // 2

        def event(tenant_id: str, i: int) -> dict:
            stamp = now.replace(microsecond=0).isoformat().replace("+00:00", "Z")
            return {
                "event_id": f"{tenant_id}-{i}",
                "tenant_id": tenant_id,
                "timestamp": stamp,
                "type": "query",
                "model": "gpt-4o-mini",
                "input_tokens": 100,
                "output_tokens": 0,
            }

        # 1. at ingest: the request whose query crosses 50% of the limit
        latencies, plain = [], []
        service = container.ingest_service()
        for tenant_id in ids:
            service.ingest([UsageEvent.model_validate(event(tenant_id, i)) for i in range(half - 1)])
            started = time.perf_counter()
            response = handler(api_gateway_event({"events": [event(tenant_id, half - 1)]}), context)
            answered = time.perf_counter()
            assert response["statusCode"] == 202, response
            fired = [at for key, at in notices.at.items() if key.startswith(f"alert.triggered:{tenant_id}:")]
            assert fired, f"no alert at ingest for {tenant_id}"
            latencies.append((min(fired) - started) * 1000)
            plain.append((answered - started) * 1000)
        # 2. the scheduled evaluation: every tenant over the token limit and the spend amount
        for tenant_id in ids:
            service.ingest([UsageEvent.model_validate(event(tenant_id, i)) for i in range(half, args.events)])
        started = time.perf_counter()
        changes = container.alert_evaluator().evaluate()
        run_s = time.perf_counter() - started
        again = time.perf_counter()
        repeat = container.alert_evaluator().evaluate()
        idle_s = time.perf_counter() - again

    def pct(values: list[float], p: float) -> float:
        return sorted(values)[min(len(values) - 1, int(p * len(values)))]

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"cpus: {os.cpu_count()}, load average: {load}")
    print(f"tenants: {args.tenants}, events per tenant: {args.events}")
    print(
        "alert on queries, fired at ingest: from sending the crossing request to the notice "
        f"p50 {statistics.median(latencies):.1f} ms, p99 {pct(latencies, 0.99):.1f} ms "
        f"(the whole request: p50 {statistics.median(plain):.1f} ms)"
    )
    print(
        f"scheduled evaluation of {args.tenants} tenants: {run_s:.2f} s "
        f"({run_s / args.tenants * 1000:.1f} ms a tenant), {len(changes)} thresholds fired; "
        f"a run with nothing new: {idle_s:.2f} s, {len(repeat)} fired"
    )
    print(
        f"freshness bound, alerts on other metrics and spend: schedule {SCHEDULE_S} s + one run "
        f"{run_s:.1f} s = {SCHEDULE_S + run_s:.0f} s after the event is stored"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
