"""An unknown tenant gets the same answer from every command that takes a tenant id: the message of
``billing.tenants.tenant.unknown_tenant`` on stderr and exit 1 (``ExitCode.NOT_FOUND``, not a usage
error), with or without --json."""

from __future__ import annotations

import pytest

from billing_cli import run
from billing_cli.errors import ExitCode
from tests.rating.helpers import make_tenant

# Every command taking a tenant id, with that id replaced by TENANT. ``billing local key`` is the one
# left out: it asks a running ``billing serve`` (tests/cli/test_json_output.py runs it).
COMMANDS = [
    ["usage", "--tenant", "TENANT", "--month", "2025-11"],
    ["invoice", "preview", "--tenant", "TENANT", "--month", "2025-11"],
    ["invoice", "push", "--month", "2025-11", "--tenant", "TENANT", "--dry-run"],
    ["tenant", "status", "TENANT"],
    ["tenant", "credits", "TENANT"],
    ["tenant", "grant-credit", "TENANT", "--id", "g1", "--amount", "50.00"],
    ["tenant", "add-coupon", "TENANT", "--id", "c1", "--percent-off", "10", "--duration", "once"],
    ["tenant", "calendar", "TENANT"],
    ["tenant", "calendar", "TENANT", "--time-zone", "Asia/Kolkata"],
    ["portal", "link", "TENANT"],
    ["events", "receipt", "e-1", "--tenant", "TENANT"],
    ["reconcile", "--tenant", "TENANT", "--month", "2025-11"],
]


@pytest.mark.parametrize("as_json", [False, True], ids=["table", "json"])
@pytest.mark.parametrize(
    "argv",
    COMMANDS,
    ids=lambda argv: " ".join(w for w in argv[:2] if w != "TENANT" and not w.startswith("-")),
)
def test_an_unknown_tenant_is_exit_1_with_the_unknown_tenant_message(env, capsys, argv, as_json):
    # Given a configured environment where tenant "acme" exists and "nobody" does not
    make_tenant("acme", [("starter", "2025-10-01T00:00:00Z")])
    # When the command is run for "nobody"
    code = run(
        [w.replace("TENANT", "nobody") for w in argv] + (["--json"] if as_json else []), allow_forward=False
    )
    # Then it fails with exit 1 and the one unknown-tenant message on stderr, nothing on stdout
    out, err = capsys.readouterr()
    assert code == ExitCode.NOT_FOUND == 1, (out, err)
    assert err.strip() == "unknown tenant nobody"
    assert out == ""
