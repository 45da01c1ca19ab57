"""An amend of an event under a hard limit moves its tenant's counter by what the new version adds
minus what the claim counted, in the transaction that claims the correction: the counter equals the
stored sum after each amend, an amend past the limit is refused with nothing written, and an amend
sent twice moves the counter once."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from billing.metering.exactly_once import Claim
from billing.runtime import container
from tests.conftest import api_event
from tests.metering.test_hard_limits import counter, gpu, limited, stored_sum  # noqa: F401
from tests.metering.test_usage_types import body


def exact_json(document: Any) -> str:
    """Each Decimal written as its exact JSON number (never through a float)."""
    return re.sub(r'"@@([^@]*)@@"', r"\1", json.dumps(document, default=lambda d: f"@@{d}@@"))


@pytest.fixture
def amend(corrections_app, lambda_context):
    def send(correction_id: str, event_id: str, values: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        item = {
            "correction_id": correction_id,
            "tenant_id": "acme-corp",
            "event_id": event_id,
            "action": "amend",
            "reason": "meter fixed",
            "values": values,
        }
        response = corrections_app.handler(
            api_event(exact_json({"corrections": [item]}), path="/v1/corrections"), lambda_context
        )
        return response["statusCode"], json.loads(response["body"])

    return send


@pytest.fixture
def stored(limited, post):  # noqa: F811
    """Given two eu jobs stored in November: a of 40 and b of 50.5 (90.5 of 100.5 used)."""
    container.override(clock=lambda: datetime(2025, 11, 20, tzinfo=UTC))
    assert post(body(gpu("a", "40"), gpu("b", "50.5", ts="2025-11-03T12:00:01Z")))[0] == 202
    assert counter() == stored_sum(limited) == Decimal("90.5")
    return limited


def seconds(value: str, region: str = "eu") -> dict[str, Any]:
    return {"properties": {"seconds": Decimal(value), "region": region, "gpu_seconds": Decimal(value)}}


def test_an_amend_up_within_the_limit_moves_the_counter_by_the_difference(stored, amend):
    # When b is amended from 50.5 to 60.5 seconds
    status, answer = amend("c-up", "b", seconds("60.5"))
    # Then it is applied, and the counter grows by 10: it equals the stored sum
    assert status == 200, answer
    assert counter() == stored_sum(stored) == Decimal("100.5")
    # And the claim's marker says what it counts now, so a void gives back exactly that
    assert container.ledger().lookup([Claim("acme-corp", "b")])[Claim("acme-corp", "b")].counted_month == (
        "2025-11|gpu_seconds=60.5"
    )


def test_an_amend_down_or_out_of_the_metric_gives_back_the_difference(stored, amend, post):
    # When a is amended down from 40 to 5.25 seconds
    assert amend("c-down", "a", seconds("5.25"))[0] == 200
    # Then the counter shrinks by 34.75 and equals the stored sum
    assert counter() == stored_sum(stored) == Decimal("55.75")
    # When b is amended to region us (no longer in the metric's filter)
    assert amend("c-out", "b", seconds("50.5", region="us"))[0] == 200
    # Then its whole 50.5 is given back
    assert counter() == stored_sum(stored) == Decimal("5.25")
    # And a job of 95.25 now fits exactly
    status, answer, _ = post(body(gpu("c", "95.25", ts="2025-11-04T12:00:00Z")))
    assert status == 202 and answer["rejected_for_quota"] == []
    assert counter() == stored_sum(stored) == Decimal("100.50")


def test_an_amend_past_the_limit_is_refused_and_writes_nothing(stored, amend):
    # When b is amended from 50.5 to 60.6 seconds (the counter would be 100.6 of 100.5)
    status, answer = amend("c-over", "b", seconds("60.6"))
    # Then the item is refused with a 429 naming the metric and the limit
    assert status == 429, answer
    [result] = answer["results"]
    assert result["status"] == "refused" and result["error"]["status"] == 429
    assert result["error"]["details"] == [{"field": "values", "metric": "gpu_seconds", "limit": "100.5"}]
    assert "past its hard limit of 100.5" in result["error"]["message"]
    # And nothing was written: the counter, the stored sum and the event's trail are as before
    assert counter() == stored_sum(stored) == Decimal("90.5")
    assert container.correction_service().ledger.state("acme-corp", "b") is None
    assert container.correction_service().ledger.record("acme-corp", "c-over") is None


def test_an_amend_sent_twice_moves_the_counter_once(stored, amend):
    # When the same amend of b (50.5 to 55.5) is sent twice
    first = amend("c-twice", "b", seconds("55.5"))
    second = amend("c-twice", "b", seconds("55.5"))
    # Then it is applied once and answered already_applied the second time
    assert first[0] == second[0] == 200
    assert [r["status"] for r in (first[1]["results"][0], second[1]["results"][0])] == [
        "applied",
        "already_applied",
    ]
    # And the counter moved by 5 once: it equals the stored sum
    assert counter() == stored_sum(stored) == Decimal("95.5")
    # And a later amend of b (to 10) moves it from what it counts now (55.5), not from the original
    assert amend("c-next", "b", seconds("10"))[0] == 200
    assert counter() == stored_sum(stored) == Decimal("50")


@pytest.fixture(scope="module")
def corrections_app() -> Any:
    from billing_local.runner import load_module

    return load_module("corrections")
