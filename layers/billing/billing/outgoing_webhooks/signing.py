"""Signing a delivery by the Standard Webhooks specification, so a receiver verifies it with
``usage_tracker.verify_signature`` or with the ``standardwebhooks`` / ``svix`` libraries.

Invariants:
- a secret is ``whsec_`` + standard base64 of 32 random bytes;
- the signed content is ``{webhook-id}.{webhook-timestamp}.{body}``, the body the exact bytes sent;
  the signature is HMAC-SHA256, sent as ``v1,<standard base64>``;
- ``webhook-signature`` lists one ``v1,`` entry per secret in force (two during a rotation's
  overlap, the newest first), separated by one space;
- the message id is the same on every attempt of one message (a receiver deduplicates on it); the
  timestamp is the attempt's, in integer Unix seconds;
- the body carries ``type``, ``version``, ``sequence`` (per object, increasing: a receiver keeps
  the highest it has applied and drops an older one arriving late, since order is not guaranteed),
  ``object_id`` and ``data`` (the object's full state, so no message depends on another).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from billing.outgoing_webhooks.events import EVENT_TYPES, EVENT_VERSION

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32


def new_secret() -> str:
    """A fresh endpoint signing secret, ``whsec_<base64 of 32 random bytes>``."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def new_message_id() -> str:
    return "msg_" + secrets.token_hex(16)


def source_message_id(source_id: str) -> str:
    """The message id of the fact ``source_id`` (e.g. ``statement.issued:acme:2026-01``): the same
    for every publish of that fact, so a receiver deduplicating on ``webhook-id`` applies it once."""
    return "msg_" + hashlib.sha256(source_id.encode("utf-8")).hexdigest()[:32]


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret; a secret that is not one is a programming error."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("a webhook secret starts with whsec_")
    key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    if not key:
        raise ValueError("a webhook secret may not be empty")
    return key


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def payload(event_type: str, *, object_id: str, sequence: int, data: Mapping[str, Any]) -> dict[str, Any]:
    """The body's JSON document (see the module's invariants)."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown webhook event type {event_type!r}")
    if sequence < 1:
        raise ValueError("a sequence number starts at 1")
    return {
        "type": event_type,
        "version": EVENT_VERSION,
        "object_id": object_id,
        "sequence": sequence,
        "data": dict(data),
    }


@dataclass(frozen=True)
class Delivery:
    """One attempt of one message: POST ``body`` with ``headers`` to the endpoint."""

    message_id: str
    timestamp: int
    body: bytes
    headers: dict[str, str]


def sign_delivery(message_id: str, body: bytes, secrets_in_force: Sequence[str], at: datetime) -> Delivery:
    """The attempt at ``at`` of the message ``message_id`` with ``body``, signed with every secret
    in force (newest first). No secret is a programming error: an endpoint always has one."""
    if not secrets_in_force:
        raise ValueError("a delivery needs at least one secret")
    timestamp = int(at.timestamp())
    signatures = " ".join(signature(s, message_id, timestamp, body) for s in secrets_in_force)
    return Delivery(
        message_id=message_id,
        timestamp=timestamp,
        body=body,
        headers={
            "content-type": "application/json",
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signatures,
        },
    )


def build_delivery(
    event_type: str,
    *,
    object_id: str,
    sequence: int,
    data: Mapping[str, Any],
    secrets_in_force: Sequence[str],
    at: datetime,
    message_id: str | None = None,
) -> Delivery:
    """A new message (a fresh id unless given) for ``event_type`` about one object, signed."""
    body = encode(payload(event_type, object_id=object_id, sequence=sequence, data=data))
    return sign_delivery(message_id or new_message_id(), body, secrets_in_force, at)


def encode(document: Mapping[str, Any]) -> bytes:
    """The body's bytes: compact JSON, keys sorted, Decimals and instants as text (never a float)."""
    return json.dumps(document, separators=(",", ":"), sort_keys=True, default=str).encode("utf-8")
