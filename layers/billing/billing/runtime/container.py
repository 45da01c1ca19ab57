"""The composition root: every service is built here, once per process, from Settings.

Handlers, the CLI, the demo and the tests ask this module (and only this module) for services.
Invariants:
- one instance of each provider per process until ``reset()``; in particular one Stripe gateway, so
  one rate limiter holds the whole process under the Stripe cap (invoicing and dunning share it);
- adapters are imported inside their providers: a function that never touches ClickHouse does not pay
  for importing clickhouse-connect on a cold start, nor one that never pays for importing stripe;
- ``reset()`` forgets everything built, the clock and gateway overrides, cached boto3 clients and the
  secrets Powertools cached, so a later environment never sees a service or key of an earlier one.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any

from billing.runtime.settings import Settings, get_settings

if TYPE_CHECKING:
    from billing.adapters.aws.notices import EventBridgeNotices, InvoiceDetailsLookup
    from billing.adapters.aws.queues import SqsQueue
    from billing.adapters.clickhouse.usage_store import UsageStore
    from billing.adapters.dynamodb.dunning import DunningStore, ProcessedEvents
    from billing.adapters.dynamodb.invoice_records import InvoiceRecordRepository
    from billing.adapters.dynamodb.product_ids import ProductIdStore
    from billing.adapters.dynamodb.quota_reads import QuotaReads
    from billing.adapters.dynamodb.statements import PeriodRepository, StatementRepository
    from billing.adapters.dynamodb.tenants import TenantRepository
    from billing.adapters.dynamodb.usage_ledger import UsageLedger
    from billing.adapters.stripe.gateway import StripeGateway
    from billing.catalog.plans import PlanCatalog
    from billing.dunning import DunningService
    from billing.invoicing import InvoicingService
    from billing.kernel.periods import Month
    from billing.metering.ingest import IngestService, Store
    from billing.metering.price_book import PriceBook
    from billing.metering.quotas import Repair
    from billing.payments.card_on_file import CardOnFileService
    from billing.payments.provider import PaymentCollector
    from billing.payments.stripe_webhooks import WebhookProcessor
    from billing.portal.view import PortalService, PortalTokens
    from billing.rating import Rater
    from billing.statements.close import BillingCycle, InvoiceArchive, InvoicingJobs
    from billing.tenants.credits import CreditBook
    from billing.tenants.service import TenantService
    from billing.tenants.tenant import Principal

_clock: list[Callable[[], datetime]] = []
_gateway_override: list[PaymentCollector] = []
_store_overrides: dict[str, Any] = {}
# Stores a local runtime may supply instead of the AWS adapters (``use_stores``).
STORE_OVERRIDES = (
    "tenants",
    "ledger",
    "periods",
    "statements",
    "fallback_queue",
    "ingest_store",
    "invoicing_jobs",
    "invoice_archive",
    "fallback_depth",
    "credits",
)


# ------------------------------------------------------------------------------------------ settings
def settings() -> Settings:
    return get_settings()


@cache
def clickhouse_url() -> str:
    s = settings()
    if s.clickhouse_url_secret:
        # Credentials live in Secrets Manager; Powertools caches the value between invocations.
        from aws_lambda_powertools.utilities import parameters

        return str(parameters.get_secret(s.clickhouse_url_secret, max_age=300))
    return s.clickhouse_url


def clock() -> Callable[[], datetime]:
    """The clock webhook and dunning decisions and ingest's claim leases use (tests, demo and bench
    may replace it)."""
    return _clock[0] if _clock else _system_clock


def _system_clock() -> datetime:
    return datetime.now(UTC)


def use_clock(fn: Callable[[], datetime] | None) -> None:
    """Replace the clock (None: back to the system clock). Services built afterwards use it."""
    _clock.clear()
    if fn is not None:
        _clock.append(fn)
    _forget_services()


def use_gateway(gateway: PaymentCollector | None) -> None:
    """Let dunning pay through another collector (None: the Stripe gateway)."""
    _gateway_override.clear()
    if gateway is not None:
        _gateway_override.append(gateway)
    _forget_services()


def use_stores(**stores: Any) -> None:
    """Serve these stores instead of building their AWS adapters (``billing simulate`` passes in-memory
    ones; no arguments: back to the adapters). Names are those of ``STORE_OVERRIDES``; each object
    implements the domain protocol the store's consumers declare. Services built afterwards use them;
    the ingest service, quota logic, rater and close themselves are always the production ones."""
    unknown = sorted(set(stores) - set(STORE_OVERRIDES))
    if unknown:
        raise ValueError(f"no such store: {', '.join(unknown)}")
    _store_overrides.clear()
    _store_overrides.update(stores)
    _forget_services()


def is_conflict(exc: Exception) -> bool:
    """True when ``exc`` is a lost conditional write (someone else wrote first): re-read and retry."""
    from botocore.exceptions import ClientError

    from billing.adapters.dynamodb.items import is_conditional_failure

    return isinstance(exc, ClientError) and is_conditional_failure(exc)


# ------------------------------------------------------------------------------------------ catalog
@cache
def price_book() -> PriceBook:
    from billing.metering.price_book import PriceBook

    return PriceBook.load(settings().pricebook_path)


@cache
def plan_catalog() -> PlanCatalog:
    from billing.catalog.plans import PlanCatalog

    return PlanCatalog.load(settings().plans_path)


# ------------------------------------------------------------------------------------------ stores
@cache
def usage_store() -> UsageStore:
    from billing.adapters.clickhouse.usage_store import UsageStore

    s = settings()
    return UsageStore.from_url(
        clickhouse_url(), s.clickhouse_database, timeout_s=s.clickhouse_insert_timeout_s
    )


@cache
def tenants() -> TenantRepository:
    if "tenants" in _store_overrides:
        return _store_overrides["tenants"]
    from billing.adapters.dynamodb.tenants import TenantRepository

    return TenantRepository(settings().tenants_table)


@cache
def ledger() -> UsageLedger:
    if "ledger" in _store_overrides:
        return _store_overrides["ledger"]
    from billing.adapters.dynamodb.usage_ledger import UsageLedger

    return UsageLedger(settings().ledger_table)


@cache
def quota_reads() -> QuotaReads:
    from billing.adapters.dynamodb.quota_reads import QuotaReads

    return QuotaReads(settings().tenants_table, settings().ledger_table)


@cache
def periods() -> PeriodRepository:
    if "periods" in _store_overrides:
        return _store_overrides["periods"]
    from billing.adapters.dynamodb.statements import PeriodRepository

    return PeriodRepository(settings().billing_table)


@cache
def statements() -> StatementRepository:
    if "statements" in _store_overrides:
        return _store_overrides["statements"]
    from billing.adapters.dynamodb.statements import StatementRepository

    return StatementRepository(settings().billing_table)


@cache
def fallback_queue() -> SqsQueue:
    if "fallback_queue" in _store_overrides:
        return _store_overrides["fallback_queue"]
    from billing.adapters.aws.queues import SqsQueue

    return SqsQueue(settings().fallback_queue_url)


@cache
def invoice_records() -> InvoiceRecordRepository:
    from billing.adapters.dynamodb.invoice_records import InvoiceRecordRepository

    return InvoiceRecordRepository(settings().billing_table)


@cache
def dunning_store() -> DunningStore:
    from billing.adapters.dynamodb.dunning import DunningStore

    s = settings()
    return DunningStore(s.billing_table, s.tenants_table)


@cache
def processed_events() -> ProcessedEvents:
    from billing.adapters.dynamodb.dunning import ProcessedEvents

    s = settings()
    return ProcessedEvents(s.ledger_table, retention_days=s.webhook_event_retention_days)


# ------------------------------------------------------------------------------------------ Stripe
@cache
def stripe_gateway() -> StripeGateway:
    """The process's one Stripe gateway (and so its one rate limiter). Building it reads the key."""
    from billing.adapters.stripe.gateway import StripeGateway

    return StripeGateway.from_settings(settings())


