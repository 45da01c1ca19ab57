"""``billing webhooks``: the operator registers, lists, rotates and deletes endpoints with the same
rules as the API, each command printing one JSON document with --json; ``sample`` prints a delivery
a receiver verifies."""

from __future__ import annotations

import json

import pytest
from standardwebhooks import Webhook

from billing_cli import run
from billing_cli.errors import ExitCode
from usage_tracker import verify_signature


def billing(argv: list[str], capsys: pytest.CaptureFixture[str], expected: int = ExitCode.OK):
    code = run([*argv, "--json"], allow_forward=False)
    out, err = capsys.readouterr()
    assert code == expected, (argv, code, out, err)
    assert "Traceback" not in out + err
    return json.loads(out) if code == ExitCode.OK else err


def test_an_endpoint_goes_through_its_life_from_the_cli(env, capsys):
    # When the operator registers an endpoint for two event types
    added = billing(
        ["webhooks", "add", "https://hooks.example.com/b", "-e", "invoice.paid", "-e", "tenant.suspended"],
        capsys,
    )
    endpoint_id, first = added["endpoint"]["id"], added["secret"]
    # Then it is listed without its secret
    listed = billing(["webhooks", "list"], capsys)["endpoints"]
    assert [e["id"] for e in listed] == [endpoint_id] and "secret" not in listed[0]
    # And a sample delivery verifies with the secret it was given, with our helper and the reference library
    sample = billing(["webhooks", "sample", endpoint_id, "--type", "tenant.suspended"], capsys)
    assert verify_signature(sample["body"], sample["headers"], first)["type"] == "tenant.suspended"
    assert Webhook(first).verify(sample["body"], sample["headers"])["sequence"] == 1
    assert sample["curl"].startswith("curl -X POST") and "webhook-signature" in sample["curl"]
    # When the secret is rotated with an overlap, Then samples verify with either secret
    rotated = billing(["webhooks", "rotate-secret", endpoint_id, "--overlap-hours", "1"], capsys)
    sample = billing(["webhooks", "sample", endpoint_id], capsys)
    for secret in (first, rotated["secret"]):
        assert verify_signature(sample["body"], sample["headers"], secret)["type"] == "invoice.paid"
    # When it is deleted, Then the list is empty and acting on it again is "not found"
    assert billing(["webhooks", "delete", endpoint_id], capsys)["deleted"] is True
    assert billing(["webhooks", "list"], capsys) == {"endpoints": []}
    assert "no webhook endpoint" in billing(["webhooks", "delete", endpoint_id], capsys, ExitCode.NOT_FOUND)


def test_a_refused_endpoint_is_a_usage_error_naming_why(env, capsys):
    err = billing(
        ["webhooks", "add", "http://hooks.example.com/b", "-e", "invoice.paid"], capsys, ExitCode.USAGE
    )
    assert "invalid field" in err
    err = billing(
        ["webhooks", "add", "https://hooks.example.com/b", "-e", "invoice.lost"], capsys, ExitCode.USAGE
    )
    assert "invalid field" in err
    assert billing(["webhooks", "list"], capsys) == {"endpoints": []}
