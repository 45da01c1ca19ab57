"""verify_signature: a receiver's check of a Standard Webhooks delivery, byte-compatible with the
reference ``standardwebhooks`` library in both directions."""

from __future__ import annotations

import base64
import json
import os
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook

from usage_tracker import WebhookVerificationError, verify_signature
from usage_tracker.webhooks import sign

SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()
OTHER = "whsec_" + base64.b64encode(os.urandom(32)).decode()
NOW = 1_780_000_000
BODY = json.dumps({"type": "invoice.paid", "version": 1, "sequence": 3, "data": {"id": "in_1"}})


def headers(signature: str, *, msg_id: str = "msg_1", at: int = NOW) -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(at), "webhook-signature": signature}


def test_a_message_signed_by_the_reference_library_verifies():
    # Given a delivery signed by standardwebhooks
    signature = Webhook(SECRET).sign("msg_1", datetime.fromtimestamp(NOW, UTC), BODY)
    # When our helper verifies it
    payload = verify_signature(BODY.encode(), headers(signature), SECRET, now=NOW + 10)
    # Then the payload comes back parsed
    assert payload["type"] == "invoice.paid" and payload["sequence"] == 3


def test_a_message_we_sign_verifies_with_the_reference_library():
    # The reference library checks the timestamp against the real clock: sign at the real time.
    now = int(datetime.now(UTC).timestamp())
    signature = sign(SECRET, "msg_1", now, BODY)
    assert Webhook(SECRET).verify(BODY, headers(signature, at=now))["version"] == 1


def test_header_names_are_matched_whatever_their_case():
    signed = {k.title(): v for k, v in headers(sign(SECRET, "msg_1", NOW, BODY)).items()}
    assert verify_signature(BODY, signed, SECRET, now=NOW)["data"] == {"id": "in_1"}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda h, b: (h, b.replace("in_1", "in_2")), "no_matching_signature"),
        (lambda h, b: ({**h, "webhook-id": "msg_2"}, b), "no_matching_signature"),
        (lambda h, b: ({**h, "webhook-timestamp": str(NOW - 301)}, b), "timestamp_too_old"),
        (lambda h, b: ({**h, "webhook-timestamp": str(NOW + 301)}, b), "timestamp_too_new"),
        (lambda h, b: ({**h, "webhook-timestamp": "soon"}, b), "bad_timestamp"),
        (lambda h, b: ({k: v for k, v in h.items() if k != "webhook-signature"}, b), "missing_header"),
        (lambda h, b: ({**h, "webhook-signature": "v1,AAAA"}, b), "no_matching_signature"),
        (
            lambda h, b: ({**h, "webhook-signature": "v2," + h["webhook-signature"][3:]}, b),
            "no_matching_signature",
        ),
    ],
    ids=["tampered body", "other id", "old", "future", "bad timestamp", "no signature", "forged", "v2"],
)
def test_a_delivery_that_is_not_authentic_or_not_fresh_is_refused(change, reason):
    # Given a genuine delivery, then changed on the way
    genuine = headers(sign(SECRET, "msg_1", NOW, BODY))
    changed_headers, changed_body = change(genuine, BODY)
    # When it is verified, Then it is refused with a reason
    with pytest.raises(WebhookVerificationError) as refused:
        verify_signature(changed_body, changed_headers, SECRET, now=NOW)
    assert refused.value.reason == reason


def test_the_wrong_secret_is_refused():
    with pytest.raises(WebhookVerificationError, match="no signature matches"):
        verify_signature(BODY, headers(sign(SECRET, "msg_1", NOW, BODY)), OTHER, now=NOW)


def test_during_a_rotation_either_secret_verifies_a_message_signed_with_both():
    # Given a message signed with the old and the new secret (two v1 entries)
    both = f"{sign(OTHER, 'msg_1', NOW, BODY)} {sign(SECRET, 'msg_1', NOW, BODY)}"
    # Then a receiver holding either one accepts it
    assert verify_signature(BODY, headers(both), SECRET, now=NOW)["version"] == 1
    assert verify_signature(BODY, headers(both), OTHER, now=NOW)["version"] == 1
    # And a receiver holding several secrets accepts a message signed with any one of them
    assert verify_signature(BODY, headers(sign(OTHER, "msg_1", NOW, BODY)), [SECRET, OTHER], now=NOW)


def test_a_tolerance_can_be_widened():
    old = headers(sign(SECRET, "msg_1", NOW - 3600, BODY), at=NOW - 3600)
    assert verify_signature(BODY, old, SECRET, now=NOW, tolerance=3601)["type"] == "invoice.paid"
