"""Metering fixtures: tenants with a plan or a plain quota, and calling the ingest handler."""

from __future__ import annotations

import json
from typing import Any

import pytest

from billing.tenants.tenant import Tenant
from billing_local.runner import load_module, response_headers
from tests.conftest import api_event
from tests.support import create_tenant


def load_handler(function_dir: str) -> Any:
    return load_module(function_dir)


@pytest.fixture(scope="session")
def ingest_app() -> Any:
    return load_handler("ingest")


@pytest.fixture(scope="session")
def replay_app() -> Any:
    return load_handler("fallback_replay")


def make_tenant(
    tenant_id: str = "acme-corp",
    *,
    quota: int | None = None,
    plan: str | None = None,
    plan_from: str = "2025-01-01T00:00:00Z",
    **fields: Any,
) -> Tenant:
    return create_tenant(tenant_id, [(plan, plan_from)] if plan else [], query_quota=quota, **fields)


def usage(event_id: str, tenant_id: str = "acme-corp", ts: str = "2025-11-03T12:00:00Z", **kw: Any) -> dict:
    return {
        "event_id": event_id,
        "tenant_id": tenant_id,
        "timestamp": ts,
        "type": "query",
        "model": "gpt-4o-mini",
        "input_tokens": 100,
        "output_tokens": 20,
        **kw,
    }


@pytest.fixture
def post(ingest_app, lambda_context):
    """POST a body to /v1/events through the real handler; returns (status, json body, headers)."""

    def _post(body: Any, **kw: Any) -> tuple[int, dict, dict]:
        response = ingest_app.handler(api_event(body, **kw), lambda_context)
        return response["statusCode"], json.loads(response["body"]), response_headers(response)

    return _post


def stored(env, tenant_id: str = "acme-corp") -> dict:
    return env.store.month_usage(
        tenant_id, __import__("billing.kernel.periods", fromlist=["Month"]).Month(2025, 11)
    )
