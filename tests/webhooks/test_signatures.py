"""Stripe-Signature over the raw body as API Gateway delivers it: good, bad, expired, replayed."""

from __future__ import annotations

import json
from datetime import timedelta

import boto3

from billing.runtime import container
from tests.dunning.support import T0, WEBHOOK_SECRET, invoice_event, make_tenant, webhook_request


def _failed(event_id: str = "evt_fail_1", tenant: str = "acme", invoice: str = "in_acme_2025_11"):
    return invoice_event(event_id, "invoice.payment_failed", invoice, tenant, T0, attempt_count=1)


def _stored_nothing(tenant: str = "acme") -> bool:
    ddb = boto3.client("dynamodb")
    s = container.settings()
    billing = ddb.scan(TableName=s.billing_table)["Items"]
    ledger = [i for i in ddb.scan(TableName=s.ledger_table)["Items"] if i["pk"]["S"].startswith("WEBHOOK#")]
    return not billing and not ledger and container.tenants().get(tenant).payment_status == "active"


def test_a_correctly_signed_event_is_processed(stripe):
    # Given a tenant whose November invoice payment fails
    make_tenant("acme")
    # When Stripe delivers invoice.payment_failed, signed now
    status, body = stripe.deliver(_failed())
    # Then it is processed and the tenant is past due
    assert status == 200 and body["status"] == "processed"
    assert body["invoice_state"] == "past_due" and body["standing"] == "past_due"
    assert container.tenants().get("acme").payment_status == "past_due"


def test_a_base64_body_verifies_against_the_decoded_bytes(stripe):
    # Given API Gateway delivers the body base64-encoded (binary media types)
    make_tenant("acme")
    # When the signed event arrives that way
    status, body = stripe.deliver(_failed(), base64=True)
    # Then the signature is checked over the original bytes and the event is processed
    assert status == 200 and body["status"] == "processed"


def test_a_wrong_signature_is_refused_and_nothing_is_stored(stripe):
    make_tenant("acme")
    # When the event is signed with another endpoint's secret
    status, body = stripe.deliver(_failed(), secret="whsec_someone_else")
    # Then 400, a JSON reason naming the header, and nothing stored
    assert status == 400 and body["error"] == "invalid_signature"
    assert body["details"][0]["field"] == "Stripe-Signature"
    assert _stored_nothing()


def test_a_tampered_body_is_refused(stripe):
    make_tenant("acme")
    original = json.dumps(_failed())
    signed = webhook_request(original, at=stripe.clock.now)
    # When the body changes after signing (an amount edited)
    signed["body"] = original.replace('"amount_due": 4900', '"amount_due": 1')
    response = stripe.webhook.handler(signed, stripe.lambda_context)
    # Then it is refused
    assert response["statusCode"] == 400 and _stored_nothing()


def test_a_missing_signature_is_refused(stripe):
    make_tenant("acme")
    status, body = stripe.deliver(_failed(), signature=None)
    assert status == 400 and body["error"] == "invalid_signature" and "missing" in body["message"]
    assert _stored_nothing()


def test_a_garbled_signature_header_is_refused_not_a_500(stripe):
    make_tenant("acme")
    status, body = stripe.deliver(_failed(), signature="t=notanumber,v1=zz")
    assert status == 400 and body["error"] == "invalid_signature"


def test_an_expired_signature_is_refused(stripe):
    make_tenant("acme")
    # When the delivery was signed 301 s ago (Stripe's tolerance is 300 s)
    status, body = stripe.deliver(_failed(), signed_at=stripe.clock.now - timedelta(seconds=301))
    # Then it is refused as too old, and nothing is stored
    assert status == 400 and "tolerance" in body["message"]
    assert _stored_nothing()


def test_a_signature_inside_the_tolerance_is_accepted(stripe):
    make_tenant("acme")
    status, _ = stripe.deliver(_failed(), signed_at=stripe.clock.now - timedelta(seconds=299))
    assert status == 200


def test_a_replayed_delivery_is_answered_200_without_effect(stripe):
    # Given an event already processed
    make_tenant("acme")
    event = _failed()
    assert stripe.deliver(event)[0] == 200
    audit_before = boto3.client("dynamodb").scan(TableName=container.settings().billing_table)["Items"]
    # When Stripe delivers it again (a fresh signature, the same event id)
    stripe.clock.advance(hours=1)
    status, body = stripe.deliver(event)
    # Then 200, marked duplicate, and nothing changed
    assert status == 200 and body["status"] == "duplicate"
    audit_after = boto3.client("dynamodb").scan(TableName=container.settings().billing_table)["Items"]
    assert sorted(map(str, audit_after)) == sorted(map(str, audit_before))


def test_an_attacker_replaying_an_old_captured_delivery_is_refused(stripe):
    # Given a delivery captured in transit
    make_tenant("acme")
    captured = webhook_request(_failed(), at=stripe.clock.now)
    # When it is replayed ten minutes later with its original signature
    stripe.clock.advance(minutes=10)
    response = stripe.webhook.handler(captured, stripe.lambda_context)
    # Then it is refused as expired
    assert response["statusCode"] == 400 and "tolerance" in json.loads(response["body"])["message"]


