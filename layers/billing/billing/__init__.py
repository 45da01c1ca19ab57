"""Usage metering, rating, invoicing and dunning for an AI SaaS.

Domain modules (pricing, rating, periods, quotas, dunning, ...) are pure Python; everything
that talks to ClickHouse, DynamoDB, SQS, S3 or Stripe lives in ``billing.adapters``.
"""
