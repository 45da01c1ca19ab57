"""The delivery log and resend, through the delivery Lambda (moto SQS and DynamoDB, a real HTTP
receiver) and the webhook endpoints routes (the local runner's HTTP front): each attempt is logged
with its outcome, newest first, paged; a resend delivers the same id and the same bytes again, signed
anew and verifying with ``usage_tracker.verify_signature``."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import pytest

from billing.adapters.aws.webhook_queue import decode, encode
from billing.outgoing_webhooks.delivery import Message
from billing.outgoing_webhooks.endpoints import EndpointRequest
from billing.runtime import container
from billing.tenants.access import PLATFORM
from billing_local.http_api import LocalApi, serving, template_routes
from billing_local.runner import LocalContext, load_module, sqs_records
from tests.outgoing_webhooks.test_relay import _fast_sender, drain

PLATFORM_KEY, TENANT_KEY = "platform-secret", "tenant-secret"


@pytest.fixture
def app():
    return load_module("webhook_delivery")


@pytest.fixture
def endpoint(env, receiver):
    created, receiver.secret = container.webhook_endpoint_service().register(
        EndpointRequest(url=receiver.url, event_types=["invoice.paid"]), PLATFORM
    )
    container.override(webhook_sender=_fast_sender())
    return created


@pytest.fixture
def api(env):
    local = LocalApi(
        template_routes(["webhook_endpoints"]), {PLATFORM_KEY: "platform-key", TENANT_KEY: "acme-key"}
    )
    with serving(local) as url:

        def call(method: str, path: str, key: str = PLATFORM_KEY) -> tuple[int, Any]:
            request = urllib.request.Request(
                url + path, data=b"" if method == "POST" else None, method=method
            )
            request.add_header("x-api-key", key)
            try:
                with urllib.request.urlopen(request, timeout=30) as answer:
                    return answer.status, json.loads(answer.read())
            except urllib.error.HTTPError as refused:
                return refused.code, json.loads(refused.read())

        yield call


def run(app, records: list[dict]) -> dict:
    return app.handler(records, LocalContext(function_name="webhook-delivery"))


def attempt_again(app, message: Message) -> None:
    """What SQS does once a retry's delay is over: hand the message back to the Lambda."""
    assert run(
        app, sqs_records([{"MessageId": "m", "ReceiptHandle": "r", "MD5OfBody": "", "Body": encode(message)}])
    ) == {"batchItemFailures": []}


def test_an_endpoint_answering_500_then_200_has_two_log_entries(env, endpoint, receiver, app, api):
    # Given an endpoint that answers 500, then 200
    receiver.script = [500]
    container.webhook_dispatcher().publish("invoice.paid", "in_1", {"id": "in_1"})
    [queued] = drain(env.settings.webhook_delivery_queue_url)
    message = decode(queued["Body"])
    # When the first attempt is made, and the retry after its delay
    assert run(app, sqs_records([queued])) == {"batchItemFailures": []}
    attempt_again(app, Message(message.message_id, endpoint.id, "invoice.paid", message.body, attempts=1))
    # Then the log shows both attempts, newest first, with what each got
    status, page = api("GET", f"/v1/webhook-endpoints/{endpoint.id}/deliveries")
    assert status == 200 and page["next_cursor"] is None
    got = [(d["message_id"], d["attempt"], d["status"], d["delivered"]) for d in page["deliveries"]]
    assert got == [(message.message_id, 2, 200, True), (message.message_id, 1, 500, False)]
    assert all(d["event_type"] == "invoice.paid" and d["duration_ms"] >= 0 for d in page["deliveries"])
    # And a page of one gives a cursor to the next, which holds the older attempt
    status, first = api("GET", f"/v1/webhook-endpoints/{endpoint.id}/deliveries?limit=1")
    assert status == 200 and [d["attempt"] for d in first["deliveries"]] == [2]
    status, second = api(
        "GET",
        f"/v1/webhook-endpoints/{endpoint.id}/deliveries?limit=1&cursor="
        + urllib.parse.quote(first["next_cursor"]),
    )
    assert status == 200 and [d["attempt"] for d in second["deliveries"]] == [1]


