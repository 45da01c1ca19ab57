"""Every `billing` command prints, with --json, exactly one JSON document on stdout (money as strings,
instants as ISO 8601 Z) and nothing else there: progress, narration and the domain's JSON logs go
to stderr. Run as a team runs a month, on the real stores (moto, embedded ClickHouse, the Stripe
double)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from billing.runtime.observability import logger
from billing_cli import run
from billing_cli.errors import ExitCode
from tests.cli.test_no_tracebacks import COMMANDS as LEAF_COMMANDS
from tests.conftest import CHDB_PATH
from tests.invoicing.conftest import (  # noqa: F401 - fixtures used by name
    MONTH,
    Billing,
    billing,
    make_tenant,
    stripe_double,
)

ROOT = Path(__file__).resolve().parents[2]
RATING_DATA = ROOT / "tests" / "rating" / "data"
# Commands whose --json is checked elsewhere in this file (the `local` client and `serve` need a
# running server) or not run here: `demo` runs the whole pipeline (tests/invoicing/test_demo_stage.py
# runs its stages), `portal serve` blocks serving the page.
NOT_IN_THE_MONTH = {("demo",), ("portal", "serve"), ("serve",), ("local", "key"), ("local", "schedule")}
NOT_IN_THE_MONTH |= {("local", "replay")}
# tests/outgoing_webhooks/test_cli.py and test_delivery_log.py run every `webhooks` command with --json.
NOT_IN_THE_MONTH |= {
    ("webhooks", c)
    for c in ("add", "list", "delete", "enable", "rotate-secret", "sample", "deliveries", "resend")
}


STDERR: list[str] = []  # what the last json_of printed on stderr


def json_of(argv: list[str], capsys: pytest.CaptureFixture[str], expected: int = ExitCode.OK) -> object:
    """Run ``billing ARGV --json`` here; its stdout must be one JSON document and nothing else."""
    code = run([*argv, "--json"], allow_forward=False)
    out, err = capsys.readouterr()
    assert code == expected, (argv, code, out, err)
    assert "Traceback" not in out + err
    STDERR[:] = [err]
    return json.loads(out)  # raises on anything but exactly one document


def test_every_command_prints_one_json_document_on_stdout(
    billing: Billing,  # noqa: F811 - the fixture imported above
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ran: set[tuple[str, ...]] = set()

    def cli(*argv: str, expected: int = ExitCode.OK) -> object:
        words = tuple(a for a in argv if not a.startswith("-"))
        ran.update({words[:1], words[:2]})
        return json_of(list(argv), capsys, expected)

    # Given the schema, the Stripe catalog and a tenant with a card on file
    assert cli("db", "migrate") == {"applied": [], "metrics_exported": 0}
    synced = cli("stripe", "sync-catalog")
    assert isinstance(synced, dict) and synced["dry_run"] is False and synced["products"]
    check = cli("stripe", "check", expected=ExitCode.NOT_CONFIGURED)  # no webhook endpoint yet
    assert isinstance(check, dict) and check["missing"] is True
    make_tenant("acme")

    # When a month of usage is ingested (its service logs each batch: on stderr)
    events = tmp_path / "events.jsonl"
    events.write_text(
        "".join(
            json.dumps(
                {
                    "event_id": f"e{i}",
                    "tenant_id": "acme",
                    "timestamp": f"{MONTH}-0{1 + i % 9}T12:00:00Z",
                    "type": "query",
                    "model": "gpt-4o-mini",
                    "input_tokens": 1000,
                    "output_tokens": 200,
                }
            )
            + "\n"
            for i in range(20)
        )
    )
    ingested = cli("ingest", str(events))
    assert isinstance(ingested, dict) and ingested["accepted"] == 20 and ingested["problems"] == []

    # Then usage, quota, the close, the statement, the CSV and the Stripe invoices read as JSON
    usage = cli("usage", "--tenant", "acme", "--month", MONTH)
    assert isinstance(usage, dict) and usage["total"]["events"] == 20
    assert isinstance(usage["total"]["cost_usd"], str)  # a Decimal, exactly
    # (corrections, run inside their window: the month's last day)
    from billing.kernel.periods import parse_instant
    from billing.runtime import container

    container.override(clock=lambda: parse_instant(f"{MONTH}-30T12:00:00Z"))
    voided = cli("corrections", "void", "acme", "e0", "--reason", "sent twice", "--id", "fix-1")
    assert isinstance(voided, dict) and voided["status"] == "applied"
    amended = cli("corrections", "amend", "acme", "e1", "--reason", "x", "--values", '{"input_tokens": 10}')
    assert isinstance(amended, dict) and amended["correction"]["after"]["input_tokens"] == 10
    again = cli("corrections", "void", "acme", "e0", "--reason", "again", expected=ExitCode.FAILED)
    assert isinstance(again, dict) and again["error"]["status"] == 409
    shown = cli("corrections", "show", "acme", "e0")
    assert isinstance(shown, dict) and shown["status"] == "voided" and shown["current"] is None
    container.override(clock=None)
    usage = cli("usage", "--tenant", "acme", "--month", MONTH)
    assert isinstance(usage, dict) and usage["total"]["events"] == 19
    assert cli("quota", "reconcile", "--month", MONTH) == {"month": MONTH, "repairs": []}
    preview = cli("invoice", "preview", "--tenant", "acme", "--month", MONTH)
    assert isinstance(preview, dict) and isinstance(preview["total"], str)
    closed = cli("invoice", "close", "--month", MONTH)
    assert isinstance(closed, dict) and closed["statements"] == 1
    assert closed["closed_at"].endswith("Z")
    receipts = cli("events", "receipt", "e0", "never-sent", "--tenant", "acme")
    assert isinstance(receipts, dict)
    assert [(r["event_id"], r["status"]) for r in receipts["receipts"]] == [
        ("e0", "billed"),
        ("never-sent", "unknown"),
    ]
    reconciled = cli("reconcile", "--tenant", "acme", "--month", MONTH)
    assert isinstance(reconciled, dict) and reconciled["agree"] is True
    # e0's void keeps it stored and bills it as nothing
    assert (reconciled["stored"], reconciled["billed"], reconciled["voided"]) == (20, 19, 1)
    exported = cli("invoice", "export", "--month", MONTH, "--out", str(tmp_path / "invoices.csv"))
    assert isinstance(exported, dict) and exported["rows"] == 1
    planned = cli("invoice", "push", "--month", MONTH, "--dry-run")
    assert isinstance(planned, dict) and planned["requests"]["acme"]
    pushed = cli("invoice", "push", "--month", MONTH)
    assert isinstance(pushed, dict) and [o["tenant_id"] for o in pushed["outcomes"]] == ["acme"]

    # And the tenant tools
    granted = cli("tenant", "grant-credit", "acme", "--id", "g1", "--amount", "10.00")
    assert isinstance(granted, dict) and granted["created"] is True
    assert granted["grant"]["amount"] == "10.00" and granted["grant"]["granted_at"].endswith("Z")
    # (the service's JSON log line of the grant went to stderr)
    assert json.loads(STDERR[0].splitlines()[0])["message"] == "credit granted"
    coupon = cli("tenant", "add-coupon", "acme", "--id", "c1", "--percent-off", "10", "--duration", "once")
    assert isinstance(coupon, dict) and coupon["created"] is True
    calendar = cli("tenant", "calendar", "acme")
    assert isinstance(calendar, dict) and calendar["interval"] == "month" and calendar["scheduled"] is None
    changed = cli("tenant", "calendar", "acme", "--time-zone", "Asia/Kolkata", "--interval", "quarter")
    assert isinstance(changed, dict) and changed["scheduled"]["time_zone"] == "Asia/Kolkata"
    listed = cli("tenant", "calendar", "acme", "--periods", "3")
    assert isinstance(listed, dict) and len(listed["periods"]) == 3
    assert listed["periods"][1]["time_zone"] == "Asia/Kolkata"  # the change applies from the second
    credits = cli("tenant", "credits", "acme")
    assert isinstance(credits, dict) and credits["tenant_id"] == "acme"
    status = cli("tenant", "status", "acme")
    assert isinstance(status, dict) and status["tenant_id"] == "acme"
    dunning = cli("tenant", "dunning-run")
    assert isinstance(dunning, dict) and dunning["due"] == 0
    sample = str(ROOT / "events" / "stripe_webhook.json")
    signed = cli("tenant", "sign-webhook", sample, "--secret", "whsec_test")
    assert isinstance(signed, dict) and "Stripe-Signature" in signed["headers"]
    out = tmp_path / "signed.json"
    assert cli("tenant", "sign-webhook", sample, "--secret", "whsec_test", "-o", str(out)) == {
        "path": str(out)
    }
    link = cli("portal", "link", "acme")
    assert isinstance(link, dict) and "token=" in link["url"] and link["expires_at"].endswith("Z")

    # And the pricing what-if, offline on its own embedded environment
    monkeypatch.setenv("CLICKHOUSE_URL", f"chdb://{CHDB_PATH}")
    sim_events = tmp_path / "sim.jsonl"
    sim_events.write_text(
        json.dumps(
            {"event_id": "s1", "tenant_id": "steady", "timestamp": f"{MONTH}-02T00:00:00Z", "type": "query"}
        )
        + "\n"
    )
    level_before_simulate = logger.log_level
    simulated = cli(
        "simulate",
        "--tenants",
        str(RATING_DATA / "tenants.yaml"),
        "--events",
        str(sim_events),
        "--month",
        MONTH,
        "--out",
        str(tmp_path / "sim.csv"),
        "--plans",
        str(RATING_DATA / "plans.yaml"),
    )
    assert isinstance(simulated, dict) and simulated["current"]["accepted"] == 1
    # (simulate quiets the domain's logger while it runs, and gives its level back)
    assert logger.log_level == level_before_simulate

    # Every command was run with --json, but those checked on their own below or named above
    every = {path for path, _ in LEAF_COMMANDS}
    assert every - NOT_IN_THE_MONTH <= ran, sorted(every - NOT_IN_THE_MONTH - ran)


def test_commands_not_run_here_still_take_json() -> None:
    for path, command in LEAF_COMMANDS:
        assert "--json" in [o for p in command.params for o in p.opts], path


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[dict, Path]]:
    """``billing serve --json`` in a subprocess; yields (its JSON document, its --data DIR)."""
    data = tmp_path / "serve"
    process = subprocess.Popen(
        [sys.executable, "-c", "from billing_cli import main; main()", "serve", "--port", "0"]
        + ["--data", str(data), "--json"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "BILLING_LOCAL": ""},
    )
    assert process.stdout is not None
    text, document, deadline = "", None, time.monotonic() + 120
    while document is None and time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        text += line
        try:
            document = json.loads(text)
        except ValueError:
            continue
    try:
        assert isinstance(document, dict), (text, process.poll())
        yield document, data
    finally:
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=60)
        # Then nothing but that document ever reached stdout
        assert rest == "", rest


def test_serve_and_the_local_client_print_json(
    served: tuple[dict, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given `billing serve --json` listening: its stdout was one document naming it
    document, data = served
    assert document["url"].startswith("http://127.0.0.1:") and document["api_key"]
    # And a tenant signed up on it
    request = urllib.request.Request(
        document["url"] + "/v1/tenants",
        method="POST",
        data=json.dumps(
            {"id": "acme", "name": "Acme", "email": "b@acme.example", "plan": "starter"}
        ).encode(),
        headers={"x-api-key": document["api_key"], "content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 201
    # When the local client asks it for a key, a replay and a dunning run, with --json
    key = json_of(["local", "key", "acme", "--data", str(data)], capsys)
    replay = json_of(["local", "replay", "--data", str(data)], capsys)
    dunning = json_of(["local", "schedule", "dunning", "--data", str(data)], capsys)
    # Then each answer is the server's JSON body
    assert isinstance(key, dict) and key["tenant_id"] == "acme"
    assert isinstance(replay, dict) and isinstance(dunning, dict)
    # And an unknown tenant is the same exit code as in every other command, nothing on stdout
    code = run(["local", "key", "nobody", "--data", str(data), "--json"], allow_forward=False)
    out, err = capsys.readouterr()
    assert code == ExitCode.NOT_FOUND and out == "" and "unknown tenant nobody" in err
