"""Property-based fuzzing of every HTTP function through its real handler ("): for hostile requests of every kind - mutated valid bodies, any JSON, deep JSON, bytes
that are not UTF-8, wrong content types, events without requestContext or key, broken base64 - the
handler never raises, never answers 5xx, and a refused request changes nothing (ClickHouse rows and
rollups, every DynamoDB item, queue depths). Size: ``FUZZ_EXAMPLES`` (tests/fuzz/support.py)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.runtime import container
from billing.tenants.tenant import PlanAssignment, Tenant
from billing_local.runner import LocalContext, load_module
from tests.dunning.support import (
    T0,
    WEBHOOK_SECRET,
    create_webhook_secret,
    customer_deleted_event,
    invoice_event,
)
from tests.fuzz.support import FUZZ, api_events, check_response, hostile_values, mutate, raw_bodies, snapshot

CONTEXT = LocalContext(function_name="fuzz")


@pytest.fixture(scope="module")
def handlers():
    return {
        name: load_module(name)
        for name in ("ingest", "tenants_api", "tenant_status", "stripe_webhook", "corrections")
    }


@pytest.fixture
def tenants(env):
    create_webhook_secret()
    container.override(clock=lambda: T0)  # webhook bodies are signed at T0
    for tenant_id, keys in (("acme", ["acme-key"]), ("other", [])):
        container.tenants().create(
            Tenant(
                id=tenant_id,
                name=tenant_id,
                plans=[PlanAssignment(plan="starter", effective_at="2025-01-01T00:00:00Z")],
                api_key_ids=keys,
                stripe_customer_id=f"cus_{tenant_id}",
            )
        )
    return env


def _event(draw) -> dict:
    base = {
        "event_id": draw(st.sampled_from(["e-1", "e-2", "e/3", "ė", ""])),
        "tenant_id": draw(st.sampled_from(["acme", "other", "ghost", "acme "])),
        "timestamp": "2025-11-03T12:00:00Z",
        "type": draw(st.sampled_from(["query", "embedding", "storage"])),
        "model": "gpt-4o-mini",
        "input_tokens": 10,
        "output_tokens": 2,
    }
    if draw(st.booleans()):  # properties, valid or mutated (bad names, nested, hostile values)
        base["properties"] = mutate({"region": "eu", "gpu_seconds": 12.5, "images": 3}, draw)
    return mutate(base, draw)


@st.composite
def ingest_requests(draw):
    def valid(d):
        events = [_event(d) for _ in range(d(st.integers(0, 3)))]
        return mutate({"events": events}, d)

    return draw(api_events(path="/v1/events", method="POST", body=draw(raw_bodies(valid))))


@given(data=st.data())
@FUZZ
def test_ingest_never_fails_and_refusals_change_nothing(tenants, handlers, data):
    request = data.draw(ingest_requests())
    before = snapshot(tenants)
    check_response(handlers["ingest"].handler(request, CONTEXT), before, tenants)


ROUTES = [
    (
        "POST",
        "/v1/tenants",
        {},
        lambda: {"id": "newco", "plan": "starter", "effective_at": "2025-11-01T00:00:00Z"},
    ),
    (
        "POST",
        "/v1/tenants/{tenant_id}/plan",
        {"tenant_id": "acme"},
        lambda: {"plan": "pro", "effective_at": "2025-11-05T00:00:00Z"},
    ),
    ("POST", "/v1/tenants/{tenant_id}/cancel", {"tenant_id": "acme"}, lambda: {"at": "2025-11-20T00:00:00Z"}),
    (
        "POST",
        "/v1/tenants/{tenant_id}/calendar",
        {"tenant_id": "acme"},
        lambda: {"time_zone": "Asia/Kolkata", "anchor": "signup", "interval": "quarter"},
    ),
    ("GET", "/v1/tenants/{tenant_id}/calendar", {"tenant_id": "acme"}, lambda: {}),
    (
        "GET",
        "/v1/tenants/{tenant_id}/statements/{month}",
        {"tenant_id": "acme", "month": "2025-11"},
        lambda: {},
    ),
]


@st.composite
def tenants_requests(draw):
    method, template, params, body = draw(st.sampled_from(ROUTES))
    params = {
        k: draw(st.sampled_from([v, "ghost", "other", "٢٠٢٥-١١", "0000-01", "9999-12", "x" * 300, "%2F"]))
        for k, v in params.items()
    }
    path = template.format(**params)
    raw = draw(raw_bodies(lambda d: mutate(body(), d))) if method == "POST" else b""
    return draw(api_events(path=path, method=method, body=raw, path_parameters=params or None))


@given(data=st.data())
@FUZZ
def test_tenants_api_never_fails_and_refusals_change_nothing(tenants, handlers, data):
    request = data.draw(tenants_requests())
    before = snapshot(tenants)
    check_response(handlers["tenants_api"].handler(request, CONTEXT), before, tenants)


@given(data=st.data())
@FUZZ
def test_tenant_status_never_fails_and_changes_nothing(tenants, handlers, data):
    tenant_id = data.draw(st.sampled_from(["acme", "other", "ghost", "x" * 300, ""]))
    request = data.draw(
        api_events(
            path=f"/v1/tenants/{tenant_id}/status",
            method="GET",
            body=b"",
            path_parameters={"tenant_id": tenant_id},
        )
    )
    before = snapshot(tenants)
    response = handlers["tenant_status"].handler(request, CONTEXT)
    check_response(response, before, tenants)
    assert snapshot(tenants) == before  # a read never writes


def _receipts_body(draw) -> dict:
    ids = ["e-1", "e-2", "e/3", "ė", "", "x" * 200, 7, None]
    return mutate(
        {
            "tenant_id": draw(st.sampled_from(["acme", "other", "ghost", "acme ", ""])),
            "event_ids": draw(st.lists(st.sampled_from(ids), max_size=120)),
        },
        draw,
    )


@given(data=st.data())
@FUZZ
def test_receipts_never_fail_and_change_nothing(tenants, handlers, data):
    # Given any request to the receipt routes: a batch body of any kind, or one event id with any tenant
    if data.draw(st.booleans()):
        request = data.draw(
            api_events(path="/v1/receipts", method="POST", body=data.draw(raw_bodies(_receipts_body)))
        )
    else:
        event_id = data.draw(st.sampled_from(["e-1", "e/3", "ė", "", "x" * 300, "a b"]))
        request = data.draw(
            api_events(
                path=f"/v1/events/{event_id}/receipt",
                method="GET",
                body=b"",
                path_parameters={"event_id": event_id},
            )
        )
        request["resource"] = "/v1/events/{event_id}/receipt"
        tenant = data.draw(st.sampled_from(["acme", "other", "ghost", "", "x" * 300, None]))
        request["queryStringParameters"] = None if tenant is None else {"tenant_id": tenant}
    before = snapshot(tenants)
    # Then the handler answers without a 5xx, and nothing changes
    check_response(handlers["tenant_status"].handler(request, CONTEXT), before, tenants)
    assert snapshot(tenants) == before


@given(data=st.data())
@FUZZ
def test_reconcile_never_fails_and_changes_nothing(tenants, handlers, data):
    tenant_id = data.draw(st.sampled_from(["acme", "other", "ghost", "x" * 300, ""]))
    request = data.draw(
        api_events(
            path=f"/v1/tenants/{tenant_id}/reconcile",
            method="GET",
            body=b"",
            path_parameters={"tenant_id": tenant_id},
        )
    )
    request["resource"] = "/v1/tenants/{tenant_id}/reconcile"
    month = data.draw(st.sampled_from(["2025-11", "2025-13", "1999-12", "2100-01", "", "x", None]))
    request["queryStringParameters"] = None if month is None else {"month": month}
    before = snapshot(tenants)
    check_response(handlers["tenant_status"].handler(request, CONTEXT), before, tenants)
    assert snapshot(tenants) == before


def _customer_updated(tenant_id: str) -> dict:
    """A card event that needs no Stripe call: the tenant's customer, its default card changed."""
    event = customer_deleted_event("evt_fuzz", tenant_id, T0)
    customer = event["data"]["object"]
    customer.pop("deleted", None)
    customer["invoice_settings"] = {
        **(customer.get("invoice_settings") or {}),
        "default_payment_method": "pm_1",
    }
    return {**event, "type": "customer.updated"}


