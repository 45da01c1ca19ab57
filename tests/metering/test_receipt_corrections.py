# ruff: noqa: F811 - the fixtures of the receipts and corrections tests, imported by name
"""Receipts and the reconcile of corrected events: a voided or amended event keeps its status (the
furthest its row got), says ``corrected``, and lists each correction with where it is billed; the
reconcile's accepted, stored and billed still agree after a void, before and after the close."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from billing.runtime import container
from billing_cli import run
from tests.metering.conftest import usage
from tests.metering.test_corrections import amend, at, correct, corrections_app, void  # noqa: F401 - fixtures
from tests.metering.test_receipts import DEC, NOV, call, receipt, reconcile, starter, status_app  # noqa: F401 - fixtures

IN_NOVEMBER = datetime(2025, 11, 20, tzinfo=UTC)
AFTER_NOVEMBER = datetime(2025, 12, 1, 1, tzinfo=UTC)
IN_DECEMBER = datetime(2025, 12, 5, tzinfo=UTC)
AFTER_DECEMBER = datetime(2026, 1, 1, 1, tzinfo=UTC)


@pytest.fixture(autouse=True)
def november(env):
    at(IN_NOVEMBER)
    yield
    container.override(clock=None)


def test_a_void_and_an_amend_before_the_close_show_on_the_receipts_and_the_counts_agree(
    env,
    post,
    correct,
    receipt,
    reconcile,
):
    # Given three November events and, before November closes, e-1 voided and e-2 amended
    starter()
    assert post({"events": [usage("e-1"), usage("e-2"), usage("e-3", ts="2025-11-04T00:00:00Z")]})[0] == 202
    cost = env.store.month_usage("acme-corp", NOV)["cost_usd"] / 3
    assert correct(void("c-1", "e-1"), amend("c-2", "e-2", {"input_tokens": 500}))[0] == 200
    # When their receipts are read
    voided, amended, untouched = receipt("e-1"), receipt("e-2"), receipt("e-3")
    # Then each keeps its status (stored) and says how it was corrected, by whom and why
    assert (voided["status"], voided["corrected"]) == ("stored", "voided")
    assert (amended["status"], amended["corrected"]) == ("stored", "amended")
    assert (untouched["corrected"], untouched["corrections"]) == (None, [])
    entry = voided["corrections"][0]
    assert (entry["correction_id"], entry["kind"], entry["reason"], entry["applied"]) == (
        "c-1",
        "void",
        "sent twice",
        True,
    )
    assert entry["requested_by"] and entry["at"] == "2025-11-20T00:00:00Z"
    # And the difference is exact: one event and its stored cost taken off
    assert entry["difference"]["events"] == -1 and entry["difference"]["input_tokens"] == -100
    assert Decimal(entry["difference"]["cost_usd"]) == -cost
    assert amended["corrections"][0]["difference"]["events"] == 0
    assert amended["corrections"][0]["difference"]["input_tokens"] == 400
    # And each correction waits for November's statement, as the receipt's message says
    assert entry["billed"] is None and "statement of 2025-11 when that month closes" in entry["message"]
    assert "voided by correction 'c-1'" in voided["message"]
    # And the reconcile counts the voided event as accepted and stored, and agrees
    open_month = reconcile()
    assert (open_month["accepted"], open_month["stored"], open_month["voided"], open_month["amended"]) == (
        3,
        3,
        1,
        1,
    )
    assert open_month["agree"] is True and open_month["stored_not_accepted"] == []
    # When November closes
    at(AFTER_NOVEMBER)
    container.billing_cycle().close(NOV)
    # Then the receipts say the corrections are billed on November's statement itself
    closed = receipt("e-1")
    assert closed["status"] == "billed" and closed["billed"]["statement_id"] == "acme-corp:2025-11"
    assert closed["corrections"][0]["billed"]["statement_id"] == "acme-corp:2025-11"
    assert closed["corrections"][0]["billed"]["as"] == "usage"
    # And billed counts the voided event as nothing: 2 events billed, 3 accepted and stored, agreeing
    month = reconcile()
    assert (month["accepted"], month["stored"], month["billed"], month["billed_on_time"]) == (3, 3, 2, 2)
    assert month["agree"] is True and month["corrections_late"] == 0


def test_a_void_after_the_close_is_billed_as_an_adjustment_and_the_months_still_agree(
    env,
    post,
    correct,
    receipt,
    reconcile,
):
    # Given two November events billed on November's statement
    starter()
    assert post({"events": [usage("e-1"), usage("e-2", ts="2025-11-04T00:00:00Z")]})[0] == 202
    at(AFTER_NOVEMBER)
    container.billing_cycle().close(NOV)
    # When e-1 is voided in December
    at(IN_DECEMBER)
    assert correct(void("c-9", "e-1", reason="duplicate of e-2"))[0] == 200
    # Then its receipt still says it was billed on November's statement (a closed statement never
    # changes), that it is voided, and that the void waits for December's statement
    found = receipt("e-1")
    assert found["status"] == "billed" and found["billed"]["statement_id"] == "acme-corp:2025-11"
    assert found["corrected"] == "voided" and found["corrections"][0]["billed"] is None
    assert "adjustment on the statement of 2025-12" in found["corrections"][0]["message"]
    # And November's counts still agree: the void is a correction stored after its cutoff
    month = reconcile()
    assert (month["accepted"], month["stored"], month["billed"], month["billed_on_time"]) == (2, 2, 2, 2)
    assert (month["voided"], month["corrections_late"], month["agree"]) == (1, 1, True)
    # When December closes
    at(AFTER_DECEMBER)
    container.billing_cycle().close(DEC)
    # Then the void is billed as an adjustment line of November on December's statement
    billed = receipt("e-1")["corrections"][0]["billed"]
    assert (billed["statement_id"], billed["as"], billed["event_month"]) == (
        "acme-corp:2025-12",
        "adjustment",
        "2025-11",
    )
    assert billed["lines"]
    assert reconcile()["agree"] is True


def test_the_cli_shows_a_corrected_receipt_and_a_reconcile_that_agrees(env, post, correct, capsys):
    # Given a November event voided and one amended
    starter()
    assert post({"events": [usage("e-1"), usage("e-2")]})[0] == 202
    assert correct(void("c-1", "e-1"), amend("c-2", "e-2", {"output_tokens": 5}))[0] == 200
    capsys.readouterr()
    # When `billing events receipt` runs, as JSON and as a table
    assert (
        run(["events", "receipt", "e-1", "e-2", "--tenant", "acme-corp", "--json"], allow_forward=False) == 0
    )
    document = json.loads(capsys.readouterr().out)
    # Then each receipt says how it was corrected
    assert [r["corrected"] for r in document["receipts"]] == ["voided", "amended"]
    assert document["receipts"][1]["corrections"][0]["difference"]["output_tokens"] == -15
    assert run(["events", "receipt", "e-1", "--tenant", "acme-corp"], allow_forward=False) == 0
    assert "voided" in capsys.readouterr().out
    # And `billing reconcile` exits 0 before and after the close, counting the void
    assert (
        run(["reconcile", "--tenant", "acme-corp", "--month", "2025-11", "--json"], allow_forward=False) == 0
    )
    assert json.loads(capsys.readouterr().out)["voided"] == 1
    at(AFTER_NOVEMBER)
    container.billing_cycle().close(NOV)
    capsys.readouterr()
    assert (
        run(["reconcile", "--tenant", "acme-corp", "--month", "2025-11", "--json"], allow_forward=False) == 0
    )
    after = json.loads(capsys.readouterr().out)
    assert (after["accepted"], after["stored"], after["billed"], after["agree"]) == (2, 2, 1, True)
