"""``billing demo``: the main job end to end on embedded defaults (chdb + in-process AWS).

Stage 1 (metering) lives here; later stages (rating, invoicing, dunning) are modules of their own
that run in the same environment when present.
"""

from __future__ import annotations

import importlib
import json
from decimal import Decimal

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from billing.kernel.periods import Month
from billing.metering.events import UsageEvent
from billing.runtime import container
from billing.tenants.tenant import PlanAssignment, Tenant
from billing_local.faults import OutageStore
from billing_local.runner import LocalContext, api_gateway_event, drain_queue, load_function, response_headers
from billing_local.sandbox import sandbox
from billing_local.usage_generator import month_of_usage

MONTH = Month(2025, 11)
BATCH = 500
TENANTS = [  # (id, plan, events in the month)
    ("small-co", "starter", 300),
    ("medium-co", "pro", 2_500),
    ("large-co", "enterprise", 6_000),
]
STAGES = [
    "billing_cli.demo.rating",
    "billing_cli.demo.invoicing",
    "billing_cli.demo.dunning",
    "billing_cli.demo.tracker",
]


def run(console: Console | None = None) -> None:
    console = console or Console(width=max(Console().width, 140))
    with sandbox():
        metering(console)
        for stage in STAGES:
            try:
                module = importlib.import_module(stage)
            except ModuleNotFoundError as exc:
                if exc.name != stage:
                    raise
                continue
            module.run(console)
    next_steps(console)


def next_steps(console: Console) -> None:
    """Where the demo leaves the reader: its files, and the first steps on a server of their own."""
    from billing_cli.demo.rating import OUT_DIR

    csv = OUT_DIR.resolve() / f"invoices-{MONTH}.csv"
    console.print(
        Panel(
            f"invoice CSV of {MONTH}: {csv}\n"
            f"statements (JSON) and line items: {OUT_DIR.resolve()}/\n\n"
            "next, your own tenant (the README's ten-minute quickstart, step by step):\n"
            "  . .venv/bin/activate\n"
            "  billing serve --api-key dev-key          # the whole API locally; leave it running\n"
            "then, in another shell, sign up a tenant:\n"
            "  export BILLING=http://127.0.0.1:8787 KEY=dev-key\n"
            '  curl -fsS -X POST "$BILLING/v1/tenants" -H "x-api-key: $KEY" -H "content-type: application/json" \\\n'
            '    -d \'{"id": "acme", "name": "Acme", "email": "billing@acme.example", "plan": "pro"}\'\n'
            "and get the link to its usage page:\n"
            '  curl -fsS -X POST "$BILLING/v1/tenants/acme/portal-link" -H "x-api-key: $KEY"\n'
            "(or `billing portal serve`: the usage page of a demo tenant, its link printed at start)",
            title="next",
            expand=False,
        ),
        soft_wrap=True,
    )


