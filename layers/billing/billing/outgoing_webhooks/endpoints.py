"""Where the SaaS wants our webhooks: its endpoints, the event types each wants, and each one's
signing secret.

Invariants:
- only a platform key (the SaaS's own backend) registers, reads, rotates or deletes endpoints;
- an endpoint's URL is https, or http to 127.0.0.1 / localhost / [::1] (a team's local app); it
  carries no credentials and no fragment, and a literal IP address in it is public or loopback
  (never private, link-local or reserved); its event types are a non-empty subset of
  ``events.EVENT_TYPES``; every refusal is a 400 naming the field;
- each endpoint has its own secret, kept in the ``SecretVault`` (never in the endpoint record, never
  in a listing): shown once when the endpoint is registered and once on each rotation;
- a rotation makes a new secret current at once and keeps the previous one in force until the
  overlap ends: until then deliveries carry a signature of each (``SigningSecrets.in_force``), so a
  receiver may switch to the new secret at any moment of the window; a rotation during an overlap
  ends the older secret at once (never more than two in force);
- two rotations of one endpoint at once: one wins, the other is a 409 (the endpoint's ``version``);
- registering is idempotent on the target: a URL with the same set of event types as an endpoint
  already registered answers that endpoint (200, its current secret) instead of a second one, also
  when both requests run at once (a conditional claim of the target decides, ``EndpointStore.
  claim_target``); only the claim's owner writes the secret and the endpoint;
- an endpoint whose every attempt has failed for ``disable_after`` (``failing_since``, cleared by any
  delivered attempt) is disabled: nothing more is queued for it or sent to it until it is enabled
  again (``enable``), which clears ``failing_since``.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from ipaddress import ip_address
from typing import Annotated, Protocol
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from billing.kernel.errors import Conflict, NotFound
from billing.outgoing_webhooks.events import EVENT_TYPES
from billing.outgoing_webhooks.signing import new_secret
from billing.tenants.access import Principal

MAX_ENDPOINTS = 50
DEFAULT_OVERLAP_HOURS = 24
MAX_OVERLAP_HOURS = 7 * 24
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
ENDPOINT_ID_PATTERN = r"^ep_[0-9a-f]{24}$"
# How long an unfinished registration holds its target before an identical request takes it over
# (its writer died between claiming the target and storing the endpoint).
TARGET_CLAIM_STALE = timedelta(seconds=60)


def checked_url(value: str) -> str:
    """The URL if deliveries may go there (see the module's invariants), else ValueError saying why."""
    parts = urlsplit(value)
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("https", "http") or not host:
        raise ValueError("must be an absolute https:// URL")
    if parts.scheme == "http" and host not in LOCAL_HOSTS:
        raise ValueError("must be https (http only to 127.0.0.1, localhost or [::1])")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not carry credentials (user:password@)")
    if parts.fragment:
        raise ValueError("must not have a #fragment")
    if any(ch.isspace() for ch in value):
        raise ValueError("must not contain whitespace")
    try:
        parts.port  # noqa: B018 - reading it validates it
    except ValueError:
        raise ValueError("has an invalid port") from None
    try:
        address = ip_address(host)
    except ValueError:
        return value
    if address.is_loopback:
        return value
    # A webhook must never reach into the network it is sent from (the cloud metadata service at
    # 169.254.169.254, private ranges).
    if not address.is_global or address.is_multicast:
        raise ValueError("must name a public host (no private, link-local or reserved address)")
    return value


class EndpointRequest(BaseModel):
    """``POST /v1/webhook-endpoints``."""

    model_config = ConfigDict(extra="forbid", strict=True)
    url: str = Field(min_length=1, max_length=2048)
    event_types: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        min_length=1, max_length=len(EVENT_TYPES)
    )
    description: str = Field(default="", max_length=256)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return checked_url(value)

    @field_validator("event_types")
    @classmethod
    def _types(cls, value: list[str]) -> list[str]:
        unknown = [t for t in value if t not in EVENT_TYPES]
        if unknown:
            raise ValueError(
                f"unknown event type(s) {', '.join(unknown)}; one of {', '.join(sorted(EVENT_TYPES))}"
            )
        if len(set(value)) != len(value):
            raise ValueError("lists an event type twice")
        return sorted(value)


