"""Secrets as a new stack has them: CloudFormation generates a random value that operators replace."""

from __future__ import annotations

import pytest

from billing.runtime.settings import Settings


def test_a_stripe_secret_still_holding_its_generated_value_is_refused_without_calling_stripe(monkeypatch):
    # Given a freshly deployed stack: the Stripe secret holds what GenerateSecretString made
    from aws_lambda_powertools.utilities import parameters

    from billing.adapters.stripe.gateway import secret_key
    from billing.kernel.errors import ServiceUnavailable

    monkeypatch.setattr(parameters, "get_secret", lambda name, max_age: "Qx7!generated-by-cloudformation")
    # When the key is read, Then it is refused as a 503 naming the setting (no request is made)
    with pytest.raises(ServiceUnavailable) as refused:
        secret_key(Settings())
    assert refused.value.details[0]["field"] == "STRIPE_SECRET_NAME"
    # And a real key is returned as stored
    monkeypatch.setattr(parameters, "get_secret", lambda name, max_age: b"rk_live_abc\n")
    assert secret_key(Settings()) == "rk_live_abc"