def _stripe_event(draw) -> dict:
    kind = draw(
        st.sampled_from(
            [
                "invoice.payment_failed",
                "invoice.paid",
                "invoice.finalized",
                "customer.deleted",
                "customer.updated",
            ]
        )
    )
    if kind == "customer.deleted":
        event = customer_deleted_event("evt_fuzz", "acme", T0)
    elif kind == "customer.updated":
        event = _customer_updated("acme")
    else:
        event = invoice_event("evt_fuzz", kind, "in_acme", "acme", T0, customer="cus_acme")
    obj = event["data"]["object"]
    target = draw(st.sampled_from(["event", "object", "metadata"]))
    if target == "event":
        return mutate(event, draw)
    if target == "object":
        event["data"]["object"] = mutate(obj, draw)
    else:
        obj["metadata"] = (
            draw(hostile_values) if draw(st.booleans()) else mutate(obj.get("metadata") or {}, draw)
        )
    return event


@given(data=st.data())
@FUZZ
def test_stripe_webhook_signed_bodies_never_fail_and_refusals_change_nothing(tenants, handlers, data):
    from billing.adapters.stripe.webhook_signature import sign

    kind = data.draw(st.sampled_from(["signed", "signed", "signed", "raw"]))
    body = data.draw(raw_bodies(_stripe_event))
    headers = {}
    if kind == "signed":
        try:
            headers["Stripe-Signature"] = sign(body.decode("utf-8"), WEBHOOK_SECRET, int(T0.timestamp()))
        except UnicodeDecodeError:
            headers["Stripe-Signature"] = data.draw(st.text(max_size=80))
    else:
        headers["Stripe-Signature"] = data.draw(
            st.sampled_from(["", "t=1,v1=00", f"t ={int(T0.timestamp())},v1=" + "0" * 64])
            | st.text(max_size=80)
        )
    request = data.draw(api_events(path="/v1/webhooks/stripe", method="POST", body=body))
    request["headers"] = {**(request.get("headers") or {}), **headers}
    before = snapshot(tenants)
    status = check_response(handlers["stripe_webhook"].handler(request, CONTEXT), before, tenants)
    if status == 200:
        assert json.loads(handlers["stripe_webhook"].handler(request, CONTEXT)["body"])["status"] in (
            "duplicate",
            "ignored",
            "processed",
        )


