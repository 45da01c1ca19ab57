"""Usage metering, rating, invoicing and dunning for a SaaS: the Lambda layer's package.

The map (one package per bounded context; each declares the protocols it needs next to the code that
uses them, and ``adapters`` implements them):

- ``kernel``: what every context speaks: money and its one rounding rule, billing periods, typed errors,
  request validation.
- ``runtime``: how the package runs in Lambda: typed settings, the composition root (``container``),
  HTTP mapping, logging/tracing/metrics.
- ``catalog``: plans, and our plans as Stripe products.
- ``metering``: usage events, the price book, ingest and its exactly-once claims, the fallback path,
  quotas and the quota export.
- ``tenants``: the tenant record and who may act on it, the tenant service and its requests, coupons
  and prepaid credits.
- ``rating``: a tenant's period of usage to an exact statement (pure); one small file per charge model.
- ``statements``: the statement model and the close (month-end, previews, final statements).
- ``invoicing``: statements pushed to the payment provider by a resumable state machine.
- ``payments``: what we need of a payment provider, the card on file and its payment settings page's
  configuration, the account's go-live check, Stripe's webhooks as facts.
- ``dunning``: payment state per invoice, the tenant's standing, retries and notices.
- ``portal``: the tenant's usage page: signed links, its data, its HTML.
- ``adapters``: the only code that touches ClickHouse, DynamoDB, SQS/S3/EventBridge or Stripe, one
  folder per technology.

``config/`` holds the shipped price book and plans (data, not code).
"""
