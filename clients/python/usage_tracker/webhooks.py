"""Verify the webhooks the billing service sends to your app (the Standard Webhooks scheme).

Each delivery carries three headers: ``webhook-id`` (the message id, the same on every retry of
one message), ``webhook-timestamp`` (integer Unix seconds of this attempt) and ``webhook-signature``
(a space-separated list of ``v1,<base64 HMAC-SHA256>``; two entries while a secret rotates). The
signed content is ``{webhook-id}.{webhook-timestamp}.{raw body}`` with the endpoint's secret
``whsec_<base64 key>``, so the same delivery also verifies with the ``standardwebhooks`` or
``svix`` libraries.

    from usage_tracker.webhooks import verify_signature, WebhookVerificationError
    payload = verify_signature(request.body, request.headers, "whsec_...")

Invariants: the body is verified byte for byte as received (never re-serialized); every
signature comparison is constant-time; a timestamp outside ``tolerance`` either way is refused
(a replayed old delivery, or a clock far ahead); nothing is returned until a signature matches.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from typing import Any, Iterable, Mapping, Optional, Union

__all__ = ["DEFAULT_TOLERANCE_S", "WebhookVerificationError", "sign", "verify_signature"]

SECRET_PREFIX = "whsec_"
DEFAULT_TOLERANCE_S = 300  # five minutes, the Standard Webhooks default


class WebhookVerificationError(Exception):
    """The delivery is not authentic or not fresh: answer 400 (or 401) and do not apply it.

    ``reason`` is a stable word for logs: ``missing_header``, ``bad_timestamp``,
    ``timestamp_too_old``, ``timestamp_too_new``, ``no_matching_signature``, ``bad_secret``,
    ``bad_body``.
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def _key(secret: Union[str, bytes]) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret (raw bytes are used as they are)."""
    if isinstance(secret, bytes):
        key = secret
    else:
        encoded = secret[len(SECRET_PREFIX) :] if secret.startswith(SECRET_PREFIX) else secret
        try:
            # Unpadded base64 is accepted as standardwebhooks accepts it (extra padding is ignored).
            key = base64.b64decode(encoded + "==", validate=False)
        except (binascii.Error, ValueError) as exc:
            raise WebhookVerificationError("the webhook secret is not whsec_<base64>", "bad_secret") from exc
    if not key:
        raise WebhookVerificationError("the webhook secret is empty", "bad_secret")
    return key


def _body_bytes(body: Union[bytes, bytearray, memoryview, str]) -> bytes:
    if isinstance(body, str):
        return body.encode("utf-8")
    if isinstance(body, (bytes, bytearray)) or (isinstance(body, memoryview) and body.itemsize == 1):
        return bytes(body)
    raise TypeError("body must be the raw request body (bytes or str)")


def sign(secret: Union[str, bytes], msg_id: str, timestamp: int, body: Union[bytes, str]) -> str:
    """The ``v1,<base64>`` signature of one message (what ``webhook-signature`` lists)."""
    signed = f"{msg_id}.{int(timestamp)}.".encode() + _body_bytes(body)
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def verify_signature(
    body: Union[bytes, str],
    headers: Mapping[str, str],
    secret: Union[str, bytes, Iterable[Union[str, bytes]]],
    *,
    tolerance: float = DEFAULT_TOLERANCE_S,
    now: Optional[float] = None,
) -> Any:
    """The delivery's JSON payload once its signature and timestamp check out; otherwise
    ``WebhookVerificationError``.

    ``body``: the raw request body exactly as received. ``headers``: any mapping (names are
    matched case-insensitively). ``secret``: the endpoint's ``whsec_...`` secret, or several (while
    you rotate it on your side, any one matching is enough). ``tolerance``: seconds the timestamp
    may be off from ``now`` (default: the current time) either way.
    """
    lowered = {str(name).lower(): value for name, value in headers.items()}
    msg_id = lowered.get("webhook-id")
    timestamp_header = lowered.get("webhook-timestamp")
    signature_header = lowered.get("webhook-signature")
    if not msg_id:
        raise WebhookVerificationError("the webhook-id header is missing", "missing_header")
    if not timestamp_header:
        raise WebhookVerificationError("the webhook-timestamp header is missing", "missing_header")
    if not signature_header:
        raise WebhookVerificationError("the webhook-signature header is missing", "missing_header")

    try:
        timestamp = int(timestamp_header.strip())
    except ValueError as exc:
        raise WebhookVerificationError(
            "the webhook-timestamp header is not integer Unix seconds", "bad_timestamp"
        ) from exc
    current = time.time() if now is None else now
    if timestamp < current - tolerance:
        raise WebhookVerificationError("the message timestamp is too old (a replay?)", "timestamp_too_old")
    if timestamp > current + tolerance:
        raise WebhookVerificationError("the message timestamp is too far in the future", "timestamp_too_new")

    secrets = [secret] if isinstance(secret, (str, bytes)) else list(secret)
    if not secrets:
        raise WebhookVerificationError("no webhook secret given", "bad_secret")
    payload = _body_bytes(body)
    expected = [sign(one, msg_id, timestamp, payload).encode("ascii") for one in secrets]
    offered = [entry.encode("utf-8") for entry in signature_header.split(" ") if entry]
    # Every pair is compared (no early exit) so the time taken does not tell which entry was close.
    matched = False
    for candidate in offered:
        for wanted in expected:
            matched |= hmac.compare_digest(wanted, candidate)
    if not matched:
        raise WebhookVerificationError("no signature matches the secret", "no_matching_signature")
    try:
        return json.loads(payload)
    except ValueError as exc:
        raise WebhookVerificationError("the signed body is not JSON", "bad_body") from exc