def metering(console: Console) -> None:
    console.rule(f"[bold]1/5 Metering: a month ({MONTH}) of usage into embedded ClickHouse")
    repo = container.tenants()
    for tenant_id, plan, _ in TENANTS + [("capped-co", "free", 0)]:
        repo.create(
            Tenant(
                id=tenant_id,
                name=tenant_id.replace("-", " ").title(),
                email=f"billing@{tenant_id}.example",
                plans=[PlanAssignment(plan=plan, effective_at="2025-10-01T00:00:00Z")],
                api_key_ids=[f"{tenant_id}-key"],
            )
        )
        console.print(f"tenant [bold]{tenant_id}[/] on plan [cyan]{plan}[/]")
    from billing.adapters.clickhouse.tenant_quotas import export_tenant_quotas

    exported = export_tenant_quotas(
        container.tenants(), container.usage_store(), container.plan_catalog(), at=MONTH.start
    )
    console.print(f"{exported} tenant quotas exported to ClickHouse for the dashboards' quota panels")
    service = container.ingest_service()
    real_store = service.store

    for tenant_id, _, count in TENANTS:
        events = [UsageEvent.model_validate(e) for e in month_of_usage(tenant_id, MONTH, count)]
        if tenant_id == "large-co":
            # ClickHouse goes down for batches 3 to 5 of this tenant's stream (one applies the insert
            # and then times out): those batches are acknowledged as queued and replayed later.
            service.store = OutageStore(
                real_store, lambda n: {3: "fail", 4: "lost_ack", 5: "fail"}.get(n, "ok")
            )
        accepted = duplicates = queued = 0
        for start in range(0, len(events), BATCH):
            result = service.ingest(events[start : start + BATCH])
            accepted += len(result.accepted)
            duplicates += len(result.duplicates)
            queued += len(result.accepted) if result.queued else 0
        service.store = real_store
        note = f", [yellow]{queued:,} queued during a ClickHouse outage[/]" if queued else ""
        console.print(f"{tenant_id}: {accepted:,} events accepted{note}")
        if tenant_id == "medium-co":
            retry = service.ingest(events[:BATCH])  # a client retries a batch it already sent
            console.print(
                f"medium-co retries a batch of {BATCH}: accepted {len(retry.accepted)}, "
                f"[green]{len(retry.duplicates)} recognised as duplicates[/] (counted once)"
            )

    processed, failed = drain_queue(container.settings().fallback_queue_url, "fallback_replay")
    console.print(f"fallback replay Lambda: {processed} queued block(s) stored, {failed} failed")

    # The free plan allows 100 queries a month: a batch of 130 admits the first 100 by timestamp.
    capped = [UsageEvent.model_validate(e) for e in month_of_usage("capped-co", MONTH, 130, query_share=1.0)]
    result = service.ingest(capped)
    console.print(
        f"capped-co (free plan, quota 100) sends 130 queries: {len(result.accepted)} admitted, "
        f"[red]{len(result.rejected_for_quota)} rejected for quota[/]"
    )
    one_more = {
        "events": [
            {
                "event_id": "capped-extra",
                "tenant_id": "capped-co",
                "timestamp": "2025-11-30T12:00:00Z",
                "type": "query",
                "model": "gpt-4o-mini",
                "input_tokens": 10,
            }
        ]
    }
    response = load_function("ingest").handler(
        api_gateway_event(one_more, api_key_id="capped-co-key"), LocalContext()
    )
    body = json.loads(response["body"])
    console.print(
        f"POST /v1/events for one more query -> [red]{response['statusCode']}[/] "
        f"Retry-After={response_headers(response).get('Retry-After')} "
        f"limit={body.get('limit')} used={body.get('used')} resets_at={body.get('resets_at')}"
    )
    usage_summary(console, [t for t, _, _ in TENANTS] + ["capped-co"])


def usage_summary(console: Console, tenant_ids: list[str]) -> None:
    store = container.usage_store()
    table = Table(title=f"Usage and event-time cost, {MONTH} (each event counted once)")
    for column in ("tenant", "events", "queries", "tokens", "bytes", "cost (USD)"):
        table.add_column(column, justify="left" if column == "tenant" else "right")
    for tenant_id in tenant_ids:
        u = store.month_usage(tenant_id, MONTH)
        table.add_row(
            tenant_id,
            f"{u['events']:,}",
            f"{u['queries']:,}",
            f"{u['input_tokens'] + u['output_tokens']:,}",
            f"{u['bytes']:,}",
            f"{u['cost_usd']:.6f}",
        )
    console.print(table)
    raw, final = store.query("SELECT count(), (SELECT count() FROM usage_events FINAL) FROM usage_events")[0]
    rolled = store.query("SELECT sum(events), sum(cost_usd) FROM usage_daily")[0]
    exact = store.query("SELECT sum(cost_usd) FROM usage_events FINAL")[0][0]
    console.print(
        Panel(
            f"rows in usage_events: {raw:,} (after dedup: {final:,}); daily rollup events: {rolled[0]:,}\n"
            f"cost in rollups {Decimal(rolled[1]):.9f} = cost of stored events {Decimal(exact):.9f}",
            title="exactly once",
            expand=False,
        )
    )
