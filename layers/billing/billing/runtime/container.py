"""The composition root: every service is built here, once per process, from Settings.

Handlers, the CLI, the demo and the tests ask this module (and only this module) for services. Each
dependency is a *provider*: a function decorated with ``@provider`` that builds it from settings and
from other providers. Invariants:
- one instance of each provider per process until ``reset()`` or ``override()``; in particular one
  Stripe gateway, so one rate limiter holds the whole process under the Stripe cap (invoicing and
  dunning share it);
- one way to replace a dependency: ``override(name=value)`` serves ``value`` for the provider
  ``name`` (any provider: a store, the clock, the payment collector...), and everything built from it
  afterwards uses it, as cosmicpython's ``bootstrap`` takes its fakes as arguments. The services
  themselves (ingest, the quota rules, the rater, the close) are always the production ones;
- adapters are imported inside their providers: a function that never touches ClickHouse does not pay
  for importing clickhouse-connect on a cold start, nor one that never pays for importing stripe;
- importing this module loads no pydantic, no settings and no domain module (a handler imports it
  in its init phase; what a request needs is imported by the provider that builds it);
- no domain rule lives here: this module only wires;
- ``reset()`` forgets everything built and every override, cached boto3 clients and the secrets
  Powertools cached, so a later environment never sees a service or key of an earlier one.

Length: one provider per dependency the process can build (about 40); splitting them across
modules would hide the one list a reader checks to see what is wired to what.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from decimal import Decimal

    from billing.adapters.clickhouse.usage_store import ClickHouseUsageStore
    from billing.adapters.dynamodb.dunning import DynamoDunningStore, DynamoEventLog
    from billing.adapters.dynamodb.invoice_records import DynamoInvoiceRecords
    from billing.adapters.dynamodb.product_ids import DynamoPageConfigId, DynamoProductIds
    from billing.adapters.dynamodb.quota_reads import DynamoQuotaReads
    from billing.adapters.dynamodb.tenants import DynamoTenantStore
    from billing.adapters.dynamodb.usage_ledger import DynamoUsageLedger
    from billing.adapters.stripe.gateway import StripeGateway
    from billing.alerts.evaluation import AlertEvaluator, AlertStates
    from billing.catalog.plans import PlanCatalog
    from billing.dunning.notices import NoticePublisher
    from billing.dunning.service import DunningService
    from billing.invoicing import InvoicingService
    from billing.kernel.calendar import Period
    from billing.kernel.notices import FactNotices
    from billing.kernel.periods import Month, PeriodStore
    from billing.metering.corrections import CorrectionService
    from billing.metering.ingest import IngestService
    from billing.metering.price_book import PriceBook
    from billing.metering.quota_windows import QuotaWindow
    from billing.metering.quotas import QuotaReconciler
    from billing.metering.receipts import CorrectionsSource, ReceiptService
    from billing.metering.storing import FallbackQueue, UsageStore
    from billing.outgoing_webhooks.delivery import (
        DeadLetters,
        DeliveryQueue,
        Dispatcher,
        Poster,
        PublishLog,
        Relay,
        Sender,
        SequenceCounter,
    )
    from billing.outgoing_webhooks.delivery_log import Deliveries, DeliveryLog
    from billing.outgoing_webhooks.endpoints import EndpointService, EndpointStore, SecretVault
    from billing.outgoing_webhooks.health import EndpointHealth
    from billing.outgoing_webhooks.publishing import WebhookPublisher
    from billing.payments.card_on_file import CardOnFileService
    from billing.payments.provider import PaymentCollector
    from billing.payments.stripe_webhooks import WebhookProcessor
    from billing.portal.metric_cache import CachedMetricFigures
    from billing.portal.preview_cache import CachedStatements
    from billing.portal.preview_warmer import PreviewWarmer
    from billing.portal.tokens import PortalTokens
    from billing.portal.usage_cache import CachedUsageFigures
    from billing.portal.view import PortalService
    from billing.rating import Rater
    from billing.runtime.settings import Settings
    from billing.statements.close import BillingCycle, InvoiceArchive, InvoicingJobs, StatementStore
    from billing.statements.period_close import TenantPeriodClose
    from billing.statements.statement import Statement
    from billing.tenants.credentials import KeyDirectory
    from billing.tenants.credits import CreditBook, CreditLedger
    from billing.tenants.service import TenantService
    from billing.tenants.tenant import Tenant

T = TypeVar("T")

_providers: dict[str, Callable[[], Any]] = {}  # name -> the cached builder
_overrides: dict[str, Any] = {}


def provider(build: Callable[[], T]) -> Callable[[], T]:
    """Register ``build`` as the provider of its name: built once per process, unless overridden."""
    name = build.__name__
    cached = cache(build)
    _providers[name] = cached

    def get() -> T:
        if name in _overrides:
            return _overrides[name]
        return cached()

    get.__name__ = get.__qualname__ = name
    get.__doc__ = build.__doc__
    return get


def override(**dependencies: Any) -> None:
    """Serve these values for the providers of these names (``None`` for a name: back to what it
    builds); every service is then built anew, so it picks them up. Unknown names are an error."""
    unknown = sorted(set(dependencies) - set(_providers))
    if unknown:
        raise ValueError(f"no such provider: {', '.join(unknown)}")
    for name, value in dependencies.items():
        if value is None:
            _overrides.pop(name, None)
        else:
            _overrides[name] = value
    _forget_services()


def overridden(name: str) -> bool:
    return name in _overrides


def _forget_services() -> None:
    for cached in _providers.values():
        cached.cache_clear()  # type: ignore[attr-defined]


def reset() -> None:
    """Forget everything built so far and every override (tests and the local runner change settings
    between runs)."""
    if "billing.runtime.settings" in sys.modules:  # never import pydantic just to forget the settings
        sys.modules["billing.runtime.settings"].get_settings.cache_clear()
    _overrides.clear()
    _forget_services()
    if "billing.adapters.aws.clients" in sys.modules:  # never import boto3 just to forget its clients
        sys.modules["billing.adapters.aws.clients"].reset_clients()
    if "aws_lambda_powertools.utilities.parameters" in sys.modules:
        sys.modules["aws_lambda_powertools.utilities.parameters"].clear_caches()


# ------------------------------------------------------------------------------------------ settings
def settings() -> Settings:
    from billing.runtime.settings import get_settings

    return get_settings()


@provider
def clickhouse_url() -> str:
    s = settings()
    if s.clickhouse_url_secret:
        # Credentials live in Secrets Manager; Powertools caches the value between invocations.
        from aws_lambda_powertools.utilities import parameters

        return str(parameters.get_secret(s.clickhouse_url_secret, max_age=300))
    return s.clickhouse_url


@provider
def clock() -> Callable[[], datetime]:
    """The clock webhook and dunning decisions and ingest's claim leases use (tests, the demo and the
    benches override it)."""
    return _system_clock


def _system_clock() -> datetime:
    return datetime.now(UTC)


def is_conflict(exc: Exception) -> bool:
    """True when ``exc`` is a lost conditional write (someone else wrote first): re-read and retry."""
    from botocore.exceptions import ClientError

    from billing.adapters.dynamodb.items import is_conditional_failure

    return isinstance(exc, ClientError) and is_conditional_failure(exc)


# ------------------------------------------------------------------------------------------ catalog
@provider
def price_book() -> PriceBook:
    from billing.metering.price_book import PriceBook

    return PriceBook.load(settings().pricebook_path)


@provider
def plan_catalog() -> PlanCatalog:
    from billing.catalog.plans import PlanCatalog

    return PlanCatalog.load(settings().plans_path)


# ------------------------------------------------------------------------------------------ stores
@provider
def usage_store() -> ClickHouseUsageStore:
    from billing.adapters.clickhouse.usage_store import ClickHouseUsageStore

    s = settings()
    return ClickHouseUsageStore.from_url(
        clickhouse_url(), s.clickhouse_database, timeout_s=s.clickhouse_insert_timeout_s
    )


@provider
def ingest_store() -> UsageStore:
    """Where ingest writes accepted events: ClickHouse (a local runtime may put a buffer in front)."""
    return usage_store()


@provider
def tenants() -> DynamoTenantStore:
    from billing.adapters.dynamodb.tenants import DynamoTenantStore

    return DynamoTenantStore(settings().tenants_table)


@provider
def ledger() -> DynamoUsageLedger:
    from billing.adapters.dynamodb.usage_ledger import DynamoUsageLedger

    return DynamoUsageLedger(settings().ledger_table)


@provider
def quota_reads() -> DynamoQuotaReads:
    from billing.adapters.dynamodb.quota_reads import DynamoQuotaReads

    return DynamoQuotaReads(settings().tenants_table, settings().ledger_table)


@provider
def periods() -> PeriodStore:
    from billing.adapters.dynamodb.statements import DynamoPeriodStore

    return DynamoPeriodStore(settings().billing_table)


@provider
def statements() -> StatementStore:
    from billing.adapters.dynamodb.statements import DynamoStatementStore

    return DynamoStatementStore(settings().billing_table)


@provider
def fallback_queue() -> FallbackQueue:
    from billing.adapters.aws.queues import SqsFallbackQueue

    return SqsFallbackQueue(settings().fallback_queue_url)


@provider
def fallback_depth() -> Callable[[], int]:
    """Messages still in the usage fallback queue (the close waits until it is empty)."""
    from billing.adapters.aws.queues import SqsQueueDepth

    return SqsQueueDepth(settings().fallback_queue_url)


@provider
def invoice_records() -> DynamoInvoiceRecords:
    from billing.adapters.dynamodb.invoice_records import DynamoInvoiceRecords

    return DynamoInvoiceRecords(settings().billing_table)


@provider
def dunning_store() -> DynamoDunningStore:
    from billing.adapters.dynamodb.dunning import DynamoDunningStore

    s = settings()
    return DynamoDunningStore(s.billing_table, s.tenants_table)


@provider
def processed_events() -> DynamoEventLog:
    from billing.adapters.dynamodb.dunning import DynamoEventLog

    s = settings()
    return DynamoEventLog(s.ledger_table, retention_days=s.webhook_event_retention_days)


@provider
def invoicing_jobs() -> InvoicingJobs:
    from billing.adapters.aws.invoicing_jobs import SqsInvoicingJobs

    return SqsInvoicingJobs(settings().invoicing_queue_url, settings().billing_table)


@provider
def invoice_archive() -> InvoiceArchive:
    from billing.adapters.aws.invoice_archive import S3InvoiceArchive

    return S3InvoiceArchive(settings().invoices_bucket)


@provider
def credit_ledger() -> CreditLedger:
    from billing.adapters.dynamodb.credit_ledger import DynamoCreditLedger

    return DynamoCreditLedger(settings().billing_table)


@provider
def product_ids() -> DynamoProductIds:
    from billing.adapters.dynamodb.product_ids import DynamoProductIds

    return DynamoProductIds(settings().billing_table)


@provider
def payment_settings_page_id() -> DynamoPageConfigId:
    from billing.adapters.dynamodb.product_ids import DynamoPageConfigId

    return DynamoPageConfigId(settings().billing_table)


@provider
def notices() -> NoticePublisher:
    from billing.adapters.aws.notices import EventBridgeNoticePublisher

    return EventBridgeNoticePublisher(settings().notices_bus_name)


@provider
def webhook_endpoints() -> EndpointStore:
    from billing.adapters.dynamodb.webhook_endpoints import DynamoWebhookEndpoints

    return DynamoWebhookEndpoints(settings().billing_table)


@provider
def webhook_secrets() -> SecretVault:
    from billing.adapters.aws.webhook_secrets import SecretsManagerWebhookSecrets

    return SecretsManagerWebhookSecrets(settings().webhook_secrets_prefix)


@provider
def webhook_sequences() -> SequenceCounter:
    from billing.adapters.dynamodb.webhook_endpoints import DynamoSequenceCounter

    return DynamoSequenceCounter(settings().billing_table)


@provider
def webhook_queue() -> DeliveryQueue:
    from billing.adapters.aws.webhook_queue import SqsDeliveryQueue

    return SqsDeliveryQueue(settings().webhook_delivery_queue_url, clock())


@provider
def webhook_dead_letters() -> DeadLetters:
    from billing.adapters.aws.webhook_queue import SqsDeadLetters

    return SqsDeadLetters(settings().webhook_dead_letter_queue_url)


@provider
def webhook_poster() -> Poster:
    from billing.adapters.http_poster import UrllibPoster

    return UrllibPoster()


# ------------------------------------------------------------------------------------------ Stripe
@provider
def stripe_gateway() -> StripeGateway:
    """The process's one Stripe gateway (and so its one rate limiter). Building it reads the key."""
    from billing.adapters.stripe.gateway import StripeGateway

    return StripeGateway.from_settings(settings())


