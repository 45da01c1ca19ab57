"""Every request body of the API is read strictly: true never passes as 1, "5" never as 5, 5.0 never
as 5, and money is a decimal string. Each wrong type is a 400 (as openapi.yaml documents it) whose
details name the field, through the route a client calls."""

from __future__ import annotations

import typing
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel

from billing.metering.events import UsageEvent
from billing.outgoing_webhooks.endpoints import EndpointRequest, RotateRequest
from billing.payments.card_on_file import PaymentSettingsRequest, SetupRequest
from billing.runtime import container
from billing.tenants.requests import (
    CancelRequest,
    CouponRequest,
    CreditGrantRequest,
    PlanChangeRequest,
    SignupRequest,
)
from tests.contract.support import documented_answer
from tests.support import create_tenant

TENANT = "/v1/tenants/{tenant_id}"
EVENT = {
    "event_id": "e1",
    "tenant_id": "acme",
    "timestamp": "2025-11-03T12:00:00Z",
    "type": "query",
    "model": "gpt-4o-mini",
    "input_tokens": 10,
    "output_tokens": 2,
}
# Each route's request model and a body it accepts (the field under test is then set to a wrong value).
ROUTES: dict[str, tuple[type[BaseModel] | None, str, dict[str, Any]]] = {
    "events": (UsageEvent, "/v1/events", EVENT),
    "signup": (SignupRequest, "/v1/tenants", {"id": "newco", "plan": "starter"}),
    "plan": (PlanChangeRequest, f"{TENANT}/plan", {"plan": "pro"}),
    "cancel": (CancelRequest, f"{TENANT}/cancel", {}),
    "credits": (CreditGrantRequest, f"{TENANT}/credits", {"grant_id": "g1", "amount": "25.00"}),
    "coupons": (
        CouponRequest,
        f"{TENANT}/coupons",
        {"coupon_id": "c1", "percent_off": "10", "duration": "repeating", "duration_months": 3},
    ),
    "portal-link": (None, f"{TENANT}/portal-link", {}),  # {"expires_in"}: billing.portal.tokens.parse_ttl
    "billing-setup": (SetupRequest, f"{TENANT}/billing/setup", {}),
    "billing-portal": (PaymentSettingsRequest, f"{TENANT}/billing/portal", {}),
    "webhook-endpoints": (
        EndpointRequest,
        "/v1/webhook-endpoints",
        {"url": "https://hooks.example.com/b", "event_types": ["invoice.paid"]},
    ),
    "rotate-secret": (RotateRequest, "/v1/webhook-endpoints/{endpoint_id}/rotate-secret", {}),
}
WHERE_AN_INT = {True: "a bool", "5": "a numeric string", 5.0: "a float"}
WHERE_MONEY = {True: "a bool", 25: "an integer", 25.5: "a float"}
WHERE_A_BOOL = {"true": "a string", 1: "an integer"}
WHERE_A_STRING = {5: "a number", True: "a bool"}
CASES = [
    *[("events", f, v) for f in ("input_tokens", "output_tokens", "bytes") for v in WHERE_AN_INT],
    *[("signup", "trial_days", v) for v in WHERE_AN_INT],
    *[("credits", "priority", v) for v in WHERE_AN_INT],
    *[("coupons", "duration_months", v) for v in WHERE_AN_INT],
    *[("portal-link", "expires_in", v) for v in WHERE_AN_INT],
    *[("rotate-secret", "overlap_hours", v) for v in WHERE_AN_INT],
    *[("signup", "trial", v) for v in WHERE_A_BOOL],
    *[("credits", "amount", v) for v in WHERE_MONEY],
    *[("coupons", f, v) for f in ("percent_off", "amount_off") for v in WHERE_MONEY],
    *[(r, f, v) for r, f in [("signup", "plan"), ("plan", "plan"), ("cancel", "at")] for v in WHERE_A_STRING],
    *[
        (r, f, v)
        for r, f in [
            ("signup", "effective_at"),
            ("billing-setup", "success_url"),
            ("billing-setup", "cancel_url"),
            ("billing-portal", "return_url"),
            ("webhook-endpoints", "url"),
            ("webhook-endpoints", "description"),
        ]
        for v in WHERE_A_STRING
    ],
]


def _kind(value: Any) -> str:
    return {bool: "bool", str: "numeric-string", float: "float", int: "int"}[type(value)]


@pytest.mark.parametrize("route, field, value", CASES, ids=[f"{r}.{f}={_kind(v)}" for r, f, v in CASES])
def test_a_wrong_type_is_a_400_naming_the_field(env, route, field, value):
    # Given a tenant and a body the route accepts
    create_tenant("acme", plans=[("starter", "2025-10-01T00:00:00Z")], api_key_ids=["acme-key"])
    _, path, valid = ROUTES[route]
    body: dict[str, Any] = {**valid, field: value}
    if route == "events":
        body = {"events": [body]}
    # When that body arrives with the field of the wrong type
    params = (
        {"endpoint_id": "ep_000000000000000000000000"} if "{endpoint_id}" in path else {"tenant_id": "acme"}
    )
    response = documented_answer("POST", path, body=body, **params)
    # Then it is a 400 whose details name the field, and nothing was created
    assert response.status_code == 400, response.text
    assert field in [problem["field"] for problem in response.json()["details"]], response.text
    assert container.tenants().get("newco") is None


def _typed_fields(model: type[BaseModel]) -> dict[str, str]:
    """The model's int, bool and Decimal fields (those a JSON number or bool could sneak into)."""
    kinds = {int: "int", bool: "bool", Decimal: "money"}
    found = {}
    for name, info in model.model_fields.items():
        for arg in (info.annotation, *typing.get_args(info.annotation)):
            base = typing.get_args(arg)[0] if typing.get_origin(arg) is typing.Annotated else arg
            if base in kinds:
                found[name] = kinds[base]
    return found


@pytest.mark.parametrize("route", sorted(r for r, (model, _, _) in ROUTES.items() if model))
def test_every_request_model_is_strict_and_every_typed_field_is_tried(route):
    # Given the route's request model
    model = ROUTES[route][0]
    assert model is not None
    # Then it is strict and refuses unknown fields
    assert model.model_config.get("strict") is True and model.model_config.get("extra") == "forbid"
    # And each of its int, bool and money fields is tried with wrong types above
    tried = {f for r, f, _ in CASES if r == route}
    assert set(_typed_fields(model)) <= tried
