"""Invoicing bench: a month's run for N tenants against the Stripe double with per-call latency.

    python bench/invoicing_bench.py [--tenants 1000] [--rate 100] [--latency 0.03] [--workers 16]

Each tenant has a Stripe customer (made at signup) and a three-line statement. The run invoices
every statement through billing.invoicing (the Lambda's code: lookup, draft, items, check, finalize,
pay = 8 requests each) and prints the wall time next to the floor the rate cap sets
((requests - 1) / rate). The Stripe double runs in its own process so its CPU does not compete
with the code under test; DynamoDB is moto in-process (its CPU does, unlike the real service).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
ROOT = Path(__file__).resolve().parents[1]
MONTH = "2025-11"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=25.0, help="requests/s cap (25 test mode, 100 live)")
    parser.add_argument(
        "--endpoint-rate", type=float, default=25.0, help="requests/s cap per endpoint (Stripe: 25)"
    )
    parser.add_argument("--latency", type=float, default=0.03, help="seconds per Stripe call at the double")
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()

    double = subprocess.Popen(
        [sys.executable, "-m", "billing_local.stripe_double", "--latency", str(args.latency)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert double.stdout is not None
        api_base = double.stdout.readline().strip()
        run(args, api_base)
    finally:
        if double.stdin:
            double.stdin.close()
        double.wait(timeout=10)


def stats(api_base: str, *, reset: bool = False) -> dict:
    with urllib.request.urlopen(f"{api_base}/_double/stats{'?reset=1' if reset else ''}") as response:
        return json.loads(response.read())


def run(args: argparse.Namespace, api_base: str) -> None:
    from billing.adapters.stripe.gateway import StripeGateway
    from billing.invoicing import InvoicingService
    from billing.kernel.money import round_cents
    from billing.kernel.periods import Month
    from billing.runtime import container
    from billing.runtime.container import invoicing_service
    from billing.statements.statement import Statement, StatementLine
    from billing.tenants.tenant import PlanAssignment, Tenant
    from billing_local.aws import local_aws
    from billing_local.stripe_double import put_secret

    with local_aws(prefix="bench") as resources:
        os.environ.update(
            {
                "TENANTS_TABLE": resources["tenants_table"],
                "BILLING_TABLE": resources["billing_table"],
                "LEDGER_TABLE": resources["ledger_table"],
                "STRIPE_API_BASE": api_base,
                "STRIPE_MAX_REQUESTS_PER_SECOND": str(args.rate),
                "STRIPE_ENDPOINT_REQUESTS_PER_SECOND": str(args.endpoint_rate),
            }
        )
        container.reset()
        put_secret(container.settings().stripe_secret_name)

        # Given: tenants with customers (as signup leaves them) and their stored statements
        setup = StripeGateway.from_settings(
            container.settings().model_copy(update={"stripe_max_requests_per_second": 10_000.0})
        )
        m = Month.parse(MONTH)

        def prepare(n: int) -> None:
            tenant_id = f"tenant-{n:05d}"
            # A customer with a saved card that is its invoices' default (what the setup flow leaves).
            customer = setup.client.v1.customers.create(
                {
                    "name": tenant_id,
                    "metadata": {"tenant_id": tenant_id},
                    "payment_method": "pm_card_visa",
                    "invoice_settings": {"default_payment_method": "pm_card_visa"},
                }
            ).id
            container.tenants().create(
                Tenant(
                    id=tenant_id,
                    name=tenant_id,
                    stripe_customer_id=customer,
                    plans=[PlanAssignment(plan="starter", effective_at=m.start)],
                )
            )
            exact = [Decimal(29), Decimal(n % 997) / Decimal(7), Decimal(n) / Decimal(3000)]
            lines = [
                StatementLine(
                    line_id=f"l{i}",
                    kind="usage_cost",
                    description=f"line {i}",
                    quantity=Decimal(1),
                    amount_exact=e,
                    amount=round_cents(e),
                    period_start=m.start,
                    period_end=m.end,
                )
                for i, e in enumerate(exact)
            ]
            container.statements().put_if_absent(
                Statement(
                    statement_id=Statement.make_id(tenant_id, MONTH),
                    tenant_id=tenant_id,
                    month=MONTH,
                    period_start=m.start,
                    period_end=m.end,
                    invoice_date="2025-12-01",
                    lines=lines,
                    total=sum((line.amount for line in lines), Decimal(0)),
                )
            )

        started = time.perf_counter()
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(prepare, range(args.tenants)))
        print(
            f"setup: {args.tenants} tenants, customers and statements in {time.perf_counter() - started:.1f}s"
        )
        stats(api_base, reset=True)

        # When: the month is invoiced
        service: InvoicingService = invoicing_service()
        started = time.perf_counter()
        outcomes = service.push(MONTH, workers=args.workers)
        elapsed = time.perf_counter() - started

        # Then: figures
        seen = stats(api_base)
        requests = seen["requests"]
        floor = (requests - 1) / args.rate
        states: dict[str, int] = {}
        for o in outcomes:
            states[o.state] = states.get(o.state, 0) + 1
        equal = sum(1 for o in outcomes if o.stripe_total == o.total_cents)
        print(f"tenants          {len(outcomes)}  states {states}  stripe total == statement total: {equal}")
        print(
            f"stripe requests  {requests} ({requests / len(outcomes):.1f} per statement), "
            f"latency {args.latency * 1000:.0f} ms/call, workers {args.workers}"
        )
        print(
            f"rate cap         {args.rate:g}/s; busiest window at Stripe: 1 s {seen['max_in_1s']} requests, "
            f"5 s {seen['max_in_5s']} ({seen['max_in_5s'] / 5:.1f}/s)"
        )
        print(
            f"time             {elapsed:.1f}s  floor {floor:.1f}s  ratio {elapsed / floor:.3f}x "
            f"(target <= 1.2x)  throughput {requests / elapsed:.1f} req/s"
        )


if __name__ == "__main__":
    main()
