"""Portal links: who may create them, how long they live, and that a token shows one tenant, reads only."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from billing.portal.tokens import PortalLinkInvalid, PortalTokens, _b64, _unb64
from billing.runtime import container
from billing_local.template import load_template, resources_of_type
from tests.portal.conftest import NOW


def test_the_platform_key_gets_a_link_that_expires_in_one_hour_by_default(portal):
    # When the platform asks for acme's link without a body
    response = portal.link("acme")
    # Then it gets the page URL with a token, expiring one hour from now
    assert response["statusCode"] == 201, response
    body = json.loads(response["body"])
    assert body["url"].startswith("https://") and "/v1/portal?token=" in body["url"]
    assert body["expires_at"] == "2025-11-20T16:30:00Z"
    # And asking for 24 hours is allowed, 24 hours and a second is a 400 naming the field
    assert (
        json.loads(portal.link("acme", {"expires_in": 86400})["body"])["expires_at"] == "2025-11-21T15:30:00Z"
    )
    refused = portal.link("acme", {"expires_in": 86401})
    assert refused["statusCode"] == 400
    assert json.loads(refused["body"])["details"][0]["field"] == "expires_in"


@pytest.mark.parametrize(
    "body, field",
    [
        ({"expires_in": "3600"}, "expires_in"),
        ({"expires_in": 10}, "expires_in"),
        ({"tenant": "x"}, "tenant"),
        ([1], "body"),
        ("{not json", "body"),
    ],
)
def test_bad_link_requests_are_400s_naming_the_field(portal, body, field):
    response = portal.link("acme", body if isinstance(body, str) else json.dumps(body))
    assert response["statusCode"] == 400, response
    assert json.loads(response["body"])["details"][0]["field"] == field


def test_only_the_platform_key_may_create_links(portal):
    # Given acme's own API key
    tenant = container.tenants().get("acme")
    container.tenants().save(tenant.model_copy(update={"api_key_ids": ["acme-key"]}))
    # Then the tenant's key is refused (403), no key is 401, an unknown tenant is 404
    assert portal.link("acme", api_key_id="acme-key")["statusCode"] == 403
    assert portal.link("acme", api_key_id=None)["statusCode"] == 401
    assert portal.link("nobody")["statusCode"] == 404


def test_expired_altered_and_foreign_tokens_get_403_and_show_nothing(portal, clock):
    token = portal.token("acme")
    payload, signature = token.split(".")
    # A payload naming another tenant, with acme's signature
    claims = json.loads(_unb64(payload))
    forged = _b64(json.dumps({**claims, "sub": "globex"}, separators=(",", ":"), sort_keys=True).encode())
    # A token signed with another key
    other = PortalTokens(lambda: b"x" * 48, lambda: NOW).issue("acme")[0]
    bad = {
        "altered tenant": f"{forged}.{signature}",
        "altered signature": f"{payload}.{signature[:-2]}AA",
        "other key": other,
        "garbage": "not-a-token",
        "empty": "",
    }
    for name, value in bad.items():
        for response in (portal.page(value), portal.data(value)):
            assert response["statusCode"] == 403, name
            assert "acme" not in response["body"].lower() and "globex" not in response["body"].lower(), name
            assert "$" not in response["body"], name
    assert portal.page(None)["statusCode"] == 403
    # And the genuine token works until it expires, then gets 403 with nothing of the tenant
    assert portal.page(token)["statusCode"] == 200
    clock(NOW + timedelta(hours=1))
    expired = portal.page(token)
    assert expired["statusCode"] == 403
    assert "expired" in expired["body"] and "Acme" not in expired["body"]
    assert expired["multiValueHeaders"]["Content-Type"] == ["text/html; charset=utf-8"]
    assert portal.data(token)["statusCode"] == 403


def test_a_token_for_acme_never_shows_globex(portal):
    token = portal.token("acme")
    # Even when the request names globex every way it can, the page is acme's
    response = portal.call(
        "GET",
        "/v1/portal",
        api_key_id=None,
        query={"token": token, "tenant_id": "globex", "tenant": "globex"},
        path_parameters={"tenant_id": "globex"},
    )
    assert response["statusCode"] == 200
    assert "globex" not in response["body"].lower() and "Acme" in response["body"]
    data = json.loads(portal.data(token)["body"])
    assert data["tenant_id"] == "acme" and "globex" not in json.dumps(data)


def test_the_token_opens_no_write_and_no_other_route(portal):
    token = portal.token("acme")
    # The portal function's keyless routes are GETs (the only write, portal-link, needs the platform key)
    functions = resources_of_type(load_template(), "AWS::Serverless::Function")
    events = functions["TenantPortalFunction"]["Properties"]["Events"].values()
    keyless = [
        e["Properties"] for e in events if e["Properties"].get("Auth", {}).get("ApiKeyRequired") is False
    ]
    assert {(e["Method"], e["Path"]) for e in keyless} == {("get", "/v1/portal"), ("get", "/v1/portal/data")}
    # And a token presented to the link route instead of a key is not a credential
    response = portal.call(
        "POST",
        "/v1/tenants/acme/portal-link",
        api_key_id=None,
        headers={"Authorization": f"Bearer {token}"},
        path_parameters={"tenant_id": "acme"},
    )
    assert response["statusCode"] == 401


def test_a_token_verifies_against_the_secret_in_secrets_manager(portal):
    # Given a token issued now, When the secret is replaced (rotation) and the cache forgotten
    token = portal.token("acme")
    import boto3
    from aws_lambda_powertools.utilities import parameters

    boto3.client("secretsmanager").put_secret_value(
        SecretId=container.settings().portal_secret_name, SecretString="r" * 64
    )
    parameters.clear_caches()
    # Then the old link no longer opens
    with pytest.raises(PortalLinkInvalid):
        container.portal_tokens().verify(token)


def test_changing_any_character_of_a_token_makes_it_invalid():
    # Given a token signed with a key
    tokens = PortalTokens(lambda: b"k" * 48, lambda: NOW)
    token, _ = tokens.issue("acme")
    assert tokens.verify(token).tenant_id == "acme"
    # When any one character is replaced (by each of two others), Then it is refused
    for i, char in enumerate(token):
        for other in {"A", "x", "-"} - {char}:
            with pytest.raises(PortalLinkInvalid):
                tokens.verify(token[:i] + other + token[i + 1 :])
    # And a token cut short or extended is refused too
    for bad in (token[:-1], token + "A", token.replace(".", "")):
        with pytest.raises(PortalLinkInvalid):
            tokens.verify(bad)


@pytest.mark.parametrize(
    "tail",
    ["é", "\u00e9A", "Ω" * 43, "\U0001f600", "\ud800"],
    ids=["accent", "accent-and-ascii", "signature-length", "emoji", "lone-surrogate"],
)
def test_a_token_with_a_non_ascii_signature_is_refused_like_any_altered_token(portal, tail):
    # Given a genuine token whose signature is replaced by non-ASCII text
    payload = portal.token("acme").split(".")[0]
    token = f"{payload}.{tail}"
    # When it is presented to the page, and to the data route as ?token= and as a Bearer header
    responses = {
        "page": portal.page(token),
        "data ?token=": portal.call("GET", "/v1/portal/data", api_key_id=None, query={"token": token}),
        "data bearer": portal.data(token),
    }
    # Then each is the 403 of an altered link, never a 500, and shows nothing of the tenant
    for name, response in responses.items():
        assert response["statusCode"] == 403, (name, response)
        assert "acme" not in response["body"].lower(), name
    # And a non-ASCII payload with any signature is refused the same way
    assert portal.page(f"é{payload}.AAAA")["statusCode"] == 403
    assert portal.page(f"\ud800{payload}.AAAA")["statusCode"] == 403
