"""The webhook endpoints routes through the template's routes and the real handler (the local
runner's HTTP front, moto's DynamoDB and Secrets Manager): register, list, read, rotate, delete;
refusals name their field; a delivery signed with the stored secrets verifies."""

from __future__ import annotations

import json
import urllib.request
from datetime import UTC, datetime
from typing import Any

import pytest
from standardwebhooks import Webhook

from billing.outgoing_webhooks.signing import build_delivery
from billing.runtime import container
from billing_local.http_api import LocalApi, serving, template_routes
from usage_tracker import WebhookVerificationError, verify_signature

PLATFORM, TENANT = "platform-secret", "tenant-secret"
ENDPOINT = {"url": "https://hooks.example.com/billing", "event_types": ["invoice.paid", "tenant.suspended"]}


@pytest.fixture
def api(env):
    local = LocalApi(template_routes(["webhook_endpoints"]), {PLATFORM: "platform-key", TENANT: "acme-key"})
    with serving(local) as url:

        def call(method: str, path: str, body: Any = None, key: str | None = PLATFORM) -> tuple[int, Any]:
            data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
            request = urllib.request.Request(url + path, data=data, method=method)
            request.add_header("content-type", "application/json")
            if key:
                request.add_header("x-api-key", key)
            try:
                with urllib.request.urlopen(request, timeout=30) as answer:
                    return answer.status, json.loads(answer.read())
            except urllib.error.HTTPError as refused:
                return refused.code, json.loads(refused.read())

        yield call


def deliver(endpoint_id: str) -> Any:
    """A delivery to the endpoint now, signed with what the service says is in force."""
    return build_delivery(
        "invoice.paid",
        object_id="in_1",
        sequence=1,
        data={"id": "in_1"},
        secrets_in_force=container.webhook_endpoint_service().secrets_in_force(endpoint_id),
        at=datetime.now(UTC),
    )


def test_an_endpoint_is_registered_listed_read_and_deleted(api):
    # When the SaaS registers an endpoint
    status, created = api("POST", "/v1/webhook-endpoints", {**ENDPOINT, "description": "billing sync"})
    # Then it gets its id and its secret, once
    assert status == 201
    assert created["id"].startswith("ep_") and created["secret"].startswith("whsec_")
    assert created["event_types"] == ["invoice.paid", "tenant.suspended"]
    # And the listing and the endpoint's page show it, never its secret
    status, listing = api("GET", "/v1/webhook-endpoints")
    assert status == 200 and [e["id"] for e in listing["endpoints"]] == [created["id"]]
    status, read = api("GET", f"/v1/webhook-endpoints/{created['id']}")
    assert status == 200 and read["url"] == ENDPOINT["url"] and "secret" not in read
    assert "secret" not in listing["endpoints"][0]
    # And a delivery signed with the stored secret verifies with the secret the SaaS was given
    delivery = deliver(created["id"])
    assert verify_signature(delivery.body, delivery.headers, created["secret"])["type"] == "invoice.paid"
    assert Webhook(created["secret"]).verify(delivery.body, delivery.headers)["sequence"] == 1
    # When it is deleted, Then it is gone, and so is its secret
    status, deleted = api("DELETE", f"/v1/webhook-endpoints/{created['id']}")
    assert status == 200 and deleted["deleted"] is True
    assert api("GET", f"/v1/webhook-endpoints/{created['id']}")[0] == 404
    assert api("DELETE", f"/v1/webhook-endpoints/{created['id']}")[0] == 404
    assert api("GET", "/v1/webhook-endpoints")[1] == {"endpoints": []}
    assert container.webhook_secrets().get(created["id"]) is None


