"""The delivery Lambda through the template's queues (moto SQS) and a real HTTP receiver: a
published event is queued, attempted and delivered; a failed attempt goes back to the queue delayed
by its backoff; a message whose attempts are spent lands in the dead-letter queue (its alarm); a
delay longer than SQS allows waits in turns."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import boto3
import pytest

from billing.adapters.aws.webhook_queue import decode, encode
from billing.outgoing_webhooks.delivery import MAX_ATTEMPTS, Message
from billing.outgoing_webhooks.endpoints import EndpointRequest
from billing.runtime import container
from billing.tenants.access import PLATFORM
from billing_local.runner import LocalContext, load_module, sqs_records


def sqs():
    return boto3.client("sqs", region_name="us-east-1")


def drain(url: str) -> list[dict]:
    got = sqs().receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
    return got.get("Messages", [])


def depth(url: str) -> dict[str, int]:
    attrs = sqs().get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return {
        "visible": int(attrs["ApproximateNumberOfMessages"]),
        "delayed": int(attrs["ApproximateNumberOfMessagesDelayed"]),
    }


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


def _fast_sender():
    from billing.outgoing_webhooks.delivery import Sender

    return Sender(
        container.webhook_endpoint_service(), container.webhook_poster(), container.clock(), timeout_s=0.3
    )


def run(app, messages: list[dict]) -> dict:
    return app.handler(sqs_records(messages), LocalContext(function_name="webhook-delivery"))


def test_a_published_event_is_queued_attempted_and_delivered(env, endpoint, receiver, app):
    # When invoicing publishes invoice.paid
    container.webhook_dispatcher().publish("invoice.paid", "in_1", {"id": "in_1", "status": "paid"})
    # Then one message waits in the delivery queue, and the Lambda's attempt delivers it
    queued = drain(env.settings.webhook_delivery_queue_url)
    assert len(queued) == 1
    assert run(app, queued) == {"batchItemFailures": []}
    assert [d["data"] for d in receiver.verified] == [{"id": "in_1", "status": "paid"}]
    assert depth(env.settings.webhook_delivery_queue_url) == {"visible": 0, "delayed": 0}


def test_a_failed_attempt_goes_back_delayed_and_a_spent_message_to_the_dead_letters(
    env, endpoint, receiver, app
):
    # Given an endpoint answering 500
    receiver.script = [500, 500]
    container.webhook_dispatcher().publish("invoice.paid", "in_2", {"id": "in_2"})
    # When the first attempt fails, Then the message is queued again, delayed, one attempt made
    assert run(app, drain(env.settings.webhook_delivery_queue_url)) == {"batchItemFailures": []}
    assert depth(env.settings.webhook_delivery_queue_url) == {"visible": 0, "delayed": 1}
    # When the last allowed attempt fails too
    last = Message("msg_last", endpoint.id, "invoice.paid", b'{"sequence":1}', attempts=MAX_ATTEMPTS - 1)
    record = {"MessageId": "m-last", "ReceiptHandle": "r", "MD5OfBody": "", "Body": encode(last)}
    assert run(app, [record]) == {"batchItemFailures": []}
    # Then it is in the dead-letter queue (the alarm's metric), with why, and not queued again
    [dead] = drain(env.settings.webhook_dead_letter_queue_url)
    kept = json.loads(dead["Body"])
    assert (
        kept["message_id"] == "msg_last" and kept["attempts"] == MAX_ATTEMPTS and kept["reason"] == "HTTP 500"
    )
    assert depth(env.settings.webhook_delivery_queue_url)["delayed"] == 1  # only the first message's retry


def test_a_delay_longer_than_sqs_allows_is_waited_out_in_turns(env, endpoint, receiver, app):
    # Given a retry due in two hours
    queue = container.webhook_queue()
    message = Message("msg_later", endpoint.id, "invoice.paid", b'{"sequence":1}', attempts=4)
    queue.send(message, timedelta(hours=2))
    body = sqs().receive_message(QueueUrl=env.settings.webhook_delivery_queue_url, WaitTimeSeconds=0)
    # SQS holds it 15 minutes at most: the message says when it is due
    assert body.get("Messages", []) == []
    assert depth(env.settings.webhook_delivery_queue_url)["delayed"] == 1
    due = datetime.now(UTC) + timedelta(hours=2)
    early = Message(**{**message.__dict__, "not_before": due})
    # When SQS hands it back early, Then nothing is sent and it goes back to wait
    assert run(app, [{"MessageId": "m", "ReceiptHandle": "r", "MD5OfBody": "", "Body": encode(early)}]) == {
        "batchItemFailures": []
    }
    assert receiver.ids == []
    assert depth(env.settings.webhook_delivery_queue_url)["delayed"] == 2
    # And the encoding keeps every field
    assert decode(encode(early)) == early


def test_a_message_that_is_not_ours_fails_alone(env, endpoint, receiver, app):
    container.webhook_dispatcher().publish("invoice.paid", "in_3", {"id": "in_3"})
    good = drain(env.settings.webhook_delivery_queue_url)
    bad = {"MessageId": "m-bad", "ReceiptHandle": "r", "MD5OfBody": "", "Body": "not json"}
    assert run(app, [*good, bad]) == {"batchItemFailures": [{"itemIdentifier": "m-bad"}]}
    assert len(receiver.verified) == 1


def test_billing_serve_delivers_the_queued_webhooks(env, endpoint, receiver, tmp_path):
    # Given a local server (its background loop does what the SQS trigger does) and a published event
    from billing_local.serve import LocalServer

    server = LocalServer(data_dir=tmp_path, platform_key="k", cli=lambda argv: 0)
    container.webhook_dispatcher().publish("invoice.paid", "in_5", {"id": "in_5"})
    # When its loop runs a round, Then the receiver has the event, verified
    assert server.deliver_webhooks() == (1, 0)
    assert [d["object_id"] for d in receiver.verified] == ["in_5"]