@provider
def payment_collector() -> PaymentCollector:
    """What dunning pays through: the Stripe gateway, built only when a retry is actually due (the
    webhook function reads dunning state but never pays, so it never reads the Stripe key)."""
    return _LazyCollector()


class _LazyCollector:
    def pay_invoice(self, invoice_id: str, *, idempotency_key: str):  # type: ignore[no-untyped-def]
        return stripe_gateway().pay_invoice(invoice_id, idempotency_key=idempotency_key)


@provider
def webhook_secret() -> Callable[[], str]:
    from billing.adapters.stripe.webhook_signature import secret_from_secrets_manager

    return secret_from_secrets_manager(settings().stripe_webhook_secret_name, max_age_s=300)


@provider
def api_key_directory() -> KeyDirectory:
    """The API keys a Bearer or Basic credential may name: those API Gateway accepts on the stage."""
    from billing.adapters.aws.api_keys import ApiGatewayKeys

    return ApiGatewayKeys()


# ------------------------------------------------------------------------------------------ services
@provider
def ingest_service() -> IngestService:
    from billing.metering.ingest import IngestService

    now = clock()
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
        lease_clock=lambda: now().timestamp(),
    )


@provider
def correction_service() -> CorrectionService:
    from billing.adapters.clickhouse.corrections import ClickHouseCorrectionRows
    from billing.adapters.dynamodb.corrections import DynamoCorrectionLedger
    from billing.metering.corrections import CorrectionService

    s = settings()
    return CorrectionService(
        tenants=tenants(),
        ledger=DynamoCorrectionLedger(s.ledger_table),
        rows=ClickHouseCorrectionRows(usage_store()),
        price_book=price_book(),
        catalog=plan_catalog(),
        webhooks=webhook_publisher(),
        window_days=s.correction_window_days,
        retention_days=s.dedup_retention_days,
        clock=clock(),
    )


