"""Stripe's total equals the statement's to the cent; the adapter type-checks against the SDK;
the double's fixtures are Stripe's own."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import sys
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing.invoicing import StatementInconsistent, statement_cents
from billing_local.stripe_double import FIXTURES_PATH
from billing_local.template import PROJECT_ROOT
from tests.invoicing.conftest import MONTH, Billing, cents, make_statement, make_tenant

_ids = itertools.count()
sub_cent = st.decimals(
    min_value=Decimal(0), max_value=Decimal(3), places=9, allow_nan=False, allow_infinity=False
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(amounts=st.lists(sub_cent, min_size=1, max_size=40))
def test_stripe_total_equals_statement_total_with_many_sub_cent_lines(billing: Billing, amounts) -> None:
    # Given a statement of many sub-cent lines, each rounded half-up to cents once
    tenant_id = f"h{next(_ids)}"
    make_tenant(tenant_id, customer=None)
    statement = make_statement(tenant_id, amounts)

    # When it is invoiced
    outcome = billing.service.invoice(tenant_id, MONTH)

    # Then Stripe's invoice (if any) totals exactly the statement's cents, line by line
    if cents(statement) == 0:
        assert outcome.state == "not_sent" and billing.stripe.invoices_for(tenant_id) == []
        return
    (invoice,) = billing.stripe.invoices_for(tenant_id)
    assert invoice["total"] == cents(statement) == outcome.stripe_total
    by_line = {line["metadata"]["line_id"]: line["amount"] for line in invoice["lines"]["data"]}
    assert by_line == {line.line_id: int(line.amount * 100) for line in statement.lines}


def test_a_statement_whose_total_is_not_its_lines_is_refused(env) -> None:
    statement = make_statement("x", ["1.00", "2.00"], store=False)
    broken = statement.model_copy(update={"total": Decimal("3.01")})
    with pytest.raises(StatementInconsistent, match="lines sum to 300 cents but the total is 301"):
        statement_cents(broken)
    with pytest.raises(StatementInconsistent, match="not a whole number of cents"):
        statement_cents(statement.model_copy(update={"total": Decimal("3.001")}))


@pytest.mark.skipif(
    shutil.which("mypy", path=str(PROJECT_ROOT / ".venv/bin")) is None and shutil.which("mypy") is None,
    reason="mypy not installed",
)
def test_stripe_adapter_type_checks_against_the_sdk() -> None:
    # A wrong Stripe parameter name or type is a mypy error (the SDK's params are TypedDicts).
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--no-error-summary",
            "layers/billing/billing/adapters/stripe",
            "layers/billing/billing/invoicing",
            "layers/billing/billing/adapters/dynamodb/invoice_records.py",
            "src/billing_local/stripe_double",
        ],
        check=False,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_double_fixtures_are_stripes_own_objects() -> None:
    ours = json.loads(FIXTURES_PATH.read_text())["resources"]
    assert {"customer", "invoice", "invoiceitem", "line_item", "event"} <= set(ours)
    shared = PROJECT_ROOT.parent / "shared/stripe/fixtures3.json"
    if not shared.exists():
        pytest.skip("../shared/stripe/fixtures3.json not beside the clone")
    original = json.loads(shared.read_text())["resources"]
    for name, obj in ours.items():
        assert obj == original[name], f"{name} differs from Stripe's fixture"
