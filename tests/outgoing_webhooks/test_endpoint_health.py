"""An endpoint failing for days is disabled (a notice, a log record and a webhook say so) and enabled
again by the operator; registering the same URL and event types twice gives one endpoint, also at
once from many threads; a send to a host resolving to a private, loopback or link-local address is
refused and logged, unless the runtime allows loopback."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from billing.kernel.errors import Forbidden
from billing.outgoing_webhooks.delivery import Answer, Message, Relay, Sender
from billing.outgoing_webhooks.delivery_log import AttemptRecorder
from billing.outgoing_webhooks.endpoints import EndpointRequest
from billing.outgoing_webhooks.health import AddressGuard, EndpointHealth
from billing.runtime import container
from billing.tenants.access import PLATFORM, Principal

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Kept:
    """A queue (or dead letters, or notices) that keeps what it is given."""

    def __init__(self) -> None:
        self.items: list = []

    def send(self, message, delay_or_reason=None) -> None:
        self.items.append(message)

    def publish(self, notices) -> None:
        self.items.extend(notices)


class Scripted:
    """An endpoint over HTTP whose answers are scripted (then 200); signed at the fake clock's time,
    so it records rather than verifies."""

    def __init__(self) -> None:
        self.script: list[int] = []
        self.ids: list[str] = []

    def post(self, url, body, headers, timeout_s) -> Answer:
        self.ids.append(headers["webhook-id"])
        status = self.script.pop(0) if self.script else 200
        return Answer(status=status, error=None if status == 200 else f"HTTP {status}")


class Published:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict]] = []

    def publish(self, event_type, object_id, data, *, source_id) -> None:
        self.events.append((event_type, object_id, dict(data)))


@pytest.fixture
def clock(env):
    c = Clock(T0)
    container.override(clock=c)
    return c


def relay_for(clock, *, notices, webhooks, poster=None, guard=None) -> Relay:
    endpoints = container.webhook_endpoint_service()
    sender = Sender(endpoints, poster or container.webhook_poster(), clock, timeout_s=0.3, guard=guard)
    health = EndpointHealth(
        container.webhook_endpoints(),
        clock,
        disable_after=timedelta(days=5),
        log=container.webhook_delivery_log(),
        notices=notices,
        webhooks=webhooks,
    )
    return Relay(sender, Kept(), Kept(), clock, AttemptRecorder(container.webhook_delivery_log()), health)


def test_an_endpoint_failing_for_five_days_is_disabled_then_enabled(clock):
    # Given an endpoint that answers 500 to everything
    endpoint, _secret = container.webhook_endpoint_service().register(
        EndpointRequest(url="https://hooks.example.com/b", event_types=["invoice.paid"]), PLATFORM
    )
    notices, webhooks, receiver = Kept(), Published(), Scripted()
    relay = relay_for(clock, notices=notices, webhooks=webhooks, poster=receiver)
    receiver.script = [500] * 100
    # When a message fails every 12 hours for four days
    for hour in range(0, 4 * 24 + 1, 12):
        clock.now = T0 + timedelta(hours=hour)
        relay.handle(Message(f"msg_{hour}", endpoint.id, "invoice.paid", b'{"n": 1}'))
    # Then it is still enabled, failing since the first failure
    stored = container.webhook_endpoint_service().get(endpoint.id, PLATFORM)
    assert stored.enabled and stored.failing_since == T0
    # When it still fails five days after the first failure
    clock.now = T0 + timedelta(days=5)
    relay.handle(Message("msg_last", endpoint.id, "invoice.paid", b'{"n": 2}'))
    # Then it is disabled, and a notice, a log record and a webhook say so, once
    stored = container.webhook_endpoint_service().get(endpoint.id, PLATFORM)
    assert not stored.enabled and stored.disabled_at == clock.now
    assert [n.kind for n in notices.items] == ["webhook_endpoint.disabled"]
    assert notices.items[0].data["endpoint_id"] == endpoint.id
    assert [(t, o) for t, o, _ in webhooks.events] == [("webhook_endpoint.disabled", endpoint.id)]
    page, _ = container.webhook_deliveries().page(endpoint.id, PLATFORM)
    assert page[0].event_type == "webhook_endpoint.disabled" and "disabled" in page[0].error
    # And nothing more is sent to it or queued for it
    sent = len(receiver.ids)
    clock.now += timedelta(hours=1)
    assert relay.handle(Message("msg_after", endpoint.id, "invoice.paid", b"{}")).dropped
    assert len(receiver.ids) == sent
    # And a message dropped meanwhile is in its log, to resend once it is enabled
    page, _ = container.webhook_deliveries().page(endpoint.id, PLATFORM)
    assert (page[0].message_id, page[0].error) == ("msg_after", "endpoint disabled: not sent")
    assert container.webhook_endpoint_service().subscribers("invoice.paid") == []
    # When the operator enables it and the endpoint recovers
    enabled = container.webhook_endpoint_service().enable(endpoint.id, PLATFORM)
    assert enabled.enabled and enabled.failing_since is None
    receiver.script = []
    outcome = relay.handle(Message("msg_again", endpoint.id, "invoice.paid", b'{"n": 3}'))
    # Then it is delivered to again and stays enabled
    assert outcome.delivered
    assert container.webhook_endpoint_service().get(endpoint.id, PLATFORM).failing_since is None
    assert len(notices.items) == 1


def test_a_delivery_in_between_restarts_the_five_days(clock):
    # Given an endpoint failing for four days, then delivering once
    endpoint, _secret = container.webhook_endpoint_service().register(
        EndpointRequest(url="https://hooks.example.com/b", event_types=["invoice.paid"]), PLATFORM
    )
    receiver = Scripted()
    relay = relay_for(clock, notices=Kept(), webhooks=Published(), poster=receiver)
    receiver.script = [500, 500, 200, 500, 500]
    for day in (0, 4, 4.5, 5, 9):
        clock.now = T0 + timedelta(days=day)
        relay.handle(Message(f"msg_{day}", endpoint.id, "invoice.paid", b"{}"))
    # Then it is failing since day 5 only, and enabled
    stored = container.webhook_endpoint_service().get(endpoint.id, PLATFORM)
    assert stored.enabled and stored.failing_since == T0 + timedelta(days=5)


def test_registering_the_same_url_and_types_again_gives_the_same_endpoint(clock):
    service = container.webhook_endpoint_service()
    request = EndpointRequest(
        url="https://hooks.example.com/b", event_types=["invoice.paid", "tenant.suspended"]
    )
    # When twenty registrations of the same URL and event types run at once
    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(lambda _: _register(service, request), range(20)))
    answered = [r for r in results if r is not None]
    # Then there is one endpoint; every answer names it with its one secret; one of them created it
    assert len(service.endpoints(PLATFORM)) == 1
    assert {(e.id, s) for e, s, _ in answered} == {(service.endpoints(PLATFORM)[0].id, answered[0][1])}
    assert len(answered) == 20 and sum(created for _, _, created in answered) == 1
    # And a later retry (the types in another order) answers it, not created now
    again = EndpointRequest(
        url="https://hooks.example.com/b", event_types=["tenant.suspended", "invoice.paid"]
    )
    endpoint, secret, created = service.registered(again, PLATFORM)
    assert not created and endpoint.id == answered[0][0].id and secret == answered[0][1]
    # And other event types, or another URL, are another endpoint
    other = EndpointRequest(url="https://hooks.example.com/b", event_types=["invoice.paid"])
    assert service.registered(other, PLATFORM)[2] is True
    # And once deleted, the same target registers anew
    service.delete(endpoint.id, PLATFORM)
    assert service.registered(request, PLATFORM)[2] is True


def _register(service, request):
    from billing.kernel.errors import Conflict

    for _ in range(50):
        try:
            return service.registered(request, PLATFORM)
        except Conflict:  # another request is registering it right now: retry, as told
            continue
    return None


def test_only_the_platform_registers(clock):
    with pytest.raises(Forbidden):
        container.webhook_endpoint_service().registered(
            EndpointRequest(url="https://hooks.example.com/b", event_types=["invoice.paid"]),
            Principal(api_key_id="tenant-key"),
        )


@pytest.mark.parametrize(
    "address", ["10.0.0.7", "192.168.1.2", "172.16.0.1", "169.254.169.254", "127.0.0.1", "::1", "fd00::1"]
)
def test_a_host_resolving_to_a_private_address_is_refused_and_logged(clock, address):
    # Given an endpoint whose public-looking name resolves to a private address
    endpoint, _secret = container.webhook_endpoint_service().register(
        EndpointRequest(url="https://hooks.example.com/b", event_types=["invoice.paid"]), PLATFORM
    )
    posted = []

    class Poster:
        def post(self, url, body, headers, timeout_s):
            posted.append(url)
            raise AssertionError("never sent")

    guard = AddressGuard(resolver=lambda host: [address])
    relay = relay_for(clock, notices=Kept(), webhooks=Published(), poster=Poster(), guard=guard)
    # When a message is attempted
    outcome = relay.handle(Message("msg_1", endpoint.id, "invoice.paid", b"{}"))
    # Then nothing is sent, the attempt failed naming why and is retried later
    assert posted == [] and not outcome.delivered and outcome.retry_in is not None
    assert f"resolves to {address}" in outcome.answer.error
    # And the delivery log says so
    [attempt], _ = container.webhook_deliveries().page(endpoint.id, PLATFORM)
    assert attempt.error == outcome.answer.error and attempt.status is None


def test_loopback_is_allowed_only_where_the_runtime_says_so(clock):
    assert AddressGuard(resolver=lambda h: ["127.0.0.1"]).refusal("localhost") is not None
    assert AddressGuard(allow_loopback=True, resolver=lambda h: ["127.0.0.1"]).refusal("localhost") is None
    assert AddressGuard(allow_loopback=True, resolver=lambda h: ["10.1.2.3"]).refusal("x") is not None
    assert AddressGuard(resolver=lambda h: ["93.184.216.34"]).refusal("example.com") is None
    # the local runtime's settings allow it; a deployed stack's default does not
    assert container.settings().webhook_allow_loopback is True
    from billing.runtime.settings import Settings

    assert Settings.model_fields["webhook_allow_loopback"].default is False


def test_the_enable_route_and_cli(clock, capsys):
    from billing_cli import run
    from billing_local.runner import LocalContext, load_module
    from tests.conftest import api_event

    service = container.webhook_endpoint_service()
    endpoint, _ = service.register(
        EndpointRequest(url="https://hooks.example.com/b", event_types=["invoice.paid"]), PLATFORM
    )
    stored = service.get(endpoint.id, PLATFORM)
    disabled = stored.model_copy(update={"disabled_at": T0, "disabled_reason": "x", "version": 2})
    assert container.webhook_endpoints().replace(disabled, expected_version=1)
    # When the operator enables it from the CLI
    assert run(["webhooks", "enable", endpoint.id, "--json"], allow_forward=False) == 0
    # Then it is enabled
    assert json.loads(capsys.readouterr().out)["endpoint"]["disabled_at"] is None
    # And the route answers it as it is, and 404 for an unknown one
    app = load_module("webhook_endpoints")
    ok = app.handler(
        api_event(
            None,
            path=f"/v1/webhook-endpoints/{endpoint.id}/enable",
            method="POST",
            path_parameters={"endpoint_id": endpoint.id},
        ),
        LocalContext(function_name="webhook-endpoints"),
    )
    assert ok["statusCode"] == 200 and json.loads(ok["body"])["disabled_at"] is None