@provider
def rater() -> Rater:
    from billing.rating import Rater

    return Rater(plan_catalog())


@provider
def credit_book() -> CreditBook:
    """Prepaid credits: the book's rules over the ``credit_ledger``."""
    from billing.tenants.credits import CreditBook

    return CreditBook(credit_ledger())


@provider
def quota_reconciler() -> QuotaReconciler:
    """Repairs a month's drifted quota counters (``billing quota reconcile``, the close)."""
    from billing.metering.quotas import QuotaReconciler

    return QuotaReconciler(
        tenants(),
        lambda month: usage_store().stored_queries(month),
        ledger(),
        retention_days=settings().dedup_retention_days,
    )


@provider
def receipt_corrections() -> CorrectionsSource:
    """Where receipts read the corrections of an event: the corrections' audit trail."""
    from billing.adapters.dynamodb.corrections import DynamoCorrectionLedger
    from billing.metering.receipt_corrections import TrailCorrections

    return TrailCorrections(DynamoCorrectionLedger(settings().ledger_table))


@provider
def receipt_service() -> ReceiptService:
    """Receipts of event ids and the reconcile of a tenant's month."""
    from billing.adapters.clickhouse.receipt_queries import ClickHouseStoredEvents
    from billing.adapters.dynamodb.receipt_index import DynamoReceiptIndex
    from billing.metering.receipts import ReceiptService

    return ReceiptService(
        ledger=DynamoReceiptIndex(settings().ledger_table),
        events=ClickHouseStoredEvents(usage_store()),
        periods=periods(),
        statements=statements(),
        fallback_depth=fallback_depth(),
        retention_days=settings().dedup_retention_days,
        clock=clock(),
        corrections=receipt_corrections(),
    )


