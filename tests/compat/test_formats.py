"""The peer formats' translation and credentials without a server: what each field becomes, what
is refused and where the refusal points, and the API key directory against API Gateway (moto)."""

from __future__ import annotations

import base64
import gzip
import json
from datetime import UTC, datetime
from decimal import Decimal

import boto3
import pytest
from moto import mock_aws

from billing.adapters.aws.api_keys import ApiGatewayKeys
from billing.kernel.errors import InvalidRequest, PayloadTooLarge, UnsupportedMediaType
from billing.kernel.periods import iso
from billing.metering.formats import Limits, lago, openmeter, segment
from billing.tenants.credentials import presented_key

NOW = datetime(2025, 11, 3, 12, 0, tzinfo=UTC)
LIMITS = Limits(max_bytes=10_000, max_events=3, event_types={"query", "embedding", "storage", "gpu_job"})


def body(document: object) -> bytes:
    return json.dumps(document).encode()


def test_a_cloud_event_becomes_our_event_its_measures_lifted_out_of_data():
    cloud_event = {
        "id": "evt-1",
        "source": "app",
        "specversion": "1.0",
        "type": "query",
        "subject": "acme",
        "time": "2025-11-03T11:59:00Z",
        "data": {"model": "gpt-4o-mini", "input_tokens": 12, "output_tokens": 3, "region": "eu"},
    }
    [event] = openmeter.events(body(cloud_event), "application/cloudevents+json", LIMITS, NOW)
    assert (event.event_id, event.tenant_id, event.type) == ("evt-1", "acme", "query")
    assert (event.model, event.input_tokens, event.output_tokens) == ("gpt-4o-mini", 12, 3)
    assert event.properties == {"region": "eu"}
    assert event.timestamp == datetime(2025, 11, 3, 11, 59, tzinfo=UTC)


def test_a_cloud_event_without_time_is_dated_when_it_arrives():
    cloud_event = {"id": "e", "source": "s", "specversion": "1.0", "type": "gpu_job", "subject": "acme"}
    [event] = openmeter.events(body([cloud_event]), "application/cloudevents-batch+json", LIMITS, NOW)
    assert event.timestamp == NOW and event.properties == {}


def test_openmeter_problems_name_the_cloudevents_attribute_and_the_place():
    good = {"id": "e1", "source": "s", "specversion": "1.0", "type": "query", "subject": "acme"}
    bad = {**good, "id": "e2", "subject": None, "data": {"gpu seconds": 1}}
    with pytest.raises(InvalidRequest) as caught:
        openmeter.events(body([good, bad]), "application/cloudevents-batch+json", LIMITS, NOW)
    fields = sorted(p["field"] for p in caught.value.details)
    assert fields == ["[1].data.gpu seconds", "[1].subject"]
    answer = openmeter.refused(caught.value)
    assert answer.status == 400 and answer.content_type == "application/problem+json"
    assert answer.body["title"] == "Bad Request"


def test_a_batch_media_type_needs_an_array_and_other_types_are_415():
    event = {"id": "e1", "source": "s", "specversion": "1.0", "type": "query", "subject": "acme"}
    with pytest.raises(InvalidRequest):
        openmeter.events(body(event), "application/cloudevents-batch+json", LIMITS, NOW)
    with pytest.raises(UnsupportedMediaType):
        openmeter.events(body(event), "text/plain", LIMITS, NOW)


@pytest.mark.parametrize(
    "stamp, expected",
    [
        (1762171200, "2025-11-03T12:00:00Z"),
        ("1762171200.5", "2025-11-03T12:00:00.500Z"),
        (Decimal("1762171200.25"), "2025-11-03T12:00:00.250Z"),
        (None, "2025-11-03T12:00:00Z"),
    ],
)
def test_lago_timestamps_are_unix_seconds(stamp, expected):
    event = {
        "transaction_id": "t1",
        "external_subscription_id": "acme",
        "code": "gpu_job",
        "timestamp": stamp,
    }
    raw = json.dumps({"event": event}, default=str).encode()
    [ours] = lago.events(raw, "application/json", LIMITS, NOW, batch=False)
    assert iso(ours.timestamp) == expected and ours.tenant_id == "acme"


