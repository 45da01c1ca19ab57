"""`billing --help` is the map of the CLI: its panels in the order a team works (try it, set up,
tenants, usage, month end, pricing), and the global options a script needs."""

from __future__ import annotations

import pytest

from billing_cli import run

PANELS = ["Try it locally", "Set up", "Tenants", "Usage", "Month end", "Pricing"]
COMMANDS = ["demo", "serve", "local", "db", "stripe", "tenant", "portal", "ingest", "usage", "quota"]
COMMANDS += ["invoice", "simulate"]


def positions(text: str, words: list[str], prefix: str = "") -> list[int]:
    return [text.index(prefix + w) for w in words]


def test_the_help_lists_the_groups_in_working_order_with_the_global_options(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    # When a person asks for the help
    assert run(["--help"]) == 0
    text = capsys.readouterr().out
    # Then the global options are shown
    assert "--local" in text and "BILLING_LOCAL" in text and "--debug" in text
    # And the panels, then the commands within them, come in working order
    found = positions(text, PANELS, "─ ")
    assert found == sorted(found), found
    lines = [line.strip("│ ").split(" ")[0] for line in text.splitlines() if line.startswith("│ ")]
    listed = [w for w in lines if w in COMMANDS]
    assert listed == COMMANDS, listed


def test_each_group_help_lists_its_commands(capsys: pytest.CaptureFixture[str]) -> None:
    for group, commands in {
        "invoice": ["preview", "close", "export", "push"],
        "tenant": [
            "status",
            "credits",
            "grant-credit",
            "add-coupon",
            "calendar",
            "dunning-run",
            "sign-webhook",
        ],
    }.items():
        assert run([group, "--help"]) == 0
        text = capsys.readouterr().out
        assert all(c in text for c in commands), (group, text)