@provider
def billing_cycle() -> BillingCycle:
    from billing.adapters.clickhouse.period_queries import ClickHousePeriodReads
    from billing.adapters.clickhouse.rating_queries import ClickHouseRatingQueries
    from billing.statements.close import BillingCycle
    from billing.statements.period_close import TenantPeriodClose

    cycle = BillingCycle(
        store_clock=usage_store().now,
        reconcile=quota_reconciler(),
        tenants=tenants(),
        periods=periods(),
        statements=statements(),
        queries=ClickHouseRatingQueries(usage_store()),
        rater=rater(),
        jobs=invoicing_jobs(),
        archive=invoice_archive(),
        fallback_depth=fallback_depth(),
        credits=credit_book(),
        webhooks=webhook_publisher(),
    )
    cycle.own_periods = TenantPeriodClose(cycle, ClickHousePeriodReads(usage_store()))
    return cycle


@provider
def tenant_period_close() -> TenantPeriodClose:
    from billing.statements.period_close import TenantPeriodClose

    own = billing_cycle().own_periods
    assert isinstance(own, TenantPeriodClose)
    return own


@provider
def tenant_service() -> TenantService:
    from billing.tenants.service import TenantService

    return TenantService(
        tenants=tenants(),
        catalog=plan_catalog(),
        periods=periods(),
        cycle=billing_cycle,
        is_conflict=is_conflict,
        link_customer=link_customer,
        dunning=dunning_service,
        credits=credit_book(),
        export_quota=export_tenant_quota,
    )


