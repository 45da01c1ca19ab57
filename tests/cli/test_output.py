"""The JSON a script reads: Decimals exact as strings, instants in UTC with a Z, months as YYYY-MM."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

from billing.kernel.periods import Month
from billing_cli.output import emit


@dataclass
class Row:
    month: Month
    amount: Decimal
    at: datetime


def test_decimals_instants_and_months_are_written_as_a_script_reads_them(capsys) -> None:
    # Given a result with money, an instant in another zone, a naive one (UTC) and a month
    paris = timezone(timedelta(hours=1))
    row = Row(Month(2025, 11), Decimal("1E-9"), datetime(2025, 12, 1, 1, 0, tzinfo=paris))
    # When it is emitted with --json
    emit({"row": row, "naive": datetime(2025, 12, 1), "total": Decimal("29.030")}, as_json=True)
    out = capsys.readouterr().out
    # Then it is one document: the Decimal exactly, no exponent; instants in UTC with a Z
    assert json.loads(out) == {
        "row": {"month": "2025-11", "amount": "0.000000001", "at": "2025-12-01T00:00:00Z"},
        "naive": "2025-12-01T00:00:00Z",
        "total": "29.030",
    }
    assert datetime.fromisoformat(json.loads(out)["row"]["at"]).tzinfo == UTC