def payment_gateway() -> StripeGateway:
    """The gateway dunning and the demo pay through: the same instance as invoicing's."""
    return stripe_gateway()


@cache
def webhook_secret() -> Callable[[], str]:
    from billing.adapters.stripe.webhook_signature import secret_from_secrets_manager

    return secret_from_secrets_manager(settings().stripe_webhook_secret_name, max_age_s=300)


# ------------------------------------------------------------------------------------------ services
def principal_for(api_key_id: str | None) -> Principal:
    """The caller behind an API Gateway API key id (None: anonymous, refused by the API)."""
    from billing.kernel.errors import Unauthorized
    from billing.tenants.tenant import Principal

    if not api_key_id:
        raise Unauthorized("an API key is required (x-api-key header)")
    return Principal(api_key_id=api_key_id, platform=api_key_id in settings().platform_api_key_ids)


@cache
def ingest_service() -> IngestService:
    from billing.metering.ingest import IngestService

    return IngestService(
        tenants=tenants(),
        ledger=ledger(),
        periods=periods(),
        store=ingest_store(),
        fallback=fallback_queue(),
        price_book=price_book(),
        catalog=plan_catalog(),
        dedup_retention_days=settings().dedup_retention_days,
        claim_wait_seconds=settings().ingest_claim_wait_seconds,
        lease_clock=_epoch_seconds(clock()),
    )


def _epoch_seconds(now: Callable[[], datetime]) -> Callable[[], float]:
    return lambda: now().timestamp()


