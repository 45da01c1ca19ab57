"""Peer wire formats (OpenMeter's CloudEvents, Lago, Segment) translated to our usage events.

Each module reads one peer's request body into ``UsageEvent``s and writes our answers back in the
shape that peer's SDK reads. Invariants shared by all of them:
- translation only: every event goes through ``parse_batch`` (the same validation as
  ``POST /v1/events``) and then ``IngestService.ingest`` (exactly once, quotas, fallback); nothing
  here validates, stores or counts on its own;
- a problem names the peer's field (``subject``, ``transaction_id``, ``messageId``...), never ours;
- an event is never dropped silently: a batch is wholly refused when any event in it is invalid,
  and a batch whose queries were partly refused for quota is answered with a 429 (the accepted
  ones are kept and a resend drops them as duplicates).
"""

from __future__ import annotations

import zlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from billing.kernel.errors import BillingError, InvalidRequest, PayloadTooLarge, UnsupportedMediaType
from billing.kernel.validation import parse_json
from billing.metering.claims import IngestResult
from billing.metering.events import BUILT_IN_TYPES, UsageEvent, parse_batch

# The measures a built-in type (query, embedding, storage) carries as fields of its own: a peer
# sends them among the event's properties, and they are lifted out of them.
BUILT_IN_MEASURES = ("model", "input_tokens", "output_tokens", "bytes")


@dataclass(frozen=True)
class Answer:
    """An HTTP answer in a peer's shape: status, JSON body (None: no body), content type, headers."""

    status: int
    body: Any = None
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Limits:
    """What a request may hold (``Settings.max_body_bytes``, ``max_batch_events``) and the catalog's
    usage types, as for ``POST /v1/events``."""

    max_bytes: int
    max_events: int
    event_types: Collection[str]


def read_json(body: bytes, content_type: str | None, accepted: Collection[str], limits: Limits) -> Any:
    """The body's JSON document (numbers exact), after checking its media type is one of
    ``accepted`` (a ``charset`` other than UTF-8 is refused) and its size is within the limit."""
    media, *params = (content_type or "").split(";")
    if media.strip().lower() not in accepted:
        raise UnsupportedMediaType(
            f"Content-Type must be {' or '.join(sorted(accepted))}",
            details=[{"field": "Content-Type", "reason": f"got {content_type!r}"}],
        )
    for param in params:
        key, _, value = param.strip().partition("=")
        if key.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise UnsupportedMediaType(
                "the body must be UTF-8",
                details=[{"field": "Content-Type", "reason": f"unsupported charset {value.strip()!r}"}],
            )
    if len(body) > limits.max_bytes:
        raise PayloadTooLarge(f"request body is {len(body)} bytes; the limit is {limits.max_bytes}")
    return parse_json(body, exact_numbers=True)


def gunzip(body: bytes, limit: int) -> bytes:
    """A gzip body inflated, refused (413) as soon as it would exceed ``limit`` bytes inflated."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise InvalidRequest(
            "body is flagged gzip but is not", details=[{"field": "body", "reason": str(exc)}]
        ) from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise PayloadTooLarge(f"the inflated request body exceeds the limit of {limit} bytes")
    if not inflater.eof:
        raise InvalidRequest(
            "body is flagged gzip but is not", details=[{"field": "body", "reason": "truncated"}]
        )
    return out


def our_event(
    *, event_id: Any, tenant_id: Any, event_type: Any, timestamp: Any, properties: Any
) -> dict[str, Any]:
    """Our event as ``parse_batch`` reads it; a built-in type's measures come out of the properties."""
    raw: dict[str, Any] = {
        "event_id": event_id,
        "tenant_id": tenant_id,
        "type": event_type,
        "timestamp": timestamp,
    }
    if isinstance(properties, dict) and event_type in BUILT_IN_TYPES:
        properties = dict(properties)
        for name in BUILT_IN_MEASURES:
            if name in properties:
                raw[name] = properties.pop(name)
    if properties is not None:
        raw["properties"] = properties
    return raw


def translate(
    raws: list[Any],
    limits: Limits,
    fields: Mapping[str, str],
    where: str,
    *,
    positions: Sequence[int] | None = None,
    problems: Sequence[dict[str, Any]] = (),
) -> list[UsageEvent]:
    """``parse_batch`` over our events, each problem naming the peer's field (``fields``: ours ->
    theirs) at ``where`` (``events[3]``-style, the index filled in). ``positions``: each raw event's
    index in the peer's request, when some of its items are not events; ``problems``: what the
    translation itself found (already in the peer's field names, at our indexes), listed with the
    rest so that every problem of the request is reported at once."""
    try:
        events = parse_batch(raws, limits.max_events, limits.event_types)
        error: BillingError | None = None
    except InvalidRequest as refused:
        error = refused
    if error is None and not problems:
        return events
    found = [] if error is None or not isinstance(error.details, list) else list(error.details)
    rename_fields(found, fields)
    found.extend(dict(p) for p in problems)
    for problem in found:
        index = problem.get("index")
        if isinstance(index, int) and positions is not None:
            problem["index"] = index = positions[index]
        if index is not None and where:
            problem["field"] = f"{where.format(index=index)}.{problem['field']}"
    indexes = {p.get("index") for p in found}
    raise InvalidRequest(f"{len(indexes)} invalid event(s); nothing was stored", details=found)


def rename_fields(problems: list[Any], fields: Mapping[str, str]) -> None:
    """Rewrite each problem's ``field`` in place from our name to the peer's."""
    for problem in problems:
        if isinstance(problem, dict) and isinstance(problem.get("field"), str):
            head, dot, rest = problem["field"].partition(".")
            problem["field"] = fields.get(head, head) + (dot + rest if rest else "")


def partly_refused(result: IngestResult) -> bool:
    """Whether some new events of an accepted batch were refused for a hard limit (the rest are stored)."""
    return bool(result.rejected_for_quota)


def quota_message(result: IngestResult) -> str:
    quota = result.quota or {}
    what = f"limit on {quota['metric']}" if "metric" in quota else "query quota"
    return (
        f"{len(result.rejected_for_quota)} event(s) refused: the monthly {what} of {quota.get('limit')} "
        f"is reached for tenant {quota.get('tenant_id')} until {quota.get('resets_at')}; "
        f"{len(result.accepted)} other event(s) were stored"
    )
