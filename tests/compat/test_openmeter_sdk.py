"""The OpenMeter Python SDK (``openmeter``, CloudEvents) against `billing serve`, its endpoint
changed to ``{api}/openmeter`` and nothing else: events arrive and are billed once, a resent id is
dropped, a refused event raises the SDK's ``HttpResponseError`` with the problem details, and a
tenant key cannot write another tenant's usage."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from corehttp.exceptions import ClientAuthenticationError, HttpResponseError
from openmeter import Client
from openmeter.models import Event

from tests.compat.conftest import PLATFORM_KEY, Peers


def cloud_event(subject: str, event_id: str | None = None, **data: object) -> Event:
    return Event(
        id=event_id or str(uuid.uuid4()),
        source="my-app",
        specversion="1.0",
        type="query",
        subject=subject,
        time=datetime.now(UTC),
        data={"model": "gpt-4o-mini", "input_tokens": 120, "output_tokens": 30, **data},
    )


def test_events_sent_by_the_sdk_are_billed_once(peers: Peers) -> None:
    # Given the SDK pointed at our OpenMeter base path with the platform key
    client = Client(endpoint=f"{peers.url}/openmeter", token=PLATFORM_KEY)
    before = peers.queries("acme")
    first = cloud_event("acme", region="eu")
    # When it sends one event, then a batch holding that same event again and two new ones
    client.events.ingest_event(first)
    client.events.ingest_events([first, cloud_event("acme"), cloud_event("acme")])
    # Then the statement bills three queries: the resent id was dropped
    assert peers.queries("acme") == before + 3


def test_a_refused_event_raises_the_sdk_error_with_its_problem_details(peers: Peers) -> None:
    client = Client(endpoint=f"{peers.url}/openmeter", token=PLATFORM_KEY)
    before = peers.queries("acme")
    # Given a batch whose second event names a usage type the catalog does not define
    bad = cloud_event("acme")
    bad.type = "Page Viewed"
    # When the SDK sends it
    with pytest.raises(HttpResponseError) as caught:
        client.events.ingest_events([cloud_event("acme"), bad])
    # Then it reports a 400 whose problem names the CloudEvents attribute and the event's place,
    # and nothing of the batch was stored
    assert caught.value.status_code == 400
    problem = caught.value.response.json()
    assert problem["status"] == 400 and problem["title"] == "Bad Request"
    assert [p["field"] for p in problem["extensions"]["validationErrors"]] == ["[1].type"]
    assert peers.queries("acme") == before


def test_a_tenant_key_writes_its_own_usage_and_no_one_elses(peers: Peers) -> None:
    own = Client(endpoint=f"{peers.url}/openmeter", token=peers.keys["globex"])
    before = {t: peers.queries(t) for t in ("acme", "globex")}
    own.events.ingest_event(cloud_event("globex"))
    # When globex's key sends an event whose subject is acme
    with pytest.raises(HttpResponseError) as caught:
        own.events.ingest_event(cloud_event("acme"))
    # Then it is a 403 and acme's usage is untouched
    assert caught.value.status_code == 403
    assert peers.queries("acme") == before["acme"]
    assert peers.queries("globex") == before["globex"] + 1


def test_an_unknown_or_missing_token_is_refused(peers: Peers) -> None:
    for token in ("not-a-key", None):
        client = Client(endpoint=f"{peers.url}/openmeter", token=token)
        with pytest.raises(ClientAuthenticationError):
            client.events.ingest_event(cloud_event("acme"))
