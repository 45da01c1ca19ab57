"""Usage types: what an event's ``type`` may name. Three are built in (``query``, ``embedding``,
``storage``: the AI fields' meaning, unchanged); the catalog declares any others in its
``usage_types`` key (``gpu_job``, ``image``, ``seat`` ...).

Invariants checked at load: a declared id follows the event property name rule, is not a built-in
type and is declared once. An event of a declared type measures itself in ``properties`` only (no
``model``, tokens or bytes: ``billing.metering.events``), so it adds nothing to the built-in
metrics' sums, and charges without an ``event_type`` (``billing.rating.metrics``) read the built-in
types only: declaring a type never changes what an existing charge bills.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from billing.metering.events import BUILT_IN_TYPES

__all__ = ["BUILT_IN_TYPES", "USAGE_TYPE_ID", "UsageType", "check_usage_types"]
USAGE_TYPE_ID = r"^[a-z][a-z0-9_]{0,63}$"


class UsageType(BaseModel):
    """One usage type the catalog declares: an id events name in ``type``, and how people read it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(pattern=USAGE_TYPE_ID)
    name: str = Field(default="", max_length=128)
    unit: str = Field(default="", max_length=64)  # what one event is, e.g. "job" (for people only)

    @model_validator(mode="after")
    def _not_built_in(self) -> UsageType:
        if self.id in BUILT_IN_TYPES:
            raise ValueError(
                f"usage type {self.id}: built in already ({', '.join(BUILT_IN_TYPES)}); declare only new types"
            )
        return self

    @property
    def label(self) -> str:
        return self.name or self.id


def check_usage_types(usage_types: list[UsageType]) -> frozenset[str]:
    """Every type events may name: the built-in ones and each declared one (declared once)."""
    seen: set[str] = set()
    for usage_type in usage_types:
        if usage_type.id in seen:
            raise ValueError(f"usage type {usage_type.id}: declared twice")
        seen.add(usage_type.id)
    return frozenset(BUILT_IN_TYPES) | seen
