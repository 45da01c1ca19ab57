"""A stateful Stripe test double, for tests and the demo only (never imported by a Lambda handler).

A real HTTP server on 127.0.0.1 that the official SDK talks to through ``api_base``, so the SDK's
own form encoding, headers and idempotency keys are exercised. It implements the slice of Stripe's
API the billing code uses: customers (create, retrieve, list, search), invoice items (create,
retrieve, list), invoices (create draft, retrieve, list, search, finalize, pay, void,
mark_uncollectible; statuses draft/open/paid/void/uncollectible).

- Every response is built from Stripe's own example objects (``stripe_fixtures.json``, copied from
  ``../shared/stripe/fixtures3.json``), changing only ids, amounts, statuses and timestamps.
- Idempotency like Stripe's: a POST with a key already seen replays the saved status and body
  (``Idempotent-Replayed: true``) when the parameters match and answers 400 ``idempotency_error``
  when they differ; a key still in flight answers 409. ``forget_idempotency_keys()`` models the
  24 h expiry. Faults injected before processing (429, 500, timeouts) save nothing, as at Stripe.
- Injectable faults: ``add_fault("rate_limit" | "server_error" | "timeout" | "lost_response", ...)``
  (``lost_response``: the request takes effect, then the client gets a 500, as when a response is
  lost), card declines per customer, tenant or payment method, and per-call latency.
- ``requests`` lists what was received (monotonic timestamps, for rate-cap tests); ``events`` holds
  the webhook events Stripe would send (``invoice.finalized``, ``invoice.paid``,
  ``invoice.payment_failed``, ...), built from the fixture ``event`` object with ``data.object``
  the invoice at that moment; webhook signatures come from ``billing.adapters.stripe.webhook_signature.sign`` (Stripe's own scheme).

Layout: ``core`` (lifecycle, faults, idempotency), ``resources`` (the endpoints), ``server`` (HTTP),
``faults`` (fault and error types), ``fixtures`` (Stripe's example objects).
"""

from __future__ import annotations

from billing_local.stripe_double.core import ACCOUNT_API_VERSION, RateLimits
from billing_local.stripe_double.faults import (
    Decline,
    Fault,
    FaultKind,
    RecordedRequest,
    StripeApiError,
    max_in_window,
    request_times,
)
from billing_local.stripe_double.fixtures import FIXTURES_PATH, load_fixtures
from billing_local.stripe_double.resources import Resources
from billing_local.stripe_double.server import decode_form

__all__ = [
    "ACCOUNT_API_VERSION",
    "FIXTURES_PATH",
    "RateLimits",
    "Decline",
    "Fault",
    "FaultKind",
    "RecordedRequest",
    "StripeApiError",
    "StripeDouble",
    "decode_form",
    "load_fixtures",
    "max_in_window",
    "put_secret",
    "request_times",
]


class StripeDouble(Resources):
    """The stateful Stripe double (see the module docstring)."""


def put_secret(name: str, value: str = "sk_test_double_000000000000") -> None:
    """Store the Stripe key in (moto's) Secrets Manager, as operators do for real."""
    import boto3

    client = boto3.client("secretsmanager")
    try:
        client.create_secret(Name=name, SecretString=value)
    except client.exceptions.ResourceExistsException:
        if client.get_secret_value(SecretId=name)["SecretString"] != value:
            client.put_secret_value(SecretId=name, SecretString=value)


def main() -> None:
    """``python -m billing_local.stripe_double [--latency S] [--search-delay S]``: serve until stdin closes (benches run
    the double in its own process so its CPU does not compete with the code under test)."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every call")
    parser.add_argument(
        "--search-delay",
        type=float,
        default=None,
        help="seconds before search sees a write (default STRIPE_DOUBLE_SEARCH_DELAY_S, else 1)",
    )
    args = parser.parse_args()
    with StripeDouble(latency_s=args.latency, search_delay_s=args.search_delay) as double:
        print(double.api_base, flush=True)
        sys.stdin.read()
