"""Request bodies without pydantic: the body's bytes as API Gateway received them, JSON parsing that can
only fail with a 400, and the identifier rule's pattern. Every HTTP handler needs these on its first
request; keeping them free of pydantic keeps pydantic out of a handler's init phase
(bench/import_time.py). ``billing.kernel.validation`` re-exports them next to the model helpers.

Invariants: nothing here raises anything but ``InvalidRequest`` / ``UnsupportedMediaType`` for any
input (bytes that are not UTF-8, JSON nested past ``MAX_JSON_DEPTH``, a body flagged base64 that is
not); each problem names its field.
"""

from __future__ import annotations

import base64
import binascii
import json
from decimal import Decimal
from typing import Any

from billing.kernel.errors import InvalidRequest, UnsupportedMediaType

ID_PATTERN = r"^[A-Za-z0-9._:@/+=-]+$"
ID_MAX_LENGTH = 128
MAX_JSON_DEPTH = 32  # our documents nest 4 levels; Stripe's objects about 8


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
