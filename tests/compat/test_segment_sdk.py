"""Segment's Python library (``segment-analytics-python``) against `billing serve`, its ``host``
changed to ``{api}/segment`` and nothing else; the write key is one of our API keys. Track calls
arrive (the tenant in ``context.groupId``) and are billed once (a resent ``messageId`` is dropped);
identify calls are acknowledged and store nothing; a refused batch reaches the library's
``on_error`` callback with its ``APIError``; a tenant key cannot write another tenant's usage.
The library sends from a background thread: each test flushes it before looking."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from segment.analytics import Client
from segment.analytics.request import APIError

from tests.compat.conftest import PLATFORM_KEY, Peers

USAGE = {"model": "gpt-4o-mini", "input_tokens": 300, "output_tokens": 40}


class Analytics:
    """One library client and the errors its ``on_error`` callback received."""

    def __init__(self, url: str, write_key: str, **options: Any):
        self.errors: list[tuple[Exception, list[dict[str, Any]]]] = []
        self.client = Client(
            write_key,
            host=f"{url}/segment",
            on_error=lambda error, batch: self.errors.append((error, batch)),
            max_retries=1,
            **options,
        )

    def track(self, tenant: str, message_id: str | None = None, **changes: Any) -> str:
        message_id = message_id or str(uuid.uuid4())
        fields: dict[str, Any] = {
            "user_id": "user-1",
            "event": "query",
            "properties": dict(USAGE),
            "context": {"groupId": tenant},
            "message_id": message_id,
            **changes,
        }
        self.client.track(**fields)
        return message_id

    def flush(self) -> None:
        self.client.flush()


@pytest.fixture
def analytics(peers: Peers) -> Iterator[Analytics]:
    client = Analytics(peers.url, PLATFORM_KEY)
    yield client
    client.client.shutdown()


def test_track_calls_are_billed_once(peers: Peers, analytics: Analytics) -> None:
    before = peers.queries("acme")
    # Given three track calls, one of them sent again with its messageId, and an identify call
    again = analytics.track("acme")
    analytics.track("acme")
    analytics.client.identify("user-1", {"email": "ada@acme.example"})
    analytics.flush()
    analytics.track("acme", message_id=again)
    analytics.track("acme")
    # When the library has sent them all
    analytics.flush()
    # Then no error was reported and three queries are billed
    assert analytics.errors == []
    assert peers.queries("acme") == before + 3


def test_a_gzip_batch_is_read(peers: Peers) -> None:
    before = peers.queries("acme")
    gzipped = Analytics(peers.url, PLATFORM_KEY, gzip=True)
    gzipped.track("acme")
    gzipped.flush()
    gzipped.client.shutdown()
    assert gzipped.errors == []
    assert peers.queries("acme") == before + 1


def test_a_refused_batch_reaches_on_error(peers: Peers, analytics: Analytics) -> None:
    before = peers.queries("acme")
    # Given a batch holding a valid call and one whose event name is no usage type
    analytics.track("acme")
    analytics.track("acme", event="Order Completed")
    # When the library sends it
    analytics.flush()
    # Then on_error received the 400 with our message, for the whole batch, and nothing was stored
    [(error, batch)] = analytics.errors
    assert isinstance(error, APIError) and error.status == 400
    assert error.code == "invalid_request" and "nothing was stored" in error.message
    assert len(batch) == 2
    assert peers.queries("acme") == before


def test_a_tenant_write_key_cannot_write_another_tenants_usage(peers: Peers) -> None:
    before = {t: peers.queries(t) for t in ("acme", "globex")}
    globex = Analytics(peers.url, peers.keys["globex"])
    globex.track("globex")
    globex.flush()
    globex.track("acme")
    globex.flush()
    globex.client.shutdown()
    [(error, _)] = globex.errors
    assert isinstance(error, APIError) and error.status == 403
    assert peers.queries("acme") == before["acme"]
    assert peers.queries("globex") == before["globex"] + 1


def test_an_unknown_write_key_is_refused(peers: Peers) -> None:
    stranger = Analytics(peers.url, "not-a-key")
    stranger.track("acme")
    stranger.flush()
    stranger.client.shutdown()
    [(error, _)] = stranger.errors
    assert isinstance(error, APIError) and error.status == 401