def ingest_store() -> Store:
    """Where ingest writes accepted events: ClickHouse (a local runtime may put a buffer in front)."""
    if "ingest_store" in _store_overrides:
        return _store_overrides["ingest_store"]
    return usage_store()


@cache
def rater() -> Rater:
    from billing.rating import Rater

    return Rater(plan_catalog())


@cache
def invoicing_jobs() -> InvoicingJobs:
    if "invoicing_jobs" in _store_overrides:
        return _store_overrides["invoicing_jobs"]
    from billing.adapters.aws.invoicing_jobs import InvoicingJobs as SqsInvoicingJobs

    return SqsInvoicingJobs(settings().invoicing_queue_url, settings().billing_table)


@cache
def invoice_archive() -> InvoiceArchive:
    if "invoice_archive" in _store_overrides:
        return _store_overrides["invoice_archive"]
    from billing.adapters.aws.invoice_archive import InvoiceArchive as S3InvoiceArchive

    return S3InvoiceArchive(settings().invoices_bucket)


@cache
def fallback_depth() -> Callable[[], int]:
    """Messages still in the usage fallback queue (the close waits until it is empty)."""
    if "fallback_depth" in _store_overrides:
        return _store_overrides["fallback_depth"]
    from billing.adapters.aws.queues import QueueDepth

    return QueueDepth(settings().fallback_queue_url)


@cache
def credit_book() -> CreditBook:
    """Prepaid credits: the DynamoDB ledger, or the ``credits`` store a local runtime supplies (a
    ``billing.tenants.credits.CreditLedger``); the book's rules are always the production ones."""
    from billing.tenants.credits import CreditBook

    if "credits" in _store_overrides:
        return CreditBook(_store_overrides["credits"])
    from billing.adapters.dynamodb.credit_ledger import CreditLedgerRepository

    return CreditBook(CreditLedgerRepository(settings().billing_table))


@cache
def billing_cycle() -> BillingCycle:
    from billing.adapters.clickhouse.rating_queries import RatingQueries
    from billing.statements.close import BillingCycle

    return BillingCycle(
        store_clock=usage_store().now,
        reconcile=reconcile_quotas,
        tenants=tenants(),
        periods=periods(),
        statements=statements(),
        queries=RatingQueries(usage_store()),
        rater=rater(),
        jobs=invoicing_jobs(),
        archive=invoice_archive(),
        fallback_depth=fallback_depth(),
        credits=credit_book(),
    )


def reconcile_quotas(month: Month) -> list[Repair]:
    """Repair the month's drifted quota counters from ClickHouse (``billing quota reconcile``, the close)."""
    from billing.metering.quotas import reconcile_quotas as reconcile

    return reconcile(
        month,
        [t.id for t in tenants().list_all()],
        usage_store().stored_queries(month),
        ledger(),
        retention_days=settings().dedup_retention_days,
    )


@cache
def tenant_service() -> TenantService:
    from billing.tenants.service import TenantService

    return TenantService(
        tenants=tenants(),
        catalog=plan_catalog(),
        periods=periods(),
        cycle=billing_cycle,
        is_conflict=is_conflict,
        link_customer=_link_stripe_customer,
        dunning=dunning_service,
        credits=credit_book(),
    )


def _link_stripe_customer(tenant_id: str) -> None:
    invoicing_service().ensure_customer(tenant_id)


@cache
def invoicing_service() -> InvoicingService:
    from billing.adapters.stripe.gateway import StripeGateway
    from billing.invoicing import InvoicingService

    return InvoicingService(
        statements=statements(),
        tenants=tenants(),
        catalog=plan_catalog(),
        records=invoice_records(),
        gateway=stripe_gateway,
        planner=StripeGateway.planner(settings()),
        is_conflict=is_conflict,
        products=lambda: product_ids().get(),
        notices=notices(),
    )


@cache
def product_ids() -> ProductIdStore:
    from billing.adapters.dynamodb.product_ids import ProductIdStore

    return ProductIdStore(settings().billing_table)


@cache
def notices() -> EventBridgeNotices:
    from billing.adapters.aws.notices import EventBridgeNotices

    return EventBridgeNotices(settings().notices_bus_name)


def _invoice_details() -> InvoiceDetailsLookup:
    from billing.adapters.aws.notices import InvoiceDetailsLookup

    return InvoiceDetailsLookup(dunning_store(), invoice_records())


@cache
def dunning_service() -> DunningService:
    """Dunning for reading and webhook facts (no gateway: it never pays)."""
    from billing.dunning import DunningService

    return DunningService(
        dunning_store(),
        retry_days=settings().dunning_retry_days,
        clock=clock(),
        gateway=None,
        notices=notices(),
        invoice_details=_invoice_details(),
    )


