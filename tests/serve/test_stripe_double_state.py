"""The Stripe double of `billing serve` saved to its data directory: a double started on the saved
state has the same objects, replays the same idempotency keys and never reuses an id."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from billing_local.stripe_double import StripeDouble


def call(
    double: StripeDouble, method: str, path: str, form: dict[str, str] | None = None, key: str = ""
) -> Any:
    request = urllib.request.Request(
        double.api_base + path,
        method=method,
        data=urllib.parse.urlencode(form).encode() if form is not None else None,
        headers={"Authorization": "Bearer sk_test_double", **({"Idempotency-Key": key} if key else {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read())


def test_a_double_started_on_the_saved_state_has_every_object_and_idempotency_key(tmp_path: Path):
    state = tmp_path / "stripe.json"
    # Given a double saving its state, with a customer created under an idempotency key
    with StripeDouble(state_path=state) as first:
        status, _, customer = call(
            first,
            "POST",
            "/v1/customers",
            {"email": "a@example.com", "metadata[tenant_id]": "acme"},
            key="k1",
        )
        assert status == 200
    # When a new double starts on the saved state (the old one gone, as after a crash)
    with StripeDouble(state_path=state) as second:
        # Then the customer is there
        assert call(second, "GET", f"/v1/customers/{customer['id']}")[2] == customer
        # And the same request under the same key is replayed, not done again
        status, headers, again = call(
            second,
            "POST",
            "/v1/customers",
            {"email": "a@example.com", "metadata[tenant_id]": "acme"},
            key="k1",
        )
        assert status == 200 and again == customer and headers.get("Idempotent-Replayed") == "true"
        # And a new object gets a new id, and the customers' list holds both
        status, _, other = call(second, "POST", "/v1/customers", {"email": "b@example.com"})
        assert status == 200 and other["id"] != customer["id"]
        listed = call(second, "GET", "/v1/customers")[2]["data"]
        assert {c["id"] for c in listed} == {customer["id"], other["id"]}
    # And the file on disk is whole JSON (written by rename, never in place)
    assert set(json.loads(state.read_text())["customers"]) == {customer["id"], other["id"]}
    assert not state.with_name("stripe.json.tmp").exists()