@pytest.mark.parametrize("stamp", [-1, "soon", True, 10**30, "NaN"])
def test_a_lago_timestamp_that_is_no_unix_time_is_refused_where_it_is(stamp):
    event = {"transaction_id": "t1", "external_subscription_id": "acme", "code": "query", "timestamp": stamp}
    with pytest.raises(InvalidRequest) as caught:
        lago.events(body({"events": [event]}), "application/json", LIMITS, NOW, batch=True)
    assert [p["field"] for p in caught.value.details] == ["events[0].timestamp"]
    answer = lago.refused(caught.value)
    assert answer.status == 422 and answer.body["code"] == "validation_errors"
    assert list(answer.body["error_details"]) == ["events[0].timestamp"]


def test_lago_prefers_the_customer_and_refuses_a_price_sent_with_the_event():
    event = {"transaction_id": "t1", "external_customer_id": "acme", "external_subscription_id": "sub_9"}
    event.update(code="gpu_job", timestamp=1762171200)
    [ours] = lago.events(body({"event": event}), "application/json", LIMITS, NOW, batch=False)
    assert ours.tenant_id == "acme"
    with pytest.raises(InvalidRequest) as caught:
        priced = {**event, "precise_total_amount_cents": "12.5"}
        lago.events(body({"event": priced}), "application/json", LIMITS, NOW, batch=False)
    assert [p["field"] for p in caught.value.details] == ["event.precise_total_amount_cents"]


def track(**changes: object) -> dict:
    return {
        "type": "track",
        "messageId": "m1",
        "event": "query",
        "userId": "u1",
        "context": {"groupId": "acme"},
        "timestamp": "2025-11-03T11:00:00+00:00",
        "properties": {"model": "gpt-4o-mini", "input_tokens": 5},
        **changes,
    }


def test_segment_tracks_are_usage_and_other_calls_are_not():
    batch = {"batch": [track(), {"type": "identify", "userId": "u1", "traits": {"plan": "pro"}}]}
    [event] = segment.events(
        body(batch), "application/json", None, LIMITS, NOW, tenant_field="context.groupId", batch=True
    )
    assert (event.event_id, event.tenant_id, event.input_tokens) == ("m1", "acme", 5)
    only_identify = body({"batch": [{"type": "identify", "userId": "u1"}]})
    assert (
        segment.events(
            only_identify, "application/json", None, LIMITS, NOW, tenant_field="userId", batch=True
        )
        == []
    )


def test_segment_tenant_from_a_property_is_not_kept_as_a_property():
    message = track(event="gpu_job", properties={"tenant": "acme", "gpu": "h100"})
    [event] = segment.events(
        body(message), "application/json", None, LIMITS, NOW, tenant_field="properties.tenant", batch=False
    )
    assert event.tenant_id == "acme" and event.properties == {"gpu": "h100"}


def test_segment_problems_name_the_message_field_and_a_gzip_body_is_read_within_the_limit():
    raw = gzip.compress(body({"batch": [track(), track(messageId="m2", event="Order Completed")]}))
    with pytest.raises(InvalidRequest) as caught:
        segment.events(
            raw, "application/json", "gzip", LIMITS, NOW, tenant_field="context.groupId", batch=True
        )
    assert [p["field"] for p in caught.value.details] == ["batch[1].event"]
    assert segment.refused(caught.value).body["code"] == "invalid_request"
    bomb = gzip.compress(b" " * 50_000)
    with pytest.raises(PayloadTooLarge):
        segment.events(bomb, "application/json", "gzip", LIMITS, NOW, tenant_field="userId", batch=True)
    with pytest.raises(InvalidRequest):
        segment.events(
            b"not gzip", "application/json", "gzip", LIMITS, NOW, tenant_field="userId", batch=True
        )


@pytest.mark.parametrize(
    "header, key",
    [
        ("Bearer sk-123", "sk-123"),
        ("bearer   sk-123 ", "sk-123"),
        ("Basic " + base64.b64encode(b"wk-123:").decode(), "wk-123"),
        ("Basic " + base64.b64encode(b"wk-123:ignored").decode(), "wk-123"),
        ("Basic not-base64!", None),
        ("Basic " + base64.b64encode(b":password").decode(), None),
        ("Bearer ", None),
        ("Token sk-123", None),
        ("", None),
        (None, None),
        ("Bearer " + "k" * 129, None),
    ],
)
def test_the_key_in_an_authorization_header(header, key):
    assert presented_key(header) == key


