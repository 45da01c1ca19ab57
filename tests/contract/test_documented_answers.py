"""Answers that generated requests hardly ever reach (a tenant that exists, a batch over its quota,
a signed link), each checked against openapi.yaml exactly as test_openapi checks generated ones:
a documented status, content type and schema, never a 5xx (``documented_answer``)."""

from __future__ import annotations

import socket
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
import stripe

from billing.kernel.errors import is_backing_service_failure
from billing.kernel.periods import iso, parse_instant
from billing.portal.tokens import MAX_TTL, MIN_TTL
from billing.runtime import container
from billing_local.http_api import LocalApi, template_routes
from billing_local.stripe_double import StripeDouble, put_secret
from billing_local.wsgi_api import OPENAPI_PATH
from billing_local.yaml_lint import load_unique
from tests.contract.support import documented_answer, peer_credentials
from tests.dunning.support import create_webhook_secret
from tests.support import create_tenant

NOW = parse_instant("2025-11-20T15:30:00Z")


@pytest.fixture
def clock(env):
    """Given a fresh account and ClickHouse, the webhook secret, and the clock at NOW (settable)."""
    create_webhook_secret()
    moments = [NOW]
    container.override(clock=lambda: moments[-1])
    yield moments
    container.override(clock=None)


def query(event_id: str, tenant_id: str = "acme") -> dict:
    return {
        "event_id": event_id,
        "tenant_id": tenant_id,
        "timestamp": iso(NOW - timedelta(hours=1)),
        "type": "query",
        "model": "gpt-4o-mini",
        "input_tokens": 100,
        "output_tokens": 20,
    }


def portal_token(tenant_id: str, **body: int) -> str:
    link = documented_answer(
        "POST", "/v1/tenants/{tenant_id}/portal-link", body=body or None, tenant_id=tenant_id
    )
    assert link.status_code == 201, link.text
    return parse_qs(urlsplit(link.json()["url"]).query)["token"][0]


def test_a_batch_partly_refused_for_quota_is_the_documented_202(clock):
    # Given a tenant whose monthly quota is 2 queries
    create_tenant("acme", query_quota=2)
    # When a batch of 3 queries arrives
    response = documented_answer("POST", "/v1/events", body={"events": [query(f"q{i}") for i in range(3)]})
    # Then it is a 202 as IngestResult documents it: the refused query named, and the quota it met
    assert response.status_code == 202, response.text
    body = response.json()
    assert (body["accepted"], [r["event_id"] for r in body["rejected_for_quota"]]) == (2, ["q2"])
    assert body["quota"] == {
        "tenant_id": "acme",
        "month": "2025-11",
        "limit": 2,
        "used": 2,
        "resets_at": "2025-12-01T00:00:00Z",
    }


@pytest.mark.parametrize("route", ["/v1/portal", "/v1/portal/data"])
@pytest.mark.parametrize("token", ["forged", "expired", "missing"])
def test_a_bad_portal_token_is_the_documented_403(clock, route, token):
    # Given acme's portal link (signed, one minute long), forged, expired or left out
    create_tenant("acme", plans=[("starter", "2025-10-01T00:00:00Z")])
    valid = portal_token("acme", expires_in=60)
    payload, signature = valid.split(".")
    sent = {
        "forged": f"{payload}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}",
        "expired": valid,
        "missing": "",
    }[token]
    if token == "expired":
        clock.append(NOW + timedelta(seconds=60))
    # When the page or its data is asked for with it
    response = documented_answer("GET", route, query={"token": sent}, api_key=None)
    # Then it is the documented 403 (HTML for the page, JSON for the data), naming no tenant
    assert response.status_code == 403, response.text
    assert "acme" not in response.text.lower()


def test_portal_link_lifetimes_are_the_documented_bounds(clock):
    # Given the document's bounds of expires_in
    documented = load_unique(OPENAPI_PATH.read_text())["paths"]["/v1/tenants/{tenant_id}/portal-link"]
    bounds = documented["post"]["requestBody"]["content"]["application/json"]["schema"]["properties"][
        "expires_in"
    ]
    # Then they are the code's
    assert (bounds["minimum"], bounds["maximum"]) == (MIN_TTL.total_seconds(), MAX_TTL.total_seconds())
    create_tenant("acme", plans=[("starter", "2025-10-01T00:00:00Z")])
    # And each bound is a 201, one second beyond it a 400 naming expires_in, all as documented
    for seconds, status in [(59, 400), (60, 201), (86400, 201), (86401, 400)]:
        response = documented_answer(
            "POST", "/v1/tenants/{tenant_id}/portal-link", body={"expires_in": seconds}, tenant_id="acme"
        )
        assert response.status_code == status, (seconds, response.text)
        if status == 400:
            assert response.json()["details"][0]["field"] == "expires_in"


