"""The usage page's corrections block: each correction of the month's usage (when, removed or
corrected, the event id, the reason, the usage and cost difference) in the HTML and in the JSON
route's ``corrections`` field; none shown for a month without corrections."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from billing.runtime import container
from tests.conftest import api_event
from tests.metering.conftest import load_handler
from tests.portal.conftest import NOW
from tests.portal.test_preview_cache import MAX_AGE


@pytest.fixture
def correct(portal, lambda_context):
    handler = load_handler("corrections").handler

    def _post(*items: dict[str, Any]) -> dict:
        response = handler(api_event({"corrections": list(items)}, path="/v1/corrections"), lambda_context)
        assert response["statusCode"] == 200, response["body"]
        return json.loads(response["body"])

    return _post


def item(correction_id: str, event_id: str, action: str, reason: str, values: dict | None = None) -> dict:
    return {
        "correction_id": correction_id,
        "tenant_id": "acme",
        "event_id": event_id,
        "action": action,
        "reason": reason,
        **({"values": values} if values else {}),
    }


def test_a_month_with_corrections_lists_each_in_the_page_and_its_json(portal, correct):
    # Given acme's November usage, one event voided and one amended (with a reason to escape)
    void_cost = Decimal(
        container.usage_store().query("SELECT cost_usd FROM usage_events WHERE event_id = 'acme-02-0001'")[0][
            0
        ]
    )
    correct(item("c-void", "acme-02-0001", "void", "Sent twice <by our retry>"))
    correct(item("c-amend", "acme-03-0001", "amend", "wrong token count", {"input_tokens": 900}))
    token = portal.token("acme")
    # When the page's JSON route is read
    data = json.loads(portal.data(token)["body"])
    # Then its corrections field lists both, newest first (one instant here: by id), with the exact
    # difference
    assert [(c["correction_id"], c["action"], c["event_id"]) for c in data["corrections"]] == [
        ("c-void", "void", "acme-02-0001"),
        ("c-amend", "amend", "acme-03-0001"),
    ]
    by_id = {c["correction_id"]: c for c in data["corrections"]}
    assert by_id["c-void"]["reason"] == "Sent twice <by our retry>" and by_id["c-void"]["at"].startswith(
        "2025-11-20"
    )
    assert by_id["c-void"]["difference"]["events"] == -1
    assert Decimal(by_id["c-void"]["difference"]["cost_usd"]) == -void_cost
    assert by_id["c-amend"]["difference"]["events"] == 0
    assert by_id["c-amend"]["difference"]["input_tokens"] == 900 - 100
    # And the page shows them in a block of their own, in words, the reason escaped
    html = portal.page(token)["body"]
    assert '<h2 id="corrections-h">Corrections this month</h2>' in html
    void_row = html.split('data-correction="c-void"')[1].split("</tr>")[0]
    assert ">acme-02-0001</th>" in void_row and ">Removed<" in void_row and "1 event removed" in void_row
    assert "Sent twice &lt;by our retry&gt;" in void_row and "<by our" not in void_row
    assert ">20 Nov 2025<" in void_row and "-$" in void_row
    amend_row = html.split('data-correction="c-amend"')[1].split("</tr>")[0]
    assert ">Corrected<" in amend_row and "+800 input tokens" in amend_row
    # And the data route's HTML carries the same block
    assert 'id="corrections"' in data["html"]


def test_a_month_without_corrections_has_no_block(portal, correct):
    # Given a correction of November only
    correct(item("c-1", "acme-02-0001", "void", "sent twice"))
    token = portal.token("acme")
    # When October is shown
    data = json.loads(portal.data(token, "2025-10")["body"])
    # Then it has no corrections and no block
    assert data["corrections"] == [] and "corrections-h" not in data["html"]


def test_a_correction_applied_after_the_page_was_cached_shows_at_the_max_age(portal, correct, clock):
    # Given acme's page was opened at 15:30 (no correction yet: the block and the days cached)
    token = portal.token("acme")
    assert json.loads(portal.data(token)["body"])["corrections"] == []
    # When an event is voided and the page is asked one second short of the max age
    correct(item("c-late", "acme-02-0001", "void", "Sent twice"))
    clock(NOW + timedelta(seconds=MAX_AGE - 1))
    cached = json.loads(portal.data(token)["body"])
    # Then the page still shows its figures as of 15:30, without the correction
    assert cached["corrections"] == [] and cached["usage_as_of"] == "2025-11-20T15:30:00Z"
    # And at the max age it reads them again: the correction is listed
    clock(NOW + timedelta(seconds=MAX_AGE))
    fresh = json.loads(portal.data(token)["body"])
    assert [c["correction_id"] for c in fresh["corrections"]] == ["c-late"]
    assert fresh["usage_as_of"] == "2025-11-20T15:35:00Z"
