"""Demo stage: the app-side usage tracker surviving an outage of the API.

The template's ingest and quota routes are served over HTTP in this process (the real handlers,
``billing_local.http_api``). An app's tracker sends a tenant's queries; the API stops answering
for a moment (requests hang, as under SIGSTOP) and comes back; ``track()`` keeps returning
meanwhile, the spool holds the events, and afterwards the server has counted every one once.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from datetime import UTC, datetime
from typing import Any

from rich.console import Console

TENANT = "tracked-co"
KEY, KEY_ID = "demo-tracker-key", "demo-platform-key"


def run(console: Console) -> dict[str, Any]:
    from billing.runtime import container
    from billing.tenants.tenant import PlanAssignment, Tenant
    from billing_local.http_api import LocalApi, serving, template_routes
    from usage_tracker import QuotaExceeded, Tracker

    console.rule("[bold]5/5 Sending usage from the app: the tracker through an API outage")
    import logging

    logging.getLogger("usage_tracker").setLevel(logging.CRITICAL)  # the stage narrates the retries itself
    os.environ["PLATFORM_API_KEY_IDS"] = ",".join(
        [*filter(None, os.environ.get("PLATFORM_API_KEY_IDS", "").strip("[]").split(",")), KEY_ID]
    )
    container.reset()
    container.tenants().create(
        Tenant(
            id=TENANT,
            name="Tracked Co",
            email=f"billing@{TENANT}.example",
            plans=[PlanAssignment(plan="free", effective_at=datetime.now(UTC))],
        )
    )
    up = threading.Event()
    up.set()

    class Api(LocalApi):
        def handle(self, *args: Any) -> tuple[int, dict[str, str], bytes]:
            up.wait()  # the outage: requests hang until the API is back
            return super().handle(*args)

    api = Api(template_routes(["ingest", "tenant_status"]), {KEY: KEY_ID})
    with tempfile.TemporaryDirectory(prefix="demo-spool-") as spool, serving(api) as url:
        tracker = Tracker(url, KEY, spool, flush_interval=0.1, timeout=0.5, backoff_base=0.1, backoff_max=0.5)
        tracked = 0
        for n in range(30):
            with tracker.query(TENANT, model="gpt-4o-mini") as q:
                q.record(input_tokens=100 + n, output_tokens=20)
            tracked += 1
        tracker.flush(30)
        console.print(f"API up: {tracked} gated queries tracked, sent {tracker.stats().sent}")
        up.clear()
        started = time.perf_counter()
        for n in range(40):
            tracker.track(TENANT, "query", "gpt-4o-mini", input_tokens=50 + n, output_tokens=10)
            tracked += 1
        cost = (time.perf_counter() - started) * 1e6 / 40
        time.sleep(1.5)
        stats = tracker.stats()
        console.print(
            f"API [red]not answering[/]: 40 more tracked (about {cost:,.0f} us a call), {stats.queued} waiting in the "
            f"spool, {stats.retried} timed-out sends retried, nothing raised into the app"
        )
        up.set()
        assert tracker.flush(60), "the tracker did not deliver its backlog"
        quota = tracker.quota(TENANT)
        console.print(
            f"API [green]back[/]: backlog delivered (timed-out copies answered as duplicates); the server counts "
            f"[bold]{quota.used}[/] queries for {TENANT} (tracked {tracked}), {quota.remaining} of {quota.limit} left"
        )
        for _ in range(quota.remaining or 0):
            tracker.track(TENANT, "query", "gpt-4o-mini", input_tokens=1, output_tokens=1)
        tracker.flush(60)
        refused = False
        try:
            with tracker.query(TENANT, model="gpt-4o-mini"):
                pass
        except QuotaExceeded as exc:
            refused = True
            # Not the exception's text: it names the reset instant of the wall-clock month (the live
            # tracker stamps events now), which would contradict the demo's 2025-11/12 dates.
            console.print(
                f"quota used up: the gate refuses the next query [bold]before[/] the work "
                f"({TENANT} has used its {exc.quota.limit} queries this month; the quota resets on the 1st)"
            )
        tracker.close(timeout=5)
        assert quota.used == 70 and refused
    return {"tracked": tracked, "counted": quota.used}