def export_tenant_quota(tenant: Tenant, at: datetime) -> None:
    """Refresh one tenant's row of the dashboards' ``tenant_quotas`` (its plan or calendar changed)."""
    from billing.adapters.clickhouse.tenant_quotas import export_tenant_quota as export

    export(tenant, usage_store(), plan_catalog(), at)


def export_tenant_quotas() -> int:
    """Every tenant's row of ``tenant_quotas`` as in force now (the scheduled safety net)."""
    from billing.adapters.clickhouse.tenant_quotas import export_tenant_quotas as export

    return export(tenants(), usage_store(), plan_catalog(), clock()())


def link_customer(tenant_id: str) -> str:
    """The tenant's Stripe customer id, creating and linking the customer once (signup, card on file)."""
    return invoicing_service().ensure_customer(tenant_id)


@provider
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
        products=lambda: product_ids().get(),
        notices=notices(),
    )


@provider
def dunning_service() -> DunningService:
    """Dunning: webhook facts, a tenant's status, and the scheduled retries (which pay through the
    ``payment_collector``)."""
    from billing.adapters.aws.notices import DynamoInvoiceDetails
    from billing.dunning.service import DunningService

    return DunningService(
        dunning_store(),
        retry_days=settings().dunning_retry_days,
        clock=clock(),
        gateway=payment_collector(),
        notices=notices(),
        invoice_details=DynamoInvoiceDetails(dunning_store(), invoice_records()),
        webhooks=webhook_publisher(),
    )


@provider
def card_on_file() -> CardOnFileService:
    """Setup sessions, the provider's billing-settings page and the saved card's webhook facts (the
    Stripe key is read on first use)."""
    from billing.payments.card_on_file import CardOnFileService, CardUrls

    s = settings()
    return CardOnFileService(
        tenants=tenants(),
        mirror=tenants(),
        ensure_customer=link_customer,
        provider=stripe_gateway,
        urls=CardUrls(s.billing_setup_success_url, s.billing_setup_cancel_url, s.billing_portal_return_url),
        currency=plan_catalog().currency,
        page_config=lambda: payment_settings_page_id().get(),
    )