def test_every_route_answers_its_documented_success(clock):
    # Given acme's key, and a month of acme's usage under way
    tenant = "/v1/tenants/{tenant_id}"
    signup = {
        "id": "acme",
        "plan": "starter",
        "effective_at": "2025-10-01T00:00:00Z",
        "api_key_ids": ["acme-key"],
    }
    # When the platform signs acme up, twice (201, then the same tenant: 200)
    assert documented_answer("POST", "/v1/tenants", body=signup).status_code == 201
    assert documented_answer("POST", "/v1/tenants", body=signup).status_code == 200
    # And acme sends usage with its own key
    batch = {"events": [query("q1"), query("q2")]}
    assert documented_answer("POST", "/v1/events", body=batch, api_key="acme-key").status_code == 202
    # And the platform grants credits and a coupon (each twice: 201, then 200) and changes the plan
    grant = {"grant_id": "welcome", "amount": "25.00", "priority": 5}
    coupon = {"coupon_id": "launch", "percent_off": "10", "duration": "repeating", "duration_months": 3}
    for status in (201, 200):
        assert (
            documented_answer("POST", f"{tenant}/credits", body=grant, tenant_id="acme").status_code == status
        )
        assert (
            documented_answer("POST", f"{tenant}/coupons", body=coupon, tenant_id="acme").status_code
            == status
        )
    change = {"plan": "pro", "effective_at": "2025-11-15T00:00:00Z"}
    assert documented_answer("POST", f"{tenant}/plan", body=change, tenant_id="acme").status_code == 200
    # Then every read answers 200 as documented, with the tenant's key as with the platform's
    for key in ("platform-key", "acme-key"):
        for route in ("credits", "status", "quota", "statements/{month}"):
            response = documented_answer(
                "GET", f"{tenant}/{route}", api_key=key, tenant_id="acme", month="2025-11"
            )
            assert response.status_code == 200, (route, response.text)
    # And the usage page and its data answer 200 to acme's signed link
    token = portal_token("acme")
    assert documented_answer("GET", "/v1/portal", query={"token": token}, api_key=None).status_code == 200
    data = documented_answer(
        "GET", "/v1/portal/data", headers={"Authorization": f"Bearer {token}"}, api_key=None
    )
    assert data.status_code == 200
    # And a cancellation answers the tenant and its final statement
    assert documented_answer("POST", f"{tenant}/cancel", body={}, tenant_id="acme").status_code == 200


@pytest.fixture
def stripe_at(clock, monkeypatch):
    """The Stripe key in Secrets Manager and the gateway pointed at ``base`` (fast retries)."""

    def point(base: str) -> None:
        monkeypatch.setenv("STRIPE_API_BASE", base)
        monkeypatch.setenv("STRIPE_RETRY_BASE_DELAY_S", "0.01")
        monkeypatch.setenv("STRIPE_MAX_ATTEMPTS", "2")
        container.reset()
        container.override(clock=lambda: clock[-1])
        put_secret(container.settings().stripe_secret_name)

    return point


def test_the_stripe_hosted_pages_are_the_documented_201(stripe_at):
    # Given the Stripe double, and a tenant with its own key
    with StripeDouble() as double:
        stripe_at(double.api_base)
        create_tenant("acme", plans=[("starter", "2025-10-01T00:00:00Z")], api_key_ids=["acme-key"])
        # and the payment settings page configured on the account (what sync-catalog does)
        double.save_portal_settings()
        # When the tenant asks for the card setup page and the payment settings page
        for route in ("setup", "portal"):
            response = documented_answer(
                "POST",
                f"/v1/tenants/{{tenant_id}}/billing/{route}",
                body={},
                api_key="acme-key",
                tenant_id="acme",
            )
            # Then each is a 201 HostedSession as documented
            assert response.status_code == 201, (route, response.text)


def test_stripe_unreachable_is_the_documented_503(stripe_at):
    # Given Stripe unreachable (nothing listens where the gateway sends)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    stripe_at(f"http://127.0.0.1:{port}")
    create_tenant("acme", plans=[("starter", "2025-10-01T00:00:00Z")])
    # When the platform asks for acme's card setup page
    response = documented_answer(
        "POST", "/v1/tenants/{tenant_id}/billing/setup", body={}, service_down=True, tenant_id="acme"
    )
    # Then it is a 503 to retry, as documented (not a 500)
    assert response.status_code == 503, response.text
    assert response.headers.get("retry-after")


