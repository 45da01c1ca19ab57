"""Attempts of an outgoing webhook against a real HTTP receiver that verifies every request with
our helper and with the ``standardwebhooks`` library: an endpoint that times out, then answers 500
for over an hour of retries, then recovers, gets the message (same id, same bytes) at least once;
sequence numbers increase per object; a deleted endpoint's messages are dropped.

The retry driver (the SQS queue) is not built yet: the test makes each attempt the queue would
make, after the delay the Sender asks for."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from billing.outgoing_webhooks.delivery import (
    MAX_ATTEMPTS,
    RETRY_SCHEDULE,
    Dispatcher,
    Message,
    Sender,
)
from billing.outgoing_webhooks.endpoints import EndpointRequest
from billing.runtime import container
from billing.tenants.access import PLATFORM


class Queued:
    """Records what the dispatcher queues (the SQS queue comes later)."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    def send(self, message: Message, delay: timedelta) -> None:
        self.messages.append(message)


@pytest.fixture
def endpoint(env, receiver):
    service = container.webhook_endpoint_service()
    request = EndpointRequest(url=receiver.url, event_types=["invoice.paid", "invoice.finalized"])
    created, receiver.secret = service.register(request, PLATFORM)
    return created


def sender() -> Sender:
    return Sender(
        container.webhook_endpoint_service(), container.webhook_poster(), container.clock(), timeout_s=0.3
    )


def test_a_failing_endpoint_gets_the_message_once_it_recovers(endpoint, receiver):
    # Given an invoice.paid event published to the endpoint
    queue = Queued()
    dispatcher = Dispatcher(container.webhook_endpoint_service(), container.webhook_sequences(), queue)
    [message] = dispatcher.publish("invoice.paid", "in_1", {"id": "in_1", "amount_paid": "12.50"})
    # And the endpoint first hangs past the timeout, then answers 500 five times
    receiver.script = ["hang", 500, 500, 500, 500, 500]
    # When the attempts are made, each after the delay the sender asks for
    outcomes, waited = [], timedelta(0)
    while True:
        outcome = sender().attempt(message)
        outcomes.append(outcome)
        if outcome.delivered or outcome.retry_in is None:
            break
        waited += outcome.retry_in
        message = outcome.message
    # Then the first attempt had no answer, the next five a 500, and the seventh delivered it
    assert outcomes[0].answer.status is None and "no answer" in outcomes[0].answer.error
    assert [o.answer.status for o in outcomes[1:]] == [500] * 5 + [200]
    assert outcomes[-1].delivered and outcomes[-1].message.attempts == 7
    # After more than an hour of retries
    assert waited > timedelta(hours=1)
    # And every attempt carried the same message id and the same bytes
    assert set(receiver.ids) == {message.message_id} and set(receiver.bodies) == {message.body}
    # And what verified (with our helper and with standardwebhooks) is the event, in full
    delivered = receiver.verified[-1]
    assert delivered["type"] == "invoice.paid" and delivered["sequence"] == 1
    assert delivered["data"] == {"id": "in_1", "amount_paid": "12.50"}


def test_sequence_numbers_increase_per_object(endpoint, receiver):
    queue = Queued()
    dispatcher = Dispatcher(container.webhook_endpoint_service(), container.webhook_sequences(), queue)
    dispatcher.publish("invoice.finalized", "in_1", {"id": "in_1", "status": "open"})
    dispatcher.publish("invoice.paid", "in_1", {"id": "in_1", "status": "paid"})
    dispatcher.publish("invoice.paid", "in_2", {"id": "in_2", "status": "paid"})
    # An event no endpoint wants is not queued and uses no number
    assert dispatcher.publish("tenant.suspended", "acme", {"id": "acme"}) == []
    # Delivered newest first (order is not guaranteed), a receiver can still tell the newer one
    for message in reversed(queue.messages):
        assert sender().attempt(message).delivered
    seen = {(d["object_id"], d["sequence"]): d["data"]["status"] for d in receiver.verified}
    assert seen == {("in_1", 1): "open", ("in_1", 2): "paid", ("in_2", 1): "paid"}


def test_retries_stop_after_about_three_days(endpoint, receiver):
    assert MAX_ATTEMPTS == 10
    total = sum(RETRY_SCHEDULE, timedelta(0))
    assert timedelta(days=2, hours=12) < total < timedelta(days=3, hours=12)
    receiver.script = [500] * MAX_ATTEMPTS
    queue = Queued()
    [message] = Dispatcher(
        container.webhook_endpoint_service(), container.webhook_sequences(), queue
    ).publish("invoice.paid", "in_9", {"id": "in_9"})
    for _ in range(MAX_ATTEMPTS):
        outcome = sender().attempt(message)
        message = outcome.message
    assert not outcome.delivered and outcome.retry_in is None and message.attempts == MAX_ATTEMPTS


def test_a_deleted_endpoints_messages_are_dropped_not_sent(endpoint, receiver):
    queue = Queued()
    [message] = Dispatcher(
        container.webhook_endpoint_service(), container.webhook_sequences(), queue
    ).publish("invoice.paid", "in_3", {"id": "in_3"})
    container.webhook_endpoint_service().delete(endpoint.id, PLATFORM)
    outcome = sender().attempt(message)
    assert outcome.dropped and not outcome.delivered and outcome.retry_in is None
    assert receiver.ids == []


def test_a_retry_after_a_rotation_is_signed_with_both_secrets(endpoint, receiver):
    from billing.outgoing_webhooks.endpoints import RotateRequest

    old = receiver.secret
    queue = Queued()
    [message] = Dispatcher(
        container.webhook_endpoint_service(), container.webhook_sequences(), queue
    ).publish("invoice.paid", "in_4", {"id": "in_4"})
    _, new = container.webhook_endpoint_service().rotate_secret(endpoint.id, RotateRequest(), PLATFORM)
    for secret in (old, new):  # the receiver holds either one
        receiver.secret = secret
        assert sender().attempt(message).delivered
    assert json.loads(message.body)["sequence"] == 1