@provider
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
        webhooks=webhook_publisher(),
    )


@provider
def webhook_endpoint_service() -> EndpointService:
    """The SaaS's outgoing-webhook endpoints and what a delivery to each is signed with."""
    from billing.outgoing_webhooks.endpoints import EndpointService

    return EndpointService(webhook_endpoints(), webhook_secrets(), clock())


@provider
def webhook_sender() -> Sender:
    """One attempt of an outgoing webhook message, signed when it is made."""
    from billing.outgoing_webhooks.delivery import Sender
    from billing.outgoing_webhooks.health import AddressGuard

    guard = AddressGuard(allow_loopback=settings().webhook_allow_loopback)
    return Sender(webhook_endpoint_service(), webhook_poster(), clock(), guard=guard)


@provider
def webhook_dispatcher() -> Dispatcher:
    """Publishing an event to every endpoint that wants it (queued, then attempted by the relay)."""
    from billing.outgoing_webhooks.delivery import Dispatcher

    return Dispatcher(webhook_endpoint_service(), webhook_sequences(), webhook_queue(), webhook_publish_log())


@provider
def webhook_publish_log() -> PublishLog:
    from billing.adapters.dynamodb.webhook_endpoints import DynamoPublishLog

    return DynamoPublishLog(settings().billing_table)


@provider
def webhook_publisher() -> WebhookPublisher:
    """What the producers (the close, Stripe webhooks, dunning) publish through: once per fact, and
    never failing the billing action (billing.outgoing_webhooks.publishing)."""
    from billing.outgoing_webhooks.publishing import QuietPublisher

    return QuietPublisher(webhook_dispatcher)


@provider
def webhook_relay() -> Relay:
    from billing.outgoing_webhooks.delivery import Relay
    from billing.outgoing_webhooks.delivery_log import AttemptRecorder

    return Relay(
        webhook_sender(),
        webhook_queue(),
        webhook_dead_letters(),
        clock(),
        AttemptRecorder(webhook_delivery_log()),
        webhook_health(),
    )


@provider
def webhook_health() -> EndpointHealth:
    """Disables an endpoint that has failed for days (a notice, a log record, a webhook say so)."""
    from datetime import timedelta

    from billing.outgoing_webhooks.health import EndpointHealth

    return EndpointHealth(
        webhook_endpoints(),
        clock(),
        disable_after=timedelta(days=settings().webhook_disable_after_days),
        log=webhook_delivery_log(),
        notices=fact_notices(),
        webhooks=webhook_publisher(),
    )


@provider
def alert_states() -> AlertStates:
    from billing.adapters.dynamodb.alert_states import DynamoAlertStates

    return DynamoAlertStates(settings().billing_table)


def _period_spend(tenant: Tenant, window: QuotaWindow) -> Decimal:
    """The period-to-date statement's total: the month's preview for a period that is a UTC
    calendar month (as the month close rates it), else the tenant period's, rated as its close does."""
    from billing.kernel.periods import Month
    from billing.tenants.closed_periods import has_own_periods

    if not has_own_periods(tenant):
        return billing_cycle().statement(tenant.id, Month.parse(window.key))[0].total
    period = tenant.calendar_history().period_of(window.start)
    month = period.as_month()
    if month is not None:
        return billing_cycle().statement(tenant.id, month)[0].total
    return tenant_period_close().rate(tenant, period, None).total


@provider
def alert_evaluator() -> AlertEvaluator:
    """Alerts on usage and spend: fired and resolved once per threshold and period, announced as
    notices and webhooks (billing.alerts.evaluation)."""
    from billing.adapters.clickhouse.metric_queries import ClickHouseMetrics
    from billing.alerts.evaluation import AlertEvaluator, StoredUsage

    catalog = plan_catalog()
    usage = StoredUsage(
        catalog,
        ledger().quota_used,
        ClickHouseMetrics(usage_store()).value,
        _period_spend,
    )
    return AlertEvaluator(
        tenants=tenants(),
        catalog=catalog,
        usage=usage,
        states=alert_states(),
        clock=clock(),
        notices=fact_notices(),
        webhooks=webhook_publisher(),
    )


