"""A corrections request: its items validated (``CorrectionItem``, ``parse_corrections``) and
what became of each (``ItemResult``, ``response_status``). Applied by billing.metering.corrections.

Invariants: a malformed item refuses the whole request with a 400 naming every bad field and its
item's index, before anything is applied; an applied item answers 200, a refused one carries its
own 4xx, and the request's status is 200, the shared 4xx, or 207 (some of each)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from billing.kernel.errors import BillingError, InvalidRequest, PayloadTooLarge
from billing.kernel.validation import Identifier, parse_json, require_json, validation_details

VOID, AMEND = "void", "amend"
AMENDABLE = ("model", "input_tokens", "output_tokens", "bytes", "properties")
MAX_CORRECTIONS = 100  # per request
MAX_REASON = 500


class UnprocessableCorrection(BillingError):
    status, code = 422, "unprocessable"


class CorrectionItem(BaseModel):
    """One correction of a request: ``values`` (amend only) are the event fields that change."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    correction_id: Identifier
    tenant_id: Identifier
    event_id: Identifier
    action: Literal["void", "amend"]
    reason: str = Field(min_length=1, max_length=MAX_REASON)
    values: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _values_for_amend_only(self) -> CorrectionItem:
        if self.action == VOID and self.values is not None:
            raise ValueError("a void takes no values")
        if self.action == AMEND:
            if not self.values:
                raise ValueError(f"an amend gives the new values of some of: {', '.join(AMENDABLE)}")
            unknown = sorted(set(self.values) - set(AMENDABLE))
            if unknown:
                raise ValueError(
                    f"an amend may change {', '.join(AMENDABLE)} only (not {', '.join(unknown)}); "
                    "to move an event in time or to another tenant, void it and send a new event"
                )
        return self

    def digest(self) -> str:
        """What the request asked, to tell a resend of this correction from another one reusing its id."""
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()


def parse_corrections(body: bytes, content_type: str | None, *, max_bytes: int) -> list[CorrectionItem]:
    """A request body ``{"corrections": [...]}`` to validated items, or a 4xx naming every bad field
    (with its item's index); nothing is applied when any item is malformed."""
    require_json(content_type)
    if len(body) > max_bytes:
        raise PayloadTooLarge(f"request body is {len(body)} bytes; the limit is {max_bytes}")
    document = parse_json(body, exact_numbers=True)
    if not isinstance(document, dict) or not isinstance(document.get("corrections"), list):
        raise InvalidRequest(
            'body must be an object {"corrections": [...]}',
            details=[{"index": None, "field": "corrections", "reason": "required: an array"}],
        )
    extra = sorted(set(document) - {"corrections"})
    raw = document["corrections"]
    problems: list[dict[str, Any]] = [{"index": None, "field": f, "reason": "unknown field"} for f in extra]
    if not raw:
        problems.append({"index": None, "field": "corrections", "reason": "give at least one correction"})
    if len(raw) > MAX_CORRECTIONS:
        raise PayloadTooLarge(
            f"a request holds at most {MAX_CORRECTIONS} corrections, got {len(raw)}",
            details=[{"index": None, "field": "corrections", "reason": "too many corrections"}],
        )
    items: list[CorrectionItem] = []
    seen: dict[tuple[str, str], int] = {}
    for index, item in enumerate(raw):
        if not isinstance(item, dict):
            problems.append({"index": index, "field": "correction", "reason": "must be a JSON object"})
            continue
        try:
            parsed = CorrectionItem.model_validate(item)
        except ValidationError as exc:
            problems += validation_details(exc, index=index, root="correction")
            continue
        key = (parsed.tenant_id, parsed.correction_id)
        if key in seen:
            problems.append(
                {"index": index, "field": "correction_id", "reason": f"repeats correction {seen[key]}"}
            )
        seen.setdefault(key, index)
        items.append(parsed)
    if problems:
        raise InvalidRequest(
            f"{len({p['index'] for p in problems})} invalid correction(s); nothing was applied",
            details=problems,
        )
    return items


@dataclass
class ItemResult:
    correction_id: str
    tenant_id: str
    event_id: str
    status: str  # applied, already_applied, refused
    error: BillingError | None = None
    entry: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "correction_id": self.correction_id,
            "tenant_id": self.tenant_id,
            "event_id": self.event_id,
            "status": self.status,
        }
        if self.entry is not None:
            body["correction"] = self.entry
        if self.error is not None:
            body["error"] = {"status": self.error.status, **self.error.body()}
        return body


def response_status(results: Sequence[ItemResult]) -> int:
    """200 when every item is applied (now or before); the shared 4xx when every item is refused for
    one reason; 207 otherwise (each item says what became of it)."""
    refused = {r.error.status for r in results if r.error is not None}
    if not refused:
        return 200
    if len(refused) == 1 and all(r.error is not None for r in results):
        return refused.pop()
    return 207
