"""The API key a peer SDK presents, and the key id it stands for.

OpenMeter's and Lago's SDKs send ``Authorization: Bearer <key>``; Segment's sends
``Authorization: Basic base64(<write key>:)``. The key is one of our API Gateway API keys (the one a
caller would put in ``x-api-key``); ``KeyDirectory`` tells its id, and the id decides what the
caller may do exactly as for ``x-api-key`` (``billing.tenants.access.principal_for``).

Invariants: no header, an unknown scheme, an empty key or a key the directory does not know give no
key id (the caller is refused with a 401); a Basic password is ignored (Segment sends none).
"""

from __future__ import annotations

import base64
import binascii
from typing import Protocol

# An API Gateway API key is 20-128 characters; anything longer is no key of ours.
MAX_KEY_LENGTH = 128


class KeyDirectory(Protocol):
    """The API keys API Gateway would accept as ``x-api-key`` on a stage (enabled, and in a usage
    plan of that stage)."""

    def key_id(self, value: str, *, api_id: str, stage: str) -> str | None:
        """The id of such a key whose value is ``value``, or None."""
        ...


def presented_key(authorization: str | None) -> str | None:
    """The API key in an ``Authorization`` header (Bearer token, or Basic user name), or None."""
    if not authorization:
        return None
    scheme, _, credentials = authorization.strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() == "bearer":
        key = credentials
    elif scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            return None
        key = decoded.partition(":")[0]
    else:
        return None
    return key if key and len(key) <= MAX_KEY_LENGTH and key.isprintable() else None


class MappingKeys:
    """Keys from a mapping of key value -> key id (the local API's keys, tests)."""

    def __init__(self, keys: dict[str, str]):
        self.keys = keys  # read at each call: keys added to the mapping later are known

    def key_id(self, value: str, *, api_id: str = "", stage: str = "") -> str | None:
        return self.keys.get(value)
