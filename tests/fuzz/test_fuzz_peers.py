"""Property-based fuzzing of the peer formats' routes (OpenMeter, Lago, Segment) through the real
ingest handler, as tests/fuzz/test_fuzz_http.py fuzzes ``POST /v1/events``: mutated valid bodies,
any JSON, deep JSON, bytes that are not UTF-8, gzip that is not, wrong content types, a caller from
the authorizer or none (a key in ``x-api-key`` instead counts for nothing), damaged events. The
handler never raises, never answers 5xx, always answers in its format (JSON, or OpenMeter's empty
204), and a refused request changes nothing: no claim, no count, no row, never part of a batch.
Size: ``FUZZ_EXAMPLES`` (tests/fuzz/support.py)."""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.runtime import container
from billing.tenants.tenant import PlanAssignment, Tenant
from billing_local.runner import LocalContext, load_module
from tests.dunning.support import T0
from tests.fuzz.support import FUZZ, api_events, mutate, raw_bodies, snapshot

CONTEXT = LocalContext(function_name="fuzz")
STAMP = "2025-11-03T12:00:00Z"
UNIX = 1762171200  # STAMP in Unix seconds
OPENMETER_TYPES = {"application/json", "application/cloudevents+json", "application/cloudevents-batch+json"}
peer_content_types = st.sampled_from(
    [
        "application/json",
        "application/cloudevents+json",
        "application/cloudevents-batch+json",
        "application/json; charset=latin-1",
        "text/plain",
        "",
    ]
)


@pytest.fixture(scope="module")
def ingest():
    return load_module("ingest")


@pytest.fixture
def tenants(env):
    container.override(clock=lambda: T0)
    for tenant_id, keys in (("acme", ["acme-key"]), ("other", [])):
        container.tenants().create(
            Tenant(
                id=tenant_id,
                name=tenant_id,
                plans=[PlanAssignment(plan="starter", effective_at="2025-01-01T00:00:00Z")],
                api_key_ids=keys,
            )
        )
    return env


def sometimes(document: Any, draw) -> Any:
    """``document`` damaged one time in four (so that most batches hold valid events around a bad one)."""
    return mutate(document, draw) if isinstance(document, dict) and draw(st.integers(0, 3)) == 0 else document


def _usage(draw) -> dict[str, Any]:
    usage: dict[str, Any] = {"model": "gpt-4o-mini", "input_tokens": 10, "output_tokens": 2}
    if draw(st.booleans()):
        usage["region"] = draw(st.sampled_from(["eu", "ü" * 300, 1.5, True]))
    return sometimes(usage, draw)


def _ids(draw) -> tuple[str, str, str]:
    return (
        draw(st.sampled_from(["e-1", "e-2", "e-3", "e/4", "e-5", "e-6", "ė"])),
        draw(st.sampled_from(["acme", "acme", "acme", "other", "ghost"])),
        draw(st.sampled_from(["query", "query", "query", "embedding", "Page Viewed"])),
    )


def openmeter_event(draw) -> dict[str, Any]:
    event_id, tenant, kind = _ids(draw)
    cloud_event = {"id": event_id, "source": "fuzz", "specversion": "1.0", "type": kind, "subject": tenant}
    cloud_event.update(time=STAMP, data=_usage(draw))
    return sometimes(cloud_event, draw)


def lago_event(draw) -> dict[str, Any]:
    event_id, tenant, kind = _ids(draw)
    stamp = draw(st.sampled_from([UNIX, f"{UNIX}.5", UNIX + 0.25, None, -1, "soon", True, 10**30]))
    event = {"transaction_id": event_id, "external_subscription_id": tenant, "code": kind, "timestamp": stamp}
    event["properties"] = _usage(draw)
    return sometimes(event, draw)


def segment_message(draw) -> dict[str, Any]:
    event_id, tenant, kind = _ids(draw)
    message = {
        "type": draw(st.sampled_from(["track", "track", "track", "identify", "page", 7])),
        "messageId": event_id,
        "event": kind,
        "userId": "user-1",
        "context": sometimes({"groupId": tenant}, draw),
        "timestamp": STAMP,
        "properties": _usage(draw),
    }
    return sometimes(message, draw)


ROUTES = {
    "/openmeter/api/v1/events": lambda d: d(
        st.sampled_from([openmeter_event(d), [openmeter_event(d) for _ in range(d(st.integers(0, 3)))]])
    ),
    "/lago/api/v1/events": lambda d: sometimes({"event": lago_event(d)}, d),
    "/lago/api/v1/events/batch": lambda d: sometimes(
        {"events": [lago_event(d) for _ in range(d(st.integers(0, 3)))]}, d
    ),
    "/segment/v1/batch": lambda d: sometimes(
        {"batch": [segment_message(d) for _ in range(d(st.integers(0, 3)))]}, d
    ),
    "/segment/v1/track": lambda d: segment_message(d),
}


@st.composite
def peer_requests(draw):
    path = draw(st.sampled_from(sorted(ROUTES)))
    body = draw(raw_bodies(ROUTES[path]))
    headers = {}
    if path.startswith("/segment/") and draw(st.integers(0, 3)) == 0:
        headers["Content-Encoding"] = "gzip"
        body = gzip.compress(body) if draw(st.booleans()) else body  # sometimes flagged but not gzip
    event = draw(api_events(path=path, method="POST", body=body))
    if isinstance(event.get("headers"), dict):
        event["headers"].update(headers)
        if draw(st.integers(0, 3)) == 0:  # else the route's own (api_events draws among JSON's)
            event["headers"]["Content-Type"] = draw(peer_content_types)
        elif path.startswith("/openmeter/"):
            event["headers"]["Content-Type"] = draw(st.sampled_from(sorted(OPENMETER_TYPES)))
        else:
            event["headers"]["Content-Type"] = "application/json"
    context = event.get("requestContext")
    if isinstance(context, dict):
        # the caller is the authorizer's: the identity's key id (x-api-key) must count for nothing
        key_id = draw(st.sampled_from(["platform-key", "platform-key", "acme-key", "stranger-key", None]))
        if key_id is not None:
            context["authorizer"] = {"apiKeyId": key_id, "principalId": key_id}
    return event


@given(data=st.data())
@FUZZ
def test_peer_routes_never_fail_and_refusals_change_nothing(tenants, ingest, data):
    request = data.draw(peer_requests())
    before = snapshot(tenants)
    response = ingest.handler(request, CONTEXT)
    assert isinstance(response, dict) and "statusCode" in response, response
    status = response["statusCode"]
    assert status < 500, response
    if status == 204:
        assert not response["body"], response
    else:
        json.loads(response["body"])
    authorizer = (request.get("requestContext") or {}).get("authorizer")
    if authorizer is None:
        assert status >= 400, response  # x-api-key alone never writes through a peer route
    if status >= 400:
        assert snapshot(tenants) == before, response
