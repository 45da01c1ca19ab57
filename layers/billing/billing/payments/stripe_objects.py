"""The pieces of Stripe objects that webhooks consume, as strict types: ids, references, metadata,
timestamps, and the metadata we write on what we create.

A correctly signed event can still carry any JSON. Each field we read is parsed here before it is
used, so a value of the wrong type or size is a 400 naming it: read as it came, a number where an
id belongs reaches DynamoDB as a key (botocore refuses it, which reads as an outage: a 503) and a
timestamp past year 9999 reaches ``datetime`` (a 500).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

from billing.kernel.errors import InvalidRequest
from billing.kernel.periods import MAX_INSTANT, MIN_INSTANT, Month
from billing.kernel.validation import Identifier, validation_details

StripeId = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=255)]
MetadataValue = Annotated[str, StringConstraints(strict=True, max_length=500)]  # Stripe's own limits
Metadata = dict[Annotated[str, StringConstraints(strict=True, max_length=40)], MetadataValue]
# Unix seconds inside the instants the system accepts (every later ``datetime`` of it exists).
StripeTimestamp = Annotated[
    int, Field(strict=True, ge=int(MIN_INSTANT.timestamp()), lt=int(MAX_INSTANT.timestamp()))
]


def instant(seconds: int) -> datetime:
    """A ``StripeTimestamp`` as an aware UTC datetime."""
    return datetime.fromtimestamp(seconds, UTC)


class Ref(BaseModel):
    """An expanded object where Stripe usually sends its id: only the id is read."""

    model_config = ConfigDict(extra="ignore", strict=True)
    id: StripeId


StripeRef = StripeId | Ref


def ref_id(value: StripeRef | None) -> str | None:
    return value.id if isinstance(value, Ref) else value


class TenantMetadata(BaseModel):
    """The tenant id we put in the metadata of what we create (other keys are ignored)."""

    model_config = ConfigDict(extra="ignore", strict=True)
    tenant_id: Identifier | None = None


class OurMetadata(TenantMetadata):
    """The metadata invoicing writes on our invoices and customers."""

    month: str | None = None

    @field_validator("month")
    @classmethod
    def _month(cls, value: str | None) -> str | None:
        return None if value is None else str(Month.parse(value))


Model = TypeVar("Model", bound=BaseModel)


def typed_object(model: type[Model], obj: dict[str, Any], ours: type[TenantMetadata]) -> Model:
    """``data.object`` as ``model``, and its ``metadata`` as ``ours``; a 400 naming the fields otherwise."""
    try:
        typed = model.model_validate(obj)
    except ValidationError as exc:
        raise shape_error(exc, "data.object.") from None
    try:
        ours.model_validate(getattr(typed, "metadata", None) or {})
    except ValidationError as exc:
        raise shape_error(exc, "data.object.metadata.") from None
    return typed


def shape_error(exc: ValidationError, prefix: str) -> InvalidRequest:
    problems = [{**p, "field": prefix + p["field"]} for p in validation_details(exc)]
    return InvalidRequest("the Stripe object does not have the expected shape", details=problems)