class RotateRequest(BaseModel):
    """``POST /v1/webhook-endpoints/{id}/rotate-secret``: how long the previous secret stays in
    force (0: it stops at once)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    overlap_hours: int = Field(default=DEFAULT_OVERLAP_HOURS, ge=0, le=MAX_OVERLAP_HOURS)


class Endpoint(BaseModel):
    """An endpoint as stored and shown (never its secret)."""

    model_config = ConfigDict(frozen=True)
    id: str
    url: str
    event_types: list[str]
    description: str = ""
    created_at: datetime
    secret_rotated_at: datetime | None = None
    previous_secret_expires_at: datetime | None = None
    version: int = 1
    # the first failed attempt since the last delivered one (None: the last attempt delivered)
    failing_since: datetime | None = None
    disabled_at: datetime | None = None  # None: enabled
    disabled_reason: str | None = None

    @property
    def enabled(self) -> bool:
        return self.disabled_at is None

    @property
    def target_key(self) -> str:
        return target_key(self.url, self.event_types)

    def wants(self, event_type: str) -> bool:
        return self.enabled and event_type in self.event_types


def target_key(url: str, event_types: list[str]) -> str:
    """What makes two registrations the same endpoint: the URL and the set of event types."""
    return hashlib.sha256("\x1f".join([url, *sorted(event_types)]).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class SigningSecrets:
    """An endpoint's secret material: the current secret and, during a rotation's overlap, the
    previous one with the instant it stops being used."""

    current: str
    previous: str | None = None
    previous_expires_at: datetime | None = None

    def in_force(self, now: datetime) -> list[str]:
        """The secrets a delivery at ``now`` is signed with, newest first."""
        if self.previous and self.previous_expires_at is not None and now < self.previous_expires_at:
            return [self.current, self.previous]
        return [self.current]


class EndpointStore(Protocol):
    def add(self, endpoint: Endpoint) -> None: ...

    def get(self, endpoint_id: str) -> Endpoint | None: ...

    def all(self) -> list[Endpoint]: ...

    def replace(self, endpoint: Endpoint, *, expected_version: int) -> bool:
        """Store ``endpoint`` if the stored one is still at ``expected_version``; False if not."""
        ...

    def delete(self, endpoint_id: str) -> bool:
        """True if it existed."""
        ...

    def claim_target(self, key: str, endpoint_id: str, at: datetime, stale_before: datetime) -> str:
        """Claim the registration target ``key`` for ``endpoint_id`` if it is unclaimed, or its claim
        is unfinished and older than ``stale_before``; the id of the target's owner after the
        attempt (``endpoint_id`` when claimed now)."""
        ...

    def finish_target(self, key: str, endpoint_id: str) -> None:
        """The target's endpoint ``endpoint_id`` (its owner) is stored: the claim is never taken over."""
        ...

    def release_target(self, key: str) -> None:
        """The target's endpoint is deleted: the target may be registered again."""
        ...


class SecretVault(Protocol):
    def put(self, endpoint_id: str, material: SigningSecrets) -> None: ...

    def get(self, endpoint_id: str) -> SigningSecrets | None: ...

    def delete(self, endpoint_id: str) -> None: ...


def new_endpoint_id() -> str:
    return "ep_" + secrets.token_hex(12)


def _unknown(endpoint_id: str) -> NotFound:
    return NotFound(
        f"no webhook endpoint {endpoint_id}",
        details=[{"field": "endpoint_id", "reason": "no such endpoint"}],
    )


