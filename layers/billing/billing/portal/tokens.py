"""Signed, expiring links to the tenant's usage page.

Invariants:
- a portal token names exactly one tenant and an expiry; it is an HMAC-SHA256 over a context string
  and its payload, so changing any byte (tenant, expiry, scope) makes it invalid. A token cannot be
  turned into another tenant's page or into any write (no route that writes accepts it).
- the signing key is at least 32 bytes (``signing_key``); a shorter secret is refused with a 503
  rather than used, since it would make every link forgeable.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from billing.kernel.errors import Forbidden, InvalidRequest, ServiceUnavailable
from billing.kernel.periods import utc

MIN_KEY_BYTES = 32
DEFAULT_TTL = timedelta(hours=1)
MAX_TTL = timedelta(hours=24)
MIN_TTL = timedelta(seconds=60)
_CONTEXT = b"billing-portal-link.v1."  # domain separation: this key signs portal links only
_SCOPE = "portal:read"
# What ``issue`` produces: two base64url parts. Anything else (non-ASCII text included, which
# ``hmac.compare_digest`` cannot compare as str) is refused before any key is read.
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


class PortalLinkInvalid(Forbidden):
    """403 for a token that is missing, altered, expired or not a portal token (the page shows nothing)."""

    code = "portal_link_invalid"


@dataclass(frozen=True)
class PortalGrant:
    tenant_id: str
    expires_at: datetime


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class PortalTokens:
    """Issues and verifies portal tokens ``<payload>.<signature>`` (base64url, no padding)."""

    def __init__(self, secret: Callable[[], bytes], clock: Callable[[], datetime]):
        self._secret = secret
        self._clock = clock

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._secret(), _CONTEXT + payload.encode(), hashlib.sha256).digest())

    def issue(self, tenant_id: str, ttl: timedelta = DEFAULT_TTL) -> tuple[str, datetime]:
        if not MIN_TTL <= ttl <= MAX_TTL:
            raise InvalidRequest(
                f"a portal link lives between {int(MIN_TTL.total_seconds())} s and {int(MAX_TTL.total_seconds())} s",
                details=[{"field": "expires_in", "reason": "out of range (60 to 86400 seconds)"}],
            )
        expires_at = (utc(self._clock()) + ttl).replace(microsecond=0)
        body = {"v": 1, "sub": tenant_id, "exp": int(expires_at.timestamp()), "scope": _SCOPE}
        payload = _b64(json.dumps(body, separators=(",", ":"), sort_keys=True).encode())
        return f"{payload}.{self._sign(payload)}", expires_at

    def verify(self, token: str | None) -> PortalGrant:
        """The grant a valid token carries; PortalLinkInvalid for anything else (no detail leaked
        beyond "invalid" or "expired")."""
        if not token or len(token) > 2048 or not _TOKEN_SHAPE.fullmatch(token):
            raise PortalLinkInvalid(
                "This link is not valid.", details=[{"field": "token", "reason": "invalid"}]
            )
        payload, signature = token.split(".")
        if not hmac.compare_digest(self._sign(payload).encode(), signature.encode()):
            raise PortalLinkInvalid(
                "This link is not valid.", details=[{"field": "token", "reason": "invalid"}]
            )
        try:
            body = json.loads(_unb64(payload))
            tenant_id, expires = str(body["sub"]), int(body["exp"])
            valid = body.get("v") == 1 and body.get("scope") == _SCOPE
        except (ValueError, KeyError, TypeError):
            valid = False
        if not valid:
            raise PortalLinkInvalid(
                "This link is not valid.", details=[{"field": "token", "reason": "invalid"}]
            )
        expires_at = datetime.fromtimestamp(expires, UTC)
        if utc(self._clock()) >= expires_at:
            raise PortalLinkInvalid(
                "This link has expired.", details=[{"field": "token", "reason": "expired"}]
            )
        return PortalGrant(tenant_id, expires_at)


def parse_ttl(body: Any) -> timedelta:
    """``{"expires_in": seconds}`` (optional; default one hour, at most 24 hours)."""
    if body is None or body == {}:
        return DEFAULT_TTL
    if not isinstance(body, dict):
        raise InvalidRequest(
            "body must be a JSON object", details=[{"field": "body", "reason": "not an object"}]
        )
    unknown = sorted(set(body) - {"expires_in"})
    if unknown:
        raise InvalidRequest(
            f"unknown field {unknown[0]!r}", details=[{"field": unknown[0], "reason": "unknown field"}]
        )
    value = body.get("expires_in", int(DEFAULT_TTL.total_seconds()))
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(
            "expires_in must be a whole number of seconds",
            details=[{"field": "expires_in", "reason": "not an integer"}],
        )
    return timedelta(seconds=value)


# ---------------------------------------------------------------------------------------------- data


def signing_key(value: str | bytes) -> bytes:
    """The portal secret as a signing key; a 503 naming the setting when it is too short."""
    key = value if isinstance(value, bytes) else value.encode()
    if len(key) < MIN_KEY_BYTES:
        raise ServiceUnavailable(
            f"the portal signing secret is too short ({MIN_KEY_BYTES} bytes at least)",
            details=[{"field": "PORTAL_SECRET_NAME", "reason": f"secret shorter than {MIN_KEY_BYTES} bytes"}],
        )
    return key