@provider
def fact_notices() -> FactNotices:
    """Notices of alerts and disabled endpoints on the stack's EventBridge bus."""
    from billing.adapters.aws.notices import EventBridgeFactNotices

    return EventBridgeFactNotices(settings().notices_bus_name)


@provider
def webhook_delivery_log() -> DeliveryLog:
    """Every attempt of every outgoing webhook message, kept 30 days."""
    from billing.adapters.dynamodb.webhook_log import DynamoDeliveryLog

    return DynamoDeliveryLog(settings().billing_table)


@provider
def webhook_deliveries() -> Deliveries:
    """An endpoint's delivery log, and resending a logged message."""
    from billing.outgoing_webhooks.delivery_log import Deliveries

    return Deliveries(webhook_endpoint_service(), webhook_delivery_log(), webhook_queue(), clock())


# ------------------------------------------------------------------------------------------ portal
@provider
def portal_secret() -> Callable[[], bytes]:
    """The portal link signing key, read through Powertools Parameters (cached max_age seconds)."""
    from aws_lambda_powertools.utilities import parameters

    from billing.portal.tokens import signing_key

    s = settings()

    def secret() -> bytes:
        value = parameters.get_secret(s.portal_secret_name, max_age=s.portal_secret_max_age_s)
        return signing_key(value if isinstance(value, bytes) else str(value))

    return secret


@provider
def portal_tokens() -> PortalTokens:
    from billing.portal.tokens import PortalTokens

    return PortalTokens(portal_secret(), clock())


def _period_preview(tenant_id: str, period: Month | Period) -> tuple[Statement, bool]:
    """(statement, stored) of the page's period: a UTC month's as the month close rates it (and
    the statements API answers), a tenant period's as its close rates it, up to now."""
    from billing.kernel.calendar import Period
    from billing.tenants.tenant import unknown_tenant

    if isinstance(period, Period) and period.as_month() is None:
        tenant = tenants().get(tenant_id)
        if tenant is None:
            raise unknown_tenant([tenant_id])
        return tenant_period_close().rate(tenant, period, None), False
    month = period.as_month() if isinstance(period, Period) else period
    assert month is not None
    return billing_cycle().statement(tenant_id, month)


# the warmer's schedule in template.yaml (PortalWarmFunction): rate(4 minutes), the hour buckets it
# reads tenants from reach this far back
PORTAL_WARM_INTERVAL_S = 240
PORTAL_WARM_WINDOW_S = 600


@provider
def cached_statements() -> CachedStatements:
    """The statement the usage page shows: stored, a fresh cached preview, or rated then cached."""
    from billing.adapters.dynamodb.preview_cache import DynamoPreviewStore
    from billing.portal.preview_cache import CachedStatements

    return CachedStatements(
        stored=lambda tenant_id, period: statements().get(tenant_id, str(period)),
        tenant=lambda tenant_id: tenants().get(tenant_id),
        preview=_period_preview,
        store=DynamoPreviewStore(settings().billing_table),
        clock=clock(),
        max_age_s=settings().portal_preview_max_age_seconds,
    )


@provider
def preview_warmer() -> PreviewWarmer:
    """Rates each recently active tenant's month-to-date preview into the cache before the one there
    expires: a preview younger than max age - (interval + budget) is kept, so the next run still
    reaches it in time (billing.portal.preview_warmer)."""

    from billing.adapters.clickhouse.active_tenants import ClickHouseActiveTenants
    from billing.portal.preview_warmer import PreviewWarmer

    s = settings()
    lead = PORTAL_WARM_INTERVAL_S + s.portal_warm_budget_seconds
    return PreviewWarmer(
        active=ClickHouseActiveTenants(usage_store()),
        statements=cached_statements(),
        clock=clock(),
        window=timedelta(seconds=PORTAL_WARM_WINDOW_S),
        keep_younger_than=timedelta(seconds=max(0, s.portal_preview_max_age_seconds - lead)),
        max_tenants=s.portal_warm_max_tenants,
        budget_s=s.portal_warm_budget_seconds,
        period_of=_shown_period,
        figures=_warm_figures,
        usage=_warm_usage,
    )


