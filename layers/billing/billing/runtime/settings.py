"""Typed settings, read once from the environment.

A pydantic model fed by the process environment (variable names are the field names, any case).
Not pydantic-settings: its import (dotenv, argparse, its sources) cost 60-80 ms of every cold start
(bench/import_time.py) for features a Lambda environment never uses. List fields accept what the
template renders (comma-separated, from a CommaDelimitedList !Join) as well as a JSON array.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from billing.dunning.schedule import DEFAULT_RETRY_DAYS

PACKAGE_CONFIG = Path(__file__).resolve().parent.parent / "config"
DEFAULT_DATA_DIR = Path.cwd() / ".data"


class Settings(BaseModel):
    """Values passed in code win over the environment; unknown variables are ignored."""

    model_config = ConfigDict(extra="ignore")

    # ClickHouse: one URL. chdb:///abs/path is the embedded engine; https://user:pass@host:8443/db a
    # server. In Lambda the URL (it carries credentials) comes from Secrets Manager instead.
    clickhouse_url: str = f"chdb://{DEFAULT_DATA_DIR / 'chdb'}"
    clickhouse_url_secret: str | None = None
    clickhouse_database: str = "billing"
    clickhouse_insert_timeout_s: float = 5.0

    tenants_table: str = "billing-tenants"
    ledger_table: str = "billing-ledger"
    billing_table: str = "billing-billing"

    fallback_queue_url: str = ""
    invoicing_queue_url: str = ""
    invoices_bucket: str = "billing-invoices"

    pricebook_path: Path = PACKAGE_CONFIG / "pricebook.yaml"
    plans_path: Path = PACKAGE_CONFIG / "plans.yaml"

    # API Gateway API key ids allowed to write usage for every tenant (the SaaS's own backend).
    # Any other key may only write for tenants whose record lists that key id.
    # The template sets it with !Join [",", ...] (a CommaDelimitedList): "" or "k1,k2"; JSON also works.
    platform_api_key_ids: list[str] = Field(default_factory=list)

    # Which field of a Segment track message names the tenant: a dotted path into the message
    # (context.groupId, userId, properties.<name>...).
    segment_tenant_field: str = Field(
        default="context.groupId",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}(\.[A-Za-z_][A-Za-z0-9_]{0,63}){0,3}$",
    )

    # How long an ingest request waits for another live request that holds one of its event ids
    # (a concurrent copy of the same event) before answering 503; other batches never wait.
    ingest_claim_wait_seconds: float = 10.0
    max_batch_events: int = 1000
    max_body_bytes: int = 1_000_000
    # How long an event id stays claimed after its month ends (the late-event window).
    dedup_retention_days: int = 70
    # How far back an accepted event may be voided or amended (days before now, by its timestamp).
    # At most 62: every correction then falls in the three months the close looks back for late data.
    correction_window_days: int = Field(default=60, ge=0, le=62)

    stripe_secret_name: str = "billing/stripe-secret-key"
    stripe_webhook_secret_name: str = "billing/stripe-webhook-secret"
    stripe_api_version: str = "2026-10-28.endive"  # the version stripe==16.x is generated for
    stripe_max_requests_per_second: float = 25.0  # the account's cap (live mode: 100)
    stripe_endpoint_requests_per_second: float = 25.0  # Stripe's default per-endpoint limit
    stripe_search_requests_per_second: float = 20.0  # the search endpoints' limit
    stripe_api_base: str | None = None  # only for a local Stripe double (tests, demo)
    # How many processes share the rate cap (the invoicing Lambda's MaximumConcurrency); each
    # process limits itself to stripe_max_requests_per_second / stripe_rate_share.
    stripe_rate_share: int = 1
    stripe_timeout_s: float = 30.0
    stripe_max_attempts: int = 5  # per request: 429, 5xx, 409 lock and network errors
    stripe_retry_base_delay_s: float = 0.5
    stripe_secret_max_age_s: int = 300  # Powertools Parameters cache
    invoicing_workers: int = 8  # statements invoiced in parallel by the CLI
    # A tenant without a payment method gets its invoice sent (hosted page) due in this many days.
    invoice_days_until_due: int = Field(default=14, ge=0, le=365)
    # Stripe Tax: automatic_tax on invoices, the address collected by the setup session.
    stripe_automatic_tax: bool = False
    # The stack's EventBridge bus for dunning notices ("" publishes none).
    notices_bus_name: str = ""
    # Where Stripe's hosted pages send the tenant back (a request may give its own).
    billing_setup_success_url: str = "https://example.com/billing/card-saved?session_id={CHECKOUT_SESSION_ID}"
    billing_setup_cancel_url: str = "https://example.com/billing/card-canceled"
    billing_portal_return_url: str = "https://example.com/billing"

    # The tenant's usage page: the Secrets Manager secret whose value signs portal links (HMAC-SHA256),
    # and the public base URL links point at (default: the API stage the request came through).
    portal_secret_name: str = "billing/portal-token-secret"
    portal_secret_max_age_s: int = 300
    # a month-to-date statement preview younger than this is served from its cache ("as of HH:MM UTC")
    portal_preview_max_age_seconds: int = 300
    # PortalWarmFunction (billing.portal.preview_warmer): at most this many previews rated per run
    # (the rest are left to a page request), and no new rating started after this many seconds.
    portal_warm_max_tenants: int = Field(default=100, ge=0)
    portal_warm_budget_seconds: int = Field(default=45, ge=0)
    portal_base_url: str | None = None

    # Outgoing webhooks: each endpoint's signing secret is the Secrets Manager secret
    # "{webhook_secrets_prefix}/{endpoint_id}".
    webhook_secrets_prefix: str = "billing/webhook-endpoints"
    # The queue of outgoing webhook messages between attempts, and where a message whose attempts
    # are all spent is kept.
    webhook_delivery_queue_url: str = ""
    webhook_dead_letter_queue_url: str = ""
    # An endpoint whose every attempt has failed for this many days is disabled (a notice says so).
    webhook_disable_after_days: float = Field(default=5, gt=0, le=90)
    # Sends to a host resolving to 127.0.0.1 / ::1 are allowed (billing serve, tests only); private,
    # link-local and reserved addresses are refused always.
    webhook_allow_loopback: bool = False

    # Retry k is due retry_days[k-1] days after the first failed payment (billing.dunning.schedule).
    dunning_retry_days: list[int] = Field(default_factory=lambda: list(DEFAULT_RETRY_DAYS))
    webhook_event_retention_days: int = 30
    webhook_tolerance_s: int = 300  # Stripe-Signature max age (Stripe's default)
    dunning_batch_limit: int = 500  # due retries paid per dunning run

    @model_validator(mode="before")
    @classmethod
    def _from_environment(cls, data: Any) -> Any:
        environment = {key.lower(): value for key, value in os.environ.items()}
        found = {name: environment[name] for name in cls.model_fields if name in environment}
        return {**found, **(data if isinstance(data, dict) else {})}

    @field_validator("platform_api_key_ids", "dunning_retry_days", mode="before")
    @classmethod
    def _list_from_env(cls, value: Any) -> Any:
        """A list variable is a JSON array or comma-separated values ("" is the empty list)."""
        return comma_or_json_list(value)


def comma_or_json_list(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        return json.loads(text)
    return [part.strip() for part in text.split(",") if part.strip()]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
