"""Adapters: the only modules that talk to ClickHouse, AWS (boto3) or Stripe."""