def _warm_usage(tenant_id: str, period: Month | Period, keep_younger_than: timedelta) -> bool:
    """Refresh the per-day and per-model figures and corrections the tenant's page shows for ``period``."""
    tenant = tenants().get(tenant_id)
    if tenant is None:
        return False
    return cached_usage_figures().refresh(tenant, period, keep_younger_than=keep_younger_than) is not None


@provider
def cached_usage_figures() -> CachedUsageFigures:
    """The usage page's per-day and per-model figures and corrections block: a fresh cached entry,
    or read from the rollup (and the corrections) then cached."""
    from billing.adapters.clickhouse.portal_queries import ClickHouseUsageRollups
    from billing.adapters.clickhouse.receipt_queries import ClickHouseStoredEvents
    from billing.adapters.dynamodb.corrections import DynamoCorrectionLedger
    from billing.adapters.dynamodb.preview_cache import DynamoUsageFiguresStore
    from billing.portal.corrections_block import MonthCorrections
    from billing.portal.usage_cache import CachedUsageFigures

    s = settings()
    return CachedUsageFigures(
        rollups=ClickHouseUsageRollups(usage_store()),
        corrections=MonthCorrections(
            ClickHouseStoredEvents(usage_store()), DynamoCorrectionLedger(s.ledger_table)
        ),
        store=DynamoUsageFiguresStore(s.billing_table),
        clock=clock(),
        max_age_s=s.portal_preview_max_age_seconds,
    )


def _warm_figures(tenant_id: str, period: Month | Period, keep_younger_than: timedelta) -> bool:
    """Refresh the per-metric figures the tenant's page shows for ``period`` (none asked: nothing)."""
    from billing.portal.view import zone_of

    asked = portal_service().metrics_asked(tenant_id, period)
    refreshed = cached_metric_figures().refresh(
        tenant_id, period, asked, zone=zone_of(period), keep_younger_than=keep_younger_than
    )
    return refreshed is not None


@provider
def cached_metric_figures() -> CachedMetricFigures:
    """The usage page's per-metric figures: a fresh cached entry, or read from the rollups then cached."""
    from billing.adapters.clickhouse.metric_rollups import ClickHouseMetricRollups
    from billing.adapters.dynamodb.preview_cache import DynamoMetricFiguresStore
    from billing.portal.metric_cache import CachedMetricFigures

    return CachedMetricFigures(
        figures=ClickHouseMetricRollups(usage_store()),
        store=DynamoMetricFiguresStore(settings().billing_table),
        tenant=lambda tenant_id: tenants().get(tenant_id),
        clock=clock(),
        max_age_s=settings().portal_preview_max_age_seconds,
    )


def _shown_period(tenant_id: str, now: datetime) -> Month | Period:
    """The period the tenant's usage page shows at ``now`` (what the warmer keeps warm)."""
    from billing.kernel.periods import Month
    from billing.portal.view import PortalService

    tenant = tenants().get(tenant_id)
    return PortalService.selectable(tenant, now)[0] if tenant is not None else Month.of(now)


@provider
def portal_service() -> PortalService:
    from billing.adapters.dynamodb.page_reads import DynamoPageReads
    from billing.portal.view import PortalService

    s = settings()
    return PortalService(
        tenants=tenants(),
        catalog=plan_catalog(),
        reads=DynamoPageReads(
            tenants_table=s.tenants_table, ledger_table=s.ledger_table, billing_table=s.billing_table
        ),
        statements=cached_statements(),
        usage=cached_usage_figures(),
        clock=clock(),
        credits=credit_book(),
        alerts=alert_states().of_period,
        metrics=cached_metric_figures(),
    )
