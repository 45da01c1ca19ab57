"""Request validation shared by every HTTP function: the identifier rule, request bodies as bytes,
JSON parsing that can only fail with a 400, and pydantic errors as the API's ``details``.

Invariants: nothing here raises anything but ``InvalidRequest`` / ``UnsupportedMediaType`` for any
input (bytes that are not UTF-8, JSON nested past ``MAX_JSON_DEPTH``, a body flagged base64 that is
not, a model whose fields do not fit); each problem names its field.
"""

from __future__ import annotations

import base64
import binascii
import json
from decimal import Decimal
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, StringConstraints, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from billing.kernel.errors import InvalidRequest, UnsupportedMediaType

ID_PATTERN = r"^[A-Za-z0-9._:@/+=-]+$"
ID_MAX_LENGTH = 128
Identifier = Annotated[
    str, StringConstraints(strict=True, min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)
]
"""Tenant ids, event ids: 1-128 characters of ``[A-Za-z0-9._:@/+=-]``."""

MAX_JSON_DEPTH = 32  # our documents nest 4 levels; Stripe's objects about 8

Model = TypeVar("Model", bound=BaseModel)


def raw_body(api_event: dict[str, Any]) -> bytes:
    """The request body exactly as API Gateway received it (base64-decoded when it says so; the
    template's ``BinaryMediaTypes: */*`` makes it say so for every body)."""
    body = api_event.get("body") or ""
    if api_event.get("isBase64Encoded"):
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError, TypeError):
            raise InvalidRequest(
                "body is flagged base64 but is not", details=[{"field": "body", "reason": "invalid base64"}]
            ) from None
    if isinstance(body, str):
        return body.encode("utf-8", "surrogatepass")
    return body if isinstance(body, bytes) else json.dumps(body).encode()


def require_json(content_type: str | None) -> None:
    """``application/json``, with no parameter but ``charset=utf-8`` (any other charset is refused:
    bodies are read as UTF-8, so a Latin-1 body would be misread)."""
    media, *params = (content_type or "").split(";")
    problem = None
    if media.strip().lower() != "application/json":
        problem = f"got {content_type!r}"
    for param in params:
        key, _, value = param.strip().partition("=")
        if key.strip().lower() != "charset" or value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            problem = f"unsupported parameter {param.strip()!r}: only charset=utf-8"
    if problem:
        raise UnsupportedMediaType(
            "Content-Type must be application/json (UTF-8)",
            details=[{"index": None, "field": "Content-Type", "reason": problem}],
        )


def parse_json(
    raw: bytes | str, *, field: str = "body", index_key: bool = False, exact_numbers: bool = False
) -> Any:
    """A UTF-8 JSON document, or InvalidRequest naming ``field`` (not UTF-8, not JSON, too deep).
    ``exact_numbers``: a number with a fraction or an exponent is read as the ``Decimal`` its text
    spells, never through a float (integers are ``int`` either way)."""
    extra: dict[str, Any] = {"index": None} if index_key else {}
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        document = json.loads(text, parse_float=exact_number) if exact_numbers else json.loads(text)
    except UnicodeDecodeError as exc:
        raise InvalidRequest(
            "request body is not UTF-8", details=[{**extra, "field": field, "reason": str(exc)}]
        ) from None
    except RecursionError:
        raise _too_deep(field, extra) from None
    except ValueError as exc:
        raise InvalidRequest(
            "request body is not valid JSON", details=[{**extra, "field": field, "reason": str(exc)}]
        ) from None
    if _depth(document) > MAX_JSON_DEPTH:
        raise _too_deep(field, extra)
    return document


class UnreadableNumber:
    """A JSON number no ``Decimal`` can hold (an exponent beyond about 10^18): no field accepts it,
    so the field it stands in is refused, by name, like any other wrong value."""

    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return f"UnreadableNumber({self.text[:40]!r})"


def exact_number(text: str) -> Decimal | UnreadableNumber:
    """A JSON number's text (with a fraction or an exponent) as the exact ``Decimal`` it spells."""
    try:
        return Decimal(text)
    except ArithmeticError:
        return UnreadableNumber(text)


def _too_deep(field: str, extra: dict[str, Any]) -> InvalidRequest:
    return InvalidRequest(
        f"request body nests deeper than {MAX_JSON_DEPTH} levels",
        details=[{**extra, "field": field, "reason": f"nested deeper than {MAX_JSON_DEPTH} levels"}],
    )


def _depth(document: Any) -> int:
    """Nesting depth, without recursion (a hostile document must not exhaust the stack)."""
    deepest, stack = 0, [(document, 1)]
    while stack:
        value, level = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        deepest = max(deepest, level)
        if deepest > MAX_JSON_DEPTH:
            return deepest
        stack.extend((child, level + 1) for child in children)
    return deepest


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
