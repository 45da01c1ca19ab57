"""``event.corrected``: one delivery per correction applied, however often the correction is sent,
carrying the audit trail's line (who, when, why, before and after)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from billing.metering.correction_requests import CorrectionItem
from billing.metering.events import StoredEvent
from billing.runtime import container
from billing.tenants.access import Principal
from tests.outgoing_webhooks.test_publishing import app, deliver, register  # noqa: F401 - fixture
from tests.rating.helpers import make_tenant


def test_a_correction_sent_twice_publishes_event_corrected_once(env, receiver, app):  # noqa: F811
    # Given an endpoint subscribed to event.corrected, and a query stored yesterday
    register(receiver, "event.corrected")
    make_tenant("acme", [("starter", "2025-10-01T00:00:00Z")])
    yesterday = datetime.now(UTC) - timedelta(days=1)
    env.store.insert_events(
        [StoredEvent("acme", "e1", yesterday, "query", "", 1, 0, 0, 0, Decimal("0.25"), "v1", yesterday)]
    )
    service = container.correction_service()
    void = CorrectionItem(
        correction_id="c-1", tenant_id="acme", event_id="e1", action="void", reason="duplicate request"
    )
    key = Principal(api_key_id="ops-key", platform=True)
    # When the void is sent twice
    assert [r.status for r in service.apply([void], key)] == ["applied"]
    assert [r.status for r in service.apply([void], key)] == ["already_applied"]
    deliver(env, app)
    # Then the receiver got one event.corrected about e1: who, why, and the cost taken off
    [delivered] = receiver.verified
    assert delivered["type"] == "event.corrected" and delivered["object_id"] == "e1"
    data = delivered["data"]
    assert (data["tenant_id"], data["action"], data["requested_by"]) == ("acme", "void", "ops-key")
    assert data["reason"] == "duplicate request" and data["after"] is None
    assert data["before"]["cost_usd"] == "0.250000000"
