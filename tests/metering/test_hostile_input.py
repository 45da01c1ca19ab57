"""POST /v1/events: every hostile input is a 4xx naming the field,
never a 500, and stores nothing."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest

from billing.kernel.periods import iso
from tests.conftest import api_event
from tests.metering.conftest import make_tenant, usage


def nothing_stored(env) -> bool:
    return env.store.query("SELECT count() FROM usage_events")[0][0] == 0


def test_a_body_that_is_not_utf8_is_a_400(env, ingest_app, lambda_context):
    # Given API Gateway delivers every body base64-encoded (BinaryMediaTypes */*)
    make_tenant(quota=10)
    raw = b'{"events":[{"event_id":"\xe9"}]}'
    event = api_event(raw, base64=True)
    # When the bytes are not UTF-8
    response = ingest_app.handler(event, lambda_context)
    # Then 400 naming the body
    assert response["statusCode"] == 400
    assert json.loads(response["body"])["details"][0]["field"] == "body"
    assert nothing_stored(env)


def test_a_body_flagged_base64_that_is_not_is_a_400(env, ingest_app, lambda_context):
    event = api_event("{}")
    event["isBase64Encoded"] = True
    event["body"] = "%%%not base64%%%"
    assert ingest_app.handler(event, lambda_context)["statusCode"] == 400


@pytest.mark.parametrize(
    "timestamp",
    [
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
        "9999-12-31T23:59:59Z",
        "1999-12-31T23:59:59Z",
        "2100-01-01T00:00:00Z",
    ],
)
def test_instants_outside_the_accepted_range_are_a_400_naming_the_timestamp(env, post, timestamp):
    make_tenant(quota=10)
    status, body, _ = post({"events": [usage("e-1", ts=timestamp)]})
    assert status == 400 and body["details"][0]["field"] == "timestamp"
    assert "2000-01-01" in body["details"][0]["reason"] or "RFC 3339" in body["details"][0]["reason"]
    assert nothing_stored(env)


@pytest.mark.parametrize(
    "timestamp",
    [
        "20251103T120000Z",
        "2025-W45-1T12:00:00Z",
        "2025-11-03T12:00:00+01:00:30",
        "2025-11-03 12:00:00Z",
        " 2025-11-03T12:00:00Z",
        "2025-11-03T12:00:00Z ",
        "2025-11-03T12:00:00",
        "2025-11-03",
        "٢٠٢٥-11-03T12:00:00Z",
    ],
)
def test_timestamps_that_are_not_rfc3339_are_a_400(env, post, timestamp):
    make_tenant(quota=10)
    status, body, _ = post({"events": [usage("e-1", ts=timestamp)]})
    assert status == 400 and body["details"][0]["field"] == "timestamp", body
    assert nothing_stored(env)


def test_events_dated_in_the_future_beyond_clock_skew_are_a_400(env, post):
    make_tenant(quota=10, plan_from="2025-01-01T00:00:00Z")
    soon = iso(datetime.now(UTC) + timedelta(minutes=2))
    status, _, _ = post({"events": [usage("ok", ts=soon)]})
    assert status == 202  # within the 5 minutes of clock skew
    for i, ts in enumerate(["2099-01-01T00:00:00Z", iso(datetime.now(UTC) + timedelta(minutes=10))]):
        status, body, _ = post({"events": [usage(f"late-{i}", ts=ts)]})
        assert (
            status == 400
            and body["details"][0]["field"] == "timestamp"
            and "future" in body["details"][0]["reason"]
        )


def test_a_charset_other_than_utf8_is_a_415(env, post):
    make_tenant(quota=10)
    status, body, _ = post({"events": [usage("e-1")]}, content_type="application/json; charset=latin-1")
    assert status == 415 and body["details"][0]["field"] == "Content-Type"
    assert post({"events": [usage("e-2")]}, content_type="application/json; charset=UTF-8")[0] == 202


def test_json_nested_1000_levels_deep_is_a_400(env, post):
    make_tenant(quota=10)
    deep = "[" * 1000 + "]" * 1000
    status, body, _ = post('{"events": ' + deep + "}")
    assert status == 400 and body["details"][0]["field"] == "body"
    status, body, _ = post({"events": [{**usage("e"), "model": json.loads("[" * 40 + "]" * 40)}]})
    assert status == 400


def test_a_request_without_request_context_is_a_401_not_a_500(env, ingest_app, lambda_context):
    event = api_event({"events": [usage("e-1")]})
    del event["requestContext"]
    response = ingest_app.handler(event, lambda_context)
    assert response["statusCode"] == 401


@pytest.mark.parametrize(
    "field, value",
    [
        ("input_tokens", "5"),
        ("input_tokens", True),
        ("input_tokens", 5.0),
        ("type", 1),
        ("model", 7),
        ("event_id", 12),
    ],
)
def test_request_fields_are_strictly_typed(env, post, field, value):
    make_tenant(quota=10)
    status, body, _ = post({"events": [{**usage("e-1"), field: value}]})
    assert status == 400 and body["details"][0]["field"] == field, body


def test_a_tenant_key_cannot_tell_unknown_tenants_from_foreign_ones(env, post):
    # Given a tenant with its own key, and another tenant
    make_tenant("acme-corp", quota=10, api_key_ids=["acme-key"])
    make_tenant("other", quota=10)
    # When acme's key writes for the other tenant, and for a tenant that does not exist
    foreign = post({"events": [usage("e-1", tenant_id="other")]}, api_key_id="acme-key")
    unknown = post({"events": [usage("e-1", tenant_id="ghost")]}, api_key_id="acme-key")
    # Then both answers are the same 403
    assert foreign[0] == unknown[0] == 403
    assert foreign[1]["error"] == unknown[1]["error"]
    # And the platform key still learns that the tenant is unknown
    assert post({"events": [usage("e-1", tenant_id="ghost")]})[0] == 404


def test_a_base64_body_of_a_valid_batch_is_accepted(env, ingest_app, lambda_context):
    make_tenant(quota=10)
    raw = json.dumps({"events": [usage("e-1")]}).encode()
    response = ingest_app.handler(api_event(raw, base64=True), lambda_context)
    assert response["statusCode"] == 202
    assert base64  # the module is used to build the hostile variants above