def dunning_runner() -> DunningService:
    """Dunning with a payment gateway (only the scheduled job pays); the gateway is built when a retry is due."""
    from billing.dunning import DunningService

    gateway = _gateway_override[0] if _gateway_override else _LazyCollector()
    return DunningService(
        dunning_store(),
        retry_days=settings().dunning_retry_days,
        clock=clock(),
        gateway=gateway,
        notices=notices(),
        invoice_details=_invoice_details(),
    )


class _LazyCollector:
    """Builds the Stripe gateway (which fetches the Stripe key) only when a retry is actually due."""

    def pay_invoice(self, invoice_id: str, *, idempotency_key: str):  # type: ignore[no-untyped-def]
        return payment_gateway().pay_invoice(invoice_id, idempotency_key=idempotency_key)


@cache
def card_on_file() -> CardOnFileService:
    """Setup/portal sessions and the saved card's webhook facts (the Stripe key is read on first use)."""
    from billing.payments.card_on_file import CardOnFileService, CardUrls

    s = settings()
    return CardOnFileService(
        tenants=tenants(),
        mirror=tenants(),
        ensure_customer=_link_customer,
        provider=stripe_gateway,
        urls=CardUrls(s.billing_setup_success_url, s.billing_setup_cancel_url, s.billing_portal_return_url),
        currency=plan_catalog().currency,
    )


def _link_customer(tenant_id: str) -> str:
    return invoicing_service().ensure_customer(tenant_id)


@cache
def webhook_processor() -> WebhookProcessor:
    from billing.adapters.stripe.webhook_signature import StripeSignatureVerifier
    from billing.payments.stripe_webhooks import WebhookProcessor

    return WebhookProcessor(
        verifier=StripeSignatureVerifier(webhook_secret(), settings().webhook_tolerance_s),
        events=processed_events(),
        dunning=dunning_service(),
        invoices=dunning_store(),
        tenants=tenants(),
        clock=clock(),
        cards=card_on_file,
        api_version=settings().stripe_api_version,
    )


# ------------------------------------------------------------------------------------------ portal
@cache
def portal_secret() -> Callable[[], bytes]:
    """The portal link signing key, read through Powertools Parameters (cached max_age seconds)."""
    from aws_lambda_powertools.utilities import parameters

    s = settings()

    def secret() -> bytes:
        value = parameters.get_secret(s.portal_secret_name, max_age=s.portal_secret_max_age_s)
        key = value if isinstance(value, bytes) else str(value).encode()
        if len(key) < 32:
            from billing.kernel.errors import ServiceUnavailable

            raise ServiceUnavailable(
                "the portal signing secret is too short (32 bytes at least)",
                details=[{"field": "PORTAL_SECRET_NAME", "reason": "secret shorter than 32 bytes"}],
            )
        return key

    return secret


@cache
def portal_tokens() -> PortalTokens:
    from billing.portal.view import PortalTokens

    return PortalTokens(portal_secret(), clock())


@cache
def portal_service() -> PortalService:
    from billing.adapters.clickhouse.portal_queries import PortalUsageQueries
    from billing.portal.view import PortalService

    return PortalService(
        tenants=tenants(),
        catalog=plan_catalog(),
        statements=lambda tenant_id, month: billing_cycle().statement(tenant_id, month),
        rollups=PortalUsageQueries(usage_store()),
        quota=ledger(),
        invoices=invoice_records(),
        clock=clock(),
        credits=credit_book(),
    )


# ------------------------------------------------------------------------------------------ reset
_PROVIDERS = (
    clickhouse_url,
    price_book,
    plan_catalog,
    usage_store,
    tenants,
    ledger,
    quota_reads,
    periods,
    statements,
    fallback_queue,
    invoice_records,
    dunning_store,
    processed_events,
    stripe_gateway,
    webhook_secret,
    ingest_service,
    rater,
    invoicing_jobs,
    invoice_archive,
    fallback_depth,
    credit_book,
    billing_cycle,
    tenant_service,
    invoicing_service,
    card_on_file,
    product_ids,
    notices,
    dunning_service,
    webhook_processor,
    portal_secret,
    portal_tokens,
    portal_service,
)


def _forget_services() -> None:
    for provider in _PROVIDERS:
        provider.cache_clear()


def reset() -> None:
    """Forget everything built so far (tests and the local runner change settings between runs)."""
    get_settings.cache_clear()
    _clock.clear()
    _gateway_override.clear()
    _store_overrides.clear()
    _forget_services()
    if "billing.adapters.aws.clients" in sys.modules:  # never import boto3 just to forget its clients
        sys.modules["billing.adapters.aws.clients"].reset_clients()
    if "aws_lambda_powertools.utilities.parameters" in sys.modules:
        sys.modules["aws_lambda_powertools.utilities.parameters"].clear_caches()