@mock_aws
def test_the_key_directory_knows_the_enabled_keys_of_the_stages_usage_plans():
    apigateway = boto3.client("apigateway", region_name="us-east-1")

    def key(value: str, enabled: bool = True) -> str:
        return apigateway.create_api_key(name=value, value=value, enabled=enabled)["id"]

    in_plan, disabled, other_stage, no_plan = (
        key("key-in-the-plan-0000000"),
        key("key-disabled-000000000", enabled=False),
        key("key-of-another-stage-0"),
        key("key-in-no-plan-00000000"),
    )
    assert no_plan
    plan = apigateway.create_usage_plan(name="dev", apiStages=[{"apiId": "api1", "stage": "dev"}])["id"]
    prod = apigateway.create_usage_plan(name="prod", apiStages=[{"apiId": "api1", "stage": "prod"}])["id"]
    for key_id, plan_id in ((in_plan, plan), (disabled, plan), (other_stage, prod)):
        apigateway.create_usage_plan_key(usagePlanId=plan_id, keyId=key_id, keyType="API_KEY")
    now = [0.0]
    directory = ApiGatewayKeys(client=apigateway, clock=lambda: now[0])

    def lookup(value: str) -> str | None:
        return directory.key_id(value, api_id="api1", stage="dev")

    assert lookup("key-in-the-plan-0000000") == in_plan
    assert lookup("key-disabled-000000000") is None
    assert lookup("key-of-another-stage-0") is None
    assert lookup("key-in-no-plan-00000000") is None
    # A key added later is found once the miss may refresh (not sooner: random keys cost no reads)
    late = key("key-added-later-0000000")
    apigateway.create_usage_plan_key(usagePlanId=plan, keyId=late, keyType="API_KEY")
    now[0] = 10.0
    assert lookup("key-added-later-0000000") is None
    now[0] = 31.0
    assert lookup("key-added-later-0000000") == late


def test_a_segment_problem_points_at_the_message_in_the_batch_past_other_calls():
    batch = {
        "batch": [
            {"type": "identify", "userId": "u1"},
            track(),
            track(messageId="m2", event="Order Completed"),
        ]
    }
    with pytest.raises(InvalidRequest) as caught:
        segment.events(
            body(batch), "application/json", None, LIMITS, NOW, tenant_field="context.groupId", batch=True
        )
    assert [(p["index"], p["field"]) for p in caught.value.details] == [(2, "batch[2].event")]


def test_every_problem_of_a_lago_batch_is_listed_at_once():
    bad_stamp = {
        "transaction_id": "t1",
        "external_subscription_id": "acme",
        "code": "query",
        "timestamp": "soon",
    }
    bad_code = {"transaction_id": "t2", "external_subscription_id": "acme", "code": "Page Viewed"}
    with pytest.raises(InvalidRequest) as caught:
        lago.events(body({"events": [bad_stamp, bad_code]}), "application/json", LIMITS, NOW, batch=True)
    assert sorted(p["field"] for p in caught.value.details) == ["events[0].timestamp", "events[1].code"]


def test_a_batch_partly_refused_for_quota_is_a_429_in_every_format():
    from billing.metering.claims import IngestResult

    result = IngestResult(
        accepted=["e1"],
        rejected_for_quota=[{"event_id": "e2", "tenant_id": "acme", "timestamp": "2025-11-03T12:00:00Z"}],
        quota={"tenant_id": "acme", "limit": 100, "used": 100, "resets_at": "2025-12-01T00:00:00Z"},
    )
    answers = [
        openmeter.accepted(result),
        lago.accepted(result, [], NOW, batch=True),
        segment.accepted(result),
    ]
    assert [a.status for a in answers] == [429, 429, 429]
    for answer in answers:
        assert "1 event(s) refused" in json.dumps(answer.body) and "e2" in json.dumps(answer.body)
    assert openmeter.accepted(IngestResult(accepted=["e1"])).status == 204
