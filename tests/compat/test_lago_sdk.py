"""Lago's Python client (``lago-python-client``) against `billing serve`, its ``api_url`` changed to
``{api}/lago/`` and nothing else: single and batch events arrive and are billed once (a resent
``transaction_id`` is dropped), a refused event raises the client's ``LagoApiError`` carrying Lago's
error body, and a tenant key cannot write another tenant's usage."""

from __future__ import annotations

import time
import uuid
from decimal import Decimal

import pytest
from lago_python_client.client import Client
from lago_python_client.exceptions import LagoApiError
from lago_python_client.models.event import BatchEvent, Event

from tests.compat.conftest import PLATFORM_KEY, Peers


def lago_event(subscription: str, transaction_id: str | None = None, **changes: object) -> Event:
    fields: dict[str, object] = {
        "transaction_id": transaction_id or str(uuid.uuid4()),
        "external_subscription_id": subscription,
        "code": "query",
        "timestamp": int(time.time()),  # Unix seconds
        "properties": {"model": "gpt-4o-mini", "input_tokens": 200, "output_tokens": 50},
        **changes,
    }
    return Event(**fields)


def test_single_and_batch_events_are_billed_once(peers: Peers) -> None:
    # Given the client pointed at our Lago base path with the platform key
    client = Client(api_key=PLATFORM_KEY, api_url=f"{peers.url}/lago/")
    before = peers.queries("initech")
    first = lago_event("initech")
    # When it creates one event, then the same event again, then a batch with it and two new ones
    created = client.events.create(first)
    client.events.create(first)
    client.events.batch_create(BatchEvent(events=[first, lago_event("initech"), lago_event("initech")]))
    # Then the answer echoes the event as Lago does, and three queries are billed
    assert created is not None and created.transaction_id == first.transaction_id
    assert created.code == "query" and created.external_subscription_id == "initech"
    assert peers.queries("initech") == before + 3


def test_a_refused_event_raises_lago_api_error_with_lagos_error_body(peers: Peers) -> None:
    client = Client(api_key=PLATFORM_KEY, api_url=f"{peers.url}/lago/")
    before = peers.queries("initech")
    # Given a batch whose second event carries a negative token count
    bad = lago_event("initech", properties={"model": "gpt-4o-mini", "input_tokens": -5})
    # When the client sends it
    with pytest.raises(LagoApiError) as caught:
        client.events.batch_create(BatchEvent(events=[lago_event("initech"), bad]))
    # Then it is Lago's 422 validation error naming the field at its place; nothing was stored
    assert caught.value.status_code == 422
    body = caught.value.response
    assert body["status"] == 422 and body["code"] == "validation_errors"
    assert list(body["error_details"]) == ["events[1].properties.input_tokens"]
    assert peers.queries("initech") == before


def test_a_fractional_timestamp_is_kept_to_the_millisecond(peers: Peers) -> None:
    client = Client(api_key=PLATFORM_KEY, api_url=f"{peers.url}/lago/")
    stamp = Decimal(int(time.time()) - 60) + Decimal("0.25")
    created = client.events.create(lago_event("initech", timestamp=str(stamp)))
    assert created is not None and created.timestamp.endswith(".250Z")


def test_a_tenant_key_cannot_write_another_tenants_usage(peers: Peers) -> None:
    client = Client(api_key=peers.keys["globex"], api_url=f"{peers.url}/lago/")
    before = peers.queries("initech")
    with pytest.raises(LagoApiError) as caught:
        client.events.create(lago_event("initech"))
    assert caught.value.status_code == 403
    with pytest.raises(LagoApiError) as unknown:
        Client(api_key="not-a-key", api_url=f"{peers.url}/lago/").events.create(lago_event("initech"))
    assert unknown.value.status_code == 401
    assert peers.queries("initech") == before
