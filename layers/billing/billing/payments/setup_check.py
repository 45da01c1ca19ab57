"""What the payment provider's account needs before going live, judged from what its API shows
(``billing stripe check``). Each finding names what is missing and what that costs.

- A webhook endpoint, enabled, receiving every event we handle at the pinned API version. Without
  ``invoice.overdue`` a tenant without a card (its invoices are sent, never charged) is never
  dunned: nothing else tells us its invoice went unpaid.
- Our payment settings page configuration, recorded and active (or the account's Dashboard
  default): without one Stripe refuses every portal session.
- A published minimum charge for each currency the plans bill in: outside Stripe's table the
  minimum depends on the day's rate, so a small statement's carry cannot be foreseen.
- What the API cannot show is listed to confirm by hand: the invoice automation that decides
  whether, and how many days after the due date, Stripe sends ``invoice.overdue``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from billing.payments.payment_settings_page import ProviderPage

Status = Literal["ok", "missing", "warning", "confirm"]

OVERDUE = "invoice.overdue"


@dataclass(frozen=True)
class WebhookEndpointView:
    id: str
    url: str
    status: str  # "enabled" or "disabled"
    enabled_events: tuple[str, ...]  # "*" is every event
    api_version: str | None  # None: the account's default version


@dataclass(frozen=True)
class Finding:
    check: str
    status: Status
    detail: str


def check_setup(
    *,
    endpoints: list[WebhookEndpointView],
    handled_events: Iterable[str],
    api_version: str,
    page_config_id: str | None,
    page_configs: list[ProviderPage],
    currencies: Iterable[str],
    minimum_charge: Callable[[str], int | None],
) -> list[Finding]:
    return [
        *_webhooks(endpoints, tuple(handled_events), api_version),
        _portal(page_config_id, page_configs),
        *(_minimum(currency, minimum_charge(currency)) for currency in sorted(set(currencies))),
        Finding(
            "invoice.overdue timing",
            "confirm",
            "Stripe's API does not show the invoice automation (Dashboard > Billing > Automations, "
            "overdue invoices): it must send invoice.overdue 0 days after the due date. Off, tenants "
            "without a card are never dunned; N days, their retries start N days late.",
        ),
    ]


def has_missing(findings: list[Finding]) -> bool:
    return any(f.status == "missing" for f in findings)


def _webhooks(
    endpoints: list[WebhookEndpointView], handled: tuple[str, ...], api_version: str
) -> list[Finding]:
    live = [e for e in endpoints if e.status == "enabled"]
    received = {event for e in live for event in e.enabled_events}
    missing = [event for event in handled if event not in received and "*" not in received]
    findings: list[Finding] = []
    if not live:
        findings.append(
            Finding(
                "webhook endpoint",
                "missing",
                "no enabled webhook endpoint: no payment, failure or overdue invoice reaches us, so "
                "nobody is dunned and no saved card becomes the invoices' default",
            )
        )
        return findings
    if OVERDUE in missing:
        findings.append(
            Finding(
                OVERDUE,
                "missing",
                "no enabled webhook endpoint receives invoice.overdue: tenants without a card (their "
                "invoices are sent, not charged) would never be dunned",
            )
        )
    others = [event for event in missing if event != OVERDUE]
    findings.append(
        Finding("webhook events", "missing", "not received: " + ", ".join(others))
        if others
        else Finding("webhook events", "ok", f"{len(handled)} events received by {len(live)} endpoint(s)")
    )
    for endpoint in live:
        if endpoint.api_version != api_version:
            version = endpoint.api_version or "the account's default version"
            findings.append(
                Finding(
                    "webhook API version",
                    "warning",
                    f"{endpoint.url} renders events at {version}, not {api_version}: recreate it with "
                    f"api_version={api_version}",
                )
            )
    return findings


def _portal(page_config_id: str | None, configs: list[ProviderPage]) -> Finding:
    by_id = {c.id: c for c in configs}
    recorded = by_id.get(page_config_id) if page_config_id else None
    if recorded is not None and recorded.active:
        return Finding("customer portal configuration", "ok", f"{recorded.id}, named by every portal session")
    default = next((c for c in configs if c.is_default and c.active), None)
    if recorded is None and page_config_id is None and default is not None:
        return Finding("customer portal configuration", "ok", f"the account's Dashboard default {default.id}")
    why = (
        f"the recorded {page_config_id} is {'inactive' if recorded else 'not on this account'}"
        if page_config_id
        else "none recorded and no Dashboard default"
    )
    return Finding(
        "customer portal configuration",
        "missing",
        f"{why}: Stripe refuses every portal session; run `billing stripe sync-catalog`",
    )


def _minimum(currency: str, minimum: int | None) -> Finding:
    check = f"minimum charge {currency.upper()}"
    if minimum is not None:
        return Finding(check, "ok", f"{minimum} minor units (Stripe's published minimum)")
    return Finding(
        check,
        "warning",
        "Stripe publishes no minimum for it: it converts to the settlement currency at the day's rate, "
        "so whether a small statement is charged or carried to the balance cannot be foreseen",
    )