@pytest.fixture
def webhook_endpoints_app():
    return load_module("webhook_endpoints")


@st.composite
def webhook_endpoint_requests(draw, known_id: str):
    endpoint_id = draw(st.sampled_from([known_id, "ep_000000000000000000000000", "", "x" * 300, "%2F", "ė"]))
    method, path, params, body = draw(
        st.sampled_from(
            [
                (
                    "POST",
                    "/v1/webhook-endpoints",
                    None,
                    lambda: {"url": "https://hooks.example.com/b", "event_types": ["invoice.paid"]},
                ),
                ("GET", "/v1/webhook-endpoints", None, None),
                ("GET", f"/v1/webhook-endpoints/{endpoint_id}", {"endpoint_id": endpoint_id}, None),
                ("DELETE", f"/v1/webhook-endpoints/{endpoint_id}", {"endpoint_id": endpoint_id}, None),
                (
                    "POST",
                    f"/v1/webhook-endpoints/{endpoint_id}/rotate-secret",
                    {"endpoint_id": endpoint_id},
                    lambda: {"overlap_hours": 24},
                ),
                ("POST", f"/v1/webhook-endpoints/{endpoint_id}/enable", {"endpoint_id": endpoint_id}, None),
            ]
        )
    )
    raw = draw(raw_bodies(lambda d: mutate(body(), d))) if body else b""
    return draw(api_events(path=path, method=method, body=raw, path_parameters=params))


@given(data=st.data())
@FUZZ
def test_webhook_endpoints_never_fail_and_refusals_change_nothing(tenants, webhook_endpoints_app, data):
    from billing.outgoing_webhooks.endpoints import EndpointRequest
    from billing.tenants.access import PLATFORM

    service = container.webhook_endpoint_service()
    known = service.endpoints(PLATFORM) or [
        service.register(
            EndpointRequest(url="https://hooks.example.com/a", event_types=["tenant.suspended"]), PLATFORM
        )[0]
    ]
    request = data.draw(webhook_endpoint_requests(known[0].id))
    before = snapshot(tenants)
    check_response(webhook_endpoints_app.handler(request, CONTEXT), before, tenants)


def _correction(draw) -> dict:
    base = {
        "correction_id": draw(st.sampled_from(["c-1", "c-2", "c/3", "ċ", ""])),
        "tenant_id": draw(st.sampled_from(["acme", "other", "ghost", "acme "])),
        "event_id": draw(st.sampled_from(["e-1", "e-2", "nope", ""])),
        "action": draw(st.sampled_from(["void", "amend", "delete"])),
        "reason": "fuzz",
    }
    if base["action"] == "amend" or draw(st.booleans()):
        base["values"] = mutate({"input_tokens": 5, "model": "gpt-4o", "properties": {"n": 1}}, draw)
    return mutate(base, draw)


@pytest.fixture
def corrected(tenants):
    """acme holds two stored queries (e-1, e-2) of the day before T0, inside the correction window."""
    from datetime import timedelta
    from decimal import Decimal

    from billing.metering.events import StoredEvent

    day_before = T0 - timedelta(days=1)
    tenants.store.insert_events(
        [
            StoredEvent("acme", e, day_before, "query", "gpt-4o-mini", 1, 10, 2, 0, Decimal("0.1"), "v1", T0)
            for e in ("e-1", "e-2")
        ]
    )
    return tenants


