"""Request validation shared by every HTTP function: the identifier rule, request bodies as bytes,
JSON parsing that can only fail with a 400, and pydantic errors as the API's ``details``.

Invariants: nothing here raises anything but ``InvalidRequest`` / ``UnsupportedMediaType`` for any
input (bytes that are not UTF-8, JSON nested past ``MAX_JSON_DEPTH``, a body flagged base64 that is
not, a model whose fields do not fit); each problem names its field.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, StringConstraints, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from billing.kernel.errors import InvalidRequest
from billing.kernel.request_body import (
    ID_MAX_LENGTH,
    ID_PATTERN,
    MAX_JSON_DEPTH,
    UnreadableNumber,
    exact_number,
    parse_json,
    raw_body,
    require_json,
)

__all__ = [
    "ID_MAX_LENGTH",
    "ID_PATTERN",
    "MAX_JSON_DEPTH",
    "Identifier",
    "UnreadableNumber",
    "exact_number",
    "field_error",
    "parse_json",
    "parse_model",
    "raw_body",
    "require_json",
    "validation_details",
]

Identifier = Annotated[
    str, StringConstraints(strict=True, min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)
]
"""Tenant ids, event ids: 1-128 characters of ``[A-Za-z0-9._:@/+=-]``."""

Model = TypeVar("Model", bound=BaseModel)


def validation_details(
    exc: ValidationError, *, index: int | None = None, root: str = "body", with_index: bool = False
) -> list[dict[str, Any]]:
    """A pydantic ValidationError as the API's ``details``: ``{field, reason}`` per problem (and the
    event's ``index`` in a batch), the field a dotted path, unknown fields said plainly."""
    problems = []
    for err in exc.errors(include_url=False, include_input=False):
        reason = (
            "unknown field" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
        )
        problem: dict[str, Any] = {"field": ".".join(str(p) for p in err["loc"]) or root, "reason": reason}
        if with_index or index is not None:
            problem = {"index": index, **problem}
        problems.append(problem)
    return problems


def parse_model(model: type[Model], body: Any, *, what: str = "request body") -> Model:
    """A JSON object to a (strict) request model, or InvalidRequest naming each bad field and why."""
    if not isinstance(body, dict):
        raise InvalidRequest(
            f"{what} must be a JSON object", details=[{"field": "body", "reason": "not an object"}]
        )
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        problems = validation_details(exc)
        raise InvalidRequest(f"{len(problems)} invalid field(s)", details=problems) from None


def field_error(model: str, field: str, message: str, value: Any) -> ValidationError:
    """A model-level rule's failure located at the field it concerns, so ``validation_details`` names
    that field (a plain ValueError from a model validator has no location). Raise it from the
    validator."""
    return ValidationError.from_exception_data(
        model,
        [
            InitErrorDetails(
                type=PydanticCustomError("value_error", "{reason}", {"reason": message}),
                loc=(field,),
                input=value,
            )
        ],
    )
