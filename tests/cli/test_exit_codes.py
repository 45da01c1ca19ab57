"""A service that does not answer is exit 3 whichever it is and whichever command meets it, and a
partial success exit 5: what a script retries, tells apart from a missing setting (4) or a typo (2)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from billing.runtime import container
from billing_cli import run
from billing_cli.errors import ExitCode
from tests.dunning.support import handlers, stripe  # noqa: F401 - fixtures used by name
from tests.invoicing.conftest import MONTH, Billing, billing, make_tenant, stripe_double  # noqa: F401

CLOSED_PORT = "http://127.0.0.1:9"  # discard: nothing listens there


def test_clickhouse_not_answering_is_exit_3(env, capsys, monkeypatch) -> None:
    # Given CLICKHOUSE_URL pointing where no ClickHouse answers
    monkeypatch.setenv("CLICKHOUSE_URL", CLOSED_PORT)
    container.reset()
    # When usage or the schema migration runs, Then both are exit 3 with one line naming the setting
    for argv in (["usage", "--tenant", "acme", "--month", MONTH, "--json"], ["db", "migrate"]):
        code = run(argv, allow_forward=False)
        out, err = capsys.readouterr()
        assert code == ExitCode.UNREACHABLE, (argv, out, err)
        assert out == "" and "ClickHouse is unreachable" in err and "CLICKHOUSE_URL" in err


def test_stripe_not_answering_is_exit_3(
    billing: Billing,  # noqa: F811 - the fixture imported above
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the Stripe API base where nothing answers, and one retry
    monkeypatch.setenv("STRIPE_API_BASE", CLOSED_PORT)
    monkeypatch.setenv("STRIPE_MAX_ATTEMPTS", "1")
    container.reset()
    # When the account is checked
    code = run(["stripe", "check", "--json"], allow_forward=False)
    out, err = capsys.readouterr()
    # Then it is exit 3, not a missing setup (4)
    assert code == ExitCode.UNREACHABLE, (out, err)
    assert out == "" and "Stripe is unreachable" in err


def test_some_lines_invalid_is_exit_5_and_none_accepted_exit_6(
    billing: Billing,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    make_tenant("acme")
    good = {"event_id": "e1", "tenant_id": "acme", "timestamp": f"{MONTH}-02T00:00:00Z", "type": "query"}
    mixed, bad = tmp_path / "mixed.jsonl", tmp_path / "bad.jsonl"
    mixed.write_text(json.dumps(good) + "\nnot json\n")
    bad.write_text("not json\n")
    # When a file with one good and one bad line is ingested, Then exit 5 and the bad line is named
    assert run(["ingest", str(mixed), "--json"], allow_forward=False) == ExitCode.PARTIAL
    result = json.loads(capsys.readouterr().out)
    assert result["accepted"] == 1 and [p["line"] for p in result["problems"]] == [2]
    # When nothing in the file is an event, Then exit 6
    assert run(["ingest", str(bad), "--json"], allow_forward=False) == ExitCode.FAILED
    assert json.loads(capsys.readouterr().out)["accepted"] == 0


def test_a_dunning_run_whose_retries_cannot_be_made_is_exit_6(
    stripe,  # noqa: ANN001, F811 - tests/dunning's fixture: handlers and a clock, no Stripe key stored
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tests.dunning.support import T0, invoice_event
    from tests.dunning.support import make_tenant as make_dunning_tenant

    # Given acme's invoice failed on T0, so a retry is due on day 3, and no Stripe key to pay it with
    make_dunning_tenant("acme")
    stripe.deliver(invoice_event("evt_f", "invoice.payment_failed", "in_acme_11", "acme", T0))
    stripe.clock.set(T0 + timedelta(days=3, hours=1))
    capsys.readouterr()  # what the webhook handler printed (its EMF metrics) is not the command's
    # When the operator runs the due retries
    code = run(["tenant", "dunning-run", "--json"], allow_forward=False)
    out, err = capsys.readouterr()
    # Then the report says the retry could not be made, and the run is exit 6 (none could be made)
    report = json.loads(out)
    assert (report["due"], report["attempted"], report["errors"]) == (1, 0, 1), report
    assert code == ExitCode.FAILED, err
