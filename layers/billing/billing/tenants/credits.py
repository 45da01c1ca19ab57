"""Prepaid credits: grants per tenant and the append-only ledger of grants and burns.

Invariants: a grant is written once (its ``grant_id`` is the idempotency key; the same grant again
is a no-op, a different one under the same id a 409); a burn is written once per (statement, grant)
with a conditional put, so re-running the close (or re-rating a statement) burns nothing twice; a
grant's balance is its amount less its burns and never goes below zero. The statement applies
credits after every charge and coupon (billing.rating.credit_lines: priority, then earliest expiry).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator, model_validator

from billing.kernel.money import ZERO, exponent, fmt_minor, reject_float
from billing.kernel.periods import iso, rfc3339_field
from billing.kernel.validation import field_error
from billing.statements.statement import Statement


class CreditGrant(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    tenant_id: str
    grant_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    amount: Decimal = Field(gt=0)
    currency: str = Field(pattern=r"^[a-z]{3}$")
    granted_at: datetime
    expires_at: datetime | None = None
    priority: int = Field(default=100, ge=0, le=1_000_000)  # lower burns first
    description: str = Field(default="", max_length=256)

    _no_float = field_validator("amount", mode="before")(reject_float)
    _parse = field_validator("granted_at", "expires_at", mode="before")(rfc3339_field)

    @field_serializer("granted_at", "expires_at")
    def _ser(self, value: datetime | None) -> str | None:
        return iso(value) if value else None

    @model_validator(mode="after")
    def _expiry(self) -> CreditGrant:
        if self.expires_at is not None and self.expires_at <= self.granted_at:
            raise field_error(
                "CreditGrant", "expires_at", "expires_at must be after granted_at", self.expires_at
            )
        if self.amount != self.amount.quantize(Decimal(1).scaleb(-exponent(self.currency))):
            raise field_error(
                "CreditGrant",
                "amount",
                f"amount must be whole {self.currency} minor units ({exponent(self.currency)} decimals)",
                str(self.amount),
            )
        return self

    def usable_in(self, start: datetime, end: datetime) -> bool:
        """Usable on a statement of period [start, end): granted before its end, not expired by its start."""
        return self.granted_at < end and (self.expires_at is None or self.expires_at > start)


class CreditBurn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    tenant_id: str
    grant_id: str
    statement_id: str
    amount: Decimal = Field(gt=0)


@dataclass(frozen=True)
class CreditBalance:
    """A grant and what of it a statement may still burn."""

    grant: CreditGrant
    available: Decimal


class CreditLedger(Protocol):
    """Append-only: ``add_grant``/``add_burn`` are conditional puts, True when written now."""

    def add_grant(self, grant: CreditGrant) -> bool: ...

    def get_grant(self, tenant_id: str, grant_id: str) -> CreditGrant | None: ...

    def entries(self, tenant_id: str) -> tuple[list[CreditGrant], list[CreditBurn]]: ...

    def tenants_with_grants(self) -> set[str]: ...

    def add_burn(self, burn: CreditBurn) -> bool: ...


def balances(
    grants: Iterable[CreditGrant], burns: Iterable[CreditBurn], *, excluding: str | None = None
) -> dict[str, Decimal]:
    """grant_id -> amount less every burn (but those of statement ``excluding``), never below zero."""
    left = {g.grant_id: g.amount for g in grants}
    for burn in burns:
        if burn.statement_id != excluding and burn.grant_id in left:
            left[burn.grant_id] = max(ZERO, left[burn.grant_id] - burn.amount)
    return left


def burns_of(statement: Statement) -> list[CreditBurn]:
    """The burns a statement's credit lines record (line_id ``credit:{grant_id}``, negative amount)."""
    return [
        CreditBurn(
            tenant_id=statement.tenant_id,
            grant_id=line.line_id.removeprefix("credit:"),
            statement_id=statement.statement_id,
            amount=-line.amount,
        )
        for line in statement.lines
        if line.kind == "credit" and line.amount < 0
    ]


class CreditBook:
    """What the close and the status API ask of the ledger."""

    def __init__(self, ledger: CreditLedger):
        self.ledger = ledger

    def for_statements(
        self,
        tenant_ids: Sequence[str],
        statement_ids: dict[str, str],
        period: dict[str, tuple[datetime, datetime]],
    ) -> dict[str, list[CreditBalance]]:
        """Per tenant: its grants usable in the statement's period, with what each has left before
        that statement (its own burns excluded, so re-rating it gives the same lines). One tenant
        (a preview, a final statement) reads its own entries; more (the close) first ask which
        tenants hold grants at all, one index query instead of one query per tenant."""
        wanted = set(tenant_ids)
        holders = wanted if len(wanted) <= 1 else self.ledger.tenants_with_grants() & wanted
        out: dict[str, list[CreditBalance]] = {}
        for tenant_id in sorted(holders):
            grants, burns = self.ledger.entries(tenant_id)
            left = balances(grants, burns, excluding=statement_ids.get(tenant_id))
            start, end = period[tenant_id]
            usable = [CreditBalance(g, left[g.grant_id]) for g in grants if g.usable_in(start, end)]
            if usable:
                out[tenant_id] = usable
        return out

    def record(self, statement: Statement) -> int:
        """Write the statement's burns once each; how many were written now."""
        return sum(self.ledger.add_burn(burn) for burn in burns_of(statement))

    def summary(self, tenant_id: str, now: datetime) -> dict[str, object]:
        """What the status API and ``billing tenant status`` show: the balance still usable (grants
        not expired by ``now``, per currency) and every grant with what remains of it."""
        grants = self.status(tenant_id, now)
        balance: dict[str, Decimal] = {}
        for g in grants:
            if not g["expired"]:
                currency = str(g["currency"])
                balance[currency] = balance.get(currency, ZERO) + Decimal(str(g["remaining"]))
        return {"balance": {c: fmt_minor(v, c) for c, v in sorted(balance.items())}, "grants": grants}

    def status(self, tenant_id: str, now: datetime) -> list[dict[str, object]]:
        grants, burns = self.ledger.entries(tenant_id)
        left = balances(grants, burns)
        return [
            {
                **g.model_dump(mode="json", exclude={"tenant_id"}),
                "remaining": fmt_minor(left[g.grant_id], g.currency),
                "expired": g.expires_at is not None and g.expires_at <= now,
            }
            for g in sorted(grants, key=lambda g: (g.granted_at, g.grant_id))
        ]