@given(data=st.data())
@FUZZ
def test_corrections_never_fail_and_refusals_change_nothing(corrected, handlers, data):
    handler = handlers["corrections"].handler
    if data.draw(st.booleans()):

        def valid(d):
            return mutate({"corrections": [_correction(d) for _ in range(d(st.integers(0, 3)))]}, d)

        request = data.draw(
            api_events(path="/v1/corrections", method="POST", body=data.draw(raw_bodies(valid)))
        )
    else:
        query = {
            "tenant_id": data.draw(st.sampled_from(["acme", "other", "ghost", "x" * 300, ""])),
            "event_id": data.draw(st.sampled_from(["e-1", "nope", "ė", ""])),
        }
        request = data.draw(api_events(path="/v1/corrections", method="GET", body=b""))
        request["queryStringParameters"] = data.draw(st.sampled_from([query, None, {"tenant_id": "acme"}]))
    before = snapshot(corrected)
    check_response(handler(request, CONTEXT), before, corrected)


@given(data=st.data())
@FUZZ
def test_corrected_events_read_back_through_receipts_reconcile_and_the_page(corrected, handlers, data):
    from billing.metering.receipt_views import CORRECTED, STATUSES
    from tests.conftest import api_event

    def post(item: dict) -> int:
        before = snapshot(corrected)
        request = api_event({"corrections": [item]}, path="/v1/corrections")
        return check_response(handlers["corrections"].handler(request, CONTEXT), before, corrected)

    # Given e-1 voided, and an amend of e-2 with any reason text and any values, applied or refused
    _SERIAL.append(len(_SERIAL))
    post({"correction_id": "void-1", "tenant_id": "acme", "event_id": "e-1", "action": "void", "reason": "x"})
    reason = data.draw(st.text(min_size=1, max_size=500) | st.sampled_from(["<script>x</script>", "\u202e"]))
    values = mutate({"input_tokens": 5, "output_tokens": 7, "model": "gpt-4o", "bytes": 0}, data.draw)
    amend = {"correction_id": f"amend-{len(_SERIAL)}", "tenant_id": "acme", "event_id": "e-2"}
    post({**amend, "action": "amend", "reason": reason, "values": values})
    # When the receipts, the reconcile and the usage page's JSON route read them
    before = snapshot(corrected)
    ids = {"tenant_id": "acme", "event_ids": ["e-1", "e-2", "nope"]}
    receipts = handlers["tenant_status"].handler(api_event(ids, path="/v1/receipts"), CONTEXT)
    month = api_event("", path="/v1/tenants/acme/reconcile", method="GET", query={"month": "2025-11"})
    month.update(resource="/v1/tenants/{tenant_id}/reconcile", pathParameters={"tenant_id": "acme"})
    reconciled = handlers["tenant_status"].handler(month, CONTEXT)
    # Then each answers 200, nothing changes, and the receipts name their corrections well formed
    assert check_response(receipts, before, corrected) == 200
    for receipt in json.loads(receipts["body"])["receipts"]:
        assert receipt["status"] in STATUSES and receipt["corrected"] in (*CORRECTED, None)
        assert all(c["kind"] in ("void", "amend") and c["difference"] for c in receipt["corrections"])
    assert [r["corrected"] for r in json.loads(receipts["body"])["receipts"]][0] == "voided"
    assert check_response(reconciled, before, corrected) == 200
    counted = json.loads(reconciled["body"])
    # (the fixture's rows were inserted without ingest, so the ledger never accepted them)
    assert (counted["stored"], counted["voided"]) == (2, 1)
    assert not [e for e in counted["stored_not_accepted"] if "#" in e]  # correction rows are no events
    assert snapshot(corrected) == before
    # And the page lists them, escaped, without a 5xx
    portal = handlers.setdefault("tenant_portal", load_module("tenant_portal")).handler
    link = api_event("", path="/v1/tenants/acme/portal-link")
    link.update(resource="/v1/tenants/{tenant_id}/portal-link", pathParameters={"tenant_id": "acme"})
    token = json.loads(portal(link, CONTEXT)["body"])["url"].split("token=")[1].split("&")[0]
    page = api_event("", path="/v1/portal/data", method="GET", api_key_id=None, query={"month": "2025-11"})
    page["headers"] = {**(page.get("headers") or {}), "Authorization": f"Bearer {token}"}
    shown = portal(page, CONTEXT)
    assert shown["statusCode"] == 200, shown
    body = json.loads(shown["body"])
    assert "e-1" in {c["event_id"] for c in body["corrections"]} and "<script>" not in body["html"]


_SERIAL: list[int] = []  # a fresh amend id per example: the store lives as long as the test
