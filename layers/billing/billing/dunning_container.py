"""Providers for webhooks and dunning (container style: built once per process, reset with it)."""
from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from billing import container

_clock: list[Callable[[], datetime]] = []


def _system_clock() -> datetime:
    return datetime.now(UTC)


def clock() -> Callable[[], datetime]:
    """The clock every webhook/dunning decision uses (tests, demo and bench may replace it)."""
    return _clock[0] if _clock else _system_clock


def use_clock(fn: Callable[[], datetime] | None) -> None:
    """Replace the clock (None: back to the system clock). Services built afterwards use it."""
    _clock.clear()
    if fn is not None:
        _clock.append(fn)
    _reset()


@lru_cache(maxsize=1)
def webhook_secret() -> Callable[[], str]:
    from billing.adapters.webhook_verify import secret_from_secrets_manager

    return secret_from_secrets_manager(container.settings().stripe_webhook_secret_name, max_age_s=300)


@lru_cache(maxsize=1)
def dunning_store() -> Any:
    from billing.adapters.dunning_store import DunningStore

    s = container.settings()
    return DunningStore(s.billing_table, s.tenants_table)


@lru_cache(maxsize=1)
def processed_events() -> Any:
    from billing.adapters.dunning_store import ProcessedEvents

    s = container.settings()
    return ProcessedEvents(s.ledger_table, retention_days=s.webhook_event_retention_days)


@lru_cache(maxsize=1)
def payment_gateway() -> Any:
    from billing.adapters.stripe_gateway import StripeGateway

    return StripeGateway.from_settings(container.settings())


_gateway_override: list[Any] = []


class LazyGateway:
    """Builds the Stripe gateway (which fetches the Stripe key) only when a retry is actually due."""

    def __init__(self, factory: Callable[[], Any]):
        self._factory = factory

    def pay_invoice(self, invoice_id: str, *, idempotency_key: str) -> Any:
        return self._factory().pay_invoice(invoice_id, idempotency_key=idempotency_key)


def use_gateway(gateway: Any | None) -> None:
    """Pay through another PaymentGateway (the local Stripe double); None: the real one."""
    _gateway_override.clear()
    if gateway is not None:
        _gateway_override.append(gateway)
    _reset()


@lru_cache(maxsize=1)
def dunning_service() -> Any:
    from billing.dunning import DunningService

    return DunningService(dunning_store(), retry_days=container.settings().dunning_retry_days, clock=clock(),
                          gateway=None)


def dunning_runner() -> Any:
    """The dunning service with a payment gateway (only the scheduled job pays)."""
    from billing.dunning import DunningService

    gateway = _gateway_override[0] if _gateway_override else LazyGateway(payment_gateway)
    return DunningService(dunning_store(), retry_days=container.settings().dunning_retry_days, clock=clock(),
                          gateway=gateway)


@lru_cache(maxsize=1)
def webhook_processor() -> Any:
    from billing.adapters.webhook_verify import StripeSignatureVerifier
    from billing.webhooks import WebhookProcessor

    return WebhookProcessor(
        verifier=StripeSignatureVerifier(webhook_secret(), container.settings().webhook_tolerance_s),
        events=processed_events(), dunning=dunning_service(), invoices=dunning_store(),
        tenants=container.tenants(), clock=clock())


_CACHED = (webhook_secret, dunning_store, processed_events, payment_gateway, dunning_service, webhook_processor)


def _reset() -> None:
    for cached in _CACHED:
        cached.cache_clear()


def _reset_all() -> None:
    """container.reset(): forget built services and any clock/gateway override."""
    _clock.clear()
    _gateway_override.clear()
    _reset()


container.on_reset(_reset_all)
