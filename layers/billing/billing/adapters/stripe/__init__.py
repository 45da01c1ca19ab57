"""Stripe, through the official SDK: ``gateway`` (the calls), ``http`` (rate limit and retries),
``webhook_signature`` (signatures and the endpoint secret)."""
