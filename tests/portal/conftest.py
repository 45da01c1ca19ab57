"""Fixtures of the tenant usage page: two tenants with a month of usage, the handler, a fixed clock."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from billing.kernel.periods import parse_instant
from billing.metering.events import StoredEvent
from billing.runtime import container
from tests.conftest import api_event
from tests.metering.conftest import load_handler
from tests.rating.helpers import make_tenant

NOW = parse_instant("2025-11-20T15:30:00Z")  # the page's "now": November 2025 is the current month
MODELS = ("gpt-4o-mini", "gpt-4o", "")


def usage(
    tenant_id: str, start: str, days: int, per_day: int, *, seed: int = 0, ids: str | None = None
) -> list[StoredEvent]:
    """``per_day`` events a day (queries with tokens, and a storage event) with varied costs, with
    ids ``{ids}-{day}-{n}`` (``ids`` defaults to the tenant id). An event id names one event of its
    tenant, as the ledger guarantees: two calls for one tenant need two ``ids``."""
    base = parse_instant(start)
    events = []
    for d in range(days):
        for i in range(per_day + (d * 7 + seed) % 5):
            model = MODELS[(i + d + seed) % len(MODELS)]
            ts = base + timedelta(days=d, minutes=i * 37 % 1440, milliseconds=i)
            events.append(
                StoredEvent(
                    tenant_id=tenant_id,
                    event_id=f"{ids or tenant_id}-{d:02d}-{i:04d}",
                    timestamp=ts,
                    type="query" if model else "storage",
                    model=model,
                    queries=1 if model else 0,
                    input_tokens=100 * (i % 7) if model else 0,
                    output_tokens=30 * (i % 3) if model else 0,
                    bytes=0 if model else 1_000_000,
                    cost_usd=Decimal(f"0.{(i * 7919 + d * 104729 + seed) % 10**9:09d}") / 10,
                    price_version="2025-01-01T00:00:00Z",
                    accepted_at=ts,
                )
            )
    return events


@dataclass
class Portal:
    handler: Any
    context: Any

    def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = "",
        api_key_id: str | None = "platform-key",
        query: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        path_parameters: dict[str, str] | None = None,
        resource: str | None = None,
    ) -> dict[str, Any]:
        event = api_event(
            body,
            path=path,
            method=method,
            api_key_id=api_key_id,
            query=query,
            headers=headers,
            path_parameters=path_parameters,
        )
        if resource:
            event["resource"] = resource
        return self.handler(event, self.context)

    def link(self, tenant_id: str, body: Any = "", api_key_id: str | None = "platform-key") -> dict[str, Any]:
        return self.call(
            "POST",
            f"/v1/tenants/{tenant_id}/portal-link",
            body=body,
            api_key_id=api_key_id,
            path_parameters={"tenant_id": tenant_id},
            resource="/v1/tenants/{tenant_id}/portal-link",
        )

    def token(self, tenant_id: str, **body: Any) -> str:
        response = self.link(tenant_id, body or "")
        assert response["statusCode"] == 201, response
        url = json.loads(response["body"])["url"]
        return parse_qs(urlsplit(url).query)["token"][0]

    def page(self, token: str | None, month: str | None = None) -> dict[str, Any]:
        query = {k: v for k, v in {"token": token, "month": month}.items() if v is not None}
        return self.call("GET", "/v1/portal", api_key_id=None, query=query or None)

    def data(self, token: str, month: str | None = None) -> dict[str, Any]:
        return self.call(
            "GET",
            "/v1/portal/data",
            api_key_id=None,
            query={"month": month} if month else None,
            headers={"Authorization": f"Bearer {token}"},
        )


@pytest.fixture
def clock() -> Callable[[datetime], None]:
    moments = [NOW]
    container.override(clock=lambda: moments[-1])

    def set_now(at: datetime) -> None:
        moments.append(at)

    yield set_now
    container.override(clock=None)


@pytest.fixture
def portal(env, clock, lambda_context) -> Portal:
    """Given acme (starter since October) and globex (pro) with October and November usage."""
    make_tenant("acme", [("starter", "2025-10-01T00:00:00Z")])
    make_tenant("globex", [("pro", "2025-10-15T00:00:00Z")])
    store = container.usage_store()
    store.insert_events(usage("acme", "2025-10-01T00:00:00Z", 31, 20, ids="acme-oct"))
    store.insert_events(usage("acme", "2025-11-01T00:00:00Z", 20, 30))
    store.insert_events(usage("globex", "2025-11-01T00:00:00Z", 20, 9, seed=3))
    return Portal(load_handler("tenant_portal").handler, lambda_context)


# A product metered by catalog metrics: GPU jobs priced per GPU and region, active users, seats.
METERED_CATALOG = {
    "usage_types": [{"id": "gpu_job", "name": "GPU job", "unit": "job"}, {"id": "seat", "unit": "change"}],
    "metrics": [
        {"id": "gpu_seconds", "name": "GPU time", "unit": "GPU-seconds", "event_types": ["gpu_job"],
         "aggregation": "sum", "property": "seconds"},
        {"id": "active_users", "name": "Active users", "unit": "users", "event_types": ["gpu_job"],
         "aggregation": "unique_count", "property": "user"},
        {"id": "peak_seats", "name": "Peak seats", "unit": "seats", "event_types": ["seat"],
         "aggregation": "max", "property": "seats"},
    ],
    "plan": {
        "id": "gpu", "name": "GPU", "query_quota": None,
        "charges": [
            {"id": "gpu", "name": "GPU time", "metric": "gpu_seconds", "group_by": ["gpu", "region"],
             "charge_model": "per_unit", "unit_price": "0.004"},
            {"id": "users", "name": "Active users", "metric": "active_users", "charge_model": "per_unit",
             "unit_price": "1.00"},
            {"id": "seats", "name": "Peak seats", "metric": "peak_seats", "charge_model": "per_unit",
             "unit_price": "5.00"},
        ],
    },
}  # fmt: skip
LONG_GPU = "nvidia-h100-sxm5-80gb-hbm3-reserved-capacity-block"


def metered_events(tenant_id: str) -> list[StoredEvent]:
    """November 1-20: GPU jobs on three GPUs (one with a long name, some with no gpu property) in two
    regions, by 7 users; seat counts going up and down."""
    events = []
    base = parse_instant("2025-11-01T00:00:00Z")
    gpus = ["h100", "a100", LONG_GPU, None]
    for i in range(400):
        ts = base + timedelta(minutes=i * 69)  # the last on 20 November, 04:00 (before NOW)
        gpu = gpus[i % 4]
        properties: dict[str, Any] = {"region": "eu" if i % 3 else "us", "user": f"user-{i % 7}"}
        properties["seconds"] = Decimal(f"{i % 50}.{i % 10}25")
        if gpu is not None:
            properties["gpu"] = gpu
        events.append(
            StoredEvent(
                tenant_id,
                f"{tenant_id}-job-{i}",
                ts,
                "gpu_job",
                "",
                0,
                0,
                0,
                0,
                Decimal(0),
                "v1",
                ts,
                properties,
            )  # fmt: skip
        )
    for i, seats in enumerate([3, 9, 14, 6, 11]):
        ts = base + timedelta(days=3 * i, hours=5)
        events.append(
            StoredEvent(
                tenant_id,
                f"{tenant_id}-seat-{i}",
                ts,
                "seat",
                "",
                0,
                0,
                0,
                0,
                Decimal(0),
                "v1",
                ts,
                {"seats": seats},
            )  # fmt: skip
        )
    return events


@pytest.fixture
def metered(portal) -> str:
    """Given the catalog with the GPU product's metrics and plan, and gpuco on it since October with
    November's GPU jobs and seats."""
    import yaml

    from billing.catalog.plans import PlanCatalog

    document = yaml.safe_load(container.settings().plans_path.read_text())
    document["usage_types"] = METERED_CATALOG["usage_types"]
    document["metrics"] = METERED_CATALOG["metrics"]
    document["plans"].append(METERED_CATALOG["plan"])
    container.override(plan_catalog=PlanCatalog.model_validate(document))
    make_tenant("gpuco", [("gpu", "2025-10-01T00:00:00Z")], name="GPU Co")
    container.usage_store().insert_events(metered_events("gpuco"))
    return "gpuco"
