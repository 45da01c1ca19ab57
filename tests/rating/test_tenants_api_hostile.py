"""the tenants API and tenant status: instants out of range, strict types, deep JSON,
no requestContext, one answer for unknown and foreign tenants, plan changes after a cancellation."""

from __future__ import annotations

import json
from typing import Any

import pytest

from billing.runtime import container
from tests.conftest import api_event
from tests.metering.conftest import load_handler

SIGNUP = {
    "id": "acme",
    "name": "Acme",
    "email": "b@acme.example",
    "plan": "starter",
    "effective_at": "2025-11-01T00:00:00Z",
}


@pytest.fixture(scope="module")
def apps() -> dict[str, Any]:
    return {"tenants": load_handler("tenants_api"), "status": load_handler("tenant_status")}


@pytest.fixture
def call(apps, lambda_context):
    def _call(
        method: str,
        path: str,
        body: Any = None,
        *,
        api_key_id: str | None = "platform-key",
        app: str = "tenants",
        **kw,
    ):
        params = kw.pop("path_parameters", None)
        event = api_event(
            body if body is not None else "",
            path=path,
            method=method,
            api_key_id=api_key_id,
            path_parameters=params,
            **kw,
        )
        response = apps[app].handler(event, lambda_context)
        return response["statusCode"], json.loads(response["body"])

    return _call


@pytest.mark.parametrize(
    "field, value",
    [
        ("effective_at", "9999-12-31T23:59:59-01:00"),
        ("effective_at", "0001-01-01T00:00:00+01:00"),
        ("trial_ends_at", "9999-12-31T23:59:59Z"),
        ("effective_at", "20251103T120000Z"),
        ("trial", "yes"),
        ("trial_days", True),
        ("trial_days", "5"),
        ("id", 7),
        ("api_key_ids", "k"),
    ],
)
def test_signup_refuses_out_of_range_instants_and_loose_types_naming_the_field(env, call, field, value):
    status, body = call("POST", "/v1/tenants", {**SIGNUP, field: value})
    assert status == 400 and body["details"][0]["field"].split(".")[0] == field, body
    assert container.tenants().get("acme") is None


def test_a_trial_that_would_end_past_the_range_is_a_400(env, call):
    status, body = call(
        "POST", "/v1/tenants", {**SIGNUP, "effective_at": "2099-12-31T00:00:00Z", "trial_days": 30}
    )
    assert status == 400 and body["details"][0]["field"] == "trial_days"


@pytest.mark.parametrize("month", ["0000-01", "9999-12", "٢٠٢٥-11", "2025-1", " 2025-11"])
def test_statement_months_outside_the_range_or_not_ascii_are_a_400(env, call, month):
    assert call("POST", "/v1/tenants", SIGNUP)[0] == 201
    status, body = call(
        "GET", f"/v1/tenants/acme/statements/{month}", path_parameters={"tenant_id": "acme", "month": month}
    )
    assert status == 400 and body["details"][0]["field"] == "month"


def test_deep_json_and_non_utf8_bodies_are_a_400(env, call):
    assert call("POST", "/v1/tenants", "[" * 1000 + "]" * 1000)[0] == 400
    assert call("POST", "/v1/tenants", b'{"id": "\xe9"}', base64=True)[0] == 400


def test_requests_without_request_context_are_a_401(env, apps, lambda_context):
    for app, path, method in (
        ("tenants", "/v1/tenants", "POST"),
        ("status", "/v1/tenants/acme/status", "GET"),
    ):
        event = api_event(SIGNUP, path=path, method=method, path_parameters={"tenant_id": "acme"})
        del event["requestContext"]
        assert apps[app].handler(event, lambda_context)["statusCode"] == 401


def test_a_tenant_key_gets_the_same_answer_for_unknown_and_foreign_tenants(env, call):
    assert call("POST", "/v1/tenants", {**SIGNUP, "api_key_ids": ["acme-key"]})[0] == 201
    assert call("POST", "/v1/tenants", {**SIGNUP, "id": "other"})[0] == 201
    for app, suffix in (("tenants", "statements/2025-11"), ("status", "status")):
        answers = []
        for tenant in ("other", "ghost"):
            params = {"tenant_id": tenant, "month": "2025-11"}
            answers.append(
                call(
                    "GET",
                    f"/v1/tenants/{tenant}/{suffix}",
                    api_key_id="acme-key",
                    app=app,
                    path_parameters=params,
                )
            )
        assert answers[0][0] == answers[1][0] == 403, answers
        assert answers[0][1]["error"] == answers[1][1]["error"]
    # While the tenant's own key reads its own status, with the mirrored payment status
    status, body = call(
        "GET",
        "/v1/tenants/acme/status",
        api_key_id="acme-key",
        app="status",
        path_parameters={"tenant_id": "acme"},
    )
    assert status == 200 and body["payment_status"] == "active"
    # And a platform key learns an unknown tenant is unknown
    assert (
        call("GET", "/v1/tenants/ghost/status", app="status", path_parameters={"tenant_id": "ghost"})[0]
        == 404
    )


def test_a_plan_change_dated_before_the_cancellation_is_a_409_once_the_final_statement_is_issued(env, call):
    # Given a tenant cancelled, its final statement issued and queued
    assert call("POST", "/v1/tenants", SIGNUP)[0] == 201
    status, body = call("POST", "/v1/tenants/acme/cancel", {}, path_parameters={"tenant_id": "acme"})
    assert status == 200
    canceled_at = body["tenant"]["canceled_at"]
    # When a plan change dated before the cancellation arrives
    status, body = call(
        "POST",
        "/v1/tenants/acme/plan",
        {"plan": "pro", "effective_at": "2025-11-15T00:00:00Z"},
        path_parameters={"tenant_id": "acme"},
    )
    # Then 409: the plan history and the stored statement can never disagree
    assert status == 409, body
    assert [p.plan for p in container.tenants().get("acme").plans] == ["starter"]
    assert canceled_at
