"""UsageEvent's key and queries are computed once and follow a copy's fields."""

from __future__ import annotations

import pickle

from billing.metering.events import UsageEvent


def test_the_key_of_a_copy_with_other_fields_is_its_own():
    # Given an event whose key has been read
    event = UsageEvent.model_validate(
        {"event_id": "e-1", "tenant_id": "acme", "timestamp": "2025-11-03T12:00:00Z", "type": "query"}
    )
    assert event.key == ("acme", "e-1") and event.queries == 1
    # When it is copied with another id, Then the copy's key is the copy's; the original's is unchanged
    assert event.model_copy(update={"event_id": "e-2"}).key == ("acme", "e-2")
    assert event.model_copy(update={"type": "storage"}).queries == 0
    assert event.model_copy().key == event.key == ("acme", "e-1")
    # And the cached key is no field: equality, dumps and pickling see the fields only
    fresh = UsageEvent.model_validate(event.model_dump())
    assert fresh == event and hash(fresh) == hash(event) and "key" not in event.model_dump()
    assert "queries" not in event.model_dump() and "key" not in UsageEvent.model_json_schema()["properties"]
    assert pickle.loads(pickle.dumps(event)) == event
