"""The tenants API through API Gateway events and the real handler (moto + chdb)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import boto3
import pytest

from billing.kernel.periods import Month
from billing.runtime import container
from tests.conftest import PROJECT_ROOT, api_event
from tests.metering.conftest import load_handler
from tests.rating.helpers import queries


@pytest.fixture(scope="module")
def tenants_app() -> Any:
    return load_handler("tenants_api")


@pytest.fixture
def call(tenants_app, lambda_context):
    def _call(
        method: str,
        path: str,
        body: Any = None,
        *,
        api_key_id: str = "platform-key",
        path_parameters: dict | None = None,
    ) -> tuple[int, dict]:
        event = api_event(
            body if body is not None else "",
            path=path,
            method=method,
            api_key_id=api_key_id,
            path_parameters=path_parameters,
        )
        response = tenants_app.handler(event, lambda_context)
        return response["statusCode"], json.loads(response["body"])

    return _call


SIGNUP = {
    "id": "acme",
    "name": "Acme",
    "email": "billing@acme.example",
    "plan": "starter",
    "effective_at": "2025-11-01T00:00:00Z",
}


def test_signup_is_created_once_and_repeats_are_idempotent(env, call):
    status, body = call("POST", "/v1/tenants", {**SIGNUP, "trial": True})
    assert status == 201
    assert body["plans"] == [{"plan": "starter", "effective_at": "2025-11-01T00:00:00Z"}]
    assert body["trial_ends_at"] == "2025-11-15T00:00:00Z"  # starter's 14 trial days
    assert call("POST", "/v1/tenants", {**SIGNUP, "trial": True})[0] == 200
    status, body = call("POST", "/v1/tenants", {**SIGNUP, "plan": "pro"})
    assert status == 409 and body["error"] == "conflict"


BAD_SIGNUPS = [
    ({**SIGNUP, "plan": "platinum"}, "plan"),
    ({**SIGNUP, "effective_at": "yesterday"}, "effective_at"),
    ({**SIGNUP, "colour": "red"}, "colour"),
    ({k: v for k, v in SIGNUP.items() if k != "id"}, "id"),
    ({**SIGNUP, "trial_days": -1}, "trial_days"),
    ({**SIGNUP, "email": "billing at acme"}, "email"),  # Stripe would refuse it (email_invalid)
    ({**SIGNUP, "email": "a@b"}, "email"),
    ({**SIGNUP, "name": "x" * 257}, "name"),
    ({**SIGNUP, "trial_ends_at": "2025-10-01T00:00:00Z"}, "trial_ends_at"),
    ("not json", "body"),
    ([1, 2], "body"),
]


def test_bad_signups_are_400_naming_the_field(env, call):
    for body, field in BAD_SIGNUPS:
        status, response = call("POST", "/v1/tenants", body)
        assert status == 400, (body, response)
        assert field in {d["field"] for d in response["details"]} and all(
            d["reason"] for d in response["details"]
        )
    assert container.tenants().get("acme") is None


def test_plan_changes_append_and_never_touch_a_closed_month(env, call):
    call("POST", "/v1/tenants", SIGNUP)
    # An upgrade effective mid-November
    status, body = call(
        "POST",
        "/v1/tenants/acme/plan",
        {"plan": "pro", "effective_at": "2025-11-16T08:00:00Z"},
        path_parameters={"tenant_id": "acme"},
    )
    assert status == 200 and [p["plan"] for p in body["plans"]] == ["starter", "pro"]
    # Not before the latest change (append-only), not for an unknown plan or tenant
    assert (
        call("POST", "/v1/tenants/acme/plan", {"plan": "payg", "effective_at": "2025-11-10T00:00:00Z"})[0]
        == 409
    )
    assert call("POST", "/v1/tenants/acme/plan", {"plan": "gold"})[0] == 400
    assert call("POST", "/v1/tenants/nobody/plan", {"plan": "pro"})[0] == 404
    # Once November is closed, nothing may be effective in it
    container.periods().close(Month(2025, 11), Month(2025, 12).start)
    status, body = call(
        "POST", "/v1/tenants/acme/plan", {"plan": "enterprise", "effective_at": "2025-11-30T00:00:00Z"}
    )
    assert status == 409 and "closed" in body["message"]
    assert call("POST", "/v1/tenants/acme/plan", {"plan": "enterprise"})[0] == 200  # effective now is fine


def test_cancellation_issues_the_final_statement_at_once(env, call):
    # Given a starter tenant with 10 November queries
    call("POST", "/v1/tenants", SIGNUP)
    env.store.insert_events(queries("acme", 10, "2025-11-02T00:00:00Z"))
    # When it is cancelled at 2025-11-16T00:00:00Z
    status, body = call("POST", "/v1/tenants/acme/cancel", {"at": "2025-11-16T00:00:00Z"})
    # Then the final statement is stored and dated at the cancellation: 29 x 15/30 + 10 x 0.01
    assert status == 200, body
    statement = body["statement"]
    assert statement["is_final"] and statement["invoice_date"] == "2025-11-16"
    assert Decimal(statement["total"]) == Decimal("14.60")
    assert container.statements().get("acme", "2025-11").total == Decimal("14.60")
    # And its invoicing job is on the queue
    messages = (
        boto3.client("sqs").receive_message(QueueUrl=env.settings.invoicing_queue_url).get("Messages", [])
    )
    assert [json.loads(m["Body"]) for m in messages] == [{"month": "2025-11", "tenant_id": "acme"}]
    # And cancelling again returns the same statement, nothing new
    again = call("POST", "/v1/tenants/acme/cancel", {})
    assert again[0] == 200 and again[1]["statement"] == statement
    # And a future cancellation date is refused
    call("POST", "/v1/tenants", {**SIGNUP, "id": "beta"})
    assert call("POST", "/v1/tenants/beta/cancel", {"at": "2999-01-01T00:00:00Z"})[0] == 400


def test_statements_are_previewed_until_stored(env, call):
    call("POST", "/v1/tenants", SIGNUP)
    env.store.insert_events(queries("acme", 3, "2025-11-02T00:00:00Z"))
    status, body = call("GET", "/v1/tenants/acme/statements/2025-11")
    assert (
        status == 200 and body["preview"] is True and Decimal(body["statement"]["total"]) == Decimal("29.03")
    )
    assert call("GET", "/v1/tenants/acme/statements/2025-13")[0] == 400
    assert call("GET", "/v1/tenants/nobody/statements/2025-11")[0] == 404
    assert call("GET", "/v1/tenants/acme/statements/2025-09")[0] == 404  # nothing to bill before its plan


def test_only_platform_keys_manage_tenants(env, call):
    assert call("POST", "/v1/tenants", SIGNUP, api_key_id="someone-else")[0] == 403
    call("POST", "/v1/tenants", {**SIGNUP, "api_key_ids": ["acme-key"]})
    assert call("POST", "/v1/tenants/acme/cancel", {}, api_key_id="acme-key")[0] == 403
    assert call("GET", "/v1/tenants/acme/statements/2025-11", api_key_id="acme-key")[0] == 200
    assert call("GET", "/v1/tenants/acme/statements/2025-11", api_key_id="other-key")[0] == 403


def test_the_sample_event_runs(env, tenants_app, lambda_context):
    event = json.loads((PROJECT_ROOT / "events" / "tenants_api.json").read_text())
    event["requestContext"]["identity"]["apiKeyId"] = "platform-key"
    assert tenants_app.handler(event, lambda_context)["statusCode"] == 201


def test_a_cancellation_at_midnight_is_refused_once_the_month_it_ends_is_closed(env, call):
    # Given a starter tenant since November, and November closed
    call("POST", "/v1/tenants", SIGNUP)
    container.periods().close(Month(2025, 11), Month(2025, 12).start)
    # When it is cancelled at exactly 00:00 on 1 December (its final statement would be November's)
    status, body = call("POST", "/v1/tenants/acme/cancel", {"at": "2025-12-01T00:00:00Z"})
    # Then it is refused like any change inside a closed month, and nothing was written
    assert status == 409 and "2025-11" in body["message"], body
    assert container.tenants().get("acme").canceled_at is None
    # And one millisecond later it is a December cancellation, accepted, with December's final statement
    status, body = call("POST", "/v1/tenants/acme/cancel", {"at": "2025-12-01T00:00:00.001Z"})
    assert status == 200 and body["statement"]["month"] == "2025-12" and body["statement"]["is_final"]