def test_a_rotated_secret_overlaps_with_the_previous_one_then_replaces_it(api):
    # Given an endpoint and its first secret
    _, created = api("POST", "/v1/webhook-endpoints", ENDPOINT)
    old = created["secret"]
    # When the SaaS rotates it with a 2-hour overlap
    status, rotated = api(
        "POST", f"/v1/webhook-endpoints/{created['id']}/rotate-secret", {"overlap_hours": 2}
    )
    new = rotated["secret"]
    # Then a new secret is current and the old one is in force for two more hours
    assert status == 200 and new.startswith("whsec_") and new != old
    assert rotated["secret_rotated_at"] and rotated["previous_secret_expires_at"]
    delivery = deliver(created["id"])
    assert len(delivery.headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        assert verify_signature(delivery.body, delivery.headers, secret)["type"] == "invoice.paid"
        assert Webhook(secret).verify(delivery.body, delivery.headers)
    # When it is rotated again with no overlap, Then only the newest secret signs
    _, again = api("POST", f"/v1/webhook-endpoints/{created['id']}/rotate-secret", {"overlap_hours": 0})
    delivery = deliver(created["id"])
    assert verify_signature(delivery.body, delivery.headers, again["secret"])
    for secret in (old, new):
        with pytest.raises(WebhookVerificationError):
            verify_signature(delivery.body, delivery.headers, secret)


BAD_ENDPOINTS = [
    ({**ENDPOINT, "url": "http://hooks.example.com/billing"}, "url"),
    ({**ENDPOINT, "url": "ftp://hooks.example.com/"}, "url"),
    ({**ENDPOINT, "url": "hooks.example.com"}, "url"),
    ({**ENDPOINT, "url": "https://user:pw@hooks.example.com/"}, "url"),
    ({**ENDPOINT, "url": "https://hooks.example.com/#x"}, "url"),
    ({**ENDPOINT, "url": "https://hooks.example.com:99999/"}, "url"),
    ({**ENDPOINT, "url": 5}, "url"),
    ({**ENDPOINT, "url": "https://169.254.169.254/latest/meta-data"}, "url"),
    ({**ENDPOINT, "url": "https://10.0.0.7/hooks"}, "url"),
    ({**ENDPOINT, "url": "https://[fd00::1]/hooks"}, "url"),
    ({**ENDPOINT, "url": "https://0.0.0.0/hooks"}, "url"),
    ({**ENDPOINT, "event_types": []}, "event_types"),
    ({**ENDPOINT, "event_types": ["invoice.deleted"]}, "event_types"),
    ({**ENDPOINT, "event_types": ["invoice.paid", "invoice.paid"]}, "event_types"),
    ({**ENDPOINT, "event_types": "invoice.paid"}, "event_types"),
    ({"url": ENDPOINT["url"]}, "event_types"),
    ({**ENDPOINT, "secret": "whsec_mine"}, "secret"),
    ({**ENDPOINT, "description": "x" * 257}, "description"),
    ([ENDPOINT], "body"),
]


@pytest.mark.parametrize(("body", "field"), BAD_ENDPOINTS)
def test_a_bad_endpoint_is_a_400_naming_the_field(api, body, field):
    status, answer = api("POST", "/v1/webhook-endpoints", body)
    assert status == 400, answer
    assert answer["error"] == "invalid_request" and field in [d["field"] for d in answer["details"]]
    assert api("GET", "/v1/webhook-endpoints")[1] == {"endpoints": []}


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:3000/hooks", "http://localhost/hooks", "http://[::1]:8080/h"]
)
def test_plain_http_is_allowed_only_to_the_local_machine(api, url):
    status, created = api("POST", "/v1/webhook-endpoints", {**ENDPOINT, "url": url})
    assert status == 201 and created["url"] == url


def test_only_a_platform_key_manages_endpoints(api):
    _, created = api("POST", "/v1/webhook-endpoints", ENDPOINT)
    # A tenant's key is refused everything, and no key at all is refused by the gateway
    assert api("POST", "/v1/webhook-endpoints", ENDPOINT, key=TENANT)[0] == 403
    assert api("GET", "/v1/webhook-endpoints", key=TENANT)[0] == 403
    assert api("GET", f"/v1/webhook-endpoints/{created['id']}", key=TENANT)[0] == 403
    assert api("DELETE", f"/v1/webhook-endpoints/{created['id']}", key=TENANT)[0] == 403
    assert api("POST", f"/v1/webhook-endpoints/{created['id']}/rotate-secret", {}, key=TENANT)[0] == 403
    assert api("GET", "/v1/webhook-endpoints", key=None)[0] == 403
    # And the endpoint is untouched
    assert api("GET", f"/v1/webhook-endpoints/{created['id']}")[0] == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"overlap_hours": -1}, "overlap_hours"),
        ({"overlap_hours": 169}, "overlap_hours"),
        ({"overlap_hours": "24"}, "overlap_hours"),
        ({"keep": True}, "keep"),
    ],
)
def test_a_bad_rotation_is_a_400_naming_the_field_and_changes_nothing(api, body, field):
    _, created = api("POST", "/v1/webhook-endpoints", ENDPOINT)
    status, answer = api("POST", f"/v1/webhook-endpoints/{created['id']}/rotate-secret", body)
    assert status == 400 and field in [d["field"] for d in answer["details"]]
    delivery = deliver(created["id"])
    assert verify_signature(delivery.body, delivery.headers, created["secret"])


def test_rotating_an_unknown_endpoint_is_a_404(api):
    status, answer = api("POST", "/v1/webhook-endpoints/ep_000000000000000000000000/rotate-secret", {})
    assert status == 404 and answer["details"][0]["field"] == "endpoint_id"
