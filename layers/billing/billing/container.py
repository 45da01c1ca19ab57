"""Wiring: builds each service once per process from Settings. Handlers and the CLI ask here.

Adapters are imported inside their providers: a function that never touches ClickHouse does not
pay for importing clickhouse-connect on a cold start.
"""
from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from billing.settings import Settings, get_settings

if TYPE_CHECKING:
    from billing.adapters.clickhouse import UsageStore
    from billing.adapters.dynamodb import TenantRepository, UsageLedger
    from billing.plans import PlanCatalog
    from billing.pricing import PriceBook


def settings() -> Settings:
    return get_settings()


@lru_cache(maxsize=1)
def clickhouse_url() -> str:
    s = settings()
    if s.clickhouse_url_secret:
        # Credentials live in Secrets Manager; Powertools caches the value between invocations.
        from aws_lambda_powertools.utilities import parameters

        return str(parameters.get_secret(s.clickhouse_url_secret, max_age=300))
    return s.clickhouse_url


@lru_cache(maxsize=1)
def usage_store() -> UsageStore:
    from billing.adapters.clickhouse import UsageStore

    s = settings()
    return UsageStore.from_url(clickhouse_url(), s.clickhouse_database, timeout_s=s.clickhouse_insert_timeout_s)


@lru_cache(maxsize=1)
def price_book() -> PriceBook:
    from billing.pricing import PriceBook

    return PriceBook.load(settings().pricebook_path)


@lru_cache(maxsize=1)
def plan_catalog() -> PlanCatalog:
    from billing.plans import PlanCatalog

    return PlanCatalog.load(settings().plans_path)


@lru_cache(maxsize=1)
def tenants() -> TenantRepository:
    from billing.adapters.dynamodb import TenantRepository

    return TenantRepository(settings().tenants_table)


@lru_cache(maxsize=1)
def ledger() -> UsageLedger:
    from billing.adapters.dynamodb import UsageLedger

    return UsageLedger(settings().ledger_table, lock_wait_seconds=settings().ingest_lock_wait_seconds)


def reset() -> None:
    """Forget everything built so far (tests and the local runner change settings between runs)."""
    from billing.adapters.dynamodb import reset_clients

    get_settings.cache_clear()
    reset_clients()
    for cached in (clickhouse_url, usage_store, price_book, plan_catalog, tenants, ledger):
        cached.cache_clear()
    for extra in _EXTRA_RESETS:
        extra()


_EXTRA_RESETS: list = []


def on_reset(fn):  # type: ignore[no-untyped-def]
    """Register a cache_clear for providers defined in other modules (invoicing, dunning, ...)."""
    _EXTRA_RESETS.append(fn)
    return fn


@lru_cache(maxsize=1)
def periods():  # type: ignore[no-untyped-def]
    from billing.adapters.billing_store import PeriodRepository

    return PeriodRepository(settings().billing_table)


@lru_cache(maxsize=1)
def statements():  # type: ignore[no-untyped-def]
    from billing.adapters.billing_store import StatementRepository

    return StatementRepository(settings().billing_table)


on_reset(periods.cache_clear)
on_reset(statements.cache_clear)


@lru_cache(maxsize=1)
def fallback_queue():  # type: ignore[no-untyped-def]
    from billing.adapters.queues import SqsQueue

    return SqsQueue(settings().fallback_queue_url)


@lru_cache(maxsize=1)
def ingest_service():  # type: ignore[no-untyped-def]
    from billing.ingest import IngestService

    s = settings()
    return IngestService(tenants=tenants(), ledger=ledger(), periods=periods(), store=usage_store(),
                         fallback=fallback_queue(), price_book=price_book(), catalog=plan_catalog(),
                         dedup_retention_days=s.dedup_retention_days)


def principal_for(api_key_id: str | None):  # type: ignore[no-untyped-def]
    """The caller behind an API Gateway API key id (None: anonymous, refused by the API)."""
    from billing.errors import Unauthorized
    from billing.ingest import Principal

    if not api_key_id:
        raise Unauthorized("an API key is required (x-api-key header)")
    return Principal(api_key_id=api_key_id, platform=api_key_id in settings().platform_api_key_ids)


on_reset(fallback_queue.cache_clear)
on_reset(ingest_service.cache_clear)