def test_a_resend_delivers_the_same_id_and_body_again_signed_anew(env, endpoint, receiver, app, api):
    # Given a message delivered once
    container.webhook_dispatcher().publish("invoice.paid", "in_2", {"id": "in_2", "status": "paid"})
    assert run(app, sqs_records(drain(env.settings.webhook_delivery_queue_url))) == {"batchItemFailures": []}
    [first_id], [first_body] = receiver.ids, receiver.bodies
    # When the SaaS asks for it once more
    status, answer = api("POST", f"/v1/webhook-endpoints/{endpoint.id}/deliveries/{first_id}/resend")
    assert status == 202 and answer["message_id"] == first_id and answer["queued"] is True
    assert run(app, sqs_records(drain(env.settings.webhook_delivery_queue_url))) == {"batchItemFailures": []}
    # Then the receiver got the same id and the same bytes again, and both verified
    assert receiver.ids == [first_id, first_id] and receiver.bodies == [first_body, first_body]
    assert len(receiver.verified) == 2 and receiver.verified[1]["data"] == {"id": "in_2", "status": "paid"}
    # And the log shows the resend as a new first attempt
    _, page = api("GET", f"/v1/webhook-endpoints/{endpoint.id}/deliveries")
    assert [(d["attempt"], d["delivered"]) for d in page["deliveries"]] == [(1, True), (1, True)]


def test_resend_and_log_refusals(env, endpoint, api):
    # An unknown message or endpoint is a 404
    status, body = api("POST", f"/v1/webhook-endpoints/{endpoint.id}/deliveries/msg_nope/resend")
    assert status == 404 and body["details"][0]["field"] == "message_id"
    assert api("GET", "/v1/webhook-endpoints/ep_000000000000000000000000/deliveries")[0] == 404
    # A bad limit or cursor is a 400 naming it
    status, body = api("GET", f"/v1/webhook-endpoints/{endpoint.id}/deliveries?limit=0")
    assert status == 400 and body["details"][0]["field"] == "limit"
    status, body = api("GET", f"/v1/webhook-endpoints/{endpoint.id}/deliveries?cursor=nope")
    assert status == 400 and body["details"][0]["field"] == "cursor"
    # Only a platform key reads the log or resends
    assert api("GET", f"/v1/webhook-endpoints/{endpoint.id}/deliveries", key=TENANT_KEY)[0] == 403
    assert (
        api("POST", f"/v1/webhook-endpoints/{endpoint.id}/deliveries/msg_x/resend", key=TENANT_KEY)[0] == 403
    )


def test_the_cli_reads_the_log_and_resends(env, endpoint, receiver, app, capsys):
    from billing_cli import run as cli
    from billing_cli.errors import ExitCode

    def billing(argv: list[str], expected: int = ExitCode.OK) -> Any:
        capsys.readouterr()  # the Lambda's own log lines
        code = cli([*argv, "--json"], allow_forward=False)
        out, err = capsys.readouterr()
        assert code == expected, (argv, code, out, err)
        return json.loads(out) if code == ExitCode.OK else err

    # Given a message that failed once with a 500
    receiver.script = [500]
    container.webhook_dispatcher().publish("invoice.paid", "in_3", {"id": "in_3"})
    assert run(app, sqs_records(drain(env.settings.webhook_delivery_queue_url))) == {"batchItemFailures": []}
    # When the operator reads the endpoint's log, Then the attempt is there with its status
    [logged] = billing(["webhooks", "deliveries", endpoint.id])["deliveries"]
    assert (logged["attempt"], logged["status"], logged["delivered"]) == (1, 500, False)
    # When the operator resends it, Then the same id is delivered and verifies
    assert billing(["webhooks", "resend", endpoint.id, logged["message_id"]])["queued"] is True
    queued = drain(env.settings.webhook_delivery_queue_url)
    assert [decode(q["Body"]).message_id for q in queued] == [logged["message_id"]]
    assert run(app, sqs_records(queued)) == {"batchItemFailures": []}
    assert receiver.ids == [logged["message_id"]] * 2 and len(receiver.verified) == 1
    # And an unknown message is "not found"
    assert "no logged message" in billing(["webhooks", "resend", endpoint.id, "msg_nope"], ExitCode.NOT_FOUND)
