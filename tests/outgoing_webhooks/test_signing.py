"""A delivery our signer builds verifies with our receiver helper (usage_tracker.verify_signature)
and with the reference ``standardwebhooks`` library; anything changed on the way is refused; during
a rotation's overlap it verifies with the old and with the new secret."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks import Webhook
from standardwebhooks import WebhookVerificationError as ReferenceRefusal

from billing.outgoing_webhooks.endpoints import SigningSecrets
from billing.outgoing_webhooks.signing import build_delivery, new_secret
from usage_tracker import WebhookVerificationError, verify_signature

INVOICE = {"id": "in_1", "tenant_id": "acme", "status": "paid", "amount_due": "12.50", "currency": "usd"}


def delivery_now(secrets_in_force: list[str], **changes):
    options = dict(
        object_id="in_1", sequence=4, data=INVOICE, secrets_in_force=secrets_in_force, at=datetime.now(UTC)
    )
    return build_delivery("invoice.paid", **{**options, **changes})


def test_a_delivery_verifies_with_our_helper_and_with_the_standardwebhooks_library():
    # Given an endpoint secret and a delivery our signer built for it
    secret = new_secret()
    delivery = delivery_now([secret])
    # When the receiver verifies it with our helper, and with the reference library
    ours = verify_signature(delivery.body, delivery.headers, secret)
    reference = Webhook(secret).verify(delivery.body, delivery.headers)
    # Then both accept it and read the same payload: type, version, per-object sequence, the object
    assert ours == reference
    assert ours == {"type": "invoice.paid", "version": 1, "object_id": "in_1", "sequence": 4, "data": INVOICE}
    assert delivery.headers["webhook-id"].startswith("msg_")
    assert delivery.headers["webhook-timestamp"] == str(delivery.timestamp)


def test_a_secret_is_whsec_and_32_random_bytes():
    secret = new_secret()
    assert secret.startswith("whsec_") and secret != new_secret()
    assert len(Webhook(secret)._whsecret) == 32


def test_a_tampered_body_is_refused_by_both():
    secret = new_secret()
    delivery = delivery_now([secret])
    tampered = delivery.body.replace(b'"paid"', b'"void"')
    with pytest.raises(WebhookVerificationError):
        verify_signature(tampered, delivery.headers, secret)
    with pytest.raises(ReferenceRefusal):
        Webhook(secret).verify(tampered, delivery.headers)


def test_an_old_delivery_is_refused_by_both():
    # Given a delivery signed ten minutes ago (a replay)
    secret = new_secret()
    delivery = delivery_now([secret], at=datetime.now(UTC) - timedelta(minutes=10))
    with pytest.raises(WebhookVerificationError, match="too old"):
        verify_signature(delivery.body, delivery.headers, secret)
    with pytest.raises(ReferenceRefusal, match="too old"):
        Webhook(secret).verify(delivery.body, delivery.headers)


def test_the_wrong_secret_is_refused_by_both():
    delivery = delivery_now([new_secret()])
    other = new_secret()
    with pytest.raises(WebhookVerificationError):
        verify_signature(delivery.body, delivery.headers, other)
    with pytest.raises(ReferenceRefusal):
        Webhook(other).verify(delivery.body, delivery.headers)


def test_during_a_rotation_overlap_a_delivery_verifies_with_the_old_and_the_new_secret():
    # Given an endpoint whose secret was rotated an hour ago with a day of overlap
    now = datetime.now(UTC)
    old, new = new_secret(), new_secret()
    material = SigningSecrets(current=new, previous=old, previous_expires_at=now + timedelta(hours=23))
    # When a delivery is signed with the secrets in force
    delivery = delivery_now(material.in_force(now))
    # Then it carries two v1 signatures, and a receiver holding either secret accepts it
    assert [s[:3] for s in delivery.headers["webhook-signature"].split(" ")] == ["v1,", "v1,"]
    for secret in (old, new):
        assert verify_signature(delivery.body, delivery.headers, secret)["sequence"] == 4
        assert Webhook(secret).verify(delivery.body, delivery.headers)["sequence"] == 4
    # And once the overlap is over only the new secret signs
    after = material.in_force(now + timedelta(hours=24))
    assert after == [new]
    later = delivery_now(after)
    with pytest.raises(WebhookVerificationError):
        verify_signature(later.body, later.headers, old)


def test_only_the_documented_event_types_can_be_sent():
    with pytest.raises(ValueError, match="unknown webhook event type"):
        build_delivery(
            "invoice.deleted",
            object_id="x",
            sequence=1,
            data={},
            secrets_in_force=[new_secret()],
            at=datetime.now(UTC),
        )


def test_the_body_is_compact_json_with_money_as_text():
    delivery = delivery_now([new_secret()])
    assert json.loads(delivery.body)["data"]["amount_due"] == "12.50"
    assert b'", "' not in delivery.body and b'": ' not in delivery.body