class EndpointService:
    """Registering, reading, rotating and deleting endpoints; what a delivery is signed with."""

    def __init__(self, store: EndpointStore, vault: SecretVault, clock: Callable[[], datetime]):
        self.store = store
        self.vault = vault
        self.clock = clock

    def register(self, request: EndpointRequest, principal: Principal) -> tuple[Endpoint, str]:
        """The new endpoint and its secret (shown only now). The secret is stored before the
        endpoint, so a stored endpoint always has one. The same URL and event types as a registered
        endpoint: that endpoint and its current secret (``registered`` tells the two apart)."""
        endpoint, secret, _created = self.registered(request, principal)
        return endpoint, secret

    def registered(self, request: EndpointRequest, principal: Principal) -> tuple[Endpoint, str, bool]:
        """``register``, and whether the endpoint was created now (False: it existed)."""
        principal.require_platform("manage webhook endpoints")
        now = self.clock()
        key = target_key(request.url, request.event_types)
        endpoint_id = new_endpoint_id()
        owner = self.store.claim_target(key, endpoint_id, now, now - TARGET_CLAIM_STALE)
        if owner != endpoint_id:
            existing = self.store.get(owner)
            material = self.vault.get(owner) if existing is not None else None
            if existing is None or material is None:
                raise Conflict(
                    "an endpoint with this URL and these event types is being registered right now; retry",
                    details=[{"field": "url", "reason": "registration in progress"}],
                    headers={"Retry-After": "1"},
                )
            self.store.finish_target(key, owner)
            return existing, material.current, False
        if len(self.store.all()) >= MAX_ENDPOINTS:
            self.store.release_target(key)
            raise Conflict(
                f"at most {MAX_ENDPOINTS} webhook endpoints; delete one first",
                details=[{"field": "url", "reason": "too many endpoints"}],
            )
        endpoint = Endpoint(
            id=endpoint_id,
            url=request.url,
            event_types=request.event_types,
            description=request.description,
            created_at=now,
        )
        secret = new_secret()
        self.vault.put(endpoint.id, SigningSecrets(current=secret))
        self.store.add(endpoint)
        self.store.finish_target(key, endpoint.id)
        return endpoint, secret, True

    def endpoints(self, principal: Principal) -> list[Endpoint]:
        principal.require_platform("manage webhook endpoints")
        return sorted(self.store.all(), key=lambda e: (e.created_at, e.id))

    def get(self, endpoint_id: str, principal: Principal) -> Endpoint:
        principal.require_platform("manage webhook endpoints")
        endpoint = self.store.get(endpoint_id)
        if endpoint is None:
            raise _unknown(endpoint_id)
        return endpoint

    def delete(self, endpoint_id: str, principal: Principal) -> Endpoint:
        """The endpoint, gone with its secret (nothing more is sent to it)."""
        endpoint = self.get(endpoint_id, principal)
        self.store.delete(endpoint_id)
        self.vault.delete(endpoint_id)
        self.store.release_target(endpoint.target_key)
        return endpoint

    def enable(self, endpoint_id: str, principal: Principal) -> Endpoint:
        """The endpoint enabled again (deliveries resume with the next published event; a message
        missed meanwhile is resent from the delivery log); an enabled one is returned as it is."""
        for _attempt in range(5):
            endpoint = self.get(endpoint_id, principal)
            if endpoint.enabled:
                return endpoint
            enabled = endpoint.model_copy(
                update={
                    "disabled_at": None,
                    "disabled_reason": None,
                    "failing_since": None,
                    "version": endpoint.version + 1,
                }
            )
            if self.store.replace(enabled, expected_version=endpoint.version):
                return enabled
        raise Conflict("the endpoint changed meanwhile; retry")

    def rotate_secret(
        self, endpoint_id: str, request: RotateRequest, principal: Principal
    ) -> tuple[Endpoint, str]:
        """The endpoint and its new secret (shown only now), current at once; the previous one stays
        in force for ``overlap_hours``."""
        endpoint = self.get(endpoint_id, principal)
        now = self.clock()
        material = self.vault.get(endpoint_id)
        if material is None:  # a registration cut off between its two writes never reaches here
            raise _unknown(endpoint_id)
        expires = now + timedelta(hours=request.overlap_hours) if request.overlap_hours else None
        rotated = endpoint.model_copy(
            update={
                "secret_rotated_at": now,
                "previous_secret_expires_at": expires,
                "version": endpoint.version + 1,
            }
        )
        if not self.store.replace(rotated, expected_version=endpoint.version):
            raise Conflict("the endpoint changed meanwhile (another rotation?); retry")
        secret = new_secret()
        self.vault.put(
            endpoint_id,
            SigningSecrets(
                current=secret,
                previous=material.current if expires else None,
                previous_expires_at=expires,
            ),
        )
        return rotated, secret

    def secrets_in_force(self, endpoint_id: str) -> list[str]:
        """What a delivery to the endpoint made now is signed with (newest first)."""
        material = self.vault.get(endpoint_id)
        if material is None:
            raise _unknown(endpoint_id)
        return material.in_force(self.clock())

    def target(self, endpoint_id: str) -> tuple[Endpoint, list[str]] | None:
        """Where a delivery to the endpoint goes now and what it is signed with; None once the
        endpoint (or its secret) is deleted, or while it is disabled."""
        endpoint = self.store.get(endpoint_id)
        material = self.vault.get(endpoint_id) if endpoint is not None and endpoint.enabled else None
        if endpoint is None or material is None:
            return None
        return endpoint, material.in_force(self.clock())

    def subscribers(self, event_type: str) -> list[Endpoint]:
        """The endpoints that want ``event_type``."""
        return [e for e in self.store.all() if e.wants(event_type)]