def test_the_usage_page_answers_a_backing_service_failure_as_the_documented_html_503(clock):
    # Given the portal's signing secret unreadable (Secrets Manager fails)
    boto3.client("secretsmanager").delete_secret(
        SecretId=container.settings().portal_secret_name, ForceDeleteWithoutRecovery=True
    )
    # When a browser opens a link (its token must be checked against the secret)
    response = documented_answer(
        "GET", "/v1/portal", query={"token": "payload.signature"}, api_key=None, service_down=True
    )
    # Then it is the documented 503, a page (a browser shows it), to retry
    assert response.status_code == 503, response.text
    assert response.headers["content-type"][0].startswith("text/html")
    assert response.headers.get("retry-after")


def _json_body_routes() -> list[tuple[str, str]]:
    document = load_unique(OPENAPI_PATH.read_text())
    return [
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method != "parameters"
        and "application/json" in (operation.get("requestBody") or {}).get("content", {})
        and path != "/v1/webhooks/stripe"  # Stripe's signature, not a key, decides its answers
    ]


@pytest.mark.parametrize("method, route", _json_body_routes())
def test_a_route_documents_415_exactly_when_it_refuses_a_body_that_is_not_json(clock, method, route):
    # Given a tenant, and a JSON body sent as text/plain
    create_tenant("acme", plans=[("starter", "2025-10-01T00:00:00Z")])
    documented = load_unique(OPENAPI_PATH.read_text())["paths"][route][method.lower()]["responses"]
    api = LocalApi(template_routes(), {"platform-key": "platform-key"}, all_bodies_binary=True)
    path = route.replace("{tenant_id}", "acme")
    # When it is sent
    status, _, body = api.handle(
        method,
        path,
        {
            "x-api-key": "platform-key",
            "authorization": peer_credentials("platform-key", route),
            "content-type": "text/plain",
        },
        b'{"events": []}',
        "localhost",
    )
    # Then the route answers 415 if and only if openapi.yaml says it may
    assert (status == 415) == ("415" in documented), (status, body)


@pytest.mark.parametrize(
    "error, retry",
    [
        (stripe.APIConnectionError("unreachable"), True),
        (stripe.RateLimitError("slow down"), True),
        (stripe.APIError("stripe failed"), True),
        (stripe.InvalidRequestError("no such customer", param="customer", http_status=404), False),
        (stripe.CardError("declined", param=None, code="card_declined", http_status=402), False),
    ],
)
def test_only_stripes_try_again_errors_are_a_503(error, retry):
    # Given an error out of the Stripe SDK, Then it is a 503 to retry only when retrying can help
    assert is_backing_service_failure(error) is retry


def test_the_peer_routes_answer_their_documented_success_and_refusals(clock):
    # Given acme with a key of its own, and other, a tenant of someone else
    create_tenant("acme", plans=[("starter", "2025-10-01T00:00:00Z")], api_key_ids=["acme-key"])
    create_tenant("other", plans=[("starter", "2025-10-01T00:00:00Z")])
    stamp = iso(NOW - timedelta(hours=1))
    usage = {"model": "gpt-4o-mini", "input_tokens": 100, "output_tokens": 20}
    cloud_event = {"id": "om-1", "source": "s", "specversion": "1.0", "type": "query", "subject": "acme"}
    cloud_event.update(time=stamp, data=usage)
    lago_event = {"transaction_id": "lg-1", "external_subscription_id": "acme", "code": "query"}
    lago_event.update(timestamp=int((NOW - timedelta(hours=1)).timestamp()), properties=usage)
    track = {"type": "track", "messageId": "sg-1", "event": "query", "userId": "u1", "timestamp": stamp}
    track.update(context={"groupId": "acme"}, properties=usage)
    requests = [
        ("/openmeter/api/v1/events", cloud_event, {**cloud_event, "id": "om-2", "subject": "other"}, 204),
        (
            "/lago/api/v1/events",
            {"event": lago_event},
            {"event": {**lago_event, "external_subscription_id": "other"}},
            200,
        ),
        (
            "/lago/api/v1/events/batch",
            {"events": [lago_event]},
            {"events": [{**lago_event, "transaction_id": "lg-2", "external_subscription_id": "other"}]},
            200,
        ),
        (
            "/segment/v1/batch",
            {"batch": [track]},
            {"batch": [{**track, "messageId": "sg-2", "context": {"groupId": "other"}}]},
            200,
        ),
        ("/segment/v1/track", track, {**track, "messageId": "sg-3", "context": {"groupId": "other"}}, 200),
    ]
    for route, own, foreign, success in requests:
        # When acme's key sends its own usage (again after the first route: a duplicate), Then the
        # documented success; and for someone else's tenant the documented 403
        auth = {"Authorization": peer_credentials("acme-key", route)}
        assert (
            documented_answer("POST", route, body=own, headers=auth, api_key=None).status_code == success
        ), route
        refused = documented_answer("POST", route, body=foreign, headers=auth, api_key=None)
        assert refused.status_code == 403, (route, refused.text)