def test_the_webhook_secret_comes_from_secrets_manager(stripe):
    # Given the endpoint secret rotated in Secrets Manager (and the cache reset, as a new instance)
    make_tenant("acme")
    boto3.client("secretsmanager").put_secret_value(
        SecretId=container.settings().stripe_webhook_secret_name, SecretString="whsec_rotated"
    )
    container.reset()
    container.override(clock=stripe.clock)
    # Then only deliveries signed with the new secret verify
    assert stripe.deliver(_failed("evt_old"))[0] == 400
    assert stripe.deliver(_failed("evt_new"), secret="whsec_rotated")[0] == 200


def test_unknown_event_types_are_acknowledged_and_ignored(stripe):
    make_tenant("acme")
    event = _failed()
    event["type"] = "invoice.upcoming"
    status, body = stripe.deliver(event)
    assert status == 200 and body["status"] == "ignored"
    assert _stored_nothing()


def test_invoices_we_did_not_create_are_ignored(stripe):
    make_tenant("acme")
    # An invoice without our metadata and unknown to our invoice records
    status, body = stripe.deliver(invoice_event("evt_x", "invoice.payment_failed", "in_foreign", None, T0))
    assert status == 200 and body["status"] == "ignored" and "not an invoice we created" in body["reason"]
    # An invoice naming a tenant we do not have
    status, body = stripe.deliver(invoice_event("evt_y", "invoice.payment_failed", "in_ghost", "ghost", T0))
    assert status == 200 and body["status"] == "ignored" and body["reason"] == "unknown tenant"
    # An invoice naming our tenant but another Stripe customer
    status, body = stripe.deliver(
        invoice_event("evt_z", "invoice.payment_failed", "in_odd", "acme", T0, customer="cus_other")
    )
    assert status == 200 and body["status"] == "ignored"
    assert container.tenants().get("acme").payment_status == "active"


def test_an_invoice_without_metadata_is_found_through_our_invoice_record(stripe):
    # Given our invoice record for acme's November invoice (written by invoicing, indexed by Stripe id)
    make_tenant("acme")
    boto3.client("dynamodb").put_item(
        TableName=container.settings().billing_table,
        Item={
            "pk": {"S": "MONTH#2025-11"},
            "sk": {"S": "INVOICE#acme"},
            "tenant_id": {"S": "acme"},
            "month": {"S": "2025-11"},
            "gsi1pk": {"S": "STRIPEINV#in_nometa"},
            "gsi1sk": {"S": "INVOICE"},
        },
    )
    # When its failure arrives without metadata
    status, body = stripe.deliver(
        invoice_event("evt_nm", "invoice.payment_failed", "in_nometa", None, T0, customer="cus_acme")
    )
    # Then it is attributed to acme
    assert status == 200 and body["status"] == "processed" and body["tenant_id"] == "acme"


def test_a_body_that_is_not_a_stripe_event_is_a_400_even_when_signed(stripe):
    make_tenant("acme")
    status, body = stripe.deliver('{"hello": "world"}')
    assert status == 400 and body["error"] == "invalid_request"
    assert {d["field"] for d in body["details"]} >= {"id", "type", "created", "data.object"}


def _old_signature(body: str, at) -> str:
    """The v1 signature Stripe made for ``body`` at ``at`` (what an attacker captured)."""
    from billing.adapters.stripe.webhook_signature import sign

    return sign(body, WEBHOOK_SECRET, int(at.timestamp())).split(",v1=")[1]


def test_a_second_timestamp_can_never_launder_an_expired_signature(stripe):
    # Given a delivery signed 40 days ago, captured with its valid v1 signature
    make_tenant("acme")
    body = json.dumps(_failed())
    old = stripe.clock.now - timedelta(days=40)
    v1 = _old_signature(body, old)
    now_t, old_t = int(stripe.clock.now.timestamp()), int(old.timestamp())
    # When it is replayed with a fresh timestamp slipped in front of the old one, in any spelling
    for header in (
        f"t ={now_t},t={old_t},v1={v1}",
        f" t={now_t},t={old_t},v1={v1}",
        f"t={old_t},t ={now_t},v1={v1}",
        f"t={now_t},t={old_t},v1={v1}",
        f"t={old_t},v1={v1}",
    ):
        status, response = stripe.deliver(body, signature=header)
        # Then it is refused (400, naming the header) and nothing is stored
        assert status == 400 and response["error"] == "invalid_signature", header
        assert response["details"][0]["field"] == "Stripe-Signature"
    assert _stored_nothing()


def test_a_header_not_exactly_in_stripes_format_is_refused_even_with_a_valid_signature(stripe):
    # Given a delivery signed now (its own header verifies)
    make_tenant("acme")
    body = json.dumps(_failed())
    good = webhook_request(body, at=stripe.clock.now)["headers"]["Stripe-Signature"]
    t, v1 = good.removeprefix("t=").split(",v1=")
    # When the same parts arrive in any other spelling
    for header in (
        f"t={t}, v1={v1}",
        f"t={t},v1={v1},",
        f"v1={v1},t={t}",
        f"t={t},v1={v1.upper()}",
        f"t={t},v1={v1},extra=1",
        f"t=+{t},v1={v1}",
        f"t={t}\n,v1={v1}",
        f"t={t},v1={v1} ",
    ):
        status, response = stripe.deliver(body, signature=header)
        # Then 400 and nothing stored; only the exact header passes
        assert status == 400 and response["error"] == "invalid_signature", header
    assert _stored_nothing()
    assert stripe.deliver(body, signature=good)[0] == 200
